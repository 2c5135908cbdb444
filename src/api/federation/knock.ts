// GET /_matrix/federation/v1/make_knock/{roomId}/{userId}?ver=…
// PUT /_matrix/federation/v1/send_knock/{roomId}/{eventId}
/**
 * A remote user knocks on one of our rooms (server-server API, "Knocking on rooms"). make_knock
 * answers `{ room_version, event }`, an unsigned knock on the room's current extremities, when the
 * requester supports the room's version (`ver`, required: 400 `M_MISSING_PARAM` without it,
 * 400 `M_INCOMPATIBLE_ROOM_VERSION` when the room's is not among them), the version has knocking (v7+) and the auth rules allow the knock against the
 * current state (403 `M_FORBIDDEN`: a join rule other than `knock`/`knock_restricted`, a banned or
 * already joined or invited user). The user must belong to the requesting server, whose server
 * ACL must let it in (src/federation/inbound/membership.ts).
 *
 * send_knock takes the signed knock (a knock of a user of the origin, for this room, with the
 * path's event id); the room actor ingests it live (signatures, hashes, auth rules), and the room's
 * local members see it in /sync. The answer is `{ knock_room_state }`: the room's stripped state,
 * so the knocking user can recognise the room in their list.
 */
import type { Front } from '../../http/server';
import { strippedRoomState } from '../../rooms/remote-join';
import { federationRoute } from './auth';
import type { FederationContext } from './context';
import { takeSentMembership } from './leave';
import { makeMembership } from './make-join';

export function registerKnockRoutes(front: Front, ctx: FederationContext): void {
  federationRoute(front, ctx, 'GET', '/_matrix/federation/v1/make_knock/:roomId/:userId', async (req, caller) => ({ body: await makeMembership(ctx, req, caller, 'knock') }));
  federationRoute(front, ctx, 'PUT', '/_matrix/federation/v1/send_knock/:roomId/:eventId', async (req, caller) => {
    const room = await takeSentMembership(ctx, req, caller, 'knock');
    return { body: { knock_room_state: await strippedRoomState(ctx.api.rooms, room.roomId) } };
  });
}
