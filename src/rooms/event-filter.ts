/**
 * Matching events against a RoomEventFilter (the filter's `types`, `senders`, `rooms`,
 * `contains_url`): used by `/messages`, `/context` and pagination, and by /sync. Parsing filters
 * from requests stays with the client API (src/api/client/room-common.ts).
 */
import { isJsonObject, type JsonObject, type JsonValue } from '../protocol/json';
import { compileGlob, type Glob } from '../protocol/glob';

export interface RoomEventFilter {
  types?: string[];
  not_types?: string[];
  senders?: string[];
  not_senders?: string[];
  /** Rooms whose events pass (absent: all); `not_rooms` wins over it. */
  rooms?: string[];
  not_rooms?: string[];
  contains_url?: boolean;
  /**
   * MSC3874 (`org.matrix.msc3874.rel_types` / `not_rel_types`): events whose `m.relates_to`
   * has one of these `rel_type`s pass (an event without a relation does not) / are left out.
   * Clients use it to hide thread replies or edits from the main timeline.
   */
  rel_types?: string[];
  not_rel_types?: string[];
  lazy_load_members?: boolean;
  limit?: number;
}

/** Whether a filter's `rooms` / `not_rooms` let this room's events through at all. */
export function filterAllowsRoom(f: RoomEventFilter, roomId: string): boolean {
  if (f.not_rooms?.includes(roomId)) return false;
  return !f.rooms || f.rooms.includes(roomId);
}

/**
 * A filter's `types` / `not_types` as one test: literal entries in a set, entries with `*` (the
 * only wildcard the spec gives filters, case-sensitive) as globs matched in time linear in the
 * type (src/protocol/glob.ts; never a backtracking RegExp, which a pattern like
 * `*a*a*a*a*a*a*a*b` held for seconds). With globs, answers are remembered for a few dozen
 * types, as /sync asks about every state event of a room and a room has few distinct types.
 * Built on first use and kept with the filter object; filters are not changed once parsed.
 */
const typeTests = new WeakMap<{ types?: string[]; not_types?: string[] }, (type: string) => boolean>();
const TYPE_ANSWERS_MAX = 64;

interface TypeListTest {
  test: (type: string) => boolean;
  hasGlobs: boolean;
}

function typeListTest(list: readonly string[]): TypeListTest {
  const literals = new Set<string>();
  const globs: Glob[] = [];
  for (const p of list) {
    if (p.includes('*')) globs.push(compileGlob(p, { wildcards: 'star' }));
    else literals.add(p);
  }
  return { test: (type) => literals.has(type) || globs.some((g) => g.test(type)), hasGlobs: globs.length > 0 };
}

function typeTestOf(f: { types?: string[]; not_types?: string[] }): (type: string) => boolean {
  let test = typeTests.get(f);
  if (test) return test;
  const include = f.types ? typeListTest(f.types) : null;
  const exclude = f.not_types ? typeListTest(f.not_types) : null;
  const decide = (type: string) => !(exclude?.test(type) ?? false) && (include?.test(type) ?? true);
  if (include?.hasGlobs || exclude?.hasGlobs) {
    const answers = new Map<string, boolean>();
    test = (type) => {
      let v = answers.get(type);
      if (v === undefined) {
        v = decide(type);
        if (answers.size >= TYPE_ANSWERS_MAX) answers.delete(answers.keys().next().value!);
        answers.set(type, v);
      }
      return v;
    };
  } else {
    test = decide;
  }
  typeTests.set(f, test);
  return test;
}

export function filterMatches(f: RoomEventFilter, event: JsonObject): boolean {
  const type = String(event.type);
  const sender = String(event.sender);
  if ((f.types || f.not_types) && !typeTestOf(f)(type)) return false;
  if (f.not_senders?.includes(sender)) return false;
  if (f.senders && !f.senders.includes(sender)) return false;
  if (f.rel_types || f.not_rel_types) {
    const relType = relTypeOf(event);
    if (relType !== null && f.not_rel_types?.includes(relType)) return false;
    if (f.rel_types && (relType === null || !f.rel_types.includes(relType))) return false;
  }
  if (f.contains_url !== undefined) {
    const content = event.content;
    const hasUrl = isJsonObject(content as JsonValue) && typeof (content as JsonObject).url === 'string';
    if (hasUrl !== f.contains_url) return false;
  }
  return true;
}

/** Whether the filter's `types` / `not_types` let an event of this type through (the rest of the filter aside). */
export function filterAllowsType(f: RoomEventFilter, type: string): boolean {
  return !(f.types || f.not_types) || typeTestOf(f)(type);
}

/** The `rel_type` of an event's `m.relates_to`, if it has one (as Synapse reads it for filters). */
function relTypeOf(event: JsonObject): string | null {
  const content = event.content;
  if (!isJsonObject(content as JsonValue)) return null;
  const rel = (content as JsonObject)['m.relates_to'];
  if (!isJsonObject(rel as JsonValue)) return null;
  const t = (rel as JsonObject).rel_type;
  return typeof t === 'string' ? t : null;
}
