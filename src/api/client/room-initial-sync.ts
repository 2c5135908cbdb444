/**
 * `GET /rooms/{roomId}/initialSync` (room_initial_sync.yaml; matrix-js-sdk's `roomInitialSync`,
 * used to peek into world-readable rooms): one room's state, its latest messages with tokens
 * `/messages` continues from, the requester's membership, the room's directory visibility and
 * the requester's room account data. Who may see what is `/messages`' rule: members see the
 * current state, former members the room as they left it, anyone a world-readable room.
 * Presence is left out (optional; the presence of a room's members is /sync's business).
 */
import type { Front } from '../../http/server';
import { errors } from '../../http/errors';
import { isJsonObject, type JsonObject, type JsonValue } from '../../protocol/json';
import { servableAsState } from '../../store/room-reader';
import { userData } from '../../store/keys';
import { MembershipIndex } from '../../readers/membership-index';
import { requireUser } from './auth';
import { userKey } from '../../store/shard-keys';
import type { ApiContext } from '../context';
import { encodeToken, paginate } from '../../rooms/pagination';
import { clientRoute } from './room-common';
import { formatEvents } from '../../rooms/client-format';
import { requireRoomId } from '../../http/params';
import { roomAccess, visibleStateIds } from '../../rooms/visibility';

const DEFAULT_LIMIT = 10;
const MAX_LIMIT = 100;

export function registerRoomInitialSyncRoutes(front: Front, ctx: ApiContext): void {
  const index = new MembershipIndex(ctx.redis, ctx.keys, ctx.shardCounts.user);
  clientRoute(front, 'GET', '/rooms/:roomId/initialSync', async (req) => {
    const user = await requireUser(ctx, req);
    const roomId = requireRoomId(req.params.roomId);
    let limit = DEFAULT_LIMIT;
    if (req.query.limit !== undefined && req.query.limit !== '') {
      if (!/^\d{1,9}$/.test(req.query.limit)) throw errors.invalidParam('limit must be a non-negative integer');
      limit = Math.min(Number(req.query.limit), MAX_LIMIT);
    }
    const access = await roomAccess(ctx, index, user.userId, roomId);
    const meta = await ctx.rooms.meta(roomId);
    // Former members page back from their departure; everyone else from the latest event.
    let end = meta?.seq ?? 0;
    if (access.kind === 'departed') {
      const [own] = await ctx.rooms.currentState(roomId, { type: 'm.room.member', stateKey: user.userId });
      if (own) end = own.pos;
    }
    const page = await paginate(ctx, roomId, user.userId, 'b', end, null, limit, {});
    const chronological = [...page.events].reverse();
    const stateIds = await visibleStateIds(ctx, roomId, access);
    const state = (await ctx.rooms.events(roomId, [...stateIds.values()])).filter(servableAsState);
    const body: JsonObject = {
      room_id: roomId,
      messages: {
        chunk: await formatEvents(ctx, roomId, chronological, user),
        start: encodeToken(page.end ?? 0),
        end: encodeToken(end),
      },
      state: await formatEvents(ctx, roomId, state, user, { membership: false }),
      visibility: (await ctx.redis.sismember(ctx.keys.publicRooms(), roomId)) ? 'public' : 'private',
    };
    const membership = await ctx.rooms.membership(roomId, user.userId);
    if (membership) body.membership = membership;
    const data = await ctx.redis.hgetall(userKey(ctx, user.userId, userData.roomAccountData(user.userId, roomId)));
    const accountData: JsonObject[] = [];
    for (const [type, json] of Object.entries(data)) {
      try {
        const content = JSON.parse(json) as JsonValue;
        if (isJsonObject(content)) accountData.push({ type, content });
      } catch {
        /* stored by the user actor as JSON text; anything else is skipped */
      }
    }
    body.account_data = accountData;
    return { body };
  });
}
