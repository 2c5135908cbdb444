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

/** One list's or subscription's config, compiled. */
interface Part {
  all: boolean;
  /** Keys wanted per type ('*': every key of that type). */
  byType: Map<string, Set<string> | '*'>;
  /** State keys wanted whatever the type. */
  anyType: Set<string>;
  /** v4's `exclude`: [type, key] patterns ('*' = any) left out of this part (not lazy members). */
  exclude: [string, string][];
}

/**
 * A room's combined config: the union of its parts (kept apart rather than merged, so that each
 * part's `exclude` applies to that part only, as MSC4186's "combining required_state" allows).
 */
export interface RequiredState {
  parts: Part[];
  lazyMembers: boolean;
}

export function emptyRequiredState(): RequiredState {
  return { parts: [], lazyMembers: false };
}

/** The pairs of one list or subscription, `$ME` resolved; `exclude` from the v4 shape. */
export function compileRequiredState(pairs: RequiredStatePairs, userId: string, exclude: RequiredStatePairs = []): RequiredState {
  const part: Part = { all: false, byType: new Map(), anyType: new Set(), exclude: exclude.map(([t, k]) => [t, k === ME ? userId : k]) };
  let lazyMembers = false;
  for (const [type, rawKey] of pairs) {
    const key = rawKey === ME ? userId : rawKey;
    if (type === MEMBER && key === LAZY) lazyMembers = true;
    else addPair(part, type, key);
  }
  return { parts: [part], lazyMembers };
}

function addPair(rs: Part, type: string, key: string): void {
  if (type === WILDCARD && key === WILDCARD) rs.all = true;
  else if (type === WILDCARD) rs.anyType.add(key);
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
  return { parts: [...a.parts, ...b.parts], lazyMembers: a.lazyMembers || b.lazyMembers };
}

function excluded(p: Part, type: string, stateKey: string): boolean {
  return p.exclude.some(([t, k]) => (t === WILDCARD || t === type) && (k === WILDCARD || k === stateKey));
}

function partWants(p: Part, type: string, stateKey: string): boolean {
  if (excluded(p, type, stateKey)) return false;
  if (p.all || p.anyType.has(stateKey)) return true;
  const keys = p.byType.get(type);
  return keys === '*' || !!keys?.has(stateKey);
}

/** Whether the entry `type\0stateKey` is wanted (lazy members apart: `lazy` names them). */
export function wants(rs: RequiredState, type: string, stateKey: string, lazy: ReadonlySet<string> | null = null): boolean {
  if (rs.parts.some((p) => partWants(p, type, stateKey))) return true;
  return type === MEMBER && rs.lazyMembers && lazy !== null && lazy.has(stateKey);
}

function splitKey(key: string): [string, string] {
  const i = key.indexOf('\u0000');
  return [key.slice(0, i), key.slice(i + 1)];
}

/**
 * The entries of `state` wanted (event ids), looking up exact keys directly so that a big room's
 * every member is not visited when only a few types are asked for.
 */
export function selectState(rs: RequiredState, state: ReadonlyMap<string, string>, lazy: ReadonlySet<string> | null = null): string[] {
  const wildcardish = rs.parts.some((p) => p.all || p.anyType.size > 0 || [...p.byType.values()].some((k) => k === '*'));
  if (wildcardish) {
    const out: string[] = [];
    for (const [key, id] of state) {
      const [type, sk] = splitKey(key);
      if (wants(rs, type, sk, lazy)) out.push(id);
    }
    return out;
  }
  const out = new Set<string>();
  for (const p of rs.parts) {
    for (const [type, keys] of p.byType) {
      for (const k of keys as Set<string>) {
        const id = state.get(`${type}\u0000${k}`);
        if (id && !excluded(p, type, k)) out.add(id);
      }
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
 * entries: the event ids to send (changed or new entries), and the keys of wanted entries that are
 * gone (a state reset; the v4 shape sends them as stubs, the unstable one cannot say it).
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
  const sorted = (xs: Iterable<string>) => [...xs].sort();
  const parts = rs.parts.map((p) => JSON.stringify([p.all, sorted(p.anyType), [...p.byType.entries()].map(([t, k]) => [t, k === '*' ? '*' : sorted(k)]).sort((a, b) => (String(a[0]) < String(b[0]) ? -1 : 1)), p.exclude.map((e) => e.join('\u0000')).sort()])).sort();
  return JSON.stringify([rs.lazyMembers, [...new Set(parts)]]);
}
