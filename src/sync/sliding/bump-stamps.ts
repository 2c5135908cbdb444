/**
 * Recency of a room for sliding sync's lists: its `bump_stamp`, the `origin_server_ts` of its
 * newest event of a bumping type (BUMP_EVENT_TYPES), with the room's newest timeline position.
 *
 * Per front, a room's stamp is kept with the position it was computed at; when the room's top has
 * moved, only the events after that position are looked at (newest first, stopping at the first
 * bumping one), so a busy room costs one ZREVRANGE plus its new events. A cold room is scanned back
 * at most SCAN_LIMIT events; with no bumping event among them, the oldest scanned event's time
 * stands in (the room sinks, as Synapse's fallback to the membership event makes it).
 *
 * Timestamps rather than Synapse's stream orderings: Axon's positions are per room, and clients
 * only compare stamps. The per-user recency index (issue 18, item 5) will keep these stamps in a
 * sorted set per user, written by an outbox reader, so a list's first rooms are a ZREVRANGE instead
 * of one read per room; this cache is what fronts use until then.
 */
import { roomData } from '../../store/keys';
import { shardOf } from '../../store/shards';
import type { RoomEvent } from '../../store/room-reader';
import type { ApiContext } from '../../api/context';
import { BUMP_EVENT_TYPES } from './lists';

export interface RoomTop {
  /** The newest timeline position (null: the room has no timeline here). */
  top: number | null;
  topId: string | null;
  bumpStamp: number;
}

const SCAN_LIMIT = 200;
const PAGE = 20;
const MAX_ROOMS = 200_000;

export class BumpStampCache {
  private readonly rooms = new Map<string, RoomTop>();

  async get(ctx: ApiContext, roomId: string): Promise<RoomTop> {
    const key = ctx.keys.shard('room', shardOf(roomId, ctx.shardCounts.room)).data(roomData.timeline(roomId));
    const row = await ctx.redis.zrevrange(key, 0, 0, 'WITHSCORES');
    if (row.length < 2) return { top: null, topId: null, bumpStamp: 0 };
    const top = Number(row[1]);
    const topId = row[0]!;
    const hit = this.rooms.get(roomId);
    if (hit && hit.top === top) return hit;
    const after = hit && hit.top !== null && hit.top < top ? hit.top : null;
    let stamp: number | null = null;
    let oldest: RoomEvent | null = null;
    let cursor: number | null = top + 1;
    let scanned = 0;
    while (stamp === null && cursor !== null && scanned < SCAN_LIMIT) {
      const page = await ctx.rooms.timeline(roomId, 'b', cursor, PAGE);
      let reachedKnown = false;
      for (const e of page.events) {
        if (after !== null && e.pos <= after) {
          reachedKnown = true;
          break;
        }
        scanned++;
        oldest = e;
        if (BUMP_EVENT_TYPES.has(String(e.event.type)) && !e.rejected && !e.softFailed) {
          stamp = tsOf(e);
          break;
        }
      }
      if (reachedKnown) break;
      cursor = page.next;
    }
    const bumpStamp = stamp ?? (after !== null && hit ? hit.bumpStamp : oldest ? tsOf(oldest) : 0);
    const entry: RoomTop = { top, topId, bumpStamp };
    this.rooms.delete(roomId);
    if (this.rooms.size >= MAX_ROOMS) this.rooms.delete(this.rooms.keys().next().value!);
    this.rooms.set(roomId, entry);
    return entry;
  }
}

function tsOf(e: RoomEvent): number {
  const ts = e.event.origin_server_ts;
  return typeof ts === 'number' && Number.isSafeInteger(ts) && ts > 0 ? ts : 0;
}
