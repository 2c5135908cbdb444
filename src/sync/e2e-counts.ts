/**
 * The per-device end-to-end encryption counters /sync reports (`device_one_time_keys_count`,
 * `device_unused_fallback_key_types`), read straight from what the keys actor
 * (actors/device-keys.ts) keeps on the user's shard. A claim that changes them emits an output
 * on that shard, which wakes the device's long-poll (src/sync/notify.ts).
 */
import { publicCounts, type FallbackKeyRecord } from '../../actors/device-keys';
import { shardOf, type Family } from '../runtime/shards';
import { e2eKeyData, type KeySpace } from '../store/keys';
import type { RedisClient } from '../store/redis';

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
