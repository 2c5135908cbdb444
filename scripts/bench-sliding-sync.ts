/**
 * `npm run bench:sliding-sync`: simplified sliding sync figures (issue 18 item 5), Axon only for
 * now (Synapse 1.163.2 beside it on the same data is still to come). Starts its own Axon (managed
 * redis-server with `appendfsync always`, worker and front processes, loopback, rate limits off),
 * gives one user N rooms (one message each), and times on the unstable path:
 *
 *   first  — a new connection: list range [0, 19], timeline_limit 1, required_state m.room.name
 *   incr   — the next answer after one new message in one room (pos, timeout 0)
 *
 * Prints a table, writes bench-results/sliding-sync-<date>.json; asserts nothing. Env knobs:
 * BENCH_SS_ROOMS (default "100,1000"; e.g. "100,1000,5000"), BENCH_WORKERS (2), BENCH_SHARDS
 * (256), BENCH_SETUP_SECONDS (time box per room count, 300), BENCH_MAX_MINUTES (20).
 */
import { startAxonBench, type AxonBench } from './lib/axon-bench-cluster';
import { pool, round, table, writeBenchResults } from './lib/bench-util';
import { MatrixLoad, type User } from './lib/matrix-load';

const ROOM_COUNTS = (process.env.BENCH_SS_ROOMS ?? '100,1000').split(',').map(Number);
const WORKERS = Number(process.env.BENCH_WORKERS ?? 2);
const SHARDS = Number(process.env.BENCH_SHARDS ?? 256);
const SETUP_SECONDS = Number(process.env.BENCH_SETUP_SECONDS ?? 300);
const MAX_MINUTES = Number(process.env.BENCH_MAX_MINUTES ?? 20);
const PATH = '/_matrix/client/unstable/org.matrix.simplified_msc3575/sync';
const BODY = { lists: { all: { ranges: [[0, 19]], timeline_limit: 1, required_state: [['m.room.name', '']] } } };

function log(msg: string): void {
  process.stderr.write(`[bench-sliding-sync ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

let axon = null as AxonBench | null;
let m = null as unknown as MatrixLoad;
const rows: Record<string, unknown>[] = [];

async function timed(u: User, query: string): Promise<{ ms: number; bytes: number; body: Record<string, any> }> {
  const t = performance.now();
  const r = await m.request('POST', `${PATH}${query}`, { token: u.token, body: BODY, timeoutMs: 300_000 });
  const ms = performance.now() - t;
  if (r.status !== 200) throw new Error(`status ${r.status}: ${JSON.stringify(r.body)}`);
  return { ms, bytes: r.bytes, body: r.body as Record<string, any> };
}

async function benchRooms(n: number, seq: number): Promise<void> {
  const u = await m.register(`ss${seq}`);
  const deadline = performance.now() + SETUP_SECONDS * 1000;
  const rooms: string[] = [];
  const t0 = performance.now();
  await pool(Array.from({ length: n }), 16, async (_, i) => {
    const roomId = await m.createRoom(u, { name: `room ${i}` });
    await m.send(u, roomId, `hello ${i}`);
    rooms.push(roomId);
  }, deadline);
  log(`${rooms.length} rooms in ${round((performance.now() - t0) / 1000)} s`);
  // The membership index follows the rooms' outboxes: wait until it lists them all.
  let first = await timed(u, '');
  for (let i = 0; i < 600 && first.body.lists.all.count < rooms.length; i++) first = await timed(u, '');
  const firsts: number[] = [];
  for (let i = 0; i < 3; i++) firsts.push((await timed(u, '')).ms);
  // Incremental: a settled connection, then one message.
  let pos = (await timed(u, '')).body.pos as string;
  pos = (await timed(u, `?pos=${encodeURIComponent(pos)}&timeout=0`)).body.pos;
  const incs: number[] = [];
  for (let i = 0; i < 3; i++) {
    await m.send(u, rooms[i % rooms.length]!, `news ${i}`);
    const r = await timed(u, `?pos=${encodeURIComponent(pos)}&timeout=0`);
    incs.push(r.ms);
    pos = r.body.pos;
  }
  const med = (xs: number[]) => round([...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!);
  rows.push({ server: 'axon', rooms: rooms.length, firstMs: med(firsts), firstBytes: first.bytes, incrementalMs: med(incs) });
  log(`N=${rooms.length}: first ${med(firsts)} ms (${first.bytes} bytes), incremental ${med(incs)} ms`);
}

async function main(): Promise<void> {
  const hardStop = setTimeout(() => {
    log(`time limit of ${MAX_MINUTES} min reached: stopping`);
    void (axon?.stop() ?? Promise.resolve()).finally(() => process.exit(2));
  }, MAX_MINUTES * 60_000);
  hardStop.unref();
  axon = await startAxonBench({ workers: WORKERS, fronts: 1, shards: SHARDS });
  m = new MatrixLoad(axon.url);
  await m.waitUp(60_000);
  await m.register('warm');
  let seq = 0;
  for (const n of ROOM_COUNTS) await benchRooms(n, seq++);
  process.stdout.write(`\n${table(rows, ['server', 'rooms', 'firstMs', 'firstBytes', 'incrementalMs'], ['server', 'rooms', 'first answer (ms, median of 3)', 'bytes', 'incremental (ms, median of 3)'])}\n`);
  const file = writeBenchResults((stamp) => `sliding-sync-${stamp}.json`, { meta: { date: new Date().toISOString(), workers: WORKERS, shards: SHARDS, redisAppendfsync: 'always' }, rows });
  process.stdout.write(`\nJSON: ${file}\n`);
}

let exitCode = 0;
try {
  await main();
} catch (err) {
  exitCode = 1;
  log(`failed: ${(err as Error).stack ?? err}`);
} finally {
  await axon?.stop();
  (m as MatrixLoad | null)?.close();
}
process.exit(exitCode);
