// scripts/bench-ab.ts's pure parts: the run order, reading figures, what the pairs say.
import { describe, expect, it } from 'vitest';
import { abOrder, figureIn, median, summarizePairs } from '../../scripts/lib/ab-pairs';

describe('bench-ab', () => {
  it('alternates which side goes first, so each goes first as often as second', () => {
    expect(abOrder(4)).toEqual([['a', 'b'], ['b', 'a'], ['a', 'b'], ['b', 'a']]);
    const firsts = abOrder(6).map((o) => o[0]);
    expect(firsts.filter((s) => s === 'a')).toHaveLength(3);
  });

  it('reads the first group of the first matching line, thousands separators and decimals included', () => {
    const out = ['workload              events/s    p50 ms', '1 room, 1 worker          9195      10.9', '100 rooms, 1 worker       7,820      12.8', '100 rooms, 2 workers      7141      13.9'].join('\n');
    expect(figureIn(out, /^100 rooms, 1 worker\s+([\d,]+)/)).toBe(7820);
    expect(figureIn(out, /^100 rooms, 2 workers\s+(\d+)/)).toBe(7141);
    expect(figureIn(out, /^1 room, 1 worker\s+\d+\s+([\d.]+)/)).toBe(10.9);
    // Anchored per line even without the m flag; no match, or a group that is not a number: null.
    expect(figureIn(out, /^10 rooms\s+(\d+)/)).toBeNull();
    expect(figureIn(out, /^(workload)/)).toBeNull();
  });

  it('summarises pairs: medians, the median ratio, the split and its sign test', () => {
    const s = summarizePairs([
      { a: 100, b: 110 },
      { a: 90, b: 99 },
      { a: 120, b: 126 },
      { a: 80, b: 96 },
      { a: 100, b: 100 },
    ]);
    expect(s.medianA).toBe(100);
    expect(s.medianB).toBe(100);
    expect(s.medianRatio).toBeCloseTo(1.1, 10);
    expect([s.bAbove, s.bBelow, s.ties]).toEqual([4, 0, 1]);
    // 4 of 4 differing pairs one way: 2 × (1/16).
    expect(s.signTestP).toBeCloseTo(0.125, 10);
    expect(summarizePairs([{ a: 1, b: 2 }, { a: 2, b: 1 }]).signTestP).toBe(1);
    expect(median([3, 1, 2, 10])).toBe(2.5);
    expect(median([])).toBeNaN();
  });
});
