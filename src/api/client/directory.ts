/**
 * The published room directory (list_public_rooms.yaml): `GET/POST /publicRooms` and
 * `GET/PUT /directory/list/room/{roomId}`. Whether a room is published is the room's own flag,
 * set through its actor (`set_directory_visibility`, src/rooms/directory.ts; also sent by createRoom with
 * `visibility: public` and by room upgrades); the membership index reader keeps the server-wide
 * set of published rooms (`keys.publicRooms()`) from the rooms' outboxes, and reads use that
 * set. What the directory says about each room is computed from its current state when asked,
 * so it is never stale. `?server=<other server>` asks that server over federation
 * (`ctx.federation.publicRooms`, src/api/federation/remote-public-rooms.ts). Rooms application
 * services publish in their networks' directories (src/api/client/appservice.ts) are listed with
 * `third_party_instance_id` or `include_all_networks` only.
 */
import type { Front, Request } from '../../http/server';
import { MatrixError, errors } from '../../http/errors';
import { isJsonObject, type JsonObject, type JsonValue } from '../../protocol/json';
import { effectiveHistoryVisibility } from '../../protocol/history-visibility';
import { splitStateKey } from '../../protocol/pdu';
import { bearerToken, requireUser } from './auth';
import type { ApiContext } from '../context';
import { canSendState } from '../../rooms/power';
import { bodyObject, clientRoute } from './room-common';
import { requireRoomId } from '../../http/params';
import { appserviceRoomList, setDirectoryVisibility } from '../../rooms/directory';
import { isValidFederationServerName } from '../../protocol/server-names';

/** What the directory shows of a room (PublishedRoomsChunk), from its current state. */
export interface RoomSummary {
  room_id: string;
  num_joined_members: number;
  world_readable: boolean;
  guest_can_join: boolean;
  join_rule?: string;
  name?: string;
  topic?: string;
  canonical_alias?: string;
  avatar_url?: string;
  room_type?: string;
}

const SUMMARY_TYPES = new Set(['m.room.create', 'm.room.name', 'm.room.topic', 'm.room.canonical_alias', 'm.room.avatar', 'm.room.join_rules', 'm.room.history_visibility', 'm.room.guest_access']);

/** A room's directory entry, or null for a room this server does not know. */
export async function roomSummary(ctx: ApiContext, roomId: string): Promise<RoomSummary | null> {
  if (!(await ctx.rooms.meta(roomId))) return null;
  const ids = await ctx.rooms.currentStateIds(roomId);
  const wanted: string[] = [];
  for (const [k, id] of ids) {
    const [type, stateKey] = splitStateKey(k);
    if (stateKey === '' && SUMMARY_TYPES.has(type)) wanted.push(id);
  }
  const content = new Map<string, JsonObject>();
  for (const e of await ctx.rooms.events(roomId, wanted)) {
    const c = e.event.content;
    if (typeof e.event.type === 'string' && isJsonObject(c as JsonValue)) content.set(e.event.type, c as JsonObject);
  }
  const str = (type: string, key: string): string | undefined => {
    const v = content.get(type)?.[key];
    return typeof v === 'string' && v !== '' ? v : undefined;
  };
  const out: RoomSummary = {
    room_id: roomId,
    num_joined_members: (await ctx.rooms.members(roomId, 'join')).size,
    world_readable: effectiveHistoryVisibility(content.get('m.room.history_visibility')) === 'world_readable',
    guest_can_join: str('m.room.guest_access', 'guest_access') === 'can_join',
  };
  const joinRule = str('m.room.join_rules', 'join_rule');
  if (joinRule) out.join_rule = joinRule;
  const name = str('m.room.name', 'name');
  if (name) out.name = name;
  const topic = plainTopic(content.get('m.room.topic'));
  if (topic) out.topic = topic;
  const alias = str('m.room.canonical_alias', 'alias');
  if (alias) out.canonical_alias = alias;
  const avatar = str('m.room.avatar', 'url');
  if (avatar) out.avatar_url = avatar;
  const roomType = str('m.room.create', 'type');
  if (roomType) out.room_type = roomType;
  return out;
}

/** The plain-text topic: `topic`, or the text/plain entry of `m.topic` (spec v1.15). */
function plainTopic(content: JsonObject | undefined): string | undefined {
  if (!content) return undefined;
  if (typeof content.topic === 'string' && content.topic !== '') return content.topic;
  const rich = content['m.topic'];
  const list = isJsonObject(rich as JsonValue) ? (rich as JsonObject)['m.text'] : undefined;
  if (!Array.isArray(list)) return undefined;
  for (const t of list) {
    if (!isJsonObject(t)) continue;
    if ((t.mimetype === undefined || t.mimetype === 'text/plain') && typeof t.body === 'string' && t.body !== '') return t.body;
  }
  return undefined;
}

export interface DirectoryQuery {
  limit?: number;
  since?: string;
  searchTerm?: string;
  /** `null` in the list stands for rooms without a type. */
  roomTypes?: (string | null)[];
}

/**
 * Pagination keys: the directory is ordered by joined members (most first), then room id. A
 * token names the edge of a page — `n<count>_<room id>` (the next page starts after it) or
 * `p<count>_<room id>` (the previous page ends before it) — so rooms joining or leaving the
 * directory between requests neither repeat nor skip the rooms around the edge.
 */
interface PageKey {
  dir: 'n' | 'p';
  count: number;
  roomId: string;
}

function encodeKey(dir: 'n' | 'p', s: RoomSummary): string {
  return `${dir}${s.num_joined_members}_${Buffer.from(s.room_id, 'utf8').toString('base64url')}`;
}

function decodeKey(token: string): PageKey {
  const m = /^([np])(\d{1,12})_([A-Za-z0-9_-]{1,400})$/.exec(token);
  if (!m) throw errors.invalidParam('Malformed since token');
  return { dir: m[1] as 'n' | 'p', count: Number(m[2]), roomId: Buffer.from(m[3]!, 'base64url').toString('utf8') };
}

/** Directory order: most joined members first, then room id. */
function compare(a: { num_joined_members: number; room_id: string }, b: { num_joined_members: number; room_id: string }): number {
  if (a.num_joined_members !== b.num_joined_members) return b.num_joined_members - a.num_joined_members;
  return a.room_id < b.room_id ? -1 : a.room_id > b.room_id ? 1 : 0;
}

export function matchesSearch(s: RoomSummary, term: string): boolean {
  const t = term.toLowerCase();
  if (s.room_id === term) return true;
  return [s.name, s.topic, s.canonical_alias].some((v) => v !== undefined && v.toLowerCase().includes(t));
}

/** One page of the local directory (pure once the summaries are read: exported for unit tests). */
export function pageDirectory(all: RoomSummary[], q: DirectoryQuery): JsonObject {
  let rooms = all.slice().sort(compare);
  if (q.searchTerm) rooms = rooms.filter((s) => matchesSearch(s, q.searchTerm!));
  if (q.roomTypes) {
    const types = q.roomTypes;
    rooms = rooms.filter((s) => types.includes(s.room_type ?? null));
  }
  const total = rooms.length;
  const limit = q.limit ?? total;
  let start = 0;
  let end = rooms.length;
  if (q.since) {
    const key = decodeKey(q.since);
    const edge = { num_joined_members: key.count, room_id: key.roomId };
    if (key.dir === 'n') {
      start = rooms.findIndex((s) => compare(s, edge) > 0);
      if (start < 0) start = rooms.length;
      end = Math.min(rooms.length, start + limit);
    } else {
      end = rooms.findIndex((s) => compare(s, edge) >= 0);
      if (end < 0) end = rooms.length;
      start = Math.max(0, end - limit);
    }
  } else {
    end = Math.min(rooms.length, limit);
  }
  const chunk = rooms.slice(start, end);
  const out: JsonObject = { chunk: chunk as unknown as JsonValue[], total_room_count_estimate: total };
  if (chunk.length && end < rooms.length) out.next_batch = encodeKey('n', chunk[chunk.length - 1]!);
  if (chunk.length && start > 0) out.prev_batch = encodeKey('p', chunk[0]!);
  return out;
}

function parseLimit(v: unknown): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw errors.invalidParam('limit must be a non-negative integer');
  return v;
}

/** A `/publicRooms` request as asked (client GET/POST, federation GET/POST), validated. */
export interface PublicRoomsRequest {
  query: DirectoryQuery;
  includeAllNetworks: boolean;
  thirdPartyInstanceId?: string;
  /** The `filter` object as sent, checked (passed on as is to another server). */
  filter?: JsonObject;
}

/** The query string of a GET: `limit`, `since`, `include_all_networks`, `third_party_instance_id`. */
export function parsePublicRoomsQuery(q: Record<string, string | undefined>): PublicRoomsRequest {
  const out: PublicRoomsRequest = { query: {}, includeAllNetworks: false };
  const limitRaw = q.limit;
  if (limitRaw !== undefined && limitRaw !== '') {
    if (!/^\d{1,9}$/.test(limitRaw)) throw errors.invalidParam('limit must be a non-negative integer');
    out.query.limit = Number(limitRaw);
  }
  if (q.since) out.query.since = q.since;
  const all = q.include_all_networks;
  if (all !== undefined && all !== 'true' && all !== 'false') throw errors.invalidParam('include_all_networks must be true or false');
  out.includeAllNetworks = all === 'true';
  if (q.third_party_instance_id) out.thirdPartyInstanceId = q.third_party_instance_id;
  if (out.includeAllNetworks && out.thirdPartyInstanceId !== undefined) throw errors.invalidParam('third_party_instance_id cannot be combined with include_all_networks');
  return out;
}

/** The body of a POST (client API and federation, MSC2197): limit, since, filter, networks. */
export function parsePublicRoomsBody(body: JsonObject): PublicRoomsRequest {
  const out: PublicRoomsRequest = { query: {}, includeAllNetworks: false };
  const limit = parseLimit(body.limit);
  if (limit !== undefined) out.query.limit = limit;
  if (body.since !== undefined && body.since !== null) {
    if (typeof body.since !== 'string') throw errors.invalidParam('since must be a string');
    if (body.since !== '') out.query.since = body.since;
  }
  if (body.include_all_networks !== undefined && typeof body.include_all_networks !== 'boolean') throw errors.invalidParam('include_all_networks must be a boolean');
  out.includeAllNetworks = body.include_all_networks === true;
  if (body.third_party_instance_id !== undefined && body.third_party_instance_id !== null) {
    if (typeof body.third_party_instance_id !== 'string') throw errors.invalidParam('third_party_instance_id must be a string');
    if (out.includeAllNetworks) throw errors.invalidParam('third_party_instance_id cannot be combined with include_all_networks');
    out.thirdPartyInstanceId = body.third_party_instance_id;
  }
  if (body.filter !== undefined && body.filter !== null) {
    if (!isJsonObject(body.filter)) throw errors.invalidParam('filter must be an object');
    out.filter = body.filter;
    const term = body.filter.generic_search_term;
    if (term !== undefined && term !== null) {
      if (typeof term !== 'string') throw errors.invalidParam('filter.generic_search_term must be a string');
      if (term.trim() !== '') out.query.searchTerm = term.trim();
    }
    const types = body.filter.room_types;
    if (types !== undefined && types !== null) {
      if (!Array.isArray(types) || !types.every((t) => t === null || typeof t === 'string')) throw errors.invalidParam('filter.room_types must be a list of strings and nulls');
      out.query.roomTypes = types as (string | null)[];
    }
  }
  return out;
}

/**
 * Which directory a request reads: the server's own (`local`), every network as well (`all`:
 * `include_all_networks`), or one third-party network an appservice published rooms in
 * (`third_party_instance_id` = `<appservice id>|<network id>`, as `/thirdparty/protocols` lists
 * instances). An instance id without exactly one `|` is 400, as Synapse answers it; a well-formed
 * one no appservice uses is an empty directory.
 */
export type DirectoryNetwork = { kind: 'local' } | { kind: 'all' } | { kind: 'network'; appserviceId: string; networkId: string };

export function networkOf(r: PublicRoomsRequest): DirectoryNetwork {
  if (r.includeAllNetworks) return { kind: 'all' };
  if (r.thirdPartyInstanceId === undefined) return { kind: 'local' };
  const parts = r.thirdPartyInstanceId.split('|');
  if (parts.length !== 2) throw errors.invalidParam(`Invalid third-party instance id ${JSON.stringify(r.thirdPartyInstanceId)}`);
  return { kind: 'network', appserviceId: parts[0]!, networkId: parts[1]! };
}

/** The directory entries of the published rooms of a network (default: the server's own directory). */
export async function publishedRoomSummaries(ctx: ApiContext, network: DirectoryNetwork = { kind: 'local' }): Promise<RoomSummary[]> {
  let ids: string[];
  if (network.kind === 'local') ids = await ctx.redis.smembers(ctx.keys.publicRooms());
  else {
    const listed = await appserviceRoomList(ctx);
    if (network.kind === 'all') ids = [...new Set([...(await ctx.redis.smembers(ctx.keys.publicRooms())), ...listed.map((e) => e[2])])];
    else ids = [...new Set(listed.filter((e) => e[0] === network.appserviceId && e[1] === network.networkId).map((e) => e[2]))];
  }
  return (await Promise.all(ids.map((id) => roomSummary(ctx, id)))).filter((s): s is RoomSummary => s !== null);
}

export function registerDirectoryRoutes(front: Front, ctx: ApiContext): void {
  /** The server whose directory is asked for: null for this one. */
  const remoteServer = (req: Request): string | null => {
    const server = req.query.server;
    if (server === undefined || server === '' || server === ctx.config.serverName) return null;
    if (!isValidFederationServerName(server)) throw errors.invalidParam('server is not a valid server name');
    return server;
  };

  const answer = async (req: Request, r: PublicRoomsRequest): Promise<JsonObject> => {
    const server = remoteServer(req);
    if (server !== null) {
      if (!ctx.federation?.publicRooms) throw errors.notFound(`The room directory of ${server} is not available: federation is off on this server`);
      return ctx.federation.publicRooms(server, {
        includeAllNetworks: r.includeAllNetworks,
        ...(r.query.limit !== undefined ? { limit: r.query.limit } : {}),
        ...(r.query.since !== undefined ? { since: r.query.since } : {}),
        ...(r.filter !== undefined ? { filter: r.filter } : {}),
        ...(r.thirdPartyInstanceId !== undefined ? { thirdPartyInstanceId: r.thirdPartyInstanceId } : {}),
      });
    }
    return pageDirectory(await publishedRoomSummaries(ctx, networkOf(r)), r.query);
  };

  clientRoute(front, 'GET', '/publicRooms', async (req) => {
    // The spec lets anyone read the directory; a token that is sent must still be valid. Asking
    // another server needs one (as Synapse): anonymous clients do not make us call peers.
    if (bearerToken(req) !== null || remoteServer(req) !== null) await requireUser(ctx, req);
    return { body: await answer(req, parsePublicRoomsQuery(req.query)) };
  });

  clientRoute(front, 'POST', '/publicRooms', async (req) => {
    await requireUser(ctx, req);
    return { body: await answer(req, parsePublicRoomsBody(req.body.length ? bodyObject(req) : {})) };
  });

  clientRoute(front, 'GET', '/directory/list/room/:roomId', async (req) => {
    const roomId = requireRoomId(req.params.roomId);
    if (!(await ctx.rooms.meta(roomId))) throw errors.notFound('Room not found');
    const published = (await ctx.redis.sismember(ctx.keys.publicRooms(), roomId)) === 1;
    return { body: { visibility: published ? 'public' : 'private' } };
  });

  clientRoute(front, 'PUT', '/directory/list/room/:roomId', async (req) => {
    const user = await requireUser(ctx, req);
    const roomId = requireRoomId(req.params.roomId);
    const body = req.body.length ? bodyObject(req) : {};
    const visibility = body.visibility ?? 'public';
    if (visibility !== 'public' && visibility !== 'private') throw errors.invalidParam('visibility must be "public" or "private"');
    if (!(await ctx.rooms.meta(roomId))) throw errors.notFound('Room not found');
    // As Synapse does: members who may change the room's canonical alias (its moderators).
    if ((await ctx.rooms.membership(roomId, user.userId)) !== 'join') throw new MatrixError(403, 'M_FORBIDDEN', 'You are not in this room');
    if (!(await canSendState(ctx, roomId, user.userId, 'm.room.canonical_alias'))) {
      throw new MatrixError(403, 'M_FORBIDDEN', "Publishing a room needs the power to change its canonical alias");
    }
    await setDirectoryVisibility(ctx, [[roomId, visibility]]);
    return { body: {} };
  });
}
