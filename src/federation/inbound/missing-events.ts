/**
 * Filling the gap before a PDU whose prev_events the room does not have (server-server API,
 * "Checks performed on receipt of a PDU" and "Retrieving events"), in the order Synapse tries:
 *
 *   0. auth events the PDU cites that we lack: fetched from the origin with `/event` (and the ones
 *      they cite), taken as outliers with the PDU;
 *   a. `POST /get_missing_events/{roomId}` to the origin — the events between our forward
 *      extremities (`earliest_events`) and the PDU (`latest_events`), bounded by `limit` and
 *      `min_depth` — and ingest them with the PDU (the room actor orders them by their edges);
 *   b. if a gap remains: the state before the PDU from the origin (`/state_ids` at its prev event,
 *      plus the prev event itself from `/event`; at the PDU itself when it has several prev events),
 *      the state events and auth chain we lack fetched one by one with `/event`, handed to ingest
 *      as `SuppliedState` (taken as outliers; the PDU is checked against that state).
 *
 * Every step is bounded (events asked for, events fetched, time left before the transaction's
 * deadline); what cannot be filled stays `missing` and the transaction answers an error for it.
 */
import type { Logger } from 'pino';
import type { ApiContext } from '../../api/context';
import { computeEventId } from '../../protocol/event-hashing';
import { isJsonObject, type JsonObject, type JsonValue } from '../../protocol/json';
import { stateKeyOf } from '../../protocol/pdu';
import { askRoomFamily } from '../../rooms/ask';
import type { IngestReply, SuppliedState } from '../../rooms/model';
import type { FederationClient } from '../client';
import type { ServerKeyStore } from '../keys/key-store';
import { keysForPdus } from './pdu-keys';
import type { RoomForServer } from './room-access';

/** Events asked of `/get_missing_events` per gap (Synapse asks for 10). */
export const MISSING_EVENTS_LIMIT = 10;
/** How far below our shallowest forward extremity `/get_missing_events` may reach. */
export const MISSING_EVENTS_DEPTH_WINDOW = 20;
/** State and auth chain events fetched one by one (`/event`) for one gap. */
export const MAX_EVENTS_FETCHED = 200;
/** PDUs per room and transaction whose state is fetched (each costs a /state_ids and some /event). */
export const MAX_STATE_FILLS = 2;
const FETCH_CONCURRENCY = 8;
const MAX_ANSWER_BYTES = 8 * 1024 * 1024;

export interface GapDeps {
  api: ApiContext;
  keyStore: ServerKeyStore;
  client: FederationClient;
  log: Logger;
}

export type IngestResult = IngestReply['results'][number];

/**
 * Try to fill the gaps before `pdus` (PDUs of one room that ingest answered `missing` for) from
 * `origin`, and ingest them again. Returns the latest result per event id of those PDUs (absent:
 * nothing could be tried).
 */
export async function fillGapsAndIngest(deps: GapDeps, room: RoomForServer, origin: string, pdus: JsonObject[], deadline: number): Promise<Map<string, IngestResult>> {
  const results = new Map<string, IngestResult>();
  const idOf = (raw: JsonObject) => safeEventId(raw, room);
  const stillMissing = () => pdus.filter((p) => {
    const r = results.get(idOf(p) ?? '');
    return !r || r.status === 'missing';
  });

  // 0. Auth events we lack (a PDU may cite events outside its prev_events' history, e.g. a
  //    membership update the origin did not send us): fetched from the origin with /event, with
  //    the auth events they cite in turn, and taken as outliers before the PDUs are checked again
  //    (spec: "Checks performed on receipt of a PDU", step 4, "fetch missing auth events").
  if (Date.now() < deadline - 1000) {
    try {
      const auth = await missingAuthEvents(deps, room, origin, pdus, deadline);
      if (auth.length) {
        const reply = await ingest(deps, room, pdus, { events: auth, before: {} }, deadline);
        for (const r of reply.results) if (r.event_id) results.set(r.event_id, r);
        if (!stillMissing().length) return results;
      }
    } catch (e) {
      deps.log.info({ room_id: room.roomId, destination: origin, err: (e as Error).message }, 'fetching missing auth events failed');
    }
  }

  // a. /get_missing_events from the origin, ingested together with the PDUs.
  if (Date.now() < deadline - 1000) {
    try {
      const found = await getMissingEvents(deps, room, origin, pdus.map(idOf).filter((x): x is string => !!x), pdus, deadline);
      if (found.length) {
        const reply = await ingest(deps, room, [...found, ...pdus], undefined, deadline);
        for (const r of reply.results) if (r.event_id) results.set(r.event_id, r);
      }
    } catch (e) {
      deps.log.info({ room_id: room.roomId, destination: origin, err: (e as Error).message }, 'get_missing_events failed');
    }
  }

  // b. The state before what is still missing, from the origin.
  let fills = 0;
  for (const pdu of stillMissing()) {
    if (fills >= MAX_STATE_FILLS || Date.now() > deadline - 1500) break;
    const id = idOf(pdu);
    if (!id) continue;
    fills++;
    try {
      const supplied = await suppliedStateFor(deps, room, origin, pdu, id, deadline);
      if (!supplied) continue;
      const reply = await ingest(deps, room, [pdu], supplied, deadline);
      for (const r of reply.results) if (r.event_id) results.set(r.event_id, r);
    } catch (e) {
      deps.log.info({ room_id: room.roomId, event_id: id, destination: origin, err: (e as Error).message }, 'fetching the state before an event failed');
    }
  }
  // PDUs after the filled ones in the same batch may now go through (their prevs are known).
  const rest = stillMissing();
  if (rest.length && rest.length < pdus.length && Date.now() < deadline - 500) {
    const reply = await ingest(deps, room, rest, undefined, deadline);
    for (const r of reply.results) if (r.event_id) results.set(r.event_id, r);
  }
  return results;
}

/**
 * The auth events `pdus` cite that the room does not have (nor the batch), and the ones those
 * cite, fetched from `origin` (bounded by MAX_EVENTS_FETCHED); an answer whose id is not the one
 * asked for is dropped. The room actor checks them like any outlier.
 */
async function missingAuthEvents(deps: GapDeps, room: RoomForServer, origin: string, pdus: JsonObject[], deadline: number): Promise<JsonObject[]> {
  const fetched = new Map<string, JsonObject>();
  const inBatch = new Set(pdus.map((p) => safeEventId(p, room)).filter((x): x is string => !!x));
  const tried = new Set<string>();
  let frontier = pdus.flatMap((p) => refIds(p.auth_events));
  while (frontier.length && fetched.size < MAX_EVENTS_FETCHED && Date.now() < deadline - 1000) {
    const candidates = [...new Set(frontier)].filter((id) => !tried.has(id) && !inBatch.has(id));
    candidates.forEach((id) => tried.add(id));
    if (!candidates.length) break;
    const have = new Set((await deps.api.rooms.events(room.roomId, candidates)).map((e) => e.eventId));
    const lacking = candidates.filter((id) => !have.has(id)).slice(0, MAX_EVENTS_FETCHED - fetched.size);
    if (!lacking.length) break;
    const got = await mapBounded(lacking, FETCH_CONCURRENCY, (id) => fetchEvent(deps, origin, id, deadline));
    frontier = [];
    got.forEach((e, i) => {
      const id = lacking[i]!;
      if (!e || e.room_id !== room.roomId || safeEventId(e, room) !== id) return;
      fetched.set(id, e);
      frontier.push(...refIds(e.auth_events));
    });
  }
  return [...fetched.values()];
}

async function ingest(deps: GapDeps, room: RoomForServer, pdus: JsonObject[], state: SuppliedState | undefined, deadline: number): Promise<IngestReply> {
  const keys = await keysForPdus(deps.keyStore, [...pdus, ...(state?.events ?? [])], room.version, deadline - 1000);
  return askRoomFamily<IngestReply>(deps.api, 'room', room.roomId, { op: 'ingest', pdus, keys, ...(state ? { state } : {}) });
}

async function getMissingEvents(deps: GapDeps, room: RoomForServer, origin: string, latest: string[], pdus: JsonObject[], deadline: number): Promise<JsonObject[]> {
  const extremities = await deps.api.rooms.forwardExtremities(room.roomId);
  const extremityEvents = await deps.api.rooms.events(room.roomId, extremities);
  const shallowest = Math.min(...extremityEvents.map((e) => e.depth), ...pdus.map((p) => (typeof p.depth === 'number' ? p.depth : 0)));
  const body = { earliest_events: extremities, latest_events: latest, limit: MISSING_EVENTS_LIMIT, min_depth: Math.max(0, shallowest - MISSING_EVENTS_DEPTH_WINDOW) };
  const answer = await deps.client.post<JsonValue>(origin, `/_matrix/federation/v1/get_missing_events/${encodeURIComponent(room.roomId)}`, body, {
    timeoutMs: clampTimeout(deadline),
    maxResponseBytes: MAX_ANSWER_BYTES,
  });
  if (!isJsonObject(answer) || !Array.isArray(answer.events)) return [];
  // At most what we asked for, of this room only.
  return answer.events.filter((e): e is JsonObject => isJsonObject(e) && e.room_id === room.roomId).slice(0, MISSING_EVENTS_LIMIT * 2);
}

/**
 * The state before `pdu` as the origin has it: with one prev event, the state before that event
 * (`/state_ids`) plus the event itself when it is a state event; with several, the origin's
 * state before the PDU itself. Events we lack are fetched with `/event`.
 */
export async function suppliedStateFor(deps: GapDeps, room: RoomForServer, origin: string, pdu: JsonObject, pduId: string, deadline: number): Promise<SuppliedState | null> {
  const prevs = refIds(pdu.prev_events);
  const viaPrev = prevs.length === 1 ? prevs[0]! : null;
  const at = viaPrev ?? pduId;
  const ids = await deps.client.get<JsonValue>(origin, `/_matrix/federation/v1/state_ids/${encodeURIComponent(room.roomId)}?event_id=${encodeURIComponent(at)}`, {
    timeoutMs: clampTimeout(deadline),
    maxResponseBytes: MAX_ANSWER_BYTES,
  });
  if (!isJsonObject(ids) || !Array.isArray(ids.pdu_ids) || !Array.isArray(ids.auth_chain_ids)) return null;
  const stateIds = ids.pdu_ids.filter((x): x is string => typeof x === 'string');
  const authIds = ids.auth_chain_ids.filter((x): x is string => typeof x === 'string');
  const wanted = [...new Set([...stateIds, ...authIds, ...(viaPrev ? [viaPrev] : [])])];
  const have = new Set((await deps.api.rooms.events(room.roomId, wanted)).filter((e) => !e.rejected).map((e) => e.eventId));
  const lacking = wanted.filter((id) => !have.has(id));
  if (lacking.length > MAX_EVENTS_FETCHED) {
    deps.log.info({ room_id: room.roomId, event_id: pduId, lacking: lacking.length }, 'state before an event: too many events to fetch one by one');
    return null;
  }
  const fetched = await mapBounded(lacking, FETCH_CONCURRENCY, (id) => fetchEvent(deps, origin, id, deadline));
  const events = fetched.filter((e): e is JsonObject => e !== null && e.room_id === room.roomId);
  let before = stateIds;
  if (viaPrev) {
    // The state after the prev event: before it, with it when it is a state event.
    const prev = events.find((e) => safeEventId(e, room) === viaPrev) ?? (await deps.api.rooms.event(room.roomId, viaPrev))?.event;
    if (!prev) return null;
    if (typeof prev.state_key === 'string' && typeof prev.type === 'string') {
      const key = stateKeyOf(prev.type, prev.state_key);
      const byKey = new Map<string, string>();
      const stateEvents = new Map<string, JsonObject>();
      for (const e of events) {
        const id = safeEventId(e, room);
        if (id) stateEvents.set(id, e);
      }
      for (const e of await deps.api.rooms.events(room.roomId, stateIds.filter((id) => !stateEvents.has(id)))) stateEvents.set(e.eventId, e.event);
      for (const id of stateIds) {
        const e = stateEvents.get(id);
        if (e && typeof e.type === 'string' && typeof e.state_key === 'string') byKey.set(stateKeyOf(e.type, e.state_key), id);
      }
      byKey.set(key, viaPrev);
      before = [...byKey.values()];
    }
  }
  return { events, before: { [pduId]: before } };
}

async function fetchEvent(deps: GapDeps, origin: string, eventId: string, deadline: number): Promise<JsonObject | null> {
  if (Date.now() > deadline - 500) return null;
  try {
    const answer = await deps.client.get<JsonValue>(origin, `/_matrix/federation/v1/event/${encodeURIComponent(eventId)}`, { timeoutMs: clampTimeout(deadline), maxResponseBytes: MAX_ANSWER_BYTES });
    if (!isJsonObject(answer) || !Array.isArray(answer.pdus) || !isJsonObject(answer.pdus[0])) return null;
    return answer.pdus[0];
  } catch {
    return null;
  }
}

function clampTimeout(deadline: number): number {
  return Math.max(500, Math.min(10_000, deadline - Date.now() - 300));
}

export function safeEventId(raw: JsonObject, room: Pick<RoomForServer, 'version'>): string | null {
  try {
    return computeEventId(raw, room.version);
  } catch {
    return null;
  }
}

export function refIds(refs: unknown): string[] {
  if (!Array.isArray(refs)) return [];
  return refs.map((r) => (Array.isArray(r) ? r[0] : r)).filter((r): r is string => typeof r === 'string');
}

async function mapBounded<T, R>(items: readonly T[], concurrency: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const run = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, run));
  return out;
}
