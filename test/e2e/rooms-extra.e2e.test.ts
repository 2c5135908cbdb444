/**
 * More of the room API end to end (issue 5's remaining items): stored filters on /messages and
 * /context, and the rest below. A real front and workers on the test Redis, raw HTTP and
 * matrix-js-sdk.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './server-harness';
import { clientsFor, enc, eventually, txn, type Clients, type Json, type Session } from './clients';
import { createClient } from './sdk';
import { membershipIndexData, reportData } from '../../src/store/keys';
import { REPORTS_ACTOR } from '../../actors/reports';
import { shardOf } from '../../src/store/shards';

let server: TestServer;
let c: Clients;

beforeAll(async () => {
  server = await startTestServer();
  c = await clientsFor(server);
});

afterAll(async () => {
  await c?.close();
  await server?.stop();
});

async function createRoom(s: Session, body: Json = {}): Promise<string> {
  const r = await c.call(s, 'POST', '/createRoom', body);
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body.room_id as string;
}

async function send(s: Session, roomId: string, type: string, content: Json): Promise<string> {
  const r = await c.call(s, 'PUT', `/rooms/${enc(roomId)}/send/${enc(type)}/${txn()}`, content);
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body.event_id as string;
}

describe('stored filter ids on /messages and /context', () => {
  it('applies the stored filter\'s room.timeline part, its room lists, and refuses unknown ids', async () => {
    const alice = await c.mint('fa');
    const bob = await c.mint('fb');
    const roomId = await createRoom(alice, { preset: 'public_chat' });
    expect((await c.call(bob, 'POST', `/join/${enc(roomId)}`, {})).status).toBe(200);
    const sent: string[] = [];
    for (let i = 0; i < 6; i++) {
      const who = i % 2 ? bob : alice;
      sent.push(await send(who, roomId, 'm.room.message', { msgtype: 'm.text', body: `m${i}` }));
      await send(who, roomId, 'org.example.ping', { n: i });
    }
    const stored = await c.call(alice, 'POST', `/user/${enc(alice.userId)}/filter`, { room: { timeline: { types: ['m.room.message'], senders: [alice.userId], limit: 2 }, state: { lazy_load_members: true } } });
    expect(stored.status).toBe(200);
    const id = stored.body.filter_id as string;

    // The timeline part: only alice's messages, two per page (the filter's limit).
    const page1 = await c.call(alice, 'GET', `/rooms/${enc(roomId)}/messages?dir=b&limit=10&filter=${enc(id)}`);
    expect(page1.status, JSON.stringify(page1.body)).toBe(200);
    expect(page1.body.chunk.map((e: Json) => e.content.body)).toEqual(['m4', 'm2']);
    const page2 = await c.call(alice, 'GET', `/rooms/${enc(roomId)}/messages?dir=b&limit=10&filter=${enc(id)}&from=${page1.body.end}`);
    expect(page2.body.chunk.map((e: Json) => e.content.body)).toEqual(['m0']);

    // /context: the event itself, and neighbours through the same filter.
    const ctx = await c.call(alice, 'GET', `/rooms/${enc(roomId)}/context/${enc(sent[2]!)}?limit=10&filter=${enc(id)}`);
    expect(ctx.status, JSON.stringify(ctx.body)).toBe(200);
    expect(ctx.body.event.event_id).toBe(sent[2]);
    expect(ctx.body.events_before.map((e: Json) => e.content.body)).toEqual(['m0']);
    expect(ctx.body.events_after.map((e: Json) => e.content.body)).toEqual(['m4']);

    // A stored filter whose room list leaves this room out lets nothing through.
    const other = await c.call(alice, 'POST', `/user/${enc(alice.userId)}/filter`, { room: { not_rooms: [roomId] } });
    const none = await c.call(alice, 'GET', `/rooms/${enc(roomId)}/messages?dir=b&filter=${enc(other.body.filter_id)}`);
    expect(none.status).toBe(200);
    expect(none.body.chunk).toEqual([]);
    expect(none.body.end).toBeUndefined();
    // Inline filters may name rooms too.
    const inline = await c.call(alice, 'GET', `/rooms/${enc(roomId)}/messages?dir=b&filter=${enc(JSON.stringify({ rooms: ['!elsewhere:localhost'] }))}`);
    expect(inline.body.chunk).toEqual([]);

    // Filter ids are per user: bob has none with this id (unless by chance he stored one: he did not).
    for (const path of [`/rooms/${enc(roomId)}/messages?dir=b&filter=${enc(id)}`, `/rooms/${enc(roomId)}/context/${enc(sent[2]!)}?filter=999`]) {
      const r = await c.call(bob, 'GET', path);
      expect(r.status, path).toBe(400);
      expect(r.body.errcode).toBe('M_INVALID_PARAM');
    }
  });
});

/** A user registered over HTTP with a real password (deactivation asks for it). */
async function registerWithPassword(username: string, password: string): Promise<Session> {
  const first = await c.call(null, 'POST', '/register', { username, password });
  expect(first.status).toBe(401);
  const done = await c.call(null, 'POST', '/register', { username, password, auth: { type: 'm.login.dummy', session: first.body.session } });
  expect(done.status, JSON.stringify(done.body)).toBe(200);
  return { userId: done.body.user_id, deviceId: done.body.device_id, token: done.body.access_token };
}

/** The room's membership events for a user, oldest first (as a member of the room sees them). */
async function memberEvents(viewer: Session, roomId: string, userId: string): Promise<Json[]> {
  const r = await c.call(viewer, 'GET', `/rooms/${enc(roomId)}/messages?dir=f&limit=100&filter=${enc(JSON.stringify({ types: ['m.room.member'] }))}`);
  expect(r.status).toBe(200);
  return (r.body.chunk as Json[]).filter((e) => e.state_key === userId);
}

describe('deactivation', () => {
  it('leaves joined rooms, rejects invites, rescinds knocks, clears the profile (erase), revokes tokens, leaves the user directory', async () => {
    const alice = await c.mint('da');
    const dave = await registerWithPassword('dave', 'pw-dave');
    expect((await c.call(dave, 'PUT', `/profile/${enc(dave.userId)}/displayname`, { displayname: 'Dave Dee' })).status).toBe(200);
    const pub = await createRoom(alice, { preset: 'public_chat' });
    const invited = await createRoom(alice, { preset: 'private_chat', invite: [dave.userId] });
    const knockRoom = await createRoom(alice, { preset: 'private_chat', room_version: '10' });
    expect((await c.call(alice, 'PUT', `/rooms/${enc(knockRoom)}/state/m.room.join_rules/`, { join_rule: 'knock' })).status).toBe(200);
    expect((await c.call(dave, 'POST', `/join/${enc(pub)}`, {})).status).toBe(200);
    expect((await c.call(dave, 'POST', `/knock/${enc(knockRoom)}`, {})).status).toBe(200);
    await send(dave, pub, 'm.room.message', { msgtype: 'm.text', body: 'bye soon' });
    const found = await c.call(alice, 'POST', '/user_directory/search', { search_term: 'dave' });
    expect(found.body.results.map((u: Json) => u.user_id)).toEqual([dave.userId]);

    // matrix-js-sdk: the first call gets the UIA challenge, the second carries the password.
    const sdk = createClient({ baseUrl: server.baseUrl, accessToken: dave.token, userId: dave.userId, deviceId: dave.deviceId });
    let session = '';
    try {
      await sdk.deactivateAccount(undefined, true);
    } catch (e) {
      session = (e as { data: Json }).data.session;
    }
    expect(session).not.toBe('');
    const result = await sdk.deactivateAccount({ type: 'm.login.password', identifier: { type: 'm.id.user', user: 'dave' }, password: 'pw-dave', session } as never, true);
    expect(result).toEqual({ id_server_unbind_result: 'no-support' });

    // Tokens revoked, login refused, profile gone.
    expect((await c.call(dave, 'GET', '/account/whoami')).status).toBe(401);
    const login = await c.call(null, 'POST', '/login', { type: 'm.login.password', identifier: { type: 'm.id.user', user: 'dave' }, password: 'pw-dave' });
    expect(login.status).toBe(403);
    expect(login.body.errcode).toBe('M_USER_DEACTIVATED');
    expect((await c.call(null, 'GET', `/profile/${enc(dave.userId)}`)).status).toBe(404);

    // Out of every room: the leave in the joined room follows a join without the profile (erase).
    const left = await eventually(() => memberEvents(alice, pub, dave.userId), (evs) => evs[evs.length - 1]?.content.membership === 'leave');
    expect(left.map((e) => e.content)).toEqual([{ membership: 'join', displayname: 'Dave Dee' }, { membership: 'join' }, { membership: 'leave' }]);
    const joined = await c.call(alice, 'GET', `/rooms/${enc(pub)}/joined_members`);
    expect(Object.keys(joined.body.joined)).toEqual([alice.userId]);
    const rejected = await eventually(() => memberEvents(alice, invited, dave.userId), (evs) => evs[evs.length - 1]?.content.membership === 'leave');
    expect(rejected.map((e) => e.content.membership)).toEqual(['invite', 'leave']);
    const rescinded = await eventually(() => memberEvents(alice, knockRoom, dave.userId), (evs) => evs[evs.length - 1]?.content.membership === 'leave');
    expect(rescinded.map((e) => e.content.membership)).toEqual(['knock', 'leave']);
    // Rooms are forgotten for them; the user directory no longer finds them.
    const forgottenKey = c.keys.shard('user', shardOf(dave.userId, server.config.shards.users)).data(membershipIndexData.forgotten(dave.userId));
    const forgotten = await eventually(() => server.redis.smembers(forgottenKey), (f) => f.length === 3);
    expect(forgotten.sort()).toEqual([pub, invited, knockRoom].sort());
    expect((await c.call(alice, 'POST', '/user_directory/search', { search_term: 'dave' })).body.results).toEqual([]);
    // Deactivating twice is harmless: no second round of leaves (the account has no token left anyway).
    await c.actors.ask('user', 'user', dave.userId, { op: 'deactivate' });
    await new Promise((r) => setTimeout(r, 300));
    expect((await memberEvents(alice, pub, dave.userId)).length).toBe(3);
  });

  it('without erase: leaves with the profile left in the earlier join event', async () => {
    const alice = await c.mint('db');
    const erin = await registerWithPassword('erin', 'pw-erin');
    expect((await c.call(erin, 'PUT', `/profile/${enc(erin.userId)}/displayname`, { displayname: 'Erin E' })).status).toBe(200);
    const roomId = await createRoom(alice, { preset: 'public_chat' });
    expect((await c.call(erin, 'POST', `/join/${enc(roomId)}`, {})).status).toBe(200);
    const first = await c.call(erin, 'POST', '/account/deactivate', {});
    const done = await c.call(erin, 'POST', '/account/deactivate', { auth: { type: 'm.login.password', identifier: { type: 'm.id.user', user: 'erin' }, password: 'pw-erin', session: first.body.session } });
    expect(done.status, JSON.stringify(done.body)).toBe(200);
    const evs = await eventually(() => memberEvents(alice, roomId, erin.userId), (e) => e[e.length - 1]?.content.membership === 'leave');
    expect(evs.map((e) => e.content)).toEqual([{ membership: 'join', displayname: 'Erin E' }, { membership: 'leave' }]);
    // erase must be a boolean.
    const bad = await registerWithPassword('erin2', 'pw');
    expect((await c.call(bad, 'POST', '/account/deactivate', { erase: 'yes' })).body.errcode).toBe('M_INVALID_PARAM');
  });
});

/** Rooms the user is in whose create event names `oldRoom` as predecessor. */
async function successors(s: Session, oldRoom: string): Promise<string[]> {
  const rooms = (await c.call(s, 'GET', '/joined_rooms')).body.joined_rooms as string[];
  const out: string[] = [];
  for (const r of rooms) {
    const create = await c.call(s, 'GET', `/rooms/${enc(r)}/state/m.room.create/`);
    if (create.body.predecessor?.room_id === oldRoom) out.push(r);
  }
  return out;
}

describe('upgrade locking', () => {
  it('racing upgrades by one user make one replacement room, and every request is answered with it', async () => {
    const alice = await c.mint('ua');
    const oldRoom = await createRoom(alice, { preset: 'public_chat', room_version: '10', name: 'Old' });
    const sdk = createClient({ baseUrl: server.baseUrl, accessToken: alice.token, userId: alice.userId, deviceId: alice.deviceId });
    const answers = await Promise.all([
      sdk.upgradeRoom(oldRoom, '12').then((r) => ({ status: 200, body: r as Json })),
      c.call(alice, 'POST', `/rooms/${enc(oldRoom)}/upgrade`, { new_version: '12' }),
      c.call(alice, 'POST', `/rooms/${enc(oldRoom)}/upgrade`, { new_version: '11' }),
    ]);
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200]);
    const ids = new Set(answers.map((a) => a.body.replacement_room));
    expect(ids.size).toBe(1);
    const [newRoom] = [...ids];
    expect(await successors(alice, oldRoom)).toEqual([newRoom]);
    const tombstone = await c.call(alice, 'GET', `/rooms/${enc(oldRoom)}/state/m.room.tombstone/`);
    expect(tombstone.body.replacement_room).toBe(newRoom);
    // Exactly one tombstone was sent.
    const msgs = await c.call(alice, 'GET', `/rooms/${enc(oldRoom)}/messages?dir=b&limit=100&filter=${enc(JSON.stringify({ types: ['m.room.tombstone'] }))}`);
    expect(msgs.body.chunk.length).toBe(1);
  });

  it('racing upgrades by two users: one builds the room, the other is told an upgrade is in progress', async () => {
    const alice = await c.mint('ub');
    const bob = await c.mint('uc');
    const oldRoom = await createRoom(alice, { preset: 'public_chat', room_version: '10', power_level_content_override: { users: { [alice.userId]: 100, [bob.userId]: 100 } } });
    expect((await c.call(bob, 'POST', `/join/${enc(oldRoom)}`, {})).status).toBe(200);
    const [a, b] = await Promise.all([
      c.call(alice, 'POST', `/rooms/${enc(oldRoom)}/upgrade`, { new_version: '11' }),
      c.call(bob, 'POST', `/rooms/${enc(oldRoom)}/upgrade`, { new_version: '11' }),
    ]);
    const statuses = [a.status, b.status].sort();
    expect(statuses).toEqual([200, 400]);
    const loser = a.status === 400 ? a : b;
    expect(loser.body).toMatchObject({ errcode: 'M_UNKNOWN', error: 'An upgrade for this room is currently in progress' });
    const winner = a.status === 200 ? a : b;
    const winnerSession = a.status === 200 ? alice : bob;
    expect(await successors(winnerSession, oldRoom)).toEqual([winner.body.replacement_room]);
    // A member without the power to upgrade is refused by the room's actor too.
    const carol = await c.mint('ud');
    expect((await c.call(carol, 'POST', `/join/${enc(oldRoom)}`, {})).status).toBe(200);
    expect((await c.call(carol, 'POST', `/rooms/${enc(oldRoom)}/upgrade`, { new_version: '11' })).status).toBe(403);
  });
});

describe('third-party invites', () => {
  it('answers as Synapse does without an identity server: missing id_server 400, otherwise 403; createRoom refuses before creating', async () => {
    const alice = await c.mint('ta');
    const roomId = await createRoom(alice, { preset: 'private_chat' });
    const missing = await c.call(alice, 'POST', `/rooms/${enc(roomId)}/invite`, { medium: 'email', address: 'bob@example.org' });
    expect(missing.status).toBe(400);
    expect(missing.body.errcode).toBe('M_MISSING_PARAM');
    const denied = await c.call(alice, 'POST', `/rooms/${enc(roomId)}/invite`, { id_server: 'id.example.org', id_access_token: 'tok', medium: 'email', address: 'bob@example.org' });
    expect(denied.status).toBe(403);
    expect(denied.body).toEqual({ errcode: 'M_UNKNOWN', error: 'Looking up third-party identifiers is denied from this server' });
    expect((await c.call(alice, 'POST', `/rooms/${enc(roomId)}/invite`, { id_server: 'x', id_access_token: 'y', medium: 7, address: 'a' })).body.errcode).toBe('M_BAD_JSON');
    // Nothing was sent into the room.
    const members = await c.call(alice, 'GET', `/rooms/${enc(roomId)}/members`);
    expect(members.body.chunk.map((e: Json) => e.state_key)).toEqual([alice.userId]);
    const before = (await c.call(alice, 'GET', '/joined_rooms')).body.joined_rooms.length;
    const create = await c.call(alice, 'POST', '/createRoom', { invite_3pid: [{ id_server: 'id.example.org', id_access_token: 'tok', medium: 'email', address: 'bob@example.org' }] });
    expect(create.status).toBe(403);
    expect((await c.call(alice, 'POST', '/createRoom', { invite_3pid: [{ medium: 'email', address: 'x@y' }] })).body.errcode).toBe('M_MISSING_PARAM');
    expect((await c.call(alice, 'GET', '/joined_rooms')).body.joined_rooms.length).toBe(before);
  });
});

describe('restricted joins', () => {
  it.each(['10', '12'])('members of an allowed room join a restricted room (v%s), vouched for by a local user who can invite', async (version) => {
    const alice = await c.mint(`ra${version}`);
    const bob = await c.mint(`rb${version}`);
    const space = await createRoom(alice, { preset: 'public_chat', creation_content: { type: 'm.space' } });
    const roomId = await createRoom(alice, {
      preset: 'private_chat', room_version: version,
      initial_state: [{ type: 'm.room.join_rules', state_key: '', content: { join_rule: 'restricted', allow: [{ type: 'm.room_membership', room_id: space }] } }],
    });
    const sdk = createClient({ baseUrl: server.baseUrl, accessToken: bob.token, userId: bob.userId, deviceId: bob.deviceId });
    // Not in the space yet: refused.
    const refused = await c.call(bob, 'POST', `/join/${enc(roomId)}`, {});
    expect(refused.status).toBe(403);
    expect(refused.body.errcode).toBe('M_FORBIDDEN');
    expect(refused.body.error).toMatch(/required rooms/);
    await sdk.joinRoom(space);
    const joined = await sdk.joinRoom(roomId);
    expect(joined.roomId).toBe(roomId);
    const member = await c.call(alice, 'GET', `/rooms/${enc(roomId)}/state/m.room.member/${enc(bob.userId)}`);
    expect(member.body).toMatchObject({ membership: 'join', join_authorised_via_users_server: alice.userId });
    // Joining again (already joined) needs no authorisation.
    expect((await c.call(bob, 'POST', `/rooms/${enc(roomId)}/join`, {})).status).toBe(200);
  });

  it('knock_restricted: members of the allowed room join, others may knock; no one able to invite: M_UNABLE_TO_GRANT_JOIN', async () => {
    const alice = await c.mint('rk1');
    const bob = await c.mint('rk2');
    const carol = await c.mint('rk3');
    const space = await createRoom(alice, { preset: 'public_chat' });
    const knockRoom = await createRoom(alice, {
      preset: 'private_chat', room_version: '10',
      initial_state: [{ type: 'm.room.join_rules', state_key: '', content: { join_rule: 'knock_restricted', allow: [{ type: 'm.room_membership', room_id: space }] } }],
    });
    expect((await c.call(bob, 'POST', `/join/${enc(space)}`, {})).status).toBe(200);
    expect((await c.call(bob, 'POST', `/join/${enc(knockRoom)}`, {})).status).toBe(200);
    const carolJoin = await c.call(carol, 'POST', `/join/${enc(knockRoom)}`, {});
    expect(carolJoin.status).toBe(403);
    expect(carolJoin.body.error).toMatch(/knock/);
    expect((await c.call(carol, 'POST', `/knock/${enc(knockRoom)}`, {})).status).toBe(200);

    // Only alice is in this room, and inviting needs more than she has.
    const strict = await createRoom(alice, {
      preset: 'private_chat', room_version: '10',
      power_level_content_override: { users: { [alice.userId]: 60 }, invite: 100, state_default: 50, events: {} },
      initial_state: [{ type: 'm.room.join_rules', state_key: '', content: { join_rule: 'restricted', allow: [{ type: 'm.room_membership', room_id: space }] } }],
    });
    const noOne = await c.call(bob, 'POST', `/join/${enc(strict)}`, {});
    expect(noOne.status).toBe(400);
    expect(noOne.body.errcode).toBe('M_UNABLE_TO_GRANT_JOIN');
  });
});

describe('room summaries', () => {
  it('summarises rooms for those who may see them, on the stable and the MSC3266 paths; 404 otherwise', async () => {
    const alice = await c.mint('sa');
    const bob = await c.mint('sb');
    const space = await createRoom(alice, { preset: 'public_chat' });
    const pub = await createRoom(alice, { preset: 'public_chat', name: 'Lobby', topic: 'hello', room_alias_name: 'lobby-sum', creation_content: { type: 'org.example.kind' } });
    const priv = await createRoom(alice, { preset: 'private_chat', name: 'Secret' });
    const restricted = await createRoom(alice, {
      preset: 'private_chat', room_version: '10', name: 'Members only',
      initial_state: [{ type: 'm.room.join_rules', state_key: '', content: { join_rule: 'restricted', allow: [{ type: 'm.room_membership', room_id: space }] } }],
    });

    // matrix-js-sdk picks the unstable path (this server does not advertise v1.15).
    const sdk = createClient({ baseUrl: server.baseUrl, accessToken: bob.token, userId: bob.userId, deviceId: bob.deviceId });
    const viaSdk = await sdk.getRoomSummary(`#lobby-sum:${server.serverName}`);
    expect(viaSdk).toMatchObject({ room_id: pub, name: 'Lobby', topic: 'hello', join_rule: 'public', num_joined_members: 1, canonical_alias: `#lobby-sum:${server.serverName}`, room_type: 'org.example.kind', membership: 'leave', world_readable: false, guest_can_join: false });
    const stable = await c.call(bob, 'GET', `/_matrix/client/v1/room_summary/${enc(pub)}?via=elsewhere.example`);
    expect(stable.status).toBe(200);
    expect(stable.body).toMatchObject({ room_id: pub, room_version: '12', membership: 'leave' });
    expect(stable.body['im.nheko.summary.version']).toBeUndefined();
    const old = await c.call(bob, 'GET', `/_matrix/client/unstable/im.nheko.summary/rooms/${enc(pub)}/summary`);
    expect(old.body['im.nheko.summary.version']).toBe('12');
    // Without a token: public rooms only, and no membership; a bad token is 401.
    const anon = await c.call(null, 'GET', `/_matrix/client/v1/room_summary/${enc(pub)}`);
    expect(anon.status).toBe(200);
    expect(anon.body.membership).toBeUndefined();
    expect((await c.call(null, 'GET', `/_matrix/client/v1/room_summary/${enc(priv)}`)).status).toBe(404);
    expect((await c.call({ ...bob, token: 'axo_1_notatokenatallreally' }, 'GET', `/_matrix/client/v1/room_summary/${enc(pub)}`)).status).toBe(401);

    // Private: members and invitees only; restricted: members of an allowed room too.
    const hidden = await c.call(bob, 'GET', `/_matrix/client/v1/room_summary/${enc(priv)}`);
    expect(hidden.status).toBe(404);
    expect(hidden.body.errcode).toBe('M_NOT_FOUND');
    expect((await c.call(alice, 'POST', `/rooms/${enc(priv)}/invite`, { user_id: bob.userId })).status).toBe(200);
    expect((await c.call(bob, 'GET', `/_matrix/client/v1/room_summary/${enc(priv)}`)).body).toMatchObject({ name: 'Secret', membership: 'invite', join_rule: 'invite' });
    expect((await c.call(bob, 'GET', `/_matrix/client/v1/room_summary/${enc(restricted)}`)).status).toBe(404);
    expect((await c.call(bob, 'POST', `/join/${enc(space)}`, {})).status).toBe(200);
    const r = await c.call(bob, 'GET', `/_matrix/client/v1/room_summary/${enc(restricted)}`);
    expect(r.body).toMatchObject({ name: 'Members only', join_rule: 'restricted', allowed_room_ids: [space], room_version: '10' });
    // Unknown rooms and aliases: the same 404.
    expect((await c.call(bob, 'GET', `/_matrix/client/v1/room_summary/${enc('!nope:localhost')}`)).body.errcode).toBe('M_NOT_FOUND');
    expect((await c.call(bob, 'GET', `/_matrix/client/v1/room_summary/${enc('#nope:localhost')}`)).status).toBe(404);
  });
});

describe('reporting content', () => {
  it('events (joined reporters only), rooms and users are reported to the server\'s report inbox', async () => {
    const alice = await c.mint('rpa');
    const bob = await c.mint('rpb');
    const roomId = await createRoom(alice, { preset: 'public_chat' });
    const eventId = await send(alice, roomId, 'm.room.message', { msgtype: 'm.text', body: 'spam spam' });
    const notJoined = await c.call(bob, 'POST', `/rooms/${enc(roomId)}/report/${enc(eventId)}`, { reason: 'spam' });
    expect(notJoined.status).toBe(404);
    expect(notJoined.body.errcode).toBe('M_NOT_FOUND');
    expect((await c.call(bob, 'POST', `/join/${enc(roomId)}`, {})).status).toBe(200);
    const sdk = createClient({ baseUrl: server.baseUrl, accessToken: bob.token, userId: bob.userId, deviceId: bob.deviceId });
    expect(await sdk.reportEvent(roomId, eventId, -100, 'spam')).toEqual({});
    expect(await sdk.reportRoom(roomId, 'a spam room')).toEqual({});
    expect((await c.call(bob, 'POST', `/rooms/${enc(roomId)}/report/${enc('$nope')}`, {})).status).toBe(404);
    expect((await c.call(bob, 'POST', `/rooms/${enc('!nope:localhost')}/report`, { reason: 'x' })).status).toBe(404);
    expect((await c.call(bob, 'POST', `/rooms/${enc(roomId)}/report`, {})).body.errcode).toBe('M_MISSING_PARAM');
    expect((await c.call(bob, 'POST', `/users/${enc(alice.userId)}/report`, { reason: 'spammer' })).status).toBe(200);
    expect((await c.call(bob, 'POST', `/users/${enc('@someone:elsewhere.example')}/report`, { reason: 'remote' })).status).toBe(200);
    expect((await c.call(bob, 'POST', `/users/${enc('@ghost:localhost')}/report`, { reason: 'x' })).status).toBe(404);
    expect((await c.call(null, 'POST', `/users/${enc(alice.userId)}/report`, { reason: 'x' })).status).toBe(401);

    const key = c.keys.shard('user', shardOf(REPORTS_ACTOR, server.config.shards.users)).data(reportData.reports());
    const stored = Object.values(await server.redis.hgetall(key)).map((j) => JSON.parse(j)).filter((r) => r.reporter === bob.userId);
    expect(stored.map(({ id: _i, received_ts: _t, ...r }) => r)).toEqual([
      { kind: 'event', reporter: bob.userId, room_id: roomId, event_id: eventId, reason: 'spam' },
      { kind: 'room', reporter: bob.userId, room_id: roomId, reason: 'a spam room' },
      { kind: 'user', reporter: bob.userId, user_id: alice.userId, reason: 'spammer' },
      { kind: 'user', reporter: bob.userId, user_id: '@someone:elsewhere.example', reason: 'remote' },
    ]);
  });
});

describe('unstable paths clients still call', () => {
  it('MSC3856 threads, MSC2946 hierarchy, MSC3030 timestamp_to_event and MSC2432 aliases answer as their stable endpoints', async () => {
    const alice = await c.mint('la');
    const roomId = await createRoom(alice, { preset: 'public_chat', room_alias_name: 'legacy-paths' });
    const root = await send(alice, roomId, 'm.room.message', { msgtype: 'm.text', body: 'root' });
    await send(alice, roomId, 'm.room.message', { msgtype: 'm.text', body: 'reply', 'm.relates_to': { rel_type: 'm.thread', event_id: root } });
    const pairs: [string, string][] = [
      [`/_matrix/client/unstable/org.matrix.msc3856/rooms/${enc(roomId)}/threads`, `/_matrix/client/v1/rooms/${enc(roomId)}/threads`],
      [`/_matrix/client/unstable/org.matrix.msc2946/rooms/${enc(roomId)}/hierarchy`, `/_matrix/client/v1/rooms/${enc(roomId)}/hierarchy`],
      [`/_matrix/client/unstable/org.matrix.msc3030/rooms/${enc(roomId)}/timestamp_to_event?ts=${Date.now()}&dir=b`, `/_matrix/client/v1/rooms/${enc(roomId)}/timestamp_to_event?ts=${Date.now()}&dir=b`],
      [`/_matrix/client/unstable/org.matrix.msc2432/rooms/${enc(roomId)}/aliases`, `/_matrix/client/v3/rooms/${enc(roomId)}/aliases`],
    ];
    for (const [unstable, stable] of pairs) {
      const [u, s] = [await c.call(alice, 'GET', unstable), await c.call(alice, 'GET', stable)];
      expect(u.status, unstable).toBe(200);
      expect(s.status, stable).toBe(200);
      expect(JSON.stringify(u.body).replace(/"age":\d+/g, ''), unstable).toBe(JSON.stringify(s.body).replace(/"age":\d+/g, ''));
    }
    const threads = await c.call(alice, 'GET', pairs[0]![0]);
    expect(threads.body.chunk.map((e: Json) => e.event_id)).toEqual([root]);
    expect((await c.call(alice, 'GET', pairs[3]![0])).body.aliases).toEqual([`#legacy-paths:${server.serverName}`]);
  });
});

describe('admin whois, mutual rooms, 3pid bind/unbind/delete', () => {
  it('whois: admins ask about anyone, users about themselves; devices with their last address and time', async () => {
    const admin = await c.mint('wadmin', 'ADM', { admin: true });
    const bob = await c.mint('wbob', 'PHONE');
    await c.mint('wbob', 'LAPTOP');
    const mine = await c.call(bob, 'GET', `/admin/whois/${enc(bob.userId)}`);
    expect(mine.status).toBe(200);
    expect(mine.body.user_id).toBe(bob.userId);
    expect(Object.keys(mine.body.devices).sort()).toEqual(['LAPTOP', 'PHONE']);
    const conn = mine.body.devices.PHONE.sessions[0].connections[0];
    expect(conn.last_seen).toBeGreaterThan(Date.now() - 60_000);
    const sdk = createClient({ baseUrl: server.baseUrl, accessToken: admin.token, userId: admin.userId, deviceId: admin.deviceId });
    expect((await sdk.whoisSynapseUser(bob.userId)).devices).toHaveProperty('LAPTOP');
    const denied = await c.call(bob, 'GET', `/admin/whois/${enc(admin.userId)}`);
    expect(denied.status).toBe(403);
    expect((await c.call(admin, 'GET', `/admin/whois/${enc('@nobody:localhost')}`)).status).toBe(404);
    expect((await c.call(admin, 'GET', `/admin/whois/${enc('@x:elsewhere.example')}`)).status).toBe(400);
  });

  it('invite, kick, ban, unban without user_id: 400 M_MISSING_PARAM; a user_id that is not one: 400 M_INVALID_PARAM (as Synapse)', async () => {
    const alice = await c.mint('mp_alice');
    const roomId = await createRoom(alice, { preset: 'public_chat' });
    for (const op of ['invite', 'kick', 'ban', 'unban']) {
      const missing = await c.call(alice, 'POST', `/rooms/${enc(roomId)}/${op}`, { reason: 'no target' });
      expect([missing.status, missing.body.errcode], op).toEqual([400, 'M_MISSING_PARAM']);
      const bad = await c.call(alice, 'POST', `/rooms/${enc(roomId)}/${op}`, { user_id: 'not-a-user' });
      expect([bad.status, bad.body.errcode], op).toEqual([400, 'M_INVALID_PARAM']);
    }
  });

  it('mutual rooms: rooms both users are joined to', async () => {
    const alice = await c.mint('ma');
    const bob = await c.mint('mb');
    const both = await createRoom(alice, { preset: 'public_chat' });
    const aliceOnly = await createRoom(alice, { preset: 'public_chat' });
    const left = await createRoom(alice, { preset: 'public_chat' });
    await createRoom(bob, { preset: 'public_chat' });
    for (const r of [both, left]) expect((await c.call(bob, 'POST', `/join/${enc(r)}`, {})).status).toBe(200);
    expect((await c.call(bob, 'POST', `/rooms/${enc(left)}/leave`, {})).status).toBe(200);
    const r = await c.call(alice, 'GET', `/_matrix/client/v1/mutual_rooms?user_id=${enc(bob.userId)}`);
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ joined: [both], count: 1 });
    expect(aliceOnly).toBeDefined();
    expect((await c.call(alice, 'GET', '/_matrix/client/v1/mutual_rooms')).body.errcode).toBe('M_MISSING_PARAM');
    expect((await c.call(alice, 'GET', `/_matrix/client/v1/mutual_rooms?user_id=${enc(alice.userId)}`)).status).toBe(400);
    expect((await c.call(alice, 'GET', `/_matrix/client/v1/mutual_rooms?user_id=${enc(bob.userId)}&from=abc`)).body.errcode).toBe('M_INVALID_PARAM');
  });

  it('3pid delete and unbind have nothing to unbind; bind needs an identity server', async () => {
    const alice = await c.mint('tp');
    for (const action of ['delete', 'unbind']) {
      const r = await c.call(alice, 'POST', `/account/3pid/${action}`, { medium: 'email', address: 'a@example.org' });
      expect(r.status, action).toBe(200);
      expect(r.body).toEqual({ id_server_unbind_result: 'no-support' });
      expect((await c.call(alice, 'POST', `/account/3pid/${action}`, { medium: 'email' })).body.errcode).toBe('M_MISSING_PARAM');
    }
    const bind = await c.call(alice, 'POST', '/account/3pid/bind', { client_secret: 's', id_server: 'id.example.org', id_access_token: 't', sid: '1' });
    expect(bind.status).toBe(400);
    expect(bind.body.errcode).toBe('M_THREEPID_AUTH_FAILED');
    expect((await c.call(null, 'POST', '/account/3pid/delete', { medium: 'email', address: 'a' })).status).toBe(401);
  });
});

describe('GET /rooms/{roomId}/initialSync', () => {
  it('the room\'s state, latest messages with tokens /messages continues from, membership and room account data; peeking world-readable rooms', async () => {
    const alice = await c.mint('isa');
    const bob = await c.mint('isb');
    const roomId = await createRoom(alice, { preset: 'public_chat', name: 'Peek' });
    const sent: string[] = [];
    for (let i = 0; i < 5; i++) sent.push(await send(alice, roomId, 'm.room.message', { msgtype: 'm.text', body: `n${i}` }));
    expect((await c.call(alice, 'PUT', `/user/${enc(alice.userId)}/rooms/${enc(roomId)}/tags/u.work`, { order: 0.5 })).status).toBe(200);
    const sdk = createClient({ baseUrl: server.baseUrl, accessToken: alice.token, userId: alice.userId, deviceId: alice.deviceId });
    const r = (await sdk.roomInitialSync(roomId, 3)) as unknown as Json;
    expect(r.room_id).toBe(roomId);
    expect(r.membership).toBe('join');
    expect(r.messages.chunk.map((e: Json) => e.event_id)).toEqual(sent.slice(2));
    expect(r.state.map((e: Json) => e.type)).toEqual(expect.arrayContaining(['m.room.create', 'm.room.name', 'm.room.member', 'm.room.join_rules']));
    expect(r.account_data).toEqual([{ type: 'm.tag', content: { tags: { 'u.work': { order: 0.5 } } } }]);
    expect(r.visibility).toBe('private');
    const back = await c.call(alice, 'GET', `/rooms/${enc(roomId)}/messages?dir=b&limit=2&from=${r.messages.start}`);
    expect(back.body.chunk.map((e: Json) => e.event_id)).toEqual([sent[1], sent[0]]);

    // Not a member: 403, unless the room is world-readable (then no membership).
    expect((await c.call(bob, 'GET', `/rooms/${enc(roomId)}/initialSync`)).status).toBe(403);
    expect((await c.call(alice, 'PUT', `/rooms/${enc(roomId)}/state/m.room.history_visibility/`, { history_visibility: 'world_readable' })).status).toBe(200);
    const visible = await send(alice, roomId, 'm.room.message', { msgtype: 'm.text', body: 'for everyone' });
    const peek = await c.call(bob, 'GET', `/rooms/${enc(roomId)}/initialSync?limit=1`);
    expect(peek.status).toBe(200);
    expect(peek.body.membership).toBeUndefined();
    expect(peek.body.messages.chunk.map((e: Json) => e.event_id)).toEqual([visible]);
    expect((await c.call(bob, 'GET', `/rooms/${enc(roomId)}/initialSync?limit=x`)).body.errcode).toBe('M_INVALID_PARAM');
  });
});

describe('custom profile fields', () => {
  it('m.tz and namespaced fields: put, get, in the whole profile, delete; size and name limits; DELETE of displayname', async () => {
    const alice = await c.mint('pfa');
    const bob = await c.mint('pfb');
    const base = `/profile/${enc(alice.userId)}`;
    expect((await c.call(alice, 'PUT', `${base}/m.tz`, { 'm.tz': 'Europe/Paris' })).status).toBe(200);
    expect((await c.call(alice, 'PUT', `${base}/org.example.pronouns`, { 'org.example.pronouns': { en: 'she/her' } })).status).toBe(200);
    expect((await c.call(bob, 'GET', `${base}/m.tz`)).body).toEqual({ 'm.tz': 'Europe/Paris' });
    expect((await c.call(null, 'GET', base)).body).toEqual({ displayname: 'pfa', 'm.tz': 'Europe/Paris', 'org.example.pronouns': { en: 'she/her' } });
    expect((await c.call(alice, 'DELETE', `${base}/org.example.pronouns`)).status).toBe(200);
    expect((await c.call(bob, 'GET', `${base}/org.example.pronouns`)).status).toBe(404);
    // Names, bodies, owners, sizes.
    expect((await c.call(alice, 'PUT', `${base}/Bad.Key`, { 'Bad.Key': 1 })).body.errcode).toBe('M_INVALID_PARAM');
    expect((await c.call(alice, 'PUT', `${base}/org.example.x`, { other: 1 })).body.errcode).toBe('M_MISSING_PARAM');
    expect((await c.call(bob, 'PUT', `${base}/org.example.x`, { 'org.example.x': 1 })).status).toBe(403);
    expect((await c.call(alice, 'PUT', `${base}/org.example.${'a'.repeat(260)}`, { x: 1 })).body.errcode).toBe('M_KEY_TOO_LARGE');
    expect((await c.call(alice, 'PUT', `${base}/org.example.big1`, { 'org.example.big1': 'x'.repeat(40_000) })).status).toBe(200);
    const tooBig = await c.call(alice, 'PUT', `${base}/org.example.big2`, { 'org.example.big2': 'x'.repeat(30_000) });
    expect(tooBig.status).toBe(400);
    expect(tooBig.body.errcode).toBe('M_PROFILE_TOO_LARGE');
    // Replacing a field counts its new size only.
    expect((await c.call(alice, 'PUT', `${base}/org.example.big1`, { 'org.example.big1': 'y'.repeat(50_000) })).status).toBe(200);
    // DELETE works for the display name too.
    expect((await c.call(alice, 'DELETE', `${base}/displayname`)).status).toBe(200);
    expect((await c.call(bob, 'GET', `${base}/displayname`)).status).toBe(404);
    const caps = await c.call(alice, 'GET', '/capabilities');
    expect(caps.body.capabilities['m.profile_fields']).toEqual({ enabled: true });
  });
});
