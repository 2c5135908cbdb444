/**
 * Push delivery (issue 19) against the reference: Axon and a real Synapse 1.163.2 side by side,
 * the same users and rooms on each, the same pusher pointing at one loopback push-gateway
 * recorder the test runs; the same events sent on both, and what reaches the recorder compared
 * field by field (ids, server names and timestamps normalised). Then what the recorder sees of
 * Axon alone: a gateway down for a while gets everything after it comes back, in order, once; a
 * pushkey the gateway rejects removes the pusher.
 *
 * Synapse needs `ip_range_whitelist: ["127.0.0.0/8"]` to push to loopback; Axon gets
 * `push.ipRangeAllowlist` the same.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enc, eventually, txn, type Json } from './clients';
import { startTestServer, type TestServer } from './server-harness';
import { callServer, loopbackServerName, startSynapse, SYNAPSE_VERSION, type SynapsePeer } from '../peers/synapse';
import { skipWithoutSynapse } from '../federation/harness';
import { createTestCa, type TestCa } from '../../scripts/lib/test-ca';

const S_IP = '127.0.0.245';
const skip = skipWithoutSynapse('push-delivery.e2e');

/** A push gateway that records every `/notify` body and answers as told. */
class Recorder {
  readonly received: { at: number; body: Json }[] = [];
  /** Pushkeys answered as rejected. */
  readonly reject = new Set<string>();
  /** While set, every request answers this status (a gateway that is down). */
  failWith: number | null = null;
  failures = 0;
  private server!: Server;
  url = '';

  async start(): Promise<void> {
    this.server = createServer((req: IncomingMessage, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        if (req.url !== '/_matrix/push/v1/notify' || req.method !== 'POST') {
          res.writeHead(404).end();
          return;
        }
        if (this.failWith !== null) {
          this.failures++;
          res.writeHead(this.failWith, { 'content-type': 'application/json' }).end('{}');
          return;
        }
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Json;
        this.received.push({ at: Date.now(), body });
        const keys = ((body.notification?.devices ?? []) as Json[]).map((d) => d.pushkey as string);
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ rejected: keys.filter((k) => this.reject.has(k)) }));
      });
    });
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/_matrix/push/v1/notify`;
  }

  for(pushkey: string): Json[] {
    return this.received.filter((r) => (r.body.notification?.devices ?? []).some((d: Json) => d.pushkey === pushkey)).map((r) => r.body.notification as Json);
  }

  stop(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

interface Who {
  userId: string;
  token: string;
}
type Call = (who: Who | null, method: string, path: string, body?: unknown) => Promise<{ status: number; body: Json }>;

/** One side of the comparison: a server, its users, and what it sent the recorder. */
interface Side {
  name: string;
  call: Call;
  alice: Who;
  bob: Who;
  pushkey: string;
  dm: string;
  group: string;
}

async function register(call: Call, localpart: string, displayname: string): Promise<Who> {
  const r = await call(null, 'POST', '/register', { username: localpart, password: `${localpart} password`, auth: { type: 'm.login.dummy' } });
  if (r.status !== 200) throw new Error(`register ${localpart}: ${r.status} ${JSON.stringify(r.body)}`);
  const who = { userId: r.body.user_id as string, token: r.body.access_token as string };
  await call(who, 'PUT', `/profile/${enc(who.userId)}/displayname`, { displayname });
  return who;
}

async function room(call: Call, alice: Who, bob: Who, body: Json, others: Who[] = []): Promise<string> {
  const created = await call(alice, 'POST', '/createRoom', { ...body, invite: [bob.userId, ...others.map((o) => o.userId)] });
  for (const o of others) if ((await call(o, 'POST', `/join/${enc(created.body.room_id)}`, {})).status !== 200) throw new Error('join');
  if (created.status !== 200) throw new Error(`createRoom: ${JSON.stringify(created.body)}`);
  const joined = await call(bob, 'POST', `/join/${enc(created.body.room_id)}`, {});
  if (joined.status !== 200) throw new Error(`join: ${JSON.stringify(joined.body)}`);
  // Bob reads the room once: Synapse's badge would otherwise count the invite that notified him
  // until he does (its badge query has no cut at the join; Axon's counts, like /sync's, start there).
  const latest = await call(bob, 'GET', `/rooms/${enc(created.body.room_id)}/messages?dir=b&limit=1`);
  const read = await call(bob, 'POST', `/rooms/${enc(created.body.room_id)}/receipt/m.read/${enc(latest.body.chunk[0].event_id)}`, {});
  if (read.status !== 200) throw new Error(`receipt: ${JSON.stringify(read.body)}`);
  return created.body.room_id;
}

/** A notification with what differs between servers for the same events replaced by placeholders. */
function normalised(n: Json, side: Side): Json {
  let text = JSON.stringify(n);
  const replace = (from: string, to: string) => {
    text = text.split(from).join(to);
  };
  replace(side.alice.userId, '@alice');
  replace(side.bob.userId, '@bob');
  replace(side.dm, '!dm');
  replace(side.group, '!group');
  replace(side.pushkey, 'PUSHKEY');
  const out = JSON.parse(text) as Json;
  // Synapse's default rules set `highlight: false` explicitly on some rules; the spec's (Axon's)
  // leave it out. The same to a gateway: an absent highlight is false.
  for (const d of out.devices ?? []) {
    if (d.tweaks?.highlight === false) delete d.tweaks.highlight;
    if (d.tweaks && Object.keys(d.tweaks).length === 0) delete d.tweaks;
  }
  if (typeof out.event_id === 'string') out.event_id = '$event';
  if (typeof out.id === 'string' && out.id !== '') out.id = '$event';
  for (const d of out.devices ?? []) d.pushkey_ts = typeof d.pushkey_ts === 'number' ? 'seconds' : d.pushkey_ts;
  return out;
}

describe.skipIf(skip)(`push delivery: Axon beside Synapse ${SYNAPSE_VERSION}, one recorder`, () => {
  const recorder = new Recorder();
  let axon: TestServer;
  let synapse: SynapsePeer;
  let ca: TestCa;
  const sides: Side[] = [];

  beforeAll(async () => {
    await recorder.start();
    ca = createTestCa();
    [axon, synapse] = await Promise.all([
      startTestServer({
        push: true,
        configure: (c) => {
          c.push.ipRangeAllowlist = ['127.0.0.0/8'];
        },
      }),
      loopbackServerName(S_IP).then((serverName) =>
        startSynapse({
          serverName,
          ca,
          configure: (c) => {
            c.enable_registration = true;
            c.enable_registration_without_verification = true;
            c.ip_range_whitelist = ['127.0.0.0/8'];
          },
        }),
      ),
    ]);
    const calls: [string, Call][] = [
      ['Axon', (who, method, path, body) => callServer(axon, who, method, path, body)],
      ['Synapse', (who, method, path, body) => synapse.call(who, method, path, body)],
    ];
    for (const [name, call] of calls) {
      const alice = await register(call, 'alice', 'Alice A');
      const bob = await register(call, 'bob', 'Bob B');
      const dm = await room(call, alice, bob, { preset: 'trusted_private_chat', is_direct: true });
      // Three members: a room of two is "one to one" to the push rules.
      const carol = await register(call, 'carol', 'Carol C');
      const group = await room(call, alice, bob, { preset: 'private_chat', name: 'The Group' }, [carol]);
      const pushkey = `${name.toLowerCase()}-pushkey`;
      const set = await call(bob, 'POST', '/pushers/set', { kind: 'http', app_id: 'com.example.app', pushkey, app_display_name: 'App', device_display_name: 'Phone', lang: 'en', data: { url: recorder.url, custom: 'kept' } });
      if (set.status !== 200) throw new Error(`pushers/set on ${name}: ${JSON.stringify(set.body)}`);
      sides.push({ name, call, alice, bob, pushkey, dm, group });
    }
  }, 240_000);

  afterAll(async () => {
    await Promise.all([axon?.stop(), synapse?.stop()]);
    ca?.cleanup();
    await recorder.stop();
  });

  /** Do the same on both servers, wait until each recorder has `n` more for its pushkey, compare. */
  async function same(label: string, act: (s: Side) => Promise<void>, n = 1): Promise<Json[]> {
    const before = sides.map((s) => recorder.for(s.pushkey).length);
    const started = performance.now();
    for (const s of sides) await act(s);
    const got = await Promise.all(
      sides.map(async (s, i) => {
        await eventually(async () => recorder.for(s.pushkey).length, (len) => len >= before[i]! + n, 30_000);
        return recorder.for(s.pushkey).slice(before[i]!);
      }),
    );
    console.log(`push-delivery.e2e: ${label}: ${Math.round(performance.now() - started)} ms for both`);
    const [onAxon, onSynapse] = got.map((list, i) => list.map((x) => normalised(x, sides[i]!)));
    expect(onAxon, `${label}: what Axon sent`).toEqual(onSynapse);
    return got[0]!;
  }

  it('a DM message: the same notification (event fields, content, sender display name, counts, tweaks, prio, device)', async () => {
    const [n] = await same('DM message', async (s) => {
      const r = await s.call(s.alice, 'PUT', `/rooms/${enc(s.dm)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body: 'hello there' });
      expect(r.status).toBe(200);
    });
    expect(n).toMatchObject({ type: 'm.room.message', content: { body: 'hello there' }, sender_display_name: 'Alice A', prio: 'high', counts: { unread: 1 } });
    expect(n!.devices[0]).toMatchObject({ app_id: 'com.example.app', data: { custom: 'kept' }, tweaks: { sound: 'default' } });
    expect(n!.devices[0].data.url).toBeUndefined();
  });

  // Mentions are made with `m.mentions` (what clients send since v1.7). Synapse 1.163 also keeps
  // the legacy rules that look for the user's name in the body (`.m.rule.contains_user_name`,
  // `.m.rule.contains_display_name`, `.m.rule.roomnotif`), which the spec removed in v1.17 and
  // Axon does not have; the bodies here name nobody, so both servers judge by the same rules.
  it('a group message names the room; an m.mentions mention highlights', async () => {
    const [plain] = await same('group message', async (s) => {
      expect((await s.call(s.alice, 'PUT', `/rooms/${enc(s.group)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body: 'morning all' })).status).toBe(200);
    });
    expect(plain).toMatchObject({ room_name: 'The Group', prio: 'low', counts: { unread: 2 } });
    const [mention] = await same('mention', async (s) => {
      expect((await s.call(s.alice, 'PUT', `/rooms/${enc(s.group)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body: 'are you there?', 'm.mentions': { user_ids: [s.bob.userId] } })).status).toBe(200);
    });
    expect(mention).toMatchObject({ prio: 'high' });
    expect(mention!.devices[0].tweaks).toMatchObject({ highlight: true });
  });

  it('reading sends a count-only badge update', async () => {
    const [badge] = await same('read receipt badge', async (s) => {
      const last = await s.call(s.bob, 'GET', `/rooms/${enc(s.group)}/messages?dir=b&limit=1`);
      const eventId = last.body.chunk[0].event_id as string;
      expect((await s.call(s.bob, 'POST', `/rooms/${enc(s.group)}/receipt/m.read/${enc(eventId)}`, {})).status).toBe(200);
    });
    expect(badge).toMatchObject({ id: '', type: null, sender: '', counts: { unread: 1 } });
  });

  it('a muted room notifies nothing', async () => {
    for (const s of sides) expect((await s.call(s.bob, 'PUT', `/pushrules/global/room/${enc(s.group)}`, { actions: [] })).status).toBe(200);
    // A message in the muted room, then one in the DM: only the DM's reaches the gateway.
    const [n] = await same('muted room, then DM', async (s) => {
      expect((await s.call(s.alice, 'PUT', `/rooms/${enc(s.group)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body: 'nobody hears this' })).status).toBe(200);
      expect((await s.call(s.alice, 'PUT', `/rooms/${enc(s.dm)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body: 'but this' })).status).toBe(200);
    });
    expect(n!.content.body).toBe('but this');
  });

  it('Axon: a gateway down for a while gets every notification after it returns, in order, once', async () => {
    const s = sides[0]!;
    const before = recorder.for(s.pushkey).length;
    recorder.failWith = 503;
    const bodies: string[] = [];
    for (let i = 0; i < 5; i++) {
      const body = `while the gateway is down ${i}`;
      bodies.push(body);
      expect((await s.call(s.alice, 'PUT', `/rooms/${enc(s.dm)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body })).status).toBe(200);
    }
    await eventually(async () => recorder.failures, (f) => f >= 2, 30_000);
    recorder.failWith = null;
    const downFor = Date.now();
    await eventually(async () => recorder.for(s.pushkey).length, (len) => len >= before + 5, 60_000);
    console.log(`push-delivery.e2e: 5 notifications delivered ${Date.now() - downFor} ms after the gateway came back (${recorder.failures} failed attempts)`);
    await new Promise((r) => setTimeout(r, 1500));
    const after = recorder.for(s.pushkey).slice(before);
    expect(after.map((n) => n.content?.body)).toEqual(bodies);
  });

  it('Axon: a pushkey the gateway rejects removes the pusher', async () => {
    const s = sides[0]!;
    recorder.reject.add(s.pushkey);
    expect((await s.call(s.alice, 'PUT', `/rooms/${enc(s.dm)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body: 'rejected' })).status).toBe(200);
    await eventually(() => s.call(s.bob, 'GET', '/pushers'), (r) => r.body.pushers?.length === 0, 30_000);
  });
});

describe('push delivery: a gateway on a blocked address is never reached', () => {
  const recorder = new Recorder();
  let axon: TestServer;

  beforeAll(async () => {
    await recorder.start();
    // No push.ipRangeAllowlist: loopback is in the federation IP blocklist.
    axon = await startTestServer({ push: true });
  }, 120_000);

  afterAll(async () => {
    await axon?.stop();
    await recorder.stop();
  });

  it('the push fails and backs off; the gateway sees no request', async () => {
    const call: Call = (who, method, path, body) => callServer(axon, who, method, path, body);
    const alice = await register(call, 'balice', 'Alice');
    const bob = await register(call, 'bbob', 'Bob');
    const dm = await room(call, alice, bob, { preset: 'trusted_private_chat', is_direct: true });
    expect((await call(bob, 'POST', '/pushers/set', { kind: 'http', app_id: 'com.example.app', pushkey: 'blocked', app_display_name: 'App', device_display_name: 'Phone', lang: 'en', data: { url: recorder.url } })).status).toBe(200);
    expect((await call(alice, 'PUT', `/rooms/${enc(dm)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body: 'to a blocked gateway' })).status).toBe(200);
    // The sender marks the pusher failing (its backoff state) without ever connecting.
    const prefix = axon.config.redis.keyPrefix;
    const state = await eventually(async () => (await axon.redis.keys(`${prefix}*${bob.userId}:ps:*`))[0], (k) => !!k, 30_000);
    const fields = await axon.redis.hgetall(state!);
    expect(Number(fields.failing_since)).toBeGreaterThan(0);
    expect(Number(fields.backoff)).toBeGreaterThanOrEqual(1000);
    expect(recorder.received).toEqual([]);
    // Still queued: it goes out if an operator allows the address (not lost).
    const queued = (await axon.redis.keys(`${prefix}*${bob.userId}:pq:*`))[0]!;
    expect(await axon.redis.zcard(queued)).toBe(1);
  });
});
