/**
 * Account data (global and per room) and filters: the user's own only.
 *
 * MSC3391 (deleting account data), as Synapse 1.163.2 serves it with the MSC enabled:
 * `DELETE /_matrix/client/unstable/org.matrix.msc3391/user/{userId}/account_data/{type}` and the
 * room variant; a PUT of `{}` is the same deletion; GET answers 404 for deleted data; an
 * incremental /sync reports the deletion as the type with `content: {}` (user actor
 * `delete_account_data`).
 */
import { MatrixError, errors } from '../../http/errors';
import type { Front, Request } from '../../http/server';
import { canonicalJson, isJsonObject, utf8Length } from '../../protocol/json';
import { userData } from '../../store/keys';
import { requireUser } from './auth';
import { askUser, clientRoute, jsonBody, requireSelf } from './accounts-common';
import { userKey } from '../../store/shard-keys';
import type { ApiContext } from '../context';
import { validateFilter } from './filter-validation';
import { pushRulesContent } from '../../sync/push-rules';

const PUSH_RULES_TYPE = 'm.push_rules';

/** Account data types the server maintains itself (other endpoints set them). */
const SERVER_MANAGED = new Set(['m.fully_read', PUSH_RULES_TYPE]);

export function registerAccountDataRoutes(front: Front, ctx: ApiContext): void {
  const put = (room: boolean) => async (req: Request) => {
    const me = await requireUser(ctx, req);
    requireSelf(me, req.params.userId, 'account data');
    const type = req.params.type!;
    const roomId = room ? checkRoomId(req.params.roomId!) : undefined;
    if (SERVER_MANAGED.has(type)) throw new MatrixError(405, 'M_BAD_JSON', `Cannot set ${type} through this API`);
    if (utf8Length(type) > 255) throw errors.invalidParam('The type must be at most 255 bytes');
    const content = jsonBody(req);
    if (isJsonObject(content) && Object.keys(content).length === 0) {
      await askUser(ctx, me.userId, { op: 'delete_account_data', type, ...(roomId ? { roomId } : {}) });
      return { body: {} };
    }
    await askUser(ctx, me.userId, { op: 'set_account_data', type, json: canonicalJson(content), ...(roomId ? { roomId } : {}) });
    return { body: {} };
  };
  const remove = (room: boolean) => async (req: Request) => {
    const me = await requireUser(ctx, req);
    requireSelf(me, req.params.userId, 'account data');
    const type = req.params.type!;
    const roomId = room ? checkRoomId(req.params.roomId!) : undefined;
    if (SERVER_MANAGED.has(type)) throw new MatrixError(405, 'M_BAD_JSON', `Cannot delete ${type} through this API`);
    if (utf8Length(type) > 255) throw errors.invalidParam('The type must be at most 255 bytes');
    await askUser(ctx, me.userId, { op: 'delete_account_data', type, ...(roomId ? { roomId } : {}) });
    return { body: {} };
  };
  const get = (room: boolean) => async (req: Request) => {
    const me = await requireUser(ctx, req);
    requireSelf(me, req.params.userId, 'account data');
    // m.push_rules is the merged push ruleset (as Synapse serves it), kept by the push rules API.
    if (!room && req.params.type === PUSH_RULES_TYPE) return { body: await pushRulesContent(ctx, me.userId) };
    const key = room ? userData.roomAccountData(me.userId, checkRoomId(req.params.roomId!)) : userData.accountData(me.userId);
    const json = await ctx.redis.hget(userKey(ctx, me.userId, key), req.params.type!);
    // `{}` is what a deletion leaves (MSC3391): absent to clients.
    if (json === null || json === '{}') throw errors.notFound('No account data of this type');
    return { body: JSON.parse(json) as unknown };
  };
  clientRoute(front, 'PUT', '/user/:userId/account_data/:type', put(false));
  clientRoute(front, 'GET', '/user/:userId/account_data/:type', get(false));
  clientRoute(front, 'PUT', '/user/:userId/rooms/:roomId/account_data/:type', put(true));
  clientRoute(front, 'GET', '/user/:userId/rooms/:roomId/account_data/:type', get(true));
  clientRoute(front, 'DELETE', '/user/:userId/account_data/:type', remove(false), ['unstable/org.matrix.msc3391']);
  clientRoute(front, 'DELETE', '/user/:userId/rooms/:roomId/account_data/:type', remove(true), ['unstable/org.matrix.msc3391']);

  clientRoute(front, 'POST', '/user/:userId/filter', async (req) => {
    const me = await requireUser(ctx, req);
    requireSelf(me, req.params.userId, 'filters');
    const filter = jsonBody(req);
    const problems = validateFilter(filter);
    if (problems.length) throw errors.badJson(`Invalid filter: ${problems.join('; ')}`);
    const reply = await askUser<{ filter_id: string }>(ctx, me.userId, { op: 'create_filter', json: canonicalJson(filter) });
    return { body: { filter_id: reply.filter_id } };
  });
  clientRoute(front, 'GET', '/user/:userId/filter/:filterId', async (req) => {
    const me = await requireUser(ctx, req);
    requireSelf(me, req.params.userId, 'filters');
    const json = await ctx.redis.hget(userKey(ctx, me.userId, userData.filters(me.userId)), req.params.filterId!);
    if (json === null) throw errors.notFound('Unknown filter');
    return { body: JSON.parse(json) as unknown };
  });
}

function checkRoomId(roomId: string): string {
  if (!roomId.startsWith('!') || utf8Length(roomId) > 255) throw errors.invalidParam('Not a room id');
  return roomId;
}
