/**
 * The room version registry (content/rooms/v1.md … v12.md): every rule that differs between
 * versions is a flag here, so the rest of the code asks "does this version do X" instead of
 * comparing version strings.
 */

export type EventIdFormat = 'v1' /* $opaque:server, carried in the event */ | 'v3' /* $ + base64(ref hash) */ | 'v4' /* $ + urlsafe base64(ref hash) */;
export type RedactionRules = 'v1' | 'v6' | 'v8' | 'v9' | 'v11';
export type AuthRules = 'v1' | 'v3' | 'v6' | 'v7' | 'v8' | 'v10' | 'v11' | 'v12';
export type StateResolution = 'v1' | 'v2' | 'v2.1';

export interface RoomVersion {
  id: string;
  stable: boolean;
  eventIdFormat: EventIdFormat;
  redaction: RedactionRules;
  authRules: AuthRules;
  stateRes: StateResolution;
  /** v1/v2: `auth_events`/`prev_events` are `[id, {sha256}]` pairs; later: plain id lists. */
  eventRefsWithHashes: boolean;
  /** v5+: a key's `valid_until_ts` must cover the event's `origin_server_ts`. */
  enforceKeyValidity: boolean;
  /** v6+: events must be canonical JSON (no floats, integers within ±2^53−1). */
  strictCanonicalJson: boolean;
  /** v1–v2: redaction is an auth rule (redact level or same event-id domain). */
  redactionAuthRule: boolean;
  /** v1–v5: `m.room.aliases` has its own auth rule. */
  aliasesAuthRule: boolean;
  /** v6+: `notifications` is checked in power level changes. */
  notificationsInPowerLevelAuth: boolean;
  /** v7+ */
  knock: boolean;
  /** v8+ */
  restrictedJoins: boolean;
  /** v10+ */
  knockRestricted: boolean;
  /** v10+: power level values must be integers, not strings. */
  integerPowerLevels: boolean;
  /** v1–v5 accepted float power levels (v6 forbade floats everywhere). */
  floatPowerLevels: boolean;
  /** v1–v10: `m.room.create` content carries `creator`; v11+: the sender is the creator. */
  createHasCreator: boolean;
  /** v11+: `redacts` lives in `content` instead of at the top level. */
  redactsInContent: boolean;
  /** v11+: a creator's own join right after the create is allowed directly. */
  implicitCreatorJoin: boolean;
  /** v12: room ids are `!` + the create event's reference hash; the create event has no `room_id`. */
  roomIdFromCreateEvent: boolean;
  /** v12: creators (sender + `additional_creators`) have unbounded power. */
  privilegedCreators: boolean;
  /** v12: the create event must not be listed in `auth_events`. */
  createEventInAuthEvents: boolean;
}

const base = {
  stable: true,
  eventRefsWithHashes: false,
  enforceKeyValidity: true,
  strictCanonicalJson: true,
  redactionAuthRule: false,
  aliasesAuthRule: false,
  notificationsInPowerLevelAuth: true,
  knock: true,
  restrictedJoins: true,
  knockRestricted: true,
  integerPowerLevels: true,
  floatPowerLevels: false,
  createHasCreator: false,
  redactsInContent: true,
  implicitCreatorJoin: true,
  roomIdFromCreateEvent: false,
  privilegedCreators: false,
  createEventInAuthEvents: true,
} as const;

const v1: RoomVersion = {
  ...base,
  id: '1',
  eventIdFormat: 'v1',
  redaction: 'v1',
  authRules: 'v1',
  stateRes: 'v1',
  eventRefsWithHashes: true,
  enforceKeyValidity: false,
  strictCanonicalJson: false,
  redactionAuthRule: true,
  aliasesAuthRule: true,
  notificationsInPowerLevelAuth: false,
  knock: false,
  restrictedJoins: false,
  knockRestricted: false,
  integerPowerLevels: false,
  floatPowerLevels: true,
  createHasCreator: true,
  redactsInContent: false,
  implicitCreatorJoin: false,
};
const v2: RoomVersion = { ...v1, id: '2', stateRes: 'v2' };
const v3: RoomVersion = { ...v2, id: '3', eventIdFormat: 'v3', authRules: 'v3', eventRefsWithHashes: false, redactionAuthRule: false };
const v4: RoomVersion = { ...v3, id: '4', eventIdFormat: 'v4' };
const v5: RoomVersion = { ...v4, id: '5', enforceKeyValidity: true };
const v6: RoomVersion = { ...v5, id: '6', redaction: 'v6', authRules: 'v6', strictCanonicalJson: true, aliasesAuthRule: false, notificationsInPowerLevelAuth: true, floatPowerLevels: false };
const v7: RoomVersion = { ...v6, id: '7', authRules: 'v7', knock: true };
const v8: RoomVersion = { ...v7, id: '8', redaction: 'v8', authRules: 'v8', restrictedJoins: true };
const v9: RoomVersion = { ...v8, id: '9', redaction: 'v9' };
const v10: RoomVersion = { ...v9, id: '10', authRules: 'v10', knockRestricted: true, integerPowerLevels: true };
const v11: RoomVersion = { ...v10, id: '11', redaction: 'v11', authRules: 'v11', createHasCreator: false, redactsInContent: true, implicitCreatorJoin: true };
const v12: RoomVersion = { ...v11, id: '12', authRules: 'v12', stateRes: 'v2.1', roomIdFromCreateEvent: true, privilegedCreators: true, createEventInAuthEvents: false };

export const ROOM_VERSIONS: ReadonlyMap<string, RoomVersion> = new Map([v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12].map((v) => [v.id, Object.freeze(v)]));

/** The spec's recommendation for new rooms (content/rooms/_index.md: "SHOULD use room version 12"). */
export const SPEC_DEFAULT_ROOM_VERSION = '12';

export function getRoomVersion(id: string): RoomVersion | undefined {
  return ROOM_VERSIONS.get(id);
}

export class UnsupportedRoomVersionError extends Error {
  constructor(readonly roomVersion: string) {
    super(`Unsupported room version ${JSON.stringify(roomVersion)}`);
    this.name = 'UnsupportedRoomVersionError';
  }
}

export function requireRoomVersion(id: string): RoomVersion {
  const v = ROOM_VERSIONS.get(id);
  if (!v) throw new UnsupportedRoomVersionError(id);
  return v;
}

/** Room version identifiers: 1–32 code points of `[a-z0-9.-]` (content/rooms/_index.md). */
export function isValidRoomVersionId(id: string): boolean {
  return /^[a-z0-9.-]{1,32}$/.test(id);
}

/** For `/capabilities`: every version we speak, all stable. */
export function roomVersionCapability(defaultVersion: string): { default: string; available: Record<string, 'stable' | 'unstable'> } {
  const available: Record<string, 'stable' | 'unstable'> = {};
  for (const v of ROOM_VERSIONS.values()) available[v.id] = v.stable ? 'stable' : 'unstable';
  return { default: defaultVersion, available };
}
