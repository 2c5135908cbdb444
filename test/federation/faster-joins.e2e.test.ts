/**
 * Faster joins (MSC3706) between two Axons, both ways, and the resident side's answer read raw.
 *
 * - A signing test peer asks Axon A for send_join v2 with `omit_members=true`: the state keeps
 *   the non-member events and the joining user's own membership, leaves the other members out,
 *   the auth chain carries no event the state already has, `members_omitted` is true and
 *   `servers_in_room` names A; without the flag (and on v1) the full state comes back.
 * - A user of B joins a room of A with many members: partial-state on B (the test holds B's
 *   resync back with the room's lock): B's user sends at once and A's members see it; an A
 *   member's message reaches B; a message forged by a user who left before B joined passes on the
 *   partial state (its auth events vouch for it); B's make_join refuses while partial (404); once
 *   let go, B fetches the state from A, /members on B lists every member, and the forged message,
 *   checked again on the full state, is rejected and gone from B's timeline.
 * - A user of A joins a room of B (B resident): partial, then full without help.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { computeEventId } from '../../src/protocol/event-hashing';
import type { JsonObject } from '../../src/protocol/json';
import { requireRoomVersion } from '../../src/protocol/room-versions';
import { KeySpace } from '../../src/store/keys';
import { RoomReader } from '../../src/store/room-reader';
import pino from 'pino';
import { FederationSenderReader } from '../../src/federation/sender/reader';
import type { RoomOutput } from '../../src/rooms/model';
import { shardCountsFor } from '../../src/runtime/cluster-settings';
import { parseOutboxEntry } from '../../src/runtime/envelope';
import { decode } from '../../src/store/codec';
import { shardOf } from '../../src/store/shards';
import { clientsFor, enc, eventually, txn, type Clients, type Json, type Session } from '../e2e/clients';
import type { TestServer } from '../e2e/server-harness';
import { createTestCa, type TestCa } from '../peers/test-ca';
import { startFederatedAxon } from './harness';
import { SigningPeer } from './signing-peer';

const A_IP = '127.0.0.223';
const B_IP = '127.0.0.224';
const P_IP = '127.0.0.225';
const VERSION = requireRoomVersion('10');
const MEMBERS = 25;

/** What a federation sender reader of `server` that reads a room's outbox entries only now queues: destinations by event id. */
async function destinationsByAReaderBehind(server: TestServer, roomId: string): Promise<Map<string, string[]>> {
  const keys = new KeySpace(server.config.redis.keyPrefix);
  const shardCounts = shardCountsFor(server.config);
  const reader = new FederationSenderReader(server.redis, keys, shardCounts, server.serverName, 'behind', pino({ level: 'silent' }));
  const told = new Map<string, string[]>();
  (reader as unknown as { actors: unknown }).actors = {
    tell: async (_f: string, _k: string, dest: string, body: { t: string; items?: { e: string }[] }) => {
      if (body.t === 'pdus') for (const { e } of body.items!) told.set(e, [...(told.get(e) ?? []), dest].sort());
    },
  };
  const shard = shardOf(roomId, shardCounts.room);
  const rows = (await server.redis.xrangeBuffer(keys.shard('room', shard).outbox, '-', '+')) as [Buffer, Buffer[]][];
  const entries = rows.map(([id, fields]) => ({ id: id.toString(), entry: parseOutboxEntry(fields) })).filter((e) => e.entry?.kind === 'room' && decode<RoomOutput>(e.entry.body).roomId === roomId);
  await (reader as unknown as { apply(shard: number, entries: unknown[]): Promise<void> }).apply(shard, entries);
  return told;
}

let ca: TestCa;
let a: TestServer;
let b: TestServer;
let peer: SigningPeer;
let ca_: Clients;
let cb: Clients;
let alice: Session;
let bert: Session;
const aMembers: Session[] = [];
let bigRoom: string;
/** The peer's user's join of the big room, with the ids of the room's create and power levels events. */
let patJoin: { id: string; createId: string; powerId: string };

beforeAll(async () => {
  ca = createTestCa();
  [a, b] = await Promise.all([startFederatedAxon(A_IP, ca), startFederatedAxon(B_IP, ca)]);
  peer = await SigningPeer.start(P_IP, ca);
  [ca_, cb] = await Promise.all([clientsFor(a), clientsFor(b)]);
  alice = await ca_.mint('alice');
  bert = await cb.mint('bert');
  const created = await ca_.call(alice, 'POST', '/createRoom', { preset: 'public_chat', room_version: '10' });
  expect(created.status, JSON.stringify(created.body)).toBe(200);
  bigRoom = created.body.room_id;
  for (let i = 0; i < MEMBERS; i++) {
    const m = await ca_.mint(`m${i}`);
    const j = await ca_.call(m, 'POST', `/rooms/${enc(bigRoom)}/join`, {});
    expect(j.status, JSON.stringify(j.body)).toBe(200);
    aMembers.push(m);
  }
}, 180_000);

afterAll(async () => {
  await ca_?.close();
  await cb?.close();
  await peer?.close();
  await Promise.all([a?.stop(), b?.stop()]);
  ca?.cleanup();
});

const idOf = (e: Json) => e.event_id as string | undefined;

describe('faster joins between Axons', () => {
  it('send_join v2 with omit_members=true leaves the other members out and trims the auth chain', async () => {
    const user = `@pat:${peer.serverName}`;
    const made = await peer.request(a, 'GET', `/_matrix/federation/v1/make_join/${enc(bigRoom)}/${enc(user)}?ver=10`);
    expect(made.status, made.text).toBe(200);
    const { pdu, id } = peer.sign(made.body.event as JsonObject, VERSION);
    const bad = await peer.request(a, 'PUT', `/_matrix/federation/v2/send_join/${enc(bigRoom)}/${enc(id)}?omit_members=maybe`, pdu);
    expect(bad.status).toBe(400);
    const sent = await peer.request(a, 'PUT', `/_matrix/federation/v2/send_join/${enc(bigRoom)}/${enc(id)}?omit_members=true`, pdu);
    expect(sent.status, sent.text).toBe(200);
    expect(sent.body.members_omitted).toBe(true);
    expect(sent.body.servers_in_room).toContain(a.serverName);
    const state = sent.body.state as Json[];
    const members = state.filter((e) => e.type === 'm.room.member');
    // The room has no name: the heroes' memberships (five at most) come along; the rest do not.
    expect(members.length).toBeLessThanOrEqual(5);
    expect(state.some((e) => e.type === 'm.room.create')).toBe(true);
    expect(state.some((e) => e.type === 'm.room.power_levels')).toBe(true);
    expect(state.some((e) => e.type === 'm.room.join_rules')).toBe(true);
    const stateIds = new Set(state.map((e) => computeEventId(e as JsonObject, VERSION)));
    for (const e of sent.body.auth_chain as Json[]) expect(stateIds.has(computeEventId(e as JsonObject, VERSION))).toBe(false);

    // Asked again without the flag, the same join gets the full state.
    const full = await peer.request(a, 'PUT', `/_matrix/federation/v2/send_join/${enc(bigRoom)}/${enc(id)}`, pdu);
    expect(full.status, full.text).toBe(200);
    const stateId = (type: string) => computeEventId((full.body.state as JsonObject[]).find((e) => e.type === type && e.state_key === '')!, VERSION);
    patJoin = { id, createId: stateId('m.room.create'), powerId: stateId('m.room.power_levels') };
    expect(full.body.members_omitted).toBe(false);
    expect((full.body.state as Json[]).filter((e) => e.type === 'm.room.member').length).toBe(MEMBERS + 1);
  });

  it(`a user of B joins A's room of ${MEMBERS + 1} members with partial state; B fills it from A and rejects what the full state refuses`, async () => {
    // The peer's user leaves A's room before B joins: B's partial state will not say so.
    const pat = `@pat:${peer.serverName}`;
    const madeLeave = await peer.request(a, 'GET', `/_matrix/federation/v1/make_leave/${enc(bigRoom)}/${enc(pat)}`);
    expect(madeLeave.status, madeLeave.text).toBe(200);
    const leave = peer.sign(madeLeave.body.event as JsonObject, VERSION);
    const left = await peer.request(a, 'PUT', `/_matrix/federation/v2/send_leave/${enc(bigRoom)}/${enc(leave.id)}`, leave.pdu);
    expect(left.status, left.text).toBe(200);

    const bKeys = new KeySpace(b.config.redis.keyPrefix);
    const lock = `${bKeys.partialStateRooms()}:lock:${bigRoom}`;
    await b.redis.set(lock, 'held by the test', 'PX', 120_000);
    const joined = await cb.call(bert, 'POST', `/join/${enc(bigRoom)}?server_name=${enc(a.serverName)}`, {});
    expect(joined.status, JSON.stringify(joined.body)).toBe(200);
    expect(await b.redis.hget(bKeys.partialStateRooms(), bigRoom)).not.toBeNull();
    const bRooms = new RoomReader(b.redis, bKeys, b.config.shards.rooms);
    expect((await bRooms.members(bigRoom, 'join')).size).toBeLessThan(MEMBERS);

    // Sends at once; A's members see it.
    const sent = await cb.call(bert, 'PUT', `/rooms/${enc(bigRoom)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body: 'from B, partial' });
    expect(sent.status, JSON.stringify(sent.body)).toBe(200);
    await eventually(() => ca_.call(aMembers[9]!, 'GET', `/rooms/${enc(bigRoom)}/event/${enc(sent.body.event_id)}`), (r) => r.status === 200, 60_000);
    // A member B has no member event of speaks: it reaches B.
    const said = await ca_.call(aMembers[11]!, 'PUT', `/rooms/${enc(bigRoom)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body: 'from A' });
    expect(said.status).toBe(200);
    await eventually(() => cb.call(bert, 'GET', `/rooms/${enc(bigRoom)}/event/${enc(said.body.event_id)}`), (r) => r.status === 200, 60_000);

    // The peer, its user gone from the room, forges a message citing that user's old join: B's
    // partial state has neither the join nor the leave, the event's auth events vouch for it, and
    // nothing is soft-failed while partial — B takes it (Synapse would too).
    const forged = peer.sign({ room_id: bigRoom, sender: pat, type: 'm.room.message', content: { msgtype: 'm.text', body: 'forged after leaving' }, origin_server_ts: Date.now(), depth: 10_000, prev_events: [said.body.event_id], auth_events: [patJoin.createId, patJoin.powerId, patJoin.id] }, VERSION);
    const txnAnswer = await peer.sendTransaction(b, `forged-${Date.now()}`, [forged.pdu]);
    expect(txnAnswer.status, txnAnswer.text).toBe(200);
    await eventually(() => cb.call(bert, 'GET', `/rooms/${enc(bigRoom)}/event/${enc(forged.id)}`), (r) => r.status === 200, 60_000);

    // While partial, B makes no joins (another resident must).
    const makeJoin = await peer.request(b, 'GET', `/_matrix/federation/v1/make_join/${enc(bigRoom)}/${enc(`@quinn:${peer.serverName}`)}?ver=10`);
    expect(makeJoin.status).toBe(404);

    await b.redis.del(lock);
    const members = await cb.call(bert, 'GET', `/rooms/${enc(bigRoom)}/members`);
    expect(members.status, JSON.stringify(members.body)).toBe(200);
    const joinedIds = new Set((members.body.chunk as Json[]).filter((e) => e.content?.membership === 'join').map((e) => e.state_key));
    // Alice, her members and bert (the peer's user has left).
    expect(joinedIds).toEqual(new Set([alice.userId, bert.userId, ...aMembers.map((m) => m.userId)]));
    expect((members.body.chunk as Json[]).find((e) => e.state_key === pat)?.content?.membership).toBe('leave');
    expect(await b.redis.hget(bKeys.partialStateRooms(), bigRoom)).toBeNull();
    // A federation sender behind B's room (a restart, a move) that comes to the message B sent
    // while partial only now: its output entry was written on the partial state (marked so), whose
    // snapshot lacks the members the resident left out; the event's record has the full state
    // before it by now, and that is what the reader goes by. A is the only server then in the room
    // (the peer's user had left).
    const behind = await destinationsByAReaderBehind(b, bigRoom);
    const shard = shardOf(bigRoom, b.config.shards.rooms);
    const outputs = ((await b.redis.xrangeBuffer(bKeys.shard('room', shard).outbox, '-', '+')) as [Buffer, Buffer[]][]).map(([, f]) => parseOutboxEntry(f)).filter((e) => e?.kind === 'room').map((e) => decode<RoomOutput>(e!.body));
    const sentOutput = outputs.find((o) => o.eventId === sent.body.event_id)!;
    expect(sentOutput.partialState).toBe(true);
    expect((await bRooms.event(bigRoom, sent.body.event_id))!.stateBefore).not.toBe(sentOutput.stateBefore);
    expect(behind.get(sent.body.event_id)).toEqual([a.serverName]);
    // The full state says the forger had left: the message is rejected and leaves B's timeline.
    expect((await cb.call(bert, 'GET', `/rooms/${enc(bigRoom)}/event/${enc(forged.id)}`)).status).toBe(404);
    const history = await cb.call(bert, 'GET', `/rooms/${enc(bigRoom)}/messages?dir=b&limit=50`);
    expect((history.body.chunk as Json[]).map(idOf)).not.toContain(forged.id);

    // The sender now knows every member's server from the full state: more messages flow both ways.
    const again = await cb.call(bert, 'PUT', `/rooms/${enc(bigRoom)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body: 'from B, full' });
    await eventually(() => ca_.call(alice, 'GET', `/rooms/${enc(bigRoom)}/event/${enc(again.body.event_id)}`), (r) => r.status === 200, 60_000);
    const messages = await cb.call(bert, 'GET', `/rooms/${enc(bigRoom)}/messages?dir=b&limit=20`);
    const ids = (messages.body.chunk as Json[]).map(idOf);
    expect(ids).toContain(said.body.event_id);
    expect(ids).toContain(sent.body.event_id);
  }, 300_000);

  it('a user of A joins a room of B (the other way): partial, then full', async () => {
    const created = await cb.call(bert, 'POST', '/createRoom', { preset: 'public_chat', room_version: '10' });
    const roomB = created.body.room_id as string;
    const bMembers: Session[] = [];
    for (let i = 0; i < 8; i++) {
      const m = await cb.mint(`bm${i}`);
      expect((await cb.call(m, 'POST', `/rooms/${enc(roomB)}/join`, {})).status).toBe(200);
      bMembers.push(m);
    }
    const joined = await ca_.call(alice, 'POST', `/join/${enc(roomB)}?server_name=${enc(b.serverName)}`, {});
    expect(joined.status, JSON.stringify(joined.body)).toBe(200);
    const members = await ca_.call(alice, 'GET', `/rooms/${enc(roomB)}/members`);
    expect(members.status).toBe(200);
    const ids = new Set((members.body.chunk as Json[]).filter((e) => e.content?.membership === 'join').map((e) => e.state_key));
    expect(ids).toEqual(new Set([alice.userId, bert.userId, ...bMembers.map((m) => m.userId)]));
    const aKeys = new KeySpace(a.config.redis.keyPrefix);
    expect(await a.redis.hget(aKeys.partialStateRooms(), roomB)).toBeNull();
  }, 300_000);
});
