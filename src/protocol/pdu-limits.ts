/**
 * PDU size limits (client-server API, "Size limits"; server-server API, PDUs): the whole event
 * at most 65536 bytes as canonical JSON, and `type`, `state_key`, `sender`, `room_id`,
 * `event_id` at most 255 bytes each. All limits are in bytes of UTF-8.
 */
import { canonicalJson, CanonicalJsonError, isJsonObject, utf8Length, type JsonObject } from './json';
import type { RoomVersion } from './room-versions';

export const MAX_PDU_BYTES = 65536;
export const MAX_ID_BYTES = 255;
const LIMITED_FIELDS = ['type', 'state_key', 'sender', 'room_id', 'event_id'] as const;
/** Limits on references (server-server API PDU schema). */
export const MAX_PREV_EVENTS = 20;
export const MAX_AUTH_EVENTS = 10;
/** v1–v5 allowed depth up to 2^63−1; v6+ (canonical JSON) to 2^53−1. */
export const MAX_DEPTH = Number.MAX_SAFE_INTEGER;

export type PduCheck = { ok: true; bytes: number } | { ok: false; errcode: 'M_TOO_LARGE' | 'M_BAD_JSON'; error: string };

/**
 * Size checks. `bytes` is the canonical size (what a peer measures); `json`, when given, is
 * `canonicalJson(event)` already made; `extraBytes`, what the event will have on top when it goes
 * out (our signature, on an event stored without it: `ownSignatureBytes`). For pre-v6 rooms whose
 * events may not be canonical JSON (floats), an encoding error is reported as M_BAD_JSON.
 */
export function checkPduSize(event: JsonObject, json?: string, extraBytes = 0): PduCheck {
  for (const field of LIMITED_FIELDS) {
    const v = event[field];
    if (typeof v === 'string' && utf8Length(v) > MAX_ID_BYTES) {
      return { ok: false, errcode: 'M_TOO_LARGE', error: `'${field}' is longer than ${MAX_ID_BYTES} bytes` };
    }
  }
  let text: string;
  try {
    text = json ?? canonicalJson(event);
  } catch (e) {
    if (e instanceof CanonicalJsonError) return { ok: false, errcode: 'M_BAD_JSON', error: e.message };
    throw e;
  }
  const bytes = utf8Length(text) + extraBytes;
  if (bytes > MAX_PDU_BYTES) return { ok: false, errcode: 'M_TOO_LARGE', error: `Event is ${bytes} bytes; the limit is ${MAX_PDU_BYTES}` };
  return { ok: true, bytes };
}

/**
 * Format checks on a received PDU (step 1 of "Checks performed on receipt of a PDU"): required
 * fields with the right types for the room version. Returns the problems found (empty = ok).
 */
export function checkPduFormat(event: JsonObject, version: RoomVersion): string[] {
  const p: string[] = [];
  const str = (k: string) => {
    if (typeof event[k] !== 'string') p.push(`'${k}' must be a string`);
  };
  str('type');
  str('sender');
  if (!isJsonObject(event.content)) p.push("'content' must be an object");
  if (typeof event.origin_server_ts !== 'number' || !Number.isInteger(event.origin_server_ts)) p.push("'origin_server_ts' must be an integer");
  if (typeof event.depth !== 'number' || !Number.isInteger(event.depth) || event.depth < 0) p.push("'depth' must be a non-negative integer");
  if (!isJsonObject(event.hashes) || typeof event.hashes.sha256 !== 'string') p.push("'hashes.sha256' must be a string");
  if (!isJsonObject(event.signatures)) p.push("'signatures' must be an object");
  if ('state_key' in event && typeof event.state_key !== 'string') p.push("'state_key' must be a string");
  if ('unsigned' in event && !isJsonObject(event.unsigned)) p.push("'unsigned' must be an object");
  const isCreate = event.type === 'm.room.create' && event.state_key === '';
  if (version.roomIdFromCreateEvent && isCreate) {
    if ('room_id' in event) p.push("a v12 'm.room.create' event has no 'room_id'");
  } else {
    str('room_id');
  }
  if (version.eventIdFormat === 'v1') str('event_id');
  for (const [field, max] of [['prev_events', MAX_PREV_EVENTS], ['auth_events', MAX_AUTH_EVENTS]] as const) {
    const refs = event[field];
    if (!Array.isArray(refs)) {
      p.push(`'${field}' must be an array`);
      continue;
    }
    if (refs.length > max) p.push(`'${field}' has more than ${max} entries`);
    for (const ref of refs) {
      const ok = version.eventRefsWithHashes
        ? Array.isArray(ref) && ref.length === 2 && typeof ref[0] === 'string' && isJsonObject(ref[1])
        : typeof ref === 'string';
      if (!ok) {
        p.push(`'${field}' entries must be ${version.eventRefsWithHashes ? '[event_id, hashes] pairs' : 'event ids'}`);
        break;
      }
    }
  }
  if (event.type === 'm.room.redaction') {
    const redacts = version.redactsInContent ? (isJsonObject(event.content) ? event.content.redacts : undefined) : event.redacts;
    if (redacts !== undefined && typeof redacts !== 'string') p.push("'redacts' must be an event id");
  }
  return p;
}

/** Ids referenced by `prev_events`/`auth_events`, whatever the version's format. */
export function referencedIds(refs: unknown): string[] {
  if (!Array.isArray(refs)) return [];
  return refs.map((r) => (Array.isArray(r) ? r[0] : r)).filter((r): r is string => typeof r === 'string');
}
