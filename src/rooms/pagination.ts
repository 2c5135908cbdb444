/**
 * Paging through a room's timeline (`/messages`, `/context`, initial sync, and /sync's limited
 * timelines): the `p<N>` tokens, and the scan that skips what a filter or history visibility
 * leaves out.
 */
import { errors } from '../http/errors';
import type { RoomEvent } from '../store/room-reader';
import type { ApiContext } from '../api/context';
import { parseOutboxEntry } from '../runtime/envelope';
import { decode } from '../store/codec';
import { roomData } from '../store/keys';
import { roomShard } from '../store/shard-keys';
import { parseSyncToken } from '../sync/token';
import type { RoomOutput } from './model';
import { filterAllowsRoom, filterMatches, type RoomEventFilter } from './event-filter';
import { visibleEvents } from './visibility';

/**
 * A room pagination token is `p<N>`: the gap after stream position N. Backwards from it come the
 * events at N and before; forwards, the events after N.
 */
export function encodeToken(pos: number): string {
  return `p${pos}`;
}

export function decodeToken(token: string, name: string): number {
  // Positions of backfilled history are negative (below everything the room knew before).
  const m = /^p(-?\d{1,15})$/.exec(token);
  if (!m) throw errors.invalidParam(`Malformed ${name} token`);
  return Number(m[1]);
}

/** How many outbox entries a sync token's position is looked for in before falling back to timestamps. */
const CUT_SCAN_MAX = 10_000;
const CUT_SCAN_PAGE = 500;

/**
 * The room's gap for any token Axon hands out where the spec takes a stream position: a room
 * token `p<N>` as is, or a sync token (`next_batch`, `since`: a time cut `s<µs>`, see
 * src/sync/token.ts), which becomes the gap after the room's last event committed before the cut.
 * Clients pass /sync's tokens to `/messages`, `/relations` and `/members?at=` all the time.
 *
 * Every event committed at or after the cut has an entry in its shard's outbox with an id at or
 * after `<cutMs>-0` (the same clock), so the room's newest position, lowered below the first of
 * its events found there, is exact. When that part of the outbox is trimmed away, or too long to
 * scan, the events' own timestamps (`origin_server_ts`) stand in: close enough for paging.
 */
export async function roomGapOf(ctx: ApiContext, roomId: string, token: string, name: string): Promise<number> {
  if (!token.startsWith('s')) return decodeToken(token, name);
  let cutMs: number;
  try {
    cutMs = Math.floor(parseSyncToken(token).cut / 1000);
  } catch {
    throw errors.invalidParam(`Malformed ${name} token`);
  }
  const shard = roomShard(ctx, roomId);
  const top = (await ctx.redis.zrevrange(shard.data(roomData.timeline(roomId)), 0, 0, 'WITHSCORES')) as string[];
  if (top.length < 2) return 0;
  const topPos = Number(top[1]);
  const first = (await ctx.redis.xrange(shard.outbox, '-', '+', 'COUNT', 1)) as [string, string[]][];
  const trimmed = first.length > 0 && Number(first[0]![0].split('-')[0]) > cutMs;
  if (!trimmed) {
    let start = `${cutMs}-0`;
    for (let scanned = 0; scanned < CUT_SCAN_MAX; scanned += CUT_SCAN_PAGE) {
      const rows = (await ctx.redis.xrangeBuffer(shard.outbox, start, '+', 'COUNT', CUT_SCAN_PAGE)) as [Buffer, Buffer[]][];
      for (const [, fields] of rows) {
        const entry = parseOutboxEntry(fields);
        if (!entry || entry.kind !== 'room' || entry.actorId !== roomId) continue;
        let out: RoomOutput | null = null;
        try {
          out = decode<RoomOutput>(entry.body);
        } catch {
          continue;
        }
        // A room's events reach its outbox in position order: the first one found is the lowest.
        if (typeof out?.pos === 'number' && out.pos > 0) return Math.min(topPos, out.pos - 1);
      }
      if (rows.length < CUT_SCAN_PAGE) return topPos;
      start = `(${rows[rows.length - 1]![0].toString()}`;
    }
  }
  const ids = (await ctx.redis.zrevrangebyscore(shard.data(roomData.byTimestamp(roomId)), cutMs - 1, '-inf', 'LIMIT', 0, 1)) as string[];
  const e = ids[0] ? await ctx.rooms.event(roomId, ids[0]) : null;
  return e ? e.pos : 0;
}

/**
 * Up to `limit` events from the gap `from` in direction `dir`, stopping at the gap `to`, skipping
 * events the filter or history visibility leave out. `end` is the gap after the last event
 * scanned, or null when the timeline (or `to`) is reached.
 */
export async function paginate(ctx: ApiContext, roomId: string, userId: string, dir: 'b' | 'f', from: number, to: number | null, limit: number, filter: RoomEventFilter): Promise<{ events: RoomEvent[]; end: number | null }> {
  const out: RoomEvent[] = [];
  if (limit <= 0) return { events: out, end: from };
  // A filter that leaves this room out lets none of its events through: nothing to scan.
  if (!filterAllowsRoom(filter, roomId)) return { events: out, end: null };
  // RoomReader.timeline takes an exclusive position: backwards from gap g starts below g + 1.
  let cursor: number | null = dir === 'b' ? from + 1 : from;
  let end: number | null = from;
  while (out.length < limit) {
    const page = await ctx.rooms.timeline(roomId, dir, cursor, Math.max(limit - out.length, 20));
    let events = page.events;
    let reachedTo = false;
    if (to !== null) {
      const within = events.filter((e) => (dir === 'b' ? e.pos > to : e.pos <= to));
      reachedTo = within.length < events.length;
      events = within;
    }
    const matching = events.filter((e) => filterMatches(filter, e.event));
    const visible = await visibleEvents(ctx, roomId, userId, matching);
    let scannedTo: number | null = null;
    for (const e of events) {
      scannedTo = e.pos;
      if (visible.includes(e)) {
        out.push(e);
        if (out.length === limit) break;
      }
    }
    const exhausted = reachedTo || page.next === null;
    if (scannedTo !== null) end = dir === 'b' ? scannedTo - 1 : scannedTo;
    const lastOfPage = events[events.length - 1];
    if (out.length === limit) {
      // Stopped inside the page: more may follow unless this was the very end.
      if (exhausted && scannedTo === lastOfPage?.pos) end = null;
      break;
    }
    if (exhausted) {
      end = null;
      break;
    }
    cursor = page.next;
  }
  return { events: out, end };
}
