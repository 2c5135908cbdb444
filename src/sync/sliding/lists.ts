/**
 * Sliding windows over the user's rooms: filters, the order by recency, the ranges. Pure: the
 * facts about each room are gathered by the engine first (and only those the filters need).
 */
import type { ListConfig, ListFilters } from './request';

export interface RoomFacts {
  roomId: string;
  membership: string;
  /** Recency: `origin_server_ts` of the newest event of a bumping type (see BUMP_EVENT_TYPES). */
  bumpStamp: number;
  isDm?: boolean;
  isEncrypted?: boolean;
  /** `m.room.create`'s `type`; null for a room without one; undefined when unknown. */
  roomType?: string | null;
  tags?: string[];
  name?: string | null;
}

/** Which facts a filter set needs (the engine reads only those). */
export function factsNeeded(filters: ListFilters): { dm: boolean; encrypted: boolean; roomType: boolean; tags: boolean; spaces: boolean; name: boolean } {
  return {
    dm: filters.isDm !== undefined,
    encrypted: filters.isEncrypted !== undefined,
    roomType: filters.roomTypes !== undefined || filters.notRoomTypes !== undefined,
    tags: filters.tags !== undefined || filters.notTags !== undefined,
    spaces: filters.spaces !== undefined,
    name: filters.roomNameLike !== undefined,
  };
}

/**
 * Whether a room passes a list's filters. `spaceChildren`: the rooms the listed spaces hold (for
 * `spaces`), computed by the engine.
 */
export function passesFilters(room: RoomFacts, f: ListFilters, spaceChildren: ReadonlySet<string> | null): boolean {
  if (f.isDm !== undefined && !!room.isDm !== f.isDm) return false;
  if (f.isEncrypted !== undefined && !!room.isEncrypted !== f.isEncrypted) return false;
  if (f.isInvite !== undefined && (room.membership === 'invite') !== f.isInvite) return false;
  const type = room.roomType ?? null;
  if (f.roomTypes !== undefined && !f.roomTypes.includes(type)) return false;
  if (f.notRoomTypes !== undefined && f.notRoomTypes.includes(type)) return false;
  if (f.spaces !== undefined && !(spaceChildren?.has(room.roomId) ?? false)) return false;
  const tags = room.tags ?? [];
  // not_tags wins over tags, as MSC4186 says.
  if (f.notTags !== undefined && tags.some((t) => f.notTags!.includes(t))) return false;
  if (f.tags !== undefined && f.tags.length > 0 && !tags.some((t) => f.tags!.includes(t))) return false;
  if (f.roomNameLike !== undefined && !(room.name ?? '').toLowerCase().includes(f.roomNameLike.toLowerCase())) return false;
  return true;
}

/** Newest first; ties by room id so the order is stable between answers. */
export function byRecency(a: RoomFacts, b: RoomFacts): number {
  if (a.bumpStamp !== b.bumpStamp) return b.bumpStamp - a.bumpStamp;
  return a.roomId < b.roomId ? -1 : a.roomId > b.roomId ? 1 : 0;
}

export interface ListResult {
  count: number;
  ops: { op: 'SYNC'; range: [number, number]; room_ids: string[] }[];
  /** Every room of the ranges, in list order. */
  roomIds: string[];
}

/**
 * A list from every room: the rooms passing its filters, sorted, cut to its ranges. The engine
 * reads lists from the recency index instead (`listFromTop`, src/sync/sliding/recency.ts); this is
 * the definition the index path is checked against (test/sync/sliding).
 */
export function computeList(rooms: readonly RoomFacts[], config: ListConfig, spaceChildren: ReadonlySet<string> | null): ListResult {
  const passing = rooms.filter((r) => passesFilters(r, config.filters, spaceChildren));
  passing.sort(byRecency);
  return listFromTop(passing.length, passing, config);
}

/**
 * A list from its first rooms in order (at least as many as its ranges reach, or all) and the
 * number of rooms passing its filters.
 */
export function listFromTop(count: number, passing: readonly RoomFacts[], config: ListConfig): ListResult {
  const ops: ListResult['ops'] = [];
  const seen = new Set<string>();
  const roomIds: string[] = [];
  for (const range of config.ranges) {
    const ids = passing.slice(range[0], range[1] + 1).map((r) => r.roomId);
    ops.push({ op: 'SYNC', range, room_ids: ids });
    for (const id of ids) {
      if (seen.has(id)) continue;
      seen.add(id);
      roomIds.push(id);
    }
  }
  return { count, ops, roomIds };
}

/**
 * Event types that move a room up the list (Synapse's default bump types): messages and the like,
 * not state churn, reactions or receipts.
 */
export const BUMP_EVENT_TYPES: ReadonlySet<string> = new Set(['m.room.create', 'm.room.message', 'm.room.encrypted', 'm.sticker', 'm.call.invite', 'm.poll.start', 'm.beacon_info']);
