/** ClockCache (src/store/clock-cache.ts): bounded by the bytes its values weigh, CLOCK eviction. */
import { describe, expect, it } from 'vitest';
import { ClockCache, weighStateMap, weighString } from '../../src/store/clock-cache';

describe('ClockCache', () => {
  it('holds at most maxBytes, evicting the oldest entry not used since it came in', () => {
    const cache = new ClockCache<string, string>(100, (v) => v.length);
    cache.set('a', 'x'.repeat(20));
    cache.set('b', 'x'.repeat(20));
    cache.set('c', 'x'.repeat(20));
    expect(cache.get('a')).toBeDefined(); // used: a second chance
    cache.set('d', 'x'.repeat(25));
    cache.set('e', 'x'.repeat(20));
    expect(cache.bytes).toBeLessThanOrEqual(100);
    expect(cache.get('b')).toBeUndefined();
    expect(cache.get('a')).toHaveLength(20);
    expect(cache.get('e')).toHaveLength(20);
    expect(cache.bytes).toBe([...'acde'].reduce((n, k) => n + (cache.get(k)?.length ?? 0), 0));
  });

  it('refuses a value over a quarter of the bound, replaces without double counting, deletes', () => {
    const cache = new ClockCache<string, string>(100, (v) => v.length);
    cache.set('big', 'x'.repeat(26));
    expect(cache.has('big')).toBe(false);
    cache.set('k', 'x'.repeat(10));
    cache.set('k', 'x'.repeat(12));
    expect(cache.bytes).toBe(12);
    // Replaced by something too big: the old value goes too (never a stale answer).
    cache.set('k', 'x'.repeat(30));
    expect(cache.get('k')).toBeUndefined();
    expect(cache.bytes).toBe(0);
    cache.set('m', 'abc');
    expect(cache.delete('m')).toBe(true);
    expect(cache.size).toBe(0);
    expect(cache.bytes).toBe(0);
  });

  it('drops expired entries from the oldest on, stopping at the first one kept', () => {
    const cache = new ClockCache<number, { at: number }>(10_000, () => 10);
    for (let i = 0; i < 10; i++) cache.set(i, { at: i });
    cache.dropOldestWhile((v) => v.at < 4);
    expect(cache.size).toBe(6);
    expect(cache.bytes).toBe(60);
    expect(cache.get(3)).toBeUndefined();
    expect(cache.get(4)).toEqual({ at: 4 });
  });

  it('weighs state maps by their table, and their strings when they own them', () => {
    const m = new Map<string, string | null>([['m.room.member\u0000@a:x', '$a'], ['m.room.name\u0000', null]]);
    expect(weighStateMap(m, false)).toBe(64 + 2 * 32);
    expect(weighStateMap(m, true)).toBe(64 + 2 * 32 + weighString('m.room.member\u0000@a:x') + weighString('$a') + weighString('m.room.name\u0000'));
  });
});
