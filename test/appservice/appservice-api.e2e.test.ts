/**
 * The Client-Server API for application services, end to end: a real Axon (workers + front on the
 * test Redis) loading registration files, and real HTTP appservices (node:http servers in this
 * test) that answer the server's queries the way bridges do — registering a puppet when asked
 * about it, creating a portal room when asked about an alias, describing their IRC networks.
 * Covers as_token authentication, identity assertion (user_id, device_id), registration and
 * login of appservice users, exclusive namespaces, rate limits, ping, third-party look-ups and
 * the appservice room directory.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../e2e/server-harness';
import { freePort } from '../setup/free-port';
import { AS_TOKEN, AppserviceServer, DOWN_TOKEN, HS_TOKEN, NOURL_TOKEN, SECOND_AS_TOKEN, writeRegistrations } from './query-appservice';

type Json = Record<string, any>;

let server: TestServer;
const bridge = new AppserviceServer();
let base = '';
const enc = encodeURIComponent;

async function call(token: string | null, method: string, path: string, body?: unknown): Promise<{ status: number; body: Json }> {
  const r = await fetch(`${base}${path.startsWith('/_matrix') ? '' : '/_matrix/client/v3'}${path}`, {
    method,
    headers: { ...(token ? { Authorization: `Bearer ${token}` } : {}), 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: r.status, body: (await r.json()) as Json };
}

/** A plain user, registered through the dummy stage. */
async function plainUser(localpart: string): Promise<{ userId: string; token: string }> {
  const first = await call(null, 'POST', '/register', { username: localpart, password: 'pw pw pw pw' });
  const done = await call(null, 'POST', '/register', { username: localpart, password: 'pw pw pw pw', auth: { type: 'm.login.dummy', session: first.body.session } });
  expect(done.status, JSON.stringify(done.body)).toBe(200);
  return { userId: done.body.user_id, token: done.body.access_token };
}

const err = (r: { status: number; body: Json }) => [r.status, r.body.errcode];

beforeAll(async () => {
  await bridge.start();
  const closedPort = await freePort();
  const files = writeRegistrations(mkdtempSync(join(tmpdir(), 'axon-as-e2e-')), bridge.port, closedPort, false);
  server = await startTestServer({
    configure: (c) => {
      c.appservices = { ...c.appservices, configFiles: files, queryTimeoutMs: 1500 };
    },
  });
  base = server.baseUrl;
  bridge.homeserver = base;
});
afterAll(async () => {
  await server?.stop();
  await bridge.stop();
});

describe('registration of appservice users', () => {
  it('registers users of its namespace with its as_token, without UIA', async () => {
    const r = await call(AS_TOKEN, 'POST', '/register', { type: 'm.login.application_service', username: 'irc_alice' });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.user_id).toBe('@irc_alice:localhost');
    expect(typeof r.body.access_token).toBe('string');
    expect(typeof r.body.device_id).toBe('string');
    // The token it got works for that user.
    expect((await call(r.body.access_token, 'GET', '/account/whoami')).body.user_id).toBe('@irc_alice:localhost');
    const inhibited = await call(AS_TOKEN, 'POST', '/register', { type: 'm.login.application_service', username: 'irc_bob', inhibit_login: true });
    expect(inhibited.status).toBe(200);
    expect(inhibited.body).toEqual({ user_id: '@irc_bob:localhost', home_server: 'localhost' });
    // Capitals are kept as given (bridges rely on their historical ids).
    const caps = await call(AS_TOKEN, 'POST', '/register', { type: 'm.login.application_service', username: 'irc_Carol', inhibit_login: true });
    expect(caps.body.user_id).toBe('@irc_Carol:localhost');
  });

  it('refuses users outside its namespace, other appservices\' users, taken ids and missing tokens', async () => {
    expect(err(await call(AS_TOKEN, 'POST', '/register', { type: 'm.login.application_service', username: 'plainname' }))).toEqual([400, 'M_EXCLUSIVE']);
    expect(err(await call(AS_TOKEN, 'POST', '/register', { type: 'm.login.application_service', username: 'second_x' }))).toEqual([400, 'M_EXCLUSIVE']);
    expect(err(await call(AS_TOKEN, 'POST', '/register', { type: 'm.login.application_service', username: 'irc_alice' }))).toEqual([400, 'M_USER_IN_USE']);
    expect(err(await call(null, 'POST', '/register', { type: 'm.login.application_service', username: 'irc_zed' }))).toEqual([401, 'M_MISSING_TOKEN']);
    expect(err(await call('not-a-token', 'POST', '/register', { type: 'm.login.application_service', username: 'irc_zed' }))).toEqual([401, 'M_UNKNOWN_TOKEN']);
    expect(err(await call(AS_TOKEN, 'POST', '/register', { type: 'm.login.application_service' }))).toEqual([400, 'M_INVALID_PARAM']);
    expect(err(await call(AS_TOKEN, 'POST', '/register', { type: 'm.login.application_service', username: 'irc bad' }))).toEqual([400, 'M_INVALID_USERNAME']);
  });

  it('keeps exclusive namespaces from everyone else', async () => {
    const first = await call(null, 'POST', '/register', { username: 'irc_mallory', password: 'pw pw pw pw' });
    expect(err(first)).toEqual([400, 'M_EXCLUSIVE']);
    expect(err(await call(null, 'GET', '/register/available?username=irc_mallory'))).toEqual([400, 'M_EXCLUSIVE']);
    // The sender of an appservice is reserved as well.
    expect(err(await call(null, 'POST', '/register', { username: 'ircbot', password: 'pw pw pw pw' }))).toEqual([400, 'M_EXCLUSIVE']);
    // A non-exclusive namespace stays open to people.
    expect((await call(null, 'GET', '/register/available?username=shared_one')).body).toEqual({ available: true });
  });
});

describe('identity assertion', () => {
  it('acts as its sender by default (made on first use) and as its users with user_id', async () => {
    const me = await call(AS_TOKEN, 'GET', '/account/whoami');
    expect(me.status).toBe(200);
    expect(me.body).toEqual({ user_id: '@ircbot:localhost', is_guest: false });
    const alice = await call(AS_TOKEN, 'GET', `/account/whoami?user_id=${enc('@irc_alice:localhost')}`);
    expect(alice.body).toEqual({ user_id: '@irc_alice:localhost', is_guest: false });
    // The sender has a profile like any user.
    expect((await call(AS_TOKEN, 'GET', `/profile/${enc('@ircbot:localhost')}`)).body.displayname).toBe('ircbot');
  });

  it('refuses users outside the namespace and users it has not registered', async () => {
    const outside = await call(AS_TOKEN, 'GET', `/account/whoami?user_id=${enc('@second_x:localhost')}`);
    expect(err(outside)).toEqual([403, 'M_FORBIDDEN']);
    expect(outside.body.error).toContain('cannot masquerade');
    const unregistered = await call(AS_TOKEN, 'GET', `/account/whoami?user_id=${enc('@irc_nobody:localhost')}`);
    expect(err(unregistered)).toEqual([403, 'M_FORBIDDEN']);
    expect(unregistered.body.error).toContain('has not registered');
    expect(err(await call(AS_TOKEN, 'GET', '/account/whoami?user_id=notauser'))).toEqual([400, 'M_INVALID_PARAM']);
    // A plain user's user_id parameter changes nothing.
    const dave = await plainUser(`dave${randomBytes(2).toString('hex')}`);
    expect((await call(dave.token, 'GET', `/account/whoami?user_id=${enc('@irc_alice:localhost')}`)).body.user_id).toBe(dave.userId);
  });

  it('acts as one of the user\'s devices with device_id (MSC4326), refusing unknown ones', async () => {
    const reg = await call(AS_TOKEN, 'POST', '/register', { type: 'm.login.application_service', username: 'irc_devi', device_id: 'BRIDGEDEV' });
    expect(reg.body.device_id).toBe('BRIDGEDEV');
    const who = await call(AS_TOKEN, 'GET', `/account/whoami?user_id=${enc('@irc_devi:localhost')}&device_id=BRIDGEDEV`);
    expect(who.body).toEqual({ user_id: '@irc_devi:localhost', device_id: 'BRIDGEDEV', is_guest: false });
    expect(err(await call(AS_TOKEN, 'GET', `/account/whoami?user_id=${enc('@irc_devi:localhost')}&device_id=NOPE`))).toEqual([400, 'M_UNKNOWN_DEVICE']);
    // Logging out with the as_token ends that device only; the as_token itself stays valid.
    expect((await call(AS_TOKEN, 'POST', `/logout?user_id=${enc('@irc_devi:localhost')}&device_id=BRIDGEDEV`, {})).status).toBe(200);
    expect(err(await call(AS_TOKEN, 'GET', `/account/whoami?user_id=${enc('@irc_devi:localhost')}&device_id=BRIDGEDEV`))).toEqual([400, 'M_UNKNOWN_DEVICE']);
    expect(err(await call(reg.body.access_token, 'GET', '/account/whoami'))).toEqual([401, 'M_UNKNOWN_TOKEN']);
    expect((await call(AS_TOKEN, 'POST', '/logout', {})).status).toBe(200);
    expect((await call(AS_TOKEN, 'GET', '/account/whoami')).status).toBe(200);
  });

  it('sends events as its puppets', async () => {
    const created = await call(AS_TOKEN, 'POST', '/createRoom', { name: 'bridged', preset: 'public_chat' });
    expect(created.status, JSON.stringify(created.body)).toBe(200);
    const roomId = created.body.room_id as string;
    const as = (userId: string) => `user_id=${enc(userId)}`;
    expect((await call(AS_TOKEN, 'POST', `/rooms/${enc(roomId)}/join?${as('@irc_alice:localhost')}`, {})).status).toBe(200);
    const sent = await call(AS_TOKEN, 'PUT', `/rooms/${enc(roomId)}/send/m.room.message/t1?${as('@irc_alice:localhost')}`, { msgtype: 'm.text', body: 'hello from IRC' });
    expect(sent.status).toBe(200);
    const ev = await call(AS_TOKEN, 'GET', `/rooms/${enc(roomId)}/event/${enc(sent.body.event_id)}`);
    expect(ev.body.sender).toBe('@irc_alice:localhost');
    expect(ev.body.content.body).toBe('hello from IRC');
    // The same transaction id again as the same puppet: the same event (idempotent), not a second one.
    const again = await call(AS_TOKEN, 'PUT', `/rooms/${enc(roomId)}/send/m.room.message/t1?${as('@irc_alice:localhost')}`, { msgtype: 'm.text', body: 'hello from IRC' });
    expect(again.body.event_id).toBe(sent.body.event_id);
  });
});

describe('m.login.application_service', () => {
  it('is offered by GET /login', async () => {
    expect((await call(null, 'GET', '/login')).body.flows).toContainEqual({ type: 'm.login.application_service' });
  });

  it('logs in a user of the namespace with the as_token', async () => {
    const r = await call(AS_TOKEN, 'POST', '/login', { type: 'm.login.application_service', identifier: { type: 'm.id.user', user: 'irc_bob' }, device_id: 'LOGINDEV' });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.user_id).toBe('@irc_bob:localhost');
    expect(r.body.device_id).toBe('LOGINDEV');
    expect((await call(r.body.access_token, 'GET', '/account/whoami')).body).toEqual({ user_id: '@irc_bob:localhost', device_id: 'LOGINDEV', is_guest: false });
    const sender = await call(AS_TOKEN, 'POST', '/login', { type: 'm.login.application_service', identifier: { type: 'm.id.user', user: '@ircbot:localhost' } });
    expect(sender.status).toBe(200);
  });

  it('refuses other users, plain tokens and malformed identifiers', async () => {
    const dave = await plainUser(`erin${randomBytes(2).toString('hex')}`);
    expect(err(await call(AS_TOKEN, 'POST', '/login', { type: 'm.login.application_service', identifier: { type: 'm.id.user', user: dave.userId } }))).toEqual([403, 'M_FORBIDDEN']);
    expect(err(await call(AS_TOKEN, 'POST', '/login', { type: 'm.login.application_service', identifier: { type: 'm.id.user', user: 'irc_neverregistered' } }))).toEqual([403, 'M_FORBIDDEN']);
    expect(err(await call(dave.token, 'POST', '/login', { type: 'm.login.application_service', identifier: { type: 'm.id.user', user: 'irc_bob' } }))).toEqual([401, 'M_UNKNOWN_TOKEN']);
    expect(err(await call(null, 'POST', '/login', { type: 'm.login.application_service', identifier: { type: 'm.id.user', user: 'irc_bob' } }))).toEqual([401, 'M_MISSING_TOKEN']);
    expect(err(await call(AS_TOKEN, 'POST', '/login', { type: 'm.login.application_service', identifier: { type: 'm.id.thirdparty', medium: 'email', address: 'a@b' } }))).toEqual([400, 'M_INVALID_PARAM']);
  });
});

describe('aliases', () => {
  it('keeps exclusive alias namespaces from people; the appservice only creates its own', async () => {
    const frank = await plainUser(`frank${randomBytes(2).toString('hex')}`);
    const room = await call(frank.token, 'POST', '/createRoom', {});
    const roomId = room.body.room_id as string;
    expect(err(await call(frank.token, 'PUT', `/directory/room/${enc('#irc_taken:localhost')}`, { room_id: roomId }))).toEqual([400, 'M_EXCLUSIVE']);
    expect(err(await call(frank.token, 'POST', '/createRoom', { room_alias_name: 'irc_mine' }))).toEqual([400, 'M_EXCLUSIVE']);
    const asRoom = await call(AS_TOKEN, 'POST', '/createRoom', { room_alias_name: 'irc_chan' });
    expect(asRoom.status, JSON.stringify(asRoom.body)).toBe(200);
    expect(err(await call(AS_TOKEN, 'PUT', `/directory/room/${enc('#notirc:localhost')}`, { room_id: asRoom.body.room_id }))).toEqual([400, 'M_EXCLUSIVE']);
    expect((await call(frank.token, 'GET', `/directory/room/${enc('#irc_chan:localhost')}`)).body.room_id).toBe(asRoom.body.room_id);
  });

  it('asks the appservice about an unknown alias in its namespace; it makes the room', async () => {
    const before = bridge.seen.length;
    const r = await call(null, 'GET', `/directory/room/${enc('#irc_portalabc:localhost')}`);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.room_id).toMatch(/^!/);
    const asked = bridge.seen.slice(before).find((s) => s.path.startsWith('/bridge/_matrix/app/v1/rooms/'));
    expect(asked).toMatchObject({ method: 'GET', path: `/bridge/_matrix/app/v1/rooms/${enc('#irc_portalabc:localhost')}`, auth: `Bearer ${HS_TOKEN}` });
    // One the appservice does not know stays unknown (and it was asked).
    const n = bridge.seen.length;
    expect(err(await call(null, 'GET', `/directory/room/${enc('#irc_nothere:localhost')}`))).toEqual([404, 'M_NOT_FOUND']);
    expect(bridge.seen.slice(n).some((s) => s.path.includes('/rooms/'))).toBe(true);
    // Outside every alias namespace nobody is asked.
    const m = bridge.seen.length;
    expect(err(await call(null, 'GET', `/directory/room/${enc('#plain_nothere:localhost')}`))).toEqual([404, 'M_NOT_FOUND']);
    expect(bridge.seen.length).toBe(m);
  });
});

describe('user queries', () => {
  it('asks the appservice about an unknown puppet when a client reads its profile', async () => {
    const grace = await plainUser(`grace${randomBytes(2).toString('hex')}`);
    const r = await call(grace.token, 'GET', `/profile/${enc('@irc_knownx:localhost')}`);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.displayname).toBe('irc_knownx (IRC)');
    expect(bridge.seen.some((s) => s.path === `/bridge/_matrix/app/v1/users/${enc('@irc_knownx:localhost')}` && s.auth === `Bearer ${HS_TOKEN}`)).toBe(true);
    expect(err(await call(grace.token, 'GET', `/profile/${enc('@irc_unknownnick:localhost')}`))).toEqual([404, 'M_NOT_FOUND']);
  });

  it('asks before an invite and before createRoom invites, so the puppet exists when invited', async () => {
    const heidi = await plainUser(`heidi${randomBytes(2).toString('hex')}`);
    const room = await call(heidi.token, 'POST', '/createRoom', { invite: ['@irc_knowny:localhost'] });
    expect(room.status).toBe(200);
    const roomId = room.body.room_id as string;
    // The puppet exists now: the appservice can join it.
    expect((await call(AS_TOKEN, 'POST', `/rooms/${enc(roomId)}/join?user_id=${enc('@irc_knowny:localhost')}`, {})).status).toBe(200);
    const invited = await call(heidi.token, 'POST', `/rooms/${enc(roomId)}/invite`, { user_id: '@irc_knownz:localhost' });
    expect(invited.status).toBe(200);
    expect((await call(AS_TOKEN, 'POST', `/rooms/${enc(roomId)}/join?user_id=${enc('@irc_knownz:localhost')}`, {})).status).toBe(200);
  });
});

describe('POST /appservice/{id}/ping', () => {
  const ping = (token: string, id: string, body: unknown = { transaction_id: 'ping-1' }) => call(token, 'POST', `/_matrix/client/v1/appservice/${id}/ping`, body);

  it('calls the appservice with its hs_token and answers the round trip', async () => {
    bridge.pingMode = 'ok';
    const r = await ping(AS_TOKEN, 'bridge');
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(Number.isInteger(r.body.duration_ms) && r.body.duration_ms >= 0).toBe(true);
    const seen = bridge.seen.filter((s) => s.path === '/bridge/_matrix/app/v1/ping').at(-1)!;
    expect(seen.auth).toBe(`Bearer ${HS_TOKEN}`);
    expect(JSON.parse(seen.body)).toEqual({ transaction_id: 'ping-1' });
  });

  it('names each failure as the spec does', async () => {
    const dave = await plainUser(`ivan${randomBytes(2).toString('hex')}`);
    expect(err(await ping(dave.token, 'bridge'))).toEqual([403, 'M_FORBIDDEN']);
    expect(err(await ping(AS_TOKEN, 'second'))).toEqual([403, 'M_FORBIDDEN']);
    expect(err(await ping(NOURL_TOKEN, 'nourl'))).toEqual([400, 'M_URL_NOT_SET']);
    expect(err(await ping(DOWN_TOKEN, 'down'))).toEqual([502, 'M_CONNECTION_FAILED']);
    bridge.pingMode = 'error';
    const bad = await ping(AS_TOKEN, 'bridge');
    expect(err(bad)).toEqual([502, 'M_BAD_STATUS']);
    expect(bad.body.status).toBe(500);
    expect(JSON.parse(bad.body.body)).toEqual({ errcode: 'M_UNKNOWN', error: 'the bridge is broken' });
    bridge.pingMode = 'slow';
    expect(err(await ping(AS_TOKEN, 'bridge'))).toEqual([504, 'M_CONNECTION_TIMEOUT']);
    bridge.pingMode = 'ok';
    expect(err(await ping(AS_TOKEN, 'bridge', { transaction_id: 5 }))).toEqual([400, 'M_INVALID_PARAM']);
  });
});

describe('third-party look-ups', () => {
  let token = '';
  beforeAll(async () => {
    token = (await plainUser(`judy${randomBytes(2).toString('hex')}`)).token;
  });

  it('merges the instances of every appservice bridging a protocol, with instance ids', async () => {
    const r = await call(token, 'GET', '/thirdparty/protocols');
    expect(r.status).toBe(200);
    expect(Object.keys(r.body)).toEqual(['irc']);
    const irc = r.body.irc;
    expect(irc.user_fields).toEqual(['network', 'nickname']);
    expect(irc.instances).toHaveLength(4);
    expect(irc.instances.filter((i: Json) => i.instance_id).map((i: Json) => i.instance_id).sort()).toEqual(['bridge|libera', 'second|oftc']);
    expect(irc.instances.find((i: Json) => i.network_id === 'libera')).toEqual({ network_id: 'libera', desc: 'libera IRC', icon: 'mxc://example.org/net', fields: { network: 'libera' }, instance_id: 'bridge|libera' });
    const one = await call(token, 'GET', '/thirdparty/protocol/irc');
    expect(one.body).toEqual(irc);
    expect(err(await call(token, 'GET', '/thirdparty/protocol/xmpp'))).toEqual([404, 'M_NOT_FOUND']);
    expect(err(await call(null, 'GET', '/thirdparty/protocols'))).toEqual([401, 'M_MISSING_TOKEN']);
  });

  it('asks every appservice of the protocol for users and locations, dropping malformed entries', async () => {
    const users = await call(token, 'GET', '/thirdparty/user/irc?nickname=bob');
    expect(users.status).toBe(200);
    expect(users.body.sort((a: Json, b: Json) => a.userid.localeCompare(b.userid))).toEqual([
      { userid: '@irc_bob_libera:localhost', protocol: 'irc', fields: { network: 'libera', nickname: 'bob' } },
      { userid: '@irc_bob_oftc:localhost', protocol: 'irc', fields: { network: 'oftc', nickname: 'bob' } },
    ]);
    const seen = bridge.seen.filter((s) => s.path.startsWith('/bridge/_matrix/app/v1/thirdparty/user/irc')).at(-1)!;
    expect(seen.path).toBe('/bridge/_matrix/app/v1/thirdparty/user/irc?nickname=bob');
    expect(err(await call(token, 'GET', '/thirdparty/user/irc'))).toEqual([404, 'M_NOT_FOUND']);
    expect(err(await call(token, 'GET', '/thirdparty/user/xmpp?nickname=bob'))).toEqual([404, 'M_NOT_FOUND']);
    const locations = await call(token, 'GET', `/thirdparty/location/irc?network=libera&channel=${enc('#matrix')}`);
    expect(locations.body).toEqual([{ alias: '#irc_portalmatrix:localhost', protocol: 'irc', fields: { network: 'libera', channel: '#matrix' } }]);
  });

  it('answers within the deadline without an appservice that is late', async () => {
    bridge.secondDelayMs = 4000;
    try {
      const r = await call(token, 'GET', '/thirdparty/protocols');
      expect(r.status).toBe(200);
      expect(r.body.irc.instances.map((i: Json) => i.instance_id).filter(Boolean)).toEqual(['bridge|libera']);
      const users = await call(token, 'GET', '/thirdparty/user/irc?nickname=bob');
      expect(users.body.map((u: Json) => u.userid)).toEqual(['@irc_bob_libera:localhost']);
      // The late appservice's answers (4 s, past the 1.5 s deadline) are not in them.
    } finally {
      bridge.secondDelayMs = 0;
    }
  });

  it('answers reverse look-ups from the appservice whose namespace holds the id', async () => {
    const u = await call(token, 'GET', `/thirdparty/user?userid=${enc('@irc_alice:localhost')}`);
    expect(u.body).toEqual([{ userid: '@irc_alice:localhost', protocol: 'irc', fields: { network: 'libera', nickname: 'someone' } }]);
    const l = await call(token, 'GET', `/thirdparty/location?alias=${enc('#irc_chan:localhost')}`);
    expect(l.body).toEqual([{ alias: '#irc_chan:localhost', protocol: 'irc', fields: { network: 'libera', channel: '#somewhere' } }]);
    expect(err(await call(token, 'GET', `/thirdparty/user?userid=${enc('@plain:localhost')}`))).toEqual([404, 'M_NOT_FOUND']);
    expect(err(await call(token, 'GET', '/thirdparty/user'))).toEqual([400, 'M_MISSING_PARAM']);
    expect(err(await call(token, 'GET', '/thirdparty/location?alias=nope'))).toEqual([400, 'M_INVALID_PARAM']);
  });
});

describe('appservice room directory', () => {
  it('lists rooms an appservice published under its network, apart from the server\'s own directory', async () => {
    const room = await call(AS_TOKEN, 'POST', '/createRoom', { name: `network room ${randomBytes(2).toString('hex')}` });
    const roomId = room.body.room_id as string;
    const put = (token: string, visibility: unknown, network = 'libera') => call(token, 'PUT', `/directory/list/appservice/${network}/${enc(roomId)}`, { visibility });
    expect((await put(AS_TOKEN, 'public')).status).toBe(200);
    const ids = (r: { body: Json }) => (r.body.chunk as Json[]).map((c) => c.room_id);
    expect(ids(await call(null, 'GET', '/publicRooms'))).not.toContain(roomId);
    expect(ids(await call(null, 'GET', `/publicRooms?third_party_instance_id=${enc('bridge|libera')}`))).toEqual([roomId]);
    expect(ids(await call(null, 'GET', `/publicRooms?third_party_instance_id=${enc('bridge|oftc')}`))).toEqual([]);
    expect(ids(await call(null, 'GET', '/publicRooms?include_all_networks=true'))).toContain(roomId);
    const viaPost = await call(AS_TOKEN, 'POST', '/publicRooms', { third_party_instance_id: 'bridge|libera' });
    expect(ids(viaPost)).toEqual([roomId]);
    expect(err(await call(null, 'GET', '/publicRooms?third_party_instance_id=libera'))).toEqual([400, 'M_INVALID_PARAM']);
    expect((await put(AS_TOKEN, 'private')).status).toBe(200);
    expect(ids(await call(null, 'GET', `/publicRooms?third_party_instance_id=${enc('bridge|libera')}`))).toEqual([]);
  });

  it('is for appservices only, with a visibility, for rooms that exist', async () => {
    const kim = await plainUser(`kim${randomBytes(2).toString('hex')}`);
    const room = await call(kim.token, 'POST', '/createRoom', {});
    const path = `/directory/list/appservice/libera/${enc(room.body.room_id)}`;
    expect(err(await call(kim.token, 'PUT', path, { visibility: 'public' }))).toEqual([403, 'M_FORBIDDEN']);
    expect(err(await call(AS_TOKEN, 'PUT', path, { visibility: 'hidden' }))).toEqual([400, 'M_INVALID_PARAM']);
    expect(err(await call(AS_TOKEN, 'PUT', `/directory/list/appservice/libera/${enc('!nope:localhost')}`, { visibility: 'public' }))).toEqual([404, 'M_NOT_FOUND']);
  });
});

describe('rate limits', () => {
  it('spare an appservice registered with rate_limited: false and hold one registered without', async () => {
    // A server of its own with tight per-user limits on.
    const as2 = new AppserviceServer();
    await as2.start();
    const closed = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'axon-as-rl-'));
    const files = writeRegistrations(dir, as2.port, closed, false);
    const limited = await startTestServer({
      configure: (c) => {
        c.appservices = { ...c.appservices, configFiles: files, queryTimeoutMs: 1500 };
        c.rateLimit = { ...c.rateLimit, enabled: true, client: { burst: 5, perMinute: 1 } };
      },
    });
    try {
      const hit = async (token: string, n: number, asUser?: string) => {
        const statuses: number[] = [];
        const query = asUser ? `?user_id=${enc(asUser)}` : '';
        for (let i = 0; i < n; i++) statuses.push((await fetch(`${limited.baseUrl}/_matrix/client/v3/account/whoami${query}`, { headers: { Authorization: `Bearer ${token}` } })).status);
        return statuses;
      };
      const registerOn = async (token: string, username: string) => {
        const r = await fetch(`${limited.baseUrl}/_matrix/client/v3/register`, { method: 'POST', headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' }, body: JSON.stringify({ type: 'm.login.application_service', username, inhibit_login: true }) });
        expect(r.status).toBe(200);
      };
      await registerOn(AS_TOKEN, 'irc_fast');
      await registerOn(SECOND_AS_TOKEN, 'second_slow');
      // `bridge` has rate_limited: false: never 429, as its sender or as its users.
      expect(new Set(await hit(AS_TOKEN, 12))).toEqual(new Set([200]));
      expect(new Set(await hit(AS_TOKEN, 12, '@irc_fast:localhost'))).toEqual(new Set([200]));
      // `second` is rate limited (the default): its users run out after the burst; its sender
      // never does (as on Synapse).
      const second = await hit(SECOND_AS_TOKEN, 12, '@second_slow:localhost');
      expect(second.slice(0, 5)).toEqual([200, 200, 200, 200, 200]);
      expect(second).toContain(429);
      expect(new Set(await hit(SECOND_AS_TOKEN, 12))).toEqual(new Set([200]));
    } finally {
      await limited.stop();
      await as2.stop();
    }
  });
});
