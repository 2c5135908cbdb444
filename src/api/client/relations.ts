/**
 * Relations and threads (spec: "Forming relationships between events", "Threading"), and
 * `/timestamp_to_event`. They read indexes the room actor writes with each event it places in
 * the timeline (src/store/keys.ts `roomData.relations`, `threads`, `byTimestamp`), and answer
 * under the same visibility rules as the other room reads: 403 for rooms the user may not read,
 * 404 for events they may not see, and children they may not see left out.
 *
 * Bundled aggregations (`unsigned['m.relations']`) for `m.thread` and `m.replace` are added to
 * events served by /messages, /context and /event (`bundleAggregations`).
 */
import type { Front, Request } from '../../http/server';
import { errors } from '../../http/errors';
import { isJsonObject, type JsonObject, type JsonValue } from '../../protocol/json';
import { relationOf } from '../../rooms/model';
import { servableToClients, type RoomEvent } from '../../store/room-reader';
import { roomData } from '../../store/keys';
import { MembershipIndex } from '../../readers/membership-index';
import { requireUser } from './auth';
import type { ApiContext } from '../context';
import { decodeToken, encodeToken, roomGapOf } from '../../rooms/pagination';
import { eventRoomId, formatEvents } from '../../rooms/client-format';
import { roomShard } from '../../store/shard-keys';
import { requireRoomId } from '../../http/params';
import { roomAccess, visibleEvents } from '../../rooms/visibility';

const V1 = '/_matrix/client/v1';
const MAX_LIMIT = 1000;
/** How deep `recurse=true` follows relations of relations (Synapse uses 3 as well). */
const MAX_RECURSION_DEPTH = 3;
/** How many children of one parent one request looks at at most. */
const MAX_SCAN = 5000;

export function registerRelationRoutes(front: Front, ctx: ApiContext): void {
  const index = new MembershipIndex(ctx.redis, ctx.keys, ctx.shardCounts.user);

  const relations = async (req: Request) => {
    const user = await requireUser(ctx, req);
    const roomId = requireRoomId(req.params.roomId);
    const dir = req.query.dir ?? 'b';
    if (dir !== 'b' && dir !== 'f') throw errors.invalidParam('dir must be "b" or "f"');
    // Relations take any token Axon hands out: their own, /messages' and /sync's.
    const from = req.query.from ? await roomGapOf(ctx, roomId, req.query.from, 'from') : null;
    const to = req.query.to ? await roomGapOf(ctx, roomId, req.query.to, 'to') : null;
    const limit = parseLimit(req.query.limit, 50);
    const recurseRaw = req.query.recurse;
    if (recurseRaw !== undefined && recurseRaw !== 'true' && recurseRaw !== 'false') throw errors.invalidParam('recurse must be true or false');
    const recurse = recurseRaw === 'true';
    const relType = req.params.relType;
    const eventType = req.params.eventType;
    await roomAccess(ctx, index, user.userId, roomId);
    await visibleEventOr404(ctx, roomId, user.userId, req.params.eventId!);

    // Candidates: the children (and with recurse, their children, up to 3 levels), by position.
    const candidates = new Map<string, number>();
    let parents = [req.params.eventId!];
    for (let depth = 1; depth <= (recurse ? MAX_RECURSION_DEPTH : 1) && parents.length; depth++) {
      const next: string[] = [];
      for (const parent of parents) {
        for (const [id, pos] of await children(ctx, roomId, parent)) {
          if (candidates.has(id)) continue;
          candidates.set(id, pos);
          next.push(id);
        }
      }
      parents = next;
    }
    // Backwards from gap g: positions <= g; forwards from g: positions > g (as /messages).
    let ordered = [...candidates].sort((a, b) => (dir === 'b' ? b[1] - a[1] : a[1] - b[1]));
    ordered = ordered.filter(([, pos]) => {
      if (from !== null && (dir === 'b' ? pos > from : pos <= from)) return false;
      if (to !== null && (dir === 'b' ? pos <= to : pos > to)) return false;
      return true;
    });
    const chunk: RoomEvent[] = [];
    let lastScanned: number | null = null;
    let i = 0;
    while (i < ordered.length && chunk.length < limit) {
      const batch = ordered.slice(i, i + Math.max(limit - chunk.length, 20));
      const events = await ctx.rooms.events(roomId, batch.map(([id]) => id));
      const byId = new Map(events.map((e) => [e.eventId, e]));
      const matching = events.filter((e) => {
        const rel = relationOf(e.event);
        if (!rel) return false;
        if (relType !== undefined && rel.relType !== relType) return false;
        if (eventType !== undefined && e.event.type !== eventType) return false;
        return true;
      });
      const visible = new Set(await visibleEvents(ctx, roomId, user.userId, matching));
      for (const [id, pos] of batch) {
        i++;
        lastScanned = pos;
        const e = byId.get(id);
        if (e && visible.has(e)) {
          chunk.push(e);
          if (chunk.length === limit) break;
        }
      }
    }
    const body: JsonObject = { chunk: await formatEvents(ctx, roomId, chunk, user) };
    if (i < ordered.length && lastScanned !== null) body.next_batch = encodeToken(dir === 'b' ? lastScanned - 1 : lastScanned);
    if (from !== null) body.prev_batch = encodeToken(from);
    if (recurse) body.recursion_depth = MAX_RECURSION_DEPTH;
    return { body };
  };
  front.route('GET', `${V1}/rooms/:roomId/relations/:eventId`, relations);
  front.route('GET', `${V1}/rooms/:roomId/relations/:eventId/:relType`, relations);
  front.route('GET', `${V1}/rooms/:roomId/relations/:eventId/:relType/:eventType`, relations);

  front.route('GET', `${V1}/rooms/:roomId/threads`, async (req) => {
    const user = await requireUser(ctx, req);
    const roomId = requireRoomId(req.params.roomId);
    const include = req.query.include ?? 'all';
    if (include !== 'all' && include !== 'participated') throw errors.invalidParam('include must be "all" or "participated"');
    const limit = parseLimit(req.query.limit, 50);
    // A threads token is `p<N>`: continue with threads whose latest reply is before position N.
    const from = optToken(req.query.from, 'from');
    await roomAccess(ctx, index, user.userId, roomId);
    const key = roomShard(ctx, roomId).data(roomData.threads(roomId));
    const chunk: RoomEvent[] = [];
    let cursor = from === null ? '+inf' : `(${from}`;
    let nextBatch: number | null = null;
    scan: while (chunk.length < limit) {
      const rows = (await ctx.redis.zrevrangebyscore(key, cursor, '-inf', 'WITHSCORES', 'LIMIT', 0, 50)) as string[];
      if (rows.length === 0) break;
      const ids: string[] = [];
      const scores: number[] = [];
      for (let j = 0; j < rows.length; j += 2) {
        ids.push(rows[j]!);
        scores.push(Number(rows[j + 1]));
      }
      const roots = new Map((await ctx.rooms.events(roomId, ids)).map((e) => [e.eventId, e]));
      const visible = new Set(await visibleEvents(ctx, roomId, user.userId, [...roots.values()].filter((e) => eventRoomId(e) === roomId)));
      for (let j = 0; j < ids.length; j++) {
        const root = roots.get(ids[j]!);
        cursor = `(${scores[j]}`;
        if (!root || !visible.has(root)) continue;
        if (include === 'participated' && !(await participated(ctx, roomId, root, user.userId))) continue;
        chunk.push(root);
        if (chunk.length === limit) {
          nextBatch = scores[j]!;
          break scan;
        }
      }
      if (rows.length < 100) break;
    }
    if (nextBatch !== null) {
      // Only hand out a token when something older is left.
      const more = await ctx.redis.zrevrangebyscore(key, `(${nextBatch}`, '-inf', 'LIMIT', 0, 1);
      if (more.length === 0) nextBatch = null;
    }
    const formatted = await formatEvents(ctx, roomId, chunk, user);
    await bundleAggregations(ctx, roomId, chunk, formatted, user);
    const body: JsonObject = { chunk: formatted };
    if (nextBatch !== null) body.next_batch = encodeToken(nextBatch);
    return { body };
  });

  front.route('GET', `${V1}/rooms/:roomId/timestamp_to_event`, async (req) => {
    const user = await requireUser(ctx, req);
    const roomId = requireRoomId(req.params.roomId);
    const tsRaw = req.query.ts;
    if (tsRaw === undefined) throw errors.missingParam('ts is required');
    if (!/^\d{1,16}$/.test(tsRaw) || !Number.isSafeInteger(Number(tsRaw))) throw errors.invalidParam('ts must be a timestamp in milliseconds');
    const dir = req.query.dir;
    if (dir === undefined) throw errors.missingParam('dir is required');
    if (dir !== 'f' && dir !== 'b') throw errors.invalidParam('dir must be "f" or "b"');
    const ts = Number(tsRaw);
    await roomAccess(ctx, index, user.userId, roomId);
    const key = roomShard(ctx, roomId).data(roomData.byTimestamp(roomId));
    // Forwards: the first event at or after ts; backwards: the last event at or before ts.
    let offset = 0;
    for (;;) {
      const ids = (dir === 'f'
        ? await ctx.redis.zrangebyscore(key, ts, '+inf', 'LIMIT', offset, 100)
        : await ctx.redis.zrevrangebyscore(key, ts, '-inf', 'LIMIT', offset, 100)) as string[];
      if (ids.length === 0) break;
      const events = (await ctx.rooms.events(roomId, ids)).filter((e) => servableToClients(e) && eventRoomId(e) === roomId);
      const visible = new Set(await visibleEvents(ctx, roomId, user.userId, events));
      const byId = new Map(events.map((e) => [e.eventId, e]));
      for (const id of ids) {
        const e = byId.get(id);
        if (e && visible.has(e)) return { body: { event_id: e.eventId, origin_server_ts: e.event.origin_server_ts as number } };
      }
      offset += ids.length;
      if (ids.length < 100) break;
    }
    throw errors.notFound(`No visible event found ${dir === 'f' ? 'at or after' : 'at or before'} ${ts}`);
  });
}

function optToken(raw: string | undefined, name: string): number | null {
  return raw !== undefined && raw !== '' ? decodeToken(raw, name) : null;
}

function parseLimit(raw: string | undefined, fallback: number): number {
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d{1,9}$/.test(raw)) throw errors.invalidParam('limit must be a non-negative integer');
  return Math.max(1, Math.min(Number(raw), MAX_LIMIT));
}

async function visibleEventOr404(ctx: ApiContext, roomId: string, userId: string, eventId: string): Promise<RoomEvent> {
  const e = await ctx.rooms.event(roomId, eventId);
  if (!e || !servableToClients(e) || eventRoomId(e) !== roomId || !(await ctx.rooms.canSee(roomId, userId, eventId))) {
    throw errors.notFound('Event not found or not visible to you');
  }
  return e;
}

/** The direct children of an event: [event id, stream position], oldest first. */
async function children(ctx: ApiContext, roomId: string, parentId: string): Promise<[string, number][]> {
  const rows = (await ctx.redis.zrangebyscore(roomShard(ctx, roomId).data(roomData.relations(roomId, parentId)), '-inf', '+inf', 'WITHSCORES', 'LIMIT', 0, MAX_SCAN)) as string[];
  const out: [string, number][] = [];
  for (let i = 0; i < rows.length; i += 2) out.push([rows[i]!, Number(rows[i + 1])]);
  return out;
}

/** Did the user start the thread or reply in it? */
async function participated(ctx: ApiContext, roomId: string, root: RoomEvent, userId: string): Promise<boolean> {
  if (root.event.sender === userId) return true;
  const ids = (await children(ctx, roomId, root.eventId)).map(([id]) => id);
  const events = await ctx.rooms.events(roomId, ids);
  return events.some((e) => e.event.sender === userId && relationOf(e.event)?.relType === 'm.thread' && servableToClients(e));
}

/**
 * Add `unsigned['m.relations']` to formatted events (same order as `events`): for thread roots
 * `m.thread` { latest_event, count, current_user_participated }, and for edited events
 * `m.replace` (the latest valid edit: same sender, same type, not itself an edit of an edit).
 * Only children the viewer may see count. Events that are themselves redacted get none.
 */
export async function bundleAggregations(ctx: ApiContext, roomId: string, events: RoomEvent[], formatted: JsonObject[], viewer: { userId: string; deviceId: string }): Promise<void> {
  if (events.length === 0) return;
  const pipeline = ctx.redis.pipeline();
  for (const e of events) pipeline.zrangebyscore(roomShard(ctx, roomId).data(roomData.relations(roomId, e.eventId)), '-inf', '+inf', 'LIMIT', 0, MAX_SCAN);
  const results = (await pipeline.exec()) ?? [];
  for (let i = 0; i < events.length; i++) {
    const parent = events[i]!;
    const ids = (results[i]?.[1] as string[] | undefined) ?? [];
    if (ids.length === 0 || parent.redactedBy) continue;
    const kids = await ctx.rooms.events(roomId, ids);
    const thread: RoomEvent[] = [];
    const edits: RoomEvent[] = [];
    for (const k of kids) {
      const rel = relationOf(k.event);
      if (!rel || rel.parent !== parent.eventId || !servableToClients(k)) continue;
      if (rel.relType === 'm.thread') thread.push(k);
      else if (rel.relType === 'm.replace' && k.event.sender === parent.event.sender && k.event.type === parent.event.type && parent.event.state_key === undefined) edits.push(k);
    }
    const visibleThread = await visibleEvents(ctx, roomId, viewer.userId, thread);
    const visibleEdits = await visibleEvents(ctx, roomId, viewer.userId, edits);
    const relations: JsonObject = {};
    if (visibleThread.length) {
      const latest = visibleThread.reduce((a, b) => (b.pos > a.pos ? b : a));
      const [latestEvent] = await formatEvents(ctx, roomId, [latest], viewer, { membership: false });
      relations['m.thread'] = {
        latest_event: latestEvent!,
        count: visibleThread.length,
        current_user_participated: parent.event.sender === viewer.userId || visibleThread.some((e) => e.event.sender === viewer.userId),
      };
    }
    if (visibleEdits.length) {
      // "The most recent": greatest origin_server_ts, ties broken by the greatest event id.
      const ts = (e: RoomEvent) => (typeof e.event.origin_server_ts === 'number' ? e.event.origin_server_ts : 0);
      const latest = visibleEdits.reduce((a, b) => (ts(b) > ts(a) || (ts(b) === ts(a) && b.eventId > a.eventId) ? b : a));
      const [edit] = await formatEvents(ctx, roomId, [latest], viewer, { membership: false });
      relations['m.replace'] = edit!;
    }
    if (Object.keys(relations).length === 0) continue;
    const out = formatted[i]!;
    const unsigned = isJsonObject(out.unsigned as JsonValue) ? (out.unsigned as JsonObject) : {};
    unsigned['m.relations'] = relations;
    out.unsigned = unsigned;
  }
}
