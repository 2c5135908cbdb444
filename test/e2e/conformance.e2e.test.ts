/**
 * Client-Server conformance fixes (issue 17, item 3), end to end over real HTTP: a real front and
 * workers on the test Redis, spoken to as a client would. Each case is a behaviour where Axon
 * differed from the spec or from Synapse 1.163.2 (where the spec is loose).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './server-harness';
import { clientsFor, enc, eventually, txn, type Clients, type Json, type Session } from './clients';

let server: TestServer;
let clients: Clients;

beforeAll(async () => {
  server = await startTestServer();
  clients = await clientsFor(server);
}, 60_000);

afterAll(async () => {
  await clients?.close();
  await server?.stop();
});

const call = (s: Session | null, method: string, path: string, body?: unknown) => clients.call(s, method, path, body);

async function createRoom(s: Session, body: Json = {}): Promise<string> {
  const r = await call(s, 'POST', '/createRoom', body);
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body.room_id as string;
}

async function send(s: Session, roomId: string, content: Json, type = 'm.room.message'): Promise<string> {
  const r = await call(s, 'PUT', `/rooms/${enc(roomId)}/send/${enc(type)}/${txn()}`, content);
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body.event_id as string;
}

const text = (body: string, extra: Json = {}) => ({ msgtype: 'm.text', body, ...extra });

async function join(s: Session, roomId: string, body: Json = {}): Promise<{ status: number; body: Json }> {
  return call(s, 'POST', `/rooms/${enc(roomId)}/join`, body);
}

/** A sync whose answer has the room's newest event (readers apply commits after the answer). */
async function syncSeeing(s: Session, roomId: string, eventId: string): Promise<Json> {
  const filter = enc(JSON.stringify({ room: { timeline: { limit: 50 } } }));
  const r = await eventually(
    () => call(s, 'GET', `/sync?filter=${filter}`),
    (r) => r.status === 200 && ((r.body.rooms?.join?.[roomId]?.timeline?.events ?? []) as Json[]).some((e) => e.event_id === eventId),
    20_000,
  );
  expect(r.status).toBe(200);
  return r.body;
}

describe('tokens from /sync are accepted wherever a stream position is taken', () => {
  it('/messages, /relations and /members?at= take next_batch and prev_batch', async () => {
    const alice = await clients.mint('tok_alice');
    const bob = await clients.mint('tok_bob');
    const roomId = await createRoom(alice, { preset: 'public_chat' });
    const root = await send(alice, roomId, text('root'));
    const r1 = await send(alice, roomId, { 'm.relates_to': { rel_type: 'm.annotation', event_id: root, key: '👍' } }, 'm.reaction');
    const before = await send(alice, roomId, text('before'));
    const sync = await syncSeeing(alice, roomId, before);
    const nextBatch = sync.next_batch as string;
    const prevBatch = sync.rooms.join[roomId].timeline.prev_batch as string;
    expect(nextBatch.startsWith('s')).toBe(true);
    // After the token: bob joins, a message and a reaction.
    expect((await join(bob, roomId)).status).toBe(200);
    const after = await send(alice, roomId, text('after'));
    const r2 = await send(bob, roomId, { 'm.relates_to': { rel_type: 'm.annotation', event_id: root, key: '🎉' } }, 'm.reaction');

    // Backwards from next_batch: what came before it, newest first, nothing after it.
    const back = await call(alice, 'GET', `/rooms/${enc(roomId)}/messages?dir=b&limit=3&from=${enc(nextBatch)}`);
    expect(back.status, JSON.stringify(back.body)).toBe(200);
    expect((back.body.chunk as Json[]).map((e) => e.event_id)).toEqual([before, r1, root]);
    // Forwards from next_batch: exactly what came after it.
    const fwd = await call(alice, 'GET', `/rooms/${enc(roomId)}/messages?dir=f&limit=10&from=${enc(nextBatch)}`);
    expect(fwd.status, JSON.stringify(fwd.body)).toBe(200);
    const fwdIds = (fwd.body.chunk as Json[]).map((e) => e.event_id);
    expect(fwdIds).toContain(after);
    expect(fwdIds).not.toContain(before);
    expect((fwd.body.chunk as Json[])[0]?.type).toBe('m.room.member');
    // `to` may be a sync token too.
    const bounded = await call(alice, 'GET', `/rooms/${enc(roomId)}/messages?dir=b&from=p1000000&to=${enc(nextBatch)}`);
    expect(bounded.status, JSON.stringify(bounded.body)).toBe(200);
    expect((bounded.body.chunk as Json[]).map((e) => e.event_id)).toEqual([r2, after, fwdIds[0]]);
    // Lazy loading from a sync token: the senders' member events come along.
    const lazy = enc(JSON.stringify({ lazy_load_members: true }));
    const lazyPage = await call(bob, 'GET', `/rooms/${enc(roomId)}/messages?dir=b&limit=2&from=${enc(nextBatch)}&filter=${lazy}`);
    expect(lazyPage.status, JSON.stringify(lazyPage.body)).toBe(200);
    expect((lazyPage.body.state as Json[]).map((e) => e.state_key)).toEqual([alice.userId]);
    // prev_batch works as before.
    const fromPrev = await call(alice, 'GET', `/rooms/${enc(roomId)}/messages?dir=b&from=${enc(prevBatch)}`);
    expect(fromPrev.status, JSON.stringify(fromPrev.body)).toBe(200);

    // Relations: backwards from next_batch sees only the reaction before it.
    const rel = await call(alice, 'GET', `/_matrix/client/v1/rooms/${enc(roomId)}/relations/${enc(root)}?from=${enc(nextBatch)}`);
    expect(rel.status, JSON.stringify(rel.body)).toBe(200);
    expect((rel.body.chunk as Json[]).map((e) => e.event_id)).toEqual([r1]);
    const relAll = await call(alice, 'GET', `/_matrix/client/v1/rooms/${enc(roomId)}/relations/${enc(root)}?dir=f&from=${enc(prevBatch)}`);
    expect(relAll.status, JSON.stringify(relAll.body)).toBe(200);

    // Members at next_batch: alice only (bob joined after it); now: both.
    const at = await call(alice, 'GET', `/rooms/${enc(roomId)}/members?at=${enc(nextBatch)}`);
    expect(at.status, JSON.stringify(at.body)).toBe(200);
    expect((at.body.chunk as Json[]).map((e) => e.state_key)).toEqual([alice.userId]);
    // Members at the prev_batch of a limited timeline (one event: bob's reaction): both.
    const limited = await call(alice, 'GET', `/sync?filter=${enc(JSON.stringify({ room: { timeline: { limit: 1 } } }))}`);
    expect(limited.body.rooms.join[roomId].timeline.events[0].event_id).toBe(r2);
    const atPrev = await call(alice, 'GET', `/rooms/${enc(roomId)}/members?at=${enc(limited.body.rooms.join[roomId].timeline.prev_batch)}`);
    expect(atPrev.status, JSON.stringify(atPrev.body)).toBe(200);
    expect((atPrev.body.chunk as Json[]).map((e) => e.state_key).sort()).toEqual([alice.userId, bob.userId].sort());
    const now = await call(alice, 'GET', `/rooms/${enc(roomId)}/members`);
    expect((now.body.chunk as Json[]).map((e) => e.state_key).sort()).toEqual([alice.userId, bob.userId].sort());

    // Garbage is still refused.
    const bad = await call(alice, 'GET', `/rooms/${enc(roomId)}/messages?dir=b&from=sxyz`);
    expect(bad.status).toBe(400);
    expect(bad.body.errcode).toBe('M_INVALID_PARAM');
  }, 60_000);
});

describe('/messages filters', () => {
  it('honours org.matrix.msc3874.rel_types and not_rel_types', async () => {
    const alice = await clients.mint('rel_filter_alice');
    const roomId = await createRoom(alice);
    const root = await send(alice, roomId, text('root'));
    const reply = await send(alice, roomId, text('in thread', { 'm.relates_to': { rel_type: 'm.thread', event_id: root } }));
    const reaction = await send(alice, roomId, { 'm.relates_to': { rel_type: 'm.annotation', event_id: root, key: 'x' } }, 'm.reaction');
    const plain = await send(alice, roomId, text('plain'));
    const page = async (filter: Json) => {
      const r = await call(alice, 'GET', `/rooms/${enc(roomId)}/messages?dir=b&limit=4&filter=${enc(JSON.stringify(filter))}`);
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      return (r.body.chunk as Json[]).map((e) => e.event_id);
    };
    expect(await page({ 'org.matrix.msc3874.not_rel_types': ['m.thread'] })).toEqual([plain, reaction, root, expect.any(String)]);
    expect(await page({ 'org.matrix.msc3874.rel_types': ['m.thread'] })).toEqual([reply]);
    expect(await page({ 'org.matrix.msc3874.rel_types': ['m.thread', 'm.annotation'], 'org.matrix.msc3874.not_rel_types': ['m.annotation'] })).toEqual([reply]);
    const bad = await call(alice, 'GET', `/rooms/${enc(roomId)}/messages?dir=b&filter=${enc(JSON.stringify({ 'org.matrix.msc3874.rel_types': 'm.thread' }))}`);
    expect(bad.status).toBe(400);
  }, 60_000);
});

describe('membership and input errors', () => {
  it('refuses to kick a user who is not in the room (403)', async () => {
    const alice = await clients.mint('kick_alice');
    const bob = await clients.mint('kick_bob');
    const carol = await clients.mint('kick_carol');
    const roomId = await createRoom(alice, { preset: 'public_chat' });
    // Never joined.
    const never = await call(alice, 'POST', `/rooms/${enc(roomId)}/kick`, { user_id: carol.userId });
    expect(never.status, JSON.stringify(never.body)).toBe(403);
    expect(never.body.errcode).toBe('M_FORBIDDEN');
    // Joined, then left.
    expect((await join(bob, roomId)).status).toBe(200);
    const kicked = await call(alice, 'POST', `/rooms/${enc(roomId)}/kick`, { user_id: bob.userId, reason: 'bye' });
    expect(kicked.status, JSON.stringify(kicked.body)).toBe(200);
    const again = await call(alice, 'POST', `/rooms/${enc(roomId)}/kick`, { user_id: bob.userId });
    expect(again.status, JSON.stringify(again.body)).toBe(403);
    expect(again.body.errcode).toBe('M_FORBIDDEN');
    // Banned: a kick would lift the ban.
    expect((await call(alice, 'POST', `/rooms/${enc(roomId)}/ban`, { user_id: carol.userId })).status).toBe(200);
    const banned = await call(alice, 'POST', `/rooms/${enc(roomId)}/kick`, { user_id: carol.userId });
    expect(banned.status, JSON.stringify(banned.body)).toBe(403);
    // No second leave event was written.
    const members = await call(alice, 'GET', `/rooms/${enc(roomId)}/messages?dir=b&limit=5`);
    expect((members.body.chunk as Json[]).filter((e) => e.type === 'm.room.member' && e.state_key === bob.userId && e.content.membership === 'leave')).toHaveLength(1);
  }, 60_000);

  it('answers malformed input with 400, not 403', async () => {
    const alice = await clients.mint('bad_input_alice');
    const notList = await call(alice, 'POST', '/createRoom', { room_version: '12', creation_content: { additional_creators: '@x:localhost' } });
    expect(notList.status, JSON.stringify(notList.body)).toBe(400);
    expect(notList.body.errcode).toBe('M_BAD_JSON');
    const notIds = await call(alice, 'POST', '/createRoom', { room_version: '12', creation_content: { additional_creators: ['not-a-user'] } });
    expect(notIds.status, JSON.stringify(notIds.body)).toBe(400);
    const roomId = await createRoom(alice);
    const create = await call(alice, 'PUT', `/rooms/${enc(roomId)}/state/m.room.create/`, { room_version: '12' });
    expect(create.status, JSON.stringify(create.body)).toBe(400);
    // Malformed power levels are bad input, not an authorization failure.
    for (const content of [{ users: { [alice.userId]: 'lots' } }, { users: { 'not-a-user': 50 } }, { ban: 1.5 }, { events: { 'm.room.name': '50' } }]) {
      const pl = await call(alice, 'PUT', `/rooms/${enc(roomId)}/state/m.room.power_levels/`, content);
      expect(pl.status, JSON.stringify(content)).toBe(400);
      expect(pl.body.errcode).toBe('M_BAD_JSON');
    }
  }, 60_000);
});

describe('idempotent state and joins, as Synapse', () => {
  it('returns the existing event for identical state and for a repeated join, and keeps custom join content', async () => {
    const alice = await clients.mint('idem_alice');
    const bob = await clients.mint('idem_bob');
    const roomId = await createRoom(alice, { preset: 'public_chat' });
    const put = (content: Json) => call(alice, 'PUT', `/rooms/${enc(roomId)}/state/m.room.topic/`, content);
    const first = await put({ topic: 'same' });
    expect(first.status).toBe(200);
    const second = await put({ topic: 'same' });
    expect(second.status).toBe(200);
    expect(second.body.event_id).toBe(first.body.event_id);
    const changed = await put({ topic: 'other' });
    expect(changed.body.event_id).not.toBe(first.body.event_id);

    // A join with a reason and custom keys: kept in the event.
    const joined = await join(bob, roomId, { reason: 'hello', 'org.example.custom': { a: 1 } });
    expect(joined.status, JSON.stringify(joined.body)).toBe(200);
    const member = await call(bob, 'GET', `/rooms/${enc(roomId)}/state/m.room.member/${enc(bob.userId)}?format=event`);
    expect(member.body.content).toMatchObject({ membership: 'join', reason: 'hello', 'org.example.custom': { a: 1 } });
    const joinId = member.body.event_id as string;
    // The same join again: no new event.
    expect((await join(bob, roomId, { reason: 'hello', 'org.example.custom': { a: 1 } })).status).toBe(200);
    const again = await call(bob, 'GET', `/rooms/${enc(roomId)}/state/m.room.member/${enc(bob.userId)}?format=event`);
    expect(again.body.event_id).toBe(joinId);
    const page = await call(bob, 'GET', `/rooms/${enc(roomId)}/messages?dir=b&limit=3`);
    expect((page.body.chunk as Json[]).filter((e) => e.type === 'm.room.member' && e.state_key === bob.userId)).toHaveLength(1);
    // A client may not name who authorised its join; a non-string reason is bad input.
    const claimed = await join(bob, roomId, { reason: 'x', join_authorised_via_users_server: alice.userId });
    expect(claimed.status).toBe(200);
    const latest = await call(bob, 'GET', `/rooms/${enc(roomId)}/state/m.room.member/${enc(bob.userId)}`);
    expect(latest.body.join_authorised_via_users_server).toBeUndefined();
    expect((await join(bob, roomId, { reason: 5 })).status).toBe(400);
  }, 60_000);
});

describe('/keys/upload leniency', () => {
  it('stores device keys whose signatures are empty, as Synapse', async () => {
    const alice = await clients.mint('keys_alice', 'KDEV');
    const bob = await clients.mint('keys_bob');
    const deviceKeys = {
      user_id: alice.userId,
      device_id: 'KDEV',
      algorithms: ['m.olm.v1.curve25519-aes-sha2', 'm.megolm.v1.aes-sha2'],
      keys: { 'ed25519:KDEV': Buffer.alloc(32, 7).toString('base64').replace(/=+$/, ''), 'curve25519:KDEV': Buffer.alloc(32, 9).toString('base64').replace(/=+$/, '') },
      signatures: {},
    };
    const up = await call(alice, 'POST', '/keys/upload', { device_keys: deviceKeys });
    expect(up.status, JSON.stringify(up.body)).toBe(200);
    const q = await call(bob, 'POST', '/keys/query', { device_keys: { [alice.userId]: [] } });
    expect(q.body.device_keys[alice.userId].KDEV).toMatchObject({ keys: deviceKeys.keys, signatures: {} });
    // Malformed signatures are still bad input.
    const bad = await call(alice, 'POST', '/keys/upload', { device_keys: { ...deviceKeys, signatures: { [alice.userId]: 'nope' } } });
    expect(bad.status).toBe(400);
  }, 60_000);
});

describe('registration', () => {
  it('lower-cases usernames with capitals, as Synapse', async () => {
    const avail = await call(null, 'GET', '/register/available?username=CapsUser');
    expect(avail.status, JSON.stringify(avail.body)).toBe(200);
    const first = await call(null, 'POST', '/register', { username: 'CapsUser', password: 'pw-caps-user' });
    expect(first.status).toBe(401);
    const done = await call(null, 'POST', '/register', { username: 'CapsUser', password: 'pw-caps-user', auth: { type: 'm.login.dummy', session: first.body.session } });
    expect(done.status, JSON.stringify(done.body)).toBe(200);
    expect(done.body.user_id).toBe(`@capsuser:${server.serverName}`);
    const taken = await call(null, 'GET', '/register/available?username=CAPSUSER');
    expect(taken.body.errcode).toBe('M_USER_IN_USE');
  }, 60_000);
});

describe('createRoom topic and joined_members', () => {
  it('writes the rich m.topic and lists avatar_url in joined_members', async () => {
    const alice = await clients.mint('topic_alice');
    const bob = await clients.mint('topic_bob');
    const roomId = await createRoom(alice, { preset: 'public_chat', topic: 'Plain topic' });
    const topic = await call(alice, 'GET', `/rooms/${enc(roomId)}/state/m.room.topic/`);
    expect(topic.body).toEqual({ topic: 'Plain topic', 'm.topic': { 'm.text': [{ body: 'Plain topic', mimetype: 'text/plain' }] } });

    expect((await call(alice, 'PUT', `/profile/${enc(alice.userId)}/avatar_url`, { avatar_url: 'mxc://localhost/alice' })).status).toBe(200);
    expect((await join(bob, roomId)).status).toBe(200);
    const members = await eventually(
      () => call(bob, 'GET', `/rooms/${enc(roomId)}/joined_members`),
      (r) => r.body.joined?.[alice.userId]?.avatar_url === 'mxc://localhost/alice',
      20_000,
    );
    expect(members.body.joined[alice.userId]).toEqual({ display_name: 'topic_alice', avatar_url: 'mxc://localhost/alice' });
    // No avatar: the key is there, null (as Synapse).
    expect(members.body.joined[bob.userId]).toEqual({ display_name: 'topic_bob', avatar_url: null });
  }, 60_000);
});

describe('/versions', () => {
  it('advertises the spec versions and the unstable features implemented', async () => {
    const r = await call(null, 'GET', '/_matrix/client/versions');
    expect(r.status).toBe(200);
    expect(r.body.versions).toEqual(expect.arrayContaining(['v1.12', 'v1.13', 'v1.14', 'v1.15', 'v1.16']));
    expect(r.body.unstable_features).toEqual({ 'org.matrix.msc3874': true, 'org.matrix.msc3266': true, 'org.matrix.msc4115': true, 'org.matrix.msc4222': true, 'org.matrix.msc3391': true, 'org.matrix.simplified_msc3575': true, 'org.matrix.msc4140': true });
    // Off by default, as in Synapse (threadSubscriptions.enabled).
    expect(r.body.unstable_features['org.matrix.msc4306']).toBeUndefined();
  });
});

describe('ignored users', () => {
  it('leaves invites from ignored users out of /sync', async () => {
    const alice = await clients.mint('ign_alice');
    const mallory = await clients.mint('ign_mallory');
    const bob = await clients.mint('ign_bob');
    const ignore = await call(alice, 'PUT', `/user/${enc(alice.userId)}/account_data/m.ignored_user_list`, { ignored_users: { [mallory.userId]: {} } });
    expect(ignore.status).toBe(200);
    const spam = await createRoom(mallory, { invite: [alice.userId] });
    const fine = await createRoom(bob, { invite: [alice.userId] });
    const sync = await eventually(
      () => call(alice, 'GET', '/sync'),
      (r) => r.status === 200 && r.body.rooms?.invite?.[fine] !== undefined,
      20_000,
    );
    expect(sync.body.rooms.invite[fine]).toBeDefined();
    expect(sync.body.rooms.invite[spam]).toBeUndefined();
  }, 60_000);
});
