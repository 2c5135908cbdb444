/**
 * Room reads: state, members, joined members, joined rooms, `/messages`, `/context`, `/event`.
 * They read the store directly (RoomReader) and never go through the actor. Every read checks
 * who may see what: non-members of rooms that are not world-readable get 403; former members see
 * the state as of their departure; events history visibility hides, and rejected or soft-failed
 * events, are left out.
 */
import type { Front, Request } from '../../http/server';
import { MatrixError, errors } from '../../http/errors';
import { splitStateKey, stateKeyOf } from '../../protocol/pdu';
import { isJsonObject, type JsonObject } from '../../protocol/json';
import { backfillFromRemote } from '../../federation/backfill-remote';
import { servableAsState, servableToClients, type RoomEvent } from '../../store/room-reader';
import { roomData } from '../../store/keys';
import type { MembershipIndex } from '../../readers/membership-index';
import { requireUser } from './auth';
import { bundleAggregations } from './relations';
import type { ApiContext } from '../context';
import { clientRoute, lazyMemberState, loadRoomEventFilter } from './room-common';
import { encodeToken, paginate, roomGapOf } from '../../rooms/pagination';
import { eventRoomId, formatEvents } from '../../rooms/client-format';
import { filterMatches } from '../../rooms/event-filter';
import { roomShard } from '../../store/shard-keys';
import { requireRoomId } from '../../http/params';
import { roomAccess, visibleStateIds } from '../../rooms/visibility';
import { partialStateOf, waitForFullState } from '../../rooms/partial-state';

/** How long /members waits for a partial-state room's full state. */
const MEMBERS_FULL_STATE_WAIT_MS = 120_000;

const MAX_LIMIT = 1000;

export function registerRoomReadRoutes(front: Front, ctx: ApiContext, index: MembershipIndex): void {
  const stateEvent = async (req: Request, stateKey: string) => {
    const user = await requireUser(ctx, req);
    const roomId = requireRoomId(req.params.roomId);
    const access = await roomAccess(ctx, index, user.userId, roomId);
    const ids = await visibleStateIds(ctx, roomId, access);
    const id = ids.get(stateKeyOf(req.params.eventType!, stateKey));
    const e = id ? await ctx.rooms.event(roomId, id) : null;
    if (!e || !servableAsState(e)) throw errors.notFound('The room has no state with this type and key');
    const format = req.query.format ?? 'content';
    if (format !== 'content' && format !== 'event') throw errors.invalidParam('format must be "content" or "event"');
    if (format === 'event') return { body: (await formatEvents(ctx, roomId, [e], user))[0] };
    return { body: isJsonObject(e.event.content as never) ? e.event.content : {} };
  };
  clientRoute(front, 'GET', '/rooms/:roomId/state/:eventType/:stateKey', (req) => stateEvent(req, req.params.stateKey!));
  clientRoute(front, 'GET', '/rooms/:roomId/state/:eventType/', (req) => stateEvent(req, ''));
  clientRoute(front, 'GET', '/rooms/:roomId/state/:eventType', (req) => stateEvent(req, ''));

  clientRoute(front, 'GET', '/rooms/:roomId/state', async (req) => {
    const user = await requireUser(ctx, req);
    const roomId = requireRoomId(req.params.roomId);
    const access = await roomAccess(ctx, index, user.userId, roomId);
    const ids = await visibleStateIds(ctx, roomId, access);
    const events = (await ctx.rooms.events(roomId, [...ids.values()])).filter(servableAsState);
    return { body: await formatEvents(ctx, roomId, events, user, { membership: false }) };
  });

  clientRoute(front, 'GET', '/rooms/:roomId/members', async (req) => {
    const user = await requireUser(ctx, req);
    const roomId = requireRoomId(req.params.roomId);
    const access = await roomAccess(ctx, index, user.userId, roomId);
    // A room joined with partial state (faster joins) does not know its members yet: wait for the
    // full state, as Synapse's /members does; past the wait, answer what is known.
    if (await partialStateOf(ctx, roomId)) {
      req.allowWait(MEMBERS_FULL_STATE_WAIT_MS + 5_000);
      await waitForFullState(ctx, roomId, MEMBERS_FULL_STATE_WAIT_MS);
    }
    let ids = await visibleStateIds(ctx, roomId, access);
    if (req.query.at !== undefined) {
      // The members as of a point in the timeline (not past what the requester may see).
      let at = await roomGapOf(ctx, roomId, req.query.at, 'at');
      if (access.kind === 'departed') {
        const leave = [...(await ctx.rooms.currentStateIds(roomId, { type: 'm.room.member', stateKey: user.userId })).values()][0];
        const e = leave ? await ctx.rooms.event(roomId, leave) : null;
        if (e) at = Math.min(at, e.pos);
      }
      const rows = (await ctx.redis.zrevrangebyscore(roomShard(ctx, roomId).data(roomData.timeline(roomId)), at, '-inf', 'LIMIT', 0, 1)) as string[];
      const e = rows[0] ? await ctx.rooms.event(roomId, rows[0]) : null;
      ids = e ? await ctx.rooms.snapshot(roomId, e.stateAfter) : new Map();
    }
    const membership = req.query.membership;
    const notMembership = req.query.not_membership;
    const memberIds = [...ids].filter(([k]) => splitStateKey(k)[0] === 'm.room.member').map(([, id]) => id);
    const events = (await ctx.rooms.events(roomId, memberIds)).filter((e) => {
      if (!servableAsState(e)) return false;
      const m = (e.event.content as JsonObject | undefined)?.membership;
      if (membership !== undefined && m !== membership) return false;
      if (notMembership !== undefined && m === notMembership) return false;
      return true;
    });
    return { body: { chunk: await formatEvents(ctx, roomId, events, user, { membership: false }) } };
  });

  clientRoute(front, 'GET', '/rooms/:roomId/joined_members', async (req) => {
    const user = await requireUser(ctx, req);
    const roomId = requireRoomId(req.params.roomId);
    if ((await ctx.rooms.membership(roomId, user.userId)) !== 'join') throw new MatrixError(403, 'M_FORBIDDEN', 'You are not in this room');
    const joined = await ctx.rooms.members(roomId, 'join');
    const ids = [...(await ctx.rooms.currentStateIds(roomId, { type: 'm.room.member' }))].filter(([k]) => joined.has(splitStateKey(k)[1])).map(([, id]) => id);
    const out: Record<string, JsonObject> = {};
    for (const e of await ctx.rooms.events(roomId, ids)) {
      const content = (e.event.content ?? {}) as JsonObject;
      // Both keys always, null when unset, as Synapse answers (clients read `avatar_url` directly).
      const info: JsonObject = {
        display_name: typeof content.displayname === 'string' ? content.displayname : null,
        avatar_url: typeof content.avatar_url === 'string' ? content.avatar_url : null,
      };
      out[String(e.event.state_key)] = info;
    }
    return { body: { joined: out } };
  });

  clientRoute(front, 'GET', '/joined_rooms', async (req) => {
    const user = await requireUser(ctx, req);
    const rooms = await index.rooms(user.userId, 'join');
    return { body: { joined_rooms: rooms.map((r) => r.roomId).sort() } };
  });

  clientRoute(front, 'GET', '/rooms/:roomId/messages', async (req) => {
    const user = await requireUser(ctx, req);
    const roomId = requireRoomId(req.params.roomId);
    const dir = req.query.dir;
    if (dir !== 'b' && dir !== 'f') throw errors.invalidParam('dir must be "b" or "f"');
    const from = req.query.from !== undefined && req.query.from !== '' ? await roomGapOf(ctx, roomId, req.query.from, 'from') : null;
    const to = req.query.to !== undefined && req.query.to !== '' ? await roomGapOf(ctx, roomId, req.query.to, 'to') : null;
    const limit = parseLimit(req.query.limit, 10);
    const filter = await loadRoomEventFilter(ctx, user.userId, req.query.filter);
    await roomAccess(ctx, index, user.userId, roomId);
    const meta = await ctx.rooms.meta(roomId);
    const start = from ?? (dir === 'b' ? (meta?.seq ?? 0) : 0);
    const n = Math.min(limit, filter.limit ?? limit);
    let page = await paginate(ctx, roomId, user.userId, dir, start, to, n, filter);
    // Local history ran out: what came before is asked of the servers in the room (a room joined
    // over federation starts at our join), then the page is read again.
    const fed = ctx.federation;
    if (dir === 'b' && page.end === null && to === null && fed?.client && fed.keyStore) {
      if ((await backfillFromRemote(ctx, { client: fed.client, keyStore: fed.keyStore }, roomId)) > 0) page = await paginate(ctx, roomId, user.userId, dir, start, to, n, filter);
    }
    const chunk = await formatEvents(ctx, roomId, page.events, user);
    await bundleAggregations(ctx, roomId, page.events, chunk, user);
    const body: JsonObject = { start: encodeToken(start), chunk };
    if (page.end !== null) body.end = encodeToken(page.end);
    if (filter.lazy_load_members) body.state = await formatEvents(ctx, roomId, await lazyMemberState(ctx, roomId, page.events), user, { membership: false });
    return { body };
  });

  clientRoute(front, 'GET', '/rooms/:roomId/context/:eventId', async (req) => {
    const user = await requireUser(ctx, req);
    const roomId = requireRoomId(req.params.roomId);
    const limit = parseLimit(req.query.limit, 10);
    const filter = await loadRoomEventFilter(ctx, user.userId, req.query.filter);
    const target = await visibleEvent(ctx, roomId, user.userId, req.params.eventId!);
    const beforeN = Math.floor(limit / 2);
    const afterN = limit - beforeN;
    // Backwards from the gap just before the event; forwards from the gap just after it.
    const [before, after] = await Promise.all([
      paginate(ctx, roomId, user.userId, 'b', target.pos - 1, null, beforeN, filter),
      paginate(ctx, roomId, user.userId, 'f', target.pos, null, afterN, filter),
    ]);
    const last = after.events[after.events.length - 1] ?? target;
    const stateIds = await ctx.rooms.snapshot(roomId, last.stateAfter);
    // The state at the last event, through the same filter as the events (as Synapse: a filter of
    // `types: ["m.room.message"]` leaves no state); lazy loading keeps every other state event and
    // the member events of the senders shown.
    const senders = new Set([...before.events, target, ...after.events].map((e) => String(e.event.sender)));
    const memberPrefix = 'm.room.member\u0000';
    const ids = [...stateIds.entries()]
      .filter(([key]) => !filter.lazy_load_members || !key.startsWith(memberPrefix) || senders.has(key.slice(memberPrefix.length)))
      .map(([, id]) => id);
    const state: RoomEvent[] = (await ctx.rooms.events(roomId, ids)).filter((e) => servableAsState(e) && filterMatches(filter, e.event));
    const [event] = await formatEvents(ctx, roomId, [target], user);
    const eventsBefore = await formatEvents(ctx, roomId, before.events, user);
    const eventsAfter = await formatEvents(ctx, roomId, after.events, user);
    await bundleAggregations(ctx, roomId, [target, ...before.events, ...after.events], [event!, ...eventsBefore, ...eventsAfter], user);
    return {
      body: {
        event,
        events_before: eventsBefore,
        events_after: eventsAfter,
        start: encodeToken(before.end ?? (before.events.length ? before.events[before.events.length - 1]!.pos - 1 : target.pos - 1)),
        end: encodeToken(after.end ?? (after.events.length ? after.events[after.events.length - 1]!.pos : target.pos)),
        state: await formatEvents(ctx, roomId, state, user, { membership: false }),
      },
    };
  });

  clientRoute(front, 'GET', '/rooms/:roomId/event/:eventId', async (req) => {
    const user = await requireUser(ctx, req);
    const roomId = requireRoomId(req.params.roomId);
    const e = await visibleEvent(ctx, roomId, user.userId, req.params.eventId!);
    const formatted = await formatEvents(ctx, roomId, [e], user);
    await bundleAggregations(ctx, roomId, [e], formatted, user);
    return { body: formatted[0] };
  });
}

/** An event of this room the user may see, or 404 (the spec does not tell "absent" from "hidden"). */
async function visibleEvent(ctx: ApiContext, roomId: string, userId: string, eventId: string): Promise<RoomEvent> {
  const e = await ctx.rooms.event(roomId, eventId);
  if (!e || !servableToClients(e) || eventRoomId(e) !== roomId || !(await ctx.rooms.canSee(roomId, userId, eventId))) {
    throw errors.notFound('Event not found or not visible to you');
  }
  return e;
}

function parseLimit(raw: string | undefined, fallback: number): number {
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d{1,9}$/.test(raw)) throw errors.invalidParam('limit must be a non-negative integer');
  return Math.min(Number(raw), MAX_LIMIT);
}
