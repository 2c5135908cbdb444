/** The shared rate limiter on a real Redis: buckets count across limiters (fronts), and a dead Redis falls back to local buckets. */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { RateLimiter } from '../../src/http/rate-limit';
import { MatrixError } from '../../src/http/errors';
import { KeySpace } from '../../src/store/keys';
import { connectRedis, type RedisClient } from '../../src/store/redis';
import { freePort } from '../setup/free-port';

let redis: RedisClient;
let keys: KeySpace;

beforeAll(() => {
  redis = connectRedis({ url: inject('redisUrl') });
  keys = new KeySpace(`rl${randomBytes(4).toString('hex')}:`);
});

afterAll(() => redis?.disconnect());

describe('RateLimiter (shared through Redis)', () => {
  it('two limiters (two fronts) draw from one bucket per key; other keys and limits are separate', async () => {
    const limits = { login: { burst: 4, perMinute: 60 }, client: { burst: 2, perMinute: 60 } };
    const a = new RateLimiter(limits, true, { redis, keys });
    const b = new RateLimiter(limits, true, { redis, keys });
    const waits = [await a.take('login', 'ip1'), await b.take('login', 'ip1'), await a.take('login', 'ip1'), await b.take('login', 'ip1')];
    expect(waits).toEqual([0, 0, 0, 0]);
    const refused = await b.take('login', 'ip1');
    expect(refused).toBeGreaterThan(900);
    expect(refused).toBeLessThanOrEqual(1000);
    expect(await a.take('login', 'ip1')).toBeGreaterThan(0);
    // A refused request is not counted: the wait does not grow.
    expect(await a.take('login', 'ip1')).toBeLessThanOrEqual(refused);
    expect(await a.take('login', 'ip2')).toBe(0);
    expect(await b.take('client', 'ip1')).toBe(0);
    expect(a.fallbacks + b.fallbacks).toBe(0);
    // 429 with retry_after_ms and Retry-After from either.
    const err = await a.check('login', 'ip1').then(() => null, (e: unknown) => e as MatrixError);
    expect(err?.status).toBe(429);
    expect(err?.toJSON()).toMatchObject({ errcode: 'M_LIMIT_EXCEEDED' });
    expect(Number(err?.headers?.['Retry-After'])).toBe(1);
    // Refills at the configured rate (60/min: one a second).
    await new Promise((r) => setTimeout(r, 1050));
    expect(await b.take('login', 'ip1')).toBe(0);
    expect(await a.take('login', 'ip1')).toBeGreaterThan(0);
    // The bucket's key expires once it would be full again.
    const ttl = await redis.pttl(keys.rateLimit('login', 'ip1'));
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(4_100);
  });

  it('refund gives one request back, across limiters; a full bucket has no key left', async () => {
    const limits = { failedLogin: { burst: 2, perMinute: 6 } };
    const a = new RateLimiter(limits, true, { redis, keys });
    const b = new RateLimiter(limits, true, { redis, keys });
    expect([await a.take('failedLogin', '@u:x'), await b.take('failedLogin', '@u:x')]).toEqual([0, 0]);
    expect(await a.take('failedLogin', '@u:x')).toBeGreaterThan(0);
    await b.refund('failedLogin', '@u:x');
    expect(await a.take('failedLogin', '@u:x')).toBe(0);
    expect(await b.take('failedLogin', '@u:x')).toBeGreaterThan(0);
    // Two refunds empty the count: the key is gone, the bucket is full again.
    await a.refund('failedLogin', '@u:x');
    await a.refund('failedLogin', '@u:x');
    expect(await redis.exists(keys.rateLimit('failedLogin', '@u:x'))).toBe(0);
    await a.refund('failedLogin', '@u:x'); // nothing to give back: still nothing stored
    expect(await redis.exists(keys.rateLimit('failedLogin', '@u:x'))).toBe(0);
    expect([await a.take('failedLogin', '@u:x'), await b.take('failedLogin', '@u:x')]).toEqual([0, 0]);
    expect(await a.take('failedLogin', '@u:x')).toBeGreaterThan(0);
    expect(a.fallbacks + b.fallbacks).toBe(0);
  });

  it('decides locally, and never fails the request, when Redis does not answer', async () => {
    const dead = connectRedis({ url: `redis://127.0.0.1:${await freePort()}` }, { maxRetriesPerRequest: 1, retryStrategy: () => 200, lazyConnect: true });
    try {
      const rl = new RateLimiter({ login: { burst: 2, perMinute: 60 } }, true, { redis: dead, keys, redisTimeoutMs: 50 });
      const started = Date.now();
      expect([await rl.take('login', 'x'), await rl.take('login', 'x')]).toEqual([0, 0]);
      expect(await rl.take('login', 'x')).toBeGreaterThan(0); // the local bucket still limits
      expect(Date.now() - started).toBeLessThan(1000);
      expect(rl.fallbacks).toBe(3);
      // A refund goes to the local bucket too.
      await rl.refund('login', 'x');
      expect(rl.fallbacks).toBe(4);
      expect(await rl.take('login', 'x')).toBe(0);
    } finally {
      dead.disconnect();
    }
  });

  it('does nothing, and asks nothing, when disabled', async () => {
    const rl = new RateLimiter({ login: { burst: 1, perMinute: 1 } }, false, { redis, keys });
    for (let i = 0; i < 5; i++) expect(await rl.take('login', 'z')).toBe(0);
    expect(await redis.exists(keys.rateLimit('login', 'z'))).toBe(0);
  });
});
