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
import { resolveRoomIdOrAlias, type AliasStore } from '../api/client/aliases';
import { restrictedJoinAuthoriser } from '../api/client/restricted-joins';
import { storedProfile, withProfile } from '../api/client/profile';
import { optString, parseAlias } from '../api/client/room-common';
import { sendEvent, type SendReply } from './ask';
import { candidateServers, inviterServer, joinRemoteRoom, queryRemoteAlias } from './join-remote';

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
  const content: JsonObject = { membership: 'join' };
  const reason = optString(body, 'reason');
  if (reason !== undefined) content.reason = reason;
  // An alias on another server, or a room this server does not have: a join over federation.
  let roomId: string;
  let aliasServers: string[] = [];
  const fed = ctx.federation?.client && ctx.federation.keyStore ? { client: ctx.federation.client, keyStore: ctx.federation.keyStore } : null;
  if (idOrAlias?.startsWith('#') && fed && parseAlias(idOrAlias).server !== ctx.config.serverName) {
    const { alias, server } = parseAlias(idOrAlias);
    const found = await queryRemoteAlias(fed, alias, server);
    roomId = found.roomId;
    aliasServers = [...found.servers, server];
  } else {
    roomId = await resolveRoomIdOrAlias(ctx, aliases, idOrAlias);
  }
  const meta = await ctx.rooms.meta(roomId);
  // A room we have but are no longer in (all our users left) is joined through its servers too.
  const weAreIn = meta ? await ctx.rooms.hasJoinedMemberOf(roomId, ctx.config.serverName) : false;
  if (!meta || !weAreIn) {
    if (!fed) {
      if (!meta) throw errors.notFound('No known room with this id on this server, and federation is off');
    } else {
      const candidates = candidateServers(ctx.config.serverName, [via, aliasServers, [await inviterServer(ctx, userId, roomId)], [serverOf(roomId)]]);
      if (!meta || candidates.length) {
        await joinRemoteRoom(ctx, fed, index, userId, roomId, candidates, await withLocalProfile(ctx, userId, content), allowWait);
        return roomId;
      }
    }
  }
  // Restricted rooms: this server vouches for members of an allowed room (restricted-joins.ts).
  const authoriser = await restrictedJoinAuthoriser(ctx, roomId, userId);
  if (authoriser) content.join_authorised_via_users_server = authoriser;
  await sendLocalMembership(ctx, index, roomId, userId, userId, content);
  return roomId;
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
