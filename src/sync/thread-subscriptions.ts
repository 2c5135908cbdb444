/**
 * A user's thread subscription changes (MSC4306, kept by actors/thread-subscriptions.ts) in the
 * shape MSC4308 gives them: read by GET /thread_subscriptions (src/api/client/thread-subscriptions.ts)
 * and by sliding sync's `io.element.msc4308.thread_subscriptions` extension (src/sync/sliding/engine.ts).
 */
import type { ApiContext } from '../api/context';
import type { ThreadSubscriptionRecord } from '../../actors/thread-subscriptions';
import { threadSubscriptionData } from '../store/keys';
import { userKey } from '../store/shard-keys';

export interface ThreadSubscriptionsPage {
  subscribed?: Record<string, Record<string, { automatic: boolean; bump_stamp: number }>>;
  unsubscribed?: Record<string, Record<string, { bump_stamp: number }>>;
  /** The `from` of the next (older) page, when there may be one. */
  end?: string;
}

/**
 * A user's thread subscription changes with stream ids in (`after`, `upTo`], newest first, at most
 * `limit` (MSC4308's answer shape; the sliding-sync extension passes its last position as `after`).
 */
export async function threadSubscriptionsSince(ctx: ApiContext, userId: string, after: number, upTo: number | null, limit: number): Promise<ThreadSubscriptionsPage> {
  const rows = (await ctx.redis.zrevrangebyscore(userKey(ctx, userId, threadSubscriptionData.byStream(userId)), upTo === null ? '+inf' : upTo, `(${after}`, 'WITHSCORES', 'LIMIT', 0, limit)) as string[];
  const members: string[] = [];
  for (let i = 0; i < rows.length; i += 2) members.push(rows[i]!);
  const page: ThreadSubscriptionsPage = {};
  if (members.length === 0) return page;
  const records = await ctx.redis.hmget(userKey(ctx, userId, threadSubscriptionData.records(userId)), ...members);
  let lowest = Infinity;
  for (const json of records) {
    if (json === null) continue;
    const r = JSON.parse(json) as ThreadSubscriptionRecord;
    lowest = Math.min(lowest, r.stream);
    if (r.subscribed) ((page.subscribed ??= {})[r.room_id] ??= {})[r.thread_root_id] = { automatic: r.automatic, bump_stamp: r.stream };
    else ((page.unsubscribed ??= {})[r.room_id] ??= {})[r.thread_root_id] = { bump_stamp: r.stream };
  }
  if (members.length === limit && Number.isFinite(lowest)) page.end = `ts${lowest - 1}`;
  return page;
}

