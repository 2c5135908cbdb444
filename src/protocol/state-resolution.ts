/**
 * State resolution v2 (room versions 2–11, content/rooms/fragments/v2-state-res.md) and its v12
 * revision (content/rooms/v12.md, MSC4297; `RoomVersion.stateRes === 'v2.1'`, not spec wording).
 * `resolveState` is the one entry point for every room version: room version 1 is handed to
 * state-resolution-v1.ts.
 * Comments quote the spec's definitions and number the steps of its "Algorithm" section so the
 * code can be read beside it.
 *
 * Everything runs on an in-memory auth graph: event ids are interned to small integers the first
 * time they are reached, each event's `auth_events` are fetched and de-duplicated once, and every
 * walk (auth chains, auth difference, conflicted state subgraph, topological sort, mainline) is
 * linear in the part of the auth DAG it touches. There are no per-event auth-chain sets (they
 * would be quadratic on a long chain).
 *
 * Two readings the spec leaves open, and the one taken here:
 * - The *auth chain* of E excludes E itself (spec text; ruma and gomatrixserverlib agree, Synapse
 *   counts the state events themselves as part of their set's chain). It only changes whether an
 *   unconflicted state event can land in the auth difference.
 * - Step 1's "events in the auth chain of P which also belong to the full conflicted set", and
 *   the "DAG formed by auth events" of the reverse topological power ordering, follow auth edges
 *   between events of the full conflicted set only — what Synapse and ruma do. State resolution
 *   exists so that every server reaches the same state, so the reading the federation uses is the
 *   one taken. (A wider reading would keep ancestry through a non-conflicted event between two
 *   events of X; for v2.1 the readings cannot differ, as every auth path between two events of the
 *   full conflicted set stays inside it by the definition of the conflicted state subgraph.)
 *
 * Pure: no I/O; events come from the caller's `getEvent`.
 */
import { checkEventAuth, isPowerEvent, userPowerLevel } from './auth-rules';
import { stateKeyOf, type Pdu, type StateLookup, type StateMap } from './pdu';
import type { RoomVersion } from './room-versions';
import { resolveStateV1 } from './state-resolution-v1';

export interface StateResolutionInput {
  version: RoomVersion;
  /** The state sets to resolve (one per forward extremity / prev event). */
  stateSets: StateMap[];
  /**
   * Synchronous event lookup; the caller pre-loads every event the algorithm may touch (state
   * events of all sets and their full auth chains; for v12, the create event). Missing → Error.
   */
  getEvent(id: string): Pdu | undefined;
  /**
   * Whether an event was rejected. "Rejected auth events are deliberately excluded from use in the
   * iterative auth checks": an event's auth events that are rejected are not used for keys missing
   * from the partially resolved state. Defaults to "nothing is rejected".
   */
  isRejected?(id: string): boolean;
}

const POWER_LEVELS_KEY = stateKeyOf('m.room.power_levels', '');
const CREATE_KEY = stateKeyOf('m.room.create', '');

// ---------------------------------------------------------------------------------------------
// Public entry point
// ---------------------------------------------------------------------------------------------

/**
 * The resolution of `input.stateSets` by the room version's algorithm: v2 / v2.1 here
 * (content/rooms/fragments/v2-state-res.md, "Algorithm"), v1 in state-resolution-v1.ts.
 */
export function resolveState(input: StateResolutionInput): StateMap {
  const { version, stateSets } = input;
  // Room version 1 has its own algorithm (state-resolution-v1.ts); one entry point serves all.
  if (version.stateRes === 'v1') return resolveStateV1(input);
  const v21 = version.stateRes === 'v2.1';

  const { unconflicted, conflicted, perSet } = splitStateSets(stateSets);
  if (conflicted.size === 0) return unconflicted;

  const graph = new AuthGraph(version, input.getEvent, input.isRejected);
  const conflictedNodes = [...conflicted].map((id) => graph.node(id, 'a state set'));

  // Full conflicted set = conflicted state set ∪ auth difference (∪ conflicted state subgraph, v12).
  const full = new Marks();
  const fullList: number[] = [];
  const addFull = (n: number) => {
    if (full.get(n) === 0) {
      full.set(n, 1);
      fullList.push(n);
    }
  };
  conflictedNodes.forEach(addFull);
  authDifferenceNodes(graph, perSet, unconflicted).forEach(addFull);
  if (v21) conflictedSubgraphNodes(graph, conflictedNodes).forEach(addFull);

  // 1. Select the set X of all power events that appear in the full conflicted set. For each such
  //    power event P, enlarge X by adding the events in the auth chain of P which also belong to
  //    the full conflicted set. Sort X into a list using the reverse topological power ordering.
  const powerEvents = fullList.filter((n) => isPowerEvent(graph.pdu(n)));
  const inX = new Marks();
  const x: number[] = [];
  for (const n of powerEvents) {
    inX.set(n, 1);
    x.push(n);
  }
  // The auth chains are followed through events of the full conflicted set only, as Synapse and
  // ruma do: state resolution exists so that servers agree, so the reading the federation uses
  // is the one we use (for v2.1 the two readings give the same result).
  for (let i = 0; i < x.length; i++) {
    for (const a of graph.authOf(x[i]!)) {
      if (full.get(a) === 1 && inX.get(a) === 0) {
        inX.set(a, 1);
        x.push(a);
      }
    }
  }
  const sortedX = reverseTopologicalPowerSort(graph, x);

  // 2. Apply the iterative auth checks algorithm, starting from the unconflicted state map (v12:
  //    from an *empty* state map), to the list from step 1 to get a partially resolved state.
  const partial = iterativeAuthChecks(graph, sortedX, v21 ? new Map() : new Map(unconflicted));

  // 3. Take all remaining events that weren't picked in step 1 and order them by the mainline
  //    ordering based on the power level in the partially resolved state obtained in step 2.
  const remaining = fullList.filter((n) => inX.get(n) === 0);
  const sortedRemaining = mainlineSort(graph, remaining, partial.get(POWER_LEVELS_KEY));

  // 4. Apply the iterative auth checks algorithm on the partial resolved state and the list of
  //    events from the previous step.
  const resolved = iterativeAuthChecks(graph, sortedRemaining, partial);

  // 5. Update the result by replacing any event with the event with the same key from the
  //    unconflicted state map, if such an event exists, to get the final resolved state.
  for (const [key, id] of unconflicted) resolved.set(key, id);
  return resolved;
}

// ---------------------------------------------------------------------------------------------
// The pieces, exported for tests and for callers that need one definition on its own
// ---------------------------------------------------------------------------------------------

/**
 * "If a given key K is present in every S_i with the same value V in each state map, then the
 * pair (K, V) belongs to the unconflicted state map. Otherwise, V belongs to the conflicted state
 * set." A key missing from some state set is therefore conflicted.
 */
export function splitConflictedState(stateSets: readonly StateMap[]): { unconflicted: StateMap; conflicted: Set<string> } {
  const { unconflicted, conflicted } = splitStateSets(stateSets);
  return { unconflicted, conflicted };
}

/**
 * The split, plus each set's conflicted entries (its events that are not in the unconflicted
 * state map), which the auth difference walks from. Every state set is read once.
 */
function splitStateSets(stateSets: readonly StateMap[]): { unconflicted: StateMap; conflicted: Set<string>; perSet: string[][] } {
  const unconflicted: StateMap = new Map();
  const conflicted = new Set<string>();
  const perSet: string[][] = stateSets.map(() => []);
  const first = stateSets[0];
  if (first === undefined) return { unconflicted, conflicted, perSet };
  // Keys of the first set: unconflicted iff every other set has the same event.
  for (const [key, id] of first) {
    let same = true;
    for (let i = 1; same && i < stateSets.length; i++) same = stateSets[i]!.get(key) === id;
    if (same) {
      unconflicted.set(key, id);
      continue;
    }
    stateSets.forEach((set, i) => {
      const other = set.get(key);
      if (other !== undefined) {
        conflicted.add(other);
        perSet[i]!.push(other);
      }
    });
  }
  // Keys the first set lacks are conflicted wherever they appear.
  for (let i = 1; i < stateSets.length; i++) {
    for (const [key, id] of stateSets[i]!) {
      if (first.has(key)) continue;
      conflicted.add(id);
      perSet[i]!.push(id);
    }
  }
  return { unconflicted, conflicted, perSet };
}

/**
 * The auth difference: ∪C_i − ∩C_i, where C_i is the full auth chain of state set S_i (the union
 * of the auth chains of its events).
 */
export function authDifference(input: StateResolutionInput): Set<string> {
  const graph = new AuthGraph(input.version, input.getEvent, input.isRejected);
  const { unconflicted, perSet } = splitStateSets(input.stateSets);
  return new Set(authDifferenceNodes(graph, perSet, unconflicted).map((n) => graph.id(n)));
}

/**
 * The conflicted state subgraph (v12): the union of all `auth_events` paths between pairs of events
 * of the conflicted state set, endpoints included.
 */
export function conflictedStateSubgraph(conflictedEventIds: Iterable<string>, version: RoomVersion, getEvent: (id: string) => Pdu | undefined): Set<string> {
  const graph = new AuthGraph(version, getEvent, undefined);
  const nodes = [...new Set(conflictedEventIds)].map((id) => graph.node(id, 'the conflicted state set'));
  const out = new Set(conflictedSubgraphNodes(graph, nodes).map((n) => graph.id(n)));
  return out;
}

/**
 * The reverse topological power ordering of `eventIds`: Kahn's algorithm over the auth DAG,
 * choosing at each step the candidate whose sender has the greatest power level (from the event's
 * own auth events), then the smallest origin_server_ts, then the smallest event id.
 */
export function reverseTopologicalPowerOrder(eventIds: Iterable<string>, version: RoomVersion, getEvent: (id: string) => Pdu | undefined): string[] {
  const graph = new AuthGraph(version, getEvent, undefined);
  const nodes = [...new Set(eventIds)].map((id) => graph.node(id, 'the events to sort'));
  return reverseTopologicalPowerSort(graph, nodes).map((n) => graph.id(n));
}

/** The mainline position of an event relative to the mainline of `powerLevelsEventId` (Infinity: none). */
export function mainlinePosition(eventId: string, powerLevelsEventId: string | undefined, version: RoomVersion, getEvent: (id: string) => Pdu | undefined): number {
  const graph = new AuthGraph(version, getEvent, undefined);
  const mainline = new Mainline(graph, powerLevelsEventId === undefined ? undefined : graph.node(powerLevelsEventId, 'the mainline'));
  return mainline.position(graph.node(eventId, 'the events to sort'));
}

/** The mainline ordering of `eventIds` based on `powerLevelsEventId` (smallest first). */
export function mainlineOrder(eventIds: Iterable<string>, powerLevelsEventId: string | undefined, version: RoomVersion, getEvent: (id: string) => Pdu | undefined): string[] {
  const graph = new AuthGraph(version, getEvent, undefined);
  const nodes = [...new Set(eventIds)].map((id) => graph.node(id, 'the events to sort'));
  return mainlineSort(graph, nodes, powerLevelsEventId).map((n) => graph.id(n));
}

/** Event ids compared by Unicode code point (what "x's event_id is less than y's" means). */
export function compareEventIds(a: string, b: string): number {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const ca = a.charCodeAt(i);
    const cb = b.charCodeAt(i);
    if (ca !== cb) return codePointRank(ca) - codePointRank(cb);
  }
  return a.length - b.length;
}

/**
 * UTF-16 code units compare like code points except that surrogates (astral characters) must sort
 * after U+E000–U+FFFF. Moving surrogates up by 0x2000 and the upper BMP down by 0x800 fixes that.
 */
function codePointRank(cu: number): number {
  if (cu >= 0xe000) return cu - 0x800;
  if (cu >= 0xd800) return cu + 0x2000;
  return cu;
}

// ---------------------------------------------------------------------------------------------
// The auth graph
// ---------------------------------------------------------------------------------------------

/** A growable int array defaulting to 0, indexed by graph node. */
class Marks {
  private a = new Int32Array(256);
  get(i: number): number {
    return i < this.a.length ? this.a[i]! : 0;
  }
  set(i: number, v: number): void {
    if (i >= this.a.length) {
      let len = this.a.length * 2;
      while (len <= i) len *= 2;
      const b = new Int32Array(len);
      b.set(this.a);
      this.a = b;
    }
    this.a[i] = v;
  }
}

const NO_NODE = -1;
const UNKNOWN = -2;

/**
 * Events interned as integers, with their `auth_events` resolved (and de-duplicated) once. This is
 * the memo every walk shares; it grows as walks reach new events.
 */
class AuthGraph {
  private readonly ids: string[] = [];
  private readonly events: Pdu[] = [];
  private readonly index = new Map<string, number>();
  private readonly auth: (readonly number[] | undefined)[] = [];
  private readonly firstPl: number[] = [];
  private readonly rejectedFn: (id: string) => boolean;

  constructor(
    readonly version: RoomVersion,
    private readonly getEvent: (id: string) => Pdu | undefined,
    isRejected: ((id: string) => boolean) | undefined,
  ) {
    this.rejectedFn = isRejected ?? (() => false);
  }

  /** The node for `id`, fetching the event the first time. */
  node(id: string, from: string): number {
    const known = this.index.get(id);
    if (known !== undefined) return known;
    const event = this.getEvent(id);
    if (!event) throw new Error(`state resolution: event ${id} (from ${from}) is missing; getEvent must provide every state event and its full auth chain`);
    const n = this.ids.length;
    this.ids.push(id);
    this.events.push(event);
    this.firstPl.push(UNKNOWN);
    this.index.set(id, n);
    return n;
  }

  id(n: number): string {
    return this.ids[n]!;
  }

  pdu(n: number): Pdu {
    return this.events[n]!;
  }

  isRejected(n: number): boolean {
    return this.rejectedFn(this.ids[n]!);
  }

  /** The event's `auth_events` as nodes (each once). */
  authOf(n: number): readonly number[] {
    let a = this.auth[n];
    if (a === undefined) {
      const e = this.events[n]!;
      const seen = new Set<number>();
      const out: number[] = [];
      for (const id of e.authEvents) {
        const m = this.node(id, `the auth_events of ${e.eventId}`);
        if (!seen.has(m)) {
          seen.add(m);
          out.push(m);
        }
      }
      a = out;
      this.auth[n] = a;
    }
    return a;
  }

  /** "the m.room.power_levels event in the auth_events of" n (the first one), or NO_NODE. */
  powerLevelsAuth(n: number): number {
    let p = this.firstPl[n]!;
    if (p === UNKNOWN) {
      p = NO_NODE;
      for (const a of this.authOf(n)) {
        const e = this.events[a]!;
        if (e.type === 'm.room.power_levels' && e.stateKey === '') {
          p = a;
          break;
        }
      }
      this.firstPl[n] = p;
    }
    return p;
  }

  /**
   * The event's auth events by state key. From v12 the create event is never listed but is part
   * of every event's auth (its id is the room id with `$` for `!`), so it is added here.
   */
  authEventsByKey(n: number, skipRejected: boolean): Map<string, Pdu> {
    const m = new Map<string, Pdu>();
    for (const a of this.authOf(n)) {
      const e = this.events[a]!;
      if (e.stateKey === undefined || (skipRejected && this.isRejected(a))) continue;
      m.set(stateKeyOf(e.type, e.stateKey), e);
    }
    const create = this.implicitCreate(n);
    if (create !== NO_NODE && !(skipRejected && this.isRejected(create))) m.set(CREATE_KEY, this.events[create]!);
    return m;
  }

  private implicitCreate(n: number): number {
    if (this.version.createEventInAuthEvents) return NO_NODE;
    const e = this.events[n]!;
    if (e.type === 'm.room.create' || e.roomId === undefined || !e.roomId.startsWith('!')) return NO_NODE;
    return this.node(`$${e.roomId.slice(1)}`, `the room id of ${e.eventId}`);
  }
}

/** Every event reachable from `starts` by one or more `auth_events` steps (each once). */
function walkAuthChains(graph: AuthGraph, starts: Iterable<number>): number[] {
  const seen = new Marks();
  const out: number[] = [];
  const stack: number[] = [];
  for (const s of starts) for (const a of graph.authOf(s)) stack.push(a);
  while (stack.length > 0) {
    const n = stack.pop()!;
    if (seen.get(n) !== 0) continue;
    seen.set(n, 1);
    out.push(n);
    for (const a of graph.authOf(n)) if (seen.get(a) === 0) stack.push(a);
  }
  return out;
}

/**
 * Of the nodes of `region` (which must contain the auth events of each of its nodes that matter),
 * those from which a target can be reached along auth edges inside `region`, targets included.
 * Walks the reversed edges once from the targets: linear in the region.
 */
function reachingTargets(graph: AuthGraph, region: readonly number[], isTarget: (n: number) => boolean): Marks {
  const local = new Marks(); // node → local index + 1
  region.forEach((n, i) => local.set(n, i + 1));
  // Reverse adjacency in compressed form: for each local node, the region nodes citing it.
  const counts = new Int32Array(region.length + 1);
  for (const u of region) for (const v of graph.authOf(u)) { const lv = local.get(v); if (lv !== 0) counts[lv]!++; }
  for (let i = 1; i <= region.length; i++) counts[i]! += counts[i - 1]!;
  const citers = new Int32Array(counts[region.length]!);
  const fill = counts.slice();
  for (const u of region) {
    for (const v of graph.authOf(u)) {
      const lv = local.get(v);
      if (lv !== 0) citers[fill[lv - 1]!++] = u;
    }
  }
  const reaches = new Marks();
  const stack: number[] = [];
  for (const n of region) if (isTarget(n)) { reaches.set(n, 1); stack.push(n); }
  while (stack.length > 0) {
    const v = stack.pop()!;
    const lv = local.get(v) - 1;
    for (let i = counts[lv]!; i < counts[lv + 1]!; i++) {
      const u = citers[i]!;
      if (reaches.get(u) === 0) {
        reaches.set(u, 1);
        stack.push(u);
      }
    }
  }
  return reaches;
}

// ---------------------------------------------------------------------------------------------
// Auth difference and conflicted state subgraph
// ---------------------------------------------------------------------------------------------

/**
 * ∪C_i − ∩C_i. The auth chains of the unconflicted events are in every C_i, so they are walked
 * once ("common") and each state set only walks its own conflicted events' chains down to that
 * common part: the work is the common chain plus, per set, what is particular to it.
 */
function authDifferenceNodes(graph: AuthGraph, conflictedPerSet: readonly (readonly string[])[], unconflicted: StateMap): number[] {
  const k = conflictedPerSet.length;
  if (k < 2) return [];
  const common = new Marks();
  for (const n of walkAuthChains(graph, [...unconflicted.values()].map((id) => graph.node(id, 'a state set')))) common.set(n, 1);

  const count = new Marks();
  const seenBy = new Marks();
  const touched: number[] = [];
  const stack: number[] = [];
  for (let i = 0; i < k; i++) {
    const stamp = i + 1;
    for (const id of conflictedPerSet[i]!) for (const a of graph.authOf(graph.node(id, 'a state set'))) stack.push(a);
    while (stack.length > 0) {
      const n = stack.pop()!;
      if (common.get(n) !== 0 || seenBy.get(n) === stamp) continue;
      seenBy.set(n, stamp);
      const c = count.get(n);
      if (c === 0) touched.push(n);
      count.set(n, c + 1);
      for (const a of graph.authOf(n)) if (common.get(a) === 0 && seenBy.get(a) !== stamp) stack.push(a);
    }
  }
  return touched.filter((n) => count.get(n) < k);
}

/**
 * "Starting from an event in the conflicted state set and following auth_events edges may lead to
 * another event in the conflicted state set. The union of all such paths between any pair of events
 * in the conflicted state set (including endpoints) forms [...] the conflicted state subgraph."
 * An event is on such a path iff it is reachable from a conflicted event and a conflicted event is
 * reachable from it: one forward walk and one backward walk.
 */
function conflictedSubgraphNodes(graph: AuthGraph, conflicted: readonly number[]): number[] {
  const isConflicted = new Marks();
  for (const c of conflicted) isConflicted.set(c, 1);
  const below = walkAuthChains(graph, conflicted);
  const region = [...new Set([...conflicted, ...below])];
  const reaches = reachingTargets(graph, region, (n) => isConflicted.get(n) === 1);
  const out: number[] = [];
  // Endpoints: a conflicted event belongs when a path leaves it (it reaches another) or arrives at it.
  const onPath = new Marks();
  for (const n of below) if (reaches.get(n) === 1) { onPath.set(n, 1); out.push(n); }
  for (const c of conflicted) {
    if (onPath.get(c) === 1) continue;
    if (graph.authOf(c).some((a) => reaches.get(a) === 1)) { onPath.set(c, 1); out.push(c); }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Reverse topological power ordering
// ---------------------------------------------------------------------------------------------

/** A binary min-heap of graph nodes under `less`. */
class NodeHeap {
  private readonly items: number[] = [];
  constructor(private readonly less: (a: number, b: number) => boolean) {}
  get size(): number {
    return this.items.length;
  }
  push(n: number): void {
    const h = this.items;
    h.push(n);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(h[i]!, h[p]!)) break;
      [h[i], h[p]] = [h[p]!, h[i]!];
      i = p;
    }
  }
  pop(): number {
    const h = this.items;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && this.less(h[l]!, h[m]!)) m = l;
        if (r < h.length && this.less(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top;
  }
}

/** "x's sender has greater power level than y's sender, when looking at their respective auth_events". */
function senderPowerLevel(graph: AuthGraph, n: number): number {
  const byKey = graph.authEventsByKey(n, false);
  const lookup: StateLookup = { get: (type, key) => byKey.get(stateKeyOf(type, key)) };
  return userPowerLevel(graph.pdu(n).sender, lookup, graph.version);
}

/**
 * Kahn's algorithm on the auth DAG restricted to `nodes`, earliest first, choosing the smallest
 * candidate at each step (greater sender power, then smaller origin_server_ts, then smaller event
 * id). Auth-chain ancestry is respected even through events outside `nodes`: those "intermediate"
 * events (below some node and above another) take part in the sort but are never output, and are
 * released as soon as they are free so they never hold back a choice.
 */
function reverseTopologicalPowerSort(graph: AuthGraph, nodes: readonly number[]): number[] {
  if (nodes.length === 0) return [];
  const inSet = new Marks();
  for (const n of nodes) inSet.set(n, 1);
  // The sort graph is the auth edges between the nodes themselves (Synapse's and ruma's reading
  // of "the DAG formed by auth events"; ancestry through events outside the set is not followed).
  const sortNodes = nodes;
  const inSort = inSet;

  const power = new Map<number, number>();
  for (const n of nodes) power.set(n, senderPowerLevel(graph, n));
  const less = (a: number, b: number): boolean => {
    const pa = power.get(a)!;
    const pb = power.get(b)!;
    if (pa !== pb) return pa > pb; // Infinity-safe: no subtraction
    const ta = graph.pdu(a).originServerTs;
    const tb = graph.pdu(b).originServerTs;
    if (ta !== tb) return ta < tb;
    return compareEventIds(graph.id(a), graph.id(b)) < 0;
  };

  // Out-degree = auth events still unsorted; citers = who to release when a node is sorted.
  const pending = new Marks();
  const citers = new Map<number, number[]>();
  for (const u of sortNodes) {
    let d = 0;
    for (const v of graph.authOf(u)) {
      if (inSort.get(v) === 0) continue;
      d++;
      let list = citers.get(v);
      if (!list) citers.set(v, (list = []));
      list.push(u);
    }
    pending.set(u, d);
  }

  const heap = new NodeHeap(less);
  const freeIntermediates: number[] = [];
  const ready = (n: number) => (inSet.get(n) === 1 ? heap.push(n) : freeIntermediates.push(n));
  for (const n of sortNodes) if (pending.get(n) === 0) ready(n);

  const out: number[] = [];
  const release = (n: number) => {
    for (const u of citers.get(n) ?? []) {
      const d = pending.get(u) - 1;
      pending.set(u, d);
      if (d === 0) ready(u);
    }
  };
  for (;;) {
    while (freeIntermediates.length > 0) release(freeIntermediates.pop()!);
    if (heap.size === 0) break;
    const n = heap.pop();
    out.push(n);
    release(n);
  }
  if (out.length !== nodes.length) throw new Error('state resolution: the auth_events of the events to sort contain a cycle');
  return out;
}

// ---------------------------------------------------------------------------------------------
// Mainline ordering
// ---------------------------------------------------------------------------------------------

/** The mainline of a power levels event P0 and memoised mainline positions of other events. */
class Mainline {
  /** Mainline event → i (P_i). */
  private readonly index = new Map<number, number>();
  /** Power levels event (not on the mainline) → the mainline position it leads to. */
  private readonly memo = new Map<number, number>();

  constructor(
    private readonly graph: AuthGraph,
    p0: number | undefined,
  ) {
    // "repeatedly fetch P_i+1, the m.room.power_levels event in the auth_events of P_i"
    for (let p = p0 ?? NO_NODE, i = 0; p !== NO_NODE; p = graph.powerLevelsAuth(p), i++) {
      if (this.index.has(p)) throw new Error('state resolution: the power levels mainline contains a cycle');
      this.index.set(p, i);
    }
  }

  /**
   * "Find the smallest index j ≥ 1 for which e_j belongs to the mainline of P": walk e_1, e_2, …
   * (each the power levels event in the previous one's auth events). e_0 itself is not looked at.
   * Every power levels event passed on the way is memoised, so each is walked once overall.
   */
  position(e: number): number {
    const path = new Set<number>();
    let p = this.graph.powerLevelsAuth(e);
    let result = Infinity;
    while (p !== NO_NODE) {
      const onMainline = this.index.get(p);
      if (onMainline !== undefined) { result = onMainline; break; }
      const known = this.memo.get(p);
      if (known !== undefined) { result = known; break; }
      if (path.has(p)) throw new Error('state resolution: power levels auth events contain a cycle');
      path.add(p);
      p = this.graph.powerLevelsAuth(p);
    }
    for (const q of path) this.memo.set(q, result);
    return result;
  }
}

/**
 * Mainline ordering based on the power levels event `p0`: x < y if x's mainline position is
 * greater (based on an earlier mainline event), then smaller origin_server_ts, then smaller id.
 */
function mainlineSort(graph: AuthGraph, nodes: readonly number[], p0: string | undefined): number[] {
  if (nodes.length === 0) return [];
  const mainline = new Mainline(graph, p0 === undefined ? undefined : graph.node(p0, 'the partially resolved state'));
  const keyed = nodes.map((n) => ({ n, pos: mainline.position(n), ts: graph.pdu(n).originServerTs, id: graph.id(n) }));
  keyed.sort((a, b) => {
    if (a.pos !== b.pos) return a.pos > b.pos ? -1 : 1;
    if (a.ts !== b.ts) return a.ts < b.ts ? -1 : 1;
    return compareEventIds(a.id, b.id);
  });
  return keyed.map((k) => k.n);
}

// ---------------------------------------------------------------------------------------------
// Iterative auth checks
// ---------------------------------------------------------------------------------------------

/**
 * "takes as input an initial room state and a sorted list of state events, and constructs a new
 * room state by iterating through the event list and applying the state event to the room state if
 * the state event is allowed by the authorisation rules. If the state event is not allowed by the
 * authorisation rules, then the event is ignored. If a (event_type, state_key) key that is required
 * for checking the authorisation rules is not present in the state, then the appropriate state
 * event from the event's auth_events is used if the auth event is not rejected."
 *
 * The rules read the state through a lookup, so exactly the keys they require are resolved: the
 * partially resolved state first, then the event's own (non-rejected) auth events. `state` is
 * updated in place and returned.
 */
function iterativeAuthChecks(graph: AuthGraph, events: readonly number[], state: StateMap): StateMap {
  for (const n of events) {
    const event = graph.pdu(n);
    if (event.stateKey === undefined) continue;
    const own = graph.authEventsByKey(n, true);
    const lookup: StateLookup = {
      get(type, key) {
        const k = stateKeyOf(type, key);
        const id = state.get(k);
        if (id !== undefined) return graph.pdu(graph.node(id, 'the partially resolved state'));
        return own.get(k);
      },
    };
    if (checkEventAuth(event, lookup, graph.version).allowed) state.set(stateKeyOf(event.type, event.stateKey), event.eventId);
  }
  return state;
}
