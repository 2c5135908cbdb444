// GET /_matrix/federation/v1/make_leave/{roomId}/{userId}
// PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId}
// PUT /_matrix/federation/v1/send_leave/{roomId}/{eventId}
/**
 * A remote user leaves one of our rooms through us (server-server API, "Leaving Rooms"): most
 * often rejecting an invite this server holds for them, or leaving when their server has no other
 * way in. make_leave answers `{ room_version, event }`, an unsigned leave on the room's current
 * extremities, when the auth rules allow it against the current state (403 otherwise); send_leave
 * takes the signed event (a leave of a user of the origin, for this room, with the path's event
 * id), ingests it live, and answers `{}` (v1: `[200, {}]`).
 */
import { MatrixError } from '../../http/errors';
import type { Request } from '../../http/server';
import type { Front } from '../../http/server';
import { ingestMembershipEvent, requireMembershipRoom } from '../../federation/inbound/membership';
import type { JsonObject } from '../../protocol/json';
import { checkSentMembership, membershipTemplate } from '../../rooms/remote-join';
import type { RoomForServer } from '../../federation/inbound/room-access';
import { federationRoute, type FederationCaller } from './auth';
import type { FederationContext } from './context';

export function registerLeaveRoutes(front: Front, ctx: FederationContext): void {
  federationRoute(front, ctx, 'GET', '/_matrix/federation/v1/make_leave/:roomId/:userId', async (req, caller) => {
    const roomId = req.params.roomId ?? '';
    const userId = req.params.userId ?? '';
    const room = await requireMembershipRoom(ctx.api.rooms, roomId, userId, caller.origin);
    const made = await membershipTemplate(ctx.api.rooms, roomId, room.version, userId, { membership: 'leave' });
    if (!made) throw new MatrixError(404, 'M_NOT_FOUND', 'Unknown room');
    if (!made.auth.allowed) throw new MatrixError(403, 'M_FORBIDDEN', `You are not allowed to leave this room: ${made.auth.reason}`);
    return { body: { room_version: room.version.id, event: made.template } };
  });

  const sendLeave = (req: Request, caller: FederationCaller) => takeSentMembership(ctx, req, caller, 'leave');
  federationRoute(front, ctx, 'PUT', '/_matrix/federation/v2/send_leave/:roomId/:eventId', async (req, caller) => {
    await sendLeave(req, caller);
    return { body: {} };
  });
  federationRoute(front, ctx, 'PUT', '/_matrix/federation/v1/send_leave/:roomId/:eventId', async (req, caller) => {
    await sendLeave(req, caller);
    return { body: [200, {}] };
  });
}

/**
 * send_leave and send_knock: the signed event must be a `membership` event of a user of the
 * origin, for this room, with the path's event id; the room actor ingests it live.
 */
export async function takeSentMembership(ctx: FederationContext, req: Request, caller: FederationCaller, membership: 'leave' | 'knock'): Promise<RoomForServer> {
  const roomId = req.params.roomId ?? '';
  const eventId = req.params.eventId ?? '';
  const room = await requireMembershipRoom(ctx.api.rooms, roomId, null, caller.origin);
  const check = checkSentMembership(caller.body, room.version, roomId, eventId, caller.origin, membership);
  if (!check.ok) throw new MatrixError(400, 'M_BAD_JSON', check.error);
  await ingestMembershipEvent(ctx.api, ctx.keyStore, room, caller.body as JsonObject, ctx.api.signingKey, ctx.config.serverName, Date.now() + 10_000);
  return room;
}
