/**
 * Discovery between two Axon servers (issue 16.3): A's users read B's room directory over
 * federation — every page of it with B's tokens (next and previous), filtered searches (MSC2197
 * POST: search term, room types), rooms whose server ACL denies A and rooms created with
 * `m.federate: false` left out for A but listed on B — and A's `/hierarchy` walks into B's space:
 * while A is in none of B's rooms everything comes from B's federation `/hierarchy` (private and
 * restricted children left out as inaccessible); once A's user joins B's space, A reads that space
 * itself, asks B only about the children A is not in, and the restricted child (allowed by the
 * space the user is now in) shows up.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clientsFor, enc, eventually, type Clients, type Json, type Session } from '../e2e/clients';
import type { TestServer } from '../e2e/server-harness';
import { createTestCa, type TestCa } from '../peers/test-ca';
import { startFederatedAxon } from './harness';

const A_IP = '127.0.0.203';
const B_IP = '127.0.0.204';

let ca: TestCa;
let a: TestServer;
let b: TestServer;
let onA: Clients;
let onB: Clients;
let alice: Session;
let bob: Session;
let bea: Session;

beforeAll(async () => {
  ca = createTestCa();
  [a, b] = await Promise.all([startFederatedAxon(A_IP, ca), startFederatedAxon(B_IP, ca)]);
  [onA, onB] = await Promise.all([clientsFor(a), clientsFor(b)]);
  alice = await onA.mint('alice');
  bob = await onB.mint('bob');
  bea = await onB.mint('bea');
}, 120_000);

afterAll(async () => {
  await onA?.close();
  await onB?.close();
  await Promise.all([a?.stop(), b?.stop()]);
  ca?.cleanup();
});

const roomOnB = async (body: Json): Promise<string> => {
  const r = await onB.call(bob, 'POST', '/createRoom', body);
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body.room_id;
};
const ids = (r: { body: Json }): string[] => (r.body.chunk as Json[]).map((e) => e.room_id);

describe("A's users read B's room directory over federation", () => {
  const blue: string[] = [];
  let space: string;
  let aclDenied: string;
  let unfederated: string;

  beforeAll(async () => {
    for (let i = 1; i <= 4; i++) blue.push(await roomOnB({ preset: 'public_chat', visibility: 'public', name: `Blue ${i}`, topic: `number ${i}` }));
    space = await roomOnB({ preset: 'public_chat', visibility: 'public', name: 'Blue Space', creation_content: { type: 'm.space' } });
    aclDenied = await roomOnB({
      preset: 'public_chat',
      visibility: 'public',
      name: 'Blue but not for A',
      initial_state: [{ type: 'm.room.server_acl', state_key: '', content: { allow: ['*'], deny: [A_IP], allow_ip_literals: true } }],
    });
    unfederated = await roomOnB({ preset: 'public_chat', visibility: 'public', name: 'Blue at home', creation_content: { 'm.federate': false } });
    // Two members in Blue 3: it leads the directory (most members first).
    expect((await onB.call(bea, 'POST', `/join/${enc(blue[2]!)}`, {})).status).toBe(200);
  }, 60_000);

  const all = () => [...blue, space];

  it('lists the rooms B publishes for A (not the ACL-denied one nor the m.federate:false one), as B lists them for its own users', async () => {
    const path = `/publicRooms?server=${enc(b.serverName)}`;
    const started = performance.now();
    const listed = await onA.call(alice, 'GET', path);
    console.log(`axon-discovery.e2e: A /publicRooms?server=B (7 published, 5 for A): ${Math.round(performance.now() - started)} ms`);
    expect(listed.status, JSON.stringify(listed.body)).toBe(200);
    expect(ids(listed).sort()).toEqual(all().sort());
    expect(listed.body.chunk[0]).toMatchObject({ room_id: blue[2], name: 'Blue 3', topic: 'number 3', num_joined_members: 2, join_rule: 'public', world_readable: false, guest_can_join: false });
    expect(listed.body.chunk.find((e: Json) => e.room_id === space)).toMatchObject({ room_type: 'm.space', num_joined_members: 1 });
    const home = await onB.call(bob, 'GET', '/publicRooms');
    expect(ids(home).sort()).toEqual([...all(), aclDenied, unfederated].sort());
    // The same room entries as B's own users get.
    for (const entry of listed.body.chunk as Json[]) expect(entry).toEqual(home.body.chunk.find((e: Json) => e.room_id === entry.room_id));
  });

  it('pages through B with its tokens (forwards to the end, then back with prev_batch)', async () => {
    const path = `/publicRooms?server=${enc(b.serverName)}&limit=2`;
    const pages: Json[] = [];
    let since: string | undefined;
    do {
      const page = await onA.call(alice, 'GET', `${path}${since ? `&since=${enc(since)}` : ''}`);
      expect(page.status, JSON.stringify(page.body)).toBe(200);
      expect(page.body.chunk.length).toBeLessThanOrEqual(2);
      pages.push(page.body);
      since = page.body.next_batch;
    } while (since && pages.length < 10);
    expect(pages).toHaveLength(3);
    const seen = pages.flatMap((p) => (p.chunk as Json[]).map((e) => e.room_id));
    expect(seen).toHaveLength(5);
    expect([...seen].sort()).toEqual(all().sort());
    expect(seen[0]).toBe(blue[2]);
    expect(pages[0]!.prev_batch).toBeUndefined();
    const back = await onA.call(alice, 'GET', `${path}&since=${enc(pages[1]!.prev_batch)}`);
    expect(ids(back)).toEqual((pages[0]!.chunk as Json[]).map((e) => e.room_id));
    // The same through POST, as the client API takes it.
    const posted = await onA.call(alice, 'POST', `/publicRooms?server=${enc(b.serverName)}`, { limit: 2, since: pages[0]!.next_batch });
    expect(ids(posted)).toEqual((pages[1]!.chunk as Json[]).map((e) => e.room_id));
  });

  it('filters on B (MSC2197): search term, room types, with pagination; a malformed filter is refused here', async () => {
    const path = `/publicRooms?server=${enc(b.serverName)}`;
    const started = performance.now();
    const term = await onA.call(alice, 'POST', path, { filter: { generic_search_term: 'BLUE 4' } });
    console.log(`axon-discovery.e2e: A filtered /publicRooms?server=B: ${Math.round(performance.now() - started)} ms`);
    expect(term.status, JSON.stringify(term.body)).toBe(200);
    expect(ids(term)).toEqual([blue[3]]);
    expect(ids(await onA.call(alice, 'POST', path, { filter: { generic_search_term: 'number 2' } }))).toEqual([blue[1]]);
    // Not found for A even by name: the ACL-denied room.
    expect(ids(await onA.call(alice, 'POST', path, { filter: { generic_search_term: 'not for A' } }))).toEqual([]);
    expect(ids(await onA.call(alice, 'POST', path, { filter: { room_types: ['m.space'] } }))).toEqual([space]);
    const plain = await onA.call(alice, 'POST', path, { filter: { room_types: [null] } });
    expect(ids(plain).sort()).toEqual([...blue].sort());
    const first = await onA.call(alice, 'POST', path, { limit: 3, filter: { room_types: [null] } });
    expect(first.body.chunk).toHaveLength(3);
    const rest = await onA.call(alice, 'POST', path, { limit: 3, since: first.body.next_batch, filter: { room_types: [null] } });
    expect([...ids(first), ...ids(rest)].sort()).toEqual([...blue].sort());
    expect(rest.body.next_batch).toBeUndefined();
    expect((await onA.call(alice, 'POST', path, { filter: { room_types: 'm.space' } })).body.errcode).toBe('M_INVALID_PARAM');
    expect((await onA.call(alice, 'GET', `${path}&limit=x`)).body.errcode).toBe('M_INVALID_PARAM');
    // Anyone may read A's own directory, but only A's users make A ask B.
    expect((await onA.call(null, 'GET', '/publicRooms')).status).toBe(200);
    expect(await onA.call(null, 'GET', path)).toMatchObject({ status: 401, body: { errcode: 'M_MISSING_TOKEN' } });
  });
});

describe("A's /hierarchy walks into B's space", () => {
  let aSpace: string;
  let bSpace: string;
  let bOpen: string;
  let bPrivate: string;
  let bRestricted: string;
  let bSub: string;
  let bDeep: string;

  beforeAll(async () => {
    bSpace = await roomOnB({ preset: 'public_chat', name: 'B Space', topic: 'on B', creation_content: { type: 'm.space' } });
    bOpen = await roomOnB({ preset: 'public_chat', name: 'B Open' });
    bPrivate = await roomOnB({ preset: 'private_chat', name: 'B Private' });
    bRestricted = await roomOnB({
      preset: 'private_chat',
      room_version: '10',
      name: 'B Members of the space',
      initial_state: [{ type: 'm.room.join_rules', state_key: '', content: { join_rule: 'restricted', allow: [{ type: 'm.room_membership', room_id: bSpace }] } }],
    });
    bSub = await roomOnB({ preset: 'public_chat', name: 'B Subspace', creation_content: { type: 'm.space' } });
    bDeep = await roomOnB({ preset: 'public_chat', name: 'B Deep', topic: 'two levels down' });
    const child = async (c: Clients, who: Session, parent: string, room: string, via: string, order: string) => {
      const r = await c.call(who, 'PUT', `/rooms/${enc(parent)}/state/m.space.child/${enc(room)}`, { via: [via], order });
      expect(r.status, JSON.stringify(r.body)).toBe(200);
    };
    await child(onB, bob, bSpace, bOpen, b.serverName, 'a');
    await child(onB, bob, bSpace, bPrivate, b.serverName, 'b');
    await child(onB, bob, bSpace, bRestricted, b.serverName, 'c');
    await child(onB, bob, bSpace, bSub, b.serverName, 'd');
    await child(onB, bob, bSub, bDeep, b.serverName, 'a');
    const created = await onA.call(alice, 'POST', '/createRoom', { preset: 'public_chat', name: 'A Space', creation_content: { type: 'm.space' } });
    expect(created.status).toBe(200);
    aSpace = created.body.room_id;
    await child(onA, alice, aSpace, bSpace, b.serverName, 'a');
  }, 60_000);

  const hierarchy = (query = '') => onA.call(alice, 'GET', `/_matrix/client/v1/rooms/${enc(aSpace)}/hierarchy${query}`);

  it('A in none of B’s rooms: B describes its space and children; private and restricted children are left out', async () => {
    const started = performance.now();
    const h = await hierarchy();
    console.log(`axon-discovery.e2e: A /hierarchy through 2 remote spaces on B: ${Math.round(performance.now() - started)} ms`);
    expect(h.status, JSON.stringify(h.body)).toBe(200);
    expect(ids({ body: { chunk: h.body.rooms } })).toEqual([aSpace, bSpace, bOpen, bSub, bDeep]);
    const byId = new Map((h.body.rooms as Json[]).map((r) => [r.room_id, r]));
    expect(byId.get(bSpace)).toMatchObject({ name: 'B Space', topic: 'on B', room_type: 'm.space', join_rule: 'public', num_joined_members: 1 });
    expect((byId.get(bSpace)!.children_state as Json[]).map((c) => c.state_key)).toEqual([bOpen, bPrivate, bRestricted, bSub]);
    expect(byId.get(bDeep)).toMatchObject({ name: 'B Deep', topic: 'two levels down', children_state: [] });
    expect(byId.get(bOpen)!.children_state).toEqual([]);
    const shallow = await hierarchy('?max_depth=1');
    expect(ids({ body: { chunk: shallow.body.rooms } })).toEqual([aSpace, bSpace]);
    // B's space itself, unknown on A: walked from the servers the client names (MSC4235), else 403 (the spec's answer for a room that does not exist).
    const direct = (roomId: string, query = '') => onA.call(alice, 'GET', `/_matrix/client/v1/rooms/${enc(roomId)}/hierarchy${query}`);
    const viaB = await direct(bSpace, `?org.matrix.msc4235.via=${enc(b.serverName)}`);
    expect(viaB.status, JSON.stringify(viaB.body)).toBe(200);
    expect(ids({ body: { chunk: viaB.body.rooms } })).toEqual([bSpace, bOpen, bSub, bDeep]);
    expect((await direct(bSpace)).status).toBe(403);
    expect((await direct(bPrivate, `?org.matrix.msc4235.via=${enc(b.serverName)}`)).status).toBe(403);
  });

  it("after A's user joins B's space, A reads it itself and the restricted child the user may now join appears", async () => {
    const joined = await onA.call(alice, 'POST', `/join/${enc(bSpace)}?server_name=${enc(b.serverName)}`, {});
    expect(joined.status, JSON.stringify(joined.body)).toBe(200);
    // The join is a faster join (partial state): A counts B's members once the full state is in,
    // which /members waits for.
    expect((await onA.call(alice, 'GET', `/rooms/${enc(bSpace)}/members`)).status).toBe(200);
    const h = await eventually(() => hierarchy(), (r) => r.status === 200 && r.body.rooms.some((x: Json) => x.room_id === bRestricted), 30_000);
    expect(ids({ body: { chunk: h.body.rooms } })).toEqual([aSpace, bSpace, bOpen, bRestricted, bSub, bDeep]);
    const restricted = (h.body.rooms as Json[]).find((r) => r.room_id === bRestricted)!;
    expect(restricted).toMatchObject({ name: 'B Members of the space', join_rule: 'restricted', allowed_room_ids: [bSpace] });
    // The space is read on A now: two joined members, one of them A's user.
    expect((h.body.rooms as Json[]).find((r) => r.room_id === bSpace)).toMatchObject({ num_joined_members: 2 });
    // Pages over the merged walk add up to the whole.
    const p1 = await hierarchy('?limit=4');
    const p2 = await hierarchy(`?limit=4&from=${enc(p1.body.next_batch)}`);
    expect([...p1.body.rooms, ...p2.body.rooms].map((r: Json) => r.room_id)).toEqual(h.body.rooms.map((r: Json) => r.room_id));
    expect(p2.body.next_batch).toBeUndefined();
  });
});
