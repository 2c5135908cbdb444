/**
 * Room summaries (room_summary.yaml, MSC3266): `GET /_matrix/client/v1/room_summary/{roomIdOrAlias}`,
 * and the paths of MSC3266's first version that matrix-js-sdk still calls when a server does not
 * advertise v1.15 — `/_matrix/client/unstable/im.nheko.summary/summary/{roomIdOrAlias}` and the
 * older `.../im.nheko.summary/rooms/{roomIdOrAlias}/summary` — with the unstable field names too.
 *
 * Who may see a summary follows Synapse: anyone (even without an access token, as the spec
 * allows) for rooms with a `public`, `knock` or `knock_restricted` join rule or world_readable
 * history; members and invitees; and for `restricted` rooms, members of an allowed room. Others,
 * and rooms this server does not have (remote rooms need federation), get 404 M_NOT_FOUND —
 * existence is not revealed. `via` is accepted and unused until federation exists.
 */
import type { Front, Request } from '../../http/server';
import { MatrixError } from '../../http/errors';
import { isJsonObject, type JsonObject, type JsonValue } from '../../protocol/json';
import { requireUser, type Requester } from './auth';
import type { ApiContext } from '../context';
import { AliasStore, resolveRoomIdOrAlias } from '../../rooms/aliases';
import { summary } from './space-hierarchy';

const OPEN_RULES = new Set(['public', 'knock', 'knock_restricted']);

export function registerRoomSummaryRoutes(front: Front, ctx: ApiContext): void {
  const aliases = new AliasStore(ctx);
  const handler = (unstable: boolean) => async (req: Request) => {
    // The access token is optional; one that is given must be valid.
    const user = req.headers['authorization'] !== undefined || req.query['access_token'] !== undefined ? await requireUser(ctx, req) : null;
    const notFound = () => new MatrixError(404, 'M_NOT_FOUND', 'Room not found or is private');
    let roomId: string;
    try {
      roomId = await resolveRoomIdOrAlias(ctx, aliases, req.params.roomIdOrAlias);
    } catch (e) {
      if (e instanceof MatrixError && e.status === 404) throw notFound();
      throw e;
    }
    if (!(await ctx.rooms.meta(roomId))) throw notFound();
    const state = await ctx.rooms.currentState(roomId);
    const body = summary(roomId, state, await ctx.rooms.members(roomId, 'join'));
    const membership = user ? await ctx.rooms.membership(roomId, user.userId) : null;
    const rules = state.find((e) => e.event.type === 'm.room.join_rules' && e.event.state_key === '');
    const allowedRooms = allowedRoomIds(rules?.event.content);
    if (!(await mayPeek(ctx, body, membership, allowedRooms, user))) throw notFound();
    if (allowedRooms.length && (body.join_rule === 'restricted' || body.join_rule === 'knock_restricted')) body.allowed_room_ids = allowedRooms;
    if (user) body.membership = membership ?? 'leave';
    if (unstable) {
      // MSC3266's first version, as older Synapse answered it (matrix-js-sdk reads either).
      if (typeof body.room_version === 'string') body['im.nheko.summary.version'] = body.room_version;
      if (typeof body.encryption === 'string') body['im.nheko.summary.encryption'] = body.encryption;
    }
    return { body };
  };
  front.route('GET', '/_matrix/client/v1/room_summary/:roomIdOrAlias', handler(false));
  front.route('GET', '/_matrix/client/unstable/im.nheko.summary/summary/:roomIdOrAlias', handler(true));
  front.route('GET', '/_matrix/client/unstable/im.nheko.summary/rooms/:roomIdOrAlias/summary', handler(true));
}

function allowedRoomIds(content: unknown): string[] {
  if (!isJsonObject(content as JsonValue) || !Array.isArray((content as JsonObject).allow)) return [];
  return ((content as JsonObject).allow as JsonValue[])
    .filter((a): a is JsonObject => isJsonObject(a) && a.type === 'm.room_membership' && typeof a.room_id === 'string')
    .map((a) => a.room_id as string);
}

async function mayPeek(ctx: ApiContext, body: JsonObject, membership: string | null, allowedRooms: string[], user: Requester | null): Promise<boolean> {
  if (OPEN_RULES.has(String(body.join_rule)) || body.world_readable === true) return true;
  if (!user) return false;
  if (membership === 'join' || membership === 'invite' || membership === 'knock') return true;
  if (body.join_rule === 'restricted') {
    for (const r of allowedRooms) if ((await ctx.rooms.membership(r, user.userId)) === 'join') return true;
  }
  return false;
}

