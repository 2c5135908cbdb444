// GET /_matrix/federation/v1/backfill/{roomId}?v={eventId}&limit={n}
/**
 * History before some events: up to `limit` events walking back from the `v` events (included)
 * through `prev_events`, deepest first, as `{ origin, origin_server_ts, pdus }`. For servers with
 * a user in the room, or any server when its history is world_readable; events the server may not
 * see are sent redacted (the spec's "history visibility for servers"; it needs them to keep the DAG
 * whole). Rejected events and outliers end the walk.
 */
import { errors } from '../../http/errors';
import type { Front } from '../../http/server';
import { requireServerAccess } from '../../federation/inbound/room-access';
import { eventsForServer, refIds } from '../../federation/inbound/server-reads';
import type { RoomEvent } from '../../store/room-reader';
import { federationRoute } from './auth';
import type { FederationContext } from './context';

export const MAX_BACKFILL = 100;

export function registerBackfillRoute(front: Front, ctx: FederationContext): void {
  federationRoute(front, ctx, 'GET', '/_matrix/federation/v1/backfill/:roomId', async (req, caller) => {
    const roomId = req.params.roomId ?? '';
    const from = req.queryAll.v ?? [];
    if (from.length === 0) throw errors.missingParam('v is required');
    if (from.length > 20) throw errors.invalidParam('At most 20 events in v');
    const limitRaw = req.query.limit;
    if (limitRaw === undefined) throw errors.missingParam('limit is required');
    if (!/^\d{1,6}$/.test(limitRaw)) throw errors.invalidParam('limit must be a non-negative integer');
    const limit = Math.min(Number(limitRaw), MAX_BACKFILL);
    const room = await requireServerAccess(ctx.api.rooms, roomId, caller.origin, { worldReadable: true });
    const events = await walkBack(ctx, roomId, from, limit, new Set());
    const pdus = await eventsForServer(ctx.api, roomId, room.version, caller.origin, events, 'redact');
    return { body: { origin: ctx.config.serverName, origin_server_ts: Date.now(), pdus } };
  });
}

/**
 * Up to `limit` events of the room from `start` back through prev_events, deepest first (a
 * breadth-first walk ordered by depth, as Synapse's backfill), skipping `stopAt` and what is
 * below `minDepth`. `includeStart` false leaves the start events out (get_missing_events).
 */
export async function walkBack(ctx: FederationContext, roomId: string, start: string[], limit: number, stopAt: Set<string>, opts: { includeStart?: boolean; minDepth?: number } = {}): Promise<RoomEvent[]> {
  const includeStart = opts.includeStart ?? true;
  const minDepth = opts.minDepth ?? 0;
  const out: RoomEvent[] = [];
  const seen = new Set<string>(stopAt);
  const queue: RoomEvent[] = [];
  const enqueue = async (ids: string[]) => {
    const fresh = [...new Set(ids)].filter((id) => !seen.has(id));
    fresh.forEach((id) => seen.add(id));
    const loaded = await ctx.api.rooms.events(roomId, fresh);
    queue.push(...loaded.filter((e) => !e.rejected && !e.outlier && e.depth >= minDepth && (e.event.room_id === roomId || e.event.type === 'm.room.create')));
  };
  if (includeStart) await enqueue(start);
  else {
    start.forEach((id) => seen.add(id));
    const starts = await ctx.api.rooms.events(roomId, start);
    await enqueue(starts.flatMap((e) => refIds(e.event.prev_events)));
  }
  while (queue.length && out.length < limit) {
    queue.sort((a, b) => b.depth - a.depth);
    const e = queue.shift()!;
    out.push(e);
    await enqueue(refIds(e.event.prev_events));
  }
  return out;
}
