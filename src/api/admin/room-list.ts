/**
 * The admin API's room list, `GET /_synapse/admin/v1/rooms` (Synapse's parameters: from, limit,
 * order_by, dir, search_term, public_rooms, empty_rooms; answers `rooms`, `offset`,
 * `total_rooms`, `next_batch` and `prev_batch`), and the per-room summary that the list and
 * `GET /v1/rooms/{roomId}` share.
 *
 * Axon has no table of rooms: each room shard keeps a sorted set of the rooms it has
 * (`roomData.localRooms`, written by the room actor when a room comes into being there; the only
 * writer of a shard's keys). A listing reads every shard's set, then each room's summary from its
 * current state with pipelined commands (a fixed number of round trips, whatever the shard or
 * room count), then filters, sorts and pages in memory: O(rooms) per request, as the user list.
 */
import { errors } from '../../http/errors';
import type { Front, Request } from '../../http/server';
import { serverOf } from '../../protocol/identifiers';
import type { JsonObject } from '../../protocol/json';
import { stateKeyOf } from '../../protocol/pdu';
import { decode } from '../../store/codec';
import { roomData } from '../../store/keys';
import { roomShard } from '../../store/shard-keys';
import type { StoredEvent } from '../../rooms/model';
import type { ApiContext } from '../context';
import { queryBool, queryInt, requireAdmin } from './common';

/** Synapse's sort orders, and which of them sort biggest first going forwards (as its SQL). */
const DESCENDING = new Set(['joined_members', 'joined_local_members', 'version', 'state_events', 'size']);
const ORDERS = ['alphabetical', 'size', 'name', 'canonical_alias', 'joined_members', 'joined_local_members', 'version', 'creator', 'encryption', 'federatable', 'public', 'join_rules', 'guest_access', 'history_visibility', 'state_events'] as const;
type Order = (typeof ORDERS)[number];

/** A room as the list and the details show it (Synapse's `room_stats` fields). */
export interface RoomSummary {
  room_id: string;
  name: string | null;
  canonical_alias: string | null;
  joined_members: number;
  joined_local_members: number;
  version: string | null;
  creator: string | null;
  encryption: string | null;
  federatable: boolean;
  public: boolean;
  join_rules: string | null;
  guest_access: string | null;
  history_visibility: string | null;
  state_events: number;
  room_type: string | null;
  avatar: string | null;
  topic: string | null;
}

/** The state events a summary reads, by the current-state hash's field. */
const SUMMARY_STATE = {
  create: stateKeyOf('m.room.create', ''),
  name: stateKeyOf('m.room.name', ''),
  alias: stateKeyOf('m.room.canonical_alias', ''),
  encryption: stateKeyOf('m.room.encryption', ''),
  joinRules: stateKeyOf('m.room.join_rules', ''),
  guestAccess: stateKeyOf('m.room.guest_access', ''),
  historyVisibility: stateKeyOf('m.room.history_visibility', ''),
  avatar: stateKeyOf('m.room.avatar', ''),
  topic: stateKeyOf('m.room.topic', ''),
};
const SUMMARY_FIELDS = Object.values(SUMMARY_STATE);

/** Every room the server has, from every room shard's list, in one pipelined round trip. */
export async function allRoomIds(ctx: ApiContext): Promise<string[]> {
  const p = ctx.redis.pipeline();
  for (let s = 0; s < ctx.shardCounts.room; s++) p.zrange(ctx.keys.shard('room', s).data(roomData.localRooms()), 0, -1);
  const out: string[] = [];
  for (const [err, ids] of (await p.exec()) ?? []) {
    if (err) throw err;
    out.push(...(ids as string[]));
  }
  return out;
}

function str(v: unknown): string | null {
  return typeof v === 'string' ? v : null;
}

/** The summaries of some rooms (null for a room the server does not have), in two pipelined round trips. */
export async function roomSummaries(ctx: ApiContext, roomIds: string[]): Promise<(RoomSummary | null)[]> {
  const p = ctx.redis.pipeline();
  for (const roomId of roomIds) {
    const shard = roomShard(ctx, roomId);
    p.hmget(shard.data(roomData.state(roomId)), ...SUMMARY_FIELDS);
    p.hlen(shard.data(roomData.state(roomId)));
    p.hgetall(shard.data(roomData.members(roomId)));
    p.exists(shard.data(roomData.published(roomId)));
  }
  const first = (await p.exec()) ?? [];
  const q = ctx.redis.pipeline();
  const stateIds: (string | null)[][] = [];
  roomIds.forEach((roomId, i) => {
    const [err, ids] = first[i * 4]!;
    if (err) throw err;
    stateIds.push(ids as (string | null)[]);
    const shard = roomShard(ctx, roomId);
    for (const id of ids as (string | null)[]) if (id) q.getBuffer(shard.data(roomData.event(id)));
  });
  const second = roomIds.length ? ((await q.exec()) ?? []) : [];
  let next = 0;
  return roomIds.map((roomId, i) => {
    const content = new Map<string, JsonObject & { _sender?: string }>();
    stateIds[i]!.forEach((id, f) => {
      if (!id) return;
      const [err, blob] = second[next++]!;
      if (err || !blob) return;
      try {
        const e = JSON.parse(decode<StoredEvent>(blob as Buffer).j) as JsonObject;
        content.set(SUMMARY_FIELDS[f]!, { ...((e.content as JsonObject) ?? {}), _sender: e.sender as string });
      } catch {
        // an unreadable record leaves its field empty
      }
    });
    const create = content.get(SUMMARY_STATE.create);
    if (!create) return null;
    const members = (first[i * 4 + 2]![1] as Record<string, string>) ?? {};
    let joined = 0;
    let local = 0;
    for (const [user, m] of Object.entries(members)) {
      if (m !== 'join') continue;
      joined++;
      if (serverOf(user) === ctx.config.serverName) local++;
    }
    const c = (k: keyof typeof SUMMARY_STATE) => content.get(SUMMARY_STATE[k]);
    return {
      room_id: roomId,
      name: str(c('name')?.name),
      canonical_alias: str(c('alias')?.alias),
      joined_members: joined,
      joined_local_members: local,
      version: str(create.room_version) ?? '1',
      creator: create._sender ?? null,
      encryption: str(c('encryption')?.algorithm),
      federatable: create['m.federate'] !== false,
      public: (first[i * 4 + 3]![1] as number) === 1,
      join_rules: str(c('joinRules')?.join_rule),
      guest_access: str(c('guestAccess')?.guest_access),
      history_visibility: str(c('historyVisibility')?.history_visibility),
      state_events: first[i * 4 + 1]![1] as number,
      room_type: str(create.type),
      avatar: str(c('avatar')?.url),
      topic: str(c('topic')?.topic),
    };
  });
}

/** Ascending, nulls first (as Synapse's SQL orders them on SQLite). */
function compare(a: unknown, b: unknown): number {
  if (a === b) return 0;
  if (a === null || a === undefined) return -1;
  if (b === null || b === undefined) return 1;
  return (a as string | number | boolean) < (b as string | number | boolean) ? -1 : 1;
}

async function listRooms(ctx: ApiContext, req: Request) {
  await requireAdmin(ctx, req);
  const from = queryInt(req, 'from', 0);
  const limit = queryInt(req, 'limit', 100);
  const orderBy = (req.query.order_by ?? 'name') as Order;
  if (!ORDERS.includes(orderBy)) throw errors.invalidParam(`Query parameter 'order_by' must be one of [${ORDERS.map((o) => `'${o}'`).join(', ')}]`);
  const searchTerm = req.query.search_term;
  if (searchTerm === '') throw errors.invalidParam('search_term cannot be an empty string');
  const publicRooms = queryBool(req, 'public_rooms');
  const emptyRooms = queryBool(req, 'empty_rooms');
  const dir = req.query.dir ?? 'f';
  if (dir !== 'f' && dir !== 'b') throw errors.invalidParam("Query parameter 'dir' must be one of ['b', 'f']");

  const ids = await allRoomIds(ctx);
  const term = searchTerm?.toLowerCase();
  const rooms = (await roomSummaries(ctx, ids)).filter((r): r is RoomSummary => {
    if (!r) return false;
    if (term !== undefined) {
      // Synapse: the name contains the term, or the canonical alias's localpart does, or it is the room id.
      const alias = r.canonical_alias?.toLowerCase();
      const aliasLocalpart = alias ? alias.slice(1, alias.lastIndexOf(':') > 0 ? alias.lastIndexOf(':') : undefined) : undefined;
      if (!r.name?.toLowerCase().includes(term) && !aliasLocalpart?.includes(term) && r.room_id !== searchTerm) return false;
    }
    if (publicRooms !== undefined && r.public !== publicRooms) return false;
    if (emptyRooms !== undefined && (r.joined_members === 0) !== emptyRooms) return false;
    return true;
  });
  const column: keyof RoomSummary = orderBy === 'alphabetical' ? 'name' : orderBy === 'size' ? 'joined_members' : orderBy;
  const sign = (DESCENDING.has(orderBy) ? -1 : 1) * (dir === 'b' ? -1 : 1);
  rooms.sort((a, b) => sign * (compare(a[column], b[column]) || compare(a.room_id, b.room_id)));
  const page = rooms.slice(from, from + limit).map(({ avatar: _a, topic: _t, ...listed }) => listed);
  const body: JsonObject = { offset: from, rooms: page as unknown as JsonObject[], total_rooms: rooms.length };
  if (from + limit < rooms.length) body.next_batch = from + limit;
  if (from > 0) body.prev_batch = from > limit ? from - limit : 0;
  return { body };
}

export function registerAdminRoomListRoutes(front: Front, ctx: ApiContext): void {
  front.route('GET', '/_synapse/admin/v1/rooms', (req) => listRooms(ctx, req));
}
