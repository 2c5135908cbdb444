/**
 * State snapshots read through their delta chains (`readSnapshot`): the same state whether the
 * chain is read one step at a time or guessed in batches, whatever the numbering of the chain
 * (consecutive, interleaved with another branch's snapshots, re-based on its root); and the
 * snapshot cache bounded by the state entries it holds.
 */
import { describe, expect, it } from 'vitest';
import { encode } from '../../src/store/codec';
import { roomData } from '../../src/store/keys';
import { readSnapshot, SnapshotCache, weighSnapshot } from '../../src/store/room-reader';
import type { StoredSnapshot } from '../../src/rooms/model';
import type { StateMap } from '../../src/protocol/pdu';

const ROOM = '!r:example.org';

/** Snapshots stored as the room actor writes them (msgpack under their key), with read counters. */
function store(snaps: Record<number, StoredSnapshot>) {
  const blobs = new Map(Object.entries(snaps).map(([id, s]) => [roomData.snapshot(ROOM, Number(id)), encode(s)]));
  const counts = { get: 0, mget: 0, keys: 0 };
  return {
    counts,
    fetch: async (name: string) => {
      counts.get++;
      counts.keys++;
      return blobs.get(name) ?? null;
    },
    fetchMany: async (names: string[]) => {
      counts.mget++;
      counts.keys += names.length;
      return names.map((n) => blobs.get(n) ?? null);
    },
  };
}

/** The state by walking parent links one at a time (the reference the batched read must match). */
function expected(snaps: Record<number, StoredSnapshot>, id: number): StateMap {
  const chain: StoredSnapshot[] = [];
  for (let cur: number | null = id; cur !== null; cur = snaps[cur]!.p) chain.push(snaps[cur]!);
  const state: StateMap = new Map();
  for (const s of chain.reverse()) for (const [k, v] of s.d) v === null ? state.delete(k) : state.set(k, v);
  return state;
}

/** A linear chain 1..len: 1 is the full root, each next one sets one key (and removes one at 10). */
function linear(len: number, first = 1): Record<number, StoredSnapshot> {
  const snaps: Record<number, StoredSnapshot> = { [first]: { p: null, d: [['m.room.create\u0000', '$create']], n: 0 } };
  for (let i = 1; i < len; i++) {
    const d: [string, string | null][] = [[`k\u0000${i}`, `$e${i}`]];
    if (i === 10) d.push(['k\u00003', null]);
    snaps[first + i] = { p: first + i - 1, d, n: i };
  }
  return snaps;
}

describe('readSnapshot', () => {
  it('reads a consecutive chain in two round trips and gives the same state as a step-by-step walk', async () => {
    const snaps = linear(40);
    const s = store(snaps);
    const state = await readSnapshot(s.fetch, ROOM, 40, new Map(), s.fetchMany);
    expect(state).toEqual(expected(snaps, 40));
    expect(state.has('k\u00003')).toBe(false);
    expect(state.get('k\u000039')).toBe('$e39');
    expect(s.counts.get + s.counts.mget).toBe(2);
    // Without fetchMany: one read per step.
    const one = store(snaps);
    expect(await readSnapshot(one.fetch, ROOM, 40, new Map())).toEqual(state);
    expect(one.counts.get).toBe(40);
  });

  it('follows the real parent links when other snapshots are numbered in between', async () => {
    // Two branches interleaved: odd ids chain to the root 1, even ids form another chain on 1.
    const snaps: Record<number, StoredSnapshot> = { 1: { p: null, d: [['a\u0000', '$root']], n: 0 } };
    for (let id = 2; id <= 30; id++) {
      const p = id <= 3 ? 1 : id - 2;
      snaps[id] = { p, d: [[`x\u0000${id}`, `$${id}`], ['a\u0000', `$a${id}`]], n: (snaps[p]!.n ?? 0) + 1 };
    }
    for (const id of [29, 30]) {
      const s = store(snaps);
      expect(await readSnapshot(s.fetch, ROOM, id, new Map(), s.fetchMany)).toEqual(expected(snaps, id));
      expect(s.counts.get + s.counts.mget).toBeLessThan(15);
    }
  });

  it('reads a chain re-based on a distant root', async () => {
    const snaps = linear(5);
    snaps[100] = { p: 1, d: [['k\u00001', '$new'], ['z\u0000', '$z']], n: 1 };
    snaps[101] = { p: 100, d: [['z\u0000', null]], n: 2 };
    const s = store(snaps);
    expect(await readSnapshot(s.fetch, ROOM, 101, new Map(), s.fetchMany)).toEqual(expected(snaps, 101));
  });

  it('stops at a cached snapshot and caches what it built', async () => {
    const snaps = linear(30);
    const cache = new SnapshotCache(10_000);
    const s = store(snaps);
    const at20 = await readSnapshot(s.fetch, ROOM, 20, cache, s.fetchMany);
    expect(cache.size).toBe(1);
    const before = s.counts.keys;
    const at30 = await readSnapshot(s.fetch, ROOM, 30, cache, s.fetchMany);
    expect(at30).toEqual(expected(snaps, 30));
    // Snapshots 21..30 at most: the walk ended at the cached 20.
    expect(s.counts.keys - before).toBeLessThanOrEqual(10);
    expect(at20).toEqual(expected(snaps, 20));
    expect(await readSnapshot(s.fetch, ROOM, 30, cache, s.fetchMany)).toBe(at30);
  });

  it('fails loudly on a missing snapshot', async () => {
    const snaps = linear(10);
    delete snaps[4];
    const s = store(snaps);
    await expect(readSnapshot(s.fetch, ROOM, 10, new Map(), s.fetchMany)).rejects.toThrow(/snapshot 4 is missing/);
  });
});

describe('SnapshotCache', () => {
  const state = (n: number): StateMap => new Map(Array.from({ length: n }, (_x, i) => [`k\u0000${i}`, `$${i}`]));
  const bytes = (n: number) => weighSnapshot(state(n));

  it('is bounded by the bytes its snapshots weigh, least recently used out first', () => {
    // Room for four of these five (a, c, d, e: 5,016 bytes), d within a quarter of the bound.
    const cache = new SnapshotCache(6000);
    cache.set('a', state(20));
    cache.set('b', state(20));
    cache.set('c', state(20));
    expect(cache.get('a')).toBeDefined(); // a is now the most recently used
    cache.set('d', state(25));
    cache.set('e', state(20));
    expect(cache.get('d')?.size).toBe(25);
    expect(cache.bytes).toBeLessThanOrEqual(6000);
    expect(cache.get('b')).toBeUndefined();
    expect(cache.get('a')?.size).toBe(20);
    expect(cache.get('e')?.size).toBe(20);
    // Many small snapshots fit where a count bound of 256 would not.
    const many = new SnapshotCache(3000 * bytes(25));
    for (let i = 0; i < 3000; i++) many.set(`r${i}`, state(25));
    expect(many.size).toBe(3000);
  });

  it('keeps no snapshot bigger than a quarter of the bound, and replaces a key without double counting', () => {
    const cache = new SnapshotCache(4 * bytes(25));
    cache.set('big', state(30));
    expect(cache.get('big')).toBeUndefined();
    cache.set('x', state(10));
    cache.set('x', state(12));
    expect(cache.bytes).toBe(bytes(12));
  });
});
