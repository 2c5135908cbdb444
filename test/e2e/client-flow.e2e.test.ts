/**
 * The whole client journey with matrix-js-sdk against one front and two workers on real Redis:
 * two people register, one creates a room with an alias and a topic, invites the other, who
 * joins by alias; they talk; history pages back; profiles and account data are set; one leaves.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Direction, type MatrixClient } from 'matrix-js-sdk';
import { createClient } from './sdk';
import { startTestServer, type TestServer } from './server-harness';


let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({ workers: 2 });
});
afterAll(async () => {
  await server?.stop();
});

async function register(username: string): Promise<MatrixClient> {
  const anon = createClient({ baseUrl: server.baseUrl });
  let session: string | undefined;
  try {
    await anon.registerRequest({ username, password: 'a long passphrase' });
  } catch (e) {
    session = (e as { data: { session: string } }).data.session;
  }
  const res = await anon.registerRequest({ username, password: 'a long passphrase', auth: { type: 'm.login.dummy', session } });
  return createClient({ baseUrl: server.baseUrl, accessToken: res.access_token!, userId: res.user_id, deviceId: res.device_id! });
}

describe('a client journey through matrix-js-sdk', () => {
  it('registers, creates a room, invites, joins by alias, talks, pages history, sets profile and account data, leaves', async () => {
    const alice = await register('alice');
    const bob = await register('bob');
    expect(alice.getUserId()).toBe('@alice:localhost');

    const { room_id: roomId } = await alice.createRoom({ name: 'Journey', topic: 'first topic', room_alias_name: 'journey', preset: 'private_chat' as never });
    expect(roomId).toMatch(/^!/);
    expect((await alice.getRoomIdForAlias('#journey:localhost')).room_id).toBe(roomId);
    await alice.invite(roomId, bob.getUserId()!);
    expect((await bob.getJoinedRooms()).joined_rooms).toEqual([]);
    await bob.joinRoom('#journey:localhost');
    expect((await bob.getJoinedRooms()).joined_rooms).toEqual([roomId]);
    const members = await alice.getJoinedRoomMembers(roomId);
    expect(Object.keys(members.joined).sort()).toEqual(['@alice:localhost', '@bob:localhost']);

    for (let i = 0; i < 25; i++) await (i % 2 ? alice : bob).sendTextMessage(roomId, `message ${i}`);
    await alice.setRoomTopic(roomId, 'second topic');
    expect((await bob.getStateEvent(roomId, 'm.room.topic', '')).topic).toBe('second topic');
    // The new topic says what it replaced.
    const recent = await bob.createMessagesRequest(roomId, null, 5, Direction.Backward);
    const topicEvent = recent.chunk.find((e) => e.type === 'm.room.topic')!;
    expect(topicEvent.content).toMatchObject({ topic: 'second topic' });
    expect(topicEvent.unsigned).toMatchObject({ prev_content: { topic: 'first topic' }, prev_sender: '@alice:localhost' });
    expect(typeof (topicEvent.unsigned as { replaces_state?: string }).replaces_state).toBe('string');

    // Page the whole history backwards, 10 at a time.
    const bodies: string[] = [];
    let from: string | null = null;
    for (let page = 0; page < 10; page++) {
      const res = await bob.createMessagesRequest(roomId, from, 10, Direction.Backward);
      for (const e of res.chunk) if (e.type === 'm.room.message') bodies.push((e.content as { body: string }).body);
      if (!res.end || res.chunk.length === 0) break;
      from = res.end;
    }
    expect(bodies).toEqual(Array.from({ length: 25 }, (_, i) => `message ${24 - i}`));

    await bob.setDisplayName('Bobby');
    expect((await alice.getProfileInfo('@bob:localhost')).displayname).toBe('Bobby');
    await bob.setAccountData('org.example.settings' as never, { theme: 'dark' } as never);
    expect(await bob.getAccountDataFromServer('org.example.settings' as never)).toEqual({ theme: 'dark' });

    await bob.leave(roomId);
    expect((await bob.getJoinedRooms()).joined_rooms).toEqual([]);
    const after = await alice.getJoinedRoomMembers(roomId);
    expect(Object.keys(after.joined)).toEqual(['@alice:localhost']);
    // After leaving, bob still reads the history up to his leave, and nothing after it.
    await alice.sendTextMessage(roomId, 'after bob left');
    const since = await bob.createMessagesRequest(roomId, null, 5, Direction.Backward);
    const seen = since.chunk.map((e) => (e.content as { body?: string }).body);
    expect(seen).not.toContain('after bob left');
    expect(seen).toContain('message 24');
  });

  it('creates many rooms for one user at once, each its own room (v12 ids hash the create event)', async () => {
    const carol = await register('carol');
    const ids = await Promise.all(Array.from({ length: 24 }, (_, i) => carol.createRoom({ name: `parallel ${i}` })));
    expect(new Set(ids.map((r) => r.room_id)).size).toBe(24);
    const joined = (await carol.getJoinedRooms()).joined_rooms;
    expect(new Set(joined)).toEqual(new Set(ids.map((r) => r.room_id)));
  });
});
