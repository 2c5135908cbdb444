/**
 * The pure parts of scripts/bench-ab.ts: the order the two sides run in, reading a figure from a
 * run's output, and what a series of pairs says.
 */

export type Side = 'a' | 'b';

/**
 * The order of `pairs` pairs' runs: A B, B A, A B, … — each side as often first as second, so a
 * machine that speeds up or slows down through the series favours neither (ABBA).
 */
export function abOrder(pairs: number): Side[][] {
  return Array.from({ length: pairs }, (_, i): Side[] => (i % 2 === 0 ? ['a', 'b'] : ['b', 'a']));
}

/**
 * The figure `pattern` captures (its first group) on the first line of `output` it matches: a
 * number, with thousands separators (`8,107`) allowed. Null when no line matches or the group is
 * not a number.
 */
export function figureIn(output: string, pattern: RegExp): number | null {
  const flags = pattern.flags.replace(/[gy]/g, '');
  const line = new RegExp(pattern.source, flags.includes('m') ? flags : `${flags}m`);
  const m = line.exec(output);
  if (!m || m[1] === undefined) return null;
  const text = m[1].replace(/,/g, '');
  if (!/^-?\d+(\.\d+)?$/.test(text)) return null;
  return Number(text);
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((x, y) => x - y);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export interface PairSummary {
  pairs: number;
  medianA: number;
  medianB: number;
  /** The median of each pair's B / A. */
  medianRatio: number;
  /** Pairs where B's figure was above A's, below it, equal. */
  bAbove: number;
  bBelow: number;
  ties: number;
  /**
   * The two-sided sign test's p-value of the pairs that differ (how often a coin would split them
   * at least this unevenly): with 5 pairs even 5 of 5 gives 0.06; it says how far to trust a
   * direction, not how large the difference is.
   */
  signTestP: number;
}

export function summarizePairs(pairs: readonly { a: number; b: number }[]): PairSummary {
  const bAbove = pairs.filter((p) => p.b > p.a).length;
  const bBelow = pairs.filter((p) => p.b < p.a).length;
  return {
    pairs: pairs.length,
    medianA: median(pairs.map((p) => p.a)),
    medianB: median(pairs.map((p) => p.b)),
    medianRatio: median(pairs.map((p) => p.b / p.a)),
    bAbove,
    bBelow,
    ties: pairs.length - bAbove - bBelow,
    signTestP: signTest(bAbove, bBelow),
  };
}

/** Two-sided exact sign test: P(a split at least as uneven as k : n-k) for a fair coin. */
function signTest(above: number, below: number): number {
  const n = above + below;
  if (n === 0) return 1;
  const k = Math.min(above, below);
  let tail = 0;
  for (let i = 0; i <= k; i++) tail += binomial(n, i);
  return Math.min(1, (2 * tail) / 2 ** n);
}

function binomial(n: number, k: number): number {
  let r = 1;
  for (let i = 1; i <= k; i++) r = (r * (n - k + i)) / i;
  return r;
}
