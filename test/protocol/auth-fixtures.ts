/**
 * Small builders for authorization-rule tests: rooms as a bag of state events, events as plain
 * JSON turned into Pdus with explicit event ids (so no hashing is involved).
 *
 * Event ids: v1/v2 carry `$name:example.com` (the domain matters for the v1/v2 redaction rule);
 * later versions use `$name`. v12 rooms have no `room_id` on the create event and the room id is
 * `!` + the create event id without its `$`.
 */
import type { JsonObject, JsonValue } from '../../src/protocol/json';
import { lookupFromEvents, toPdu, stateKeyOf, type Pdu, type StateLookup } from '../../src/protocol/pdu';
import { requireRoomVersion, type RoomVersion } from '../../src/protocol/room-versions';

export const ALL_VERSIONS = ['1', '2', '3', '4', '5', '6', '7', '8', '9', '10', '11', '12'] as const;
export type VersionId = (typeof ALL_VERSIONS)[number];

/** Versions from `from` to `to` inclusive (by numeric id). */
export function versions(from: number, to = 12): VersionId[] {
  return ALL_VERSIONS.filter((v) => Number(v) >= from && Number(v) <= to);
}

export const CREATOR = '@creator:example.com';
/** Moderator: 50 in the standard power levels. */
export const ALICE = '@alice:example.com';
/** Plain member: 0. */
export const BOB = '@bob:example.com';
/** Outsider: no membership at all in the standard room. */
export const CAROL = '@carol:example.com';
/** Another moderator at 50 (same level as ALICE). */
export const DAVE = '@dave:example.com';
/** A member at 40 (below ALICE). */
export const ERIN = '@erin:example.com';
/** A joined member on another server. */
export const EVE = '@eve:other.org';
/** v12 additional creator. */
export const FRANK = '@frank:example.com';

export const OLD_ROOM_ID = '!room:example.com';

export interface EventSpec {
  type: string;
  sender: string;
  stateKey?: string;
  content?: JsonObject;
  /** Name for the event id (see module comment); defaults to a running counter. */
  id?: string;
  /** Names or full ids of prev events; defaults to one unrelated event. */
  prev?: string[];
  /** Overrides the room id (use `null` to omit it). */
  roomId?: string | null;
  /** For m.room.redaction: full id of the redacted event (placed per room version). */
  redacts?: string;
  /** Extra top-level fields. */
  extra?: JsonObject;
}

let counter = 0;

export class TestRoom {
  readonly version: RoomVersion;
  readonly create: Pdu;
  readonly roomId: string;
  private readonly state = new Map<string, Pdu>();

  constructor(
    versionId: string,
    opts: { creator?: string; createContent?: JsonObject; withoutCreatorField?: boolean } = {},
  ) {
    this.version = requireRoomVersion(versionId);
    const creator = opts.creator ?? CREATOR;
    const content: JsonObject = { room_version: this.version.id };
    if (this.version.createHasCreator && !opts.withoutCreatorField) content.creator = creator;
    Object.assign(content, opts.createContent ?? {});
    const createId = this.id('create');
    this.roomId = this.version.roomIdFromCreateEvent ? `!${createId.slice(1)}` : OLD_ROOM_ID;
    this.create = this.event({ type: 'm.room.create', sender: creator, stateKey: '', content, id: 'create', prev: [], roomId: this.version.roomIdFromCreateEvent ? null : OLD_ROOM_ID });
    this.put(this.create);
  }

  /** The full event id for a short name. */
  id(name: string): string {
    if (name.startsWith('$')) return name;
    return this.version.eventIdFormat === 'v1' ? `$${name}:example.com` : `$${name}`;
  }

  /** Build a Pdu in this room. */
  event(spec: EventSpec): Pdu {
    const name = spec.id ?? `e${++counter}`;
    const eventId = this.id(name);
    const refs = (ids: string[]): JsonValue[] =>
      ids.map((i) => (this.version.eventRefsWithHashes ? [this.id(i), { sha256: 'aGFzaA' }] : this.id(i)));
    const content: JsonObject = { ...(spec.content ?? {}) };
    const raw: JsonObject = {
      type: spec.type,
      sender: spec.sender,
      content,
      origin_server_ts: 1_700_000_000_000 + counter,
      depth: 10,
      prev_events: refs(spec.prev ?? ['somewhere']),
      auth_events: [],
      hashes: { sha256: 'aGFzaA' },
      signatures: {},
    };
    const roomId = spec.roomId === undefined ? this.roomId : spec.roomId;
    if (roomId !== null) raw.room_id = roomId;
    if (spec.stateKey !== undefined) raw.state_key = spec.stateKey;
    if (this.version.eventIdFormat === 'v1') raw.event_id = eventId;
    if (spec.redacts !== undefined) {
      if (this.version.redactsInContent) content.redacts = spec.redacts;
      else raw.redacts = spec.redacts;
    }
    Object.assign(raw, spec.extra ?? {});
    return toPdu(raw, this.version, eventId);
  }

  /** Add (or replace) a state event. */
  put(e: Pdu): this {
    if (e.stateKey === undefined) throw new Error('not a state event');
    this.state.set(stateKeyOf(e.type, e.stateKey), e);
    return this;
  }

  remove(type: string, stateKey: string): this {
    this.state.delete(stateKeyOf(type, stateKey));
    return this;
  }

  member(user: string, membership: string, sender = user, extraContent: JsonObject = {}): Pdu {
    return this.event({ type: 'm.room.member', sender, stateKey: user, content: { membership, ...extraContent } });
  }

  /** Put a membership into the state. */
  setMember(user: string, membership: string, sender = user): this {
    return this.put(this.member(user, membership, sender));
  }

  powerLevels(content: JsonObject, sender = CREATOR): Pdu {
    return this.event({ type: 'm.room.power_levels', sender, stateKey: '', content });
  }

  setPowerLevels(content: JsonObject, sender = CREATOR): this {
    return this.put(this.powerLevels(content, sender));
  }

  setJoinRule(joinRule: string, extra: JsonObject = {}): this {
    return this.put(this.event({ type: 'm.room.join_rules', sender: CREATOR, stateKey: '', content: { join_rule: joinRule, ...extra } }));
  }

  /** A message event. */
  message(sender: string, content: JsonObject = { msgtype: 'm.text', body: 'hi' }): Pdu {
    return this.event({ type: 'm.room.message', sender, content });
  }

  /** A state event of any type. */
  stateEvent(type: string, sender: string, stateKey = '', content: JsonObject = {}): Pdu {
    return this.event({ type, sender, stateKey, content });
  }

  lookup(): StateLookup {
    return lookupFromEvents([...this.state.values()]);
  }

  get(type: string, stateKey: string): Pdu | undefined {
    return this.state.get(stateKeyOf(type, stateKey));
  }
}

/**
 * The standard power levels: CREATOR 100 (not listed in v12, where creators may not appear in
 * `users`), ALICE 50, DAVE 50, ERIN 40, BOB at users_default 0; every level explicit.
 */
export function standardPowerLevels(version: RoomVersion, overrides: JsonObject = {}): JsonObject {
  const users: JsonObject = { [ALICE]: 50, [DAVE]: 50, [ERIN]: 40 };
  if (!version.privilegedCreators) users[CREATOR] = 100;
  return {
    users,
    users_default: 0,
    events: {},
    events_default: 0,
    state_default: 50,
    ban: 50,
    kick: 50,
    redact: 50,
    invite: 0,
    notifications: { room: 50 },
    ...overrides,
  };
}

/**
 * The standard room: create, CREATOR joined, standard power levels, join rule `public`,
 * ALICE/BOB/DAVE/ERIN/EVE joined. CAROL has no membership.
 */
export function standardRoom(versionId: string, opts: { plOverrides?: JsonObject; createContent?: JsonObject; joinRule?: string } = {}): TestRoom {
  const room = new TestRoom(versionId, { createContent: opts.createContent ?? {} });
  room.setMember(CREATOR, 'join');
  room.setPowerLevels(standardPowerLevels(room.version, opts.plOverrides ?? {}));
  room.setJoinRule(opts.joinRule ?? 'public');
  for (const u of [ALICE, BOB, DAVE, ERIN, EVE]) room.setMember(u, 'join');
  return room;
}
