/**
 * `npm run bench:room`: the room actor's figures (issue 4 item 7). Starts a managed redis-server
 * in a temp dir (AOF on, `appendfsync always`, as production) and worker processes
 * (`node --import tsx src/worker-main.ts`), and talks to the room actors directly through an
 * ActorClient, as the fronts do: each `send` is built, signed, authorised against the current
 * state and persisted with its state snapshot, outbox entry and reply. A script, not a test: it
 * prints figures and asserts nothing (beyond checking that what it counted was persisted).
 *
 *   (a) events/s persisted into one room, with 1 and 2 workers
 *   (b) events/s persisted across 100 rooms, with 1 and 2 workers
 *   (c) Redis memory of a 10,000-member room's keys after membership churn, per event: every key
 *       of the room's shard measured with MEMORY USAGE, split into event bodies, state snapshots,
 *       current state and members, timeline and indexes, and the outbox (built with appendfsync
 *       everysec: this phase measures bytes, not speed)
 *
 * The workers are this script in `--worker` mode: src/worker-main.ts without the readers (push
 * evaluation, membership index, fan-out), so the figures are the room actor's own; the readers
 * consume the outbox behind it and are measured by their own benchmarks.
 *
 * Env knobs: BENCH_SECONDS (per throughput phase, default 10), BENCH_CONCURRENCY (sends in flight,
 * default 100), BENCH_ROOMS (default 100), BENCH_MEMBERS (default 10000), BENCH_CHURN (membership
 * changes after the joins, default 5000), BENCH_MESSAGES (messages interleaved with the churn,
 * default 5000), BENCH_ROOM_VERSION (default 10), BENCH_SHARDS (per family, default 256),
 * BENCH_ONLY (e.g. "c"), BENCH_WORKERS (e.g. "1": the worker counts of (a) and (b), default "1,2"),
 * BENCH_CPU_PROF (a directory: the workers write V8 CPU profiles there), BENCH_REDIS_STATS=1 (each
 * throughput phase's Redis commands per event, from INFO commandstats), BENCH_WORKER_NODE_ARGS (node
 * flags for the workers, as scripts/lib/axon-bench-cluster.ts takes them; the cluster scripts start
 * workers with `nodeFlagsFor('worker')`, this bench by default with none), BENCH_REPEAT (default 1:
 * the throughput phases (a) and (b) run that many rounds, each on a redis-server and cluster of
 * its own, then their medians — on a machine whose speed drifts from one minute to the next, one round is not a figure).
 *
 * Each throughput phase also prints the CPU time spent per event by the workers, by this process
 * (the asking side: the ActorClient) and by Redis, with "(+N)" after it for Redis's forked
 * AOF-rewrite children that ended in the phase (INFO cpu counts them apart). On a machine shared
 * with other work the events/s vary with the load, the CPU per event much less, so before/after
 * pairs compare by it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildCreateEvent } from '../actors/room';
import type { RoomConfig, RoomMeta } from '../src/rooms/model';
import { ActorClient } from '../src/runtime/actor-client';
import { readShards, readWorkers, rebalance } from '../src/runtime/cluster-admin';
import { startManagedRedis } from '../src/runtime/managed-redis';
import { shardOf } from '../src/store/shards';
import { loadOrCreateSigningKeys } from '../src/runtime/signing-key-store';
import { decode } from '../src/store/codec';
import { KeySpace } from '../src/store/keys';
import { connectRedis, type RedisClient } from '../src/store/redis';
import { installNativeEd25519Signer } from '../src/crypto/ed25519-native';
import { createLogger } from '../src/log';
import { argValue, loadConfigOrExit, onShutdown } from '../src/process-lifecycle';
import { redisTargetFor, shardCountsFor } from '../src/runtime/cluster-settings';
import { allActorKinds } from '../src/runtime/kinds';
import { Worker } from '../src/runtime/worker';
import { SYNC_OUTBOX_RETENTION_MS, workerSyncNotify } from '../src/sync/notify';
import { killOnExit, writeBenchResults } from './lib/bench-util';
import { cpuSeconds } from './lib/proc-stats';

// libsodium as the ed25519 signer where it loads, in this process and its --worker children, as in
// every process entry (src/process-lifecycle.ts).
installNativeEd25519Signer();

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 100);
const ROOMS = Number(process.env.BENCH_ROOMS ?? 100);
const MEMBERS = Number(process.env.BENCH_MEMBERS ?? 10_000);
const CHURN = Number(process.env.BENCH_CHURN ?? 5_000);
const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 5_000);
const ROOM_VERSION = process.env.BENCH_ROOM_VERSION ?? '10';
const SHARDS = Number(process.env.BENCH_SHARDS ?? 256);
const ONLY = new Set((process.env.BENCH_ONLY ?? 'a,b,c').split(','));
const WORKER_COUNTS = (process.env.BENCH_WORKERS ?? '1,2').split(',').map(Number);
const REDIS_STATS = process.env.BENCH_REDIS_STATS === '1';
const REPEAT = Math.max(1, Number(process.env.BENCH_REPEAT ?? 1));
/** BENCH_REDIS_ARGS: more redis-server options for the throughput phases' servers (e.g. "--auto-aof-rewrite-percentage 400"). */
const REDIS_ARGS = (process.env.BENCH_REDIS_ARGS ?? '').split(' ').filter(Boolean);
const SERVER = 'bench.local';
const root = join(import.meta.dirname, '..');

const round = (n: number, d = 1) => Math.round(n * 10 ** d) / 10 ** d;
const log = (msg: string) => process.stderr.write(`[bench-room ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** Run `fn` over `n` items with at most `limit` in flight. */
async function pool(n: number, limit: number, fn: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < n) await fn(next++);
  };
  await Promise.all(Array.from({ length: Math.min(limit, n) }, lane));
}

interface Cluster {
  client: ActorClient;
  admin: RedisClient;
  keys: KeySpace;
  procs: ChildProcess[];
  cfg: RoomConfig;
}

/** Worker processes on a fresh key prefix, every shard held and evened out (as `cluster up` does). */
async function startCluster(url: string, dataDir: string, workers: number, prefix: string): Promise<Cluster> {
  const env = {
    ...process.env, AXON_REDIS_MODE: 'url', AXON_REDIS_URL: url, AXON_REDIS_KEY_PREFIX: prefix, AXON_ROOM_SHARDS: String(SHARDS), AXON_USER_SHARDS: String(SHARDS),
    AXON_LOG_LEVEL: 'warn', AXON_DATA_DIR: dataDir, AXON_SERVER_NAME: SERVER,
  };
  const keys = new KeySpace(prefix);
  const admin = connectRedis({ url });
  // BENCH_CPU_PROF=<dir>: each worker writes a V8 CPU profile there when it exits (where its time goes).
  const prof = process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : [];
  // BENCH_WORKER_NODE_ARGS: node flags for the workers (e.g. the cluster's, `nodeFlagsFor('worker')`:
  // `--max-semi-space-size=4 --heap-growing-percent=100`); none by default, as the figures so far.
  const nodeArgs = (process.env.BENCH_WORKER_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const procs = Array.from({ length: workers }, (_, i) => killOnExit(spawn(process.execPath, [...prof, ...nodeArgs, '--import', 'tsx', 'scripts/bench-room.ts', '--worker', `bench-w${i + 1}`], { cwd: root, env, stdio: 'ignore' })));
  for (;;) {
    const live = (await readWorkers(admin, keys, 5000)).filter((w) => w.alive).length;
    const held = (await readShards(admin, keys, { room: SHARDS, user: SHARDS })).filter((s) => s.owner).length;
    if (live === workers && held === 2 * SHARDS) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  if (workers > 1) await rebalance(admin, keys, { room: SHARDS, user: SHARDS }, 5000);
  const client = new ActorClient(connectRedis({ url }), keys, { room: SHARDS, user: SHARDS });
  await client.start();
  // The workers sign with the server's key from the data dir; the create events the bench builds must match.
  const cfg: RoomConfig = { serverName: SERVER, signingKey: loadOrCreateSigningKeys(join(dataDir, `${SERVER}.signing.key`))[0]! };
  return { client, admin, keys, procs, cfg };
}

async function stopCluster(c: Cluster): Promise<void> {
  await c.client.close();
  await Promise.all(
    c.procs.map(async (p) => {
      if (p.exitCode !== null) return;
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGTERM');
      await exited;
    }),
  );
  c.admin.disconnect();
}

let roomCounter = 0;

type Sent = { event_id: string; pos: number };

function send(c: Cluster, roomId: string, sender: string, type: string, content: Record<string, unknown>, stateKey?: string): Promise<Sent> {
  return c.client.ask<Sent>('room', 'room', roomId, { op: 'send', event: { type, sender, content, ...(stateKey !== undefined ? { state_key: stateKey } : {}) } }, { timeoutMs: 120_000 });
}

/** A public room created by `@creator`, with power levels and a join rule: ready for members and messages. */
async function createRoom(c: Cluster): Promise<string> {
  const creator = `@creator:${SERVER}`;
  const { roomId, event } = buildCreateEvent(c.cfg, { roomVersion: ROOM_VERSION, creator, roomLocalpart: `bench${++roomCounter}x${process.pid}`, ts: Date.now() });
  await c.client.ask('room', 'room', roomId, { op: 'create', event }, { timeoutMs: 60_000 });
  await send(c, roomId, creator, 'm.room.member', { membership: 'join' }, creator);
  await send(c, roomId, creator, 'm.room.power_levels', { users: ROOM_VERSION === '12' ? {} : { [creator]: 100 }, users_default: 0, events_default: 0, state_default: 50 }, '');
  await send(c, roomId, creator, 'm.room.join_rules', { join_rule: 'public' }, '');
  return roomId;
}

const MESSAGE = { msgtype: 'm.text', body: 'A message of a typical length, about as long as people write them in a chat room.' };

interface Throughput {
  name: string;
  events: number;
  seconds: number;
  perSecond: number;
  p50ms: number;
  p99ms: number;
  /**
   * CPU time per event (µs): the workers, this process (the asking side), Redis, and Redis's
   * children (its AOF rewrites, forked: INFO cpu counts them apart, once each has ended).
   */
  cpuUs: { workers: number; client: number; redis: number; redisChildren: number };
  /** Redis calls per event by command (BENCH_REDIS_STATS=1). */
  redisCalls?: Record<string, number>;
  /** Redis CPU µs per event by command, as INFO commandstats counts it (BENCH_REDIS_STATS=1; a script's commands count in both). */
  redisUs?: Record<string, number>;
}

/** A process's CPU time so far (ms), from /proc (Linux; 0 once it is gone). */
const procCpuMs = (pid: number): number => (cpuSeconds(pid) ?? 0) * 1000;

/** Redis's CPU time so far (ms): its own, and its ended children's (the AOF rewrites). */
async function redisCpuMs(c: Cluster): Promise<{ own: number; children: number }> {
  const info = await c.admin.info('cpu');
  const get = (k: string) => Number(new RegExp(`^${k}:([\\d.]+)`, 'm').exec(info)?.[1] ?? 0);
  return { own: (get('used_cpu_sys') + get('used_cpu_user')) * 1000, children: (get('used_cpu_sys_children') + get('used_cpu_user_children')) * 1000 };
}

async function redisCalls(c: Cluster): Promise<Map<string, { calls: number; usec: number }>> {
  const info = await c.admin.info('commandstats');
  const out = new Map<string, { calls: number; usec: number }>();
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) out.set(m[1]!, { calls: Number(m[2]), usec: Number(m[3]) });
  return out;
}

/** Closed loop: CONCURRENCY sends in flight for SECONDS, spread over `rooms` round robin. */
async function throughput(name: string, c: Cluster, rooms: string[]): Promise<Throughput> {
  const creator = `@creator:${SERVER}`;
  // Warm up: JIT, actor state loads.
  await pool(Math.max(rooms.length, 200), CONCURRENCY, (i) => send(c, rooms[i % rooms.length]!, creator, 'm.room.message', MESSAGE));
  const before = await Promise.all(rooms.map(async (r) => (await readMeta(c, r)).seq));
  const callsBefore = REDIS_STATS ? await redisCalls(c) : null;
  const cpuBefore = { workers: c.procs.reduce((a, p) => a + procCpuMs(p.pid!), 0), client: process.cpuUsage(), redis: await redisCpuMs(c) };
  const latencies: number[] = [];
  let i = 0;
  const started = performance.now();
  const end = started + SECONDS * 1000;
  const lane = async () => {
    while (performance.now() < end) {
      const room = rooms[i++ % rooms.length]!;
      const t = performance.now();
      await send(c, room, creator, 'm.room.message', MESSAGE);
      latencies.push(performance.now() - t);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, lane));
  const seconds = (performance.now() - started) / 1000;
  const clientCpu = process.cpuUsage(cpuBefore.client);
  const workersMs = c.procs.reduce((a, p) => a + procCpuMs(p.pid!), 0) - cpuBefore.workers;
  const redisAfter = await redisCpuMs(c);
  const n = Math.max(1, latencies.length);
  const perEvent = (ms: number) => Math.round((ms * 1000) / n);
  const cpuUs = {
    workers: perEvent(workersMs),
    client: Math.round((clientCpu.user + clientCpu.system) / n),
    redis: perEvent(redisAfter.own - cpuBefore.redis.own),
    redisChildren: perEvent(redisAfter.children - cpuBefore.redis.children),
  };
  let calls: Record<string, number> | undefined;
  let us: Record<string, number> | undefined;
  if (callsBefore) {
    calls = {};
    us = {};
    for (const [cmd, k] of await redisCalls(c)) {
      const d = k.calls - (callsBefore.get(cmd)?.calls ?? 0);
      if (d > 0) calls[cmd] = round(d / n, 2);
      const u = k.usec - (callsBefore.get(cmd)?.usec ?? 0);
      if (u > 0) us[cmd] = round(u / n, 1);
    }
  }
  // What was counted must be what the rooms persisted.
  const after = await Promise.all(rooms.map(async (r) => (await readMeta(c, r)).seq));
  const persisted = after.reduce((a, s, k) => a + s - before[k]!, 0);
  if (persisted !== latencies.length) throw new Error(`${name}: ${latencies.length} sends answered, ${persisted} events persisted`);
  latencies.sort((a, b) => a - b);
  return { name, events: latencies.length, seconds: round(seconds, 2), perSecond: Math.round(latencies.length / seconds), p50ms: round(percentile(latencies, 50)), p99ms: round(percentile(latencies, 99)), cpuUs, ...(calls ? { redisCalls: calls } : {}), ...(us ? { redisUs: us } : {}) };
}

async function readMeta(c: Cluster, roomId: string): Promise<RoomMeta> {
  const blob = await c.admin.getBuffer(c.keys.shard('room', shardOf(roomId, SHARDS)).state('room', roomId));
  if (!blob) throw new Error(`room ${roomId} has no state`);
  return decode<RoomMeta>(blob);
}

interface Storage {
  members: number;
  events: number;
  stateEvents: number;
  seconds: number;
  bytes: Record<string, number>;
  keys: Record<string, number>;
  snapshots: { total: number; full: number };
}

/**
 * A room with MEMBERS members, then CHURN membership changes (leaves, re-joins, display name
 * changes) interleaved with MESSAGES messages; then the memory of every key of its shard.
 */
async function storage(c: Cluster): Promise<Storage> {
  const roomId = await createRoom(c);
  const started = performance.now();
  const user = (i: number) => `@u${i}:${SERVER}`;
  log(`(c) ${MEMBERS} joins…`);
  await pool(MEMBERS, CONCURRENCY, (i) => send(c, roomId, user(i), 'm.room.member', { membership: 'join', displayname: `User ${i}` }, user(i)));
  log(`(c) ${CHURN} membership changes and ${MESSAGES} messages…`);
  const joined = new Array<boolean>(MEMBERS).fill(true);
  let seed = 42;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const total = CHURN + MESSAGES;
  // A fixed plan (so runs compare): which step is a state change, and for whom.
  const plan = Array.from({ length: total }, (_, k) => (k * CHURN) % total < CHURN ? { churn: true, u: rand(MEMBERS), kind: rand(3) } : { churn: false, u: rand(MEMBERS), kind: 0 });
  // Members act one at a time per user (a user's leave and re-join must not race), so steps run in order per user.
  const busy = new Map<number, Promise<unknown>>();
  await pool(total, CONCURRENCY, async (k) => {
    const step = plan[k]!;
    const prior = busy.get(step.u);
    const run = (async () => {
      await prior;
      const u = user(step.u);
      if (!step.churn) {
        if (!joined[step.u]) {
          joined[step.u] = true;
          return send(c, roomId, u, 'm.room.member', { membership: 'join', displayname: `User ${step.u}` }, u);
        }
        return send(c, roomId, u, 'm.room.message', MESSAGE);
      }
      if (joined[step.u] && step.kind === 0) {
        joined[step.u] = false;
        return send(c, roomId, u, 'm.room.member', { membership: 'leave' }, u);
      }
      joined[step.u] = true;
      return send(c, roomId, u, 'm.room.member', { membership: 'join', displayname: `User ${step.u} (${k})` }, u);
    })();
    busy.set(step.u, run);
    await run;
  });
  const seconds = (performance.now() - started) / 1000;

  log('(c) measuring memory…');
  const meta = await readMeta(c, roomId);
  const shard = c.keys.shard('room', shardOf(roomId, SHARDS));
  const prefix = shard.data('');
  const bytes: Record<string, number> = {};
  const count: Record<string, number> = {};
  let stateEvents = 0;
  let cursor = '0';
  const classify = (k: string): string => {
    if (k === shard.outbox) return 'outbox stream';
    if (k === shard.state('room', roomId)) return 'room meta';
    if (!k.startsWith(prefix)) return 'runtime (inbox, dedupe marks, lease)';
    const name = k.slice(prefix.length);
    if (name.startsWith('ev:')) return 'event bodies';
    if (name.includes(':snap:')) return 'state snapshots';
    if (name.endsWith(':state') || name.endsWith(':members')) return 'current state + members';
    return 'timeline + indexes';
  };
  do {
    const [next, found] = await c.admin.scan(cursor, 'MATCH', `${c.keys.shard('room', shardOf(roomId, SHARDS)).data('').slice(0, -'d:'.length)}*`, 'COUNT', 2000);
    cursor = next;
    if (found.length === 0) continue;
    const p = c.admin.pipeline();
    for (const k of found) p.memory('USAGE', k, 'SAMPLES', '0');
    const res = (await p.exec()) ?? [];
    found.forEach((k, j) => {
      const cls = classify(k);
      bytes[cls] = (bytes[cls] ?? 0) + Number(res[j]?.[1] ?? 0);
      count[cls] = (count[cls] ?? 0) + 1;
    });
  } while (cursor !== '0');
  // Snapshots: how many, how many written in full.
  let full = 0;
  for (let id = 1; id <= meta.snapSeq; id += 500) {
    const ids = Array.from({ length: Math.min(500, meta.snapSeq - id + 1) }, (_, j) => shard.data(`room:${roomId}:snap:${id + j}`));
    const blobs = await c.admin.mgetBuffer(...ids);
    for (const b of blobs) if (b && decode<{ p: number | null }>(b).p === null) full++;
  }
  stateEvents = meta.snapSeq; // one snapshot per state event here (no forks)
  return { members: MEMBERS, events: meta.seq, stateEvents, seconds: round(seconds), bytes, keys: count, snapshots: { total: meta.snapSeq, full } };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'axon-bench-room-'));
  const redis = await startManagedRedis({ dir, port: await freePort(), extraArgs: ['--appendfsync', 'always'] });
  const machine = `${cpus()[0]?.model ?? 'CPU'} × ${cpus().length}, node ${process.version}`;
  console.log(`Axon room actor benchmark — ${new Date().toISOString()} — ${machine} — load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  console.log(`redis-server with AOF, appendfsync always; room version ${ROOM_VERSION}; ${SECONDS}s per throughput phase, ${CONCURRENCY} sends in flight, ${SHARDS} shards per family\n`);
  const results: Throughput[] = [];
  let store: Storage | null = null;
  try {
    for (let round = 1; round <= REPEAT && (ONLY.has('a') || ONLY.has('b')); round++) {
      const tag = REPEAT > 1 ? ` (round ${round})` : '';
      // Each round on a redis-server of its own: one that kept the rounds before (their events and
      // dedupe records) rewrites its AOF at a cost that grows with them, and the later rounds
      // measured that (100 rooms: 8,112 then 5,595 and 5,342 events/s on a shared one).
      const roundDir = mkdtempSync(join(tmpdir(), 'axon-bench-room-round-'));
      const roundRedis = await startManagedRedis({ dir: roundDir, port: await freePort(), extraArgs: ['--appendfsync', 'always', ...REDIS_ARGS] });
      try {
        for (const workers of WORKER_COUNTS) {
          const c = await startCluster(roundRedis.url, roundDir, workers, `br${workers}:`);
          try {
            if (ONLY.has('a')) {
              log(`(a) one room, ${workers} worker(s)${tag}…`);
              results.push(await throughput(`one room, ${workers} worker${workers > 1 ? 's' : ''}${tag}`, c, [await createRoom(c)]));
            }
            if (ONLY.has('b')) {
              log(`(b) ${ROOMS} rooms, ${workers} worker(s)${tag}…`);
              const rooms: string[] = [];
              await pool(ROOMS, 20, async () => rooms.push(await createRoom(c)));
              results.push(await throughput(`${ROOMS} rooms, ${workers} worker${workers > 1 ? 's' : ''}${tag}`, c, rooms));
            }
          } finally {
            await stopCluster(c);
          }
        }
      } finally {
        await roundRedis.stop();
        rmSync(roundDir, { recursive: true, force: true });
      }
    }
    if (ONLY.has('c')) {
      // (c) measures bytes, not speed: fsync once a second builds the room faster on a shared machine.
      const admin = connectRedis({ url: redis.url });
      await admin.config('SET', 'appendfsync', 'everysec');
      admin.disconnect();
      const c = await startCluster(redis.url, dir, 1, 'brc:');
      try {
        store = await storage(c);
      } finally {
        await stopCluster(c);
      }
    }
  } finally {
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  }

  if (results.length) {
    const w = Math.max(...results.map((r) => r.name.length), 8);
    console.log(`${'workload'.padEnd(w)}  ${'events/s'.padStart(9)}  ${'p50 ms'.padStart(8)}  ${'p99 ms'.padStart(8)}  ${'events'.padStart(8)}  CPU µs/event: workers / client / redis (+ its AOF rewrites)`);
    for (const r of results) {
      console.log(`${r.name.padEnd(w)}  ${String(r.perSecond).padStart(9)}  ${r.p50ms.toFixed(1).padStart(8)}  ${r.p99ms.toFixed(1).padStart(8)}  ${String(r.events).padStart(8)}  ${r.cpuUs.workers} / ${r.cpuUs.client} / ${r.cpuUs.redis} (+${r.cpuUs.redisChildren})`);
      // What the machine could carry at this CPU cost per event with every core busy: a run near
      // it is machine-bound, and only less CPU per event (anywhere) moves it (README Performance).
      const totalUs = r.cpuUs.workers + r.cpuUs.client + r.cpuUs.redis + r.cpuUs.redisChildren;
      if (totalUs > 0) console.log(`  CPU ceiling: ~${Math.round((cpus().length * 1e6) / totalUs)} events/s (${cpus().length} cores ÷ ${totalUs} µs per event in all); reached ${Math.round((100 * r.perSecond * totalUs) / (cpus().length * 1e6))} % of it`);
      if (r.redisCalls) console.log(`  Redis calls per event: ${Object.entries(r.redisCalls).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(', ')}`);
      if (r.redisUs) console.log(`  Redis µs per event by command: ${Object.entries(r.redisUs).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(', ')}`);
    }
    if (REPEAT > 1) {
      console.log(`\nmedians of ${REPEAT} rounds (events/s):`);
      const byName = new Map<string, number[]>();
      for (const r of results) {
        const name = r.name.replace(/ \(round \d+\)$/, '');
        byName.set(name, [...(byName.get(name) ?? []), r.perSecond]);
      }
      for (const [name, xs] of byName) {
        const sorted = [...xs].sort((a, b) => a - b);
        const m = Math.floor(sorted.length / 2);
        const med = sorted.length % 2 ? sorted[m]! : Math.round((sorted[m - 1]! + sorted[m]!) / 2);
        console.log(`${name.padEnd(w)}  ${String(med).padStart(9)}  (rounds: ${xs.join(', ')})`);
      }
    }
  }
  if (store) {
    const totalBytes = Object.values(store.bytes).reduce((a, b) => a + b, 0);
    console.log(`\n${store.members.toLocaleString('en')}-member room: ${store.events.toLocaleString('en')} events (${store.stateEvents.toLocaleString('en')} state events: ${MEMBERS} joins, then ${CHURN} membership changes among ${MESSAGES} messages) in ${store.seconds} s`);
    console.log(`state snapshots: ${store.snapshots.total.toLocaleString('en')}, of them written in full: ${store.snapshots.full}`);
    const w = Math.max(...Object.keys(store.bytes).map((k) => k.length), 10);
    console.log(`${'keys'.padEnd(w)}  ${'count'.padStart(8)}  ${'bytes'.padStart(12)}  ${'per event'.padStart(10)}  ${'per state ev'.padStart(12)}`);
    for (const [k, b] of Object.entries(store.bytes).sort((a, b) => b[1] - a[1])) {
      console.log(`${k.padEnd(w)}  ${String(store.keys[k]).padStart(8)}  ${b.toLocaleString('en').padStart(12)}  ${round(b / store.events).toLocaleString('en').padStart(10)}  ${round(b / store.stateEvents).toLocaleString('en').padStart(12)}`);
    }
    console.log(`${'total'.padEnd(w)}  ${''.padStart(8)}  ${totalBytes.toLocaleString('en').padStart(12)}  ${round(totalBytes / store.events).toLocaleString('en').padStart(10)}`);
  }
  const file = writeBenchResults((stamp) => `room-${stamp}.json`, { date: new Date().toISOString(), machine, roomVersion: ROOM_VERSION, seconds: SECONDS, concurrency: CONCURRENCY, throughput: results, storage: store });
  console.log(`\nload average at the end ${loadavg().map((l) => l.toFixed(2)).join(' ')}; written ${file}`);
  process.exit(0);
}

/** `--worker <id>`: a worker process holding shards and running the actors, without readers. */
async function workerMain(id: string): Promise<void> {
  const config = loadConfigOrExit();
  const redis = connectRedis(redisTargetFor(config));
  const keys = new KeySpace(config.redis.keyPrefix);
  const worker = new Worker({
    redis, keys, workerId: id, shardCounts: shardCountsFor(config),
    kinds: allActorKinds({ serverName: config.serverName, signingKey: loadOrCreateSigningKeys(config.signingKeyPath)[0]! }),
    leaseTtlMs: config.lease.ttlMs, renewMs: config.lease.renewMs, log: createLogger(config.logLevel, `worker-${id}`),
    notify: workerSyncNotify(redis, keys), outboxRetentionMs: SYNC_OUTBOX_RETENTION_MS,
  });
  onShutdown(async () => {
    await worker.stop();
    redis.disconnect();
  });
  await worker.start();
}

const workerId = argValue('--worker');
(workerId ? workerMain(workerId) : main()).catch((e) => {
  console.error(e);
  process.exit(1);
});
