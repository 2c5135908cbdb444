import { describe, expect, it } from 'vitest';
import { canonicalJson, CanonicalJsonError, compareCodePoints, JsonError, parseStrictJson, utf8Length } from '../../src/protocol/json';
import { loadFixture } from '../fixtures/load';

const spec = loadFixture<{ examples: { input: string; expected: string }[] }>('spec-canonical-json.json');

function rejects(text: string, errcode: 'M_NOT_JSON' | 'M_BAD_JSON') {
  try {
    parseStrictJson(text);
  } catch (e) {
    expect(e).toBeInstanceOf(JsonError);
    expect((e as JsonError).errcode).toBe(errcode);
    return;
  }
  throw new Error(`accepted ${text}`);
}

describe('canonical JSON: the spec appendix examples', () => {
  for (const [i, ex] of spec.examples.entries()) {
    it(`example ${i + 1}: ${ex.expected}`, () => {
      // The spec's inputs include -0 and 1e10, which it expects parsed and re-emitted as integers.
      expect(canonicalJson(JSON.parse(ex.input))).toBe(ex.expected);
    });
  }
});

describe('canonical JSON encoding', () => {
  it('sorts keys by code point, not UTF-16 unit (U+1F600 after U+FB33)', () => {
    const obj = { '\u{1F600}': 1, '\uFB33': 2, a: 3 };
    expect(canonicalJson(obj)).toBe('{"a":3,"\uFB33":2,"\u{1F600}":1}');
    // JavaScript's default sort would put the emoji (a surrogate pair, 0xD83D…) first.
    expect(Object.keys(obj).sort()).toEqual(['a', '\u{1F600}', '\uFB33']);
  });

  it('compareCodePoints agrees with UTF-8 byte order', () => {
    const strings = ['a', 'b', 'ab', '', '\u00e9', '\uFB33', '\uFFFF', '\u{10000}', '\u{1F600}', '\uE000', '\uD7FF', 'z\u{1F600}', 'z\uFFFD'];
    const byBytes = [...strings].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
    expect([...strings].sort(compareCodePoints)).toEqual(byBytes);
  });

  it('uses only the escapes JSON requires, lowercase hex, raw UTF-8 otherwise', () => {
    const s = '"\\/\b\f\n\r\t\u0000\u0001\u001f\u007f\u2028\u00e9\u{1F600}';
    expect(canonicalJson(s)).toBe('"\\"\\\\/\\b\\f\\n\\r\\t\\u0000\\u0001\\u001f\u007f\u2028\u00e9\u{1F600}"');
  });

  it('writes integers in shortest form; -0 as 0', () => {
    expect(canonicalJson([0, -0, 1, -1, 9007199254740991, -9007199254740991, 1e10])).toBe('[0,0,1,-1,9007199254740991,-9007199254740991,10000000000]');
  });

  it('refuses floats, out-of-range integers, non-finite numbers and lone surrogates', () => {
    for (const bad of [1.5, 9007199254740992, -9007199254740992, NaN, Infinity, '\uD800', { '\uDC00': 1 }]) {
      expect(() => canonicalJson(bad)).toThrow(CanonicalJsonError);
    }
  });

  it('has no whitespace and keeps nested order canonical', () => {
    expect(canonicalJson({ b: [{ d: 1, c: 2 }], a: { z: null, y: true } })).toBe('{"a":{"y":true,"z":null},"b":[{"c":2,"d":1}]}');
  });
});

describe('strict JSON parsing', () => {
  it('parses ordinary JSON', () => {
    expect(parseStrictJson('{"a":[1,-2,"x",true,false,null,{"b":{}}]}')).toEqual({ a: [1, -2, 'x', true, false, null, { b: {} }] });
    expect(parseStrictJson(' \n\t{ "a" : 1 } \r\n')).toEqual({ a: 1 });
    expect(parseStrictJson('"\\ud83d\\ude00 \\u00e9 \\/"')).toBe('\u{1F600} \u00e9 /');
    expect(parseStrictJson(new TextEncoder().encode('{"日本":"語"}'))).toEqual({ 日本: '語' });
  });

  it('accepts the integer limits and refuses one past them', () => {
    expect(parseStrictJson('9007199254740991')).toBe(9007199254740991);
    expect(parseStrictJson('-9007199254740991')).toBe(-9007199254740991);
    rejects('9007199254740992', 'M_BAD_JSON');
    rejects('-9007199254740992', 'M_BAD_JSON');
    rejects('{"depth":99999999999999999999}', 'M_BAD_JSON');
  });

  it('refuses floats, exponents and -0', () => {
    for (const t of ['1.0', '1.5', '1e3', '1E3', '1e-3', '-0', '-0.0', '{"a":0.1}', '[1,2.0]']) rejects(t, 'M_BAD_JSON');
  });

  it('allows floats when asked, still refusing -0', () => {
    expect(parseStrictJson('{"a":1.5,"b":2e3}', { allowFloats: true })).toEqual({ a: 1.5, b: 2000 });
    expect(() => parseStrictJson('-0', { allowFloats: true })).toThrow(JsonError);
  });

  it('refuses duplicate keys, at any depth', () => {
    rejects('{"a":1,"a":2}', 'M_BAD_JSON');
    rejects('{"x":{"a":1,"b":2,"a":1}}', 'M_BAD_JSON');
    rejects('{"a":1,"\\u0061":2}', 'M_BAD_JSON'); // the same key, escaped
  });

  it('keeps "__proto__" as an ordinary key', () => {
    const v = parseStrictJson('{"__proto__":{"polluted":true},"a":1}') as Record<string, unknown>;
    expect(Object.getPrototypeOf(v)).toBe(Object.prototype);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.keys(v)).toEqual(['__proto__', 'a']);
    expect(canonicalJson(v)).toBe('{"__proto__":{"polluted":true},"a":1}');
    rejects('{"__proto__":1,"__proto__":2}', 'M_BAD_JSON');
  });

  it('refuses malformed JSON with M_NOT_JSON', () => {
    for (const t of ['', ' ', '{', '{"a":1,}', '[1,]', '{a:1}', "{'a':1}", '01', '+1', '.5', '1.', 'tru', 'nul', 'NaN', 'Infinity',
      '"abc', '"\\x"', '"\\u12"', '"a\nb"', '"\t"', '{"a":1} x', '[1 2]', '\uFEFF{}', '{"a" 1}']) {
      rejects(t, 'M_NOT_JSON');
    }
  });

  it('refuses lone surrogates and invalid UTF-8', () => {
    rejects('"\\ud800"', 'M_BAD_JSON');
    rejects('"\\udc00"', 'M_BAD_JSON');
    rejects('"\\ud800\\u0041"', 'M_BAD_JSON');
    expect(() => parseStrictJson(new Uint8Array([0x22, 0xff, 0x22]))).toThrow(JsonError);
    expect(() => parseStrictJson(new Uint8Array([0x22, 0xed, 0xa0, 0x80, 0x22]))).toThrow(JsonError); // CESU surrogate
  });

  it('refuses excessive nesting instead of overflowing the stack', () => {
    rejects('['.repeat(100_000) + ']'.repeat(100_000), 'M_BAD_JSON');
    expect(parseStrictJson('['.repeat(200) + ']'.repeat(200))).toBeTruthy();
  });

  it('round-trips through canonical form', () => {
    const text = '{"b":{"y":[1,{"q":"\\u0000"}],"x":"\\u00e9"},"a":-5}';
    expect(canonicalJson(parseStrictJson(text))).toBe('{"a":-5,"b":{"x":"\u00e9","y":[1,{"q":"\\u0000"}]}}');
  });
});

describe('utf8Length', () => {
  it('counts UTF-8 bytes', () => {
    for (const s of ['', 'abc', '\u00e9', '\u65e5\u672c', '\u{1F600}', 'a\u{10FFFF}b']) expect(utf8Length(s)).toBe(new TextEncoder().encode(s).length);
    // A lone surrogate is 3 bytes, as its replacement character (what TextEncoder writes).
    for (const s of ['\ud800', 'a\udc00b', '\ud83d']) expect(utf8Length(s)).toBe(new TextEncoder().encode(s).length);
    expect(utf8Length('\u0080\u07ff\u0800\uffff')).toBe(2 + 2 + 3 + 3);
  });
});
