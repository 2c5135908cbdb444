/**
 * `GET /notifications` (notifications.yaml): the events the user was notified about, newest
 * first, from what the push evaluator recorded (src/readers/push-evaluator.ts): the lists of the
 * rooms they were a member of (the room's common outcome; over the times they were a member,
 * `pushData.roomJoins`; less the events they are `excluded` from) merged with their own list (their
 * own outcome where it differed, invites, and what was recorded before the room logs). Each with
 * its room, when it arrived, the actions of the rule that matched (stored with the list entry, or
 * for a plain `["notify"]` of an event without a relation, derived from the event), and whether
 * the user's read receipts have passed it (computed now, so it is current). `only=highlight` keeps
 * the highlighting ones. The latest `NOTIFICATIONS_KEPT` of the merged list are served: the lists
 * are trimmed in chunks, so they may hold a few more, which are left out here (those at or below
 * the score of the first one past the bound); redacted events leave it.
 *
 * `from`/`next_token` is the arrival order (push-evaluator.ts `listScore`) below which the next
 * page starts; notifications that share the last one's place are all on that page, so pages never
 * split them. Cost: a few commands per room the user has a membership in (GET /notifications is
 * rare; the writes it spares are per member and message).
 */
import { errors } from '../../http/errors';
import type { Front } from '../../http/server';
import type { JsonObject } from '../../protocol/json';
import { servableToClients } from '../../store/room-reader';
import { membershipIndexData, pushData } from '../../store/keys';
import { readFields, readPositions, sentMembers } from '../../store/read-receipts';
import { roomData } from '../../store/keys';
import { NOTIFICATIONS_KEPT, derivedDetails, memberIntervals, type NotificationDetails } from '../../readers/push-evaluator';
import { requireUser } from './auth';
import { clientRoute } from './accounts-common';
import { formatEvents } from '../../rooms/client-format';
import { roomShard, userKey } from '../../store/shard-keys';
import type { ApiContext } from '../context';

const DEFAULT_LIMIT = 20;
const MAX_LIMIT = 100;

function parseLimit(raw: string | undefined): number {
  if (raw === undefined) return DEFAULT_LIMIT;
  if (!/^[0-9]+$/.test(raw)) throw errors.invalidParam('limit must be a non-negative integer');
  return Math.min(Number(raw), MAX_LIMIT);
}

function parseFrom(raw: string | undefined): number | null {
  if (raw === undefined || raw === '') return null;
  if (!/^[0-9]{1,17}$/.test(raw)) throw errors.invalidParam('Invalid from token');
  return Number(raw);
}

/** A notification in the merged list: a member `<room id>\0<event id>`, its score, and where its details are. */
interface Listed {
  member: string;
  score: number;
  /** The room whose list holds it (details in the room's pushData.roomListData), or null: the user's own list. */
  room: string | null;
}

/** An exclusive score bound for ZREVRANGEBYSCORE. */
const below = (n: number) => (n === Number.POSITIVE_INFINITY ? '+inf' : `(${n}`);
const above = (n: number) => (n === Number.NEGATIVE_INFINITY ? '-inf' : `(${n}`);

export function registerNotificationRoutes(front: Front, ctx: ApiContext): void {
  clientRoute(front, 'GET', '/notifications', async (req) => {
    const me = await requireUser(ctx, req);
    const limit = parseLimit(req.query['limit']);
    const from = parseFrom(req.query['from']);
    const highlightOnly = req.query['only'] === 'highlight';
    if (limit === 0) return { body: { notifications: [] } };
    const excludedKey = userKey(ctx, me.userId, pushData.excluded(me.userId));

    // The rooms' lists the user reads: those of the rooms they were a member of, over the times
    // they were (pushData.roomJoins), less what they are excluded from (pushData.excluded).
    const memberships = await ctx.redis.hgetall(userKey(ctx, me.userId, membershipIndexData.rooms(me.userId)));
    const roomIds = Object.keys(memberships);
    const records = await Promise.all(roomIds.map((roomId) => ctx.redis.hget(roomShard(ctx, roomId).data(pushData.roomJoins(roomId)), me.userId)));
    const rooms = roomIds
      .map((roomId, i) => ({ roomId, intervals: memberIntervals(records[i] ?? null, memberships[roomId]!.endsWith(':join')) }))
      .filter((r) => r.intervals.length > 0);
    const intervalsOf = new Map(rooms.map((r) => [r.roomId, r.intervals]));
    const listOf = (roomId: string, highlights: boolean) => roomShard(ctx, roomId).data(highlights ? pushData.roomListHighlight(roomId) : pushData.roomList(roomId));

    /** Up to `count` of one room's notifications for the user with scores in (lo, hi), newest first. */
    const fromRoom = async (roomId: string, highlights: boolean, lo: number, hi: number, count: number): Promise<Listed[]> => {
      const out: Listed[] = [];
      const key = listOf(roomId, highlights);
      for (const [start, end] of intervalsOf.get(roomId)!.slice().reverse()) {
        let upper = Math.min(hi, end);
        const lower = Math.max(lo, start);
        while (out.length < count && upper > lower) {
          const want = count - out.length;
          const page = await ctx.redis.zrevrangebyscore(key, below(upper), above(lower), 'WITHSCORES', 'LIMIT', 0, want);
          if (page.length === 0) break;
          const found: Listed[] = [];
          for (let i = 0; i + 1 < page.length; i += 2) found.push({ member: `${roomId}\0${page[i]!}`, score: Number(page[i + 1]), room: roomId });
          const excluded = await ctx.redis.zmscore(excludedKey, ...found.map((f) => f.member));
          found.forEach((f, i) => {
            if (excluded[i] === null) out.push(f);
          });
          if (found.length < want) break;
          upper = found[found.length - 1]!.score;
        }
        if (out.length >= count) break;
      }
      return out;
    };
    /** Up to `count` of the user's own list with scores in (lo, hi), newest first. */
    const fromOwn = async (key: string, lo: number, hi: number, count: number): Promise<Listed[]> => {
      const page = await ctx.redis.zrevrangebyscore(key, below(hi), above(lo), 'WITHSCORES', 'LIMIT', 0, count);
      const out: Listed[] = [];
      for (let i = 0; i + 1 < page.length; i += 2) out.push({ member: page[i]!, score: Number(page[i + 1]), room: null });
      return out;
    };
    /** The merged list's first `count` in (lo, hi) (with ties past `count` when `ties`), newest first. */
    const merged = async (highlights: boolean, lo: number, hi: number, count: number): Promise<Listed[]> => {
      const ownKey = highlights ? userKey(ctx, me.userId, pushData.highlights(me.userId)) : userKey(ctx, me.userId, pushData.notifications(me.userId));
      const parts = await Promise.all([fromOwn(ownKey, lo, hi, count), ...rooms.map((r) => fromRoom(r.roomId, highlights, lo, hi, count))]);
      // An event in both the user's list and a room's (recorded around the upgrade to room logs) once.
      const seen = new Set<string>();
      return parts.flat().filter((e) => !seen.has(e.member) && !!seen.add(e.member)).sort((a, b) => b.score - a.score);
    };

    // The latest NOTIFICATIONS_KEPT of the whole list (all notifications, not only highlights) are
    // served: the lists are trimmed in chunks, the one past the bound and anything at or below its
    // score are not. Counted first: most users have fewer, and then nothing is fetched for it.
    let min = Number.NEGATIVE_INFINITY;
    const counts = await Promise.all([
      ctx.redis.zcard(userKey(ctx, me.userId, pushData.notifications(me.userId))),
      ...rooms.flatMap((r) => r.intervals.map(([start, end]) => ctx.redis.zcount(listOf(r.roomId, false), above(start), below(end)))),
    ]);
    if (counts.reduce((a, b) => a + b, 0) > NOTIFICATIONS_KEPT) {
      const past = (await merged(false, Number.NEGATIVE_INFINITY, Number.POSITIVE_INFINITY, NOTIFICATIONS_KEPT + 1))[NOTIFICATIONS_KEPT];
      if (past) min = past.score;
    }
    const max = from === null ? Number.POSITIVE_INFINITY : from;
    const entries = (await merged(highlightOnly, min, max, limit + 1)).slice(0, limit + 1);
    let more = false;
    if (entries.length > limit) {
      more = true;
      const next = entries.pop()!;
      const last = entries[entries.length - 1]!;
      if (next.score === last.score) {
        // Keep every notification of the last arrival time on this page.
        const tie = (await merged(highlightOnly, last.score - 1, last.score + 1, limit + 1)).filter((e) => e.score === last.score);
        const have = new Set(entries.map((e) => e.member));
        for (const t of tie) if (!have.has(t.member)) entries.push(t);
        more = (await merged(highlightOnly, min, last.score, 1)).length > 0;
      }
    }
    if (entries.length === 0) return { body: { notifications: [] } };

    const ownDetails = entries.some((e) => e.room === null) ? await ctx.redis.hmget(userKey(ctx, me.userId, pushData.notificationData(me.userId)), ...entries.map((e) => e.member)) : [];
    const notifications = await Promise.all(
      entries.map(async ({ member, score, room }, i) => {
        const sep = member.indexOf('\0');
        if (sep < 0) return null;
        const roomId = member.slice(0, sep);
        const eventId = member.slice(sep + 1);
        const raw = room === null ? ownDetails[i] : await ctx.redis.hget(roomShard(ctx, roomId).data(pushData.roomListData(roomId)), eventId);
        // How far the user has read: their receipts, and their own latest events (which read as receipts).
        const readOf = async (thread: string | null) => {
          const shard = roomShard(ctx, roomId);
          const [receipts, sent] = await Promise.all([ctx.redis.hmget(shard.data(roomData.receipts(roomId)), ...readFields(me.userId, thread)), ctx.redis.zmscore(shard.data(pushData.sentUpTo(roomId)), ...sentMembers(me.userId, thread))]);
          return readPositions(receipts, thread, sent);
        };
        // Stored details (and the receipts they need) read along with the event; a plain
        // notification's are not stored, they come from the event (push-evaluator.ts `derivedDetails`).
        const stored = raw ? (JSON.parse(raw) as NotificationDetails) : null;
        const [event, storedRead] = await Promise.all([ctx.rooms.event(roomId, eventId), stored ? readOf(stored.thread) : Promise.resolve(null)]);
        if (!event || !servableToClients(event)) return null;
        const d = stored ?? derivedDetails(event, score);
        const read = storedRead ?? (await readOf(d.thread));
        const [formatted] = await formatEvents(ctx, roomId, [event], me);
        const { room_id: _roomId, ...withoutRoom } = formatted as JsonObject;
        return { actions: d.actions, event: withoutRoom, read: d.pos <= (d.thread ? read.thread : read.main), room_id: roomId, ts: d.ts } as JsonObject;
      }),
    );
    const body: JsonObject = { notifications: notifications.filter((n): n is JsonObject => n !== null) };
    if (more) body.next_token = String(entries[entries.length - 1]!.score);
    return { body };
  });
}
