/**
 * `POST /search` (search.yaml), category `room_events`: the events of the user's rooms — joined,
 * or left and not forgotten — whose text matches a search term, from the index the search reader
 * keeps (src/readers/search-indexer.ts, src/search/). Ordered by BM25 rank or by recency.
 *
 * Nothing the user could not read is ever returned: every result is checked against history
 * visibility at that event (RoomReader.canSee, as /messages does), so events from before a join
 * in a `joined` room, or after the user left, stay hidden; rejected and soft-failed events too.
 * The check is lazy, per page: only as many matches are checked as it takes to fill the page,
 * so a user in rooms with long histories does not pay for every match of a common word.
 *
 * Pagination: the index is read only as far as a page needs (src/search/query.ts); the first
 * request freezes the search's statistics and each room's newest position (a `SearchPlan`) and
 * keeps the ordered candidates found so far (not yet checked) with the cursor to continue from,
 * in Redis for half an hour (`KeySpace.searchResults`); `next_batch` names that list and the
 * first candidate not yet looked at, and the list is extended from the cursor when a page runs
 * past it, so later pages neither repeat nor skip results while new events arrive. `count` is the
 * number of matches before the visibility check: exact when the whole index for the query was
 * read, else an upper bound (Synapse's is an upper bound too); `highlights` are the matching
 * words of the page's events.
 */
import { randomBytes } from 'node:crypto';
import type { Front } from '../../http/server';
import { MatrixError, errors } from '../../http/errors';
import { isJsonObject, type JsonObject, type JsonValue } from '../../protocol/json';
import { stateKeyOf } from '../../protocol/pdu';
import { parseQuery, termMatches, tokens } from '../../protocol/search-text';
import { MembershipIndex } from '../../readers/membership-index';
import { formatEvents } from '../../rooms/client-format';
import { filterAllowsRoom, filterMatches, type RoomEventFilter } from '../../rooms/event-filter';
import { encodeToken, paginate } from '../../rooms/pagination';
import { roomAccess, visibleStateIds } from '../../rooms/visibility';
import { SEARCH_KEYS, SearchIndexStore, searchableText, replacementOf, type KeyCode, type SearchKey } from '../../search/index-store';
import { nextCandidates, startSearch, type CandidateBatch, type Cursor, type SearchPlan } from '../../search/query';
import { servableAsState, servableToClients, type RoomEvent } from '../../store/room-reader';
import type { ApiContext } from '../context';
import { requireUser, type Requester } from './auth';
import { bodyObject, clientRoute, eventFilterFromJson } from './room-common';
import { bundleAggregations } from './relations';

/** Candidates (matches before the visibility check) found at once: at least this many, and twice the page. */
const MIN_CANDIDATES = 30;
/** At most this many candidates are kept per search (its pages end there). */
const MAX_CANDIDATES = 50_000;
const DEFAULT_LIMIT = 10;
const MAX_LIMIT = 1000;
const DEFAULT_CONTEXT = 5;
const MAX_CONTEXT = 100;
const RESULTS_TTL_S = 30 * 60;
const MAX_HIGHLIGHTS = 50;
/** At most this many candidates are checked for visibility at once (fewer for a small page). */
const VISIBILITY_BATCH = 200;

interface SearchRequest {
  searchTerm: string;
  keys: Set<KeyCode>;
  filter: RoomEventFilter;
  limit: number;
  orderBy: 'rank' | 'recent';
  context: { before: number; after: number; profile: boolean } | null;
  includeState: boolean;
  groupBy: ('room_id' | 'sender')[];
}

/** What a search keeps for its later pages. */
interface StoredResults {
  user: string;
  /** The request's hash: a `next_batch` is only good for the same search. */
  request: string;
  plan: SearchPlan;
  /** The matches found so far, in order, not yet checked for visibility: index into `plan.rooms`, timeline position, rank. */
  candidates: [room: number, pos: number, rank: number][];
  /** Where the next candidates start; none follow when `exhausted`. */
  cursor: Cursor;
  exhausted: boolean;
  count: number;
}

function intIn(v: JsonValue | undefined, name: string, fallback: number, max: number): number {
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw errors.invalidParam(`${name} must be a non-negative integer`);
  return Math.min(v, max);
}

export function parseSearchRequest(body: JsonObject): SearchRequest {
  const categories = body.search_categories;
  if (!isJsonObject(categories as JsonValue)) throw errors.badJson('search_categories must be an object');
  const cat = (categories as JsonObject).room_events;
  if (cat === undefined) throw errors.badJson('Only the room_events search category is supported; it is missing');
  if (!isJsonObject(cat as JsonValue)) throw errors.badJson('room_events must be an object');
  const c = cat as JsonObject;
  if (typeof c.search_term !== 'string') throw errors.badJson('room_events.search_term must be a string');
  let keys = new Set<KeyCode>(Object.values(SEARCH_KEYS));
  if (c.keys !== undefined) {
    if (!Array.isArray(c.keys) || !c.keys.every((k) => typeof k === 'string' && k in SEARCH_KEYS)) throw errors.invalidParam(`room_events.keys must list some of ${Object.keys(SEARCH_KEYS).join(', ')}`);
    keys = new Set((c.keys as SearchKey[]).map((k) => SEARCH_KEYS[k]));
  }
  const rawFilter = c.filter === undefined || c.filter === null ? {} : (c.filter as JsonValue);
  const filter = eventFilterFromJson(rawFilter);
  const limit = intIn((rawFilter as JsonObject).limit, 'filter.limit', DEFAULT_LIMIT, MAX_LIMIT);
  const orderBy = c.order_by ?? 'rank';
  if (orderBy !== 'rank' && orderBy !== 'recent') throw errors.invalidParam('order_by must be "rank" or "recent"');
  let context: SearchRequest['context'] = null;
  if (c.event_context !== undefined && c.event_context !== null) {
    if (!isJsonObject(c.event_context as JsonValue)) throw errors.invalidParam('event_context must be an object');
    const ec = c.event_context as JsonObject;
    if (ec.include_profile !== undefined && typeof ec.include_profile !== 'boolean') throw errors.invalidParam('event_context.include_profile must be a boolean');
    context = { before: intIn(ec.before_limit, 'event_context.before_limit', DEFAULT_CONTEXT, MAX_CONTEXT), after: intIn(ec.after_limit, 'event_context.after_limit', DEFAULT_CONTEXT, MAX_CONTEXT), profile: ec.include_profile === true };
  }
  if (c.include_state !== undefined && typeof c.include_state !== 'boolean') throw errors.invalidParam('include_state must be a boolean');
  const groupBy: SearchRequest['groupBy'] = [];
  if (c.groupings !== undefined && c.groupings !== null) {
    const g = c.groupings as JsonObject;
    if (!isJsonObject(g) || (g.group_by !== undefined && !Array.isArray(g.group_by))) throw errors.invalidParam('groupings.group_by must be a list');
    for (const item of (g.group_by as JsonValue[] | undefined) ?? []) {
      const key = isJsonObject(item) ? item.key : undefined;
      if (key !== 'room_id' && key !== 'sender') throw errors.invalidParam('groupings.group_by keys must be "room_id" or "sender"');
      if (!groupBy.includes(key)) groupBy.push(key);
    }
  }
  return { searchTerm: c.search_term, keys, filter, limit, orderBy, context, includeState: c.include_state === true, groupBy };
}

/** The rooms a user's search covers: joined, or left or banned from and not forgotten. */
async function searchableRooms(index: MembershipIndex, userId: string, filter: RoomEventFilter): Promise<string[]> {
  const all = await index.rooms(userId);
  const out: string[] = [];
  for (const { roomId, membership } of all) {
    if (membership !== 'join' && membership !== 'leave' && membership !== 'ban') continue;
    if (!filterAllowsRoom(filter, roomId)) continue;
    if (membership !== 'join' && (await index.isForgotten(userId, roomId))) continue;
    out.push(roomId);
  }
  return out;
}

/** The words of the found events that matched the query, as written (clients highlight them). */
function highlightsOf(events: RoomEvent[], terms: string[], lastIsPrefix: boolean): string[] {
  const found = new Set<string>();
  for (const e of events) {
    const edit = replacementOf(e.event);
    const text = searchableText(edit ? { type: 'm.room.message', content: edit.newContent } : e.event)?.text;
    if (!text) continue;
    for (const { term, surface } of tokens(text)) {
      if (terms.some((t, i) => termMatches(term, t, lastIsPrefix && i === terms.length - 1))) {
        found.add(surface);
        if (found.size >= MAX_HIGHLIGHTS) return [...found];
      }
    }
  }
  return [...found];
}

/** A search's first candidates, before any visibility check (that is done per page). */
async function runSearch(index: MembershipIndex, store: SearchIndexStore, user: Requester, req: SearchRequest, requestHash: string): Promise<StoredResults> {
  const rooms = await searchableRooms(index, user.userId, req.filter);
  const { plan, batch } = await startSearch(store, rooms, req.searchTerm, req.keys, req.orderBy, Math.max(MIN_CANDIDATES, 2 * req.limit));
  const stored: StoredResults = { user: user.userId, request: requestHash, plan, candidates: [], cursor: null, exhausted: plan.terms.length === 0, count: 0 };
  if (stored.exhausted) return stored;
  addCandidates(stored, batch);
  stored.count = batch.count;
  return stored;
}

function addCandidates(stored: StoredResults, batch: CandidateBatch): void {
  stored.candidates.push(...batch.candidates.map((c) => [c.room, c.pos, c.score] as [number, number, number]));
  stored.cursor = batch.cursor;
  stored.exhausted = batch.exhausted || batch.candidates.length === 0 || stored.candidates.length >= MAX_CANDIDATES;
}

/**
 * One page of results: candidates from `offset` on, checked for visibility a batch at a time
 * until `limit` pass (so a user in rooms with long histories pays for the page, not for every
 * match), more read from the index when the candidates run out; `next` is the first candidate
 * not yet looked at, `extended` whether candidates were added.
 */
async function visiblePage(ctx: ApiContext, store: SearchIndexStore, user: Requester, req: SearchRequest, stored: StoredResults, offset: number): Promise<{ page: { roomId: string; rank: number; event: RoomEvent }[]; next: number; extended: boolean }> {
  const page: { roomId: string; rank: number; event: RoomEvent }[] = [];
  let i = offset;
  let extended = false;
  const rooms = stored.plan.rooms;
  const batchSize = Math.min(VISIBILITY_BATCH, Math.max(2 * req.limit, 20));
  while (page.length < req.limit) {
    if (i >= stored.candidates.length) {
      if (stored.exhausted) break;
      addCandidates(stored, await nextCandidates(store, stored.plan, stored.cursor, Math.max(MIN_CANDIDATES, 2 * req.limit, stored.candidates.length)));
      extended = true;
      continue;
    }
    const batch = stored.candidates.slice(i, i + batchSize);
    const byRoom = new Map<string, number[]>();
    for (const [r, pos] of batch) byRoom.set(rooms[r]!, [...(byRoom.get(rooms[r]!) ?? []), pos]);
    const loaded = new Map<string, RoomEvent>();
    await Promise.all(
      [...byRoom].map(async ([roomId, positions]) => {
        const ids = await store.eventIdsAt(roomId, positions);
        for (const e of await ctx.rooms.events(roomId, [...ids.values()])) loaded.set(`${roomId}\0${e.pos}`, e);
      }),
    );
    const ok = await Promise.all(
      batch.map(async ([r, pos]) => {
        const roomId = rooms[r]!;
        const e = loaded.get(`${roomId}\0${pos}`);
        if (!e || !servableToClients(e) || e.redactedBy || e.event.room_id !== roomId) return null;
        if (!filterMatches(req.filter, e.event)) return null;
        return (await ctx.rooms.canSee(roomId, user.userId, e)) ? e : null;
      }),
    );
    for (let j = 0; j < batch.length; j++) {
      if (page.length === req.limit) break;
      i++;
      const e = ok[j];
      if (e) page.push({ roomId: rooms[batch[j]![0]]!, rank: batch[j]![2], event: e });
    }
  }
  return { page, next: i, extended };
}

/** The display names and avatars of some users, from a room's state. */
async function profilesAt(ctx: ApiContext, roomId: string, stateId: number, users: Set<string>): Promise<JsonObject> {
  const state = await ctx.rooms.snapshot(roomId, stateId);
  const ids = [...users].map((u) => state.get(stateKeyOf('m.room.member', u))).filter((id): id is string => id !== undefined);
  const out: JsonObject = {};
  for (const e of await ctx.rooms.events(roomId, ids)) {
    const content = isJsonObject(e.event.content as JsonValue) ? (e.event.content as JsonObject) : {};
    const profile: JsonObject = {};
    if (typeof content.displayname === 'string') profile.displayname = content.displayname;
    if (typeof content.avatar_url === 'string') profile.avatar_url = content.avatar_url;
    out[String(e.event.state_key)] = profile;
  }
  return out;
}

export function registerSearchRoutes(front: Front, ctx: ApiContext): void {
  const index = new MembershipIndex(ctx.redis, ctx.keys, ctx.shardCounts.user);
  const store = new SearchIndexStore(ctx.redis, ctx.keys, ctx.shardCounts.room);

  clientRoute(front, 'POST', '/search', async (req) => {
    const user = await requireUser(ctx, req);
    const body = bodyObject(req);
    const request = parseSearchRequest(body);
    const rc = (body.search_categories as JsonObject).room_events as JsonObject;
    // What decides the result list (the page size and presentation may change between pages).
    const requestHash = JSON.stringify([request.searchTerm, [...request.keys].sort(), { ...(isJsonObject(rc.filter as JsonValue) ? (rc.filter as JsonObject) : {}), limit: null }, request.orderBy]);

    let stored: StoredResults;
    let id: string;
    let offset = 0;
    let fresh = false;
    const batch = req.query.next_batch;
    if (batch !== undefined) {
      const m = /^([A-Za-z0-9_-]{16,64})\.(\d{1,9})$/.exec(batch);
      const raw = m ? await ctx.redis.get(ctx.keys.searchResults(m[1]!)) : null;
      const parsed = raw ? (JSON.parse(raw) as StoredResults) : null;
      if (!m || !parsed || parsed.user !== user.userId || parsed.request !== requestHash || !parsed.plan || !Array.isArray(parsed.candidates) || Number(m[2]) > parsed.candidates.length) throw errors.invalidParam('Unknown or expired next_batch');
      stored = parsed;
      id = m[1]!;
      offset = Number(m[2]);
    } else {
      stored = await runSearch(index, store, user, request, requestHash);
      id = randomBytes(18).toString('base64url');
      fresh = true;
    }
    const { page: visible, next, extended } = await visiblePage(ctx, store, user, request, stored, offset);
    const more = next < stored.candidates.length || !stored.exhausted;
    // Kept only when there is a next page; the list only grows at its end (from the frozen plan), so pages stay stable while new events arrive.
    if ((fresh || extended) && more) await ctx.redis.set(ctx.keys.searchResults(id), JSON.stringify(stored), 'EX', RESULTS_TTL_S);

    const page = visible.map((v) => [v.roomId, v.event.eventId, v.rank] as const);
    const byRoom = new Map<string, RoomEvent[]>();
    for (const v of visible) byRoom.set(v.roomId, [...(byRoom.get(v.roomId) ?? []), v.event]);
    const events = new Map<string, RoomEvent>();
    const formatted = new Map<string, JsonObject>();
    await Promise.all(
      [...byRoom].map(async ([roomId, loaded]) => {
        const out = await formatEvents(ctx, roomId, loaded, user);
        // Edits, reactions and threads bundled as /messages does: a client shows an edited result's new text.
        await bundleAggregations(ctx, roomId, loaded, out, user);
        loaded.forEach((e, i) => {
          events.set(e.eventId, e);
          formatted.set(e.eventId, out[i]!);
        });
      }),
    );

    const results: JsonObject[] = [];
    for (const [roomId, eventId, rank] of page) {
      const e = events.get(eventId);
      const f = formatted.get(eventId);
      // Redacted since the search ran: left out of this page.
      if (!e || !f || e.redactedBy) continue;
      const result: JsonObject = { rank, result: f };
      if (request.context) result.context = await contextOf(ctx, roomId, user, e, request.context, request.filter);
      results.push(result);
    }

    const query = parseQuery(request.searchTerm);
    // `count` is the number of matches in the searched rooms before the visibility check (as
    // Synapse's is): an upper bound, which spares checking every match up front.
    const answer: JsonObject = { results, count: stored.count, highlights: highlightsOf(visible.map((v) => v.event), query.terms, query.lastIsPrefix) };
    if (more) answer.next_batch = `${id}.${next}`;
    if (request.includeState) {
      const state: JsonObject = {};
      for (const roomId of byRoom.keys()) {
        try {
          const access = await roomAccess(ctx, index, user.userId, roomId);
          const ids = await visibleStateIds(ctx, roomId, access);
          const stateEvents = (await ctx.rooms.events(roomId, [...ids.values()])).filter(servableAsState);
          state[roomId] = await formatEvents(ctx, roomId, stateEvents, user, { membership: false });
        } catch (e) {
          if (!(e instanceof MatrixError)) throw e;
        }
      }
      answer.state = state;
    }
    if (request.groupBy.length) {
      const groups: JsonObject = {};
      for (const key of request.groupBy) {
        const group: Record<string, { results: string[]; order: number }> = {};
        page.forEach(([roomId, eventId]) => {
          const e = events.get(eventId);
          if (!e) return;
          const k = key === 'room_id' ? roomId : String(e.event.sender);
          group[k] ??= { results: [], order: Object.keys(group).length + 1 };
          group[k].results.push(eventId);
        });
        groups[key] = group as unknown as JsonObject;
      }
      answer.groups = groups;
    }
    return { body: { search_categories: { room_events: answer } } };
  });
}

async function contextOf(ctx: ApiContext, roomId: string, user: Requester, target: RoomEvent, want: { before: number; after: number; profile: boolean }, filter: RoomEventFilter): Promise<JsonObject> {
  const { rooms: _r, not_rooms: _n, limit: _l, ...eventFilter } = filter;
  const [before, after] = await Promise.all([
    want.before > 0 ? paginate(ctx, roomId, user.userId, 'b', target.pos - 1, null, want.before, eventFilter) : Promise.resolve({ events: [] as RoomEvent[], end: null }),
    want.after > 0 ? paginate(ctx, roomId, user.userId, 'f', target.pos, null, want.after, eventFilter) : Promise.resolve({ events: [] as RoomEvent[], end: null }),
  ]);
  const out: JsonObject = {
    events_before: await formatEvents(ctx, roomId, before.events, user),
    events_after: await formatEvents(ctx, roomId, after.events, user),
    start: encodeToken(before.end ?? (before.events.length ? before.events[before.events.length - 1]!.pos - 1 : target.pos - 1)),
    end: encodeToken(after.end ?? (after.events.length ? after.events[after.events.length - 1]!.pos : target.pos)),
  };
  if (want.profile) {
    const last = after.events[after.events.length - 1] ?? target;
    const senders = new Set([...before.events, target, ...after.events].map((e) => String(e.event.sender)));
    out.profile_info = await profilesAt(ctx, roomId, last.stateAfter, senders);
  }
  return out;
}
