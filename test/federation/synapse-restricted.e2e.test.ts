/**
 * Restricted rooms across servers (join rule `restricted`, `join_authorised_via_users_server`),
 * against a real Synapse, in room versions 10 and 12.
 *
 * An Axon room restricted to the members of an Axon space: a Synapse user joined to the space
 * joins it (Axon's make_join names a local member who may invite, its send_join co-signs the join,
 * and Synapse, which checks that signature under the auth rules, accepts it too); a Synapse user
 * not in the space is refused. The other way: a Synapse room restricted to a Synapse space: the
 * Axon user in the space joins it (Synapse's template names the authorising Synapse user; its
 * send_join v2 answers the join co-signed, which is what Axon stores), and an Axon user not in the
 * space gets 403.
 *
 * Synapse comes from scripts/lib/ensure.sh's `ensure_synapse`; outside CI the test skips itself
 * when it is not installed.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { enc, eventually, txn, type Clients, type Json, type Session } from '../e2e/clients';
import { KeySpace } from '../../src/store/keys';
import { RoomReader } from '../../src/store/room-reader';
import { SYNAPSE_VERSION, type PeerSession, type SynapsePeer } from '../peers/synapse';
import { skipWithoutSynapse, useAxonAndSynapse, type AxonAndSynapse } from './harness';
import { SigningPeer } from './signing-peer';

const skip = skipWithoutSynapse('synapse-restricted.e2e');

const A_IP = '127.0.0.79';
const S_IP = '127.0.0.80';

const restrictedTo = (space: string) => ({ type: 'm.room.join_rules', state_key: '', content: { join_rule: 'restricted', allow: [{ type: 'm.room_membership', room_id: space }] } });

describe.skipIf(skip)(`restricted rooms between Axon and Synapse ${SYNAPSE_VERSION}`, () => {
  const journey = useAxonAndSynapse('synapse-restricted.e2e', A_IP, S_IP);
  let pair: AxonAndSynapse;
  let s: SynapsePeer;
  let clients: Clients;
  let rooms: RoomReader;
  let alice: Session;
  let dave: Session;
  let bob: PeerSession;
  let carol: PeerSession;
  const { figures } = journey;

  beforeAll(async () => {
    pair = journey.pair;
    ({ synapse: s, clients } = pair);
    rooms = new RoomReader(pair.axon.redis, new KeySpace(pair.axon.config.redis.keyPrefix), pair.axon.config.shards.rooms);
    alice = await clients.mint('alice');
    dave = await clients.mint('dave');
    bob = await s.registerUser('bob', 'bob password');
    carol = await s.registerUser('carol', 'carol password');
  }, 180_000);

  for (const version of ['10', '12']) {
    describe(`room version ${version}`, () => {
      describe('an Axon room restricted to the members of an Axon space', () => {
        let space: string;
        let room: string;

        beforeAll(async () => {
          const sp = await clients.call(alice, 'POST', '/createRoom', { preset: 'public_chat', name: `Axon space v${version}`, room_version: version, creation_content: { type: 'm.space' } });
          expect(sp.status, JSON.stringify(sp.body)).toBe(200);
          space = sp.body.room_id;
          const r = await clients.call(alice, 'POST', '/createRoom', { preset: 'private_chat', name: `Axon restricted v${version}`, room_version: version, initial_state: [restrictedTo(space)] });
          expect(r.status, JSON.stringify(r.body)).toBe(200);
          room = r.body.room_id;
          const inSpace = await s.call(bob, 'POST', `/join/${enc(space)}?server_name=${enc(pair.axon.serverName)}`, {});
          expect(inSpace.status, JSON.stringify(inSpace.body)).toBe(200);
          await eventually(() => clients.call(alice, 'GET', `/rooms/${enc(space)}/joined_members`), (x) => bob.userId in (x.body.joined ?? {}), 30_000);
        }, 120_000);

        it('a Synapse user in the space joins: Axon names and co-signs the authorising member, Synapse accepts the join', async () => {
          const started = performance.now();
          const joined = await s.call(bob, 'POST', `/join/${enc(room)}?server_name=${enc(pair.axon.serverName)}`, {});
          expect(joined.status, JSON.stringify(joined.body)).toBe(200);
          figures.push(`v${version}: Synapse user joined a restricted Axon room in ${Math.round(performance.now() - started)} ms`);
          const member = await eventually(() => clients.call(alice, 'GET', `/rooms/${enc(room)}/state/m.room.member/${enc(bob.userId)}`), (x) => x.body.membership === 'join', 30_000);
          expect(member.body).toMatchObject({ membership: 'join', join_authorised_via_users_server: alice.userId });
          // Synapse has the same join as its own state (it checked Axon's signature on it).
          const onSynapse = await s.call(bob, 'GET', `/rooms/${enc(room)}/state/m.room.member/${enc(bob.userId)}`);
          expect(onSynapse.status, JSON.stringify(onSynapse.body)).toBe(200);
          expect(onSynapse.body).toMatchObject({ membership: 'join', join_authorised_via_users_server: alice.userId });
          const members = await s.call(bob, 'GET', `/rooms/${enc(room)}/joined_members`);
          expect(Object.keys(members.body.joined ?? {}).sort()).toEqual([alice.userId, bob.userId].sort());
          // And the join is co-signed by Axon in Axon's own store.
          const events = await s.call(bob, 'GET', `/rooms/${enc(room)}/messages?dir=b&limit=20`);
          const joinId = (events.body.chunk as Json[]).find((e) => e.type === 'm.room.member' && e.state_key === bob.userId)?.event_id;
          expect(joinId).toBeTruthy();
          const stored = await rooms.event(room, joinId);
          expect(Object.keys((stored?.event.signatures ?? {}) as Json).sort()).toEqual([pair.axon.serverName, s.serverName].sort());
        });

        it('a Synapse user not in the space is refused (403)', async () => {
          const refused = await s.call(carol, 'POST', `/join/${enc(room)}?server_name=${enc(pair.axon.serverName)}`, {});
          expect(refused.status, JSON.stringify(refused.body)).toBe(403);
          expect(refused.body.errcode).toBe('M_FORBIDDEN');
          expect((await clients.call(alice, 'GET', `/rooms/${enc(room)}/joined_members`)).body.joined[carol.userId]).toBeUndefined();
        });
      });

      describe('a Synapse room restricted to the members of a Synapse space', () => {
        let space: string;
        let room: string;

        beforeAll(async () => {
          const sp = await s.call(bob, 'POST', '/createRoom', { preset: 'public_chat', name: `Synapse space v${version}`, room_version: version, creation_content: { type: 'm.space' } });
          expect(sp.status, JSON.stringify(sp.body)).toBe(200);
          space = sp.body.room_id;
          const r = await s.call(bob, 'POST', '/createRoom', { preset: 'private_chat', name: `Synapse restricted v${version}`, room_version: version, initial_state: [restrictedTo(space)] });
          expect(r.status, JSON.stringify(r.body)).toBe(200);
          room = r.body.room_id;
          const inSpace = await clients.call(alice, 'POST', `/join/${enc(space)}?server_name=${enc(s.serverName)}`, {});
          expect(inSpace.status, JSON.stringify(inSpace.body)).toBe(200);
          await eventually(() => s.call(bob, 'GET', `/rooms/${enc(space)}/joined_members`), (x) => alice.userId in (x.body.joined ?? {}), 30_000);
        }, 120_000);

        it('the Axon user in the space joins: the join Synapse co-signed is the one Axon stores', async () => {
          const started = performance.now();
          const joined = await clients.call(alice, 'POST', `/join/${enc(room)}?via=${enc(s.serverName)}`, {});
          expect(joined.status, JSON.stringify(joined.body)).toBe(200);
          expect(joined.body.room_id).toBe(room);
          figures.push(`v${version}: Axon user joined a restricted Synapse room in ${Math.round(performance.now() - started)} ms`);
          const member = await clients.call(alice, 'GET', `/rooms/${enc(room)}/state/m.room.member/${enc(alice.userId)}`);
          expect(member.status, JSON.stringify(member.body)).toBe(200);
          expect(member.body).toMatchObject({ membership: 'join', join_authorised_via_users_server: bob.userId });
          const onSynapse = await eventually(() => s.call(bob, 'GET', `/rooms/${enc(room)}/joined_members`), (x) => alice.userId in (x.body.joined ?? {}), 30_000);
          expect(Object.keys(onSynapse.body.joined).sort()).toEqual([alice.userId, bob.userId].sort());
          // Stored with both signatures: ours and the authorising server's.
          const page = await clients.call(alice, 'GET', `/rooms/${enc(room)}/messages?dir=b&limit=20`);
          const joinId = (page.body.chunk as Json[]).find((e) => e.type === 'm.room.member' && e.state_key === alice.userId)?.event_id;
          expect(joinId, JSON.stringify(page.body)).toBeTruthy();
          const stored = await rooms.event(room, joinId);
          expect(Object.keys((stored?.event.signatures ?? {}) as Json).sort()).toEqual([pair.axon.serverName, s.serverName].sort());
          // The room works: a message each way.
          const body = `in the restricted room ${txn()}`;
          const sent = await clients.call(alice, 'PUT', `/rooms/${enc(room)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body });
          expect(sent.status, JSON.stringify(sent.body)).toBe(200);
          const seen = await eventually(() => s.call(bob, 'GET', `/rooms/${enc(room)}/messages?dir=b&limit=20`), (x) => (x.body.chunk ?? []).some((e: Json) => e.event_id === sent.body.event_id), 30_000);
          expect(seen.body.chunk.find((e: Json) => e.event_id === sent.body.event_id)?.content.body).toBe(body);
        });

        it('an Axon user not in the space gets 403 M_FORBIDDEN from the remote make_join', async () => {
          const refused = await clients.call(dave, 'POST', `/join/${enc(room)}?via=${enc(s.serverName)}`, {});
          expect(refused.status, JSON.stringify(refused.body)).toBe(403);
          expect(refused.body.errcode).toBe('M_FORBIDDEN');
          expect((await s.call(bob, 'GET', `/rooms/${enc(room)}/joined_members`)).body.joined[dave.userId]).toBeUndefined();
        });
      });
    });
  }

  describe('allowed rooms on the other server (room version 10)', () => {
    it("an Axon room restricted to a Synapse space Axon is not in: Axon's make_join answers M_UNABLE_TO_AUTHORISE_JOIN; once an Axon user is in the space, the Synapse member joins", async () => {
      const sp = await s.call(bob, 'POST', '/createRoom', { preset: 'public_chat', name: 'Synapse space for an Axon room', room_version: '10', creation_content: { type: 'm.space' } });
      expect(sp.status, JSON.stringify(sp.body)).toBe(200);
      const space = sp.body.room_id as string;
      const r = await clients.call(alice, 'POST', '/createRoom', { preset: 'private_chat', name: 'Axon room, Synapse space', room_version: '10', initial_state: [restrictedTo(space)] });
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      const room = r.body.room_id as string;
      // Axon is in no room of the allow list: it cannot tell whether a remote user is in the
      // space, and says so with the spec's errcode (asked by a third server, to read the answer)…
      const peer = await SigningPeer.start('127.0.0.81', pair.ca);
      try {
        const made = await peer.request(pair.axon, 'GET', `/_matrix/federation/v1/make_join/${enc(room)}/${enc(`@zed:${peer.serverName}`)}?ver=10`);
        expect(made.status, made.text).toBe(400);
        expect(made.body.errcode).toBe('M_UNABLE_TO_AUTHORISE_JOIN');
      } finally {
        await peer.close();
      }
      // …which Synapse takes as "try another server"; there is none, so Bob's join fails there.
      const unknown = await s.call(bob, 'POST', `/join/${enc(room)}?server_name=${enc(pair.axon.serverName)}`, {});
      expect(unknown.status, JSON.stringify(unknown.body)).not.toBe(200);
      expect(unknown.body.errcode).toBeTruthy();
      // Alice joins the Synapse space: Axon now has its members, Bob among them.
      expect((await clients.call(alice, 'POST', `/join/${enc(space)}?via=${enc(s.serverName)}`, {})).status).toBe(200);
      const joined = await s.call(bob, 'POST', `/join/${enc(room)}?server_name=${enc(pair.axon.serverName)}`, {});
      // Seen once in a loaded CI run: 403 from Axon's make_join 144 ms after Alice's join. What Axon
      // knew of the space then goes into the failure message.
      const axonView = joined.status === 200 ? '' : ` — Axon's view of the space after: ${JSON.stringify((await clients.call(alice, 'GET', `/rooms/${enc(space)}/joined_members`)).body)}`;
      expect(joined.status, JSON.stringify(joined.body) + axonView).toBe(200);
      const member = await eventually(() => clients.call(alice, 'GET', `/rooms/${enc(room)}/state/m.room.member/${enc(bob.userId)}`), (x) => x.body.membership === 'join', 30_000);
      expect(member.body.join_authorised_via_users_server).toBe(alice.userId);
      // Carol is not in the space, and Axon now knows it: 403.
      const refused = await s.call(carol, 'POST', `/join/${enc(room)}?server_name=${enc(pair.axon.serverName)}`, {});
      expect(refused.status, JSON.stringify(refused.body)).toBe(403);
    });

    it('a Synapse room restricted to an Axon space, with an Axon member: an Axon user of the space joins through Synapse when no Axon member may invite, and through Axon once one may', async () => {
      const sp = await clients.call(alice, 'POST', '/createRoom', { preset: 'public_chat', name: 'Axon space for a Synapse room', room_version: '10', creation_content: { type: 'm.space' } });
      expect(sp.status, JSON.stringify(sp.body)).toBe(200);
      const space = sp.body.room_id as string;
      // Bob joins the Axon space, so Synapse knows its members.
      expect((await s.call(bob, 'POST', `/join/${enc(space)}?server_name=${enc(pair.axon.serverName)}`, {})).status).toBe(200);
      const r = await s.call(bob, 'POST', '/createRoom', { preset: 'private_chat', name: 'Synapse room, Axon space', room_version: '10', initial_state: [restrictedTo(space)], power_level_content_override: { invite: 50 } });
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      const room = r.body.room_id as string;
      expect((await clients.call(alice, 'POST', `/join/${enc(room)}?via=${enc(s.serverName)}`, {})).status).toBe(200);
      await eventually(() => s.call(bob, 'GET', `/rooms/${enc(room)}/joined_members`), (x) => alice.userId in (x.body.joined ?? {}), 30_000);

      // Dave joins the Axon space; Alice, the only Axon member of the room, may not invite there.
      expect((await clients.call(dave, 'POST', `/join/${enc(space)}`, {})).status).toBe(200);
      await eventually(() => s.call(bob, 'GET', `/rooms/${enc(space)}/joined_members`), (x) => dave.userId in (x.body.joined ?? {}), 30_000);
      const viaSynapse = await clients.call(dave, 'POST', `/join/${enc(room)}`, {});
      expect(viaSynapse.status, JSON.stringify(viaSynapse.body)).toBe(200);
      const daveJoin = await eventually(() => s.call(bob, 'GET', `/rooms/${enc(room)}/state/m.room.member/${enc(dave.userId)}`), (x) => x.body.membership === 'join', 30_000);
      expect(daveJoin.body.join_authorised_via_users_server).toBe(bob.userId);

      // With the power to invite, Alice vouches for Axon's own users: Erin's join is made on Axon.
      const levels = await s.call(bob, 'GET', `/rooms/${enc(room)}/state/m.room.power_levels/`);
      expect((await s.call(bob, 'PUT', `/rooms/${enc(room)}/state/m.room.power_levels/`, { ...levels.body, users: { ...levels.body.users, [alice.userId]: 50 } })).status).toBe(200);
      await eventually(() => clients.call(alice, 'GET', `/rooms/${enc(room)}/state/m.room.power_levels/`), (x) => x.body.users?.[alice.userId] === 50, 30_000);
      const erin = await clients.mint('erin');
      expect((await clients.call(erin, 'POST', `/join/${enc(space)}`, {})).status).toBe(200);
      await eventually(() => s.call(bob, 'GET', `/rooms/${enc(space)}/joined_members`), (x) => erin.userId in (x.body.joined ?? {}), 30_000);
      const started = performance.now();
      const viaAxon = await clients.call(erin, 'POST', `/join/${enc(room)}`, {});
      expect(viaAxon.status, JSON.stringify(viaAxon.body)).toBe(200);
      const erinJoin = await eventually(() => s.call(bob, 'GET', `/rooms/${enc(room)}/state/m.room.member/${enc(erin.userId)}`), (x) => x.body.membership === 'join', 30_000);
      figures.push(`v10: Axon-authorised join in a Synapse room seen on Synapse in ${Math.round(performance.now() - started)} ms`);
      expect(erinJoin.body.join_authorised_via_users_server).toBe(alice.userId);
    });
  });
});
