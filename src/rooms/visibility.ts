/**
 * Who may see what of a room's history — for clients and for other servers (Synapse keeps both
 * in one module, synapse/visibility.py; so do we).
 *
 * Clients: members, former members (as of their departure) and anyone for world_readable rooms
 * may read; which events a user sees is the client-server API's "History visibility" rule, asked
 * per event of `RoomReader.canSee` (src/store/room-reader.ts, cached per state snapshot). The
 * effective visibility of a state is src/protocol/history-visibility.ts.
 *
 * Servers: `serverMaySee` / `filterEventsForServer` below, for what /backfill, /event, /state and
 * /get_missing_events may hand a remote server.
 */
import { MatrixError } from '../http/errors';
import { effectiveHistoryVisibility, type HistoryVisibility } from '../protocol/history-visibility';
import { isJsonObject, type JsonObject, type JsonValue } from '../protocol/json';
import { stateKeyOf } from '../protocol/pdu';
import type { MembershipIndex } from '../readers/membership-index';
import { servableToClients, type RoomEvent, type RoomReader } from '../store/room-reader';

/** What these reads need of the API context (any `ApiContext` is one). */
export interface RoomReads {
  rooms: RoomReader;
}

// ---- who may read a room ----------------------------------------------------------------

export type RoomAccess =
  /** Joined: the current state and every event history visibility allows. */
  | { kind: 'joined' }
  /** Left or banned (and not forgotten): state as it was when they left. */
  | { kind: 'departed'; stateAfter: number }
  /** Not a member of a world_readable room: current state. */
  | { kind: 'world_readable' };

/**
 * The spec's rule for state, members and history reads: members, former members (state as of
 * their departure) and anyone for world_readable rooms; everyone else — and unknown rooms — get
 * 403 M_FORBIDDEN, so room existence does not leak.
 */
export async function roomAccess(ctx: RoomReads, index: MembershipIndex, userId: string, roomId: string): Promise<RoomAccess> {
  const membership = await ctx.rooms.membership(roomId, userId);
  if (membership === 'join') return { kind: 'joined' };
  if ((membership === 'leave' || membership === 'ban') && !(await index.isForgotten(userId, roomId))) {
    const ids = await ctx.rooms.currentStateIds(roomId, { type: 'm.room.member', stateKey: userId });
    const id = ids.values().next().value;
    const e = id ? await ctx.rooms.event(roomId, id) : null;
    if (e) return { kind: 'departed', stateAfter: e.stateAfter };
  }
  if ((await historyVisibility(ctx, roomId)) === 'world_readable') return { kind: 'world_readable' };
  throw new MatrixError(403, 'M_FORBIDDEN', 'You are not a member of this room and it is not world-readable');
}

/** The room's current history visibility (missing or not understood: `shared`, as everywhere). */
export async function historyVisibility(ctx: RoomReads, roomId: string): Promise<HistoryVisibility> {
  const [e] = await ctx.rooms.currentState(roomId, { type: 'm.room.history_visibility', stateKey: '' });
  return effectiveHistoryVisibility(e?.event.content as JsonValue | undefined);
}

/** State ids visible under an access: current, or as of a departure. */
export async function visibleStateIds(ctx: RoomReads, roomId: string, access: RoomAccess): Promise<Map<string, string>> {
  if (access.kind === 'departed') return ctx.rooms.snapshot(roomId, access.stateAfter);
  return ctx.rooms.currentStateIds(roomId);
}

/** Of `events`, those this user may be shown (servable, and allowed by history visibility). */
export async function visibleEvents(ctx: RoomReads, roomId: string, userId: string, events: RoomEvent[]): Promise<RoomEvent[]> {
  // From the visibility cache without a promise per event where it can answer (a woken member's
  // answer asks this for every event of it); the rest read what they need, all at once.
  let pending: Promise<boolean>[] | null = null;
  const ok: (boolean | undefined)[] = new Array(events.length);
  for (let i = 0; i < events.length; i++) {
    const e = events[i]!;
    const seen = servableToClients(e) ? ctx.rooms.canSeeCached(roomId, userId, e) : false;
    ok[i] = seen;
    if (seen === undefined) (pending ??= new Array(events.length))[i] = ctx.rooms.canSee(roomId, userId, e);
  }
  if (pending) {
    const read = await Promise.all(pending);
    for (let i = 0; i < events.length; i++) if (ok[i] === undefined) ok[i] = read[i]!;
  }
  const out: RoomEvent[] = [];
  for (let i = 0; i < events.length; i++) if (ok[i]) out.push(events[i]!);
  return out;
}

// ---- what a remote server may see --------------------------------------------------------

/**
 * What the server-side rule needs to know about one event, gathered by the caller
 * (`serverVisibilityFacts` does it from the store) so the rule itself stays a pure function.
 */
export interface ServerVisibilityFacts {
  /**
   * The history visibility in the state before the event. Outliers have no known state before
   * them: `shared`, as if no visibility were set (Synapse does the same).
   */
  visibility: HistoryVisibility;
  /** The memberships, in the state before the event, of the asking server's users (one per user who has a member event). */
  memberships: readonly string[];
  /** The sender asked for their data to be erased (deactivation with `erase`). */
  senderErased: boolean;
}

/**
 * May a remote server be sent this event as it is? A server may see an event when any of its
 * users could (client-server API, history visibility "Server behaviour", read for a server):
 * `world_readable` and `shared` always — the server is in the room, and shared history is for
 * every member's server — `invited` when one of its users was invited or joined at the event,
 * `joined` when one was joined. Erased senders' events never go out whole.
 */
export function serverMaySee(facts: ServerVisibilityFacts): boolean {
  if (facts.senderErased) return false;
  if (facts.visibility === 'world_readable' || facts.visibility === 'shared') return true;
  for (const membership of facts.memberships) {
    if (membership === 'join') return true;
    if (membership === 'invite' && facts.visibility === 'invited') return true;
  }
  return false;
}

/**
 * Of `events`, what a remote server gets: those it may see as they are, the others redacted
 * (`redact`, for /backfill and /get_missing_events: the peer needs them to keep the DAG whole) or
 * left out (`redact` null, e.g. /event of a single event). Order is kept.
 */
export function filterEventsForServer<E>(events: readonly E[], factsOf: (event: E, index: number) => ServerVisibilityFacts, redact: ((event: E) => E) | null): E[] {
  const out: E[] = [];
  events.forEach((event, i) => {
    if (serverMaySee(factsOf(event, i))) out.push(event);
    else if (redact) out.push(redact(event));
  });
  return out;
}

/** Whether a user id (or member state key) belongs to `serverName` (the part after the localpart's colon; names may carry a port). */
export function isUserOfServer(userId: string, serverName: string): boolean {
  const colon = userId.indexOf(':');
  return colon > 0 && userId.slice(colon + 1) === serverName;
}

/**
 * The facts `serverMaySee` needs for `event`, read from the room's stored state before it:
 * its history visibility and the memberships of `serverName`'s users. `isErased` answers
 * whether a sender asked to be erased (the caller knows where that is kept).
 */
export async function serverVisibilityFacts(rooms: Pick<RoomReader, 'snapshot' | 'events'>, roomId: string, serverName: string, event: RoomEvent, isErased: (userId: string) => boolean | Promise<boolean>): Promise<ServerVisibilityFacts> {
  const sender = typeof event.event.sender === 'string' ? event.event.sender : '';
  const senderErased = sender !== '' && (await isErased(sender));
  if (event.outlier || !event.stateBefore) return { visibility: 'shared', memberships: [], senderErased };
  const state = await rooms.snapshot(roomId, event.stateBefore);
  const hvId = state.get(stateKeyOf('m.room.history_visibility', ''));
  const memberPrefix = stateKeyOf('m.room.member', '');
  const memberIds: string[] = [];
  for (const [key, id] of state) if (key.startsWith(memberPrefix) && isUserOfServer(key.slice(memberPrefix.length), serverName)) memberIds.push(id);
  const [hv] = hvId ? await rooms.events(roomId, [hvId]) : [];
  const members = memberIds.length ? await rooms.events(roomId, memberIds) : [];
  const memberships = members.map((m) => (isJsonObject(m.event.content as JsonValue) ? (m.event.content as JsonObject).membership : undefined)).filter((m): m is string => typeof m === 'string');
  return { visibility: effectiveHistoryVisibility(hv?.event.content as JsonValue | undefined), memberships, senderErased };
}
