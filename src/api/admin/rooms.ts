/**
 * Synapse's admin API for one room (`/_synapse/admin/v1/rooms/{roomId}/...`), with Synapse
 * 1.163's paths, fields and errors: details, members, current state, messages (everything, as an
 * admin sees it: no history-visibility filter), blocking, and `make_room_admin`. Admins only.
 * Deletion is room-delete.ts.
 */
import { MatrixError, errors } from '../../http/errors';
import type { Front, Request } from '../../http/server';
import { serverOf } from '../../protocol/identifiers';
import { isJsonObject, type JsonObject } from '../../protocol/json';
import { stateKeyOf } from '../../protocol/pdu';
import { membershipIndexData, userData } from '../../store/keys';
import { userKey } from '../../store/shard-keys';
import { servableToClients, type RoomEvent } from '../../store/room-reader';
import { MembershipIndex } from '../../readers/membership-index';
import { AliasStore, resolveRoomIdOrAlias } from '../../rooms/aliases';
import { sendEvent } from '../../rooms/ask';
import { formatEvents } from '../../rooms/client-format';
import { filterMatches } from '../../rooms/event-filter';
import { sendLocalMembership } from '../../rooms/join';
import { decodeToken, encodeToken } from '../../rooms/pagination';
import { roomBlockedBy, setRoomBlocked } from '../../rooms/blocked';
import { jsonBody } from '../client/accounts-common';
import { loadRoomEventFilter } from '../client/room-common';
import type { ApiContext } from '../context';
import { requireAdmin } from './common';
import { roomSummaries } from './room-list';

const V1 = '/_synapse/admin/v1';

/** A room id as Synapse checks one in these paths (`RoomID.is_valid`): 400 M_UNKNOWN otherwise. */
export function legalRoomId(raw: string | undefined): string {
  const roomId = raw ?? '';
  if (!/^![^:]*:.+$/.test(roomId) && !/^![A-Za-z0-9_-]{43}$/.test(roomId)) throw new MatrixError(400, 'M_UNKNOWN', `${roomId} is not a legal room ID`);
  return roomId;
}

/** The path's room, which must be one the server has (404 "Room not found" otherwise, as Synapse). */
async function knownRoom(ctx: ApiContext, raw: string | undefined): Promise<string> {
  const roomId = raw ?? '';
  if (!(await ctx.rooms.meta(roomId))) throw errors.notFound('Room not found');
  return roomId;
}

async function roomDetails(ctx: ApiContext, roomId: string): Promise<JsonObject> {
  const [summary] = await roomSummaries(ctx, [roomId]);
  if (!summary) throw errors.notFound('Room not found');
  const members = await ctx.rooms.members(roomId);
  const local = [...members].filter(([u]) => serverOf(u) === ctx.config.serverName);
  const joinedLocal = local.filter(([, m]) => m === 'join').map(([u]) => u);
  const p = ctx.redis.pipeline();
  for (const u of joinedLocal) p.hlen(userKey(ctx, u, userData.devices(u)));
  // Forgotten when no local user has a membership they have not forgotten (Synapse's reading).
  for (const [u] of local) p.sismember(userKey(ctx, u, membershipIndexData.forgotten(u)), roomId);
  const counts = (await p.exec()) ?? [];
  const devices = counts.slice(0, joinedLocal.length).reduce((n, [, c]) => n + Number(c ?? 0), 0);
  const forgotten = counts.slice(joinedLocal.length).every(([, f]) => Number(f) === 1);
  const [tombstone] = await ctx.rooms.currentState(roomId, { type: 'm.room.tombstone', stateKey: '' });
  const replacement = tombstone?.event.content && isJsonObject(tombstone.event.content) ? tombstone.event.content.replacement_room : undefined;
  return {
    ...(summary as unknown as JsonObject),
    joined_local_devices: devices,
    forgotten,
    tombstoned: tombstone !== undefined,
    replacement_room: tombstone ? (typeof replacement === 'string' ? replacement : null) : null,
  };
}

function intParam(req: Request, name: string, fallback: number): number {
  const raw = req.query[name];
  if (raw === undefined) return fallback;
  if (!/^-?\d+$/.test(raw)) throw errors.invalidParam(`Query parameter '${name}' must be an integer`);
  return Number(raw);
}

/** `/messages` for an admin: the room's timeline both ways from a `p<N>` token, every event a client could be served, whoever may see it. */
async function roomMessages(ctx: ApiContext, req: Request, adminId: string) {
  const roomId = req.params.roomId ?? '';
  const dir = req.query.dir ?? 'f';
  if (dir !== 'f' && dir !== 'b') throw errors.invalidParam("Query parameter 'dir' must be one of ['b', 'f']");
  const limit = Math.min(Math.max(intParam(req, 'limit', 10), 0), 1000);
  const filter = await loadRoomEventFilter(ctx, adminId, req.query.filter);
  const meta = await ctx.rooms.meta(roomId);
  const from = req.query.from ? decodeToken(req.query.from, 'from') : dir === 'b' ? (meta?.seq ?? 0) : (meta?.low ?? 0) - 1;
  const to = req.query.to ? decodeToken(req.query.to, 'to') : null;
  const out: RoomEvent[] = [];
  let cursor: number | null = dir === 'b' ? from + 1 : from;
  let end: number | null = from;
  const n = Math.min(limit, filter.limit ?? limit);
  while (meta && out.length < n) {
    const page = await ctx.rooms.timeline(roomId, dir, cursor, Math.max(n - out.length, 20));
    let stopped = false;
    for (const e of page.events) {
      if (to !== null && (dir === 'b' ? e.pos <= to : e.pos > to)) {
        stopped = true;
        break;
      }
      end = dir === 'b' ? e.pos - 1 : e.pos;
      if (servableToClients(e) && filterMatches(filter, e.event)) out.push(e);
      if (out.length === n) break;
    }
    if (out.length === n) break;
    if (stopped || page.next === null) {
      end = null;
      break;
    }
    cursor = page.next;
  }
  if (!meta || n === 0) end = n === 0 ? from : null;
  const body: JsonObject = { chunk: await formatEvents(ctx, roomId, out, null), start: encodeToken(from) };
  if (end !== null) body.end = encodeToken(end);
  return { body };
}

/**
 * Give a user (the requester by default) power in a room through the local member with the most:
 * they get that member's level in a new power levels event that member sends; a user not in a
 * room that is not public is then invited by them. Synapse's steps and errors.
 */
async function makeRoomAdmin(ctx: ApiContext, index: MembershipIndex, aliases: AliasStore, req: Request, requester: string) {
  const body = jsonBody(req, true);
  const roomId = await resolveRoomIdOrAlias(ctx, aliases, req.params.roomIdOrAlias);
  const target = body.user_id ?? requester;
  if (typeof target !== 'string' || !/^@[^:]+:.+$/.test(target)) throw errors.invalidParam('user_id must be a user id');
  const meta = await ctx.rooms.meta(roomId);
  if (!meta) throw new MatrixError(400, 'M_UNKNOWN', 'Server not in room');
  const state = new Map((await ctx.rooms.currentState(roomId)).map((e) => [stateKeyOf(String(e.event.type), String(e.event.state_key)), e.event]));
  const create = state.get(stateKeyOf('m.room.create', ''))!;
  const pl = state.get(stateKeyOf('m.room.power_levels', ''));
  const ours = (u: string) => serverOf(u) === ctx.config.serverName;
  let admin: string | undefined;
  let plContent: JsonObject = {};
  if (pl) {
    plContent = isJsonObject(pl.content) ? pl.content : {};
    const users = isJsonObject(plContent.users) ? (plContent.users as Record<string, number>) : {};
    const candidates = Object.keys(users).filter(ours).sort((a, b) => users[a]! - users[b]!);
    // Rooms whose creators have power above any level (v12) list them nowhere: they count too.
    const createContent = isJsonObject(create.content) ? create.content : {};
    if (meta.version === '12') {
      const extra = Array.isArray(createContent.additional_creators) ? createContent.additional_creators : [];
      for (const c of [...extra, create.sender]) if (typeof c === 'string' && ours(c)) candidates.push(c);
    }
    if (!candidates.length) throw new MatrixError(400, 'M_UNKNOWN', 'No local admin user in room');
    const members = await ctx.rooms.members(roomId);
    admin = [...candidates].reverse().find((u) => members.get(u) === 'join');
    if (!admin) throw new MatrixError(400, 'M_UNKNOWN', 'No local admin user in room');
  } else {
    admin = String(create.sender);
    if (!ours(admin)) throw new MatrixError(400, 'M_UNKNOWN', 'No local admin user in room');
  }
  const users = { ...(isJsonObject(plContent.users) ? plContent.users : {}) } as Record<string, number>;
  users[target] = users[admin] ?? 100;
  try {
    await sendEvent(ctx, roomId, { type: 'm.room.power_levels', state_key: '', sender: admin, content: { ...plContent, users } });
  } catch (e) {
    if (e instanceof MatrixError && e.status === 403) throw new MatrixError(400, 'M_UNKNOWN', 'No local admin user in room with power to update power levels.');
    throw e;
  }
  const membership = state.get(stateKeyOf('m.room.member', target));
  const m = isJsonObject(membership?.content) ? membership.content.membership : undefined;
  if (m === 'join' || m === 'invite') return { body: {} };
  const joinRules = state.get(stateKeyOf('m.room.join_rules', ''));
  if (isJsonObject(joinRules?.content) && joinRules.content.join_rule === 'public') return { body: {} };
  await sendLocalMembership(ctx, index, roomId, admin, target, { membership: 'invite' });
  return { body: {} };
}

export function registerAdminRoomRoutes(front: Front, ctx: ApiContext): void {
  const index = new MembershipIndex(ctx.redis, ctx.keys, ctx.shardCounts.user);
  const aliases = new AliasStore(ctx);
  front.route('GET', `${V1}/rooms/:roomId`, async (req) => {
    await requireAdmin(ctx, req);
    return { body: await roomDetails(ctx, req.params.roomId ?? '') };
  });
  front.route('GET', `${V1}/rooms/:roomId/members`, async (req) => {
    await requireAdmin(ctx, req);
    const roomId = await knownRoom(ctx, req.params.roomId);
    const members = [...(await ctx.rooms.members(roomId, 'join')).keys()].sort();
    return { body: { members, total: members.length } };
  });
  front.route('GET', `${V1}/rooms/:roomId/state`, async (req) => {
    await requireAdmin(ctx, req);
    const roomId = await knownRoom(ctx, req.params.roomId);
    const type = req.query.type;
    const events = await ctx.rooms.currentState(roomId, type ? { type } : {});
    return { body: { state: await formatEvents(ctx, roomId, events, null) } };
  });
  front.route('GET', `${V1}/rooms/:roomId/messages`, async (req) => {
    const me = await requireAdmin(ctx, req);
    return roomMessages(ctx, req, me.userId);
  });
  front.route('GET', `${V1}/rooms/:roomId/block`, async (req) => {
    await requireAdmin(ctx, req);
    const roomId = legalRoomId(req.params.roomId);
    const by = await roomBlockedBy(ctx, roomId);
    return { body: by !== null ? { block: true, user_id: by } : { block: false } };
  });
  front.route('PUT', `${V1}/rooms/:roomId/block`, async (req) => {
    const me = await requireAdmin(ctx, req);
    const body = jsonBody(req);
    const roomId = legalRoomId(req.params.roomId);
    if (body.block === undefined) throw errors.missingParam('Missing params: [\'block\']');
    if (typeof body.block !== 'boolean') throw errors.badJson("Param 'block' must be a boolean.");
    await setRoomBlocked(ctx, roomId, body.block ? me.userId : null);
    return { body: { block: body.block } };
  });
  front.route('POST', `${V1}/rooms/:roomIdOrAlias/make_room_admin`, async (req) => {
    const me = await requireAdmin(ctx, req);
    return makeRoomAdmin(ctx, index, aliases, req, me.userId);
  });
}
