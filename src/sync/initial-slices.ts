/**
 * Initial-sync slices: per room, what a /sync that gives the room in full reads of it that is the
 * same for every viewer — the first page of its timeline back from the sync's top position, and
 * the state events the answers asked for — kept on the front with each event's /sync JSON already
 * written (everything but `unsigned`, plus the `unsigned` parts every viewer gets: what a state
 * event replaced, `redacted_because` but its age). A second initial sync of a room that has not
 * changed is then checks (history visibility per viewer, through the RoomReader's caches) and
 * concatenation: no event read from Redis, decoded, parsed or written again.
 *
 * **When a slice still holds.** A slice is for one room *version* and one top position. The
 * version is the SHA-1 of the room actor's state blob (read with the room's other hashes,
 * `read-many-3.lua` op `sha1`), which the actor rewrites in the same commit as every write that
 * can change what a slice holds: a new event (its position), a redaction (a new event, which
 * rewrites its target's stored JSON), backfill (the lowest position), a completed partial state
 * (stored events re-snapshotted: the snapshot counter), a purge (the blob goes). The top is the
 * sync's cut, so two syncs of one version with different cuts do not share a page. Events of
 * either key that were read a moment later than the version (a commit in between) are what the
 * read path without slices gives as well: reads are never atomic with the cut.
 *
 * What a slice does not hold is read per sync as before: members, typing, receipts, account data,
 * unread counts (all per user or changing without the room's events).
 *
 * Bounded by bytes (`caches.syncSlicesBytes`; 0: off), one slice per room (a newer version
 * replaces it). A slice for which a state event was missing (not stored yet: a federated room
 * whose state is still coming) is not kept.
 *
 * **Shared through Redis.** A front that built a slice also writes it to Redis (`roomData.syncSlice`,
 * one key per room on the room's shard, with a TTL: `caches.syncSlicesSharedSeconds`; 0: not
 * shared), with the few state snapshots its page's events stand on; a front without the slice (just
 * started, or another front) reads those of all the rooms of a sync in one `MGET` per shard before
 * computing them (`loadShared`), and its first initial sync is then what a warm one is: no event
 * read, decoded, parsed or written, no snapshot chain walked, no member or history_visibility event
 * read for the visibility checks (the slice's light events carry `membership` and
 * `history_visibility`). A copy says which version, top and page size it is for and is used only
 * for that version and top and a page no bigger, as a kept slice is.
 */
import type { ApiContext } from '../api/context';
import { isJsonObject, type JsonObject, type JsonValue } from '../protocol/json';
import { stateKeyOf } from '../protocol/pdu';
import { RawJson } from '../protocol/raw-json';
import { clientEvent, parseTxnKey, syncHead } from '../rooms/client-format';
import { filterAllowsRoom, filterMatches, type RoomEventFilter } from '../rooms/event-filter';
import { ClockCache, weighString } from '../store/clock-cache';
import { roomData } from '../store/keys';
import { servableToClients, weighSnapshot, type KnownEvents, type RoomEvent, type RoomReader } from '../store/room-reader';
import type { StateMap } from '../protocol/pdu';
import { roomShard } from '../store/shard-keys';
import { shardOf } from '../store/shards';

/** One event of a slice: a light RoomEvent for the checks and its viewer-independent /sync JSON. */
export interface SliceEvent {
  /**
   * The event with only what the sync's checks read of its JSON: type, sender, state_key, and of
   * its content the membership (and an m.room.history_visibility event's `history_visibility`),
   * `url` (filters' contains_url) and the relation type (filters' rel_types). Not its
   * auth_events: lazy-loading's members taken from auth events (a partial-state room) read the
   * stored events for them.
   */
  e: RoomEvent;
  /** `syncHead`: the JSON up to `unsigned`, its braces open. */
  head: string;
  /** The end of `unsigned` every viewer gets (replaces_state, prev_content, prev_sender), or ''. */
  tail: string;
  /** origin_server_ts (0 when not a number): `unsigned.age`. */
  ts: number;
  /** The client transaction key it was sent with (`send\0user\0device\0txn`), or null. */
  txn: string | null;
  /** The redaction that redacted it, in the client format up to its `unsigned` (braces open), and its timestamp. */
  because: { prefix: string; ts: number } | null;
}

export interface SlicePage {
  /** Newest first, as `RoomReader.timeline` gives them. */
  events: SliceEvent[];
  next: number | null;
}

export class RoomSlice {
  /** Every event of the slice by id (page and state). */
  readonly events = new Map<string, SliceEvent>();
  page: Promise<SlicePage> | null = null;
  /** The page once read (what the copy in Redis is written from). */
  pageDone: SlicePage | null = null;
  /** A state event asked for was not stored: the slice is used once, not kept. */
  incomplete = false;
  /** How many events the copy in Redis holds (read from there, or last written): written again only when it grew. */
  sharedEvents = 0;
  /**
   * The state snapshots its page's events stand on (before and after each; up to
   * SHARED_SNAPSHOT_ENTRIES entries in all), kept with it: a sync answered from a slice built a
   * while ago checks each event's visibility at them, and the RoomReader's cache may have dropped
   * them since (a front that built 1,500 rooms' slices ahead had: 20 % of the first sync's CPU
   * went to reading them again). Primed into the cache when the slice is used (`primeSnapshots`).
   */
  snapshots: [number, StateMap][] = [];
  /** Its events as `KnownEvents` (the visibility checks take the member and history_visibility events from it). */
  readonly known: KnownEvents = (id) => this.events.get(id)?.e;

  constructor(
    readonly roomId: string,
    readonly version: string,
    readonly top: number,
    /** The timeline page's size (the sync's limit + 1: the events it sends and one that says `limited`). */
    readonly pageSize: number,
  ) {}

  weight(): number {
    let bytes = 200 + weighString(this.roomId) + weighString(this.version);
    for (const se of this.events.values()) bytes += 400 + 2 * (se.head.length + se.tail.length + (se.because?.prefix.length ?? 0));
    for (const [, state] of this.snapshots) bytes += weighSnapshot(state);
    return bytes;
  }
}

/**
 * Slices made, reused, read from Redis and written there, by every front of the process (tests and
 * metrics read them).
 */
export const initialSliceStats = { made: 0, reused: 0, sharedRead: 0, sharedWritten: 0, prebuilt: 0 };

/** Whether a kept slice serves a sync of this room version and top with pages of `pageSize` (a bigger page serves a smaller limit). */
function serves(hit: RoomSlice | undefined, version: string, top: number, pageSize: number): hit is RoomSlice {
  return !!hit && hit.version === version && hit.top === top && hit.pageSize >= pageSize;
}

/** What a sync asks of a room's slice (see `InitialSlices.slice`). */
export interface SliceWant {
  roomId: string;
  version: string;
  top: number;
  pageSize: number;
}

/** Keys per `MGET` of shared slices (one shard's): a call runs alone in Redis. */
const SHARED_READ_KEYS = 100;
/** Slices weighing more than this (`RoomSlice.weight`, ~2× their text) are not shared: ~1 MB of text in Redis at most. */
const SHARED_MAX_WEIGHT = 2 * 2 ** 20;
/** Shared slices encoded and written per event-loop turn. */
const SHARE_PER_TURN = 32;
/** A queued shared slice is written after this long if no sync said it was done. */
const SHARE_FALLBACK_MS = 1_000;
/** How long queued writes wait for the syncs computing at most (see `InitialSlices.computing`). */
const SHARE_DEFER_MAX_MS = 30_000;
/** State entries of the snapshots a shared slice carries, at most (a bigger room's are read as before). */
const SHARED_SNAPSHOT_ENTRIES = 2_000;

/** The slices of one front (one per RoomReader, i.e. per front's context). */
export class InitialSlices {
  private readonly cache: ClockCache<string, RoomSlice>;

  constructor(
    maxBytes: number,
    /** TTL of the copies written to Redis (0: slices are not shared). */
    private readonly sharedSeconds = 0,
  ) {
    this.cache = new ClockCache(maxBytes, (s) => s.weight());
  }

  /**
   * Before a sync computes its rooms: the slices it will ask for that this front does not hold,
   * read from Redis (one `MGET` per shard) where another front (or this one before a restart) wrote
   * them, and kept as if this front had built them; their snapshots go into the RoomReader's cache.
   * A copy for another version or top, a smaller page, or one that does not decode, is left alone.
   */
  async loadShared(ctx: ApiContext, wants: readonly SliceWant[]): Promise<void> {
    if (!this.sharedSeconds) return;
    const groups = new Map<number, SliceWant[]>();
    for (const w of wants) {
      const hit = this.cache.get(w.roomId);
      if (serves(hit, w.version, w.top, w.pageSize)) continue;
      const shard = shardOf(w.roomId, ctx.shardCounts.room);
      (groups.get(shard) ?? groups.set(shard, []).get(shard)!).push(w);
    }
    const reads: Promise<void>[] = [];
    for (const [shard, ws] of groups) {
      const sk = ctx.keys.shard('room', shard);
      for (let at = 0; at < ws.length; at += SHARED_READ_KEYS) {
        const part = ws.slice(at, at + SHARED_READ_KEYS);
        reads.push(
          ctx.redis.mget(...part.map((w) => sk.data(roomData.syncSlice(w.roomId)))).then((texts) => {
            texts.forEach((text, i) => {
              if (!text) return;
              const slice = decodeSlice(ctx.rooms, part[i]!, text);
              if (!slice) return;
              initialSliceStats.sharedRead++;
              this.cache.set(slice.roomId, slice);
            });
          }),
        );
      }
    }
    // A failed read is a slower sync, not a failed one: the rooms are built as without.
    await Promise.all(reads.map((r) => r.catch(() => undefined)));
  }

  /**
   * After a sync used a slice: write it to Redis when it holds more than the copy there (a new
   * slice, or one a sync added state events to), with the snapshots its page's events stand on
   * that this front holds. Not awaited; a failed write only leaves the copy as it was.
   */
  share(ctx: ApiContext, slice: RoomSlice): void {
    if (!this.sharedSeconds || slice.incomplete || !slice.pageDone || slice.events.size <= slice.sharedEvents) return;
    slice.sharedEvents = slice.events.size;
    // A big room's whole state (thousands of member events) is not copied into Redis per version.
    if (slice.weight() > SHARED_MAX_WEIGHT) return;
    if (this.toShare.length === 0) this.queuedAt = Date.now();
    this.toShare.push({ ctx, slice });
    // Written once the sync has answered (`flushSharedSoon`), or after a second anyway.
    if (!this.shareTimer && !this.flushing) this.shareTimer = setTimeout(() => this.flushSharedSoon(), SHARE_FALLBACK_MS);
  }

  /**
   * A sync starts computing its rooms: until the returned function is called, the queued writes
   * wait (up to SHARE_DEFER_MAX_MS), so that encoding and sending megabytes of slices does not
   * share the event loop with the first initial sync that builds them (it did from its second
   * second on: ~10 % of its front CPU).
   */
  computing(): () => void {
    this.active++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.active--;
    };
  }

  private active = 0;
  private queuedAt = 0;

  /** Whether a sync is computing its rooms now (src/sync/slice-prebuild.ts waits). */
  busy(): boolean {
    return this.active > 0;
  }

  /** Writes wait for the syncs computing (see `computing`), unless they have waited too long. */
  private holdWrites(): boolean {
    if (this.active === 0 || Date.now() - this.queuedAt > SHARE_DEFER_MAX_MS) return false;
    if (!this.shareTimer) this.shareTimer = setTimeout(() => this.flushSharedSoon(), SHARE_FALLBACK_MS);
    return true;
  }

  /**
   * Write the slices `share` queued, SHARE_PER_TURN a turn (encoding 1,500 rooms' slices at once
   * would hold the event loop ~100 ms): a sync calls this when its answer is computed, so the
   * writes are not on that answer's path.
   */
  flushSharedSoon(): void {
    if (this.shareTimer) clearTimeout(this.shareTimer);
    this.shareTimer = null;
    if (this.flushing || this.toShare.length === 0 || this.holdWrites()) return;
    this.flushing = true;
    const turn = () => {
      if (this.holdWrites()) {
        this.flushing = false;
        return;
      }
      for (const { ctx, slice } of this.toShare.splice(0, SHARE_PER_TURN)) {
        initialSliceStats.sharedWritten++;
        ctx.redis.set(roomShard(ctx, slice.roomId).data(roomData.syncSlice(slice.roomId)), encodeSlice(ctx.rooms, slice), 'EX', this.sharedSeconds).catch(() => undefined);
      }
      if (this.toShare.length) setImmediate(turn);
      else this.flushing = false;
    };
    setImmediate(turn);
  }

  private readonly toShare: { ctx: ApiContext; slice: RoomSlice }[] = [];
  private shareTimer: ReturnType<typeof setTimeout> | null = null;
  private flushing = false;

  /**
   * The room's slice for this version and top with a page of at least `pageSize` events: the kept
   * one when it is that (a bigger page serves a smaller limit: `slicePaginate` takes any page),
   * else a new one.
   */
  slice(roomId: string, version: string, top: number, pageSize: number): RoomSlice {
    const hit = this.cache.get(roomId);
    if (serves(hit, version, top, pageSize)) {
      initialSliceStats.reused++;
      return hit;
    }
    initialSliceStats.made++;
    return new RoomSlice(roomId, version, top, pageSize);
  }

  /**
   * A new slice to build ahead of a sync (src/sync/slice-prebuild.ts), or null when the kept one
   * is for this version and top already, with a page as big.
   */
  prebuilt(roomId: string, version: string, top: number, pageSize: number): RoomSlice | null {
    return serves(this.cache.get(roomId), version, top, pageSize) ? null : new RoomSlice(roomId, version, top, pageSize);
  }

  /** Keep (or re-weigh, once it holds more) a slice after a sync used it. */
  keep(slice: RoomSlice): void {
    if (slice.incomplete || slice.page === null) return;
    const held = this.cache.get(slice.roomId);
    // A newer slice of the room, kept meanwhile by another sync, stays.
    if (held && held !== slice && held.top > slice.top) return;
    this.cache.set(slice.roomId, slice);
  }

  /** The slice kept for a room (tests). */
  kept(roomId: string): RoomSlice | undefined {
    return this.cache.get(roomId);
  }
}

const byReader = new WeakMap<RoomReader, InitialSlices | null>();

/** Default bound of a front's slices (`caches.syncSlicesBytes`). */
export const DEFAULT_SYNC_SLICES_BYTES = 64 * 2 ** 20;
/** Default TTL of the slices written to Redis (`caches.syncSlicesSharedSeconds`). */
export const DEFAULT_SYNC_SLICES_SHARED_SECONDS = 900;

/** The front's slices (null when `caches.syncSlicesBytes` is 0). */
export function initialSlicesOf(ctx: ApiContext): InitialSlices | null {
  let s = byReader.get(ctx.rooms);
  if (s === undefined) {
    const bytes = ctx.config.caches?.syncSlicesBytes ?? DEFAULT_SYNC_SLICES_BYTES;
    s = bytes > 0 ? new InitialSlices(bytes, ctx.config.caches?.syncSlicesSharedSeconds ?? DEFAULT_SYNC_SLICES_SHARED_SECONDS) : null;
    byReader.set(ctx.rooms, s);
  }
  return s;
}

/** The slice's first timeline page, read and written once. */
export function slicePage(ctx: ApiContext, slice: RoomSlice): Promise<SlicePage> {
  if (slice.page === null) {
    const p = (async () => {
      const page = await ctx.rooms.timeline(slice.roomId, 'b', slice.top + 1, slice.pageSize);
      const done = { events: await addEvents(ctx, slice, page.events), next: page.next };
      slice.pageDone = done;
      return done;
    })();
    p.catch(() => {
      if (slice.page === p) slice.page = null;
    });
    slice.page = p;
  }
  return slice.page;
}

/**
 * `paginate(ctx, roomId, userId, 'b', top, null, want, filter)` over the slice: the same first page,
 * the same filter and visibility checks. Null when that page does not hold `want` events the user
 * may see and older ones exist: the caller reads as usual.
 */
export async function slicePaginate(ctx: ApiContext, slice: RoomSlice, userId: string, want: number, filter: RoomEventFilter): Promise<SliceEvent[] | null> {
  if (!filterAllowsRoom(filter, slice.roomId)) return [];
  // Any page size will do: paginate's answer is the first `want` events back from the top that
  // pass the filter and the checks, however it reads them; a page that holds fewer while older
  // events exist says nothing (null).
  const page = await slicePage(ctx, slice);
  const out: SliceEvent[] = [];
  for (const se of page.events) {
    if (!filterMatches(filter, se.e.event) || !servableToClients(se.e)) continue;
    const seen = ctx.rooms.canSeeCached(slice.roomId, userId, se.e) ?? (await ctx.rooms.canSee(slice.roomId, userId, se.e, slice.known));
    if (!seen) continue;
    out.push(se);
    if (out.length === want) return out;
  }
  return page.next === null ? out : null;
}

/** The stored events of `ids` (in that order, missing ones left out), from the slice or read into it. */
export async function sliceEvents(ctx: ApiContext, slice: RoomSlice, ids: readonly string[]): Promise<SliceEvent[]> {
  const missing = ids.filter((id) => !slice.events.has(id));
  if (missing.length) {
    const loaded = await ctx.rooms.events(slice.roomId, [...new Set(missing)]);
    if (loaded.length < new Set(missing).size) slice.incomplete = true;
    await addEvents(ctx, slice, loaded);
  }
  const out: SliceEvent[] = [];
  for (const id of ids) {
    const se = slice.events.get(id);
    if (se) out.push(se);
  }
  return out;
}

/**
 * Read into a slice being built the stored events of `ids` it does not hold, without marking it
 * incomplete for one not stored (they are read ahead of being asked for: what is missing is
 * whatever a sync later asks for and does not find).
 */
export async function slicePreload(ctx: ApiContext, slice: RoomSlice, ids: readonly string[]): Promise<void> {
  const missing = [...new Set(ids.filter((id) => !slice.events.has(id)))];
  if (missing.length) await addEvents(ctx, slice, await ctx.rooms.events(slice.roomId, missing));
}

/** A slice being built reads the room's whole current state with its page up to this many entries (else no members but the viewer's). */
const PRELOAD_STATE_MAX = 200;

/**
 * Build a new slice: its page, then the room's current state events (`stateIds`), not after it
 * (the state section mostly asks for those same events), so that the visibility checks of the
 * page find the history_visibility and member events in the slice instead of reading them one
 * GET each. A big room's members only for `viewer` (none without one; the rest as a sync asks).
 */
export async function sliceBuild(ctx: ApiContext, slice: RoomSlice, stateIds: ReadonlyMap<string, string>, viewer: string | null): Promise<void> {
  const ids: string[] = [];
  const all = stateIds.size <= PRELOAD_STATE_MAX;
  const own = viewer === null ? null : stateKeyOf('m.room.member', viewer);
  for (const [key, id] of stateIds) if (all || key === own || !key.startsWith('m.room.member\u0000')) ids.push(id);
  // After the page's newest snapshot is read: that read fills the delta cache the state events'
  // `prev_content` lookups walk (before it, each would read its chain a GET at a time).
  const page = await slicePage(ctx, slice);
  const newest = page.events[0];
  if (newest?.e.stateAfter) await ctx.rooms.snapshot(slice.roomId, newest.e.stateAfter);
  await slicePreload(ctx, slice, ids);
  // The snapshots the page's events stand on (the visibility checks read them), kept with it.
  const snapshotIds = pageSnapshotIds(page);
  const states = await Promise.all(snapshotIds.map((id) => ctx.rooms.snapshot(slice.roomId, id)));
  slice.snapshots = boundedSnapshots(snapshotIds, (_id, i) => states[i]);
}

/** The state snapshots a page's events stand on (before and after each). */
function pageSnapshotIds(page: SlicePage): number[] {
  return [...new Set(page.events.flatMap((se) => [se.e.stateBefore, se.e.stateAfter]))].filter((id) => id > 0);
}

/** Of `ids`, the snapshots `stateOf` has, in order, up to SHARED_SNAPSHOT_ENTRIES state entries in all. */
function boundedSnapshots(ids: readonly number[], stateOf: (id: number, i: number) => StateMap | undefined): [number, StateMap][] {
  const out: [number, StateMap][] = [];
  let entries = 0;
  ids.forEach((id, i) => {
    const state = stateOf(id, i);
    if (!state || entries + state.size > SHARED_SNAPSHOT_ENTRIES) return;
    entries += state.size;
    out.push([id, state]);
  });
  return out;
}

/** Put a slice's snapshots back into the RoomReader's cache (those it still holds stay). */
export function primeSnapshots(ctx: ApiContext, slice: RoomSlice): void {
  for (const [id, state] of slice.snapshots) ctx.rooms.primeSnapshot(slice.roomId, id, state);
}

/** The event at or before a position, from the page when it holds it. */
export async function sliceEventAtOrBefore(ctx: ApiContext, slice: RoomSlice, pos: number, read: () => Promise<RoomEvent | null>): Promise<RoomEvent | null> {
  const page = await slicePage(ctx, slice);
  for (const se of page.events) if (se.e.pos <= pos) return se.e;
  return page.next === null ? null : read();
}

/**
 * Write events into the slice: their heads, what each state event replaced (as `formatEvents`
 * finds it: the entry for its key in its own state before), the redactions that redacted them,
 * their transaction keys — one read of each kind for all of them.
 */
async function addEvents(ctx: ApiContext, slice: RoomSlice, events: RoomEvent[]): Promise<SliceEvent[]> {
  if (events.length === 0) return [];
  const roomId = slice.roomId;
  const txnsP = ctx.redis.hmget(roomShard(ctx, roomId).data(roomData.eventTxns(roomId)), ...events.map((e) => e.eventId));
  const redactionIds = [...new Set(events.map((e) => e.redactedBy).filter((id): id is string => !!id))];
  const redactionsP = ctx.rooms.events(roomId, redactionIds);
  const replaced = new Map<string, string>();
  const stateEvents = events.filter((e) => typeof e.event.state_key === 'string' && typeof e.event.type === 'string' && e.stateBefore);
  if (stateEvents.length) {
    const prevs = await ctx.rooms.stateEntriesAt(roomId, stateEvents.map((e) => ({ id: e.stateBefore, key: stateKeyOf(e.event.type as string, e.event.state_key as string) })));
    stateEvents.forEach((e, i) => {
      const prev = prevs[i];
      if (prev && prev !== e.eventId) replaced.set(e.eventId, prev);
    });
  }
  const [txns, redactions, previous] = await Promise.all([txnsP, redactionsP, ctx.rooms.events(roomId, [...new Set(replaced.values())])]);
  const redactionById = new Map(redactions.map((r) => [r.eventId, r]));
  const previousById = new Map(previous.map((p) => [p.eventId, p]));
  return events.map((e, i) => {
    const prev = previousById.get(replaced.get(e.eventId) ?? '');
    let tail = '';
    if (prev) {
      tail = `,"replaces_state":${JSON.stringify(prev.eventId)},"prev_content":${JSON.stringify(isJsonObject(prev.event.content as JsonValue) ? prev.event.content! : {})}`;
      if (typeof prev.event.sender === 'string') tail += `,"prev_sender":${JSON.stringify(prev.event.sender)}`;
    }
    const r = e.redactedBy ? redactionById.get(e.redactedBy) : undefined;
    let because: SliceEvent['because'] = null;
    if (r) {
      const formatted = clientEvent(roomId, r, 0, undefined, undefined);
      delete formatted.unsigned;
      const text = JSON.stringify(formatted);
      because = { prefix: text.slice(0, -1), ts: formatted.origin_server_ts as number };
    }
    const se: SliceEvent = { e: lightEvent(e), head: syncHead(e), tail, ts: typeof e.event.origin_server_ts === 'number' ? e.event.origin_server_ts : 0, txn: txns[i] ?? null, because };
    slice.events.set(e.eventId, se);
    return se;
  });
}

/** The event with only what the checks read of its JSON (see `SliceEvent.e`). */
function lightEvent(e: RoomEvent): RoomEvent {
  const raw = e.event;
  const event: JsonObject = {};
  if (raw.type !== undefined) event.type = raw.type;
  if (raw.sender !== undefined) event.sender = raw.sender;
  if (raw.state_key !== undefined) event.state_key = raw.state_key;
  const c = raw.content;
  if (isJsonObject(c as JsonValue)) {
    const content: JsonObject = {};
    const co = c as JsonObject;
    if (co.membership !== undefined) content.membership = co.membership;
    // The visibility checks read it of an m.room.history_visibility event the slice holds.
    if (raw.type === 'm.room.history_visibility' && co.history_visibility !== undefined) content.history_visibility = co.history_visibility;
    if (co.url !== undefined) content.url = co.url;
    const rel = co['m.relates_to'];
    if (isJsonObject(rel as JsonValue) && (rel as JsonObject).rel_type !== undefined) content['m.relates_to'] = { rel_type: (rel as JsonObject).rel_type! };
    event.content = content;
  } else if (c !== undefined) event.content = c;
  return {
    eventId: e.eventId, event, pos: e.pos, depth: e.depth, stateBefore: e.stateBefore, stateAfter: e.stateAfter,
    ...(e.redactedBy ? { redactedBy: e.redactedBy } : {}), ...(e.rejected ? { rejected: e.rejected } : {}), ...(e.softFailed ? { softFailed: e.softFailed } : {}), ...(e.outlier ? { outlier: true } : {}),
  };
}

/**
 * Slice events in /sync's format for a viewer, as one JSON array: what `syncEventsJson` writes,
 * byte for byte — the head, then `unsigned`: age, the viewer's own device's transaction_id,
 * redacted_because, the viewer's membership after the event (timelines), what a state event
 * replaced. One RawJson per list, not per event: the answer's writer walks 3,000 values for
 * 1,500 rooms instead of 45,000.
 */
export async function renderSliceEvents(ctx: ApiContext, roomId: string, events: readonly SliceEvent[], viewer: { userId: string; deviceId: string }, opts: { membership?: boolean; known?: KnownEvents } = {}): Promise<RawJson> {
  if (events.length === 0) return new RawJson('[]');
  let memberships: string[] | null = null;
  if (opts.membership !== false) {
    // From the visibility cache when it knows (no promise per event), else looked up.
    const cached = events.map((se) => ctx.rooms.membershipAfterCached(roomId, se.e, viewer.userId));
    memberships = cached.every((m) => m !== undefined) ? (cached as string[]) : await Promise.all(events.map((se, i) => cached[i] ?? ctx.rooms.membershipAfter(roomId, se.e, viewer.userId, opts.known)));
  }
  const now = Date.now();
  // The viewer's own device's keys are `<endpoint>\0<user>\0<device>\0<txn>`: matched as text
  // (parseTxnKey splits every key; ids holding a \0 themselves still go through it).
  const own = viewer.userId.includes('\u0000') || viewer.deviceId.includes('\u0000') ? null : `\u0000${viewer.userId}\u0000${viewer.deviceId}\u0000`;
  const texts = events.map((se, i) => {
    let json = `${se.head},"unsigned":{"age":${Math.max(0, now - se.ts)}`;
    if (se.txn !== null && se.e.event.sender === viewer.userId) {
      if (own) {
        const at = se.txn.indexOf('\u0000');
        if (at >= 0 && se.txn.startsWith(own, at)) json += `,"transaction_id":${JSON.stringify(se.txn.slice(at + own.length))}`;
      } else {
        const t = parseTxnKey(se.txn);
        if (t && t.userId === viewer.userId && t.deviceId === viewer.deviceId) json += `,"transaction_id":${JSON.stringify(t.txnId)}`;
      }
    }
    if (se.because) json += `,"redacted_because":${se.because.prefix},"unsigned":{"age":${Math.max(0, now - se.because.ts)}}}`;
    if (memberships) json += `,"membership":${JSON.stringify(memberships[i]!)}`;
    return `${json}${se.tail}}}`;
  });
  return new RawJson(`[${texts.join(',')}]`);
}

/**
 * A slice as text for Redis: a JSON header line — what it is for (version, top, page size), the
 * page (event ids, next), per event its light RoomEvent, the lengths of its texts, its ts,
 * transaction key and redaction's ts, and the snapshots — then every event's head, tail and
 * redaction prefix one after another (not JSON strings: a reader slices them out of one string
 * instead of unescaping 40 quoted texts per room).
 */
export function encodeSlice(rooms: RoomReader, slice: RoomSlice): string {
  const page = slice.pageDone!;
  // The snapshots kept with it when it was built ahead, else those the RoomReader still holds.
  const kept = slice.snapshots.length ? slice.snapshots : boundedSnapshots(pageSnapshotIds(page), (id) => rooms.cachedSnapshot(slice.roomId, id));
  const snapshots: [number, [string, string][]][] = kept.map(([id, state]) => [id, [...state]]);
  const rows: unknown[] = [];
  const texts: string[] = [];
  for (const se of slice.events.values()) {
    const e = se.e;
    const flags: Record<string, string | number> = {};
    if (e.redactedBy) flags.rb = e.redactedBy;
    if (e.rejected) flags.rej = e.rejected;
    if (e.softFailed) flags.sf = e.softFailed;
    if (e.outlier) flags.o = 1;
    rows.push([e.eventId, e.pos, e.depth, e.stateBefore, e.stateAfter, flags, e.event, se.head.length, se.tail.length, se.ts, se.txn, se.because ? se.because.prefix.length : -1, se.because ? se.because.ts : 0]);
    texts.push(se.head, se.tail);
    if (se.because) texts.push(se.because.prefix);
  }
  const header = { f: 1, v: slice.version, t: slice.top, s: slice.pageSize, p: page.events.map((se) => se.e.eventId), n: page.next, e: rows, sn: snapshots };
  return `${JSON.stringify(header)}\n${texts.join('')}`;
}

type SliceRow = [string, number, number, number, number, { rb?: string; rej?: string; sf?: string; o?: 1 }, JsonObject, number, number, number, string | null, number, number];

/** A slice read from Redis (see `encodeSlice`), or null when it is not for `want` or does not decode. */
export function decodeSlice(rooms: RoomReader, want: SliceWant, text: string): RoomSlice | null {
  try {
    const nl = text.indexOf('\n');
    if (nl < 0) return null;
    const h = JSON.parse(text.slice(0, nl)) as { f: number; v: string; t: number; s: number; p: string[]; n: number | null; e: SliceRow[]; sn: [number, [string, string][]][] };
    if (h.f !== 1 || h.v !== want.version || h.t !== want.top || !(h.s >= want.pageSize)) return null;
    const body = text.slice(nl + 1);
    const slice = new RoomSlice(want.roomId, want.version, want.top, h.s);
    let at = 0;
    for (const [eventId, pos, depth, sb, sa, flags, event, hl, tl, ts, txn, bl, bts] of h.e) {
      const e: RoomEvent = { eventId, event, pos, depth, stateBefore: sb, stateAfter: sa };
      if (flags.rb) e.redactedBy = flags.rb;
      if (flags.rej) e.rejected = flags.rej;
      if (flags.sf) e.softFailed = flags.sf;
      if (flags.o) e.outlier = true;
      const head = body.slice(at, (at += hl));
      const tail = body.slice(at, (at += tl));
      const because = bl >= 0 ? { prefix: body.slice(at, (at += bl)), ts: bts } : null;
      slice.events.set(eventId, { e, head, tail, ts, txn, because });
    }
    if (at !== body.length) return null;
    const events: SliceEvent[] = [];
    for (const id of h.p) {
      const se = slice.events.get(id);
      if (!se) return null;
      events.push(se);
    }
    const page: SlicePage = { events, next: h.n };
    slice.page = Promise.resolve(page);
    slice.pageDone = page;
    slice.sharedEvents = slice.events.size;
    for (const [id, entries] of h.sn) {
      const state = new Map(entries);
      slice.snapshots.push([id, state]);
      rooms.primeSnapshot(want.roomId, id, state);
    }
    return slice;
  } catch {
    return null;
  }
}
