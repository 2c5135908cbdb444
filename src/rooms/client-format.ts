/**
 * Room events in the client format (what `/messages`, `/context`, `/event`, notifications and
 * /sync send): the federation-only fields left out, `unsigned` filled in. The client
 * transaction key the room actor stores with an event is built and read here too, so the sender's
 * own device gets its `transaction_id` back.
 */
import { isJsonObject, type JsonObject, type JsonValue } from '../protocol/json';
import { stateKeyOf } from '../protocol/pdu';
import type { RoomEvent } from '../store/room-reader';
import { roomData } from '../store/keys';
import { roomShard } from '../store/shard-keys';
import type { ApiContext } from '../api/context';

/** A client transaction key: idempotency is per user, device, endpoint and transaction id. */
export function txnKey(endpoint: 'send' | 'redact', userId: string, deviceId: string, txnId: string): string {
  return `${endpoint}\u0000${userId}\u0000${deviceId}\u0000${txnId}`;
}

function parseTxnKey(key: string): { userId: string; deviceId: string; txnId: string } | null {
  const parts = key.split('\u0000');
  if (parts.length < 4) return null;
  return { userId: parts[1]!, deviceId: parts[2]!, txnId: parts.slice(3).join('\u0000') };
}

/** The room an event belongs to (v12 create events carry no room_id: the room id is derived from them). */
export function eventRoomId(e: RoomEvent): string | null {
  if (typeof e.event.room_id === 'string') return e.event.room_id;
  if (e.event.type === 'm.room.create' && e.eventId.startsWith('$')) return `!${e.eventId.slice(1)}`;
  return null;
}

/**
 * Events in the client format: the federation-only fields (auth_events, prev_events, hashes,
 * signatures, depth, origin, …) left out; `unsigned` with `age`, the sender's own device's
 * `transaction_id`, and `redacted_because` for redacted events. Redactions of v11+ rooms get a
 * top-level `redacts` as well, for clients that predate it moving into content.
 */
export async function formatEvents(ctx: ApiContext, roomId: string, events: RoomEvent[], viewer: { userId: string; deviceId: string } | null, opts: { membership?: boolean } = {}): Promise<JsonObject[]> {
  if (events.length === 0) return [];
  const own = events.filter((e) => viewer && e.event.sender === viewer.userId);
  const txns = new Map<string, string>();
  if (own.length && viewer) {
    const keys = await ctx.redis.hmget(roomShard(ctx, roomId).data(roomData.eventTxns(roomId)), ...own.map((e) => e.eventId));
    own.forEach((e, i) => {
      const t = keys[i] ? parseTxnKey(keys[i]!) : null;
      if (t && t.userId === viewer.userId && t.deviceId === viewer.deviceId) txns.set(e.eventId, t.txnId);
    });
  }
  const redactionIds = [...new Set(events.map((e) => e.redactedBy).filter((id): id is string => !!id))];
  const redactions = new Map((await ctx.rooms.events(roomId, redactionIds)).map((r) => [r.eventId, r]));
  // State events say what they replaced (unsigned.replaces_state, prev_content, prev_sender), so
  // clients can show "changed their name from …": the entry for the same key in the state before.
  const replaced = new Map<string, string>();
  // One entry of each state event's own snapshot, looked up through the delta chains (not whole
  // snapshots materialised), all events at once.
  await Promise.all(
    events.map(async (e) => {
      if (typeof e.event.state_key !== 'string' || typeof e.event.type !== 'string' || !e.stateBefore) return;
      const prev = await ctx.rooms.stateEntryAt(roomId, e.stateBefore, stateKeyOf(e.event.type, e.event.state_key));
      if (prev && prev !== e.eventId) replaced.set(e.eventId, prev);
    }),
  );
  const previous = new Map((await ctx.rooms.events(roomId, [...new Set(replaced.values())])).map((r) => [r.eventId, r]));
  // MSC4115 (stable in spec v1.11): the viewer's membership after each event, so a client can
  // tell which events of an encrypted room it cannot expect keys for. Timelines carry it; state
  // sections need not (Synapse leaves it out there), which spares a big room's initial sync a
  // snapshot read per member event.
  const memberships = viewer && opts.membership !== false ? await Promise.all(events.map((e) => ctx.rooms.membershipAfter(roomId, e, viewer.userId))) : null;
  const now = Date.now();
  return events.map((e, i) => {
    const because = e.redactedBy ? redactions.get(e.redactedBy) : undefined;
    const out = clientEvent(roomId, e, now, txns.get(e.eventId), because ? clientEvent(roomId, because, now, undefined, undefined) : undefined);
    if (memberships) (out.unsigned as JsonObject).membership = memberships[i]!;
    const prev = previous.get(replaced.get(e.eventId) ?? '');
    if (prev) {
      const unsigned = out.unsigned as JsonObject;
      unsigned.replaces_state = prev.eventId;
      unsigned.prev_content = isJsonObject(prev.event.content as JsonValue) ? prev.event.content! : {};
      if (typeof prev.event.sender === 'string') unsigned.prev_sender = prev.event.sender;
    }
    return out;
  });
}

export function clientEvent(roomId: string, e: RoomEvent, now: number, transactionId: string | undefined, redactedBecause: JsonObject | undefined): JsonObject {
  const raw = e.event;
  const out: JsonObject = {
    content: isJsonObject(raw.content as JsonValue) ? raw.content! : {},
    event_id: e.eventId,
    origin_server_ts: typeof raw.origin_server_ts === 'number' ? raw.origin_server_ts : 0,
    room_id: eventRoomId(e) ?? roomId,
    sender: raw.sender ?? '',
    type: raw.type ?? '',
  };
  if (typeof raw.state_key === 'string') out.state_key = raw.state_key;
  if (raw.type === 'm.room.redaction') {
    const inContent = isJsonObject(raw.content as JsonValue) ? (raw.content as JsonObject).redacts : undefined;
    const redacts = typeof raw.redacts === 'string' ? raw.redacts : typeof inContent === 'string' ? inContent : undefined;
    if (redacts) out.redacts = redacts;
  }
  const unsigned: JsonObject = { age: Math.max(0, now - (out.origin_server_ts as number)) };
  if (transactionId !== undefined) unsigned.transaction_id = transactionId;
  if (redactedBecause) unsigned.redacted_because = redactedBecause;
  out.unsigned = unsigned;
  return out;
}
