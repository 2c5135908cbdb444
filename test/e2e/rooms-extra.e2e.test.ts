/**
 * More of the room API end to end (issue 5's remaining items): stored filters on /messages and
 * /context, and the rest below. A real front and workers on the test Redis, raw HTTP and
 * matrix-js-sdk.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './server-harness';
import { clientsFor, enc, txn, type Clients, type Json, type Session } from './clients';

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

async function createRoom(s: Session, body: Json = {}): Promise<string> {
  const r = await c.call(s, 'POST', '/createRoom', body);
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body.room_id as string;
}

async function send(s: Session, roomId: string, type: string, content: Json): Promise<string> {
  const r = await c.call(s, 'PUT', `/rooms/${enc(roomId)}/send/${enc(type)}/${txn()}`, content);
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body.event_id as string;
}

describe('stored filter ids on /messages and /context', () => {
  it('applies the stored filter\'s room.timeline part, its room lists, and refuses unknown ids', async () => {
    const alice = await c.mint('fa');
    const bob = await c.mint('fb');
    const roomId = await createRoom(alice, { preset: 'public_chat' });
    expect((await c.call(bob, 'POST', `/join/${enc(roomId)}`, {})).status).toBe(200);
    const sent: string[] = [];
    for (let i = 0; i < 6; i++) {
      const who = i % 2 ? bob : alice;
      sent.push(await send(who, roomId, 'm.room.message', { msgtype: 'm.text', body: `m${i}` }));
      await send(who, roomId, 'org.example.ping', { n: i });
    }
    const stored = await c.call(alice, 'POST', `/user/${enc(alice.userId)}/filter`, { room: { timeline: { types: ['m.room.message'], senders: [alice.userId], limit: 2 }, state: { lazy_load_members: true } } });
    expect(stored.status).toBe(200);
    const id = stored.body.filter_id as string;

    // The timeline part: only alice's messages, two per page (the filter's limit).
    const page1 = await c.call(alice, 'GET', `/rooms/${enc(roomId)}/messages?dir=b&limit=10&filter=${enc(id)}`);
    expect(page1.status, JSON.stringify(page1.body)).toBe(200);
    expect(page1.body.chunk.map((e: Json) => e.content.body)).toEqual(['m4', 'm2']);
    const page2 = await c.call(alice, 'GET', `/rooms/${enc(roomId)}/messages?dir=b&limit=10&filter=${enc(id)}&from=${page1.body.end}`);
    expect(page2.body.chunk.map((e: Json) => e.content.body)).toEqual(['m0']);

    // /context: the event itself, and neighbours through the same filter.
    const ctx = await c.call(alice, 'GET', `/rooms/${enc(roomId)}/context/${enc(sent[2]!)}?limit=10&filter=${enc(id)}`);
    expect(ctx.status, JSON.stringify(ctx.body)).toBe(200);
    expect(ctx.body.event.event_id).toBe(sent[2]);
    expect(ctx.body.events_before.map((e: Json) => e.content.body)).toEqual(['m0']);
    expect(ctx.body.events_after.map((e: Json) => e.content.body)).toEqual(['m4']);

    // A stored filter whose room list leaves this room out lets nothing through.
    const other = await c.call(alice, 'POST', `/user/${enc(alice.userId)}/filter`, { room: { not_rooms: [roomId] } });
    const none = await c.call(alice, 'GET', `/rooms/${enc(roomId)}/messages?dir=b&filter=${enc(other.body.filter_id)}`);
    expect(none.status).toBe(200);
    expect(none.body.chunk).toEqual([]);
    expect(none.body.end).toBeUndefined();
    // Inline filters may name rooms too.
    const inline = await c.call(alice, 'GET', `/rooms/${enc(roomId)}/messages?dir=b&filter=${enc(JSON.stringify({ rooms: ['!elsewhere:localhost'] }))}`);
    expect(inline.body.chunk).toEqual([]);

    // Filter ids are per user: bob has none with this id (unless by chance he stored one: he did not).
    for (const path of [`/rooms/${enc(roomId)}/messages?dir=b&filter=${enc(id)}`, `/rooms/${enc(roomId)}/context/${enc(sent[2]!)}?filter=999`]) {
      const r = await c.call(bob, 'GET', path);
      expect(r.status, path).toBe(400);
      expect(r.body.errcode).toBe('M_INVALID_PARAM');
    }
  });
});
