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
 *   The drain runs through the operator's command (`node dist/cluster.js drain bench-w1 --json`,
 *   i.e. `npm run cluster -- drain`; BENCH_DRAIN_VIA=inprocess calls the same code from here) and
 *   is also measured on its own: the steps' times, when the target took the shards, the load
 *   average before and after, and the errors and latencies of the sends started while it ran.
 *   BENCH_DRAIN_AFTER (s, default 4) and BENCH_PHASE_SECONDS (default 14) place it in the phase.
 *   BENCH_GRACE_MS (default 10,000): how long after the phase deliveries are still awaited (past the
 *   long-polls' 30 s, a lost wake-up shows as a ~30 s delivery instead of a missing one).
 *
 * `--only idle` or `--only drain` runs one part. A script, not a test: it prints figures.
 */
import { readShards, readWorkers, rebalance, drain } from '../src/runtime/cluster-admin';
import { KeySpace } from '../src/store/keys';
import { connectRedis, type RedisClient } from '../src/store/redis';
import { startAxonBench, type AxonBench } from './lib/axon-bench-cluster';
import { pool, round, seededRandom, sleep, table, writeBenchResults } from './lib/bench-util';
import { Deliveries, MatrixLoad, ratePhase, startSyncLoops, type User } from './lib/matrix-load';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { roomLayout } from './lib/workload-plans';

const SHARDS = Number(process.env.BENCH_SHARDS ?? 1024);
const IDLE_SECONDS = Number(process.env.BENCH_IDLE_SECONDS ?? 30);
const WORKLOAD_A = (process.env.BENCH_WORKLOAD ?? '').toLowerCase() === 'a';
const USERS = Number(process.env.BENCH_USERS ?? (WORKLOAD_A ? 200 : 40));
const ROOM_SIZE = Number(process.env.BENCH_ROOM_SIZE ?? 4);
const RATE = Number(process.env.BENCH_RATE ?? 50);
/**
 * How the drain is run: `script` (default) with the operator's own command, `node dist/cluster.js
 * drain bench-w1 --json` (`npm run cluster -- drain`), its lease TTL for liveness and its output
 * of the steps' times; `inprocess` with the same code called from here (and shards moved per second).
 */
const DRAIN_VIA = (process.env.BENCH_DRAIN_VIA ?? 'script').toLowerCase();
/** Seconds of load before the drain starts, and of the whole send phase. */
const DRAIN_AFTER_S = Number(process.env.BENCH_DRAIN_AFTER ?? 4);
const PHASE_S = Number(process.env.BENCH_PHASE_SECONDS ?? 14);
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
  via: string;
  rate: number;
  shardsMoved: number;
  drainSeconds: number;
  /** When each step of the drain ended, in s from its start (the script's own timing). */
  steps: Record<string, number>;
  /** When the target took the moved shards (their leases' `acquired`), in s from the drain's start. */
  acquiredS: { first: number; p50: number; p99: number; last: number } | null;
  loadBefore: number;
  loadAfter: number;
  /** Sends started while the drain ran: errors and latencies. */
  during: import('./lib/matrix-load').WindowFigures | null;
  ownersAfter: Record<string, number>;
  sent: number;
  sendErrors: number;
  syncErrors: number;
  /** /sync timelines that came back `limited` in the phase (their skipped events count as missing). */
  limitedTimelines: number;
  missing: number;
  sendP99ms: number;
  deliveryP50ms: number;
  deliveryP99ms: number;
  deliveryMaxMs: number;
}

async function drainPhase(): Promise<DrainResult> {
  // BENCH_WORKER_LOG_LEVEL=info: the workers' one-line summaries of each handoff batch and acquisition round.
  const ax: AxonBench = await startAxonBench({ workers: 2, fronts: 1, shards: SHARDS, logLevel: process.env.BENCH_LOG_LEVEL ?? 'warn', ...(process.env.BENCH_WORKER_LOG_LEVEL ? { workerLogLevel: process.env.BENCH_WORKER_LOG_LEVEL } : {}) });
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
    let window: { from: number; to: number } | null = null;
    const drained = (async () => {
      await sleep(DRAIN_AFTER_S * 1000);
      const loadBefore = loadavg()[0]!;
      log(`drain: draining ${from} under ${RATE} msg/s (${DRAIN_VIA}), load average ${loadBefore.toFixed(1)}`);
      const t0 = performance.now();
      const beganWall = Date.now();
      let moved: number;
      let steps: Record<string, number> = {};
      if (DRAIN_VIA === 'script') {
        const res = await drainWithScript(ax, from);
        moved = res.moved;
        steps = Object.fromEntries(Object.entries(res.phases).map(([k, v]) => [k, round(v / 1000, 2)]));
      } else {
        // Progress each second: how many shards have reached their target.
        let done = 0;
        const progress: number[] = [];
        const ticker = setInterval(() => progress.push(done), 1000);
        const moves = await drain(redis, keys, shardCounts, ALIVE_MS, from, { timeoutMs: 300_000, onMoved: () => done++, onPhase: (p) => (steps[p] ??= round((performance.now() - t0) / 1000, 2)) }).finally(() => clearInterval(ticker));
        log(`drain: shards moved by each second: ${progress.join(' ')}`);
        moved = moves.length;
      }
      const t1 = performance.now();
      window = { from: t0, to: t1 };
      const s = (t1 - t0) / 1000;
      const loadAfter = loadavg()[0]!;
      log(`drain: ${moved} shards moved in ${round(s, 2)} s (${Object.entries(steps).map(([k, v]) => `${k} ${v} s`).join(', ')}), load average ${loadAfter.toFixed(1)}`);
      // When the target took each shard it holds now (lease `acquired`, Redis's clock: this machine's).
      const taken = (await Promise.all(Array.from({ length: SHARDS }, (_x, i) => ['room', 'user'].map((f) => redis.hmget(keys.shard(f as 'room' | 'user', i).lease, 'owner', 'acquired'))).flat()))
        .filter(([owner, at]) => owner === 'bench-w2' && Number(at) >= beganWall)
        .map(([, at]) => (Number(at) - beganWall) / 1000)
        .sort((a, b) => a - b);
      const q = (p: number) => round(taken[Math.min(taken.length - 1, Math.floor((p / 100) * taken.length))]!, 2);
      const acquiredS = taken.length ? { first: round(taken[0]!, 2), p50: q(50), p99: q(99), last: round(taken[taken.length - 1]!, 2) } : null;
      return { moved, seconds: s, steps, acquiredS, loadBefore, loadAfter };
    })();
    const phase = await ratePhase(m, deliveries, RATE, PHASE_S, pick, Number(process.env.BENCH_GRACE_MS ?? 10_000), { window: () => window });
    const d = await drained;
    const syncErrors = poller.errors();
    await poller.stop();
    return {
      via: DRAIN_VIA,
      rate: RATE,
      shardsMoved: d.moved,
      drainSeconds: round(d.seconds, 2),
      steps: d.steps,
      acquiredS: d.acquiredS,
      loadBefore: round(d.loadBefore, 1),
      loadAfter: round(d.loadAfter, 1),
      during: phase.window ?? null,
      ownersAfter: Object.fromEntries(await owners(redis, keys)),
      sent: phase.sent,
      sendErrors: phase.sendErrors,
      syncErrors,
      limitedTimelines: deliveries.limited,
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

/**
 * `npm run cluster -- drain <worker> --json` against the bench's cluster (the operator's command,
 * built JavaScript, configured by the same AXON_* variables as the processes).
 */
async function drainWithScript(ax: AxonBench, worker: string): Promise<{ moved: number; ms: number; phases: Record<string, number> }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'axon-bench-drain-'));
  try {
    const root = join(import.meta.dirname, '..');
    const env = { ...process.env, AXON_REDIS_MODE: 'url', AXON_REDIS_URL: ax.redisUrl, AXON_REDIS_KEY_PREFIX: ax.keyPrefix, AXON_ROOM_SHARDS: String(SHARDS), AXON_USER_SHARDS: String(SHARDS), AXON_DATA_DIR: dataDir };
    const child = spawn(process.execPath, [join(root, 'dist', 'cluster.js'), 'drain', worker, '--json'], { cwd: root, env, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const code = await new Promise<number | null>((r) => child.on('close', r));
    const res = JSON.parse(out || '{}') as { ok?: boolean; error?: string; moved?: number; ms?: number; startupMs?: number; phases?: Record<string, number> };
    if (code !== 0 || !res.ok) throw new Error(`cluster drain failed (exit ${code}): ${res.error ?? out}`);
    // The steps from the command's start (its process's), as the bench's clock counts the drain.
    const at0 = res.startupMs ?? 0;
    const phases: Record<string, number> = { 'command started': at0 };
    for (const [k, v] of Object.entries(res.phases ?? {})) phases[k] = at0 + v;
    return { moved: res.moved ?? 0, ms: res.ms ?? 0, phases };
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
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
    console.log(`drain (${d.via}): ${d.shardsMoved} shards moved in ${d.drainSeconds} s under ${RATE} msg/s (${USERS} users, ${WORKLOAD_A ? "workload A's rooms" : `rooms of ${ROOM_SIZE}`}); load average ${d.loadBefore} → ${d.loadAfter}; owners after ${JSON.stringify(d.ownersAfter)}`);
    console.log(`       steps ended at (s): ${JSON.stringify(d.steps)}; shards taken by the target at (s) ${d.acquiredS ? `first ${d.acquiredS.first}, p50 ${d.acquiredS.p50}, p99 ${d.acquiredS.p99}, last ${d.acquiredS.last}` : '-'}`);
    console.log(`       whole phase: sent ${d.sent}, /send errors ${d.sendErrors}, /sync errors ${d.syncErrors}, deliveries missing ${d.missing} (limited timelines ${d.limitedTimelines}); /send p99 ${d.sendP99ms} ms; delivery p50 ${d.deliveryP50ms} p99 ${d.deliveryP99ms} max ${d.deliveryMaxMs} ms`);
    const w = d.during;
    if (w) console.log(`       sends started during the drain (${w.seconds} s): sent ${w.sent}, /send errors ${w.sendErrors}, deliveries missing ${w.missing}; /send p99 ${w.sendP99ms} ms; delivery p50 ${w.deliveryP50ms} p99 ${w.deliveryP99ms} max ${w.deliveryMaxMs} ms`);
  }
  const file = writeBenchResults((stamp) => `shards-${stamp}.json`, { date: new Date().toISOString(), machine, shards: SHARDS, ...out });
  console.log(`\nwritten ${file}`);
  process.exit(0);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
