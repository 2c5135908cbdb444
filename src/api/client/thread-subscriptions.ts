// PUT/GET/DELETE /_matrix/client/unstable/io.element.msc4306/rooms/{roomId}/thread/{threadRootId}/subscription
// GET /_matrix/client/unstable/io.element.msc4308/thread_subscriptions?dir=b&from=&to=&limit=
/**
 * Thread subscriptions (MSC4306 and MSC4308's companion endpoint), as Synapse 1.163.2 serves them
 * (synapse/rest/client/thread_subscriptions.py; the rules are in actors/thread-subscriptions.ts):
 * - the thread root must be an event of the room the user may see (404 otherwise, as for unknown
 *   ones); an `automatic` cause event must be visible too and be in the thread (400
 *   `IO.ELEMENT.MSC4306.M_NOT_IN_THREAD`);
 * - GET answers `{automatic}` for a subscription, 404 when not subscribed;
 * - the list goes backwards from the newest change (`dir=b` is required), `limit` 1–512 (default
 *   100), tokens `ts<stream id>`: `from` the inclusive upper bound, `to` the exclusive lower one;
 *   `end` when there may be more.
 *
 * The list's reading (`threadSubscriptionsSince`) is shared with the sliding-sync extension
 * (MSC4308): src/sync/thread-subscriptions.ts.
 */
import { THREAD_SUBSCRIPTIONS_KIND, threadMember, type ThreadSubscriptionRecord, type ThreadSubscriptionsMessage } from '../../../actors/thread-subscriptions';
import { MatrixError, errors } from '../../http/errors';
import type { Front } from '../../http/server';
import { isJsonObject, type JsonObject } from '../../protocol/json';
import { eventRoomId } from '../../rooms/client-format';
import { ActorReplyError, ActorTimeoutError } from '../../runtime/actor-client';
import { servableToClients } from '../../store/room-reader';
import { threadSubscriptionData } from '../../store/keys';
import { userKey } from '../../store/shard-keys';
import type { ApiContext } from '../context';
import { threadSubscriptionsSince } from '../../sync/thread-subscriptions';
import { requireUser } from './auth';
import { clientRoute, jsonBody } from './accounts-common';
import { requireRoomId } from '../../http/params';

const MAX_LIMIT = 512;

async function ask(ctx: ApiContext, userId: string, body: ThreadSubscriptionsMessage): Promise<void> {
  try {
    await ctx.actors.ask('user', THREAD_SUBSCRIPTIONS_KIND, userId, body);
  } catch (e) {
    if (e instanceof ActorReplyError) throw new MatrixError(e.status, e.errcode, e.message);
    if (e instanceof ActorTimeoutError) throw new MatrixError(504, 'M_UNKNOWN', 'The server did not answer in time; retry the request');
    throw e;
  }
}

/** An event of the room the user may see: its stream position and content; 404 otherwise. */
async function visibleEvent(ctx: ApiContext, roomId: string, userId: string, eventId: string, what: string): Promise<{ pos: number; content: JsonObject }> {
  const e = await ctx.rooms.event(roomId, eventId);
  if (!e || !servableToClients(e) || eventRoomId(e) !== roomId || !(await ctx.rooms.canSee(roomId, userId, eventId))) throw errors.notFound(`No such ${what}`);
  return { pos: e.pos, content: isJsonObject(e.event.content) ? e.event.content : {} };
}

function eventIdParam(s: string | undefined): string {
  if (!s || !s.startsWith('$')) throw errors.invalidParam('Invalid event ID');
  return s;
}

export function registerThreadSubscriptionRoutes(front: Front, ctx: ApiContext): void {
  const PATH = '/rooms/:roomId/thread/:threadRootId/subscription';
  const PREFIX = ['unstable/io.element.msc4306'];

  clientRoute(front, 'GET', PATH, async (req) => {
    const roomId = requireRoomId(req.params.roomId);
    const root = eventIdParam(req.params.threadRootId);
    const user = await requireUser(ctx, req);
    await visibleEvent(ctx, roomId, user.userId, root, 'thread root');
    const json = await ctx.redis.hget(userKey(ctx, user.userId, threadSubscriptionData.records(user.userId)), threadMember(roomId, root));
    const rec = json === null ? null : (JSON.parse(json) as ThreadSubscriptionRecord);
    if (!rec?.subscribed) throw errors.notFound('Not subscribed.');
    return { body: { automatic: rec.automatic } };
  }, PREFIX);

  clientRoute(front, 'PUT', PATH, async (req) => {
    const roomId = requireRoomId(req.params.roomId);
    const root = eventIdParam(req.params.threadRootId);
    const body = req.body.length ? jsonBody(req) : {};
    if (body.automatic !== undefined && body.automatic !== null && (typeof body.automatic !== 'string' || !body.automatic.startsWith('$'))) throw errors.badJson('automatic must be an event id');
    const user = await requireUser(ctx, req);
    await visibleEvent(ctx, roomId, user.userId, root, 'thread root');
    let automaticPos: number | undefined;
    if (typeof body.automatic === 'string') {
      const cause = await visibleEvent(ctx, roomId, user.userId, body.automatic, 'automatic subscription event');
      const rel = cause.content['m.relates_to'];
      if (!isJsonObject(rel) || rel.rel_type !== 'm.thread' || rel.event_id !== root) throw new MatrixError(400, 'IO.ELEMENT.MSC4306.M_NOT_IN_THREAD', 'Automatic subscription must use an event in the thread');
      automaticPos = cause.pos;
    }
    await ask(ctx, user.userId, { op: 'subscribe', roomId, root, ...(automaticPos !== undefined ? { automaticPos } : {}) });
    return { body: {} };
  }, PREFIX);

  clientRoute(front, 'DELETE', PATH, async (req) => {
    const roomId = requireRoomId(req.params.roomId);
    const root = eventIdParam(req.params.threadRootId);
    const user = await requireUser(ctx, req);
    await visibleEvent(ctx, roomId, user.userId, root, 'thread root');
    const meta = await ctx.rooms.meta(roomId);
    await ask(ctx, user.userId, { op: 'unsubscribe', roomId, root, roomPos: meta?.seq ?? 0 });
    return { body: {} };
  }, PREFIX);

  clientRoute(front, 'GET', '/thread_subscriptions', async (req) => {
    const user = await requireUser(ctx, req);
    const token = (name: string): number | null => {
      const raw = req.query[name];
      if (raw === undefined) return null;
      const m = /^ts([0-9]{1,15})$/.exec(raw);
      if (!m) throw errors.invalidParam(`\`${name}\` is not a valid token`);
      return Number(m[1]);
    };
    if (req.query.dir === undefined) throw new MatrixError(400, 'M_MISSING_PARAM', 'Missing string query parameter "dir"');
    if (req.query.dir !== 'b') throw errors.invalidParam('Query parameter "dir" must be one of ["b"]');
    let limit = 100;
    if (req.query.limit !== undefined) {
      if (!/^[0-9]{1,9}$/.test(req.query.limit)) throw errors.invalidParam('limit must be a non-negative integer');
      limit = Math.min(Number(req.query.limit), MAX_LIMIT);
    }
    if (limit <= 0) throw errors.invalidParam('limit must be greater than 0');
    const from = token('from');
    const to = token('to');
    return { body: await threadSubscriptionsSince(ctx, user.userId, to ?? 0, from, limit) };
  }, ['unstable/io.element.msc4308']);
}
