// GET /_matrix/federation/v1/state/{roomId}?event_id={eventId}
// GET /_matrix/federation/v1/state_ids/{roomId}?event_id={eventId}
/**
 * The room's state before an event (what a server needs to check an event built on it), with the
 * auth chain of that state: `{ pdus, auth_chain }` as PDUs, or `{ pdu_ids, auth_chain_ids }`. For
 * servers with a user in the room only (403 `M_FORBIDDEN` otherwise, and for servers the room's
 * ACL denies). State is not filtered by history visibility (a member server needs all of it, as
 * in Synapse). An event we hold without its place in the room (an outlier) has no known state:
 * 404 `M_NOT_FOUND`, as for an unknown one.
 */
import { errors } from '../../http/errors';
import type { Front, Request } from '../../http/server';
import { requireServerAccess } from '../../federation/inbound/room-access';
import { federationRoute } from './auth';
import { ownEventSigner } from '../../rooms/own-signatures';
import { partialStateOf } from '../../rooms/partial-state';
import type { FederationContext } from './context';

export function registerStateRoutes(front: Front, ctx: FederationContext): void {
  const stateAt = async (req: Request, origin: string) => {
    const roomId = req.params.roomId ?? '';
    const eventId = req.query.event_id;
    if (eventId === undefined) throw errors.missingParam('event_id is required');
    const room = await requireServerAccess(ctx.api.rooms, roomId, origin);
    // Joined with partial state (faster joins): the state we have lacks members; not ours to give.
    if (await partialStateOf(ctx.api, roomId)) throw errors.notFound('This server does not have the full state of the room yet');
    const event = await ctx.api.rooms.event(roomId, eventId);
    if (!event || event.rejected || event.outlier || event.event.room_id !== roomId && event.event.type !== 'm.room.create') throw errors.notFound('Unknown event, or no state known at it');
    const state = await ctx.api.rooms.snapshot(roomId, event.stateBefore);
    const stateIds = [...state.values()];
    const chain = await ctx.api.rooms.authChain(roomId, stateIds);
    return { roomId, version: room.version, stateIds, chain };
  };

  federationRoute(front, ctx, 'GET', '/_matrix/federation/v1/state/:roomId', async (req, caller) => {
    const { roomId, version, stateIds, chain } = await stateAt(req, caller.origin);
    const signer = ownEventSigner(ctx.config.serverName, ctx.api.signingKey);
    const pdus = signer.pdus((await ctx.api.rooms.events(roomId, stateIds)).filter((e) => !e.rejected), version);
    return { body: { pdus, auth_chain: signer.pdus(chain.filter((e) => !e.rejected), version) } };
  });

  federationRoute(front, ctx, 'GET', '/_matrix/federation/v1/state_ids/:roomId', async (req, caller) => {
    const { stateIds, chain } = await stateAt(req, caller.origin);
    return { body: { pdu_ids: stateIds, auth_chain_ids: chain.filter((e) => !e.rejected).map((e) => e.eventId) } };
  });
}
