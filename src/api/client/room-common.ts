/**
 * What the room endpoints share: routes under /v3 and /r0, the JSON body, event filters parsed
 * from requests, and lazy-loaded members. What the workflows and /sync need too lives below the
 * API: id checks (src/http/params.ts), filter matching, pagination and the client format of
 * events (src/rooms/event-filter.ts, pagination.ts, client-format.ts).
 */
import type { Front, Handler, Request } from '../../http/server';
import type { Method } from '../../http/router';
import { errors } from '../../http/errors';
import { isJsonObject, parseStrictJson, type JsonObject, type JsonValue } from '../../protocol/json';
import type { RoomEventFilter } from '../../rooms/event-filter';
import { typePatternProblems } from './filter-validation';
import { stateKeyOf } from '../../protocol/pdu';
import { servableAsState, type RoomEvent } from '../../store/room-reader';
import { userData } from '../../store/keys';
import { shardOf } from '../../store/shards';
import type { ApiContext } from '../context';

export const CLIENT_PREFIXES = ['/_matrix/client/v3', '/_matrix/client/r0'] as const;

/** Register a Client-Server route under every prefix we serve. */
export function clientRoute(front: Front, method: Method, path: string, handler: Handler): void {
  for (const prefix of CLIENT_PREFIXES) front.route(method, `${prefix}${path}`, handler);
}

/** The request body, which must be a JSON object. */
export function bodyObject(req: Request): JsonObject {
  const v = req.json();
  if (!isJsonObject(v)) throw errors.badJson('The request body must be a JSON object');
  return v;
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
  for (const key of ['rel_types', 'not_rel_types'] as const) {
    const list = v[`org.matrix.msc3874.${key}`];
    if (list === undefined || list === null) continue;
    if (!Array.isArray(list) || !list.every((x) => typeof x === 'string')) throw errors.invalidParam(`filter.org.matrix.msc3874.${key} must be a list of strings`);
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
