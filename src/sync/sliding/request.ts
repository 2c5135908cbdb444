/**
 * The body of a simplified sliding sync request (MSC4186, Synapse's unstable shape), checked and
 * turned into plain types. Pure: problems come back as strings the route answers with 400.
 *
 * What each part means, as Synapse 1.163 reads it: `lists` (each with `ranges`, `required_state`,
 * `timeline_limit`, `filters`) are sent by clients with every request; `room_subscriptions` are
 * kept by the connection until `unsubscribe_rooms` names them (matrix-js-sdk sends a subscription
 * once; a client that repeats them every time sees the same); extensions are asked for per request.
 */
import { isJsonObject, type JsonObject, type JsonValue } from '../../protocol/json';

/** A list or subscription's `required_state`: `[type, state_key]` pairs as sent. */
export type RequiredStatePairs = [string, string][];

export interface RoomConfig {
  requiredState: RequiredStatePairs;
  /** v4's `required_state.exclude` as pairs ('*' = any). */
  exclude?: RequiredStatePairs;
  timelineLimit: number;
}

export interface ListFilters {
  isDm?: boolean;
  isEncrypted?: boolean;
  isInvite?: boolean;
  /** `null` in the list stands for rooms without a type. */
  roomTypes?: (string | null)[];
  notRoomTypes?: (string | null)[];
  spaces?: string[];
  tags?: string[];
  notTags?: string[];
  roomNameLike?: string;
}

export interface ListConfig extends RoomConfig {
  /** Inclusive index ranges into the list sorted by recency. */
  ranges: [number, number][];
  filters: ListFilters;
}

export interface Extensions {
  toDevice?: { since?: string; limit: number };
  e2ee?: true;
  accountData?: ExtensionScope;
  receipts?: ExtensionScope;
  typing?: ExtensionScope;
  /** MSC4308 (`io.element.msc4308.thread_subscriptions`): changes to the user's thread subscriptions, at most `limit`. */
  threadSubscriptions?: { limit: number };
}

/**
 * Which rooms an extension covers: `lists` and `rooms` as sent (absent = every list and
 * subscription; MSC3959/60/61 allow `*`).
 */
export interface ExtensionScope {
  lists?: string[];
  rooms?: string[];
}

/** The two shapes one engine answers: Synapse's unstable one and the merged MSC's v4. */
export type Shape = 'unstable' | 'v4';

export interface SlidingRequest {
  shape: Shape;
  connId: string;
  lists: Map<string, ListConfig>;
  roomSubscriptions: Map<string, RoomConfig>;
  unsubscribeRooms: string[];
  extensions: Extensions;
  /** v4: in the body (the unstable shape takes them from the query). */
  pos?: string;
  timeout?: number;
  setPresence?: 'online' | 'offline' | 'unavailable';
}

/** A v4 list's missing `range`: the whole filtered list. */
const WHOLE_LIST: [number, number] = [0, Number.MAX_SAFE_INTEGER];

/** Most rooms a request may subscribe to (the bound; Synapse has none). */
export const MAX_ROOM_SUBSCRIPTIONS = 100;
export const MAX_LISTS = 100;
export const MAX_TIMELINE_LIMIT = 1000;
const MAX_REQUIRED_STATE_PAIRS = 1000;
const MAX_CONN_ID_LENGTH = 200;
const TO_DEVICE_DEFAULT_LIMIT = 100;
const TO_DEVICE_MAX_LIMIT = 1000;
const STREAM_ID = /^\d{1,20}-\d{1,20}$/;

export class RequestProblem extends Error {}
/** A parameter with a value outside what it allows (400 `M_INVALID_PARAM`, as the MSC says for set_presence). */
export class InvalidParam extends RequestProblem {}

function fail(message: string): never {
  throw new RequestProblem(message);
}

function isNonNegInt(v: JsonValue | undefined): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0;
}

function stringList(v: JsonValue | undefined, name: string, allowNull = false): (string | null)[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v) || !v.every((s) => typeof s === 'string' || (allowNull && s === null))) fail(`${name} must be a list of strings`);
  return v as (string | null)[];
}

function optionalBool(v: JsonValue | undefined, name: string): boolean | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') fail(`${name} must be true or false`);
  return v;
}

function requiredStateOf(v: JsonValue | undefined, name: string): RequiredStatePairs {
  if (!Array.isArray(v)) fail(`${name}.required_state must be a list of [type, state_key] pairs`);
  if (v.length > MAX_REQUIRED_STATE_PAIRS) fail(`${name}.required_state has more than ${MAX_REQUIRED_STATE_PAIRS} pairs`);
  return v.map((p) => {
    if (!Array.isArray(p) || p.length !== 2 || typeof p[0] !== 'string' || typeof p[1] !== 'string') fail(`${name}.required_state must be a list of [type, state_key] pairs`);
    return [p[0], p[1]] as [string, string];
  });
}

/** v4's `required_state`: `{include: [{type?, state_key?}], exclude: [...], lazy_members}`. */
function requiredStateV4(v: JsonValue | undefined, name: string): { requiredState: RequiredStatePairs; exclude: RequiredStatePairs } {
  if (!isJsonObject(v)) fail(`${name}.required_state must be an object with include, exclude, lazy_members`);
  const elements = (x: JsonValue | undefined, part: string): RequiredStatePairs => {
    if (x === undefined || x === null) return [];
    if (!Array.isArray(x)) fail(`${name}.required_state.${part} must be a list`);
    if (x.length > MAX_REQUIRED_STATE_PAIRS) fail(`${name}.required_state.${part} has more than ${MAX_REQUIRED_STATE_PAIRS} elements`);
    return x.map((e) => {
      if (!isJsonObject(e) || (e.type !== undefined && typeof e.type !== 'string') || (e.state_key !== undefined && typeof e.state_key !== 'string')) fail(`${name}.required_state.${part} elements are {type?, state_key?} objects`);
      return [(e.type as string | undefined) ?? '*', (e.state_key as string | undefined) ?? '*'] as [string, string];
    });
  };
  const requiredState = elements(v.include, 'include');
  const lazy = optionalBool(v.lazy_members, `${name}.required_state.lazy_members`);
  if (lazy) requiredState.push(['m.room.member', '$LAZY']);
  return { requiredState, exclude: elements(v.exclude, 'exclude') };
}

function roomConfigOf(v: JsonValue, name: string, shape: Shape = 'unstable'): RoomConfig {
  if (!isJsonObject(v)) fail(`${name} must be an object`);
  const limit = v.timeline_limit;
  if (!isNonNegInt(limit)) fail(`${name}.timeline_limit must be a non-negative integer`);
  const timelineLimit = Math.min(limit, MAX_TIMELINE_LIMIT);
  if (shape === 'v4') return { ...requiredStateV4(v.required_state, name), timelineLimit };
  return { requiredState: requiredStateOf(v.required_state, name), timelineLimit };
}

function filtersOf(v: JsonValue | undefined, name: string, shape: Shape): ListFilters {
  if (v === undefined || v === null) return {};
  if (!isJsonObject(v)) fail(`${name}.filters must be an object`);
  const f: ListFilters = {};
  const isDm = optionalBool(v.is_dm, `${name}.filters.is_dm`);
  const isEncrypted = optionalBool(v.is_encrypted, `${name}.filters.is_encrypted`);
  // Renamed `is_invited` in the merged MSC.
  const inviteField = shape === 'v4' ? 'is_invited' : 'is_invite';
  const isInvite = optionalBool(v[inviteField], `${name}.filters.${inviteField}`);
  if (isDm !== undefined) f.isDm = isDm;
  if (isEncrypted !== undefined) f.isEncrypted = isEncrypted;
  if (isInvite !== undefined) f.isInvite = isInvite;
  const roomTypes = stringList(v.room_types, `${name}.filters.room_types`, true);
  const notRoomTypes = stringList(v.not_room_types, `${name}.filters.not_room_types`, true);
  const spaces = stringList(v.spaces, `${name}.filters.spaces`);
  const tags = stringList(v.tags, `${name}.filters.tags`);
  const notTags = stringList(v.not_tags, `${name}.filters.not_tags`);
  if (roomTypes) f.roomTypes = roomTypes;
  if (notRoomTypes) f.notRoomTypes = notRoomTypes;
  if (spaces) f.spaces = spaces as string[];
  if (tags) f.tags = tags as string[];
  if (notTags) f.notTags = notTags as string[];
  if (v.room_name_like !== undefined && v.room_name_like !== null) {
    if (typeof v.room_name_like !== 'string') fail(`${name}.filters.room_name_like must be a string`);
    f.roomNameLike = v.room_name_like;
  }
  return f;
}

function rangesOf(v: JsonValue | undefined, name: string): [number, number][] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) fail(`${name}.ranges must be a list of [start, end] pairs`);
  return v.map((r) => {
    if (!Array.isArray(r) || r.length !== 2 || !isNonNegInt(r[0]) || !isNonNegInt(r[1]) || r[0] > r[1]) fail(`${name}.ranges must be a list of [start, end] pairs with 0 <= start <= end`);
    return [r[0], r[1]] as [number, number];
  });
}

function scopeOf(v: JsonObject, name: string): ExtensionScope {
  const s: ExtensionScope = {};
  const lists = stringList(v.lists, `extensions.${name}.lists`);
  const rooms = stringList(v.rooms, `extensions.${name}.rooms`);
  if (lists) s.lists = lists as string[];
  if (rooms) s.rooms = rooms as string[];
  return s;
}

function enabled(v: JsonValue | undefined, name: string): JsonObject | null {
  if (v === undefined || v === null) return null;
  if (!isJsonObject(v)) fail(`extensions.${name} must be an object`);
  const on = optionalBool(v.enabled, `extensions.${name}.enabled`);
  return on ? v : null;
}

function extensionsOf(v: JsonValue | undefined): Extensions {
  if (v === undefined || v === null) return {};
  if (!isJsonObject(v)) fail('extensions must be an object');
  const out: Extensions = {};
  const td = enabled(v.to_device, 'to_device');
  if (td) {
    const since = td.since;
    if (since !== undefined && since !== null && (typeof since !== 'string' || !STREAM_ID.test(since))) fail('extensions.to_device.since must be a next_batch this server gave');
    const limit = td.limit;
    if (limit !== undefined && limit !== null && !isNonNegInt(limit)) fail('extensions.to_device.limit must be a non-negative integer');
    out.toDevice = { ...(typeof since === 'string' ? { since } : {}), limit: Math.min(typeof limit === 'number' ? limit : TO_DEVICE_DEFAULT_LIMIT, TO_DEVICE_MAX_LIMIT) };
  }
  if (enabled(v.e2ee, 'e2ee')) out.e2ee = true;
  const ad = enabled(v.account_data, 'account_data');
  if (ad) out.accountData = scopeOf(ad, 'account_data');
  const rc = enabled(v.receipts, 'receipts');
  if (rc) out.receipts = scopeOf(rc, 'receipts');
  const ty = enabled(v.typing, 'typing');
  if (ty) out.typing = scopeOf(ty, 'typing');
  const ts = enabled(v[THREAD_SUBSCRIPTIONS_EXTENSION], THREAD_SUBSCRIPTIONS_EXTENSION);
  if (ts) {
    const limit = ts.limit;
    if (limit !== undefined && limit !== null && (!isNonNegInt(limit) || limit < 1)) fail(`extensions.${THREAD_SUBSCRIPTIONS_EXTENSION}.limit must be a positive integer`);
    out.threadSubscriptions = { limit: Math.min(typeof limit === 'number' ? limit : THREAD_SUBSCRIPTIONS_DEFAULT_LIMIT, THREAD_SUBSCRIPTIONS_MAX_LIMIT) };
  }
  return out;
}

/** MSC4308's extension name (the unstable prefix Synapse 1.163 and the Rust SDK use). */
export const THREAD_SUBSCRIPTIONS_EXTENSION = 'io.element.msc4308.thread_subscriptions';
/** Synapse's default `limit`; the cap is the companion endpoint's (GET /thread_subscriptions). */
const THREAD_SUBSCRIPTIONS_DEFAULT_LIMIT = 100;
const THREAD_SUBSCRIPTIONS_MAX_LIMIT = 512;

function rangeV4(v: JsonValue | undefined, name: string): [number, number][] {
  if (v === undefined || v === null) return [WHOLE_LIST];
  if (!Array.isArray(v) || v.length !== 2 || !isNonNegInt(v[0]) || !isNonNegInt(v[1]) || v[0] > v[1]) fail(`${name}.range must be [start, end] with 0 <= start <= end`);
  return [[v[0], v[1]]];
}

/** The request body as a SlidingRequest; throws RequestProblem for what the route answers 400. */
export function parseSlidingRequest(body: JsonValue, shape: Shape = 'unstable'): SlidingRequest {
  if (!isJsonObject(body)) fail('The request body must be a JSON object');
  let connId = '';
  if (body.conn_id !== undefined && body.conn_id !== null) {
    if (typeof body.conn_id !== 'string' || body.conn_id.length > MAX_CONN_ID_LENGTH) fail(`conn_id must be a string of at most ${MAX_CONN_ID_LENGTH} characters`);
    connId = body.conn_id;
  }
  const lists = new Map<string, ListConfig>();
  if (body.lists !== undefined && body.lists !== null) {
    if (!isJsonObject(body.lists)) fail('lists must be an object');
    const entries = Object.entries(body.lists);
    if (entries.length > MAX_LISTS) fail(`at most ${MAX_LISTS} lists`);
    for (const [name, raw] of entries) {
      const label = `lists.${name}`;
      const base = roomConfigOf(raw, label, shape);
      const o = raw as JsonObject;
      lists.set(name, { ...base, ranges: shape === 'v4' ? rangeV4(o.range, label) : rangesOf(o.ranges, label), filters: filtersOf(o.filters, label, shape) });
    }
  }
  const roomSubscriptions = new Map<string, RoomConfig>();
  if (body.room_subscriptions !== undefined && body.room_subscriptions !== null) {
    if (!isJsonObject(body.room_subscriptions)) fail('room_subscriptions must be an object');
    const entries = Object.entries(body.room_subscriptions);
    if (entries.length > MAX_ROOM_SUBSCRIPTIONS) fail(`at most ${MAX_ROOM_SUBSCRIPTIONS} room_subscriptions`);
    for (const [roomId, raw] of entries) {
      if (!roomId.startsWith('!')) fail(`room_subscriptions: ${roomId} is not a room id`);
      roomSubscriptions.set(roomId, roomConfigOf(raw, `room_subscriptions.${roomId}`, shape));
    }
  }
  const unsubscribeRooms = (stringList(body.unsubscribe_rooms, 'unsubscribe_rooms') ?? []) as string[];
  const out: SlidingRequest = { shape, connId, lists, roomSubscriptions, unsubscribeRooms, extensions: extensionsOf(body.extensions) };
  if (shape === 'v4') {
    if (body.pos !== undefined && body.pos !== null) {
      if (typeof body.pos !== 'string') fail('pos must be a string');
      out.pos = body.pos;
    }
    if (body.timeout !== undefined && body.timeout !== null) {
      if (!isNonNegInt(body.timeout)) fail('timeout must be a non-negative integer (ms)');
      out.timeout = body.timeout;
    }
    if (body.set_presence !== undefined && body.set_presence !== null) {
      if (body.set_presence !== 'online' && body.set_presence !== 'offline' && body.set_presence !== 'unavailable') throw new InvalidParam('set_presence must be online, offline or unavailable');
      out.setPresence = body.set_presence;
    }
  }
  return out;
}
