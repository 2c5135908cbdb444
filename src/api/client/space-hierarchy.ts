/**
 * `GET /v1/rooms/{roomId}/hierarchy` (spec: "Spaces"): the rooms of a space, depth first over
 * `m.space.child` state (as the spec and Synapse walk it), each with its summary and, for spaces,
 * its own `m.space.child` events (`children_state`). Rooms this server is in are read here; the
 * others are asked of the servers in the `via` of the event that names them (federation
 * `/hierarchy`, src/api/federation/remote-hierarchy.ts, answers cached): a remote space's answer
 * also describes its children, which are used as they are unless they are spaces themselves to
 * walk further, and the children it calls inaccessible are not asked about. Only rooms the user
 * may see are listed: joined or invited, world-readable, public or knock to join, or restricted
 * to a room the user is in. Children the user may not see are left out of `rooms` but still named
 * in their parent's `children_state`, as the spec allows.
 *
 * A room this server does not know is walked from the servers in the client's
 * `org.matrix.msc4235.via` parameters (Synapse's MSC4235); without them it is 403 `M_FORBIDDEN`
 * (space_hierarchy.yaml lists "the room does not exist" among the 403 reasons; Synapse answers so).
 *
 * Pagination: the walk is deterministic for a given state of the rooms (remote answers are
 * cached), so the `from` token is an offset into it together with the parameters it was made for
 * (reusing it with other parameters is M_INVALID_PARAM).
 */
import type { Front } from '../../http/server';
import { MatrixError, errors } from '../../http/errors';
import { isJsonObject, type JsonObject, type JsonValue } from '../../protocol/json';
import { effectiveHistoryVisibility } from '../../protocol/history-visibility';
import { isUserOfServer } from '../../rooms/visibility';
import { servableAsState, type RoomEvent } from '../../store/room-reader';
import { requireUser } from './auth';
import type { ApiContext, RemoteHierarchy } from '../context';
import { requireRoomId } from '../../http/params';

const DEFAULT_LIMIT = 50;
const MAX_LIMIT = 100;
const MAX_DEPTH = 20;
/** A walk visits at most this many rooms (a guard against huge or malicious space graphs). */
const MAX_ROOMS = 2000;
/** Children of one space considered (as Synapse's MAX_ROOMS_PER_SPACE). */
export const MAX_CHILDREN_PER_SPACE = 50;

interface HierarchyToken {
  o: number;
  d: number;
  s: boolean;
  r: string;
}

/** A room waiting in the walk: where to ask for it, and what its parent's server said of it. */
interface QueuedRoom {
  roomId: string;
  via: string[];
  depth: number;
  remoteEntry?: JsonObject;
}

export function registerSpaceHierarchyRoutes(front: Front, ctx: ApiContext): void {
  front.route('GET', '/_matrix/client/v1/rooms/:roomId/hierarchy', async (req) => {
    const user = await requireUser(ctx, req);
    const roomId = requireRoomId(req.params.roomId);
    const suggestedRaw = req.query.suggested_only;
    if (suggestedRaw !== undefined && suggestedRaw !== 'true' && suggestedRaw !== 'false') throw errors.invalidParam('suggested_only must be true or false');
    const suggestedOnly = suggestedRaw === 'true';
    const limit = intParam(req.query.limit, 'limit', DEFAULT_LIMIT, 1, MAX_LIMIT);
    const maxDepth = intParam(req.query.max_depth, 'max_depth', MAX_DEPTH, 0, MAX_DEPTH);
    let offset = 0;
    if (req.query.from !== undefined && req.query.from !== '') {
      const t = decodeHierarchyToken(req.query.from);
      if (t.r !== roomId || t.d !== maxDepth || t.s !== suggestedOnly) throw errors.invalidParam('The from token was made for other parameters');
      offset = t.o;
    }
    // A room this server does not have can still be walked when the client names servers that
    // have it (MSC4235's `via`, as Synapse takes it); without them it is unknown here.
    const rootVia = (req.queryAll['org.matrix.msc4235.via'] ?? []).filter((v) => v !== '');
    const rootLocal = (await ctx.rooms.meta(roomId)) !== null;
    if (rootLocal) {
      if (!(await mayView(ctx, roomId, user.userId))) throw new MatrixError(403, 'M_FORBIDDEN', 'You may not see this room');
    } else {
      if (!rootVia.length) throw new MatrixError(403, 'M_FORBIDDEN', 'Unknown room');
      if (!(await describe(ctx, { roomId, via: rootVia, depth: 0 }, user.userId, suggestedOnly, maxDepth, false))) throw new MatrixError(403, 'M_FORBIDDEN', 'You may not see this room');
    }

    const rooms: JsonObject[] = [];
    const processed = new Set<string>();
    // The next room to walk is the last one (depth first, children pushed in reverse order).
    const stack: QueuedRoom[] = [{ roomId, via: rootVia, depth: 0 }];
    const pending: QueuedRoom[] = [];
    let index = 0;
    let more = false;
    while (stack.length) {
      const queued = stack.pop()!;
      if (processed.has(queued.roomId)) continue;
      if (processed.size >= MAX_ROOMS) break;
      processed.add(queued.roomId);
      const entry = await describe(ctx, queued, user.userId, suggestedOnly, maxDepth, rootLocal && queued.roomId === roomId);
      if (!entry) continue;
      if (index >= offset) {
        if (rooms.length === limit) {
          more = true;
          break;
        }
        rooms.push(entry.room);
      }
      index++;
      if (queued.depth < maxDepth) {
        const children = (entry.room.children_state as JsonObject[]).filter((c) => !entry.inaccessible.has(String(c.state_key)));
        for (const c of children.reverse()) {
          const child = String(c.state_key);
          if (processed.has(child)) continue;
          const via = ((c.content as JsonObject).via as JsonValue[]).filter((v): v is string => typeof v === 'string');
          const remoteEntry = entry.children.get(child);
          const next: QueuedRoom = { roomId: child, via, depth: queued.depth + 1, ...(remoteEntry ? { remoteEntry } : {}) };
          stack.push(next);
          pending.push(next);
        }
        prefetch(ctx, pending.splice(0), suggestedOnly, maxDepth);
      }
    }
    const body: JsonObject = { rooms };
    if (more) body.next_batch = encodeHierarchyToken({ o: offset + rooms.length, d: maxDepth, s: suggestedOnly, r: roomId });
    return { body };
  });
}

/**
 * Starts the federation `/hierarchy` requests a space's children will need, all at once, so the
 * walk (which visits them one by one) finds them answered or under way in the cache instead of
 * waiting on each server in turn. Failures are the walk's to see; nothing is awaited here.
 */
function prefetch(ctx: ApiContext, children: QueuedRoom[], suggestedOnly: boolean, maxDepth: number): void {
  const hierarchy = ctx.federation?.hierarchy;
  if (!hierarchy) return;
  for (const c of children) {
    if (!c.via.length || (c.remoteEntry && (c.remoteEntry.room_type !== 'm.space' || c.depth >= maxDepth))) continue;
    void serverInRoom(ctx, c.roomId, ctx.config.serverName)
      .then((local) => (local ? null : hierarchy(c.roomId, c.via, suggestedOnly)))
      .catch(() => null);
  }
}

/** A room of the walk as the user may see it (with what a remote answer said of its children), or null. */
async function describe(ctx: ApiContext, queued: QueuedRoom, userId: string, suggestedOnly: boolean, maxDepth: number, isRoot: boolean): Promise<{ room: JsonObject; children: Map<string, JsonObject>; inaccessible: Set<string> } | null> {
  const { roomId } = queued;
  if (isRoot || (await serverInRoom(ctx, roomId, ctx.config.serverName))) {
    if (!isRoot && !(await mayView(ctx, roomId, userId))) return null;
    return { room: await localEntry(ctx, roomId, suggestedOnly, true), children: new Map(), inaccessible: new Set() };
  }
  // Not in the room: what the parent's server said of it will do for a room that is not a space
  // or whose children are not wanted; otherwise the room's own servers are asked.
  let remote: RemoteHierarchy | null = null;
  let room: JsonObject | undefined;
  if (queued.remoteEntry && (queued.remoteEntry.room_type !== 'm.space' || queued.depth >= maxDepth)) {
    room = { ...queued.remoteEntry, children_state: [] };
  } else if (ctx.federation?.hierarchy && queued.via.length) {
    remote = await ctx.federation.hierarchy(roomId, queued.via, suggestedOnly);
    if (remote) room = { ...remote.room, children_state: remote.room.room_type === 'm.space' ? remote.childrenState.slice(0, MAX_CHILDREN_PER_SPACE) : [] };
  }
  if (!room || !(await mayViewRemote(ctx, roomId, room, userId))) return null;
  return { room, children: remote?.children ?? new Map(), inaccessible: remote?.inaccessible ?? new Set() };
}

/** A local room's entry: its summary, and for a space its child events (when `withChildren`). */
export async function localEntry(ctx: ApiContext, roomId: string, suggestedOnly: boolean, withChildren: boolean): Promise<JsonObject> {
  const state = await ctx.rooms.currentState(roomId);
  const out = summary(roomId, state, await ctx.rooms.members(roomId, 'join'));
  const allowed = allowedRoomIds(state);
  if (allowed.length) out.allowed_room_ids = allowed;
  if (withChildren) out.children_state = out.room_type === 'm.space' ? orderedChildren(state.filter(servableAsState), suggestedOnly).slice(0, MAX_CHILDREN_PER_SPACE).map(strippedChild) : [];
  return out;
}

/** Whether one of `serverName`'s users is joined to the room (current state). */
export async function serverInRoom(ctx: ApiContext, roomId: string, serverName: string): Promise<boolean> {
  if (!(await ctx.rooms.meta(roomId))) return false;
  for (const u of (await ctx.rooms.members(roomId, 'join')).keys()) if (isUserOfServer(u, serverName)) return true;
  return false;
}

/** Rooms whose members may join a restricted room (its join rule's `allow` list). */
function allowedRoomIds(state: RoomEvent[]): string[] {
  const jr = state.find((e) => e.event.type === 'm.room.join_rules' && e.event.state_key === '');
  const c = jr?.event.content as JsonValue | undefined;
  if (!isJsonObject(c ?? null)) return [];
  const content = c as JsonObject;
  if (content.join_rule !== 'restricted' && content.join_rule !== 'knock_restricted') return [];
  if (!Array.isArray(content.allow)) return [];
  const out: string[] = [];
  for (const a of content.allow) if (isJsonObject(a) && a.type === 'm.room_membership' && typeof a.room_id === 'string') out.push(a.room_id);
  return out;
}

/** A remote room's entry shown to the user: open to see or join, or the user is in, invited to, or allowed by a room they are in. */
async function mayViewRemote(ctx: ApiContext, roomId: string, room: JsonObject, userId: string): Promise<boolean> {
  const rule = typeof room.join_rule === 'string' ? room.join_rule : 'public';
  if (rule === 'public' || rule === 'knock' || rule === 'knock_restricted' || room.world_readable === true) return true;
  if (Array.isArray(room.allowed_room_ids)) {
    for (const r of room.allowed_room_ids) if (typeof r === 'string' && (await ctx.rooms.membership(r, userId)) === 'join') return true;
  }
  const m = await ctx.rooms.membership(roomId, userId);
  return m === 'join' || m === 'invite';
}

function intParam(raw: string | undefined, name: string, fallback: number, min: number, max: number): number {
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d{1,9}$/.test(raw)) throw errors.invalidParam(`${name} must be a non-negative integer`);
  const n = Number(raw);
  if (n < min) throw errors.invalidParam(`${name} must be at least ${min}`);
  return Math.min(n, max);
}

function encodeHierarchyToken(t: HierarchyToken): string {
  return `h${Buffer.from(JSON.stringify(t)).toString('base64url')}`;
}

function decodeHierarchyToken(raw: string): HierarchyToken {
  try {
    if (!raw.startsWith('h')) throw new Error('prefix');
    const t = JSON.parse(Buffer.from(raw.slice(1), 'base64url').toString('utf8')) as HierarchyToken;
    if (!Number.isSafeInteger(t.o) || t.o < 0 || !Number.isSafeInteger(t.d) || typeof t.s !== 'boolean' || typeof t.r !== 'string') throw new Error('shape');
    return t;
  } catch {
    throw errors.invalidParam('Malformed from token');
  }
}

/** Joined or invited, world-readable, open to join or knock, or restricted to a room the user is in. */
async function mayView(ctx: ApiContext, roomId: string, userId: string): Promise<boolean> {
  const m = await ctx.rooms.membership(roomId, userId);
  if (m === 'join' || m === 'invite') return true;
  const [hv, jr] = await Promise.all([
    ctx.rooms.currentState(roomId, { type: 'm.room.history_visibility', stateKey: '' }),
    ctx.rooms.currentState(roomId, { type: 'm.room.join_rules', stateKey: '' }),
  ]);
  if (effectiveHistoryVisibility(hv[0]?.event.content as JsonValue | undefined) === 'world_readable') return true;
  const rule = contentString(jr[0], 'join_rule');
  if (rule === 'public' || rule === 'knock' || rule === 'knock_restricted') return true;
  for (const r of allowedRoomIds(jr)) if ((await ctx.rooms.membership(r, userId)) === 'join') return true;
  return false;
}

function contentString(e: RoomEvent | undefined, key: string): string | undefined {
  const c = e?.event.content;
  if (!isJsonObject(c as JsonValue)) return undefined;
  const v = (c as JsonObject)[key];
  return typeof v === 'string' ? v : undefined;
}

/**
 * A space's children in the spec's order: `m.space.child` events with a non-empty `via`, by
 * `order` (valid ones first, lexicographically), then the event's origin_server_ts, then room id.
 */
export function orderedChildren(state: RoomEvent[], suggestedOnly: boolean): RoomEvent[] {
  const validOrder = (e: RoomEvent): string | null => {
    const o = (e.event.content as JsonObject | undefined)?.order;
    return typeof o === 'string' && o.length <= 50 && /^[\x20-\x7e]*$/.test(o) ? o : null;
  };
  const ts = (e: RoomEvent) => (typeof e.event.origin_server_ts === 'number' ? e.event.origin_server_ts : 0);
  return state
    .filter((e) => {
      if (e.event.type !== 'm.space.child' || typeof e.event.state_key !== 'string' || !e.event.state_key.startsWith('!')) return false;
      const content = e.event.content;
      if (!isJsonObject(content as JsonValue)) return false;
      const via = (content as JsonObject).via;
      if (!Array.isArray(via) || via.length === 0) return false;
      return !suggestedOnly || (content as JsonObject).suggested === true;
    })
    .sort((a, b) => {
      const oa = validOrder(a);
      const ob = validOrder(b);
      if (oa !== null && ob !== null && oa !== ob) return oa < ob ? -1 : 1;
      if ((oa === null) !== (ob === null)) return oa === null ? 1 : -1;
      if (ts(a) !== ts(b)) return ts(a) - ts(b);
      const ra = String(a.event.state_key);
      const rb = String(b.event.state_key);
      return ra < rb ? -1 : ra > rb ? 1 : 0;
    });
}

function strippedChild(e: RoomEvent): JsonObject {
  return { type: 'm.space.child', state_key: String(e.event.state_key), content: (e.event.content ?? {}) as JsonObject, sender: String(e.event.sender), origin_server_ts: (e.event.origin_server_ts as number) ?? 0 };
}

/** The room's summary fields (the spec's SpaceHierarchyRoomsChunk, less children_state). */
export function summary(roomId: string, state: RoomEvent[], joined: Map<string, string>): JsonObject {
  const byKey = new Map<string, RoomEvent>();
  for (const e of state) if (servableAsState(e)) byKey.set(`${String(e.event.type)}\u0000${String(e.event.state_key ?? '')}`, e);
  const get = (type: string, key: string) => contentString(byKey.get(`${type}\u0000`), key);
  const out: JsonObject = {
    room_id: roomId,
    num_joined_members: joined.size,
    world_readable: effectiveHistoryVisibility(byKey.get('m.room.history_visibility\u0000')?.event.content as JsonValue | undefined) === 'world_readable',
    guest_can_join: get('m.room.guest_access', 'guest_access') === 'can_join',
    join_rule: get('m.room.join_rules', 'join_rule') ?? 'invite',
  };
  const name = get('m.room.name', 'name');
  const topic = get('m.room.topic', 'topic');
  const avatar = get('m.room.avatar', 'url');
  const alias = get('m.room.canonical_alias', 'alias');
  const roomType = get('m.room.create', 'type');
  const encryption = get('m.room.encryption', 'algorithm');
  const version = get('m.room.create', 'room_version');
  if (name !== undefined) out.name = name;
  if (topic !== undefined) out.topic = topic;
  if (avatar !== undefined) out.avatar_url = avatar;
  if (alias !== undefined) out.canonical_alias = alias;
  if (roomType !== undefined) out.room_type = roomType;
  if (encryption !== undefined) out.encryption = encryption;
  out.room_version = version ?? '1';
  return out;
}
