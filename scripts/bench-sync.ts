/**
 * `npm run bench:sync`: /sync figures (issue 6 item 6). Starts its own Axon on this machine — a
 * managed redis-server in a temp dir (AOF on, `appendfsync always`, as production), worker
 * processes and one front process (`node --import tsx src/{worker,front}-main.ts`), loopback only,
 * rate limits off — drives it over HTTP (keep-alive `http.Agent`), prints a table and writes JSON to
 * bench-results/sync-<date>.json. A script, not a test: it prints figures and asserts nothing.
 *
 *   (d) idle long-polls: front RSS growth per waiting /sync request (VmRSS of the front process)
 *   (a) 200 users in 20 rooms (80/20 skew), everyone long-polling; senders at rising rates until
 *       p99 send→sync delivery > 1 s or the top rate
 *   (b) one room with up to 1,000 syncing members, a sender at 10 then 50 msg/s
 *   (c) initial sync time and bytes for one user in N rooms (20 state events + 50 messages each),
 *       with and without `lazy_load_members`
 *
 * Env knobs: BENCH_SCALE (multiplies user/room/poll counts, default 1), BENCH_PHASE_SECONDS
 * (default 10), BENCH_RATES (default "20,50,100,200"), BENCH_WORKERS (default 2), BENCH_SHARDS
 * (per family, default 256), BENCH_B_USERS (default 1000), BENCH_C_ROOMS (default 1500),
 * BENCH_SETUP_SECONDS (time box for (b) and (c) setup each, default 120), BENCH_IDLE_POLLS (default
 * 2000), BENCH_ONLY (e.g. "a,d"). The whole run stops itself after BENCH_MAX_MINUTES (default 15).
 */
import { startAxonBench, type AxonBench } from './lib/axon-bench-cluster';
import { pool, round, sleep, table, writeBenchResults } from './lib/bench-util';
import { C, Deliveries, MatrixLoad, enc, newAgent, ratePhase as runRatePhase, startSyncLoops as runSyncLoops, type RatePhase, type SendPick, type User } from './lib/matrix-load';
import { cpuSeconds, rssKb } from './lib/proc-stats';
import { loadavg } from 'node:os';

const SCALE = Number(process.env.BENCH_SCALE ?? 1);
const PHASE_SECONDS = Number(process.env.BENCH_PHASE_SECONDS ?? 10);
const RATES = (process.env.BENCH_RATES ?? '20,50,100,200').split(',').map(Number);
const WORKERS = Number(process.env.BENCH_WORKERS ?? 2);
const SHARDS = Number(process.env.BENCH_SHARDS ?? 256);
const B_USERS = Math.max(2, Math.round(Number(process.env.BENCH_B_USERS ?? 1000) * SCALE));
const C_ROOMS = Math.max(1, Math.round(Number(process.env.BENCH_C_ROOMS ?? 1500) * SCALE));
const SETUP_SECONDS = Number(process.env.BENCH_SETUP_SECONDS ?? 120);
const IDLE_POLLS = Math.max(10, Math.round(Number(process.env.BENCH_IDLE_POLLS ?? 2000) * SCALE));
const A_USERS = Math.max(20, Math.round(200 * SCALE));
const ONLY = new Set((process.env.BENCH_ONLY ?? 'a,b,c,d').split(','));
const MAX_MINUTES = Number(process.env.BENCH_MAX_MINUTES ?? 15);
const P99_LIMIT_MS = 1000;

function log(msg: string): void {
  process.stderr.write(`[bench-sync ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

// ---- the server and its client ---------------------------------------------------------------

let axon = null as AxonBench | null;
let m = null as unknown as MatrixLoad;
const deliveries = new Deliveries();

let userSeq = 0;
/** Registers without a password: no scrypt, so setup measures the server, not the KDF. */
const register = (prefix: string): Promise<User> => m.register(`${prefix}${userSeq++}`);
const request: MatrixLoad['request'] = (...a) => m.request(...a);
const ok: MatrixLoad['ok'] = (...a) => m.ok(...a);
const createRoom = (u: User, extra: Record<string, unknown> = {}) => m.createRoom(u, extra);
const joinRoom = (u: User, roomId: string) => m.join(u, roomId);
const sendMessage = (u: User, roomId: string, body: string) => m.send(u, roomId, body);
const initialSince = (u: User) => m.initialSince(u);
const startSyncLoops = (users: User[], sinces: string[], agent: ReturnType<typeof newAgent>) => runSyncLoops(m, users, sinces, deliveries, agent);
const ratePhase = (rate: number, pick: () => SendPick) => runRatePhase(m, deliveries, rate, PHASE_SECONDS, pick);

// ---- the benchmarks --------------------------------------------------------------------------

const results: Record<string, unknown> = {};

const IDLE_FILTER = enc(JSON.stringify({ presence: { types: [] } }));

async function benchIdlePolls(frontPid: number): Promise<void> {
  log(`(d) ${IDLE_POLLS} idle long-polls (timeout 60 s)`);
  const users = await pool(Array.from({ length: 20 }), 10, () => register('idle'));
  const sinces = await pool(users, 10, (u) => initialSince(u));
  // Warm the front's sync path (JIT, buffers) before the baseline.
  const warm = newAgent(200);
  await pool(Array.from({ length: 400 }), 100, (_x, i) => request('GET', `${C}/sync?since=${enc(sinces[i % 20]!)}&timeout=0`, { token: users[i % 20]!.token, agent: warm }));
  warm.destroy();
  await sleep(2000);
  const agent = newAgent(IDLE_POLLS + 10);
  const before = rssKb(frontPid);
  let returned = 0;
  const steps: { open: number; rssKb: number }[] = [{ open: 0, rssKb: before }];
  const polls: Promise<void>[] = [];
  const t0 = performance.now();
  const half = Math.floor(IDLE_POLLS / 2);
  for (let i = 0; i < IDLE_POLLS; i++) {
    const u = i % users.length;
    polls.push(
      // Presence filtered out: the users' own presence went online with their first sync, and an
      // answer carrying it would end these polls (they are meant to stay idle).
      request('GET', `${C}/sync?since=${enc(sinces[u]!)}&timeout=60000&filter=${IDLE_FILTER}`, { token: users[u]!.token, agent })
        .then(() => {
          returned++;
        })
        .catch(() => undefined),
    );
    if (i % 200 === 199) await sleep(20);
    if (i + 1 === half) {
      await sleep(3000);
      steps.push({ open: half, rssKb: rssKb(frontPid) });
    }
  }
  const openSeconds = (performance.now() - t0) / 1000;
  await sleep(5000);
  const after = rssKb(frontPid);
  steps.push({ open: IDLE_POLLS, rssKb: after });
  const stillWaiting = IDLE_POLLS - returned;
  agent.destroy();
  await Promise.all(polls);
  await sleep(3000);
  const released = rssKb(frontPid);
  const perPollKb = (after - before) / Math.max(1, stillWaiting);
  results.d_idle_long_polls = { polls: IDLE_POLLS, stillWaitingAtMeasure: stillWaiting, openSeconds: round(openSeconds, 2), frontRssBeforeKb: before, frontRssAfterKb: after, frontRssAfterReleaseKb: released, rssGrowthPerPollKb: round(perPollKb, 2), steps };
  log(`(d) RSS ${before} → ${after} kB with ${stillWaiting} waiting: ${round(perPollKb, 2)} kB per long-poll`);
}

async function benchRooms(): Promise<void> {
  const t0 = performance.now();
  log(`(a) registering ${A_USERS} users`);
  const users = await pool(Array.from({ length: A_USERS }), 32, () => register('a'));
  // 4 big rooms: every user in one (u % 4). 16 small rooms: 3 members each (~80/20 of memberships).
  const bigCount = 4;
  const smallCount = 16;
  const smallSize = Math.max(2, Math.round(A_USERS / 4 / smallCount));
  const rooms: { id: string; members: User[] }[] = [];
  for (let r = 0; r < bigCount; r++) rooms.push({ id: '', members: users.filter((_u, i) => i % bigCount === r) });
  for (let r = 0; r < smallCount; r++) rooms.push({ id: '', members: Array.from({ length: smallSize }, (_x, k) => users[(r * smallSize + k * 7) % A_USERS]!).filter((u, k, a) => a.indexOf(u) === k) });
  await pool(rooms, 20, async (room) => {
    room.id = await createRoom(room.members[0]!);
  });
  const joins = rooms.flatMap((room) => room.members.slice(1).map((u) => ({ u, room })));
  await pool(joins, 32, ({ u, room }) => joinRoom(u, room.id));
  const sinces = await pool(users, 32, (u) => initialSince(u));
  const setupSeconds = (performance.now() - t0) / 1000;
  const memberships = rooms.reduce((s, r) => s + r.members.length, 0);
  const bigMemberships = rooms.slice(0, bigCount).reduce((s, r) => s + r.members.length, 0);
  log(`(a) setup ${round(setupSeconds)} s: ${A_USERS} users, ${rooms.length} rooms, ${memberships} memberships (${round((100 * bigMemberships) / memberships)} % in ${bigCount} rooms)`);
  const poller = startSyncLoops(users, sinces, newAgent(A_USERS + 10));
  await sleep(1500);
  // Traffic skew matches membership skew: 80 % of messages to the big rooms.
  const pick = () => {
    const room = Math.random() < 0.8 ? rooms[Math.floor(Math.random() * bigCount)]! : rooms[bigCount + Math.floor(Math.random() * smallCount)]!;
    return { user: room.members[Math.floor(Math.random() * room.members.length)]!, roomId: room.id, members: room.members.length };
  };
  const phases: RatePhase[] = [];
  for (const rate of RATES) {
    log(`(a) ${rate} msg/s for ${PHASE_SECONDS} s`);
    const p = await ratePhase(rate, pick);
    phases.push(p);
    log(`(a) ${rate} msg/s: sent ${p.sendRate}/s, delivery p50 ${p.deliveryP50ms} ms p99 ${p.deliveryP99ms} ms, ${p.deliveryRate} deliveries/s, missing ${p.missing}`);
    if (!(p.deliveryP99ms <= P99_LIMIT_MS)) break;
  }
  const syncErrors = poller.errors();
  await poller.stop();
  results.a_rooms = { users: A_USERS, rooms: rooms.length, roomSizes: rooms.map((r) => r.members.length), memberships, bigRoomShare: round(bigMemberships / memberships, 3), setupSeconds: round(setupSeconds, 1), syncErrors, phases };
}

async function benchBigRoom(): Promise<void> {
  const t0 = performance.now();
  const deadline = t0 + SETUP_SECONDS * 1000;
  log(`(b) registering up to ${B_USERS} users and joining one room (time box ${SETUP_SECONDS} s)`);
  const owner = await register('b');
  const roomId = await createRoom(owner);
  const members: User[] = [owner];
  let registerSeconds = 0;
  const regStart = performance.now();
  const users = (await pool(Array.from({ length: B_USERS - 1 }), 64, () => register('b'), t0 + SETUP_SECONDS * 500)).filter(Boolean);
  registerSeconds = (performance.now() - regStart) / 1000;
  const joinStart = performance.now();
  await pool(users, 64, async (u) => {
    await joinRoom(u, roomId);
    members.push(u);
  }, deadline);
  const joinSeconds = (performance.now() - joinStart) / 1000;
  const sinces = await pool(members, 64, (u) => initialSince(u));
  const setupSeconds = (performance.now() - t0) / 1000;
  log(`(b) setup ${round(setupSeconds)} s: ${members.length} members (register ${round(registerSeconds)} s for ${users.length + 1}, join ${round(joinSeconds)} s)`);
  const poller = startSyncLoops(members, sinces, newAgent(members.length + 10));
  await sleep(2000);
  const phases: (RatePhase & { cpuMsPerDelivery: Record<string, number> })[] = [];
  // CPU per delivered message for each part of the server: robust to a busy machine in a way
  // latencies are not (contention inflates it a little, but does not turn waiting into cost).
  const roles = (): Record<string, number[]> => ({ front: axon!.frontPids, workers: axon!.workerPids, redis: [axon!.redisPid] });
  const cpu = () => Object.fromEntries(Object.entries(roles()).map(([role, pids]) => [role, pids.reduce((a, pid) => a + (cpuSeconds(pid) ?? 0), 0)]));
  for (const rate of [10, 50]) {
    log(`(b) ${rate} msg/s for ${PHASE_SECONDS} s to ${members.length} members`);
    const before = cpu();
    const p = await ratePhase(rate, () => ({ user: members[Math.floor(Math.random() * members.length)]!, roomId, members: members.length }));
    const after = cpu();
    const cpuMsPerDelivery = Object.fromEntries(Object.keys(after).map((role) => [role, round(((after[role]! - before[role]!) * 1000) / Math.max(1, p.deliveries), 3)]));
    phases.push({ ...p, cpuMsPerDelivery });
    log(`(b) ${rate} msg/s: delivery p50 ${p.deliveryP50ms} ms p99 ${p.deliveryP99ms} ms, ${p.deliveryRate} deliveries/s, missing ${p.missing}; CPU ms per delivery ${JSON.stringify(cpuMsPerDelivery)}`);
  }
  const syncErrors = poller.errors();
  await poller.stop();
  results.b_big_room = { requestedMembers: B_USERS, members: members.length, setupSeconds: round(setupSeconds, 1), registerSeconds: round(registerSeconds, 1), registered: users.length + 1, joinSeconds: round(joinSeconds, 1), syncErrors, phases };
}

async function benchInitialSync(): Promise<void> {
  const t0 = performance.now();
  const deadline = t0 + SETUP_SECONDS * 1000;
  log(`(c) building up to ${C_ROOMS} rooms with 20 state events and 50 messages each (time box ${SETUP_SECONDS} s)`);
  const u = await register('c');
  let built = 0;
  await pool(Array.from({ length: C_ROOMS }), Number(process.env.BENCH_C_CONCURRENCY ?? 24), async () => {
    // The bench state events come with the createRoom (`initial_state`: one request, not 14;
    // createRooms of one user go one at a time), topped up to 20 if the preset made fewer.
    const roomId = await createRoom(u, { name: `bench room ${built}`, initial_state: Array.from({ length: 14 }, (_x, k) => ({ type: 'org.axon.bench', state_key: String(k), content: { k } })) });
    const state = await ok('GET', `${C}/rooms/${enc(roomId)}/state`, { token: u.token });
    const have = Array.isArray(state) ? state.length : 20;
    for (let k = have; k < 20; k++) await ok('PUT', `${C}/rooms/${enc(roomId)}/state/org.axon.bench/${k}`, { token: u.token, body: { k } });
    for (let m = 0; m < 50; m++) await sendMessage(u, roomId, `message ${m}`);
    built++;
  }, deadline);
  const setupSeconds = (performance.now() - t0) / 1000;
  log(`(c) setup ${round(setupSeconds)} s: N = ${built} rooms`);
  const variants: Record<string, unknown>[] = [];
  for (const [name, filter] of [
    ['default filter', null],
    ['lazy_load_members', { room: { state: { lazy_load_members: true }, timeline: { lazy_load_members: true } } }],
  ] as const) {
    const runs: { ms: number; bytes: number; rooms: number; status: number; frontCpuMs: number; redisCpuMs: number; loadAverage: number }[] = [];
    // CPU of the front and of Redis per request: the wall time alone says little on a loaded machine.
    const cpuOf = (pids: number[]) => pids.reduce((a, pid) => a + (cpuSeconds(pid) ?? 0), 0);
    for (let i = 0; i < 3; i++) {
      const q = filter ? `?filter=${enc(JSON.stringify(filter))}` : '';
      // The machine's 1-minute load average as the request starts: other work on it inflates the times.
      const loadAverage = round(loadavg()[0]!, 1);
      const [f0, r0] = [cpuOf(axon!.frontPids), cpuOf([axon!.redisPid])];
      const t = performance.now();
      const r = await request('GET', `${C}/sync${q}`, { token: u.token, timeoutMs: 300_000 });
      const ms = performance.now() - t;
      runs.push({ ms: round(ms), bytes: r.bytes, rooms: Object.keys(r.body?.rooms?.join ?? {}).length, status: r.status, frontCpuMs: round((cpuOf(axon!.frontPids) - f0) * 1000), redisCpuMs: round((cpuOf([axon!.redisPid]) - r0) * 1000), loadAverage });
      if (r.status !== 200) log(`(c) ${name}: status ${r.status}`);
    }
    const sorted = runs.map((r) => r.ms).sort((a, b) => a - b);
    // The first run of the first variant is the cold one (the front's caches empty).
    variants.push({ variant: name, firstMs: runs[0]!.ms, medianMs: sorted[1], minMs: sorted[0], maxMs: sorted[2], firstFrontCpuMs: runs[0]!.frontCpuMs, lastFrontCpuMs: runs[2]!.frontCpuMs, lastRedisCpuMs: runs[2]!.redisCpuMs, bytes: runs[0]!.bytes, roomsInResponse: runs[0]!.rooms, runs });
    log(`(c) ${name}: ${runs.map((r) => `${r.ms} ms (front CPU ${r.frontCpuMs} ms, redis ${r.redisCpuMs} ms, status ${r.status}, load ${r.loadAverage})`).join(', ')}; ${runs[0]!.bytes} bytes, ${runs[0]!.rooms} rooms`);
  }
  results.c_initial_sync = { requestedRooms: C_ROOMS, rooms: built, stateEventsPerRoom: 20, messagesPerRoom: 50, setupSeconds: round(setupSeconds, 1), variants };
}

// ---- report ----------------------------------------------------------------------------------

function report(): void {
  const out: string[] = [];
  const meta = results.meta as Record<string, unknown>;
  out.push(`Axon /sync benchmark — ${meta.date}, ${meta.cpus} CPUs, node ${process.version}, ${WORKERS} worker process(es) + 1 front process, redis AOF appendfsync always, ${SHARDS} shards per family, scale ${SCALE}`);
  const cols = ['targetRate', 'sendRate', 'sent', 'sendErrors', 'sendP50ms', 'sendP99ms', 'deliveries', 'missing', 'deliveryRate', 'deliveryP50ms', 'deliveryP99ms', 'deliveryMaxMs'];
  const a = results.a_rooms as { users: number; rooms: number; memberships: number; bigRoomShare: number; setupSeconds: number; syncErrors: number; phases: RatePhase[] } | undefined;
  if (a) {
    out.push(`\n(a) ${a.users} users in ${a.rooms} rooms (${a.memberships} memberships, ${round(a.bigRoomShare * 100)} % in 4 rooms), all long-polling; setup ${a.setupSeconds} s; sync errors ${a.syncErrors}`);
    out.push(table(a.phases as unknown as Record<string, unknown>[], cols));
  }
  const b = results.b_big_room as { members: number; requestedMembers: number; setupSeconds: number; registered: number; registerSeconds: number; joinSeconds: number; syncErrors: number; phases: RatePhase[] } | undefined;
  if (b) {
    out.push(`\n(b) one room, ${b.members} syncing members (asked ${b.requestedMembers}); setup ${b.setupSeconds} s (register ${b.registered} in ${b.registerSeconds} s, join ${b.joinSeconds} s); sync errors ${b.syncErrors}`);
    out.push(table(b.phases as unknown as Record<string, unknown>[], cols));
    for (const ph of b.phases as (RatePhase & { cpuMsPerDelivery?: Record<string, number> })[]) {
      if (ph.cpuMsPerDelivery) out.push(`  ${ph.targetRate} msg/s: server CPU ms per delivered message: ${Object.entries(ph.cpuMsPerDelivery).map(([role, ms]) => `${role} ${ms}`).join(', ')}`);
    }
  }
  const c = results.c_initial_sync as { rooms: number; setupSeconds: number; variants: Record<string, unknown>[] } | undefined;
  if (c) {
    out.push(`\n(c) initial sync, one user in N = ${c.rooms} rooms (20 state events + 50 messages each); setup ${c.setupSeconds} s`);
    out.push(table(c.variants, ['variant', 'firstMs', 'medianMs', 'minMs', 'maxMs', 'firstFrontCpuMs', 'lastFrontCpuMs', 'lastRedisCpuMs', 'bytes', 'roomsInResponse']));
  }
  const d = results.d_idle_long_polls as Record<string, unknown> | undefined;
  if (d) {
    out.push(`\n(d) idle long-polls on one front process (timeout 60 s)`);
    out.push(table([d], ['polls', 'stillWaitingAtMeasure', 'openSeconds', 'frontRssBeforeKb', 'frontRssAfterKb', 'frontRssAfterReleaseKb', 'rssGrowthPerPollKb']));
  }
  process.stdout.write(out.join('\n') + '\n');
}

// ---- main ------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const hardStop = setTimeout(() => {
    log(`time limit of ${MAX_MINUTES} min reached: stopping`);
    void (axon?.stop() ?? Promise.resolve()).finally(() => process.exit(2));
  }, MAX_MINUTES * 60_000);
  hardStop.unref();
  const started = performance.now();
  axon = await startAxonBench({ workers: WORKERS, fronts: 1, shards: SHARDS });
  m = new MatrixLoad(axon.url);
  await m.waitUp(60_000);
  // First registration waits until the workers hold the user shards.
  await register('warm');
  log(`axon up in ${round((performance.now() - started) / 1000)} s: front pid ${axon.frontPids[0]}, redis ${axon.redisUrl}`);
  results.meta = { date: new Date().toISOString(), cpus: (await import('node:os')).cpus().length, node: process.version, workers: WORKERS, fronts: 1, shards: SHARDS, scale: SCALE, phaseSeconds: PHASE_SECONDS, rates: RATES, redisAppendfsync: 'always' };

  if (ONLY.has('d')) await benchIdlePolls(axon.frontPids[0]!);
  if (ONLY.has('a')) await benchRooms();
  if (ONLY.has('b')) await benchBigRoom();
  if (ONLY.has('c')) await benchInitialSync();

  (results.meta as Record<string, unknown>).totalSeconds = round((performance.now() - started) / 1000, 1);
  report();
  const file = writeBenchResults((stamp) => `sync-${stamp}.json`, results);
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
