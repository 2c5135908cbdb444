/**
 * To-device inboxes on a real Redis with a real worker: the to-device actor appends, /sync's
 * `readToDevice` reads by time cut with a limit, `ackToDevice` deletes only what lies below the
 * acknowledged position (through the actor), and a deleted device's inbox is pruned.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rig, waitFor, type Rig } from '../runtime/harness';
import type { ApiContext } from '../../src/api/context';
import type { ActorClient } from '../../src/runtime/actor-client';
import { shardOf } from '../../src/store/shards';
import { userData } from '../../src/store/keys';
import { ackToDevice, readToDevice } from '../../src/sync/to-device';
import type { ToDeviceMessage, ToDeviceReply } from '../../actors/to-device';

const ALICE = '@alice:test.local';
let r: Rig;
let actors: ActorClient;
let ctx: ApiContext;
let n = 0;

function userKey(userId: string, name: string): string {
  return r.keys.shard('user', shardOf(userId, r.shardCounts.user)).data(name);
}

/** A user with devices, as the user actor would have written them. */
async function userWithDevices(localpart: string, devices: string[]): Promise<string> {
  const userId = `@${localpart}${++n}:test.local`;
  for (const d of devices) await r.redis.hset(userKey(userId, userData.devices(userId)), d, JSON.stringify({ device_id: d }));
  return userId;
}

function send(userId: string, messages: Record<string, string>, type = 'm.test'): Promise<ToDeviceReply> {
  const body: ToDeviceMessage = { op: 'send', sender: ALICE, type, messages };
  return actors.ask<ToDeviceReply>('user', 'todevice', userId, body);
}

async function redisMs(): Promise<number> {
  const [s, us] = (await r.redis.time()).map(Number) as [number, number];
  return Number(s) * 1000 + Math.floor(Number(us) / 1000);
}

async function inboxLength(userId: string, deviceId: string): Promise<number> {
  return r.redis.xlen(userKey(userId, userData.toDeviceInbox(userId, deviceId)));
}

beforeAll(async () => {
  r = await rig('single');
  await r.startWorker('w1');
  actors = await r.client();
  ctx = { redis: r.redis, keys: r.keys, shardCounts: r.shardCounts, actors } as unknown as ApiContext;
});

afterAll(async () => {
  await r?.close();
});

describe('to-device inboxes', () => {
  it('reads in order, by time cut, with limit and more', async () => {
    const bob = await userWithDevices('bob', ['D1', 'D2']);
    for (let i = 0; i < 5; i++) expect(await send(bob, { D1: JSON.stringify({ i }) })).toEqual({ delivered: ['D1'] });
    await new Promise((res) => setTimeout(res, 3));
    const cut = await redisMs();
    await new Promise((res) => setTimeout(res, 3));
    await send(bob, { D1: '{"i":"after the cut"}' });

    const all = await readToDevice(ctx, bob, 'D1', null, cut, 100);
    expect(all.events.map((e) => (e.content as { i: number }).i)).toEqual([0, 1, 2, 3, 4]);
    expect(all.events[0]).toEqual({ type: 'm.test', sender: ALICE, content: { i: 0 } });
    expect(all.more).toBe(false);

    const first = await readToDevice(ctx, bob, 'D1', null, cut, 2);
    expect(first.events.map((e) => (e.content as { i: number }).i)).toEqual([0, 1]);
    expect(first.more).toBe(true);
    const rest = await readToDevice(ctx, bob, 'D1', first.lastId, cut, 2);
    expect(rest.events.map((e) => (e.content as { i: number }).i)).toEqual([2, 3]);
    expect(rest.more).toBe(true);
    const last = await readToDevice(ctx, bob, 'D1', rest.lastId, cut, 2);
    expect(last.events.map((e) => (e.content as { i: number }).i)).toEqual([4]);
    expect(last.more).toBe(false);
    const none = await readToDevice(ctx, bob, 'D1', last.lastId, cut, 2);
    expect(none).toEqual({ events: [], lastId: null, more: false });

    // The later cut sees the message sent after the first one; the other device got nothing.
    const later = await readToDevice(ctx, bob, 'D1', last.lastId, (await redisMs()) + 1, 10);
    expect(later.events.map((e) => e.content)).toEqual([{ i: 'after the cut' }]);
    expect((await readToDevice(ctx, bob, 'D2', null, (await redisMs()) + 1, 10)).events).toEqual([]);
  });

  it('`*` reaches every current device', async () => {
    const carol = await userWithDevices('carol', ['A', 'B', 'C']);
    expect(((await send(carol, { '*': '{"all":true}' })) as { delivered: string[] }).delivered.sort()).toEqual(['A', 'B', 'C']);
    const now = (await redisMs()) + 1;
    for (const d of ['A', 'B', 'C']) expect((await readToDevice(ctx, carol, d, null, now, 10)).events).toEqual([{ type: 'm.test', sender: ALICE, content: { all: true } }]);
  });

  it('ack deletes only the entries below the position, through the actor; acking again changes nothing', async () => {
    const dave = await userWithDevices('dave', ['D1']);
    for (let i = 0; i < 4; i++) await send(dave, { D1: JSON.stringify({ i }) });
    const now = (await redisMs()) + 1;
    const two = await readToDevice(ctx, dave, 'D1', null, now, 2);
    // The client acknowledges the first two by syncing from a position just after the second.
    const [ms, seq] = two.lastId!.split('-');
    const keepFrom = `${ms}-${Number(seq) + 1}`;
    await ackToDevice(ctx, dave, 'D1', keepFrom);
    await waitFor('the ack to be applied', async () => (await inboxLength(dave, 'D1')) === 2);
    const left = await readToDevice(ctx, dave, 'D1', null, now, 10);
    expect(left.events.map((e) => (e.content as { i: number }).i)).toEqual([2, 3]);

    // Ack then read: reading from the start gives what is left; a repeated ack sends nothing.
    await ackToDevice(ctx, dave, 'D1', keepFrom);
    await ackToDevice(ctx, dave, 'D1', '0-0');
    await new Promise((res) => setTimeout(res, 200));
    expect(await inboxLength(dave, 'D1')).toBe(2);

    // Acknowledging everything up to a cut empties the inbox; new messages still arrive after it.
    await ackToDevice(ctx, dave, 'D1', `${now}-0`);
    await waitFor('the inbox to be emptied', async () => (await inboxLength(dave, 'D1')) === 0);
    await send(dave, { D1: '{"i":9}' });
    expect((await readToDevice(ctx, dave, 'D1', null, (await redisMs()) + 1, 10)).events.map((e) => e.content)).toEqual([{ i: 9 }]);
  });

  it('the same message id delivers once', async () => {
    const erin = await userWithDevices('erin', ['D1']);
    const body: ToDeviceMessage = { op: 'send', sender: ALICE, type: 'm.test', messages: { D1: '{"once":1}' } };
    await actors.ask('user', 'todevice', erin, body, { mid: 'fixed-mid' });
    await actors.ask('user', 'todevice', erin, body, { mid: 'fixed-mid' });
    expect(await inboxLength(erin, 'D1')).toBe(1);
  });

  it('prune deletes the inboxes of deleted devices only', async () => {
    const frank = await userWithDevices('frank', ['D1', 'D2']);
    await send(frank, { '*': '{}' });
    await r.redis.hdel(userKey(frank, userData.devices(frank)), 'D1');
    expect(await actors.ask('user', 'todevice', frank, { op: 'prune' } satisfies ToDeviceMessage)).toEqual({ deleted: ['D1'] });
    expect(await r.redis.exists(userKey(frank, userData.toDeviceInbox(frank, 'D1')))).toBe(0);
    expect(await inboxLength(frank, 'D2')).toBe(1);
  });
});
