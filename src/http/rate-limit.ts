/**
 * Rate limiting for the fronts: one bucket per (limit, key), where the key is the user id for
 * authenticated requests, the account a login names for failed logins, and the client IP
 * otherwise. A bucket holds `burst` requests and refills
 * at `perMinute`; a request takes one, or is answered 429 M_LIMIT_EXCEEDED with `retry_after_ms`
 * (and a `Retry-After` header) saying when the next one is allowed.
 *
 * Buckets are kept in Redis (rate-limit-2.lua, GCRA: one number per bucket, one round trip, on
 * Redis's clock), so a limit counts across every front process. When Redis does not answer within
 * `redisTimeoutMs` or fails, the front decides with its own in-memory buckets instead: a limit
 * that is per front for a moment is better than failing or stalling requests because the
 * limiter could not be asked.
 */
import type { Logger } from 'pino';
import type { RateLimitBucket } from '../../cluster.config';
import type { KeySpace } from '../store/keys';
import { runScript, type RedisClient } from '../store/redis';
import { MatrixError } from './errors';

interface Bucket {
  tokens: number;
  /** When `tokens` was last brought up to date (ms). */
  at: number;
}

/** Buckets kept before idle (full) ones are swept. */
const SWEEP_AT = 50_000;

/** Token buckets in this process's memory (the fallback, and what unit tests drive with a clock). */
export class LocalRateLimiter {
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
    throwIfLimited(this.take(limit, key));
  }

  /** Give back one request taken from `limit`'s bucket for `key` (it did not count after all). */
  refund(limit: string, key: string): void {
    if (!this.enabled) return;
    const b = this.buckets.get(`${limit}\0${key}`);
    const cfg = this.limits[limit];
    if (b && cfg) b.tokens = Math.min(cfg.burst, b.tokens + 1);
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

function throwIfLimited(wait: number): void {
  if (wait > 0) throw new MatrixError(429, 'M_LIMIT_EXCEEDED', 'Too many requests', { retry_after_ms: wait }, { 'Retry-After': String(Math.ceil(wait / 1000)) });
}

export interface SharedLimits {
  redis: RedisClient;
  keys: KeySpace;
  /** Longest wait for Redis before deciding locally (default 100 ms). */
  redisTimeoutMs?: number;
  log?: Logger;
}

/** The limiter fronts use: shared buckets in Redis, the local ones when Redis does not answer. */
export class RateLimiter {
  readonly local: LocalRateLimiter;
  /** How many decisions were taken locally because Redis failed or was slow. */
  fallbacks = 0;
  private lastWarned = 0;

  constructor(
    private readonly limits: Record<string, RateLimitBucket>,
    private readonly enabled = true,
    private readonly shared?: SharedLimits,
    /** Keys a limit does not apply to (users of an appservice registered with `rate_limited: false`). */
    private readonly exempt?: (limit: string, key: string) => boolean,
  ) {
    this.local = new LocalRateLimiter(limits, enabled);
  }

  /** Take one request from `limit`'s bucket for `key`: 0 when allowed, else ms to wait. */
  async take(limit: string, key: string): Promise<number> {
    if (!this.enabled || this.exempt?.(limit, key)) return 0;
    const cfg = this.config(limit);
    if (!this.shared) return this.local.take(limit, key);
    try {
      return await this.askRedis(this.shared, limit, key, [60_000 / cfg.perMinute, cfg.burst]);
    } catch (err) {
      this.fallbacks++;
      const now = Date.now();
      if (now - this.lastWarned > 10_000) {
        this.lastWarned = now;
        this.shared.log?.warn({ err }, 'rate limiter: deciding locally (Redis failed or was slow)');
      }
      return this.local.take(limit, key);
    }
  }

  /** `take`, answering 429 M_LIMIT_EXCEEDED when the bucket is empty. */
  async check(limit: string, key: string): Promise<void> {
    throwIfLimited(await this.take(limit, key));
  }

  /**
   * Give back one request `check`/`take` allowed: for limits that count only some outcomes (failed
   * logins take before the password is checked and give back when it was right). Never fails:
   * when Redis does not answer, the local bucket gets it back.
   */
  async refund(limit: string, key: string): Promise<void> {
    if (!this.enabled) return;
    const cfg = this.config(limit);
    if (!this.shared) return this.local.refund(limit, key);
    try {
      await this.askRedis(this.shared, limit, key, [60_000 / cfg.perMinute, cfg.burst, 'refund']);
    } catch {
      this.fallbacks++;
      this.local.refund(limit, key);
    }
  }

  private config(limit: string): RateLimitBucket {
    const cfg = this.limits[limit];
    if (!cfg) throw new Error(`rate limit ${limit} is not configured`);
    return cfg;
  }

  /** One call of rate-limit-2.lua, or an error when Redis fails or does not answer in time. */
  private async askRedis(shared: SharedLimits, limit: string, key: string, args: (string | number)[]): Promise<number> {
    const timeoutMs = shared.redisTimeoutMs ?? 100;
    let timer: NodeJS.Timeout | undefined;
    try {
      const asked = runScript(shared.redis, 'rateLimit', [shared.keys.rateLimit(limit, key)], args);
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`rate limiter: Redis did not answer in ${timeoutMs} ms`)), timeoutMs);
      });
      asked.catch(() => undefined); // answered after the timeout: nothing waits for it any more
      return Number(await Promise.race([asked, late]));
    } finally {
      clearTimeout(timer);
    }
  }
}
