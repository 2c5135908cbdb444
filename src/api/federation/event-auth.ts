// GET /_matrix/federation/v1/event_auth/{roomId}/{eventId}
/**
 * The auth chain of an event (every event reachable through `auth_events`), `{ auth_chain }`,
 * for servers with a user in the room (403 `M_FORBIDDEN` otherwise, and for servers the room's
 * ACL denies); 404 for an event this room does not hold.
 */
import { errors } from '../../http/errors';
import type { Front } from '../../http/server';
import { requireServerAccess } from '../../federation/inbound/room-access';
import { ownEventSigner } from '../../rooms/own-signatures';
import { federationRoute } from './auth';
import type { FederationContext } from './context';

export function registerEventAuthRoute(front: Front, ctx: FederationContext): void {
  federationRoute(front, ctx, 'GET', '/_matrix/federation/v1/event_auth/:roomId/:eventId', async (req, caller) => {
    const roomId = req.params.roomId ?? '';
    const eventId = req.params.eventId ?? '';
    const room = await requireServerAccess(ctx.api.rooms, roomId, caller.origin);
    const event = await ctx.api.rooms.event(roomId, eventId);
    if (!event || event.rejected) throw errors.notFound('Unknown event');
    const chain = await ctx.api.rooms.authChain(roomId, [eventId]);
    return { body: { auth_chain: ownEventSigner(ctx.config.serverName, ctx.api.signingKey).pdus(chain.filter((e) => !e.rejected), room.version) } };
  });
}
