/**
 * `PUT /sendToDevice/{eventType}/{txnId}` end to end: a real front and workers on the test Redis,
 * accounts made over HTTP, messages read back with /sync's reader (src/sync/to-device.ts).
 * One device, `*`, retried transactions, validation errors, remote recipients, logout deleting
 * the inbox, and matrix-js-sdk's `sendToDevice`.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClientEvent, type MatrixEvent } from 'matrix-js-sdk';
import { createClient } from './sdk';
import { startTestServer, type TestServer } from './server-harness';
import type { ApiContext } from '../../src/api/context';
import { ActorClient } from '../../src/runtime/actor-client';
import { shardOf } from '../../src/store/shards';
import { KeySpace, userData } from '../../src/store/keys';
import { ackToDevice, readToDevice } from '../../src/sync/to-device';
import { waitFor } from '../runtime/harness';

type Json = Record<string, any>;

interface Session {
  userId: string;
  deviceId: string;
  token: string;
}

let server: TestServer;
let keys: KeySpace;
let actors: ActorClient;
let ctx: ApiContext;

async function call(s: Session | null, method: string, path: string, body?: unknown): Promise<{ status: number; body: Json }> {
  const r = await fetch(`${server.baseUrl}/_matrix/client/v3${path}`, {
    method,
    headers: { ...(s ? { Authorization: `Bearer ${s.token}` } : {}), 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: r.status, body: (await r.json()) as Json };
}

async function register(username: string, deviceId: string): Promise<Session> {
  const first = await call(null, 'POST', '/register', { username, password: 'pw-to-device', device_id: deviceId });
  const done = await call(null, 'POST', '/register', { username, password: 'pw-to-device', device_id: deviceId, auth: { type: 'm.login.dummy', session: first.body.session } });
  expect(done.status, JSON.stringify(done.body)).toBe(200);
  return { userId: done.body.user_id, deviceId: done.body.device_id, token: done.body.access_token };
}

async function login(userId: string, deviceId: string): Promise<Session> {
  const r = await call(null, 'POST', '/login', { type: 'm.login.password', identifier: { type: 'm.id.user', user: userId }, password: 'pw-to-device', device_id: deviceId });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return { userId, deviceId, token: r.body.access_token };
}

const txn = () => `t${randomBytes(6).toString('hex')}`;

function sendToDevice(s: Session, type: string, txnId: string, messages: unknown) {
  return call(s, 'PUT', `/sendToDevice/${encodeURIComponent(type)}/${encodeURIComponent(txnId)}`, { messages });
}

async function redisMs(): Promise<number> {
  const [sec, us] = (await server.redis.time()).map(Number) as [number, number];
  return Number(sec) * 1000 + Math.floor(Number(us) / 1000) + 1;
}

async function inbox(s: Session): Promise<Json[]> {
  return (await readToDevice(ctx, s.userId, s.deviceId, null, await redisMs(), 1000)).events;
}

let alice: Session;
let alice2: Session;
let bob1: Session;
let bob2: Session;

beforeAll(async () => {
  server = await startTestServer();
  keys = new KeySpace(server.config.redis.keyPrefix);
  const shardCounts = { room: server.config.shards.rooms, user: server.config.shards.users };
  actors = new ActorClient(server.redis, keys, shardCounts);
  await actors.start();
  ctx = { redis: server.redis, keys, shardCounts, actors } as unknown as ApiContext;
  alice = await register('alice', 'ALICE1');
  alice2 = await login(alice.userId, 'ALICE2');
  bob1 = await register('bob', 'BOB1');
  bob2 = await login(bob1.userId, 'BOB2');
});

afterAll(async () => {
  await actors?.close();
  await server?.stop();
});

describe('PUT /sendToDevice', () => {
  it('delivers to one device as {type, sender, content}, in order, and to no other', async () => {
    for (const n of [1, 2, 3]) {
      const r = await sendToDevice(alice, 'm.room_key_request', txn(), { [bob1.userId]: { BOB1: { n } } });
      expect(r).toEqual({ status: 200, body: {} });
    }
    expect(await inbox(bob1)).toEqual([1, 2, 3].map((n) => ({ type: 'm.room_key_request', sender: alice.userId, content: { n } })));
    expect(await inbox(bob2)).toEqual([]);
    await ackToDevice(ctx, bob1.userId, bob1.deviceId, `${await redisMs()}-0`);
    await waitFor('bob1 inbox acknowledged', async () => (await inbox(bob1)).length === 0);
  });

  it('`*` reaches every device of the user; several users in one request', async () => {
    const r = await sendToDevice(alice, 'm.dummy', txn(), { [bob1.userId]: { '*': { all: 1 } }, [alice.userId]: { ALICE2: { self: 1 } } });
    expect(r.status).toBe(200);
    expect(await inbox(bob1)).toEqual([{ type: 'm.dummy', sender: alice.userId, content: { all: 1 } }]);
    expect(await inbox(bob2)).toEqual([{ type: 'm.dummy', sender: alice.userId, content: { all: 1 } }]);
    expect(await inbox(alice2)).toEqual([{ type: 'm.dummy', sender: alice.userId, content: { self: 1 } }]);
    expect(await inbox(alice)).toEqual([]);
    for (const s of [bob1, bob2, alice2]) await ackToDevice(ctx, s.userId, s.deviceId, `${await redisMs()}-0`);
    await waitFor('inboxes acknowledged', async () => (await inbox(bob1)).length + (await inbox(bob2)).length + (await inbox(alice2)).length === 0);
  });

  it('a retried transaction delivers once (also when retries overlap); the txn id is scoped to the sending device', async () => {
    const id = txn();
    const msgs = { [bob2.userId]: { BOB2: { once: true } } };
    const results = await Promise.all([sendToDevice(alice, 'm.x', id, msgs), sendToDevice(alice, 'm.x', id, msgs)]);
    expect(results.map((r) => r.status)).toEqual([200, 200]);
    expect((await sendToDevice(alice, 'm.x', id, msgs)).status).toBe(200);
    expect(await inbox(bob2)).toHaveLength(1);
    // The same txn id from Alice's other device is another transaction.
    expect((await sendToDevice(alice2, 'm.x', id, msgs)).status).toBe(200);
    expect(await inbox(bob2)).toHaveLength(2);
    await ackToDevice(ctx, bob2.userId, bob2.deviceId, `${await redisMs()}-0`);
    await waitFor('bob2 inbox acknowledged', async () => (await inbox(bob2)).length === 0);
  });

  it('answers bad requests with Matrix errors and writes nothing', async () => {
    expect((await call(null, 'PUT', `/sendToDevice/m.x/${txn()}`, { messages: {} })).body.errcode).toBe('M_MISSING_TOKEN');
    const missing = await call(alice, 'PUT', `/sendToDevice/m.x/${txn()}`, {});
    expect(missing.status).toBe(400);
    expect(missing.body.errcode).toBe('M_MISSING_PARAM');
    const cases: [unknown, string][] = [
      [[], 'M_BAD_JSON'],
      ['not an object', 'M_BAD_JSON'],
      [{ [bob1.userId]: ['BOB1'] }, 'M_BAD_JSON'],
      [{ [bob1.userId]: { BOB1: 'text' } }, 'M_BAD_JSON'],
      [{ 'bob:localhost': { BOB1: {} } }, 'M_INVALID_PARAM'],
      [{ '@:localhost': { BOB1: {} } }, 'M_INVALID_PARAM'],
      // A valid recipient next to an invalid one: the whole request is refused, nothing is sent.
      [{ [bob1.userId]: { BOB1: { partial: 1 } }, '@bad user:localhost': { X: {} } }, 'M_INVALID_PARAM'],
    ];
    for (const [messages, errcode] of cases) {
      const r = await sendToDevice(alice, 'm.x', txn(), messages);
      expect(r.status, JSON.stringify(messages)).toBe(400);
      expect(r.body.errcode, JSON.stringify(messages)).toBe(errcode);
    }
    const notJson = await call(alice, 'PUT', `/sendToDevice/m.x/${txn()}`, '{"messages": ');
    expect(notJson.body.errcode).toBe('M_NOT_JSON');
    expect(await inbox(bob1)).toEqual([]);
  });

  it('skips remote users and unknown devices, and still answers 200', async () => {
    const r = await sendToDevice(alice, 'm.x', txn(), { '@someone:elsewhere.example': { DEV: { a: 1 } }, [bob1.userId]: { NOSUCH: { b: 1 } }, '@nobody:localhost': { '*': {} } });
    expect(r).toEqual({ status: 200, body: {} });
    expect(await inbox(bob1)).toEqual([]);
    expect(await inbox(bob2)).toEqual([]);
  });

  it('logging a device out deletes its inbox', async () => {
    const carol1 = await register('carol', 'CAROL1');
    const carol2 = await login(carol1.userId, 'CAROL2');
    expect((await sendToDevice(alice, 'm.x', txn(), { [carol1.userId]: { '*': { hi: 1 } } })).status).toBe(200);
    const key = keys.shard('user', shardOf(carol1.userId, server.config.shards.users)).data(userData.toDeviceInbox(carol1.userId, 'CAROL2'));
    expect(await server.redis.xlen(key)).toBe(1);
    expect((await call(carol2, 'POST', '/logout', {})).status).toBe(200);
    await waitFor('the logged-out device inbox to be deleted', async () => (await server.redis.exists(key)) === 0);
    expect(await inbox(carol1)).toHaveLength(1);
    // Messages to the deleted device are dropped; `*` reaches only the devices left.
    expect((await sendToDevice(alice, 'm.x', txn(), { [carol1.userId]: { CAROL2: { late: 1 }, } })).status).toBe(200);
    expect(await server.redis.exists(key)).toBe(0);
  });

  it('matrix-js-sdk: one client sends, the other receives it through its sync loop, once and in order', async () => {
    const dana = await register('dana', 'DANA1');
    const sender = createClient({ baseUrl: server.baseUrl, accessToken: alice.token, userId: alice.userId, deviceId: alice.deviceId });
    const receiver = createClient({ baseUrl: server.baseUrl, accessToken: dana.token, userId: dana.userId, deviceId: dana.deviceId });
    const seen: number[] = [];
    const all = new Promise<void>((resolve) => {
      receiver.on(ClientEvent.ToDeviceEvent, (event: MatrixEvent) => {
        if (event.getType() !== 'org.example.sdk.loop') return;
        expect(event.getSender()).toBe(alice.userId);
        seen.push(event.getContent().n as number);
        if (seen.length === 3) resolve();
      });
    });
    const prepared = new Promise<void>((resolve) => receiver.on(ClientEvent.Sync, (state) => state === 'PREPARED' && resolve()));
    await receiver.startClient({ initialSyncLimit: 1 });
    try {
      await prepared;
      for (const n of [1, 2, 3]) await sender.sendToDevice('org.example.sdk.loop', new Map([[dana.userId, new Map([['*', { n }]])]]));
      await all;
      // Later sync rounds do not deliver them again.
      await new Promise((r) => setTimeout(r, 500));
      expect(seen).toEqual([1, 2, 3]);
    } finally {
      receiver.stopClient();
      sender.stopClient();
    }
  });

  it('matrix-js-sdk sendToDevice delivers', async () => {
    const client = createClient({ baseUrl: server.baseUrl, accessToken: alice.token, userId: alice.userId, deviceId: alice.deviceId });
    try {
      await client.sendToDevice('org.example.sdk', new Map([[bob2.userId, new Map([['BOB2', { via: 'sdk' }]])]]));
    } finally {
      client.stopClient();
    }
    expect(await inbox(bob2)).toEqual([{ type: 'org.example.sdk', sender: alice.userId, content: { via: 'sdk' } }]);
  });
});
