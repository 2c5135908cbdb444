/**
 * `npm run bench:sliding-sync [-- --quick] [--no-synapse]`: simplified sliding sync figures (issue
 * 18 item 5), Axon beside Synapse 1.163.2 on the same data in the same run. Each server gets one
 * user in N rooms (each room: created with a name, then one message), N = 100, 1,000 and 5,000
 * (`--quick`: 50 and 300; BENCH_SS_ROOMS overrides, e.g. "100,1000"), rooms added to the same user
 * step by step (the 1,000-room user is the 100-room user with 900 more). At each N, on the unstable
 * path (`/_matrix/client/unstable/org.matrix.simplified_msc3575/sync`, which both serve):
 *
 *   first — a new connection (a fresh conn_id each time): list range [0, 19], timeline_limit 1,
 *           required_state m.room.name — BENCH_SS_SAMPLES times (default 15)
 *   incr  — one message in a room outside the first 20 (it moves to the top), then the
 *           connection's next answer (pos, timeout 0) — BENCH_SS_SAMPLES times
 *
 * and prints p50/p99 per server and N, and how long each server's setup took. Rooms are created
 * as fast as each server takes them honestly: createRoom with a name and nothing else (public_chat
 * preset: the fewest state events), many in flight (BENCH_SS_PARALLEL, default 24), every rate
 * limit off on both (Axon: AXON_RATE_LIMIT_ENABLED=false; Synapse: every rc_* out of reach), both
 * servers filled at the same time. Synapse runs on SQLite (the installation the tests use), its
 * database file on tmpfs (/dev/shm) so that its setup is not bound by fsyncs; Axon's Redis keeps
 * `appendfsync always` on disk.
 *
 * Axon: managed redis-server with `appendfsync always`, BENCH_WORKERS workers (2), one front,
 * BENCH_SHARDS shards (256), loopback. Writes bench-results/sliding-sync-<date>.json; asserts
 * nothing. BENCH_MAX_MINUTES (default 110) stops a run that has taken too long.
 */
import { rmSync } from 'node:fs';
import { startAxonBench, type AxonBench } from './lib/axon-bench-cluster';
import { percentile, pool, round, table, writeBenchResults } from './lib/bench-util';
import { C, MatrixLoad, type User } from './lib/matrix-load';
import { loopbackServerName, SYNAPSE_VERSION, startSynapse, synapseInstallation, type SynapsePeer } from './lib/synapse-peer';
import { createTestCa, type TestCa } from './lib/test-ca';

const args = process.argv.slice(2);
const QUICK = args.includes('--quick');
const NO_SYNAPSE = args.includes('--no-synapse');
const ROOM_COUNTS = (process.env.BENCH_SS_ROOMS ?? (QUICK ? '50,300' : '100,1000,5000')).split(',').map(Number);
const SAMPLES = Number(process.env.BENCH_SS_SAMPLES ?? (QUICK ? 7 : 15));
const PARALLEL = Number(process.env.BENCH_SS_PARALLEL ?? 24);
const WORKERS = Number(process.env.BENCH_WORKERS ?? 2);
const SHARDS = Number(process.env.BENCH_SHARDS ?? 256);
const MAX_MINUTES = Number(process.env.BENCH_MAX_MINUTES ?? 110);
const PATH = '/_matrix/client/unstable/org.matrix.simplified_msc3575/sync';
const BODY = { lists: { all: { ranges: [[0, 19]], timeline_limit: 1, required_state: [['m.room.name', '']] } } };

function log(msg: string): void {
  process.stderr.write(`[bench-sliding-sync ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

interface Side {
  name: string;
  m: MatrixLoad;
  user: User;
  rooms: string[];
  setupMs: number;
  seq: number;
}

async function ask(s: Side, connId: string, pos?: string): Promise<{ ms: number; bytes: number; body: Record<string, any> }> {
  const q = pos ? `?pos=${encodeURIComponent(pos)}&timeout=0` : '';
  const t = performance.now();
  const r = await s.m.request('POST', `${PATH}${q}`, { token: s.user.token, body: { ...BODY, conn_id: connId }, timeoutMs: 600_000 });
  const ms = performance.now() - t;
  if (r.status !== 200) throw new Error(`${s.name}: status ${r.status}: ${JSON.stringify(r.body).slice(0, 300)}`);
  return { ms, bytes: r.bytes, body: r.body as Record<string, any> };
}

/** Rooms until the side's user is in `n`; createRoom calls in flight at once, each followed by one message. */
async function fill(s: Side, n: number): Promise<void> {
  const t0 = performance.now();
  const start = s.rooms.length;
  await pool(
    Array.from({ length: n - start }, (_, i) => start + i),
    PARALLEL,
    async (i) => {
      // Straight to the endpoint (MatrixLoad.createRoom runs one at a time per user).
      const body = await s.m.ok('POST', `${C}/createRoom`, { token: s.user.token, body: { preset: 'public_chat', name: `room ${i}` }, timeoutMs: 300_000 });
      const roomId = body.room_id as string;
      await s.m.send(s.user, roomId, `hello ${i}`, 300_000);
      s.rooms.push(roomId);
    },
  );
  const ms = performance.now() - t0;
  s.setupMs += ms;
  log(`${s.name}: ${n - start} rooms created (now ${s.rooms.length}) in ${round(ms / 1000)} s (${round((n - start) / (ms / 1000))} rooms/s)`);
}

/** Until a first answer counts every room (Axon's membership index follows the outboxes). */
async function settle(s: Side): Promise<void> {
  for (let i = 0; i < 600; i++) {
    const r = await ask(s, `settle${s.seq++}`);
    if (r.body.lists?.all?.count >= s.rooms.length) return;
    await new Promise((res) => setTimeout(res, 200));
  }
  throw new Error(`${s.name}: the list never counted ${s.rooms.length} rooms`);
}

const rows: Record<string, unknown>[] = [];

async function measure(s: Side, n: number): Promise<void> {
  await settle(s);
  // First answers: a new connection each, the list's first 20 rooms.
  const firsts: number[] = [];
  let bytes = 0;
  for (let i = 0; i < SAMPLES; i++) {
    const r = await ask(s, `first${s.seq++}`);
    firsts.push(r.ms);
    bytes = r.bytes;
  }
  // Incremental: a settled connection; a message in an old room (outside the window: it moves
  // to the top, so the list's order changes), then the next answer.
  const conn = `inc${s.seq++}`;
  let pos = (await ask(s, conn)).body.pos as string;
  pos = (await ask(s, conn, pos)).body.pos as string;
  const incs: number[] = [];
  let moved = 0;
  for (let i = 0; i < SAMPLES; i++) {
    const roomId = s.rooms[(i * 7919) % Math.max(1, s.rooms.length - 40)]!;
    await s.m.send(s.user, roomId, `news ${i}`, 300_000);
    const r = await ask(s, conn, pos);
    incs.push(r.ms);
    if (r.body.lists?.all?.ops?.[0]?.room_ids?.[0] === roomId) moved++;
    pos = r.body.pos ?? pos;
  }
  const p = (xs: number[], q: number) => round(percentile([...xs].sort((a, b) => a - b), q));
  rows.push({ server: s.name, rooms: n, firstP50: p(firsts, 50), firstP99: p(firsts, 99), firstBytes: bytes, incP50: p(incs, 50), incP99: p(incs, 99), movedToTop: `${moved}/${SAMPLES}`, setupS: round(s.setupMs / 1000) });
  log(`${s.name} N=${n}: first p50 ${p(firsts, 50)} / p99 ${p(firsts, 99)} ms (${bytes} bytes); incremental p50 ${p(incs, 50)} / p99 ${p(incs, 99)} ms; the touched room first in ${moved}/${SAMPLES}`);
}

let axon = null as AxonBench | null;
let synapse = null as SynapsePeer | null;
let ca = null as TestCa | null;
const sides: Side[] = [];
const synapseDb = `/dev/shm/axon-bench-ss-synapse-${process.pid}.db`;

async function main(): Promise<void> {
  const hardStop = setTimeout(() => {
    log(`time limit of ${MAX_MINUTES} min reached: stopping`);
    void Promise.allSettled([axon?.stop(), synapse?.stop()]).finally(() => process.exit(2));
  }, MAX_MINUTES * 60_000);
  hardStop.unref();
  log(`room counts ${ROOM_COUNTS.join(', ')}; ${SAMPLES} samples each; ${PARALLEL} createRoom calls in flight per server`);
  axon = await startAxonBench({ workers: WORKERS, fronts: 1, shards: SHARDS, stderr: 'ignore', env: { AXON_RATE_LIMIT_ENABLED: 'false' } });
  const am = new MatrixLoad(axon.url);
  await am.waitUp(120_000);
  sides.push({ name: 'Axon', m: am, user: await am.register('ssbench'), rooms: [], setupMs: 0, seq: 0 });
  const install = NO_SYNAPSE ? null : synapseInstallation();
  if (install && !install.ok) log(`Synapse skipped: ${install.reason}`);
  if (install?.ok) {
    ca = createTestCa();
    const t = performance.now();
    synapse = await startSynapse({
      serverName: await loopbackServerName('127.0.0.236'),
      ca,
      logLevel: 'WARNING',
      configure: (c) => {
        // The /sync response cache would answer a repeated request from memory.
        c.caches = { ...(c.caches ?? {}), sync_response_cache_duration: 0 };
        // Its SQLite file on tmpfs: the setup (thousands of rooms through one SQLite writer) is
        // bound by fsyncs otherwise; the answers timed are reads either way.
        c.database = { name: 'sqlite3', args: { database: synapseDb } };
      },
    });
    log(`Synapse ${SYNAPSE_VERSION} up in ${round((performance.now() - t) / 1000)} s (SQLite, rate limits off)`);
    const sm = new MatrixLoad(synapse.baseUrl);
    const session = await synapse.registerUser('ssbench', 'ssbench password');
    sides.push({ name: `Synapse ${SYNAPSE_VERSION}`, m: sm, user: { userId: session.userId, token: session.token }, rooms: [], setupMs: 0, seq: 0 });
  }
  for (const n of ROOM_COUNTS) {
    // Both servers filled at once; measured one after the other (so neither is timed while the other is loaded).
    await Promise.all(sides.map((s) => fill(s, n)));
    for (const s of sides) await measure(s, n);
  }
  process.stdout.write(
    `\n${table(rows, ['server', 'rooms', 'firstP50', 'firstP99', 'firstBytes', 'incP50', 'incP99', 'movedToTop', 'setupS'], ['server', 'rooms', 'first p50 ms', 'first p99 ms', 'first bytes', 'incr p50 ms', 'incr p99 ms', 'moved to top', 'setup s (cumulative)'])}\n`,
  );
  const file = writeBenchResults((stamp) => `sliding-sync-${stamp}.json`, { meta: { date: new Date().toISOString(), quick: QUICK, samples: SAMPLES, parallel: PARALLEL, workers: WORKERS, shards: SHARDS, redisAppendfsync: 'always', synapse: synapse ? `${SYNAPSE_VERSION} (SQLite)` : null }, rows });
  process.stdout.write(`\nJSON: ${file}\n`);
}

let exitCode = 0;
try {
  await main();
} catch (err) {
  exitCode = 1;
  log(`failed: ${(err as Error).stack ?? err}`);
  if (rows.length) process.stdout.write(`\npartial:\n${JSON.stringify(rows, null, 1)}\n`);
} finally {
  await Promise.allSettled([axon?.stop(), synapse?.stop()]);
  for (const s of sides) s.m.close();
  ca?.cleanup();
  for (const suffix of ['', '-wal', '-shm', '-journal']) rmSync(`${synapseDb}${suffix}`, { force: true });
}
process.exit(exitCode);
