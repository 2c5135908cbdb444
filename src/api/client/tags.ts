/**
 * Room tags (tags.yaml): `GET /user/{userId}/rooms/{roomId}/tags` and
 * `PUT/DELETE /user/{userId}/rooms/{roomId}/tags/{tag}`, the requester's own only. Tags are the
 * `m.tag` room account data (as in Synapse, so /sync and the account data endpoints see them);
 * the user actor adds and removes single tags, so two clients tagging at once lose nothing.
 */
import { errors } from '../../http/errors';
import type { Front } from '../../http/server';
import { isJsonObject, utf8Length, type JsonValue } from '../../protocol/json';
import { userData } from '../../store/keys';
import { requireUser } from './auth';
import { askUser, clientRoute, requireSelf } from './accounts-common';
import { userKey } from '../../store/shard-keys';
import type { ApiContext } from '../context';
import { requireRoomId } from '../../http/params';

export function registerTagRoutes(front: Front, ctx: ApiContext): void {
  clientRoute(front, 'GET', '/user/:userId/rooms/:roomId/tags', async (req) => {
    const me = await requireUser(ctx, req);
    requireSelf(me, req.params.userId, 'room tags');
    const roomId = requireRoomId(req.params.roomId);
    const json = await ctx.redis.hget(userKey(ctx, me.userId, userData.roomAccountData(me.userId, roomId)), 'm.tag');
    const content = json === null ? null : (JSON.parse(json) as { tags?: unknown });
    const tags = content && typeof content.tags === 'object' && content.tags !== null && !Array.isArray(content.tags) ? content.tags : {};
    return { body: { tags } };
  });

  clientRoute(front, 'PUT', '/user/:userId/rooms/:roomId/tags/:tag', async (req) => {
    const me = await requireUser(ctx, req);
    requireSelf(me, req.params.userId, 'room tags');
    const roomId = requireRoomId(req.params.roomId);
    const tag = checkTag(req.params.tag);
    // Tag metadata carries `order`, a number between 0 and 1: floats are allowed here.
    const meta = req.json({ allowFloats: true });
    if (!isJsonObject(meta)) throw errors.badJson('The tag metadata must be a JSON object');
    if (meta.order !== undefined && typeof meta.order !== 'number') throw errors.badJson('order must be a number');
    const json = JSON.stringify(meta as JsonValue);
    if (json.length > 4096) throw errors.tooLarge('The tag metadata is too large');
    await askUser(ctx, me.userId, { op: 'set_room_tag', roomId, tag, json });
    return { body: {} };
  });

  clientRoute(front, 'DELETE', '/user/:userId/rooms/:roomId/tags/:tag', async (req) => {
    const me = await requireUser(ctx, req);
    requireSelf(me, req.params.userId, 'room tags');
    const roomId = requireRoomId(req.params.roomId);
    await askUser(ctx, me.userId, { op: 'delete_room_tag', roomId, tag: checkTag(req.params.tag) });
    return { body: {} };
  });
}

function checkTag(tag: string | undefined): string {
  if (!tag) throw errors.invalidParam('The tag must not be empty');
  if (utf8Length(tag) > 255) throw errors.invalidParam('The tag must be at most 255 bytes');
  return tag;
}
