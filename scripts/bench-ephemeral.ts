/**
 * `npm run bench:ephemeral`: ephemeral fan-out figures (issue 7 item 8). Starts its own Axon the
 * way scripts/bench-sync.ts does (managed redis-server with AOF `appendfsync always`, worker
 * processes and one front, loopback, rate limits off; the process/HTTP helpers are a trimmed copy
 * of bench-sync's, which runs its benchmark on import), registers BENCH_USERS users into one room,
 * keeps every member long-polling /sync, and measures:
 *
 *   (1) typing: member k sends `PUT /rooms/{id}/typing/{k}` {typing:true}; for each member, the
 *       time from the PUT's start to the first poll answer whose `m.typing` lists k. Same for a
 *       read receipt (`POST /rooms/{id}/receipt/m.read/{event}` → `m.receipt` naming k on it).
 *   (2) presence: member k's `PUT /presence/{k}/status` (a new status_msg each round) → the time
 *       until every watcher's poll carries it, and the Redis work around that one change
 *       (INFO commandstats delta, minus an idle interval of the same length, and the growth of
 *       the watchers' feed streams).
 *
 * Polls use `set_presence=offline` (which changes nothing, per the spec and actors/presence.ts) so
 * that the only presence change in flight is the measured one; otherwise every member's first
 * sync would mark them online and fan out to every other member (N² feed entries) during setup.
 * A script, not a test: it prints figures and asserts nothing.
 *
 * Env knobs: BENCH_USERS (default 1000; 200 for a quick run), BENCH_ROUNDS (repeats per
 * measurement, default 5), BENCH_WORKERS (default 2), BENCH_SHARDS (per family, default 256),
 * BENCH_SETUP_SECONDS (time box for registering and joining, default 300), BENCH_MAX_MINUTES
 * (whole run, default 20).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { startManagedRedis, type ManagedRedis } from '../src/runtime/managed-redis';
import { loadOrCreateSigningKeys } from '../src/runtime/signing-key-store';
import { freePort, percentile, pool, round, sleep, writeBenchResults } from './lib/bench-util';
import { C, enc, newAgent } from './lib/matrix-load';

const USERS = Math.max(2, Number(process.env.BENCH_USERS ?? 1000));
const ROUNDS = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 5));
const WORKERS = Number(process.env.BENCH_WORKERS ?? 2);
const SHARDS = Number(process.env.BENCH_SHARDS ?? 256);
const SETUP_SECONDS = Number(process.env.BENCH_SETUP_SECONDS ?? 300);
const MAX_MINUTES = Number(process.env.BENCH_MAX_MINUTES ?? 20);
/** How long a round waits for every member before counting the rest as missing. */
const ROUND_TIMEOUT_MS = 30_000;
const KEY_PREFIX = 'bench:';
const root = join(import.meta.dirname, '..');

// ---- small helpers ---------------------------------------------------------------------------

function log(msg: string): void {
  process.stderr.write(`[bench-ephemeral ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

// ---- HTTP client -----------------------------------------------------------------------------

const baseHost = '127.0.0.1';
let basePort = 0;

interface HttpReply {
  status: number;
  body: any;
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
        resolve({ status: res.statusCode ?? 0, body });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    if (opts.timeoutMs) req.setTimeout(opts.timeoutMs, () => req.destroy(new Error('client timeout')));
    req.end(payload);
  });
}

async function ok(method: string, path: string, opts: Parameters<typeof request>[2] = {}): Promise<any> {
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

// Timeline and state left out: the answers carry only what this benchmark looks at.
const FILTER = enc(JSON.stringify({ room: { timeline: { limit: 1 }, state: { types: [] } } }));

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

// ---- long-polls and matching -----------------------------------------------------------------

/** A predicate over one sync answer, registered per round; `hits` gets each member's first match time. */
interface Watch {
  match: (body: any) => boolean;
  hits: Map<number, number>;
}

let currentWatch: Watch | null = null;
let pollErrors = 0;

function startPolls(users: User[], sinces: string[], agent: http.Agent): () => Promise<void> {
  let running = true;
  const loops = users.map(async (u, i) => {
    let since = sinces[i]!;
    while (running) {
      try {
        const r = await request('GET', `${C}/sync?since=${enc(since)}&timeout=120000&set_presence=offline&filter=${FILTER}`, { token: u.token, agent, timeoutMs: 180_000 });
        const now = performance.now();
        if (r.status !== 200) {
          pollErrors++;
          await sleep(100);
          continue;
        }
        since = r.body.next_batch;
        const w = currentWatch;
        if (w && !w.hits.has(i) && w.match(r.body)) w.hits.set(i, now);
      } catch {
        if (running) {
          pollErrors++;
          await sleep(100);
        }
      }
    }
  });
  return async () => {
    running = false;
    agent.destroy();
    await Promise.all(loops);
  };
}

function ephemeralOf(body: any, roomId: string, type: string): any[] {
  return (body.rooms?.join?.[roomId]?.ephemeral?.events ?? []).filter((e: { type: string }) => e.type === type);
}

interface Round {
  round: number;
  members: number;
  received: number;
  requestMs: number;
  p50ms: number;
  p99ms: number;
  maxMs: number;
}

/** Runs `act` with `match` armed; waits until every member matched (or ROUND_TIMEOUT_MS). */
async function measure(n: number, members: number, match: Watch['match'], act: () => Promise<unknown>): Promise<Round & { endedAt: number }> {
  const w: Watch = { match, hits: new Map() };
  currentWatch = w;
  const t0 = performance.now();
  await act();
  const requestMs = performance.now() - t0;
  const deadline = t0 + ROUND_TIMEOUT_MS;
  while (w.hits.size < members && performance.now() < deadline) await sleep(10);
  currentWatch = null;
  const lat = [...w.hits.values()].map((t) => t - t0).sort((a, b) => a - b);
  return { round: n, members, received: lat.length, requestMs: round(requestMs), p50ms: round(percentile(lat, 50)), p99ms: round(percentile(lat, 99)), maxMs: round(lat[lat.length - 1] ?? NaN), endedAt: performance.now() };
}

function summary(rounds: Round[]): Record<string, unknown> {
  const med = (k: 'p50ms' | 'p99ms' | 'maxMs' | 'requestMs') => percentile(rounds.map((r) => r[k]).sort((a, b) => a - b), 50);
  return { rounds: rounds.length, members: rounds[0]?.members, minReceived: Math.min(...rounds.map((r) => r.received)), medianRequestMs: med('requestMs'), medianP50ms: med('p50ms'), medianP99ms: med('p99ms'), medianMaxMs: med('maxMs'), worstMaxMs: Math.max(...rounds.map((r) => r.maxMs)) };
}

// ---- Redis accounting ------------------------------------------------------------------------

async function commandStats(r: Redis): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const line of (await r.info('commandstats')).split('\n')) {
    const m = /^cmdstat_([^:]+):calls=(\d+)/.exec(line.trim());
    if (m) out.set(m[1]!, Number(m[2]));
  }
  return out;
}

function delta(after: Map<string, number>, before: Map<string, number>): Map<string, number> {
  const d = new Map<string, number>();
  for (const [k, v] of after) {
    const x = v - (before.get(k) ?? 0);
    if (x > 0) d.set(k, x);
  }
  return d;
}

const sum = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);

/** Total entries in the members' feed streams (`userData.feed`, found by pattern: keys stay in keys.ts). */
async function feedEntries(r: Redis): Promise<number> {
  let total = 0;
  let cursor = '0';
  const keys: string[] = [];
  do {
    const [next, batch] = await r.scan(cursor, 'MATCH', `${KEY_PREFIX}*:feed`, 'COUNT', 1000);
    cursor = next;
    keys.push(...batch);
  } while (cursor !== '0');
  for (let i = 0; i < keys.length; i += 200) {
    const p = r.pipeline();
    for (const k of keys.slice(i, i + 200)) p.xlen(k);
    for (const [, n] of (await p.exec()) ?? []) total += Number(n ?? 0);
  }
  return total;
}

// ---- main ------------------------------------------------------------------------------------

const results: Record<string, unknown> = {};

async function main(): Promise<void> {
  const hardStop = setTimeout(() => {
    log(`time limit of ${MAX_MINUTES} min reached: stopping`);
    void stopAll().finally(() => process.exit(2));
  }, MAX_MINUTES * 60_000);
  hardStop.unref();
  const started = performance.now();
  dataDir = mkdtempSync(join(tmpdir(), 'axon-bench-ephemeral-'));
  redis = await startManagedRedis({ dir: join(dataDir, 'redis'), port: await freePort() });
  basePort = await freePort();
  const signingKeyPath = join(dataDir, 'localhost.signing.key');
  loadOrCreateSigningKeys(signingKeyPath);
  const env: Record<string, string> = {
    AXON_REDIS_MODE: 'url', AXON_REDIS_URL: redis.url, AXON_REDIS_KEY_PREFIX: KEY_PREFIX, AXON_DATA_DIR: dataDir, AXON_SIGNING_KEY_PATH: signingKeyPath,
    AXON_SERVER_NAME: 'localhost', AXON_BIND_HOST: baseHost, AXON_PORT: String(basePort), AXON_PUBLIC_BASE_URL: `http://${baseHost}:${basePort}`,
    AXON_ROOM_SHARDS: String(SHARDS), AXON_USER_SHARDS: String(SHARDS), AXON_LOG_LEVEL: 'warn', AXON_RATE_LIMIT_ENABLED: 'false', AXON_REGISTRATION_ENABLED: 'true',
  };
  for (let i = 0; i < WORKERS; i++) spawnAxon('src/worker-main.ts', `bench-w${i + 1}`, env);
  spawnAxon('src/front-main.ts', 'bench-f1', env);
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
  await register('warm');
  log(`axon up in ${round((performance.now() - started) / 1000)} s`);
  const rc = new Redis(redis.url, { lazyConnect: false });

  // Setup: one room with USERS members, every member long-polling.
  const t0 = performance.now();
  const deadline = t0 + SETUP_SECONDS * 1000;
  const owner = await register('e');
  const roomId = (await ok('POST', `${C}/createRoom`, { token: owner.token, body: { preset: 'public_chat' } })).room_id as string;
  const others = (await pool(Array.from({ length: USERS - 1 }), 64, () => register('e'), t0 + SETUP_SECONDS * 500)).filter(Boolean);
  const members: User[] = [owner];
  await pool(others, 64, async (u) => {
    await ok('POST', `${C}/rooms/${enc(roomId)}/join`, { token: u.token, body: {} });
    members.push(u);
  }, deadline);
  // Events for the receipt rounds, sent before the polls start so their fan-out is not measured.
  const receiptEvents: string[] = [];
  for (let k = 0; k < ROUNDS; k++) receiptEvents.push((await ok('PUT', `${C}/rooms/${enc(roomId)}/send/m.room.message/eb${k}`, { token: owner.token, body: { msgtype: 'm.text', body: `receipt target ${k}` } })).event_id);
  const sinces = await pool(members, 64, async (u) => (await ok('GET', `${C}/sync?set_presence=offline&filter=${FILTER}`, { token: u.token, timeoutMs: 120_000 })).next_batch as string);
  const setupSeconds = (performance.now() - t0) / 1000;
  log(`setup ${round(setupSeconds)} s: ${members.length} members`);
  const stopPolls = startPolls(members, sinces, newAgent(members.length + 10));
  await sleep(3000);
  const n = members.length;
  // Senders rotate so a stale answer about an earlier round can never match a later one.
  const sender = (k: number) => members[1 + (k % (n - 1))]!;

  const typing: Round[] = [];
  const typingStop: Round[] = [];
  for (let k = 0; k < ROUNDS; k++) {
    const s = sender(k);
    const r = await measure(k, n, (b) => ephemeralOf(b, roomId, 'm.typing').some((e) => (e.content?.user_ids ?? []).includes(s.userId)), () => ok('PUT', `${C}/rooms/${enc(roomId)}/typing/${enc(s.userId)}`, { token: s.token, body: { typing: true, timeout: 30_000 } }));
    typing.push(r);
    log(`typing round ${k}: ${r.received}/${n}, p50 ${r.p50ms} ms p99 ${r.p99ms} ms max ${r.maxMs} ms`);
    // Wait until every member saw the stop too, so rounds do not overlap (its fan-out is as big).
    const stop = await measure(k, n, (b) => ephemeralOf(b, roomId, 'm.typing').some((e) => !(e.content?.user_ids ?? []).includes(s.userId)), () => ok('PUT', `${C}/rooms/${enc(roomId)}/typing/${enc(s.userId)}`, { token: s.token, body: { typing: false } }));
    typingStop.push(stop);
    log(`typing stop round ${k}: ${stop.received}/${n}, p50 ${stop.p50ms} ms p99 ${stop.p99ms} ms max ${stop.maxMs} ms`);
    await sleep(500);
  }

  const receipts: Round[] = [];
  for (let k = 0; k < ROUNDS; k++) {
    const s = sender(k + ROUNDS);
    const ev = receiptEvents[k]!;
    const r = await measure(k, n, (b) => ephemeralOf(b, roomId, 'm.receipt').some((e) => e.content?.[ev]?.['m.read']?.[s.userId] !== undefined), () => ok('POST', `${C}/rooms/${enc(roomId)}/receipt/m.read/${enc(ev)}`, { token: s.token, body: {} }));
    receipts.push(r);
    log(`receipt round ${k}: ${r.received}/${n}, p50 ${r.p50ms} ms p99 ${r.p99ms} ms max ${r.maxMs} ms`);
    await sleep(1500);
  }

  const presence: (Round & { windowMs: number; redisCalls: number; idleCalls: number; feedEntriesAdded: number; topCommands: string })[] = [];
  for (let k = 0; k < ROUNDS; k++) {
    const s = sender(k + 2 * ROUNDS);
    const tag = `bench status ${k}`;
    const feedsBefore = await feedEntries(rc);
    const before = await commandStats(rc);
    const tStart = performance.now();
    const r = await measure(k, n, (b) => (b.presence?.events ?? []).some((e: { sender: string; content?: { status_msg?: string } }) => e.sender === s.userId && e.content?.status_msg === tag), () => ok('PUT', `${C}/presence/${enc(s.userId)}/status`, { token: s.token, body: { presence: k % 2 ? 'online' : 'unavailable', status_msg: tag } }));
    await sleep(300); // the re-polls after the answers are part of the cost
    const after = await commandStats(rc);
    const windowMs = performance.now() - tStart;
    const feedsAfter = await feedEntries(rc);
    // Idle interval of the same length: leases, blocking reads and the like, not caused by the change.
    await sleep(1000);
    const idleBefore = await commandStats(rc);
    await sleep(windowMs);
    const idleAfter = await commandStats(rc);
    const d = delta(after, before);
    const idle = delta(idleAfter, idleBefore);
    const top = [...d].sort((a, b) => b[1] - a[1]).slice(0, 6).map(([c, x]) => `${c} ${x}`).join(', ');
    const row = { ...r, windowMs: round(windowMs), redisCalls: sum(d), idleCalls: sum(idle), feedEntriesAdded: feedsAfter - feedsBefore, topCommands: top };
    presence.push(row);
    log(`presence round ${k}: ${r.received}/${n}, p50 ${r.p50ms} ms p99 ${r.p99ms} ms max ${r.maxMs} ms; redis calls ${row.redisCalls} (idle ${row.idleCalls}), feed entries +${row.feedEntriesAdded}; ${top}`);
    await sleep(1000);
  }
  await stopPolls();
  rc.disconnect();

  results.meta = { date: new Date().toISOString(), cpus: cpus().length, node: process.version, workers: WORKERS, fronts: 1, shards: SHARDS, users: USERS, members: n, rounds: ROUNDS, setupSeconds: round(setupSeconds), pollErrors, redisAppendfsync: 'always', totalSeconds: round((performance.now() - started) / 1000) };
  results.typing = { summary: summary(typing), rounds: typing };
  results.typingStop = { summary: summary(typingStop), rounds: typingStop };
  results.receipt = { summary: summary(receipts), rounds: receipts };
  results.presence = { summary: { ...summary(presence), medianRedisCalls: percentile(presence.map((p) => p.redisCalls).sort((a, b) => a - b), 50), medianIdleCalls: percentile(presence.map((p) => p.idleCalls).sort((a, b) => a - b), 50), medianFeedEntriesAdded: percentile(presence.map((p) => p.feedEntriesAdded).sort((a, b) => a - b), 50) }, rounds: presence };

  const out: string[] = [];
  out.push(`Axon ephemeral fan-out benchmark — ${results.meta && (results.meta as { date: string }).date}, ${cpus().length} CPUs, node ${process.version}, ${WORKERS} workers + 1 front, redis AOF always, one room with ${n} members all long-polling (asked ${USERS}); setup ${round(setupSeconds)} s; poll errors ${pollErrors}`);
  for (const [name, rows] of [['typing (PUT typing → m.typing in each member\'s poll)', typing], ['typing stop (PUT typing:false → m.typing without the user)', typingStop], ['read receipt (POST receipt → m.receipt in each member\'s poll)', receipts], ['presence (PUT presence → m.presence in each watcher\'s poll)', presence]] as const) {
    out.push(`\n${name}`);
    for (const r of rows as (Round & Record<string, unknown>)[]) {
      const extra = 'redisCalls' in r ? `  redis calls ${r.redisCalls} (idle ${r.idleCalls} over the same ${r.windowMs} ms), feed entries +${r.feedEntriesAdded}; ${r.topCommands}` : '';
      out.push(`  round ${r.round}: ${r.received}/${r.members} received, request ${r.requestMs} ms, p50 ${r.p50ms} ms, p99 ${r.p99ms} ms, max ${r.maxMs} ms${extra}`);
    }
  }
  out.push('\nsummary (medians over rounds): ' + JSON.stringify({ typing: results.typing && (results.typing as { summary: unknown }).summary, typingStop: (results.typingStop as { summary: unknown }).summary, receipt: (results.receipt as { summary: unknown }).summary, presence: (results.presence as { summary: unknown }).summary }));
  process.stdout.write(out.join('\n') + '\n');
  const file = writeBenchResults((stamp) => `ephemeral-${stamp}.json`, results);
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
