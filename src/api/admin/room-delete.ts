/**
 * Deleting rooms (Synapse's admin API):
 * - `DELETE /_synapse/admin/v1/rooms/{roomId}`: the deletion inline, answering its result;
 * - `DELETE /_synapse/admin/v2/rooms/{roomId}`: the same as a background job, answering
 *   `{delete_id}` at once; `GET /v2/rooms/{roomId}/delete_status` and
 *   `/v2/rooms/delete_status/{delete_id}` report it.
 *
 * The workflow is src/rooms/room-deletion.ts. The v2 jobs run in the worker processes
 * (src/rooms/room-deletion-jobs.ts, a bullmq queue there): a front only writes the deletion's
 * record and reads it back, so it never loads bullmq for them.
 */
import { errors } from '../../http/errors';
import type { Front } from '../../http/server';
import type { JsonObject } from '../../protocol/json';
import { MembershipIndex } from '../../readers/membership-index';
import { AliasStore } from '../../rooms/aliases';
import { deleteRoom, parseRoomDeletionBody, type RoomDeletionDeps } from '../../rooms/room-deletion';
import { roomDeletionIds, roomDeletionStatus, scheduleRoomDeletion } from '../../rooms/room-deletion-jobs';
import { jsonBody } from '../client/accounts-common';
import type { ApiContext } from '../context';
import { requireAdmin } from './common';
import { legalRoomId } from './rooms';

export function registerAdminRoomDeleteRoutes(front: Front, ctx: ApiContext): void {
  const deps: RoomDeletionDeps = { aliases: new AliasStore(ctx), index: new MembershipIndex(ctx.redis, ctx.keys, ctx.shardCounts.user) };

  front.route('DELETE', '/_synapse/admin/v1/rooms/:roomId', async (req) => {
    const me = await requireAdmin(ctx, req);
    const params = parseRoomDeletionBody(jsonBody(req), me.userId);
    const roomId = legalRoomId(req.params.roomId);
    // Kicking a big room's users and purging it takes a while: the request may wait for it.
    req.allowWait(10 * 60_000);
    return { body: (await deleteRoom(ctx, deps, roomId, params)) as unknown as JsonObject };
  });

  front.route('DELETE', '/_synapse/admin/v2/rooms/:roomId', async (req) => {
    const me = await requireAdmin(ctx, req);
    const params = parseRoomDeletionBody(jsonBody(req), me.userId);
    const roomId = legalRoomId(req.params.roomId);
    const deleteId = await scheduleRoomDeletion(ctx.redis, ctx.keys, roomId, params);
    return { body: { delete_id: deleteId } };
  });

  front.route('GET', '/_synapse/admin/v2/rooms/:roomId/delete_status', async (req) => {
    await requireAdmin(ctx, req);
    const roomId = legalRoomId(req.params.roomId);
    const results: JsonObject[] = [];
    for (const id of await roomDeletionIds(ctx.redis, ctx.keys, roomId)) {
      const status = await roomDeletionStatus(ctx.redis, ctx.keys, id);
      if (status) results.push(status);
    }
    if (!results.length) throw errors.notFound(`No delete task for room_id '${roomId}' found`);
    return { body: { results } };
  });

  front.route('GET', '/_synapse/admin/v2/rooms/delete_status/:deleteId', async (req) => {
    await requireAdmin(ctx, req);
    const deleteId = req.params.deleteId ?? '';
    const status = /^[A-Za-z0-9]{1,64}$/.test(deleteId) ? await roomDeletionStatus(ctx.redis, ctx.keys, deleteId) : null;
    if (!status) throw errors.notFound(`delete id '${deleteId}' not found`);
    return { body: status };
  });
}
