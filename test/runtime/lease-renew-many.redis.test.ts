/** lease-renew-many-1.lua: a worker's whole renewal round in one call, per key as lease-renew-1.lua. */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { connectRedis, runScript, type RedisClient } from '../../src/store/redis';

let redis: RedisClient;
beforeAll(() => {
  redis = connectRedis({ url: inject('redisUrl') });
});
afterAll(() => redis.disconnect());

describe('leaseRenewMany', () => {
  it('extends the leases the caller holds with their tokens, and reports the others', async () => {
    const p = `lrm${randomBytes(4).toString('hex')}:`;
    const [mine, stolen, handoff, gone] = ['a', 'b', 'c', 'd'].map((s) => `${p}{${s}}:lease`);
    await redis.hset(mine!, { owner: 'w1', token: '7', expires: '1' });
    await redis.hset(stolen!, { owner: 'w2', token: '9', expires: '1' });
    await redis.hset(handoff!, { owner: 'w1', token: '3', expires: '1', target: 'w3', target_expires: String(Date.now() + 60_000) });
    const t0 = Date.now();
    const res = (await runScript(redis, 'leaseRenewMany', [mine!, stolen!, handoff!, gone!], ['w1', 5000, '7', '8', '3', '1'])) as (number | string)[];
    expect(res).toEqual([1, '', 0, 'w2', 1, 'w3', 0, '']);
    // Renewed leases expire ttl from now; the others are untouched.
    expect(Number(await redis.hget(mine!, 'expires'))).toBeGreaterThanOrEqual(t0 + 4000);
    expect(Number(await redis.hget(handoff!, 'expires'))).toBeGreaterThanOrEqual(t0 + 4000);
    expect(await redis.hget(stolen!, 'expires')).toBe('1');
    expect(await redis.exists(gone!)).toBe(0);
    // A stale token for a lease still owned by the same worker is refused too (fencing).
    expect(await runScript(redis, 'leaseRenewMany', [mine!], ['w1', 5000, '6'])).toEqual([0, 'w1']);
  });
});
