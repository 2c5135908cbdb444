/**
 * Joining a room, and the membership events of local users in general (callable from the client
 * and federation APIs): the event goes to the room actor as a template, and a membership the
 * actor confirms is recorded in the target's joined-rooms index at once (the membership index
 * reader records it too, from the room outbox; whichever comes second is a no-op).
 */
import { MatrixError, errors } from '../http/errors';
import type { JsonObject } from '../protocol/json';
import { serverOf } from '../protocol/identifiers';
import type { MembershipIndex } from '../readers/membership-index';
import type { ApiContext } from '../api/context';
import { resolveRoomIdOrAlias, type AliasStore } from './aliases';
import { restrictedJoinAuthoriser } from './restricted-joins';
import { storedProfile, withProfile } from './member-profile';
import { optString, parseAlias } from '../http/params';
import { sendEvent, type SendReply } from './ask';
import { assertRoomNotBlocked } from './blocked';
import { candidateServers, inviterServer, joinRemoteRoom, knockRemoteRoom, queryRemoteAlias, type RemoteJoinDeps } from './join-remote';

/** Send a membership event and record it in the target's joined-rooms index (local targets). */
export async function sendLocalMembership(ctx: ApiContext, index: MembershipIndex, roomId: string, sender: string, target: string, given: JsonObject): Promise<SendReply> {
  const content = await withLocalProfile(ctx, target, given);
  const reply = await sendEvent(ctx, roomId, { type: 'm.room.member', state_key: target, sender, content });
  if (serverOf(target) === ctx.config.serverName) await index.record(target, roomId, reply.pos, String(content.membership));
  return reply;
}

/**
 * `userId` joins the room `idOrAlias` names (a room id, or an alias resolved here), with the
 * request body's `reason`; restricted rooms get this server's `join_authorised_via_users_server`
 * when it can vouch for the user. Answers the room id.
 */
export async function joinRoom(ctx: ApiContext, aliases: AliasStore, index: MembershipIndex, userId: string, idOrAlias: string | undefined, body: JsonObject, via: readonly string[] = [], allowWait?: (ms: number) => void): Promise<string> {
  if (body.third_party_signed !== undefined) throw new MatrixError(400, 'M_UNRECOGNIZED', 'Third-party invites are not supported');
  // The request body is the join's content, extra keys and all (a per-room `displayname`, a
  // `reason`, custom keys), as Synapse keeps them; `membership` is ours, and only this server
  // may name who authorised a restricted join (it signs the event, so a client's claim would pass).
  optString(body, 'reason');
  const content: JsonObject = { ...body, membership: 'join' };
  delete content.join_authorised_via_users_server;
  // An alias on another server, or a room this server does not have: a join over federation.
  const fed = remoteDeps(ctx);
  const { roomId, aliasServers } = await resolveForMembership(ctx, aliases, fed, idOrAlias);
  await assertRoomNotBlocked(ctx, roomId);
  // A room we have but are no longer in (all our users left) is joined through its servers too.
  const candidates = await remoteCandidates(ctx, fed, roomId, [via, aliasServers, [await inviterServer(ctx, userId, roomId)], [serverOf(roomId)]]);
  if (fed && candidates) {
    await joinRemoteRoom(ctx, fed, index, userId, roomId, candidates, await withLocalProfile(ctx, userId, content), allowWait);
    return roomId;
  }
  // Restricted rooms: this server vouches for members of an allowed room (restricted-joins.ts).
  let authoriser: string | null;
  try {
    authoriser = await restrictedJoinAuthoriser(ctx, roomId, userId);
  } catch (e) {
    // None of our members may invite there, but a member of another server in the room may: the
    // join goes through them (make_join/send_join), as the spec's restricted rooms suggest.
    if (!(e instanceof MatrixError && e.errcode === 'M_UNABLE_TO_GRANT_JOIN' && fed)) throw e;
    const residents = [...(await ctx.rooms.members(roomId, 'join')).keys()].map((u) => serverOf(u));
    const candidates = candidateServers(ctx.config.serverName, [via, aliasServers, residents]);
    if (!candidates.length) throw e;
    await joinRemoteRoom(ctx, fed, index, userId, roomId, candidates, await withLocalProfile(ctx, userId, content), allowWait);
    return roomId;
  }
  if (authoriser) content.join_authorised_via_users_server = authoriser;
  await sendLocalMembership(ctx, index, roomId, userId, userId, content);
  return roomId;
}

/** The outbound federation client and key store, when federation is on. */
export function remoteDeps(ctx: ApiContext): RemoteJoinDeps | null {
  if (!ctx.federation?.client || !ctx.federation.keyStore) return null;
  const deps: RemoteJoinDeps = { client: ctx.federation.client, keyStore: ctx.federation.keyStore };
  if (ctx.config.federation.fasterJoins && ctx.federation.partialStates) deps.partialStates = ctx.federation.partialStates;
  return deps;
}

/**
 * `userId` knocks on the room `idOrAlias` names (client-server API, `POST /knock`), with the
 * request's `reason`. A room this server has and is in takes the knock from the room actor; any
 * other goes over federation through the candidate servers (`server_name`/`via`, an alias's
 * servers, the room id's domain): src/rooms/join-remote.ts `knockRemoteRoom`. Answers the room id.
 */
export async function knockRoom(ctx: ApiContext, aliases: AliasStore, index: MembershipIndex, userId: string, idOrAlias: string | undefined, reason: string | undefined, via: readonly string[] = []): Promise<string> {
  const content: JsonObject = { membership: 'knock' };
  if (reason !== undefined) content.reason = reason;
  const fed = remoteDeps(ctx);
  const { roomId, aliasServers } = await resolveForMembership(ctx, aliases, fed, idOrAlias);
  const candidates = await remoteCandidates(ctx, fed, roomId, [via, aliasServers, [serverOf(roomId)]]);
  if (fed && candidates) {
    await knockRemoteRoom(ctx, fed, userId, roomId, candidates, await withLocalProfile(ctx, userId, content));
    return roomId;
  }
  await sendLocalMembership(ctx, index, roomId, userId, userId, content);
  return roomId;
}

/** A room id, or an alias resolved here or (over federation) on its own server, with the servers the alias answer named. */
async function resolveForMembership(ctx: ApiContext, aliases: AliasStore, fed: RemoteJoinDeps | null, idOrAlias: string | undefined): Promise<{ roomId: string; aliasServers: string[] }> {
  if (idOrAlias?.startsWith('#') && fed && parseAlias(idOrAlias).server !== ctx.config.serverName) {
    const { alias, server } = parseAlias(idOrAlias);
    const found = await queryRemoteAlias(fed, alias, server);
    return { roomId: found.roomId, aliasServers: [...found.servers, server] };
  }
  return { roomId: await resolveRoomIdOrAlias(ctx, aliases, idOrAlias), aliasServers: [] };
}

/**
 * Where our user's join or knock goes: null when the room actor here takes it (the room is here
 * and one of our users is in it, or we have it and know no server to ask); otherwise the servers
 * to ask, in order (a room we do not have with none to ask is 404 from the handshake). For a room
 * all our users had left, the servers we last saw in it come after `lists`: our copy stopped at
 * our leave (the room may have become invite-only, or banned us, since), so the resident decides
 * — and a room id names no server from v12 on.
 */
async function remoteCandidates(ctx: ApiContext, fed: RemoteJoinDeps | null, roomId: string, lists: readonly (readonly (string | null | undefined)[])[]): Promise<string[] | null> {
  const meta = await ctx.rooms.meta(roomId);
  // The common case (one of our users is in the room) answers from an early-exit scan, not from
  // the whole member list (a 10,000-member room's).
  if (meta && (await ctx.rooms.hasJoinedMemberOf(roomId, ctx.config.serverName))) return null;
  if (!fed) {
    if (!meta) throw errors.notFound('No known room with this id on this server, and federation is off');
    return null;
  }
  const joinedUsers = meta ? [...(await ctx.rooms.members(roomId, 'join')).keys()] : [];
  const candidates = candidateServers(ctx.config.serverName, [...lists, joinedUsers.map((u) => serverOf(u))]);
  return !meta || candidates.length ? candidates : null;
}

/**
 * Joins, invites and knocks of local users carry the user's profile (as Synapse sends them), so
 * members lists show names without a profile look-up per member.
 */
export async function withLocalProfile(ctx: ApiContext, userId: string, content: JsonObject): Promise<JsonObject> {
  const m = content.membership;
  if (serverOf(userId) !== ctx.config.serverName || (m !== 'join' && m !== 'invite' && m !== 'knock')) return content;
  if (content.displayname !== undefined || content.avatar_url !== undefined) return content;
  const profile = await storedProfile(ctx, userId);
  return Object.keys(profile).length ? withProfile(content, profile) : content;
}
