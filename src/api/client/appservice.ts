/**
 * The Client-Server API's application-service endpoints:
 *
 * - `POST /_matrix/client/v1/appservice/{appserviceId}/ping` (appservice_ping.yaml): the
 *   appservice asks the server to call its `/_matrix/app/v1/ping`, to check both directions work.
 * - `PUT /_matrix/client/v3/directory/list/appservice/{networkId}/{roomId}`
 *   (appservice_room_directory.yaml): an appservice publishes a room in (or takes it out of) the
 *   directory of one of its networks; `/publicRooms` lists it under that network's instance id.
 * - `GET /_matrix/client/v3/thirdparty/*` (third_party_lookup.yaml): the bridged networks'
 *   protocols, users and locations, asked of the appservices that bridge them
 *   (src/appservice/queries.ts).
 */
import type { Front, Request } from '../../http/server';
import { MatrixError, errors } from '../../http/errors';
import { requireRoomId } from '../../http/params';
import { isValidUserId } from '../../protocol/identifiers';
import type { JsonObject } from '../../protocol/json';
import { PingError } from '../../appservice/queries';
import { requireUser, type Requester } from './auth';
import { bodyObject, clientRoute } from './room-common';
import type { ApiContext } from '../context';

/** The requester's appservice, or 403 (these endpoints are for appservices only). */
function requireAppservice(requester: Requester, what: string) {
  if (!requester.appservice) throw new MatrixError(403, 'M_FORBIDDEN', `Only application services can use ${what}`);
  return requester.appservice;
}

export function registerAppserviceRoutes(front: Front, ctx: ApiContext): void {
  front.route('POST', '/_matrix/client/v1/appservice/:appserviceId/ping', async (req) => {
    const as = requireAppservice(await requireUser(ctx, req), 'the /appservice/ping endpoint');
    if (as.id !== req.params.appserviceId) throw new MatrixError(403, 'M_FORBIDDEN', 'Mismatching application service ID in path');
    if (as.url === null) throw new MatrixError(400, 'M_URL_NOT_SET', 'The application service does not have a URL set');
    const body = req.body.length ? bodyObject(req) : {};
    const txnId = body.transaction_id;
    if (txnId !== undefined && typeof txnId !== 'string') throw errors.invalidParam('transaction_id must be a string');
    const queries = ctx.appservices!.queries;
    try {
      return { body: { duration_ms: await queries.ping(as, txnId) } };
    } catch (e) {
      if (!(e instanceof PingError)) throw e;
      const status = e.errcode === 'M_CONNECTION_TIMEOUT' ? 504 : 502;
      const extra: JsonObject = {};
      if (e.status !== undefined) extra.status = e.status;
      if (e.body !== undefined) extra.body = e.body;
      throw new MatrixError(status, e.errcode, e.message, extra);
    }
  });

  clientRoute(front, 'PUT', '/directory/list/appservice/:networkId/:roomId', async (req) => {
    const as = requireAppservice(await requireUser(ctx, req), 'the appservice room directory');
    const roomId = requireRoomId(req.params.roomId);
    const networkId = req.params.networkId!;
    const body = bodyObject(req);
    if (body.visibility !== 'public' && body.visibility !== 'private') throw errors.invalidParam('visibility must be "public" or "private"');
    // As Synapse: the appservice vouches for the room; it need not be in it. A room this server
    // does not know would be an empty directory entry, so it is refused.
    if (!(await ctx.rooms.meta(roomId))) throw errors.notFound('Room not found');
    const entry = JSON.stringify([as.id, networkId, roomId]);
    if (body.visibility === 'public') await ctx.redis.sadd(ctx.keys.appserviceRoomList(), entry);
    else await ctx.redis.srem(ctx.keys.appserviceRoomList(), entry);
    return { body: {} };
  });

  const queries = () => ctx.appservices?.queries;

  clientRoute(front, 'GET', '/thirdparty/protocols', async (req) => {
    await requireUser(ctx, req);
    return { body: (await queries()?.protocols()) ?? {} };
  });

  clientRoute(front, 'GET', '/thirdparty/protocol/:protocol', async (req) => {
    await requireUser(ctx, req);
    const protocol = req.params.protocol!;
    const found = (await queries()?.protocols(protocol))?.[protocol];
    if (!found) throw errors.notFound('Unknown protocol');
    return { body: found };
  });

  /** The request's query parameters minus the ones that are ours (the token, the identity assertion). */
  const fieldsOf = (req: Request): Record<string, string[]> => {
    const out: Record<string, string[]> = {};
    for (const [k, v] of Object.entries(req.queryAll)) if (k !== 'access_token' && k !== 'user_id' && k !== 'device_id') out[k] = v;
    return out;
  };

  // The spec answers 404 when nothing was found (Synapse answers 200 with an empty list).
  for (const kind of ['user', 'location'] as const) {
    clientRoute(front, 'GET', `/thirdparty/${kind}/:protocol`, async (req) => {
      await requireUser(ctx, req);
      const found = (await queries()?.thirdPartyLookup(kind, req.params.protocol!, fieldsOf(req))) ?? [];
      if (found.length === 0) throw errors.notFound(kind === 'user' ? 'No third-party users were found' : 'No portal rooms were found');
      return { body: found };
    });
  }

  clientRoute(front, 'GET', '/thirdparty/user', async (req) => {
    await requireUser(ctx, req);
    const userId = req.query.userid;
    if (userId === undefined) throw errors.missingParam('userid is required');
    if (!isValidUserId(userId)) throw errors.invalidParam('userid is not a user id');
    const found = (await queries()?.thirdPartyReverse('user', userId)) ?? [];
    if (found.length === 0) throw errors.notFound('The Matrix user ID was not found');
    return { body: found };
  });

  clientRoute(front, 'GET', '/thirdparty/location', async (req) => {
    await requireUser(ctx, req);
    const alias = req.query.alias;
    if (alias === undefined) throw errors.missingParam('alias is required');
    if (!/^#[^:]+:.+$/.test(alias)) throw errors.invalidParam('alias is not a room alias');
    const found = (await queries()?.thirdPartyReverse('location', alias)) ?? [];
    if (found.length === 0) throw errors.notFound('The Matrix room alias was not found');
    return { body: found };
  });
}
