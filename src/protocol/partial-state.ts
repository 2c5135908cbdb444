/**
 * Faster joins (MSC3706, MSC3902), the pure parts of both sides:
 *
 * - The resident side (`partialJoinStateIds`): what a send_join answer keeps of the state before
 *   the join when the joining server asks for `omit_members`. Every non-member event, the joining
 *   user's own membership (it is an auth event of the join), and — when the room has neither a
 *   name nor a canonical alias — the heroes' memberships, so the joining server can name the room
 *   at once. The answer's auth chain is then the chain of what is kept (and of the join's own auth
 *   events), less the kept events themselves (src/api/federation/send-join.ts; the joining side's workflow is src/rooms/partial-state.ts).
 *
 * - The joining side (`recheckSinceJoin`): when the full state before our join arrives, the
 *   state of every event since the join is completed with the entries the partial state lacked
 *   (the member events left out; what the partial state had, and what events since changed, stay),
 *   and each event is checked again against its completed state before. An event that now fails
 *   is rejected (as Synapse rejects a partial-state event that fails when its state is
 *   recomputed), and a rejected state event's entry falls back to what it replaced, for the events
 *   after it and for the current state (`completeCurrentState`).
 */
import type { AuthResult } from './auth-rules';
import { stateKeyOf, type Pdu, type StateMap } from './pdu';

const MEMBER_PREFIX = 'm.room.member\u0000';

/** At most this many heroes (client-server API, room summary `m.heroes`). */
const MAX_HEROES = 5;

/**
 * The ids of the state before a join that a partial-state send_join answer keeps (see the
 * header). `members`: the room's memberships (user id → membership), for choosing heroes as /sync
 * does (joined or invited, sorted by user id; the joining user left out).
 */
export function partialJoinStateIds(stateBefore: StateMap, joiningUser: string, members: ReadonlyMap<string, string>): string[] {
  const ids = new Set<string>();
  for (const [key, id] of stateBefore) if (!key.startsWith(MEMBER_PREFIX)) ids.add(id);
  const own = stateBefore.get(stateKeyOf('m.room.member', joiningUser));
  if (own) ids.add(own);
  const named = stateBefore.has(stateKeyOf('m.room.name', '')) || stateBefore.has(stateKeyOf('m.room.canonical_alias', ''));
  if (!named) {
    const heroes = [...members]
      .filter(([user, m]) => user !== joiningUser && (m === 'join' || m === 'invite'))
      .map(([user]) => user)
      .sort()
      .slice(0, MAX_HEROES);
    for (const hero of heroes) {
      const id = stateBefore.get(stateKeyOf('m.room.member', hero));
      if (id) ids.add(id);
    }
  }
  return [...ids];
}

/** One event of the timeline from our join on, with the (partial) state before it as stored. */
export interface SinceJoinEvent {
  eventId: string;
  pdu: Pdu;
  before: StateMap;
}

export interface RecheckedEvent {
  eventId: string;
  before: StateMap;
  after: StateMap;
  /** Why the completed state refuses the event (absent: it stands). */
  rejected?: string;
}

export interface Recheck {
  /** The state keys the partial state lacked and the full state has (the member events left out). */
  filled: string[];
  events: RecheckedEvent[];
  /** State key → the entry a rejected state event's falls back to (undefined: none). */
  reverted: Map<string, { rejectedId: string; fallback: string | undefined }>;
}

/**
 * Complete the states of the events since our join (`events`, in timeline order, the join first)
 * with the full state before the join (`full`), and check each again with `authorize` (the auth
 * rules against a state map). The join itself is not judged again: the resident accepted it.
 */
export function recheckSinceJoin(full: StateMap, events: readonly SinceJoinEvent[], authorize: (pdu: Pdu, state: StateMap) => AuthResult): Recheck {
  const joinBefore = events[0]?.before ?? new Map<string, string>();
  const filled = [...full.keys()].filter((k) => !joinBefore.has(k));
  const reverted = new Map<string, { rejectedId: string; fallback: string | undefined }>();
  const out: RecheckedEvent[] = [];
  events.forEach((e, i) => {
    const before = new Map(e.before);
    for (const k of filled) if (!before.has(k)) before.set(k, full.get(k)!);
    for (const [k, r] of reverted) {
      if (before.get(k) !== r.rejectedId) continue;
      if (r.fallback === undefined) before.delete(k);
      else before.set(k, r.fallback);
    }
    const verdict = i === 0 ? { allowed: true as const } : authorize(e.pdu, before);
    const after = new Map(before);
    if (!verdict.allowed) {
      if (e.pdu.stateKey !== undefined) reverted.set(stateKeyOf(e.pdu.type, e.pdu.stateKey), { rejectedId: e.eventId, fallback: before.get(stateKeyOf(e.pdu.type, e.pdu.stateKey)) });
      out.push({ eventId: e.eventId, before, after, rejected: verdict.reason });
      return;
    }
    if (e.pdu.stateKey !== undefined) after.set(stateKeyOf(e.pdu.type, e.pdu.stateKey), e.eventId);
    out.push({ eventId: e.eventId, before, after });
  });
  return { filled, events: out, reverted };
}

/**
 * The room's current state once the full state is in: the partial current state, with the
 * entries it lacked taken from the full state before the join, and rejected state events' entries
 * fallen back. Answers the changes (state key → event id, undefined: removed).
 */
export function completeCurrentState(current: StateMap, full: StateMap, recheck: Recheck): Map<string, string | undefined> {
  const changes = new Map<string, string | undefined>();
  for (const k of recheck.filled) if (!current.has(k)) changes.set(k, full.get(k)!);
  for (const [k, r] of recheck.reverted) if (current.get(k) === r.rejectedId) changes.set(k, r.fallback);
  return changes;
}
