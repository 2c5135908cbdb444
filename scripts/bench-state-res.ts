/**
 * `node --import tsx scripts/bench-state-res.ts`: state resolution time on adversarial rooms of
 * growing size, to see that it grows (about) linearly, not quadratically. Prints figures only;
 * nothing here asserts a speed.
 *
 * Shapes, each for room versions 10 (v2) and 12 (v2.1):
 * - "forks": a room of B joined members, then F forks of N events each, every event built on its
 *   fork's own state and kept only if it passes the auth rules there: power levels changes by the
 *   creator and by moderators (ties), kicks and bans (power events), joins of new users, display
 *   name changes and topic/custom state on keys shared by all forks (conflicts on the same keys),
 *   and join rules rewrites. Timestamps repeat across forks, so event ids break many ties. The F
 *   fork states are resolved at once.
 * - "many sets": the same with a fixed fork length and a growing number of forks (state sets).
 * - "pl war": two forks of long power levels chains sent alternately by two moderators at the same
 *   level, each followed by a member event citing it (long mainlines, deep topological sorts).
 *
 * Environment: BENCH_SCALE (default 1) multiplies every size; BENCH_RUNS (default 3) timed runs.
 */
import { authEventSelection, checkEventAuth } from '../src/protocol/auth-rules';
import type { JsonObject } from '../src/protocol/json';
import { lookupFromStateMap, stateKeyOf, type Pdu, type StateMap } from '../src/protocol/pdu';
import { requireRoomVersion, type RoomVersion } from '../src/protocol/room-versions';
import { authDifference, resolveState, splitConflictedState } from '../src/protocol/state-resolution';

const SCALE = Number(process.env.BENCH_SCALE ?? '1');
const RUNS = Number(process.env.BENCH_RUNS ?? '3');

/** Deterministic PRNG (mulberry32), so every run builds the same rooms. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const CREATOR = '@alice:bench.example';
const MODS = Array.from({ length: 8 }, (_, i) => `@mod${i}:bench.example`);

class Room {
  readonly events = new Map<string, Pdu>();
  readonly getEvent = (id: string) => this.events.get(id);
  readonly roomId: string;
  private counter = 0;

  constructor(readonly version: RoomVersion) {
    this.roomId = version.roomIdFromCreateEvent ? '!create' : '!bench:bench.example';
  }

  /** Build an event on `state` (auth events picked from it); add it if the auth rules allow it. */
  send(state: StateMap, e: { type: string; key?: string; sender: string; content: JsonObject; ts: number; prev?: string[]; id?: string }): Pdu | undefined {
    const isCreate = e.type === 'm.room.create';
    const auth: string[] = [];
    for (const [t, k] of authEventSelection({ type: e.type, stateKey: e.key, sender: e.sender, content: e.content }, this.version)) {
      const id = state.get(stateKeyOf(t, k));
      if (id !== undefined) auth.push(id);
    }
    const eventId = e.id ?? `$e${(this.counter++).toString(36)}`;
    const roomId = isCreate && this.version.roomIdFromCreateEvent ? undefined : this.roomId;
    const pdu: Pdu = {
      eventId,
      roomId,
      type: e.type,
      stateKey: e.key,
      sender: e.sender,
      content: e.content,
      originServerTs: e.ts,
      depth: 0,
      prevEvents: e.prev ?? [],
      authEvents: auth,
      redacts: undefined,
      raw: {},
    };
    this.events.set(eventId, pdu);
    if (!checkEventAuth(pdu, lookupFromStateMap(state, this.getEvent), this.version).allowed) {
      this.events.delete(eventId);
      return undefined;
    }
    if (e.key !== undefined) state.set(stateKeyOf(e.type, e.key), eventId);
    return pdu;
  }

  /** Creator, moderators at 50, a public join rule and `members` joined users. */
  base(members: number): { state: StateMap; users: string[] } {
    const v = this.version;
    const state: StateMap = new Map();
    let ts = 0;
    const create = this.send(state, { id: '$create', type: 'm.room.create', key: '', sender: CREATOR, content: v.createHasCreator ? { creator: CREATOR, room_version: v.id } : { room_version: v.id }, ts: ts++ })!;
    this.send(state, { type: 'm.room.member', key: CREATOR, sender: CREATOR, content: { membership: 'join' }, ts: ts++, prev: [create.eventId] });
    const users: Record<string, number> = v.privilegedCreators ? {} : { [CREATOR]: 100 };
    for (const m of MODS) users[m] = 50;
    this.send(state, { type: 'm.room.power_levels', key: '', sender: CREATOR, content: { users }, ts: ts++ });
    this.send(state, { type: 'm.room.join_rules', key: '', sender: CREATOR, content: { join_rule: 'public' }, ts: ts++ });
    for (const m of MODS) this.send(state, { type: 'm.room.member', key: m, sender: m, content: { membership: 'join' }, ts: ts++ });
    const joined: string[] = [];
    for (let i = 0; i < members; i++) {
      const u = `@u${i}:bench.example`;
      if (this.send(state, { type: 'm.room.member', key: u, sender: u, content: { membership: 'join' }, ts: ts++ })) joined.push(u);
    }
    return { state, users: joined };
  }
}

function powerLevelsContent(version: RoomVersion, extra: Record<string, number>): JsonObject {
  const users: Record<string, number> = version.privilegedCreators ? {} : { [CREATOR]: 100 };
  for (const m of MODS) users[m] = 50;
  Object.assign(users, extra);
  return { users };
}

/** F forks of N events each over a base of B members; returns the fork states. */
function forksRoom(version: RoomVersion, forks: number, perFork: number, baseMembers: number, seed = 1): { room: Room; sets: StateMap[] } {
  const room = new Room(version);
  const { state: base, users } = room.base(baseMembers);
  const sets: StateMap[] = [];
  for (let f = 0; f < forks; f++) {
    const rand = rng(seed * 1000 + f);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
    const state = new Map(base);
    for (let i = 0; i < perFork; i++) {
      const ts = 1_000_000 + i; // the same timestamps on every fork: ties everywhere
      const r = rand();
      const mod = pick(MODS);
      if (r < 0.08) {
        room.send(state, { type: 'm.room.power_levels', key: '', sender: rand() < 0.5 ? CREATOR : mod, content: powerLevelsContent(version, { [pick(users)]: Math.floor(rand() * 40) }), ts });
      } else if (r < 0.2) {
        room.send(state, { type: 'm.room.member', key: pick(users), sender: mod, content: { membership: rand() < 0.5 ? 'leave' : 'ban' }, ts });
      } else if (r < 0.55) {
        const u = `@f${f}n${i}:bench.example`;
        room.send(state, { type: 'm.room.member', key: u, sender: u, content: { membership: 'join' }, ts });
      } else if (r < 0.7) {
        const u = pick(users);
        room.send(state, { type: 'm.room.member', key: u, sender: u, content: { membership: 'join', displayname: `${u} ${f}.${i}` }, ts });
      } else if (r < 0.95) {
        room.send(state, { type: rand() < 0.3 ? 'm.room.topic' : 'org.bench.state', key: rand() < 0.3 ? '' : `k${Math.floor(rand() * 200)}`, sender: rand() < 0.5 ? CREATOR : mod, content: { v: `${f}.${i}` }, ts });
      } else {
        room.send(state, { type: 'm.room.join_rules', key: '', sender: mod, content: { join_rule: 'public', rev: `${f}.${i}` }, ts });
      }
    }
    sets.push(state);
  }
  return { room, sets };
}

/** Two forks of `length` power levels events each, alternating two moderators, each followed by a member event. */
function plWarRoom(version: RoomVersion, length: number): { room: Room; sets: StateMap[] } {
  const room = new Room(version);
  const { state: base, users } = room.base(64);
  const sets: StateMap[] = [];
  for (let f = 0; f < 2; f++) {
    const state = new Map(base);
    for (let i = 0; i < length; i++) {
      const sender = MODS[(i + f) % 2]!;
      room.send(state, { type: 'm.room.power_levels', key: '', sender, content: powerLevelsContent(version, { [users[i % users.length]!]: (i % 40) + f }), ts: 2_000_000 + i });
      const u = `@w${f}n${i}:bench.example`;
      room.send(state, { type: 'm.room.member', key: u, sender: u, content: { membership: 'join' }, ts: 2_000_000 + i });
    }
    sets.push(state);
  }
  return { room, sets };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function measure(version: RoomVersion, room: Room, sets: StateMap[]): { ms: number; conflicted: number; authDiff: number; events: number; resolved: number } {
  const input = { version, stateSets: sets, getEvent: room.getEvent };
  const { conflicted } = splitConflictedState(sets);
  const diff = authDifference(input);
  let resolved = resolveState(input); // warm-up
  const times: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    const t0 = performance.now();
    resolved = resolveState(input);
    times.push(performance.now() - t0);
  }
  return { ms: median(times), conflicted: conflicted.size, authDiff: diff.size, events: room.events.size, resolved: resolved.size };
}

function row(cells: (string | number)[], widths: number[]): string {
  return cells.map((c, i) => String(c).padStart(widths[i]!)).join('  ');
}

function series(title: string, sizes: number[], build: (version: RoomVersion, size: number) => { room: Room; sets: StateMap[] }): void {
  const widths = [7, 8, 9, 6, 10, 9, 9, 10, 11];
  for (const versionId of ['10', '12']) {
    const version = requireRoomVersion(versionId);
    process.stdout.write(`\n${title}, room version ${versionId} (state res ${version.stateRes})\n`);
    process.stdout.write(`${row(['size', 'events', 'sets', 'conf', 'auth diff', 'resolved', 'ms', 'µs/conf', 'x prev ms'], widths)}\n`);
    let prev: number | undefined;
    for (const size of sizes) {
      const { room, sets } = build(version, size);
      const m = measure(version, room, sets);
      const ratio = prev === undefined ? '' : (m.ms / prev).toFixed(2);
      process.stdout.write(`${row([size, m.events, sets.length, m.conflicted, m.authDiff, m.resolved, m.ms.toFixed(1), ((m.ms * 1000) / Math.max(1, m.conflicted)).toFixed(1), ratio], widths)}\n`);
      prev = m.ms;
    }
  }
}

const scaled = (xs: number[]) => xs.map((x) => Math.max(1, Math.round(x * SCALE)));

// Warm the JIT up on a mid-sized room first, so the first row of the first table is not an outlier.
for (const versionId of ['10', '12']) {
  const version = requireRoomVersion(versionId);
  const { room, sets } = forksRoom(version, 20, 200, 2000, 99);
  for (let i = 0; i < 5; i++) resolveState({ version, stateSets: sets, getEvent: room.getEvent });
}

process.stdout.write(`state resolution benchmark — node ${process.version}, median of ${RUNS} runs after one warm-up\n`);
process.stdout.write('size doubles each row; "x prev ms" near 2 means linear growth, near 4 quadratic\n');

// 20 forks, growing fork length; the base room grows with it (B = 2 × per-fork events).
series('forks: 20 forks × size/20 events, base of size/2 members', scaled([1000, 2000, 4000, 8000, 16000]), (v, size) => forksRoom(v, 20, Math.round(size / 20), Math.round(size / 2)));
// Growing number of state sets, 100 events per fork, base of 2000 members.
series('many sets: size/100 forks × 100 events, base of 2000 members', scaled([1000, 2000, 4000, 8000, 16000]), (v, size) => forksRoom(v, Math.round(size / 100), 100, 2000));
// Two long power levels chains.
series('pl war: 2 forks × size/2 power levels events (+ a join each)', scaled([1000, 2000, 4000, 8000, 16000]), (v, size) => plWarRoom(v, Math.round(size / 2)));
