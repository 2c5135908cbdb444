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
import { dropRemoteInvite, remoteInviteState } from '../sync/remote-invites';
import { askRoomFamily } from './ask';
import type { IngestReply, SuppliedState } from './model';

/** What the joining side needs of the federation layer (src/front.ts wires it). */
export interface RemoteJoinDeps {
  client: FederationClient;
  keyStore: ServerKeyStore;
}

/** At most this many candidate servers are asked for a template. */
const MAX_CANDIDATES = 10;
/** How long the resident may take to answer send_join (a 10,000-member room's state and auth chain). */
const SEND_JOIN_TIMEOUT_MS = 120_000;
/** A send_join answer may be big (the state of a large room). */
const SEND_JOIN_MAX_BYTES = 64 * 1024 * 1024;

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
  const stripped = await remoteInviteState(ctx, userId, roomId);
  const invite = stripped?.find((e) => e.type === 'm.room.member' && e.state_key === userId && isJsonObject(e.content) && e.content.membership === 'invite');
  return typeof invite?.sender === 'string' ? serverOf(invite.sender) : null;
}

/**
 * Join `userId` to the remote room `roomId` through one of `candidates`; `content` is the join's
 * content as local joins build it (membership, reason, profile). Answers the join's event id.
 */
export async function joinRemoteRoom(ctx: ApiContext, deps: RemoteJoinDeps, index: MembershipIndex, userId: string, roomId: string, candidates: readonly string[], content: JsonObject, allowWait?: (ms: number) => void): Promise<string> {
  const ours = ctx.config.serverName;
  if (!candidates.length) throw errors.notFound('No known room with this id here, and no server to ask for it');
  const ver = [...ROOM_VERSIONS.keys()].map((v) => `ver=${encodeURIComponent(v)}`).join('&');
  let refusal: MatrixError | null = null;
  const failures: string[] = [];
  for (const server of candidates) {
    // 1. make_join: a template on the room's current extremities, with its version.
    let template: JsonObject;
    let version: RoomVersion | undefined;
    try {
      const answer = await deps.client.get(server, `/_matrix/federation/v1/make_join/${encodeURIComponent(roomId)}/${encodeURIComponent(userId)}?${ver}`, { timeoutMs: 15_000 });
      const event = answer.event;
      const versionId = typeof answer.room_version === 'string' ? answer.room_version : '1';
      version = getRoomVersion(versionId);
      if (!isJsonObject(event) || !version) {
        failures.push(`${server}: ${!version ? `unsupported room version ${versionId}` : 'no event template'}`);
        continue;
      }
      template = event;
    } catch (e) {
      if (e instanceof FederationRemoteError && e.status >= 400 && e.status < 500 && e.status !== 404 && e.errcode) {
        refusal ??= new MatrixError(e.status === 401 ? 403 : e.status, e.errcode, e.remoteMessage ?? `${server} refused the join`);
      }
      if (e instanceof FederationError) {
        failures.push(`${server}: ${e.message}`);
        continue;
      }
      throw e;
    }
    const joinEvent = buildJoinEvent(template, version, roomId, userId, ours, content);
    if (!joinEvent) {
      failures.push(`${server}: the template is not a join of this user into this room`);
      continue;
    }
    const signed = hashAndSignEvent(joinEvent, version, ours, ctx.signingKey);
    const eventId = computeEventId(signed, version);

    // 2. send_join: the state before the join and its auth chain.
    let answer: JsonObject;
    // The request's deadline (the client API's, 60 s by default) must cover the send_join and the
    // ingest of its answer, which for a big room take longer than any one event's request.
    allowWait?.(SEND_JOIN_TIMEOUT_MS);
    const t0 = performance.now();
    try {
      answer = await deps.client.put(server, `/_matrix/federation/v2/send_join/${encodeURIComponent(roomId)}/${encodeURIComponent(eventId)}`, signed, { timeoutMs: SEND_JOIN_TIMEOUT_MS, maxResponseBytes: SEND_JOIN_MAX_BYTES });
    } catch (e) {
      if (e instanceof FederationRemoteError && e.status >= 400 && e.status < 500 && e.status !== 404 && e.errcode) {
        refusal ??= new MatrixError(e.status === 401 ? 403 : e.status, e.errcode, e.remoteMessage ?? `${server} refused the join`);
      }
      if (e instanceof FederationError) {
        failures.push(`${server}: ${e.message}`);
        continue;
      }
      throw e;
    }
    const t1 = performance.now();
    const checked = checkSendJoinAnswer(answer, version, signed, eventId);
    if (!checked.ok) {
      failures.push(`${server}: ${checked.error}`);
      continue;
    }

    // 3. The room actor checks and stores it all: state and auth chain as outliers, the join live.
    const keys = await keysForPdus(deps.keyStore, [checked.join, ...checked.supplied.events], version, Date.now() + 30_000);
    // The actor checks every event of the answer (10,000 members: ~10,000 signatures, an outlier
    // write each): the wait is sized to that work rather than to a single event's.
    const timeoutMs = ingestTimeoutMs(checked.supplied.events.length);
    allowWait?.(timeoutMs);
    const t2 = performance.now();
    const reply = await askRoomFamily<IngestReply>(ctx, 'room', roomId, { op: 'ingest', pdus: [checked.join], keys, state: checked.supplied }, { timeoutMs });
    ctx.log.info({ room_id: roomId, server, events: checked.supplied.events.length, send_join_ms: Math.round(t1 - t0), check_ms: Math.round(t2 - t1), ingest_ms: Math.round(performance.now() - t2) }, 'remote join: send_join answer taken');
    const result = reply.results.find((r) => r.event_id === eventId);
    if (!result || (result.status !== 'accepted' && result.status !== 'duplicate')) {
      const bad = reply.results.filter((r) => r.status !== 'accepted' && r.status !== 'duplicate' && r.status !== 'outlier').slice(0, 3);
      ctx.log.warn({ room_id: roomId, server, result, bad }, 'remote join: the room refused the send_join answer');
      failures.push(`${server}: the join was not accepted here (${result?.status ?? 'no result'}: ${result?.reason ?? ''})`);
      continue;
    }
    const stored = await ctx.rooms.event(roomId, eventId);
    await index.record(userId, roomId, stored?.pos ?? 0, 'join');
    return eventId;
  }
  if (refusal) throw refusal;
  ctx.log.info({ room_id: roomId, failures }, 'remote join: no server could join us');
  throw errors.notFound(`No server could join this room: ${failures.slice(0, 3).join('; ')}`);
}

/** The join event from a make_join template: our origin and time, the template's DAG fields. */
export function buildJoinEvent(template: JsonObject, version: RoomVersion, roomId: string, userId: string, ours: string, content: JsonObject): JsonObject | null {
  if (template.type !== 'm.room.member' || template.state_key !== userId || template.sender !== userId) return null;
  if (template.room_id !== roomId) return null;
  const given = isJsonObject(template.content) ? template.content : {};
  if (given.membership !== 'join') return null;
  const merged: JsonObject = { ...content, membership: 'join' };
  // A restricted join names the resident user who authorises it (the template's choice).
  if (typeof given.join_authorised_via_users_server === 'string') merged.join_authorised_via_users_server = given.join_authorised_via_users_server;
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
 * Reject an invite to a room this server does not have (server-server API, "Leaving Rooms
 * (Rejecting Invites)"): `make_leave` / `send_leave` v2 on the inviting server (then the room id's
 * server), the leave built and signed as the join is. The stored invite is dropped and the room
 * leaves the user's index. Answers whether an invite was there to reject.
 */
export async function rejectRemoteInvite(ctx: ApiContext, deps: RemoteJoinDeps, userId: string, roomId: string, content: JsonObject): Promise<boolean> {
  const inviter = await inviterServer(ctx, userId, roomId);
  if (!inviter) return false;
  const ours = ctx.config.serverName;
  const failures: string[] = [];
  let done = false;
  for (const server of candidateServers(ours, [[inviter, serverOf(roomId)]])) {
    try {
      const answer = await deps.client.get(server, `/_matrix/federation/v1/make_leave/${encodeURIComponent(roomId)}/${encodeURIComponent(userId)}`, { timeoutMs: 15_000 });
      const version = getRoomVersion(typeof answer.room_version === 'string' ? answer.room_version : '1');
      const t = answer.event;
      if (!version || !isJsonObject(t) || t.type !== 'm.room.member' || t.state_key !== userId || t.sender !== userId || t.room_id !== roomId) {
        failures.push(`${server}: not a usable leave template`);
        continue;
      }
      const event: JsonObject = {};
      for (const [k, v] of Object.entries(t)) if (k !== 'signatures' && k !== 'hashes' && k !== 'unsigned' && k !== 'event_id') event[k] = v as JsonValue;
      event.content = { ...content, membership: 'leave' };
      event.origin = ours;
      event.origin_server_ts = Date.now();
      if (version.eventIdFormat === 'v1') event.event_id = `$${randomBytes(12).toString('base64url')}:${ours}`;
      const signed = hashAndSignEvent(event, version, ours, ctx.signingKey);
      const eventId = computeEventId(signed, version);
      await deps.client.put(server, `/_matrix/federation/v2/send_leave/${encodeURIComponent(roomId)}/${encodeURIComponent(eventId)}`, signed, { timeoutMs: 30_000 });
      done = true;
      break;
    } catch (e) {
      if (!(e instanceof FederationError)) throw e;
      failures.push(`${server}: ${e.message}`);
    }
  }
  // Even when no server took the leave, the user does not want the invite: it is dropped here.
  if (!done) ctx.log.info({ room_id: roomId, failures }, 'rejecting a remote invite: no server took the leave');
  await dropRemoteInvite(ctx, userId, roomId);
  return true;
}
