/**
 * The front's cache of per-device key counts for /sync (src/sync/e2e-counts.ts): kept until a
 * notification names the user, or this front changes the user's keys itself.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { shardOf } from '../../src/store/shards';
import { KeySpace, e2eKeyData } from '../../src/store/keys';
import { connectRedis, type RedisClient } from '../../src/store/redis';
import { E2eCountsCache } from '../../src/sync/e2e-counts';
import type { ChangeMark } from '../../src/sync/notify';

let redis: RedisClient;
beforeAll(() => {
  redis = connectRedis({ url: inject('redisUrl') });
});
afterAll(() => redis.disconnect());

/** A notifier stand-in: `notify(user)` is a notification naming the user. */
function fakeNotifier() {
  let seq = 1;
  const last = new Map<string, number>();
  return {
    get changeMark(): ChangeMark {
      return { seq, at: 0 };
    },
    unchangedSince: (userId: string, _rooms: Iterable<string>, mark: ChangeMark) => (last.get(userId) ?? 0) <= mark.seq,
    notify(userId: string) {
      last.set(userId, ++seq);
    },
  };
}

describe('E2eCountsCache', () => {
  it('reads once, keeps the counts until the user is notified or forgotten', async () => {
    const keys = new KeySpace(`e2e${randomBytes(4).toString('hex')}:`);
    const ctx = { redis, keys, shardCounts: { room: 4, user: 4 } };
    const user = '@k:x';
    const countsKey = keys.shard('user', shardOf(user, 4)).data(e2eKeyData.oneTimeKeyCounts(user, 'D1'));
    const fallbackKey = keys.shard('user', shardOf(user, 4)).data(e2eKeyData.fallbackKeys(user, 'D1'));
    await redis.hset(countsKey, 'signed_curve25519', '5');
    await redis.hset(fallbackKey, 'signed_curve25519', JSON.stringify({ id: 'f', key: {}, used: false }));
    const notifier = fakeNotifier();
    const cache = new E2eCountsCache(notifier);
    expect(await cache.get(ctx, user, 'D1')).toEqual({ otk: { signed_curve25519: 5 }, fallback: ['signed_curve25519'] });
    // Changed behind its back, with no notification yet: still the kept counts.
    await redis.hset(countsKey, 'signed_curve25519', '4');
    expect((await cache.get(ctx, user, 'D1')).otk).toEqual({ signed_curve25519: 5 });
    // Another user's notification changes nothing; the user's own drops the counts.
    notifier.notify('@other:x');
    expect((await cache.get(ctx, user, 'D1')).otk).toEqual({ signed_curve25519: 5 });
    notifier.notify(user);
    expect((await cache.get(ctx, user, 'D1')).otk).toEqual({ signed_curve25519: 4 });
    // This front changed the keys itself: dropped at once.
    await redis.hset(fallbackKey, 'signed_curve25519', JSON.stringify({ id: 'f', key: {}, used: true }));
    cache.forget(user);
    expect(await cache.get(ctx, user, 'D1')).toEqual({ otk: { signed_curve25519: 4 }, fallback: [] });
  });
});
