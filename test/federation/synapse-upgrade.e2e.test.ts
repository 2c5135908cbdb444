/**
 * Room upgrades with both servers present, against a real Synapse.
 *
 * An Axon room with a Synapse member is upgraded by the Axon admin (`/rooms/{id}/upgrade`): the
 * tombstone reaches Synapse, the Synapse user joins the replacement through the old room's server,
 * and both servers show the new room's create event pointing back at the old room. The other way:
 * a Synapse room with an Axon member is upgraded by the Synapse admin: the Axon user sees the
 * tombstone and joins the replacement over federation (`via` the Synapse server), and sees its
 * predecessor link; messages then flow in the new room both ways.
 *
 * Synapse comes from scripts/lib/ensure.sh's `ensure_synapse`; outside CI the test skips itself
 * when it is not installed.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { enc, eventually, txn, type Clients, type Json, type Session } from '../e2e/clients';
import { SYNAPSE_VERSION, type PeerSession, type SynapsePeer } from '../peers/synapse';
import { skipWithoutSynapse, useAxonAndSynapse, type AxonAndSynapse } from './harness';

const skip = skipWithoutSynapse('synapse-upgrade.e2e');

const A_IP = '127.0.0.77';
const S_IP = '127.0.0.78';

describe.skipIf(skip)(`room upgrades between Axon and Synapse ${SYNAPSE_VERSION}`, () => {
  const journey = useAxonAndSynapse('synapse-upgrade.e2e', A_IP, S_IP);
  let pair: AxonAndSynapse;
  let s: SynapsePeer;
  let clients: Clients;
  let alice: Session;
  let bob: PeerSession;
  let carol: PeerSession;
  const { figures } = journey;

  beforeAll(async () => {
    pair = journey.pair;
    ({ synapse: s, clients } = pair);
    alice = await clients.mint('alice');
    bob = await s.registerUser('bob', 'bob password');
    carol = await s.registerUser('carol', 'carol password');
  }, 180_000);

  /** Send a message on one side and wait until the other side reads it with /messages. */
  const crossMessage = async (roomId: string, from: 'axon' | 'synapse') => {
    const body = `after the upgrade, from ${from} ${txn()}`;
    const sent = from === 'axon'
      ? await clients.call(alice, 'PUT', `/rooms/${enc(roomId)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body })
      : await s.call(bob, 'PUT', `/rooms/${enc(roomId)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body });
    expect(sent.status, JSON.stringify(sent.body)).toBe(200);
    const read = () => (from === 'axon' ? s.call(bob, 'GET', `/rooms/${enc(roomId)}/messages?dir=b&limit=30`) : clients.call(alice, 'GET', `/rooms/${enc(roomId)}/messages?dir=b&limit=30`));
    const page = await eventually(read, (r) => (r.body.chunk ?? []).some((e: Json) => e.event_id === sent.body.event_id), 30_000);
    expect(page.body.chunk.find((e: Json) => e.event_id === sent.body.event_id)?.content.body).toBe(body);
  };

  describe('an Axon room with a Synapse member, upgraded by the Axon admin', () => {
    let oldRoom: string;
    let newRoom: string;

    beforeAll(async () => {
      const created = await clients.call(alice, 'POST', '/createRoom', { preset: 'public_chat', name: 'Old Axon room', room_version: '10', room_alias_name: 'upgradable' });
      expect(created.status, JSON.stringify(created.body)).toBe(200);
      oldRoom = created.body.room_id;
      const joined = await s.call(bob, 'POST', `/join/${enc(oldRoom)}?server_name=${enc(pair.axon.serverName)}`, {});
      expect(joined.status, JSON.stringify(joined.body)).toBe(200);
      await eventually(() => clients.call(alice, 'GET', `/rooms/${enc(oldRoom)}/joined_members`), (r) => bob.userId in (r.body.joined ?? {}), 30_000);
      // Carol (Synapse) is banned from the old room: the ban is copied to the replacement.
      expect((await s.call(carol, 'POST', `/join/${enc(oldRoom)}?server_name=${enc(pair.axon.serverName)}`, {})).status).toBe(200);
      expect((await clients.call(alice, 'POST', `/rooms/${enc(oldRoom)}/ban`, { user_id: carol.userId, reason: 'old grudge' })).status).toBe(200);
    }, 120_000);

    it('the tombstone reaches Synapse', async () => {
      const started = performance.now();
      const upgraded = await clients.call(alice, 'POST', `/rooms/${enc(oldRoom)}/upgrade`, { new_version: '11' });
      expect(upgraded.status, JSON.stringify(upgraded.body)).toBe(200);
      newRoom = upgraded.body.replacement_room;
      const tombstone = await eventually(
        () => s.call(bob, 'GET', `/rooms/${enc(oldRoom)}/state/m.room.tombstone/`),
        (r) => r.status === 200,
        30_000,
      );
      figures.push(`Axon upgrade: tombstone readable on Synapse ${Math.round(performance.now() - started)} ms after /upgrade was called`);
      expect(tombstone.status, JSON.stringify(tombstone.body)).toBe(200);
      expect(tombstone.body.replacement_room).toBe(newRoom);
      // The old room's power levels were raised so ordinary members stop talking there: Synapse has them too.
      const levels = await eventually(() => s.call(bob, 'GET', `/rooms/${enc(oldRoom)}/state/m.room.power_levels/`), (r) => r.body.events_default >= 50, 30_000);
      expect(levels.body.events_default).toBeGreaterThanOrEqual(50);
    });

    it('the Synapse user joins the replacement through the old room\'s server; both see the predecessor link', async () => {
      const started = performance.now();
      const joined = await s.call(bob, 'POST', `/join/${enc(newRoom)}?server_name=${enc(pair.axon.serverName)}`, {});
      expect(joined.status, JSON.stringify(joined.body)).toBe(200);
      figures.push(`Synapse user joined the upgraded Axon room in ${Math.round(performance.now() - started)} ms`);
      const onSynapse = await s.call(bob, 'GET', `/rooms/${enc(newRoom)}/state/m.room.create/`);
      expect(onSynapse.status, JSON.stringify(onSynapse.body)).toBe(200);
      expect(onSynapse.body.predecessor?.room_id).toBe(oldRoom);
      expect(onSynapse.body.room_version).toBe('11');
      const onAxon = await clients.call(alice, 'GET', `/rooms/${enc(newRoom)}/state/m.room.create/`);
      expect(onAxon.body).toEqual(onSynapse.body);
      await eventually(() => clients.call(alice, 'GET', `/rooms/${enc(newRoom)}/joined_members`), (r) => bob.userId in (r.body.joined ?? {}), 30_000);
      // The copied state is on Synapse: the name and the join rule.
      expect((await s.call(bob, 'GET', `/rooms/${enc(newRoom)}/state/m.room.name/`)).body.name).toBe('Old Axon room');
      expect((await s.call(bob, 'GET', `/rooms/${enc(newRoom)}/state/m.room.join_rules/`)).body.join_rule).toBe('public');
      await crossMessage(newRoom, 'axon');
      await crossMessage(newRoom, 'synapse');
    });

    it("the old room's alias leads Synapse to the replacement, and the banned Synapse user stays out of it", async () => {
      const resolved = await s.call(carol, 'GET', `/directory/room/${enc(`#upgradable:${pair.axon.serverName}`)}`);
      expect(resolved.status, JSON.stringify(resolved.body)).toBe(200);
      expect(resolved.body.room_id).toBe(newRoom);
      const refused = await s.call(carol, 'POST', `/join/${enc(`#upgradable:${pair.axon.serverName}`)}`, {});
      expect(refused.status, JSON.stringify(refused.body)).toBe(403);
      expect((await clients.call(alice, 'GET', `/rooms/${enc(newRoom)}/state/m.room.member/${enc(carol.userId)}`)).body).toMatchObject({ membership: 'ban', reason: 'old grudge' });
    });
  });

  describe('a Synapse room with an Axon member, upgraded by the Synapse admin', () => {
    let oldRoom: string;
    let newRoom: string;

    beforeAll(async () => {
      const created = await s.call(bob, 'POST', '/createRoom', { preset: 'public_chat', name: 'Old Synapse room', room_version: '10' });
      expect(created.status, JSON.stringify(created.body)).toBe(200);
      oldRoom = created.body.room_id;
      const joined = await clients.call(alice, 'POST', `/join/${enc(oldRoom)}?server_name=${enc(s.serverName)}`, {});
      expect(joined.status, JSON.stringify(joined.body)).toBe(200);
      await eventually(() => s.call(bob, 'GET', `/rooms/${enc(oldRoom)}/joined_members`), (r) => alice.userId in (r.body.joined ?? {}), 30_000);
    }, 120_000);

    it("the tombstone reaches Axon: the Axon user's /sync has it in the old room", async () => {
      const before = await clients.call(alice, 'GET', '/sync?timeout=0');
      const started = performance.now();
      const upgraded = await s.call(bob, 'POST', `/rooms/${enc(oldRoom)}/upgrade`, { new_version: '11' });
      expect(upgraded.status, JSON.stringify(upgraded.body)).toBe(200);
      newRoom = upgraded.body.replacement_room;
      const sync = await eventually(
        () => clients.call(alice, 'GET', `/sync?timeout=0&since=${enc(before.body.next_batch)}`),
        (r) => (r.body.rooms?.join?.[oldRoom]?.timeline?.events ?? []).some((e: Json) => e.type === 'm.room.tombstone'),
        30_000,
      );
      figures.push(`Synapse upgrade: tombstone in the Axon user's /sync ${Math.round(performance.now() - started)} ms after /upgrade was called`);
      const tombstone = (sync.body.rooms?.join?.[oldRoom]?.timeline?.events ?? []).find((e: Json) => e.type === 'm.room.tombstone');
      expect(tombstone, JSON.stringify(sync.body.rooms ?? {})).toMatchObject({ sender: bob.userId, state_key: '', content: { replacement_room: newRoom } });
      const state = await clients.call(alice, 'GET', `/rooms/${enc(oldRoom)}/state/m.room.tombstone/`);
      expect(state.body.replacement_room).toBe(newRoom);
    });

    it('the Axon user joins the replacement over federation via the Synapse server, and sees its predecessor', async () => {
      const started = performance.now();
      const joined = await clients.call(alice, 'POST', `/join/${enc(newRoom)}?via=${enc(s.serverName)}`, {});
      expect(joined.status, JSON.stringify(joined.body)).toBe(200);
      expect(joined.body.room_id).toBe(newRoom);
      figures.push(`Axon user joined the upgraded Synapse room in ${Math.round(performance.now() - started)} ms`);
      const create = await clients.call(alice, 'GET', `/rooms/${enc(newRoom)}/state/m.room.create/`);
      expect(create.status, JSON.stringify(create.body)).toBe(200);
      expect(create.body.predecessor?.room_id).toBe(oldRoom);
      expect(create.body.room_version).toBe('11');
      const sync = await eventually(() => clients.call(alice, 'GET', '/sync?timeout=0'), (r) => !!r.body.rooms?.join?.[newRoom], 30_000);
      expect(sync.body.rooms.join[newRoom]).toBeTruthy();
      await eventually(() => s.call(bob, 'GET', `/rooms/${enc(newRoom)}/joined_members`), (r) => alice.userId in (r.body.joined ?? {}), 30_000);
      expect((await clients.call(alice, 'GET', `/rooms/${enc(newRoom)}/state/m.room.name/`)).body.name).toBe('Old Synapse room');
      await crossMessage(newRoom, 'synapse');
      await crossMessage(newRoom, 'axon');
    });
  });

  describe('upgrades by a member of the other server, to room version 12', () => {
    it('a Synapse admin of an Axon room upgrades it: Synapse builds the v12 replacement, the tombstone reaches Axon, the Axon user follows it', async () => {
      const created = await clients.call(alice, 'POST', '/createRoom', { preset: 'public_chat', name: 'Axon room, Synapse upgrader', room_version: '10' });
      expect(created.status, JSON.stringify(created.body)).toBe(200);
      const oldRoom = created.body.room_id as string;
      expect((await s.call(bob, 'POST', `/join/${enc(oldRoom)}?server_name=${enc(pair.axon.serverName)}`, {})).status).toBe(200);
      await eventually(() => clients.call(alice, 'GET', `/rooms/${enc(oldRoom)}/joined_members`), (r) => bob.userId in (r.body.joined ?? {}), 30_000);
      const levels = await clients.call(alice, 'GET', `/rooms/${enc(oldRoom)}/state/m.room.power_levels/`);
      expect((await clients.call(alice, 'PUT', `/rooms/${enc(oldRoom)}/state/m.room.power_levels/`, { ...levels.body, users: { ...levels.body.users, [bob.userId]: 100 } })).status).toBe(200);
      await eventually(() => s.call(bob, 'GET', `/rooms/${enc(oldRoom)}/state/m.room.power_levels/`), (r) => r.body.users?.[bob.userId] === 100, 30_000);

      const started = performance.now();
      const upgraded = await s.call(bob, 'POST', `/rooms/${enc(oldRoom)}/upgrade`, { new_version: '12' });
      expect(upgraded.status, JSON.stringify(upgraded.body)).toBe(200);
      const newRoom = upgraded.body.replacement_room as string;
      const tombstone = await eventually(() => clients.call(alice, 'GET', `/rooms/${enc(oldRoom)}/state/m.room.tombstone/`), (r) => r.status === 200, 30_000);
      expect(tombstone.body.replacement_room, JSON.stringify(tombstone.body)).toBe(newRoom);
      figures.push(`Synapse upgrade of an Axon room (v12): tombstone on Axon ${Math.round(performance.now() - started)} ms after /upgrade was called`);
      const joinStarted = performance.now();
      const joined = await clients.call(alice, 'POST', `/join/${enc(newRoom)}?via=${enc(s.serverName)}`, {});
      expect(joined.status, JSON.stringify(joined.body)).toBe(200);
      figures.push(`Axon user joined the v12 replacement on Synapse in ${Math.round(performance.now() - joinStarted)} ms`);
      const create = await clients.call(alice, 'GET', `/rooms/${enc(newRoom)}/state/m.room.create/`);
      expect(create.body).toMatchObject({ room_version: '12', predecessor: { room_id: oldRoom } });
      // Alice was an admin of the old room: Synapse copied her power level into the new room.
      const newLevels = await clients.call(alice, 'GET', `/rooms/${enc(newRoom)}/state/m.room.power_levels/`);
      expect(newLevels.body.users?.[alice.userId]).toBe(100);
      await crossMessage(newRoom, 'axon');
      await crossMessage(newRoom, 'synapse');
    });

    it('an Axon admin of a Synapse room upgrades it: Axon builds the v12 replacement, the tombstone reaches Synapse, the Synapse user follows it', async () => {
      const created = await s.call(bob, 'POST', '/createRoom', { preset: 'public_chat', name: 'Synapse room, Axon upgrader', room_version: '10' });
      expect(created.status, JSON.stringify(created.body)).toBe(200);
      const oldRoom = created.body.room_id as string;
      expect((await clients.call(alice, 'POST', `/join/${enc(oldRoom)}?via=${enc(s.serverName)}`, {})).status).toBe(200);
      await eventually(() => s.call(bob, 'GET', `/rooms/${enc(oldRoom)}/joined_members`), (r) => alice.userId in (r.body.joined ?? {}), 30_000);
      const levels = await s.call(bob, 'GET', `/rooms/${enc(oldRoom)}/state/m.room.power_levels/`);
      expect((await s.call(bob, 'PUT', `/rooms/${enc(oldRoom)}/state/m.room.power_levels/`, { ...levels.body, users: { ...levels.body.users, [alice.userId]: 100 } })).status).toBe(200);
      await eventually(() => clients.call(alice, 'GET', `/rooms/${enc(oldRoom)}/state/m.room.power_levels/`), (r) => r.body.users?.[alice.userId] === 100, 30_000);

      const started = performance.now();
      const upgraded = await clients.call(alice, 'POST', `/rooms/${enc(oldRoom)}/upgrade`, { new_version: '12' });
      expect(upgraded.status, JSON.stringify(upgraded.body)).toBe(200);
      const newRoom = upgraded.body.replacement_room as string;
      const tombstone = await eventually(() => s.call(bob, 'GET', `/rooms/${enc(oldRoom)}/state/m.room.tombstone/`), (r) => r.status === 200, 30_000);
      expect(tombstone.body.replacement_room, JSON.stringify(tombstone.body)).toBe(newRoom);
      figures.push(`Axon upgrade of a Synapse room (v12): tombstone on Synapse ${Math.round(performance.now() - started)} ms after /upgrade was called`);
      const joinStarted = performance.now();
      const joined = await s.call(bob, 'POST', `/join/${enc(newRoom)}?server_name=${enc(pair.axon.serverName)}`, {});
      expect(joined.status, JSON.stringify(joined.body)).toBe(200);
      figures.push(`Synapse user joined the v12 replacement on Axon in ${Math.round(performance.now() - joinStarted)} ms`);
      const create = await s.call(bob, 'GET', `/rooms/${enc(newRoom)}/state/m.room.create/`);
      expect(create.body).toMatchObject({ room_version: '12', predecessor: { room_id: oldRoom } });
      // Bob created the old room (100 there): the copied power levels keep him at 100 in the new one.
      const newLevels = await s.call(bob, 'GET', `/rooms/${enc(newRoom)}/state/m.room.power_levels/`);
      expect(newLevels.body.users?.[bob.userId]).toBe(100);
      // The old room on Synapse went quiet for ordinary members (Axon raised events_default there).
      const oldLevels = await eventually(() => s.call(bob, 'GET', `/rooms/${enc(oldRoom)}/state/m.room.power_levels/`), (r) => r.body.events_default >= 50, 30_000);
      expect(oldLevels.body.events_default).toBeGreaterThanOrEqual(50);
      await crossMessage(newRoom, 'synapse');
      await crossMessage(newRoom, 'axon');
    });
  });
});
