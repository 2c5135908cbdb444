/**
 * DelayedEventsActor: one user's delayed events (MSC4140, as Synapse 1.163.2 serves it; used by
 * Element Call for its "hang up when I vanish" call membership). Actor id = the owner's user id;
 * it lives in the owner's user shard.
 *
 * A delayed event is an event template the user asked to be sent later (`PUT …/send/…` or
 * `…/state/…` with `org.matrix.msc4140.delay`): room, type, optional state key, content and a
 * delay. The actor keeps them and, per delayed event, a durable timer (src/runtime/timers.ts) at
 * its send time (`running_since + delay`): timers are stored with the commit, so they survive a
 * crash or kill -9 and move with the shard, and only the shard's lease holder fires them.
 *
 * Exactly once. A due delayed event (its timer fired, or the `send` action) is removed in the same
 * commit that appends a `delayed_event_due` entry to the user shard's outbox; the delayed events
 * reader (src/readers/delayed-events.ts, a consumer group) sends it to the room actor with a
 * message id and a transaction key derived from the delay id, so a reader that dies and reads the
 * entry again gets the stored answer instead of a second event. A late or repeated timer (the
 * event was restarted, cancelled, or sent already) finds nothing due and does nothing: the clock
 * is the message's `enqueuedAt`, so decide stays pure.
 *
 * Management (`cancel`, `restart`, `send`) names only the delay id, unauthenticated (the id is the
 * capability, as the MSC says): delay ids carry their owner's user shard (`ax<shard>_<random>`),
 * and the shard's `owners` hash maps each to its owner, written in the same commits.
 *
 * State events: a delayed state event is cancelled when someone else sets the same state
 * (`cancel_state`, told by the same reader from room outputs; Synapse's rule: the owner's own
 * state events do not cancel their delayed events).
 */
import { ActorRejection, type ActorKind, type ActorMessage, type Decision, type ShellContext, type StoreWrite } from '../src/runtime/actor';
import type { JsonObject } from '../src/protocol/json';
import { delayedEventData, delayedStateIndex } from '../src/store/keys';

export const DELAYED_EVENTS_KIND = 'delayed-events';

/** What is kept of one delayed event (and served by `GET /delayed_events`, in Synapse's field names). */
export interface DelayedEventRecord {
  delay_id: string;
  room_id: string;
  type: string;
  state_key?: string;
  /** The delay (ms). */
  delay: number;
  /** When it was scheduled or last restarted (ms). */
  running_since: number;
  /** When it was scheduled (ms; a restart leaves it): what others' state changes are compared with. */
  scheduled_at?: number;
  content: JsonObject;
  /** The device that scheduled it. */
  device_id?: string;
}

export interface DelayedEventsState {
  userId: string;
  events: Record<string, DelayedEventRecord>;
}

export type DelayedEventsMessage =
  | { op: 'add'; delayId: string; roomId: string; type: string; stateKey?: string; content: JsonObject; delayMs: number; deviceId?: string; maxPerUser: number }
  | { op: 'cancel'; delayId: string }
  | { op: 'restart'; delayId: string }
  | { op: 'send'; delayId: string }
  /** The delayed event's own timer. */
  | { op: 'fire'; delayId: string }
  /** Someone else set this state: the user's delayed events for it scheduled before `before` (ms) are cancelled. */
  | { op: 'cancel_state'; roomId: string; type: string; stateKey: string; before: number }
  /** The account was deactivated: every delayed event is cancelled. */
  | { op: 'cancel_all' };

export type DelayedEventsReply = { delay_id: string } | { ok: true } | { cancelled: number };

/** The outbox entry that has the reader send a due delayed event. */
export interface DelayedEventDueOutput {
  type: 'delayed_event_due';
  user_id: string;
  delay_id: string;
  room_id: string;
  event_type: string;
  state_key?: string;
  content: JsonObject;
  device_id?: string;
}

/** The room's transaction key of a delayed event (one event per delay id, whoever sends it). */
export const delayedEventTxn = (delayId: string): string => `delayed\u0000${delayId}`;

/** When a delayed event is due (ms). */
export const sendTimeOf = (e: DelayedEventRecord): number => e.running_since + e.delay;

const notFound = () => new ActorRejection('M_NOT_FOUND', 'Delayed event not found', 404);

type D = Decision<DelayedEventsState, DelayedEventsReply>;

function recordWrite(userId: string, e: DelayedEventRecord): StoreWrite {
  return { cmd: 'HSET', key: delayedEventData.events(userId), args: [e.delay_id, JSON.stringify(e)] };
}

/** The state a delayed state event sets (room, type, state key), as one string. */
const stateSlot = (e: DelayedEventRecord): string | null => (e.state_key === undefined ? null : JSON.stringify([e.room_id, e.type, e.state_key]));

/** Remove delayed events (cancelled or due): their records, owner entries and timers. */
function removeAll(state: DelayedEventsState, ids: string[], due: boolean): D {
  if (ids.length === 0) return { state, reply: { cancelled: 0 } };
  const events = { ...state.events };
  // The state index loses the user for a slot when no delayed event of theirs is left for it.
  const slots = new Map<string, DelayedEventRecord>();
  for (const id of ids) {
    const e = events[id]!;
    const slot = stateSlot(e);
    if (slot) slots.set(slot, e);
  }
  const outputs: DelayedEventDueOutput[] = [];
  for (const id of ids) {
    const e = events[id]!;
    delete events[id];
    if (due) {
      outputs.push({
        type: 'delayed_event_due', user_id: state.userId, delay_id: id, room_id: e.room_id, event_type: e.type, content: e.content,
        ...(e.state_key !== undefined ? { state_key: e.state_key } : {}), ...(e.device_id !== undefined ? { device_id: e.device_id } : {}),
      });
    }
  }
  const left = new Set(Object.values(events).map(stateSlot));
  const derivedWrites: StoreWrite[] = [...slots].filter(([slot]) => !left.has(slot)).map(([, e]) => ({ cmd: 'SREM', key: delayedStateIndex(e.room_id, e.type, e.state_key!), args: [state.userId], ordered: true }));
  return {
    state: { ...state, events },
    reply: { cancelled: ids.length },
    ...(derivedWrites.length ? { derivedWrites } : {}),
    writes: [
      { cmd: 'HDEL', key: delayedEventData.events(state.userId), args: ids },
      { cmd: 'HDEL', key: delayedEventData.owners(), args: ids },
    ],
    timers: ids.map((id) => ({ key: id, atMs: null })),
    outputs,
  };
}

/** Pure: everything the actor does with a message. `now` is the message's enqueue time. */
export function decideDelayedEvents(state: DelayedEventsState, msg: ActorMessage<DelayedEventsMessage>): D {
  const now = msg.enqueuedAt;
  const body = msg.body;
  switch (body?.op) {
    case 'add': {
      if (Object.keys(state.events).length >= body.maxPerUser) throw new ActorRejection('M_LIMIT_EXCEEDED', 'The maximum number of delayed events has been reached.', 429);
      if (state.events[body.delayId]) throw new ActorRejection('M_INVALID_PARAM', 'Delay id in use', 400);
      const e: DelayedEventRecord = {
        delay_id: body.delayId, room_id: body.roomId, type: body.type, delay: body.delayMs, running_since: now, scheduled_at: now, content: body.content,
        ...(body.stateKey !== undefined ? { state_key: body.stateKey } : {}), ...(body.deviceId !== undefined ? { device_id: body.deviceId } : {}),
      };
      return {
        state: { ...state, events: { ...state.events, [e.delay_id]: e } },
        reply: { delay_id: e.delay_id },
        writes: [recordWrite(state.userId, e), { cmd: 'HSET', key: delayedEventData.owners(), args: [e.delay_id, state.userId] }],
        timers: [{ key: e.delay_id, atMs: sendTimeOf(e), body: { op: 'fire', delayId: e.delay_id } satisfies DelayedEventsMessage }],
        ...(e.state_key !== undefined ? { derivedWrites: [{ cmd: 'SADD', key: delayedStateIndex(e.room_id, e.type, e.state_key), args: [state.userId], ordered: true }] } : {}),
      };
    }
    case 'cancel': {
      if (!state.events[body.delayId]) throw notFound();
      return { ...removeAll(state, [body.delayId], false), reply: { ok: true } };
    }
    case 'restart': {
      const e = state.events[body.delayId];
      if (!e) throw notFound();
      const next: DelayedEventRecord = { ...e, running_since: now };
      return {
        state: { ...state, events: { ...state.events, [e.delay_id]: next } },
        reply: { ok: true },
        writes: [recordWrite(state.userId, next)],
        timers: [{ key: e.delay_id, atMs: sendTimeOf(next), body: { op: 'fire', delayId: e.delay_id } satisfies DelayedEventsMessage }],
      };
    }
    case 'send': {
      if (!state.events[body.delayId]) throw notFound();
      return { ...removeAll(state, [body.delayId], true), reply: { ok: true } };
    }
    case 'fire': {
      const e = state.events[body.delayId];
      // Cancelled, sent, or restarted since this timer was set: nothing is due.
      if (!e || sendTimeOf(e) > now) return { state, reply: { ok: true } };
      return { ...removeAll(state, [e.delay_id], true), reply: { ok: true } };
    }
    case 'cancel_state': {
      const ids = Object.values(state.events)
        .filter((e) => e.room_id === body.roomId && e.type === body.type && e.state_key === body.stateKey && (e.scheduled_at ?? e.running_since) < body.before)
        .map((e) => e.delay_id);
      return removeAll(state, ids, false);
    }
    case 'cancel_all':
      return removeAll(state, Object.keys(state.events), false);
    default:
      throw new TypeError(`delayed-events: unknown op ${JSON.stringify((body as { op?: unknown } | undefined)?.op)}`);
  }
}

/** The records hash is the truth fronts read; the blob is rebuilt from it. */
async function hydrate(ctx: ShellContext, _stored: unknown, userId: string): Promise<DelayedEventsState> {
  const raw = await ctx.redis.hgetall(ctx.keys.data(delayedEventData.events(userId)));
  const events: Record<string, DelayedEventRecord> = {};
  for (const [id, json] of Object.entries(raw)) events[id] = JSON.parse(json) as DelayedEventRecord;
  return { userId, events };
}

export function delayedEventsActor(): ActorKind<DelayedEventsState, DelayedEventsMessage, DelayedEventsReply> {
  return {
    kind: DELAYED_EVENTS_KIND,
    family: 'user',
    initialState: (userId) => ({ userId, events: {} }),
    hydrate,
    // The records hash holds everything; the blob only marks that the actor has run.
    serialize: (s) => ({ userId: s.userId }),
    decide: decideDelayedEvents,
  };
}
