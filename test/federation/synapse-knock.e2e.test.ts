/**
 * Knocking across servers with a real Synapse, both ways (server-server API, "Knocking on rooms").
 *
 * On an Axon room whose join rule is `knock` (room version 10): a Synapse user knocks (Synapse's
 * make_knock/send_knock to Axon), Synapse's /sync shows the room under `rooms.knock` with the
 * stripped state Axon answered; the Axon admin sees the knock in /sync and invites the user (an
 * outbound `PUT /invite` to Synapse), the Synapse user joins, and messages go both ways. A knock
 * on an invite-only Axon room is refused.
 *
 * On a Synapse room: an Axon user knocks (make_knock/send_knock to Synapse), Axon's /sync shows the
 * room under `rooms.knock` with Synapse's `knock_room_state`; the Synapse admin sees the knock and
 * invites, the knock turns into an invite in Axon's /sync, the Axon user joins, messages go both
 * ways. An Axon user retracts a knock (make_leave/send_leave to Synapse): Synapse sees the leave,
 * Axon's /sync moves the room to `rooms.leave`. A rejected Synapse invite is in `rooms.leave` too.
 * The outbound invite that lets a knocker in also serves createRoom's `invite` (a direct chat).
 *
 * Synapse comes from scripts/lib/ensure.sh's `ensure_synapse`; outside CI the test skips itself
 * when it is not installed.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { enc, eventually, txn, type Clients, type Json, type Session } from '../e2e/clients';
import { SYNAPSE_VERSION, type PeerSession, type SynapsePeer } from '../peers/synapse';
import { skipWithoutSynapse, useAxonAndSynapse, type AxonAndSynapse } from './harness';

const skip = skipWithoutSynapse('synapse-knock.e2e');

const A_IP = '127.0.0.81';
const S_IP = '127.0.0.82';
const KNOCK_RULE = { type: 'm.room.join_rules', state_key: '', content: { join_rule: 'knock' } };

describe.skipIf(skip)(`knocking between Axon and Synapse ${SYNAPSE_VERSION}`, () => {
  const journey = useAxonAndSynapse('synapse-knock.e2e', A_IP, S_IP);
  let pair: AxonAndSynapse;
  let s: SynapsePeer;
  let clients: Clients;
  let alice: Session;
  let bob: PeerSession;

  beforeAll(async () => {
    pair = journey.pair;
    ({ synapse: s, clients } = pair);
    alice = await clients.mint('alice');
    bob = await s.registerUser('bob', 'bob password');
  }, 180_000);

  const { timed } = journey;
  const axonSync = (since?: string) => clients.call(alice, 'GET', `/sync?timeout=0${since ? `&since=${enc(since)}` : ''}`);
  /**
   * Synapse's /sync, followed incrementally until `ok` (Synapse caches a sync answer per token for
   * a while, so asking again with the same token would keep getting the same answer).
   */
  let synapseSince: string | undefined;
  const synapseSyncUntil = async (ok: (r: { status: number; body: Json }) => boolean, ms = 30_000) => {
    const deadline = Date.now() + ms;
    for (;;) {
      const r = await s.call(bob, 'GET', `/sync?timeout=2000${synapseSince ? `&since=${enc(synapseSince)}` : ''}`);
      if (r.status === 200 && typeof r.body.next_batch === 'string') synapseSince = r.body.next_batch;
      if (ok(r) || Date.now() > deadline) return r;
    }
  };
  const synapseMembership = async (roomId: string, userId: string) => {
    const r = await s.call(bob, 'GET', `/rooms/${enc(roomId)}/state/m.room.member/${enc(userId)}`);
    return r.status === 200 ? (r.body.membership as string) : undefined;
  };

  type Call = (method: string, path: string, body?: unknown) => Promise<{ status: number; body: Json }>;
  const onAxon: Call = (method, path, body) => clients.call(alice, method, path, body);
  const onSynapse: Call = (method, path, body) => s.call(bob, method, path, body);

  /** Two messages sent on one server, seen on the other once each, in order. */
  const messagesArrive = async (roomId: string, from: Call, to: Call, label: string) => {
    const bodies = [`${label} ${txn()}`, `${label} ${txn()}`];
    const ids: string[] = [];
    for (const body of bodies) {
      const sent = await from('PUT', `/rooms/${enc(roomId)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body });
      expect(sent.status, JSON.stringify(sent.body)).toBe(200);
      ids.push(sent.body.event_id);
    }
    const page = await eventually(
      () => to('GET', `/rooms/${enc(roomId)}/messages?dir=b&limit=50`),
      (r) => ids.every((id) => (r.body.chunk ?? []).some((e: Json) => e.event_id === id)),
      30_000,
    );
    expect((page.body.chunk as Json[]).filter((e) => ids.includes(e.event_id)).reverse().map((e) => e.content.body)).toEqual(bodies);
  };
  /** Messages both ways in a room both users are in. */
  const messagesBothWays = async (roomId: string) => {
    await messagesArrive(roomId, onAxon, onSynapse, 'from axon');
    await messagesArrive(roomId, onSynapse, onAxon, 'from synapse');
  };

  describe('a Synapse user knocks on an Axon room', () => {
    let roomId: string;

    beforeAll(async () => {
      const created = await clients.call(alice, 'POST', '/createRoom', { preset: 'private_chat', room_version: '10', name: 'Knock here', topic: 'ring the bell', initial_state: [KNOCK_RULE] });
      expect(created.status, JSON.stringify(created.body)).toBe(200);
      roomId = created.body.room_id;
    });

    it('the knock goes through (make_knock/send_knock to Axon); Synapse lists the room under rooms.knock with Axon’s stripped state', async () => {
      const knocked = await timed('Synapse user knocks on an Axon room (POST /knock on Synapse → make_knock + send_knock)', () => s.call(bob, 'POST', `/knock/${enc(roomId)}?server_name=${enc(pair.axon.serverName)}`, { reason: 'let me in' }));
      expect(knocked.status, JSON.stringify(knocked.body)).toBe(200);
      expect(knocked.body.room_id).toBe(roomId);
      const sync = await synapseSyncUntil((r) => !!r.body.rooms?.knock?.[roomId]);
      const stripped = sync.body.rooms.knock[roomId].knock_state.events as Json[];
      expect(stripped.find((e) => e.type === 'm.room.name')?.content).toEqual({ name: 'Knock here' });
      expect(stripped.find((e) => e.type === 'm.room.join_rules')?.content.join_rule).toBe('knock');
      expect(stripped.find((e) => e.type === 'm.room.member' && e.state_key === bob.userId)?.content.membership).toBe('knock');
    });

    it('the Axon admin sees the knock (with its reason) in /sync', async () => {
      const sync = await eventually(
        () => axonSync(),
        (r) => (r.body.rooms?.join?.[roomId]?.timeline?.events ?? []).some((e: Json) => e.type === 'm.room.member' && e.state_key === bob.userId),
        30_000,
      );
      const knock = (sync.body.rooms.join[roomId].timeline.events as Json[]).find((e) => e.type === 'm.room.member' && e.state_key === bob.userId)!;
      expect(knock.content.membership).toBe('knock');
      expect(knock.content.reason).toBe('let me in');
      expect(knock.sender).toBe(bob.userId);
    });

    it('the Axon admin invites the knocker (PUT /invite to Synapse); the Synapse user joins; messages go both ways', async () => {
      const invited = await timed('Axon admin invites the Synapse knocker (PUT /invite v2 to Synapse, then the room takes the co-signed invite)', () => clients.call(alice, 'POST', `/rooms/${enc(roomId)}/invite`, { user_id: bob.userId }));
      expect(invited.status, JSON.stringify(invited.body)).toBe(200);
      const sync = await synapseSyncUntil((r) => !!r.body.rooms?.invite?.[roomId]);
      const invite = (sync.body.rooms.invite[roomId].invite_state.events as Json[]).find((e) => e.type === 'm.room.member' && e.state_key === bob.userId);
      expect(invite).toMatchObject({ sender: alice.userId, content: { membership: 'invite' } });
      const joined = await timed('Synapse user joins the Axon room after the invite', () => s.call(bob, 'POST', `/join/${enc(roomId)}`, {}));
      expect(joined.status, JSON.stringify(joined.body)).toBe(200);
      const members = await eventually(
        () => clients.call(alice, 'GET', `/rooms/${enc(roomId)}/joined_members`),
        (r) => r.status === 200 && bob.userId in (r.body.joined ?? {}),
        30_000,
      );
      expect(Object.keys(members.body.joined).sort()).toEqual([alice.userId, bob.userId].sort());
      await messagesBothWays(roomId);
    });

    it('a knock on an invite-only Axon room is refused, and the room has no knock', async () => {
      const created = await clients.call(alice, 'POST', '/createRoom', { preset: 'private_chat', room_version: '10', name: 'Invite only' });
      expect(created.status, JSON.stringify(created.body)).toBe(200);
      const closed = created.body.room_id as string;
      const knocked = await s.call(bob, 'POST', `/knock/${enc(closed)}?server_name=${enc(pair.axon.serverName)}`, {});
      expect(knocked.status, JSON.stringify(knocked.body)).toBe(403);
      expect(knocked.body.errcode).toBe('M_FORBIDDEN');
      const member = await clients.call(alice, 'GET', `/rooms/${enc(closed)}/state/m.room.member/${enc(bob.userId)}`);
      expect(member.status).toBe(404);
    });
  });

  describe('an Axon user knocks on a Synapse room', () => {
    let roomId: string;

    beforeAll(async () => {
      const created = await s.call(bob, 'POST', '/createRoom', { preset: 'private_chat', room_version: '11', name: 'Synapse door', initial_state: [KNOCK_RULE] });
      expect(created.status, JSON.stringify(created.body)).toBe(200);
      roomId = created.body.room_id;
    });

    it('an Axon knock on a room nobody knows is 404; on an invite-only Synapse room it is refused with 403', async () => {
      const unknown = await clients.call(alice, 'POST', `/knock/${enc(`!nowhere:${s.serverName}`)}`, {});
      expect(unknown.status, JSON.stringify(unknown.body)).toBe(404);
      const created = await s.call(bob, 'POST', '/createRoom', { preset: 'private_chat', room_version: '10', name: 'Closed' });
      const refused = await clients.call(alice, 'POST', `/knock/${enc(created.body.room_id)}?server_name=${enc(s.serverName)}`, {});
      expect(refused.status, JSON.stringify(refused.body)).toBe(403);
      expect(refused.body.errcode).toBe('M_FORBIDDEN');
      const sync = await axonSync();
      expect(sync.body.rooms?.knock?.[created.body.room_id]).toBeUndefined();
    });

    it('the knock goes through (make_knock/send_knock to Synapse); Axon /sync lists the room under rooms.knock with Synapse’s stripped state', async () => {
      const knocked = await timed('Axon user knocks on a Synapse room (POST /knock on Axon → make_knock + send_knock)', () => clients.call(alice, 'POST', `/knock/${enc(roomId)}?via=${enc(s.serverName)}`, { reason: 'hello?' }));
      expect(knocked.status, JSON.stringify(knocked.body)).toBe(200);
      expect(knocked.body.room_id).toBe(roomId);
      const sync = await eventually(() => axonSync(), (r) => !!r.body.rooms?.knock?.[roomId], 30_000);
      const stripped = sync.body.rooms.knock[roomId].knock_state.events as Json[];
      expect(stripped.find((e) => e.type === 'm.room.name')?.content).toEqual({ name: 'Synapse door' });
      expect(stripped.find((e) => e.type === 'm.room.create')).toBeTruthy();
      const own = stripped.find((e) => e.type === 'm.room.member' && e.state_key === alice.userId);
      expect(own?.content.membership).toBe('knock');
      expect(own?.content.reason).toBe('hello?');
      // The Synapse admin sees it.
      await eventually(() => synapseMembership(roomId, alice.userId), (m) => m === 'knock', 30_000);
    });

    it('the Synapse admin invites: the knock turns into an invite in Axon /sync; the Axon user joins; messages go both ways', async () => {
      const before = await axonSync();
      const invited = await s.call(bob, 'POST', `/rooms/${enc(roomId)}/invite`, { user_id: alice.userId });
      expect(invited.status, JSON.stringify(invited.body)).toBe(200);
      const sync = await eventually(() => axonSync(before.body.next_batch), (r) => !!r.body.rooms?.invite?.[roomId], 30_000);
      expect(sync.body.rooms.invite[roomId].invite_state.events.find((e: Json) => e.type === 'm.room.member' && e.state_key === alice.userId).content.membership).toBe('invite');
      const full = await axonSync();
      expect(full.body.rooms?.knock?.[roomId]).toBeUndefined();
      expect(full.body.rooms?.invite?.[roomId]).toBeTruthy();
      const joined = await timed('Axon user joins the Synapse room after the invite', () => clients.call(alice, 'POST', `/rooms/${enc(roomId)}/join`, {}));
      expect(joined.status, JSON.stringify(joined.body)).toBe(200);
      await eventually(() => synapseMembership(roomId, alice.userId), (m) => m === 'join', 30_000);
      const after = await eventually(() => axonSync(), (r) => !!r.body.rooms?.join?.[roomId], 30_000);
      expect(after.body.rooms.invite?.[roomId]).toBeUndefined();
      await messagesBothWays(roomId);
    });

    it('the Axon user retracts a knock (make_leave/send_leave to Synapse): Synapse sees the leave, Axon /sync moves the room to rooms.leave', async () => {
      const created = await s.call(bob, 'POST', '/createRoom', { preset: 'private_chat', room_version: '10', name: 'Changed my mind', initial_state: [KNOCK_RULE] });
      expect(created.status, JSON.stringify(created.body)).toBe(200);
      const other = created.body.room_id as string;
      expect((await clients.call(alice, 'POST', `/knock/${enc(other)}?server_name=${enc(s.serverName)}`, {})).status).toBe(200);
      const knocking = await eventually(() => axonSync(), (r) => !!r.body.rooms?.knock?.[other], 30_000);
      const left = await timed('Axon user retracts a knock on a Synapse room (make_leave + send_leave)', () => clients.call(alice, 'POST', `/rooms/${enc(other)}/leave`, { reason: 'never mind' }));
      expect(left.status, JSON.stringify(left.body)).toBe(200);
      await eventually(() => synapseMembership(other, alice.userId), (m) => m === 'leave', 30_000);
      const sync = await eventually(() => axonSync(knocking.body.next_batch), (r) => !!r.body.rooms?.leave?.[other], 30_000);
      expect(sync.body.rooms.knock?.[other]).toBeUndefined();
      const timeline = sync.body.rooms.leave[other].timeline.events as Json[];
      const leave = timeline[timeline.length - 1]!;
      expect(leave).toMatchObject({ type: 'm.room.member', state_key: alice.userId, sender: alice.userId, content: { membership: 'leave', reason: 'never mind' } });
      expect(leave.event_id).toMatch(/^\$/);
      const full = await axonSync();
      expect(full.body.rooms?.knock?.[other]).toBeUndefined();
    });
  });

  it('createRoom inviting a Synapse user (a direct chat): the invite reaches Synapse with is_direct, and the Synapse user joins', async () => {
    const created = await timed('Axon createRoom with a Synapse invitee (is_direct)', () => clients.call(alice, 'POST', '/createRoom', { preset: 'trusted_private_chat', is_direct: true, room_version: '10', invite: [bob.userId] }));
    expect(created.status, JSON.stringify(created.body)).toBe(200);
    const dm = created.body.room_id as string;
    const sync = await synapseSyncUntil((r) => !!r.body.rooms?.invite?.[dm]);
    const invite = (sync.body.rooms.invite[dm].invite_state.events as Json[]).find((e) => e.type === 'm.room.member' && e.state_key === bob.userId);
    expect(invite).toMatchObject({ sender: alice.userId, content: { membership: 'invite', is_direct: true } });
    expect((await s.call(bob, 'POST', `/join/${enc(dm)}`, {})).status).toBe(200);
    await eventually(
      () => clients.call(alice, 'GET', `/rooms/${enc(dm)}/joined_members`),
      (r) => r.status === 200 && bob.userId in (r.body.joined ?? {}),
      30_000,
    );
  });

  it('a rejected Synapse invite is reported under rooms.leave (with the leave event), no longer under rooms.invite', async () => {
    const created = await s.call(bob, 'POST', '/createRoom', { preset: 'private_chat', room_version: '10', name: 'Not for me' });
    expect(created.status, JSON.stringify(created.body)).toBe(200);
    const roomId = created.body.room_id as string;
    expect((await s.call(bob, 'POST', `/rooms/${enc(roomId)}/invite`, { user_id: alice.userId })).status).toBe(200);
    const invited = await eventually(() => axonSync(), (r) => !!r.body.rooms?.invite?.[roomId], 30_000);
    const left = await clients.call(alice, 'POST', `/rooms/${enc(roomId)}/leave`, {});
    expect(left.status, JSON.stringify(left.body)).toBe(200);
    const sync = await eventually(() => axonSync(invited.body.next_batch), (r) => !!r.body.rooms?.leave?.[roomId], 30_000);
    expect(sync.body.rooms.invite?.[roomId]).toBeUndefined();
    const timeline = sync.body.rooms.leave[roomId].timeline.events as Json[];
    expect(timeline[timeline.length - 1]).toMatchObject({ type: 'm.room.member', state_key: alice.userId, content: { membership: 'leave' } });
    await eventually(() => synapseMembership(roomId, alice.userId), (m) => m === 'leave', 30_000);
    // An initial sync shows it only when asked to include left rooms.
    const initial = await axonSync();
    expect(initial.body.rooms?.leave?.[roomId]).toBeUndefined();
    expect(initial.body.rooms?.invite?.[roomId]).toBeUndefined();
    const withLeave = await clients.call(alice, 'GET', `/sync?timeout=0&filter=${enc(JSON.stringify({ room: { include_leave: true } }))}`);
    expect(withLeave.body.rooms?.leave?.[roomId]).toBeTruthy();
  });

  it('deactivating an Axon user rejects their pending Synapse invite and retracts their knock (as Synapse does on deactivation)', async () => {
    const reg = await clients.call(null, 'POST', '/register', { username: 'dora', password: 'dora password', auth: { type: 'm.login.dummy' } });
    expect(reg.status, JSON.stringify(reg.body)).toBe(200);
    const dora: Session = { userId: reg.body.user_id, token: reg.body.access_token, deviceId: reg.body.device_id };
    const invitedTo = await s.call(bob, 'POST', '/createRoom', { preset: 'private_chat', room_version: '10', name: 'Invite for Dora' });
    const knockedOn = await s.call(bob, 'POST', '/createRoom', { preset: 'private_chat', room_version: '10', name: 'Dora knocks', initial_state: [KNOCK_RULE] });
    expect([invitedTo.status, knockedOn.status]).toEqual([200, 200]);
    expect((await s.call(bob, 'POST', `/rooms/${enc(invitedTo.body.room_id)}/invite`, { user_id: dora.userId })).status).toBe(200);
    expect((await clients.call(dora, 'POST', `/knock/${enc(knockedOn.body.room_id)}?via=${enc(s.serverName)}`, {})).status).toBe(200);
    await eventually(() => clients.call(dora, 'GET', '/sync?timeout=0'), (r) => !!r.body.rooms?.invite?.[invitedTo.body.room_id] && !!r.body.rooms?.knock?.[knockedOn.body.room_id], 30_000);
    await eventually(() => synapseMembership(knockedOn.body.room_id, dora.userId), (m) => m === 'knock', 30_000);

    const first = await clients.call(dora, 'POST', '/account/deactivate', {});
    expect(first.status).toBe(401);
    const done = await timed('Axon deactivation with a pending Synapse invite and knock (both left over federation before the answer)', () =>
      clients.call(dora, 'POST', '/account/deactivate', { auth: { type: 'm.login.password', identifier: { type: 'm.id.user', user: 'dora' }, password: 'dora password', session: first.body.session } }));
    expect(done.status, JSON.stringify(done.body)).toBe(200);
    // Both rooms get Dora's leave through send_leave (Synapse took it before the answer above).
    await eventually(() => synapseMembership(invitedTo.body.room_id, dora.userId), (m) => m === 'leave', 30_000);
    await eventually(() => synapseMembership(knockedOn.body.room_id, dora.userId), (m) => m === 'leave', 30_000);
  });
});
