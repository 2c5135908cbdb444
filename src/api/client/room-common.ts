/**
 * What the room endpoints share: routes under /v3 and /r0, asking the room actor with its
 * rejections turned into Matrix errors, id and body validation, who may read a room, pagination
 * tokens, event filters, and the client format of events.
 */
import type { Front, Handler, Request } from '../../http/server';
import type { Method } from '../../http/router';
import { errors } from '../../http/errors';
import { isJsonObject, parseStrictJson, type JsonObject, type JsonValue } from '../../protocol/json';
import type { RoomEventFilter } from '../../rooms/event-filter';
import { typePatternProblems } from './filter-validation';
import { stateKeyOf } from '../../protocol/pdu';
import { servableAsState, type RoomEvent } from '../../store/room-reader';
import { roomData, userData } from '../../store/keys';
import { shardOf } from '../../store/shards';
import { roomShard } from '../../store/shard-keys';
import type { ApiContext } from '../context';

export const CLIENT_PREFIXES = ['/_matrix/client/v3', '/_matrix/client/r0'] as const;

/** Register a Client-Server route under every prefix we serve. */
export function clientRoute(front: Front, method: Method, path: string, handler: Handler): void {
  for (const prefix of CLIENT_PREFIXES) front.route(method, `${prefix}${path}`, handler);
}

/** A client transaction key: idempotency is per user, device, endpoint and transaction id. */
export function txnKey(endpoint: 'send' | 'redact', userId: string, deviceId: string, txnId: string): string {
  return `${endpoint}\u0000${userId}\u0000${deviceId}\u0000${txnId}`;
}

function parseTxnKey(key: string): { userId: string; deviceId: string; txnId: string } | null {
  const parts = key.split('\u0000');
  if (parts.length < 4) return null;
  return { userId: parts[1]!, deviceId: parts[2]!, txnId: parts.slice(3).join('\u0000') };
}

/** The request body, which must be a JSON object. */
export function bodyObject(req: Request): JsonObject {
  const v = req.json();
  if (!isJsonObject(v)) throw errors.badJson('The request body must be a JSON object');
  return v;
}

// ---- pagination tokens ---------------------------------------------------------------------

/**
 * A room pagination token is `p<N>`: the gap after stream position N. Backwards from it come the
 * events at N and before; forwards, the events after N.
 */
export function encodeToken(pos: number): string {
  return `p${pos}`;
}

export function decodeToken(token: string, name: string): number {
  // Positions of backfilled history are negative (below everything the room knew before).
  const m = /^p(-?\d{1,15})$/.exec(token);
  if (!m) throw errors.invalidParam(`Malformed ${name} token`);
  return Number(m[1]);
}

// ---- event filters ---------------------------------------------------------------------

/** An inline JSON RoomEventFilter from a query parameter (absent: match everything). */
export function parseEventFilter(raw: string | undefined): RoomEventFilter {
  if (raw === undefined || raw === '') return {};
  let v: JsonValue;
  try {
    v = parseStrictJson(Buffer.from(raw, 'utf8'));
  } catch {
    throw errors.invalidParam('filter must be a JSON RoomEventFilter');
  }
  return eventFilterFromJson(v);
}

/** A RoomEventFilter from its JSON, checked field by field (400 M_INVALID_PARAM otherwise). */
export function eventFilterFromJson(v: JsonValue): RoomEventFilter {
  if (!isJsonObject(v)) throw errors.invalidParam('filter must be a JSON object');
  const f: RoomEventFilter = {};
  for (const key of ['types', 'not_types', 'senders', 'not_senders', 'rooms', 'not_rooms'] as const) {
    const list = v[key];
    if (list === undefined || list === null) continue;
    if (!Array.isArray(list) || !list.every((x) => typeof x === 'string')) throw errors.invalidParam(`filter.${key} must be a list of strings`);
    if (key === 'types' || key === 'not_types') {
      const problems = typePatternProblems(list as string[], `filter.${key}`);
      if (problems.length) throw errors.invalidParam(problems.join('; '));
    }
    f[key] = list as string[];
  }
  for (const key of ['contains_url', 'lazy_load_members'] as const) {
    const b = v[key];
    if (b === undefined || b === null) continue;
    if (typeof b !== 'boolean') throw errors.invalidParam(`filter.${key} must be a boolean`);
    f[key] = b;
  }
  if (v.limit !== undefined) {
    if (typeof v.limit !== 'number' || !Number.isInteger(v.limit) || v.limit < 1) throw errors.invalidParam('filter.limit must be a positive integer');
    f.limit = v.limit;
  }
  return f;
}

/**
 * The `filter` query parameter of `/messages` and `/context`: inline JSON (a RoomEventFilter, as
 * the spec says), or — as for `/sync` — the id of a filter the user stored with
 * `POST /user/{userId}/filter`. A stored filter is a whole Filter, so its timeline part
 * (`room.timeline`) is the RoomEventFilter, and its `room.rooms` / `room.not_rooms` narrow which
 * rooms it lets through. Like /sync, a value starting with `{` is JSON, anything else an id; an
 * id the user has not stored is 400 M_INVALID_PARAM (/sync answers the same).
 */
export async function loadRoomEventFilter(ctx: ApiContext, userId: string, raw: string | undefined): Promise<RoomEventFilter> {
  if (raw === undefined || raw === '') return {};
  if (raw.trimStart().startsWith('{')) return parseEventFilter(raw);
  const json = await ctx.redis.hget(ctx.keys.shard('user', shardOf(userId, ctx.shardCounts.user)).data(userData.filters(userId)), raw);
  if (json === null) throw errors.invalidParam('Unknown filter id');
  let stored: JsonValue;
  try {
    stored = parseStrictJson(Buffer.from(json, 'utf8'));
  } catch {
    throw errors.invalidParam('The stored filter is not valid JSON');
  }
  const room = isJsonObject(stored) && isJsonObject(stored.room as JsonValue) ? (stored.room as JsonObject) : {};
  const timeline = isJsonObject(room.timeline as JsonValue) ? { ...(room.timeline as JsonObject) } : {};
  // A stored limit of 0 (allowed in a sync filter) means "no limit of its own" here.
  if (timeline.limit === 0) delete timeline.limit;
  const f = eventFilterFromJson(timeline);
  const outer = eventFilterFromJson({ ...(room.rooms !== undefined ? { rooms: room.rooms } : {}), ...(room.not_rooms !== undefined ? { not_rooms: room.not_rooms } : {}) });
  if (outer.rooms) f.rooms = f.rooms ? f.rooms.filter((r) => outer.rooms!.includes(r)) : outer.rooms;
  if (outer.not_rooms) f.not_rooms = [...(f.not_rooms ?? []), ...outer.not_rooms];
  return f;
}

/** For lazy-loading: the membership events of the senders of `events`, as of each event. */
export async function lazyMemberState(ctx: ApiContext, roomId: string, events: RoomEvent[]): Promise<RoomEvent[]> {
  const ids = new Set<string>();
  const senders = new Set<string>();
  for (const e of events) {
    const sender = String(e.event.sender);
    if (senders.has(sender)) continue;
    senders.add(sender);
    const state = await ctx.rooms.snapshot(roomId, e.stateAfter);
    const id = state.get(stateKeyOf('m.room.member', sender));
    if (id) ids.add(id);
  }
  return (await ctx.rooms.events(roomId, [...ids])).filter(servableAsState);
}

// ---- the client format -------------------------------------------------------------------

/** The room an event belongs to (v12 create events carry no room_id: the room id is derived from them). */
export function eventRoomId(e: RoomEvent): string | null {
  if (typeof e.event.room_id === 'string') return e.event.room_id;
  if (e.event.type === 'm.room.create' && e.eventId.startsWith('$')) return `!${e.eventId.slice(1)}`;
  return null;
}

/**
 * Events in the client format: the federation-only fields (auth_events, prev_events, hashes,
 * signatures, depth, origin, …) left out; `unsigned` with `age`, the sender's own device's
 * `transaction_id`, and `redacted_because` for redacted events. Redactions of v11+ rooms get a
 * top-level `redacts` as well, for clients that predate it moving into content.
 */
export async function formatEvents(ctx: ApiContext, roomId: string, events: RoomEvent[], viewer: { userId: string; deviceId: string } | null): Promise<JsonObject[]> {
  if (events.length === 0) return [];
  const own = events.filter((e) => viewer && e.event.sender === viewer.userId);
  const txns = new Map<string, string>();
  if (own.length && viewer) {
    const keys = await ctx.redis.hmget(roomShard(ctx, roomId).data(roomData.eventTxns(roomId)), ...own.map((e) => e.eventId));
    own.forEach((e, i) => {
      const t = keys[i] ? parseTxnKey(keys[i]!) : null;
      if (t && t.userId === viewer.userId && t.deviceId === viewer.deviceId) txns.set(e.eventId, t.txnId);
    });
  }
  const redactionIds = [...new Set(events.map((e) => e.redactedBy).filter((id): id is string => !!id))];
  const redactions = new Map((await ctx.rooms.events(roomId, redactionIds)).map((r) => [r.eventId, r]));
  // State events say what they replaced (unsigned.replaces_state, prev_content, prev_sender), so
  // clients can show "changed their name from …": the entry for the same key in the state before.
  const replaced = new Map<string, string>();
  for (const e of events) {
    if (typeof e.event.state_key !== 'string' || typeof e.event.type !== 'string' || !e.stateBefore) continue;
    const prev = (await ctx.rooms.snapshot(roomId, e.stateBefore)).get(stateKeyOf(e.event.type, e.event.state_key));
    if (prev && prev !== e.eventId) replaced.set(e.eventId, prev);
  }
  const previous = new Map((await ctx.rooms.events(roomId, [...new Set(replaced.values())])).map((r) => [r.eventId, r]));
  const now = Date.now();
  return events.map((e) => {
    const because = e.redactedBy ? redactions.get(e.redactedBy) : undefined;
    const out = clientEvent(roomId, e, now, txns.get(e.eventId), because ? clientEvent(roomId, because, now, undefined, undefined) : undefined);
    const prev = previous.get(replaced.get(e.eventId) ?? '');
    if (prev) {
      const unsigned = out.unsigned as JsonObject;
      unsigned.replaces_state = prev.eventId;
      unsigned.prev_content = isJsonObject(prev.event.content as JsonValue) ? prev.event.content! : {};
      if (typeof prev.event.sender === 'string') unsigned.prev_sender = prev.event.sender;
    }
    return out;
  });
}

export function clientEvent(roomId: string, e: RoomEvent, now: number, transactionId: string | undefined, redactedBecause: JsonObject | undefined): JsonObject {
  const raw = e.event;
  const out: JsonObject = {
    content: isJsonObject(raw.content as JsonValue) ? raw.content! : {},
    event_id: e.eventId,
    origin_server_ts: typeof raw.origin_server_ts === 'number' ? raw.origin_server_ts : 0,
    room_id: eventRoomId(e) ?? roomId,
    sender: raw.sender ?? '',
    type: raw.type ?? '',
  };
  if (typeof raw.state_key === 'string') out.state_key = raw.state_key;
  if (raw.type === 'm.room.redaction') {
    const inContent = isJsonObject(raw.content as JsonValue) ? (raw.content as JsonObject).redacts : undefined;
    const redacts = typeof raw.redacts === 'string' ? raw.redacts : typeof inContent === 'string' ? inContent : undefined;
    if (redacts) out.redacts = redacts;
  }
  const unsigned: JsonObject = { age: Math.max(0, now - (out.origin_server_ts as number)) };
  if (transactionId !== undefined) unsigned.transaction_id = transactionId;
  if (redactedBecause) unsigned.redacted_because = redactedBecause;
  out.unsigned = unsigned;
  return out;
}
