// GET /_matrix/federation/v1/event/{eventId}
/**
 * One event, for a server in its room (or any server, when the room's history is
 * world_readable), as `{ origin, origin_server_ts, pdus: [pdu] }`. An event the server may not
 * see under the room's history visibility is sent redacted (it needs it to keep the DAG whole,
 * as Synapse does); a rejected or unknown event is 404 `M_NOT_FOUND`.
 */
import { errors } from '../../http/errors';
import type { Front } from '../../http/server';
import { requireServerAccess } from '../../federation/inbound/room-access';
import { eventsForServer, roomOfEvent } from '../../federation/inbound/server-reads';
import { federationRoute } from './auth';
import type { FederationContext } from './context';

export function registerEventRoute(front: Front, ctx: FederationContext): void {
  federationRoute(front, ctx, 'GET', '/_matrix/federation/v1/event/:eventId', async (req, caller) => {
    const eventId = req.params.eventId ?? '';
    if (!eventId.startsWith('$') || eventId.length > 255) throw errors.invalidParam('Not an event id');
    const roomId = await roomOfEvent(ctx.api, eventId);
    if (!roomId) throw errors.notFound('Unknown event');
    const room = await requireServerAccess(ctx.api.rooms, roomId, caller.origin, { worldReadable: true });
    const event = await ctx.api.rooms.event(roomId, eventId);
    if (!event || event.rejected) throw errors.notFound('Unknown event');
    const [pdu] = await eventsForServer(ctx.api, roomId, room.version, caller.origin, [event], 'redact');
    if (!pdu) throw errors.notFound('Unknown event');
    return { body: { origin: ctx.config.serverName, origin_server_ts: Date.now(), pdus: [pdu] } };
  });
}
