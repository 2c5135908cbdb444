/**
 * The authorization rules for every room version (content/rooms/fragments/v1-auth-rules.md,
 * v3-auth-rules.md, v8-auth-rules.md, and the rules written out in v6.md, v7.md, v10.md, v11.md,
 * v12.md). Comments carry the spec's rule numbers of room version 12 ("12:5.3.1"), with the
 * older numbering where it differs, so the code can be read beside the spec.
 *
 * Two entry points, because the spec checks two different things:
 * - `checkAuthEventsList`: rule 12:3 (v1–v11: rule 2), about the event's `auth_events` list itself
 *   (duplicates, entries the selection algorithm would not pick, rejected entries, room ids);
 * - `checkEventAuth`: every other rule, against a state — the event's auth events, the state
 *   before it, or the current state (the three checks on receipt of a PDU).
 *
 * Signatures are not checked here: the signature step before these checks requires the sender's
 * server and, for restricted joins, the authorising user's server (event-hashing.ts,
 * requiredSignatureServers), which is what 12:5.2 asks.
 */
import { decodeBase64, decodeBase64Url } from './base64';
import { isJsonObject, type JsonObject } from './json';
import { isValidUserId, serverOf } from './identifiers';
import type { Pdu, StateLookup } from './pdu';
import { namedLevel, parsePowerLevel, requiredEventLevel, roomCreators, userPowerLevel } from './power-levels';
import { ROOM_VERSIONS, type RoomVersion } from './room-versions';
import { verifyJsonSignature } from './signing';

export { isPowerEvent } from './power-events';
export { userPowerLevel } from './power-levels';

export type AuthResult = { allowed: true } | { allowed: false; reason: string };

const ALLOW: AuthResult = { allowed: true };
const reject = (reason: string): AuthResult => ({ allowed: false, reason });

const POWER_LEVEL_NAMES = ['users_default', 'events_default', 'state_default', 'ban', 'redact', 'kick', 'invite'] as const;

/**
 * Auth events selection (server-server API): the (type, state_key) pairs whose current state
 * events an event must list in `auth_events`.
 */
export function authEventSelection(event: { type: string; stateKey?: string; sender: string; content: Record<string, unknown> }, version: RoomVersion): [string, string][] {
  if (event.type === 'm.room.create') return [];
  const out: [string, string][] = [];
  if (version.createEventInAuthEvents) out.push(['m.room.create', '']);
  out.push(['m.room.power_levels', ''], ['m.room.member', event.sender]);
  if (event.type === 'm.room.member' && typeof event.stateKey === 'string') {
    if (event.stateKey !== event.sender) out.push(['m.room.member', event.stateKey]);
    const membership = event.content.membership;
    if (membership === 'join' || membership === 'invite' || membership === 'knock') out.push(['m.room.join_rules', '']);
    const tpi = event.content.third_party_invite;
    if (membership === 'invite' && isJsonObject(tpi as never)) {
      const signed = (tpi as JsonObject).signed;
      if (isJsonObject(signed) && typeof signed.token === 'string') out.push(['m.room.third_party_invite', signed.token]);
    }
    const via = event.content.join_authorised_via_users_server;
    if (membership === 'join' && version.restrictedJoins && typeof via === 'string') {
      if (!out.some(([t, k]) => t === 'm.room.member' && k === via)) out.push(['m.room.member', via]);
    }
  }
  return out;
}

/**
 * 12:3 / 1–11:2 — checks on the `auth_events` list of an event. `isRejected` tells whether an
 * auth event was itself rejected.
 */
export function checkAuthEventsList(event: Pdu, authEvents: readonly Pdu[], version: RoomVersion, isRejected: (eventId: string) => boolean = () => false): AuthResult {
  // Rule 1 alone decides every event of type m.room.create (whatever its state key, or none).
  if (event.type === 'm.room.create') return ALLOW;
  const allowed = new Set(authEventSelection(event, version).map(([t, k]) => `${t}\u0000${k}`));
  const seen = new Set<string>();
  let hasCreate = false;
  for (const a of authEvents) {
    const key = `${a.type}\u0000${a.stateKey ?? ''}`;
    // 3.1 duplicates
    if (seen.has(key)) return reject(`duplicate auth event for ${a.type}/${a.stateKey ?? ''}`);
    seen.add(key);
    // 3.2 entries the selection algorithm would not pick (v12: including the create event)
    if (a.stateKey === undefined || !allowed.has(key)) return reject(`auth event ${a.eventId} (${a.type}/${a.stateKey ?? ''}) is not one the event needs`);
    // 3.3 rejected entries
    if (isRejected(a.eventId)) return reject(`auth event ${a.eventId} was rejected`);
    // 3.5 room ids must match
    if (a.roomId !== event.roomId && !(a.type === 'm.room.create' && version.roomIdFromCreateEvent)) return reject(`auth event ${a.eventId} is in another room`);
    if (a.type === 'm.room.create') hasCreate = true;
  }
  // 1–11:2.4 the create event must be among them
  if (version.createEventInAuthEvents && !hasCreate) return reject('no m.room.create event among the auth events');
  return ALLOW;
}

/**
 * Every rule except the auth_events list checks, against `state`. For room version 12 the state
 * must include the room's create event (found from the room id, as it is not in auth_events).
 */
export function checkEventAuth(event: Pdu, state: StateLookup, version: RoomVersion): AuthResult {
  // 1. m.room.create — the rule is about the type: a "create" without a state key, or with
  // another one, is judged by it too (it has prev_events, so it is rejected), not sent as an
  // ordinary message or state event at the sender's power level.
  if (event.type === 'm.room.create') return checkCreate(event, version);

  const create = state.get('m.room.create', '');
  if (!create) return reject('no m.room.create event in the room state');
  // 12:2 the room id is the create event's id with ! for $
  if (version.roomIdFromCreateEvent) {
    if (!event.roomId || event.roomId.slice(1) !== create.eventId.slice(1) || !event.roomId.startsWith('!')) return reject('the room id does not name the create event');
  } else if (create.roomId !== event.roomId) {
    return reject('the create event is in another room');
  }

  // 12:4 / 1–11:3 m.federate
  if (create.content['m.federate'] === false && serverOf(event.sender) !== serverOf(create.sender)) return reject('the room does not federate and the sender is from another server');

  // 1–5:4 m.room.aliases
  if (version.aliasesAuthRule && event.type === 'm.room.aliases') {
    if (event.stateKey === undefined) return reject('m.room.aliases without a state_key');
    if (event.stateKey !== serverOf(event.sender)) return reject("m.room.aliases state_key is not the sender's server");
    return ALLOW;
  }

  // 12:5 m.room.member
  if (event.type === 'm.room.member') return checkMember(event, state, create, version);

  // 12:6 the sender must be joined
  if (membershipOf(event.sender, state) !== 'join') return reject('the sender is not joined to the room');

  // 12:7 m.room.third_party_invite
  if (event.type === 'm.room.third_party_invite') {
    return userPowerLevel(event.sender, state, version) >= namedLevel('invite', state, version) ? ALLOW : reject('the sender may not invite');
  }

  // 12:8 the event type's required power level
  const senderLevel = userPowerLevel(event.sender, state, version);
  if (requiredEventLevel(event.type, event.stateKey !== undefined, state, version) > senderLevel) return reject(`the sender's power level is too low to send ${event.type}`);

  // 12:9 state keys starting with @ belong to that user
  if (event.stateKey !== undefined && event.stateKey.startsWith('@') && event.stateKey !== event.sender) return reject('state_key names another user');

  // 12:10 m.room.power_levels
  if (event.type === 'm.room.power_levels' && event.stateKey === '') return checkPowerLevels(event, state, create, senderLevel, version);

  // 1–2:11 m.room.redaction
  if (version.redactionAuthRule && event.type === 'm.room.redaction') {
    if (senderLevel >= namedLevel('redact', state, version)) return ALLOW;
    if (event.redacts && serverOf(event.redacts) === serverOf(event.eventId)) return ALLOW;
    return reject('the sender may not redact that event');
  }

  // 12:11
  return ALLOW;
}

function checkCreate(event: Pdu, version: RoomVersion): AuthResult {
  // 1.1 no prev_events
  if (event.prevEvents.length > 0) return reject('m.room.create has prev_events');
  if (version.roomIdFromCreateEvent) {
    // 12:1.2 no room_id
    if (event.roomId !== undefined) return reject('a v12 m.room.create has no room_id');
  } else if (serverOf(event.roomId ?? '') !== serverOf(event.sender)) {
    // 1–11:1.2 room and sender on the same server
    return reject("the room id's server is not the sender's");
  }
  // 1.3 a recognised room version
  const rv = event.content.room_version;
  if (rv !== undefined && (typeof rv !== 'string' || !ROOM_VERSIONS.has(rv))) return reject(`unknown room version ${JSON.stringify(rv)}`);
  // 1–10:1.4 creator
  if (version.createHasCreator && !('creator' in event.content)) return reject('m.room.create has no creator');
  // 12:1.4 additional_creators
  if (version.privilegedCreators && 'additional_creators' in event.content) {
    const ac = event.content.additional_creators;
    if (!Array.isArray(ac) || !ac.every((u) => typeof u === 'string' && isValidUserId(u))) return reject('additional_creators must be a list of user ids');
  }
  return ALLOW;
}

function membershipOf(userId: string, state: StateLookup): string | undefined {
  const m = state.get('m.room.member', userId);
  const membership = m?.content.membership;
  return typeof membership === 'string' ? membership : undefined;
}

function joinRuleOf(state: StateLookup): string | undefined {
  const jr = state.get('m.room.join_rules', '')?.content.join_rule;
  return typeof jr === 'string' ? jr : undefined;
}

function checkMember(event: Pdu, state: StateLookup, create: Pdu, version: RoomVersion): AuthResult {
  // 5.1
  const membership = event.content.membership;
  if (event.stateKey === undefined || typeof membership !== 'string') return reject('m.room.member needs a state_key and a membership');
  // The target user is "the user given by the state_key": it must be one (Synapse, ruma and
  // gomatrixserverlib all refuse other state keys here).
  if (!isValidUserId(event.stateKey)) return reject('the state_key of m.room.member is not a user id');
  const target = event.stateKey;
  const senderMembership = membershipOf(event.sender, state);
  const targetMembership = membershipOf(target, state);
  const joinRule = joinRuleOf(state);

  switch (membership) {
    case 'join': {
      // 5.3.1 the creator's own join right after the create event
      const creatorId = version.createHasCreator ? create.content.creator : create.sender;
      if (event.prevEvents.length === 1 && event.prevEvents[0] === create.eventId && target === creatorId) return ALLOW;
      // 5.3.2
      if (event.sender !== target) return reject('cannot join on behalf of another user');
      // 5.3.3
      if (senderMembership === 'ban') return reject('the sender is banned');
      // 5.3.4 (v7+: knock rooms are invite rooms for joining)
      if (joinRule === 'invite' || (version.knock && joinRule === 'knock')) {
        return senderMembership === 'invite' || senderMembership === 'join' ? ALLOW : reject('the room is invite-only');
      }
      // 5.3.5 restricted joins (v8+; knock_restricted v10+)
      if ((version.restrictedJoins && joinRule === 'restricted') || (version.knockRestricted && joinRule === 'knock_restricted')) {
        if (senderMembership === 'join' || senderMembership === 'invite') return ALLOW;
        const via = event.content.join_authorised_via_users_server;
        if (typeof via !== 'string') return reject('a restricted join needs join_authorised_via_users_server');
        if (membershipOf(via, state) !== 'join') return reject('the authorising user is not joined');
        if (userPowerLevel(via, state, version) < namedLevel('invite', state, version)) return reject('the authorising user may not invite');
        return ALLOW;
      }
      // 5.3.6
      if (joinRule === 'public') return ALLOW;
      return reject('the room is not public');
    }
    case 'invite': {
      // 5.4.1 third-party invites
      const tpi = event.content.third_party_invite;
      if (tpi !== undefined) {
        if (targetMembership === 'ban') return reject('the target is banned');
        return checkThirdPartyInvite(event, tpi, state);
      }
      // 5.4.2
      if (senderMembership !== 'join') return reject('the sender is not joined');
      // 5.4.3
      if (targetMembership === 'join' || targetMembership === 'ban') return reject(`the target is ${targetMembership}`);
      // 5.4.4
      return userPowerLevel(event.sender, state, version) >= namedLevel('invite', state, version) ? ALLOW : reject('the sender may not invite');
    }
    case 'leave': {
      // 5.5.1 leaving (or rejecting an invite, or withdrawing a knock)
      if (event.sender === target) {
        const ok = targetMembership === 'invite' || targetMembership === 'join' || (version.knock && targetMembership === 'knock');
        return ok ? ALLOW : reject('the sender is not in the room');
      }
      // 5.5.2
      if (senderMembership !== 'join') return reject('the sender is not joined');
      const senderLevel = userPowerLevel(event.sender, state, version);
      // 5.5.3 unbanning needs the ban level
      if (targetMembership === 'ban' && senderLevel < namedLevel('ban', state, version)) return reject('the sender may not unban');
      // 5.5.4 kicking
      if (senderLevel >= namedLevel('kick', state, version) && userPowerLevel(target, state, version) < senderLevel) return ALLOW;
      return reject('the sender may not kick that user');
    }
    case 'ban': {
      // 5.6.1
      if (senderMembership !== 'join') return reject('the sender is not joined');
      const senderLevel = userPowerLevel(event.sender, state, version);
      // 5.6.2
      if (senderLevel >= namedLevel('ban', state, version) && userPowerLevel(target, state, version) < senderLevel) return ALLOW;
      return reject('the sender may not ban that user');
    }
    case 'knock': {
      if (!version.knock) return reject('knocking is not supported in this room version');
      // 5.7.1
      if (joinRule !== 'knock' && !(version.knockRestricted && joinRule === 'knock_restricted')) return reject('the room does not allow knocking');
      // 5.7.2
      if (event.sender !== target) return reject('cannot knock on behalf of another user');
      // 5.7.3
      if (senderMembership !== 'ban' && senderMembership !== 'invite' && senderMembership !== 'join') return ALLOW;
      return reject(`cannot knock while ${senderMembership}`);
    }
    default:
      // 5.8
      return reject(`unknown membership ${JSON.stringify(membership)}`);
  }
}

/** 5.4.1.2–5.4.1.8: the signed third-party invite must match a m.room.third_party_invite event. */
function checkThirdPartyInvite(event: Pdu, tpi: unknown, state: StateLookup): AuthResult {
  if (!isJsonObject(tpi as never)) return reject('third_party_invite must be an object');
  const signed = (tpi as JsonObject).signed;
  if (!isJsonObject(signed)) return reject('third_party_invite has no signed object');
  if (typeof signed.mxid !== 'string' || typeof signed.token !== 'string') return reject('signed needs mxid and token');
  if (signed.mxid !== event.stateKey) return reject('signed.mxid is not the invited user');
  const invite = state.get('m.room.third_party_invite', signed.token);
  if (!invite) return reject('no m.room.third_party_invite for that token');
  if (invite.sender !== event.sender) return reject('the invite was made by another user');
  const keys: string[] = [];
  if (typeof invite.content.public_key === 'string') keys.push(invite.content.public_key);
  if (Array.isArray(invite.content.public_keys)) {
    for (const k of invite.content.public_keys) if (isJsonObject(k) && typeof k.public_key === 'string') keys.push(k.public_key);
  }
  const signatures = signed.signatures;
  if (!isJsonObject(signatures)) return reject('signed has no signatures');
  for (const keyText of keys) {
    const publicKey = decodeKey(keyText);
    if (!publicKey) continue;
    for (const [entity, sigs] of Object.entries(signatures)) {
      if (!isJsonObject(sigs)) continue;
      for (const keyId of Object.keys(sigs)) {
        if (!keyId.startsWith('ed25519:')) continue;
        if (verifyJsonSignature(signed, entity, keyId, publicKey).ok) return ALLOW;
      }
    }
  }
  return reject('no signature in signed matches the invite’s public keys');
}

function decodeKey(text: string): Uint8Array | null {
  for (const decode of [decodeBase64, decodeBase64Url]) {
    try {
      const k = decode(text);
      if (k.length === 32) return k;
    } catch {
      /* try the other alphabet */
    }
  }
  return null;
}

function checkPowerLevels(event: Pdu, state: StateLookup, create: Pdu, senderLevel: number, version: RoomVersion): AuthResult {
  const content = event.content;
  // 10.1 (v10+) named levels must be integers
  if (version.integerPowerLevels) {
    for (const name of POWER_LEVEL_NAMES) {
      if (name in content && !Number.isInteger(content[name])) return reject(`${name} must be an integer`);
    }
  }
  // 10.2 (v10+) events and notifications map to integers
  for (const mapName of ['events', 'notifications'] as const) {
    if (!(mapName in content)) continue;
    const map = content[mapName];
    if (version.integerPowerLevels) {
      if (!isJsonObject(map) || !Object.values(map).every((v) => Number.isInteger(v))) return reject(`${mapName} must map to integers`);
    }
  }
  // 10.3 users: valid user ids to integers (v1–v9: or integer strings)
  if ('users' in content) {
    const users = content.users;
    if (!isJsonObject(users)) return reject('users must be an object');
    for (const [user, level] of Object.entries(users)) {
      if (!isValidUserId(user)) return reject(`users has an invalid user id ${JSON.stringify(user)}`);
      if (version.integerPowerLevels ? !Number.isInteger(level) : parsePowerLevel(level, version) === undefined) return reject(`users[${user}] is not a power level`);
    }
  }
  // 12:10.4 creators cannot be listed
  if (version.privilegedCreators && isJsonObject(content.users)) {
    for (const c of roomCreators(create, version)) if (Object.prototype.hasOwnProperty.call(content.users, c)) return reject('room creators cannot be given a power level');
  }
  // 10.5 the first power levels event
  const previous = state.get('m.room.power_levels', '');
  if (!previous) return ALLOW;
  const old = previous.content;
  const level = (c: JsonObject, key: string) => parsePowerLevel(c[key], version);

  // 10.6 named levels added, changed or removed
  for (const name of POWER_LEVEL_NAMES) {
    const before = level(old, name);
    const after = level(content, name);
    if (before === after) continue;
    if (before !== undefined && before > senderLevel) return reject(`cannot change ${name} from above your level`);
    if (after !== undefined && after > senderLevel) return reject(`cannot set ${name} above your level`);
  }
  // 10.7 / 10.8 events (and v6+: notifications)
  const maps = version.notificationsInPowerLevelAuth ? (['events', 'notifications'] as const) : (['events'] as const);
  for (const mapName of maps) {
    const before = isJsonObject(old[mapName]) ? (old[mapName] as JsonObject) : {};
    const after = isJsonObject(content[mapName]) ? (content[mapName] as JsonObject) : {};
    for (const key of new Set([...Object.keys(before), ...Object.keys(after)])) {
      const b = Object.prototype.hasOwnProperty.call(before, key) ? parsePowerLevel(before[key], version) : undefined;
      const a = Object.prototype.hasOwnProperty.call(after, key) ? parsePowerLevel(after[key], version) : undefined;
      if (a === b) continue;
      if (b !== undefined && b > senderLevel) return reject(`cannot change ${mapName}.${key} from above your level`);
      if (a !== undefined && a > senderLevel) return reject(`cannot set ${mapName}.${key} above your level`);
    }
  }
  // 10.9 / 10.10 users
  const beforeUsers = isJsonObject(old.users) ? old.users : {};
  const afterUsers = isJsonObject(content.users) ? content.users : {};
  for (const user of new Set([...Object.keys(beforeUsers), ...Object.keys(afterUsers)])) {
    const b = Object.prototype.hasOwnProperty.call(beforeUsers, user) ? parsePowerLevel(beforeUsers[user], version) : undefined;
    const a = Object.prototype.hasOwnProperty.call(afterUsers, user) ? parsePowerLevel(afterUsers[user], version) : undefined;
    if (a === b) continue;
    if (b !== undefined && user !== event.sender && b >= senderLevel) return reject(`cannot change the level of ${user}, who is not below you`);
    if (a !== undefined && a > senderLevel) return reject(`cannot give ${user} a level above yours`);
  }
  return ALLOW;
}
