/**
 * A rescinded invite (src/federation/inbound/rescinded-invites.ts) against a real Axon over TLS on
 * loopback with two signing test peers: the inviting peer's kick of our invitee, sent in a
 * transaction for a room Axon is not in, turns the invite into a leave in the user's /sync; the same kick
 * from a third server, or with a forged signature, is an error for that PDU and the invite stays.
 * (With Synapse as the inviting server: synapse-moderation.e2e.test.ts.)
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { JsonObject } from '../../src/protocol/json';
import { requireRoomVersion } from '../../src/protocol/room-versions';
import { clientsFor, enc, eventually, type Clients, type Session } from '../e2e/clients';
import type { TestServer } from '../e2e/server-harness';
import { createTestCa, type TestCa } from '../peers/test-ca';
import { startFederatedAxon } from './harness';
import { SigningPeer } from './signing-peer';

const VERSION = requireRoomVersion('10');

let ca: TestCa;
let a: TestServer;
let clients: Clients;
let alice: Session;
let inviter: SigningPeer;
let third: SigningPeer;

beforeAll(async () => {
  ca = createTestCa();
  a = await startFederatedAxon('127.0.0.84', ca);
  inviter = await SigningPeer.start('127.0.0.85', ca);
  third = await SigningPeer.start('127.0.0.86', ca);
  clients = await clientsFor(a);
  alice = await clients.mint('alice');
}, 60_000);

afterAll(async () => {
  await clients?.close();
  await inviter?.close();
  await third?.close();
  await a?.stop();
  ca?.cleanup();
});

function memberEvent(by: SigningPeer, roomId: string, sender: string, target: string, membership: string): { pdu: JsonObject; id: string } {
  return by.sign({ room_id: roomId, sender, type: 'm.room.member', state_key: target, content: { membership }, origin_server_ts: Date.now(), depth: 5, prev_events: ['$prev'], auth_events: ['$create', '$pl', '$senderjoin'] }, VERSION);
}

const hasInvite = async (roomId: string) => !!(await clients.call(alice, 'GET', '/sync?timeout=0')).body.rooms?.invite?.[roomId];

it("only the inviting server's signed kick of the invitee drops a remote invite", async () => {
  const roomId = `!invited:${inviter.serverName}`;
  const pat = `@pat:${inviter.serverName}`;
  const invite = memberEvent(inviter, roomId, pat, alice.userId, 'invite');
  const stripped = [{ type: 'm.room.create', state_key: '', sender: pat, content: { room_version: '10', creator: pat } }];
  const invited = await inviter.request(a, 'PUT', `/_matrix/federation/v2/invite/${enc(roomId)}/${enc(invite.id)}`, { room_version: '10', event: invite.pdu, invite_room_state: stripped });
  expect(invited.status, invited.text).toBe(200);
  expect(await eventually(() => hasInvite(roomId), (x) => x, 10_000)).toBe(true);

  // A third server may not cancel another server's invite.
  const foreign = memberEvent(third, roomId, `@quinn:${third.serverName}`, alice.userId, 'leave');
  const r1 = await third.sendTransaction(a, `t-${Date.now()}-1`, [foreign.pdu]);
  expect(r1.status, r1.text).toBe(200);
  expect(r1.body.pdus[foreign.id]?.error).toBeTruthy();
  // A forged signature: dropped.
  const forged = memberEvent(inviter, roomId, pat, alice.userId, 'leave');
  (forged.pdu.signatures as Record<string, Record<string, string>>)[inviter.serverName]![Object.keys((forged.pdu.signatures as Record<string, Record<string, string>>)[inviter.serverName]!)[0]!] = 'A'.repeat(86);
  const r2 = await inviter.sendTransaction(a, `t-${Date.now()}-2`, [forged.pdu]);
  expect(r2.body.pdus[forged.id]?.error).toBeTruthy();
  // Some other event of the room: still an unknown room.
  const message = inviter.sign({ room_id: roomId, sender: pat, type: 'm.room.message', content: { body: 'hi' }, origin_server_ts: Date.now(), depth: 5, prev_events: ['$prev'], auth_events: ['$create'] }, VERSION);
  const r3 = await inviter.sendTransaction(a, `t-${Date.now()}-3`, [message.pdu]);
  expect(r3.body.pdus[message.id]?.error).toMatch(/unknown room/);
  expect(await hasInvite(roomId)).toBe(true);

  // The inviting server's own, signed kick: taken, and the invite is gone.
  const kick = memberEvent(inviter, roomId, pat, alice.userId, 'leave');
  const r4 = await inviter.sendTransaction(a, `t-${Date.now()}-4`, [kick.pdu]);
  expect(r4.status, r4.text).toBe(200);
  expect(r4.body.pdus[kick.id], JSON.stringify(r4.body)).toEqual({});
  expect(await eventually(() => hasInvite(roomId), (x) => !x, 10_000)).toBe(false);
  const sync = await clients.call(alice, 'GET', `/sync?timeout=0&filter=${enc(JSON.stringify({ room: { include_leave: true } }))}`);
  expect(sync.body.rooms?.leave?.[roomId]?.timeline?.events, JSON.stringify(sync.body.rooms ?? {})).toEqual([expect.objectContaining({ event_id: kick.id, sender: pat, state_key: alice.userId, content: { membership: 'leave' } })]);
});
