/**
 * Our user joins a room this server does not have (server-server API, "Joining Rooms", the
 * joining side): a remote alias is resolved with `/query/directory` on its server; the candidate
 * servers (the client's `server_name`/`via`, the alias answer's `servers`, the inviter's server
 * for a pending remote invite, the room id's domain) are asked for a `make_join` template in
 * order; the join event is filled in (our origin and time, the user's profile as local joins carry
 * it), hashed and signed with our key, and sent with `send_join` v2. The answer's state and auth
 * chain go to the room actor's `ingest` as supplied state, with the join event live: the actor
 * checks every event (signatures against the key store's keys, hashes, auth rules; the create
 * event must be the one the room id names in v12) before the room exists here.
 *
 * Knocking on a room of another server (`knockRemoteRoom`) and leaving one where our user only
 * has an invite or a knock (`leaveRemoteRoom`) go through the same make_/send_ handshake; what
 * they leave behind is kept for /sync in src/sync/remote-invites.ts.
 *
 * Errors: no server answering a template is 404 `M_NOT_FOUND`; a remote's refusal (403, or a
 * room version we lack) passes through with its status and errcode.
 */
import { randomBytes } from 'node:crypto';
import { MatrixError, errors } from '../http/errors';
import { computeEventId, hashAndSignEvent } from '../protocol/event-hashing';
import { serverOf } from '../protocol/identifiers';
import { isJsonObject, type JsonObject, type JsonValue } from '../protocol/json';
import { ROOM_VERSIONS, getRoomVersion, type RoomVersion } from '../protocol/room-versions';
import type { MembershipIndex } from '../readers/membership-index';
import type { FederationClient } from '../federation/client';
import { FederationError, FederationRemoteError } from '../federation/errors';
import type { ServerKeyStore } from '../federation/keys/key-store';
import { keysForPdus } from '../federation/inbound/pdu-keys';
import type { ApiContext } from '../api/context';
import { dropRemoteMembership, remoteMembership, storeRemoteMembership, strippedEvent, strippedEvents } from '../sync/remote-invites';
import { askRoomFamily } from './ask';
import type { IngestReply, SuppliedState } from './model';
import { roomData } from '../store/keys';
import { roomShard } from '../store/shard-keys';

/** What the joining side needs of the federation layer (src/front.ts wires it). */
export interface RemoteJoinDeps {
  client: FederationClient;
  keyStore: ServerKeyStore;
  /**
   * Faster joins (MSC3706): when set, send_join asks the resident to omit the member events, and
   * a join answered that way is entered with partial state, its full state fetched in the
   * background by this (src/rooms/partial-state.ts).
   */
  partialStates?: { start(roomId: string): void };
}

/** At most this many candidate servers are asked for a template. */
const MAX_CANDIDATES = 10;
/** A send_join answer may be big (the state of a large room). */
const SEND_JOIN_MAX_BYTES = 64 * 1024 * 1024;
/** How long the resident may take to answer send_join (a 10,000-member room's state and auth chain). */
const SEND_JOIN_TIMEOUT_MS = 120_000;

/**
 * How long to wait for the room actor to take a send_join answer of `events` events: the usual
 * 10 s, plus 5 ms per event (a loaded worker checks a few thousand a second). A timeout is not a
 * failure of the join — the message stays in the actor's inbox and is applied — but the client
 * would be told 504 for a join that then succeeds.
 */
export function ingestTimeoutMs(events: number): number {
  return 10_000 + 5 * events;
}

/** Resolve an alias on another server: the room id and the servers its server says are in it. */
export async function queryRemoteAlias(deps: RemoteJoinDeps, alias: string, server: string): Promise<{ roomId: string; servers: string[] }> {
  let answer: JsonObject;
  try {
    answer = await deps.client.get(server, `/_matrix/federation/v1/query/directory?room_alias=${encodeURIComponent(alias)}`, { timeoutMs: 15_000 });
  } catch (e) {
    if (e instanceof FederationRemoteError && e.status === 404) throw errors.notFound(`Room alias ${alias} not found on ${server}`);
    if (e instanceof FederationError) throw errors.notFound(`Could not resolve ${alias} on ${server}: ${e.message}`);
    throw e;
  }
  const roomId = answer.room_id;
  if (typeof roomId !== 'string' || !roomId.startsWith('!')) throw new MatrixError(502, 'M_UNKNOWN', `${server} answered the alias query without a room id`);
  const servers = Array.isArray(answer.servers) ? answer.servers.filter((s): s is string => typeof s === 'string') : [];
  return { roomId, servers };
}

/** The servers to ask, in order, without duplicates or ourselves. */
export function candidateServers(ownServer: string, lists: readonly (readonly (string | null | undefined)[])[]): string[] {
  const out: string[] = [];
  for (const list of lists) for (const s of list) if (s && s !== ownServer && !out.includes(s)) out.push(s);
  return out.slice(0, MAX_CANDIDATES);
}

/** The server of whoever invited `userId` to `roomId` (a pending remote invite), if any. */
export async function inviterServer(ctx: ApiContext, userId: string, roomId: string): Promise<string | null> {
  const kept = await remoteMembership(ctx, userId, roomId);
  if (kept?.membership !== 'invite') return null;
  const invite = kept.state.find((e) => e.type === 'm.room.member' && e.state_key === userId && isJsonObject(e.content) && e.content.membership === 'invite');
  return typeof invite?.sender === 'string' ? serverOf(invite.sender) : (kept.servers[0] ?? null);
}

/**
 * The send_ endpoints used: v2 of send_join (the state before the join and its auth chain, not
 * wrapped in `[200, …]`) and send_leave; send_knock has only v1 (answering `knock_room_state`).
 */
const SEND_VERSION = { join: 'v2', knock: 'v1', leave: 'v2' } as const;

/** One make_/send_ exchange that a server took: what we sent and what it answered. */
interface Handshake {
  server: string;
  version: RoomVersion;
  signed: JsonObject;
  eventId: string;
  answer: JsonObject;
}

interface HandshakeSpec<T> {
  membership: 'join' | 'knock' | 'leave';
  userId: string;
  roomId: string;
  candidates: readonly string[];
  /** The event's content as our user wants it (membership, reason, profile). */
  content: JsonObject;
  sendOptions: { timeoutMs: number; maxResponseBytes?: number };
  /** Query string for the send_ request (`?omit_members=true`), if any. */
  sendQuery?: string;
  /** What to make of a server's send_ answer; an error string moves on to the next server. */
  accept: (h: Handshake) => Promise<{ ok: true; value: T } | { ok: false; error: string }>;
}

/**
 * The handshake every membership change on a room of another server goes through (server-server
 * API, "Joining Rooms", "Knocking on rooms", "Leaving Rooms"): the candidate servers are asked in
 * order for a `make_<membership>` template (with the room versions we support, for joins and
 * knocks); the event is built from it (our origin and time, the user's content), hashed and
 * signed with our key, and sent with `send_<membership>`; `accept` judges the answer. A remote's
 * refusal (a 4xx with an errcode, 404 aside) is what the client gets when no server takes the
 * event; otherwise 404 `M_NOT_FOUND` with what went wrong.
 */
async function remoteMembershipHandshake<T>(ctx: ApiContext, deps: RemoteJoinDeps, spec: HandshakeSpec<T>): Promise<T> {
  const { membership, userId, roomId } = spec;
  const ours = ctx.config.serverName;
  if (!spec.candidates.length) throw errors.notFound('No known room with this id here, and no server to ask for it');
  const ver = membership === 'leave' ? '' : `?${[...ROOM_VERSIONS.keys()].map((v) => `ver=${encodeURIComponent(v)}`).join('&')}`;
  let refusal: MatrixError | null = null;
  const failures: string[] = [];
  /** A remote's answer to one of our requests: a refusal to pass on, or a failure to note. */
  const noteFailure = (server: string, e: unknown) => {
    if (e instanceof FederationRemoteError && e.status >= 400 && e.status < 500 && e.status !== 404 && e.errcode) {
      refusal ??= new MatrixError(e.status === 401 ? 403 : e.status, e.errcode, e.remoteMessage ?? `${server} refused the ${membership}`);
    }
    if (!(e instanceof FederationError)) throw e;
    failures.push(`${server}: ${e.message}`);
  };
  for (const server of spec.candidates) {
    // 1. make_<membership>: a template on the room's current extremities, with its version.
    let template: JsonObject;
    let version: RoomVersion | undefined;
    try {
      const answer = await deps.client.get(server, `/_matrix/federation/v1/make_${membership}/${encodeURIComponent(roomId)}/${encodeURIComponent(userId)}${ver}`, { timeoutMs: 15_000 });
      const event = answer.event;
      const versionId = typeof answer.room_version === 'string' ? answer.room_version : '1';
      version = getRoomVersion(versionId);
      if (!isJsonObject(event) || !version) {
        failures.push(`${server}: ${!version ? `unsupported room version ${versionId}` : 'no event template'}`);
        continue;
      }
      template = event;
    } catch (e) {
      noteFailure(server, e);
      continue;
    }
    const built = buildMembershipEvent(template, version, roomId, userId, ours, spec.content, membership);
    if (!built) {
      failures.push(`${server}: the template is not a ${membership} of this user into this room`);
      continue;
    }
    const signed = hashAndSignEvent(built, version, ours, ctx.signingKey);
    const eventId = computeEventId(signed, version);

    // 2. send_<membership>.
    let answer: JsonObject;
    try {
      answer = await deps.client.put(server, `/_matrix/federation/${SEND_VERSION[membership]}/send_${membership}/${encodeURIComponent(roomId)}/${encodeURIComponent(eventId)}${spec.sendQuery ?? ''}`, signed, spec.sendOptions);
    } catch (e) {
      noteFailure(server, e);
      continue;
    }
    const accepted = await spec.accept({ server, version, signed, eventId, answer });
    if (accepted.ok) return accepted.value;
    failures.push(`${server}: ${accepted.error}`);
  }
  if (refusal) throw refusal;
  ctx.log.info({ room_id: roomId, membership, failures }, 'remote membership: no server took the event');
  throw errors.notFound(`No server could ${membership === 'leave' ? 'take the leave for' : membership} this room: ${failures.slice(0, 3).join('; ')}`);
}

/** The joined members of a room from other servers, recorded in the membership index at `pos`. */
async function indexRemoteMembers(ctx: ApiContext, index: MembershipIndex, roomId: string, pos: number): Promise<void> {
  const members = await ctx.redis.hgetall(roomShard(ctx, roomId).data(roomData.members(roomId)));
  const remote = Object.entries(members).filter(([u, m]) => m === 'join' && serverOf(u) !== ctx.config.serverName);
  await index.recordMany(roomId, remote, pos);
}

/**
 * Join `userId` to the remote room `roomId` through one of `candidates`; `content` is the join's
 * content as local joins build it (membership, reason, profile). Answers the join's event id.
 */
export async function joinRemoteRoom(ctx: ApiContext, deps: RemoteJoinDeps, index: MembershipIndex, userId: string, roomId: string, candidates: readonly string[], content: JsonObject, allowWait?: (ms: number) => void): Promise<string> {
  // The request's deadline (the client API's, 60 s by default) must cover the send_join and the
  // ingest of its answer, which for a big room take longer than any one event's request.
  allowWait?.(SEND_JOIN_TIMEOUT_MS);
  return remoteMembershipHandshake(ctx, deps, {
    membership: 'join',
    userId,
    roomId,
    candidates,
    content,
    sendOptions: { timeoutMs: SEND_JOIN_TIMEOUT_MS, maxResponseBytes: SEND_JOIN_MAX_BYTES },
    ...(deps.partialStates ? { sendQuery: '?omit_members=true' } : {}),
    accept: async ({ server, version, signed, eventId, answer }) => {
      const checked = checkSendJoinAnswer(answer, version, signed, eventId);
      if (!checked.ok) return checked;
      // MSC3706: the resident left the member events out (only if we asked): the room is entered
      // with partial state, and the servers it names get our events until the members are known.
      const partial = deps.partialStates && answer.members_omitted === true ? { servers: [server, ...partialServers(answer.servers_in_room).filter((s) => s !== server)] } : undefined;
      // 3. The room actor checks and stores it all: state and auth chain as outliers, the join live.
      const t1 = performance.now();
      const keys = await keysForPdus(deps.keyStore, [checked.join, ...checked.supplied.events], version, Date.now() + 30_000);
      // The actor checks every event of the answer (10,000 members: ~10,000 signatures, an outlier
      // write each): the wait is sized to that work rather than to a single event's.
      const timeoutMs = ingestTimeoutMs(checked.supplied.events.length);
      allowWait?.(timeoutMs);
      const t2 = performance.now();
      const reply = await askRoomFamily<IngestReply>(ctx, 'room', roomId, { op: 'ingest', pdus: [checked.join], keys, state: checked.supplied, ownJoin: eventId, ...(partial ? { partialState: partial } : {}) }, { timeoutMs });
      ctx.log.info({ room_id: roomId, server, events: checked.supplied.events.length, partial_state: !!partial, keys_ms: Math.round(t2 - t1), ingest_ms: Math.round(performance.now() - t2) }, 'remote join: send_join answer taken');
      const result = reply.results.find((r) => r.event_id === eventId);
      if (!result || (result.status !== 'accepted' && result.status !== 'duplicate')) {
        const bad = reply.results.filter((r) => r.status !== 'accepted' && r.status !== 'duplicate' && r.status !== 'outlier').slice(0, 3);
        ctx.log.warn({ room_id: roomId, server, result, bad }, 'remote join: the room refused the send_join answer');
        return { ok: false, error: `the join was not accepted here (${result?.status ?? 'no result'}: ${result?.reason ?? ''})` };
      }
      const stored = await ctx.rooms.event(roomId, eventId);
      await index.record(userId, roomId, stored?.pos ?? 0, 'join');
      // The other servers' members came in the join's state, not as events of their own: index
      // them as of the join's position (any later change of theirs has a higher one), or this
      // server would not know they share a room with our user (their device list updates would
      // be dropped as untracked, our user's device_lists.changed would never name them).
      if (stored) await indexRemoteMembers(ctx, index, roomId, stored.pos);
      // The room is here now: an invite or knock kept for it has served its purpose.
      await dropRemoteMembership(ctx, userId, roomId);
      if (partial) deps.partialStates!.start(roomId);
      return { ok: true, value: eventId };
    },
  });
}

/**
 * `userId` knocks on the remote room `roomId` through one of `candidates` (server-server API,
 * "Knocking on rooms"): make_knock with the versions we support, send_knock v1. The answer's
 * `knock_room_state` (stripped state), with the knock itself, is kept for the user
 * (src/sync/remote-invites.ts), so /sync shows the room under `rooms.knock`, and the server that
 * took the knock is where a retraction goes. Answers the knock's event id.
 */
export async function knockRemoteRoom(ctx: ApiContext, deps: RemoteJoinDeps, userId: string, roomId: string, candidates: readonly string[], content: JsonObject): Promise<string> {
  return remoteMembershipHandshake(ctx, deps, {
    membership: 'knock',
    userId,
    roomId,
    candidates,
    content,
    sendOptions: { timeoutMs: 30_000 },
    accept: async ({ server, signed, eventId, answer }) => {
      const state = strippedEvents(answer.knock_room_state).filter((e) => e.type !== 'm.room.member' || e.state_key !== userId);
      state.push(strippedEvent(signed)!);
      await storeRemoteMembership(ctx, userId, roomId, { membership: 'knock', state, servers: [server, ...candidates.filter((c) => c !== server)] });
      return { ok: true, value: eventId };
    },
  });
}

/** The event built from a make_ template: our origin and time, the template's DAG fields. */
export function buildMembershipEvent(template: JsonObject, version: RoomVersion, roomId: string, userId: string, ours: string, content: JsonObject, membership: 'join' | 'knock' | 'leave'): JsonObject | null {
  if (template.type !== 'm.room.member' || template.state_key !== userId || template.sender !== userId) return null;
  if (template.room_id !== roomId) return null;
  const given = isJsonObject(template.content) ? template.content : {};
  if (given.membership !== membership) return null;
  const merged: JsonObject = { ...content, membership };
  // A restricted join names the resident user who authorises it (the template's choice).
  if (membership === 'join' && typeof given.join_authorised_via_users_server === 'string') merged.join_authorised_via_users_server = given.join_authorised_via_users_server;
  const event: JsonObject = {};
  for (const [k, v] of Object.entries(template)) {
    if (k === 'signatures' || k === 'hashes' || k === 'unsigned' || k === 'event_id') continue;
    event[k] = v as JsonValue;
  }
  event.content = merged;
  event.origin = ours;
  event.origin_server_ts = Date.now();
  if (version.eventIdFormat === 'v1') event.event_id = `$${randomBytes(12).toString('base64url')}:${ours}`;
  return event;
}

/** The `servers_in_room` of a partial-state send_join answer (server names; anything else left out). */
function partialServers(raw: unknown): string[] {
  return Array.isArray(raw) ? raw.filter((s): s is string => typeof s === 'string' && s.length > 0 && s.length <= 255) : [];
}

type SendJoinCheck = { ok: true; join: JsonObject; supplied: SuppliedState } | { ok: false; error: string };

/**
 * The shape checks of a send_join answer (the events' own checks are the room actor's): arrays of
 * events, a create event of the version we asked for, the join event (maybe co-signed by the
 * resident for a restricted join) still the one we built.
 */
export function checkSendJoinAnswer(answer: JsonObject, version: RoomVersion, ours: JsonObject, eventId: string): SendJoinCheck {
  const state = answer.state;
  const chain = answer.auth_chain;
  if (!Array.isArray(state) || !Array.isArray(chain)) return { ok: false, error: 'the send_join answer has no state or auth_chain' };
  if (!state.every(isJsonObject) || !chain.every(isJsonObject)) return { ok: false, error: 'the send_join answer has events that are not objects' };
  const stateEvents = state as JsonObject[];
  const create = stateEvents.find((e) => e.type === 'm.room.create' && e.state_key === '');
  if (!create) return { ok: false, error: 'the state has no create event' };
  const createVersion = isJsonObject(create.content) && typeof create.content.room_version === 'string' ? create.content.room_version : '1';
  if (createVersion !== version.id) return { ok: false, error: `the create event is of room version ${createVersion}, the template of ${version.id}` };
  let join = ours;
  if (isJsonObject(answer.event)) {
    // A co-signed join (restricted rooms): the same event, with the resident's signature added.
    let id: string;
    try {
      id = computeEventId(answer.event, version);
    } catch {
      return { ok: false, error: 'the returned join event is malformed' };
    }
    if (id !== eventId) return { ok: false, error: 'the returned join event is not the one sent' };
    join = answer.event;
  }
  const ids: string[] = [];
  const events = new Map<string, JsonObject>();
  const idOf = new Map<JsonObject, string>();
  for (const e of [...chain, ...stateEvents] as JsonObject[]) {
    let id: string;
    try {
      id = computeEventId(e, version);
    } catch {
      return { ok: false, error: 'an event of the answer is malformed' };
    }
    events.set(id, e);
    idOf.set(e, id);
  }
  for (const e of stateEvents) {
    const id = idOf.get(e)!;
    if (id === eventId) continue;
    ids.push(id);
  }
  events.delete(eventId);
  return { ok: true, join, supplied: { events: [...events.values()], before: { [eventId]: ids } } };
}

/**
 * Leave a room this server does not have, where our user has an out-of-band membership: reject an
 * invite or retract a knock (server-server API, "Leaving Rooms (Rejecting Invites)"):
 * `make_leave` / `send_leave` v2 on the servers known to be in the room (the inviter's, the one
 * that took the knock), then the room id's server. The leave is kept for the user in place of the
 * invite or knock, so /sync reports the room under `rooms.leave` with it (a leave of our own
 * making when no server took it: the user does not want the invite either way). Answers whether
 * there was an invite or knock to leave.
 */
export async function leaveRemoteRoom(ctx: ApiContext, deps: RemoteJoinDeps, userId: string, roomId: string, content: JsonObject): Promise<boolean> {
  const kept = await remoteMembership(ctx, userId, roomId);
  if (!kept || kept.membership === 'leave') return false;
  const fromState = kept.state.filter((e) => e.type === 'm.room.member' && e.state_key === userId && typeof e.sender === 'string').map((e) => serverOf(e.sender as string));
  const candidates = candidateServers(ctx.config.serverName, [kept.servers, fromState, [serverOf(roomId)]]);
  let leave: JsonObject;
  try {
    leave = await remoteMembershipHandshake(ctx, deps, {
      membership: 'leave',
      userId,
      roomId,
      candidates,
      content,
      sendOptions: { timeoutMs: 30_000 },
      accept: async ({ signed, eventId }) => ({ ok: true, value: clientLeaveEvent(signed, eventId) }),
    });
  } catch (e) {
    if (!(e instanceof MatrixError)) throw e;
    ctx.log.info({ room_id: roomId, error: e.message }, `leaving a remote ${kept.membership}: no server took the leave`);
    leave = clientLeaveEvent({ type: 'm.room.member', state_key: userId, sender: userId, content: { ...content, membership: 'leave' }, origin_server_ts: Date.now() }, `$${randomBytes(18).toString('base64url')}`);
  }
  await storeRemoteMembership(ctx, userId, roomId, { membership: 'leave', state: kept.state, servers: kept.servers, event: leave });
  return true;
}

/**
 * A user being deactivated rejects every invite and retracts every knock they hold on rooms this
 * server does not have (Synapse does this before answering the deactivation): the inviting
 * server would otherwise keep them invited for good, since the deactivation reader can only part
 * them from rooms held here. Best effort per room — a server that does not answer gets a leave of
 * our own making (see leaveRemoteRoom) — four rooms at a time. Answers how many were left.
 */
export async function leaveRemoteRoomsOf(ctx: ApiContext, deps: RemoteJoinDeps, index: MembershipIndex, userId: string): Promise<number> {
  // Out-of-band memberships are indexed at position 0 (no event of the room here).
  const pending = (await index.rooms(userId)).filter((m) => m.pos === 0 && (m.membership === 'invite' || m.membership === 'knock'));
  let left = 0;
  const queue = [...pending];
  const worker = async () => {
    for (let m = queue.shift(); m; m = queue.shift()) {
      try {
        if (await leaveRemoteRoom(ctx, deps, userId, m.roomId, { membership: 'leave' })) left++;
      } catch (e) {
        ctx.log.warn({ room_id: m.roomId, user_id: userId, err: e }, 'deactivation: could not leave a remote invite or knock');
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(4, queue.length) }, worker));
  return left;
}

/** A leave event as /sync's timeline shows it. */
function clientLeaveEvent(e: JsonObject, eventId: string): JsonObject {
  return { type: 'm.room.member', state_key: e.state_key ?? '', sender: e.sender ?? '', content: e.content ?? {}, origin_server_ts: e.origin_server_ts ?? Date.now(), event_id: eventId, unsigned: {} };
}
