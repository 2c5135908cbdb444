/**
 * Paging through a room's timeline (`/messages`, `/context`, initial sync, and /sync's limited
 * timelines): the `p<N>` tokens, and the scan that skips what a filter or history visibility
 * leaves out.
 */
import { errors } from '../http/errors';
import type { RoomEvent } from '../store/room-reader';
import type { ApiContext } from '../api/context';
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
