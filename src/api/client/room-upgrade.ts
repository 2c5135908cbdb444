/**
 * `POST /rooms/{roomId}/upgrade` (spec: "Room Upgrades"): the request checked here; the upgrade
 * itself — claim, new room, copied state, moved aliases, tombstone — is src/rooms/upgrade.ts.
 */
import type { Front } from '../../http/server';
import { MatrixError, errors } from '../../http/errors';
import { getRoomVersion } from '../../protocol/room-versions';
import { MembershipIndex } from '../../readers/membership-index';
import { requireUser } from './auth';
import type { ApiContext } from '../context';
import { AliasStore } from '../../rooms/aliases';
import { upgradeRoom } from '../../rooms/upgrade';
import { bodyObject, clientRoute } from './room-common';
import { requireRoomId, requireUserIdParam } from '../../http/params';

export function registerRoomUpgradeRoutes(front: Front, ctx: ApiContext): void {
  const index = new MembershipIndex(ctx.redis, ctx.keys, ctx.shardCounts.user);
  const aliases = new AliasStore(ctx);

  clientRoute(front, 'POST', '/rooms/:roomId/upgrade', async (req) => {
    const user = await requireUser(ctx, req);
    const oldRoomId = requireRoomId(req.params.roomId);
    const body = bodyObject(req);
    if (body.new_version === undefined) throw errors.missingParam('new_version is required');
    if (typeof body.new_version !== 'string') throw errors.badJson('new_version must be a string');
    const version = getRoomVersion(body.new_version);
    if (!version) throw new MatrixError(400, 'M_UNSUPPORTED_ROOM_VERSION', `Room version ${JSON.stringify(body.new_version)} is not supported`);
    const additionalCreators: string[] = [];
    if (body.additional_creators !== undefined) {
      if (!Array.isArray(body.additional_creators)) throw errors.badJson('additional_creators must be a list of user ids');
      for (const u of body.additional_creators) additionalCreators.push(requireUserIdParam(u, 'additional_creators'));
    }

    const replacement = await upgradeRoom(ctx, aliases, index, user.userId, oldRoomId, version, additionalCreators);
    return { body: { replacement_room: replacement } };
  });
}
