/**
 * Wake-ups for long-polling `/sync` requests, without polling loops.
 *
 * Workers publish one small notification on one channel (`keys.syncNotify()`) after every commit
 * that appended outputs: the room for room outputs (plus the users whose membership the outputs
 * change, who may not be in the room yet — an invite), the user for user outputs (account data,
 * devices, profile). The membership index publishes the user as well when it writes an entry,
 * since `/sync` reads that index and it lags the room actor slightly (src/readers/membership-index.ts).
 *
 * Each front subscribes once (`SyncNotifier`) and wakes exactly the waiting requests whose user
 * is that user or is in that room. A request registers its waiter before it computes anything and
 * keeps it until it answers, so a notification that arrives while it computes marks it dirty and
 * it computes again instead of sleeping through it. Pub/sub may drop a message when a connection
 * blips; the request then answers at its timeout and the client's next sync picks the data up.
 */
import type { Redis } from 'ioredis';
import type { CommittedOutputs } from '../runtime/shard-runner';
import { recencyIndexData, type KeySpace } from '../store/keys';
import { subscriberClient, type RedisClient } from '../store/redis';
import { PushProgress } from './push-progress';
import { RoomEventRates } from './answer-spacing';
import { eventsPersisted, syncNotifications, syncWaitingSources, syncWakeups } from '../ops/metrics';

/**
 * How long room and user outboxes keep entries for /sync (Worker `outboxRetentionMs`): an
 * incremental sync whose `since` is older than what an outbox still holds answers those rooms
 * as a gap (`limited`, the latest events and the full state) instead of their missed events.
 */
export const SYNC_OUTBOX_RETENTION_MS = 15 * 60_000;

export interface SyncNotification {
  rooms?: string[];
  /**
   * How many room events each room of `rooms` gained (same order), from a worker's room commits:
   * the fronts' estimate of each room's rate (src/sync/answer-spacing.ts `RoomEventRates`). Absent
   * (a reader's notification, or a worker before it): none counted.
   */
  roomEvents?: number[];
  users?: string[];
  /**
   * Of a user-shard commit: the users whose own user actor committed (push rules, pushers, account
   * data) — empty for the user shard's other actors (presence, to-device, keys, …). The push
   * evaluator drops its cached rulesets for these only; a notification without the field (one of
   * the readers', or from a worker before it) drops them for every user in `users`, as before.
   * With every named user dropping, each presence change or to-device message made the evaluator
   * reload and recompile that user's rules on the next event.
   */
  userData?: string[];
  /**
   * The push evaluator finished room shard `shard`'s outbox up to entry id `upto` (published after
   * each batch's writes, with `pushData.evaluatedUpTo` set to the same id): syncs waiting to send
   * unread counts that include those events go on (src/sync/push-progress.ts).
   */
  evaluated?: { shard: number; upto: string }[];
  /**
   * Users whose sliding-sync recency index moved a room (src/readers/recency-index.ts): wakes
   * their sliding syncs only (a notifier built with `wakeOnBumped`); /sync v2 does not read it.
   */
  bumped?: string[];
  /** The recency index reader applied room shard `shard`'s outbox up to `upto` (`recencyProgress`). */
  recency?: { shard: number; upto: string }[];
}

export function encodeNotification(n: SyncNotification): string {
  return JSON.stringify(n);
}

export function decodeNotification(s: string): SyncNotification | null {
  try {
    const v = JSON.parse(s) as SyncNotification;
    return v && typeof v === 'object' ? v : null;
  } catch {
    return null;
  }
}

/**
 * The `notify` callback a worker process gives its Worker (src/main.ts, src/worker-main.ts): turns
 * what a commit appended into a notification (and counts the room events persisted, for the
 * metrics). Fire and forget: a lost one only delays a sync. The commits of one turn of the event
 * loop (a group commit over many actors and shards) are published as ONE notification naming all
 * their rooms and users, not one PUBLISH per commit.
 */
export function workerSyncNotify(redis: RedisClient, keys: KeySpace): (c: CommittedOutputs) => void {
  const channel = keys.syncNotify();
  /** The turn's rooms, with the room events each gained. */
  let rooms = new Map<string, number>();
  let users = new Set<string>();
  let userData = new Set<string>();
  let scheduled = false;
  const flush = () => {
    scheduled = false;
    const n: SyncNotification = {};
    if (rooms.size) {
      n.rooms = [...rooms.keys()];
      n.roomEvents = [...rooms.values()];
    }
    if (users.size) {
      n.users = [...users];
      n.userData = [...userData];
    }
    rooms = new Map();
    users = new Set();
    userData = new Set();
    if (n.rooms || n.users) void redis.publish(channel, encodeNotification(n)).catch(() => undefined);
  };
  const schedule = () => {
    if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
  };
  const addRoom = (roomId: string, events: number) => rooms.set(roomId, (rooms.get(roomId) ?? 0) + events);
  return (c) => {
    if (c.kind === 'room') {
      const members = new Set<string>();
      let events = 0;
      for (const o of c.outputs as { event?: { type?: unknown; state_key?: unknown } }[]) {
        if (o?.event) events++;
        if (o?.event?.type === 'm.room.member' && typeof o.event.state_key === 'string') members.add(o.event.state_key);
      }
      // Every room event is committed here once (a redelivered message is a duplicate, not a
      // commit), which is what Synapse's synapse_storage_events_persisted_events_total counts.
      if (events) eventsPersisted.inc(events);
      addRoom(c.actorId, events);
      // Users whose membership changed drop their cached push rules too (`userData`), as a
      // notification naming them without the field would have them do.
      for (const u of members) {
        users.add(u);
        userData.add(u);
      }
      schedule();
    } else if (c.family === 'room') {
      // Other room-shard actors keyed by room id (typing, receipts): the room's members wait on it.
      addRoom(c.actorId, 0);
      schedule();
    } else if (c.family === 'user') {
      // User-shard actors keyed by user id (user, keys, to-device, presence, …) wake that user;
      // an output may name more users to wake (`notify_users`: e.g. fan-out of a device change).
      // Straight into the turn's sets (no notification object and arrays per commit: this runs
      // for every user-shard commit). Only the user actor's own user drops its push rules.
      users.add(c.actorId);
      if (c.kind === 'user') userData.add(c.actorId);
      for (const o of c.outputs as { notify_users?: unknown }[]) {
        if (Array.isArray(o?.notify_users)) for (const u of o.notify_users) if (typeof u === 'string') users.add(u);
      }
      schedule();
    }
  };
}

/**
 * A sync's window ends at its cut's millisecond (`[since, <cutMs>-0)`), so a commit in that same
 * millisecond — before TIME answered — belongs to the next window even though its notification may
 * already have come. A commit more than a millisecond before the computation started is in an
 * earlier millisecond; within this margin, a notification counts as possibly after the cut.
 */
export const SAME_MS_MARGIN = 2;

/** A notification's number and when it arrived (`performance.now()`). */
interface Change {
  seq: number;
  at: number;
}

/** Taken before computing an answer (`SyncNotifier.changeMark`). */
export interface ChangeMark {
  seq: number;
  at: number;
}

/** Users and rooms whose last change a front remembers (each map); beyond, the oldest are forgotten. */
const CHANGE_TRACKING_MAX = 200_000;

/** One waiting `/sync` request. */
export class SyncWaiter {
  /** Something for this request happened since it last started computing. */
  dirty = false;
  /** Rooms whose notifications concern it (null until its first computation: then any room does). */
  rooms: Set<string> | null = null;
  private wakeUp: (() => void) | null = null;
  closed = false;

  constructor(
    readonly userId: string,
    private readonly owner: SyncNotifier,
  ) {}

  /** The rooms to listen to from now on (the user's joined and invited rooms). */
  setRooms(rooms: Iterable<string>): void {
    this.owner.setRooms(this, new Set(rooms));
  }

  /** When it was last poked (`performance.now()`; -Infinity: never). */
  lastPokeAt = Number.NEGATIVE_INFINITY;

  /** Wake it (a notification matched). */
  poke(): void {
    this.dirty = true;
    this.lastPokeAt = performance.now();
    const w = this.wakeUp;
    this.wakeUp = null;
    if (w) {
      syncWakeups.inc();
      w();
    }
  }

  /** Resolve when poked (at once if already dirty), after `ms`, or when `signal` aborts. */
  wait(ms: number, signal?: AbortSignal): Promise<void> {
    if (this.dirty || this.closed || ms <= 0 || signal?.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        this.wakeUp = null;
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal?.addEventListener('abort', done, { once: true });
      this.wakeUp = done;
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.owner.remove(this);
    this.poke();
  }
}

/** A front's single subscription to the sync channel, and the requests waiting on it. */
export class SyncNotifier {
  private readonly byUser = new Map<string, Set<SyncWaiter>>();
  private readonly byRoom = new Map<string, Set<SyncWaiter>>();
  /** Waiters that have not computed yet: any room notification concerns them. */
  private readonly unscoped = new Set<SyncWaiter>();
  private sub: Redis | null = null;
  private starting: Promise<void> | null = null;
  private removeMetricSource: (() => void) | null = null;
  /** The push evaluator's progress per room shard, fed by the same channel. */
  readonly pushProgress: PushProgress;
  /** The recency index reader's progress per room shard (src/readers/recency-index.ts). */
  readonly recencyProgress: PushProgress;
  /**
   * Each room's recent event rate, from the notifications' `roomEvents` (the /sync answer
   * spacing's cap); kept only by a notifier built with `roomRates` (sliding sync's does not read it).
   */
  readonly roomRates: RoomEventRates | null;
  /**
   * Change tracking (see `unchangedSince`): every notification delivered gets the next number;
   * per user and room the number of the last one naming it. Numbers below `floor` are unknown
   * (before the subscription was up, or across a reconnection, when messages may have been lost,
   * or forgotten to bound memory): they count as "may have changed".
   */
  private seq = 0;
  private floor = Number.POSITIVE_INFINITY;
  private readonly lastByUser = new Map<string, Change>();
  private readonly lastByRoom = new Map<string, Change>();

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: KeySpace,
    private readonly o: { wakeOnBumped?: boolean; roomRates?: boolean } = {},
  ) {
    this.roomRates = o.roomRates ? new RoomEventRates() : null;
    this.pushProgress = new PushProgress(redis, keys);
    this.recencyProgress = new PushProgress(redis, keys, undefined, (shard) => keys.shard('room', shard).data(recencyIndexData.upTo()));
  }

  /** Subscribe (once; later calls wait for the same subscription). */
  start(): Promise<void> {
    this.starting ??= (async () => {
      const sub = subscriberClient(this.redis);
      this.sub = sub;
      this.removeMetricSource = syncWaitingSources.add(() => [{ labels: {}, value: this.waiting }]);
      const channel = this.keys.syncNotify();
      sub.on('message', (ch: string, message: string) => {
        if (ch === channel) this.deliver(message);
      });
      // Messages published while the connection was down are lost: nothing before now is known.
      let trustTimer: NodeJS.Timeout | null = null;
      sub.on('close', () => {
        this.floor = Number.POSITIVE_INFINITY;
        if (trustTimer) clearTimeout(trustTimer);
        trustTimer = null;
      });
      // After a reconnection ioredis subscribes again; give that a moment before trusting the channel.
      sub.on('ready', () => {
        if (!this.subscribed) return;
        if (trustTimer) clearTimeout(trustTimer);
        trustTimer = setTimeout(() => {
          trustTimer = null;
          if (sub.status === 'ready') this.floor = ++this.seq;
        }, 1000);
        trustTimer.unref();
      });
      await sub.subscribe(channel);
      this.subscribed = true;
      this.floor = ++this.seq;
    })();
    return this.starting;
  }

  private subscribed = false;

  /** The current change mark: take it before computing an answer, to ask `unchangedSince` later. */
  get changeMark(): ChangeMark {
    return { seq: this.seq, at: performance.now() };
  }

  /**
   * True when no notification naming `userId` or one of `rooms` has arrived since `mark` (a
   * `changeMark` taken before an answer was computed), and none can have been lost meanwhile: an
   * answer computed from then on would have nothing new. (A commit's notification comes after
   * the commit; one that came before the mark was taken committed before the answer's cut.)
   */
  unchangedSince(userId: string, rooms: Iterable<string>, mark: ChangeMark): boolean {
    if (mark.seq < this.floor) return false;
    const changedAfter = (c: Change | undefined) => !!c && (c.seq > mark.seq || c.at > mark.at - SAME_MS_MARGIN);
    if (changedAfter(this.lastByUser.get(userId))) return false;
    for (const r of rooms) if (changedAfter(this.lastByRoom.get(r))) return false;
    return true;
  }

  /**
   * Whether a notification naming the user or one of `rooms` arrived within `margin` ms before
   * `mark` (or after it): its commit may share the cut's millisecond and so be left out of the
   * window. Unlike `unchangedSince` this only looks at what did arrive (a channel that is down
   * does not make it true), so a poll retries briefly, never in a loop.
   */
  changedNear(userId: string, rooms: Iterable<string>, mark: ChangeMark, margin = SAME_MS_MARGIN): boolean {
    const near = (c: Change | undefined) => !!c && c.at > mark.at - margin;
    if (near(this.lastByUser.get(userId))) return true;
    for (const r of rooms) if (near(this.lastByRoom.get(r))) return true;
    return false;
  }

  private noteChange(map: Map<string, Change>, key: string, change: Change): void {
    map.delete(key); // oldest first, for trimming
    map.set(key, change);
    if (map.size > CHANGE_TRACKING_MAX) {
      // Forget the oldest half; anything they could have answered now counts as changed.
      let drop = map.size - CHANGE_TRACKING_MAX / 2;
      for (const [k, v] of map) {
        if (drop-- <= 0) break;
        map.delete(k);
        this.floor = Math.max(this.floor, v.seq + 1);
      }
    }
  }

  /** How many requests wait now (tests, status). */
  get waiting(): number {
    let n = 0;
    for (const s of this.byUser.values()) n += s.size;
    return n;
  }

  /** Register a request before it computes its first response. */
  async waiter(userId: string): Promise<SyncWaiter> {
    await this.start();
    const w = new SyncWaiter(userId, this);
    add(this.byUser, userId, w);
    this.unscoped.add(w);
    return w;
  }

  setRooms(w: SyncWaiter, rooms: Set<string>): void {
    if (w.closed) return;
    for (const r of w.rooms ?? []) if (!rooms.has(r)) del(this.byRoom, r, w);
    for (const r of rooms) add(this.byRoom, r, w);
    w.rooms = rooms;
    this.unscoped.delete(w);
  }

  remove(w: SyncWaiter): void {
    del(this.byUser, w.userId, w);
    for (const r of w.rooms ?? []) del(this.byRoom, r, w);
    this.unscoped.delete(w);
  }

  private deliver(message: string): void {
    syncNotifications.inc();
    const n = decodeNotification(message);
    if (!n) return;
    if (Array.isArray(n.evaluated)) for (const e of n.evaluated) if (e && typeof e.shard === 'number' && typeof e.upto === 'string') this.pushProgress.advance(e.shard, e.upto);
    if (Array.isArray(n.recency)) for (const e of n.recency) if (e && typeof e.shard === 'number' && typeof e.upto === 'string') this.recencyProgress.advance(e.shard, e.upto);
    if (this.roomRates && Array.isArray(n.rooms) && Array.isArray(n.roomEvents) && n.roomEvents.length === n.rooms.length) {
      const now = performance.now();
      for (let i = 0; i < n.rooms.length; i++) {
        const k = n.roomEvents[i];
        if (typeof k === 'number' && typeof n.rooms[i] === 'string') this.roomRates.note(n.rooms[i]!, k, now);
      }
    }
    const users = this.o.wakeOnBumped && Array.isArray(n.bumped) ? [...(n.users ?? []), ...n.bumped] : n.users;
    if (users?.length || n.rooms?.length) {
      const change = { seq: ++this.seq, at: performance.now() };
      for (const u of users ?? []) this.noteChange(this.lastByUser, u, change);
      for (const r of n.rooms ?? []) this.noteChange(this.lastByRoom, r, change);
    }
    for (const u of users ?? []) for (const w of [...(this.byUser.get(u) ?? [])]) w.poke();
    for (const r of n.rooms ?? []) {
      for (const w of [...(this.byRoom.get(r) ?? [])]) w.poke();
      if (this.unscoped.size) for (const w of [...this.unscoped]) w.poke();
    }
  }

  close(): void {
    for (const set of this.byUser.values()) for (const w of [...set]) w.close();
    this.sub?.disconnect();
    this.sub = null;
    this.removeMetricSource?.();
    this.removeMetricSource = null;
  }
}

function add<K, V>(m: Map<K, Set<V>>, k: K, v: V): void {
  let s = m.get(k);
  if (!s) m.set(k, (s = new Set()));
  s.add(v);
}

function del<K, V>(m: Map<K, Set<V>>, k: K, v: V): void {
  const s = m.get(k);
  if (!s) return;
  s.delete(v);
  if (s.size === 0) m.delete(k);
}
