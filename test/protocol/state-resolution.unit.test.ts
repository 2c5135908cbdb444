/**
 * State resolution v2 / v2.1 as tiny DAGs. The scenarios are those of Synapse's
 * tests/state/test_v2.py and ruma's MSC4297 fixtures (the facts: who sends what on which fork and
 * what must win); the tables and the helper are ours.
 *
 * `runDag` builds the room the way a server would: events are created in a topological order of
 * their prev edges, the state before an event is the state after its single prev event or the
 * resolution (by the code under test) of the states after its prev events, and its auth_events are
 * picked from that state by the auth events selection algorithm. The assertion is on the state at
 * END, restricted to the keys whose value differs from the state at START.
 */
import { describe, expect, it } from 'vitest';
import { authEventSelection } from '../../src/protocol/auth-rules';
import type { JsonObject } from '../../src/protocol/json';
import { splitStateKey, stateKeyOf, type Pdu, type StateMap } from '../../src/protocol/pdu';
import { requireRoomVersion, type RoomVersion } from '../../src/protocol/room-versions';
import {
  authDifference,
  compareEventIds,
  conflictedStateSubgraph,
  mainlineOrder,
  mainlinePosition,
  resolveState,
  reverseTopologicalPowerOrder,
  splitConflictedState,
} from '../../src/protocol/state-resolution';

const ALICE = '@alice:example.com';
const BOB = '@bob:example.com';
const CHARLIE = '@charlie:example.com';
const EVELYN = '@evelyn:example.com';
const ZARA = '@zara:example.com';

const V10 = requireRoomVersion('10');
const V11 = requireRoomVersion('11');
const V12 = requireRoomVersion('12');

const join = { membership: 'join' };
const ban = { membership: 'ban' };

// ---------------------------------------------------------------------------------------------
// Event building
// ---------------------------------------------------------------------------------------------

/** Event ids are `$` + the node name; v12 room ids are `!` + the create node's name. */
const eid = (node: string) => `$${node}`;
const node = (eventId: string) => eventId.slice(1);
const OLD_ROOM = '!room:example.com';

interface RawEvent {
  id: string;
  type: string;
  key?: string;
  sender: string;
  content?: JsonObject;
  auth?: string[];
  prev?: string[];
  ts?: number;
  depth?: number;
}

/** A Pdu with an explicit id (no hashing is involved in state resolution). */
function makePdu(version: RoomVersion, e: RawEvent, createNode = 'CREATE'): Pdu {
  const isCreate = e.type === 'm.room.create';
  const roomId = version.roomIdFromCreateEvent ? (isCreate ? undefined : `!${createNode}`) : OLD_ROOM;
  const raw: JsonObject = { type: e.type, sender: e.sender, content: e.content ?? {}, origin_server_ts: e.ts ?? 0 };
  if (roomId !== undefined) raw.room_id = roomId;
  if (e.key !== undefined) raw.state_key = e.key;
  return {
    eventId: eid(e.id),
    roomId,
    type: e.type,
    stateKey: e.key,
    sender: e.sender,
    content: e.content ?? {},
    originServerTs: e.ts ?? 0,
    depth: e.depth ?? 0,
    prevEvents: (e.prev ?? []).map(eid),
    authEvents: (e.auth ?? []).map(eid),
    redacts: undefined,
    raw,
  };
}

/** A bag of events by id, for the explicit-graph tests. */
class EventBag {
  readonly events = new Map<string, Pdu>();
  constructor(readonly version: RoomVersion) {}
  add(...es: RawEvent[]): this {
    for (const e of es) this.events.set(eid(e.id), makePdu(this.version, e));
    return this;
  }
  readonly get = (id: string): Pdu | undefined => this.events.get(id);
  /** A state map from node names. */
  state(...nodes: string[]): StateMap {
    const m: StateMap = new Map();
    for (const n of nodes) {
      const e = this.events.get(eid(n));
      if (!e || e.stateKey === undefined) throw new Error(`no state event ${n}`);
      m.set(stateKeyOf(e.type, e.stateKey), e.eventId);
    }
    return m;
  }
  resolve(...sets: StateMap[]): StateMap {
    return resolveState({ version: this.version, stateSets: sets, getEvent: this.get });
  }
}

/** A resolved state as sorted node names. */
function names(state: StateMap): string[] {
  return [...state.values()].map(node).sort();
}

// ---------------------------------------------------------------------------------------------
// The DAG helper
// ---------------------------------------------------------------------------------------------

interface DagEvent {
  id: string;
  type: string;
  key?: string;
  sender: string;
  content?: JsonObject;
}

/** Every DAG starts like this (alice creates; bob, charlie and zara join a public room). */
const INITIAL: DagEvent[] = [
  { id: 'CREATE', type: 'm.room.create', key: '', sender: ALICE },
  { id: 'IMA', type: 'm.room.member', key: ALICE, sender: ALICE, content: join },
  { id: 'IPOWER', type: 'm.room.power_levels', key: '', sender: ALICE, content: { users: { [ALICE]: 100 } } },
  { id: 'IJR', type: 'm.room.join_rules', key: '', sender: ALICE, content: { join_rule: 'public' } },
  { id: 'IMB', type: 'm.room.member', key: BOB, sender: BOB, content: join },
  { id: 'IMC', type: 'm.room.member', key: CHARLIE, sender: CHARLIE, content: join },
  { id: 'IMZ', type: 'm.room.member', key: ZARA, sender: ZARA, content: join },
  { id: 'START', type: 'm.room.message', sender: ZARA },
];
const END: DagEvent = { id: 'END', type: 'm.room.message', sender: ZARA };
const INITIAL_CHAIN = ['START', 'IMZ', 'IMC', 'IMB', 'IJR', 'IPOWER', 'IMA', 'CREATE'];

/**
 * v12 content: the creator (alice) has infinite power and may not be listed in `users` of
 * m.room.power_levels (auth rule 12:10.4), so PL contents drop her; the create event has no
 * `creator`. v1–v10: `creator` is set.
 */
function contentFor(version: RoomVersion, e: DagEvent): JsonObject {
  const content: JsonObject = structuredClone(e.content ?? {});
  if (e.type === 'm.room.create') {
    content.room_version = version.id;
    if (version.createHasCreator) content.creator = e.sender;
  }
  if (e.type === 'm.room.power_levels' && version.privilegedCreators) {
    const users = content.users as JsonObject | undefined;
    if (users) delete users[ALICE];
  }
  return content;
}

interface DagResult {
  /** State (after) at each node. */
  stateAfter: Map<string, StateMap>;
  events: Map<string, Pdu>;
  /** Node names of the END state entries that differ from START; `-type|key` for keys lost. */
  changed: string[];
}

/**
 * Build the DAG `INITIAL + events + END` whose prev edges are the chains (each `[A, B, C]` means
 * A's prev includes B and B's prev includes C), creating events in a topological order that
 * follows the table order where the graph allows, with origin_server_ts counting up in that order.
 */
function runDag(version: RoomVersion, events: DagEvent[], chains: string[][]): DagResult {
  const all = [...INITIAL, ...events, END];
  const byId = new Map(all.map((e) => [e.id, e]));
  const prevs = new Map<string, Set<string>>(all.map((e) => [e.id, new Set<string>()]));
  for (const chain of [INITIAL_CHAIN, ...chains]) {
    for (let i = 0; i + 1 < chain.length; i++) {
      if (!byId.has(chain[i]!) || !byId.has(chain[i + 1]!)) throw new Error(`unknown node in ${chain.join(' → ')}`);
      prevs.get(chain[i]!)!.add(chain[i + 1]!);
    }
  }

  const pdus = new Map<string, Pdu>();
  const getEvent = (id: string) => pdus.get(id);
  const stateAfter = new Map<string, StateMap>();
  const done = new Set<string>();
  let ts = 0;
  while (done.size < all.length) {
    const next = all.find((e) => !done.has(e.id) && [...prevs.get(e.id)!].every((p) => done.has(p)));
    if (!next) throw new Error('the prev edges have a cycle');
    const prevIds = [...prevs.get(next.id)!];
    let before: StateMap;
    if (prevIds.length === 0) before = new Map();
    else if (prevIds.length === 1) before = new Map(stateAfter.get(prevIds[0]!)!);
    else before = resolveState({ version, stateSets: prevIds.map((p) => stateAfter.get(p)!), getEvent });

    const content = contentFor(version, next);
    const auth: string[] = [];
    for (const [type, key] of authEventSelection({ type: next.type, stateKey: next.key, sender: next.sender, content }, version)) {
      const id = before.get(stateKeyOf(type, key));
      if (id !== undefined) auth.push(node(id));
    }
    const depth = 1 + Math.max(0, ...prevIds.map((p) => pdus.get(eid(p))!.depth));
    const pdu = makePdu(version, { ...next, content, auth, prev: prevIds, ts: ts++, depth });
    pdus.set(pdu.eventId, pdu);

    const after = new Map(before);
    if (next.key !== undefined) after.set(stateKeyOf(next.type, next.key), pdu.eventId);
    stateAfter.set(next.id, after);
    done.add(next.id);
  }

  const start = stateAfter.get('START')!;
  const end = stateAfter.get('END')!;
  const changed: string[] = [];
  for (const [k, v] of end) if (start.get(k) !== v) changed.push(node(v));
  for (const k of start.keys()) if (!end.has(k)) changed.push(`-${splitStateKey(k).join('|')}`);
  return { stateAfter, events: pdus, changed: changed.sort() };
}

// ---------------------------------------------------------------------------------------------
// Scenarios (Synapse tests/state/test_v2.py), v2 (room version 10) and v2.1 (room version 12)
// ---------------------------------------------------------------------------------------------

interface Scenario {
  name: string;
  events: DagEvent[];
  chains: string[][];
  v10: string[];
  v12: string[];
}

const pl = (id: string, sender: string, users: Record<string, number>, extra: JsonObject = {}): DagEvent => ({ id, type: 'm.room.power_levels', key: '', sender, content: { users, ...extra } });
const topic = (id: string, sender: string): DagEvent => ({ id, type: 'm.room.topic', key: '', sender, content: { topic: id } });

const SCENARIOS: Scenario[] = [
  {
    // Alice bans bob on one fork while bob (a moderator) changes the power levels on the other:
    // the ban wins and bob's power levels change is lost.
    name: 'ban vs power levels',
    events: [
      pl('PA', ALICE, { [ALICE]: 100, [BOB]: 50 }),
      { id: 'MA', type: 'm.room.member', key: ALICE, sender: ALICE, content: join },
      { id: 'MB', type: 'm.room.member', key: BOB, sender: ALICE, content: ban },
      pl('PB', BOB, { [ALICE]: 100, [BOB]: 50 }),
    ],
    chains: [['END', 'MB', 'MA', 'PA', 'START'], ['END', 'PB', 'PA']],
    v10: ['MA', 'MB', 'PA'],
    v12: ['MA', 'MB', 'PA'],
  },
  {
    // Evelyn joins on one fork while alice makes the room invite-only on the other.
    name: 'join rule evasion',
    events: [
      { id: 'JR', type: 'm.room.join_rules', key: '', sender: ALICE, content: { join_rule: 'invite' } },
      { id: 'ME', type: 'm.room.member', key: EVELYN, sender: EVELYN, content: join },
    ],
    chains: [['END', 'JR', 'START'], ['END', 'ME', 'START']],
    v10: ['JR'],
    v12: ['JR'],
  },
  {
    // Bob (50) promotes charlie to 50, charlie then demotes himself; the other fork only has PA.
    name: 'offtopic power levels',
    events: [
      pl('PA', ALICE, { [ALICE]: 100, [BOB]: 50 }),
      pl('PB', BOB, { [ALICE]: 100, [BOB]: 50, [CHARLIE]: 50 }),
      pl('PC', CHARLIE, { [ALICE]: 100, [BOB]: 50, [CHARLIE]: 0 }),
    ],
    chains: [['END', 'PC', 'PB', 'PA', 'START'], ['END', 'PA']],
    v10: ['PC'],
    v12: ['PC'],
  },
  {
    // Alice demotes bob (PA2) while bob sets a topic (T3) on a fork from before: bob's topic is
    // not allowed under PA2, so alice's last topic stays.
    name: 'topic basic',
    events: [
      topic('T1', ALICE),
      pl('PA1', ALICE, { [ALICE]: 100, [BOB]: 50 }),
      topic('T2', ALICE),
      pl('PA2', ALICE, { [ALICE]: 100, [BOB]: 0 }),
      pl('PB', BOB, { [ALICE]: 100, [BOB]: 50 }),
      topic('T3', BOB),
    ],
    chains: [['END', 'PA2', 'T2', 'PA1', 'T1', 'START'], ['END', 'T3', 'PB', 'PA1']],
    v10: ['PA2', 'T2'],
    v12: ['PA2', 'T2'],
  },
  {
    // Bob sets a topic and is then banned; the other fork is from before the power levels that
    // gave bob his power. Bob's topic goes with him: the topic resets to alice's T1.
    name: 'topic reset',
    events: [
      topic('T1', ALICE),
      pl('PA', ALICE, { [ALICE]: 100, [BOB]: 50 }),
      topic('T2', BOB),
      { id: 'MB', type: 'm.room.member', key: BOB, sender: ALICE, content: ban },
    ],
    chains: [['END', 'MB', 'T2', 'PA', 'T1', 'START'], ['END', 'T1']],
    v10: ['MB', 'PA', 'T1'],
    v12: ['MB', 'PA', 'T1'],
  },
  {
    // As "topic basic", and then a merge (MZ1) and a later topic from alice: her T4 wins.
    name: 'topic with power levels reset',
    events: [
      topic('T1', ALICE),
      pl('PA1', ALICE, { [ALICE]: 100, [BOB]: 50 }),
      topic('T2', ALICE),
      pl('PA2', ALICE, { [ALICE]: 100, [BOB]: 0 }),
      pl('PB', BOB, { [ALICE]: 100, [BOB]: 50 }),
      topic('T3', BOB),
      { id: 'MZ1', type: 'm.room.message', sender: ZARA },
      topic('T4', ALICE),
    ],
    chains: [['END', 'T4', 'MZ1', 'PA2', 'T2', 'PA1', 'T1', 'START'], ['END', 'MZ1', 'T3', 'PB', 'PA1']],
    v10: ['PA2', 'T4'],
    v12: ['PA2', 'T4'],
  },
  {
    // Alice's PA2 makes power levels changes need 100; bob's PB (on a fork from PA1) fails under
    // it. T3 (cites PA2) and T4 (cites PB, sent later) compete for the topic: by mainline
    // position T3 is based on the newer power levels and wins, although T4 is later in time.
    name: 'mainline sort',
    events: [
      topic('T1', ALICE),
      pl('PA1', ALICE, { [ALICE]: 100, [BOB]: 50 }),
      topic('T2', ALICE),
      pl('PA2', ALICE, { [ALICE]: 100, [BOB]: 50 }, { events: { 'm.room.power_levels': 100 } }),
      pl('PB', BOB, { [ALICE]: 100, [BOB]: 50 }),
      topic('T3', BOB),
      topic('T4', ALICE),
    ],
    chains: [['END', 'T3', 'PA2', 'T2', 'PA1', 'T1', 'START'], ['END', 'T4', 'PB', 'PA1']],
    v10: ['PA2', 'T3'],
    v12: ['PA2', 'T3'],
  },
];

describe('resolveState on DAGs (Synapse test_v2 scenarios)', () => {
  for (const s of SCENARIOS) {
    it(`${s.name} (room version 10, v2)`, () => {
      expect(runDag(V10, s.events, s.chains).changed).toEqual([...s.v10].sort());
    });
    it(`${s.name} (room version 12, v2.1)`, () => {
      expect(runDag(V12, s.events, s.chains).changed).toEqual([...s.v12].sort());
    });
  }

  it('a merge with no conflicts returns the unconflicted state untouched', () => {
    const r = runDag(V10, [topic('T1', ALICE), { id: 'M1', type: 'm.room.message', sender: BOB }], [['END', 'T1', 'START'], ['END', 'M1', 'T1']]);
    expect(r.changed).toEqual(['T1']);
  });

  it('concurrent joins both land in the state', () => {
    const events: DagEvent[] = [
      { id: 'ME', type: 'm.room.member', key: EVELYN, sender: EVELYN, content: join },
      { id: 'MZ', type: 'm.room.member', key: ZARA, sender: ZARA, content: { membership: 'leave' } },
    ];
    const chains = [['END', 'ME', 'START'], ['END', 'MZ', 'START']];
    expect(runDag(V10, events, chains).changed).toEqual(['ME', 'MZ']);
    expect(runDag(V12, events, chains).changed).toEqual(['ME', 'MZ']);
  });
});

// ---------------------------------------------------------------------------------------------
// State resets: MSC4297's two problems, where v2 and v2.1 differ
// ---------------------------------------------------------------------------------------------

/**
 * The room both MSC4297 problems start from: alice creates a public room; bob and charlie join.
 * In v12 the create event is not cited (it is implied by the room id) and alice, as creator, is
 * not listed in the power levels.
 */
function msc4297Base(version: RoomVersion): EventBag {
  const v12 = version.privilegedCreators;
  const c = (ids: string[]) => (v12 ? ids : ['CREATE', ...ids]);
  return new EventBag(version).add(
    { id: 'CREATE', type: 'm.room.create', key: '', sender: ALICE, content: v12 ? { room_version: '12' } : { room_version: version.id }, ts: 0 },
    { id: 'MA', type: 'm.room.member', key: ALICE, sender: ALICE, content: join, auth: c([]), prev: ['CREATE'], ts: 1 },
    { id: 'P0', type: 'm.room.power_levels', key: '', sender: ALICE, content: v12 ? {} : { users: { [ALICE]: 100 } }, auth: c(['MA']), ts: 2 },
    { id: 'J0', type: 'm.room.join_rules', key: '', sender: ALICE, content: { join_rule: 'public' }, auth: c(['MA', 'P0']), ts: 3 },
    { id: 'MB', type: 'm.room.member', key: BOB, sender: BOB, content: join, auth: c(['P0', 'J0']), ts: 4 },
    { id: 'MC', type: 'm.room.member', key: CHARLIE, sender: CHARLIE, content: join, auth: c(['P0', 'J0']), ts: 5 },
  );
}

describe('state resets (MSC4297)', () => {
  /**
   * Problem A: alice makes the room invite-only (J1) and leaves. A server then hands out two
   * states that disagree on the join rules and on bob's and charlie's (display name) memberships.
   * v2 starts the power events from the unconflicted state, where alice has left, so neither
   * join rules event passes and the room ends up with no join rules at all. v2.1 starts from an
   * empty state and keeps alice's J1.
   */
  function problemA(version: RoomVersion): StateMap {
    const v12 = version.privilegedCreators;
    const c = (ids: string[]) => (v12 ? ids : ['CREATE', ...ids]);
    const bag = msc4297Base(version).add(
      { id: 'J1', type: 'm.room.join_rules', key: '', sender: ALICE, content: { join_rule: 'invite' }, auth: c(['P0', 'MA']), ts: 6 },
      { id: 'LA', type: 'm.room.member', key: ALICE, sender: ALICE, content: { membership: 'leave' }, auth: c(['P0', 'MA']), ts: 7 },
      { id: 'MB2', type: 'm.room.member', key: BOB, sender: BOB, content: { ...join, displayname: 'bob++' }, auth: c(['P0', 'MB', 'J1']), ts: 8 },
      { id: 'MC2', type: 'm.room.member', key: CHARLIE, sender: CHARLIE, content: { ...join, displayname: 'charlie++' }, auth: c(['P0', 'MC', 'J1']), ts: 9 },
    );
    return bag.resolve(bag.state('CREATE', 'P0', 'MC', 'J1', 'LA', 'MB2'), bag.state('CREATE', 'P0', 'J0', 'MB', 'LA', 'MC2'));
  }

  it('problem A, room version 11 (v2): the join rules are lost', () => {
    expect(names(problemA(V11))).toEqual(['CREATE', 'LA', 'MB2', 'MC2', 'P0']);
  });

  it('problem A, room version 12 (v2.1): the invite-only join rules stay', () => {
    expect(names(problemA(V12))).toEqual(['CREATE', 'J1', 'LA', 'MB2', 'MC2', 'P0']);
  });

  /**
   * Problem B: alice promotes bob (P1), bob promotes charlie (P2); zara and eve join after P2.
   * One state is stale on the power levels (P0) and has eve; the other has P2 and zara. P1 is in
   * both auth chains and not conflicted, so v2 checks bob's P2 against P0, where bob has no power,
   * and the power levels reset to P0. v2.1 adds P1 (on the path P2 → P1 → P0 between two
   * conflicted events) and keeps P2.
   */
  function problemB(version: RoomVersion): StateMap {
    const v12 = version.privilegedCreators;
    const c = (ids: string[]) => (v12 ? ids : ['CREATE', ...ids]);
    const users = (u: Record<string, number>) => (v12 ? Object.fromEntries(Object.entries(u).filter(([k]) => k !== ALICE)) : u);
    const bag = msc4297Base(version).add(
      { id: 'P1', type: 'm.room.power_levels', key: '', sender: ALICE, content: { users: users({ [ALICE]: 100, [BOB]: 50 }) }, auth: c(['P0', 'MA']), ts: 6 },
      { id: 'P2', type: 'm.room.power_levels', key: '', sender: BOB, content: { users: users({ [ALICE]: 100, [BOB]: 50, [CHARLIE]: 50 }) }, auth: c(['P1', 'MB']), ts: 7 },
      { id: 'MZ', type: 'm.room.member', key: ZARA, sender: ZARA, content: join, auth: c(['P2', 'J0']), ts: 8 },
      { id: 'ME', type: 'm.room.member', key: EVELYN, sender: EVELYN, content: join, auth: c(['P2', 'J0']), ts: 9 },
      { id: 'ME2', type: 'm.room.member', key: EVELYN, sender: EVELYN, content: { ...join, displayname: 'eve++' }, auth: c(['P2', 'ME', 'J0']), ts: 9 },
    );
    return bag.resolve(bag.state('CREATE', 'MA', 'P0', 'J0', 'MB', 'MC', 'ME2'), bag.state('CREATE', 'MA', 'J0', 'MB', 'MC', 'P2', 'MZ'));
  }

  it('problem B, room version 11 (v2): the power levels reset to P0', () => {
    expect(names(problemB(V11))).toEqual(['CREATE', 'J0', 'MA', 'MB', 'MC', 'ME2', 'MZ', 'P0']);
  });

  it('problem B, room version 12 (v2.1): the conflicted state subgraph keeps P2', () => {
    expect(names(problemB(V12))).toEqual(['CREATE', 'J0', 'MA', 'MB', 'MC', 'ME2', 'MZ', 'P2']);
  });

  it('problem B: the conflicted state subgraph holds every event on a path between conflicted events', () => {
    const bag = msc4297Base(V12).add(
      { id: 'P1', type: 'm.room.power_levels', key: '', sender: ALICE, content: { users: { [BOB]: 50 } }, auth: ['P0', 'MA'] },
      { id: 'P2', type: 'm.room.power_levels', key: '', sender: BOB, content: { users: { [BOB]: 50, [CHARLIE]: 50 } }, auth: ['P1', 'MB'] },
      { id: 'ME', type: 'm.room.member', key: EVELYN, sender: EVELYN, content: join, auth: ['P2', 'J0'] },
      { id: 'ME2', type: 'm.room.member', key: EVELYN, sender: EVELYN, content: join, auth: ['P2', 'ME', 'J0'] },
      { id: 'MZ', type: 'm.room.member', key: ZARA, sender: ZARA, content: join, auth: ['P2', 'J0'] },
    );
    const sub = conflictedStateSubgraph(['$P0', '$P2', '$ME2', '$MZ'], V12, bag.get);
    // P2 → P1 → P0, P2 → MB → P0, MZ → J0 → P0, ME2 → ME → P2; not MA (no conflicted event below it).
    expect([...sub].map(node).sort()).toEqual(['J0', 'MB', 'ME', 'ME2', 'MZ', 'P0', 'P1', 'P2']);
  });
});

describe('tie-breaks inside a resolution', () => {
  /** Two join rules changes by alice on two forks: same power, so time (then id) picks the order, and the last one applied wins. */
  function forks(version: RoomVersion, a: { id: string; ts: number }, b: { id: string; ts: number }): string[] {
    const v12 = version.privilegedCreators;
    const c = (ids: string[]) => (v12 ? ids : ['CREATE', ...ids]);
    const bag = new EventBag(version).add(
      { id: 'CREATE', type: 'm.room.create', key: '', sender: ALICE, content: v12 ? { room_version: '12' } : { creator: ALICE, room_version: version.id } },
      { id: 'MA', type: 'm.room.member', key: ALICE, sender: ALICE, content: join, auth: c([]), prev: ['CREATE'], ts: 1 },
      { id: a.id, type: 'm.room.join_rules', key: '', sender: ALICE, content: { join_rule: 'invite' }, auth: c(['MA']), ts: a.ts },
      { id: b.id, type: 'm.room.join_rules', key: '', sender: ALICE, content: { join_rule: 'public' }, auth: c(['MA']), ts: b.ts },
    );
    return names(bag.resolve(bag.state('CREATE', 'MA', a.id), bag.state('CREATE', 'MA', b.id)));
  }

  for (const version of [V10, V12]) {
    it(`origin_server_ts decides before the event id (room version ${version.id})`, () => {
      // The later event is applied last and wins, whichever id is smaller.
      expect(forks(version, { id: 'zz', ts: 10 }, { id: 'aa', ts: 20 })).toEqual(['CREATE', 'MA', 'aa'].sort());
      expect(forks(version, { id: 'zz', ts: 20 }, { id: 'aa', ts: 10 })).toEqual(['CREATE', 'MA', 'zz'].sort());
    });
    it(`equal origin_server_ts: the smaller event id comes first (room version ${version.id})`, () => {
      expect(forks(version, { id: 'j1', ts: 10 }, { id: 'j2', ts: 10 })).toEqual(['CREATE', 'MA', 'j2']);
      expect(forks(version, { id: 'j2', ts: 10 }, { id: 'j1', ts: 10 })).toEqual(['CREATE', 'MA', 'j2']);
    });
  }
});

describe('auth ancestry through events outside the full conflicted set', () => {
  /**
   * Bob (50) makes the room invite-only (JB); alice's display name change (MA2) cites JB; alice
   * then demotes bob (P1, citing MA2). One state has P1 and JB; the other is stale (P0, J0) but
   * has MA2. MA2 is unconflicted and in both auth chains, so in v2 it is not in the full conflicted
   * set. The spec's words ("the auth chain of P", "the DAG formed by auth events") could be read
   * as keeping the ancestry JB → MA2 → P1 through MA2; Synapse and ruma follow auth edges only
   * inside the full conflicted set, so alice's P1 sorts before bob's JB by power and JB is
   * rejected. We resolve as they do (servers must agree). In v12 MA2 is on the path P1 → MA2 → JB
   * between conflicted events, so it joins the conflicted state subgraph and JB sorts first.
   */
  function run(version: RoomVersion): string[] {
    const v12 = version.privilegedCreators;
    const c = (ids: string[]) => (v12 ? ids : ['CREATE', ...ids]);
    const users = (u: Record<string, number>) => (v12 ? Object.fromEntries(Object.entries(u).filter(([k]) => k !== ALICE)) : u);
    const bag = new EventBag(version).add(
      { id: 'CREATE', type: 'm.room.create', key: '', sender: ALICE, content: v12 ? { room_version: '12' } : { creator: ALICE, room_version: version.id }, ts: 0 },
      { id: 'MA', type: 'm.room.member', key: ALICE, sender: ALICE, content: join, auth: c([]), prev: ['CREATE'], ts: 1 },
      { id: 'P0', type: 'm.room.power_levels', key: '', sender: ALICE, content: { users: users({ [ALICE]: 100, [BOB]: 50 }) }, auth: c(['MA']), ts: 2 },
      { id: 'J0', type: 'm.room.join_rules', key: '', sender: ALICE, content: { join_rule: 'public' }, auth: c(['P0', 'MA']), ts: 3 },
      { id: 'MB', type: 'm.room.member', key: BOB, sender: BOB, content: join, auth: c(['P0', 'J0']), ts: 4 },
      { id: 'JB', type: 'm.room.join_rules', key: '', sender: BOB, content: { join_rule: 'invite' }, auth: c(['P0', 'MB']), ts: 5 },
      { id: 'MA2', type: 'm.room.member', key: ALICE, sender: ALICE, content: { ...join, displayname: 'alice' }, auth: c(['P0', 'MA', 'JB']), ts: 6 },
      { id: 'P1', type: 'm.room.power_levels', key: '', sender: ALICE, content: { users: users({ [ALICE]: 100, [BOB]: 0 }) }, auth: c(['P0', 'MA2']), ts: 7 },
      { id: 'T', type: 'm.room.topic', key: '', sender: ALICE, content: { topic: 'hi' }, auth: c(['P0', 'MA2']), ts: 8 },
    );
    // Sorting without MA2: no edge between P1 and JB inside the set, so power decides.
    expect(reverseTopologicalPowerOrder(['$P0', '$J0', '$JB', '$P1'], version, bag.get).map(node)).toEqual(['P0', 'J0', 'P1', 'JB']);
    // With MA2 in the set, the ancestry JB → MA2 → P1 is an edge path inside it.
    expect(reverseTopologicalPowerOrder(['$P0', '$J0', '$JB', '$MA2', '$P1'], version, bag.get).map(node)).toEqual(['P0', 'J0', 'JB', 'MA2', 'P1']);
    return names(bag.resolve(bag.state('CREATE', 'MA2', 'MB', 'P1', 'JB'), bag.state('CREATE', 'MA2', 'MB', 'P0', 'J0', 'T')));
  }

  it('room version 10 (v2): P1 is ordered before JB, and JB (bob no longer has the power) is rejected', () => {
    expect(run(V10)).toEqual(['CREATE', 'J0', 'MA2', 'MB', 'P1', 'T']);
  });

  it('room version 12 (v2.1): MA2 is in the conflicted state subgraph, JB sorts first and stays', () => {
    expect(run(V12)).toEqual(['CREATE', 'JB', 'MA2', 'MB', 'P1', 'T']);
  });
});

// ---------------------------------------------------------------------------------------------
// The pieces
// ---------------------------------------------------------------------------------------------

describe('reverse topological power ordering', () => {
  /** Events with the same sender and timestamp: only the graph and the event ids decide. */
  function plainGraph(edges: Record<string, string[]>): EventBag {
    const bag = new EventBag(V10).add({ id: 'CREATE', type: 'm.room.create', key: '', sender: ALICE, content: { creator: ALICE, room_version: '10' } });
    for (const [id, auth] of Object.entries(edges)) bag.add({ id, type: 'm.room.topic', key: id, sender: BOB, auth: ['CREATE', ...auth], ts: 5 });
    return bag;
  }

  it('is Kahn’s algorithm taking the smallest event id among the candidates', () => {
    // l → o, m → n, m → o, n → o, p → o (x → y: y is an auth event of x)
    const bag = plainGraph({ o: [], l: ['o'], m: ['n', 'o'], n: ['o'], p: ['o'] });
    expect(reverseTopologicalPowerOrder(['$l', '$m', '$n', '$o', '$p'], V10, bag.get).map(node)).toEqual(['o', 'l', 'n', 'm', 'p']);
  });

  it('orders candidates by sender power, then origin_server_ts, then event id', () => {
    const bag = new EventBag(V10).add(
      { id: 'CREATE', type: 'm.room.create', key: '', sender: ALICE, content: { creator: ALICE, room_version: '10' } },
      { id: 'PL', type: 'm.room.power_levels', key: '', sender: ALICE, content: { users: { [ALICE]: 100, [BOB]: 50, [CHARLIE]: 50 } }, auth: ['CREATE'], ts: 1 },
      // Candidates once PL is out: by power alice (100) first; bob and charlie (50) by ts; equal ts by id.
      { id: 'b-late', type: 'm.room.join_rules', key: '', sender: BOB, auth: ['CREATE', 'PL'], ts: 30 },
      { id: 'c-early', type: 'm.room.join_rules', key: '', sender: CHARLIE, auth: ['CREATE', 'PL'], ts: 10 },
      { id: 'b-tie-2', type: 'm.room.join_rules', key: '', sender: BOB, auth: ['CREATE', 'PL'], ts: 20 },
      { id: 'b-tie-1', type: 'm.room.join_rules', key: '', sender: BOB, auth: ['CREATE', 'PL'], ts: 20 },
      { id: 'a-latest', type: 'm.room.join_rules', key: '', sender: ALICE, auth: ['CREATE', 'PL'], ts: 99 },
      // Without a power levels event in its auth events the creator counts 100, anyone else 0.
      { id: 'z-nopl', type: 'm.room.join_rules', key: '', sender: ZARA, auth: ['CREATE'], ts: 0 },
    );
    const ids = ['PL', 'b-late', 'c-early', 'b-tie-2', 'b-tie-1', 'a-latest', 'z-nopl'].map(eid);
    expect(reverseTopologicalPowerOrder(ids, V10, bag.get).map(node)).toEqual(['PL', 'a-latest', 'c-early', 'b-tie-1', 'b-tie-2', 'b-late', 'z-nopl']);
  });

  it('v12: creators rank above any power level (the create event found from the room id)', () => {
    const bag = new EventBag(V12).add(
      { id: 'CREATE', type: 'm.room.create', key: '', sender: ALICE, content: { room_version: '12', additional_creators: [CHARLIE] } },
      { id: 'PL', type: 'm.room.power_levels', key: '', sender: ALICE, content: { users: { [BOB]: 9000 } }, ts: 1 },
      { id: 'x-bob', type: 'm.room.join_rules', key: '', sender: BOB, auth: ['PL'], ts: 2 },
      { id: 'y-charlie', type: 'm.room.join_rules', key: '', sender: CHARLIE, auth: ['PL'], ts: 3 },
      { id: 'z-alice', type: 'm.room.join_rules', key: '', sender: ALICE, auth: ['PL'], ts: 4 },
    );
    expect(reverseTopologicalPowerOrder(['$x-bob', '$y-charlie', '$z-alice'], V12, bag.get).map(node)).toEqual(['y-charlie', 'z-alice', 'x-bob']);
  });

  it('follows auth edges only between the events being sorted (as Synapse and ruma do)', () => {
    // hi (alice, 100) descends from lo (bob, 50) through mid, which is not sorted: power decides.
    const bag = new EventBag(V10).add(
      { id: 'CREATE', type: 'm.room.create', key: '', sender: ALICE, content: { creator: ALICE, room_version: '10' } },
      { id: 'PL', type: 'm.room.power_levels', key: '', sender: ALICE, content: { users: { [ALICE]: 100, [BOB]: 50 } }, auth: ['CREATE'], ts: 1 },
      { id: 'lo', type: 'm.room.join_rules', key: '', sender: BOB, auth: ['CREATE', 'PL'], ts: 2 },
      { id: 'mid', type: 'm.room.topic', key: '', sender: BOB, auth: ['CREATE', 'PL', 'lo'], ts: 3 },
      { id: 'hi', type: 'm.room.join_rules', key: '', sender: ALICE, auth: ['CREATE', 'PL', 'mid'], ts: 4 },
    );
    expect(reverseTopologicalPowerOrder(['$hi', '$lo'], V10, bag.get).map(node)).toEqual(['hi', 'lo']);
    expect(reverseTopologicalPowerOrder(['$hi', '$mid', '$lo'], V10, bag.get).map(node)).toEqual(['lo', 'mid', 'hi']);
  });

  it('refuses an auth_events cycle with a clear error', () => {
    const bag = new EventBag(V10).add(
      { id: 'a', type: 'm.room.topic', key: 'a', sender: BOB, auth: ['b'] },
      { id: 'b', type: 'm.room.topic', key: 'b', sender: BOB, auth: ['a'] },
    );
    expect(() => reverseTopologicalPowerOrder(['$a', '$b'], V10, bag.get)).toThrow(/cycle/);
  });
});

describe('mainline ordering', () => {
  // Mainline of P3: [P3, P2, P1] (positions 0, 1, 2). PX forks off P1 and is not on it.
  const bag = new EventBag(V10).add(
    { id: 'CREATE', type: 'm.room.create', key: '', sender: ALICE, content: { creator: ALICE, room_version: '10' } },
    { id: 'P1', type: 'm.room.power_levels', key: '', sender: ALICE, content: { users: { [ALICE]: 100 } }, auth: ['CREATE'], ts: 1 },
    { id: 'P2', type: 'm.room.power_levels', key: '', sender: ALICE, content: { users: { [ALICE]: 100 } }, auth: ['CREATE', 'P1'], ts: 2 },
    { id: 'P3', type: 'm.room.power_levels', key: '', sender: ALICE, content: { users: { [ALICE]: 100 } }, auth: ['CREATE', 'P2'], ts: 3 },
    { id: 'PX', type: 'm.room.power_levels', key: '', sender: ALICE, content: { users: { [ALICE]: 100 } }, auth: ['CREATE', 'P1'], ts: 4 },
    { id: 'PY', type: 'm.room.power_levels', key: '', sender: ALICE, content: { users: { [ALICE]: 100 } }, auth: ['CREATE', 'PX'], ts: 5 },
    { id: 'on-p3', type: 'm.room.topic', key: '', sender: ALICE, auth: ['CREATE', 'P3'], ts: 10 },
    { id: 'on-p2', type: 'm.room.topic', key: '', sender: ALICE, auth: ['CREATE', 'P2'], ts: 11 },
    { id: 'on-py', type: 'm.room.topic', key: '', sender: ALICE, auth: ['CREATE', 'PY'], ts: 12 },
    { id: 'on-p1-b', type: 'm.room.topic', key: '', sender: ALICE, auth: ['CREATE', 'P1'], ts: 13 },
    { id: 'on-p1-a', type: 'm.room.topic', key: '', sender: ALICE, auth: ['CREATE', 'P1'], ts: 13 },
    { id: 'no-pl', type: 'm.room.topic', key: '', sender: ALICE, auth: ['CREATE'], ts: 14 },
  );

  it('positions: the closest mainline event in the power levels auth chain, e_0 not counted', () => {
    const pos = (id: string) => mainlinePosition(eid(id), '$P3', V10, bag.get);
    expect(pos('on-p3')).toBe(0);
    expect(pos('on-p2')).toBe(1);
    expect(pos('on-py')).toBe(2); // PY → PX → P1
    expect(pos('on-p1-a')).toBe(2);
    expect(pos('no-pl')).toBe(Infinity);
    expect(pos('P3')).toBe(1); // its own id is not looked at: P3's power levels auth event is P2
    expect(mainlinePosition('$on-p3', undefined, V10, bag.get)).toBe(Infinity);
  });

  it('orders by greater position first, then origin_server_ts, then event id', () => {
    const ids = ['on-p3', 'on-p2', 'on-py', 'on-p1-b', 'on-p1-a', 'no-pl'].map(eid);
    expect(mainlineOrder(ids, '$P3', V10, bag.get).map(node)).toEqual(['no-pl', 'on-py', 'on-p1-a', 'on-p1-b', 'on-p2', 'on-p3']);
  });

  it('without a power levels event every position is ∞ and time decides', () => {
    const ids = ['on-p3', 'on-p1-b', 'no-pl', 'on-p2'].map(eid);
    expect(mainlineOrder(ids, undefined, V10, bag.get).map(node)).toEqual(['on-p3', 'on-p2', 'on-p1-b', 'no-pl']);
  });
});

describe('definitions', () => {
  it('splits unconflicted and conflicted state; a key missing from one set is conflicted', () => {
    const k = (t: string) => stateKeyOf(t, '');
    const { unconflicted, conflicted } = splitConflictedState([
      new Map([[k('a'), '$1'], [k('b'), '$2'], [k('c'), '$3']]),
      new Map([[k('a'), '$1'], [k('b'), '$4']]),
      new Map([[k('a'), '$1'], [k('b'), '$2']]),
    ]);
    expect([...unconflicted]).toEqual([[k('a'), '$1']]);
    expect([...conflicted].sort()).toEqual(['$2', '$3', '$4']);
  });

  it('auth difference: events in some but not all full auth chains (the state events themselves excluded)', () => {
    const bag = new EventBag(V10).add(
      { id: 'CREATE', type: 'm.room.create', key: '', sender: ALICE, content: { creator: ALICE, room_version: '10' } },
      { id: 'A', type: 't', key: 'a', sender: ALICE, auth: ['CREATE'] },
      { id: 'B', type: 't', key: 'b', sender: ALICE, auth: ['CREATE', 'A'] },
      { id: 'C', type: 't', key: 'c', sender: ALICE, auth: ['CREATE', 'B'] },
      { id: 'D', type: 't', key: 'c', sender: ALICE, auth: ['CREATE', 'A'] },
    );
    // Chains: {C} → {B, A, CREATE}; {D} → {A, CREATE}. B only in the first.
    const diff = authDifference({ version: V10, stateSets: [bag.state('CREATE', 'C'), bag.state('CREATE', 'D')], getEvent: bag.get });
    expect([...diff].map(node).sort()).toEqual(['B']);
  });

  it('compares event ids by code point, not UTF-16 code unit', () => {
    expect(compareEventIds('$a', '$b')).toBeLessThan(0);
    expect(compareEventIds('$ab', '$a')).toBeGreaterThan(0);
    // U+FF5E (BMP, above the surrogates) sorts before U+1F600 (astral) by code point.
    expect(compareEventIds('$\uff5e', '$\u{1f600}')).toBeLessThan(0);
    expect(['$\u{1f600}', '$\uff5e', '$z'].sort(compareEventIds)).toEqual(['$z', '$\uff5e', '$\u{1f600}']);
  });
});

describe('inputs', () => {
  it('rejected auth events are not used to fill keys missing from the state', () => {
    const bag = new EventBag(V12).add(
      { id: 'CREATE', type: 'm.room.create', key: '', sender: ALICE, content: { room_version: '12' } },
      { id: 'MA', type: 'm.room.member', key: ALICE, sender: ALICE, content: join, prev: ['CREATE'] },
      { id: 'T1', type: 'm.room.topic', key: '', sender: ALICE, auth: ['MA'], ts: 1 },
      { id: 'T2', type: 'm.room.topic', key: '', sender: ALICE, auth: ['MA'], ts: 2 },
    );
    const sets = [bag.state('CREATE', 'T1'), bag.state('CREATE', 'T2')];
    const resolve = (isRejected?: (id: string) => boolean) => names(resolveState({ version: V12, stateSets: sets, getEvent: bag.get, isRejected }));
    // v2.1 starts from the empty state: alice's membership comes from each topic's auth events.
    expect(resolve()).toEqual(['CREATE', 'T2']);
    expect(resolve((id) => id === '$MA')).toEqual(['CREATE']);
  });

  it('a missing event is a clear error', () => {
    const bag = new EventBag(V10).add(
      { id: 'CREATE', type: 'm.room.create', key: '', sender: ALICE, content: { creator: ALICE, room_version: '10' } },
      { id: 'T1', type: 'm.room.topic', key: '', sender: ALICE, auth: ['CREATE', 'GONE'] },
      { id: 'T2', type: 'm.room.topic', key: '', sender: ALICE, auth: ['CREATE'] },
    );
    expect(() => bag.resolve(bag.state('CREATE', 'T1'), bag.state('CREATE', 'T2'))).toThrow(/event \$GONE \(from the auth_events of \$T1\) is missing/);
  });

  it('room version 1 goes to state resolution v1 (state-resolution-v1.unit.test.ts), where a key one set lacks is not conflicted', () => {
    expect(resolveState({ version: requireRoomVersion('1'), stateSets: [new Map(), new Map([['x', '$y']])], getEvent: () => undefined })).toEqual(new Map([['x', '$y']]));
  });

  it('nothing to resolve: no sets, one set, identical sets', () => {
    const s = new Map([[stateKeyOf('m.room.topic', ''), '$T']]);
    const getEvent = () => undefined;
    expect(resolveState({ version: V10, stateSets: [], getEvent })).toEqual(new Map());
    expect(resolveState({ version: V10, stateSets: [s], getEvent })).toEqual(s);
    expect(resolveState({ version: V12, stateSets: [s, new Map(s)], getEvent })).toEqual(s);
  });
});
