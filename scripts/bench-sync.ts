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
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startManagedRedis, type ManagedRedis } from '../src/runtime/managed-redis';
import { loadOrCreateSigningKeys } from '../src/runtime/signing-key-store';

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
const root = join(import.meta.dirname, '..');

// ---- small helpers ---------------------------------------------------------------------------

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const round = (n: number, d = 1) => (Number.isFinite(n) ? Math.round(n * 10 ** d) / 10 ** d : NaN);

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

function log(msg: string): void {
  process.stderr.write(`[bench-sync ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

/** Run `fn` over `items` with at most `limit` in flight; stops taking new items after `deadline`. */
async function pool<T, R>(items: T[], limit: number, fn: (item: T, i: number) => Promise<R>, deadline = Infinity): Promise<R[]> {
  const out: R[] = [];
  let next = 0;
  const lane = async () => {
    while (next < items.length && performance.now() < deadline) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  return out;
}

// ---- HTTP client -----------------------------------------------------------------------------

let baseHost = '127.0.0.1';
let basePort = 0;

interface HttpReply {
  status: number;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  bytes: number;
}

function newAgent(maxSockets: number): http.Agent {
  return new http.Agent({ keepAlive: true, maxSockets, maxFreeSockets: maxSockets });
}

const defaultAgent = newAgent(256);

function request(method: string, path: string, opts: { token?: string; body?: unknown; agent?: http.Agent; timeoutMs?: number } = {}): Promise<HttpReply> {
  return new Promise((resolve, reject) => {
    const payload = opts.body === undefined ? undefined : Buffer.from(JSON.stringify(opts.body));
    const headers: Record<string, string | number> = {};
    if (opts.token) headers.authorization = `Bearer ${opts.token}`;
    if (payload) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = payload.length;
    }
    const req = http.request({ host: baseHost, port: basePort, method, path, headers, agent: opts.agent ?? defaultAgent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const buf = Buffer.concat(chunks);
        let body: unknown = null;
        try {
          body = buf.length ? JSON.parse(buf.toString('utf8')) : null;
        } catch {
          body = buf.toString('utf8');
        }
        resolve({ status: res.statusCode ?? 0, body, bytes: buf.length });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    if (opts.timeoutMs) req.setTimeout(opts.timeoutMs, () => req.destroy(new Error('client timeout')));
    req.end(payload);
  });
}

async function ok(method: string, path: string, opts: Parameters<typeof request>[2] = {}): Promise<any> { // eslint-disable-line @typescript-eslint/no-explicit-any
  for (let attempt = 0; ; attempt++) {
    const r = await request(method, path, opts);
    if (r.status >= 200 && r.status < 300) return r.body;
    // 5xx while shards settle / actor timeouts under load: retry a few times.
    if (r.status >= 500 && attempt < 4) {
      await sleep(200 * (attempt + 1));
      continue;
    }
    throw new Error(`${method} ${path} → ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`);
  }
}

const C = '/_matrix/client/v3';
const enc = encodeURIComponent;

interface User {
  userId: string;
  token: string;
}

let userSeq = 0;
/** Registers without a password: no scrypt, so setup measures the server, not the KDF. */
async function register(prefix: string): Promise<User> {
  const username = `${prefix}${userSeq++}`;
  const body = await ok('POST', `${C}/register`, { body: { username, auth: { type: 'm.login.dummy' }, initial_device_display_name: 'bench' } });
  return { userId: body.user_id, token: body.access_token };
}

/**
 * One createRoom at a time per user: concurrent createRoom calls by one user fail on this server
 * (400 M_INVALID_ROOM_STATE "m.room.member … was not allowed: the room is not public" for the
 * creator's own join) — a finding of this benchmark, worked around here.
 */
const createChains = new Map<string, Promise<unknown>>();
async function createRoom(u: User, extra: Record<string, unknown> = {}): Promise<string> {
  const prev = createChains.get(u.userId) ?? Promise.resolve();
  const mine = prev.catch(() => undefined).then(async () => (await ok('POST', `${C}/createRoom`, { token: u.token, body: { preset: 'public_chat', ...extra } })).room_id as string);
  createChains.set(u.userId, mine.catch(() => undefined));
  return mine;
}

async function joinRoom(u: User, roomId: string): Promise<void> {
  await ok('POST', `${C}/rooms/${enc(roomId)}/join`, { token: u.token, body: {} });
}

let txn = 0;
async function sendMessage(u: User, roomId: string, body: string): Promise<string> {
  return (await ok('PUT', `${C}/rooms/${enc(roomId)}/send/m.room.message/b${process.pid}-${txn++}`, { token: u.token, body: { msgtype: 'm.text', body } })).event_id;
}

const INITIAL_FILTER = enc(JSON.stringify({ room: { timeline: { limit: 0 }, state: { types: [] } }, presence: { types: [] } }));
const LOOP_FILTER = enc(JSON.stringify({ room: { timeline: { limit: 100 }, state: { types: [] } }, presence: { types: [] } }));

async function initialSince(u: User): Promise<string> {
  return (await ok('GET', `${C}/sync?filter=${INITIAL_FILTER}`, { token: u.token, timeoutMs: 120_000 })).next_batch;
}

// ---- processes -------------------------------------------------------------------------------

const children: ChildProcess[] = [];
let redis: ManagedRedis | null = null;
let dataDir = '';

function spawnAxon(entry: string, id: string, env: Record<string, string>): ChildProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', entry, '--id', id], { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(child);
  return child;
}

async function stopAll(): Promise<void> {
  for (const c of children) if (c.exitCode === null && c.pid) c.kill('SIGTERM');
  const deadline = Date.now() + 10_000;
  while (children.some((c) => c.exitCode === null && c.signalCode === null) && Date.now() < deadline) await sleep(50);
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  if (redis?.started) await redis.stop();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
}

function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

// ---- sync loops and delivery tracking ---------------------------------------------------------

/** event_id → arrival times (performance.now()) at each member's sync. */
const arrivals = new Map<string, number[]>();

interface Poller {
  stop(): Promise<void>;
  errors: () => number;
}

/** Every user long-polls /sync (timeout 30 s) in a loop with `since`, recording event arrivals. */
function startSyncLoops(users: User[], sinces: string[], agent: http.Agent): Poller {
  let running = true;
  let errors = 0;
  const loops = users.map(async (u, i) => {
    let since = sinces[i]!;
    while (running) {
      try {
        const r = await request('GET', `${C}/sync?since=${enc(since)}&timeout=30000&filter=${LOOP_FILTER}`, { token: u.token, agent, timeoutMs: 60_000 });
        const now = performance.now();
        if (r.status !== 200) {
          errors++;
          await sleep(100);
          continue;
        }
        since = r.body.next_batch;
        const join = r.body.rooms?.join ?? {};
        for (const roomId of Object.keys(join)) {
          for (const ev of join[roomId].timeline?.events ?? []) {
            if (ev.type !== 'm.room.message') continue;
            let list = arrivals.get(ev.event_id);
            if (!list) arrivals.set(ev.event_id, (list = []));
            list.push(now);
          }
        }
      } catch {
        if (running) {
          errors++;
          await sleep(100);
        }
      }
    }
  });
  return {
    errors: () => errors,
    async stop() {
      running = false;
      agent.destroy(); // ends the waiting long-polls
      await Promise.all(loops);
    },
  };
}

interface SentEvent {
  eventId: string;
  start: number;
  members: number;
}

interface RatePhase {
  targetRate: number;
  seconds: number;
  sent: number;
  sendErrors: number;
  sendRate: number;
  sendP50ms: number;
  sendP99ms: number;
  expectedDeliveries: number;
  deliveries: number;
  deliveryRate: number;
  missing: number;
  deliveryP50ms: number;
  deliveryP99ms: number;
  deliveryMaxMs: number;
}

/** Open loop: one send every 1000/rate ms for PHASE_SECONDS (at most 2,000 in flight), then a grace period. */
async function ratePhase(rate: number, pick: () => { user: User; roomId: string; members: number }): Promise<RatePhase> {
  const sent: SentEvent[] = [];
  const sendLat: number[] = [];
  let sendErrors = 0;
  let inFlight = 0;
  const pending: Promise<void>[] = [];
  const started = performance.now();
  const end = started + PHASE_SECONDS * 1000;
  let n = 0;
  while (performance.now() < end) {
    const due = started + (n * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    n++;
    if (inFlight >= 2000) continue;
    const { user, roomId, members } = pick();
    inFlight++;
    const t0 = performance.now();
    pending.push(
      sendMessage(user, roomId, `bench ${rate}/s #${n}`)
        .then((eventId) => {
          sendLat.push(performance.now() - t0);
          sent.push({ eventId, start: t0, members });
        })
        .catch(() => {
          sendErrors++;
        })
        .finally(() => {
          inFlight--;
        }),
    );
  }
  await Promise.all(pending);
  const sendSeconds = (performance.now() - started) / 1000;
  // Grace: wait until every member saw every event, or 5 s.
  const expected = sent.reduce((s, e) => s + e.members, 0);
  const graceEnd = performance.now() + 5000;
  const delivered = () => sent.reduce((s, e) => s + Math.min(e.members, arrivals.get(e.eventId)?.length ?? 0), 0);
  while (delivered() < expected && performance.now() < graceEnd) await sleep(100);
  const lat: number[] = [];
  let lastArrival = started;
  for (const e of sent) {
    for (const t of arrivals.get(e.eventId) ?? []) {
      lat.push(t - e.start);
      if (t > lastArrival) lastArrival = t;
    }
    arrivals.delete(e.eventId);
  }
  lat.sort((a, b) => a - b);
  sendLat.sort((a, b) => a - b);
  const activeSeconds = Math.max(sendSeconds, (lastArrival - started) / 1000);
  return {
    targetRate: rate,
    seconds: round(sendSeconds, 2),
    sent: sent.length,
    sendErrors,
    sendRate: round(sent.length / sendSeconds),
    sendP50ms: round(percentile(sendLat, 50)),
    sendP99ms: round(percentile(sendLat, 99)),
    expectedDeliveries: expected,
    deliveries: lat.length,
    deliveryRate: round(lat.length / activeSeconds),
    missing: Math.max(0, expected - lat.length),
    deliveryP50ms: round(percentile(lat, 50)),
    deliveryP99ms: round(percentile(lat, 99)),
    deliveryMaxMs: round(lat[lat.length - 1] ?? NaN),
  };
}

// ---- the benchmarks --------------------------------------------------------------------------

const results: Record<string, unknown> = {};

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
      request('GET', `${C}/sync?since=${enc(sinces[u]!)}&timeout=60000`, { token: users[u]!.token, agent })
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
  const phases: RatePhase[] = [];
  for (const rate of [10, 50]) {
    log(`(b) ${rate} msg/s for ${PHASE_SECONDS} s to ${members.length} members`);
    const p = await ratePhase(rate, () => ({ user: members[Math.floor(Math.random() * members.length)]!, roomId, members: members.length }));
    phases.push(p);
    log(`(b) ${rate} msg/s: delivery p50 ${p.deliveryP50ms} ms p99 ${p.deliveryP99ms} ms, ${p.deliveryRate} deliveries/s, missing ${p.missing}`);
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
  let stateEvents = 0;
  await pool(Array.from({ length: C_ROOMS }), Number(process.env.BENCH_C_CONCURRENCY ?? 24), async () => {
    const roomId = await createRoom(u, { name: `bench room ${built}` });
    const state = await ok('GET', `${C}/rooms/${enc(roomId)}/state`, { token: u.token });
    const have = Array.isArray(state) ? state.length : 6;
    for (let k = have; k < 20; k++) await ok('PUT', `${C}/rooms/${enc(roomId)}/state/org.axon.bench/${k}`, { token: u.token, body: { k } });
    for (let m = 0; m < 50; m++) await sendMessage(u, roomId, `message ${m}`);
    stateEvents += Math.max(20, have);
    built++;
  }, deadline);
  const setupSeconds = (performance.now() - t0) / 1000;
  log(`(c) setup ${round(setupSeconds)} s: N = ${built} rooms`);
  const variants: Record<string, unknown>[] = [];
  for (const [name, filter] of [
    ['default filter', null],
    ['lazy_load_members', { room: { state: { lazy_load_members: true }, timeline: { lazy_load_members: true } } }],
  ] as const) {
    const runs: { ms: number; bytes: number; rooms: number }[] = [];
    for (let i = 0; i < 3; i++) {
      const q = filter ? `?filter=${enc(JSON.stringify(filter))}` : '';
      const t = performance.now();
      const r = await request('GET', `${C}/sync${q}`, { token: u.token, timeoutMs: 300_000 });
      const ms = performance.now() - t;
      runs.push({ ms: round(ms), bytes: r.bytes, rooms: Object.keys(r.body?.rooms?.join ?? {}).length });
      if (r.status !== 200) log(`(c) ${name}: status ${r.status}`);
    }
    const sorted = runs.map((r) => r.ms).sort((a, b) => a - b);
    variants.push({ variant: name, medianMs: sorted[1], minMs: sorted[0], maxMs: sorted[2], bytes: runs[0]!.bytes, roomsInResponse: runs[0]!.rooms, runs });
    log(`(c) ${name}: median ${sorted[1]} ms, ${runs[0]!.bytes} bytes, ${runs[0]!.rooms} rooms`);
  }
  results.c_initial_sync = { requestedRooms: C_ROOMS, rooms: built, stateEventsPerRoom: 20, messagesPerRoom: 50, setupSeconds: round(setupSeconds, 1), variants };
}

// ---- report ----------------------------------------------------------------------------------

function table(rows: Record<string, unknown>[], cols: string[]): string {
  const cells = [cols, ...rows.map((r) => cols.map((c) => String(r[c] ?? '')))];
  const widths = cols.map((_c, i) => Math.max(...cells.map((row) => row[i]!.length)));
  return cells.map((row, j) => row.map((v, i) => (i === 0 ? v.padEnd(widths[i]!) : v.padStart(widths[i]!))).join('  ') + (j === 0 ? '\n' + widths.map((w) => '-'.repeat(w)).join('  ') : '')).join('\n');
}

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
  }
  const c = results.c_initial_sync as { rooms: number; setupSeconds: number; variants: Record<string, unknown>[] } | undefined;
  if (c) {
    out.push(`\n(c) initial sync, one user in N = ${c.rooms} rooms (20 state events + 50 messages each); setup ${c.setupSeconds} s`);
    out.push(table(c.variants, ['variant', 'medianMs', 'minMs', 'maxMs', 'bytes', 'roomsInResponse']));
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
    void stopAll().finally(() => process.exit(2));
  }, MAX_MINUTES * 60_000);
  hardStop.unref();
  const started = performance.now();
  dataDir = mkdtempSync(join(tmpdir(), 'axon-bench-sync-'));
  const redisPort = await freePort();
  redis = await startManagedRedis({ dir: join(dataDir, 'redis'), port: redisPort });
  basePort = await freePort();
  const signingKeyPath = join(dataDir, 'localhost.signing.key');
  loadOrCreateSigningKeys(signingKeyPath); // once, before the processes read it
  const env: Record<string, string> = {
    AXON_REDIS_MODE: 'url', AXON_REDIS_URL: redis.url, AXON_REDIS_KEY_PREFIX: 'bench:', AXON_DATA_DIR: dataDir, AXON_SIGNING_KEY_PATH: signingKeyPath,
    AXON_SERVER_NAME: 'localhost', AXON_BIND_HOST: baseHost, AXON_PORT: String(basePort), AXON_PUBLIC_BASE_URL: `http://${baseHost}:${basePort}`,
    AXON_ROOM_SHARDS: String(SHARDS), AXON_USER_SHARDS: String(SHARDS), AXON_LOG_LEVEL: 'warn', AXON_RATE_LIMIT_ENABLED: 'false', AXON_REGISTRATION_ENABLED: 'true',
  };
  for (let i = 0; i < WORKERS; i++) spawnAxon('src/worker-main.ts', `bench-w${i + 1}`, env);
  const front = spawnAxon('src/front-main.ts', 'bench-f1', env);
  const upDeadline = Date.now() + 60_000;
  for (;;) {
    try {
      if ((await request('GET', '/_matrix/client/versions')).status === 200) break;
    } catch {
      /* not yet */
    }
    if (Date.now() > upDeadline) throw new Error('front did not come up within 60 s');
    await sleep(200);
  }
  // First registration waits until the workers hold the user shards.
  await register('warm');
  log(`axon up in ${round((performance.now() - started) / 1000)} s: front pid ${front.pid}, redis ${redis.url}`);
  results.meta = { date: new Date().toISOString(), cpus: (await import('node:os')).cpus().length, node: process.version, workers: WORKERS, fronts: 1, shards: SHARDS, scale: SCALE, phaseSeconds: PHASE_SECONDS, rates: RATES, redisAppendfsync: 'always' };

  if (ONLY.has('d')) await benchIdlePolls(front.pid!);
  if (ONLY.has('a')) await benchRooms();
  if (ONLY.has('b')) await benchBigRoom();
  if (ONLY.has('c')) await benchInitialSync();

  (results.meta as Record<string, unknown>).totalSeconds = round((performance.now() - started) / 1000, 1);
  report();
  mkdirSync(join(root, 'bench-results'), { recursive: true });
  const file = join(root, 'bench-results', `sync-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, JSON.stringify(results, null, 2) + '\n');
  process.stdout.write(`\nJSON: ${file}\n`);
}

let exitCode = 0;
try {
  await main();
} catch (err) {
  exitCode = 1;
  log(`failed: ${(err as Error).stack ?? err}`);
} finally {
  await stopAll();
  defaultAgent.destroy();
}
process.exit(exitCode);
