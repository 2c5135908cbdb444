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
 *
 * Other servers. The federation sender (src/federation/sender/reader.ts) sends `m.typing` for
 * our users' starts and stops (`changes`). A receiving server cannot know how long the notice
 * lasts — the EDU has no timeout — so it holds it for a fixed time: Synapse for 60 s after the
 * last EDU (synapse/handlers/typing.py, FEDERATION_TIMEOUT), we for REMOTE_TYPING_MS (60 s,
 * src/federation/inbound/edus.ts). A renewal changes nobody's presence in the list and so is not
 * sent; left at that, one of our users typing (renewing) for more than a minute would vanish
 * from the other servers' rooms. So, as Synapse does for its own users, the actor re-tells them:
 * for each of our users still typing, when the other servers were last told (`told`) is kept,
 * and a durable `keepalive` timer emits `{type: 'typing_keepalive', user_ids}` every
 * KEEPALIVE_MS while they keep typing — comfortably inside the receivers' minute — which the
 * sender turns into `m.typing` `typing: true` again. Stopping or timing out ends it (and the stop
 * is sent as before). Only where the server's name is known (federation on).
 */
import type { ActorKind, ActorMessage, Decision, ShellContext } from '../src/runtime/actor';
import { roomData } from '../src/store/keys';
import { serverOf } from '../src/protocol/identifiers';

/** Longest a single typing notice lasts (ms). */
export const MAX_TYPING_MS = 120_000;
/** Used when `typing: true` comes without a timeout. */
export const DEFAULT_TYPING_MS = 30_000;
/**
 * How often other servers are told again that one of our users is still typing (see the header):
 * Synapse's own interval (FEDERATION_PING_INTERVAL, 40 s), 20 s inside the minute a receiver
 * holds a typing EDU.
 */
export const KEEPALIVE_MS = 40_000;

export interface TypingState {
  roomId: string;
  /** User id → when their notice expires (ms). */
  until: Record<string, number>;
  /** Our users typing → when other servers were last told so (ms). Absent without federation. */
  told?: Record<string, number>;
}

export type TypingMessage =
  | { op: 'set'; userId: string; typing: boolean; timeoutMs?: number }
  /** From the actor's own timer: drop what has expired by now. */
  | { op: 'expire' }
  /** From the actor's own timer: tell other servers again who of ours is still typing. */
  | { op: 'keepalive' };

/** Our users still typing, told again (for the federation sender only; /sync ignores it). */
export interface TypingKeepaliveOutput {
  type: 'typing_keepalive';
  room_id: string;
  user_ids: string[];
}

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

/** `ourServer`: this server's name when federation is on (our users' typing is kept alive elsewhere). */
export function decideTyping(state: TypingState, msg: ActorMessage<TypingMessage>, ourServer?: string): Decision<TypingState, { ok: true }> {
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
  } else if (body?.op !== 'expire' && body?.op !== 'keepalive') {
    throw new TypeError(`typing: unknown op ${JSON.stringify((body as { op?: unknown } | undefined)?.op)}`);
  }
  const after = typingAt(until, now);
  const listChanged = after.length !== before.length || after.some((u, i) => u !== before[i]);
  const storedChanged = Object.keys(until).length !== Object.keys(state.until).length || Object.entries(until).some(([u, t]) => state.until[u] !== t);
  // Our typists and when other servers were last told: a start is told now (it goes out as a
  // change); one whose last telling is KEEPALIVE_MS old is told again when the timer fires.
  const told: Record<string, number> = {};
  const keepalive: string[] = [];
  if (ourServer) {
    for (const u of after) {
      if (serverOf(u) !== ourServer) continue;
      const last = state.told?.[u];
      if (last === undefined) told[u] = now;
      else if (body?.op === 'keepalive' && last + KEEPALIVE_MS <= now) {
        told[u] = now;
        keepalive.push(u);
      } else told[u] = last;
    }
  }
  const toldChanged = Object.keys(told).length !== Object.keys(state.told ?? {}).length || Object.entries(told).some(([u, t]) => state.told?.[u] !== t);
  if (!storedChanged && !toldChanged) return { state, reply: { ok: true } };
  const writes: Decision<TypingState, unknown>['writes'] = [];
  const timers: NonNullable<Decision<TypingState, unknown>['timers']> = [];
  const outputs: (TypingOutput | TypingKeepaliveOutput)[] = [];
  if (storedChanged) {
    const key = roomData.typing(state.roomId);
    writes.push({ cmd: 'DEL', key, args: [] });
    const pairs = Object.entries(until).flatMap(([u, t]) => [u, t]);
    if (pairs.length) writes.push({ cmd: 'HSET', key, args: pairs });
    const next = Object.values(until).reduce((m, t) => Math.min(m, t), Infinity);
    timers.push({ key: 'expire', atMs: Number.isFinite(next) ? next : null, body: { op: 'expire' } satisfies TypingMessage });
  }
  if (listChanged) outputs.push({ type: 'typing', room_id: state.roomId, user_ids: after, changes: typingChanges(before, after) });
  if (keepalive.length) outputs.push({ type: 'typing_keepalive', room_id: state.roomId, user_ids: keepalive });
  if (toldChanged) {
    const next = Object.values(told).reduce((m, t) => Math.min(m, t + KEEPALIVE_MS), Infinity);
    timers.push({ key: 'keepalive', atMs: Number.isFinite(next) ? next : null, body: { op: 'keepalive' } satisfies TypingMessage });
  }
  const nextState: TypingState = { roomId: state.roomId, until };
  if (ourServer) nextState.told = told;
  return { state: nextState, reply: { ok: true }, writes, outputs, timers };
}

/** The stored list is the truth (it is what /sync reads for rooms given in full); the blob keeps `told`. */
async function hydrateTyping(ctx: ShellContext, stored: unknown, roomId: string): Promise<TypingState> {
  const raw = await ctx.redis.hgetall(ctx.keys.data(roomData.typing(roomId)));
  const until: Record<string, number> = {};
  for (const [u, t] of Object.entries(raw)) until[u] = Number(t);
  const told = (stored as { told?: unknown } | undefined)?.told;
  return told && typeof told === 'object' ? { roomId, until, told: told as Record<string, number> } : { roomId, until };
}

/** `ourServer`: this server's name when federation is on (see the header: keeping our typists alive elsewhere). */
export function typingActor(ourServer?: string): ActorKind<TypingState, TypingMessage, { ok: true }> {
  return {
    kind: 'typing',
    family: 'room',
    initialState: (roomId) => ({ roomId, until: {} }),
    hydrate: hydrateTyping,
    // The hash holds the list; the blob marks that the actor has run, and keeps `told`.
    serialize: (s) => (s.told ? { roomId: s.roomId, told: s.told } : { roomId: s.roomId }),
    decide: (state, msg) => decideTyping(state, msg, ourServer),
    // Every typing notice of a room goes through this one actor: with many typists (or a burst
    // of renewals) the commits, not the decisions, are the cost, so what waits in the mailbox is
    // committed together (the runtime's group commit; decide is pure, there is no shell).
    batch: { max: 100, accepts: () => true },
  };
}
