/**
 * `npm run bench:runtime`: throughput and latency of the actor runtime — client → shard inbox →
 * worker → LedgerActor → commit (fenced, deduped, outbox entry) → reply stream → client — with
 * 1 and 2 worker processes, printed beside the same round trip done with bare XADD/XREADGROUP/
 * XACK on the same Redis in the same run (the ratio is the figure). A script, not a test.
 *
 * Options (env): BENCH_SECONDS (per phase, default 5), BENCH_CONCURRENCY (requests in flight,
 * default 200), BENCH_ACTORS (default 1000), BENCH_SHARDS (per family, default 256), BENCH_FSYNC
 * (redis appendfsync: always, as Axon runs it, or everysec to see what fsync costs), BENCH_CPU_PROF
 * (a directory: the workers write V8 CPU profiles there), BENCH_REDIS_STATS=1 (each phase's Redis
 * commands per message, from INFO commandstats, and the bytes per message in and out of Redis and
 * appended to its AOF), BENCH_REPEAT (default 1: the three phases run that many times in turn,
 * each runtime phase's ratio taken against the raw phase of its own round, then the medians — on
 * a machine whose speed drifts from one minute to the next, as this one's does, one round is not
 * a figure).
 *
 * Each phase also prints the CPU time per message of the workers (or the raw consumer's side: it
 * runs in this process), of this process, and of Redis (with "(+N)" its AOF-rewrite children that
 * ended in the phase): on a machine shared with other work the msg/s move with the load, the CPU
 * per message much less, so before/after pairs compare by it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { ActorClient } from '../src/runtime/actor-client';
import { startManagedRedis } from '../src/runtime/managed-redis';
import { readWorkers, readShards } from '../src/runtime/cluster-admin';
import { KeySpace } from '../src/store/keys';
import { connectRedis, duplicateClient } from '../src/store/redis';
import { createServer } from 'node:net';
import { killOnExit, writeBenchResults } from './lib/bench-util';
import { cpuSeconds } from './lib/proc-stats';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 200);
const ACTORS = Number(process.env.BENCH_ACTORS ?? 1000);
const SHARDS = Number(process.env.BENCH_SHARDS ?? 256);
/** `always` is what Axon's managed Redis runs with (durable before acknowledged). */
const FSYNC = process.env.BENCH_FSYNC ?? 'always';
const REPEAT = Math.max(1, Number(process.env.BENCH_REPEAT ?? 1));
const root = join(import.meta.dirname, '..');

interface Result {
  name: string;
  messages: number;
  seconds: number;
  perSecond: number;
  p50ms: number;
  p99ms: number;
  /**
   * CPU time per message (µs): the worker processes, this process, Redis, and Redis's ended
   * children (its AOF rewrites, forked), which INFO cpu counts apart.
   */
  cpuUs?: { workers: number; client: number; redis: number; redisChildren: number };
  /** Redis calls per message by command (BENCH_REDIS_STATS=1). */
  redisCalls?: Record<string, number>;
  /** Redis CPU µs per message by command, as INFO commandstats counts it (BENCH_REDIS_STATS=1; a script's commands count in both). */
  redisUs?: Record<string, number>;
  /** Bytes per message into and out of Redis (all clients) and appended to its AOF (BENCH_REDIS_STATS=1). */
  redisBytes?: { in: number; out: number; aof: number };
}

/** A process's CPU time so far (ms), from /proc (Linux; 0 once it is gone). */
const procCpuMs = (pid: number): number => (cpuSeconds(pid) ?? 0) * 1000;

/** CPU and command counters around a phase: `measure(pids)` before, `.done(messages)` after. */
async function measure(redis: ReturnType<typeof connectRedis>, pids: number[]): Promise<{ done(r: Result): Promise<Result> }> {
  const redisCpu = async () => {
    const info = await redis.info('cpu');
    const get = (k: string) => Number(new RegExp(`^${k}:([\\d.]+)`, 'm').exec(info)?.[1] ?? 0);
    return { own: (get('used_cpu_sys') + get('used_cpu_user')) * 1000, children: (get('used_cpu_sys_children') + get('used_cpu_user_children')) * 1000 };
  };
  const calls = async () => {
    const out = new Map<string, { calls: number; usec: number }>();
    for (const m of (await redis.info('commandstats')).matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) out.set(m[1]!, { calls: Number(m[2]), usec: Number(m[3]) });
    return out;
  };
  const bytes = async () => {
    const info = (await redis.info('stats')) + (await redis.info('persistence'));
    const get = (k: string) => Number(new RegExp(`^${k}:(\\d+)`, 'm').exec(info)?.[1] ?? 0);
    return { in: get('total_net_input_bytes'), out: get('total_net_output_bytes'), aof: get('aof_current_size') };
  };
  const stats = process.env.BENCH_REDIS_STATS === '1';
  const callsBefore = stats ? await calls() : null;
  const bytesBefore = stats ? await bytes() : null;
  const before = { workers: pids.reduce((a, p) => a + procCpuMs(p), 0), client: process.cpuUsage(), redis: await redisCpu() };
  return {
    async done(r) {
      const client = process.cpuUsage(before.client);
      const workersMs = pids.reduce((a, p) => a + procCpuMs(p), 0) - before.workers;
      const redisAfter = await redisCpu();
      const n = Math.max(1, r.messages);
      const perMessage = (ms: number) => Math.round((ms * 1000) / n);
      r.cpuUs = {
        workers: perMessage(workersMs),
        client: Math.round((client.user + client.system) / n),
        redis: perMessage(redisAfter.own - before.redis.own),
        redisChildren: perMessage(redisAfter.children - before.redis.children),
      };
      if (bytesBefore) {
        const b = await bytes();
        r.redisBytes = { in: Math.round((b.in - bytesBefore.in) / n), out: Math.round((b.out - bytesBefore.out) / n), aof: Math.round((b.aof - bytesBefore.aof) / n) };
      }
      if (callsBefore) {
        r.redisCalls = {};
        r.redisUs = {};
        for (const [cmd, k] of await calls()) {
          const d = k.calls - (callsBefore.get(cmd)?.calls ?? 0);
          if (d > 0) r.redisCalls[cmd] = Math.round((d / n) * 100) / 100;
          const u = k.usec - (callsBefore.get(cmd)?.usec ?? 0);
          if (u > 0) r.redisUs[cmd] = Math.round((u / n) * 10) / 10;
        }
      }
      return r;
    },
  };
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** Closed loop: keep `CONCURRENCY` requests in flight for SECONDS, record each latency. */
async function closedLoop(name: string, send: (i: number) => Promise<unknown>): Promise<Result> {
  const latencies: number[] = [];
  let i = 0;
  const started = performance.now();
  const end = started + SECONDS * 1000;
  const lane = async () => {
    while (performance.now() < end) {
      const t = performance.now();
      await send(i++);
      latencies.push(performance.now() - t);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, lane));
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return { name, messages: latencies.length, seconds, perSecond: Math.round(latencies.length / seconds), p50ms: round(percentile(latencies, 50)), p99ms: round(percentile(latencies, 99)) };
}

const round = (n: number) => Math.round(n * 100) / 100;

/** The bare-stream equivalent of one actor round trip: XADD → XREADGROUP → XACK + XADD reply → XREAD. */
async function rawBaseline(url: string): Promise<Result> {
  const redis = connectRedis({ url });
  const consumer = duplicateClient(redis);
  const replyReader = duplicateClient(redis);
  const inbox = 'bench:raw:{in}';
  const replies = 'bench:raw:{out}';
  await redis.del(inbox, replies);
  await redis.xgroup('CREATE', inbox, 'g', '0', 'MKSTREAM');
  let running = true;
  const consume = (async () => {
    while (running) {
      const res = (await consumer.xreadgroup('GROUP', 'g', 'c', 'COUNT', 200, 'BLOCK', 100, 'STREAMS', inbox, '>')) as [string, [string, string[]][]][] | null;
      if (!res) continue;
      const entries = res[0]![1];
      const p = consumer.pipeline();
      for (const [id, fields] of entries) {
        p.xack(inbox, 'g', id);
        p.xadd(replies, 'MAXLEN', '~', 10000, '*', 'mid', fields[1]!);
      }
      await p.exec();
    }
  })();
  const waiters = new Map<string, () => void>();
  let last = '$';
  const read = (async () => {
    while (running) {
      const res = (await replyReader.xread('COUNT', 1000, 'BLOCK', 100, 'STREAMS', replies, last)) as [string, [string, string[]][]][] | null;
      if (!res) continue;
      for (const [id, fields] of res[0]![1]) {
        last = id;
        const w = waiters.get(fields[1]!);
        if (w) {
          waiters.delete(fields[1]!);
          w();
        }
      }
    }
  })();
  await new Promise((r) => setTimeout(r, 50));
  const m = await measure(redis, []);
  const result = await closedLoop('raw XADD → XREADGROUP → XACK+XADD → XREAD', (i) => {
    const mid = `m${i}`;
    const done = new Promise<void>((resolve) => waiters.set(mid, resolve));
    void redis.xadd(inbox, '*', 'mid', mid, 'b', 'x'.repeat(60));
    return done;
  });
  await m.done(result);
  running = false;
  await Promise.all([consume, read]);
  for (const c of [redis, consumer, replyReader]) c.disconnect();
  return result;
}

function spawnWorker(env: Record<string, string>, id: string): ChildProcess {
  // BENCH_CPU_PROF=<dir>: each worker writes a V8 CPU profile there when it exits (where its time goes).
  const prof = process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : [];
  return killOnExit(spawn(process.execPath, [...prof, '--import', 'tsx', 'src/worker-main.ts', '--id', id], { cwd: root, env: { ...process.env, ...env }, stdio: 'ignore' }));
}

async function stopWorker(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null) return;
  const exited = new Promise((r) => p.once('exit', r));
  p.kill('SIGTERM');
  await exited;
}

async function runtimePhase(url: string, workers: number, prefix: string): Promise<Result> {
  const env = { AXON_REDIS_MODE: 'url', AXON_REDIS_URL: url, AXON_REDIS_KEY_PREFIX: prefix, AXON_ROOM_SHARDS: String(SHARDS), AXON_USER_SHARDS: String(SHARDS), AXON_LOG_LEVEL: 'warn', AXON_DATA_DIR: tmpdir() };
  const keys = new KeySpace(prefix);
  const admin = connectRedis({ url });
  const procs = Array.from({ length: workers }, (_, i) => spawnWorker(env, `bench-w${i + 1}`));
  // Wait for every worker and every shard to be held, then even out (as `cluster up` does).
  for (;;) {
    const live = (await readWorkers(admin, keys, 5000)).filter((w) => w.alive).length;
    const held = (await readShards(admin, keys, { room: SHARDS, user: SHARDS })).filter((s) => s.owner).length;
    if (live === workers && held === 2 * SHARDS) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  if (workers > 1) {
    const { rebalance } = await import('../src/runtime/cluster-admin');
    await rebalance(admin, keys, { room: SHARDS, user: SHARDS }, 5000);
  }
  const client = new ActorClient(connectRedis({ url }), keys, { room: SHARDS, user: SHARDS });
  await client.start();
  const seqs = new Array<number>(ACTORS).fill(0);
  // Warm up (JIT, actor state loads), then measure.
  await Promise.all(Array.from({ length: ACTORS }, (_, a) => client.ask('user', 'ledger', `@bench${a}:example.org`, { op: 'append', producer: 'b', seq: ++seqs[a]!, value: 1 })));
  const m = await measure(admin, procs.map((p) => p.pid!));
  const result = await closedLoop(`actor runtime, ${workers} worker${workers > 1 ? 's' : ''}`, (i) => {
    const a = i % ACTORS;
    return client.ask('user', 'ledger', `@bench${a}:example.org`, { op: 'append', producer: 'b', seq: ++seqs[a]!, value: 1 }, { timeoutMs: 60_000 });
  });
  await m.done(result);
  // Check the figures mean something: everything applied exactly once, in order.
  let total = 0;
  let outOfOrder = 0;
  for (let a = 0; a < ACTORS; a += Math.max(1, Math.floor(ACTORS / 50))) {
    const s = await client.ask<{ count: number; outOfOrder: number }>('user', 'ledger', `@bench${a}:example.org`, { op: 'read' });
    if (s.count !== seqs[a]) throw new Error(`actor ${a}: ${s.count} applied, ${seqs[a]} sent`);
    total += s.count;
    outOfOrder += s.outOfOrder;
  }
  if (outOfOrder) throw new Error(`${outOfOrder} messages applied out of order`);
  await client.close();
  await Promise.all(procs.map(stopWorker));
  admin.disconnect();
  void total;
  return result;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/** Per path (raw, 1 worker, 2 workers): the median msg/s over the rounds and the median of the rounds' ratios. */
function medianRows(rounds: { raw: Result; runtime: Result[] }[], ratio: Map<Result, number>): { name: string; perSecond: number; ratio: number }[] {
  const paths = [rounds.map((r) => r.raw), ...rounds[0]!.runtime.map((_, i) => rounds.map((r) => r.runtime[i]!))];
  return paths.map((rs) => ({
    name: rs[0]!.name.replace(/ \(round \d+\)$/, ''),
    perSecond: Math.round(median(rs.map((r) => r.perSecond))),
    ratio: median(rs.map((r) => ratio.get(r)!)),
  }));
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'axon-bench-'));
  const redis = await startManagedRedis({ dir, port: await freePort(), extraArgs: ['--appendfsync', FSYNC] });
  const machine = `${cpus()[0]?.model ?? 'CPU'} × ${cpus().length}, node ${process.version}`;
  console.log(`Axon runtime benchmark — ${new Date().toISOString()} — ${machine} — load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  console.log(`redis-server with AOF, appendfsync ${FSYNC}; ${SECONDS}s per phase, ${CONCURRENCY} in flight, ${ACTORS} actors, ${SHARDS} shards per family\n`);
  // One round: raw, then the runtime with 1 and 2 workers; each runtime phase is compared with the
  // raw phase of its own round.
  const rounds: { raw: Result; runtime: Result[] }[] = [];
  try {
    for (let round = 1; round <= REPEAT; round++) {
      const tag = REPEAT > 1 ? ` (round ${round})` : '';
      const raw = await rawBaseline(redis.url);
      raw.name += tag;
      const runtime: Result[] = [];
      for (const workers of [1, 2]) {
        const r = await runtimePhase(redis.url, workers, REPEAT > 1 ? `bench${workers}r${round}:` : `bench${workers}:`);
        r.name += tag;
        runtime.push(r);
      }
      rounds.push({ raw, runtime });
    }
  } finally {
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  const results = rounds.flatMap((r) => [r.raw, ...r.runtime]);
  const ratio = new Map<Result, number>(rounds.flatMap((r) => [[r.raw, 1] as const, ...r.runtime.map((x) => [x, x.perSecond / r.raw.perSecond] as const)]));
  const w = Math.max(...results.map((r) => r.name.length));
  console.log(`${'path'.padEnd(w)}  ${'msg/s'.padStart(8)}  ${'p50 ms'.padStart(8)}  ${'p99 ms'.padStart(8)}  ${'vs raw'.padStart(7)}  CPU µs/msg: workers / this process / redis (+ its AOF rewrites)`);
  for (const r of results) {
    console.log(`${r.name.padEnd(w)}  ${String(r.perSecond).padStart(8)}  ${r.p50ms.toFixed(2).padStart(8)}  ${r.p99ms.toFixed(2).padStart(8)}  ${ratio.get(r)!.toFixed(2).padStart(7)}  ${r.cpuUs ? `${r.cpuUs.workers} / ${r.cpuUs.client} / ${r.cpuUs.redis} (+${r.cpuUs.redisChildren})` : ''}`);
    if (r.redisCalls) console.log(`  Redis calls per message: ${Object.entries(r.redisCalls).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(', ')}`);
    if (r.redisBytes) console.log(`  Redis bytes per message: in ${r.redisBytes.in}, out ${r.redisBytes.out}, AOF ${r.redisBytes.aof}`);
    if (r.redisUs) console.log(`  Redis µs per message by command: ${Object.entries(r.redisUs).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  }
  const medians = REPEAT > 1 ? medianRows(rounds, ratio) : undefined;
  if (medians) {
    console.log(`\nmedians of ${REPEAT} rounds (msg/s; ratio: the median of each round's ratio to its own raw phase):`);
    for (const m of medians) console.log(`${m.name.padEnd(w)}  ${String(m.perSecond).padStart(8)}  ${' '.repeat(18)}  ${m.ratio.toFixed(2).padStart(7)}`);
  }
  const file = writeBenchResults((stamp) => `runtime-${stamp}.json`, { date: new Date().toISOString(), machine, seconds: SECONDS, concurrency: CONCURRENCY, actors: ACTORS, shards: SHARDS, repeat: REPEAT, results, ...(medians ? { medians } : {}) });
  console.log(`\nload average at the end ${loadavg().map((l) => l.toFixed(2)).join(' ')}; written ${file}`);
  process.exit(0);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
