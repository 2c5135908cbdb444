/**
 * The recency index's read side (src/sync/sliding/recency.ts): a list's first rooms read from
 * the top of the index, filtered while walking, merged with the rooms the index does not hold,
 * must be what sorting every room gives (`computeList`, the definition), with exact counts — and
 * must read only as far as the ranges need. And which events bump a room (the reader's rule).
 */
import { describe, expect, it } from 'vitest';
import { byRecency, computeList, listFromTop, passesFilters, type RoomFacts } from '../../../src/sync/sliding/lists';
import { RecencyWalk, topRooms, type RecencyEntry } from '../../../src/sync/sliding/recency';
import { bumpStampOf } from '../../../src/readers/recency-index';
import type { ListConfig, ListFilters } from '../../../src/sync/sliding/request';

/** A deterministic generator (mulberry32). */
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

/** The index as Redis orders it in ZREVRANGE: score descending, then member descending. */
function redisOrder(entries: RecencyEntry[]): RecencyEntry[] {
  return [...entries].sort((a, b) => b.stamp - a.stamp || (a.roomId < b.roomId ? 1 : a.roomId > b.roomId ? -1 : 0));
}

function pagesOf(entries: RecencyEntry[], reads: { offset: number; count: number }[]) {
  const ordered = redisOrder(entries);
  return async (offset: number, count: number) => {
    reads.push({ offset, count });
    return ordered.slice(offset, offset + count);
  };
}

const config = (ranges: [number, number][], filters: ListFilters = {}): ListConfig => ({ ranges, filters, timelineLimit: 1, requiredState: [] });

describe('topRooms over the recency index', () => {
  it('gives the order and counts that sorting every room gives, with filters, ties and rooms outside the index', async () => {
    for (let seed = 1; seed <= 40; seed++) {
      const rand = rng(seed);
      const n = 1 + Math.floor(rand() * 400);
      const rooms: RoomFacts[] = [];
      for (let i = 0; i < n; i++) {
        const r = rand();
        const membership = r < 0.8 ? 'join' : r < 0.9 ? 'invite' : r < 0.95 ? 'knock' : 'leave';
        // Few distinct stamps, so that ties (ordered by room id) are common.
        rooms.push({ roomId: `!r${Math.floor(rand() * 1e6).toString(36)}${i}:x`, membership, bumpStamp: 1000 + Math.floor(rand() * 50), isDm: rand() < 0.3, isEncrypted: rand() < 0.5, tags: rand() < 0.2 ? ['m.favourite'] : [] });
      }
      // Joined rooms are indexed, except a few not yet (merged as extras with their computed stamps).
      const unindexed = new Set(rooms.filter((r) => r.membership === 'join' && rand() < 0.05).map((r) => r.roomId));
      const index = rooms.filter((r) => r.membership === 'join' && !unindexed.has(r.roomId)).map((r) => ({ roomId: r.roomId, stamp: r.bumpStamp }));
      // Stale entries: rooms the user left long ago still in the index, with high stamps.
      for (const r of rooms.filter((x) => x.membership === 'leave')) index.push({ roomId: r.roomId, stamp: 2000 });
      const extras = rooms.filter((r) => r.membership !== 'join' || unindexed.has(r.roomId));
      const byId = new Map(rooms.map((r) => [r.roomId, r]));
      const filterSets: ListFilters[] = [{}, { isDm: true }, { isEncrypted: false, notTags: ['m.favourite'] }, { isInvite: true }, { tags: ['m.favourite'] }];
      const rangeSets: [number, number][][] = [[[0, 19]], [[0, 0]], [[5, 9], [30, 39]], [[0, 1000]]];
      const walk = new RecencyWalk(pagesOf(index, []));
      for (const filters of filterSets) {
        for (const ranges of rangeSets) {
          const cfg = config(ranges, filters);
          const expected = computeList(rooms, cfg, null);
          const passes = (f: RoomFacts | undefined) => !!f && passesFilters(f, filters, null);
          const count = rooms.filter((r) => passes(r)).length;
          const need = Math.min(count, Math.max(...ranges.map(([, e]) => e + 1)));
          const top = await topRooms(
            walk,
            need,
            (id) => byId.get(id)?.membership === 'join' && passes(byId.get(id)),
            extras.filter((e) => passes(e)),
          );
          const got = listFromTop(count, top, cfg);
          expect(got, `seed ${seed}, filters ${JSON.stringify(filters)}, ranges ${JSON.stringify(ranges)}`).toEqual(expected);
        }
      }
    }
  });

  it('reads only the top of a large index for a short range', async () => {
    const entries = Array.from({ length: 5000 }, (_, i) => ({ roomId: `!room${String(i).padStart(5, '0')}:x`, stamp: 1_700_000_000_000 + i }));
    const reads: { offset: number; count: number }[] = [];
    const walk = new RecencyWalk(pagesOf(entries, reads));
    const top = await topRooms(walk, 20, () => true, []);
    expect(top.map((r) => r.roomId)).toEqual(Array.from({ length: 20 }, (_, i) => `!room${String(4999 - i).padStart(5, '0')}:x`));
    expect(reads).toEqual([{ offset: 0, count: 64 }]);
    // A filter that keeps one room in ten walks further, still not the whole index.
    const reads2: { offset: number; count: number }[] = [];
    const walk2 = new RecencyWalk(pagesOf(entries, reads2));
    const top2 = await topRooms(walk2, 20, (id) => id.endsWith('0:x'), []);
    expect(top2).toHaveLength(20);
    expect(top2[0]!.roomId).toBe('!room04990:x');
    expect(reads2.reduce((n, r) => n + r.count, 0)).toBeLessThan(500);
  });

  it('keeps every room tied with the last one in range, ordered by room id', async () => {
    const entries = [
      { roomId: '!a:x', stamp: 10 },
      { roomId: '!b:x', stamp: 10 },
      { roomId: '!c:x', stamp: 10 },
      { roomId: '!z:x', stamp: 20 },
    ];
    const walk = new RecencyWalk(pagesOf(entries, []), 1);
    const top = await topRooms(walk, 2, () => true, []);
    expect(top.map((r) => r.roomId)).toEqual(['!z:x', '!a:x']);
    const sorted = [...top].sort(byRecency);
    expect(sorted).toEqual(top);
  });

  it('an extra newer than everything in the index comes first', async () => {
    const walk = new RecencyWalk(pagesOf([{ roomId: '!old:x', stamp: 5 }], []));
    const top = await topRooms(walk, 2, () => true, [{ roomId: '!invite:x', membership: 'invite', bumpStamp: 9 }]);
    expect(top.map((r) => [r.roomId, r.membership])).toEqual([
      ['!invite:x', 'invite'],
      ['!old:x', 'join'],
    ]);
  });
});

describe('bumpStampOf', () => {
  it("bumps on Synapse's default bump types only, with a usable origin_server_ts", () => {
    for (const type of ['m.room.create', 'm.room.message', 'm.room.encrypted', 'm.sticker', 'm.call.invite', 'm.poll.start', 'm.beacon_info']) expect(bumpStampOf({ type, origin_server_ts: 1234 })).toBe(1234);
    for (const type of ['m.room.member', 'm.room.name', 'm.reaction', 'm.room.redaction', 'm.room.topic']) expect(bumpStampOf({ type, origin_server_ts: 1234 })).toBeNull();
    expect(bumpStampOf({ type: 'm.room.message', origin_server_ts: -1 })).toBeNull();
    expect(bumpStampOf({ type: 'm.room.message', origin_server_ts: 1.5 })).toBeNull();
    expect(bumpStampOf({ type: 'm.room.message' })).toBeNull();
  });
});
