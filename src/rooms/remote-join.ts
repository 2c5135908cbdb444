/**
 * The resident side of membership over federation (server-server API, "Joining Rooms", "Leaving
 * Rooms", "Knocking on rooms", "Inviting to a room"): a remote user joins, knocks on or leaves a
 * room this server has, or one of our users invites a remote user.
 *
 * - `membershipTemplate`: what `make_join` / `make_knock` / `make_leave` answer, and the invite
 *   a local user sends a remote user — an unsigned event (no hashes,
 *   no signatures, no event id) on the room's current forward extremities, with the auth events
 *   chosen from the current state, checked against the current state with the pure auth rules
 *   (as the room actor checks a local event it builds: actors/room.ts `buildEvent`).
 * - `checkSentMembership`: what `send_join` / `send_knock` / `send_leave` accept — an event for the path's room
 *   and event id, of the membership asked, for a user of the origin (its signatures are checked by
 *   the room actor's ingest, with the other receipt checks).
 * - `stateAndAuthChainBefore`: the room's state before an event, with its auth chain, as PDUs (ours signed).
 * - `strippedRoomState`: the few state events that let a user recognise a room they are not in
 *   (`knock_room_state` of send_knock, `invite_room_state` of an invite).
 */
import { authEventSelection, checkEventAuth, type AuthResult } from '../protocol/auth-rules';
import { computeEventId, serverNameOf } from '../protocol/event-hashing';
import { isJsonObject, type JsonObject, type JsonValue } from '../protocol/json';
import { lookupFromStateMap, stateKeyOf, toPdu, type Pdu } from '../protocol/pdu';
import type { RoomVersion } from '../protocol/room-versions';
import { partialJoinStateIds } from '../protocol/partial-state';
import type { RoomReader } from '../store/room-reader';
import type { OwnEventSigner } from './own-signatures';

/** How many forward extremities a template references at most (as the room actor: 10). */
const MAX_PREV_EVENTS = 10;

export interface MembershipTemplate {
  template: JsonObject;
  /** The auth rules' verdict on the template against the room's current state. */
  auth: AuthResult;
}

/**
 * Build an unsigned `m.room.member` event for `userId` on the room's current extremities and
 * state, sent by `sender` (the user themselves but for an invite).
 */
export async function membershipTemplate(rooms: RoomReader, roomId: string, version: RoomVersion, userId: string, content: JsonObject, now = Date.now(), sender = userId): Promise<MembershipTemplate | null> {
  const meta = await rooms.meta(roomId);
  if (!meta?.version) return null;
  const state = await rooms.currentStateIds(roomId);
  const selection = authEventSelection({ type: 'm.room.member', stateKey: userId, sender, content }, version);
  const authIds = selection.map(([type, key]) => state.get(stateKeyOf(type, key))).filter((id): id is string => !!id);
  // Every event the auth rules may read for a membership event is one of the selection's.
  const loaded = new Map<string, Pdu>();
  for (const e of await rooms.events(roomId, authIds)) loaded.set(e.eventId, toPdu(e.event, version, e.eventId));
  if (version.roomIdFromCreateEvent && meta.createId && !loaded.has(meta.createId)) {
    const [create] = await rooms.events(roomId, [meta.createId]);
    if (create) loaded.set(create.eventId, toPdu(create.event, version, create.eventId));
  }
  const prev = meta.extremities.slice(-MAX_PREV_EVENTS);
  const template: JsonObject = {
    room_id: roomId,
    sender,
    state_key: userId,
    type: 'm.room.member',
    content,
    origin_server_ts: now,
    depth: meta.depth + 1,
    prev_events: version.eventRefsWithHashes ? prev.map((id) => [id, {}]) : prev,
    auth_events: version.eventRefsWithHashes ? authIds.map((id) => [id, {}]) : authIds,
  };
  const pdu = toPdu(template, version, '$template');
  const lookup = lookupFromStateMap(state, (id) => loaded.get(id));
  const withCreate = version.roomIdFromCreateEvent
    ? { get: (type: string, key: string) => lookup.get(type, key) ?? (type === 'm.room.create' && key === '' ? loaded.get(meta.createId) : undefined) }
    : lookup;
  return { template, auth: checkEventAuth(pdu, withCreate, version) };
}

export type SentMembershipCheck = { ok: true; eventId: string; userId: string } | { ok: false; error: string };

/** The checks `send_join`/`send_knock`/`send_leave` make before handing the event to the room. */
export function checkSentMembership(raw: unknown, version: RoomVersion, roomId: string, pathEventId: string, origin: string, membership: 'join' | 'knock' | 'leave'): SentMembershipCheck {
  if (!isJsonObject(raw)) return { ok: false, error: 'The body must be the event' };
  if (raw.type !== 'm.room.member') return { ok: false, error: 'Not an m.room.member event' };
  if (raw.room_id !== roomId) return { ok: false, error: 'The event is for another room' };
  const sender = raw.sender;
  if (typeof sender !== 'string' || raw.state_key !== sender) return { ok: false, error: 'The state_key must be the sender' };
  if (serverNameOf(sender) !== origin) return { ok: false, error: 'The sender is not a user of the requesting server' };
  const content = raw.content;
  if (!isJsonObject(content) || content.membership !== membership) return { ok: false, error: `The membership must be "${membership}"` };
  let eventId: string;
  try {
    eventId = computeEventId(raw, version);
  } catch (e) {
    return { ok: false, error: `Not a valid event: ${(e as Error).message}` };
  }
  if (eventId !== pathEventId) return { ok: false, error: 'The event id does not match the path' };
  return { ok: true, eventId, userId: sender };
}

/**
 * The state before `eventId` and its auth chain, as federation PDUs (rejected events left out).
 * `omitMembersOf`: the joining user of a partial-state send_join (MSC3706): the state keeps what
 * `partialJoinStateIds` keeps, and the auth chain — of the kept state and of the join's own auth
 * events (a restricted join names an authorising member whose event is otherwise left out) —
 * leaves out the events the state already carries.
 */
export async function stateAndAuthChainBefore(rooms: RoomReader, signer: OwnEventSigner, version: RoomVersion, roomId: string, eventId: string, omitMembersOf?: string): Promise<{ state: JsonObject[]; authChain: JsonObject[] } | null> {
  const event = await rooms.event(roomId, eventId);
  if (!event || event.outlier || event.rejected) return null;
  const before = await rooms.snapshot(roomId, event.stateBefore);
  const stateIds = omitMembersOf === undefined ? [...before.values()] : partialJoinStateIds(before, omitMembersOf, await rooms.members(roomId));
  const state = (await rooms.events(roomId, stateIds)).filter((e) => !e.rejected);
  const kept = new Set(stateIds);
  // The join's own auth events are in the state before it (all but an omitted authoriser's); the chain covers both.
  const chain = (await rooms.authChain(roomId, [...stateIds, eventId])).filter((e) => !e.rejected && e.eventId !== eventId && !(omitMembersOf !== undefined && kept.has(e.eventId)));
  return { state: signer.pdus(state, version), authChain: signer.pdus(chain, version) };
}

/**
 * State types of stripped state (client-server API, "Stripped state"): what /sync shows of a room
 * the user is invited to or knocked on, and what goes to another server in `invite_room_state` /
 * `knock_room_state`.
 */
export const STRIPPED_STATE_TYPES = ['m.room.create', 'm.room.join_rules', 'm.room.name', 'm.room.avatar', 'm.room.canonical_alias', 'm.room.encryption', 'm.room.topic'];

/** The room's stripped state (current state, `STRIPPED_STATE_TYPES`; rejected events left out). */
export async function strippedRoomState(rooms: RoomReader, roomId: string): Promise<JsonObject[]> {
  const ids = await rooms.currentStateIds(roomId);
  const wanted = STRIPPED_STATE_TYPES.map((t) => ids.get(stateKeyOf(t, ''))).filter((id): id is string => !!id);
  return (await rooms.events(roomId, wanted))
    .filter((e) => !e.rejected)
    .map((e) => ({ type: e.event.type ?? '', state_key: e.event.state_key ?? '', sender: e.event.sender ?? '', content: isJsonObject(e.event.content as JsonValue) ? (e.event.content as JsonObject) : {} }));
}

/** The servers with a joined user in the room (current state), ours included. */
export async function serversInRoom(rooms: RoomReader, roomId: string): Promise<string[]> {
  const servers = new Set<string>();
  for (const userId of (await rooms.members(roomId, 'join')).keys()) {
    const s = serverNameOf(userId);
    if (s) servers.add(s);
  }
  return [...servers].sort();
}
