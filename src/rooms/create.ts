/**
 * Creating a room (`POST /createRoom`; callable from the federation side too): validate the
 * request, hold its alias, then send the events in the spec's order through the room actor.
 * Functions take the API context and plain arguments and throw MatrixError, as the handlers did.
 */
import { randomBytes } from 'node:crypto';
import { MatrixError } from '../http/errors';
import { buildCreateEvent } from '../../actors/room';
import type { EventTemplate } from './model';
import type { JsonObject, JsonValue } from '../protocol/json';
import { serverOf } from '../protocol/identifiers';
import type { MembershipIndex } from '../readers/membership-index';
import type { ApiContext } from '../api/context';
import { requireAliasNotReserved, type AliasStore } from './aliases';
import { askAppservicesForUser } from './appservice-users';
import type { Appservice } from '../appservice/registration';
import { setDirectoryVisibility } from './directory';
import { askRoom, sendEvent } from './ask';
import { parseCreateRoomRequest, type CreateRoomRequest } from './create-room-request';
import { remoteDeps, withLocalProfile } from './join';
import { inviteRemoteUser } from './invite-remote';

let lastCreateTs = 0;
/** A timestamp for a new create event, later than any this front used before. */
function uniqueCreateTs(): number {
  lastCreateTs = Math.max(Date.now(), lastCreateTs + 1);
  return lastCreateTs;
}

/**
 * Third-party invites need an identity server to look the address up and to store the invite;
 * this server is configured with none, so it answers as Synapse does with lookups turned off
 * (`enable_3pid_lookup: false`): 403 with Synapse's errcode (M_UNKNOWN) and message.
 */
export function threepidLookupDenied(): MatrixError {
  return new MatrixError(403, 'M_UNKNOWN', 'Looking up third-party identifiers is denied from this server');
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
export async function createRoom(ctx: ApiContext, user: { userId: string; appservice?: Appservice }, body: JsonObject, aliases: AliasStore, index: MembershipIndex): Promise<string> {
  // 1. Validate the request (create-room-request.ts), then the things that need the server.
  const request = parseCreateRoomRequest(body, { serverName: ctx.config.serverName, defaultRoomVersion: ctx.config.defaultRoomVersion, creator: user.userId });
  // Refused before anything is created (Synapse creates the room, then fails on the first one).
  if (request.threepidInvites > 0) throw threepidLookupDenied();
  const fed = remoteDeps(ctx);
  for (const u of request.invites) {
    if (serverOf(u) !== ctx.config.serverName && !fed) throw new MatrixError(403, 'M_FORBIDDEN', 'Inviting users of other servers needs federation, which is off on this server');
  }
  // Invitees of this server that an appservice may still have to make (its puppets).
  await Promise.all(request.invites.map((u) => askAppservicesForUser(ctx, u)));
  if (!request.alias) return populateRoom(ctx, user, request, aliases, index, null);
  requireAliasNotReserved(ctx, request.alias, user);

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
async function populateRoom(ctx: ApiContext, user: { userId: string }, request: CreateRoomRequest, aliases: AliasStore, index: MembershipIndex, held: HeldAlias | null): Promise<string> {
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
  // `forbidden` is what a room without the event has (public_chat): no event for it, as Synapse.
  if (!overridden.has('m.room.guest_access') && preset.guest_access !== 'forbidden') await state('m.room.guest_access', { guest_access: preset.guest_access });
  for (const s of initialState) await state(s.type, s.content, s.state_key);
  if (name !== undefined) await state('m.room.name', { name });
  // The topic in both forms (spec v1.15): the plain `topic`, and the `m.topic` text blocks that
  // newer clients read first.
  if (topic !== undefined) await state('m.room.topic', { topic, 'm.topic': { 'm.text': [{ body: topic, mimetype: 'text/plain' }] } });
  for (const u of invites) {
    const content: JsonObject = isDirect ? { membership: 'invite', is_direct: true } : { membership: 'invite' };
    const fed = serverOf(u) !== ctx.config.serverName ? remoteDeps(ctx) : null;
    if (fed) {
      // A user of another server: their server co-signs the invite (src/rooms/invite-remote.ts).
      // The room exists by now; one unreachable server does not undo it (the others are invited).
      try {
        await inviteRemoteUser(ctx, fed, roomId, user.userId, u, content);
      } catch (e) {
        if (!(e instanceof MatrixError)) throw e;
        ctx.log.warn({ room_id: roomId, user_id: u, error: e.message }, 'createRoom: inviting a remote user failed');
      }
      continue;
    }
    // With the invitee's profile, as any other invite of a local user (and as Synapse).
    const reply = await state('m.room.member', await withLocalProfile(ctx, u, content), u);
    await index.record(u, roomId, reply.pos, 'invite');
  }
  if (visibility === 'public') await setDirectoryVisibility(ctx, [[roomId, 'public']]);
  return roomId;
}
