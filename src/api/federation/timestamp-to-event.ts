// GET /_matrix/federation/v1/timestamp_to_event/{roomId}?ts={ts}&dir={f|b}
/**
 * The event closest to a time in one direction (forwards: the first at or after `ts`; backwards:
 * the last at or before), `{ event_id, origin_server_ts }`, among the events the asking server may
 * see; 404 `M_NOT_FOUND` when there is none. For servers with a user in the room, or any server
 * when its history is world_readable.
 */
import { errors } from '../../http/errors';
import type { Front } from '../../http/server';
import { shardOf } from '../../store/shards';
import { roomData } from '../../store/keys';
import { requireServerAccess } from '../../federation/inbound/room-access';
import { visibleToServer } from '../../federation/inbound/server-reads';
import { federationRoute } from './auth';
import type { FederationContext } from './context';

export function registerTimestampToEventRoute(front: Front, ctx: FederationContext): void {
  federationRoute(front, ctx, 'GET', '/_matrix/federation/v1/timestamp_to_event/:roomId', async (req, caller) => {
    const roomId = req.params.roomId ?? '';
    const tsRaw = req.query.ts;
    if (tsRaw === undefined) throw errors.missingParam('ts is required');
    if (!/^\d{1,16}$/.test(tsRaw) || !Number.isSafeInteger(Number(tsRaw))) throw errors.invalidParam('ts must be a timestamp in milliseconds');
    const dir = req.query.dir;
    if (dir === undefined) throw errors.missingParam('dir is required');
    if (dir !== 'f' && dir !== 'b') throw errors.invalidParam('dir must be "f" or "b"');
    const ts = Number(tsRaw);
    const room = await requireServerAccess(ctx.api.rooms, roomId, caller.origin, { worldReadable: true });
    const key = ctx.api.keys.shard('room', shardOf(roomId, ctx.api.shardCounts.room)).data(roomData.byTimestamp(roomId));
    // Pages of 100 candidates, at most 10 pages: a server that may see nothing near `ts` gets a 404, not a scan of the room.
    for (let offset = 0, page = 0; page < 10; page++) {
      const ids = (dir === 'f' ? await ctx.api.redis.zrangebyscore(key, ts, '+inf', 'LIMIT', offset, 100) : await ctx.api.redis.zrevrangebyscore(key, ts, '-inf', 'LIMIT', offset, 100)) as string[];
      if (ids.length === 0) break;
      const events = (await ctx.api.rooms.events(roomId, ids)).filter((e) => !e.rejected && !e.outlier && !e.softFailed);
      // Ids only: the events the server may see, not their PDUs (nothing to sign).
      const visible = new Set((await visibleToServer(ctx.api, roomId, room.version, caller.origin, events, 'omit')).map((e) => e.eventId));
      const first = events.find((e) => visible.has(e.eventId));
      if (first) return { body: { event_id: first.eventId, origin_server_ts: first.event.origin_server_ts as number } };
      offset += ids.length;
      if (ids.length < 100) break;
    }
    throw errors.notFound(`No event found ${dir === 'f' ? 'at or after' : 'at or before'} ${ts}`);
  });
}
