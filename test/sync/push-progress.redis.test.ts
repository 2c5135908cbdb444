/**
 * The push evaluator's progress as a front follows it (src/sync/push-progress.ts), on a real Redis:
 * a sync about to send unread counts waits until the evaluator has finished the events it sends.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { KeySpace, pushData } from '../../src/store/keys';
import { connectRedis, type RedisClient } from '../../src/store/redis';
import { PushProgress, laterId } from '../../src/sync/push-progress';

let redis: RedisClient;
beforeAll(() => {
  redis = connectRedis({ url: inject('redisUrl') });
});
afterAll(() => redis.disconnect());

function setup(o = { capMs: 400, recheckMs: 100 }) {
  const keys = new KeySpace(`pp${randomBytes(4).toString('hex')}:`);
  const progressKey = (shard: number) => keys.shard('room', shard).data(pushData.evaluatedUpTo());
  return { keys, progressKey, progress: new PushProgress(redis, keys, o) };
}

describe('PushProgress', () => {
  it('does not wait on a shard the evaluator never wrote progress for', async () => {
    const { progress } = setup();
    const t0 = Date.now();
    expect(await progress.waitFor(3, '1000-0')).toBe(true);
    expect(Date.now() - t0).toBeLessThan(300);
    expect(progress.waits).toBe(0);
  });

  it('answers at once when the recorded progress is past the entry', async () => {
    const { progress, progressKey } = setup();
    await redis.set(progressKey(1), '2000-5');
    expect(await progress.waitFor(1, '2000-5')).toBe(true);
    expect(await progress.waitFor(1, '1999-9')).toBe(true);
    expect(progress.waits).toBe(0);
  });

  it('waits for the notification that passes the entry, comparing ids numerically', async () => {
    const { progress, progressKey } = setup({ capMs: 5000, recheckMs: 5000 });
    await redis.set(progressKey(2), '2000-9');
    let done = false;
    const w = progress.waitFor(2, '2000-10').then((v) => ((done = true), v));
    await new Promise((r) => setTimeout(r, 50));
    progress.advance(2, '2000-9'); // not past it (10 > 9 as numbers, not as strings)
    progress.advance(1, '9999-0'); // another shard
    await new Promise((r) => setTimeout(r, 50));
    expect(done).toBe(false);
    progress.advance(2, '2000-10');
    expect(await w).toBe(true);
    expect(progress.waits).toBe(1);
  });

  it('finds progress whose notification was lost by reading the key again', async () => {
    const { progress, progressKey } = setup({ capMs: 3000, recheckMs: 100 });
    await redis.set(progressKey(4), '100-0');
    const w = progress.waitFor(4, '200-0');
    await new Promise((r) => setTimeout(r, 30));
    await redis.set(progressKey(4), '300-0'); // no advance() call: the publish was lost
    expect(await w).toBe(true);
    expect(progress.timeouts).toBe(0);
  });

  it('gives up after the cap when the evaluator does not move', async () => {
    const { progress, progressKey } = setup({ capMs: 300, recheckMs: 100 });
    await redis.set(progressKey(5), '100-0');
    const t0 = Date.now();
    expect(await progress.waitFor(5, '200-0')).toBe(false);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
    expect(progress.timeouts).toBe(1);
  });

  it('never moves backwards', async () => {
    const { progress, progressKey } = setup({ capMs: 200, recheckMs: 1000 });
    await redis.set(progressKey(6), '500-0');
    expect(await progress.waitFor(6, '500-0')).toBe(true);
    progress.advance(6, '400-0');
    expect(await progress.waitFor(6, '450-0')).toBe(true);
  });

  it('laterId compares stream ids as numbers', () => {
    expect(laterId('2000-10', '2000-9')).toBe('2000-10');
    expect(laterId('999-0', '1000-0')).toBe('1000-0');
  });
});

describe('PushProgress on a stuck evaluator', () => {
  it('waits out the cap once, then answers at once until the progress moves again', async () => {
    const { progress, progressKey } = setup({ capMs: 200, recheckMs: 100 });
    await redis.set(progressKey(7), '100-0');
    expect(await progress.waitFor(7, '200-0')).toBe(false); // one capped wait
    const t0 = Date.now();
    expect(await progress.waitFor(7, '300-0')).toBe(false); // stalled: no second wait
    expect(Date.now() - t0).toBeLessThan(100);
    expect(progress.timeouts).toBe(1);
    progress.advance(7, '250-0'); // it moves: waited on again
    const w = progress.waitFor(7, '300-0');
    progress.advance(7, '300-0');
    expect(await w).toBe(true);
  });
});
