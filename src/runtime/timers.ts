/**
 * Durable actor timers: an actor's decision may ask for a message to itself at a later time
 * (`Decision.timers`; typing notices expire, presence goes idle). They are stored with the
 * commit in the shard's timer set, so they survive a crash or a shard move, and one process —
 * the shard's lease holder — moves each due timer into the inbox (timers-fire-1.lua, fenced).
 *
 * Per shard the holder keeps a single JS timeout, for the earliest due timer: armed when it takes
 * the shard, after any commit that set a timer, after a commit answered 'dup' (from the stored
 * set: the earlier commit's answer may have been lost), and after each firing for the next one. A firing
 * may come a little late (event loop, takeover), never early; actors treat a timer message as
 * "look at the clock now", so a late or repeated one does no harm.
 */
import { encode } from '../store/codec';
import type { ShardKeys } from '../store/keys';
import { runScriptBuffer, type RedisClient } from '../store/redis';
import type { StoreWrite } from './actor';

/** Timers fired per script call (a backlog after a long outage drains in rounds). */
const FIRE_BATCH = 200;

export type TimerRequest = { key: string; atMs: number | null; body?: unknown };

/** A write with an absolute key (the runner's writes are otherwise relative to the shard). */
export type AbsoluteWrite = StoreWrite & { absolute: true };

export function timerMember(kind: string, actorId: string, key: string): string {
  return `${kind}\u0000${actorId}\u0000${key}`;
}

/** The writes that record a decision's timers (applied in the same commit as the rest). */
export function timerWrites(keys: ShardKeys, kind: string, actorId: string, timers: TimerRequest[]): AbsoluteWrite[] {
  const out: AbsoluteWrite[] = [];
  for (const t of timers) {
    const member = timerMember(kind, actorId, t.key);
    if (t.atMs === null) {
      out.push({ cmd: 'ZREM', key: keys.timers, args: [member], absolute: true }, { cmd: 'HDEL', key: keys.timerBodies, args: [member], absolute: true });
    } else {
      out.push(
        { cmd: 'ZADD', key: keys.timers, args: [Math.max(0, Math.floor(t.atMs)), member], absolute: true },
        { cmd: 'HSET', key: keys.timerBodies, args: [member, encode(t.body ?? null)], absolute: true },
      );
    }
  }
  return out;
}

export interface ShardTimerEnv {
  redis: RedisClient;
  keys: ShardKeys;
  workerId: string;
  token: () => string;
  /** Timers moved into the inbox: read it. */
  onFired(): void;
  /** The lease was lost (the script found another holder). */
  onStale(): void;
  onError(e: unknown): void;
}

/** The timeout of one held shard. */
export class ShardTimers {
  private handle: NodeJS.Timeout | null = null;
  private dueAt = Infinity;
  private stopped = false;
  private firing = false;

  constructor(private readonly env: ShardTimerEnv) {}

  /** At takeover: arm for the earliest stored timer. */
  async start(): Promise<void> {
    await this.reload();
  }

  /**
   * Arm for the earliest stored timer: at takeover, and after a commit answered 'dup' (the
   * message was applied by an earlier commit whose timers this process may never have armed).
   */
  async reload(): Promise<void> {
    const row = await this.env.redis.zrange(this.env.keys.timers, 0, 0, 'WITHSCORES');
    if (row.length >= 2) this.arm(Number(row[1]));
  }

  /** A commit set a timer due at `atMs`. */
  arm(atMs: number): void {
    if (this.stopped || !Number.isFinite(atMs) || atMs >= this.dueAt) return;
    if (this.handle) clearTimeout(this.handle);
    this.dueAt = atMs;
    // setTimeout's limit is ~24.8 days; a longer wait re-arms on the way.
    const delay = Math.min(Math.max(0, atMs - Date.now()), 2 ** 31 - 1);
    this.handle = setTimeout(() => void this.fire(), delay);
    this.handle.unref?.();
  }

  private async fire(): Promise<void> {
    this.handle = null;
    this.dueAt = Infinity;
    if (this.stopped || this.firing) return;
    this.firing = true;
    let next = '';
    try {
      for (;;) {
        const res = (await runScriptBuffer(this.env.redis, 'timersFire', [this.env.keys.lease, this.env.keys.timers, this.env.keys.timerBodies, this.env.keys.inbox], [this.env.workerId, this.env.token(), Date.now(), FIRE_BATCH])) as (Buffer | number)[];
        if (String(res[0]) === 'stale') {
          this.stop();
          this.env.onStale();
          return;
        }
        const fired = Number(res[1]);
        next = String(res[2] ?? '');
        if (fired > 0) this.env.onFired();
        if (fired < FIRE_BATCH) break;
      }
    } catch (e) {
      this.env.onError(e);
      next = String(Date.now() + 1000); // try again shortly
    } finally {
      this.firing = false;
    }
    if (next !== '') this.arm(Number(next));
  }

  stop(): void {
    this.stopped = true;
    if (this.handle) clearTimeout(this.handle);
    this.handle = null;
  }
}
