/**
 * Faster joins (MSC3706 / MSC3902) with a real Synapse, both ways.
 *
 * 1. An Axon user joins a Synapse room of many members: send_join asks for `omit_members`,
 *    Synapse answers without the member events, and the room is partial-state on Axon. The test
 *    holds the resync back (it takes the room's resync lock first, as another front would), so
 *    the partial phase is seen for sure: the Axon user sends at once and Synapse gets it; a
 *    Synapse member's message arrives and shows in a lazy-loading /sync with its sender's member
 *    event; a non-lazy /sync holds the room back. Once the lock is let go, the sweep resyncs the
 *    room from Synapse: /members lists every member, and the non-lazy /sync gives the room as
 *    newly joined with all of them.
 * 2. A Synapse user joins an Axon room of many members: Synapse 1.163 asks for `omit_members` by
 *    default (its federation client's `partial_state=True`), Axon leaves the members out, and
 *    Synapse fills its state from Axon (its /members then lists them all).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { enc, eventually, txn, type Clients, type Json, type Session } from '../e2e/clients';
import { SYNAPSE_VERSION, synapseInstallation, type PeerSession, type SynapsePeer } from '../peers/synapse';
import { KeySpace } from '../../src/store/keys';
import { RoomReader } from '../../src/store/room-reader';
import { startAxonAndSynapse, type AxonAndSynapse } from './harness';

const install = synapseInstallation();
const skip = !install.ok && !process.env.CI;
if (skip && !install.ok) console.warn(`synapse-faster-joins.e2e: skipped. ${install.reason}`);

const A_IP = '127.0.0.221';
const S_IP = '127.0.0.222';
/** Members of each side's big room besides its creator. */
const MEMBERS = 40;

describe.skipIf(skip)(`faster joins with Synapse ${SYNAPSE_VERSION}`, () => {
  let pair: AxonAndSynapse;
  let s: SynapsePeer;
  let clients: Clients;
  let keys: KeySpace;
  let alice: Session;
  let bob: PeerSession;
  const synapseMembers: PeerSession[] = [];

  beforeAll(async () => {
    pair = await startAxonAndSynapse(A_IP, S_IP);
    ({ synapse: s, clients } = pair);
    keys = new KeySpace(pair.axon.config.redis.keyPrefix);
    alice = await clients.mint('alice');
    bob = await s.registerUser('bob', 'bob password');
  }, 180_000);

  afterAll(async () => {
    await pair?.stop();
  });

  afterEach(({ task }) => {
    if (task.result?.state === 'fail' && s) console.error(`${s.serverName} logs:\n${s.logTail(60)}`);
  });

  it(`an Axon user joins a Synapse room of ${MEMBERS + 1} members with partial state, sends at once, and gets the full state later`, async () => {
    const created = await s.call(bob, 'POST', '/createRoom', { preset: 'public_chat', name: 'Big Synapse room', room_version: '10' });
    expect(created.status, JSON.stringify(created.body)).toBe(200);
    const roomId: string = created.body.room_id;
    for (let i = 0; i < MEMBERS; i++) {
      const m = await s.registerUser(`sm${i}`, 'member password');
      const j = await s.call(m, 'POST', `/join/${enc(roomId)}`, {});
      expect(j.status, JSON.stringify(j.body)).toBe(200);
      synapseMembers.push(m);
    }

    // Hold the resync back, as a front already running it would.
    const lock = `${keys.partialStateRooms()}:lock:${roomId}`;
    await pair.axon.redis.set(lock, 'held by the test', 'PX', 120_000);
    const started = performance.now();
    const joined = await clients.call(alice, 'POST', `/join/${enc(roomId)}?server_name=${enc(s.serverName)}`, {});
    expect(joined.status, JSON.stringify(joined.body)).toBe(200);
    console.log(`synapse-faster-joins.e2e: joined a ${MEMBERS + 1}-member Synapse room in ${Math.round(performance.now() - started)} ms`);
    const entry = await pair.axon.redis.hget(keys.partialStateRooms(), roomId);
    expect(entry, 'the room is partial-state').not.toBeNull();
    const info = JSON.parse(entry!) as { join: string; servers: string[] };
    expect(info.servers).toContain(s.serverName);
    // Partial: Axon knows only some members (the resident left the others out).
    const rooms = new RoomReader(pair.axon.redis, keys, pair.axon.config.shards.rooms);
    expect((await rooms.members(roomId, 'join')).size).toBeLessThan(MEMBERS);

    // The Axon user sends at once; Synapse (whose member list Axon does not have yet) gets it.
    const sent = await clients.call(alice, 'PUT', `/rooms/${enc(roomId)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body: 'hello from a partial-state room' });
    expect(sent.status, JSON.stringify(sent.body)).toBe(200);
    await eventually(
      () => s.call(bob, 'GET', `/rooms/${enc(roomId)}/event/${enc(sent.body.event_id)}`),
      (r) => r.status === 200,
      60_000,
    );

    // A Synapse member whose member event Axon does not have speaks: the lazy-loading /sync shows
    // the message with the sender's member event (found through the event's auth events).
    const speaker = synapseMembers[7]!;
    const said = await s.call(speaker, 'PUT', `/rooms/${enc(roomId)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body: 'said while partial' });
    expect(said.status, JSON.stringify(said.body)).toBe(200);
    const lazy = JSON.stringify({ room: { state: { lazy_load_members: true }, timeline: { limit: 50 } } });
    const lazySync = await eventually(
      () => clients.call(alice, 'GET', `/sync?timeout=0&filter=${enc(lazy)}`),
      (r) => (r.body.rooms?.join?.[roomId]?.timeline?.events ?? []).some((e: Json) => e.event_id === said.body.event_id),
      60_000,
    );
    const lazyRoom = lazySync.body.rooms.join[roomId];
    const lazyState = [...(lazyRoom.state?.events ?? []), ...(lazyRoom.timeline?.events ?? [])] as Json[];
    expect(lazyState.some((e) => e.type === 'm.room.member' && e.state_key === speaker.userId), JSON.stringify(lazyRoom).slice(0, 2000)).toBe(true);
    expect((await pair.axon.redis.hget(keys.partialStateRooms(), roomId)) !== null, 'still partial while the resync is held').toBe(true);
    // A sync that does not lazy-load members does not get the room while it is partial.
    const eager = await clients.call(alice, 'GET', '/sync?timeout=0');
    expect(eager.status).toBe(200);
    expect(eager.body.rooms?.join?.[roomId], 'held back from a non-lazy sync').toBeUndefined();
    const since: string = eager.body.next_batch;

    // Let the resync go: the sweep takes the room up within seconds.
    await pair.axon.redis.del(lock);
    const resyncStart = performance.now();
    const members = await clients.call(alice, 'GET', `/rooms/${enc(roomId)}/members`);
    expect(members.status, JSON.stringify(members.body)).toBe(200);
    console.log(`synapse-faster-joins.e2e: /members answered after the full state came in (${Math.round(performance.now() - resyncStart)} ms after the resync was let go)`);
    const joinedIds = (members.body.chunk as Json[]).filter((e) => e.content?.membership === 'join').map((e) => e.state_key as string);
    expect(new Set(joinedIds)).toEqual(new Set([bob.userId, alice.userId, ...synapseMembers.map((m) => m.userId)]));
    expect(await pair.axon.redis.hget(keys.partialStateRooms(), roomId)).toBeNull();

    // The non-lazy sync now gets the room as newly joined, with every member and the messages.
    const after = await eventually(
      () => clients.call(alice, 'GET', `/sync?timeout=0&since=${enc(since)}`),
      (r) => !!r.body.rooms?.join?.[roomId],
      30_000,
    );
    const room = after.body.rooms.join[roomId];
    const all = [...(room.state?.events ?? []), ...(room.timeline?.events ?? [])] as Json[];
    const memberIds = new Set(all.filter((e) => e.type === 'm.room.member' && e.content?.membership === 'join').map((e) => e.state_key));
    expect(memberIds.size, JSON.stringify(room).slice(0, 1500)).toBe(MEMBERS + 2);
    expect(((room.timeline?.events ?? []) as Json[]).some((e) => e.event_id === said.body.event_id)).toBe(true);

    // And the room lives on: a message from Synapse after the resync arrives too.
    const later = await s.call(synapseMembers[3]!, 'PUT', `/rooms/${enc(roomId)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body: 'after the resync' });
    await eventually(
      () => clients.call(alice, 'GET', `/rooms/${enc(roomId)}/event/${enc(later.body.event_id)}`),
      (r) => r.status === 200,
      60_000,
    );
  }, 600_000);

  it(`a Synapse user joins an Axon room of ${MEMBERS + 1} members: Synapse asks for omit_members and fills its state from Axon`, async () => {
    const created = await clients.call(alice, 'POST', '/createRoom', { preset: 'public_chat', name: 'Big Axon room', room_version: '10' });
    expect(created.status, JSON.stringify(created.body)).toBe(200);
    const roomId: string = created.body.room_id;
    const axonMembers: Session[] = [];
    for (let i = 0; i < MEMBERS; i++) {
      const m = await clients.mint(`am${i}`);
      const j = await clients.call(m, 'POST', `/rooms/${enc(roomId)}/join`, {});
      expect(j.status, JSON.stringify(j.body)).toBe(200);
      axonMembers.push(m);
    }
    const carol = await s.registerUser('carol', 'carol password');
    const joined = await s.call(carol, 'POST', `/join/${enc(roomId)}?server_name=${enc(pair.axon.serverName)}`, {});
    expect(joined.status, JSON.stringify(joined.body)).toBe(200);
    // Synapse took the join as a partial-state one (it logs the flag when it persists the join).
    expect(s.logTail(4000)).toMatch(/join-via-remote[^\n]*partial_state: True/);
    // Carol can send at once, and Axon's members see it.
    const sent = await s.call(carol, 'PUT', `/rooms/${enc(roomId)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body: 'hello from Synapse' });
    expect(sent.status, JSON.stringify(sent.body)).toBe(200);
    await eventually(
      () => clients.call(axonMembers[5]!, 'GET', `/rooms/${enc(roomId)}/event/${enc(sent.body.event_id)}`),
      (r) => r.status === 200,
      60_000,
    );
    // Synapse's /members waits for its resync from Axon, then lists everyone.
    const members = await eventually(
      () => s.call(carol, 'GET', `/rooms/${enc(roomId)}/members`),
      (r) => r.status === 200 && (r.body.chunk as Json[]).filter((e) => e.content?.membership === 'join').length === MEMBERS + 2,
      120_000,
    );
    const ids = new Set((members.body.chunk as Json[]).filter((e) => e.content?.membership === 'join').map((e) => e.state_key));
    expect(ids).toEqual(new Set([alice.userId, carol.userId, ...axonMembers.map((m) => m.userId)]));
  }, 600_000);
});
