/**
 * Invites carry the invitee's profile (displayname, avatar_url) in their content, as Synapse
 * writes them, whichever way they are sent: `createRoom`'s `invite` list and `/invite`. Clients
 * name the invitee from it ("alice was invited by bob"); Hydrogen, in the browser test, showed the
 * bare user id for createRoom's invites before this was fixed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './server-harness';
import { clientsFor, enc, type Clients } from './clients';

let server: TestServer;
let c: Clients;

beforeAll(async () => {
  server = await startTestServer();
  c = await clientsFor(server);
});

afterAll(async () => {
  await c?.close();
  await server?.stop();
});

describe('invite events carry the invitee\'s profile', () => {
  it('from createRoom\'s invite list and from /invite, with displayname and avatar_url', async () => {
    const host = await c.mint('ipf-host');
    const guest = await c.mint('ipf-guest');
    const late = await c.mint('ipf-late');
    expect((await c.call(guest, 'PUT', `/profile/${enc(guest.userId)}/displayname`, { displayname: 'Guest G' })).status).toBe(200);
    expect((await c.call(guest, 'PUT', `/profile/${enc(guest.userId)}/avatar_url`, { avatar_url: 'mxc://localhost/guestface' })).status).toBe(200);
    expect((await c.call(late, 'PUT', `/profile/${enc(late.userId)}/displayname`, { displayname: 'Late L' })).status).toBe(200);

    const created = await c.call(host, 'POST', '/createRoom', { preset: 'private_chat', invite: [guest.userId] });
    expect(created.status, JSON.stringify(created.body)).toBe(200);
    const roomId = created.body.room_id as string;
    const invite = await c.call(host, 'GET', `/rooms/${enc(roomId)}/state/m.room.member/${enc(guest.userId)}`);
    expect(invite.status).toBe(200);
    expect(invite.body).toEqual({ membership: 'invite', displayname: 'Guest G', avatar_url: 'mxc://localhost/guestface' });

    expect((await c.call(host, 'POST', `/rooms/${enc(roomId)}/invite`, { user_id: late.userId })).status).toBe(200);
    const later = await c.call(host, 'GET', `/rooms/${enc(roomId)}/state/m.room.member/${enc(late.userId)}`);
    expect(later.body).toEqual({ membership: 'invite', displayname: 'Late L' });

    // A direct chat's invite keeps is_direct beside the profile.
    const dm = await c.call(host, 'POST', '/createRoom', { preset: 'trusted_private_chat', is_direct: true, invite: [late.userId] });
    expect(dm.status, JSON.stringify(dm.body)).toBe(200);
    const dmInvite = await c.call(host, 'GET', `/rooms/${enc(dm.body.room_id)}/state/m.room.member/${enc(late.userId)}`);
    expect(dmInvite.body).toEqual({ membership: 'invite', is_direct: true, displayname: 'Late L' });
  });
});
