// GET  /_matrix/federation/v1/publicRooms
// POST /_matrix/federation/v1/publicRooms
/**
 * Our room directory for other servers: the same entries, order and pagination tokens as the
 * client API's `/publicRooms` (src/api/client/directory.ts), less the rooms the asking server
 * may not take part in — those whose server ACL denies it and those created with
 * `m.federate: false` — as Synapse leaves them out. The POST is MSC2197's filtered search
 * (`filter.generic_search_term`, `filter.room_types`). A `limit` of 0 means no limit (spec).
 */
import type { Front } from '../../http/server';
import { errors } from '../../http/errors';
import { isJsonObject, type JsonObject } from '../../protocol/json';
import { roomForServer } from '../../federation/inbound/room-access';
import { pageDirectory, parsePublicRoomsBody, parsePublicRoomsQuery, networkOf, publishedRoomSummaries, type PublicRoomsRequest, type RoomSummary } from '../client/directory';
import { federationRoute } from './auth';
import type { FederationContext } from './context';

export function registerPublicRoomsRoutes(front: Front, ctx: FederationContext): void {
  /** Whether a published room is listed for `origin`. */
  const listedFor = async (s: RoomSummary, origin: string): Promise<boolean> => {
    const room = await roomForServer(ctx.api.rooms, s.room_id);
    if (!room?.aclAllows(origin)) return false;
    const [create] = await ctx.api.rooms.currentState(s.room_id, { type: 'm.room.create', stateKey: '' });
    const content = create?.event.content;
    return !(isJsonObject(content as JsonObject) && (content as JsonObject)['m.federate'] === false);
  };

  const answer = async (r: PublicRoomsRequest, origin: string): Promise<{ body: JsonObject }> => {
    const network = networkOf(r);
    if (r.query.limit === 0) delete r.query.limit;
    const all = await publishedRoomSummaries(ctx.api, network);
    const allowed = await Promise.all(all.map((s) => listedFor(s, origin)));
    return { body: pageDirectory(all.filter((_, i) => allowed[i]), r.query) };
  };

  federationRoute(front, ctx, 'GET', '/_matrix/federation/v1/publicRooms', (req, caller) => answer(parsePublicRoomsQuery(req.query), caller.origin));

  federationRoute(front, ctx, 'POST', '/_matrix/federation/v1/publicRooms', (_req, caller) => {
    if (!isJsonObject(caller.body ?? null)) throw errors.badJson('The request body must be a JSON object');
    return answer(parsePublicRoomsBody(caller.body as JsonObject), caller.origin);
  });
}
