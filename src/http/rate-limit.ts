/**
 * Token-bucket rate limiting for the front: one bucket per (limit, key), where the key is the
 * user id for authenticated requests and the client IP otherwise. A bucket holds `burst` tokens
 * and refills at `perMinute`; a request takes one token, or is answered 429 M_LIMIT_EXCEEDED
 * with `retry_after_ms` (and a `Retry-After` header) saying when the next token is there.
 *
 * Buckets live in each front process's memory: limits are per front, which is what matters for
 * protecting one process, and costs no Redis round trip on the hot path.
 */
import type { RateLimitBucket } from '../../cluster.config';
import { MatrixError } from './errors';

interface Bucket {
  tokens: number;
  /** When `tokens` was last brought up to date (ms). */
  at: number;
}

/** Buckets kept before idle (full) ones are swept. */
const SWEEP_AT = 50_000;

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    private readonly limits: Record<string, RateLimitBucket>,
    private readonly enabled = true,
    private readonly clock: () => number = Date.now,
  ) {}

  /**
   * Take one token from `limit`'s bucket for `key`. Returns 0 when allowed, else how many ms
   * until a token is available (nothing is taken then).
   */
  take(limit: string, key: string): number {
    if (!this.enabled) return 0;
    const cfg = this.limits[limit];
    if (!cfg) throw new Error(`rate limit ${limit} is not configured`);
    const now = this.clock();
    const id = `${limit}\0${key}`;
    const perMs = cfg.perMinute / 60_000;
    let b = this.buckets.get(id);
    if (!b) {
      if (this.buckets.size >= SWEEP_AT) this.sweep(now);
      b = { tokens: cfg.burst, at: now };
      this.buckets.set(id, b);
    } else {
      b.tokens = Math.min(cfg.burst, b.tokens + (now - b.at) * perMs);
      b.at = now;
    }
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.ceil((1 - b.tokens) / perMs);
  }

  /** `take`, answering 429 M_LIMIT_EXCEEDED when the bucket is empty. */
  check(limit: string, key: string): void {
    const wait = this.take(limit, key);
    if (wait > 0) throw new MatrixError(429, 'M_LIMIT_EXCEEDED', 'Too many requests', { retry_after_ms: wait }, { 'Retry-After': String(Math.ceil(wait / 1000)) });
  }

  /** Drop buckets that have refilled completely: they are the same as no bucket. */
  private sweep(now: number): void {
    for (const [id, b] of this.buckets) {
      const cfg = this.limits[id.slice(0, id.indexOf('\0'))]!;
      if (b.tokens + (now - b.at) * (cfg.perMinute / 60_000) >= cfg.burst) this.buckets.delete(id);
    }
  }

  get size(): number {
    return this.buckets.size;
  }
}
