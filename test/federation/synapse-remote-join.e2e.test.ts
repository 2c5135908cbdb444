/**
 * An Axon user joins a room on a real Synapse (the joining side of make_join/send_join): a
 * Synapse user creates a public room with an alias and posts; the Axon user joins by alias (Axon
 * resolves it with /query/directory on Synapse, then make_join and send_join v2 there, and the
 * room actor ingests the answer's state and auth chain as supplied state with the join live);
 * Axon's /sync shows the room with its name; messages go both ways, in order, once; the Axon
 * user leaves and Synapse sees it; a Synapse invite is accepted by joining through the inviter.
 *
 * Synapse comes from scripts/lib/ensure.sh's `ensure_synapse`; outside CI the test skips itself
 * when it is not installed.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { enc, eventually, txn, type Clients, type Json, type Session } from '../e2e/clients';
import { SYNAPSE_VERSION, type PeerSession, type SynapsePeer } from '../peers/synapse';
import { skipWithoutSynapse, useAxonAndSynapse, type AxonAndSynapse } from './harness';

const skip = skipWithoutSynapse('synapse-remote-join.e2e');

const A_IP = '127.0.0.73';
const S_IP = '127.0.0.74';

describe.skipIf(skip)(`an Axon user joins a room on Synapse ${SYNAPSE_VERSION}`, () => {
  const journey = useAxonAndSynapse('synapse-remote-join.e2e', A_IP, S_IP, { logLines: 40 });
  let pair: AxonAndSynapse;
  let s: SynapsePeer;
  let clients: Clients;
  let alice: Session;
  let bob: PeerSession;
  let roomId: string;
  let alias: string;
  const early: string[] = [];

  beforeAll(async () => {
    pair = journey.pair;
    ({ synapse: s, clients } = pair);
    alice = await clients.mint('alice');
    await clients.call(alice, 'PUT', `/profile/${enc(alice.userId)}/displayname`, { displayname: 'Alice A' });
    bob = await s.registerUser('bob', 'bob password');
    const created = await s.call(bob, 'POST', '/createRoom', { preset: 'public_chat', visibility: 'public', room_alias_name: 'garden', name: 'Garden', room_version: '10', initial_state: [{ type: 'm.room.history_visibility', state_key: '', content: { history_visibility: 'shared' } }] });
    expect(created.status, JSON.stringify(created.body)).toBe(200);
    roomId = created.body.room_id;
    alias = `#garden:${s.serverName}`;
    for (const body of ['early one', 'early two']) {
      const sent = await s.call(bob, 'PUT', `/rooms/${enc(roomId)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body });
      expect(sent.status, JSON.stringify(sent.body)).toBe(200);
      early.push(sent.body.event_id);
    }
  }, 180_000);

  it('an unknown alias on the remote server is 404 M_NOT_FOUND', async () => {
    const r = await clients.call(alice, 'POST', `/join/${enc(`#nowhere:${s.serverName}`)}`, {});
    expect(r.status, JSON.stringify(r.body)).toBe(404);
    expect(r.body.errcode).toBe('M_NOT_FOUND');
  });

  it('the Axon user joins by alias (query/directory, make_join, send_join), and /sync shows the room with its name', async () => {
    const started = performance.now();
    const joined = await clients.call(alice, 'POST', `/join/${enc(alias)}`, {});
    const ms = Math.round(performance.now() - started);
    expect(joined.status, JSON.stringify(joined.body)).toBe(200);
    expect(joined.body.room_id).toBe(roomId);
    console.log(`synapse-remote-join.e2e: Axon user joined a Synapse room by alias in ${ms} ms`);
    const sync = await eventually(
      () => clients.call(alice, 'GET', '/sync?timeout=0'),
      (r) => !!r.body.rooms?.join?.[roomId],
      30_000,
    );
    const room = sync.body.rooms.join[roomId];
    const stateEvents = [...(room.state?.events ?? []), ...(room.timeline?.events ?? [])] as Json[];
    expect(stateEvents.find((e) => e.type === 'm.room.name')?.content, JSON.stringify(room).slice(0, 3000)).toEqual({ name: 'Garden' });
    const members = await clients.call(alice, 'GET', `/rooms/${enc(roomId)}/joined_members`);
    expect(members.status, JSON.stringify(members.body)).toBe(200);
    expect(Object.keys(members.body.joined).sort()).toEqual([alice.userId, bob.userId].sort());
    // Synapse has the join, with Alice's profile.
    const onSynapse = await eventually(
      () => s.call(bob, 'GET', `/rooms/${enc(roomId)}/joined_members`),
      (r) => r.status === 200 && alice.userId in (r.body.joined ?? {}),
      30_000,
    );
    expect(onSynapse.body.joined[alice.userId].display_name).toBe('Alice A');
  });

  it("a Synapse user's messages reach the Axon user, and Axon's messages reach Synapse, in order, once", async () => {
    const fromS = ['s0', 's1', 's2'].map((x) => `${x} ${txn()}`);
    const sIds: string[] = [];
    for (const body of fromS) sIds.push((await s.call(bob, 'PUT', `/rooms/${enc(roomId)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body })).body.event_id);
    const page = await eventually(
      () => clients.call(alice, 'GET', `/rooms/${enc(roomId)}/messages?dir=b&limit=50`),
      (r) => sIds.every((id) => (r.body.chunk ?? []).some((e: Json) => e.event_id === id)),
      30_000,
    );
    const onAxon = (page.body.chunk as Json[]).filter((e) => sIds.includes(e.event_id)).reverse();
    expect(onAxon.map((e) => e.content.body)).toEqual(fromS);

    const fromA = Array.from({ length: 5 }, (_, i) => `a${i} ${txn()}`);
    const aIds: string[] = [];
    const started = performance.now();
    for (const body of fromA) {
      const sent = await clients.call(alice, 'PUT', `/rooms/${enc(roomId)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body });
      expect(sent.status, JSON.stringify(sent.body)).toBe(200);
      aIds.push(sent.body.event_id);
    }
    const sPage = await eventually(
      () => s.call(bob, 'GET', `/rooms/${enc(roomId)}/messages?dir=b&limit=100`),
      (r) => aIds.every((id) => (r.body.chunk ?? []).some((e: Json) => e.event_id === id)),
      30_000,
    );
    console.log(`synapse-remote-join.e2e: 5 Axon → Synapse messages visible on Synapse in ${Math.round(performance.now() - started)} ms`);
    const onSynapse = (sPage.body.chunk as Json[]).filter((e) => aIds.includes(e.event_id)).reverse();
    expect(onSynapse.map((e) => e.event_id)).toEqual(aIds);
    expect(onSynapse.map((e) => e.content.body)).toEqual(fromA);
  });

  it('the Axon user pages back with /messages past the join: the earlier Synapse messages come from /backfill, in order, once', async () => {
    const seen: Json[] = [];
    let from: string | undefined;
    for (let i = 0; i < 10; i++) {
      const r = await clients.call(alice, 'GET', `/rooms/${enc(roomId)}/messages?dir=b&limit=10${from ? `&from=${enc(from)}` : ''}`);
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      seen.push(...r.body.chunk);
      if (!r.body.end || !r.body.chunk.length) break;
      from = r.body.end;
    }
    const ids = seen.map((e) => e.event_id);
    expect(ids).toContain(seen.find((e) => e.type === 'm.room.member' && e.state_key === alice.userId)?.event_id);
    // The earlier messages came from Synapse's /backfill (history visibility: shared), each once, in order.
    expect(ids.filter((id) => early.includes(id)).reverse()).toEqual(early);
    expect(new Set(ids).size).toBe(ids.length);
    expect(seen.find((e) => e.event_id === early[0])?.content.body).toBe('early one');
    // Down to the room's creation: the create event, then nothing more.
    expect(seen[seen.length - 1]?.type).toBe('m.room.create');
  });

  it('the Axon user leaves, and Synapse sees the leave', async () => {
    const left = await clients.call(alice, 'POST', `/rooms/${enc(roomId)}/leave`, {});
    expect(left.status, JSON.stringify(left.body)).toBe(200);
    await eventually(
      () => s.call(bob, 'GET', `/rooms/${enc(roomId)}/joined_members`),
      (r) => r.status === 200 && !(alice.userId in (r.body.joined ?? {})),
      30_000,
    );
  });

  it('Synapse invites the Axon user to a private room, and the Axon user accepts (a join through the inviter)', async () => {
    const created = await s.call(bob, 'POST', '/createRoom', { preset: 'private_chat', name: 'Invite only', room_version: '10' });
    expect(created.status, JSON.stringify(created.body)).toBe(200);
    const privateRoom = created.body.room_id as string;
    const invited = await s.call(bob, 'POST', `/rooms/${enc(privateRoom)}/invite`, { user_id: alice.userId });
    expect(invited.status, JSON.stringify(invited.body)).toBe(200);
    await eventually(
      () => clients.call(alice, 'GET', '/sync?timeout=0'),
      (x) => !!x.body.rooms?.invite?.[privateRoom],
      30_000,
    );
    const joined = await clients.call(alice, 'POST', `/rooms/${enc(privateRoom)}/join`, {});
    expect(joined.status, JSON.stringify(joined.body)).toBe(200);
    await eventually(
      () => s.call(bob, 'GET', `/rooms/${enc(privateRoom)}/joined_members`),
      (r) => r.status === 200 && alice.userId in (r.body.joined ?? {}),
      30_000,
    );
    const sync = await eventually(
      () => clients.call(alice, 'GET', '/sync?timeout=0'),
      (x) => !!x.body.rooms?.join?.[privateRoom],
      30_000,
    );
    expect(sync.body.rooms.join[privateRoom]).toBeTruthy();
  });

  it('the Axon user rejects a Synapse invite (make_leave/send_leave on the inviting server): Synapse sees the leave, /sync drops the invite', async () => {
    const created = await s.call(bob, 'POST', '/createRoom', { preset: 'private_chat', name: 'Declined', room_version: '10' });
    expect(created.status, JSON.stringify(created.body)).toBe(200);
    const declined = created.body.room_id as string;
    expect((await s.call(bob, 'POST', `/rooms/${enc(declined)}/invite`, { user_id: alice.userId })).status).toBe(200);
    await eventually(
      () => clients.call(alice, 'GET', '/sync?timeout=0'),
      (x) => !!x.body.rooms?.invite?.[declined],
      30_000,
    );
    const left = await clients.call(alice, 'POST', `/rooms/${enc(declined)}/leave`, { reason: 'no thanks' });
    expect(left.status, JSON.stringify(left.body)).toBe(200);
    const members = await eventually(
      () => s.call(bob, 'GET', `/rooms/${enc(declined)}/members`),
      (r) => r.status === 200 && (r.body.chunk ?? []).some((e: Json) => e.state_key === alice.userId && e.content.membership === 'leave'),
      30_000,
    );
    expect(members.body.chunk.find((e: Json) => e.state_key === alice.userId).content.reason).toBe('no thanks');
    const sync = await clients.call(alice, 'GET', '/sync?timeout=0');
    expect(sync.body.rooms?.invite?.[declined]).toBeUndefined();
  });
});
