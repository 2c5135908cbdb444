/**
 * Relations, threads, bundled aggregations, /timestamp_to_event, room upgrades, the space
 * hierarchy and shared-secret admin registration, end to end: a real front and workers on the
 * test Redis, spoken to with raw fetch (behaviour and error codes) and matrix-js-sdk.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Direction } from 'matrix-js-sdk';
import { createClient } from './sdk';
import { startTestServer, type TestServer } from './server-harness';
import { registrationMac } from '../../src/api/admin/register';
import { decode } from '../../src/store/codec';
import { KeySpace, userData } from '../../src/store/keys';
import { shardOf } from '../../src/store/shards';
import type { AccountRecord } from '../../actors/user';
import { parseArgs, registerWithSharedSecret } from '../../scripts/register-user';

type Json = Record<string, any>;
interface Session {
  userId: string;
  deviceId: string;
  token: string;
}

const SECRET = 'relations-e2e-shared-secret';
let server: TestServer;
let keys: KeySpace;
const enc = encodeURIComponent;
let txnCounter = 0;
const txn = () => `t${++txnCounter}-${randomBytes(3).toString('hex')}`;

async function raw(s: Session | null, method: string, path: string, body?: unknown, base = server.baseUrl): Promise<{ status: number; body: Json }> {
  const r = await fetch(`${base}${path}`, {
    method,
    headers: { ...(s ? { Authorization: `Bearer ${s.token}` } : {}), 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: r.status, body: (await r.json()) as Json };
}
const v3 = (s: Session | null, method: string, path: string, body?: unknown) => raw(s, method, `/_matrix/client/v3${path}`, body);
const v1 = (s: Session | null, method: string, path: string, body?: unknown) => raw(s, method, `/_matrix/client/v1${path}`, body);

/** Register through the shared-secret admin API (the operator script's code path). */
async function register(localpart: string, admin = false): Promise<Session> {
  const r = await registerWithSharedSecret({ baseUrl: server.baseUrl, sharedSecret: SECRET, user: localpart, password: `pw-${localpart}`, admin });
  return { userId: r.user_id, deviceId: r.device_id, token: r.access_token };
}

async function createRoom(s: Session, body: Json = {}): Promise<string> {
  const r = await v3(s, 'POST', '/createRoom', body);
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body.room_id as string;
}

async function send(s: Session, roomId: string, content: Json, type = 'm.room.message'): Promise<string> {
  const r = await v3(s, 'PUT', `/rooms/${enc(roomId)}/send/${enc(type)}/${txn()}`, content);
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body.event_id as string;
}

const text = (body: string, extra: Json = {}) => ({ msgtype: 'm.text', body, ...extra });
const thread = (root: string) => ({ 'm.relates_to': { rel_type: 'm.thread', event_id: root } });
const reaction = (target: string, key: string) => ({ 'm.relates_to': { rel_type: 'm.annotation', event_id: target, key } });
const edit = (target: string, body: string) => ({ msgtype: 'm.text', body: `* ${body}`, 'm.new_content': { msgtype: 'm.text', body }, 'm.relates_to': { rel_type: 'm.replace', event_id: target } });

beforeAll(async () => {
  server = await startTestServer({ configure: (c) => { c.registration.sharedSecret = SECRET; } });
  keys = new KeySpace(server.config.redis.keyPrefix);
});

afterAll(async () => {
  await server?.stop();
});

describe('GET /v1/rooms/{roomId}/relations', () => {
  it('lists children by relation type and event type, paginates both ways, and recurses', async () => {
    const alice = await register('rel_alice');
    const roomId = await createRoom(alice);
    const root = await send(alice, roomId, text('root'));
    const r1 = await send(alice, roomId, { ...text('reply 1'), ...thread(root) });
    const like = await send(alice, roomId, reaction(root, '👍'), 'm.reaction');
    const r2 = await send(alice, roomId, { ...text('reply 2'), ...thread(root) });
    const r3 = await send(alice, roomId, { ...text('reply 3'), ...thread(root) });
    const onReply = await send(alice, roomId, reaction(r1, '🎉'), 'm.reaction');
    await send(alice, roomId, text('unrelated'));

    const all = await v1(alice, 'GET', `/rooms/${enc(roomId)}/relations/${enc(root)}`);
    expect(all.status).toBe(200);
    expect(all.body.chunk.map((e: Json) => e.event_id)).toEqual([r3, r2, like, r1]);
    expect(all.body.next_batch).toBeUndefined();

    const threads = await v1(alice, 'GET', `/rooms/${enc(roomId)}/relations/${enc(root)}/m.thread`);
    expect(threads.body.chunk.map((e: Json) => e.event_id)).toEqual([r3, r2, r1]);
    const reactions = await v1(alice, 'GET', `/rooms/${enc(roomId)}/relations/${enc(root)}/m.annotation/m.reaction`);
    expect(reactions.body.chunk.map((e: Json) => e.event_id)).toEqual([like]);
    const none = await v1(alice, 'GET', `/rooms/${enc(roomId)}/relations/${enc(root)}/m.thread/m.reaction`);
    expect(none.body.chunk).toEqual([]);

    // Pages of 2 backwards, then forwards from the start.
    const p1 = await v1(alice, 'GET', `/rooms/${enc(roomId)}/relations/${enc(root)}/m.thread?limit=2`);
    expect(p1.body.chunk.map((e: Json) => e.event_id)).toEqual([r3, r2]);
    expect(p1.body.next_batch).toMatch(/^p\d+$/);
    const p2 = await v1(alice, 'GET', `/rooms/${enc(roomId)}/relations/${enc(root)}/m.thread?limit=2&from=${p1.body.next_batch}`);
    expect(p2.body.chunk.map((e: Json) => e.event_id)).toEqual([r1]);
    expect(p2.body.next_batch).toBeUndefined();
    expect(p2.body.prev_batch).toBe(p1.body.next_batch);
    const fwd = await v1(alice, 'GET', `/rooms/${enc(roomId)}/relations/${enc(root)}/m.thread?dir=f&limit=2`);
    expect(fwd.body.chunk.map((e: Json) => e.event_id)).toEqual([r1, r2]);
    const fwd2 = await v1(alice, 'GET', `/rooms/${enc(roomId)}/relations/${enc(root)}/m.thread?dir=f&limit=2&from=${fwd.body.next_batch}`);
    expect(fwd2.body.chunk.map((e: Json) => e.event_id)).toEqual([r3]);

    // recurse: the reaction to a reply counts too.
    const deep = await v1(alice, 'GET', `/rooms/${enc(roomId)}/relations/${enc(root)}?recurse=true`);
    expect(deep.body.chunk.map((e: Json) => e.event_id)).toEqual([onReply, r3, r2, like, r1]);
    expect(deep.body.recursion_depth).toBe(3);

    // matrix-js-sdk's fetchRelations reads the same endpoint.
    const sdk = createClient({ baseUrl: server.baseUrl, accessToken: alice.token, userId: alice.userId, deviceId: alice.deviceId });
    const viaSdk = await sdk.fetchRelations(roomId, root, 'm.thread' as never, null, { dir: Direction.Backward });
    expect(viaSdk.chunk.map((e) => e.event_id)).toEqual([r3, r2, r1]);
  });

  it('answers 403 to outsiders, 404 for unknown events, 400 for bad parameters, and drops redacted relations', async () => {
    const alice = await register('rel_alice2');
    const eve = await register('rel_eve');
    const roomId = await createRoom(alice);
    const root = await send(alice, roomId, text('root'));
    const r1 = await send(alice, roomId, { ...text('reply'), ...thread(root) });
    const r2 = await send(alice, roomId, { ...text('reply 2'), ...thread(root) });
    expect((await v1(eve, 'GET', `/rooms/${enc(roomId)}/relations/${enc(root)}`)).body.errcode).toBe('M_FORBIDDEN');
    const missing = await v1(alice, 'GET', `/rooms/${enc(roomId)}/relations/${enc('$nope')}`);
    expect([missing.status, missing.body.errcode]).toEqual([404, 'M_NOT_FOUND']);
    expect((await v1(alice, 'GET', `/rooms/${enc(roomId)}/relations/${enc(root)}?dir=x`)).body.errcode).toBe('M_INVALID_PARAM');
    expect((await v1(alice, 'GET', `/rooms/${enc(roomId)}/relations/${enc(root)}?from=garbage`)).body.errcode).toBe('M_INVALID_PARAM');
    expect((await v1(null, 'GET', `/rooms/${enc(roomId)}/relations/${enc(root)}`)).status).toBe(401);

    const redact = await v3(alice, 'PUT', `/rooms/${enc(roomId)}/redact/${enc(r1)}/${txn()}`, {});
    expect(redact.status).toBe(200);
    const after = await v1(alice, 'GET', `/rooms/${enc(roomId)}/relations/${enc(root)}`);
    expect(after.body.chunk.map((e: Json) => e.event_id)).toEqual([r2]);
  });
  it('leaves out children history visibility hides from the requester', async () => {
    const alice = await register('rel_alice3');
    const bob = await register('rel_bob3');
    const roomId = await createRoom(alice, { preset: 'public_chat', initial_state: [{ type: 'm.room.history_visibility', state_key: '', content: { history_visibility: 'joined' } }] });
    expect((await v3(bob, 'POST', `/rooms/${enc(roomId)}/join`, {})).status).toBe(200);
    const root = await send(alice, roomId, text('root'));
    expect((await v3(bob, 'POST', `/rooms/${enc(roomId)}/leave`, {})).status).toBe(200);
    const hidden = await send(alice, roomId, { ...text('while bob was away'), ...thread(root) });
    expect((await v3(bob, 'POST', `/rooms/${enc(roomId)}/join`, {})).status).toBe(200);
    const seen = await send(alice, roomId, { ...text('bob is back'), ...thread(root) });
    const forBob = await v1(bob, 'GET', `/rooms/${enc(roomId)}/relations/${enc(root)}`);
    expect(forBob.body.chunk.map((e: Json) => e.event_id)).toEqual([seen]);
    const forAlice = await v1(alice, 'GET', `/rooms/${enc(roomId)}/relations/${enc(root)}`);
    expect(forAlice.body.chunk.map((e: Json) => e.event_id)).toEqual([seen, hidden]);
    const bundled = await v3(bob, 'GET', `/rooms/${enc(roomId)}/event/${enc(root)}`);
    expect(bundled.body.unsigned['m.relations']['m.thread'].count).toBe(1);
  });
});

describe('bundled aggregations and GET /v1/rooms/{roomId}/threads', () => {
  it('bundles m.thread and m.replace into /event, /messages and /context, and lists threads', async () => {
    const alice = await register('thr_alice');
    const bob = await register('thr_bob');
    const roomId = await createRoom(alice, { preset: 'public_chat' });
    expect((await v3(bob, 'POST', `/rooms/${enc(roomId)}/join`, {})).status).toBe(200);
    const rootA = await send(alice, roomId, text('thread A'));
    const rootB = await send(bob, roomId, text('thread B'));
    await send(alice, roomId, { ...text('a1'), ...thread(rootA) });
    const b1 = await send(alice, roomId, { ...text('b1'), ...thread(rootB) });
    const a2 = await send(bob, roomId, { ...text('a2'), ...thread(rootA) });
    const edited = await send(alice, roomId, text('typo'));
    await send(alice, roomId, edit(edited, 'first fix'));
    const lastEdit = await send(alice, roomId, edit(edited, 'second fix'));
    await send(bob, roomId, edit(edited, 'not allowed: other sender'));

    const ev = await v3(bob, 'GET', `/rooms/${enc(roomId)}/event/${enc(rootA)}`);
    const agg = ev.body.unsigned['m.relations']['m.thread'];
    expect(agg.count).toBe(2);
    expect(agg.latest_event.event_id).toBe(a2);
    expect(agg.current_user_participated).toBe(true);
    const forAlice = await v3(alice, 'GET', `/rooms/${enc(roomId)}/event/${enc(rootB)}`);
    expect(forAlice.body.unsigned['m.relations']['m.thread']).toMatchObject({ count: 1, current_user_participated: true });
    expect(forAlice.body.unsigned['m.relations']['m.thread'].latest_event.event_id).toBe(b1);
    const fresh = await register('thr_carol');
    expect((await v3(fresh, 'POST', `/rooms/${enc(roomId)}/join`, {})).status).toBe(200);
    const forCarol = await v3(fresh, 'GET', `/rooms/${enc(roomId)}/event/${enc(rootB)}`);
    expect(forCarol.body.unsigned['m.relations']['m.thread'].current_user_participated).toBe(false);

    const ed = await v3(alice, 'GET', `/rooms/${enc(roomId)}/event/${enc(edited)}`);
    expect(ed.body.unsigned['m.relations']['m.replace'].event_id).toBe(lastEdit);

    const messages = await v3(alice, 'GET', `/rooms/${enc(roomId)}/messages?dir=b&limit=50`);
    const inMessages = messages.body.chunk.find((e: Json) => e.event_id === rootA);
    expect(inMessages.unsigned['m.relations']['m.thread'].count).toBe(2);
    const context = await v3(alice, 'GET', `/rooms/${enc(roomId)}/context/${enc(edited)}?limit=4`);
    expect(context.body.event.unsigned['m.relations']['m.replace'].event_id).toBe(lastEdit);

    // Threads: most recent activity first; "participated" is the user's own threads.
    const all = await v1(alice, 'GET', `/rooms/${enc(roomId)}/threads`);
    expect(all.status).toBe(200);
    expect(all.body.chunk.map((e: Json) => e.event_id)).toEqual([rootA, rootB]);
    expect(all.body.chunk[0].unsigned['m.relations']['m.thread'].latest_event.event_id).toBe(a2);
    const page = await v1(alice, 'GET', `/rooms/${enc(roomId)}/threads?limit=1`);
    expect(page.body.chunk.map((e: Json) => e.event_id)).toEqual([rootA]);
    const page2 = await v1(alice, 'GET', `/rooms/${enc(roomId)}/threads?limit=1&from=${page.body.next_batch}`);
    expect(page2.body.chunk.map((e: Json) => e.event_id)).toEqual([rootB]);
    expect(page2.body.next_batch).toBeUndefined();
    const mine = await v1(fresh, 'GET', `/rooms/${enc(roomId)}/threads?include=participated`);
    expect(mine.body.chunk).toEqual([]);
    const bobs = await v1(bob, 'GET', `/rooms/${enc(roomId)}/threads?include=participated`);
    expect(bobs.body.chunk.map((e: Json) => e.event_id)).toEqual([rootA, rootB]);
    expect((await v1(alice, 'GET', `/rooms/${enc(roomId)}/threads?include=some`)).body.errcode).toBe('M_INVALID_PARAM');
    const outsider = await register('thr_eve');
    const privateRoom = await createRoom(alice);
    expect((await v1(outsider, 'GET', `/rooms/${enc(privateRoom)}/threads`)).status).toBe(403);
  });
});

describe('GET /v1/rooms/{roomId}/timestamp_to_event', () => {
  it('finds the closest visible event in either direction', async () => {
    const alice = await register('ts_alice');
    const roomId = await createRoom(alice);
    const e1 = await send(alice, roomId, text('one'));
    await new Promise((r) => setTimeout(r, 20));
    const e2 = await send(alice, roomId, text('two'));
    const get = async (id: string) => (await v3(alice, 'GET', `/rooms/${enc(roomId)}/event/${enc(id)}`)).body.origin_server_ts as number;
    const [t1, t2] = [await get(e1), await get(e2)];
    expect(t2).toBeGreaterThan(t1);

    const f = await v1(alice, 'GET', `/rooms/${enc(roomId)}/timestamp_to_event?ts=${t1 + 1}&dir=f`);
    expect(f.body).toEqual({ event_id: e2, origin_server_ts: t2 });
    const b = await v1(alice, 'GET', `/rooms/${enc(roomId)}/timestamp_to_event?ts=${t2 - 1}&dir=b`);
    expect(b.body).toEqual({ event_id: e1, origin_server_ts: t1 });
    const exact = await v1(alice, 'GET', `/rooms/${enc(roomId)}/timestamp_to_event?ts=${t2}&dir=b`);
    expect(exact.body.event_id).toBe(e2);
    const future = await v1(alice, 'GET', `/rooms/${enc(roomId)}/timestamp_to_event?ts=${t2 + 3_600_000}&dir=f`);
    expect([future.status, future.body.errcode]).toEqual([404, 'M_NOT_FOUND']);
    expect((await v1(alice, 'GET', `/rooms/${enc(roomId)}/timestamp_to_event?ts=${t1}`)).body.errcode).toBe('M_MISSING_PARAM');
    expect((await v1(alice, 'GET', `/rooms/${enc(roomId)}/timestamp_to_event?ts=soon&dir=f`)).body.errcode).toBe('M_INVALID_PARAM');
    const eve = await register('ts_eve');
    expect((await v1(eve, 'GET', `/rooms/${enc(roomId)}/timestamp_to_event?ts=${t1}&dir=f`)).status).toBe(403);

    const sdk = createClient({ baseUrl: server.baseUrl, accessToken: alice.token, userId: alice.userId, deviceId: alice.deviceId });
    const viaSdk = await sdk.timestampToEvent(roomId, t1 + 1, Direction.Forward);
    expect(viaSdk.event_id).toBe(e2);
  });
});

describe('POST /rooms/{roomId}/upgrade', () => {
  it('creates the new room with the important state, moves the alias, tombstones and restricts the old room', async () => {
    const alice = await register('up_alice');
    const bob = await register('up_bob');
    const alias = `#up${randomBytes(3).toString('hex')}:${server.serverName}`;
    const oldRoom = await createRoom(alice, {
      room_version: '10', visibility: 'public', preset: 'public_chat', name: 'Old name', topic: 'Old topic', room_alias_name: alias.slice(1, alias.indexOf(':')),
      power_level_content_override: { users: { [alice.userId]: 100, [bob.userId]: 50 } },
    });
    expect((await v3(bob, 'POST', `/rooms/${enc(oldRoom)}/join`, {})).status).toBe(200);
    expect((await v3(bob, 'PUT', `/rooms/${enc(oldRoom)}/state/m.room.avatar`, { url: 'mxc://x/y' })).status).toBe(200);

    // Bob (50) may not send the tombstone (100).
    const denied = await v3(bob, 'POST', `/rooms/${enc(oldRoom)}/upgrade`, { new_version: '12' });
    expect([denied.status, denied.body.errcode]).toEqual([403, 'M_FORBIDDEN']);
    const bad = await v3(alice, 'POST', `/rooms/${enc(oldRoom)}/upgrade`, { new_version: '999' });
    expect([bad.status, bad.body.errcode]).toEqual([400, 'M_UNSUPPORTED_ROOM_VERSION']);
    expect((await v3(alice, 'POST', `/rooms/${enc(oldRoom)}/upgrade`, {})).body.errcode).toBe('M_MISSING_PARAM');

    const sdk = createClient({ baseUrl: server.baseUrl, accessToken: alice.token, userId: alice.userId, deviceId: alice.deviceId });
    const { replacement_room: newRoom } = await sdk.upgradeRoom(oldRoom, '12');
    expect(newRoom).toMatch(/^!/);

    const state = async (roomId: string, type: string) => (await v3(alice, 'GET', `/rooms/${enc(roomId)}/state/${type}/`)).body;
    const create = (await v3(alice, 'GET', `/rooms/${enc(newRoom)}/state/m.room.create/?format=event`)).body;
    expect(create.content.room_version).toBe('12');
    expect(create.content.predecessor.room_id).toBe(oldRoom);
    expect(await state(newRoom, 'm.room.name')).toEqual({ name: 'Old name' });
    expect(await state(newRoom, 'm.room.topic')).toMatchObject({ topic: 'Old topic' });
    expect(await state(newRoom, 'm.room.avatar')).toEqual({ url: 'mxc://x/y' });
    expect((await state(newRoom, 'm.room.join_rules')).join_rule).toBe('public');
    const newPl = await state(newRoom, 'm.room.power_levels');
    expect(newPl.users[bob.userId]).toBe(50);
    expect(newPl.users[alice.userId]).toBeUndefined(); // v12: the creator's power comes from the create event
    expect((await state(newRoom, 'm.room.canonical_alias')).alias).toBe(alias);
    expect((await v3(null, 'GET', `/directory/room/${enc(alias)}`)).body.room_id).toBe(newRoom);

    // The published room is replaced in the room directory.
    expect(await server.redis.sismember(keys.publicRooms(), newRoom)).toBe(1);
    expect(await server.redis.sismember(keys.publicRooms(), oldRoom)).toBe(0);
    expect(await state(oldRoom, 'm.room.tombstone')).toEqual({ body: 'This room has been replaced', replacement_room: newRoom });
    const oldPl = await state(oldRoom, 'm.room.power_levels');
    expect(oldPl.events_default).toBe(50);
    expect(oldPl.invite).toBe(50);
    const carol = await register('up_carol');
    // The old room is public still; a new joiner can no longer talk there.
    expect((await v3(carol, 'POST', `/rooms/${enc(oldRoom)}/join`, {})).status).toBe(200);
    const talk = await v3(carol, 'PUT', `/rooms/${enc(oldRoom)}/send/m.room.message/${txn()}`, text('hello?'));
    expect(talk.status).toBe(403);
    const joined = (await v3(alice, 'GET', '/joined_rooms')).body.joined_rooms;
    expect(joined).toContain(newRoom);
  });
  it('downgrades a v12 room to v11 giving the upgrader 100, and refuses non-members', async () => {
    const alice = await register('up_alice2');
    const eve = await register('up_eve2');
    const oldRoom = await createRoom(alice, { name: 'v12 room', room_version: '12' });
    expect((await v3(eve, 'POST', `/rooms/${enc(oldRoom)}/upgrade`, { new_version: '11' })).status).toBe(403);
    const r = await v3(alice, 'POST', `/rooms/${enc(oldRoom)}/upgrade`, { new_version: '11' });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    const newRoom = r.body.replacement_room as string;
    const pl = (await v3(alice, 'GET', `/rooms/${enc(newRoom)}/state/m.room.power_levels/`)).body;
    expect(pl.users[alice.userId]).toBe(100);
    expect((await v3(alice, 'GET', `/rooms/${enc(newRoom)}/state/m.room.name/`)).body).toEqual({ name: 'v12 room' });
    const create = (await v3(alice, 'GET', `/rooms/${enc(newRoom)}/state/m.room.create/`)).body;
    expect(create).toMatchObject({ room_version: '11', predecessor: { room_id: oldRoom } });
    // Alice can still do everything in the new room.
    expect((await v3(alice, 'PUT', `/rooms/${enc(newRoom)}/state/m.room.topic`, { topic: 'after' })).status).toBe(200);
  });
});

describe('GET /v1/rooms/{roomId}/hierarchy', () => {
  it('walks m.space.child depth first with depth, suggested_only, pagination and visibility', async () => {
    const alice = await register('sp_alice');
    const bob = await register('sp_bob');
    const space = await createRoom(alice, { preset: 'public_chat', name: 'Space', creation_content: { type: 'm.space' } });
    const pub = await createRoom(alice, { preset: 'public_chat', name: 'Public child' });
    const priv = await createRoom(alice, { name: 'Private child' });
    const sub = await createRoom(alice, { preset: 'public_chat', name: 'Subspace', creation_content: { type: 'm.space' } });
    const deep = await createRoom(alice, { preset: 'public_chat', name: 'Deep room' });
    const child = (parent: string, c: string, extra: Json = {}) => v3(alice, 'PUT', `/rooms/${enc(parent)}/state/m.space.child/${enc(c)}`, { via: [server.serverName], ...extra });
    expect((await child(space, pub, { order: 'b', suggested: true })).status).toBe(200);
    expect((await child(space, priv, { order: 'a' })).status).toBe(200);
    expect((await child(space, sub, { order: 'c' })).status).toBe(200);
    expect((await child(sub, deep)).status).toBe(200);
    // A child without via does not count.
    expect((await v3(alice, 'PUT', `/rooms/${enc(space)}/state/m.space.child/${enc('!gone:elsewhere')}`, {})).status).toBe(200);

    const forAlice = await v1(alice, 'GET', `/rooms/${enc(space)}/hierarchy`);
    expect(forAlice.status).toBe(200);
    expect(forAlice.body.rooms.map((r: Json) => r.room_id)).toEqual([space, priv, pub, sub, deep]);
    const top = forAlice.body.rooms[0];
    expect(top).toMatchObject({ name: 'Space', room_type: 'm.space', join_rule: 'public', num_joined_members: 1, world_readable: false });
    expect(top.children_state.map((c: Json) => c.state_key)).toEqual([priv, pub, sub]);
    expect(top.children_state[0]).toMatchObject({ type: 'm.space.child', sender: alice.userId, content: { via: [server.serverName], order: 'a' } });

    // Bob is in none of them: the private room is left out.
    const forBob = await v1(bob, 'GET', `/rooms/${enc(space)}/hierarchy`);
    expect(forBob.body.rooms.map((r: Json) => r.room_id)).toEqual([space, pub, sub, deep]);
    const shallow = await v1(bob, 'GET', `/rooms/${enc(space)}/hierarchy?max_depth=1`);
    expect(shallow.body.rooms.map((r: Json) => r.room_id)).toEqual([space, pub, sub]);
    const suggested = await v1(bob, 'GET', `/rooms/${enc(space)}/hierarchy?suggested_only=true`);
    expect(suggested.body.rooms.map((r: Json) => r.room_id)).toEqual([space, pub]);

    const p1 = await v1(bob, 'GET', `/rooms/${enc(space)}/hierarchy?limit=2`);
    expect(p1.body.rooms.map((r: Json) => r.room_id)).toEqual([space, pub]);
    const p2 = await v1(bob, 'GET', `/rooms/${enc(space)}/hierarchy?limit=2&from=${enc(p1.body.next_batch)}`);
    expect(p2.body.rooms.map((r: Json) => r.room_id)).toEqual([sub, deep]);
    expect(p2.body.next_batch).toBeUndefined();
    expect((await v1(bob, 'GET', `/rooms/${enc(space)}/hierarchy?limit=2&max_depth=1&from=${enc(p1.body.next_batch)}`)).body.errcode).toBe('M_INVALID_PARAM');

    expect((await v1(bob, 'GET', `/rooms/${enc(priv)}/hierarchy`)).status).toBe(403);
    // An unknown room is one of the spec's 403 reasons (space_hierarchy.yaml), as Synapse answers.
    expect((await v1(bob, 'GET', `/rooms/${enc(`!unknown:${server.serverName}`)}/hierarchy`)).body.errcode).toBe('M_FORBIDDEN');
    expect((await v1(bob, 'GET', `/rooms/${enc(`!unknown:${server.serverName}`)}/hierarchy`)).status).toBe(403);

    const sdk = createClient({ baseUrl: server.baseUrl, accessToken: bob.token, userId: bob.userId, deviceId: bob.deviceId });
    const viaSdk = await sdk.getRoomHierarchy(space, 10, 1);
    expect(viaSdk.rooms.map((r) => r.room_id)).toEqual([space, pub, sub]);
  });
});

describe('shared-secret admin registration', () => {
  const admin = (method: string, body?: unknown, base = server.baseUrl) => raw(null, method, '/_synapse/admin/v1/register', body, base);

  it('registers with a valid MAC, marks admins, and refuses reused nonces, bad MACs and taken names', async () => {
    const n1 = (await admin('GET')).body.nonce as string;
    expect(n1).toMatch(/^[0-9a-f]{64}$/);
    const body = { nonce: n1, username: 'root_admin', password: 'hunter2hunter2', admin: true, displayname: 'Root' };
    const ok = await admin('POST', { ...body, mac: registrationMac(SECRET, body) });
    expect(ok.status, JSON.stringify(ok.body)).toBe(200);
    expect(ok.body.user_id).toBe(`@root_admin:${server.serverName}`);
    expect(ok.body.home_server).toBe(server.serverName);
    const who = await v3({ userId: ok.body.user_id, deviceId: ok.body.device_id, token: ok.body.access_token }, 'GET', '/account/whoami');
    expect(who.body).toMatchObject({ user_id: ok.body.user_id, device_id: ok.body.device_id });
    const acct = decode<AccountRecord>((await server.redis.getBuffer(keys.shard('user', shardOf(ok.body.user_id, server.config.shards.users)).data(userData.account(ok.body.user_id))))!);
    expect(acct.a).toBe(1);
    const login = await v3(null, 'POST', '/login', { type: 'm.login.password', identifier: { type: 'm.id.user', user: 'root_admin' }, password: 'hunter2hunter2' });
    expect(login.status).toBe(200);
    const profile = await v3(null, 'GET', `/profile/${enc(ok.body.user_id)}/displayname`);
    expect(profile.body.displayname).toBe('Root');

    // The nonce is used up.
    const again = await admin('POST', { ...body, username: 'other', mac: registrationMac(SECRET, { ...body, username: 'other' }) });
    expect([again.status, again.body.error]).toEqual([400, 'unrecognised nonce']);

    // A wrong MAC (signed as non-admin, sent as admin) is refused and burns the nonce.
    const n2 = (await admin('GET')).body.nonce as string;
    const forged = { nonce: n2, username: 'sneaky', password: 'pw-sneaky-123', admin: true };
    const bad = await admin('POST', { ...forged, mac: registrationMac(SECRET, { ...forged, admin: false }) });
    expect([bad.status, bad.body.errcode, bad.body.error]).toEqual([403, 'M_FORBIDDEN', 'HMAC incorrect']);
    const retry = await admin('POST', { ...forged, mac: registrationMac(SECRET, forged) });
    expect(retry.status).toBe(400);

    const n3 = (await admin('GET')).body.nonce as string;
    const taken = { nonce: n3, username: 'root_admin', password: 'x-password', admin: false };
    expect((await admin('POST', { ...taken, mac: registrationMac(SECRET, taken) })).body.errcode).toBe('M_USER_IN_USE');
    const n4 = (await admin('GET')).body.nonce as string;
    expect((await admin('POST', { nonce: n4, username: 'nomac', password: 'pw' })).body.error).toBe('mac must be specified');
    expect((await admin('POST', { username: 'nononce', password: 'pw', mac: 'ab' })).body.error).toBe('nonce must be specified');
    expect((await admin('POST', { nonce: 'made-up', username: 'x', password: 'pw', mac: 'ab' })).body.error).toBe('unrecognised nonce');

    // Nonces expire.
    const n5 = (await admin('GET')).body.nonce as string;
    expect(await server.redis.pttl(keys.adminRegisterNonce(n5))).toBeGreaterThan(50_000);
    await server.redis.del(keys.adminRegisterNonce(n5));
    const late = { nonce: n5, username: 'late_user', password: 'pw-late-123', admin: false };
    expect((await admin('POST', { ...late, mac: registrationMac(SECRET, late) })).body.error).toBe('unrecognised nonce');
  });

  it('is off without a shared secret, and the operator script parses its arguments', async () => {
    const off = await startTestServer({ workers: 1 });
    try {
      const g = await admin('GET', undefined, off.baseUrl);
      expect([g.status, g.body.error]).toEqual([400, 'Shared secret registration is not enabled']);
      const p = await admin('POST', { nonce: 'x', username: 'y', password: 'z', mac: 'm' }, off.baseUrl);
      expect(p.status).toBe(400);
      await expect(registerWithSharedSecret({ baseUrl: off.baseUrl, sharedSecret: SECRET, user: 'x', password: 'y', admin: false })).rejects.toThrow(/not enabled/);
    } finally {
      await off.stop();
    }
    expect(parseArgs(['@ops:example.org', '--password', 'pw', '--admin'], {})).toEqual({ user: '@ops:example.org', password: 'pw', admin: true });
    expect(parseArgs(['ops'], { AXON_REGISTER_PASSWORD: 'from-env', AXON_REGISTRATION_SHARED_SECRET: 's' })).toEqual({ user: 'ops', password: 'from-env', admin: false, sharedSecret: 's' });
    expect(() => parseArgs(['ops'], {})).toThrow(/password is required/);
    expect(() => parseArgs(['--bogus'], {})).toThrow(/unknown option/);
    // A full user id registers its localpart.
    const r = await registerWithSharedSecret({ baseUrl: server.baseUrl, sharedSecret: SECRET, user: `@script_user:${server.serverName}`, password: 'pw-script-1', admin: false });
    expect(r.user_id).toBe(`@script_user:${server.serverName}`);
  });
});
