// GET /_matrix/federation/v1/make_join/{roomId}/{userId}?ver=…
/**
 * A remote server asks for a join event template for one of its users (server-server API,
 * "Joining Rooms"). The user must belong to the requesting server; the room's version must be
 * one the requester supports (`ver`, repeated; absent means only "1"), otherwise 400
 * `M_INCOMPATIBLE_ROOM_VERSION` with `room_version`; the join must pass the authorization rules
 * against the room's current state (403 `M_FORBIDDEN`: banned, invite-only without an invite…).
 * In a restricted room, a local member with the power to invite is named in
 * `join_authorised_via_users_server` (chosen as for local joins: src/rooms/restricted-joins.ts),
 * and this server co-signs the join in send_join. The answer is `{ room_version, event }`: an
 * unsigned template on the room's current forward extremities (src/rooms/remote-join.ts).
 */
import { MatrixError } from '../../http/errors';
import type { Front, Request } from '../../http/server';
import { requireMembershipRoom } from '../../federation/inbound/membership';
import { membershipTemplate } from '../../rooms/remote-join';
import type { JsonObject } from '../../protocol/json';
import { restrictedJoinAuthoriser } from '../../rooms/restricted-joins';
import { partialStateOf } from '../../rooms/partial-state';
import { federationRoute, type FederationCaller } from './auth';
import type { FederationContext } from './context';

export function registerMakeJoinRoute(front: Front, ctx: FederationContext): void {
  federationRoute(front, ctx, 'GET', '/_matrix/federation/v1/make_join/:roomId/:userId', async (req, caller) => ({ body: await makeMembership(ctx, req, caller, 'join') }));
}

/**
 * The answer of make_join and make_knock: the requester must support the room's version (`ver`,
 * repeated; absent means only "1" for make_join, and is an error for make_knock), and the
 * template must pass the auth rules against the current state (403 otherwise).
 */
export async function makeMembership(ctx: FederationContext, req: Request, caller: FederationCaller, membership: 'join' | 'knock'): Promise<JsonObject> {
  const roomId = req.params.roomId ?? '';
  const userId = req.params.userId ?? '';
  const room = await requireMembershipRoom(ctx.api.rooms, roomId, userId, caller.origin);
  // A room we joined with partial state (faster joins) cannot judge a join yet: another server must
  // take it (Synapse answers the same 404).
  if (await partialStateOf(ctx.api, roomId)) throw new MatrixError(404, 'M_NOT_FOUND', 'This server is not fully joined to the room yet; ask another server');
  // make_knock came after `ver` existed: there it is required (400 M_MISSING_PARAM, as Synapse).
  if (membership === 'knock' && !req.queryAll.ver?.length) throw new MatrixError(400, 'M_MISSING_PARAM', 'Missing query parameter: ver');
  const supported = req.queryAll.ver ?? ['1'];
  if (!supported.includes(room.version.id)) {
    throw new MatrixError(400, 'M_INCOMPATIBLE_ROOM_VERSION', `Your homeserver does not support the features required to ${membership} this room (version ${room.version.id})`, { room_version: room.version.id });
  }
  const content: JsonObject = { membership };
  if (membership === 'join') {
    const authoriser = await restrictedJoinAuthoriser(ctx.api, roomId, userId);
    if (authoriser) content.join_authorised_via_users_server = authoriser;
  } else if (!room.version.knock) {
    throw new MatrixError(403, 'M_FORBIDDEN', `Room version ${room.version.id} does not support knocking`);
  }
  const made = await membershipTemplate(ctx.api.rooms, roomId, room.version, userId, content);
  if (!made) throw new MatrixError(404, 'M_NOT_FOUND', 'Unknown room');
  if (!made.auth.allowed) throw new MatrixError(403, 'M_FORBIDDEN', `You are not allowed to ${membership === 'join' ? 'join' : 'knock on'} this room: ${made.auth.reason}`);
  return { room_version: room.version.id, event: made.template };
}
