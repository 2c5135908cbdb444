/**
 * A PDU as the room logic sees it: the raw event JSON plus the fields every rule reads, already
 * normalised across room versions (v1/v2 carry `[id, hashes]` pairs in `prev_events` and
 * `auth_events`; v11+ keep `redacts` in `content`; v3+ compute the event id). Build one with
 * `toPdu` after the format checks; nothing here does I/O.
 */
import { computeEventId } from './event-hashing';
import { isJsonObject, type JsonObject } from './json';
import { referencedIds } from './pdu-limits';
import type { RoomVersion } from './room-versions';

export interface Pdu {
  /** Event id: carried (v1/v2) or the reference hash (v3+). */
  readonly eventId: string;
  /** Absent only for a v12 `m.room.create` (its event id, with `!`, is the room id). */
  readonly roomId: string | undefined;
  readonly type: string;
  /** Present for state events, including the empty string. */
  readonly stateKey: string | undefined;
  readonly sender: string;
  readonly content: JsonObject;
  readonly originServerTs: number;
  readonly depth: number;
  readonly prevEvents: readonly string[];
  readonly authEvents: readonly string[];
  /** The event a redaction redacts (top-level before v11, in content from v11). */
  readonly redacts: string | undefined;
  /** The event exactly as received or built (with hashes and signatures). */
  readonly raw: JsonObject;
}

export function isStateEvent(e: Pdu): boolean {
  return e.stateKey !== undefined;
}

/** Normalise a format-checked event into a Pdu for `version`. */
export function toPdu(raw: JsonObject, version: RoomVersion, eventId?: string): Pdu {
  const content = isJsonObject(raw.content) ? raw.content : {};
  const redacts = version.redactsInContent ? content.redacts : raw.redacts;
  return {
    eventId: eventId ?? computeEventId(raw, version),
    roomId: typeof raw.room_id === 'string' ? raw.room_id : undefined,
    type: String(raw.type),
    stateKey: typeof raw.state_key === 'string' ? raw.state_key : undefined,
    sender: String(raw.sender),
    content,
    originServerTs: typeof raw.origin_server_ts === 'number' ? raw.origin_server_ts : 0,
    depth: typeof raw.depth === 'number' ? raw.depth : 0,
    prevEvents: referencedIds(raw.prev_events),
    authEvents: referencedIds(raw.auth_events),
    redacts: typeof redacts === 'string' ? redacts : undefined,
    raw,
  };
}

/** Key of a state entry: `type` and `state_key` joined by NUL (neither may contain NUL in practice). */
export function stateKeyOf(type: string, stateKey: string): string {
  return `${type}\u0000${stateKey}`;
}

export function splitStateKey(key: string): [string, string] {
  const i = key.indexOf('\u0000');
  return [key.slice(0, i), key.slice(i + 1)];
}

/** A room state: state key (see stateKeyOf) → event id. */
export type StateMap = Map<string, string>;

/** Look up the state event for (type, state_key) in some state (auth events, or a room state). */
export interface StateLookup {
  get(type: string, stateKey: string): Pdu | undefined;
}

/** A StateLookup over a list of events (e.g. an event's auth events). */
export function lookupFromEvents(events: Iterable<Pdu>): StateLookup {
  const m = new Map<string, Pdu>();
  for (const e of events) if (e.stateKey !== undefined) m.set(stateKeyOf(e.type, e.stateKey), e);
  return { get: (type, key) => m.get(stateKeyOf(type, key)) };
}

/** A StateLookup over a StateMap and an event getter. */
export function lookupFromStateMap(state: StateMap, getEvent: (id: string) => Pdu | undefined): StateLookup {
  return {
    get(type, key) {
      const id = state.get(stateKeyOf(type, key));
      return id === undefined ? undefined : getEvent(id);
    },
  };
}
