import { describe, expect, it } from 'vitest';
import { parseShardName, shardName, shardOf, shardTag, stableHash } from '../../src/store/shards';
import { planDrain, planRebalance } from '../../src/runtime/cluster-admin';
import type { Family } from '../../src/store/shards';

describe('shards', () => {
  it('hashes ids stably (FNV-1a over UTF-8)', () => {
    // Reference values of 32-bit FNV-1a.
    expect(stableHash('')).toBe(0x811c9dc5);
    expect(stableHash('a')).toBe(0xe40c292c);
    expect(stableHash('foobar')).toBe(0xbf9cf968);
    // Non-ASCII hashes its UTF-8 bytes: é is C3 A9.
    const manual = [0xc3, 0xa9].reduce((h, b) => Math.imul(h ^ b, 0x01000193) >>> 0, 0x811c9dc5);
    expect(stableHash('\u00e9')).toBe(manual);
    expect(stableHash('\u{1F600}')).toBe([0xf0, 0x9f, 0x98, 0x80].reduce((h, b) => Math.imul(h ^ b, 0x01000193) >>> 0, 0x811c9dc5));
  });

  it('spreads room ids evenly over 1024 shards', () => {
    const counts = new Array(1024).fill(0);
    for (let i = 0; i < 102_400; i++) counts[shardOf(`!room${i}:example.org`, 1024)]++;
    expect(Math.min(...counts)).toBeGreaterThan(50);
    expect(Math.max(...counts)).toBeLessThan(160);
  });

  it('names and tags shards', () => {
    expect(shardTag('room', 417)).toBe('{r:417}');
    expect(shardTag('user', 3)).toBe('{u:3}');
    expect(parseShardName(shardName({ family: 'room', shard: 5 }))).toEqual({ family: 'room', shard: 5 });
    expect(parseShardName('nope:1')).toBeNull();
    expect(parseShardName('room:x')).toBeNull();
  });
});

const shards = (owners: Record<string, number>, family: Family = 'user') => {
  const out: { family: Family; shard: number; owner: string }[] = [];
  let n = 0;
  for (const [owner, count] of Object.entries(owners)) for (let i = 0; i < count; i++) out.push({ family, shard: n++, owner });
  return out;
};

describe('rebalance planning', () => {
  it('evens out counts with the fewest moves', () => {
    const moves = planRebalance(shards({ w1: 8, w2: 0 }), ['w1', 'w2']);
    expect(moves).toHaveLength(4);
    expect(moves.every((m) => m.from === 'w1' && m.to === 'w2')).toBe(true);
  });

  it('leaves a balanced cluster alone, and odd counts differ by one at most', () => {
    expect(planRebalance(shards({ w1: 4, w2: 4 }), ['w1', 'w2'])).toEqual([]);
    expect(planRebalance(shards({ w1: 5, w2: 4 }), ['w1', 'w2'])).toEqual([]);
    const moves = planRebalance(shards({ w1: 10, w2: 0, w3: 1 }), ['w1', 'w2', 'w3']);
    const after = { w1: 10, w2: 0, w3: 1 } as Record<string, number>;
    for (const m of moves) {
      after[m.from]!--;
      after[m.to]!++;
    }
    expect(Object.values(after).sort()).toEqual([3, 4, 4]);
    expect(moves).toHaveLength(6); // w1 must shed 6 whatever the plan
  });

  it('assigns shards held by dead or unknown workers', () => {
    const moves = planRebalance(shards({ dead: 3, w1: 1 }), ['w1', 'w2']);
    expect(moves.filter((m) => m.from === 'dead')).toHaveLength(3);
  });

  it('drains one worker evenly onto the others', () => {
    const moves = planDrain(shards({ w1: 6, w2: 1, w3: 3 }), 'w1', ['w2', 'w3']);
    expect(moves).toHaveLength(6);
    const to = moves.reduce<Record<string, number>>((a, m) => ({ ...a, [m.to]: (a[m.to] ?? 0) + 1 }), {});
    expect(to).toEqual({ w2: 4, w3: 2 }); // ends 5 and 5
  });
});
