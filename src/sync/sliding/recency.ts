/**
 * A list's first rooms from the user's recency index (src/readers/recency-index.ts): the index
 * is read from its top down, in pages, only as far as the list's ranges need; each room is checked
 * against the list's filters on the way, so a filtered list does not sort all rooms either. Rooms
 * the index does not hold — invites, knocks, rooms left or kicked from (placed by when the
 * membership happened), and joined rooms not indexed yet — are few, and merged in memory.
 *
 * The counts stay exact: they are counted over the user's memberships, which a request reads
 * anyway (one hash), without sorting them.
 *
 * Lazy backfill: when the index holds fewer rooms than the user is joined to (an account from
 * before the index, a room joined a moment ago whose stamp the reader does not know), the missing
 * rooms are found with one ZMSCORE, their stamps computed the old way (src/sync/sliding/
 * bump-stamps.ts, per room) and written to the index (ZADD GT, as the reader writes), so an old
 * account pays the per-room cost once, on its first sliding sync.
 */
import type { ApiContext } from '../../api/context';
import { recencyIndexData } from '../../store/keys';
import { shardOf } from '../../store/shards';
import { byRecency, type RoomFacts } from './lists';
import type { PushProgress } from '../push-progress';

export interface RecencyEntry {
  roomId: string;
  stamp: number;
}

/** Reads `count` entries of the index from `offset`, newest first. */
export type IndexPageReader = (offset: number, count: number) => Promise<RecencyEntry[]>;

/** The index as read so far in one request (pages shared by all of its lists). */
export class RecencyWalk {
  private readonly entries: RecencyEntry[] = [];
  private exhausted = false;
  private reading: Promise<void> | null = null;
  /** Pages read (tests, figures). */
  pages = 0;

  constructor(
    private readonly read: IndexPageReader,
    private readonly firstPage = 64,
  ) {}

  /** The entry at position `i` (undefined past the end). Pages grow: 64, 64, 128, 256, … */
  async at(i: number): Promise<RecencyEntry | undefined> {
    while (i >= this.entries.length && !this.exhausted) {
      this.reading ??= (async () => {
        const count = Math.max(this.firstPage, this.entries.length);
        const page = await this.read(this.entries.length, count);
        this.pages++;
        this.entries.push(...page);
        if (page.length < count) this.exhausted = true;
      })().finally(() => {
        this.reading = null;
      });
      await this.reading;
    }
    return this.entries[i];
  }
}

/**
 * The first `need` rooms of a list, newest first (ties by room id, as `byRecency`): the index
 * walked down while `accept` keeps its rooms, until `need` are kept and the next entry is older
 * than the last kept one (so rooms tied with it are all seen), merged with `extras` (rooms the
 * index does not hold, already filtered). `stampOf` records each kept room's stamp.
 */
export async function topRooms(walk: RecencyWalk, need: number, accept: (roomId: string) => boolean, extras: readonly RoomFacts[], onEntry?: (e: RecencyEntry) => void): Promise<RoomFacts[]> {
  const kept: RoomFacts[] = [];
  if (need <= 0) return kept;
  let floor = Number.NEGATIVE_INFINITY;
  for (let i = 0; ; i++) {
    const e = await walk.at(i);
    if (!e) break;
    if (kept.length >= need && e.stamp < floor) break;
    onEntry?.(e);
    if (!accept(e.roomId)) continue;
    kept.push({ roomId: e.roomId, membership: 'join', bumpStamp: e.stamp });
    if (kept.length === need) floor = e.stamp;
  }
  const all = [...kept, ...extras];
  all.sort(byRecency);
  return all.slice(0, need);
}

/** The user's recency index key (user shard). */
export function recencyKey(ctx: ApiContext, userId: string): string {
  return ctx.keys.shard('user', shardOf(userId, ctx.shardCounts.user)).data(recencyIndexData.rooms(userId));
}

/** A page reader over the user's index. */
export function indexPages(ctx: ApiContext, userId: string): IndexPageReader {
  const key = recencyKey(ctx, userId);
  return async (offset, count) => {
    const raw = await ctx.redis.zrevrange(key, offset, offset + count - 1, 'WITHSCORES');
    const out: RecencyEntry[] = [];
    for (let i = 0; i + 1 < raw.length; i += 2) out.push({ roomId: raw[i]!, stamp: Number(raw[i + 1]) });
    return out;
  };
}

/**
 * The joined rooms (of `joined`) the index does not hold, when it holds fewer than there are
 * (ZCARD first: the usual answer is "none" for one command).
 */
export async function unindexedRooms(ctx: ApiContext, userId: string, joined: readonly string[]): Promise<string[]> {
  if (joined.length === 0) return [];
  const key = recencyKey(ctx, userId);
  if ((await ctx.redis.zcard(key)) >= joined.length) return [];
  const missing: string[] = [];
  for (let i = 0; i < joined.length; i += 1000) {
    const chunk = joined.slice(i, i + 1000);
    const scores = await ctx.redis.zmscore(key, ...chunk);
    chunk.forEach((r, j) => {
      if (scores[j] === null || scores[j] === undefined) missing.push(r);
    });
  }
  return missing;
}

/**
 * Wait (bounded: src/sync/push-progress.ts) until the reader has applied every entry the outboxes
 * of these rooms' shards hold now, so the index has every event committed before this answer:
 * one pipelined XREVRANGE per shard, and usually no wait at all.
 */
export async function waitForIndex(ctx: ApiContext, progress: PushProgress, roomIds: readonly string[]): Promise<void> {
  const shards = [...new Set(roomIds.map((r) => shardOf(r, ctx.shardCounts.room)))];
  const heads = await Promise.all(shards.map((s) => ctx.redis.xrevrange(ctx.keys.shard('room', s).outbox, '+', '-', 'COUNT', 1)));
  const waits: Promise<boolean>[] = [];
  shards.forEach((shard, i) => {
    const id = heads[i]?.[0]?.[0];
    if (id) waits.push(progress.waitFor(shard, id));
  });
  await Promise.all(waits);
}

/** Write computed stamps into the index (only raising them, as the reader does). */
export async function backfillIndex(ctx: ApiContext, userId: string, stamps: readonly RecencyEntry[]): Promise<void> {
  const key = recencyKey(ctx, userId);
  for (let i = 0; i < stamps.length; i += 1000) {
    const args: (string | number)[] = [];
    for (const s of stamps.slice(i, i + 1000)) args.push(s.stamp, s.roomId);
    if (args.length) await ctx.redis.zadd(key, 'GT', ...args);
  }
}

/** Take rooms out of the index that the user is no longer joined to (found while walking). */
export async function dropStale(ctx: ApiContext, userId: string, roomIds: readonly string[]): Promise<void> {
  if (roomIds.length) await ctx.redis.zrem(recencyKey(ctx, userId), ...roomIds);
}
