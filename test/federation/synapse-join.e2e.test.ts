/**
 * A real Synapse joins an Axon room: a Synapse user joins an Axon public room by its alias
 * (Synapse resolves it with /query/directory, then make_join and send_join against Axon), Axon's
 * user sees them joined, a message the Synapse user sends reaches Axon in a transaction (/send) and
 * is read on Axon with /messages, the Axon user's messages reach Synapse through the outbound
 * sender (in order, once), and the Synapse user's leave reaches Axon too. Both servers on loopback
 * over TLS with IP-literal names and leaves of one test CA.
 *
 * Synapse comes from scripts/lib/ensure.sh's `ensure_synapse`; outside CI the test skips itself
 * when it is not installed.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { enc, eventually, txn, type Clients, type Json, type Session } from '../e2e/clients';
import type { TestServer } from '../e2e/server-harness';
import { SYNAPSE_VERSION, type PeerSession, type SynapsePeer } from '../peers/synapse';
import { skipWithoutSynapse, useAxonAndSynapse, type AxonAndSynapse } from './harness';

const skip = skipWithoutSynapse('synapse-join.e2e');

const A_IP = '127.0.0.71';
const S_IP = '127.0.0.72';

describe.skipIf(skip)(`a Synapse ${SYNAPSE_VERSION} user joins an Axon room`, () => {
  const journey = useAxonAndSynapse('synapse-join.e2e', A_IP, S_IP, { logLines: 40 });
  let pair: AxonAndSynapse;
  let a: TestServer;
  let s: SynapsePeer;
  let clients: Clients;
  let alice: Session;
  let bob: PeerSession;
  let roomId: string;
  let alias: string;

  beforeAll(async () => {
    pair = journey.pair;
    ({ axon: a, synapse: s, clients } = pair);
    alice = await clients.mint('alice');
    bob = await s.registerUser('bob', 'bob password');
    const created = await clients.call(alice, 'POST', '/createRoom', { preset: 'public_chat', visibility: 'public', room_alias_name: 'lobby', name: 'Lobby', room_version: '10' });
    expect(created.status, JSON.stringify(created.body)).toBe(200);
    roomId = created.body.room_id;
    alias = `#lobby:${a.serverName}`;
  }, 180_000);

  it('the Synapse user joins by alias (query/directory, make_join, send_join), and the Axon user sees them joined', async () => {
    const started = performance.now();
    const joined = await s.call(bob, 'POST', `/join/${enc(alias)}`, {});
    const ms = Math.round(performance.now() - started);
    expect(joined.status, JSON.stringify(joined.body)).toBe(200);
    expect(joined.body.room_id).toBe(roomId);
    console.log(`synapse-join.e2e: Synapse user joined an Axon room by alias in ${ms} ms`);
    const members = await eventually(
      () => clients.call(alice, 'GET', `/rooms/${enc(roomId)}/joined_members`),
      (r) => r.status === 200 && bob.userId in (r.body.joined ?? {}),
      30_000,
    );
    expect(Object.keys(members.body.joined).sort()).toEqual([alice.userId, bob.userId].sort());
    // Synapse sees the room's state from the send_join answer: Alice is a member there too.
    const onSynapse = await s.call(bob, 'GET', `/rooms/${enc(roomId)}/joined_members`);
    expect(onSynapse.status, JSON.stringify(onSynapse.body)).toBe(200);
    expect(Object.keys(onSynapse.body.joined).sort()).toEqual([alice.userId, bob.userId].sort());
  });

  it("the Synapse user's message reaches Axon (a transaction to /send) and the Axon user reads it with /messages", async () => {
    const body = `hello from ${s.serverName} ${txn()}`;
    const started = performance.now();
    const sent = await s.call(bob, 'PUT', `/rooms/${enc(roomId)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body });
    expect(sent.status, JSON.stringify(sent.body)).toBe(200);
    const page = await eventually(
      () => clients.call(alice, 'GET', `/rooms/${enc(roomId)}/messages?dir=b&limit=20`),
      (r) => (r.body.chunk ?? []).some((e: Json) => e.event_id === sent.body.event_id),
      30_000,
    );
    console.log(`synapse-join.e2e: Synapse → Axon message visible on Axon in ${Math.round(performance.now() - started)} ms`);
    expect(page.body.chunk.find((e: Json) => e.event_id === sent.body.event_id)).toMatchObject({ sender: bob.userId, type: 'm.room.message', content: { body } });
  });

  it("the Axon user's messages reach Synapse (the outbound sender), in order, once", async () => {
    const bodies = Array.from({ length: 12 }, (_, i) => `from Axon ${i} ${txn()}`);
    const started = performance.now();
    const ids: string[] = [];
    for (const body of bodies) {
      const sent = await clients.call(alice, 'PUT', `/rooms/${enc(roomId)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body });
      expect(sent.status, JSON.stringify(sent.body)).toBe(200);
      ids.push(sent.body.event_id);
    }
    const page = await eventually(
      () => s.call(bob, 'GET', `/rooms/${enc(roomId)}/messages?dir=b&limit=100`),
      (r) => ids.every((id) => (r.body.chunk ?? []).some((e: Json) => e.event_id === id)),
      30_000,
    );
    console.log(`synapse-join.e2e: 12 Axon → Synapse messages visible on Synapse in ${Math.round(performance.now() - started)} ms`);
    // On Synapse: each event id once, with its own content, in the order sent.
    const onSynapse = (page.body.chunk as Json[]).filter((e) => ids.includes(e.event_id)).reverse();
    expect(onSynapse.map((e) => e.event_id)).toEqual(ids);
    expect(onSynapse.map((e) => e.content.body)).toEqual(bodies);
    expect(onSynapse.every((e) => e.sender === alice.userId)).toBe(true);
  });

  it('the Synapse user leaves, and Axon sees the leave', async () => {
    const left = await s.call(bob, 'POST', `/rooms/${enc(roomId)}/leave`, {});
    expect(left.status, JSON.stringify(left.body)).toBe(200);
    await eventually(
      () => clients.call(alice, 'GET', `/rooms/${enc(roomId)}/joined_members`),
      (r) => r.status === 200 && !(bob.userId in (r.body.joined ?? {})),
      30_000,
    );
    const members = await clients.call(alice, 'GET', `/rooms/${enc(roomId)}/members?membership=leave`);
    expect(members.body.chunk.map((e: Json) => e.state_key)).toContain(bob.userId);
  });

  it("a Synapse user invites the Axon user into a Synapse room: Synapse's /invite reaches Axon, and the invite is in the Axon user's /sync", async () => {
    const created = await s.call(bob, 'POST', '/createRoom', { preset: 'private_chat', name: 'On Synapse', room_version: '10' });
    expect(created.status, JSON.stringify(created.body)).toBe(200);
    const synapseRoom = created.body.room_id as string;
    const invited = await s.call(bob, 'POST', `/rooms/${enc(synapseRoom)}/invite`, { user_id: alice.userId });
    expect(invited.status, JSON.stringify(invited.body)).toBe(200);
    const sync = await eventually(
      () => clients.call(alice, 'GET', '/sync?timeout=0'),
      (x) => !!x.body.rooms?.invite?.[synapseRoom],
      30_000,
    );
    const events = sync.body.rooms.invite[synapseRoom].invite_state.events as Json[];
    expect(events).toEqual(expect.arrayContaining([
      expect.objectContaining({ type: 'm.room.name', content: { name: 'On Synapse' } }),
      expect.objectContaining({ type: 'm.room.member', state_key: alice.userId, sender: bob.userId, content: expect.objectContaining({ membership: 'invite' }) }),
    ]));
  });
});
