/**
 * State resolution v1 (room version 1, content/rooms/v1.md, "State resolution"). Room version 1
 * is known to reset state in some forks (the spec's warning); it is implemented as specified,
 * because every server in a v1 room must reach the same answer.
 *
 * The spec's passes, with *R* the result so far:
 *   - R starts as the union of the states, without the conflicting events;
 *   - conflicts between m.room.power_levels events, then m.room.join_rules, then m.room.member:
 *     sort the candidates by ascending depth, then descending sha1(event_id); put the first in R;
 *     each following one replaces it while the authorisation rules allow it in R, and the first
 *     that is not allowed stops the pass;
 *   - every other conflict: the event with the highest depth and lowest sha1(event_id) that the
 *     rules allow in R.
 *
 * Where the prose is loose, this does what Synapse does (synapse/state/v1.py), since that is what
 * v1 rooms in the federation were resolved with:
 *   - "A conflict occurs between states where those states have different event_ids for the same
 *     (event_type, state_key)": a key present in only some of the states, with one event, is not
 *     conflicted (unlike v2, where it is);
 *   - the join rules and member passes resolve each state key on its own, and R takes the
 *     winners of a pass only once the whole pass is done (so one user's conflicted membership is
 *     checked against the state without the other conflicted memberships);
 *   - when no candidate of an "other" conflict passes, the last one (lowest depth, highest sha1)
 *     is kept;
 *   - sha1 is over the UTF-8 bytes of the event id, compared as its hex digest.
 *
 * Pure: no I/O; events come from the caller's `getEvent`.
 */
import { createHash } from 'node:crypto';
import { checkEventAuth } from './auth-rules';
import { stateKeyOf, splitStateKey, type Pdu, type StateLookup, type StateMap } from './pdu';
import type { RoomVersion } from './room-versions';

export interface StateResolutionV1Input {
  version: RoomVersion;
  stateSets: StateMap[];
  /** Every event of the conflicted entries and of R that the authorisation rules read. Missing → Error. */
  getEvent(id: string): Pdu | undefined;
}

/** The resolution of `input.stateSets` by the room version 1 algorithm. */
export function resolveStateV1(input: StateResolutionV1Input): StateMap {
  const { stateSets } = input;
  if (stateSets.length === 0) return new Map();
  if (stateSets.length === 1) return new Map(stateSets[0]!);
  const { unconflicted, conflicted } = separateV1(stateSets);
  if (conflicted.size === 0) return unconflicted;

  const get = (id: string): Pdu => {
    const e = input.getEvent(id);
    if (!e) throw new Error(`state resolution v1: event ${id} is missing; getEvent must provide every state event of the states`);
    return e;
  };
  const candidates = new Map<string, Pdu[]>();
  for (const [key, ids] of conflicted) candidates.set(key, [...ids].map(get));

  const r = new Map(unconflicted);
  const passes: ((type: string) => boolean)[] = [(t) => t === 'm.room.power_levels', (t) => t === 'm.room.join_rules', (t) => t === 'm.room.member'];
  for (const inPass of passes) {
    const winners: [string, string][] = [];
    for (const [key, events] of candidates) {
      if (!inPass(splitStateKey(key)[0])) continue;
      winners.push([key, resolveAuthConflict(key, events, r, input)]);
    }
    for (const [key, id] of winners) r.set(key, id);
  }
  // "No other events affect the authorisation rules": the others are resolved against R as it
  // stands after the member pass, each on its own.
  const others: [string, string][] = [];
  for (const [key, events] of candidates) {
    if (r.has(key)) continue;
    others.push([key, resolveOtherConflict(events, r, input)]);
  }
  for (const [key, id] of others) r.set(key, id);
  return r;
}

/**
 * "A conflict occurs between states where those states have different event_ids for the same
 * (event_type, state_key)": the keys with more than one event across the states, and R = the
 * union of the rest.
 */
export function separateV1(stateSets: readonly StateMap[]): { unconflicted: StateMap; conflicted: Map<string, Set<string>> } {
  const unconflicted: StateMap = new Map();
  const conflicted = new Map<string, Set<string>>();
  for (const set of stateSets) {
    for (const [key, id] of set) {
      const already = conflicted.get(key);
      if (already) {
        already.add(id);
        continue;
      }
      const seen = unconflicted.get(key);
      if (seen === undefined) unconflicted.set(key, id);
      else if (seen !== id) {
        conflicted.set(key, new Set([seen, id]));
        unconflicted.delete(key);
      }
    }
  }
  return { unconflicted, conflicted };
}

/**
 * The ordering both kinds of pass use: ascending depth, then descending sha1(event_id) — the
 * order the auth passes walk; the "other" pass walks it from the end.
 */
export function orderV1(events: readonly Pdu[]): Pdu[] {
  const keyed = events.map((e) => ({ e, sha: sha1Hex(e.eventId) }));
  keyed.sort((a, b) => {
    if (a.e.depth !== b.e.depth) return a.e.depth < b.e.depth ? -1 : 1;
    return a.sha < b.sha ? 1 : a.sha > b.sha ? -1 : 0;
  });
  return keyed.map((k) => k.e);
}

export function sha1Hex(eventId: string): string {
  return createHash('sha1').update(eventId, 'utf8').digest('hex');
}

/**
 * Power levels, join rules and members: the first candidate goes into R; each following one
 * replaces it while allowed by the rules in R (with the candidate so far in place), and the
 * pass stops at the first one that is not allowed.
 */
function resolveAuthConflict(key: string, events: readonly Pdu[], r: StateMap, input: StateResolutionV1Input): string {
  const ordered = orderV1(events);
  let chosen = ordered[0]!;
  for (let i = 1; i < ordered.length; i++) {
    const candidate = ordered[i]!;
    const lookup = lookupIn(r, input, key, chosen);
    if (!checkEventAuth(candidate, lookup, input.version).allowed) break;
    chosen = candidate;
  }
  return chosen.eventId;
}

/** Any other conflict: the highest depth / lowest sha1 candidate the rules allow in R (else the last). */
function resolveOtherConflict(events: readonly Pdu[], r: StateMap, input: StateResolutionV1Input): string {
  const ordered = orderV1(events).reverse();
  const lookup = lookupIn(r, input);
  for (const e of ordered) if (checkEventAuth(e, lookup, input.version).allowed) return e.eventId;
  return ordered[ordered.length - 1]!.eventId;
}

/** R as the authorisation rules read it, with `key` (the conflict being resolved) set to `current`. */
function lookupIn(r: StateMap, input: StateResolutionV1Input, key?: string, current?: Pdu): StateLookup {
  return {
    get(type, stateKey) {
      const k = stateKeyOf(type, stateKey);
      if (k === key) return current;
      const id = r.get(k);
      if (id === undefined) return undefined;
      const e = input.getEvent(id);
      if (!e) throw new Error(`state resolution v1: event ${id} of the resolved state is missing`);
      return e;
    },
  };
}
