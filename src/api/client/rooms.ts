/**
 * Room writes (issue 5): `POST /createRoom`; joining, leaving, forgetting, inviting, kicking,
 * banning, unbanning and knocking; `PUT /send`, `PUT /state`, `PUT /redact`. Every event goes
 * to the room actor as a template — it signs it, checks it against the authorization rules and
 * persists it — so these handlers only validate input and say what to send. Membership changes
 * the actor confirms are recorded in the sender's joined-rooms index at once (the membership
 * index reader records them too, from the room outbox; whichever comes second is a no-op).
 * Forgetting a room is the user's own data: the user actor records it (`forget`).
 *
 * Rooms on other servers (joins and knocks over federation, invites of remote users) come with
 * federation; until then they are refused with the errors the spec gives for unknown rooms.
 */
import { randomBytes } from 'node:crypto';
import type { Front, Request } from '../../http/server';
import { MatrixError, errors } from '../../http/errors';
import { buildCreateEvent } from '../../../actors/room';
import type { EventTemplate } from '../../rooms/model';
import type { JsonObject, JsonValue } from '../../protocol/json';
import { serverOf } from '../../protocol/identifiers';
import { MembershipIndex } from '../../readers/membership-index';
import { requireUser, type Requester } from './auth';
import type { ApiContext } from '../context';
import { presenceOnActivity } from './presence';
import { AliasStore, currentPower, registerAliasRoutes, resolveRoomIdOrAlias } from './aliases';
import { askUser } from './accounts-common';
import { setDirectoryVisibility } from './directory';
import { registerRoomReadRoutes } from './room-reads';
import { restrictedJoinAuthoriser } from './restricted-joins';
import { storedProfile, withProfile } from './profile';
import { askRoom, bodyObject, clientRoute, optString, requireRoomId, requireUserIdParam, sendEvent, txnKey, type SendReply } from './room-common';
import { checkThreepidInvite, parseCreateRoomRequest, type CreateRoomRequest } from './create-room-request';

let lastCreateTs = 0;
/** A timestamp for a new create event, later than any this front used before. */
function uniqueCreateTs(): number {
  lastCreateTs = Math.max(Date.now(), lastCreateTs + 1);
  return lastCreateTs;
}

export function registerRoomRoutes(front: Front, ctx: ApiContext): void {
  const index = new MembershipIndex(ctx.redis, ctx.keys, ctx.shardCounts.user);
  const aliases = new AliasStore(ctx);

  /** Send a membership event and record it in the target's joined-rooms index. */
  const sendMembership = async (roomId: string, sender: string, target: string, given: JsonObject): Promise<SendReply> => {
    const content = await withLocalProfile(ctx, target, given);
    const reply = await sendEvent(ctx, roomId, { type: 'm.room.member', state_key: target, sender, content });
    if (serverOf(target) === ctx.config.serverName) await index.record(target, roomId, reply.pos, String(content.membership));
    return reply;
  };

  /** Unknown rooms answer 403 (for writes) so that probing does not reveal which rooms exist. */
  const requireKnownRoom = async (roomId: string) => {
    if (!(await ctx.rooms.meta(roomId))) throw new MatrixError(403, 'M_FORBIDDEN', 'You are not in this room (or it does not exist)');
  };

  clientRoute(front, 'POST', '/createRoom', async (req) => {
    const user = await requireUser(ctx, req);
    const roomId = await createRoom(ctx, user, bodyObject(req), aliases, index);
    return { body: { room_id: roomId } };
  });

  // ---- membership ----

  const join = async (req: Request, idOrAlias: string | undefined) => {
    const user = await requireUser(ctx, req);
    const body = req.body.length ? bodyObject(req) : {};
    const roomId = await resolveRoomIdOrAlias(ctx, aliases, idOrAlias);
    if (!(await ctx.rooms.meta(roomId))) throw errors.notFound('No known room with this id on this server; joining rooms on other servers needs federation, which this server does not do yet');
    if (body.third_party_signed !== undefined) throw new MatrixError(400, 'M_UNRECOGNIZED', 'Third-party invites are not supported');
    const content: JsonObject = { membership: 'join' };
    const reason = optString(body, 'reason');
    if (reason !== undefined) content.reason = reason;
    // Restricted rooms: this server vouches for members of an allowed room (restricted-joins.ts).
    const authoriser = await restrictedJoinAuthoriser(ctx, roomId, user.userId);
    if (authoriser) content.join_authorised_via_users_server = authoriser;
    await sendMembership(roomId, user.userId, user.userId, content);
    return { body: { room_id: roomId } };
  };
  clientRoute(front, 'POST', '/join/:roomIdOrAlias', (req) => join(req, req.params.roomIdOrAlias));
  clientRoute(front, 'POST', '/rooms/:roomId/join', (req) => join(req, requireRoomId(req.params.roomId)));

  clientRoute(front, 'POST', '/knock/:roomIdOrAlias', async (req) => {
    const user = await requireUser(ctx, req);
    const body = req.body.length ? bodyObject(req) : {};
    const roomId = await resolveRoomIdOrAlias(ctx, aliases, req.params.roomIdOrAlias);
    if (!(await ctx.rooms.meta(roomId))) throw errors.notFound('No known room with this id on this server; knocking on rooms on other servers needs federation, which this server does not do yet');
    const content: JsonObject = { membership: 'knock' };
    const reason = optString(body, 'reason');
    if (reason !== undefined) content.reason = reason;
    await sendMembership(roomId, user.userId, user.userId, content);
    return { body: { room_id: roomId } };
  });

  clientRoute(front, 'POST', '/rooms/:roomId/leave', async (req) => {
    const user = await requireUser(ctx, req);
    const roomId = requireRoomId(req.params.roomId);
    const body = req.body.length ? bodyObject(req) : {};
    await requireKnownRoom(roomId);
    const content: JsonObject = { membership: 'leave' };
    const reason = optString(body, 'reason');
    if (reason !== undefined) content.reason = reason;
    await sendMembership(roomId, user.userId, user.userId, content);
    return { body: {} };
  });

  clientRoute(front, 'POST', '/rooms/:roomId/forget', async (req) => {
    const user = await requireUser(ctx, req);
    const roomId = requireRoomId(req.params.roomId);
    const membership = await ctx.rooms.membership(roomId, user.userId);
    if (membership === 'join' || membership === 'invite' || membership === 'knock') throw new MatrixError(400, 'M_UNKNOWN', 'You have not left the room');
    await askUser(ctx, user.userId, { op: 'forget', roomId });
    return { body: {} };
  });

  /** invite, kick, ban, unban: a membership event for another user. */
  const targeted = (op: 'invite' | 'kick' | 'ban' | 'unban') => async (req: Request) => {
    const user = await requireUser(ctx, req);
    const roomId = requireRoomId(req.params.roomId);
    const body = bodyObject(req);
    if (op === 'invite' && body.user_id === undefined && (body.medium !== undefined || body.address !== undefined)) {
      checkThreepidInvite(body);
      await requireKnownRoom(roomId);
      throw threepidLookupDenied();
    }
    const target = requireUserIdParam(body.user_id);
    const reason = optString(body, 'reason');
    await requireKnownRoom(roomId);
    if (op === 'invite' && serverOf(target) !== ctx.config.serverName) {
      throw new MatrixError(403, 'M_FORBIDDEN', 'Inviting users of other servers needs federation, which this server does not do yet');
    }
    if (op === 'unban' && (await ctx.rooms.membership(roomId, target)) !== 'ban') throw new MatrixError(403, 'M_FORBIDDEN', `${target} is not banned`);
    const membership = op === 'kick' || op === 'unban' ? 'leave' : op;
    const content: JsonObject = { membership };
    if (reason !== undefined) content.reason = reason;
    await sendMembership(roomId, user.userId, target, content);
    return { body: {} };
  };
  clientRoute(front, 'POST', '/rooms/:roomId/invite', targeted('invite'));
  clientRoute(front, 'POST', '/rooms/:roomId/kick', targeted('kick'));
  clientRoute(front, 'POST', '/rooms/:roomId/ban', targeted('ban'));
  clientRoute(front, 'POST', '/rooms/:roomId/unban', targeted('unban'));

  // ---- events ----

  clientRoute(front, 'PUT', '/rooms/:roomId/send/:eventType/:txnId', async (req) => {
    const user = await requireUser(ctx, req);
    const roomId = requireRoomId(req.params.roomId);
    const content = bodyObject(req);
    await requireKnownRoom(roomId);
    const reply = await sendEvent(ctx, roomId, { type: req.params.eventType!, sender: user.userId, content }, txnKey('send', user.userId, user.deviceId, req.params.txnId!));
    presenceOnActivity(ctx, user.userId);
    return { body: { event_id: reply.event_id } };
  });

  const putState = async (req: Request, stateKey: string) => {
    const user = await requireUser(ctx, req);
    const roomId = requireRoomId(req.params.roomId);
    const type = req.params.eventType!;
    const content = bodyObject(req);
    // A room has one create event, made by createRoom: a client sending one as state (any state
    // key) is refused as bad input before the room is asked, as Synapse does. (Sent with
    // `/send`, without a state key, the authorization rules refuse it: rule 1, 403.)
    if (type === 'm.room.create') throw errors.invalidParam('Cannot resend m.room.create event');
    await requireKnownRoom(roomId);
    if (type === 'm.room.canonical_alias') await checkCanonicalAlias(ctx, aliases, roomId, content);
    const template: EventTemplate = { type, state_key: stateKey, sender: user.userId, content };
    const reply = await sendEvent(ctx, roomId, template);
    if (type === 'm.room.member' && typeof content.membership === 'string' && serverOf(stateKey) === ctx.config.serverName) {
      await index.record(stateKey, roomId, reply.pos, content.membership);
    }
    return { body: { event_id: reply.event_id } };
  };
  clientRoute(front, 'PUT', '/rooms/:roomId/state/:eventType/:stateKey', (req) => putState(req, req.params.stateKey!));
  clientRoute(front, 'PUT', '/rooms/:roomId/state/:eventType/', (req) => putState(req, ''));
  clientRoute(front, 'PUT', '/rooms/:roomId/state/:eventType', (req) => putState(req, ''));

  clientRoute(front, 'PUT', '/rooms/:roomId/redact/:eventId/:txnId', async (req) => {
    const user = await requireUser(ctx, req);
    const roomId = requireRoomId(req.params.roomId);
    const body = req.body.length ? bodyObject(req) : {};
    const reason = optString(body, 'reason');
    const target = req.params.eventId!;
    if (!target.startsWith('$')) throw errors.invalidParam('Not an event id');
    await requireKnownRoom(roomId);
    // The room accepts any redaction event and applies it only when allowed; clients are told
    // up front when they may not redact someone else's event (redact level).
    const targetEvent = await ctx.rooms.event(roomId, target);
    if (targetEvent && targetEvent.event.sender !== user.userId) {
      const power = await currentPower(ctx, roomId);
      if (power && power.userLevel(user.userId) < power.redact) throw new MatrixError(403, 'M_FORBIDDEN', "You may not redact other users' events in this room");
    }
    const content: JsonObject = reason !== undefined ? { reason } : {};
    const reply = await sendEvent(ctx, roomId, { type: 'm.room.redaction', sender: user.userId, content, redacts: target }, txnKey('redact', user.userId, user.deviceId, req.params.txnId!));
    return { body: { event_id: reply.event_id } };
  });

  registerRoomReadRoutes(front, ctx, index);
  registerAliasRoutes(front, ctx, aliases);
}

/**
 * Third-party invites need an identity server to look the address up and to store the invite;
 * this server is configured with none, so it answers as Synapse does with lookups turned off
 * (`enable_3pid_lookup: false`): 403 with Synapse's errcode (M_UNKNOWN) and message.
 */
function threepidLookupDenied(): MatrixError {
  return new MatrixError(403, 'M_UNKNOWN', 'Looking up third-party identifiers is denied from this server');
}

/** m.room.canonical_alias: local aliases in it must exist and point at this room (M_BAD_ALIAS). */
async function checkCanonicalAlias(ctx: ApiContext, aliases: AliasStore, roomId: string, content: JsonObject): Promise<void> {
  const named: string[] = [];
  if (content.alias !== undefined && content.alias !== null) {
    if (typeof content.alias !== 'string') throw errors.badJson('alias must be a string');
    named.push(content.alias);
  }
  if (content.alt_aliases !== undefined) {
    if (!Array.isArray(content.alt_aliases) || !content.alt_aliases.every((a) => typeof a === 'string')) throw errors.badJson('alt_aliases must be a list of aliases');
    named.push(...(content.alt_aliases as string[]));
  }
  for (const a of named) {
    const m = /^#[^:]+:(.+)$/.exec(a);
    if (!m) throw errors.invalidParam(`Not a room alias: ${a}`);
    if (m[1] !== ctx.config.serverName) continue; // remote aliases can only be checked over federation
    const rec = await aliases.get(a);
    if (!rec || rec.r !== roomId) throw new MatrixError(400, 'M_BAD_ALIAS', `${a} does not point to this room`);
  }
}

/**
 * How long a createRoom holds its alias before binding it (actors/alias.ts `reserve`): far more
 * than the create, join and power levels take, short enough that a front that dies in between
 * does not keep the name from others for long.
 */
const ALIAS_RESERVATION_MS = 2 * 60_000;

/** A createRoom's hold on its alias, and whether the alias has been bound to the room yet. */
interface HeldAlias {
  alias: string;
  token: string;
  bound: boolean;
}

/**
 * POST /createRoom: validate everything first, hold the alias, then send the events in the spec's
 * order — create, the creator's join, power levels, canonical alias, the preset's join rules /
 * history visibility / guest access, initial_state, name, topic, invites.
 */
async function createRoom(ctx: ApiContext, user: Requester, body: JsonObject, aliases: AliasStore, index: MembershipIndex): Promise<string> {
  // 1. Validate the request (create-room-request.ts), then the things that need the server.
  const request = parseCreateRoomRequest(body, { serverName: ctx.config.serverName, defaultRoomVersion: ctx.config.defaultRoomVersion, creator: user.userId });
  // Refused before anything is created (Synapse creates the room, then fails on the first one).
  if (request.threepidInvites > 0) throw threepidLookupDenied();
  for (const u of request.invites) {
    if (serverOf(u) !== ctx.config.serverName) throw new MatrixError(403, 'M_FORBIDDEN', 'Inviting users of other servers needs federation, which this server does not do yet');
  }
  if (!request.alias) return populateRoom(ctx, user, request, aliases, index, null);

  // The alias is held for this request before anything is created: of concurrent createRooms
  // for one name only the holder goes on, the others are refused here and leave nothing behind.
  // The hold is released when the room fails before the alias is bound, and expires by itself
  // if this front dies in between.
  let held: HeldAlias;
  try {
    held = { alias: request.alias, token: await aliases.reserve(request.alias, user.userId, ALIAS_RESERVATION_MS), bound: false };
  } catch (e) {
    throw aliasInUse(e, request.alias);
  }
  try {
    return await populateRoom(ctx, user, request, aliases, index, held);
  } catch (e) {
    if (!held.bound) await aliases.release(held.alias, held.token);
    throw e;
  }
}

/** The alias actor's 409 (taken, or held by another createRoom) is createRoom's 400 M_ROOM_IN_USE. */
function aliasInUse(e: unknown, alias: string): unknown {
  return e instanceof MatrixError && e.status === 409 ? new MatrixError(400, 'M_ROOM_IN_USE', `Room alias ${alias} already exists`) : e;
}

/** createRoom after validation: the room and its events, binding the held alias on the way. */
async function populateRoom(ctx: ApiContext, user: Requester, request: CreateRoomRequest, aliases: AliasStore, index: MembershipIndex, held: HeldAlias | null): Promise<string> {
  const { visibility, presetName, preset, version, creation, plOverride, invites, isDirect, name, topic, initialState, alias } = request;
  // 2. The create event (signed here: v12 room ids derive from it).
  const createContent: JsonObject = { ...creation };
  delete createContent.room_version;
  delete createContent.creator;
  if (version.privilegedCreators && presetName === 'trusted_private_chat' && invites.length) {
    const existing = Array.isArray(createContent.additional_creators) ? (createContent.additional_creators as JsonValue[]) : [];
    createContent.additional_creators = [...new Set([...existing, ...invites])] as JsonValue[];
  }
  // v12 room ids are the hash of the create event: two rooms created by one user in the same
  // millisecond with the same content would be one room. Timestamps are made unique per front,
  // and a collision with another front's room (M_ROOM_IN_USE) is retried with a later one.
  let roomId = '';
  for (let attempt = 0; ; attempt++) {
    const built = buildCreateEvent(
      { serverName: ctx.config.serverName, signingKey: ctx.signingKey },
      { roomVersion: version.id, creator: user.userId, content: createContent, roomLocalpart: randomBytes(12).toString('base64url').replace(/[-_]/g, 'x'), ts: uniqueCreateTs() },
    );
    try {
      await askRoom(ctx, built.roomId, { op: 'create', event: built.event });
      roomId = built.roomId;
      break;
    } catch (e) {
      if (!(e instanceof MatrixError && e.errcode === 'M_ROOM_IN_USE') || attempt >= 4) throw e;
    }
  }

  // 3. Everything after the create: a rejection means the request's state was not allowed.
  const send = async (t: EventTemplate) => {
    try {
      return await sendEvent(ctx, roomId, t);
    } catch (e) {
      if (e instanceof MatrixError && e.errcode === 'M_FORBIDDEN') throw new MatrixError(400, 'M_INVALID_ROOM_STATE', `${t.type} (${t.state_key ?? ''}) was not allowed: ${e.message}`);
      throw e;
    }
  };
  const state = (type: string, content: JsonObject, stateKey = '') => send({ type, state_key: stateKey, sender: user.userId, content });

  const joined = await state('m.room.member', await withLocalProfile(ctx, user.userId, { membership: 'join' }), user.userId);
  await index.record(user.userId, roomId, joined.pos, 'join');

  const users: JsonObject = {};
  if (!version.privilegedCreators) {
    users[user.userId] = 100;
    if (presetName === 'trusted_private_chat') for (const u of invites) users[u] = 100;
  }
  const events: JsonObject = {
    'm.room.name': 50, 'm.room.power_levels': 100, 'm.room.history_visibility': 100, 'm.room.canonical_alias': 50,
    'm.room.avatar': 50, 'm.room.tombstone': version.privilegedCreators ? 150 : 100, 'm.room.server_acl': 100, 'm.room.encryption': 100,
  };
  const powerLevels: JsonObject = {
    users, users_default: 0, events, events_default: 0, state_default: 50, ban: 50, kick: 50, redact: 50, invite: preset.invite,
    notifications: { room: 50 },
    ...(plOverride ?? {}),
  };
  await state('m.room.power_levels', powerLevels);

  if (alias && held) {
    try {
      await aliases.create(alias, roomId, user.userId, held.token);
      held.bound = true;
    } catch (e) {
      // Only when the hold ran out before this point and someone else took the name: the room
      // is not kept — the creator leaves it — and the answer is M_ROOM_IN_USE.
      if (e instanceof MatrixError && e.status === 409) {
        try {
          const left = await state('m.room.member', { membership: 'leave' }, user.userId);
          await index.record(user.userId, roomId, left.pos, 'leave');
        } catch (err) {
          ctx.log.warn({ room_id: roomId, user_id: user.userId, err: (err as Error).message }, 'createRoom: could not leave the room that lost its alias');
        }
      }
      throw aliasInUse(e, alias);
    }
    await state('m.room.canonical_alias', { alias });
  }

  const overridden = new Set(initialState.filter((s) => s.state_key === '').map((s) => s.type));
  if (!overridden.has('m.room.join_rules')) await state('m.room.join_rules', { join_rule: preset.join_rule });
  if (!overridden.has('m.room.history_visibility')) await state('m.room.history_visibility', { history_visibility: preset.history_visibility });
  if (!overridden.has('m.room.guest_access')) await state('m.room.guest_access', { guest_access: preset.guest_access });
  for (const s of initialState) await state(s.type, s.content, s.state_key);
  if (name !== undefined) await state('m.room.name', { name });
  if (topic !== undefined) await state('m.room.topic', { topic });
  for (const u of invites) {
    const reply = await state('m.room.member', isDirect ? { membership: 'invite', is_direct: true } : { membership: 'invite' }, u);
    await index.record(u, roomId, reply.pos, 'invite');
  }
  if (visibility === 'public') await setDirectoryVisibility(ctx, [[roomId, 'public']]);
  return roomId;
}

/**
 * Joins, invites and knocks of local users carry the user's profile (as Synapse sends them), so
 * members lists show names without a profile look-up per member.
 */
async function withLocalProfile(ctx: ApiContext, userId: string, content: JsonObject): Promise<JsonObject> {
  const m = content.membership;
  if (serverOf(userId) !== ctx.config.serverName || (m !== 'join' && m !== 'invite' && m !== 'knock')) return content;
  if (content.displayname !== undefined || content.avatar_url !== undefined) return content;
  const profile = await storedProfile(ctx, userId);
  return Object.keys(profile).length ? withProfile(content, profile) : content;
}
