/**
 * Discovery end to end: the published room directory, profile changes reaching the rooms a user
 * is in, the user directory, and room tags. A real server (workers + front on the test Redis),
 * driven by matrix-js-sdk where it has calls and by raw fetch for errors and for reading state.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Visibility, type MatrixClient } from 'matrix-js-sdk';
import { createClient } from './sdk';
import { startTestServer, type TestServer } from './server-harness';


type Json = Record<string, any>;

interface User {
  userId: string;
  token: string;
  client: MatrixClient;
}

let server: TestServer;
const enc = encodeURIComponent;
/** A word unique to this run, so searches only see this file's rooms and users. */
const run = randomBytes(3).toString('hex');

beforeAll(async () => {
  server = await startTestServer();
});
afterAll(async () => {
  await server?.stop();
});

async function call(token: string | null, method: string, path: string, body?: unknown): Promise<{ status: number; body: Json }> {
  const r = await fetch(`${server.baseUrl}/_matrix/client/v3${path}`, {
    method,
    headers: { ...(token ? { Authorization: `Bearer ${token}` } : {}), 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: r.status, body: (await r.json()) as Json };
}

/** Register through the dummy stage; a client for the new account. */
async function register(localpart: string, displayname?: string): Promise<User> {
  const username = `${localpart}${run}`;
  const first = await call(null, 'POST', '/register', { username, password: 'pw pw pw pw' });
  expect(first.status).toBe(401);
  const done = await call(null, 'POST', '/register', { username, password: 'pw pw pw pw', auth: { type: 'm.login.dummy', session: first.body.session } });
  expect(done.status, JSON.stringify(done.body)).toBe(200);
  const userId = done.body.user_id as string;
  const token = done.body.access_token as string;
  const client = createClient({ baseUrl: server.baseUrl, accessToken: token, userId, deviceId: done.body.device_id });
  if (displayname !== undefined) {
    const r = await call(token, 'PUT', `/profile/${enc(userId)}/displayname`, { displayname });
    expect(r.status).toBe(200);
  }
  return { userId, token, client };
}

async function createRoom(u: User, body: Json): Promise<string> {
  const r = await call(u.token, 'POST', '/createRoom', body);
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body.room_id as string;
}

async function join(u: User, roomId: string): Promise<void> {
  const r = await call(u.token, 'POST', `/join/${enc(roomId)}`, {});
  expect(r.status, JSON.stringify(r.body)).toBe(200);
}

async function memberContent(viewer: User, roomId: string, userId: string): Promise<Json> {
  const r = await call(viewer.token, 'GET', `/rooms/${enc(roomId)}/state/m.room.member/${enc(userId)}`);
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body;
}

async function eventually<T>(fn: () => Promise<T>, ok: (v: T) => boolean, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (ok(v) || Date.now() > deadline) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The MatrixError a js-sdk call rejected with. */
async function sdkError(p: Promise<unknown>): Promise<{ httpStatus?: number; errcode?: string }> {
  try {
    await p;
  } catch (e) {
    return e as { httpStatus?: number; errcode?: string };
  }
  throw new Error('expected the call to fail');
}

describe('published room directory', () => {
  it('lists rooms created public with their state, and publishes and unpublishes rooms', async () => {
    const alice = await register('dira');
    const bob = await register('dirb');
    const roomId = await createRoom(alice, { visibility: 'public', name: `Lobby ${run}`, topic: 'Say hello', room_alias_name: `lobby${run}` });
    await join(bob, roomId);
    await call(alice.token, 'PUT', `/rooms/${enc(roomId)}/state/m.room.avatar`, { url: 'mxc://localhost/lobbyavatar' });

    const listed = await alice.client.publicRooms({ filter: { generic_search_term: `lobby ${run}` } });
    expect(listed.chunk).toEqual([{
      room_id: roomId, name: `Lobby ${run}`, topic: 'Say hello', canonical_alias: `#lobby${run}:localhost`, num_joined_members: 2,
      world_readable: false, guest_can_join: false, join_rule: 'public', avatar_url: 'mxc://localhost/lobbyavatar',
    }]);
    expect(listed.total_room_count_estimate).toBe(1);
    expect(await alice.client.getRoomDirectoryVisibility(roomId)).toEqual({ visibility: 'public' });

    // GET /publicRooms needs no access token.
    const anon = await call(null, 'GET', '/publicRooms');
    expect(anon.status).toBe(200);
    expect((anon.body.chunk as Json[]).map((r) => r.room_id)).toContain(roomId);

    // A member without power to change the canonical alias may not unpublish it.
    expect(await sdkError(bob.client.setRoomDirectoryVisibility(roomId, Visibility.Private))).toMatchObject({ httpStatus: 403, errcode: 'M_FORBIDDEN' });
    await alice.client.setRoomDirectoryVisibility(roomId, Visibility.Private);
    expect(await alice.client.getRoomDirectoryVisibility(roomId)).toEqual({ visibility: 'private' });
    expect((await alice.client.publicRooms({ filter: { generic_search_term: `lobby ${run}` } })).chunk).toEqual([]);

    // A room created private is published later.
    const later = await createRoom(alice, { name: `Later ${run}` });
    expect(await alice.client.getRoomDirectoryVisibility(later)).toEqual({ visibility: 'private' });
    await alice.client.setRoomDirectoryVisibility(later, Visibility.Public);
    const found = await alice.client.publicRooms({ filter: { generic_search_term: `LATER ${run}` } });
    expect(found.chunk.map((r) => [r.room_id, r.join_rule, r.num_joined_members])).toEqual([[later, 'invite', 1]]);
  });

  it('filters by room type and pages with next_batch and prev_batch tokens', async () => {
    const alice = await register('dirpage');
    const term = `page${run}`;
    const space = await createRoom(alice, { visibility: 'public', name: `${term} space`, creation_content: { type: 'm.space' } });
    const rooms = [space];
    for (let i = 0; i < 3; i++) rooms.push(await createRoom(alice, { visibility: 'public', name: `${term} room ${i}` }));
    const bob = await register('dirpageb');
    await join(bob, rooms[2]!); // the most members: listed first

    const spaces = await alice.client.publicRooms({ filter: { generic_search_term: term, room_types: ['m.space' as never] } });
    expect(spaces.chunk.map((r) => [r.room_id, r.room_type])).toEqual([[space, 'm.space']]);
    const plain = await alice.client.publicRooms({ filter: { generic_search_term: term, room_types: [null] } });
    expect(plain.chunk.map((r) => r.room_id).sort()).toEqual(rooms.slice(1).sort());

    const filter = { generic_search_term: term };
    const page1 = await alice.client.publicRooms({ limit: 2, filter });
    expect(page1.chunk).toHaveLength(2);
    expect(page1.chunk[0]!.room_id).toBe(rooms[2]);
    expect(page1.total_room_count_estimate).toBe(4);
    expect(page1.prev_batch).toBeUndefined();
    const page2 = await alice.client.publicRooms({ limit: 2, since: page1.next_batch!, filter });
    expect(page2.chunk).toHaveLength(2);
    expect(page2.next_batch).toBeUndefined();
    const all = [...page1.chunk, ...page2.chunk].map((r) => r.room_id);
    expect(new Set(all).size).toBe(4);
    expect(all.slice().sort()).toEqual(rooms.slice().sort());
    const back = await alice.client.publicRooms({ limit: 2, since: page2.prev_batch!, filter });
    expect(back.chunk.map((r) => r.room_id)).toEqual(page1.chunk.map((r) => r.room_id));

    // GET pages too (over the whole directory).
    const g1 = await call(alice.token, 'GET', '/publicRooms?limit=1');
    expect(g1.status).toBe(200);
    expect(g1.body.chunk).toHaveLength(1);
    const g2 = await call(alice.token, 'GET', `/publicRooms?limit=1&since=${enc(g1.body.next_batch)}`);
    expect(g2.body.chunk).toHaveLength(1);
    expect(g2.body.chunk[0].room_id).not.toBe(g1.body.chunk[0].room_id);
  });

  it('answers bad requests with the spec errors', async () => {
    const alice = await register('direrr');
    const roomId = await createRoom(alice, {});
    expect((await call(alice.token, 'GET', '/publicRooms?server=other.example')).status).toBe(404);
    expect((await call(alice.token, 'POST', '/publicRooms?server=other.example', {})).body.errcode).toBe('M_NOT_FOUND');
    expect((await call(alice.token, 'GET', `/publicRooms?server=localhost&limit=1`)).status).toBe(200);
    const thirdParty = await call(alice.token, 'POST', '/publicRooms', { third_party_instance_id: 'irc-freenode' });
    expect(thirdParty).toMatchObject({ status: 400, body: { errcode: 'M_INVALID_PARAM' } });
    expect((await call(alice.token, 'POST', '/publicRooms', { include_all_networks: true })).status).toBe(200);
    expect((await call(alice.token, 'POST', '/publicRooms', { limit: 'ten' })).body.errcode).toBe('M_INVALID_PARAM');
    expect((await call(alice.token, 'GET', '/publicRooms?limit=-1')).body.errcode).toBe('M_INVALID_PARAM');
    expect((await call(alice.token, 'GET', '/publicRooms?since=garbage')).body.errcode).toBe('M_INVALID_PARAM');
    expect((await call(alice.token, 'POST', '/publicRooms', { filter: { room_types: 'm.space' } })).body.errcode).toBe('M_INVALID_PARAM');
    expect((await call(null, 'POST', '/publicRooms', {})).status).toBe(401);

    expect(await call(null, 'GET', `/directory/list/room/${enc('!nowhere:localhost')}`)).toMatchObject({ status: 404, body: { errcode: 'M_NOT_FOUND' } });
    expect((await call(alice.token, 'PUT', `/directory/list/room/${enc('!nowhere:localhost')}`, { visibility: 'public' })).status).toBe(404);
    expect((await call(alice.token, 'PUT', `/directory/list/room/${enc(roomId)}`, { visibility: 'secret' })).body.errcode).toBe('M_INVALID_PARAM');
    expect((await call(null, 'PUT', `/directory/list/room/${enc(roomId)}`, { visibility: 'public' })).status).toBe(401);
    const outsider = await register('direrrout');
    expect((await call(outsider.token, 'PUT', `/directory/list/room/${enc(roomId)}`, { visibility: 'public' })).body.errcode).toBe('M_FORBIDDEN');
    // The body's visibility defaults to public.
    expect((await call(alice.token, 'PUT', `/directory/list/room/${enc(roomId)}`, {})).status).toBe(200);
    expect((await call(null, 'GET', `/directory/list/room/${enc(roomId)}`)).body).toEqual({ visibility: 'public' });
  });
});

describe('profile changes reach the rooms', () => {
  it('sends new member events with the display name and avatar into every joined room', async () => {
    const alice = await register('profa', 'Alice');
    const bob = await register('profb');
    const r1 = await createRoom(alice, { preset: 'public_chat' });
    const r2 = await createRoom(bob, { preset: 'public_chat' });
    await join(alice, r2);
    const left = await createRoom(alice, { preset: 'public_chat' });
    await join(bob, left);
    expect((await call(alice.token, 'POST', `/rooms/${enc(left)}/leave`, {})).status).toBe(200);

    // Joins carry the profile already.
    expect(await memberContent(alice, r1, alice.userId)).toEqual({ membership: 'join', displayname: 'Alice' });
    expect(await memberContent(bob, r2, alice.userId)).toEqual({ membership: 'join', displayname: 'Alice' });

    await alice.client.setDisplayName('Alice Liddell');
    await alice.client.setAvatarUrl('mxc://localhost/rabbit');
    const want = { membership: 'join', displayname: 'Alice Liddell', avatar_url: 'mxc://localhost/rabbit' };
    for (const roomId of [r1, r2]) {
      const content = await eventually(() => memberContent(alice, roomId, alice.userId), (c) => c.displayname === want.displayname && c.avatar_url === want.avatar_url);
      expect(content).toEqual(want);
    }
    // The room alice left keeps her leave; bob sees no join from her there.
    expect((await memberContent(bob, left, alice.userId)).membership).toBe('leave');

    // The timeline of r2 has one member event of alice per change (join, name, avatar).
    const msgs = await eventually(
      () => call(bob.token, 'GET', `/rooms/${enc(r2)}/messages?dir=f&limit=50`),
      (m) => (m.body.chunk as Json[]).filter((e) => e.type === 'm.room.member' && e.state_key === alice.userId).length === 3,
    );
    const aliceEvents = (msgs.body.chunk as Json[]).filter((e) => e.type === 'm.room.member' && e.state_key === alice.userId);
    expect(aliceEvents.map((e) => [e.content.displayname, e.content.avatar_url ?? null])).toEqual([['Alice', null], ['Alice Liddell', null], ['Alice Liddell', 'mxc://localhost/rabbit']]);

    // Removing the avatar removes it from the member events.
    await alice.client.setAvatarUrl('');
    const cleared = await eventually(() => memberContent(alice, r1, alice.userId), (c) => c.avatar_url === undefined);
    expect(cleared).toEqual({ membership: 'join', displayname: 'Alice Liddell' });
  });
});

describe('user directory', () => {
  it('finds users who share a room or are in public rooms, by id or display name', async () => {
    const mark = `q${run}q`; // only in this test's display names
    const alice = await register('uda', 'Alice Searcher');
    const bob = await register('udb', `Bobby ${mark}`);
    const carol = await register('udc', `Carol ${mark}`);
    const dave = await register('udd', `Dave ${mark}`);
    const shared = await createRoom(alice, { preset: 'private_chat', invite: [bob.userId] });
    await join(bob, shared);
    await createRoom(carol, { preset: 'private_chat' }); // carol is in no room alice can see
    await createRoom(dave, { preset: 'public_chat' }); // public join rule: dave is findable

    const byName = await alice.client.searchUserDirectory({ term: `bobby ${mark}` });
    expect(byName).toEqual({ results: [{ user_id: bob.userId, display_name: `Bobby ${mark}` }], limited: false });
    const byId = await alice.client.searchUserDirectory({ term: bob.userId.toUpperCase() });
    expect(byId.results.map((u) => u.user_id)).toEqual([bob.userId]);
    const daves = await eventually(() => alice.client.searchUserDirectory({ term: `DAVE ${mark}` }), (r) => r.results.length === 1);
    expect(daves.results).toEqual([{ user_id: dave.userId, display_name: `Dave ${mark}` }]);
    // Once the public room is indexed, carol's invite-only room still is not.
    expect((await alice.client.searchUserDirectory({ term: `carol ${mark}` })).results).toEqual([]);

    // `mark` matches bob and dave (not carol); a limit of 1 says the list was cut.
    const cut = await alice.client.searchUserDirectory({ term: mark, limit: 1 });
    expect(cut.limited).toBe(true);
    expect(cut.results).toHaveLength(1);
    const both = await alice.client.searchUserDirectory({ term: mark, limit: 10 });
    expect(both.results.map((u) => u.user_id).sort()).toEqual([bob.userId, dave.userId].sort());

    // Nobody shares a room with carol, but dave's room is public (and she finds herself).
    const carolSees = await carol.client.searchUserDirectory({ term: mark });
    expect(carolSees.results.map((u) => u.user_id).sort()).toEqual([carol.userId, dave.userId].sort());

    expect((await call(alice.token, 'POST', '/user_directory/search', { limit: 3 })).body.errcode).toBe('M_BAD_JSON');
    expect((await call(alice.token, 'POST', '/user_directory/search', { search_term: 'x', limit: -2 })).body.errcode).toBe('M_INVALID_PARAM');
    expect((await call(null, 'POST', '/user_directory/search', { search_term: 'x' })).status).toBe(401);
  });
});

describe('room tags', () => {
  it('adds, lists and removes tags, stored as m.tag room account data', async () => {
    const alice = await register('taga');
    const bob = await register('tagb');
    const roomId = await createRoom(alice, {});
    await alice.client.setRoomTag(roomId, 'm.favourite', { order: 0.25 });
    await alice.client.setRoomTag(roomId, 'u.work', {});
    expect(await alice.client.getRoomTags(roomId)).toEqual({ tags: { 'm.favourite': { order: 0.25 }, 'u.work': {} } });
    const ad = await call(alice.token, 'GET', `/user/${enc(alice.userId)}/rooms/${enc(roomId)}/account_data/m.tag`);
    expect(ad).toMatchObject({ status: 200, body: { tags: { 'm.favourite': { order: 0.25 }, 'u.work': {} } } });

    // Tags set at the same time are all kept.
    await Promise.all(['u.a', 'u.b', 'u.c', 'u.d'].map((t) => alice.client.setRoomTag(roomId, t, {})));
    expect(Object.keys((await alice.client.getRoomTags(roomId)).tags).sort()).toEqual(['m.favourite', 'u.a', 'u.b', 'u.c', 'u.d', 'u.work']);

    await alice.client.deleteRoomTag(roomId, 'm.favourite');
    await alice.client.deleteRoomTag(roomId, 'never.set');
    expect(Object.keys((await alice.client.getRoomTags(roomId)).tags).sort()).toEqual(['u.a', 'u.b', 'u.c', 'u.d', 'u.work']);

    // A room without tags; someone else's tags; bad metadata.
    const other = await createRoom(alice, {});
    expect(await alice.client.getRoomTags(other)).toEqual({ tags: {} });
    const path = `/user/${enc(alice.userId)}/rooms/${enc(roomId)}/tags`;
    expect((await call(bob.token, 'GET', path)).status).toBe(403);
    expect((await call(bob.token, 'PUT', `${path}/u.x`, {})).body.errcode).toBe('M_FORBIDDEN');
    expect((await call(bob.token, 'DELETE', `${path}/u.work`)).status).toBe(403);
    expect((await call(alice.token, 'PUT', `${path}/u.x`, { order: 'first' })).body.errcode).toBe('M_BAD_JSON');
    expect((await call(alice.token, 'PUT', `${path}/u.x`, [1])).body.errcode).toBe('M_BAD_JSON');
    expect((await call(null, 'GET', path)).status).toBe(401);
  });
});
