/**
 * /sync on a Redis Cluster (the test setup's three masters): rooms spread over shards on every
 * node, messages sent while a user long-polls, and every message arrives exactly once and in
 * order per room — the cut is the earliest of the masters' clocks (src/api/client/sync.ts).
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './server-harness';
import { callJson } from './clients';

type Json = Record<string, any>;
interface Session {
  userId: string;
  token: string;
}
let server: TestServer;

const call = (s: Session | null, method: string, path: string, body?: unknown) => callJson(server, s, method, path, body);
async function ok(s: Session | null, method: string, path: string, body?: unknown): Promise<Json> {
  const r = await call(s, method, path, body);
  expect(r.status, `${method} ${path}: ${JSON.stringify(r.body)}`).toBe(200);
  return r.body;
}
async function register(name: string): Promise<Session> {
  const username = `${name}_${randomBytes(3).toString('hex')}`;
  const first = await call(null, 'POST', '/register', { username, password: 'pw-123456' });
  const done = await ok(null, 'POST', '/register', { username, password: 'pw-123456', auth: { type: 'm.login.dummy', session: first.body.session } });
  return { userId: done.user_id, token: done.access_token };
}
const enc = encodeURIComponent;

beforeAll(async () => {
  server = await startTestServer({ cluster: true });
});
afterAll(async () => {
  await server?.stop();
});

describe('/sync on a Redis Cluster', () => {
  it('delivers every message of rooms on every node exactly once, in order, across incremental syncs', async () => {
    const alice = await register('c_alice');
    const bob = await register('c_bob');
    const rooms: string[] = [];
    for (let i = 0; i < 8; i++) {
      const roomId = (await ok(alice, 'POST', '/createRoom', { preset: 'public_chat' })).room_id as string;
      await ok(bob, 'POST', `/join/${enc(roomId)}`, {});
      rooms.push(roomId);
    }
    // Bob's first sync sees all rooms; then messages go out while he keeps syncing.
    let since = '';
    for (let i = 0; i < 50; i++) {
      const b = await ok(bob, 'GET', '/sync?set_presence=offline');
      if (rooms.every((r) => b.rooms?.join?.[r])) {
        since = b.next_batch;
        break;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(since).not.toBe('');
    const got = new Map<string, string[]>(rooms.map((r) => [r, []]));
    const sending = (async () => {
      for (let n = 0; n < 10; n++) {
        await Promise.all(rooms.map((r, i) => ok(alice, 'PUT', `/rooms/${enc(r)}/send/m.room.message/t${n}-${i}`, { msgtype: 'm.text', body: `m${n}` })));
      }
    })();
    const deadline = Date.now() + 30_000;
    let done = false;
    while (!done && Date.now() < deadline) {
      const b = await ok(bob, 'GET', `/sync?set_presence=offline&timeout=1000&since=${since}`);
      since = b.next_batch;
      for (const r of rooms) {
        const tl = b.rooms?.join?.[r]?.timeline;
        if (!tl) continue;
        expect(tl.limited).toBe(false);
        for (const e of tl.events) if (e.type === 'm.room.message') got.get(r)!.push(e.content.body);
      }
      done = rooms.every((r) => got.get(r)!.length >= 10);
    }
    await sending;
    for (const r of rooms) expect(got.get(r)).toEqual(Array.from({ length: 10 }, (_, n) => `m${n}`));
  });
});
