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
import { FEED_SEPARATOR, feedFields, UserFanoutReader } from '../../src/readers/user-fanout';
import { feedWindowOf, readFeed } from '../../src/sync/device-lists';
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
  it("the batches of many shards applied together are one flush: one entry per watcher, every change in it", async () => {
    const keys = new KeySpace(`fan${randomBytes(4).toString('hex')}:`);
    const room = '!wide:x';
    const members = Array.from({ length: 60 }, (_, i) => `@w${i}:x`);
    await redis.hset(keys.shard('room', shardOf(room, 8)).data(roomData.members(room)), Object.fromEntries(members.map((u) => [u, 'join'])));
    for (const u of members) await redis.hset(keys.shard('user', shardOf(u, 8)).data(membershipIndexData.rooms(u)), room, '1:join');
    const reader = new UserFanoutReader(redis, keys, shardCounts, 'test', pino({ level: 'silent' }));
    const apply = (reader as unknown as { apply(s: number, e: { id: string; entry: unknown }[]): Promise<void> }).apply.bind(reader);
    const since = Date.now() - 1;
    // Every member comes online, each change in the batch of its own user shard, the shards' pumps
    // applying at once (as after a restart, or B's thousand members starting to sync).
    const byShard = new Map<number, string[]>();
    for (const u of members) byShard.set(shardOf(u, 8), [...(byShard.get(shardOf(u, 8)) ?? []), u]);
    expect(byShard.size).toBeGreaterThan(1);
    await Promise.all([...byShard].map(([shard, us]) => apply(shard, us.map((u, i) => ({ id: `1-${i}`, entry: { kind: 'presence', actorId: u, body: encode({ type: 'presence', user_id: u, presence: 'online' }) } })))));
    const ctx = { redis, keys, shardCounts } as unknown as ApiContext;
    for (const w of members) {
      expect(await redis.xlen(keys.shard('user', shardOf(w, 8)).data(userData.feed(w)))).toBe(1);
      const feed = await readFeed(ctx, w, since, Date.now() + 1000);
      expect([...feed.presence].sort()).toEqual([...members].sort());
    }
    // A batch that comes while a flush writes goes into the next flush, and its apply waits for it.
    const late = '@late:x';
    await redis.hset(keys.shard('room', shardOf(room, 8)).data(roomData.members(room)), late, 'join');
    await redis.hset(keys.shard('user', shardOf(late, 8)).data(membershipIndexData.rooms(late)), room, '1:join');
    const first = apply(0, [{ id: '2-1', entry: { kind: 'presence', actorId: members[0]!, body: encode({ type: 'presence', user_id: members[0]!, presence: 'unavailable' }) } }]);
    await new Promise((r) => setImmediate(r));
    const second = apply(1, [{ id: '2-2', entry: { kind: 'presence', actorId: late, body: encode({ type: 'presence', user_id: late, presence: 'online' }) } }]);
    await second;
    const after = await readFeed(ctx, members[5]!, since, Date.now() + 1000);
    expect(after.presence.has(late)).toBe(true);
    await first;
    expect((await readFeed(ctx, late, since, Date.now() + 1000)).presence.has(late)).toBe(true);
  });
  it("a flush that fails fails every batch in it (they stay pending and are applied again)", async () => {
    const keys = new KeySpace(`fan${randomBytes(4).toString('hex')}:`);
    const room = '!broken:x';
    const u = '@b1:x';
    // The room's members hash is of the wrong type: reading the watchers fails.
    await redis.set(keys.shard('room', shardOf(room, 8)).data(roomData.members(room)), 'not a hash');
    await redis.hset(keys.shard('user', shardOf(u, 8)).data(membershipIndexData.rooms(u)), room, '1:join');
    const reader = new UserFanoutReader(redis, keys, shardCounts, 'test', pino({ level: 'silent' }));
    const apply = (reader as unknown as { apply(s: number, e: { id: string; entry: unknown }[]): Promise<void> }).apply.bind(reader);
    const entry = (id: string) => ({ id, entry: { kind: 'presence', actorId: u, body: encode({ type: 'presence', user_id: u, presence: 'online' }) } });
    const results = await Promise.allSettled([apply(0, [entry('1-1')]), apply(1, [entry('1-2')])]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    // Fixed, the retry goes through.
    await redis.del(keys.shard('room', shardOf(room, 8)).data(roomData.members(room)));
    await redis.hset(keys.shard('room', shardOf(room, 8)).data(roomData.members(room)), u, 'join');
    await apply(0, [entry('1-1')]);
    const ctx = { redis, keys, shardCounts } as unknown as ApiContext;
    expect([...(await readFeed(ctx, u, Date.now() - 60_000, Date.now() + 1000)).presence]).toEqual([u]);
  });
  it('a feed entry lists each kind\'s users in one field; entries of the pair format, and odd ids, still read', async () => {
    const keys = new KeySpace(`fan${randomBytes(4).toString('hex')}:`);
    const room = '!fmt:x';
    const members = Array.from({ length: 30 }, (_, i) => `@f${i}:x`);
    await redis.hset(keys.shard('room', shardOf(room, 8)).data(roomData.members(room)), Object.fromEntries(members.map((u) => [u, 'join'])));
    for (const u of members) await redis.hset(keys.shard('user', shardOf(u, 8)).data(membershipIndexData.rooms(u)), room, '1:join');
    const reader = new UserFanoutReader(redis, keys, shardCounts, 'test', pino({ level: 'silent' }));
    const since = Date.now() - 1;
    const entries = [
      ...members.map((u, i) => ({ id: `1-${i}`, entry: { kind: 'presence', actorId: u, body: encode({ type: 'presence', user_id: u, presence: 'online' }) } })),
      { id: '1-50', entry: { kind: 'user', actorId: members[3]!, body: encode({ type: 'device', user_id: members[3]! }) } },
    ];
    await (reader as unknown as { apply(s: number, e: typeof entries): Promise<void> }).apply(0, entries);
    const feed = keys.shard('user', shardOf(members[7]!, 8)).data(userData.feed(members[7]!));
    const fields = ((await redis.xrange(feed, '-', '+')) as [string, string[]][])[0]![1];
    // Two fields for 31 changes: the presence changes' users, then the device change's.
    expect(fields.length).toBe(4);
    expect(fields[0]).toBe('p');
    expect(fields[1]!.split(FEED_SEPARATOR).sort()).toEqual([...members].sort());
    expect(fields.slice(2)).toEqual(['d', members[3]]);
    const ctx = { redis, keys, shardCounts } as unknown as ApiContext;
    // An entry of the first format (a worker of before) in the same window.
    await redis.xadd(feed, '*', 'k', 'd', 'u', '@old:y', 'k', 'p', 'u', '@older:y');
    const read = await readFeed(ctx, members[7]!, since, Date.now() + 1000);
    expect([...read.presence].sort()).toEqual([...members, '@older:y'].sort());
    expect([...read.devices].sort()).toEqual([members[3]!, '@old:y'].sort());
    // A user id holding the separator is written, and read back, whole.
    const odd = `@odd${FEED_SEPARATOR}x:y`;
    const oddFields = feedFields([['p', '@a:x'], ['p', odd]]);
    expect(oddFields).toEqual(['k', 'p', 'u', '@a:x', 'k', 'p', 'u', odd]);
    expect([...feedWindowOf(false, [['1-1', oddFields]]).presence].sort()).toEqual(['@a:x', odd].sort());
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
