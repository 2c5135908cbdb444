/**
 * `GET /v1/mutual_rooms?user_id=` (mutual_rooms.yaml): the rooms the requester and another user
 * are both joined to, from the requester's joined rooms and each room's member list (so remote
 * users' memberships count as this server knows them). Answered in one batch: there is never a
 * `next_batch`, so any `from` token is one this server did not give (400 M_INVALID_PARAM).
 */
import { errors } from '../../http/errors';
import type { Front } from '../../http/server';
import { isValidUserId } from '../../protocol/identifiers';
import { MembershipIndex } from '../../readers/membership-index';
import { requireUser } from './auth';
import type { ApiContext } from '../context';

export function registerMutualRoomsRoutes(front: Front, ctx: ApiContext): void {
  const index = new MembershipIndex(ctx.redis, ctx.keys, ctx.shardCounts.user);
  front.route('GET', '/_matrix/client/v1/mutual_rooms', async (req) => {
    const me = await requireUser(ctx, req);
    const other = req.query.user_id;
    if (other === undefined || other === '') throw errors.missingParam('user_id is required');
    if (!isValidUserId(other)) throw errors.invalidParam('user_id must be a user id');
    if (other === me.userId) throw errors.invalidParam('You cannot request a list of shared rooms with yourself');
    if (req.query.from !== undefined) throw errors.invalidParam('Unknown or expired from token');
    const mine = (await index.rooms(me.userId, 'join')).map((r) => r.roomId);
    const shared: string[] = [];
    for (const roomId of mine) {
      // Both memberships read now from the room (the index may lag a moment behind the room).
      const [a, b] = await Promise.all([ctx.rooms.membership(roomId, me.userId), ctx.rooms.membership(roomId, other)]);
      if (a === 'join' && b === 'join') shared.push(roomId);
    }
    // `count` is required (mutual_rooms.yaml): the total, which here is the whole answer.
    return { body: { joined: shared.sort(), count: shared.length } };
  });
}
