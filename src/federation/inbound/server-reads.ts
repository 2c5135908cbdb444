/**
 * What the read endpoints for peers share (server-server API, "Retrieving events"): finding the
 * room of an event by its id alone (`/event/{eventId}`), and handing events to a server in
 * federation format (the PDU as stored, which is the signed PDU, or its redaction once redacted)
 * with the server-side history visibility rules applied, and our signature on our own events (src/rooms/visibility.ts: events the
 * server may not see are redacted, or left out where the spec's endpoint returns one event).
 * Rejected events are never served.
 */
import type { ApiContext } from '../../api/context';
import type { JsonObject } from '../../protocol/json';
import { redactEvent } from '../../protocol/redaction';
import type { RoomVersion } from '../../protocol/room-versions';
import { filterEventsForServer, serverVisibilityFacts, type ServerVisibilityFacts } from '../../rooms/visibility';
import { decode } from '../../store/codec';
import { roomData } from '../../store/keys';
import { ownEventSigner } from '../../rooms/own-signatures';
import type { RoomEvent } from '../../store/room-reader';

const ROOM_OF_EVENT_CACHE_MAX = 10_000;
const roomOfEventCache = new Map<string, string>();

/**
 * The room an event is stored in, or null: one read of the event id → room index the room actors
 * write with every event (src/store/keys.ts `eventRoomIndex`). Events stored before the index
 * existed, or whose index write a Cluster crash lost, are not in it: then every room shard is
 * asked whether it holds the event (one EXISTS each, sent together) and the index is repaired.
 * Answers are cached (an event never moves).
 */
export async function roomOfEvent(api: Pick<ApiContext, 'redis' | 'keys' | 'shardCounts'>, eventId: string): Promise<string | null> {
  const hit = roomOfEventCache.get(eventId);
  if (hit) return hit;
  const indexed = await api.redis.hget(api.keys.eventRoom(eventId), eventId);
  const roomId = indexed ?? (await probeRoomOfEvent(api, eventId));
  if (!roomId) return null;
  if (!indexed) await api.redis.hset(api.keys.eventRoom(eventId), eventId, roomId);
  if (roomOfEventCache.size >= ROOM_OF_EVENT_CACHE_MAX) roomOfEventCache.delete(roomOfEventCache.keys().next().value!);
  roomOfEventCache.set(eventId, roomId);
  return roomId;
}

/** The fallback: find the room shard holding the event's record. */
async function probeRoomOfEvent(api: Pick<ApiContext, 'redis' | 'keys' | 'shardCounts'>, eventId: string): Promise<string | null> {
  const shards = api.shardCounts.room;
  const found = await Promise.all(Array.from({ length: shards }, (_, s) => api.redis.exists(api.keys.shard('room', s).data(roomData.event(eventId)))));
  const shard = found.findIndex((n) => n > 0);
  if (shard < 0) return null;
  const blob = await api.redis.getBuffer(api.keys.shard('room', shard).data(roomData.event(eventId)));
  if (!blob) return null;
  const stored = decode<{ j: string }>(blob);
  const raw = JSON.parse(stored.j) as JsonObject;
  // The v12 create event has no room_id: its room id is derived from its own id.
  return typeof raw.room_id === 'string' ? raw.room_id : raw.type === 'm.room.create' ? `!${eventId.slice(1)}` : null;
}

/**
 * Events as `serverName` may be given them, as PDUs: visible ones as stored, the others redacted
 * (`redact`) or left out; ours with our signature (src/rooms/own-signatures.ts: it covers the
 * redacted form, so it holds for both).
 */
export async function eventsForServer(api: ApiContext, roomId: string, version: RoomVersion, serverName: string, events: RoomEvent[], mode: 'redact' | 'omit'): Promise<JsonObject[]> {
  const visible = await visibleToServer(api, roomId, version, serverName, events, mode);
  return ownEventSigner(api.config.serverName, api.signingKey).pdus(visible, version);
}

/** `eventsForServer` before signing: the events themselves (redacted ones as copies), for endpoints that answer with ids. */
export async function visibleToServer(api: ApiContext, roomId: string, version: RoomVersion, serverName: string, events: RoomEvent[], mode: 'redact' | 'omit'): Promise<RoomEvent[]> {
  const servable = events.filter((e) => !e.rejected);
  const facts: ServerVisibilityFacts[] = await Promise.all(servable.map((e) => serverVisibilityFacts(api.rooms, roomId, serverName, e, () => false)));
  return filterEventsForServer(servable, (_, i) => facts[i]!, mode === 'redact' ? (e) => ({ ...e, event: redactEvent(e.event, version) }) : null);
}

export function refIds(refs: unknown): string[] {
  if (!Array.isArray(refs)) return [];
  return refs.map((r) => (Array.isArray(r) ? r[0] : r)).filter((r): r is string => typeof r === 'string');
}
