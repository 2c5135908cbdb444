/**
 * The fan-out reader (src/readers/user-fanout.ts) coalesces a batch: when many members of a room
 * change presence together, each watcher gets one feed entry naming all of them, and /sync's feed
 * reader (src/sync/device-lists.ts) sees every change.
 */
import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { shardOf } from '../../src/store/shards';
import { encode } from '../../src/store/codec';
import { KeySpace, membershipIndexData, roomData, userData } from '../../src/store/keys';
import { connectRedis, type RedisClient } from '../../src/store/redis';
import { UserFanoutReader } from '../../src/readers/user-fanout';
import { readFeed } from '../../src/sync/device-lists';
import type { ApiContext } from '../../src/api/context';

let redis: RedisClient;
beforeAll(() => {
  redis = connectRedis({ url: inject('redisUrl') });
});
afterAll(() => redis.disconnect());

const shardCounts = { room: 8, user: 8 };

describe('UserFanoutReader', () => {
  it('gives each watcher one entry per batch naming every change it should see', async () => {
    const keys = new KeySpace(`fan${randomBytes(4).toString('hex')}:`);
    const room = '!big:x';
    const members = Array.from({ length: 40 }, (_, i) => `@m${i}:x`);
    const outsider = '@alone:x';
    await redis.hset(keys.shard('room', shardOf(room, 8)).data(roomData.members(room)), Object.fromEntries(members.map((u) => [u, 'join'])));
    for (const u of members) await redis.hset(keys.shard('user', shardOf(u, 8)).data(membershipIndexData.rooms(u)), room, '1:join');
    const reader = new UserFanoutReader(redis, keys, shardCounts, 'test', pino({ level: 'silent' }));
    const since = Date.now() - 1;
    // Ten members come online, one of them twice, and a device change of the outsider (self only: no rooms).
    const changed = members.slice(0, 10);
    const entries = [...changed, changed[0]!].map((u, i) => ({ id: `1-${i}`, entry: { kind: 'presence', actorId: u, body: encode({ type: 'presence', user_id: u, presence: 'online' }) } }));
    entries.push({ id: '1-99', entry: { kind: 'keys', actorId: outsider, body: encode({ type: 'device_list', user_id: outsider, self_only: true }) } });
    await (reader as unknown as { apply(s: number, e: typeof entries): Promise<void> }).apply(0, entries);

    const feedLength = (u: string) => redis.xlen(keys.shard('user', shardOf(u, 8)).data(userData.feed(u)));
    const ctx = { redis, keys, shardCounts } as unknown as ApiContext;
    for (const w of members) {
      expect(await feedLength(w)).toBe(1); // one entry for the whole batch
      const feed = await readFeed(ctx, w, since, Date.now() + 1000);
      expect([...feed.presence].sort()).toEqual([...changed].sort());
      expect(feed.devices.size).toBe(0);
    }
    expect(await feedLength(outsider)).toBe(1);
    const own = await readFeed(ctx, outsider, since, Date.now() + 1000);
    expect([...own.devices]).toEqual([outsider]);
    expect(own.presence.size).toBe(0);
  });
  it('merges the batches of several shards that arrive while a feed write runs, each change named once', async () => {
    const keys = new KeySpace(`fan${randomBytes(4).toString('hex')}:`);
    const room = '!many:x';
    const members = Array.from({ length: 30 }, (_, i) => `@n${i}:x`);
    await redis.hset(keys.shard('room', shardOf(room, 8)).data(roomData.members(room)), Object.fromEntries(members.map((u) => [u, 'join'])));
    for (const u of members) await redis.hset(keys.shard('user', shardOf(u, 8)).data(membershipIndexData.rooms(u)), room, '1:join');
    const reader = new UserFanoutReader(redis, keys, shardCounts, 'test', pino({ level: 'silent' }));
    const apply = (reader as unknown as { apply(s: number, e: unknown[]): Promise<void> }).apply.bind(reader);
    const since = Date.now() - 1;
    // Every member's presence changes, each in its own shard's batch, all at once; then a device change.
    const online = (u: string, i: number) => ({ id: `1-${i}`, entry: { kind: 'presence', actorId: u, body: encode({ type: 'presence', user_id: u, presence: 'online' }) } });
    await Promise.all(members.map((u, i) => apply(i % 8, [online(u, i)])));
    await apply(0, [{ id: '2-0', entry: { kind: 'user', actorId: members[3]!, body: encode({ type: 'device', user_id: members[3]! }) } }]);
    const ctx = { redis, keys, shardCounts } as unknown as ApiContext;
    for (const w of members) {
      const feed = await readFeed(ctx, w, since, Date.now() + 1000);
      expect([...feed.presence].sort()).toEqual([...members].sort());
      expect([...feed.devices]).toEqual([members[3]]);
    }
    // Batches queued while no write has started yet go into one write: one entry per watcher.
    const append = (reader as unknown as { append(m: Map<string, ['d' | 'p', string][]>): Promise<void> }).append.bind(reader);
    const w0 = members[5]!;
    const key0 = keys.shard('user', shardOf(w0, 8)).data(userData.feed(w0));
    const before = await redis.xlen(key0);
    await Promise.all([append(new Map([[w0, [['p', '@a:x']]]])), append(new Map([[w0, [['p', '@a:x'], ['d', '@b:x']]]]))]);
    expect(await redis.xlen(key0)).toBe(before + 1);
    const newest = (await redis.xrevrange(key0, '+', '-', 'COUNT', 1)) as [string, string[]][];
    expect(newest[0]?.[1]).toEqual(['d', '@b:x', 'p', '@a:x']);
    // Entries written before the compact fields (`k <kind> u <user>` pairs) are still read.
    const legacy = keys.shard('user', shardOf(members[0]!, 8)).data(userData.feed(members[0]!));
    await redis.xadd(legacy, '*', 'k', 'd', 'u', '@old:x', 'k', 'p', 'u', '@older:x');
    const feed = await readFeed(ctx, members[0]!, since, Date.now() + 1000);
    expect(feed.devices.has('@old:x') && feed.presence.has('@older:x')).toBe(true);
  });
  it("a user's signature of other users' master keys lists those users as changed for that user alone", async () => {
    const keys = new KeySpace(`fan${randomBytes(4).toString('hex')}:`);
    const signer = '@signer:x';
    const signed = ['@remote:elsewhere.example', '@local:x'];
    const reader = new UserFanoutReader(redis, keys, shardCounts, 'test', pino({ level: 'silent' }));
    const since = Date.now() - 1;
    const entries = [{ id: '1-1', entry: { kind: 'keys', actorId: signer, body: encode({ type: 'device_list', user_id: signer, self_only: true, signed_users: signed }) } }];
    await (reader as unknown as { apply(s: number, e: typeof entries): Promise<void> }).apply(0, entries);
    const ctx = { redis, keys, shardCounts } as unknown as ApiContext;
    const feed = await readFeed(ctx, signer, since, Date.now() + 1000);
    expect([...feed.devices].sort()).toEqual([signer, ...signed].sort());
    // The signed users' own feeds hear nothing: the signature is the signer's business.
    expect(await redis.xlen(keys.shard('user', shardOf('@local:x', 8)).data(userData.feed('@local:x')))).toBe(0);
  });
});
