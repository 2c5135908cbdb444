/**
 * The redaction algorithm for every room version (content/rooms/fragments/v*-redactions.md).
 * Used to sign and verify events, to compute reference hashes (event ids), and to serve
 * redacted events: the result keeps only what the room's authorization depends on.
 */
import { isJsonObject, type JsonObject, type JsonValue } from './json';
import type { RedactionRules, RoomVersion } from './room-versions';

const TOP_LEVEL_V1 = new Set([
  'event_id', 'type', 'room_id', 'sender', 'state_key', 'content', 'hashes', 'signatures', 'depth',
  'prev_events', 'prev_state', 'auth_events', 'origin', 'origin_server_ts', 'membership',
]);
// v11: "The top-level origin, membership, and prev_state properties are no longer protected."
const TOP_LEVEL_V11 = new Set([
  'event_id', 'type', 'room_id', 'sender', 'state_key', 'content', 'hashes', 'signatures', 'depth',
  'prev_events', 'auth_events', 'origin_server_ts',
]);

const POWER_LEVEL_KEYS_V1 = ['ban', 'events', 'events_default', 'kick', 'redact', 'state_default', 'users', 'users_default'];

/** Content keys kept per event type; `'*'` keeps the whole content. */
type ContentRules = Record<string, readonly string[] | '*'>;

const CONTENT_V1: ContentRules = {
  'm.room.member': ['membership'],
  'm.room.create': ['creator'],
  'm.room.join_rules': ['join_rule'],
  'm.room.power_levels': POWER_LEVEL_KEYS_V1,
  'm.room.aliases': ['aliases'],
  'm.room.history_visibility': ['history_visibility'],
};
// v6: "All significant meaning for m.room.aliases has been removed from the redaction algorithm."
const { 'm.room.aliases': _aliases, ...CONTENT_V6 } = CONTENT_V1;
// v8: join rules keep `allow`.
const CONTENT_V8: ContentRules = { ...CONTENT_V6, 'm.room.join_rules': ['join_rule', 'allow'] };
// v9: member events keep `join_authorised_via_users_server`.
const CONTENT_V9: ContentRules = { ...CONTENT_V8, 'm.room.member': ['membership', 'join_authorised_via_users_server'] };
// v11: create keeps everything, redaction keeps `redacts`, power levels keep `invite`,
// member keeps `third_party_invite.signed` (handled below).
const CONTENT_V11: ContentRules = {
  ...CONTENT_V9,
  'm.room.create': '*',
  'm.room.power_levels': [...POWER_LEVEL_KEYS_V1, 'invite'],
  'm.room.redaction': ['redacts'],
};

const RULES: Record<RedactionRules, { topLevel: Set<string>; content: ContentRules }> = {
  v1: { topLevel: TOP_LEVEL_V1, content: CONTENT_V1 },
  v6: { topLevel: TOP_LEVEL_V1, content: CONTENT_V6 },
  v8: { topLevel: TOP_LEVEL_V1, content: CONTENT_V8 },
  v9: { topLevel: TOP_LEVEL_V1, content: CONTENT_V9 },
  v11: { topLevel: TOP_LEVEL_V11, content: CONTENT_V11 },
};

/**
 * Return the redacted copy of `event` under `version`'s rules. The input is not modified.
 * `unsigned` is always stripped here; callers serving a redacted event to clients add
 * `unsigned.redacted_because` themselves.
 */
export function redactEvent(event: JsonObject, version: RoomVersion): JsonObject {
  const rules = RULES[version.redaction];
  const out: JsonObject = {};
  for (const key of Object.keys(event)) {
    if (rules.topLevel.has(key)) out[key] = event[key]!;
  }
  out.content = redactedContent(event, version);
  return out;
}

/**
 * The top-level members redaction keeps under `version` (`content` among them, itself redacted:
 * `redactedContent`). With `redactedContent`, what `redactEvent` is made of, for a caller that
 * assembles the redacted form from parts it has already (src/protocol/event-hashing.ts).
 */
export function redactionKeepsTopLevel(version: RoomVersion): ReadonlySet<string> {
  return RULES[version.redaction].topLevel;
}

/** The `content` of the redacted event: `{}` when the event has none; the content itself when all of it is kept. */
export function redactedContent(event: JsonObject, version: RoomVersion): JsonObject {
  const content = event.content;
  if (!isJsonObject(content)) return {};
  return redactContent(typeof event.type === 'string' ? event.type : '', content, RULES[version.redaction].content, version.redaction);
}

function redactContent(type: string, content: JsonObject, rules: ContentRules, ruleSet: RedactionRules): JsonObject {
  const keep = Object.prototype.hasOwnProperty.call(rules, type) ? rules[type]! : [];
  if (keep === '*') return content;
  const out: JsonObject = {};
  for (const key of keep) {
    if (Object.prototype.hasOwnProperty.call(content, key)) out[key] = content[key]!;
  }
  // v11: "allows the `signed` key of the `third_party_invite` key". An object without `signed`
  // stays as `{}`, as Synapse prunes it: the redacted form feeds the event id, so servers must agree.
  if (ruleSet === 'v11' && type === 'm.room.member') {
    const tpi: JsonValue | undefined = content.third_party_invite;
    if (isJsonObject(tpi)) {
      out.third_party_invite = Object.prototype.hasOwnProperty.call(tpi, 'signed') ? { signed: tpi.signed! } : {};
    }
  }
  return out;
}
