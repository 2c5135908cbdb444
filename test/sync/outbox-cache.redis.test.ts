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

  it('takes a part read elsewhere (the sync snapshot script) only where its range ends, and then reads nothing for it', async () => {
    const stream = `oc${randomBytes(4).toString('hex')}`;
    const base = Date.now() - 10_000;
    for (let i = 0; i < 5; i++) await add(stream, base + i * 10, i);
    const cache = new OutboxWindowCache(redis, opts);
    expect(cache.knownEnd(stream)).toBeNull();
    expect(ns(await cache.window(stream, base, base + 50))).toEqual([0, 1, 2, 3, 4]);
    expect(cache.knownEnd(stream)).toBe(base + 50);
    for (let i = 5; i < 8; i++) await add(stream, base + i * 10, i);
    const part = (await redis.xrangeBuffer(stream, `${base + 50}-0`, `(${base + 80}-0`)) as [Buffer, Buffer[]][];
    // Not where the range ends: dropped (nothing held changes).
    cache.absorb(stream, base + 40, base + 80, part);
    expect(cache.knownEnd(stream)).toBe(base + 50);
    cache.absorb(stream, base + 50, base + 80, part);
    expect(cache.knownEnd(stream)).toBe(base + 80);
    // Answered from memory with what was absorbed (the stream is gone from Redis now).
    await redis.del(stream);
    expect(ns(await cache.window(stream, base + 30, base + 80))).toEqual([3, 4, 5, 6, 7]);
    expect(cache.misses).toBe(1);
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

  it('keeps its entries within maxBytes: least recently used streams first, then the oldest half; windows stay exact', async () => {
    const streams = Array.from({ length: 3 }, () => `ob${randomBytes(4).toString('hex')}`);
    const base = Date.now() - 10_000;
    for (const s of streams) for (let i = 0; i < 20; i++) await add(s, base + i * 10, i);
    // Each entry weighs 160 + 4 × body bytes; room for about 25 entries in all.
    const entryBytes = 160 + 4 * encode({ n: 1 }).length;
    const cache = new OutboxWindowCache(redis, { ...opts, maxBytes: 25 * entryBytes });
    const all = Array.from({ length: 20 }, (_x, i) => i);
    expect(ns(await cache.window(streams[0]!, base, base + 1000))).toEqual(all);
    expect(cache.bytes).toBeLessThanOrEqual(25 * entryBytes);
    expect(ns(await cache.window(streams[1]!, base, base + 1000))).toEqual(all);
    // The first stream went (least recently used); the second is held whole.
    expect(cache.bytes).toBe(20 * entryBytes + 0);
    const misses = cache.misses;
    expect(ns(await cache.window(streams[1]!, base + 50, base + 1000))).toEqual(all.slice(5));
    expect(cache.misses).toBe(misses);
    // Asked again, the first is read from Redis and is exact.
    expect(ns(await cache.window(streams[0]!, base + 100, base + 1000))).toEqual(all.slice(10));
    expect(cache.misses).toBe(misses + 1);
    expect(cache.bytes).toBeLessThanOrEqual(25 * entryBytes);
    // One stream over the bound alone keeps its newer half; an older window then comes from Redis, whole.
    const small = new OutboxWindowCache(redis, { ...opts, maxBytes: 12 * entryBytes });
    expect(ns(await small.window(streams[2]!, base, base + 195))).toEqual(all);
    expect(small.bytes).toBeLessThanOrEqual(12 * entryBytes);
    expect(ns(await small.window(streams[2]!, base, base + 195))).toEqual(all);
    for (let i = 20; i < 30; i++) await add(streams[2]!, base + i * 10, i);
    expect(ns(await small.window(streams[2]!, base + 150, base + 1000))).toEqual(Array.from({ length: 15 }, (_x, i) => i + 15));
    expect(small.bytes).toBeLessThanOrEqual(12 * entryBytes);
  });
});
