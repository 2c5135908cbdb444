/**
 * `GET /_matrix/client/v3/sync`: the HTTP side — parameters, the filter, the long-poll and its
 * wake-ups, the per-front caches. What a computation answers (tokens as time cuts, membership, gaps,
 * fan-out) is the sync engine's: src/sync/engine.ts.
 */
import type { Front, Request } from '../../http/server';
import { errors } from '../../http/errors';
import { isJsonObject, parseStrictJson, type JsonObject, type JsonValue } from '../../protocol/json';
import { userData } from '../../store/keys';
import { shardOf } from '../../store/shards';
import { MembershipIndex } from '../../readers/membership-index';
import { SAME_MS_MARGIN, SYNC_OUTBOX_RETENTION_MS, SyncNotifier, type ChangeMark, type SyncWaiter } from '../../sync/notify';
import { OutboxWindowCache } from '../../sync/outbox-cache';
import { ComputeGate } from '../../sync/compute-gate';
import { UnclaimedResults } from '../../sync/unclaimed-results';
import { AnswerSpacing, capToLimit, gapForLimit } from '../../sync/answer-spacing';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseSyncToken } from '../../sync/token';
import { E2eCountsCache } from '../../sync/e2e-counts';
import { requireUser } from './auth';
import { stringifyWithRaw } from '../../protocol/raw-json';
import type { ApiContext } from '../context';
import { validateFilter } from './filter-validation';
import { clientRoute, parseEventFilter } from './room-common';
import type { RoomEventFilter } from '../../rooms/event-filter';
import { presenceOnSync } from './presence';
import type { PresenceState } from '../../../actors/presence';
import { initialSlicesOf } from '../../sync/initial-slices';
import { startSlicePrebuilder } from '../../sync/slice-prebuild';
import { MAX_WINDOW_ENTRIES, computeSync, type Computed, type Params, type StaleCounts, type SyncFilter, type TypeFilter } from '../../sync/engine';

const DEFAULT_TIMELINE_LIMIT = 10;
const MAX_TIMELINE_LIMIT = 100;
const MAX_TIMEOUT_MS = 5 * 60_000;
/** /sync computations run at once per front (src/sync/compute-gate.ts); more wait their turn. */
const MAX_CONCURRENT_COMPUTES = 48;
/**
 * How long an initial sync's result that outlived its request (past the deadline) waits for the
 * client's retry, and how many such results a front holds (src/sync/unclaimed-results.ts).
 */
const UNCLAIMED_KEEP_MS = 60_000;
const UNCLAIMED_MAX = 64;
/** Devices whose last answer a front remembers (to skip computing the next poll's first, empty answer). */
const LAST_ANSWERS_MAX = 100_000;
/** Room ids those remembered answers may hold in all (each listens to the user's rooms). */
const LAST_ANSWERS_ROOMS_MAX = 2_000_000;

/**
 * Per device, the last answer a front gave (its token, the change mark taken before computing
 * it, the rooms it listened to): bounded by devices and by room ids held, and not trusted after
 * twice the longest long-poll (a client that comes back later computes as usual).
 */
interface LastAnswer {
  token: string;
  mark: ChangeMark;
  listen: string[];
  at: number;
  /** The next poll may wait before computing (no clock spread, no counts to send again). */
  skippable: boolean;
  staleCounts: StaleCounts[];
}

class LastAnswers {
  private readonly byDevice = new Map<string, LastAnswer>();
  private rooms = 0;

  get(device: string): LastAnswer | undefined {
    const e = this.byDevice.get(device);
    if (e && Date.now() - e.at > 2 * MAX_TIMEOUT_MS) {
      this.delete(device);
      return undefined;
    }
    return e;
  }

  set(device: string, e: LastAnswer): void {
    this.delete(device); // re-inserted last: oldest first for eviction
    this.byDevice.set(device, e);
    this.rooms += e.listen.length;
    while (this.byDevice.size > LAST_ANSWERS_MAX || this.rooms > LAST_ANSWERS_ROOMS_MAX) this.delete(this.byDevice.keys().next().value!);
  }

  delete(device: string): void {
    const e = this.byDevice.get(device);
    if (!e) return;
    this.rooms -= e.listen.length;
    this.byDevice.delete(device);
  }
}

// ---- tokens ----------------------------------------------------------------------------------

/** Tokens: src/sync/token.ts (a cut, plus positions of streams a response gave only in part). */
export { encodeSyncToken } from '../../sync/token';

export function decodeSyncToken(token: string): number {
  return parseSyncToken(token).cut;
}

// ---- filters ---------------------------------------------------------------------------------

function eventFilterOf(v: JsonValue | undefined): RoomEventFilter {
  return isJsonObject(v as JsonValue) ? parseEventFilter(JSON.stringify(v)) : {};
}

function strings(v: JsonValue | undefined): string[] | undefined {
  return Array.isArray(v) && v.every((s) => typeof s === 'string') ? (v as string[]) : undefined;
}

function typeFilterOf(v: JsonValue | undefined): TypeFilter {
  if (!isJsonObject(v as JsonValue)) return {};
  const o = v as JsonObject;
  const f: TypeFilter = {};
  const t = strings(o.types);
  const nt = strings(o.not_types);
  if (t) f.types = t;
  if (nt) f.not_types = nt;
  return f;
}

/** The sync filter from the `filter` parameter: inline JSON, or the id of a filter the user stored. */
/**
 * Parsed filters, by the JSON a client sends inline or by (user, filter id): a sync loop sends the
 * same one with every poll, and a stored filter never changes (the spec has no way to change one).
 * SyncFilter objects are only read, so one may serve many requests.
 */
const parsedFilters = new Map<string, SyncFilter>();
const PARSED_FILTERS_MAX = 10_000;

async function loadFilter(ctx: ApiContext, userId: string, raw: string | undefined): Promise<SyncFilter> {
  if (raw === undefined || raw === '') return parseFilter(ctx, userId, raw);
  const inline = raw.trimStart().startsWith('{');
  const cacheKey = inline ? raw : `${userId}\u0000${raw}`;
  const hit = parsedFilters.get(cacheKey);
  if (hit) return hit;
  const f = await parseFilter(ctx, userId, raw);
  if (cacheKey.length > 4096) return f; // kept small: a key is the filter's whole text
  if (parsedFilters.size >= PARSED_FILTERS_MAX) parsedFilters.delete(parsedFilters.keys().next().value!);
  parsedFilters.set(cacheKey, f);
  return f;
}

async function parseFilter(ctx: ApiContext, userId: string, raw: string | undefined): Promise<SyncFilter> {
  let f: JsonObject = {};
  if (raw !== undefined && raw !== '') {
    let json: string | null = raw;
    if (!raw.trimStart().startsWith('{')) {
      json = await ctx.redis.hget(ctx.keys.shard('user', shardOf(userId, ctx.shardCounts.user)).data(userData.filters(userId)), raw);
      if (json === null) throw errors.invalidParam('Unknown filter id');
    }
    let v: JsonValue;
    try {
      v = parseStrictJson(Buffer.from(json, 'utf8'));
    } catch {
      throw errors.invalidParam('filter must be a JSON filter or a filter id');
    }
    if (!isJsonObject(v)) throw errors.invalidParam('filter must be a JSON object');
    const problems = validateFilter(v);
    if (problems.length) throw errors.invalidParam(`Invalid filter: ${problems.join('; ')}`);
    f = v;
  }
  const room = isJsonObject(f.room as JsonValue) ? (f.room as JsonObject) : {};
  const timelineRaw = isJsonObject(room.timeline as JsonValue) ? (room.timeline as JsonObject) : {};
  const limitRaw = timelineRaw.limit;
  const limit = typeof limitRaw === 'number' && Number.isInteger(limitRaw) && limitRaw >= 0 ? Math.min(limitRaw, MAX_TIMELINE_LIMIT) : DEFAULT_TIMELINE_LIMIT;
  const timeline = eventFilterOf({ ...timelineRaw, limit: undefined } as unknown as JsonValue);
  const rooms = strings(room.rooms);
  return {
    timeline,
    limit,
    state: eventFilterOf(room.state),
    accountData: typeFilterOf(f.account_data),
    roomAccountData: typeFilterOf(room.account_data),
    ...(rooms ? { rooms } : {}),
    notRooms: strings(room.not_rooms) ?? [],
    includeLeave: room.include_leave === true,
    ephemeral: eventFilterOf(room.ephemeral),
    presence: eventFilterOf(f.presence),
    lazyLoadMembers: isJsonObject(room.state as JsonValue) && (room.state as JsonObject).lazy_load_members === true,
    includeRedundantMembers: isJsonObject(room.state as JsonValue) && (room.state as JsonObject).include_redundant_members === true,
    unreadThreadNotifications: timelineRaw.unread_thread_notifications === true,
  };
}

// ---- the route -------------------------------------------------------------------------------

export function registerSyncRoutes(front: Front, ctx: ApiContext, index: MembershipIndex): void {
  const notifier = new SyncNotifier(ctx.redis, ctx.keys, { roomRates: true });
  const windows = new OutboxWindowCache(ctx.redis, { retentionMs: SYNC_OUTBOX_RETENTION_MS, maxEntries: 50_000, maxStreams: 4096, maxWindow: MAX_WINDOW_ENTRIES, maxBytes: ctx.config.caches?.syncOutboxBytes });
  const gate = new ComputeGate(MAX_CONCURRENT_COMPUTES);
  const unclaimed = new UnclaimedResults<{ r: Computed; mark: ChangeMark }>(UNCLAIMED_KEEP_MS, UNCLAIMED_MAX);
  const e2e = new E2eCountsCache(notifier);
  (ctx.keysChanged ??= []).push((userId) => e2e.forget(userId));
  /** Per device: the token of the last answer this front gave, the change mark taken before computing it, and the rooms it listened to. */
  const lastAnswers = new LastAnswers();
  /** How long a device's next computation waits after its last answer (src/sync/answer-spacing.ts). */
  const spacing = new AnswerSpacing().start();
  ctx.closers?.push(() => notifier.close());
  ctx.closers?.push(() => spacing.stop());
  // The initial-sync slices of rooms this front changes, built once they are quiet.
  startSlicePrebuilder(ctx, initialSlicesOf(ctx));

  clientRoute(front, 'GET', '/sync', async (req: Request) => {
    const user = await requireUser(ctx, req);
    const sinceToken = req.query.since !== undefined && req.query.since !== '' ? parseSyncToken(req.query.since) : null;
    const since = sinceToken ? sinceToken.cut : null;
    const fullState = parseBool(req.query.full_state, 'full_state');
    // MSC4222: the unstable name is what matrix-js-sdk sends (and all Synapse 1.163 reads); the
    // stable one as the MSC names it.
    const stateAfter = parseBool(req.query['org.matrix.msc4222.use_state_after'], 'org.matrix.msc4222.use_state_after') || parseBool(req.query.use_state_after, 'use_state_after');
    const timeout = parseTimeout(req.query.timeout);
    // A long-poll answers within its timeout plus the usual request deadline (src/http/server.ts).
    req.allowWait(timeout);
    const setPresence = req.query.set_presence;
    if (setPresence !== undefined && !['online', 'offline', 'unavailable'].includes(setPresence)) throw errors.invalidParam('set_presence must be online, offline or unavailable');
    const filter = await loadFilter(ctx, user.userId, req.query.filter);
    presenceOnSync(ctx, user.userId, setPresence as PresenceState | undefined, timeout);
    await notifier.start(); // the push evaluator's progress comes through it, also for syncs that do not wait
    const params: Omit<Params, 'outside'> = { windows, pushProgress: notifier.pushProgress, e2e, since, sinceParts: sinceToken?.parts ?? {}, fullState, filter, stateAfter };
    // An initial or full-state sync answers at once; otherwise an empty answer waits.
    const waits = since !== null && !fullState && timeout > 0;
    let waiter: SyncWaiter | null = null;
    const deviceKey = `${user.userId}\u0000${user.deviceId}`;
    const answered = (r: Computed, mark: ChangeMark) => {
      // Clocks apart (a cluster's nodes): a notification may have come well before the cut it
      // belongs after, so the next poll cannot trust "nothing since": no skip.
      const skippable = r.skewMs <= 1 && r.staleCounts.length === 0;
      lastAnswers.set(deviceKey, { token: String(r.body.next_batch), mark, listen: r.listen, at: Date.now(), skippable, staleCounts: r.staleCounts });
      // The events in it are JSON text already (src/rooms/client-format.ts `syncEventsJson`).
      return { rawJson: stringifyWithRaw(r.body) };
    };
    try {
      if (waits) waiter = await notifier.waiter(user.userId);
      const deadline = Date.now() + timeout;
      // The next poll of a sync loop: when nothing concerning this user has been notified since this
      // front computed the answer that gave this token, computing now would find nothing — wait
      // first. The answer itself is always computed (when woken, or once at the timeout).
      const last = lastAnswers.get(deviceKey);
      // Not when that answer was given in part (a token with stream positions, e.g. more to-device
      // messages than fitted): the rest is due at once.
      const complete = !!sinceToken && Object.keys(sinceToken.parts).length === 0;
      const sameToken = !!last && last.token === req.query.since;
      if (sameToken && last!.staleCounts.length) params.recheckCounts = last!.staleCounts;
      if (last) params.roomsHint = last.listen;
      if (waiter && last && complete && sameToken && last.skippable && notifier.unchangedSince(user.userId, last.listen, last.mark)) {
        waiter.setRooms(last.listen);
        await waiter.wait(deadline - Date.now(), req.signal);
        if (req.signal.aborted) return { body: { next_batch: req.query.since } };
      }
      // A loop's poll that follows this front's answer closely: on a busy front, wait a little so
      // this answer carries everything of that interval, not the next single message.
      if (waiter && sameToken) {
        let delay = Math.min(spacing.delayAfter(last!.at), deadline - Date.now());
        // Cut so the busiest of its rooms gains at most half the filter's timeline limit since the
        // last answer's cut (answer-spacing.ts): the wait makes no gap of its own.
        if (delay > 0) delay = capToLimit(delay, last!.mark.at, gapForLimit(filter.limit, notifier.roomRates!.maxRate(last!.listen)));
        if (delay > 0) {
          await sleep(delay, undefined, { signal: req.signal }).catch(() => undefined);
          if (req.signal.aborted) return { body: { next_batch: req.query.since } };
        }
      }
      for (;;) {
        // Redis known unreachable (a stall began while this poll waited): answer now, 503 with
        // Retry-After, rather than after every read of the computation has timed out. The client
        // polls again with the same token, so nothing is skipped.
        if (ctx.storeReady && !ctx.storeReady()) throw errors.unavailable('The server cannot reach its database right now; try again shortly');
        let mark: ChangeMark = { seq: 0, at: 0 };
        const compute = () =>
          gate.run(async (outside) => {
            // Cleared when the computation starts, not when it queues: a poke while queued is
            // covered by this computation (it reads after the poke's data committed).
            if (waiter) waiter.dirty = false;
            const at = notifier.changeMark;
            return { r: await computeSync(ctx, index, user, { ...params, outside }), mark: at };
          });
        // An answer that does not wait (initial or full-state sync) may outlast the request's
        // deadline: it keeps computing and the client's retry with the same query gets it.
        const done = waits ? await compute() : await unclaimed.run(`${deviceKey}\u0000${req.rawQuery}`, compute, () => !req.signal.aborted);
        const r = done.r;
        mark = done.mark;
        if (!waiter || !r.empty || req.signal.aborted || Date.now() >= deadline) return answered(r, mark);
        waiter.setRooms(r.listen);
        const margin = SAME_MS_MARGIN + r.skewMs;
        if (waiter.lastPokeAt > mark.at - margin || notifier.changedNear(user.userId, r.listen, mark, margin)) {
          // Poked just before (or while) computing, or a change concerning it arrived just before
          // this request registered: what it was about may have committed in the cut's own
          // millisecond (or, on a cluster, on a node whose clock runs ahead of the cut), which this
          // window left out. Look again once the clocks have moved on.
          await sleep(margin);
          continue;
        }
        // Counts this poll could not send yet: their evaluator moving is news too.
        params.recheckCounts = r.staleCounts;
        const w = waiter;
        const cancel = r.staleCounts.length ? notifier.pushProgress.onNextMove(r.staleCounts.map((c) => c.shard), () => w.poke()) : null;
        try {
          await waiter.wait(deadline - Date.now(), req.signal);
        } finally {
          cancel?.();
        }
        if (req.signal.aborted) return answered(r, mark);
        // Woken, or at the timeout: compute again either way. At the timeout that computation is
        // the answer (the loop's first check returns it), so a lost notification delays an event
        // by one timeout at most, never into the next poll.
      }
    } finally {
      waiter?.close();
    }
  });
}

function parseBool(raw: string | undefined, name: string): boolean {
  if (raw === undefined || raw === '' || raw === 'false') return false;
  if (raw === 'true') return true;
  throw errors.invalidParam(`${name} must be true or false`);
}

function parseTimeout(raw: string | undefined): number {
  if (raw === undefined || raw === '') return 0;
  if (!/^\d{1,12}$/.test(raw)) throw errors.invalidParam('timeout must be a non-negative integer (ms)');
  return Math.min(Number(raw), MAX_TIMEOUT_MS);
}
