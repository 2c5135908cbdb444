/**
 * Unread notification counts for `/sync` (`unread_notifications`, `unread_thread_notifications`):
 * the notifying events the push evaluator recorded for the user (src/readers/push-evaluator.ts)
 * that come after the user's read receipts, per the spec's threaded read receipts:
 * - an unthreaded `m.read` / `m.read.private` receipt marks everything up to its event read —
 *   the main timeline and every thread;
 * - a receipt with `thread_id: "main"` marks the main timeline (thread roots included) up to its event;
 * - a receipt with `thread_id: <root>` marks that thread up to its event;
 * whichever of the public and private receipts is later in the timeline counts. As in Synapse,
 * counting starts after the user's latest membership event in the room (their join): an invite
 * that notified them, and what came before they joined, are not unread.
 *
 * Two round trips whatever the number of rooms (commands are pipelined): the receipts of every
 * room and the user's unread thread notifications; then the main timeline counts (ZCOUNT above
 * the read position) and the receipts of the threads that have notifications. On a single Redis
 * the first round trip and the counts are one script call (unread-counts-2.lua) instead of four
 * commands per room — every woken /sync answer asks for them, and the answers computed together
 * share one call (src/store/script-batch.ts) — and only threads with notifications need a second.
 */
import { shardOf, type Family } from '../store/shards';
import { membershipIndexData, pushData, roomData, type KeySpace } from '../store/keys';
import { isCluster, type RedisClient } from '../store/redis';
import { scriptBatcher } from '../store/script-batch';
import { READ_RECEIPT_TYPES, readFields, readPositions, receiptField, receiptPos } from '../store/read-receipts';

/** Rooms per call of the unread-counts script (on a single Redis). */
const ROOMS_PER_CALL = 100;

export interface NotificationCounts {
  notification_count: number;
  highlight_count: number;
}

export interface UnreadCounts extends NotificationCounts {
  /** With `threads: true`: threads with unread notifications (none: absent), by thread root id. */
  threads?: Record<string, NotificationCounts>;
}

export interface UnreadCountsContext {
  redis: RedisClient;
  keys: KeySpace;
  shardCounts: Record<Family, number>;
}

/**
 * The user's unread counts in each room. By default the counts cover the whole room (main
 * timeline and threads: what `unread_notifications` holds when the filter does not ask for
 * thread counts). With `threads: true` (the filter's `unread_thread_notifications`) the counts
 * cover the main timeline only, and `threads` holds each thread's counts.
 */
export async function unreadCounts(ctx: UnreadCountsContext, userId: string, roomIds: string[], opts: { threads?: boolean; memberships?: Record<string, string> } = {}): Promise<Map<string, UnreadCounts>> {
  const userShard = ctx.keys.shard('user', shardOf(userId, ctx.shardCounts.user));
  const userKey = (name: string) => userShard.data(name);
  const receiptsKey = (roomId: string) => ctx.keys.shard('room', shardOf(roomId, ctx.shardCounts.room)).data(roomData.receipts(roomId));
  const mainFields = readFields(userId, null);

  // The membership index's values, when the caller read them already (/sync's snapshot).
  const known = opts.memberships;
  const memberships = known ? Promise.resolve(roomIds.map((r) => known[r] ?? null)) : roomIds.length ? ctx.redis.hmget(userKey(membershipIndexData.rooms(userId)), ...roomIds) : Promise.resolve([] as (string | null)[]);
  const joinedAt = (membership: string | null | undefined) => (membership ? Number.parseInt(membership, 10) || 0 : 0);
  type First = { roomId: string; read: { unthreaded: number; main: number }; threadEntries: string[]; counted?: [number, number] };
  let first: First[];
  if (!isCluster(ctx.redis) && roomIds.length) {
    // One script segment for every room (unread-counts-2.lua): the receipts, thread entries and
    // both counts, where the commands below take four per room; the segments of the answers
    // computed together (one message wakes every member's long-poll) go out as one call.
    const ms = await memberships;
    const calls: Promise<[string, string, number, number, string[]][]>[] = [];
    const batcher = scriptBatcher(ctx.redis, 'unreadCounts');
    // A call runs alone in Redis: an initial sync of many rooms is split.
    for (let at = 0; at < roomIds.length; at += ROOMS_PER_CALL) {
      const part = roomIds.slice(at, at + ROOMS_PER_CALL);
      const keys = part.flatMap((roomId) => [receiptsKey(roomId), userKey(pushData.unreadThreads(userId, roomId)), userKey(pushData.unread(userId, roomId)), userKey(pushData.unreadHighlight(userId, roomId))]);
      calls.push(batcher.call(keys, [part.length, mainFields.length, ...mainFields, ...part.map((_, i) => joinedAt(ms[at + i]))]) as Promise<[string, string, number, number, string[]][]>);
    }
    const rows = (await Promise.all(calls)).flat();
    first = roomIds.map((roomId, i) => {
      const [unthreaded, main, notifications, highlights, threadEntries] = rows[i]!;
      return { roomId, read: { unthreaded: Number(unthreaded), main: Number(main) }, threadEntries, counted: [Number(notifications), Number(highlights)] };
    });
  } else first = await Promise.all(
    roomIds.map(async (roomId, i) => {
      const [receipts, threadEntries, membership] = await Promise.all([
        ctx.redis.hmget(receiptsKey(roomId), ...mainFields),
        ctx.redis.zrange(userKey(pushData.unreadThreads(userId, roomId)), 0, -1, 'WITHSCORES'),
        memberships.then((m) => m[i]),
      ]);
      const joined = joinedAt(membership);
      const read = readPositions(receipts, null);
      return { roomId, read: { unthreaded: Math.max(read.unthreaded, joined), main: Math.max(read.main, joined) }, threadEntries };
    }),
  );

  const out = new Map<string, UnreadCounts>();
  // Counted in the script and no thread notification: nothing left to read (most rooms of a woken
  // /sync answer), so no promise per room.
  const rest: First[] = [];
  for (const f of first) {
    if (f.counted && f.threadEntries.length === 0) out.set(f.roomId, { notification_count: f.counted[0], highlight_count: f.counted[1] });
    else rest.push(f);
  }
  if (rest.length === 0) return out;
  await Promise.all(
    rest.map(async ({ roomId, read, threadEntries, counted }) => {
      const after = `(${read.main}`;
      // Thread entries: '<n|h>\0<root>\0<event id>' with their positions.
      const byThread = new Map<string, { pos: number; highlight: boolean }[]>();
      for (let i = 0; i + 1 < threadEntries.length; i += 2) {
        const m = threadEntries[i]!;
        const pos = Number(threadEntries[i + 1]);
        if (pos <= read.unthreaded) continue;
        const end = m.indexOf('\0', 2);
        if (m[1] !== '\0' || end < 0) continue;
        const root = m.slice(2, end);
        let list = byThread.get(root);
        if (!list) byThread.set(root, (list = []));
        list.push({ pos, highlight: m[0] === 'h' });
      }
      const roots = [...byThread.keys()];
      const threadFields = roots.flatMap((root) => READ_RECEIPT_TYPES.map((type) => receiptField(type, root, userId)));
      const [notifications, highlights, threadReceipts] = await Promise.all([
        counted ? counted[0] : ctx.redis.zcount(userKey(pushData.unread(userId, roomId)), after, '+inf'),
        counted ? counted[1] : ctx.redis.zcount(userKey(pushData.unreadHighlight(userId, roomId)), after, '+inf'),
        threadFields.length ? ctx.redis.hmget(receiptsKey(roomId), ...threadFields) : Promise.resolve([] as (string | null)[]),
      ]);
      const counts: UnreadCounts = { notification_count: notifications, highlight_count: highlights };
      const threads: Record<string, NotificationCounts> = {};
      roots.forEach((root, i) => {
        const readTo = Math.max(read.unthreaded, ...READ_RECEIPT_TYPES.map((_, j) => receiptPos(threadReceipts[i * READ_RECEIPT_TYPES.length + j])));
        const unread = byThread.get(root)!.filter((e) => e.pos > readTo);
        if (unread.length === 0) return;
        const c = { notification_count: unread.length, highlight_count: unread.filter((e) => e.highlight).length };
        if (opts.threads) threads[root] = c;
        else {
          counts.notification_count += c.notification_count;
          counts.highlight_count += c.highlight_count;
        }
      });
      if (opts.threads && Object.keys(threads).length) counts.threads = threads;
      out.set(roomId, counts);
    }),
  );
  return out;
}
