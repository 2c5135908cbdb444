/**
 * State resolution v1 (room version 1) as tiny DAGs, resolved through `resolveState` (the entry
 * point the room actor uses) for room version 1. The expected states are worked out by hand from
 * the spec's passes (content/rooms/v1.md) and Synapse's readings of them (see
 * src/protocol/state-resolution-v1.ts); the sha1 orders the tie-break cases depend on are checked
 * as preconditions, so a fixture cannot silently stop testing what it claims to.
 *
 * `runDag` builds the room as a server would: events in a topological order of their prev edges,
 * depth = 1 + the greatest depth of the prev events, the state before an event resolved from the
 * states after its prev events, auth_events chosen from it. The assertion is on the state at END,
 * as the node names of the entries that differ from the state at START.
 */
import { describe, expect, it } from 'vitest';
import { authEventSelection } from '../../src/protocol/auth-rules';
import type { JsonObject } from '../../src/protocol/json';
import { splitStateKey, stateKeyOf, type Pdu, type StateMap } from '../../src/protocol/pdu';
import { requireRoomVersion } from '../../src/protocol/room-versions';
import { resolveState } from '../../src/protocol/state-resolution';
import { orderV1, separateV1, sha1Hex } from '../../src/protocol/state-resolution-v1';

const V1 = requireRoomVersion('1');
const ROOM = '!room:example.com';
const ALICE = '@alice:example.com';
const BOB = '@bob:example.com';
const CHARLIE = '@charlie:example.com';
const EVELYN = '@evelyn:example.com';
const ZARA = '@zara:example.com';

const eid = (n: string) => `$${n}:example.com`;
const node = (id: string) => id.slice(1, id.indexOf(':'));

interface DagEvent {
  id: string;
  type: string;
  key?: string;
  sender: string;
  content?: JsonObject;
}

const member = (id: string, user: string, membership: string, sender = user, extra: JsonObject = {}): DagEvent => ({ id, type: 'm.room.member', key: user, sender, content: { membership, ...extra } });
const pl = (id: string, sender: string, users: Record<string, number>): DagEvent => ({ id, type: 'm.room.power_levels', key: '', sender, content: { users } });
const topic = (id: string, sender: string): DagEvent => ({ id, type: 'm.room.topic', key: '', sender, content: { topic: id } });
const message = (id: string, sender = ZARA): DagEvent => ({ id, type: 'm.room.message', sender, content: { body: id } });

/** Alice creates a public room (she alone has power); bob, charlie and zara join. Depths 1–8. */
const INITIAL: DagEvent[] = [
  { id: 'CREATE', type: 'm.room.create', key: '', sender: ALICE, content: { creator: ALICE } },
  member('IMA', ALICE, 'join'),
  pl('IPOWER', ALICE, { [ALICE]: 100 }),
  { id: 'IJR', type: 'm.room.join_rules', key: '', sender: ALICE, content: { join_rule: 'public' } },
  member('IMB', BOB, 'join'),
  member('IMC', CHARLIE, 'join'),
  member('IMZ', ZARA, 'join'),
  message('START'),
];
const INITIAL_CHAIN = ['START', 'IMZ', 'IMC', 'IMB', 'IJR', 'IPOWER', 'IMA', 'CREATE'];

function makePdu(e: DagEvent, prev: string[], auth: string[], depth: number, ts: number): Pdu {
  const raw: JsonObject = { event_id: eid(e.id), room_id: ROOM, type: e.type, sender: e.sender, content: e.content ?? {}, origin_server_ts: ts, depth };
  if (e.key !== undefined) raw.state_key = e.key;
  return {
    eventId: eid(e.id), roomId: ROOM, type: e.type, stateKey: e.key, sender: e.sender, content: e.content ?? {}, originServerTs: ts, depth,
    prevEvents: prev.map(eid), authEvents: auth, redacts: undefined, raw,
  };
}

/** Build INITIAL + events + END from the prev chains; return END's changes against START. */
function runDag(events: DagEvent[], chains: string[][]): { changed: string[]; depth: Map<string, number> } {
  const all = [...INITIAL, ...events, message('END')];
  const prevs = new Map(all.map((e) => [e.id, new Set<string>()]));
  for (const chain of [INITIAL_CHAIN, ...chains]) {
    for (let i = 0; i + 1 < chain.length; i++) {
      if (!prevs.has(chain[i]!) || !prevs.has(chain[i + 1]!)) throw new Error(`unknown node in ${chain.join(' → ')}`);
      prevs.get(chain[i]!)!.add(chain[i + 1]!);
    }
  }
  const pdus = new Map<string, Pdu>();
  const getEvent = (id: string) => pdus.get(id);
  const stateAfter = new Map<string, StateMap>();
  const depth = new Map<string, number>();
  let ts = 0;
  while (stateAfter.size < all.length) {
    const next = all.find((e) => !stateAfter.has(e.id) && [...prevs.get(e.id)!].every((p) => stateAfter.has(p)));
    if (!next) throw new Error('the prev edges have a cycle');
    const prevIds = [...prevs.get(next.id)!];
    const before = prevIds.length === 0 ? new Map<string, string>() : resolveState({ version: V1, stateSets: prevIds.map((p) => stateAfter.get(p)!), getEvent });
    const auth = authEventSelection({ type: next.type, stateKey: next.key, sender: next.sender, content: next.content ?? {} }, V1)
      .map(([t, k]) => before.get(stateKeyOf(t, k)))
      .filter((x): x is string => x !== undefined);
    const d = 1 + Math.max(0, ...prevIds.map((p) => depth.get(p)!));
    pdus.set(eid(next.id), makePdu(next, prevIds, auth, d, ts++));
    depth.set(next.id, d);
    const after = new Map(before);
    if (next.key !== undefined) after.set(stateKeyOf(next.type, next.key), eid(next.id));
    stateAfter.set(next.id, after);
  }
  const start = stateAfter.get('START')!;
  const end = stateAfter.get('END')!;
  const changed: string[] = [];
  for (const [k, v] of end) if (start.get(k) !== v) changed.push(node(v));
  for (const k of start.keys()) if (!end.has(k)) changed.push(`-${splitStateKey(k).join('|')}`);
  return { changed: changed.sort(), depth };
}

describe('state resolution v1 on DAGs', () => {
  it('power levels first: the ban is checked before the ban-giver\'s own membership is resolved (v1 loses it)', () => {
    // Alice gives bob 50 (PA), re-joins (MA) and bans bob (MB); bob, from PA, sends power levels
    // (PB). Power levels: PA (depth 9) goes in first; PB is bob's, and bob's membership is
    // conflicted (IMB vs MB), so he is not in R: PB fails, PA stays. Members are resolved one key
    // at a time against R without the other conflicted members: alice's MA passes, but MB is
    // checked with alice absent from R and fails — bob stays joined. This is the v1 state reset
    // the spec warns about (v2 keeps the ban).
    const { changed, depth } = runDag(
      [pl('PA', ALICE, { [ALICE]: 100, [BOB]: 50 }), member('MA', ALICE, 'join'), member('MB', BOB, 'ban', ALICE), pl('PB', BOB, { [ALICE]: 100, [BOB]: 50 })],
      [['END', 'MB', 'MA', 'PA', 'START'], ['END', 'PB', 'PA']],
    );
    expect([depth.get('PA'), depth.get('PB'), depth.get('MB')]).toEqual([9, 10, 11]);
    expect(changed).toEqual(['MA', 'PA']);
  });

  it('conflicted power levels: ascending depth, and the pass stops at the first one not allowed', () => {
    // Fork 1: alice gives bob 50 (PA, 9), bob gives charlie 50 (PC, 10). Fork 2: alice takes
    // bob's power away (PD, 9). Fork 3: two messages, then alice's PE (11). Candidates in order:
    // PD (9), PC (10), PE (11). PD goes in; PC is bob's and bob has 0 under PD: the pass stops
    // there, and PE — which alice could send — is never reached.
    const { changed } = runDag(
      [
        pl('PA', ALICE, { [ALICE]: 100, [BOB]: 50 }),
        pl('PC', BOB, { [ALICE]: 100, [BOB]: 50, [CHARLIE]: 50 }),
        pl('PD', ALICE, { [ALICE]: 100 }),
        message('X1'),
        message('X2'),
        pl('PE', ALICE, { [ALICE]: 100, [ZARA]: 10 }),
      ],
      [['END', 'PC', 'PA', 'START'], ['END', 'PD', 'START'], ['END', 'PE', 'X2', 'X1', 'START']],
    );
    expect(changed).toEqual(['PD']);
  });

  it('same depth: the power levels pass walks descending sha1, so the lowest sha1 that passes ends up in R', () => {
    expect(sha1Hex(eid('PY')) > sha1Hex(eid('PX'))).toBe(true);
    // PY goes in first (greater sha1), PX (alice's, allowed) replaces it.
    const { changed } = runDag([pl('PX', ALICE, { [ALICE]: 100, [BOB]: 10 }), pl('PY', ALICE, { [ALICE]: 100, [BOB]: 20 })], [['END', 'PX', 'START'], ['END', 'PY', 'START']]);
    expect(changed).toEqual(['PX']);
  });

  it('a key only some states have is not conflicted: v1 keeps a join that v2 drops (join rule evasion)', () => {
    // Alice makes the room invite-only (JR) while evelyn joins (ME). Join rules conflict (IJR vs
    // JR): IJR first, JR is alice's and passes. Evelyn's membership exists on one fork only, so
    // it is in R from the start and never checked.
    const { changed } = runDag([{ id: 'JR', type: 'm.room.join_rules', key: '', sender: ALICE, content: { join_rule: 'invite' } }, member('ME', EVELYN, 'join')], [['END', 'JR', 'START'], ['END', 'ME', 'START']]);
    expect(changed).toEqual(['JR', 'ME']);
  });

  it('conflicted membership: a ban wins over a concurrent profile change whichever comes first', () => {
    expect(sha1Hex(eid('MCD')) > sha1Hex(eid('MCB'))).toBe(true);
    // Same depth: MCD (greater sha1) first, alice's ban MCB passes against it.
    const same = runDag([member('MCB', CHARLIE, 'ban', ALICE), member('MCD', CHARLIE, 'join', CHARLIE, { displayname: 'C' })], [['END', 'MCB', 'START'], ['END', 'MCD', 'START']]);
    expect(same.changed).toEqual(['MCB']);
    // The profile change deeper: MCB first, and charlie's join fails against his ban.
    const deeper = runDag([member('MCB', CHARLIE, 'ban', ALICE), message('X1'), member('MCD', CHARLIE, 'join', CHARLIE, { displayname: 'C' })], [['END', 'MCB', 'START'], ['END', 'MCD', 'X1', 'START']]);
    expect(deeper.changed).toEqual(['MCB']);
  });

  it('conflicted membership: by depth, a later join undoes a concurrent leave in a public room', () => {
    // MCL (charlie leaves, 9) first, then MCD (charlie's profile join, 10) is allowed: public room.
    const leaveFirst = runDag([member('MCL', CHARLIE, 'leave'), message('X1'), member('MCD', CHARLIE, 'join', CHARLIE, { displayname: 'C' })], [['END', 'MCL', 'START'], ['END', 'MCD', 'X1', 'START']]);
    expect(leaveFirst.changed).toEqual(['MCD']);
    // The leave deeper: the join goes in first and the leave (by charlie himself) replaces it.
    const leaveLast = runDag([message('X1'), member('MCL', CHARLIE, 'leave'), member('MCD', CHARLIE, 'join', CHARLIE, { displayname: 'C' })], [['END', 'MCL', 'X1', 'START'], ['END', 'MCD', 'START']]);
    expect(leaveLast.changed).toEqual(['MCL']);
  });

  it('other state: the deepest candidate the rules allow in R, after power levels were resolved', () => {
    // Alice sets a topic (T0) and gives bob 50 (PA); then bob sets a topic (TB) while alice takes
    // his power away (PB2). Power levels: PA (10) then PB2 (11, alice's) → PB2. Topics: TB (11)
    // is tried first and fails (bob has 0 under PB2); T0 (9) passes: the topic resets to T0.
    const { changed } = runDag(
      [topic('T0', ALICE), pl('PA', ALICE, { [ALICE]: 100, [BOB]: 50 }), topic('TB', BOB), pl('PB2', ALICE, { [ALICE]: 100, [BOB]: 0 })],
      [['END', 'TB', 'PA', 'T0', 'START'], ['END', 'PB2', 'PA']],
    );
    expect(changed).toEqual(['PB2', 'T0']);
  });

  it('other state at the same depth: the lowest sha1 that passes', () => {
    expect(sha1Hex(eid('TA')) < sha1Hex(eid('TB'))).toBe(true);
    const { changed } = runDag([topic('TA', ALICE), topic('TB', ALICE)], [['END', 'TB', 'START'], ['END', 'TA', 'START']]);
    expect(changed).toEqual(['TA']);
    // …and a deeper candidate beats a lower sha1.
    const deeper = runDag([topic('TA', ALICE), message('X1'), topic('TB', ALICE)], [['END', 'TB', 'X1', 'START'], ['END', 'TA', 'START']]);
    expect(deeper.changed).toEqual(['TB']);
  });

  it('other state none of which passes: the last in order (lowest depth, greatest sha1) is kept, as Synapse does', () => {
    // Zara (power 0) and charlie (0) both set the topic at the same depth; neither is allowed.
    const { changed } = runDag([topic('TA', ZARA), topic('TB', CHARLIE)], [['END', 'TA', 'START'], ['END', 'TB', 'START']]);
    expect(changed).toEqual(['TB']);
  });
});

describe('state resolution v1 pieces', () => {
  it('separates conflicts by differing event ids only', () => {
    const a = new Map([['k1', '$a'], ['k2', '$b'], ['only-a', '$c']]);
    const b = new Map([['k1', '$a'], ['k2', '$d'], ['only-b', '$e']]);
    const c = new Map([['k2', '$f']]);
    const { unconflicted, conflicted } = separateV1([a, b, c]);
    expect(Object.fromEntries(unconflicted)).toEqual({ k1: '$a', 'only-a': '$c', 'only-b': '$e' });
    expect(Object.fromEntries([...conflicted].map(([k, v]) => [k, [...v].sort()]))).toEqual({ k2: ['$b', '$d', '$f'] });
  });

  it('orders by ascending depth, then descending sha1 of the UTF-8 event id', () => {
    const mk = (id: string, depth: number) => makePdu({ id, type: 'm.room.topic', key: '', sender: ALICE }, [], [], depth, 0);
    const ids = ['TA', 'TB', 'PA', 'PB'];
    const bySha = [...ids].sort((x, y) => (sha1Hex(eid(x)) < sha1Hex(eid(y)) ? 1 : -1));
    expect(orderV1(ids.map((i) => mk(i, 5))).map((e) => node(e.eventId))).toEqual(bySha);
    expect(orderV1([mk('TA', 7), mk('TB', 3), mk('PA', 5)]).map((e) => node(e.eventId))).toEqual(['TB', 'PA', 'TA']);
    // Non-ASCII ids hash their UTF-8 bytes (Synapse: "we allow people to send us events with non-ascii event IDs").
    // (the expected digest is Python's hashlib.sha1('$é:example.com'.encode('utf-8')).hexdigest())
    expect(sha1Hex('$é:example.com')).toBe('71ee5acbd62b6e684afd03c41ec1ad6a26ce0db5');
  });

  it('one state set, or identical ones, resolve to themselves; none to the empty state', () => {
    const s = new Map([['m.room.create\u0000', '$c:example.com']]);
    const getEvent = () => undefined;
    expect(resolveState({ version: V1, stateSets: [], getEvent })).toEqual(new Map());
    expect(resolveState({ version: V1, stateSets: [s], getEvent })).toEqual(s);
    expect(resolveState({ version: V1, stateSets: [s, new Map(s)], getEvent })).toEqual(s);
  });
});
