import { describe, expect, it } from 'vitest';
import { LayeredMap } from '../../src/protocol/layered-map';

describe('LayeredMap', () => {
  it('behaves like a Map under sets and removals, leaving older versions unchanged', () => {
    const reference = new Map<string, number>();
    let m = LayeredMap.from<number>();
    const versions: [LayeredMap<number>, Map<string, number>][] = [];
    for (let i = 0; i < 2000; i++) {
      const k = `k${(i * 7919) % 300}`;
      if (i % 5 === 0) {
        reference.delete(k);
        m = m.with([[k, undefined]]);
      } else {
        reference.set(k, i);
        m = m.with([[k, i]]);
      }
      if (i % 97 === 0) versions.push([m, new Map(reference)]);
      expect(m.size).toBe(reference.size);
    }
    expect(m.toMap()).toEqual(reference);
    for (const [v, ref] of versions) expect(v.toMap()).toEqual(ref);
    expect(m.get('nope')).toBeUndefined();
  });

  it('applies several changes at once, the last one for a key winning', () => {
    const m = LayeredMap.from([['a', 1]]).with([['b', 2], ['a', undefined], ['a', 3], ['c', 4], ['c', undefined]]);
    expect(m.toMap()).toEqual(new Map([['a', 3], ['b', 2]]));
    expect(m.size).toBe(2);
  });
});

describe('LayeredMap, small maps copied whole', () => {
  it('keeps older versions unchanged across the size where layering starts', () => {
    const reference = new Map<string, number>();
    let m = LayeredMap.from<number>();
    const versions: [LayeredMap<number>, Map<string, number>][] = [];
    for (let i = 0; i < 200; i++) {
      // Grows past the flat size, shrinks below it again, grows again.
      const k = `k${i < 60 ? i : i < 120 ? i - 60 : i - 100}`;
      if (i >= 60 && i < 120) {
        reference.delete(k);
        m = m.with([[k, undefined]]);
      } else {
        reference.set(k, i);
        m = m.with([[k, i]]);
      }
      versions.push([m, new Map(reference)]);
      expect(m.size).toBe(reference.size);
      for (const [key, v] of reference) expect(m.get(key)).toBe(v);
    }
    for (const [v, ref] of versions) expect(v.toMap()).toEqual(ref);
  });
});
