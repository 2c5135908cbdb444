/**
 * Synapse's federation destinations admin API (`/_synapse/admin/v1/federation/destinations…`),
 * answered from the destination actors' state (actors/destination.ts: one actor per peer server,
 * in the user shard its name hashes to). A destination is known once its actor has state.
 *
 * Synapse's fields from ours: `retry_interval` is the backoff after the current run of failures,
 * `retry_last_ts` when that wait began (the retry time less the interval), `failure_ts` the same
 * (the actor counts consecutive failures, not when the first was), all 0/null while the peer is
 * fine. `last_successful_stream_ordering` is null: Axon's events have no global stream ordering.
 */
import { Cluster } from 'ioredis';
import { MatrixError, errors } from '../../http/errors';
import type { Front, Request } from '../../http/server';
import type { JsonObject } from '../../protocol/json';
import { decode } from '../../store/codec';
import { shardOf } from '../../store/shards';
import type { RedisClient } from '../../store/redis';
import { backoffMs, DESTINATION_KIND, type DestinationState } from '../../../actors/destination';
import type { ApiContext } from '../context';
import { queryInt, requireAdmin } from './common';
import { allRoomIds } from './room-list';

const ORDERS = ['destination', 'retry_last_ts', 'retry_interval', 'failure_ts', 'last_successful_stream_ordering'] as const;
type Order = (typeof ORDERS)[number];

interface Listed {
  destination: string;
  retry_last_ts: number;
  retry_interval: number;
  failure_ts: number | null;
  last_successful_stream_ordering: null;
}

function listed(s: DestinationState): Listed {
  const interval = s.failures > 0 ? backoffMs(s.destination, s.failures) : 0;
  const last = s.failures > 0 && s.retryAt > 0 ? s.retryAt - interval : 0;
  return { destination: s.destination, retry_last_ts: last, retry_interval: interval, failure_ts: s.failures > 0 ? last : null, last_successful_stream_ordering: null };
}

async function readDestination(ctx: ApiContext, destination: string): Promise<DestinationState | null> {
  const shard = ctx.keys.shard('user', shardOf(destination, ctx.shardCounts.user));
  const blob = await ctx.redis.getBuffer(shard.state(DESTINATION_KIND, destination));
  return blob ? decode<DestinationState>(blob) : null;
}

/** Every destination actor's state: a SCAN of the key space for their state keys (an admin's occasional listing; peers number in the thousands at most). */
async function allDestinations(ctx: ApiContext): Promise<DestinationState[]> {
  const nodes: RedisClient[] = ctx.redis instanceof Cluster ? (ctx.redis.nodes('master') as RedisClient[]) : [ctx.redis];
  const pattern = `${ctx.config.redis.keyPrefix.replace(/[*?[\]\\]/g, '\\$&')}*:state:${DESTINATION_KIND}:*`;
  const keys: string[] = [];
  for (const node of nodes) {
    let cursor = '0';
    do {
      const [next, found] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      keys.push(...found);
      cursor = next;
    } while (cursor !== '0');
  }
  const out: DestinationState[] = [];
  for (let i = 0; i < keys.length; i += 500) {
    const batch = keys.slice(i, i + 500);
    const p = ctx.redis.pipeline();
    for (const k of batch) p.getBuffer(k);
    for (const [err, blob] of (await p.exec()) ?? []) if (!err && blob) out.push(decode<DestinationState>(blob as Buffer));
  }
  return out;
}

function direction(req: Request): 1 | -1 {
  const dir = req.query.dir ?? 'f';
  if (dir !== 'f' && dir !== 'b') throw errors.invalidParam("Query parameter 'dir' must be one of ['b', 'f']");
  return dir === 'b' ? -1 : 1;
}

function compare(a: unknown, b: unknown): number {
  if (a === b) return 0;
  if (a === null || a === undefined) return -1;
  if (b === null || b === undefined) return 1;
  return (a as string | number) < (b as string | number) ? -1 : 1;
}

async function knownDestination(ctx: ApiContext, raw: string | undefined): Promise<DestinationState> {
  const s = raw ? await readDestination(ctx, raw) : null;
  if (!s) throw errors.notFound('Unknown destination');
  return s;
}

export function registerAdminDestinationRoutes(front: Front, ctx: ApiContext): void {
  const base = '/_synapse/admin/v1/federation/destinations';
  front.route('GET', base, async (req) => {
    await requireAdmin(ctx, req);
    const from = queryInt(req, 'from', 0);
    const limit = queryInt(req, 'limit', 100);
    const orderBy = (req.query.order_by ?? 'destination') as Order;
    if (!ORDERS.includes(orderBy)) throw errors.invalidParam(`Query parameter 'order_by' must be one of [${ORDERS.map((o) => `'${o}'`).join(', ')}]`);
    const sign = direction(req);
    const term = req.query.destination;
    const all = (await allDestinations(ctx)).map(listed).filter((d) => term === undefined || d.destination.toLowerCase().includes(term.toLowerCase()));
    all.sort((a, b) => sign * (compare(a[orderBy], b[orderBy]) || compare(a.destination, b.destination)));
    const page = all.slice(from, from + limit);
    const body: JsonObject = { destinations: page as unknown as JsonObject[], total: all.length };
    if (from + limit < all.length) body.next_token = String(from + page.length);
    return { body };
  });
  front.route('GET', `${base}/:destination`, async (req) => {
    await requireAdmin(ctx, req);
    return { body: listed(await knownDestination(ctx, req.params.destination)) as unknown as JsonObject };
  });
  front.route('GET', `${base}/:destination/rooms`, async (req) => {
    await requireAdmin(ctx, req);
    const d = await knownDestination(ctx, req.params.destination);
    const from = queryInt(req, 'from', 0);
    const limit = queryInt(req, 'limit', 100);
    const sign = direction(req);
    // The rooms the destination shares with us: some user of it is joined (what our sender sends it).
    const rooms: { room_id: string; stream_ordering: number }[] = [];
    for (const roomId of await allRoomIds(ctx)) {
      if (!(await ctx.rooms.hasJoinedMemberOf(roomId, d.destination))) continue;
      rooms.push({ room_id: roomId, stream_ordering: (await ctx.rooms.meta(roomId))?.seq ?? 0 });
    }
    rooms.sort((a, b) => sign * compare(a.room_id, b.room_id));
    const page = rooms.slice(from, from + limit);
    const body: JsonObject = { rooms: page, total: rooms.length };
    if (from + limit < rooms.length) body.next_token = String(from + page.length);
    return { body };
  });
  front.route('POST', `${base}/:destination/reset_connection`, async (req) => {
    await requireAdmin(ctx, req);
    const d = await knownDestination(ctx, req.params.destination);
    if (!(d.failures > 0 && d.retryAt > 0)) throw new MatrixError(400, 'M_UNKNOWN', 'The retry timing does not need to be reset for this destination.');
    // The actor's `wake` ends the backoff and sends what waits, as when the peer talks to us first.
    await ctx.actors.ask('user', DESTINATION_KIND, d.destination, { t: 'wake' });
    return { body: {} };
  });
}
