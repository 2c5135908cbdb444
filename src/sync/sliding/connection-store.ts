/**
 * Per connection (user, device, conn_id): what each room was last sent, so the next answer says
 * only what is new. Kept in Redis on the user's shard (`slidingSyncData`), one hash per connection:
 *
 * - `g`: the connection's generation, a random id that is part of every `pos` it gives (a `pos` of
 *   a connection that expired and started again is unknown, never mistaken for the new one's);
 * - `n`: the counter of answers;
 * - `p:<n>`: the state as of answer n (JSON ConnectionState).
 *
 * A request with `pos` n reads `p:<n>`; its answer writes `p:<m>` and drops every state below n
 * (n stays: a client whose answer was lost asks with n again). An unknown `pos` — expired, evicted,
 * another generation — is `M_UNKNOWN_POS`: the client starts the connection again. Bounds: the key
 * expires `CONNECTION_TTL_MS` after its last use; a device keeps at most `MAX_CONNECTIONS_PER_DEVICE`
 * connections (the least recently used goes); a state remembers at most `MAX_ROOMS_REMEMBERED`
 * rooms (the least recently sent go, and are sent afresh, `initial`, if they come back).
 */
import { randomBytes } from 'node:crypto';
import { shardOf } from '../../store/shards';
import { slidingSyncData } from '../../store/keys';
import type { ApiContext } from '../../api/context';

export const CONNECTION_TTL_MS = 7 * 24 * 3600_000;
export const MAX_CONNECTIONS_PER_DEVICE = 20;
export const MAX_ROOMS_REMEMBERED = 2000;

/** What a room was last sent on this connection. */
export interface RoomSent {
  /** The membership it was sent with ('join', 'invite', 'knock', 'leave', 'ban'). */
  m: string;
  /** Timeline position of the newest event the client has (what comes after is new). */
  t: number;
  /** The state snapshot the required state was last computed from. */
  s: number;
  /** The required-state config it was sent with (fingerprint). */
  c: string;
  /** The timeline limit it was sent with. */
  tl: number;
  /** Members sent for `$LAZY` (the timeline's senders so far). */
  l?: string[];
  /** Unread counts sent: [notification_count, highlight_count]. */
  n?: [number, number];
  /** The bump_stamp sent. */
  b: number;
  /** When it was last sent (ms), for the bound. */
  at: number;
}

export interface ConnectionState {
  /** The time cut of the answer (Redis TIME, µs): windows of the next one start here. */
  cut: number;
  rooms: Record<string, RoomSent>;
  /** Room subscriptions, kept until unsubscribed: room id → [required_state pairs, timeline_limit, v4 exclude?]. */
  subs: Record<string, [[string, string][], number] | [[string, string][], number, [string, string][]]>;
  /** The last answer's lists as sent (text), so an unchanged list alone does not end a long-poll. */
  lists?: string;
  /** MSC4308: the thread subscription stream id the extension last reported up to (absent: none yet). */
  tsub?: number;
}

export function emptyConnectionState(): ConnectionState {
  return { cut: 0, rooms: {}, subs: {} };
}

export class UnknownPos extends Error {}

interface Parsed {
  gen: string;
  n: number;
}

function parsePos(pos: string): Parsed | null {
  const m = /^([0-9a-f]{8})_(\d{1,15})$/.exec(pos);
  return m ? { gen: m[1]!, n: Number(m[2]) } : null;
}

function keysOf(ctx: ApiContext, userId: string, deviceId: string, connId: string) {
  const shard = ctx.keys.shard('user', shardOf(userId, ctx.shardCounts.user));
  return { conn: shard.data(slidingSyncData.connection(userId, deviceId, connId)), set: shard.data(slidingSyncData.connections(userId, deviceId)) };
}

export interface Loaded {
  state: ConnectionState;
  /** The answer number the state belongs to (0: a new connection). */
  n: number;
  gen: string | null;
}

/** The state a `pos` stands for (none: a new connection); throws UnknownPos. */
export async function loadConnection(ctx: ApiContext, userId: string, deviceId: string, connId: string, pos: string | undefined): Promise<Loaded> {
  if (pos === undefined) return { state: emptyConnectionState(), n: 0, gen: null };
  const p = parsePos(pos);
  if (!p) throw new UnknownPos('Unknown pos');
  const { conn } = keysOf(ctx, userId, deviceId, connId);
  const [gen, json] = await ctx.redis.hmget(conn, 'g', `p:${p.n}`);
  if (gen !== p.gen || json === null || json === undefined) throw new UnknownPos('Unknown pos');
  try {
    return { state: JSON.parse(json) as ConnectionState, n: p.n, gen };
  } catch {
    throw new UnknownPos('Unknown pos');
  }
}

/** Keep at most MAX_ROOMS_REMEMBERED rooms: the least recently sent are forgotten. */
export function boundRooms(state: ConnectionState): void {
  const ids = Object.keys(state.rooms);
  if (ids.length <= MAX_ROOMS_REMEMBERED) return;
  ids.sort((a, b) => state.rooms[a]!.at - state.rooms[b]!.at);
  for (const id of ids.slice(0, ids.length - MAX_ROOMS_REMEMBERED)) delete state.rooms[id];
}

/**
 * Store the state of a new answer and return its `pos`. A new connection (`loaded.gen` null)
 * replaces whatever the conn_id held before (a client starting again).
 */
export async function saveConnection(ctx: ApiContext, userId: string, deviceId: string, connId: string, loaded: Loaded, state: ConnectionState): Promise<string> {
  boundRooms(state);
  const { conn, set } = keysOf(ctx, userId, deviceId, connId);
  let gen = loaded.gen;
  if (gen === null) {
    gen = randomBytes(4).toString('hex');
    await ctx.redis.multi().del(conn).hset(conn, 'g', gen, 'n', 0).exec();
  }
  const n = await ctx.redis.hincrby(conn, 'n', 1);
  const old = loaded.gen === null ? [] : (await ctx.redis.hkeys(conn)).filter((f) => f.startsWith('p:') && Number(f.slice(2)) < loaded.n);
  const m = ctx.redis.multi().hset(conn, `p:${n}`, JSON.stringify(state));
  if (old.length) m.hdel(conn, ...old);
  m.pexpire(conn, CONNECTION_TTL_MS).zadd(set, Date.now(), connId).pexpire(set, CONNECTION_TTL_MS);
  const res = await m.exec();
  for (const [err] of res ?? []) if (err) throw err;
  // The device's connections beyond the bound: the least recently used go.
  const excess = await ctx.redis.zrange(set, 0, -(MAX_CONNECTIONS_PER_DEVICE + 1));
  if (excess.length) {
    const d = ctx.redis.multi().zrem(set, ...excess);
    for (const c of excess) d.del(keysOf(ctx, userId, deviceId, c).conn);
    await d.exec();
  }
  return `${gen}_${n}`;
}
