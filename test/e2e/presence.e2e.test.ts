/**
 * Presence and device list changes end to end (actors/presence.ts, src/readers/user-fanout.ts,
 * src/sync/device-lists.ts): a real front and workers on the test Redis, raw HTTP, and a
 * matrix-js-sdk client seeing presence through its sync loop.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClientEvent, UserEvent, type MatrixClient } from 'matrix-js-sdk';
import { createClient } from './sdk';
import { startTestServer, type TestServer } from './server-harness';
import { callJson } from './clients';

type Json = Record<string, any>;
interface Session {
  userId: string;
  deviceId: string;
  token: string;
}

let server: TestServer;
let off: TestServer;

const call = (srv: TestServer, s: Session | null, method: string, path: string, body?: unknown) => callJson(srv, s, method, path, body);
async function ok(s: Session, method: string, path: string, body?: unknown, srv = server): Promise<Json> {
  const r = await call(srv, s, method, path, body);
  expect(r.status, `${method} ${path}: ${JSON.stringify(r.body)}`).toBe(200);
  return r.body;
}
const enc = encodeURIComponent;

async function register(name: string, srv = server): Promise<Session> {
  const username = `${name}_${randomBytes(3).toString('hex')}`;
  const first = await call(srv, null, 'POST', '/register', { username, password: 'pw-123456' });
  const done = await call(srv, null, 'POST', '/register', { username, password: 'pw-123456', auth: { type: 'm.login.dummy', session: first.body.session } });
  expect(done.status, JSON.stringify(done.body)).toBe(200);
  return { userId: done.body.user_id, deviceId: done.body.device_id, token: done.body.access_token };
}

async function login(s: Session): Promise<Session> {
  const r = await call(server, null, 'POST', '/login', { type: 'm.login.password', identifier: { type: 'm.id.user', user: s.userId }, password: 'pw-123456' });
  expect(r.status).toBe(200);
  return { userId: r.body.user_id, deviceId: r.body.device_id, token: r.body.access_token };
}

async function sync(s: Session, query: Record<string, string> = {}, srv = server): Promise<Json> {
  return ok(s, 'GET', `/sync?${new URLSearchParams({ set_presence: 'offline', ...query })}`, undefined, srv);
}

/** Long-poll from `since` until `pick` is satisfied; returns the body that satisfied it. */
async function until(s: Session, since: string, pick: (b: Json) => boolean, ms = 10_000): Promise<Json> {
  const deadline = Date.now() + ms;
  for (;;) {
    const b = await sync(s, { since, timeout: '1000' });
    if (pick(b)) return b;
    if (Date.now() > deadline) throw new Error(`condition not met; last body ${JSON.stringify(b).slice(0, 500)}`);
    since = b.next_batch;
  }
}

const presenceOf = (b: Json, userId: string): Json | undefined => (b.presence?.events ?? []).filter((e: Json) => e.sender === userId).at(-1);

async function sharedRoom(a: Session, b: Session): Promise<string> {
  const roomId = (await ok(a, 'POST', '/createRoom', { preset: 'private_chat', invite: [b.userId] })).room_id as string;
  await ok(b, 'POST', `/join/${enc(roomId)}`, {});
  return roomId;
}

beforeAll(async () => {
  server = await startTestServer();
  off = await startTestServer({ configure: (c) => (c.presence = { enabled: false }) });
});
afterAll(async () => {
  await server?.stop();
  await off?.stop();
});

describe('presence', () => {
  it('PUT reaches users sharing a room, with status message and activity; GET follows the same rule', async () => {
    const alice = await register('p_alice');
    const bob = await register('p_bob');
    const eve = await register('p_eve');
    await sharedRoom(alice, bob);
    const since = (await sync(bob)).next_batch;
    await ok(alice, 'PUT', `/presence/${enc(alice.userId)}/status`, { presence: 'online', status_msg: 'Lunch soon' });
    const b = await until(bob, since, (x) => presenceOf(x, alice.userId)?.content.status_msg === 'Lunch soon');
    const p = presenceOf(b, alice.userId)!;
    expect(p.type).toBe('m.presence');
    expect(p.content).toMatchObject({ presence: 'online', status_msg: 'Lunch soon', currently_active: true });
    expect(p.content.last_active_ago).toBeGreaterThanOrEqual(0);
    expect(await ok(bob, 'GET', `/presence/${enc(alice.userId)}/status`)).toMatchObject({ presence: 'online', status_msg: 'Lunch soon' });
    expect(await ok(alice, 'GET', `/presence/${enc(alice.userId)}/status`)).toMatchObject({ presence: 'online' });
    // No shared room: neither the feed nor GET shows it.
    expect((await call(server, eve, 'GET', `/presence/${enc(alice.userId)}/status`)).body.errcode).toBe('M_FORBIDDEN');
    expect(presenceOf(await sync(eve), alice.userId)).toBeUndefined();

    await ok(alice, 'PUT', `/presence/${enc(alice.userId)}/status`, { presence: 'unavailable' });
    const later = await until(bob, b.next_batch, (x) => presenceOf(x, alice.userId)?.content.presence === 'unavailable');
    expect(presenceOf(later, alice.userId)!.content.status_msg).toBe('Lunch soon');
    // An initial sync shows present users (alice), not offline ones (eve never came online).
    const full = await sync(bob);
    expect(presenceOf(full, alice.userId)?.content.presence).toBe('unavailable');
  });

  it('syncing with set_presence makes a user present; errors for bad input and other users', async () => {
    const alice = await register('p_alice2');
    const bob = await register('p_bob2');
    await sharedRoom(alice, bob);
    const since = (await sync(bob)).next_batch;
    await sync(alice, { set_presence: 'online' });
    const b = await until(bob, since, (x) => presenceOf(x, alice.userId)?.content.presence === 'online');
    expect(presenceOf(b, alice.userId)!.content.presence).toBe('online');
    expect((await call(server, alice, 'PUT', `/presence/${enc(bob.userId)}/status`, { presence: 'online' })).body.errcode).toBe('M_FORBIDDEN');
    const bad = await call(server, alice, 'PUT', `/presence/${enc(alice.userId)}/status`, { presence: 'busy' });
    expect([bad.status, bad.body.errcode]).toEqual([400, 'M_BAD_JSON']);
    expect((await call(server, alice, 'GET', `/sync?set_presence=dancing`)).body.errcode).toBe('M_INVALID_PARAM');
  });

  it('with presence disabled, PUT is accepted and ignored and GET answers offline', async () => {
    const alice = await register('p_off', off);
    await ok(alice, 'PUT', `/presence/${enc(alice.userId)}/status`, { presence: 'online', status_msg: 'hi' }, off);
    expect(await ok(alice, 'GET', `/presence/${enc(alice.userId)}/status`, undefined, off)).toEqual({ presence: 'offline' });
    expect((await sync(alice, { set_presence: 'online' }, off)).presence.events).toEqual([]);
  });

  it('matrix-js-sdk sees another user’s presence change', async () => {
    const aliceS = await register('p_sdk_a');
    const bobS = await register('p_sdk_b');
    await sharedRoom(aliceS, bobS);
    const bob: MatrixClient = createClient({ baseUrl: server.baseUrl, accessToken: bobS.token, userId: bobS.userId, deviceId: bobS.deviceId });
    const ready = new Promise<void>((resolve) => bob.on(ClientEvent.Sync, (state) => state === 'PREPARED' && resolve()));
    await bob.startClient({ initialSyncLimit: 5 });
    try {
      await ready;
      const seen = new Promise<void>((resolve) => {
        bob.on(UserEvent.Presence, (_e, user) => {
          if (user?.userId === aliceS.userId && user.presence === 'online' && user.presenceStatusMsg === 'from the sdk test') resolve();
        });
      });
      await ok(aliceS, 'PUT', `/presence/${enc(aliceS.userId)}/status`, { presence: 'online', status_msg: 'from the sdk test' });
      await seen;
      expect(bob.getUser(aliceS.userId)?.presence).toBe('online');
    } finally {
      bob.stopClient();
    }
  });
});

describe('device_lists', () => {
  it('a new device of someone sharing a room is `changed`; a joiner is `changed`; someone who left every shared room is `left`', async () => {
    const alice = await register('d_alice');
    const bob = await register('d_bob');
    const roomId = await sharedRoom(alice, bob);
    let since = (await sync(alice)).next_batch;
    await login(bob); // a second device
    const b1 = await until(alice, since, (x) => (x.device_lists?.changed ?? []).includes(bob.userId));
    expect(b1.device_lists.left ?? []).not.toContain(bob.userId);
    since = b1.next_batch;

    const carol = await register('d_carol');
    await ok(alice, 'POST', `/rooms/${enc(roomId)}/invite`, { user_id: carol.userId });
    await ok(carol, 'POST', `/join/${enc(roomId)}`, {});
    const b2 = await until(alice, since, (x) => (x.device_lists?.changed ?? []).includes(carol.userId));
    since = b2.next_batch;

    await ok(bob, 'POST', `/rooms/${enc(roomId)}/leave`, {});
    const b3 = await until(alice, since, (x) => (x.device_lists?.left ?? []).includes(bob.userId));
    expect(b3.device_lists.changed ?? []).not.toContain(bob.userId);
    // Nobody who shares no room hears of bob's devices any more.
    const aliceSince = b3.next_batch;
    await login(bob);
    const quiet = await sync(alice, { since: aliceSince, timeout: '1500' });
    expect(quiet.device_lists?.changed ?? []).not.toContain(bob.userId);
  });

  it('the user who joins a room gets its members as changed', async () => {
    const alice = await register('d_alice2');
    const bob = await register('d_bob2');
    const roomId = (await ok(alice, 'POST', '/createRoom', { preset: 'public_chat' })).room_id as string;
    const since = (await sync(bob)).next_batch;
    await ok(bob, 'POST', `/join/${enc(roomId)}`, {});
    const b = await until(bob, since, (x) => (x.device_lists?.changed ?? []).includes(alice.userId));
    expect(b.rooms.join[roomId]).toBeDefined();
  });
});
