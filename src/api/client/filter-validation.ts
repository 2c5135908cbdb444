/**
 * Filter validation (`POST /user/{userId}/filter`), loosely after the spec's schema
 * (definitions/sync_filter.yaml, event_filter.yaml, room_event_filter.yaml): each known field
 * must have its type; unknown fields are allowed, as the schema does not forbid them. Pure.
 * Returns the problems found, empty when the filter is acceptable.
 */
import { utf8Length, type JsonObject, type JsonValue } from '../../protocol/json';

type Problems = string[];

/**
 * The longest entry of a filter's `types` / `not_types`, in UTF-8 bytes. An event type is at
 * most 255 bytes (spec, "Size limits"), so a longer entry could only match through repeated
 * `*`s, which mean no more than one. Synapse sets no bound; ours keeps every glob a client gives
 * us small (matching one costs ⌈(length+1)/32⌉ word operations per character of the type).
 */
export const MAX_FILTER_TYPE_BYTES = 255;
/**
 * The most entries with a `*` in one `types` / `not_types` list. Literal entries cost one set
 * lookup whatever their number; each glob costs a pass over the event type, and /sync checks
 * every state event type of a room against the filter, so a list of thousands of globs could
 * hold the process for seconds. A hundred is far more than clients send.
 */
export const MAX_FILTER_TYPE_GLOBS = 100;

/** What is wrong with a `types` / `not_types` list of strings (bounds on its entries and globs). */
export function typePatternProblems(list: readonly string[], path: string): string[] {
  const p: Problems = [];
  if (list.some((t) => utf8Length(t) > MAX_FILTER_TYPE_BYTES)) p.push(`${path} entries must be at most ${MAX_FILTER_TYPE_BYTES} bytes`);
  if (list.filter((t) => t.includes('*')).length > MAX_FILTER_TYPE_GLOBS) p.push(`${path} may hold at most ${MAX_FILTER_TYPE_GLOBS} entries with a *`);
  return p;
}

const isObject = (v: JsonValue | undefined): v is JsonObject => typeof v === 'object' && v !== null && !Array.isArray(v);

function stringList(v: JsonValue | undefined, path: string, p: Problems, prefix?: string): void {
  if (v === undefined) return;
  if (!Array.isArray(v) || !v.every((s) => typeof s === 'string')) return void p.push(`${path} must be a list of strings`);
  if (prefix && !(v as string[]).every((s) => s.startsWith(prefix))) p.push(`${path} must only hold ids starting with ${prefix}`);
}

function bool(v: JsonValue | undefined, path: string, p: Problems): void {
  if (v !== undefined && typeof v !== 'boolean') p.push(`${path} must be a boolean`);
}

function eventFilter(v: JsonValue | undefined, path: string, p: Problems): JsonObject | null {
  if (v === undefined) return null;
  if (!isObject(v)) return p.push(`${path} must be an object`), null;
  if (v.limit !== undefined && (typeof v.limit !== 'number' || !Number.isSafeInteger(v.limit) || v.limit < 0)) p.push(`${path}.limit must be a non-negative integer`);
  for (const key of ['types', 'not_types']) {
    const list = v[key];
    const before = p.length;
    stringList(list, `${path}.${key}`, p);
    if (list !== undefined && p.length === before) p.push(...typePatternProblems(list as string[], `${path}.${key}`));
  }
  stringList(v.senders, `${path}.senders`, p, '@');
  stringList(v.not_senders, `${path}.not_senders`, p, '@');
  return v;
}

function roomEventFilter(v: JsonValue | undefined, path: string, p: Problems): void {
  const f = eventFilter(v, path, p);
  if (!f) return;
  for (const k of ['contains_url', 'include_redundant_members', 'lazy_load_members', 'unread_thread_notifications']) bool(f[k], `${path}.${k}`, p);
  stringList(f.rooms, `${path}.rooms`, p, '!');
  stringList(f.not_rooms, `${path}.not_rooms`, p, '!');
}

export function validateFilter(filter: JsonValue): string[] {
  const p: Problems = [];
  if (!isObject(filter)) return ['the filter must be a JSON object'];
  stringList(filter.event_fields, 'event_fields', p);
  if (filter.event_format !== undefined && filter.event_format !== 'client' && filter.event_format !== 'federation') p.push('event_format must be client or federation');
  eventFilter(filter.presence, 'presence', p);
  eventFilter(filter.account_data, 'account_data', p);
  const room = filter.room;
  if (room !== undefined) {
    if (!isObject(room)) p.push('room must be an object');
    else {
      stringList(room.rooms, 'room.rooms', p, '!');
      stringList(room.not_rooms, 'room.not_rooms', p, '!');
      bool(room.include_leave, 'room.include_leave', p);
      for (const k of ['ephemeral', 'state', 'timeline', 'account_data']) roomEventFilter(room[k], `room.${k}`, p);
    }
  }
  return p;
}
