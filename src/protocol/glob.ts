/**
 * Glob matching (appendices, "Glob-style matching": `*` matches zero or more characters, `?`
 * exactly one) in time linear in the value matched, whatever the pattern. Pure.
 *
 * Why not a RegExp: V8's regular expressions backtrack, so a glob turned into one (`*` → `.*?`)
 * takes time exponential in the number of stars on a value that almost matches —
 * `*a*a*a*a*a*a*a*b` against 64 `a`s ran for tens of seconds and stalled a whole process. Globs
 * come from users (push rules, event filters) and from rooms and remote servers (server ACLs),
 * so every glob we match goes through this module instead.
 *
 * How: the pattern becomes a nondeterministic automaton whose states are "the first i pattern
 * characters are matched" (i = 0…m, counting `?` and literal characters; a run of wildcards
 * with a `*` in it is a self-loop on the state it follows, so `a**b` and `a*b` are one
 * automaton). The set of live states is a bitset, and one character of the value moves all of
 * them at once (shift-and):
 *
 *     next = ((live << 1) & accepts(char)) | (live & selfLoops)
 *
 * so a match costs ⌈(m+1)/32⌉ word operations per character of the value, with no backtracking
 * and no state beyond two bitsets. `accepts(char)` is the set of positions holding `?` or that
 * character; for a pattern over one word it is a table lookup, for longer ones a character that
 * occurs at many positions has a whole mask and one that occurs at few has its position list,
 * so a compiled pattern takes memory linear in its length. Patterns without wildcards need no
 * automaton: matched whole they are a comparison, in `words` mode a Knuth–Morris–Pratt search
 * (O(n + m), so a long display name costs no more than a short one). In `words` mode a native
 * `includes` of the pattern's longest literal run turns most values away first.
 *
 * Characters are code points, not UTF-16 units: `?` matches one emoji. Case-insensitive
 * matching compares code points under simple case folding (per code point, the mapping
 * JavaScript's `/…/iu` uses, so `K` (Kelvin), `k` and `K` are one letter and `ß` is not `ss`).
 *
 * Modes:
 * - `whole`: the pattern must match the entire value (push rule `event_match`, filters, ACLs).
 * - `words` (push rules on `content.body`): the pattern must match some part of the value that
 *   starts and ends at a word boundary. A word character is `[A-Za-z0-9_]` (the spec's set,
 *   ASCII only); a place in the value is a boundary unless it lies between two word characters,
 *   so the start and end of the value always are. This is what the spec's "starts and ends at
 *   a word boundary" reads as in Synapse, whose pattern for it is `(?:^|\b|\W)…(?:\b|\W|$)`.
 *
 * Wildcards: `glob` (`*` and `?`, the spec's globs), `star` (only `*`; event filters' `types`,
 * whose spec text knows no `?`), `none` (the pattern is a literal; display-name mentions).
 *
 * Limits, so that the work of one match is bounded whatever the input (callers refuse long
 * patterns where they enter; these are the backstop):
 * - A value longer than `MAX_GLOB_VALUE_LENGTH` UTF-16 units never matches: no value taken
 *   from a valid event can be that long (a whole event is at most 65,536 bytes).
 * - A pattern with wildcards and more than `MAX_GLOB_CHARS` characters besides `*` never
 *   matches: it could only match values at least that long, and no caller lets such a pattern
 *   in (push rule patterns and filter types are at most 255 bytes; server names, the values
 *   ACL globs are matched against, are at most 255 characters).
 * So one match costs at most 65,536 × ⌈4,097/32⌉ word operations, and with the patterns
 * callers accept (≤ 255 bytes) at most 65,536 × 8.
 *
 * Compiled patterns are kept in a small LRU cache, as the same patterns (default push rules,
 * a user's keywords, a sync filter) are matched again and again.
 */

export type GlobWildcards = 'glob' | 'star' | 'none';
export type GlobMode = 'whole' | 'words';

export interface GlobOptions {
  /** Which characters are wildcards (default `glob`: `*` and `?`). */
  wildcards?: GlobWildcards;
  /** Compare code points under simple case folding (default false). */
  caseInsensitive?: boolean;
  /** `whole` (default) or `words` (any part between word boundaries). */
  mode?: GlobMode;
}

/** Values longer than this (UTF-16 units) never match. */
export const MAX_GLOB_VALUE_LENGTH = 65_536;
/** Patterns with wildcards and more characters than this besides `*` never match. */
export const MAX_GLOB_CHARS = 4_096;

export interface Glob {
  readonly pattern: string;
  readonly options: Required<GlobOptions>;
  /**
   * 32-bit words in the automaton's state (the work per character of the value); 0 when the
   * pattern needs no automaton (a literal, compared or searched for; a pattern that never matches).
   */
  readonly stateWords: number;
  test(value: string): boolean;
}

// ---- case folding ----

/** Simple case folding of BMP code points, filled as they are met (0: not yet known). */
const bmpFold = new Uint16Array(0x10000);

function singleCodePoint(s: string): number {
  const c = s.codePointAt(0);
  return c !== undefined && s.length === (c > 0xffff ? 2 : 1) ? c : -1;
}

/**
 * The representative of a code point's case class: lowercase of its uppercase, where both are
 * one code point (so `ς`, `σ` and `Σ` meet at `σ`, and `ß`, whose uppercase is two letters,
 * stays `ß`). Dotless `ı` is its own class: simple case folding keeps it apart from `i`/`I`
 * (only the Turkic foldings join them), though its uppercase is `I`.
 */
function computeFold(c: number): number {
  if (c === 0x131) return c;
  const s = String.fromCodePoint(c);
  const upper = s.toUpperCase();
  const base = singleCodePoint(upper) >= 0 ? upper : s;
  const lower = singleCodePoint(base.toLowerCase());
  return lower >= 0 ? lower : c;
}

/** A code point's case-folded form. */
export function foldCodePoint(c: number): number {
  if (c < 0x80) return c >= 0x41 && c <= 0x5a ? c + 0x20 : c;
  if (c <= 0xffff) {
    let f = bmpFold[c]!;
    if (f === 0) bmpFold[c] = f = computeFold(c);
    return f;
  }
  return computeFold(c);
}

const identity = (c: number): number => c;

/** Word characters for the `words` mode: `[A-Za-z0-9_]`. */
function isWordChar(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c === 0x5f;
}

// ---- compiling ----

const ANY = -1;

interface Parsed {
  /** Per pattern character (1…m): a code point (folded when matching case-insensitively) or ANY. */
  tokens: number[];
  /** Per state (0…m): whether a `*` follows the first i characters (a self-loop). */
  loops: boolean[];
  hasStar: boolean;
}

function parse(pattern: string, wildcards: GlobWildcards, fold: (c: number) => number): Parsed {
  const tokens: number[] = [];
  const loops: boolean[] = [false];
  let hasStar = false;
  for (let i = 0; i < pattern.length; ) {
    const c = pattern.codePointAt(i)!;
    i += c > 0xffff ? 2 : 1;
    if (c === 0x2a && wildcards !== 'none') {
      loops[tokens.length] = true;
      hasStar = true;
    } else {
      tokens.push(c === 0x3f && wildcards === 'glob' ? ANY : fold(c));
      loops.push(false);
    }
  }
  return { tokens, loops, hasStar };
}

/** Iterate a string's code points (lone surrogates are one each, as in `for…of`). */
function codePointAt(s: string, i: number): number {
  const c = s.charCodeAt(i);
  if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
    const d = s.charCodeAt(i + 1);
    if (d >= 0xdc00 && d <= 0xdfff) return ((c - 0xd800) << 10) + (d - 0xdc00) + 0x10000;
  }
  return c;
}

class NeverGlob implements Glob {
  readonly stateWords = 0;
  constructor(
    readonly pattern: string,
    readonly options: Required<GlobOptions>,
  ) {}
  test(): boolean {
    return false;
  }
}

/** A pattern without wildcards matched against the whole value: a comparison. */
class LiteralGlob implements Glob {
  readonly stateWords = 0;
  private readonly folded: number[];
  constructor(
    readonly pattern: string,
    readonly options: Required<GlobOptions>,
    tokens: number[],
    private readonly fold: (c: number) => number,
  ) {
    this.folded = tokens;
  }
  test(value: string): boolean {
    if (value === this.pattern) return value.length <= MAX_GLOB_VALUE_LENGTH;
    const want = this.folded;
    // As many code points as the pattern: between m and 2m UTF-16 units.
    const n = value.length;
    if (!this.options.caseInsensitive || n > MAX_GLOB_VALUE_LENGTH || n < want.length || n > 2 * want.length) return false;
    let k = 0;
    for (let i = 0; i < value.length; k++) {
      if (k >= want.length) return false;
      const c = codePointAt(value, i);
      i += c > 0xffff ? 2 : 1;
      if (this.fold(c) !== want[k]) return false;
    }
    return k === want.length;
  }
}

/** A cheap test every matching value passes, run natively before the matcher proper. */
type Prefilter = (value: string) => boolean;

/**
 * A prefilter from the pattern's longest run of literal characters (most values hold none of
 * a user's keywords, and `String.includes` is native): every match contains that run.
 * Case-sensitively, the value must contain it as it is. Case-insensitively, only an ASCII run
 * is used: the lowercased value must contain it, which holds for every match as the only code
 * points that fold to ASCII are ASCII itself, the Kelvin sign (which lowercases to `k`) and the
 * long s (which does not lowercase to `s`, so a value holding one skips the prefilter).
 */
function prefilterOf(tokens: readonly number[], loops: readonly boolean[], caseInsensitive: boolean): Prefilter | null {
  let bestStart = 0;
  let bestLength = 0;
  let start = 0;
  tokens.forEach((t, k) => {
    const usable = t !== ANY && !(caseInsensitive && t >= 0x80);
    // A `*` before this character (a self-loop on state k), a `?` or an unusable one ends the run.
    if (!usable || loops[k]) start = usable ? k : k + 1;
    if (usable && k + 1 - start > bestLength) {
      bestStart = start;
      bestLength = k + 1 - start;
    }
  });
  if (bestLength === 0) return null;
  let literal = '';
  for (let k = bestStart; k < bestStart + bestLength; k++) literal += String.fromCodePoint(tokens[k]!);
  if (!caseInsensitive) return (value) => value.includes(literal);
  return (value) => value.includes('\u017f') || value.toLowerCase().includes(literal);
}

/**
 * A pattern without wildcards matched in `words` mode (keywords, display names): every
 * occurrence found by Knuth–Morris–Pratt over the case-folded code points, O(n + m) whatever
 * the pattern's length, and the first one with a boundary at both ends answers.
 */
class LiteralWordsGlob implements Glob {
  readonly stateWords = 0;
  private readonly want: Int32Array;
  /** KMP failure function: the longest proper border of want[0..k]. */
  private readonly border: Int32Array;
  /**
   * Whether each of the last m + 1 code points is a word character (a match's start needs the
   * one before it): memory for the pattern's length, not the value's; reused by every call,
   * which is safe as a call runs to its end before another can start.
   */
  private readonly ring: Uint8Array;
  private readonly mayMatch: Prefilter | null;
  constructor(
    readonly pattern: string,
    readonly options: Required<GlobOptions>,
    tokens: number[],
    private readonly fold: (c: number) => number,
  ) {
    const want = Int32Array.from(tokens);
    const border = new Int32Array(want.length);
    for (let k = 1, b = 0; k < want.length; k++) {
      while (b > 0 && want[k] !== want[b]) b = border[b - 1]!;
      if (want[k] === want[b]) b++;
      border[k] = b;
    }
    this.want = want;
    this.border = border;
    this.ring = new Uint8Array(want.length + 1);
    this.mayMatch = prefilterOf(tokens, [], options.caseInsensitive);
  }

  test(value: string): boolean {
    const n = value.length;
    const { want, border, fold, ring } = this;
    const m = want.length;
    if (n > MAX_GLOB_VALUE_LENGTH || n < m) return false;
    if (m === 0) return true; // the start of the value is a boundary
    if (this.mayMatch && !this.mayMatch(value)) return false;
    for (let i = 0, j = 0, k = 0; i < n; j++) {
      const c = codePointAt(value, i);
      i += c > 0xffff ? 2 : 1;
      const isWord = isWordChar(c);
      ring[j % (m + 1)] = isWord ? 1 : 0;
      const f = fold(c);
      while (k > 0 && f !== want[k]) k = border[k - 1]!;
      if (f === want[k]) k++;
      if (k < m) continue;
      k = border[k - 1]!;
      // A match of code points j+1-m … j: a boundary after it (the end of the value, or not
      // between two word characters) and before it (likewise).
      const endsAtBoundary = i >= n || !isWord || !isWordChar(codePointAt(value, i));
      const start = j + 1 - m;
      const startsAtBoundary = start === 0 || ring[(start - 1) % (m + 1)] === 0 || ring[start % (m + 1)] === 0;
      if (endsAtBoundary && startsAtBoundary) return true;
    }
    return false;
  }
}

/** Patterns of up to 31 characters: the state is one 32-bit word. */
class SmallGlob implements Glob {
  readonly stateWords = 1;
  private readonly ascii = new Int32Array(128);
  private readonly other = new Map<number, number>();
  private readonly anyMask: number;
  private readonly loopMask: number;
  private readonly accept: number;
  private readonly minLength: number;
  private readonly maxLength: number;
  private readonly endsWithLoop: boolean;
  /** For `words` mode (whole values fail fast in the automaton itself). */
  private readonly mayMatch: Prefilter | null;
  constructor(
    readonly pattern: string,
    readonly options: Required<GlobOptions>,
    parsed: Parsed,
    private readonly fold: (c: number) => number,
  ) {
    const { tokens, loops } = parsed;
    this.mayMatch = options.mode === 'words' ? prefilterOf(tokens, loops, options.caseInsensitive) : null;
    let anyMask = 0;
    let loopMask = 0;
    tokens.forEach((t, k) => {
      const bit = 1 << (k + 1);
      if (t === ANY) anyMask |= bit;
      else if (t < 128) this.ascii[t] = this.ascii[t]! | bit;
      else this.other.set(t, (this.other.get(t) ?? 0) | bit);
    });
    loops.forEach((l, i) => {
      if (l) loopMask |= 1 << i;
    });
    // Every character also accepts the `?` positions.
    for (let c = 0; c < 128; c++) this.ascii[c] = this.ascii[c]! | anyMask;
    for (const [c, mask] of this.other) this.other.set(c, mask | anyMask);
    // Case-insensitively, an ASCII letter's table entry is reached through its folded form;
    // the uppercase entries are filled too so the hot loop can skip folding ASCII.
    if (options.caseInsensitive) for (let c = 0x41; c <= 0x5a; c++) this.ascii[c] = this.ascii[c + 0x20]!;
    this.anyMask = anyMask;
    this.loopMask = loopMask;
    this.accept = 1 << tokens.length;
    this.endsWithLoop = loops[tokens.length]!;
    this.minLength = tokens.length;
    this.maxLength = parsed.hasStar ? Infinity : 2 * tokens.length;
  }

  private accepts(c: number): number {
    if (c < 128) return this.ascii[c]!;
    // A folded form may be ASCII (the Kelvin sign is `k`, the long s is `s`).
    const f = this.fold(c);
    return f < 128 ? this.ascii[f]! : (this.other.get(f) ?? this.anyMask);
  }

  test(value: string): boolean {
    const n = value.length;
    if (n > MAX_GLOB_VALUE_LENGTH) return false;
    const { loopMask, accept } = this;
    if (this.options.mode === 'whole') {
      // Code points ≤ UTF-16 units ≤ 2 × code points: cheap bounds before any work.
      if (n < this.minLength || n > this.maxLength) return false;
      let live = 1;
      for (let i = 0; i < n; ) {
        const c = codePointAt(value, i);
        i += c > 0xffff ? 2 : 1;
        live = ((live << 1) & this.accepts(c)) | (live & loopMask);
        if (live === 0) return false;
        if ((live & accept) !== 0 && this.endsWithLoop) return true;
      }
      return (live & accept) !== 0;
    }
    // words: a match may start at any boundary and must end at one; it needs m code points.
    if (n < this.minLength || (this.mayMatch && !this.mayMatch(value))) return false;
    let live = 0;
    let prevWord = false;
    for (let i = 0; ; ) {
      const c = i < n ? codePointAt(value, i) : -1;
      const boundary = !prevWord || c < 0 || !isWordChar(c);
      if (boundary) {
        live |= 1;
        if ((live & accept) !== 0) return true;
      }
      if (c < 0) return false;
      i += c > 0xffff ? 2 : 1;
      live = ((live << 1) & this.accepts(c)) | (live & loopMask);
      if ((live & accept) !== 0 && this.endsWithLoop) return true;
      prevWord = isWordChar(c);
    }
  }
}

/** Longer patterns: the state is ⌈(m+1)/32⌉ words. */
class LargeGlob implements Glob {
  readonly stateWords: number;
  /** The `?` positions: what every character accepts. */
  private readonly anyMask: Int32Array;
  private readonly loopMask: Int32Array;
  /** Characters at many positions: their positions and the `?` positions, as a mask. */
  private readonly dense = new Map<number, Int32Array>();
  /** Characters at few positions: those positions. */
  private readonly sparse = new Map<number, Int32Array>();
  private readonly m: number;
  private readonly endsWithLoop: boolean;
  private readonly hasStar: boolean;
  /** For `words` mode (whole values fail fast in the automaton itself). */
  private readonly mayMatch: Prefilter | null;
  constructor(
    readonly pattern: string,
    readonly options: Required<GlobOptions>,
    parsed: Parsed,
    private readonly fold: (c: number) => number,
  ) {
    const { tokens, loops } = parsed;
    const m = tokens.length;
    const words = (m >> 5) + 1;
    this.m = m;
    this.stateWords = words;
    this.anyMask = new Int32Array(words);
    this.loopMask = new Int32Array(words);
    const positions = new Map<number, number[]>();
    tokens.forEach((t, k) => {
      const p = k + 1;
      if (t === ANY) this.anyMask[p >> 5]! |= 1 << (p & 31);
      else (positions.get(t) ?? positions.set(t, []).get(t)!).push(p);
    });
    loops.forEach((l, i) => {
      if (l) this.loopMask[i >> 5]! |= 1 << (i & 31);
    });
    // A character at `words` positions or more costs no more as a mask; fewer, as a list. So
    // masks take at most m + words words in all, and lists m entries.
    for (const [c, ps] of positions) {
      if (ps.length >= words) {
        const mask = Int32Array.from(this.anyMask);
        for (const p of ps) mask[p >> 5]! |= 1 << (p & 31);
        this.dense.set(c, mask);
      } else {
        this.sparse.set(c, Int32Array.from(ps));
      }
    }
    this.endsWithLoop = loops[m]!;
    this.hasStar = parsed.hasStar;
    this.mayMatch = options.mode === 'words' ? prefilterOf(tokens, loops, options.caseInsensitive) : null;
  }

  test(value: string): boolean {
    const n = value.length;
    if (n > MAX_GLOB_VALUE_LENGTH) return false;
    const { m, anyMask, loopMask, dense, sparse, fold, endsWithLoop } = this;
    const whole = this.options.mode === 'whole';
    if (n < m || (whole && !this.hasStar && n > 2 * m)) return false;
    if (this.mayMatch && !this.mayMatch(value)) return false;
    const words = anyMask.length;
    const acceptWord = m >> 5;
    const acceptBit = 1 << (m & 31);
    // Two state buffers per call (a few hundred bytes at most), so calls share nothing.
    let live = new Int32Array(words);
    let next = new Int32Array(words);
    if (whole) live[0] = 1;
    let prevWord = false;
    for (let i = 0; ; ) {
      const c = i < n ? codePointAt(value, i) : -1;
      if (!whole && (!prevWord || c < 0 || !isWordChar(c))) {
        // words: a match may start at any boundary and must end at one.
        live[0]! |= 1;
        if ((live[acceptWord]! & acceptBit) !== 0) return true;
      }
      if (c < 0) return whole && (live[acceptWord]! & acceptBit) !== 0;
      i += c > 0xffff ? 2 : 1;
      prevWord = isWordChar(c);
      const f = fold(c);
      const accepts = dense.get(f) ?? anyMask;
      let carry = 0;
      let any = 0;
      for (let w = 0; w < words; w++) {
        const d = live[w]!;
        const v = (((d << 1) | carry) & accepts[w]!) | (d & loopMask[w]!);
        carry = d >>> 31;
        next[w] = v;
        any |= v;
      }
      const ps = accepts === anyMask ? sparse.get(f) : undefined;
      if (ps !== undefined) {
        for (let k = 0; k < ps.length; k++) {
          const p = ps[k]!;
          const q = p - 1;
          if ((live[q >> 5]! & (1 << (q & 31))) !== 0) {
            next[p >> 5]! |= 1 << (p & 31);
            any = 1;
          }
        }
      }
      const t = live;
      live = next;
      next = t;
      if (whole && any === 0) return false;
      if (endsWithLoop && (live[acceptWord]! & acceptBit) !== 0) return true;
    }
  }
}

function build(pattern: string, options: Required<GlobOptions>): Glob {
  const fold = options.caseInsensitive ? foldCodePoint : identity;
  const parsed = parse(pattern, options.wildcards, fold);
  const m = parsed.tokens.length;
  // Literals are compared or searched for in O(n + m), whatever their length.
  if (!parsed.hasStar && !parsed.tokens.includes(ANY)) {
    return options.mode === 'whole' ? new LiteralGlob(pattern, options, parsed.tokens, fold) : new LiteralWordsGlob(pattern, options, parsed.tokens, fold);
  }
  if (m > MAX_GLOB_CHARS) return new NeverGlob(pattern, options);
  if (m < 32) return new SmallGlob(pattern, options, parsed, fold);
  return new LargeGlob(pattern, options, parsed, fold);
}

// ---- the cache ----

/**
 * Cached compiled patterns, least recently used first, bounded by a rough estimate of their
 * memory (a table of 128 masks each, and some tens of bytes per pattern character): ~16 MB.
 */
const cache = new Map<string, Glob>();
let cachedWeight = 0;
const CACHE_MAX_WEIGHT = 16 << 20;
const weightOf = (pattern: string): number => 1024 + 64 * pattern.length;

/**
 * A compiled glob (cached). It keeps no state between calls to `test`, so one compiled
 * pattern serves every caller (JavaScript runs one `test` at a time).
 */
export function compileGlob(pattern: string, options: GlobOptions = {}): Glob {
  const full: Required<GlobOptions> = { wildcards: options.wildcards ?? 'glob', caseInsensitive: options.caseInsensitive ?? false, mode: options.mode ?? 'whole' };
  const key = `${full.wildcards[0]}${full.caseInsensitive ? 'i' : 's'}${full.mode === 'words' ? 'b' : 'w'}${pattern}`;
  const hit = cache.get(key);
  if (hit) {
    cache.delete(key);
    cache.set(key, hit);
    return hit;
  }
  const glob = build(pattern, full);
  const weight = weightOf(pattern);
  if (weight <= CACHE_MAX_WEIGHT / 64) {
    cache.set(key, glob);
    cachedWeight += weight;
    for (const [k, g] of cache) {
      if (cachedWeight <= CACHE_MAX_WEIGHT) break;
      cache.delete(k);
      cachedWeight -= weightOf(g.pattern);
    }
  }
  return glob;
}

/** Whether `value` matches the glob `pattern`. */
export function matchGlob(pattern: string, value: string, options: GlobOptions = {}): boolean {
  return compileGlob(pattern, options).test(value);
}
