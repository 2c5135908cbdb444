/**
 * A 30 s Redis stall under load (issue 13, item 3): redis-server is paused with SIGSTOP while
 * users send messages (retrying with the same txn id on errors, as clients do), long-poll /sync,
 * and call whoami, /messages, /register and /login. Checked:
 *
 * - errors are fast and clear: every request is answered within the request deadline plus a
 *   margin (a long-poll within its timeout plus that), every failure is a Matrix error with 503
 *   (with Retry-After) or 504, and requests made once the stall is noticed fail at once;
 * - nothing acknowledged is lost: every event id a /send answered 200 for is in /messages
 *   afterwards with its own content, and no retried txn made a second event;
 * - service resumes by itself after SIGCONT (whoami 200, sends acknowledged, every shard held,
 *   nothing dead-lettered); /health said 503 meanwhile, /versions kept answering.
 *
 * The server runs on a redis-server of its own: pausing the run's shared one would stall every
 * other test file running in parallel.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startManagedRedis, type ManagedRedis } from '../../src/runtime/managed-redis';
import { readShards } from '../../src/runtime/cluster-admin';
import { KeySpace } from '../../src/store/keys';
import { freePort } from '../setup/free-port';
import { clientsFor, enc, type Clients, type Json, type Session } from './clients';
import { startTestServer, type TestServer } from './server-harness';

const STALL_MS = 30_000;
const SYNC_TIMEOUT_MS = 10_000;
/** Slack on top of every bound: the machine is shared and loaded; the bounds are about hangs, not speed. */
const MARGIN_MS = 5_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Sample {
  kind: string;
  start: number;
  end: number;
  status: number;
  errcode?: string;
  retryAfter: string | null;
  /** Set when no HTTP answer came at all (connection error, or our own 2-minute guard). */
  failure?: string;
  /** For long-polls: the timeout asked for. */
  waitMs?: number;
}

describe('a 30 s Redis stall under load', () => {
  let dir: string;
  let redisServer: ManagedRedis;
  let server: TestServer;
  let clients: Clients;
  let paused = false;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'axon-stall-redis-'));
    redisServer = await startManagedRedis({ dir, port: await freePort() });
    server = await startTestServer({ redisUrl: redisServer.url, workers: 2 });
    clients = await clientsFor(server);
  });

  afterAll(async () => {
    if (paused) process.kill(redisServer.pid, 'SIGCONT');
    await clients?.close();
    await server?.stop();
    await redisServer?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers fast with 503/504 during the stall, loses nothing acknowledged, and recovers by itself', async () => {
    const samples: Sample[] = [];
    const deadlineMs = server.config.requestDeadlineMs;

    /** One request, timed and recorded; never throws. */
    async function call(kind: string, s: Session | null, method: string, path: string, body?: unknown, waitMs?: number): Promise<{ status: number; body: Json }> {
      const url = path.startsWith('/_matrix') ? `${server.baseUrl}${path}` : `${server.baseUrl}/_matrix/client/v3${path}`;
      const start = Date.now();
      try {
        const r = await fetch(url, {
          method,
          headers: { ...(s ? { Authorization: `Bearer ${s.token}` } : {}), 'Content-Type': 'application/json' },
          body: body === undefined ? undefined : JSON.stringify(body),
          signal: AbortSignal.timeout(120_000),
        });
        const text = await r.text();
        let json: Json = {};
        try {
          json = JSON.parse(text) as Json;
        } catch {
          json = { notJson: text };
        }
        samples.push({ kind, start, end: Date.now(), status: r.status, errcode: typeof json.errcode === 'string' ? json.errcode : undefined, retryAfter: r.headers.get('retry-after'), waitMs });
        return { status: r.status, body: json };
      } catch (e) {
        samples.push({ kind, start, end: Date.now(), status: 0, retryAfter: null, failure: (e as Error).message, waitMs });
        return { status: 0, body: {} };
      }
    }

    // ---- set-up: four senders in two public rooms, two sync readers, a password account ----
    const [alice, bob, carol, dave] = await Promise.all(['alice', 'bob', 'carol', 'dave'].map((u) => clients.mint(u)));
    const roomA = (await clients.call(alice!, 'POST', '/createRoom', { preset: 'public_chat' })).body.room_id as string;
    const roomB = (await clients.call(bob!, 'POST', '/createRoom', { preset: 'public_chat' })).body.room_id as string;
    expect((await clients.call(carol!, 'POST', `/join/${enc(roomA)}`, {})).status).toBe(200);
    expect((await clients.call(dave!, 'POST', `/join/${enc(roomB)}`, {})).status).toBe(200);
    const first = await clients.call(null, 'POST', '/register', { username: 'pwuser', password: 'pw-stall-test' });
    expect(first.status).toBe(401);
    expect((await clients.call(null, 'POST', '/register', { username: 'pwuser', password: 'pw-stall-test', auth: { type: 'm.login.dummy', session: first.body.session } })).status).toBe(200);

    let stop = false;
    /** txn id → what it carried, and every event id a 200 gave for it. */
    const txns = new Map<string, { user: Session; room: string; body: string; acked: Set<string> }>();

    const sender = async (user: Session, room: string) => {
      for (let i = 0; ; i++) {
        if (stop) return;
        const txnId = `${user.userId.slice(1, 6)}-${i}`;
        const body = `${user.userId} message ${i}`;
        txns.set(txnId, { user, room, body, acked: new Set() });
        // Retry with the same txn id until acknowledged (after the load stops: for up to 60 s).
        const giveUpAt = () => (stop ? stopAt + 60_000 : Number.POSITIVE_INFINITY);
        for (;;) {
          const r = await call('send', user, 'PUT', `/rooms/${enc(room)}/send/m.room.message/${txnId}`, { msgtype: 'm.text', body });
          if (r.status === 200) {
            txns.get(txnId)!.acked.add(r.body.event_id as string);
            break;
          }
          if (Date.now() > giveUpAt()) return;
          await sleep(500);
        }
      }
    };
    const syncReader = async (user: Session) => {
      let since: string | null = null;
      while (!stop) {
        const r = await call('sync', user, 'GET', `/sync?timeout=${SYNC_TIMEOUT_MS}${since ? `&since=${enc(since)}` : ''}`, undefined, since ? SYNC_TIMEOUT_MS : 0);
        if (r.status === 200) since = r.body.next_batch as string;
        else await sleep(1000); // then again with the same token, as clients do
      }
    };
    const every = (ms: number, f: () => Promise<unknown>) => (async () => {
      while (!stop) {
        await f();
        await sleep(ms);
      }
    })();
    let registered = 0;
    const registerOnce = async () => {
      const username = `reg${registered++}`;
      const a = await call('register', null, 'POST', '/register', { username, password: 'pw' });
      if (a.status !== 401) return;
      await call('register', null, 'POST', '/register', { username, password: 'pw', auth: { type: 'm.login.dummy', session: a.body.session } });
    };

    /** GET /health (text/plain) and GET /versions (static), as a load balancer and a client's connectivity check call them. */
    const health: { at: number; status: number; text: string; ms: number }[] = [];
    const versions: { at: number; status: number }[] = [];
    const probeHealth = async () => {
      const at = Date.now();
      const r = await fetch(`${server.baseUrl}/health`, { signal: AbortSignal.timeout(60_000) });
      health.push({ at, status: r.status, text: await r.text(), ms: Date.now() - at });
      const v = await fetch(`${server.baseUrl}/_matrix/client/versions`, { signal: AbortSignal.timeout(60_000) });
      versions.push({ at, status: v.status });
      await v.arrayBuffer();
    };

    let stopAt = 0;
    const load = Promise.all([
      every(500, probeHealth),
      sender(alice!, roomA), sender(carol!, roomA), sender(bob!, roomB), sender(dave!, roomB),
      syncReader(alice!), syncReader(carol!),
      every(250, () => call('whoami', bob!, 'GET', '/account/whoami')),
      every(500, () => call('messages', dave!, 'GET', `/rooms/${enc(roomB)}/messages?dir=b&limit=10`)),
      every(1000, registerOnce),
      every(1000, () => call('login', null, 'POST', '/login', { type: 'm.login.password', identifier: { type: 'm.id.user', user: 'pwuser' }, password: 'pw-stall-test' })),
    ]);

    // ---- warm up, stall for 30 s, resume ----
    await sleep(3000);
    const stallStart = Date.now();
    process.kill(redisServer.pid, 'SIGSTOP');
    paused = true;
    await sleep(STALL_MS);
    const stallEnd = Date.now();
    process.kill(redisServer.pid, 'SIGCONT');
    paused = false;

    // Service resumes by itself: the first whoami answered 200 after SIGCONT.
    let recoveredAt = 0;
    while (!recoveredAt && Date.now() - stallEnd < 30_000) {
      const r = await call('probe', bob!, 'GET', '/account/whoami');
      if (r.status === 200) recoveredAt = Date.now();
      else await sleep(100);
    }
    expect(recoveredAt, 'whoami answered 200 within 30 s of SIGCONT').toBeGreaterThan(0);
    await sleep(5000); // load goes on after the recovery
    stop = true;
    stopAt = Date.now();
    await load;

    // ---- errors were fast and clear ----
    const during = samples.filter((s) => s.start < stallEnd && s.end > stallStart);
    const bound = (s: Sample) => (s.waitMs ?? 0) + deadlineMs + MARGIN_MS;
    const tooSlow = samples.filter((s) => s.end - s.start > bound(s));
    expect(tooSlow, 'requests answered later than their deadline plus margin').toEqual([]);
    expect(samples.filter((s) => s.failure), 'requests without an HTTP answer').toEqual([]);
    const failures = samples.filter((s) => s.status !== 200 && !(s.kind === 'register' && s.status === 401));
    const unclear = failures.filter((s) => !((s.status === 503 && s.retryAfter !== null && s.errcode === 'M_UNKNOWN') || (s.status === 504 && s.errcode === 'M_UNKNOWN')));
    expect(unclear, 'failures other than 503 M_UNKNOWN with Retry-After or 504 M_UNKNOWN').toEqual([]);
    expect(failures.length, 'the stall was felt').toBeGreaterThan(0);
    // Once the stall is noticed (a PING unanswered for redis.pingTimeoutMs), new requests fail at once.
    const noticed = stallStart + server.config.redis.pingTimeoutMs + 3000;
    const late = during.filter((s) => s.start > noticed && s.end < stallEnd && s.kind !== 'probe');
    expect(late.length).toBeGreaterThan(0);
    const slowFailFast = late.filter((s) => s.end - s.start > 3000);
    expect(slowFailFast, 'requests made after the stall was noticed and answered later than 3 s').toEqual([]);

    // /health said so (503 while Redis was unreachable, 200 before and after), at once; /versions served throughout.
    expect(health.filter((h) => h.at < stallStart).every((h) => h.status === 200 && h.text === 'OK')).toBe(true);
    const healthDuring = health.filter((h) => h.at > noticed && h.at + h.ms < stallEnd);
    expect(healthDuring.length).toBeGreaterThan(0);
    expect(healthDuring.filter((h) => h.status !== 503 || h.ms > 3000)).toEqual([]);
    expect(health.filter((h) => h.at > recoveredAt + 2000).every((h) => h.status === 200)).toBe(true);
    expect(versions.filter((v) => v.status !== 200)).toEqual([]);

    // ---- nothing acknowledged lost, nothing duplicated ----
    const timeline = new Map<string, Map<string, string>>(); // room → event id → body
    for (const [room, reader] of [[roomA, alice!], [roomB, bob!]] as const) {
      const events = new Map<string, string>();
      let from: string | undefined;
      for (;;) {
        const page = await clients.call(reader, 'GET', `/rooms/${enc(room)}/messages?dir=b&limit=500${from ? `&from=${enc(from)}` : ''}`);
        expect(page.status).toBe(200);
        for (const ev of page.body.chunk as Json[]) if (ev.type === 'm.room.message') events.set(ev.event_id as string, ev.content.body as string);
        if (!page.body.end || (page.body.chunk as Json[]).length === 0) break;
        from = page.body.end as string;
      }
      timeline.set(room, events);
    }
    let acked = 0;
    let unacked = 0;
    const lost: string[] = [];
    const wrong: string[] = [];
    const bodyCount = new Map<string, number>();
    for (const events of timeline.values()) for (const b of events.values()) bodyCount.set(b, (bodyCount.get(b) ?? 0) + 1);
    for (const [txnId, t] of txns) {
      expect(t.acked.size, `txn ${txnId} acknowledged with more than one event id`).toBeLessThanOrEqual(1);
      if (t.acked.size === 0) {
        unacked++;
        continue;
      }
      acked++;
      const id = [...t.acked][0]!;
      const stored = timeline.get(t.room)!.get(id);
      if (stored === undefined) lost.push(`${txnId} ${id}`);
      else if (stored !== t.body) wrong.push(`${txnId}: ${id} holds ${JSON.stringify(stored)}`);
    }
    expect(lost, 'acknowledged events missing from /messages').toEqual([]);
    expect(wrong, 'acknowledged event ids holding another request’s content').toEqual([]);
    const duplicated = [...bodyCount].filter(([, n]) => n > 1);
    expect(duplicated, 'messages stored more than once after retries').toEqual([]);
    // A retry of an acknowledged txn, now, answers the same event id.
    const [someTxn, some] = [...txns].find(([, t]) => t.acked.size === 1)!;
    const again = await clients.call(some.user, 'PUT', `/rooms/${enc(some.room)}/send/m.room.message/${someTxn}`, { msgtype: 'm.text', body: some.body });
    expect(again.body.event_id).toBe([...some.acked][0]);

    // ---- the workers recovered by themselves: every shard held, sends acknowledged ----
    const keys = new KeySpace(server.config.redis.keyPrefix);
    const shards = await readShards(server.redis, keys, { room: server.config.shards.rooms, user: server.config.shards.users }, { details: true });
    expect(shards.filter((s) => !s.owner).map((s) => `${s.family}:${s.shard}`)).toEqual([]);
    expect(shards.filter((s) => s.dead > 0).map((s) => `${s.family}:${s.shard}`), 'messages dead-lettered').toEqual([]);
    const firstSendAfter = Math.min(...samples.filter((s) => s.kind === 'send' && s.status === 200 && s.end > stallEnd).map((s) => s.end));

    // ---- the figures ----
    const maxDuring = (kinds: string[]) => Math.max(0, ...during.filter((s) => kinds.includes(s.kind)).map((s) => s.end - s.start));
    const byStatus: Record<string, number> = {};
    for (const s of during) byStatus[s.status] = (byStatus[s.status] ?? 0) + 1;
    const slowest = [...during].sort((a, b) => b.end - b.start - (a.end - a.start)).slice(0, 6).map((s) => [s.kind, s.start - stallStart, s.end - s.start, s.status]);
    const failLatencies = late.map((s) => s.end - s.start).sort((a, b) => a - b);
    console.log(
      `[redis-stall] ${STALL_MS / 1000} s SIGSTOP under load: ${during.length} requests overlapped the stall (by status: ${JSON.stringify(byStatus)}); ` +
        `max latency during the stall: send ${maxDuring(['send'])} ms, whoami ${maxDuring(['whoami'])} ms, messages ${maxDuring(['messages'])} ms, ` +
        `register ${maxDuring(['register'])} ms, login ${maxDuring(['login'])} ms, sync (timeout ${SYNC_TIMEOUT_MS} ms) ${maxDuring(['sync'])} ms; ` +
        `after the stall was noticed: ${late.length} requests, p50 ${failLatencies[Math.floor(failLatencies.length / 2)] ?? 0} ms, max ${failLatencies[failLatencies.length - 1] ?? 0} ms; ` +
        `recovery after SIGCONT: whoami 200 in ${recoveredAt - stallEnd} ms, first acknowledged send in ${firstSendAfter - stallEnd} ms; ` +
        `sends: ${acked} acknowledged (all found with their own content, none duplicated), ${unacked} never acknowledged; ` +
        `request deadline ${deadlineMs} ms, command timeout ${server.config.redis.commandTimeoutMs} ms, ping timeout ${server.config.redis.pingTimeoutMs} ms; ` +
        `slowest during the stall [kind, started ms after SIGSTOP, ms, status]: ${JSON.stringify(slowest)}`,
    );
  }, 240_000);
});
