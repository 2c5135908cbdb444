/**
 * The front's outbox window cache (src/sync/outbox-cache.ts) against a real Redis stream: windows
 * answered from memory match what XRANGE gives, concurrent syncs extend it with one read, a
 * `since` before the cached range falls back to Redis, trimmed windows are gaps.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { encode } from '../../src/store/codec';
import { connectRedis, type RedisClient } from '../../src/store/redis';
import { decodedBody, OutboxWindowCache } from '../../src/sync/outbox-cache';

let redis: RedisClient;
beforeAll(() => {
  redis = connectRedis({ url: inject('redisUrl') });
});
afterAll(() => redis.disconnect());

const opts = { retentionMs: 60 * 60_000, maxEntries: 10_000, maxWindow: 500, maxStreams: 100 };

async function add(stream: string, ms: number, n: number): Promise<void> {
  await redis.xadd(stream, `${ms}-*`, 'a', '!r:x', 'k', 'room', 'b', encode({ n }));
}

const ns = (entries: { body: Buffer }[] | null) => entries?.map((e) => (decodedBody<{ n: number }>(e as never) as { n: number }).n);

describe('OutboxWindowCache', () => {
  it('answers windows like XRANGE, extending the cached range as cuts move', async () => {
    const stream = `oc${randomBytes(4).toString('hex')}`;
    const base = Date.now() - 10_000;
    for (let i = 0; i < 10; i++) await add(stream, base + i * 10, i);
    const cache = new OutboxWindowCache(redis, opts);
    expect(ns(await cache.window(stream, base, base + 50))).toEqual([0, 1, 2, 3, 4]);
    expect(cache.misses).toBe(1);
    expect(ns(await cache.window(stream, base + 20, base + 100))).toEqual([2, 3, 4, 5, 6, 7, 8, 9]);
    expect(ns(await cache.window(stream, base + 45, base + 46))).toEqual([]);
    for (let i = 10; i < 15; i++) await add(stream, base + i * 10, i);
    // Many syncs at once: one extension read, the same answer for all.
    const all = await Promise.all(Array.from({ length: 50 }, () => cache.window(stream, base + 90, base + 1000)));
    for (const w of all) expect(ns(w)).toEqual([9, 10, 11, 12, 13, 14]);
    expect(cache.misses).toBe(1);
    expect(cache.hits).toBe(52);
    // Before the cached range: read from Redis.
    await redis.xadd(stream, `${base - 100}-*`, 'a', '!r:x', 'k', 'room', 'b', encode({ n: -1 })).catch(() => undefined);
    expect(ns(await cache.window(stream, base - 5000, base + 30))).toEqual([0, 1, 2]);
    expect(cache.misses).toBe(2);
  });

  it('a window of a trimmed part of the stream is a gap (null); a too-large one too', async () => {
    const stream = `oc${randomBytes(4).toString('hex')}`;
    const base = Date.now() - 10_000;
    for (let i = 0; i < 20; i++) await add(stream, base + i, i);
    await redis.xtrim(stream, 'MINID', `${base + 10}-0`);
    const cache = new OutboxWindowCache(redis, { ...opts, maxWindow: 5 });
    expect(await cache.window(stream, base + 5, base + 12)).toBeNull();
    expect(await cache.window(stream, base + 10, base + 30)).toBeNull(); // 10 entries > maxWindow
    expect(ns(await cache.window(stream, base + 10, base + 13))).toEqual([10, 11, 12]);
    expect(await cache.window(`nostream${randomBytes(3).toString('hex')}`, base, base + 1)).toEqual([]);
  });
});
