/**
 * Knocking between two Axon servers (own server names, own Redis, TLS on loopback): both sides of
 * the knock are ours here, so this checks that what our outbound side sends our inbound side
 * takes. A user of B knocks on a room of A (B → make_knock/send_knock on A), B's /sync lists it
 * under `rooms.knock` with A's stripped state; A's admin sees the knock and invites (A → PUT
 * /invite on B), the knock turns into an invite on B, the user joins (make_join/send_join on A)
 * and the two talk; another user of B knocks and retracts (make_leave/send_leave on A): A sees the
 * leave, B's /sync reports the room under `rooms.leave`. With all of B's users gone, an invite
 * written as state on A (`PUT /state/m.room.member/@erin:B`) is co-signed by B like any invite,
 * reaches erin's /sync, and she joins.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clientsFor, enc, eventually, txn, type Clients, type Json, type Session } from '../e2e/clients';
import type { TestServer } from '../e2e/server-harness';
import { createTestCa, type TestCa } from '../peers/test-ca';
import { startFederatedAxon } from './harness';

const A_IP = '127.0.0.83';
const B_IP = '127.0.0.84';

let ca: TestCa;
let a: TestServer;
let b: TestServer;
let onA: Clients;
let onB: Clients;
let alice: Session;
let bob: Session;
let carol: Session;
let roomId: string;

beforeAll(async () => {
  ca = createTestCa();
  [a, b] = await Promise.all([startFederatedAxon(A_IP, ca), startFederatedAxon(B_IP, ca)]);
  [onA, onB] = await Promise.all([clientsFor(a), clientsFor(b)]);
  alice = await onA.mint('alice');
  bob = await onB.mint('bob');
  carol = await onB.mint('carol');
  const created = await onA.call(alice, 'POST', '/createRoom', { preset: 'private_chat', room_version: '11', name: 'Door on A', initial_state: [{ type: 'm.room.join_rules', state_key: '', content: { join_rule: 'knock' } }] });
  expect(created.status, JSON.stringify(created.body)).toBe(200);
  roomId = created.body.room_id;
}, 120_000);

afterAll(async () => {
  await onA?.close();
  await onB?.close();
  await Promise.all([a?.stop(), b?.stop()]);
  ca?.cleanup();
});

const syncOn = (c: Clients, who: Session, since?: string) => c.call(who, 'GET', `/sync?timeout=0${since ? `&since=${enc(since)}` : ''}`);
const membershipOnA = async (userId: string) => {
  const r = await onA.call(alice, 'GET', `/rooms/${enc(roomId)}/state/m.room.member/${enc(userId)}`);
  return r.status === 200 ? (r.body.membership as string) : undefined;
};

describe('knocking between two Axon servers', () => {
  it("a user of B knocks on A's room; B's /sync lists it under rooms.knock with A's stripped state; A's admin sees the knock", async () => {
    const started = performance.now();
    const knocked = await onB.call(bob, 'POST', `/knock/${enc(roomId)}?via=${enc(a.serverName)}`, { reason: 'open up' });
    console.log(`axon-knock.e2e: knock B → A in ${Math.round(performance.now() - started)} ms`);
    expect(knocked.status, JSON.stringify(knocked.body)).toBe(200);
    const sync = await eventually(() => syncOn(onB, bob), (r) => !!r.body.rooms?.knock?.[roomId], 20_000);
    const stripped = sync.body.rooms.knock[roomId].knock_state.events as Json[];
    expect(stripped.find((e) => e.type === 'm.room.name')?.content).toEqual({ name: 'Door on A' });
    expect(stripped.find((e) => e.type === 'm.room.member' && e.state_key === bob.userId)?.content).toMatchObject({ membership: 'knock', reason: 'open up' });
    await eventually(() => membershipOnA(bob.userId), (m) => m === 'knock', 20_000);
    expect(await membershipOnA(bob.userId)).toBe('knock');
  });

  it("A's admin invites the knocker: the knock turns into an invite on B; the user joins and they talk", async () => {
    const before = await syncOn(onB, bob);
    const invited = await onA.call(alice, 'POST', `/rooms/${enc(roomId)}/invite`, { user_id: bob.userId });
    expect(invited.status, JSON.stringify(invited.body)).toBe(200);
    const sync = await eventually(() => syncOn(onB, bob, before.body.next_batch), (r) => !!r.body.rooms?.invite?.[roomId], 20_000);
    expect(sync.body.rooms.invite[roomId].invite_state.events.find((e: Json) => e.type === 'm.room.member' && e.state_key === bob.userId)).toMatchObject({ sender: alice.userId, content: { membership: 'invite' } });
    expect((await syncOn(onB, bob)).body.rooms?.knock?.[roomId]).toBeUndefined();
    const joined = await onB.call(bob, 'POST', `/rooms/${enc(roomId)}/join`, {});
    expect(joined.status, JSON.stringify(joined.body)).toBe(200);
    expect(await membershipOnA(bob.userId)).toBe('join');

    const body = `hello from B ${txn()}`;
    const sent = await onB.call(bob, 'PUT', `/rooms/${enc(roomId)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body });
    expect(sent.status, JSON.stringify(sent.body)).toBe(200);
    const onAPage = await eventually(
      () => onA.call(alice, 'GET', `/rooms/${enc(roomId)}/messages?dir=b&limit=20`),
      (r) => (r.body.chunk ?? []).some((e: Json) => e.event_id === sent.body.event_id),
      20_000,
    );
    expect(onAPage.body.chunk.find((e: Json) => e.event_id === sent.body.event_id).content.body).toBe(body);
    const reply = `hello from A ${txn()}`;
    const back = await onA.call(alice, 'PUT', `/rooms/${enc(roomId)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body: reply });
    const onBPage = await eventually(
      () => onB.call(bob, 'GET', `/rooms/${enc(roomId)}/messages?dir=b&limit=20`),
      (r) => (r.body.chunk ?? []).some((e: Json) => e.event_id === back.body.event_id),
      20_000,
    );
    expect(onBPage.body.chunk.find((e: Json) => e.event_id === back.body.event_id).content.body).toBe(reply);
  });

  it('another user of B knocks and retracts: A sees the leave, B reports the room under rooms.leave', async () => {
    // B is in the room now (bob joined): carol's knock is sent by B's room actor and reaches A in a transaction.
    const knocked = await onB.call(carol, 'POST', `/knock/${enc(roomId)}`, {});
    expect(knocked.status, JSON.stringify(knocked.body)).toBe(200);
    await eventually(() => membershipOnA(carol.userId), (m) => m === 'knock', 20_000);
    const knocking = await eventually(() => syncOn(onB, carol), (r) => !!r.body.rooms?.knock?.[roomId], 20_000);
    const left = await onB.call(carol, 'POST', `/rooms/${enc(roomId)}/leave`, {});
    expect(left.status, JSON.stringify(left.body)).toBe(200);
    await eventually(() => membershipOnA(carol.userId), (m) => m === 'leave', 20_000);
    expect(await membershipOnA(carol.userId)).toBe('leave');
    const sync = await eventually(() => syncOn(onB, carol, knocking.body.next_batch), (r) => !!r.body.rooms?.leave?.[roomId], 20_000);
    expect(sync.body.rooms.knock?.[roomId]).toBeUndefined();
  });

  it('a user of B, with B out of the room, knocks over federation and retracts through make_leave/send_leave on A', async () => {
    expect((await onB.call(bob, 'POST', `/rooms/${enc(roomId)}/leave`, {})).status).toBe(200);
    await eventually(() => membershipOnA(bob.userId), (m) => m === 'leave', 20_000);
    const dave = await onB.mint('dave');
    const knocked = await onB.call(dave, 'POST', `/knock/${enc(roomId)}?server_name=${enc(a.serverName)}`, {});
    expect(knocked.status, JSON.stringify(knocked.body)).toBe(200);
    await eventually(() => membershipOnA(dave.userId), (m) => m === 'knock', 20_000);
    const knocking = await eventually(() => syncOn(onB, dave), (r) => !!r.body.rooms?.knock?.[roomId], 20_000);
    const left = await onB.call(dave, 'POST', `/rooms/${enc(roomId)}/leave`, { reason: 'later' });
    expect(left.status, JSON.stringify(left.body)).toBe(200);
    expect(await membershipOnA(dave.userId)).toBe('leave');
    const sync = await eventually(() => syncOn(onB, dave, knocking.body.next_batch), (r) => !!r.body.rooms?.leave?.[roomId], 20_000);
    const timeline = sync.body.rooms.leave[roomId].timeline.events as Json[];
    expect(timeline[timeline.length - 1]).toMatchObject({ type: 'm.room.member', state_key: dave.userId, content: { membership: 'leave', reason: 'later' } });
  });

  it("an invite of a user of B written as state (PUT /state/m.room.member) is co-signed by B and reaches the invitee's /sync", async () => {
    const erin = await onB.mint('erin');
    const before = await syncOn(onB, erin);
    const put = await onA.call(alice, 'PUT', `/rooms/${enc(roomId)}/state/m.room.member/${enc(erin.userId)}`, { membership: 'invite', reason: 'as state' });
    expect(put.status, JSON.stringify(put.body)).toBe(200);
    const invite = await onA.call(alice, 'GET', `/rooms/${enc(roomId)}/event/${enc(put.body.event_id)}`);
    expect(invite.status, JSON.stringify(invite.body)).toBe(200);
    expect(invite.body).toMatchObject({ type: 'm.room.member', state_key: erin.userId, content: { membership: 'invite', reason: 'as state' } });
    const sync = await eventually(() => syncOn(onB, erin, before.body.next_batch), (r) => !!r.body.rooms?.invite?.[roomId], 20_000);
    expect(sync.body.rooms.invite[roomId].invite_state.events.find((e: Json) => e.type === 'm.room.member' && e.state_key === erin.userId)).toMatchObject({ sender: alice.userId, content: { membership: 'invite' } });
    // B has the room from before (its users all left, so its copy is stale): the join goes to A.
    const joined = await onB.call(erin, 'POST', `/rooms/${enc(roomId)}/join`, {});
    expect(joined.status, JSON.stringify(joined.body)).toBe(200);
    await eventually(() => membershipOnA(erin.userId), (m) => m === 'join', 20_000);
    expect(await membershipOnA(erin.userId)).toBe('join');
  });
});
