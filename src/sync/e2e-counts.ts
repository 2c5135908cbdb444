/**
 * The per-device end-to-end encryption counters /sync reports (`device_one_time_keys_count`,
 * `device_unused_fallback_key_types`), read from what the keys actor (actors/device-keys.ts) keeps
 * on the user's shard. Every change to them — an upload, a claim — emits an output on that shard,
 * which notifies the user (src/sync/notify.ts): `E2eCountsCache` keeps a device's counts on the
 * front until a notification names the user, so a poll woken by a room's message does not read them.
 */
import { publicCounts, type FallbackKeyRecord } from '../../actors/device-keys';
import { shardOf, type Family } from '../store/shards';
import { e2eKeyData, type KeySpace } from '../store/keys';
import type { RedisClient } from '../store/redis';
import type { ChangeMark, SyncNotifier } from './notify';

export interface E2eCountsContext {
  redis: RedisClient;
  keys: KeySpace;
  shardCounts: Record<Family, number>;
}

function key(ctx: E2eCountsContext, userId: string, name: string): string {
  return ctx.keys.shard('user', shardOf(userId, ctx.shardCounts.user)).data(name);
}

/** Unclaimed one-time keys of a device per algorithm; `signed_curve25519` is always there (0 when none). */
export async function oneTimeKeyCounts(ctx: E2eCountsContext, userId: string, deviceId: string): Promise<Record<string, number>> {
  const raw = await ctx.redis.hgetall(key(ctx, userId, e2eKeyData.oneTimeKeyCounts(userId, deviceId)));
  return publicCounts(Object.fromEntries(Object.entries(raw).map(([alg, n]) => [alg, Number(n)])));
}

/** The algorithms for which the device has a fallback key that no claim has used yet. */
export async function unusedFallbackKeyTypes(ctx: E2eCountsContext, userId: string, deviceId: string): Promise<string[]> {
  const raw = await ctx.redis.hgetall(key(ctx, userId, e2eKeyData.fallbackKeys(userId, deviceId)));
  const unused: string[] = [];
  for (const [alg, json] of Object.entries(raw)) if (!(JSON.parse(json) as FallbackKeyRecord).used) unused.push(alg);
  return unused.sort();
}

/** Kept counts are read again after this long anyway (a notification lost without a reconnect). */
const E2E_COUNTS_TTL_MS = 60_000;

interface Cached {
  at: number;
  mark: ChangeMark;
  value: Promise<{ otk: Record<string, number>; fallback: string[] }>;
}

/** A front's cache of the counts per device, valid while no notification names the user. */
export class E2eCountsCache {
  /** By user, then device (so a user's entries can be dropped at once). */
  private readonly byUser = new Map<string, Map<string, Cached>>();

  constructor(
    private readonly notifier: Pick<SyncNotifier, 'changeMark' | 'unchangedSince'>,
    private readonly max = 100_000,
  ) {}

  get(ctx: E2eCountsContext, userId: string, deviceId: string): Promise<{ otk: Record<string, number>; fallback: string[] }> {
    let devices = this.byUser.get(userId);
    const hit = devices?.get(deviceId);
    if (hit && Date.now() - hit.at < E2E_COUNTS_TTL_MS && this.notifier.unchangedSince(userId, [], hit.mark)) return hit.value;
    // The mark comes before the reads: a change after it is named by a later notification.
    const mark = this.notifier.changeMark;
    const value = Promise.all([oneTimeKeyCounts(ctx, userId, deviceId), unusedFallbackKeyTypes(ctx, userId, deviceId)]).then(([otk, fallback]) => ({ otk, fallback }));
    value.catch(() => this.forget(userId));
    if (!devices) {
      if (this.byUser.size >= this.max) this.byUser.delete(this.byUser.keys().next().value!);
      this.byUser.set(userId, (devices = new Map()));
    }
    devices.set(deviceId, { at: Date.now(), mark, value });
    return value;
  }

  /** Drop what is kept for a user (this front just changed their keys). */
  forget(userId: string): void {
    this.byUser.delete(userId);
  }
}
