/**
 * The linear-time glob matcher (src/protocol/glob.ts) against a plain recursive reference
 * matcher (exponential, so only for short inputs) on many random patterns and values, in every
 * mode; word boundaries, Unicode and case folding by example; and the adversarial patterns that
 * used to stall a whole process on a backtracking RegExp. No test measures time: the worst
 * cases run under the default test timeout, which a backtracking matcher misses by hours.
 */
import { describe, expect, it } from 'vitest';
import { MAX_GLOB_CHARS, MAX_GLOB_VALUE_LENGTH, compileGlob, foldCodePoint, matchGlob, type GlobOptions } from '../../src/protocol/glob';

// ---- the reference ----

const STAR = -2;
const ANY = -1;
const cpsOf = (s: string) => [...s].map((c) => c.codePointAt(0)!);
const isWord = (c: number) => /^[A-Za-z0-9_]$/.test(String.fromCodePoint(c));

/** Characters equal under case folding as JavaScript's `/…/iu` defines it (the reference's own, independent of glob.ts). */
const ciCache = new Map<string, boolean>();
function sameIgnoringCase(a: number, b: number): boolean {
  if (a === b) return true;
  const key = `${a},${b}`;
  let v = ciCache.get(key);
  if (v === undefined) {
    const esc = String.fromCodePoint(a).replace(/[\\^$.*+?()[\]{}|/]/g, '\\$&');
    v = new RegExp(`^${esc}$`, 'iu').test(String.fromCodePoint(b));
    ciCache.set(key, v);
  }
  return v;
}

function refTokens(pattern: string, o: GlobOptions): number[] {
  const w = o.wildcards ?? 'glob';
  return cpsOf(pattern).map((c) => (w !== 'none' && c === 0x2a ? STAR : w === 'glob' && c === 0x3f ? ANY : c));
}

/** Whether tokens p[i…] match the whole of s[j…]: plain recursion, exponential in the stars. */
function refWhole(p: number[], s: number[], ci: boolean, i = 0, j = 0): boolean {
  if (i === p.length) return j === s.length;
  if (p[i] === STAR) return refWhole(p, s, ci, i + 1, j) || (j < s.length && refWhole(p, s, ci, i, j + 1));
  if (j === s.length) return false;
  const ok = p[i] === ANY || (ci ? sameIgnoringCase(p[i]!, s[j]!) : p[i] === s[j]);
  return ok && refWhole(p, s, ci, i + 1, j + 1);
}

/** The spec's rule read literally: some part of the value that starts and ends at a boundary matches whole. */
function reference(pattern: string, value: string, o: GlobOptions): boolean {
  const p = refTokens(pattern, o);
  const s = cpsOf(value);
  const ci = o.caseInsensitive ?? false;
  if ((o.mode ?? 'whole') === 'whole') return refWhole(p, s, ci);
  const boundary = (at: number) => at === 0 || at === s.length || !isWord(s[at - 1]!) || !isWord(s[at]!);
  for (let i = 0; i <= s.length; i++) {
    if (!boundary(i)) continue;
    for (let j = i; j <= s.length; j++) if (boundary(j) && refWhole(p, s.slice(i, j), ci)) return true;
  }
  return false;
}

// ---- random inputs ----

/** A small seeded PRNG (mulberry32), so a failure names a reproducible case. */
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

// Letters in both cases, letters whose case mappings are irregular (ß/ẞ, the Kelvin sign, σ/ς/Σ,
// i/I/ı/İ, the long s), an astral pair of cases (Deseret), an emoji, word and non-word ASCII,
// and the wildcards themselves.
const ALPHABET = [...'aAbB_1 .-', 'ß', 'ẞ', '\u212a', 'k', 'K', 'σ', 'ς', 'Σ', 'i', 'I', 'ı', 'İ', 'ſ', 's', 'S', '𐐀', '𐐨', '😀', 'é', 'É'];
const pick = <T,>(r: () => number, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;

function randomString(r: () => number, max: number, alphabet: readonly string[]): string {
  const n = Math.floor(r() * (max + 1));
  let s = '';
  for (let i = 0; i < n; i++) s += pick(r, alphabet);
  return s;
}

/** A pattern derived from a value (so that many match): pieces turned into `*`, `?` or another case. */
function patternFrom(r: () => number, value: string): string {
  let out = '';
  const cs = [...value];
  for (let i = 0; i < cs.length; i++) {
    const x = r();
    if (x < 0.12) {
      out += '*';
      i += Math.floor(r() * 3) - 1;
    } else if (x < 0.22) out += '?';
    else if (x < 0.32) out += r() < 0.5 ? cs[i]!.toUpperCase() : cs[i]!.toLowerCase();
    else out += cs[i]!;
  }
  return out;
}

const MODES: GlobOptions[] = [
  { mode: 'whole' },
  { mode: 'whole', caseInsensitive: true },
  { mode: 'words', caseInsensitive: true },
  { mode: 'words' },
  { mode: 'whole', wildcards: 'star' },
  { mode: 'words', wildcards: 'none', caseInsensitive: true },
  { mode: 'whole', wildcards: 'none', caseInsensitive: true },
];

describe('glob matcher against the reference', () => {
  for (const o of MODES) {
    it(`agrees on random short patterns and values (${JSON.stringify(o)})`, () => {
      const r = rng(0x5eed + MODES.indexOf(o));
      const patternAlphabet = [...ALPHABET, '*', '*', '?', '?'];
      let matches = 0;
      for (let n = 0; n < 3000; n++) {
        const value = randomString(r, 9, ALPHABET);
        const pattern = r() < 0.5 ? randomString(r, 6, patternAlphabet) : patternFrom(r, r() < 0.5 ? value : randomString(r, 4, ALPHABET));
        const want = reference(pattern, value, o);
        if (want) matches++;
        expect(compileGlob(pattern, o).test(value), `${JSON.stringify(pattern)} on ${JSON.stringify(value)}`).toBe(want);
      }
      // The inputs exercise both answers.
      expect(matches).toBeGreaterThan(150);
    });
  }

  it('agrees on patterns longer than one state word (32 characters and more)', () => {
    const r = rng(77);
    const small = [...'abAB _-'];
    let matches = 0;
    let multiWord = 0;
    for (let n = 0; n < 400; n++) {
      const value = randomString(r, 90, small);
      const base = r() < 0.7 ? value : randomString(r, 90, small);
      const pattern = patternFrom(r, base) + (r() < 0.3 ? '*' : '');
      for (const o of [MODES[1]!, MODES[2]!, MODES[3]!]) {
        const glob = compileGlob(pattern, o);
        if (glob.stateWords > 1) multiWord++;
        const want = referenceMemo(pattern, value, o);
        if (want) matches++;
        expect(glob.test(value), `${JSON.stringify(pattern)} on ${JSON.stringify(value)} ${JSON.stringify(o)}`).toBe(want);
      }
    }
    expect(matches).toBeGreaterThan(100);
    expect(multiWord).toBeGreaterThan(300);
  });

  it('agrees on long literal keywords in words mode (found by KMP, not the automaton)', () => {
    const r = rng(99);
    for (let n = 0; n < 500; n++) {
      const value = randomString(r, 60, [...'aab b_A.']);
      const at = Math.floor(r() * value.length);
      const pattern = value.slice(at, at + Math.floor(r() * 12) + 1) || 'a';
      for (const o of [{ mode: 'words', wildcards: 'none', caseInsensitive: true }, { mode: 'words', caseInsensitive: true }] as GlobOptions[]) {
        expect(compileGlob(pattern, o).test(value), `${JSON.stringify(pattern)} on ${JSON.stringify(value)}`).toBe(reference(pattern, value, o));
      }
    }
  });
});

/** The reference with a memo on (i, j), for the longer inputs (the same recursion, polynomial). */
function referenceMemo(pattern: string, value: string, o: GlobOptions): boolean {
  const p = refTokens(pattern, o);
  const s = cpsOf(value);
  const ci = o.caseInsensitive ?? false;
  const whole = (sub: number[]) => {
    const memo = new Map<number, boolean>();
    const go = (i: number, j: number): boolean => {
      const key = i * 100_000 + j;
      const hit = memo.get(key);
      if (hit !== undefined) return hit;
      let v: boolean;
      if (i === p.length) v = j === sub.length;
      else if (p[i] === STAR) v = go(i + 1, j) || (j < sub.length && go(i, j + 1));
      else if (j === sub.length) v = false;
      else v = (p[i] === ANY || (ci ? sameIgnoringCase(p[i]!, sub[j]!) : p[i] === sub[j])) && go(i + 1, j + 1);
      memo.set(key, v);
      return v;
    };
    return go(0, 0);
  };
  if ((o.mode ?? 'whole') === 'whole') return whole(s);
  const boundary = (at: number) => at === 0 || at === s.length || !isWord(s[at - 1]!) || !isWord(s[at]!);
  for (let i = 0; i <= s.length; i++) {
    if (!boundary(i)) continue;
    for (let j = i; j <= s.length; j++) if (boundary(j) && whole(s.slice(i, j))) return true;
  }
  return false;
}

describe('glob semantics by example', () => {
  const ci: GlobOptions = { caseInsensitive: true };
  const words: GlobOptions = { caseInsensitive: true, mode: 'words' };

  it('matches whole values: * any run, ? one character', () => {
    expect(matchGlob('lunc?*', 'Lunch plans', ci)).toBe(true);
    expect(matchGlob('lunc?*', 'LUNCH', ci)).toBe(true);
    expect(matchGlob('lunc?*', ' lunch', ci)).toBe(false);
    expect(matchGlob('lunc?*', 'lunc', ci)).toBe(false);
    expect(matchGlob('m.room.*', 'm.room.message')).toBe(true);
    expect(matchGlob('m.room.*', 'm.roomXmessage')).toBe(false);
    expect(matchGlob('M.ROOM.*', 'm.room.message')).toBe(false);
    expect(matchGlob('', '')).toBe(true);
    expect(matchGlob('', 'x')).toBe(false);
    expect(matchGlob('*', '')).toBe(true);
    expect(matchGlob('***', 'multi\nline')).toBe(true);
    expect(matchGlob('a**b', 'ab')).toBe(true);
    expect(matchGlob('?*?', 'a')).toBe(false);
    expect(matchGlob('?*?', 'ab')).toBe(true);
    expect(matchGlob('(x)[y]+.\\', '(X)[Y]+.\\', ci)).toBe(true);
  });

  it('star-only wildcards leave ? literal (event filter types)', () => {
    const star: GlobOptions = { wildcards: 'star' };
    expect(matchGlob('m.?', 'm.x', star)).toBe(false);
    expect(matchGlob('m.?', 'm.?', star)).toBe(true);
    expect(matchGlob('m.*', 'm.x', star)).toBe(true);
    expect(matchGlob('a*b', 'aXYb', star)).toBe(true);
  });

  it('literal patterns take * and ? as themselves', () => {
    const lit: GlobOptions = { wildcards: 'none', caseInsensitive: true, mode: 'words' };
    expect(matchGlob('Dr. *Who?', 'hello dr. *who? there', lit)).toBe(true);
    expect(matchGlob('Dr. *Who?', 'hello dr. X who! there', lit)).toBe(false);
    expect(matchGlob('*', 'a * b', lit)).toBe(true);
    expect(matchGlob('*', 'a b', lit)).toBe(false);
  });

  it('in words mode, matches a part of the value between word boundaries', () => {
    expect(matchGlob('ex*ple', 'An example event.', words)).toBe(true);
    expect(matchGlob('foo', 'a foo, b', words)).toBe(true);
    expect(matchGlob('foo', 'FOO!', words)).toBe(true);
    expect(matchGlob('foo', 'foobar', words)).toBe(false);
    expect(matchGlob('foo', 'xfoo', words)).toBe(false);
    expect(matchGlob('foo', 'x_foo', words)).toBe(false);
    expect(matchGlob('foo', 'x-foo', words)).toBe(true);
    expect(matchGlob('foo*', 'foobar baz', words)).toBe(true);
    expect(matchGlob('b?r', 'foo bar baz', words)).toBe(true);
    expect(matchGlob('b?r', 'foo bars', words)).toBe(false);
    // A pattern that starts or ends with a non-word character: the place next to it is a boundary.
    expect(matchGlob('@room', 'hello @room!', words)).toBe(true);
    expect(matchGlob('@room', 'hello@room', words)).toBe(true);
    expect(matchGlob('@room', 'hello @roommates', words)).toBe(false);
    expect(matchGlob('.', 'a.b', words)).toBe(true);
    // Non-ASCII letters are not word characters (the spec's set is [A-Za-z0-9_]).
    expect(matchGlob('ça', 'et ça va', words)).toBe(true);
    expect(matchGlob('a', 'ça', words)).toBe(true);
    // The empty pattern and a lone star match at the start of any value.
    expect(matchGlob('', 'anything', words)).toBe(true);
    expect(matchGlob('*', '', words)).toBe(true);
  });

  it('counts code points, not UTF-16 units', () => {
    expect(matchGlob('a?c', 'a😀c')).toBe(true);
    expect(matchGlob('a??c', 'a😀c')).toBe(false);
    expect(matchGlob('?', '😀')).toBe(true);
    expect(matchGlob('😀*', '😀x')).toBe(true);
    expect(matchGlob('?😀', 'x😀', words)).toBe(true);
    // Lone surrogates are one character each, as in for…of.
    expect(matchGlob('??', '\ud800\udc00')).toBe(false);
    expect(matchGlob('??', '\udc00\ud800')).toBe(true);
  });

  it('folds case per code point as /…/iu does', () => {
    expect(matchGlob('straße', 'STRAẞE', ci)).toBe(true);
    expect(matchGlob('strasse', 'straße', ci)).toBe(false);
    expect(matchGlob('k', '\u212a', ci)).toBe(true); // Kelvin sign
    expect(matchGlob('ΟΔΟΣ', 'οδος', ci)).toBe(true);
    expect(matchGlob('ΟΔΟΣ', 'οδος', ci)).toBe(true);
    expect(matchGlob('𐐀', '𐐨', ci)).toBe(true); // Deseret, outside the BMP
    expect(matchGlob('i', 'ı', ci)).toBe(false);
    expect(matchGlob('I', 'ı', ci)).toBe(false);
    expect(matchGlob('s*', 'ſome', ci)).toBe(true);
    expect(matchGlob('k', '\u212a')).toBe(false);
    // Every code point whose case fold differs from it is equal to its fold under /…/iu.
    const esc = (s: string) => s.replace(/[\\^$.*+?()[\]{}|/]/g, '\\$&');
    for (let c = 0x80; c <= 0xffff; c++) {
      if (c >= 0xd800 && c <= 0xdfff) continue;
      const f = foldCodePoint(c);
      if (f !== c) expect(new RegExp(`^${esc(String.fromCodePoint(c))}$`, 'iu').test(String.fromCodePoint(f)), c.toString(16)).toBe(true);
    }
  });
});

describe('glob work is linear in the value', () => {
  const adversarial = '*a*a*a*a*a*a*a*b';
  const a64k = 'a'.repeat(65_536);

  it('takes the pattern that stalled a backtracking RegExp in one pass of a one-word automaton', () => {
    for (const o of [{}, { caseInsensitive: true }, { caseInsensitive: true, mode: 'words' }, { wildcards: 'star' }] as GlobOptions[]) {
      const g = compileGlob(adversarial, o);
      expect(g.stateWords).toBe(1);
      expect(g.test('a'.repeat(64))).toBe(false);
      expect(g.test('a'.repeat(70))).toBe(false);
      expect(g.test(a64k)).toBe(false);
      expect(g.test(`${a64k.slice(1)}b`)).toBe(true);
    }
    expect(compileGlob(adversarial, { mode: 'words' }).test(`${'a '.repeat(30_000)}ab`)).toBe(true);
    expect(compileGlob(adversarial, { mode: 'words' }).test(`${'a '.repeat(30_000)}ab_`)).toBe(false);
  });

  it('takes long adversarial patterns with a multi-word state', () => {
    const long = `${'*a'.repeat(255)}*b`;
    const g = compileGlob(long, { caseInsensitive: true, mode: 'words' });
    expect(g.stateWords).toBe(Math.ceil(257 / 32));
    expect(g.test(a64k)).toBe(false);
    expect(g.test(`${a64k.slice(1)}B`)).toBe(true);
    const star = compileGlob(`${'*?'.repeat(300)}*`, {});
    expect(star.test('x'.repeat(299))).toBe(false);
    expect(star.test(a64k)).toBe(true);
  });

  it('finds long keywords without an automaton, and long display names in long bodies', () => {
    const name = 'ab'.repeat(16_000);
    const g = compileGlob(name, { wildcards: 'none', caseInsensitive: true, mode: 'words' });
    expect(g.stateWords).toBe(0);
    expect(g.test(`${'ab'.repeat(16_383)}a`)).toBe(false);
    expect(g.test(`x ${name.toUpperCase()} y`)).toBe(true);
    expect(g.test(`xab${name}`)).toBe(false);
  });

  it('refuses values and patterns past the documented bounds', () => {
    expect(matchGlob('*', 'x'.repeat(MAX_GLOB_VALUE_LENGTH))).toBe(true);
    expect(matchGlob('*', 'x'.repeat(MAX_GLOB_VALUE_LENGTH + 1))).toBe(false);
    const tooLong = `${'?'.repeat(MAX_GLOB_CHARS + 1)}*`;
    expect(compileGlob(tooLong).stateWords).toBe(0);
    expect(matchGlob(tooLong, 'x'.repeat(MAX_GLOB_CHARS + 5))).toBe(false);
    // Stars do not count towards the bound: they collapse.
    expect(matchGlob(`${'*'.repeat(10_000)}x`, 'abcx')).toBe(true);
    expect(matchGlob(`${'?'.repeat(MAX_GLOB_CHARS)}*`, 'x'.repeat(MAX_GLOB_CHARS))).toBe(true);
  });

  it('compiled patterns are cached and shared', () => {
    expect(compileGlob('cake*lie', { caseInsensitive: true })).toBe(compileGlob('cake*lie', { caseInsensitive: true }));
    expect(compileGlob('cake*lie', { caseInsensitive: true })).not.toBe(compileGlob('cake*lie', {}));
  });
});
