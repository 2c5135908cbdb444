/**
 * `PUT /send` authenticated from a front's copy of the token's record (asGuardedUser,
 * enqueue-many-4.lua) over real HTTP, with two fronts on one Redis: a front that has served a
 * token keeps a copy of its record and sends without reading it again, the send appended only
 * while the record is unchanged. A token revoked, or its user suspended or locked, through the
 * OTHER front (whose requests never touch this front's copy) is refused on this one at once —
 * 401 / 403 / 401 as before the copies — and nothing of the refused sends reaches the room.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clientsFor, enc, txn, type Clients, type Session } from './clients';
import { startTestServer, type TestServer } from './server-harness';

let server: TestServer;
let c: Clients;

beforeAll(async () => {
  server = await startTestServer({ fronts: 2 });
  c = await clientsFor(server);
});
afterAll(async () => {
  await c?.close();
  await server?.stop();
});

describe('sends guarded by the token record (two fronts)', () => {
  it('a token revoked, suspended or locked through one front is refused by the other at once, and its sends never reach the room', async () => {
    const [frontA, frontB] = server.baseUrls as [string, string];
    const admin = await c.mint('tgadmin', 'ADM', { admin: true });
    const owner = await c.mint('tgowner');
    const created = await c.call(owner, 'POST', '/createRoom', { preset: 'public_chat' });
    expect(created.status).toBe(200);
    const roomId = created.body.room_id as string;
    const send = (s: Session, body: string, base = frontB) => c.call(s, 'PUT', `/rooms/${enc(roomId)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body }, base);
    const bodiesInRoom = async () => {
      const res = await c.call(owner, 'GET', `/rooms/${enc(roomId)}/messages?dir=b&limit=100`);
      expect(res.status).toBe(200);
      return (res.body.chunk as { type: string; content: { body?: string } }[]).filter((e) => e.type === 'm.room.message').map((e) => e.content.body);
    };

    // Revoked: bob sends twice through front B (the second from its copy), logs out through front A.
    const bob = await c.mint('tgbob');
    expect((await c.call(bob, 'POST', `/join/${enc(roomId)}`, {}, frontB)).status).toBe(200);
    expect((await send(bob, 'bob 1')).status).toBe(200);
    expect((await send(bob, 'bob 2')).status).toBe(200);
    expect((await c.call(bob, 'POST', '/logout', {}, frontA)).status).toBe(200);
    const revoked = await send(bob, 'bob after logout');
    expect(revoked.status).toBe(401);
    expect(revoked.body.errcode).toBe('M_UNKNOWN_TOKEN');

    // Suspended through front A: front B answers 403 M_USER_SUSPENDED for a message.
    const carol = await c.mint('tgcarol');
    expect((await c.call(carol, 'POST', `/join/${enc(roomId)}`, {}, frontB)).status).toBe(200);
    expect((await send(carol, 'carol 1')).status).toBe(200);
    expect((await send(carol, 'carol 2')).status).toBe(200);
    expect((await c.call(admin, 'PUT', `/_synapse/admin/v1/suspend/${enc(carol.userId)}`, { suspend: true }, frontA)).status).toBe(200);
    const suspended = await send(carol, 'carol while suspended');
    expect(suspended.status).toBe(403);
    expect(suspended.body.errcode).toBe('M_USER_SUSPENDED');

    // Locked through front A: front B answers 401 M_USER_LOCKED.
    const dave = await c.mint('tgdave');
    expect((await c.call(dave, 'POST', `/join/${enc(roomId)}`, {}, frontB)).status).toBe(200);
    expect((await send(dave, 'dave 1')).status).toBe(200);
    expect((await send(dave, 'dave 2')).status).toBe(200);
    expect((await c.call(admin, 'PUT', `/_synapse/admin/v2/users/${enc(dave.userId)}`, { locked: true }, frontA)).status).toBe(200);
    const locked = await send(dave, 'dave while locked');
    expect(locked.status).toBe(401);
    expect(locked.body.errcode).toBe('M_USER_LOCKED');
    // Unlocked, the same token sends again (the record rewritten once more).
    expect((await c.call(admin, 'PUT', `/_synapse/admin/v2/users/${enc(dave.userId)}`, { locked: false }, frontA)).status).toBe(200);
    expect((await send(dave, 'dave 3')).status).toBe(200);

    const bodies = await bodiesInRoom();
    expect(bodies.sort()).toEqual(['bob 1', 'bob 2', 'carol 1', 'carol 2', 'dave 1', 'dave 2', 'dave 3']);
  });

  it('a retried transaction through the copy is still one event, and not answered once the token is revoked', async () => {
    const erin = await c.mint('tgerin');
    const created = await c.call(erin, 'POST', '/createRoom', {});
    const roomId = created.body.room_id as string;
    const id = txn();
    const path = `/rooms/${enc(roomId)}/send/m.room.message/${id}`;
    const first = await c.call(erin, 'PUT', path, { msgtype: 'm.text', body: 'once' }, server.baseUrls[1]);
    const again = await c.call(erin, 'PUT', path, { msgtype: 'm.text', body: 'once' }, server.baseUrls[1]);
    expect(first.status).toBe(200);
    expect(again.body.event_id).toBe(first.body.event_id);
    // Logged out through the other front, the same transaction retried gets 401, not the event id
    // the room actor keeps for it.
    expect((await c.call(erin, 'POST', '/logout', {}, server.baseUrls[0])).status).toBe(200);
    const retried = await c.call(erin, 'PUT', path, { msgtype: 'm.text', body: 'once' }, server.baseUrls[1]);
    expect(retried.status).toBe(401);
    expect(retried.body.event_id).toBeUndefined();
  });
});
