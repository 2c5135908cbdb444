/**
 * `npm run bench:shards`: what shards cost when nothing happens, and how fast they move.
 *
 * - idle: two worker processes (`src/worker-main.ts`, every reader on) with BENCH_SHARDS shards
 *   per family (default 1,024: 1,024 shards per worker), no clients, for BENCH_IDLE_SECONDS
 *   (default 30) of quiet. Two figures (issue 23.4: at most 100/s): the commands the workers send
 *   (counted with MONITOR, which shows a script call once and the commands it runs apart, marked
 *   `lua`), and everything Redis executes, the commands run inside scripts included (the delta of
 *   `INFO commandstats`).
 * - drain: the same two workers plus a front; BENCH_USERS users in rooms of BENCH_ROOM_SIZE send
 *   at BENCH_RATE msg/s (`/send`) and long-poll `/sync` all along; after a few seconds of load
 *   worker 1 is drained (`npm run cluster -- drain`'s code): its 1,024 shards move to worker 2.
 *   Printed: the drain's time, `/send` and `/sync` errors, events not delivered, and delivery
 *   latency over the whole phase (issue 23.5: ≤ 5 s, no client errors). BENCH_WORKLOAD=a: workload
 *   A's users and rooms instead (`npm run bench`'s A: 200 users, 4 big rooms holding ~80 % of the
 *   memberships and getting 80 % of the messages, 16 small ones; BENCH_USERS still sets the count).
 *
 * `--only idle` or `--only drain` runs one part. A script, not a test: it prints figures.
 */
import { readShards, readWorkers, rebalance, drain } from '../src/runtime/cluster-admin';
import { KeySpace } from '../src/store/keys';
import { connectRedis, type RedisClient } from '../src/store/redis';
import { startAxonBench, type AxonBench } from './lib/axon-bench-cluster';
import { pool, round, seededRandom, sleep, table, writeBenchResults } from './lib/bench-util';
import { Deliveries, MatrixLoad, ratePhase, startSyncLoops, type User } from './lib/matrix-load';
import { cpus } from 'node:os';
import { roomLayout } from './lib/workload-plans';

const SHARDS = Number(process.env.BENCH_SHARDS ?? 1024);
const IDLE_SECONDS = Number(process.env.BENCH_IDLE_SECONDS ?? 30);
const WORKLOAD_A = (process.env.BENCH_WORKLOAD ?? '').toLowerCase() === 'a';
const USERS = Number(process.env.BENCH_USERS ?? (WORKLOAD_A ? 200 : 40));
const ROOM_SIZE = Number(process.env.BENCH_ROOM_SIZE ?? 4);
const RATE = Number(process.env.BENCH_RATE ?? 50);
const onlyArg = process.argv.indexOf('--only');
const only = new Set((onlyArg > 0 ? process.argv[onlyArg + 1]! : 'idle,drain').split(','));
const shardCounts = { room: SHARDS, user: SHARDS };
/**
 * How recent a heartbeat counts as alive for this script's waits: a worker taking its first
 * thousand shards on a loaded machine heartbeats late, and is still coming up, not dead.
 */
const ALIVE_MS = 30_000;

function log(s: string): void {
  console.error(`[${new Date().toISOString().slice(11, 19)}] ${s}`);
}

/** Calls per command from `INFO commandstats`. */
async function commandCalls(redis: RedisClient): Promise<Map<string, number>> {
  const text = (await redis.info('commandstats')) as string;
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^cmdstat_([^:]+):calls=(\d+)/.exec(line.trim());
    if (m) out.set(m[1]!, Number(m[2]));
  }
  return out;
}

/** Both workers up, every shard held, shares evened out (as `cluster up` leaves it). */
async function settle(redis: RedisClient, keys: KeySpace, workers: number): Promise<void> {
  const deadline = Date.now() + 900_000;
  for (;;) {
    const live = (await readWorkers(redis, keys, ALIVE_MS)).filter((w) => w.alive).length;
    const held = (await readShards(redis, keys, shardCounts)).filter((s) => s.owner).length;
    if (live === workers && held === 2 * SHARDS) break;
    if (Date.now() > deadline) throw new Error(`cluster did not settle: ${live} workers, ${held} shards held`);
    await sleep(250);
  }
  await rebalance(redis, keys, shardCounts, ALIVE_MS, { timeoutMs: 300_000 });
}

/** Commands clients send during `ms` (MONITOR; the calls scripts make are left out), per command. */
async function sentCommands(url: string, ms: number): Promise<Map<string, number>> {
  const admin = connectRedis({ url });
  const monitor = await (admin as unknown as { monitor(): Promise<import('node:events').EventEmitter & { disconnect(): void }> }).monitor();
  const out = new Map<string, number>();
  monitor.on('monitor', (_time: string, args: string[], source: string) => {
    if (source === 'lua') return;
    const cmd = String(args[0] ?? '').toLowerCase();
    out.set(cmd, (out.get(cmd) ?? 0) + 1);
  });
  await sleep(ms);
  monitor.disconnect();
  admin.disconnect();
  return out;
}

async function owners(redis: RedisClient, keys: KeySpace): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const s of await readShards(redis, keys, shardCounts)) out.set(s.owner || '(none)', (out.get(s.owner || '(none)') ?? 0) + 1);
  return out;
}

interface IdleResult {
  seconds: number;
  perWorker: Record<string, number>;
  /** Commands the workers sent (a script call counts once). */
  sentPerSecond: number;
  sentTop: { command: string; perSecond: number }[];
  /** Everything Redis executed, the commands inside scripts included. */
  commandsPerSecond: number;
  top: { command: string; perSecond: number }[];
}

async function idlePhase(): Promise<IdleResult> {
  const ax = await startAxonBench({ workers: 2, fronts: 0, shards: SHARDS });
  const redis = connectRedis({ url: ax.redisUrl });
  try {
    const keys = new KeySpace(ax.keyPrefix);
    log(`idle: waiting for 2 workers to hold ${2 * SHARDS} shards`);
    await settle(redis, keys, 2);
    const perWorker = Object.fromEntries(await owners(redis, keys));
    log(`idle: shards per worker ${JSON.stringify(perWorker)}; 10 s to settle, then ${IDLE_SECONDS} s measured`);
    await sleep(10_000);
    const before = await commandCalls(redis);
    const t0 = performance.now();
    const sent = await sentCommands(ax.redisUrl, IDLE_SECONDS * 1000);
    const after = await commandCalls(redis);
    const seconds = (performance.now() - t0) / 1000;
    const sentRows = [...sent].filter(([cmd]) => cmd !== 'info' && cmd !== 'monitor').map(([command, n]) => ({ command, perSecond: round(n / seconds, 2) }));
    sentRows.sort((a, b) => b.perSecond - a.perSecond);
    const sentTotal = sentRows.reduce((t, r) => t + r.perSecond, 0);
    const rows: { command: string; perSecond: number }[] = [];
    let total = 0;
    for (const [cmd, n] of after) {
      // The two INFO calls of this measurement are not the workers'.
      const d = n - (before.get(cmd) ?? 0) - (cmd === 'info' ? 1 : 0) - (cmd === 'monitor' ? 1 : 0);
      if (d <= 0) continue;
      total += d;
      rows.push({ command: cmd, perSecond: round(d / seconds, 2) });
    }
    rows.sort((a, b) => b.perSecond - a.perSecond);
    return { seconds: round(seconds, 1), perWorker, sentPerSecond: round(sentTotal, 1), sentTop: sentRows.slice(0, 15), commandsPerSecond: round(total / seconds, 1), top: rows.slice(0, 15) };
  } finally {
    redis.disconnect();
    await ax.stop();
  }
}

interface DrainResult {
  shardsMoved: number;
  drainSeconds: number;
  ownersAfter: Record<string, number>;
  sent: number;
  sendErrors: number;
  syncErrors: number;
  missing: number;
  sendP99ms: number;
  deliveryP50ms: number;
  deliveryP99ms: number;
  deliveryMaxMs: number;
}

async function drainPhase(): Promise<DrainResult> {
  const ax: AxonBench = await startAxonBench({ workers: 2, fronts: 1, shards: SHARDS, logLevel: process.env.BENCH_LOG_LEVEL ?? 'warn' });
  const redis = connectRedis({ url: ax.redisUrl });
  const m = new MatrixLoad(ax.url);
  try {
    const keys = new KeySpace(ax.keyPrefix);
    await m.waitUp(120_000);
    log(`drain: waiting for 2 workers to hold ${2 * SHARDS} shards`);
    await settle(redis, keys, 2);
    log(`drain: registering ${USERS} users, rooms of ${ROOM_SIZE}`);
    const run = Date.now().toString(36);
    const users: User[] = await pool(Array.from({ length: USERS }, (_x, i) => i), 16, (i) => m.register(`sh${run}u${i}`));
    const rooms: { id: string; members: User[] }[] = [];
    const layout = roomLayout(users.length);
    if (WORKLOAD_A) for (const members of [...layout.big, ...layout.small]) rooms.push({ id: '', members: members.map((i) => users[i]!) });
    else for (let i = 0; i < users.length; i += ROOM_SIZE) rooms.push({ id: '', members: users.slice(i, i + ROOM_SIZE) });
    await pool(rooms, 8, async (r) => {
      r.id = await m.createRoom(r.members[0]!);
    });
    await pool(rooms.flatMap((r) => r.members.slice(1).map((u) => ({ u, r }))), 16, ({ u, r }) => m.join(u, r.id));
    const sinces = await pool(users, 16, (u) => m.initialSince(u));
    const deliveries = new Deliveries();
    const poller = startSyncLoops(m, users, sinces, deliveries);
    await sleep(1500);
    let k = 0;
    const rng = seededRandom(0xa11ce);
    const bigCount = layout.big.length;
    const pick = WORKLOAD_A
      ? () => {
          // As workload A: 80 % of the messages to the big rooms.
          const r = rng() < 0.8 ? rooms[Math.floor(rng() * bigCount)]! : rooms[bigCount + Math.floor(rng() * (rooms.length - bigCount))]!;
          return { user: r.members[Math.floor(rng() * r.members.length)]!, roomId: r.id, members: r.members.length };
        }
      : () => {
          const r = rooms[k++ % rooms.length]!;
          return { user: r.members[k % r.members.length]!, roomId: r.id, members: r.members.length };
        };
    const from = 'bench-w1';
    const drained = (async () => {
      await sleep(4000);
      log(`drain: draining ${from} under ${RATE} msg/s`);
      const t0 = performance.now();
      // Progress each second: how many shards have reached their target.
      let done = 0;
      const progress: number[] = [];
      const ticker = setInterval(() => progress.push(done), 1000);
      const moves = await drain(redis, keys, shardCounts, ALIVE_MS, from, { timeoutMs: 300_000, onMoved: () => done++ }).finally(() => clearInterval(ticker));
      log(`drain: shards moved by each second: ${progress.join(' ')}`);
      const s = (performance.now() - t0) / 1000;
      log(`drain: ${moves.length} shards moved in ${round(s, 2)} s`);
      return { moved: moves.length, seconds: s };
    })();
    const phase = await ratePhase(m, deliveries, RATE, 14, pick, 10_000);
    const d = await drained;
    const syncErrors = poller.errors();
    await poller.stop();
    return {
      shardsMoved: d.moved,
      drainSeconds: round(d.seconds, 2),
      ownersAfter: Object.fromEntries(await owners(redis, keys)),
      sent: phase.sent,
      sendErrors: phase.sendErrors,
      syncErrors,
      missing: phase.missing,
      sendP99ms: phase.sendP99ms,
      deliveryP50ms: phase.deliveryP50ms,
      deliveryP99ms: phase.deliveryP99ms,
      deliveryMaxMs: phase.deliveryMaxMs,
    };
  } finally {
    m.close();
    redis.disconnect();
    await ax.stop();
  }
}

async function main(): Promise<void> {
  const machine = `${cpus()[0]?.model ?? 'CPU'} × ${cpus().length}, node ${process.version}`;
  console.log(`Axon shard benchmark — ${new Date().toISOString()} — ${machine}; ${SHARDS} shards per family, 2 workers\n`);
  const out: { idle?: IdleResult; drain?: DrainResult } = {};
  if (only.has('idle')) {
    out.idle = await idlePhase();
    const i = out.idle;
    console.log(`idle, ${i.seconds} s, shards per worker ${JSON.stringify(i.perWorker)}:`);
    console.log(`  commands sent by the workers (MONITOR; a script call counts once): ${i.sentPerSecond}/s`);
    console.log(`  commands Redis executed, those inside scripts included (INFO commandstats): ${i.commandsPerSecond}/s\n`);
    const width = Math.max(i.sentTop.length, i.top.length);
    const rows = Array.from({ length: width }, (_x, j) => ({ sent: i.sentTop[j]?.command ?? '', sentRate: i.sentTop[j]?.perSecond ?? '', all: i.top[j]?.command ?? '', allRate: i.top[j]?.perSecond ?? '' }));
    console.log(table(rows, ['sent', 'sentRate', 'all', 'allRate'], ['sent', 'calls/s', 'executed', 'calls/s']));
    console.log('');
  }
  if (only.has('drain')) {
    out.drain = await drainPhase();
    const d = out.drain;
    console.log(`drain: ${d.shardsMoved} shards moved in ${d.drainSeconds} s under ${RATE} msg/s (${USERS} users, ${WORKLOAD_A ? "workload A's rooms" : `rooms of ${ROOM_SIZE}`}); owners after ${JSON.stringify(d.ownersAfter)}`);
    console.log(`       sent ${d.sent}, /send errors ${d.sendErrors}, /sync errors ${d.syncErrors}, deliveries missing ${d.missing}; /send p99 ${d.sendP99ms} ms; delivery p50 ${d.deliveryP50ms} p99 ${d.deliveryP99ms} max ${d.deliveryMaxMs} ms`);
  }
  const file = writeBenchResults((stamp) => `shards-${stamp}.json`, { date: new Date().toISOString(), machine, shards: SHARDS, ...out });
  console.log(`\nwritten ${file}`);
  process.exit(0);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
