// PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}
// PUT /_matrix/federation/v1/send_join/{roomId}/{eventId}
/**
 * A remote server sends the join it built from our make_join template, hashed and signed
 * (server-server API, "Joining Rooms"). It must be a join of a user of the origin, for this room,
 * with the path's event id; when it names one of our users in `join_authorised_via_users_server`
 * (a restricted room), this server adds its signature, as the spec requires of the authorising
 * server. The room actor ingests it live (receipt checks, src/rooms/ingest.ts). The answer is the
 * room's state before the join and its auth chain as PDUs, the event (with our signature when we
 * added one) and the servers in the room. v1 answers the same body as `[200, body]`.
 *
 * Faster joins (MSC3706): a v2 request with `?omit_members=true` gets the state without the
 * member events the joining server can do without (src/protocol/partial-state.ts
 * `partialJoinStateIds`), an auth chain without the events the state already carries,
 * `members_omitted: true`, and in `servers_in_room` the servers it can fetch the rest from.
 * v1 has no such option (as Synapse); `members_omitted` is false there and when not asked.
 */
import { MatrixError } from '../../http/errors';
import type { Request } from '../../http/server';
import type { Front } from '../../http/server';
import { ingestMembershipEvent, requireMembershipRoom } from '../../federation/inbound/membership';
import { serverNameOf, signEventOnly } from '../../protocol/event-hashing';
import { isJsonObject, type JsonObject } from '../../protocol/json';
import { checkSentMembership, serversInRoom, stateAndAuthChainBefore } from '../../rooms/remote-join';
import { ownEventSigner } from '../../rooms/own-signatures';
import { federationRoute, type FederationCaller } from './auth';
import type { FederationContext } from './context';

export function registerSendJoinRoutes(front: Front, ctx: FederationContext): void {
  const sendJoin = async (req: Request, caller: FederationCaller, v2: boolean) => {
    const omitMembers = v2 && parseOmitMembers(req.query.omit_members);
    const roomId = req.params.roomId ?? '';
    const eventId = req.params.eventId ?? '';
    const room = await requireMembershipRoom(ctx.api.rooms, roomId, null, caller.origin);
    const check = checkSentMembership(caller.body, room.version, roomId, eventId, caller.origin, 'join');
    if (!check.ok) throw new MatrixError(400, 'M_BAD_JSON', check.error);
    let raw = caller.body as JsonObject;
    const content = raw.content as JsonObject;
    const via = content.join_authorised_via_users_server;
    if (room.version.restrictedJoins && typeof via === 'string') {
      if (serverNameOf(via) !== ctx.config.serverName) throw new MatrixError(400, 'M_BAD_JSON', 'join_authorised_via_users_server names a user of another server');
      raw = signEventOnly(raw, room.version, ctx.config.serverName, ctx.api.signingKey);
    }
    await ingestMembershipEvent(ctx.api, ctx.keyStore, room, raw, ctx.api.signingKey, ctx.config.serverName, Date.now() + 10_000);
    const signer = ownEventSigner(ctx.config.serverName, ctx.api.signingKey);
    const before = await stateAndAuthChainBefore(ctx.api.rooms, signer, room.version, roomId, eventId, omitMembers ? check.userId : undefined);
    if (!before) throw new MatrixError(403, 'M_FORBIDDEN', 'The join did not take its place in the room');
    const stored = await ctx.api.rooms.event(roomId, eventId);
    const event = stored && isJsonObject(stored.event) ? stored.event : raw;
    return {
      origin: ctx.config.serverName,
      state: before.state,
      auth_chain: before.authChain,
      event,
      members_omitted: omitMembers,
      servers_in_room: await serversInRoom(ctx.api.rooms, roomId),
    };
  };
  federationRoute(front, ctx, 'PUT', '/_matrix/federation/v2/send_join/:roomId/:eventId', async (req, caller) => ({ body: await sendJoin(req, caller, true) }));
  federationRoute(front, ctx, 'PUT', '/_matrix/federation/v1/send_join/:roomId/:eventId', async (req, caller) => ({ body: [200, await sendJoin(req, caller, false)] }));
}

/** `omit_members` (a boolean query parameter; absent: false). */
function parseOmitMembers(raw: string | undefined): boolean {
  if (raw === undefined || raw === 'false') return false;
  if (raw === 'true') return true;
  throw new MatrixError(400, 'M_INVALID_PARAM', 'omit_members must be true or false');
}
