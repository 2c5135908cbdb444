/**
 * Unread notification counts for `/sync` (`unread_notifications`, `unread_thread_notifications`):
 * the notifying events the push evaluator recorded for the user (src/readers/push-evaluator.ts)
 * that come after the user's read receipts, per the spec's threaded read receipts:
 * - an unthreaded `m.read` / `m.read.private` receipt marks everything up to its event read —
 *   the main timeline and every thread;
 * - a receipt with `thread_id: "main"` marks the main timeline (thread roots included) up to its event;
 * - a receipt with `thread_id: <root>` marks that thread up to its event;
 * whichever of the public and private receipts is later in the timeline counts. The user's own
 * latest event counts as a receipt too (the spec's "Marking notifications as read": sending an
 * event marks the notifications before it read; Synapse does not): in the main timeline as an
 * unthreaded receipt at it, in a thread as one in that thread (`pushData.sentUpTo`, written by the
 * push evaluator, which no longer records the sender's own events as exceptions). As in Synapse,
 * counting starts after the user's latest membership event in the room (their join): an invite
 * that notified them, and what came before they joined, are not unread.
 *
 * What is counted (src/readers/push-evaluator.ts): the room's push log above the read position
 * (what notified the room's members as most of them were notified), corrected by the user's
 * exceptions (where their outcome differed: mentions, their own rules), for a
 * room they are joined to now; plus the per-user unread sets written before the push log (a
 * rolling upgrade). On a single Redis one script call (unread-counts-4.lua) counts every room —
 * every woken /sync answer asks for them, and the answers computed together share one call
 * (src/store/script-batch.ts) — and only threads with notifications need a second round trip for
 * their receipts. On a Cluster the same in commands (`applyExceptions`; the keys are in two hash
 * slots).
 */
import { shardOf, type Family } from '../store/shards';
import { membershipIndexData, pushData, roomData, type KeySpace } from '../store/keys';
import { isCluster, type RedisClient } from '../store/redis';
import { scriptBatcher } from '../store/script-batch';
import { READ_RECEIPT_TYPES, readFields, readPositions, receiptField, receiptPos, sentMember, sentMembers, sentPos } from '../store/read-receipts';

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
  // The room's push log counts for its members: -1 for a room the user is not joined to now.
  const memberSince = (membership: string | null | undefined) => (membership?.endsWith(':join') ? joinedAt(membership) : -1);
  type First = { roomId: string; read: { unthreaded: number; main: number }; threadEntries: string[]; counted: [number, number] };
  let first: First[];
  if (!isCluster(ctx.redis) && roomIds.length) {
    // One script segment for every room (unread-counts-4.lua): the receipts, the room's push log
    // counts corrected by the user's exceptions, and the thread entries; the segments of the
    // answers computed together (one message wakes every member's long-poll) go out as one call.
    const ms = await memberships;
    const calls: Promise<[string, string, number, number, string[]][]>[] = [];
    const batcher = scriptBatcher(ctx.redis, 'unreadCounts');
    // A call runs alone in Redis: an initial sync of many rooms is split.
    for (let at = 0; at < roomIds.length; at += ROOMS_PER_CALL) {
      const part = roomIds.slice(at, at + ROOMS_PER_CALL);
      const keys = part.flatMap((roomId) => {
        const shard = ctx.keys.shard('room', shardOf(roomId, ctx.shardCounts.room));
        const roomKey = (name: string) => shard.data(name);
        return [
          roomKey(roomData.receipts(roomId)),
          roomKey(pushData.roomLog(roomId)),
          roomKey(pushData.roomLogHighlight(roomId)),
          roomKey(pushData.roomLogThreads(roomId)),
          userKey(pushData.exceptions(userId, roomId)),
          userKey(pushData.unreadThreads(userId, roomId)),
          userKey(pushData.unread(userId, roomId)),
          userKey(pushData.unreadHighlight(userId, roomId)),
          roomKey(pushData.sentUpTo(roomId)),
        ];
      });
      calls.push(batcher.call(keys, [part.length, mainFields.length, ...mainFields, sentMember(userId, null), ...part.map((_, i) => memberSince(ms[at + i]))]) as Promise<[string, string, number, number, string[]][]>);
    }
    const rows = (await Promise.all(calls)).flat();
    first = roomIds.map((roomId, i) => {
      const [unthreaded, main, notifications, highlights, threadEntries] = rows[i]!;
      return { roomId, read: { unthreaded: Number(unthreaded), main: Number(main) }, threadEntries, counted: [Number(notifications), Number(highlights)] };
    });
  } else
    first = await Promise.all(
      roomIds.map(async (roomId, i) => {
        const roomKey = (name: string) => ctx.keys.shard('room', shardOf(roomId, ctx.shardCounts.room)).data(name);
        const [receipts, sent, membership] = await Promise.all([ctx.redis.hmget(receiptsKey(roomId), ...mainFields), ctx.redis.zmscore(roomKey(pushData.sentUpTo(roomId)), ...sentMembers(userId, null)), memberships.then((m) => m[i])]);
        const joined = joinedAt(membership);
        const r = readPositions(receipts, null, sent);
        const read = { unthreaded: Math.max(r.unthreaded, joined), main: Math.max(r.main, joined) };
        const after = `(${read.main}`;
        const fromThreads = `(${read.unthreaded}`;
        // The same as unread-counts-4.lua, in commands (its keys are in two hash slots).
        const [log, logHighlight, oldUnread, oldHighlight, exceptions, logged, oldThreads, mainFloor, threadFloor] = await Promise.all([
          ctx.redis.zcount(roomKey(pushData.roomLog(roomId)), after, '+inf'),
          ctx.redis.zcount(roomKey(pushData.roomLogHighlight(roomId)), after, '+inf'),
          ctx.redis.zcount(userKey(pushData.unread(userId, roomId)), after, '+inf'),
          ctx.redis.zcount(userKey(pushData.unreadHighlight(userId, roomId)), after, '+inf'),
          ctx.redis.zrangebyscore(userKey(pushData.exceptions(userId, roomId)), fromThreads, '+inf', 'WITHSCORES'),
          ctx.redis.zrangebyscore(roomKey(pushData.roomLogThreads(roomId)), fromThreads, '+inf', 'WITHSCORES'),
          ctx.redis.zrangebyscore(userKey(pushData.unreadThreads(userId, roomId)), fromThreads, '+inf', 'WITHSCORES'),
          ctx.redis.zrange(roomKey(pushData.roomLog(roomId)), 0, 0, 'WITHSCORES'),
          ctx.redis.zrange(roomKey(pushData.roomLogThreads(roomId)), 0, 0, 'WITHSCORES'),
        ]);
        const floor = (first: string[]) => (first.length >= 2 ? Number(first[1]) : Number.POSITIVE_INFINITY);
        if (memberSince(membership) < 0) return { roomId, read, threadEntries: oldThreads, counted: [oldUnread, oldHighlight] as [number, number] };
        const merged = applyExceptions(read, [log + oldUnread, logHighlight + oldHighlight], exceptions, logged, floor(mainFloor), floor(threadFloor));
        return { roomId, read, threadEntries: [...merged.threadEntries, ...oldThreads], counted: merged.counted };
      }),
    );

  const out = new Map<string, UnreadCounts>();
  // Counted in the script and no thread notification: nothing left to read (most rooms of a woken
  // /sync answer), so no promise per room.
  const rest: First[] = [];
  for (const f of first) {
    if (f.threadEntries.length === 0) out.set(f.roomId, { notification_count: f.counted[0], highlight_count: f.counted[1] });
    else rest.push(f);
  }
  if (rest.length === 0) return out;
  await Promise.all(
    rest.map(async ({ roomId, read, threadEntries, counted }) => {
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
      // With the user's own latest event in each thread (a receipt in that thread).
      if (roots.length === 0) {
        out.set(roomId, { notification_count: counted[0], highlight_count: counted[1] });
        return;
      }
      const [threadReceipts, threadSent] = await Promise.all([ctx.redis.hmget(receiptsKey(roomId), ...threadFields), ctx.redis.zmscore(ctx.keys.shard('room', shardOf(roomId, ctx.shardCounts.room)).data(pushData.sentUpTo(roomId)), ...roots.map((root) => sentMember(userId, root)))]);
      const counts: UnreadCounts = { notification_count: counted[0], highlight_count: counted[1] };
      const threads: Record<string, NotificationCounts> = {};
      roots.forEach((root, i) => {
        const readTo = Math.max(read.unthreaded, sentPos(threadSent[i]), ...READ_RECEIPT_TYPES.map((_, j) => receiptPos(threadReceipts[i * READ_RECEIPT_TYPES.length + j])));
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

/**
 * A room's push log counts and thread entries corrected by the user's exceptions, as
 * unread-counts-4.lua does it (see there): `counted` the main timeline's log counts above the read
 * position, `exceptions` and `logged` (the room's thread log) above the unthreaded read position as
 * ZRANGEBYSCORE WITHSCORES, the floors the logs' oldest kept positions.
 */
export function applyExceptions(read: { unthreaded: number; main: number }, counted: [number, number], exceptions: string[], logged: string[], mainFloor: number, threadFloor: number): { counted: [number, number]; threadEntries: string[] } {
  let [notifications, highlights] = counted;
  const threadEntries: string[] = [];
  const ownInThread = new Map<string, string>();
  for (let i = 0; i + 1 < exceptions.length; i += 2) {
    const m = exceptions[i]!;
    const at = Number(exceptions[i + 1]);
    const own = m[0]!;
    let common = m[1]!;
    const rest = m.slice(3);
    const sep = rest.indexOf('\0');
    if (sep < 0) continue;
    const thread = rest.slice(0, sep);
    if (thread === '') {
      if (at <= read.main) continue;
      if (common !== 'x' && at < mainFloor) common = 'x';
      notifications += (own !== 'x' ? 1 : 0) - (common !== 'x' ? 1 : 0);
      highlights += (own === 'h' ? 1 : 0) - (common === 'h' ? 1 : 0);
    } else if (common !== 'x' && at >= threadFloor) ownInThread.set(rest.slice(sep + 1), own);
    else if (own !== 'x') threadEntries.push(`${own}\0${rest}`, exceptions[i + 1]!);
  }
  for (let i = 0; i + 1 < logged.length; i += 2) {
    const m = logged[i]!;
    const tail = m.slice(1);
    const own = ownInThread.get(tail.slice(tail.indexOf('\0', 1) + 1));
    if (own === undefined) threadEntries.push(m, logged[i + 1]!);
    else if (own !== 'x') threadEntries.push(own + tail, logged[i + 1]!);
  }
  return { counted: [Math.max(0, notifications), Math.max(0, highlights)], threadEntries };
}
