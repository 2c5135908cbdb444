/**
 * Room events in the client format (what `/messages`, `/context`, `/event`, notifications and
 * /sync send): the federation-only fields left out, `unsigned` filled in. The client
 * transaction key the room actor stores with an event is built and read here too, so the sender's
 * own device gets its `transaction_id` back.
 */
import { isJsonObject, type JsonObject, type JsonValue } from '../protocol/json';
import { stateKeyOf } from '../protocol/pdu';
import { RawJson } from '../protocol/raw-json';
import type { RoomEvent } from '../store/room-reader';
import { roomData } from '../store/keys';
import { roomShard } from '../store/shard-keys';
import type { ApiContext } from '../api/context';

/** A client transaction key: idempotency is per user, device, endpoint and transaction id. */
export function txnKey(endpoint: 'send' | 'redact', userId: string, deviceId: string, txnId: string): string {
  return `${endpoint}\u0000${userId}\u0000${deviceId}\u0000${txnId}`;
}

export function parseTxnKey(key: string): { userId: string; deviceId: string; txnId: string } | null {
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
  const facts = await clientFacts(ctx, roomId, events, viewer, opts);
  const now = Date.now();
  return events.map((e, i) => {
    const because = e.redactedBy ? facts.redactions.get(e.redactedBy) : undefined;
    const out = clientEvent(roomId, e, now, facts.txns.get(e.eventId), because ? clientEvent(roomId, because, now, undefined, undefined) : undefined);
    if (facts.memberships) (out.unsigned as JsonObject).membership = facts.memberships[i]!;
    const prev = facts.previous.get(facts.replaced.get(e.eventId) ?? '');
    if (prev) {
      const unsigned = out.unsigned as JsonObject;
      unsigned.replaces_state = prev.eventId;
      unsigned.prev_content = isJsonObject(prev.event.content as JsonValue) ? prev.event.content! : {};
      if (typeof prev.event.sender === 'string') unsigned.prev_sender = prev.event.sender;
    }
    return out;
  });
}

/**
 * Events in /sync's format (the client format without `room_id`, the spec's
 * ClientEventWithoutRoomID) as JSON text to splice into the answer (src/protocol/raw-json.ts):
 * what `formatEvents` gives with `room_id` deleted, written the same way, key for key. The part
 * that is the same for every viewer — everything but `unsigned` — is written as text directly
 * (`syncHead`), then `unsigned` for the request (age, the viewer's own `transaction_id`, their
 * membership, `redacted_because`, what a state event replaced).
 */
export async function syncEventsJson(ctx: ApiContext, roomId: string, events: RoomEvent[], viewer: { userId: string; deviceId: string } | null, opts: { membership?: boolean; txns?: ReadonlyMap<string, string> } = {}): Promise<RawJson[]> {
  if (events.length === 0) return [];
  const facts = await clientFacts(ctx, roomId, events, viewer, opts);
  const now = Date.now();
  return events.map((e, i) => {
    const ts = typeof e.event.origin_server_ts === 'number' ? e.event.origin_server_ts : 0;
    let json = `${headOf(e)},"unsigned":{"age":${Math.max(0, now - ts)}`;
    const txn = facts.txns.get(e.eventId);
    if (txn !== undefined) json += `,"transaction_id":${JSON.stringify(txn)}`;
    const because = e.redactedBy ? facts.redactions.get(e.redactedBy) : undefined;
    if (because) json += `,"redacted_because":${JSON.stringify(clientEvent(roomId, because, now, undefined, undefined))}`;
    if (facts.memberships) json += `,"membership":${JSON.stringify(facts.memberships[i]!)}`;
    const prev = facts.previous.get(facts.replaced.get(e.eventId) ?? '');
    if (prev) {
      json += `,"replaces_state":${JSON.stringify(prev.eventId)},"prev_content":${JSON.stringify(isJsonObject(prev.event.content as JsonValue) ? prev.event.content! : {})}`;
      if (typeof prev.event.sender === 'string') json += `,"prev_sender":${JSON.stringify(prev.event.sender)}`;
    }
    return new RawJson(`${json}}}`);
  });
}

/**
 * The viewer-independent start of an event's /sync JSON (up to `unsigned`, its braces open). Kept
 * on the RoomEvent (`syncHead`), not in a WeakMap (its ephemeron table weighed on every garbage
 * collection): the events `recentEvents` shares between the long-polls one message wakes are
 * written once per front instead of once per member.
 */
function headOf(e: RoomEvent): string {
  const kept = e.syncHead;
  if (kept && kept.event === e.event && kept.eventId === e.eventId) return kept.json;
  const json = syncHead(e);
  e.syncHead = { event: e.event, eventId: e.eventId, json };
  return json;
}

export function syncHead(e: RoomEvent): string {
  const raw = e.event;
  let json = `{"content":${JSON.stringify(isJsonObject(raw.content as JsonValue) ? raw.content! : {})},"event_id":${JSON.stringify(e.eventId)},"origin_server_ts":${typeof raw.origin_server_ts === 'number' ? raw.origin_server_ts : 0},"sender":${JSON.stringify(raw.sender ?? '')},"type":${JSON.stringify(raw.type ?? '')}`;
  if (typeof raw.state_key === 'string') json += `,"state_key":${JSON.stringify(raw.state_key)}`;
  const redacts = redactsOf(raw);
  if (redacts) json += `,"redacts":${JSON.stringify(redacts)}`;
  return json;
}

/** What a viewer-specific rendering of events needs looked up (see `formatEvents`). */
interface ClientFacts {
  txns: ReadonlyMap<string, string>;
  redactions: ReadonlyMap<string, RoomEvent>;
  replaced: ReadonlyMap<string, string>;
  previous: ReadonlyMap<string, RoomEvent>;
  memberships: string[] | null;
}

/**
 * Transaction keys of the events this process sent for its clients (`/send`, `/redact` with a
 * transaction id), by event id, remembered when the room actor's reply came: what it stored in
 * the room's reverse mapping (`evtxn`) with the event. The sender's next /sync, usually on the same
 * front within a second, then gives its device `transaction_id` back without reading the mapping —
 * in workload A one `HMGET` per message less. Event ids are hashes (unique across servers), so
 * one map serves every server of a process; bounded, oldest first out (an event not here is read).
 */
const sentTxns = new Map<string, string>();
const SENT_TXNS_MAX = 10_000;

export function rememberSentTxn(eventId: string, txn: string): void {
  sentTxns.delete(eventId);
  sentTxns.set(eventId, txn);
  if (sentTxns.size > SENT_TXNS_MAX) sentTxns.delete(sentTxns.keys().next().value!);
}

/**
 * The viewer's own device's transaction ids of those of `events` it sent, by event id: those this
 * process sent from memory (`rememberSentTxn`), the others with one `HMGET` (a caller rendering
 * several lists of one room's events asks once for all of them).
 */
export async function ownTransactionIds(ctx: ApiContext, roomId: string, events: readonly RoomEvent[], viewer: { userId: string; deviceId: string } | null): Promise<Map<string, string>> {
  const txns = new Map<string, string>();
  if (!viewer) return txns;
  const mine = (eventId: string, key: string | null | undefined) => {
    const t = key ? parseTxnKey(key) : null;
    if (t && t.userId === viewer.userId && t.deviceId === viewer.deviceId) txns.set(eventId, t.txnId);
  };
  let unknown: RoomEvent[] | null = null;
  for (const e of events) {
    if (e.event.sender !== viewer.userId) continue;
    const sent = sentTxns.get(e.eventId);
    if (sent !== undefined) mine(e.eventId, sent);
    else (unknown ??= []).push(e);
  }
  if (!unknown) return txns;
  const keys = await ctx.redis.hmget(roomShard(ctx, roomId).data(roomData.eventTxns(roomId)), ...unknown.map((e) => e.eventId));
  unknown.forEach((e, i) => mine(e.eventId, keys[i]));
  return txns;
}

/** Facts with nothing in them (most of a woken member's answers: messages, no redactions). */
const NO_REDACTIONS: Map<string, RoomEvent> = new Map();
const NOTHING_REPLACED: Map<string, string> = new Map();
const NO_PREVIOUS: Map<string, RoomEvent> = new Map();

async function clientFacts(ctx: ApiContext, roomId: string, events: RoomEvent[], viewer: { userId: string; deviceId: string } | null, opts: { membership?: boolean; txns?: ReadonlyMap<string, string> }): Promise<ClientFacts> {
  // Every woken member's answer comes through here with its events: nothing is read, and no
  // promise made per event, for what they do not have (redactions, state events) or for what
  // the visibility cache already knows (memberships).
  const txns = opts.txns ?? (await ownTransactionIds(ctx, roomId, events, viewer));
  let redactionIds: Set<string> | null = null;
  let stateEvents: RoomEvent[] | null = null;
  for (const e of events) {
    if (e.redactedBy) (redactionIds ??= new Set()).add(e.redactedBy);
    if (typeof e.event.state_key === 'string' && typeof e.event.type === 'string' && e.stateBefore) (stateEvents ??= []).push(e);
  }
  const redactions = redactionIds ? new Map((await ctx.rooms.events(roomId, [...redactionIds])).map((r) => [r.eventId, r])) : NO_REDACTIONS;
  // State events say what they replaced (unsigned.replaces_state, prev_content, prev_sender), so
  // clients can show "changed their name from …": the entry for the same key in the state before.
  let replaced = NOTHING_REPLACED;
  let previous = NO_PREVIOUS;
  if (stateEvents) {
    const found = new Map<string, string>();
    // One entry of each state event's own snapshot, looked up through the delta chains (not whole
    // snapshots materialised), all events at once.
    await Promise.all(
      stateEvents.map(async (e) => {
        const prev = await ctx.rooms.stateEntryAt(roomId, e.stateBefore, stateKeyOf(e.event.type as string, e.event.state_key as string));
        if (prev && prev !== e.eventId) found.set(e.eventId, prev);
      }),
    );
    replaced = found;
    if (found.size) previous = new Map((await ctx.rooms.events(roomId, [...new Set(found.values())])).map((r) => [r.eventId, r]));
  }
  // MSC4115 (stable in spec v1.11): the viewer's membership after each event, so a client can
  // tell which events of an encrypted room it cannot expect keys for. Timelines carry it; state
  // sections need not (Synapse leaves it out there), which spares a big room's initial sync a
  // snapshot read per member event.
  let memberships: string[] | null = null;
  if (viewer && opts.membership !== false) {
    memberships = new Array<string>(events.length);
    let reads: Promise<void>[] | null = null;
    for (let i = 0; i < events.length; i++) {
      const e = events[i]!;
      const known = ctx.rooms.membershipAfterCached(roomId, e, viewer.userId);
      if (known !== undefined) memberships[i] = known;
      else
        (reads ??= []).push(
          ctx.rooms.membershipAfter(roomId, e, viewer.userId).then((m) => {
            memberships![i] = m;
          }),
        );
    }
    if (reads) await Promise.all(reads);
  }
  return { txns, redactions, replaced, previous, memberships };
}

function redactsOf(raw: JsonObject): string | undefined {
  if (raw.type !== 'm.room.redaction') return undefined;
  const inContent = isJsonObject(raw.content as JsonValue) ? (raw.content as JsonObject).redacts : undefined;
  return typeof raw.redacts === 'string' ? raw.redacts : typeof inContent === 'string' ? inContent : undefined;
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
  const redacts = redactsOf(raw);
  if (redacts) out.redacts = redacts;
  const unsigned: JsonObject = { age: Math.max(0, now - (out.origin_server_ts as number)) };
  if (transactionId !== undefined) unsigned.transaction_id = transactionId;
  if (redactedBecause) unsigned.redacted_because = redactedBecause;
  out.unsigned = unsigned;
  return out;
}
