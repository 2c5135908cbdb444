/**
 * Power levels as the authorization rules read them (m.room.power_levels; room versions'
 * "stringy"/"floaty" power level fragments; v12 creators).
 */
import { isJsonObject, type JsonObject, type JsonValue } from './json';
import type { Pdu, StateLookup } from './pdu';
import type { RoomVersion } from './room-versions';

/** Defaults when the power levels event leaves a level out (m.room.power_levels schema). */
export const POWER_DEFAULTS = { ban: 50, kick: 50, redact: 50, invite: 0, users_default: 0, events_default: 0, state_default: 50 } as const;
/** With no power levels event at all the creator has 100 (v1–v11); levels are the defaults above. */
const CREATOR_LEVEL_WITHOUT_EVENT = 100;

/**
 * Read a power level value. Room versions 1–9 accept a string holding an integer; 1–5 also a
 * float (truncated, as Synapse does); 10+ only integers. Anything else is "not a power level".
 */
export function parsePowerLevel(value: JsonValue | undefined, version: RoomVersion): number | undefined {
  if (typeof value === 'number') {
    if (Number.isInteger(value)) return value;
    return version.floatPowerLevels && Number.isFinite(value) ? Math.trunc(value) : undefined;
  }
  if (typeof value === 'string' && !version.integerPowerLevels && /^\s*[+-]?\d+\s*$/.test(value)) {
    const n = Number.parseInt(value.trim(), 10);
    return Number.isSafeInteger(n) ? n : undefined;
  }
  return undefined;
}

function levelOr(content: JsonObject, key: string, fallback: number, version: RoomVersion): number {
  return parsePowerLevel(content[key], version) ?? fallback;
}

/** The room's creators: the create event's sender (v11+) or `content.creator` (v1–v10), plus v12's additional_creators. */
export function roomCreators(create: Pdu | undefined, version: RoomVersion): Set<string> {
  const creators = new Set<string>();
  if (!create) return creators;
  if (version.createHasCreator) {
    if (typeof create.content.creator === 'string') creators.add(create.content.creator);
  } else {
    creators.add(create.sender);
  }
  if (version.privilegedCreators && Array.isArray(create.content.additional_creators)) {
    for (const c of create.content.additional_creators) if (typeof c === 'string') creators.add(c);
  }
  return creators;
}

/** A user's power level in `state` (Infinity for v12 creators). */
export function userPowerLevel(userId: string, state: StateLookup, version: RoomVersion): number {
  const create = state.get('m.room.create', '');
  if (version.privilegedCreators && roomCreators(create, version).has(userId)) return Infinity;
  const pl = state.get('m.room.power_levels', '');
  if (!pl) return roomCreators(create, version).has(userId) ? CREATOR_LEVEL_WITHOUT_EVENT : 0;
  const users = pl.content.users;
  if (isJsonObject(users) && Object.prototype.hasOwnProperty.call(users, userId)) {
    const level = parsePowerLevel(users[userId], version);
    if (level !== undefined) return level;
  }
  return levelOr(pl.content, 'users_default', POWER_DEFAULTS.users_default, version);
}

/** A named level (ban, kick, redact, invite) in `state`. */
export function namedLevel(name: 'ban' | 'kick' | 'redact' | 'invite', state: StateLookup, version: RoomVersion): number {
  const pl = state.get('m.room.power_levels', '');
  return pl ? levelOr(pl.content, name, POWER_DEFAULTS[name], version) : POWER_DEFAULTS[name];
}

/** The level needed to send an event of `type` (state or not). */
export function requiredEventLevel(type: string, isState: boolean, state: StateLookup, version: RoomVersion): number {
  const pl = state.get('m.room.power_levels', '');
  // m.room.power_levels: "If there is no state_default in the m.room.power_levels event, or there
  // is no m.room.power_levels event, the state_default is 50."
  if (!pl) return isState ? POWER_DEFAULTS.state_default : POWER_DEFAULTS.events_default;
  const events = pl.content.events;
  if (isJsonObject(events) && Object.prototype.hasOwnProperty.call(events, type)) {
    const level = parsePowerLevel(events[type], version);
    if (level !== undefined) return level;
  }
  return isState ? levelOr(pl.content, 'state_default', POWER_DEFAULTS.state_default, version) : levelOr(pl.content, 'events_default', POWER_DEFAULTS.events_default, version);
}

/** The level a notification type (e.g. `room`) needs; 50 by default. */
export function notificationLevel(key: string, state: StateLookup, version: RoomVersion): number {
  const pl = state.get('m.room.power_levels', '');
  const n = pl?.content.notifications;
  if (isJsonObject(n) && Object.prototype.hasOwnProperty.call(n, key)) return parsePowerLevel(n[key], version) ?? 50;
  return 50;
}
