/**
 * `required_state`: which state entries a room sends, and what changed since the connection's last
 * answer. Pure: state is a map `type\0state_key → event id` (RoomReader's StateMap).
 *
 * Pairs as MSC4186 defines them: `["*", "*"]` is all state; `[type, "*"]` every key of a type;
 * `["*", key]` that key of every type; `["m.room.member", "$LAZY"]` the members of the timeline's
 * senders (tracked per room by the connection, so each goes once); `$ME` as a state key is the
 * user's own id.
 */
import type { RequiredStatePairs } from './request';

export const LAZY = '$LAZY';
export const ME = '$ME';
const WILDCARD = '*';
const MEMBER = 'm.room.member';

export interface RequiredState {
  all: boolean;
  /** Keys wanted per type ('*': every key of that type). */
  byType: Map<string, Set<string> | '*'>;
  /** State keys wanted whatever the type. */
  anyType: Set<string>;
  lazyMembers: boolean;
}

export function emptyRequiredState(): RequiredState {
  return { all: false, byType: new Map(), anyType: new Set(), lazyMembers: false };
}

/** The pairs of one list or subscription, `$ME` resolved. */
export function compileRequiredState(pairs: RequiredStatePairs, userId: string): RequiredState {
  const rs = emptyRequiredState();
  for (const [type, rawKey] of pairs) addPair(rs, type, rawKey === ME ? userId : rawKey);
  return rs;
}

function addPair(rs: RequiredState, type: string, key: string): void {
  if (type === WILDCARD && key === WILDCARD) rs.all = true;
  else if (type === WILDCARD) rs.anyType.add(key);
  else if (type === MEMBER && key === LAZY) rs.lazyMembers = true;
  else if (key === WILDCARD) rs.byType.set(type, '*');
  else {
    const keys = rs.byType.get(type);
    if (keys === '*') return;
    if (keys) keys.add(key);
    else rs.byType.set(type, new Set([key]));
  }
}

/** A room in several lists and subscriptions gets the union of their required state. */
export function mergeRequiredState(a: RequiredState, b: RequiredState): RequiredState {
  const out: RequiredState = { all: a.all || b.all, byType: new Map(), anyType: new Set([...a.anyType, ...b.anyType]), lazyMembers: a.lazyMembers || b.lazyMembers };
  for (const src of [a, b]) {
    for (const [type, keys] of src.byType) {
      const have = out.byType.get(type);
      if (have === '*' || keys === '*') out.byType.set(type, '*');
      else out.byType.set(type, new Set([...(have ?? []), ...keys]));
    }
  }
  return out;
}

/** Whether the entry `type\0stateKey` is wanted (lazy members apart: `lazySent` names them). */
export function wants(rs: RequiredState, type: string, stateKey: string, lazy: ReadonlySet<string> | null = null): boolean {
  if (rs.all || rs.anyType.has(stateKey)) return true;
  const keys = rs.byType.get(type);
  if (keys === '*' || keys?.has(stateKey)) return true;
  return type === MEMBER && rs.lazyMembers && lazy !== null && lazy.has(stateKey);
}

function splitKey(key: string): [string, string] {
  const i = key.indexOf('\u0000');
  return [key.slice(0, i), key.slice(i + 1)];
}

/**
 * The entries of `state` wanted (event ids, in the map's order), looking up exact keys directly so
 * that a big room's every member is not visited when only a few types are asked for.
 */
export function selectState(rs: RequiredState, state: ReadonlyMap<string, string>, lazy: ReadonlySet<string> | null = null): string[] {
  const wildcardish = rs.all || rs.anyType.size > 0 || [...rs.byType.values()].some((k) => k === '*');
  if (wildcardish) {
    const out: string[] = [];
    for (const [key, id] of state) {
      const [type, sk] = splitKey(key);
      if (wants(rs, type, sk, lazy)) out.push(id);
    }
    return out;
  }
  const out = new Set<string>();
  for (const [type, keys] of rs.byType) {
    for (const k of keys as Set<string>) {
      const id = state.get(`${type}\u0000${k}`);
      if (id) out.add(id);
    }
  }
  if (rs.lazyMembers && lazy) {
    for (const u of lazy) {
      const id = state.get(`${MEMBER}\u0000${u}`);
      if (id) out.add(id);
    }
  }
  return [...out];
}

/**
 * What changed between the state last sent from (`before`) and now (`after`), among the wanted
 * entries: the event ids to send (changed or new entries). Entries that disappeared (a state reset)
 * have no event to send; the unstable shape has no way to say so (v4 sends stubs).
 */
export function changedState(rs: RequiredState, before: ReadonlyMap<string, string>, after: ReadonlyMap<string, string>, lazy: ReadonlySet<string> | null = null): { changed: string[]; removed: string[] } {
  const changed: string[] = [];
  const removed: string[] = [];
  for (const [key, id] of after) {
    if (before.get(key) === id) continue;
    const [type, sk] = splitKey(key);
    if (wants(rs, type, sk, lazy)) changed.push(id);
  }
  for (const key of before.keys()) {
    if (after.has(key)) continue;
    const [type, sk] = splitKey(key);
    if (wants(rs, type, sk, lazy)) removed.push(key);
  }
  return { changed, removed };
}

/** A stable text for a config, stored per room so a changed config is noticed. */
export function requiredStateFingerprint(rs: RequiredState): string {
  const types = [...rs.byType.entries()].map(([t, k]) => [t, k === '*' ? '*' : [...k].sort()] as const).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return JSON.stringify([rs.all, rs.lazyMembers, [...rs.anyType].sort(), types]);
}
