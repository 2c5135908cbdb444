/**
 * Simplified sliding sync (MSC4186): one answer of a connection. The route
 * (src/api/client/sliding-sync.ts) parses the request, loads the connection's state, holds the
 * long-poll and stores the new state; this computes the answer from the state the `pos` stands for.
 *
 * **Incremental by room position, not by time.** The connection remembers, per room it sent, the
 * newest timeline position the client has and the state snapshot its required state came from
 * (src/sync/sliding/connection-store.ts). A room's news is then exact whatever happened in
 * between: its timeline after that position, and the difference between that snapshot and the
 * state at its newest event. A room that (re)enters a list window unseen is sent `initial`.
 *
 * **Time cuts for the streams.** Typing, receipts, account data and device lists come from the
 * outboxes and the user's feed over the window [previous cut, this cut), as /sync reads them
 * (src/sync/engine.ts: its helpers are reused), with the cut being Redis TIME taken with the
 * membership index in one MULTI. A window the outboxes no longer hold answers the current value.
 *
 * Lists are computed from the user's rooms sorted by `bump_stamp` (src/sync/sliding/bump-stamps.ts);
 * filters and ranges are pure (lists.ts), required state too (required-state.ts).
 */
import { isJsonObject, type JsonObject, type JsonValue } from '../../protocol/json';
import { stateKeyOf } from '../../protocol/pdu';
import { membershipIndexData, threadSubscriptionData, userData } from '../../store/keys';
import { shardOf } from '../../store/shards';
import { servableAsState, type RoomEvent } from '../../store/room-reader';
import { parseIndexed, type IndexedMembership } from '../../readers/membership-index';
import type { ApiContext } from '../../api/context';
import type { UserOutput } from '../../../actors/user';
import { encodeToken, paginate } from '../../rooms/pagination';
import { formatEvents } from '../../rooms/client-format';
import { decodedBody, type OutboxWindowCache } from '../outbox-cache';
import type { PushProgress } from '../push-progress';
import { unreadCounts } from '../unread-counts';
import type { E2eCountsCache } from '../e2e-counts';
import { deviceListChanges } from '../device-lists';
import { ackToDevice, readToDevice } from '../to-device';
import { pushRulesContent } from '../push-rules';
import { remoteStrippedState } from '../remote-invites';
import { currentEphemeral, ignoredUsers, strippedState, summary, windowEphemeralEvents, type EphemeralOutput, type SyncUser } from '../engine';
import { byRecency, factsNeeded, listFromTop, passesFilters, type ListResult, type RoomFacts } from './lists';
import { backfillIndex, dropStale, indexPages, RecencyWalk, topRooms, unindexedRooms, waitForIndex } from './recency';
import { changedState, compileRequiredState, mergeRequiredState, requiredStateFingerprint, selectState, type RequiredState } from './required-state';
import { THREAD_SUBSCRIPTIONS_EXTENSION, type ExtensionScope, type RoomConfig, type Shape, type SlidingRequest } from './request';
import { threadSubscriptionsSince } from '../thread-subscriptions';
import { userKey } from '../../store/shard-keys';
import type { BumpStampCache } from './bump-stamps';
import type { ConnectionState, RoomSent } from './connection-store';

export interface SlidingParams {
  windows: OutboxWindowCache;
  pushProgress: PushProgress;
  e2e: E2eCountsCache;
  bumps: BumpStampCache;
  /** How far the recency index reader got per room shard (waited for before the index is read). */
  recencyProgress?: PushProgress;
  /** Waits that should not hold a computation slot (src/sync/compute-gate.ts). */
  outside: <U>(wait: Promise<U>) => Promise<U>;
}

export interface SlidingAnswer {
  body: JsonObject;
  /** The connection's state after this answer (to store when `news`). */
  state: ConnectionState;
  /** Something for the client: rooms, extension data, or lists that changed. */
  news: boolean;
  /** Rooms whose notifications should wake a wait on this answer. */
  listen: string[];
}

const PUSH_RULES_TYPE = 'm.push_rules';
const DIRECT_TYPE = 'm.direct';
const TAG_TYPE = 'm.tag';

/** What one room is sent with: the union over the lists and the subscription naming it. */
interface RoomPlan {
  rs: RequiredState;
  timelineLimit: number;
}

function planOf(config: RoomConfig, userId: string): RoomPlan {
  return { rs: compileRequiredState(config.requiredState, userId, config.exclude), timelineLimit: config.timelineLimit };
}

function mergePlan(a: RoomPlan | undefined, b: RoomPlan): RoomPlan {
  if (!a) return b;
  return { rs: mergeRequiredState(a.rs, b.rs), timelineLimit: Math.max(a.timelineLimit, b.timelineLimit) };
}

interface Snapshot {
  cut: number;
  rooms: IndexedMembership[];
}

/** Redis TIME and the user's membership index, in one MULTI (on a cluster: the cut first). */
async function takeSnapshot(ctx: ApiContext, userId: string): Promise<Snapshot> {
  const uk = ctx.keys.shard('user', shardOf(userId, ctx.shardCounts.user));
  const res = (await ctx.redis.multi().time().hgetall(uk.data(membershipIndexData.rooms(userId))).hgetall(uk.data(membershipIndexData.writtenAt(userId))).smembers(uk.data(membershipIndexData.forgotten(userId))).exec()) ?? [];
  for (const [err] of res) if (err) throw err;
  const time = res[0]![1] as [string, string];
  const gone = new Set(res[3]![1] as string[]);
  const rooms = parseIndexed(res[1]![1] as Record<string, string>, res[2]![1] as Record<string, string>).filter((r) => !gone.has(r.roomId) || r.membership === 'join' || r.membership === 'invite' || r.membership === 'knock');
  return { cut: Number(time[0]) * 1_000_000 + Number(time[1]), rooms };
}

const ACTIVE = new Set(['join', 'invite', 'knock']);

export async function computeSlidingSync(ctx: ApiContext, user: SyncUser, req: SlidingRequest, prev: ConnectionState, p: SlidingParams): Promise<SlidingAnswer> {
  const snap = await takeSnapshot(ctx, user.userId);
  const incremental = prev.cut > 0;
  const cutMs = Math.floor(snap.cut / 1000);
  const sinceMs = Math.floor(prev.cut / 1000);
  const state: ConnectionState = { cut: snap.cut, rooms: { ...prev.rooms }, subs: { ...prev.subs }, ...(prev.lists !== undefined ? { lists: prev.lists } : {}) };

  // Rooms in the lists: current memberships, and rooms the client was last sent as a member of and
  // has left since (sent once more with the leave, then dropped).
  // Rooms the user was kicked or banned from are in the lists always (MSC4186: they may not have
  // seen it otherwise); rooms they left themselves only as long as the connection had them.
  const memberships = new Map<string, IndexedMembership>();
  const removals: IndexedMembership[] = [];
  for (const r of snap.rooms) {
    const sent = prev.rooms[r.roomId];
    if (ACTIVE.has(r.membership) || (sent && ACTIVE.has(sent.m))) memberships.set(r.roomId, r);
    else if (r.membership === 'leave' || r.membership === 'ban') removals.push(r);
  }
  const removed = await Promise.all(removals.map((r) => removedByOthers(ctx, user.userId, r)));
  removals.forEach((r, i) => {
    if (removed[i]) memberships.set(r.roomId, r);
  });
  // Invites from users the user ignores are neither listed nor sent (as /sync hides them).
  const invites = [...memberships.values()].filter((r) => r.membership === 'invite');
  const ignored = invites.length ? await ignoredUsers(ctx, user.userId) : new Set<string>();
  if (ignored.size) {
    await Promise.all(
      invites.map(async (r) => {
        const stripped = (await strippedState(ctx, r.roomId, user.userId, 'invite')) ?? (await remoteStrippedState(ctx, user.userId, r.roomId, 'invite')) ?? [];
        const inviter = stripped.find((e) => e.type === 'm.room.member' && e.state_key === user.userId)?.sender;
        if (typeof inviter === 'string' && ignored.has(inviter)) memberships.delete(r.roomId);
      }),
    );
  }
  // Recency: joined rooms from the user's recency index, read from its top only as far as the
  // lists' ranges need (src/sync/sliding/recency.ts); the other rooms (invites, knocks, rooms
  // left) by when their membership happened, and joined rooms the index lacks by their stamps
  // computed per room and written back (the lazy backfill).
  const tops = new Map<string, RoomTopInfo>();
  const joinedIds: string[] = [];
  const extras: RoomFacts[] = [];
  for (const r of memberships.values()) {
    if (r.membership === 'join') joinedIds.push(r.roomId);
    // Not joined: the room's place is when the membership happened (when the index saw it).
    else extras.push({ roomId: r.roomId, membership: r.membership, bumpStamp: Math.floor(r.writtenAt / 1000) });
  }
  if (p.recencyProgress) await p.outside(waitForIndex(ctx, p.recencyProgress, joinedIds));
  const unindexed = await unindexedRooms(ctx, user.userId, joinedIds);
  const unindexedSet = new Set(unindexed);
  let backfill: { roomId: string; stamp: number }[] = [];
  if (unindexed.length) {
    const computed = await Promise.all(unindexed.map(async (roomId) => ({ roomId, top: await p.bumps.get(ctx, roomId) })));
    for (const { roomId, top } of computed) {
      tops.set(roomId, top);
      extras.push({ roomId, membership: 'join', bumpStamp: top.bumpStamp });
    }
    // Written once the lists are read (they have these rooms as extras, not from the index).
    backfill = computed.filter((c) => c.top.top !== null).map((c) => ({ roomId: c.roomId, stamp: c.top.bumpStamp }));
  }
  const facts: RoomFacts[] = [...memberships.values()].map((r) => ({ roomId: r.roomId, membership: r.membership, bumpStamp: 0 }));
  await addFilterFacts(ctx, user.userId, req, facts);
  const factsById = new Map(facts.map((f) => [f.roomId, f]));
  for (const e of extras) Object.assign(e, { ...factsById.get(e.roomId), bumpStamp: e.bumpStamp });
  const walk = new RecencyWalk(indexPages(ctx, user.userId));
  const liveTops = new Map<string, Promise<RoomTopInfo>>();
  const liveTop = (roomId: string): Promise<RoomTopInfo> => {
    let t = liveTops.get(roomId);
    if (!t) liveTops.set(roomId, (t = p.bumps.get(ctx, roomId)));
    return t;
  };
  const snapMembership = new Map(snap.rooms.map((r) => [r.roomId, r.membership]));
  const indexStamps = new Map<string, number>();
  const stale = new Set<string>();

  // Lists, then subscriptions: which rooms, with which config.
  const plans = new Map<string, RoomPlan>();
  const lists: Record<string, JsonObject> = {};
  const listRooms = new Map<string, string[]>();
  const spaceChildrenCache = new Map<string, Promise<Set<string>>>();
  for (const [name, config] of req.lists) {
    const children = config.filters.spaces ? await spaceChildren(ctx, config.filters.spaces, memberships, spaceChildrenCache) : null;
    const passes = (f: RoomFacts | undefined) => !!f && passesFilters(f, config.filters, children);
    // Exact count over every membership (no sort); the order from the index's top.
    const count = facts.reduce((n, f) => n + (passes(f) ? 1 : 0), 0);
    const need = Math.min(count, config.ranges.reduce((m, [, end]) => Math.max(m, end + 1), 0));
    const top = await topRooms(
      walk,
      need,
      (roomId) => {
        // A room counted as unindexed is among the extras (the reader may have indexed it since).
        if (unindexedSet.has(roomId)) return false;
        const f = factsById.get(roomId);
        return f?.membership === 'join' && passes(f);
      },
      extras.filter((e) => passes(e)),
      (e) => {
        const m = snapMembership.get(e.roomId);
        if (m === 'join') indexStamps.set(e.roomId, e.stamp);
        // Not joined by the index either (a room not there at all may be joined a moment ago).
        else if (m !== undefined) stale.add(e.roomId);
      },
    );
    // The index trails the rooms by a batch of its reader: rooms at the top are placed by their
    // live stamps where newer (they only move up, so rooms below stay below), and the reader's
    // wake-up brings in a room from further down.
    await Promise.all(
      top.map(async (f) => {
        if (f.membership !== 'join') return;
        const live = await liveTop(f.roomId);
        f.bumpStamp = Math.max(f.bumpStamp, live.bumpStamp);
      }),
    );
    top.sort(byRecency);
    const result: ListResult = listFromTop(count, top, config);
    // The unstable shape says which rooms fill each range (`ops`, as Synapse); v4 only counts.
    lists[name] = req.shape === 'v4' ? { count: result.count } : { count: result.count, ops: result.ops as unknown as JsonValue };
    listRooms.set(name, result.roomIds);
    const plan = planOf(config, user.userId);
    for (const roomId of result.roomIds) plans.set(roomId, mergePlan(plans.get(roomId), plan));
  }
  // Index entries of rooms the user is not in (missed while the reader lagged): cleaned as seen.
  if (stale.size) void dropStale(ctx, user.userId, [...stale]).catch(() => undefined);
  if (backfill.length) await backfillIndex(ctx, user.userId, backfill);
  for (const roomId of req.unsubscribeRooms) delete state.subs[roomId];
  for (const [roomId, config] of req.roomSubscriptions) state.subs[roomId] = [config.requiredState, config.timelineLimit, ...(config.exclude?.length ? [config.exclude] : [])] as ConnectionState['subs'][string];
  const subscribed: string[] = [];
  for (const [roomId, [requiredState, timelineLimit, exclude]] of Object.entries(state.subs)) {
    // Only rooms the user is or was in (the index knows them); others are ignored, as Synapse does.
    const m = snap.rooms.find((r) => r.roomId === roomId);
    if (!m) continue;
    if (!memberships.has(roomId)) {
      memberships.set(roomId, m);
      if (!tops.has(roomId)) tops.set(roomId, await p.bumps.get(ctx, roomId));
    }
    subscribed.push(roomId);
    plans.set(roomId, mergePlan(plans.get(roomId), planOf({ requiredState, timelineLimit, ...(exclude ? { exclude } : {}) }, user.userId)));
  }

  // The rooms sent: their newest positions (and, joined, their live stamps, which the index may
  // trail by a batch: the later of the two is said).
  await Promise.all(
    [...plans.keys()].map(async (roomId) => {
      if (tops.has(roomId)) return;
      const m = memberships.get(roomId)!;
      if (m.membership !== 'join') {
        tops.set(roomId, { top: null, topId: null, bumpStamp: Math.floor(m.writtenAt / 1000) });
        return;
      }
      const live = await liveTop(roomId);
      tops.set(roomId, { ...live, bumpStamp: Math.max(live.bumpStamp, indexStamps.get(roomId) ?? 0) });
    }),
  );
  // The rooms, each with what is new for it.
  const rooms: Record<string, JsonObject> = {};
  const initialRooms = new Set<string>();
  const countWaits = new Map<number, boolean>();
  await Promise.all(
    [...plans].map(async ([roomId, plan]) => {
      const m = memberships.get(roomId)!;
      const entry = await roomEntry(ctx, user, roomId, m, plan, prev.rooms[roomId], tops.get(roomId)!, incremental ? sinceMs : null, state, countWaits, req.shape);
      if (!entry) return;
      if (req.shape === 'v4') {
        // v4: the lists whose windows hold the room (absent: a subscription alone).
        const names = [...listRooms].filter(([, ids]) => ids.includes(roomId)).map(([name]) => name);
        if (names.length) entry.body.lists = names;
      }
      rooms[roomId] = entry.body;
      if (entry.initial) initialRooms.add(roomId);
    }),
  );
  // Unread counts of joined rooms sent, or of joined rooms in view whose counts moved (the
  // unstable shape only: the merged MSC leaves them out of room results).
  if (req.shape === 'unstable') await addCounts(ctx, user, p, plans, memberships, prev, state, rooms, countWaits, cutMs);

  const extensions = await computeExtensions(ctx, user, req, p, { incremental, sinceMs, cutMs, prevCut: prev.cut, cut: snap.cut, listRooms, subscribed, initialRooms, memberships, ...(prev.tsub !== undefined ? { tsub: prev.tsub } : {}), state });

  const listsText = JSON.stringify(lists);
  const listsChanged = listsText !== prev.lists;
  state.lists = listsText;
  const body: JsonObject = { pos: '', lists, rooms, extensions: extensions.body };
  const listen = snap.rooms.filter((r) => ACTIVE.has(r.membership)).map((r) => r.roomId);
  return { body, state, news: !incremental || listsChanged || Object.keys(rooms).length > 0 || extensions.news, listen };
}

/**
 * Whether a leave or ban of the user was someone else's doing (a kick or a ban), by the membership
 * event's sender; per front, by room and membership position (the answer never changes).
 */
const removedCache = new Map<string, boolean>();
const REMOVED_CACHE_MAX = 100_000;

async function removedByOthers(ctx: ApiContext, userId: string, r: IndexedMembership): Promise<boolean> {
  const key = `${userId}\u0000${r.roomId}\u0000${r.pos}`;
  const hit = removedCache.get(key);
  if (hit !== undefined) return hit;
  const id = (await ctx.rooms.currentStateIds(r.roomId, { type: 'm.room.member', stateKey: userId })).values().next().value;
  const e = id ? await ctx.rooms.event(r.roomId, id) : null;
  const content = e?.event.content as JsonObject | undefined;
  const answer = !!e && e.pos === r.pos && (content?.membership === 'leave' || content?.membership === 'ban') && e.event.sender !== userId;
  if (removedCache.size >= REMOVED_CACHE_MAX) removedCache.delete(removedCache.keys().next().value!);
  removedCache.set(key, answer);
  return answer;
}

// ---- facts for filters ------------------------------------------------------------------------

async function addFilterFacts(ctx: ApiContext, userId: string, req: SlidingRequest, facts: RoomFacts[]): Promise<void> {
  const need = { dm: false, encrypted: false, roomType: false, tags: false, name: false };
  for (const l of req.lists.values()) {
    const n = factsNeeded(l.filters);
    need.dm ||= n.dm;
    need.encrypted ||= n.encrypted;
    need.roomType ||= n.roomType;
    need.tags ||= n.tags;
    need.name ||= n.name;
  }
  const uk = ctx.keys.shard('user', shardOf(userId, ctx.shardCounts.user));
  const direct = need.dm ? await directRooms(ctx, userId) : new Set<string>();
  await Promise.all(
    facts.map(async (f) => {
      const joined = f.membership !== 'invite' && f.membership !== 'knock';
      if (need.dm) f.isDm = direct.has(f.roomId) || (f.membership === 'invite' && (await inviteIsDirect(ctx, f.roomId, userId)));
      if ((need.encrypted || need.roomType || need.name) && joined) {
        const [enc, create, name] = await Promise.all([
          need.encrypted ? ctx.rooms.currentStateIds(f.roomId, { type: 'm.room.encryption', stateKey: '' }) : Promise.resolve(new Map()),
          need.roomType ? ctx.rooms.currentState(f.roomId, { type: 'm.room.create', stateKey: '' }) : Promise.resolve([] as RoomEvent[]),
          need.name ? ctx.rooms.currentState(f.roomId, { type: 'm.room.name', stateKey: '' }) : Promise.resolve([] as RoomEvent[]),
        ]);
        f.isEncrypted = enc.size > 0;
        const type = (create[0]?.event.content as JsonObject | undefined)?.type;
        f.roomType = typeof type === 'string' ? type : null;
        const n = (name[0]?.event.content as JsonObject | undefined)?.name;
        f.name = typeof n === 'string' ? n : null;
      } else if (!joined && (need.encrypted || need.roomType || need.name)) {
        const stripped = (await strippedState(ctx, f.roomId, userId, f.membership as 'invite' | 'knock')) ?? (await remoteStrippedState(ctx, userId, f.roomId, f.membership as 'invite' | 'knock')) ?? [];
        f.isEncrypted = stripped.some((e) => e.type === 'm.room.encryption');
        const type = (stripped.find((e) => e.type === 'm.room.create')?.content as JsonObject | undefined)?.type;
        f.roomType = typeof type === 'string' ? type : null;
        const n = (stripped.find((e) => e.type === 'm.room.name')?.content as JsonObject | undefined)?.name;
        f.name = typeof n === 'string' ? n : null;
      }
      if (need.tags) {
        const raw = await ctx.redis.hget(uk.data(userData.roomAccountData(userId, f.roomId)), TAG_TYPE);
        f.tags = raw ? tagsOf(raw) : [];
      }
    }),
  );
}

function tagsOf(raw: string): string[] {
  try {
    const v = JSON.parse(raw) as JsonValue;
    const tags = isJsonObject(v) ? v.tags : undefined;
    return isJsonObject(tags as JsonValue) ? Object.keys(tags as JsonObject) : [];
  } catch {
    return [];
  }
}

/** The rooms named in the user's `m.direct` account data. */
async function directRooms(ctx: ApiContext, userId: string): Promise<Set<string>> {
  const raw = await ctx.redis.hget(ctx.keys.shard('user', shardOf(userId, ctx.shardCounts.user)).data(userData.accountData(userId)), DIRECT_TYPE);
  const out = new Set<string>();
  if (!raw) return out;
  try {
    const v = JSON.parse(raw) as JsonValue;
    if (isJsonObject(v)) for (const list of Object.values(v)) if (Array.isArray(list)) for (const r of list) if (typeof r === 'string') out.add(r);
  } catch {
    // unreadable account data names no rooms
  }
  return out;
}

/** An invite whose member event says `is_direct` (a DM the user has not joined yet). */
async function inviteIsDirect(ctx: ApiContext, roomId: string, userId: string): Promise<boolean> {
  const stripped = (await strippedState(ctx, roomId, userId, 'invite')) ?? (await remoteStrippedState(ctx, userId, roomId, 'invite')) ?? [];
  const own = stripped.find((e) => e.type === 'm.room.member' && e.state_key === userId);
  return (own?.content as JsonObject | undefined)?.is_direct === true;
}

/**
 * The rooms the listed spaces hold (`m.space.child` with a non-empty `via`), for spaces the user
 * is joined to, as Synapse reads the `spaces` filter.
 */
async function spaceChildren(ctx: ApiContext, spaces: string[], memberships: Map<string, IndexedMembership>, cache: Map<string, Promise<Set<string>>>): Promise<Set<string>> {
  const out = new Set<string>();
  for (const space of spaces) {
    if (memberships.get(space)?.membership !== 'join') continue;
    let children = cache.get(space);
    if (!children) {
      children = ctx.rooms.currentState(space, { type: 'm.space.child' }).then((events) => new Set(events.filter((e) => Array.isArray((e.event.content as JsonObject | undefined)?.via) && ((e.event.content as JsonObject).via as JsonValue[]).length > 0).map((e) => String(e.event.state_key))));
      cache.set(space, children);
    }
    for (const c of await children) out.add(c);
  }
  return out;
}

// ---- one room -----------------------------------------------------------------------------------

interface RoomTopInfo {
  top: number | null;
  topId: string | null;
  bumpStamp: number;
}

/**
 * One room's entry (null: nothing new for it). Updates `state.rooms[roomId]`. `countWaits` collects
 * the shards whose push evaluation the room's counts must wait for (new events from others).
 */
async function roomEntry(ctx: ApiContext, user: SyncUser, roomId: string, m: IndexedMembership, plan: RoomPlan, sent: RoomSent | undefined, topInfo: RoomTopInfo, sinceMs: number | null, state: ConnectionState, countWaits: Map<number, boolean>, shape: Shape): Promise<{ body: JsonObject; initial: boolean } | null> {
  const now = Date.now();
  const v4 = shape === 'v4';
  const fp = requiredStateFingerprint(plan.rs);
  if (m.membership === 'invite' || m.membership === 'knock') {
    if (sent && sent.m === m.membership) return null;
    const stripped = (await strippedState(ctx, roomId, user.userId, m.membership)) ?? (await remoteStrippedState(ctx, user.userId, roomId, m.membership));
    if (!stripped) return null;
    state.rooms[roomId] = { m: m.membership, t: -1, s: 0, c: fp, tl: plan.timelineLimit, at: now, b: topInfo.bumpStamp };
    // The unstable shape names invites' and knocks' stripped state `invite_state` and carries zero
    // counts (as Synapse); v4 names it `stripped_state`, says the membership, and has no counts.
    const body: JsonObject = v4 ? { bump_stamp: topInfo.bumpStamp, initial: true, membership: m.membership } : { bump_stamp: topInfo.bumpStamp, initial: true, notification_count: 0, highlight_count: 0 };
    const name = (stripped.find((e) => e.type === 'm.room.name')?.content as JsonObject | undefined)?.name;
    if (typeof name === 'string' && name) body.name = name;
    const avatar = (stripped.find((e) => e.type === 'm.room.avatar')?.content as JsonObject | undefined)?.url;
    if (typeof avatar === 'string' && avatar) body.avatar = avatar;
    body[v4 ? 'stripped_state' : 'invite_state'] = stripped;
    return { body, initial: true };
  }
  // Joined, or left since the client last heard (the timeline runs up to the leave).
  const left = m.membership !== 'join';
  let endPos = topInfo.top;
  let endEvent: RoomEvent | null = null;
  if (left) {
    const id = (await ctx.rooms.currentStateIds(roomId, { type: 'm.room.member', stateKey: user.userId })).values().next().value;
    endEvent = id ? await ctx.rooms.event(roomId, id) : null;
    if (!endEvent) {
      delete state.rooms[roomId];
      return null;
    }
    endPos = endEvent.pos;
    if (sent && sent.m === m.membership && sent.t >= endPos) return null;
  } else {
    // The common case of an incremental answer: a room in view with nothing new, the same config.
    // Answered before any event or state is loaded.
    if (sent && sent.m === 'join' && topInfo.top !== null && topInfo.top <= sent.t && plan.timelineLimit <= sent.tl && sent.c === fp && sent.b === topInfo.bumpStamp) return null;
    if (topInfo.topId) endEvent = await ctx.rooms.event(roomId, topInfo.topId);
  }
  if (endPos === null || !endEvent) return null;
  const fresh = !sent || sent.m !== 'join';
  const limit = plan.timelineLimit;
  // A larger timeline_limit than the room was last sent with: the latest `limit` events again,
  // older ones included (MSC4186 "changes to timeline_limit"), flagged as an expanded timeline.
  const expanding = !fresh && limit > sent.tl;
  let events: RoomEvent[] = [];
  let limited = false;
  let prevBatch: number | null = null;
  if (fresh || expanding || endPos > sent.t) {
    const page = limit > 0 ? await paginate(ctx, roomId, user.userId, 'b', endPos, fresh || expanding ? null : sent.t, limit, {}) : { events: [] as RoomEvent[], end: endPos };
    events = page.events.reverse();
    if (left && !events.some((e) => e.eventId === endEvent.eventId)) {
      // The leave itself is always shown, even when history visibility hides what led up to it.
      events.push(endEvent);
      if (events.length > Math.max(1, limit)) events.shift();
    }
    limited = page.end !== null;
    const oldest = events[0];
    prevBatch = limited && page.end !== null ? page.end : (oldest?.pos ?? endPos + 1) - 1;
  }
  const expanded = expanding && events.some((e) => e.pos <= sent.t);
  const stateNow = await ctx.rooms.snapshot(roomId, endEvent.stateAfter);
  // $LAZY: the timeline's senders, and the targets of its membership events.
  const lazyWanted = new Set(events.map((e) => String(e.event.sender)));
  for (const e of events) if (e.event.type === 'm.room.member' && typeof e.event.state_key === 'string') lazyWanted.add(e.event.state_key);
  const lazySent = new Set(fresh ? [] : (sent.l ?? []));
  const newLazy = plan.rs.lazyMembers ? [...lazyWanted].filter((u) => !lazySent.has(u)) : [];
  let stateIds: string[];
  let removed: string[] = [];
  let memberChanged = false;
  let nameChanged = false;
  let avatarChanged = false;
  if (fresh || sent.c !== fp) {
    stateIds = selectState(plan.rs, stateNow, new Set([...lazySent, ...newLazy]));
    memberChanged = nameChanged = avatarChanged = fresh;
  } else {
    const ids = new Set<string>();
    if (sent.s !== endEvent.stateAfter) {
      const before = await ctx.rooms.snapshot(roomId, sent.s);
      const diff = changedState(plan.rs, before, stateNow, lazySent);
      for (const id of diff.changed) ids.add(id);
      removed = diff.removed;
      const touched = (key: string) => {
        if (key.startsWith('m.room.member\u0000')) memberChanged = true;
        else if (key === 'm.room.name\u0000') nameChanged = true;
        else if (key === 'm.room.avatar\u0000') avatarChanged = true;
      };
      for (const [key, id] of stateNow) if (before.get(key) !== id) touched(key);
      for (const key of before.keys()) if (!stateNow.has(key)) touched(key);
    }
    for (const u of newLazy) {
      const id = stateNow.get(stateKeyOf('m.room.member', u));
      if (id) ids.add(id);
    }
    stateIds = [...ids];
  }
  const lazyAll = [...lazySent, ...newLazy];
  const record: RoomSent = { m: m.membership, t: endPos, s: endEvent.stateAfter, c: fp, tl: limit, at: Date.now(), b: topInfo.bumpStamp, ...(plan.rs.lazyMembers ? { l: lazyAll.slice(-500) } : {}), ...(sent?.n && !fresh ? { n: sent.n } : {}) };
  const bumpChanged = fresh || sent.b !== topInfo.bumpStamp;
  const stubs = v4 ? removed : [];
  // Nothing new: the room keeps what it was last sent with (a config change alone is no news
  // until the room has something to say; a timeline expansion is news at once).
  if (!fresh && events.length === 0 && stateIds.length === 0 && stubs.length === 0 && !bumpChanged && endPos <= sent.t) return null;
  const required = (await ctx.rooms.events(roomId, stateIds)).filter(servableAsState);
  if (!fresh && events.length === 0 && required.length === 0 && stubs.length === 0 && !bumpChanged) return null;
  state.rooms[roomId] = record;
  // The user's own events too: they mark what came before them read (pushData.sentUpTo).
  if (events.length) countWaits.set(shardOf(roomId, ctx.shardCounts.room), true);

  const body: JsonObject = {};
  if (bumpChanged || limited) body.bump_stamp = topInfo.bumpStamp;
  if (fresh) body.initial = true;
  if (v4 && (fresh || left)) body.membership = m.membership;
  if (expanded) body[v4 ? 'expanded_timeline' : 'unstable_expanded_timeline'] = true;
  if (fresh || nameChanged || avatarChanged || memberChanged) {
    const [nameEv, avatarEv] = await ctx.rooms.events(roomId, [stateNow.get('m.room.name\u0000'), stateNow.get('m.room.avatar\u0000')].filter((id): id is string => !!id)).then((evs) => [evs.find((e) => e.event.type === 'm.room.name'), evs.find((e) => e.event.type === 'm.room.avatar')]);
    const name = (nameEv?.event.content as JsonObject | undefined)?.name;
    const hasName = typeof name === 'string' && name !== '';
    if ((fresh || nameChanged) && hasName) body.name = name;
    // v4: a name or avatar removed since the last answer is null.
    else if (v4 && nameChanged && !fresh) body.name = null;
    const avatar = (avatarEv?.event.content as JsonObject | undefined)?.url;
    if ((fresh || avatarChanged) && typeof avatar === 'string' && avatar) body.avatar = avatar;
    else if (v4 && avatarChanged && !fresh) body.avatar = null;
    if (!left && (fresh || memberChanged)) {
      const s = await summary(ctx, roomId, user.userId, endPos);
      body.joined_count = s['m.joined_member_count'] as number;
      body.invited_count = s['m.invited_member_count'] as number;
      if (!hasName) {
        const heroes = await heroesOf(ctx, roomId, s['m.heroes'] as string[], stateNow);
        if (heroes.length) body.heroes = heroes;
      }
    }
  }
  const requiredOut = required.length ? withoutRoomId(await formatEvents(ctx, roomId, required, user, { membership: false })) : [];
  // v4: state deleted since the last answer (a state reset) as stubs.
  for (const key of stubs) {
    const i = key.indexOf('\u0000');
    requiredOut.push({ type: key.slice(0, i), state_key: key.slice(i + 1) });
  }
  if (requiredOut.length) body.required_state = requiredOut;
  if (events.length) body.timeline = withoutRoomId(await formatEvents(ctx, roomId, events, user));
  if (fresh || events.length || endPos > (sent?.t ?? -Infinity)) {
    // v4: an absent `limited` means false.
    if (!v4 || limited) body.limited = limited;
    if (prevBatch !== null) body.prev_batch = encodeToken(prevBatch);
    // Live: what arrived after the previous answer (an initial connection has none).
    body.num_live = sinceMs === null ? 0 : fresh ? events.filter((e) => typeof e.event.origin_server_ts === 'number' && (e.event.origin_server_ts as number) >= sinceMs).length : expanding ? events.filter((e) => e.pos > sent.t).length : events.length;
  }
  // A room left stays remembered with its leave, so it is sent once (a subscription to it does
  // not resend it every time) and is out of the lists from then on.
  return { body, initial: fresh };
}

/** Events under their room's key go without `room_id` (the sync v2 format Synapse uses here). */
function withoutRoomId(events: JsonObject[]): JsonObject[] {
  for (const e of events) delete e.room_id;
  return events;
}

/** Heroes with their display names and avatars (from their member events). */
async function heroesOf(ctx: ApiContext, roomId: string, userIds: string[], stateNow: ReadonlyMap<string, string>): Promise<JsonObject[]> {
  const ids = userIds.map((u) => stateNow.get(stateKeyOf('m.room.member', u))).filter((id): id is string => !!id);
  const byUser = new Map((await ctx.rooms.events(roomId, ids)).map((e) => [String(e.event.state_key), e]));
  return userIds.map((u) => {
    const hero: JsonObject = { user_id: u };
    const c = byUser.get(u)?.event.content as JsonObject | undefined;
    if (typeof c?.displayname === 'string') hero.displayname = c.displayname;
    if (typeof c?.avatar_url === 'string') hero.avatar_url = c.avatar_url;
    return hero;
  });
}

// ---- unread counts ------------------------------------------------------------------------------

/**
 * `notification_count` / `highlight_count` of every joined room in view: always for rooms sent,
 * and a room whose counts moved (read elsewhere, or the push evaluator caught up) is sent for them
 * alone. Counts that should include new events wait for the push evaluator to have finished them.
 */
async function addCounts(ctx: ApiContext, user: SyncUser, p: SlidingParams, plans: Map<string, RoomPlan>, memberships: Map<string, IndexedMembership>, prev: ConnectionState, state: ConnectionState, rooms: Record<string, JsonObject>, countWaits: Map<number, boolean>, cutMs: number): Promise<void> {
  const joined = [...plans.keys()].filter((r) => memberships.get(r)?.membership === 'join' && state.rooms[r]);
  if (joined.length === 0) return;
  if (countWaits.size) {
    const shards = [...countWaits.keys()];
    const lasts = await Promise.all(shards.map((shard) => ctx.redis.xrevrange(ctx.keys.shard('room', shard).outbox, '+', '-', 'COUNT', 1)));
    const waits: Promise<boolean>[] = [];
    shards.forEach((shard, i) => {
      const id = lasts[i]?.[0]?.[0];
      if (id) waits.push(p.pushProgress.waitFor(shard, id));
    });
    await p.outside(Promise.all(waits));
  }
  const counts = await unreadCounts(ctx, user.userId, joined);
  for (const roomId of joined) {
    const c = counts.get(roomId);
    if (!c) continue;
    const pair: [number, number] = [c.notification_count, c.highlight_count];
    const before = prev.rooms[roomId]?.n;
    // A copy: the previous state's records are shared and must stay as they were.
    state.rooms[roomId] = { ...state.rooms[roomId]!, n: pair };
    const entry = rooms[roomId];
    if (entry) {
      entry.notification_count = pair[0];
      entry.highlight_count = pair[1];
    } else if (!before || before[0] !== pair[0] || before[1] !== pair[1]) {
      rooms[roomId] = { notification_count: pair[0], highlight_count: pair[1] };
    }
  }
}

// ---- extensions ---------------------------------------------------------------------------------

interface ExtensionInput {
  incremental: boolean;
  sinceMs: number;
  cutMs: number;
  prevCut: number;
  cut: number;
  listRooms: Map<string, string[]>;
  subscribed: string[];
  initialRooms: Set<string>;
  memberships: Map<string, IndexedMembership>;
  /** The thread subscription stream id the connection was last told up to (MSC4308). */
  tsub?: number;
  /** The state being built (the extension records how far it told). */
  state: ConnectionState;
}

/** The rooms an extension covers (MSC3959/60/61 `lists`/`rooms`; absent or `*`: all). */
function scopedRooms(scope: ExtensionScope, x: ExtensionInput): string[] {
  const out = new Set<string>();
  const lists = scope.lists ?? ['*'];
  for (const [name, ids] of x.listRooms) if (lists.includes('*') || lists.includes(name)) for (const id of ids) out.add(id);
  const subs = scope.rooms ?? ['*'];
  for (const id of x.subscribed) if (subs.includes('*') || subs.includes(id)) out.add(id);
  return [...out].filter((r) => x.memberships.get(r)?.membership === 'join');
}

async function computeExtensions(ctx: ApiContext, user: SyncUser, req: SlidingRequest, p: SlidingParams, x: ExtensionInput): Promise<{ body: JsonObject; news: boolean }> {
  const body: JsonObject = {};
  let news = false;
  const ext = req.extensions;
  const tasks: Promise<void>[] = [];
  if (ext.toDevice) {
    const td = ext.toDevice;
    tasks.push(
      (async () => {
        if (td.since) {
          const [ms, seq] = td.since.split('-') as [string, string];
          void ackToDevice(ctx, user.userId, user.deviceId, `${ms}-${BigInt(seq) + 1n}`).catch(() => undefined);
        }
        const batch = await readToDevice(ctx, user.userId, user.deviceId, td.since ?? null, x.cutMs, td.limit);
        body.to_device = { next_batch: batch.lastId ?? td.since ?? '0-0', events: batch.events };
        if (batch.events.length) news = true;
      })(),
    );
  }
  if (ext.e2ee) {
    tasks.push(
      (async () => {
        const [{ otk, fallback }, lists] = await Promise.all([p.e2e.get(ctx, user.userId, user.deviceId), x.incremental ? deviceListChanges(ctx, user.userId, x.prevCut, x.cut) : Promise.resolve({ changed: [], left: [] })]);
        // device_lists only on a connection's later answers (a first one has nothing to compare to), as Synapse.
        body.e2ee = { device_one_time_keys_count: otk, device_unused_fallback_key_types: fallback, ...(x.incremental ? { device_lists: { changed: lists.changed, left: lists.left } } : {}) };
        if (lists.changed.length || lists.left.length) news = true;
      })(),
    );
  }
  const userWindow = x.incremental && ext.accountData ? p.windows.window(ctx.keys.shard('user', shardOf(user.userId, ctx.shardCounts.user)).outbox, x.sinceMs, x.cutMs) : Promise.resolve(null);
  if (ext.accountData) {
    const scope = ext.accountData;
    tasks.push(
      (async () => {
        const r = await accountDataExtension(ctx, user.userId, scopedRooms(scope, x), x, await userWindow);
        body.account_data = r.body;
        if (r.news) news = true;
      })(),
    );
  }
  if (ext.typing || ext.receipts) {
    tasks.push(
      (async () => {
        const typingRooms = ext.typing ? scopedRooms(ext.typing, x) : [];
        const receiptRooms = ext.receipts ? scopedRooms(ext.receipts, x) : [];
        const eph = await ephemeralByRoom(ctx, user.userId, [...new Set([...typingRooms, ...receiptRooms])], x, p.windows);
        if (ext.typing) {
          const rooms: JsonObject = {};
          for (const r of typingRooms) {
            const e = eph.get(r)?.find((ev) => ev.type === 'm.typing');
            if (e) rooms[r] = e;
          }
          body.typing = { rooms };
          if (Object.keys(rooms).length) news = true;
        }
        if (ext.receipts) {
          const rooms: JsonObject = {};
          for (const r of receiptRooms) {
            const e = eph.get(r)?.find((ev) => ev.type === 'm.receipt');
            if (e) rooms[r] = e;
          }
          body.receipts = { rooms };
          if (Object.keys(rooms).length) news = true;
        }
      })(),
    );
  }
  if (ext.threadSubscriptions && ctx.config.threadSubscriptions.enabled) {
    const limit = ext.threadSubscriptions.limit;
    tasks.push(
      (async () => {
        // The changes after what this connection was last told, up to the newest now; older ones
        // beyond `limit` are for the client to page with `prev_batch` (GET /thread_subscriptions).
        const newest = await ctx.redis.zrevrange(userKey(ctx, user.userId, threadSubscriptionData.byStream(user.userId)), 0, 0, 'WITHSCORES');
        const upTo = newest.length >= 2 ? Number(newest[1]) : 0;
        const after = x.tsub ?? 0;
        x.state.tsub = Math.max(after, upTo);
        if (upTo <= after) return;
        const page = await threadSubscriptionsSince(ctx, user.userId, after, upTo, limit);
        if (!page.subscribed && !page.unsubscribed) return;
        body[THREAD_SUBSCRIPTIONS_EXTENSION] = { ...(page.subscribed ? { subscribed: page.subscribed } : {}), ...(page.unsubscribed ? { unsubscribed: page.unsubscribed } : {}), ...(page.end ? { prev_batch: page.end } : {}) } as unknown as JsonObject;
        news = true;
      })(),
    );
  }
  await Promise.all(tasks);
  return { body, news };
}

/**
 * Typing and receipts per room: for rooms the client sees for the first time (or after a gap in
 * their shard's outbox), who types now and the room's receipts; otherwise what the window
 * [previous cut, cut) of the room's shard outbox holds.
 */
async function ephemeralByRoom(ctx: ApiContext, userId: string, roomIds: string[], x: ExtensionInput, windows: OutboxWindowCache): Promise<Map<string, JsonObject[]>> {
  const out = new Map<string, JsonObject[]>();
  const current: string[] = [];
  const byShard = new Map<number, string[]>();
  for (const r of roomIds) {
    if (!x.incremental || x.initialRooms.has(r)) current.push(r);
    else {
      const s = shardOf(r, ctx.shardCounts.room);
      (byShard.get(s) ?? byShard.set(s, []).get(s)!).push(r);
    }
  }
  await Promise.all(
    [...byShard].map(async ([shard, ids]) => {
      const entries = await windows.window(ctx.keys.shard('room', shard).outbox, x.sinceMs, x.cutMs);
      if (entries === null) {
        current.push(...ids);
        return;
      }
      const wanted = new Set(ids);
      const per = new Map<string, EphemeralOutput[]>();
      for (const e of entries) {
        if ((e.kind !== 'typing' && e.kind !== 'receipt') || !wanted.has(e.actorId)) continue;
        const o = decodedBody<EphemeralOutput>(e);
        if (o) (per.get(e.actorId) ?? per.set(e.actorId, []).get(e.actorId)!).push(o);
      }
      for (const [r, outputs] of per) out.set(r, windowEphemeralEvents(outputs, userId));
    }),
  );
  await Promise.all(current.map(async (r) => out.set(r, await currentEphemeral(ctx, r, userId))));
  return out;
}

/** `account_data`: global (all on a new connection, else what changed) and per room in scope. */
async function accountDataExtension(ctx: ApiContext, userId: string, roomIds: string[], x: ExtensionInput, window: Awaited<ReturnType<OutboxWindowCache['window']>>): Promise<{ body: JsonObject; news: boolean }> {
  const uk = ctx.keys.shard('user', shardOf(userId, ctx.shardCounts.user));
  const global: JsonObject[] = [];
  const rooms: JsonObject = {};
  const parse = (json: string): JsonValue => JSON.parse(json) as JsonValue;
  const everything = !x.incremental || window === null;
  const changedGlobal = new Set<string>();
  const changedRooms = new Map<string, Set<string>>();
  for (const e of window ?? []) {
    if (e.kind !== 'user') continue;
    const o = decodedBody<UserOutput>(e);
    if (!o || o.type !== 'account_data' || o.user_id !== userId) continue;
    if (o.room_id) (changedRooms.get(o.room_id) ?? changedRooms.set(o.room_id, new Set()).get(o.room_id)!).add(o.data_type);
    else changedGlobal.add(o.data_type);
  }
  if (everything) {
    for (const [type, json] of Object.entries(await ctx.redis.hgetall(uk.data(userData.accountData(userId))))) if (type !== PUSH_RULES_TYPE) global.push({ type, content: parse(json) });
  } else {
    const types = [...changedGlobal].filter((t) => t !== PUSH_RULES_TYPE);
    const values = types.length ? await ctx.redis.hmget(uk.data(userData.accountData(userId)), ...types) : [];
    types.forEach((type, i) => {
      if (values[i] !== null && values[i] !== undefined) global.push({ type, content: parse(values[i]!) });
    });
  }
  // m.push_rules is the merged ruleset (not in the hash), sent whole when it may have changed.
  if (everything || changedGlobal.has(PUSH_RULES_TYPE)) global.push({ type: PUSH_RULES_TYPE, content: (await pushRulesContent(ctx, userId)) as unknown as JsonObject });
  await Promise.all(
    roomIds.map(async (roomId) => {
      const key = uk.data(userData.roomAccountData(userId, roomId));
      let pairs: [string, string | null][];
      if (everything || x.initialRooms.has(roomId)) pairs = Object.entries(await ctx.redis.hgetall(key));
      else {
        const types = [...(changedRooms.get(roomId) ?? [])];
        if (!types.length) return;
        const values = await ctx.redis.hmget(key, ...types);
        pairs = types.map((t, i) => [t, values[i] ?? null]);
      }
      const events = pairs.filter(([, v]) => v !== null).map(([type, json]) => ({ type, content: parse(json!) }));
      if (events.length) rooms[roomId] = events as unknown as JsonValue;
    }),
  );
  const news = x.incremental && (global.length > 0 || Object.keys(rooms).length > 0);
  return { body: { global: global as unknown as JsonValue, rooms }, news };
}

