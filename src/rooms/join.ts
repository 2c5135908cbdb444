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
import { optString } from '../api/client/room-common';
import { sendEvent, type SendReply } from './ask';

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
export async function joinRoom(ctx: ApiContext, aliases: AliasStore, index: MembershipIndex, userId: string, idOrAlias: string | undefined, body: JsonObject): Promise<string> {
  const roomId = await resolveRoomIdOrAlias(ctx, aliases, idOrAlias);
  if (!(await ctx.rooms.meta(roomId))) throw errors.notFound('No known room with this id on this server; joining rooms on other servers needs federation, which this server does not do yet');
  if (body.third_party_signed !== undefined) throw new MatrixError(400, 'M_UNRECOGNIZED', 'Third-party invites are not supported');
  const content: JsonObject = { membership: 'join' };
  const reason = optString(body, 'reason');
  if (reason !== undefined) content.reason = reason;
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
