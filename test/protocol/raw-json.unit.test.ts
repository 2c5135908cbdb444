/** stringifyWithRaw (src/protocol/raw-json.ts): JSON.stringify's output, with RawJson text spliced in. */
import { describe, expect, it } from 'vitest';
import { RawJson, stringifyWithRaw } from '../../src/protocol/raw-json';

describe('stringifyWithRaw', () => {
  it('writes plain values exactly as JSON.stringify does', () => {
    const values: unknown[] = [
      null, true, 0, -5, 1.5, 'a "q" \\ \n \u2028 ✓ 🎉', [], {}, [1, 'x', null, [[]], { a: {} }],
      { b: 1, a: [undefined, 2], u: undefined, n: NaN, nested: { deep: { deeper: ['x', { y: false }] } } },
      { '': 1, 'k"ey': 'v', '\u0000': [null] },
    ];
    for (const v of values) expect(stringifyWithRaw(v)).toBe(JSON.stringify(v));
  });

  it('splices raw text where RawJson stands, at any depth, keeping key order and skipping undefined', () => {
    const body = { next_batch: 's1', rooms: { join: { '!r': { timeline: { events: [new RawJson('{"b":2,"a":1}'), new RawJson('[]')], limited: false }, skip: undefined } } }, top: new RawJson('"x"') };
    const text = stringifyWithRaw(body);
    expect(text).toBe('{"next_batch":"s1","rooms":{"join":{"!r":{"timeline":{"events":[{"b":2,"a":1},[]],"limited":false}}}},"top":"x"}');
    // The same as JSON.stringify of the parsed values (RawJson.toJSON), i.e. semantically equal.
    expect(JSON.parse(text)).toEqual(JSON.parse(JSON.stringify(body)));
  });
});
