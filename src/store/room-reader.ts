/**
 * Reads of room data for fronts and readers: events, state (current and at any event), members,
 * timeline pages, event context, extremities, and whether a user may see an event. Reads go to
 * Redis directly — only the room actor writes, atomically per event, so every read sees whole
 * events — and never through the actor's inbox.
 */
import type { StoredEvent, StoredSnapshot, RoomMeta, RoomOutput } from '../rooms/model';
import { stateKeyOf, splitStateKey, type StateMap } from '../protocol/pdu';
import { isJsonObject, type JsonObject, type JsonValue } from '../protocol/json';
import { effectiveHistoryVisibility, type HistoryVisibility } from '../protocol/history-visibility';
import { serverOf } from '../protocol/identifiers';
import { shardOf } from './shards';
import { decode } from './codec';
import { roomData, type KeySpace, type ShardKeys } from './keys';
import type { RedisClient } from './redis';
import { ClockCache, weighStateMap, weighString } from './clock-cache';

export interface RoomEvent {
  eventId: string;
  event: JsonObject;
  pos: number;
  depth: number;
  stateBefore: number;
  stateAfter: number;
  redactedBy?: string;
  /** Rejected events are stored (the DAG refers to them) but never served or built upon. */
  rejected?: string;
  /** Soft-failed events are part of the DAG but hidden from clients. */
  softFailed?: string;
  /** Stored without a place in the room's history (auth chains, state fetched for a join). */
  outlier?: boolean;
  /**
   * The event's viewer-independent /sync JSON start, made on first use by
   * src/rooms/client-format.ts (`syncHead`) and kept on the object: the events `recentEvents`
   * shares are rendered once per front, not once per woken member. Only `event` and `eventId`
   * go into it; it says which it was made from, so a copy with another `event` (`{ ...e, event }`)
   * does not reuse it.
   */
  syncHead?: { event: JsonObject; eventId: string; json: string };
}

/**
 * Events a caller already holds, by id (undefined: not held, read it): what a visibility check
 * needs of them is their type, state_key and content's `membership` / `history_visibility`.
 */
export type KnownEvents = (eventId: string) => RoomEvent | undefined;

export interface TimelinePage {
  events: RoomEvent[];
  /** Position to continue from in the same direction, or null at the end. */
  next: number | null;
}

/** The history visibility in a state snapshot and a user's membership there. */
interface VisibilityFacts {
  visibility: HistoryVisibility;
  membershipAt: string | undefined;
}

/** Visibility facts kept per (room, state snapshot, user); rooms leave oldest first beyond this. */
const VISIBILITY_CACHE_MAX = 50_000;
/** How long `recentEvents` shares a loaded event. */
const RECENT_EVENTS_TTL_MS = 1_000;

/** What a RoomReader's caches may hold, in bytes (estimated; config `caches.*`, README). */
export interface RoomReaderLimits {
  /**
   * Materialised state snapshots, the snapshots' own deltas and single entries looked up through
   * them (two thirds, a sixth and a sixth of it): what an initial sync of many rooms and every
   * visibility check read state through. An eighth more holds the joined servers counted per
   * snapshot (`joinedServersAt`, the federation sender's; only what is used is held).
   */
  stateCacheBytes: number;
  /** Events shared for `RECENT_EVENTS_TTL_MS` by the /sync polls one message wakes (`recentEvents`). */
  recentEventsBytes: number;
  /** Parsed event JSON kept for reuse (`toEvent`); 0: none (workers' readers), a front's sync sets it. */
  parsedEventsBytes?: number;
}

export const DEFAULT_ROOM_READER_LIMITS: RoomReaderLimits = { stateCacheBytes: 48 * 2 ** 20, recentEventsBytes: 16 * 2 ** 20 };

/** What `joinedServersAt` answers for a snapshot. */
export interface ServersAt {
  /** Servers with a joined member, and how many members each. */
  readonly joined: ReadonlyMap<string, number>;
  /** The `m.room.server_acl` event in the snapshot's state (null: none). */
  readonly serverAcl: string | null;
}

/** A state snapshot that is not stored (its room was purged, or it never was). */
export class MissingSnapshotError extends Error {
  constructor(roomId: string, id: number) {
    super(`room ${roomId}: state snapshot ${id} is missing`);
    this.name = 'MissingSnapshotError';
  }
}

/** No server: the state of snapshot 0 (before the create event). */
const NO_SERVERS: ServersAt = { joined: new Map(), serverAcl: null };

const MEMBER_KEY_PREFIX = stateKeyOf('m.room.member', '');
const SERVER_ACL_KEY = stateKeyOf('m.room.server_acl', '');

/** Member events read per MGET when a snapshot's servers are counted (a big room's root holds them all). */
const MEMBER_READ_CHUNK = 1000;

function weighServers(at: ServersAt): number {
  let n = 112;
  for (const s of at.joined.keys()) n += 40 + weighString(s);
  return n;
}

/** Rooms whose shard keys a RoomReader remembers (`RoomReader.shard`). */
const SHARD_MEMO_MAX = 20_000;

export class RoomReader {
  private readonly snapshotCache: SnapshotCache;
  /** Snapshots' own deltas (a full root's whole state), for single-entry lookups (`stateEntryAt`). */
  private readonly deltaCache: ClockCache<string, StoredDelta>;
  /**
   * Single entries of snapshots that `stateEntryAt` looked up, by room, snapshot and state key
   * (null: none): what each state event of an initial sync replaced, found once instead of by a
   * walk down its delta chain per sync (snapshots never change, so neither do these).
   */
  private readonly entryCache: ClockCache<string, string | null>;
  private readonly deltasInFlight = new Map<string, Promise<StoredDelta>>();
  /** Joined servers (with their member counts) and the ACL by room and snapshot: `joinedServersAt`. */
  private readonly serversCache: ClockCache<string, ServersAt>;
  private readonly serversInFlight = new Map<string, Promise<ServersAt>>();
  /** Snapshots being read: concurrent syncs asking for the same one share the read. */
  private readonly snapshotsInFlight = new Map<string, Promise<StateMap>>();
  /**
   * Visibility facts by room, state snapshot and user (maps in maps: a lookup builds no key string,
   * and a woken member asks for each event of its answer). Rooms leave whole, oldest first, once
   * more than VISIBILITY_CACHE_MAX facts are held.
   */
  private readonly visibilityCache = new Map<string, Map<number, Map<string, VisibilityFacts>>>();
  private visibilityFacts = 0;
  /** Parsed event JSON by room and event id, when `parsedEventsBytes` allows (see `toEvent`). */
  private readonly parsed: ClockCache<string, { rb: string | undefined; length: number; event: JsonObject }> | null;
  /** Events loaded in the last `RECENT_EVENTS_TTL_MS`, and loads in flight (see `recentEvents`). */
  private readonly recent: ClockCache<string, { at: number; event: RoomEvent | null; bytes: number }>;
  private readonly recentInFlight = new Map<string, Promise<RoomEvent | null>>();

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: KeySpace,
    private readonly roomShards: number,
    limits: RoomReaderLimits = DEFAULT_ROOM_READER_LIMITS,
  ) {
    this.snapshotCache = new SnapshotCache(Math.floor((limits.stateCacheBytes * 2) / 3));
    this.deltaCache = new ClockCache(Math.floor(limits.stateCacheBytes / 6), (d) => d.bytes);
    this.entryCache = new ClockCache(Math.floor(limits.stateCacheBytes / 6), (v, k) => 48 + weighString(k) + (v === null ? 0 : weighString(v)));
    this.recent = new ClockCache(limits.recentEventsBytes, (r) => r.bytes);
    this.serversCache = new ClockCache(Math.floor(limits.stateCacheBytes / 8), weighServers);
    this.parsed = limits.parsedEventsBytes ? new ClockCache(limits.parsedEventsBytes, (p) => 200 + 3 * p.length) : null;
  }

  /**
   * A stored event as a RoomEvent, its JSON parsed once per process while the cache keeps it: the
   * events of an initial sync are mostly the same from one sync to the next, and parsing them was
   * the biggest part of its cost. The parsed JSON is reused only while the stored record still
   * says what it said when it was parsed: a stored event's JSON changes only when it is redacted,
   * which sets its `rb` (and shortens the text), so the record read now — always read, the
   * positions and flags come from it — tells whether the parse still holds. Callers treat
   * `event` as read-only (it is shared, as `recentEvents` always shared it).
   */
  private toEvent(roomId: string, eventId: string, s: StoredEvent): RoomEvent {
    if (!this.parsed) return toRoomEvent(eventId, s);
    const key = `${roomId}\u0000${eventId}`;
    const hit = this.parsed.get(key);
    if (hit && hit.rb === s.rb && hit.length === s.j.length) return toRoomEvent(eventId, s, hit.event);
    const e = toRoomEvent(eventId, s);
    this.parsed.set(key, { rb: s.rb, length: s.j.length, event: e.event });
    return e;
  }

  /**
   * The servers a resident named in `servers_in_room` when we joined the room with partial state
   * (faster joins; PARTIAL_STATE_ROOMS), or null when the room has its full state.
   */
  async partialStateServers(roomId: string): Promise<string[] | null> {
    const raw = await this.redis.hget(this.keys.partialStateRooms(), roomId);
    if (!raw) return null;
    try {
      const servers = (JSON.parse(raw) as { servers?: unknown }).servers;
      return Array.isArray(servers) ? servers.filter((s): s is string => typeof s === 'string') : [];
    } catch {
      return [];
    }
  }

  /**
   * The room's shard keys, remembered per room id (a first initial sync builds ~40 event keys per
   * room: hashing the id for each was 2 % of it). Emptied when it holds SHARD_MEMO_MAX rooms.
   */
  private shard(roomId: string): ShardKeys {
    let sk = this.shardMemo.get(roomId);
    if (sk === undefined) {
      if (this.shardMemo.size >= SHARD_MEMO_MAX) this.shardMemo.clear();
      sk = this.keys.shard('room', shardOf(roomId, this.roomShards));
      this.shardMemo.set(roomId, sk);
    }
    return sk;
  }

  private readonly shardMemo = new Map<string, ShardKeys>();

  private key(roomId: string, name: string): string {
    return this.shard(roomId).data(name);
  }

  async meta(roomId: string): Promise<RoomMeta | null> {
    const blob = await this.redis.getBuffer(this.shard(roomId).state('room', roomId));
    const meta = blob ? decode<RoomMeta>(blob) : null;
    return meta && meta.version !== null ? meta : null;
  }

  async event(roomId: string, eventId: string): Promise<RoomEvent | null> {
    const blob = await this.redis.getBuffer(this.key(roomId, roomData.event(eventId)));
    return blob ? this.toEvent(roomId, eventId, decode<StoredEvent>(blob)) : null;
  }

  async events(roomId: string, eventIds: string[]): Promise<RoomEvent[]> {
    if (eventIds.length === 0) return [];
    const blobs = await this.redis.mgetBuffer(...eventIds.map((id) => this.key(roomId, roomData.event(id))));
    const out: RoomEvent[] = [];
    blobs.forEach((b, i) => {
      if (b) out.push(this.toEvent(roomId, eventIds[i]!, decode<StoredEvent>(b)));
    });
    return out;
  }

  /** Current state ids, optionally one type or one (type, state_key). */
  async currentStateIds(roomId: string, filter: { type?: string; stateKey?: string } = {}): Promise<StateMap> {
    const k = this.key(roomId, roomData.state(roomId));
    if (filter.type !== undefined && filter.stateKey !== undefined) {
      const sk = stateKeyOf(filter.type, filter.stateKey);
      const id = await this.redis.hget(k, sk);
      return new Map(id ? [[sk, id]] : []);
    }
    const all = new Map(Object.entries(await this.redis.hgetall(k)));
    if (filter.type === undefined) return all;
    return new Map([...all].filter(([sk]) => splitStateKey(sk)[0] === filter.type));
  }

  async currentState(roomId: string, filter: { type?: string; stateKey?: string } = {}): Promise<RoomEvent[]> {
    return this.events(roomId, [...(await this.currentStateIds(roomId, filter)).values()]);
  }

  /** The state as of a snapshot id (walking its delta chain; cached, snapshots never change). */
  async snapshot(roomId: string, id: number): Promise<StateMap> {
    if (id === 0) return new Map();
    const cacheKey = `${roomId}\u0000${id}`;
    const hit = this.snapshotCache.get(cacheKey);
    if (hit) return hit;
    const pending = this.snapshotsInFlight.get(cacheKey);
    if (pending !== undefined) return pending;
    const read = readSnapshot(
      (name) => this.redis.getBuffer(this.key(roomId, name)),
      roomId,
      id,
      this.snapshotCache,
      (names) => this.redis.mgetBuffer(...names.map((name) => this.key(roomId, name))),
      // The chain's deltas as read: what `stateEntryAt` walks (the prev_content of each state event
      // a first initial sync sends) without reading them again.
      (sid, stored) => {
        const k = `${roomId}\u0000${sid}`;
        if (!this.deltaCache.has(k)) this.deltaCache.set(k, toDelta(stored));
      },
    ).finally(() => this.snapshotsInFlight.delete(cacheKey));
    this.snapshotsInFlight.set(cacheKey, read);
    return read;
  }

  /** A snapshot if it is materialised in the cache (no read). */
  cachedSnapshot(roomId: string, id: number): StateMap | undefined {
    return id === 0 ? undefined : this.snapshotCache.get(`${roomId}\u0000${id}`);
  }

  /**
   * Put a snapshot read elsewhere into the cache (an initial-sync slice shared through Redis
   * carries the few its page's events stand on: src/sync/initial-slices.ts). Snapshots never
   * change once written, so a copy from anywhere is the snapshot.
   */
  primeSnapshot(roomId: string, id: number, state: StateMap): void {
    if (id === 0) return;
    const key = `${roomId}\u0000${id}`;
    if (!this.snapshotCache.has(key)) this.snapshotCache.set(key, state);
  }

  /**
   * One entry of the state at a snapshot — what a state event replaced — without materialising the
   * snapshot: the chain's deltas are looked through newest first, down to its full root (or to a
   * materialised snapshot in the cache). The state section of an initial sync asks this for every
   * state event it sends, each at its own snapshot: materialising each would copy the room's whole
   * state once per state event.
   */
  async stateEntryAt(roomId: string, id: number, key: string): Promise<string | undefined> {
    if (id === 0) return undefined;
    // An entry found before is kept (`entryCache`: an initial sync asks the same ones every time);
    // else the snapshot itself may be materialised already; else the steps below it are looked up
    // as deltas only (one cache lookup per step, not two).
    const entryKey = `${roomId}\u0000${id}\u0000${key}`;
    const known = this.entryCache.get(entryKey);
    if (known !== undefined) return known ?? undefined;
    const whole = this.snapshotCache.get(`${roomId}\u0000${id}`);
    if (whole) return whole.get(key);
    let found: string | null = null;
    let cur: number | null = id;
    while (cur !== null && cur !== 0) {
      const delta = await this.delta(roomId, cur);
      if (delta.d.has(key)) {
        found = delta.d.get(key) ?? null; // null: removed
        break;
      }
      cur = delta.p;
    }
    this.entryCache.set(entryKey, found);
    return found ?? undefined;
  }

  /**
   * `stateEntryAt` for many (snapshot, key) pairs of one room — what each state event of a slice
   * replaced —, in order. The pairs mostly lie on one delta chain: the deltas met on the way are
   * kept in a local map by number for the rest of the walks (one `delta()` per snapshot, and no
   * cache key string built per step of every walk, which a per-pair `stateEntryAt` did: 20 state
   * events down a chain of 20 are ~200 steps).
   */
  async stateEntriesAt(roomId: string, pairs: readonly { id: number; key: string }[]): Promise<(string | undefined)[]> {
    const local = new Map<number, StoredDelta>();
    const out: (string | undefined)[] = new Array(pairs.length);
    // Deepest first (the newest snapshot): its walk meets the deltas the others walk through.
    const order = pairs.map((_p, i) => i).sort((a, b) => pairs[b]!.id - pairs[a]!.id);
    for (const i of order) {
      const { id, key } = pairs[i]!;
      if (id === 0) continue;
      // Not through `entryCache`: the caller (a slice being built) keeps the answers itself, and a
      // first initial sync of 1,500 rooms built and stored 30,000 entry keys there for nothing.
      const whole = this.snapshotCache.get(`${roomId}\u0000${id}`);
      if (whole) {
        out[i] = whole.get(key);
        continue;
      }
      let found: string | null = null;
      let cur: number | null = id;
      while (cur !== null && cur !== 0) {
        let delta = local.get(cur);
        if (!delta) {
          // A cached delta without a promise (and its microtask) per step.
          delta = this.deltaCache.get(`${roomId}\u0000${cur}`) ?? (await this.delta(roomId, cur));
          local.set(cur, delta);
        }
        if (delta.d.has(key)) {
          found = delta.d.get(key) ?? null; // null: removed
          break;
        }
        cur = delta.p;
      }
      out[i] = found ?? undefined;
    }
    return out;
  }

  /**
   * A snapshot's own delta, cached; a miss reads the chain below it in one guessed MGET. Reads in
   * flight are shared per snapshot: the state events of one response walk overlapping chains at once.
   */
  private delta(roomId: string, id: number): Promise<StoredDelta> {
    const key = `${roomId}\u0000${id}`;
    const hit = this.deltaCache.get(key);
    if (hit) return Promise.resolve(hit);
    const pending = this.deltasInFlight.get(key);
    if (pending !== undefined) return pending;
    const read = this.redis.getBuffer(this.key(roomId, roomData.snapshot(roomId, id))).then((blob) => {
      if (!blob) throw new MissingSnapshotError(roomId, id);
      const own = toDelta(decode<StoredSnapshot>(blob));
      this.deltaCache.set(key, own);
      if (own.p !== null && own.n > 1) {
        const guess: number[] = [];
        for (let g = own.p; g > 0 && guess.length < own.n; g--) {
          const k = `${roomId}\u0000${g}`;
          if (!this.deltaCache.get(k) && !this.deltasInFlight.has(k)) guess.push(g);
        }
        if (guess.length) {
          const blobs = this.redis.mgetBuffer(...guess.map((g) => this.key(roomId, roomData.snapshot(roomId, g))));
          guess.forEach((g, i) => {
            const k = `${roomId}\u0000${g}`;
            const one: Promise<StoredDelta> = blobs
              .then((b) => {
                if (!b[i]) {
                  // Not there after all (a guess past the chain): read it alone, as any other.
                  if (this.deltasInFlight.get(k) === one) this.deltasInFlight.delete(k);
                  return this.delta(roomId, g);
                }
                const d = toDelta(decode<StoredSnapshot>(b[i]!));
                this.deltaCache.set(k, d);
                return d;
              })
              .finally(() => {
                if (this.deltasInFlight.get(k) === one) this.deltasInFlight.delete(k);
              });
            one.catch(() => undefined);
            this.deltasInFlight.set(k, one);
          });
        }
      }
      return own;
    });
    const shared: Promise<StoredDelta> = read.finally(() => {
      if (this.deltasInFlight.get(key) === shared) this.deltasInFlight.delete(key);
    });
    this.deltasInFlight.set(key, shared);
    return shared;
  }

  /**
   * The servers with a joined member in the state of a snapshot, each with how many — the servers
   * "in the room" there (the federation sender sends an event to those of the state before it) —,
   * and the snapshot's `m.room.server_acl` event id. Counted from the answer for the snapshot's
   * parent and its own delta (the member events it changes, and those they replaced), so the
   * members of a big room are read once, at the full root of its chain, not once per snapshot
   * (and the ACL is carried along, not looked up down the chain each time); answers are kept, as
   * snapshots never change. A snapshot that is not there (the room was purged) throws
   * MissingSnapshotError.
   */
  async joinedServersAt(roomId: string, id: number): Promise<ServersAt> {
    if (id === 0) return NO_SERVERS;
    const key = `${roomId}\u0000${id}`;
    const hit = this.serversCache.get(key);
    if (hit) return hit;
    const pending = this.serversInFlight.get(key);
    if (pending !== undefined) return pending;
    const read = this.countJoinedServers(roomId, id).finally(() => this.serversInFlight.delete(key));
    this.serversInFlight.set(key, read);
    return read;
  }

  private async countJoinedServers(roomId: string, id: number): Promise<ServersAt> {
    // Down the chain to a snapshot counted before, or to the chain's full root.
    const steps: { id: number; delta: StoredDelta }[] = [];
    let at: ServersAt = NO_SERVERS;
    for (let cur: number | null = id; cur !== null && cur !== 0; ) {
      const counted = cur === id ? undefined : this.serversCache.get(`${roomId}\u0000${cur}`);
      if (counted) {
        at = counted;
        break;
      }
      const delta = await this.delta(roomId, cur);
      steps.push({ id: cur, delta });
      cur = delta.p;
    }
    // Then up again, each step's member changes applied to its parent's counts.
    for (let i = steps.length - 1; i >= 0; i--) {
      const { id: sid, delta } = steps[i]!;
      let counts = at.joined;
      const acl = delta.d.has(SERVER_ACL_KEY) ? (delta.d.get(SERVER_ACL_KEY) ?? null) : at.serverAcl;
      const changed = [...delta.d.keys()].filter((k) => k.startsWith(MEMBER_KEY_PREFIX));
      if (changed.length > 0) {
        const parent = delta.p;
        const replaced = parent === null ? [] : await this.stateEntriesAt(roomId, changed.map((key) => ({ id: parent, key })));
        const ids = new Set<string>();
        changed.forEach((k, j) => {
          const now = delta.d.get(k);
          if (now) ids.add(now);
          if (replaced[j]) ids.add(replaced[j]!);
        });
        const joined = new Set<string>();
        const wanted = [...ids];
        const chunks = await Promise.all(Array.from({ length: Math.ceil(wanted.length / MEMBER_READ_CHUNK) }, (_c, n) => this.events(roomId, wanted.slice(n * MEMBER_READ_CHUNK, (n + 1) * MEMBER_READ_CHUNK))));
        for (const events of chunks) for (const e of events) if (isJsonObject(e.event.content) && e.event.content.membership === 'join') joined.add(e.eventId);
        const next = new Map(counts);
        changed.forEach((k, j) => {
          const server = serverOf(k.slice(MEMBER_KEY_PREFIX.length));
          if (!server) return;
          const now = delta.d.get(k);
          const change = (now && joined.has(now) ? 1 : 0) - (replaced[j] && joined.has(replaced[j]!) ? 1 : 0);
          if (change === 0) return;
          const n = (next.get(server) ?? 0) + change;
          if (n > 0) next.set(server, n);
          else next.delete(server);
        });
        counts = next;
      }
      at = counts === at.joined && acl === at.serverAcl ? at : { joined: counts, serverAcl: acl };
      this.serversCache.set(`${roomId}\u0000${sid}`, at);
    }
    return at;
  }

  /**
   * The snapshot of the state before an event of a room output: the one the output names, or the
   * event's record's when the output names none (an older worker's) or was written while the room
   * had partial state (the record gets the full state before the event once the room's is in:
   * actors/room.ts decideCompletePartialState). Undefined when the event is not stored (purged).
   */
  async stateBeforeOf(out: Pick<RoomOutput, 'roomId' | 'eventId' | 'stateBefore' | 'partialState'>): Promise<number | undefined> {
    if (typeof out.stateBefore === 'number' && !out.partialState) return out.stateBefore;
    return (await this.event(out.roomId, out.eventId))?.stateBefore;
  }

  /** State before (default) or after an event. */
  async stateAt(roomId: string, eventId: string, when: 'before' | 'after' = 'before'): Promise<StateMap | null> {
    const e = await this.event(roomId, eventId);
    if (!e) return null;
    return this.snapshot(roomId, when === 'before' ? e.stateBefore : e.stateAfter);
  }

  /**
   * The auth chain of some events: every event reachable through `auth_events`, the events
   * themselves excluded (federation /event_auth and /state answer with it).
   */
  async authChain(roomId: string, eventIds: string[]): Promise<RoomEvent[]> {
    const seen = new Set<string>(eventIds);
    const out: RoomEvent[] = [];
    let frontier = (await this.events(roomId, eventIds)).flatMap((e) => refIds(e.event.auth_events));
    while (frontier.length) {
      const fresh = [...new Set(frontier)].filter((id) => !seen.has(id));
      fresh.forEach((id) => seen.add(id));
      const events = await this.events(roomId, fresh);
      out.push(...events);
      frontier = events.flatMap((e) => refIds(e.event.auth_events));
    }
    return out;
  }

  /** Members, optionally with one membership. */
  async members(roomId: string, membership?: string): Promise<Map<string, string>> {
    const all = Object.entries(await this.redis.hgetall(this.key(roomId, roomData.members(roomId))));
    return new Map(membership ? all.filter(([, m]) => m === membership) : all);
  }

  /**
   * Whether some user of `server` is joined. Scans the members hash a page at a time and stops at
   * the first one: a join into a 10,000-member room with local members reads one page, not the
   * whole hash (only a room where the server has no joined user is read to the end).
   */
  async hasJoinedMemberOf(roomId: string, server: string): Promise<boolean> {
    const key = this.key(roomId, roomData.members(roomId));
    let cursor = '0';
    do {
      const [next, flat] = await this.redis.hscan(key, cursor, 'COUNT', 500);
      for (let i = 0; i + 1 < flat.length; i += 2) if (flat[i + 1] === 'join' && serverOf(flat[i]!) === server) return true;
      cursor = next;
    } while (cursor !== '0');
    return false;
  }

  async membership(roomId: string, userId: string): Promise<string | null> {
    return this.redis.hget(this.key(roomId, roomData.members(roomId)), userId);
  }

  async forwardExtremities(roomId: string): Promise<string[]> {
    return (await this.meta(roomId))?.extremities ?? [];
  }

  /**
   * A page of the timeline from stream position `from` (exclusive), backwards ('b') or forwards
   * ('f'). `from` null starts at the newest (b) or oldest (f) end.
   */
  async timeline(roomId: string, dir: 'b' | 'f', from: number | null, limit: number): Promise<TimelinePage> {
    const k = this.key(roomId, roomData.timeline(roomId));
    const n = Math.max(1, Math.min(limit, 1000));
    const rows = (dir === 'b'
      ? await this.redis.zrevrangebyscore(k, from === null ? '+inf' : `(${from}`, '-inf', 'WITHSCORES', 'LIMIT', 0, n + 1)
      : await this.redis.zrangebyscore(k, from === null ? '-inf' : `(${from}`, '+inf', 'WITHSCORES', 'LIMIT', 0, n + 1)) as string[];
    const ids: string[] = [];
    const positions: number[] = [];
    for (let i = 0; i < rows.length; i += 2) {
      ids.push(rows[i]!);
      positions.push(Number(rows[i + 1]));
    }
    const more = ids.length > n;
    const page = ids.slice(0, n);
    const events = await this.events(roomId, page);
    return { events, next: more ? positions[n - 1]! : null };
  }

  /** Events around one event: `limit` before and after (in stream order). */
  async context(roomId: string, eventId: string, limit: number): Promise<{ event: RoomEvent; before: RoomEvent[]; after: RoomEvent[] } | null> {
    const event = await this.event(roomId, eventId);
    if (!event) return null;
    const half = Math.max(0, limit);
    const [before, after] = await Promise.all([this.timeline(roomId, 'b', event.pos, half), this.timeline(roomId, 'f', event.pos, half)]);
    return { event, before: half ? before.events : [], after: half ? after.events : [] };
  }

  /**
   * May `userId` see `eventId`? (client-server API, "History visibility"): world_readable; the
   * user was joined at the event; `shared` and the user joined at some point after it (here: is
   * joined now, or left after having been joined after the event); `invited` and the user was
   * invited at the event.
   */
  async canSee(roomId: string, userId: string, eventOrId: string | RoomEvent, known?: KnownEvents): Promise<boolean> {
    const event = typeof eventOrId === 'string' ? await this.event(roomId, eventOrId) : eventOrId;
    if (!event) return false;
    const facts = this.cachedVisibility(roomId, event.stateBefore, userId) ?? (await this.visibilityAt(roomId, event.stateBefore, userId, known));
    const { visibility } = facts;
    let { membershipAt } = facts;
    // The user's own membership event counts with the "more joined" of its membership and the one
    // before it (as Synapse does): their join is shown in a `joined` room, their invite in an
    // `invited` one, and their leave always (the client must see the room go).
    if (event.event.type === 'm.room.member' && event.event.state_key === userId) {
      const own = str(event.event.content, 'membership');
      if (own === 'leave' && (membershipAt === 'join' || membershipAt === 'invite')) return true;
      if (own !== undefined && membershipRank(own) < membershipRank(membershipAt)) membershipAt = own;
    }
    if (visibility === 'world_readable') return true;
    if (membershipAt === 'join') return true;
    if (visibility === 'invited' && membershipAt === 'invite') return true;
    if (visibility === 'shared') {
      const current = await this.membership(roomId, userId);
      if (current === 'join') return true;
      const latestId = (await this.currentStateIds(roomId, { type: 'm.room.member', stateKey: userId })).values().next().value;
      if (!latestId) return false;
      const latest = await this.event(roomId, latestId);
      if (!latest || latest.pos <= event.pos) return false;
      const before = await this.snapshot(roomId, latest.stateBefore);
      const prior = before.get(stateKeyOf('m.room.member', userId));
      const priorEvent = prior ? await this.event(roomId, prior) : null;
      return !!priorEvent && priorEvent.pos > event.pos && str(priorEvent.event.content, 'membership') === 'join';
    }
    return false;
  }

  /**
   * The user's membership just after an event (MSC4115's `unsigned.membership`, as Synapse gives
   * it: from the state after the event; 'leave' when they have none there, or for an outlier).
   */
  async membershipAfter(roomId: string, event: RoomEvent, userId: string, known?: KnownEvents): Promise<string> {
    if (event.event.type === 'm.room.member' && event.event.state_key === userId) return str(event.event.content, 'membership') ?? 'leave';
    if (event.outlier || !event.stateAfter) return 'leave';
    return (await this.visibilityAt(roomId, event.stateAfter, userId, known)).membershipAt ?? 'leave';
  }

  /**
   * The history visibility and the user's membership in a state snapshot. Cached for good: a
   * snapshot never changes, and a redaction keeps both `history_visibility` and `membership`
   * (every room version's redaction algorithm), so the answer cannot change either. A thousand
   * long-polls woken by messages that share one state snapshot ask this once per user, not once
   * per event, and without fetching the member event again.
   */
  private async visibilityAt(roomId: string, snapshotId: number, userId: string, known?: KnownEvents): Promise<VisibilityFacts> {
    const hit = this.cachedVisibility(roomId, snapshotId, userId);
    if (hit) return hit;
    const state = this.snapshotCache.get(`${roomId}\u0000${snapshotId}`) ?? (await this.snapshot(roomId, snapshotId));
    const hvId = state.get(stateKeyOf('m.room.history_visibility', ''));
    const memberId = state.get(stateKeyOf('m.room.member', userId));
    // Events the caller holds already (a slice's: the same stored events, their membership and
    // history_visibility kept) are not read again.
    const hvKnown = hvId ? known?.(hvId) : undefined;
    const memberKnown = memberId ? known?.(memberId) : undefined;
    const [hv, member] = await Promise.all([hvKnown ?? (hvId ? this.event(roomId, hvId) : null), memberKnown ?? (memberId ? this.event(roomId, memberId) : null)]);
    // Missing, not a string, or not one of the four values: "shared" (effectiveHistoryVisibility).
    const facts = { visibility: effectiveHistoryVisibility(hv?.event.content as JsonValue | undefined), membershipAt: str(member?.event.content, 'membership') };
    // Full: the oldest rooms go (the room asked about too, when it alone fills the bound).
    while (this.visibilityFacts >= VISIBILITY_CACHE_MAX && this.visibilityCache.size) this.dropOldestVisibilityRoom();
    let bySnapshot = this.visibilityCache.get(roomId);
    if (!bySnapshot) this.visibilityCache.set(roomId, (bySnapshot = new Map()));
    let byUser = bySnapshot.get(snapshotId);
    if (!byUser) bySnapshot.set(snapshotId, (byUser = new Map()));
    if (!byUser.has(userId)) this.visibilityFacts++;
    byUser.set(userId, facts);
    return facts;
  }

  private cachedVisibility(roomId: string, snapshotId: number, userId: string): VisibilityFacts | undefined {
    return this.visibilityCache.get(roomId)?.get(snapshotId)?.get(userId);
  }

  private dropOldestVisibilityRoom(): void {
    const first = this.visibilityCache.keys().next();
    if (first.done) return;
    for (const byUser of this.visibilityCache.get(first.value)!.values()) this.visibilityFacts -= byUser.size;
    this.visibilityCache.delete(first.value);
  }

  /**
   * `canSee` answered from the visibility cache alone, without a promise (a woken member's answer
   * asks it for every event): the answer, or undefined when it needs a read (facts not cached, or
   * `shared` history for someone not joined at the event).
   */
  canSeeCached(roomId: string, userId: string, event: RoomEvent): boolean | undefined {
    const facts = this.cachedVisibility(roomId, event.stateBefore, userId);
    if (!facts) return undefined;
    let { membershipAt } = facts;
    if (event.event.type === 'm.room.member' && event.event.state_key === userId) {
      const own = str(event.event.content, 'membership');
      if (own === 'leave' && (membershipAt === 'join' || membershipAt === 'invite')) return true;
      if (own !== undefined && membershipRank(own) < membershipRank(membershipAt)) membershipAt = own;
    }
    if (facts.visibility === 'world_readable' || membershipAt === 'join') return true;
    if (facts.visibility === 'invited' && membershipAt === 'invite') return true;
    if (facts.visibility === 'shared') return undefined;
    return false;
  }

  /** `membershipAfter` answered without a promise when it needs no read (else undefined). */
  membershipAfterCached(roomId: string, event: RoomEvent, userId: string): string | undefined {
    if (event.event.type === 'm.room.member' && event.event.state_key === userId) return str(event.event.content, 'membership') ?? 'leave';
    if (event.outlier || !event.stateAfter) return 'leave';
    const facts = this.cachedVisibility(roomId, event.stateAfter, userId);
    return facts ? (facts.membershipAt ?? 'leave') : undefined;
  }

  /**
   * Events as they were at most `RECENT_EVENTS_TTL_MS` ago, shared by every caller in that time:
   * for fan-out reads (a thousand /sync long-polls woken by one message load it once, and decode
   * it once). Only a redaction changes a stored event; one read here may miss a redaction that
   * committed within the TTL, which a sync client sees anyway — the redaction event comes in the
   * same or a later response than the event it redacts.
   */
  async recentEvents(roomId: string, eventIds: string[]): Promise<RoomEvent[]> {
    if (eventIds.length === 0) return [];
    const now = Date.now();
    // Expired entries go at once (insertion order is load order), not when the bound is reached:
    // a busy room would otherwise keep the bound's worth of old events alive for nothing.
    this.recent.dropOldestWhile((r) => now - r.at >= RECENT_EVENTS_TTL_MS);
    const loads = new Map<string, Promise<RoomEvent | null> | RoomEvent | null>();
    const missing: string[] = [];
    for (const id of eventIds) {
      if (loads.has(id)) continue;
      const hit = this.recent.get(id);
      if (hit && now - hit.at < RECENT_EVENTS_TTL_MS) loads.set(id, hit.event);
      else {
        const pending = this.recentInFlight.get(id);
        if (pending === undefined) missing.push(id);
        else loads.set(id, pending);
      }
    }
    if (missing.length) {
      const blobs = this.redis.mgetBuffer(...missing.map((id) => this.key(roomId, roomData.event(id))));
      missing.forEach((id, i) => {
        // A failed load is not kept: the next caller tries again.
        const shared = blobs.then((b) => {
          const stored = b[i] ? decode<StoredEvent>(b[i]!) : null;
          const event = stored ? this.toEvent(roomId, id, stored) : null;
          this.recent.set(id, { at: now, event, bytes: stored ? weighEventText(stored.j) : 64 });
          return event;
        }).finally(() => {
          if (this.recentInFlight.get(id) === shared) this.recentInFlight.delete(id);
        });
        shared.catch(() => undefined);
        this.recentInFlight.set(id, shared);
        loads.set(id, shared);
      });
    }
    // All of them in memory (every woken member but the first): no promise per event.
    let waiting = false;
    for (const v of loads.values()) if (v instanceof Promise) waiting = true;
    const events = waiting ? await Promise.all(eventIds.map((id) => loads.get(id)!)) : eventIds.map((id) => loads.get(id) as RoomEvent | null);
    return events.filter((e): e is RoomEvent => !!e);
  }

}

/** What `readSnapshot` keeps materialised snapshots in: a plain Map, or a `SnapshotCache`. */
export interface SnapshotStore {
  get(key: string): StateMap | undefined;
  set(key: string, state: StateMap): unknown;
}

/**
 * Materialised state snapshots, about least recently used first out, bounded by the bytes they
 * hold (src/store/clock-cache.ts) rather than by how many snapshots: an initial sync of a user in
 * 1,500 rooms needs a few snapshots per room (a few thousand in all, most of a few dozen
 * entries), which a count bound sized for big rooms would thrash — every sync re-walking every
 * delta chain — while one 10,000-member room's snapshot costs what it weighs. A snapshot built
 * from another shares its key and event id strings, so an entry is weighed at its hash-table slot
 * plus a share of its strings.
 */
export class SnapshotCache extends ClockCache<string, StateMap> {
  constructor(maxBytes: number) {
    super(maxBytes, weighSnapshot);
  }
}

/** Bytes a materialised snapshot is reckoned to hold (see SnapshotCache). */
export function weighSnapshot(state: StateMap): number {
  return 64 + state.size * SNAPSHOT_ENTRY_BYTES;
}

const SNAPSHOT_ENTRY_BYTES = 56;

/**
 * Materialise a state snapshot by walking its delta chain to a full snapshot (or to one already
 * in `cache`). Snapshots never change once written, so caching them is always safe.
 *
 * With `fetchMany`, the chain is read in a few round trips instead of one per step: a snapshot
 * records how many deltas lie between it and its full root (`n`), and a room's snapshots are
 * numbered in the order they were written, so the rest of the chain is most often the `n`
 * snapshots numbered just below its parent. Those are read in one MGET; the walk then follows the
 * real parent links through what came back and reads again only where the guess was wrong (a
 * chain re-based on its root, or branches of the DAG writing snapshots in between).
 */
export async function readSnapshot(
  fetch: (name: string) => Promise<Buffer | null>,
  roomId: string,
  id: number,
  cache: SnapshotStore,
  fetchMany?: (names: string[]) => Promise<(Buffer | null)[]>,
  /** Each snapshot of the chain read on the way (not those found in `cache`). */
  onStored?: (id: number, stored: StoredSnapshot) => void,
): Promise<StateMap> {
  if (id === 0) return new Map();
  const cacheKey = `${roomId}\u0000${id}`;
  const cached = cache.get(cacheKey);
  if (cached) return cached;
  const chain: StoredSnapshot[] = [];
  const prefetched = new Map<number, StoredSnapshot>();
  let cur: number | null = id;
  let base: StateMap = new Map();
  while (cur !== null) {
    const hit = cur === id ? undefined : cache.get(`${roomId}\u0000${cur}`);
    if (hit) {
      base = hit;
      break;
    }
    let snap = prefetched.get(cur);
    if (!snap) {
      const blob = await fetch(roomData.snapshot(roomId, cur));
      if (!blob) throw new MissingSnapshotError(roomId, cur);
      snap = decode<StoredSnapshot>(blob);
      if (fetchMany && snap.p !== null && snap.n > 1 && !prefetched.has(snap.p)) {
        // Guess the rest of the chain: the n snapshots numbered from the parent down, stopping at
        // one already cached (the walk ends there).
        const guess: number[] = [];
        for (let g = snap.p; g > 0 && guess.length < snap.n; g--) {
          if (cache.get(`${roomId}\u0000${g}`)) break;
          guess.push(g);
        }
        if (guess.length > 1) {
          const blobs = await fetchMany(guess.map((g) => roomData.snapshot(roomId, g)));
          blobs.forEach((b, i) => {
            if (b) prefetched.set(guess[i]!, decode<StoredSnapshot>(b));
          });
        }
      }
    }
    chain.push(snap);
    onStored?.(cur, snap);
    cur = snap.p;
  }
  const state = new Map(base);
  for (let i = chain.length - 1; i >= 0; i--) {
    for (const [k, v] of chain[i]!.d) {
      if (v === null) state.delete(k);
      else state.set(k, v);
    }
  }
  if (cache instanceof Map && cache.size > 256) cache.delete(cache.keys().next().value!);
  cache.set(cacheKey, state);
  return state;
}

/** A stored snapshot with its delta as a map (`bytes`: its weight in the delta cache; its strings are its own). */
interface StoredDelta {
  p: number | null;
  n: number;
  d: Map<string, string | null>;
  readonly bytes: number;
}

function toDelta(s: StoredSnapshot): StoredDelta {
  const d = new Map(s.d);
  return { p: s.p, n: s.n, d, bytes: 48 + weighStateMap(d, true) };
}

/** Bytes a loaded event is reckoned to hold: its parsed JSON (objects, strings) is some three times its text. */
function weighEventText(j: string): number {
  return 200 + 3 * j.length;
}

function refIds(refs: unknown): string[] {
  if (!Array.isArray(refs)) return [];
  return refs.map((r) => (Array.isArray(r) ? r[0] : r)).filter((r): r is string => typeof r === 'string');
}

function str(content: unknown, key: string): string | undefined {
  if (!isJsonObject(content as never)) return undefined;
  const v = (content as JsonObject)[key];
  return typeof v === 'string' ? v : undefined;
}

function toRoomEvent(eventId: string, s: StoredEvent, parsed?: JsonObject): RoomEvent {
  // Fields set one by one, not spread from temporary objects (four per event, on every load).
  const e: RoomEvent = { eventId, event: parsed ?? (JSON.parse(s.j) as JsonObject), pos: s.p, depth: s.d, stateBefore: s.sb, stateAfter: s.sa };
  if (s.rb) e.redactedBy = s.rb;
  if (s.rej) e.rejected = s.rej;
  if (s.sf) e.softFailed = s.sf;
  if (s.o) e.outlier = true;
  return e;
}

/** Whether a client may be shown this event at all (visibility rules aside). */
export function servableToClients(e: RoomEvent): boolean {
  return !e.rejected && !e.softFailed && !e.outlier;
}

/**
 * Whether a client may be shown this event as room state (found through a state snapshot): as
 * `servableToClients`, except that outliers are served too — the state of a room joined over
 * federation came with the join as outliers (its history is not here), and it is the room's state.
 */
export function servableAsState(e: RoomEvent): boolean {
  return !e.rejected && !e.softFailed;
}

/** Memberships from the most to the least joined (an unknown or missing one ranks as leave). */
const MEMBERSHIP_ORDER = ['join', 'invite', 'knock', 'leave', 'ban'];

function membershipRank(m: string | undefined): number {
  const i = m === undefined ? -1 : MEMBERSHIP_ORDER.indexOf(m);
  return i < 0 ? MEMBERSHIP_ORDER.indexOf('leave') : i;
}
