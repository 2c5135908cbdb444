/**
 * Rooms an admin blocked (`/_synapse/admin/v1/rooms/{roomId}/block`, or a room deletion with
 * `block`): local users may not join them nor be invited into them, by local users or over
 * federation (Synapse's rule). The list is
 * the server's, not the room's (a room the server never had can be blocked), kept in one hash.
 */
import { MatrixError } from '../http/errors';
import type { ApiContext } from '../api/context';

/** Block (or unblock) a room: `by` is the admin who did it. */
export async function setRoomBlocked(ctx: ApiContext, roomId: string, by: string | null): Promise<void> {
  if (by === null) await ctx.redis.hdel(ctx.keys.blockedRooms(), roomId);
  else await ctx.redis.hset(ctx.keys.blockedRooms(), roomId, by);
}

/** Who blocked the room, or null when it is not blocked. */
export async function roomBlockedBy(ctx: ApiContext, roomId: string): Promise<string | null> {
  return ctx.redis.hget(ctx.keys.blockedRooms(), roomId);
}

/** Refuse a join or an invite (local or over federation) into a blocked room (403 M_UNKNOWN, Synapse's code and wording). */
export async function assertRoomNotBlocked(ctx: ApiContext, roomId: string): Promise<void> {
  if ((await roomBlockedBy(ctx, roomId)) !== null) throw new MatrixError(403, 'M_UNKNOWN', 'This room has been blocked on this server');
}

