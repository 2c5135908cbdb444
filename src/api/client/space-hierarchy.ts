/**
 * `GET /v1/rooms/{roomId}/hierarchy` (spec: "Spaces"): the rooms of a space, breadth first over
 * `m.space.child` state, each with its summary and its own `m.space.child` events
 * (`children_state`). Only rooms on this server are walked (remote rooms need federation's
 * `/hierarchy`), and only rooms the user may see: joined, world-readable, or public to join.
 * Children the user may not see are left out of `rooms` but still named in their parent's
 * `children_state`, as the spec allows.
 *
 * Pagination: the walk is deterministic, so the `from` token is an offset into it together with
 * the parameters it was made for (reusing it with other parameters is M_INVALID_PARAM).
 */
import type { Front } from '../../http/server';
import { MatrixError, errors } from '../../http/errors';
import { isJsonObject, type JsonObject, type JsonValue } from '../../protocol/json';
import { effectiveHistoryVisibility } from '../../protocol/history-visibility';
import { servableToClients, type RoomEvent } from '../../store/room-reader';
import { requireUser } from './auth';
import type { ApiContext } from '../context';
import { requireRoomId } from '../../http/params';

const DEFAULT_LIMIT = 50;
const MAX_LIMIT = 100;
const MAX_DEPTH = 20;
/** A walk visits at most this many rooms (a guard against huge or malicious space graphs). */
const MAX_ROOMS = 2000;

interface HierarchyToken {
  o: number;
  d: number;
  s: boolean;
  r: string;
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
    if (!(await ctx.rooms.meta(roomId))) throw errors.notFound('Unknown room');
    if (!(await mayView(ctx, roomId, user.userId))) throw new MatrixError(403, 'M_FORBIDDEN', 'You may not see this room');

    const rooms: JsonObject[] = [];
    const seen = new Set<string>([roomId]);
    const queue: { roomId: string; depth: number }[] = [{ roomId, depth: 0 }];
    let index = 0;
    let more = false;
    while (queue.length) {
      const { roomId: current, depth } = queue.shift()!;
      const visible = current === roomId || ((await ctx.rooms.meta(current)) !== null && (await mayView(ctx, current, user.userId)));
      if (!visible) continue;
      const state = await ctx.rooms.currentState(current);
      const childEvents = orderedChildren(state.filter(servableToClients), suggestedOnly);
      if (index >= offset) {
        if (rooms.length === limit) {
          more = true;
          break;
        }
        rooms.push({ ...summary(current, state, await ctx.rooms.members(current, 'join')), children_state: childEvents.map(strippedChild) });
      }
      index++;
      if (depth < maxDepth) {
        for (const c of childEvents) {
          const child = String(c.event.state_key);
          if (seen.has(child) || seen.size >= MAX_ROOMS) continue;
          seen.add(child);
          queue.push({ roomId: child, depth: depth + 1 });
        }
      }
    }
    const body: JsonObject = { rooms };
    if (more) body.next_batch = encodeHierarchyToken({ o: offset + rooms.length, d: maxDepth, s: suggestedOnly, r: roomId });
    return { body };
  });
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

/** Joined, world-readable, or open to join (`public`; `knock` rooms show their summary too, as the spec allows). */
async function mayView(ctx: ApiContext, roomId: string, userId: string): Promise<boolean> {
  if ((await ctx.rooms.membership(roomId, userId)) === 'join') return true;
  const [hv, jr] = await Promise.all([
    ctx.rooms.currentState(roomId, { type: 'm.room.history_visibility', stateKey: '' }),
    ctx.rooms.currentState(roomId, { type: 'm.room.join_rules', stateKey: '' }),
  ]);
  if (effectiveHistoryVisibility(hv[0]?.event.content as JsonValue | undefined) === 'world_readable') return true;
  const rule = contentString(jr[0], 'join_rule');
  return rule === 'public' || rule === 'knock';
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
function orderedChildren(state: RoomEvent[], suggestedOnly: boolean): RoomEvent[] {
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
  for (const e of state) if (servableToClients(e)) byKey.set(`${String(e.event.type)}\u0000${String(e.event.state_key ?? '')}`, e);
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
