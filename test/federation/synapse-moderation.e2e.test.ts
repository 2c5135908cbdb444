/**
 * Kicks and bans across servers with a real Synapse, both ways.
 *
 * In an Axon room: the Axon admin kicks a Synapse user (Synapse's /sync shows the room under
 * `leave` with the kick and its reason), the Synapse user rejoins, the admin bans them (the ban
 * reaches Synapse, and a join attempt from Synapse is refused), unbans them, and the join works
 * again. In a Synapse room: the Synapse admin kicks the Axon user (Axon's /sync shows the leave
 * with the reason), bans them (an Axon /join is refused by Synapse's make_join: a 403 Matrix
 * error, not a 500), unbans them; given the power to kick, the Axon user kicks a Synapse user.
 *
 * Synapse comes from scripts/lib/ensure.sh's `ensure_synapse`; outside CI the test skips itself
 * when it is not installed.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { enc, eventually, txn, type Clients, type Json, type Session } from '../e2e/clients';
import { SYNAPSE_VERSION, type PeerSession, type SynapsePeer } from '../peers/synapse';
import { skipWithoutSynapse, useAxonAndSynapse, type AxonAndSynapse } from './harness';

const skip = skipWithoutSynapse('synapse-moderation.e2e');

const A_IP = '127.0.0.75';
const S_IP = '127.0.0.76';
const INCLUDE_LEAVE = enc(JSON.stringify({ room: { include_leave: true, timeline: { limit: 20 } } }));
/**
 * A /sync filter for one room (with left rooms). Synapse answers a repeated identical /sync
 * request from a cache for two minutes (`sync_response_cache_duration`), so its /sync is always
 * asked with the room under test in the filter, and followed with each answer's next_batch.
 */
const roomFilter = (roomId: string) => enc(JSON.stringify({ room: { rooms: [roomId], include_leave: true, timeline: { limit: 20 } } }));

describe.skipIf(skip)(`kicks and bans between Axon and Synapse ${SYNAPSE_VERSION}`, () => {
  const journey = useAxonAndSynapse('synapse-moderation.e2e', A_IP, S_IP);
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

  /** What a Synapse member sees of `userId` in the room's member list. */
  const synapseMembership = async (who: PeerSession, roomId: string, userId: string) => {
    const r = await s.call(who, 'GET', `/rooms/${enc(roomId)}/state/m.room.member/${enc(userId)}`);
    return r.status === 200 ? (r.body.membership as string) : undefined;
  };
  /**
   * Follow `who`'s /sync on Synapse from `since` (each request with the previous next_batch, and
   * the room in the filter: see roomFilter) until the room's
   * `leave` section has an event matching `want`; answers that section's timeline events.
   */
  const synapseLeaveUntil = async (who: PeerSession, since: string, roomId: string, want: (e: Json) => boolean): Promise<Json[]> => {
    const deadline = Date.now() + 30_000;
    let token = since;
    const seen: Json[] = [];
    while (Date.now() < deadline) {
      const r = await s.call(who, 'GET', `/sync?timeout=1000&since=${enc(token)}&filter=${roomFilter(roomId)}`);
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      seen.push(...(r.body.rooms?.leave?.[roomId]?.timeline?.events ?? []));
      if (seen.some(want)) return seen;
      token = r.body.next_batch;
    }
    return seen;
  };
  const axonMembership = async (roomId: string, userId: string) => {
    const r = await clients.call(alice, 'GET', `/rooms/${enc(roomId)}/state/m.room.member/${enc(userId)}`);
    return r.status === 200 ? (r.body.membership as string) : undefined;
  };

  for (const version of ['10', '12']) {
    describe(`in an Axon room (v${version}), the Axon admin moderates a Synapse user`, () => {
      let roomId: string;

      beforeAll(async () => {
        const created = await clients.call(alice, 'POST', '/createRoom', { preset: 'public_chat', name: `Axon moderation v${version}`, room_version: version });
        expect(created.status, JSON.stringify(created.body)).toBe(200);
        roomId = created.body.room_id;
        const joined = await s.call(bob, 'POST', `/join/${enc(roomId)}?server_name=${enc(pair.axon.serverName)}`, {});
        expect(joined.status, JSON.stringify(joined.body)).toBe(200);
        await eventually(() => axonMembership(roomId, bob.userId), (m) => m === 'join', 30_000);
      }, 120_000);

      it("a kick reaches Synapse: the room is under `leave` in the kicked user's /sync, with the kick and its reason", async () => {
        // Synapse joined with partial state (faster joins): its /sync without lazy-loading shows
        // the room once the full state is in, which /members waits for.
        expect((await s.call(bob, 'GET', `/rooms/${enc(roomId)}/members`)).status).toBe(200);
        const before = await s.call(bob, 'GET', `/sync?timeout=0&filter=${roomFilter(roomId)}`);
        expect(before.body.rooms?.join?.[roomId]).toBeTruthy();
        const started = performance.now();
        const kicked = await clients.call(alice, 'POST', `/rooms/${enc(roomId)}/kick`, { user_id: bob.userId, reason: 'cool off' });
        expect(kicked.status, JSON.stringify(kicked.body)).toBe(200);
        const events = await synapseLeaveUntil(bob, before.body.next_batch, roomId, (e) => e.type === 'm.room.member' && e.state_key === bob.userId);
        figures.push(`v${version} Axon room: Axon kick seen in the Synapse user's /sync: ${Math.round(performance.now() - started)} ms`);
        const kick = events.find((e) => e.type === 'm.room.member' && e.state_key === bob.userId);
        expect(kick, JSON.stringify(events)).toMatchObject({ sender: alice.userId, content: { membership: 'leave', reason: 'cool off' } });
        expect(await axonMembership(roomId, bob.userId)).toBe('leave');
      });

      it('the kicked Synapse user rejoins', async () => {
        const joined = await s.call(bob, 'POST', `/join/${enc(roomId)}?server_name=${enc(pair.axon.serverName)}`, {});
        expect(joined.status, JSON.stringify(joined.body)).toBe(200);
        expect(await eventually(() => axonMembership(roomId, bob.userId), (m) => m === 'join', 30_000)).toBe('join');
      });

      it('a ban reaches Synapse, and a join attempt from Synapse is refused', async () => {
        const before = await s.call(bob, 'GET', `/sync?timeout=0&filter=${roomFilter(roomId)}`);
        const started = performance.now();
        const banned = await clients.call(alice, 'POST', `/rooms/${enc(roomId)}/ban`, { user_id: bob.userId, reason: 'spam' });
        expect(banned.status, JSON.stringify(banned.body)).toBe(200);
        const isBan = (e: Json) => e.state_key === bob.userId && e.content?.membership === 'ban';
        const events = await synapseLeaveUntil(bob, before.body.next_batch, roomId, isBan);
        figures.push(`v${version} Axon room: Axon ban seen in the Synapse user's /sync: ${Math.round(performance.now() - started)} ms`);
        const ban = events.find(isBan);
        expect(ban, JSON.stringify(events)).toMatchObject({ sender: alice.userId, content: { membership: 'ban', reason: 'spam' } });
        const again = await s.call(bob, 'POST', `/join/${enc(roomId)}?server_name=${enc(pair.axon.serverName)}`, {});
        expect(again.status, JSON.stringify(again.body)).toBe(403);
        expect(again.body.errcode).toBe('M_FORBIDDEN');
        expect(await axonMembership(roomId, bob.userId)).toBe('ban');
      });

      it('after an unban, the Synapse user joins again', async () => {
        const unbanned = await clients.call(alice, 'POST', `/rooms/${enc(roomId)}/unban`, { user_id: bob.userId });
        expect(unbanned.status, JSON.stringify(unbanned.body)).toBe(200);
        expect(await axonMembership(roomId, bob.userId)).toBe('leave');
        const joined = await eventually(
          () => s.call(bob, 'POST', `/join/${enc(roomId)}?server_name=${enc(pair.axon.serverName)}`, {}),
          (r) => r.status === 200,
          30_000,
        );
        expect(joined.status, JSON.stringify(joined.body)).toBe(200);
        expect(await eventually(() => axonMembership(roomId, bob.userId), (m) => m === 'join', 30_000)).toBe('join');
        // Both sides agree on the members.
        const onSynapse = await eventually(() => s.call(bob, 'GET', `/rooms/${enc(roomId)}/joined_members`), (r) => r.status === 200 && bob.userId in (r.body.joined ?? {}), 30_000);
        expect(Object.keys(onSynapse.body.joined).sort()).toEqual([alice.userId, bob.userId].sort());
      });

      it('given the power to kick, the Synapse user kicks an Axon user from the Synapse side', async () => {
        const dave = await clients.mint(`dave${version}`);
        expect((await clients.call(dave, 'POST', `/rooms/${enc(roomId)}/join`, {})).status).toBe(200);
        const levels = await clients.call(alice, 'GET', `/rooms/${enc(roomId)}/state/m.room.power_levels/`);
        expect((await clients.call(alice, 'PUT', `/rooms/${enc(roomId)}/state/m.room.power_levels/`, { ...levels.body, users: { ...levels.body.users, [bob.userId]: 50 } })).status).toBe(200);
        await eventually(() => s.call(bob, 'GET', `/rooms/${enc(roomId)}/joined_members`), (r) => dave.userId in (r.body.joined ?? {}), 30_000);
        await eventually(() => s.call(bob, 'GET', `/rooms/${enc(roomId)}/state/m.room.power_levels/`), (r) => r.body.users?.[bob.userId] === 50, 30_000);
        const before = await clients.call(dave, 'GET', '/sync?timeout=0');
        expect(before.body.rooms?.join?.[roomId]).toBeTruthy();
        const started = performance.now();
        const kicked = await s.call(bob, 'POST', `/rooms/${enc(roomId)}/kick`, { user_id: dave.userId, reason: 'from afar' });
        expect(kicked.status, JSON.stringify(kicked.body)).toBe(200);
        const sync = await eventually(() => clients.call(dave, 'GET', `/sync?timeout=0&since=${enc(before.body.next_batch)}`), (r) => !!r.body.rooms?.leave?.[roomId], 30_000);
        figures.push(`v${version} Axon room: Synapse user's kick of an Axon user seen in the kicked user's /sync: ${Math.round(performance.now() - started)} ms`);
        const kick = (sync.body.rooms?.leave?.[roomId]?.timeline?.events ?? []).find((e: Json) => e.type === 'm.room.member' && e.state_key === dave.userId);
        expect(kick, JSON.stringify(sync.body.rooms ?? {})).toMatchObject({ sender: bob.userId, content: { membership: 'leave', reason: 'from afar' } });
        expect((await clients.call(dave, 'GET', '/joined_rooms')).body.joined_rooms).not.toContain(roomId);
        // The kicked user may no longer post; the room goes on for the others.
        const refused = await clients.call(dave, 'PUT', `/rooms/${enc(roomId)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body: 'still here?' });
        expect(refused.status, JSON.stringify(refused.body)).toBe(403);
      });
    });
  }

  describe('in a Synapse room, the Synapse admin moderates the Axon user', () => {
    let roomId: string;

    beforeAll(async () => {
      const created = await s.call(bob, 'POST', '/createRoom', { preset: 'public_chat', name: 'Synapse moderation', room_version: '10' });
      expect(created.status, JSON.stringify(created.body)).toBe(200);
      roomId = created.body.room_id;
      expect((await s.call(carol, 'POST', `/join/${enc(roomId)}`, {})).status).toBe(200);
      const joined = await clients.call(alice, 'POST', `/join/${enc(roomId)}?server_name=${enc(s.serverName)}`, {});
      expect(joined.status, JSON.stringify(joined.body)).toBe(200);
      await eventually(() => synapseMembership(bob, roomId, alice.userId), (m) => m === 'join', 30_000);
    }, 120_000);

    it("a kick reaches Axon: the room is under `leave` in the Axon user's /sync, with the reason", async () => {
      // Axon joined with partial state (faster joins): /sync without lazy-loading shows the room
      // once the full state is in, which /members waits for.
      expect((await clients.call(alice, 'GET', `/rooms/${enc(roomId)}/members`)).status).toBe(200);
      const before = await clients.call(alice, 'GET', '/sync?timeout=0');
      expect(before.body.rooms?.join?.[roomId]).toBeTruthy();
      const started = performance.now();
      const kicked = await s.call(bob, 'POST', `/rooms/${enc(roomId)}/kick`, { user_id: alice.userId, reason: 'off topic' });
      expect(kicked.status, JSON.stringify(kicked.body)).toBe(200);
      const sync = await eventually(
        () => clients.call(alice, 'GET', `/sync?timeout=0&since=${enc(before.body.next_batch)}`),
        (r) => !!r.body.rooms?.leave?.[roomId],
        30_000,
      );
      figures.push(`Synapse kick seen in the Axon user's /sync: ${Math.round(performance.now() - started)} ms`);
      const left = sync.body.rooms?.leave?.[roomId];
      expect(left, JSON.stringify(sync.body.rooms ?? {})).toBeTruthy();
      const kick = (left.timeline.events as Json[]).find((e) => e.type === 'm.room.member' && e.state_key === alice.userId);
      expect(kick).toMatchObject({ sender: bob.userId, content: { membership: 'leave', reason: 'off topic' } });
      expect((await clients.call(alice, 'GET', '/joined_rooms')).body.joined_rooms).not.toContain(roomId);
      const refused = await clients.call(alice, 'PUT', `/rooms/${enc(roomId)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body: 'still here?' });
      expect(refused.status, JSON.stringify(refused.body)).toBe(403);
    });

    it('the kicked Axon user rejoins through Synapse', async () => {
      const joined = await clients.call(alice, 'POST', `/join/${enc(roomId)}?server_name=${enc(s.serverName)}`, {});
      expect(joined.status, JSON.stringify(joined.body)).toBe(200);
      expect(await eventually(() => synapseMembership(bob, roomId, alice.userId), (m) => m === 'join', 30_000)).toBe('join');
      const sync = await eventually(() => clients.call(alice, 'GET', '/sync?timeout=0'), (r) => !!r.body.rooms?.join?.[roomId], 30_000);
      expect(sync.body.rooms.join[roomId]).toBeTruthy();
    });

    it("a ban reaches Axon, and the banned Axon user's /join is refused by Synapse's make_join as a 403 Matrix error", async () => {
      const started = performance.now();
      const banned = await s.call(bob, 'POST', `/rooms/${enc(roomId)}/ban`, { user_id: alice.userId, reason: 'trolling' });
      expect(banned.status, JSON.stringify(banned.body)).toBe(200);
      const sync = await eventually(
        () => clients.call(alice, 'GET', `/sync?timeout=0&filter=${INCLUDE_LEAVE}`),
        (r) => (r.body.rooms?.leave?.[roomId]?.timeline?.events ?? []).some((e: Json) => e.state_key === alice.userId && e.content?.membership === 'ban'),
        30_000,
      );
      figures.push(`Synapse ban seen in the Axon user's /sync: ${Math.round(performance.now() - started)} ms`);
      const ban = (sync.body.rooms?.leave?.[roomId]?.timeline?.events ?? []).find((e: Json) => e.state_key === alice.userId && e.content?.membership === 'ban');
      expect(ban, JSON.stringify(sync.body.rooms ?? {})).toMatchObject({ sender: bob.userId, content: { membership: 'ban', reason: 'trolling' } });
      const again = await clients.call(alice, 'POST', `/join/${enc(roomId)}?server_name=${enc(s.serverName)}`, {});
      expect(again.status, JSON.stringify(again.body)).toBe(403);
      expect(again.body.errcode).toBe('M_FORBIDDEN');
      expect(typeof again.body.error).toBe('string');
    });

    it('after an unban the Axon user rejoins, and with the power to kick, kicks a Synapse user from the Axon side', async () => {
      const unbanned = await s.call(bob, 'POST', `/rooms/${enc(roomId)}/unban`, { user_id: alice.userId });
      expect(unbanned.status, JSON.stringify(unbanned.body)).toBe(200);
      const joined = await clients.call(alice, 'POST', `/join/${enc(roomId)}?server_name=${enc(s.serverName)}`, {});
      expect(joined.status, JSON.stringify(joined.body)).toBe(200);
      await eventually(() => synapseMembership(bob, roomId, alice.userId), (m) => m === 'join', 30_000);

      // Without power, Axon refuses the kick itself (its copy of the room's power levels).
      const early = await clients.call(alice, 'POST', `/rooms/${enc(roomId)}/kick`, { user_id: carol.userId });
      expect(early.status, JSON.stringify(early.body)).toBe(403);

      const levels = await s.call(bob, 'GET', `/rooms/${enc(roomId)}/state/m.room.power_levels/`);
      expect(levels.status).toBe(200);
      const raised = await s.call(bob, 'PUT', `/rooms/${enc(roomId)}/state/m.room.power_levels/`, { ...levels.body, users: { ...levels.body.users, [alice.userId]: 50 } });
      expect(raised.status, JSON.stringify(raised.body)).toBe(200);
      await eventually(
        () => clients.call(alice, 'GET', `/rooms/${enc(roomId)}/state/m.room.power_levels/`),
        (r) => r.body.users?.[alice.userId] === 50,
        30_000,
      );
      const started = performance.now();
      const kicked = await clients.call(alice, 'POST', `/rooms/${enc(roomId)}/kick`, { user_id: carol.userId, reason: `moderated from ${txn()}` });
      expect(kicked.status, JSON.stringify(kicked.body)).toBe(200);
      expect(await eventually(() => synapseMembership(bob, roomId, carol.userId), (m) => m === 'leave', 30_000)).toBe('leave');
      figures.push(`Axon user's kick of a Synapse user seen on Synapse: ${Math.round(performance.now() - started)} ms`);
      const member = await s.call(bob, 'GET', `/rooms/${enc(roomId)}/state/m.room.member/${enc(carol.userId)}?format=event`);
      expect(member.status, JSON.stringify(member.body)).toBe(200);
      const content = member.body.content ?? member.body;
      expect(content.membership).toBe('leave');
      expect(await axonMembership(roomId, carol.userId)).toBe('leave');
    });
  });

  describe('in a v12 Synapse room (room ids without a server name)', () => {
    it('a kicked Axon user rejoins without naming a server: Axon asks the servers it last saw in the room, not its stale copy', async () => {
      const created = await s.call(bob, 'POST', '/createRoom', { preset: 'public_chat', name: 'Synapse v12 moderation', room_version: '12' });
      expect(created.status, JSON.stringify(created.body)).toBe(200);
      const roomId = created.body.room_id as string;
      expect((await clients.call(alice, 'POST', `/join/${enc(roomId)}?via=${enc(s.serverName)}`, {})).status).toBe(200);
      await eventually(() => synapseMembership(bob, roomId, alice.userId), (m) => m === 'join', 30_000);
      const before = await clients.call(alice, 'GET', '/sync?timeout=0');
      expect((await s.call(bob, 'POST', `/rooms/${enc(roomId)}/kick`, { user_id: alice.userId, reason: 'v12 kick' })).status).toBe(200);
      await eventually(() => clients.call(alice, 'GET', `/sync?timeout=0&since=${enc(before.body.next_batch)}`), (r) => !!r.body.rooms?.leave?.[roomId], 30_000);
      // Synapse goes on without us (no Axon user is in the room): the room becomes invite-only.
      expect((await s.call(bob, 'PUT', `/rooms/${enc(roomId)}/state/m.room.join_rules/`, { join_rule: 'invite' })).status).toBe(200);
      // Axon's copy still says public; the join must be asked of Synapse, which refuses it.
      const refused = await clients.call(alice, 'POST', `/join/${enc(roomId)}`, {});
      expect(refused.status, JSON.stringify(refused.body)).toBe(403);
      expect(refused.body.errcode).toBe('M_FORBIDDEN');
      expect(await synapseMembership(bob, roomId, alice.userId)).toBe('leave');
      // Public again, and a message Axon does not get.
      expect((await s.call(bob, 'PUT', `/rooms/${enc(roomId)}/state/m.room.join_rules/`, { join_rule: 'public' })).status).toBe(200);
      const missed = await s.call(bob, 'PUT', `/rooms/${enc(roomId)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body: 'while you were out' });
      expect(missed.status).toBe(200);
      const rejoined = await clients.call(alice, 'POST', `/join/${enc(roomId)}`, {});
      expect(rejoined.status, JSON.stringify(rejoined.body)).toBe(200);
      expect(await eventually(() => synapseMembership(bob, roomId, alice.userId), (m) => m === 'join', 30_000)).toBe('join');
      // Through make_join: the join is built on Synapse's newest event, the message Axon missed.
      const join = await s.call(bob, 'GET', `/rooms/${enc(roomId)}/state/m.room.member/${enc(alice.userId)}?format=event`);
      const joinId = join.body.event_id as string;
      expect(joinId, JSON.stringify(join.body)).toBeTruthy();
      const context = await s.call(bob, 'GET', `/rooms/${enc(roomId)}/context/${enc(joinId)}?limit=2`);
      expect((context.body.events_before as Json[]).map((e) => e.event_id)).toContain(missed.body.event_id);
      // Axon's state is Synapse's again: the join rules changed while it was away.
      const rules = await clients.call(alice, 'GET', `/rooms/${enc(roomId)}/state/m.room.join_rules/`);
      expect(rules.body.join_rule).toBe('public');
      const members = await clients.call(alice, 'GET', `/rooms/${enc(roomId)}/joined_members`);
      expect(Object.keys(members.body.joined ?? {}).sort()).toEqual([alice.userId, bob.userId].sort());
    });
  });

  describe('a rescinded invite', () => {
    it("Axon rescinds an invite to a Synapse user (kicks the invitee): the invite leaves the Synapse user's /sync", async () => {
      const created = await clients.call(alice, 'POST', '/createRoom', { preset: 'private_chat', name: 'Axon rescinds', room_version: '10' });
      expect(created.status, JSON.stringify(created.body)).toBe(200);
      const roomId = created.body.room_id as string;
      const first = await s.call(carol, 'GET', `/sync?timeout=0&filter=${roomFilter(roomId)}`);
      const invite = await clients.call(alice, 'POST', `/rooms/${enc(roomId)}/invite`, { user_id: carol.userId });
      expect(invite.status, JSON.stringify(invite.body)).toBe(200);
      let token = first.body.next_batch as string;
      let invited = false;
      const deadline = Date.now() + 30_000;
      while (!invited && Date.now() < deadline) {
        const r = await s.call(carol, 'GET', `/sync?timeout=1000&since=${enc(token)}&filter=${roomFilter(roomId)}`);
        invited = !!r.body.rooms?.invite?.[roomId];
        token = r.body.next_batch ?? token;
      }
      expect(invited).toBe(true);
      const started = performance.now();
      expect((await clients.call(alice, 'POST', `/rooms/${enc(roomId)}/kick`, { user_id: carol.userId, reason: 'wrong person' })).status).toBe(200);
      const events = await synapseLeaveUntil(carol, token, roomId, (e) => e.state_key === carol.userId && e.content?.membership === 'leave');
      figures.push(`Axon's rescinded invite seen in the Synapse user's /sync: ${Math.round(performance.now() - started)} ms`);
      expect(events.find((e) => e.state_key === carol.userId && e.content?.membership === 'leave'), JSON.stringify(events)).toMatchObject({ sender: alice.userId, content: { reason: 'wrong person' } });
    });

    it("Synapse rescinds an invite to an Axon user (kicks the invitee): Axon takes that PDU of a room it is not in, /sync shows the room under leave with the kick, and a join is refused", async () => {
      const created = await s.call(bob, 'POST', '/createRoom', { preset: 'private_chat', name: 'Synapse rescinds', room_version: '10' });
      expect(created.status, JSON.stringify(created.body)).toBe(200);
      const roomId = created.body.room_id as string;
      const erin = await clients.mint('erin');
      expect((await s.call(bob, 'POST', `/rooms/${enc(roomId)}/invite`, { user_id: erin.userId })).status).toBe(200);
      await eventually(() => clients.call(erin, 'GET', '/sync?timeout=0'), (r) => !!r.body.rooms?.invite?.[roomId], 30_000);
      const started = performance.now();
      expect((await s.call(bob, 'POST', `/rooms/${enc(roomId)}/kick`, { user_id: erin.userId, reason: 'wrong person' })).status).toBe(200);
      const after = await eventually(() => clients.call(erin, 'GET', `/sync?timeout=0&filter=${INCLUDE_LEAVE}`), (r) => r.status === 200 && !r.body.rooms?.invite?.[roomId], 30_000);
      figures.push(`Synapse's rescinded invite gone from the Axon user's /sync: ${Math.round(performance.now() - started)} ms`);
      expect(after.body.rooms?.invite?.[roomId]).toBeUndefined();
      // Shown under rooms.leave with the kick and its reason, as a rejected invite is.
      const kick = (after.body.rooms?.leave?.[roomId]?.timeline?.events ?? []).find((e: Json) => e.state_key === erin.userId);
      expect(kick, JSON.stringify(after.body.rooms ?? {})).toMatchObject({ sender: bob.userId, content: { membership: 'leave', reason: 'wrong person' } });
      const join = await clients.call(erin, 'POST', `/join/${enc(roomId)}`, {});
      expect(join.status, JSON.stringify(join.body)).toBe(403);
      expect(join.body.errcode).toBe('M_FORBIDDEN');
    });
  });
});
