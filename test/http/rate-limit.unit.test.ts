import { describe, expect, it } from 'vitest';
import { LocalRateLimiter as RateLimiter } from '../../src/http/rate-limit';
import { MatrixError } from '../../src/http/errors';

describe('RateLimiter', () => {
  it('allows a burst, then refills at the configured rate', () => {
    let now = 0;
    const rl = new RateLimiter({ login: { burst: 3, perMinute: 60 } }, true, () => now);
    expect([rl.take('login', 'ip'), rl.take('login', 'ip'), rl.take('login', 'ip')]).toEqual([0, 0, 0]);
    expect(rl.take('login', 'ip')).toBe(1000);
    now = 400;
    expect(rl.take('login', 'ip')).toBe(600);
    now = 1000;
    expect(rl.take('login', 'ip')).toBe(0);
    expect(rl.take('login', 'ip')).toBe(1000);
  });

  it('keeps separate buckets per key and per limit', () => {
    const rl = new RateLimiter({ a: { burst: 1, perMinute: 1 }, b: { burst: 1, perMinute: 1 } }, true, () => 0);
    expect(rl.take('a', 'x')).toBe(0);
    expect(rl.take('a', 'y')).toBe(0);
    expect(rl.take('b', 'x')).toBe(0);
    expect(rl.take('a', 'x')).toBe(60_000);
  });

  it('answers 429 M_LIMIT_EXCEEDED with retry_after_ms and Retry-After', () => {
    const rl = new RateLimiter({ login: { burst: 1, perMinute: 30 } }, true, () => 0);
    rl.check('login', 'ip');
    let err: MatrixError | null = null;
    try {
      rl.check('login', 'ip');
    } catch (e) {
      err = e as MatrixError;
    }
    expect(err?.status).toBe(429);
    expect(err?.toJSON()).toEqual({ errcode: 'M_LIMIT_EXCEEDED', error: 'Too many requests', retry_after_ms: 2000 });
    expect(err?.headers).toEqual({ 'Retry-After': '2' });
  });

  it('refund gives back one taken request, never more than the burst', () => {
    let now = 0;
    const rl = new RateLimiter({ failedLogin: { burst: 2, perMinute: 60 } }, true, () => now);
    expect([rl.take('failedLogin', 'u'), rl.take('failedLogin', 'u'), rl.take('failedLogin', 'u')]).toEqual([0, 0, 1000]);
    rl.refund('failedLogin', 'u');
    expect(rl.take('failedLogin', 'u')).toBe(0);
    expect(rl.take('failedLogin', 'u')).toBe(1000);
    // A full bucket stays full; an unknown key is a no-op.
    now = 10_000;
    rl.refund('failedLogin', 'u');
    rl.refund('failedLogin', 'nobody');
    expect([rl.take('failedLogin', 'u'), rl.take('failedLogin', 'u'), rl.take('failedLogin', 'u')]).toEqual([0, 0, 1000]);
  });

  it('does nothing when disabled', () => {
    const rl = new RateLimiter({ login: { burst: 1, perMinute: 1 } }, false, () => 0);
    for (let i = 0; i < 100; i++) expect(rl.take('login', 'ip')).toBe(0);
    expect(rl.size).toBe(0);
  });
});
