/**
 * Initial-sync slices built ahead of the sync that needs them: a room this front changed (a room
 * actor accepted a command from it: `ApiContext.roomWritten`) gets its slice built once it has
 * been quiet for `QUIET_MS` (1 s) — the page a default /sync (timeline limit 10) sends and the room's
 * current state, written as src/sync/initial-slices.ts writes them for a sync — kept on this front
 * and written to Redis (shared, with the TTL of the shared slices). The first initial sync of a
 * user in many rooms then finds them ready instead of reading, parsing and writing every room's
 * events while the user waits (the first-ever initial sync of 1,500 rooms cost ~2 s of front CPU).
 *
 * Nothing here decides what a sync answers: a slice is used only for the room version and top
 * position it was built at (`InitialSlices.slice`, `loadShared`), so a slice built before a
 * redaction, a state change, a membership change, new events or a purge is simply not used (the
 * version is the SHA-1 of the room actor's state blob, rewritten by every one of those; a purged
 * room has none, and is skipped here). A room busy without a pause is not rebuilt per event: only
 * once quiet. Bounded: at most `MAX_PENDING` rooms wait (more are dropped: their first sync builds
 * them as before), built `PER_TURN` rooms at a time, and not while a sync is computing its rooms.
 */
import type { ApiContext } from '../api/context';
import { roomData } from '../store/keys';
import { readMany, type Read } from '../store/read-many';
import { shardOf } from '../store/shards';
import { type InitialSlices, initialSliceStats, sliceBuild } from './initial-slices';

/** How long a room must have been quiet (no command from this front) before its slice is built. */
export const QUIET_MS = 1_000;
/** Rooms waiting for their slice, at most. */
const MAX_PENDING = 10_000;
/** Rooms whose slices are built together (their reads go out together: a front busy with requests answers each read late, so many at once keep up with rooms made fast). */
const PER_TURN = 128;
/** While a sync computes its rooms, building waits this long and looks again (not to compete with it). */
const SYNC_PAUSE_MS = 100;
/** The timeline limit a /sync without one uses (src/api/client/sync.ts): its slice page is one more. */
const DEFAULT_PAGE = 10 + 1;

export class SlicePrebuilder {
  /** Room id → when this front last changed it (insertion order: oldest first). */
  private readonly pending = new Map<string, number>();
  private timer: ReturnType<typeof setTimeout> | null = null;
  private running = false;
  private closed = false;

  constructor(
    private readonly ctx: ApiContext,
    private readonly slices: InitialSlices,
    private readonly quietMs = QUIET_MS,
  ) {}

  /** A room actor accepted a command for `roomId` from this front. */
  written(roomId: string): void {
    if (this.closed) return;
    if (this.pending.has(roomId)) this.pending.delete(roomId);
    else if (this.pending.size >= MAX_PENDING) return;
    this.pending.set(roomId, Date.now());
    this.arm();
  }

  close(): void {
    this.closed = true;
    this.pending.clear();
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private arm(): void {
    if (this.timer || this.running || this.closed) return;
    const first = this.pending.values().next();
    if (first.done) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.run();
    }, Math.max(0, first.value + this.quietMs - Date.now()));
    this.timer.unref?.();
  }

  private async run(): Promise<void> {
    this.running = true;
    try {
      while (!this.closed) {
        if (this.slices.busy()) {
          await new Promise((r) => setTimeout(r, SYNC_PAUSE_MS));
          continue;
        }
        const due: string[] = [];
        const now = Date.now();
        for (const [roomId, at] of this.pending) {
          if (now - at < this.quietMs || due.length === PER_TURN) break;
          due.push(roomId);
        }
        if (due.length === 0) break;
        for (const roomId of due) this.pending.delete(roomId);
        // A failed build is a slower first sync later, nothing more.
        await this.build(due).catch(() => undefined);
        await new Promise((r) => setImmediate(r));
      }
    } finally {
      this.running = false;
      if (!this.closed) this.slices.flushSharedSoon();
      this.arm();
    }
  }

  /** Build the slices of `roomIds` at their current version and top (the reads a sync's prefetch makes). */
  async build(roomIds: readonly string[]): Promise<void> {
    const ctx = this.ctx;
    const reads: Read[] = [];
    for (const roomId of roomIds) {
      const shard = shardOf(roomId, ctx.shardCounts.room);
      const rk = ctx.keys.shard('room', shard);
      const group = `room ${shard}`;
      reads.push({ group, key: rk.state('room', roomId), op: 'sha1' }, { group, key: rk.data(roomData.timeline(roomId)), op: 'ztop' }, { group, key: rk.data(roomData.state(roomId)), op: 'hpairs' });
    }
    const replies = await readMany(ctx.redis, reads);
    await Promise.all(
      roomIds.map(async (roomId, i) => {
        const version = replies[i * 3];
        const top = replies[i * 3 + 1] as string[];
        const flat = replies[i * 3 + 2] as string[];
        // A purged (or never stored) room has no state blob; an empty one no timeline.
        if (typeof version !== 'string' || !version || !Array.isArray(top) || top.length < 2) return;
        const slice = this.slices.prebuilt(roomId, version, Number(top[1]), DEFAULT_PAGE);
        if (!slice) return;
        const stateIds = new Map<string, string>();
        for (let k = 0; k + 1 < flat.length; k += 2) stateIds.set(flat[k]!, flat[k + 1]!);
        await sliceBuild(ctx, slice, stateIds, null);
        // Changed again meanwhile (a purge begun, say): not kept or written; built again once quiet.
        if (this.pending.has(roomId) || this.closed) return;
        initialSliceStats.prebuilt++;
        this.slices.keep(slice);
        this.slices.share(ctx, slice);
      }),
    );
  }
}

/** Start prebuilding the slices of the rooms this front changes (none when slices are off). */
export function startSlicePrebuilder(ctx: ApiContext, slices: InitialSlices | null): SlicePrebuilder | null {
  if (!slices) return null;
  const p = new SlicePrebuilder(ctx, slices);
  (ctx.roomWritten ??= []).push((roomId) => p.written(roomId));
  ctx.closers?.push(() => p.close());
  return p;
}
