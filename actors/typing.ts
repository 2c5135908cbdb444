/**
 * TypingActor: who is typing in one room (actor id = room id; it lives in the room's shard, next
 * to the room actor, but has its own mailbox so a burst of typing notices never queues behind
 * events being persisted).
 *
 * `PUT /rooms/{roomId}/typing/{userId}` sends `set` (the front checked that the user is joined).
 * A notice lasts `timeout` ms (capped at MAX_TYPING_MS, as Synapse caps it) unless renewed or
 * cleared; expiry is a durable timer (src/runtime/timers.ts) at the earliest expiry, so a client
 * that stops sending notices stops "typing" for everyone even if the worker holding the room
 * changes in between.
 *
 * Every change of the list appends one output `{type: 'typing', room_id, user_ids}` carrying
 * the whole current list, so /sync gives a room's `m.typing` from the newest such entry in its
 * window without reading anything else. A renewal that changes nobody's presence in the list
 * emits nothing (only the expiry moves). The list is also stored (`roomData.typing`, user id →
 * expiry ms) for syncs that show the room in full.
 *
 * The clock is the message's `enqueuedAt` (set by the front, or by the timer when it fires), so
 * decide stays pure and a replay decides the same way.
 */
import type { ActorKind, ActorMessage, Decision, ShellContext } from '../src/runtime/actor';
import { roomData } from '../src/store/keys';

/** Longest a single typing notice lasts (ms). */
export const MAX_TYPING_MS = 120_000;
/** Used when `typing: true` comes without a timeout. */
export const DEFAULT_TYPING_MS = 30_000;

export interface TypingState {
  roomId: string;
  /** User id → when their notice expires (ms). */
  until: Record<string, number>;
}

export type TypingMessage =
  | { op: 'set'; userId: string; typing: boolean; timeoutMs?: number }
  /** From the actor's own timer: drop what has expired by now. */
  | { op: 'expire' };

export interface TypingOutput {
  type: 'typing';
  room_id: string;
  user_ids: string[];
  /** Who started (true) or stopped (false) typing in this change: what the federation sender sends as `m.typing`. */
  changes?: [string, boolean][];
}

/** Users whose notice is still running at `now`, sorted (the `m.typing` content order). */
export function typingAt(until: Record<string, number>, now: number): string[] {
  return Object.keys(until)
    .filter((u) => until[u]! > now)
    .sort();
}

/** Started (in `after` only) and stopped (in `before` only) users. */
function typingChanges(before: string[], after: string[]): [string, boolean][] {
  const b = new Set(before);
  const a = new Set(after);
  return [...after.filter((u) => !b.has(u)).map((u): [string, boolean] => [u, true]), ...before.filter((u) => !a.has(u)).map((u): [string, boolean] => [u, false])];
}

export function decideTyping(state: TypingState, msg: ActorMessage<TypingMessage>): Decision<TypingState, { ok: true }> {
  const now = msg.enqueuedAt;
  const body = msg.body;
  // The stored map is always the list last published: every decision that drops someone (a stop
  // or an expiry) publishes, so "before" is all of it, even entries whose time has just passed.
  const before = Object.keys(state.until).sort();
  // Drop whatever has expired, whatever the message.
  const until: Record<string, number> = {};
  for (const [u, t] of Object.entries(state.until)) if (t > now) until[u] = t;
  if (body?.op === 'set') {
    if (typeof body.userId !== 'string' || !body.userId.startsWith('@')) throw new TypeError('typing: userId must be a user id');
    if (body.typing) {
      const timeout = typeof body.timeoutMs === 'number' && body.timeoutMs > 0 ? Math.min(body.timeoutMs, MAX_TYPING_MS) : DEFAULT_TYPING_MS;
      until[body.userId] = now + timeout;
    } else delete until[body.userId];
  } else if (body?.op !== 'expire') {
    throw new TypeError(`typing: unknown op ${JSON.stringify((body as { op?: unknown } | undefined)?.op)}`);
  }
  const after = typingAt(until, now);
  const listChanged = after.length !== before.length || after.some((u, i) => u !== before[i]);
  const storedChanged = Object.keys(until).length !== Object.keys(state.until).length || Object.entries(until).some(([u, t]) => state.until[u] !== t);
  if (!storedChanged) return { state, reply: { ok: true } };
  const key = roomData.typing(state.roomId);
  const writes: Decision<TypingState, unknown>['writes'] = [{ cmd: 'DEL', key, args: [] }];
  const pairs = Object.entries(until).flatMap(([u, t]) => [u, t]);
  if (pairs.length) writes.push({ cmd: 'HSET', key, args: pairs });
  const next = Object.values(until).reduce((m, t) => Math.min(m, t), Infinity);
  return {
    state: { roomId: state.roomId, until },
    reply: { ok: true },
    writes,
    outputs: listChanged ? [{ type: 'typing', room_id: state.roomId, user_ids: after, changes: typingChanges(before, after) } satisfies TypingOutput] : [],
    timers: [{ key: 'expire', atMs: Number.isFinite(next) ? next : null, body: { op: 'expire' } satisfies TypingMessage }],
  };
}

/** The stored list is the truth (it is what /sync reads for rooms given in full). */
async function hydrateTyping(ctx: ShellContext, _stored: unknown, roomId: string): Promise<TypingState> {
  const raw = await ctx.redis.hgetall(ctx.keys.data(roomData.typing(roomId)));
  const until: Record<string, number> = {};
  for (const [u, t] of Object.entries(raw)) until[u] = Number(t);
  return { roomId, until };
}

export function typingActor(): ActorKind<TypingState, TypingMessage, { ok: true }> {
  return {
    kind: 'typing',
    family: 'room',
    initialState: (roomId) => ({ roomId, until: {} }),
    hydrate: hydrateTyping,
    // The hash holds everything; the blob only marks that the actor has run.
    serialize: (s) => ({ roomId: s.roomId }),
    decide: decideTyping,
  };
}
