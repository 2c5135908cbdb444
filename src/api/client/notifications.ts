/**
 * `GET /notifications` (notifications.yaml): the events the user was notified about, newest
 * first, from what the push evaluator recorded (src/readers/push-evaluator.ts): the event, its
 * room, when it arrived, the actions of the rule that matched (stored with the list entry, or for
 * a plain `["notify"]` of an event without a relation, derived from the event), and whether the user's read
 * receipts have passed it (computed now, so it is current). `only=highlight` keeps the
 * highlighting ones. The list serves the latest `NOTIFICATIONS_KEPT` per user: the evaluator trims
 * it in chunks, so it may hold a few more between trims, which are left out here (those at or
 * below the score of the first one past the bound, for both lists); redacted events leave it.
 *
 * `from`/`next_token` is the arrival order (push-evaluator.ts `listScore`) below which the next
 * page starts; notifications that share the last one's place are all on that page, so pages never
 * split them.
 */
import { errors } from '../../http/errors';
import type { Front } from '../../http/server';
import type { JsonObject } from '../../protocol/json';
import { servableToClients } from '../../store/room-reader';
import { pushData } from '../../store/keys';
import { readFields, readPositions } from '../../store/read-receipts';
import { roomData } from '../../store/keys';
import { NOTIFICATIONS_KEPT, derivedDetails, type NotificationDetails } from '../../readers/push-evaluator';
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

export function registerNotificationRoutes(front: Front, ctx: ApiContext): void {
  clientRoute(front, 'GET', '/notifications', async (req) => {
    const me = await requireUser(ctx, req);
    const limit = parseLimit(req.query['limit']);
    const from = parseFrom(req.query['from']);
    const all = userKey(ctx, me.userId, pushData.notifications(me.userId));
    const list = req.query['only'] === 'highlight' ? userKey(ctx, me.userId, pushData.highlights(me.userId)) : all;
    if (limit === 0) return { body: { notifications: [] } };

    // The first notification past the latest NOTIFICATIONS_KEPT (the list is trimmed in chunks):
    // it and anything older are not served.
    const past = await ctx.redis.zrevrange(all, NOTIFICATIONS_KEPT, NOTIFICATIONS_KEPT, 'WITHSCORES');
    const min = past.length >= 2 ? `(${past[1]}` : '-inf';
    const max = from === null ? '+inf' : `(${from}`;
    const page = await ctx.redis.zrevrangebyscore(list, max, min, 'WITHSCORES', 'LIMIT', 0, limit + 1);
    const entries: { member: string; score: number }[] = [];
    for (let i = 0; i + 1 < page.length; i += 2) entries.push({ member: page[i]!, score: Number(page[i + 1]) });
    let more = false;
    if (entries.length > limit) {
      more = true;
      const next = entries.pop()!;
      const last = entries[entries.length - 1]!;
      if (next.score === last.score) {
        // Keep every notification of the last arrival time on this page.
        const tie = await ctx.redis.zrevrangebyscore(list, last.score, last.score);
        const have = new Set(entries.map((e) => e.member));
        for (const m of tie) if (!have.has(m)) entries.push({ member: m, score: last.score });
        more = (await ctx.redis.zrevrangebyscore(list, `(${last.score}`, min, 'LIMIT', 0, 1)).length > 0;
      }
    }
    if (entries.length === 0) return { body: { notifications: [] } };

    const details = await ctx.redis.hmget(userKey(ctx, me.userId, pushData.notificationData(me.userId)), ...entries.map((e) => e.member));
    const notifications = await Promise.all(
      entries.map(async ({ member, score }, i) => {
        const sep = member.indexOf('\0');
        if (sep < 0) return null;
        const roomId = member.slice(0, sep);
        const eventId = member.slice(sep + 1);
        const raw = details[i];
        const receiptsOf = (thread: string | null) => ctx.redis.hmget(roomShard(ctx, roomId).data(roomData.receipts(roomId)), ...readFields(me.userId, thread));
        // Stored details (and the receipts they need) read along with the event; a plain
        // notification's are not stored, they come from the event (push-evaluator.ts `derivedDetails`).
        const stored = raw ? (JSON.parse(raw) as NotificationDetails) : null;
        const [event, storedReceipts] = await Promise.all([ctx.rooms.event(roomId, eventId), stored ? receiptsOf(stored.thread) : Promise.resolve(null)]);
        if (!event || !servableToClients(event)) return null;
        const d = stored ?? derivedDetails(event, score);
        const receipts = storedReceipts ?? (await receiptsOf(d.thread));
        const [formatted] = await formatEvents(ctx, roomId, [event], me);
        const { room_id: _roomId, ...withoutRoom } = formatted as JsonObject;
        const read = readPositions(receipts, d.thread);
        return { actions: d.actions, event: withoutRoom, read: d.pos <= (d.thread ? read.thread : read.main), room_id: roomId, ts: d.ts } as JsonObject;
      }),
    );
    const body: JsonObject = { notifications: notifications.filter((n): n is JsonObject => n !== null) };
    if (more) body.next_token = String(entries[entries.length - 1]!.score);
    return { body };
  });
}
