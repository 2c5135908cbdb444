import { describe, expect, it } from 'vitest';
import { RedisHealth, type Pingable } from '../../src/store/redis-health';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A Redis that answers PING at once, or holds every PING while `paused` (a SIGSTOPped server). */
class FakeRedis implements Pingable {
  pings = 0;
  paused = false;
  failing = false;
  private held: (() => void)[] = [];
  ping(): Promise<unknown> {
    this.pings++;
    if (this.failing) return Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:1'));
    if (!this.paused) return Promise.resolve('PONG');
    return new Promise((resolve) => this.held.push(() => resolve('PONG')));
  }
  resume(): void {
    this.paused = false;
    for (const f of this.held.splice(0)) f();
  }
}

describe('RedisHealth', () => {
  it('is ready while PINGs are answered, and reports their round trip', async () => {
    const redis = new FakeRedis();
    const health = new RedisHealth(redis, { timeoutMs: 100, intervalMs: 20 });
    await health.start();
    expect(health.ready).toBe(true);
    expect(health.rttMs).not.toBeNull();
    await sleep(100);
    expect(redis.pings).toBeGreaterThan(2);
    health.stop();
  });

  it('turns not ready when a PING goes unanswered past the timeout, without piling up PINGs, and ready the moment it is answered', async () => {
    const redis = new FakeRedis();
    const changes: boolean[] = [];
    const health = new RedisHealth(redis, { timeoutMs: 100, intervalMs: 20 });
    health.onChange((r) => changes.push(r));
    await health.start();
    redis.paused = true;
    await sleep(60);
    const pingsAtPause = redis.pings;
    expect(health.ready).toBe(true); // not overdue yet
    await sleep(150);
    expect(health.ready).toBe(false);
    expect(health.unreachableSinceMs).not.toBeNull();
    await sleep(200);
    expect(redis.pings).toBe(pingsAtPause); // the outstanding PING is the probe: no new ones meanwhile
    redis.resume();
    await sleep(0);
    expect(health.ready).toBe(true);
    expect(health.unreachableSinceMs).toBeNull();
    expect(changes).toEqual([true, false, true]);
    health.stop();
  });

  it('retries a PING that failed outright after a short pause', async () => {
    const redis = new FakeRedis();
    redis.failing = true;
    const health = new RedisHealth(redis, { timeoutMs: 100, intervalMs: 20, retryMs: 30 });
    await health.start();
    expect(health.ready).toBe(false);
    await sleep(100);
    expect(redis.pings).toBeGreaterThan(2);
    redis.failing = false;
    await sleep(60);
    expect(health.ready).toBe(true);
    health.stop();
  });

  it('is not fooled by an event loop blocked past the timeout while Redis answered in time', async () => {
    let answer: (() => void) | null = null;
    const redis: Pingable = { ping: () => new Promise((r) => (answer = () => r('PONG'))) };
    const health = new RedisHealth(redis, { timeoutMs: 50, intervalMs: 1000 });
    void health.start();
    // The reply arrives (as socket I/O would) while the loop is busy past the timeout.
    setTimeout(() => answer!(), 10);
    const until = Date.now() + 120;
    while (Date.now() < until) {
      /* busy: the timeout timer and the reply are both due when this ends */
    }
    await sleep(5);
    expect(health.ready).toBe(true);
    expect(health.unreachableSinceMs).toBeNull();
    health.stop();
  });
});
