/** Small helpers shared by the benchmark scripts (bench-sync.ts, bench.ts, …). */
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
export const round = (n: number, d = 1) => (Number.isFinite(n) ? Math.round(n * 10 ** d) / 10 ** d : NaN);

/** Nearest-rank percentile of an ascending array (NaN when empty). */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** A port that was free on `host` (any of 127/8 works on Linux) a moment ago. */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** Run `fn` over `items` with at most `limit` in flight; stops taking new items after `deadline` (performance.now()). */
export async function pool<T, R>(items: T[], limit: number, fn: (item: T, i: number) => Promise<R>, deadline = Infinity): Promise<R[]> {
  const out: R[] = [];
  let next = 0;
  const lane = async () => {
    while (next < items.length && performance.now() < deadline) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  return out;
}

/**
 * A seeded PRNG (mulberry32), so the same workload draws the same rooms, senders and operations
 * on every server it runs against.
 */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A plain text table: first column left-aligned, the others right-aligned. */
export function table(rows: Record<string, unknown>[], cols: string[], headers: string[] = cols): string {
  const fmt = (v: unknown) => (v === undefined || v === null || (typeof v === 'number' && Number.isNaN(v)) ? '–' : String(v));
  const cells = [headers, ...rows.map((r) => cols.map((c) => fmt(r[c])))];
  const widths = cols.map((_c, i) => Math.max(...cells.map((row) => row[i]!.length)));
  return cells
    .map((row, j) => row.map((v, i) => (i === 0 ? v.padEnd(widths[i]!) : v.padStart(widths[i]!))).join('  ') + (j === 0 ? '\n' + widths.map((w) => '-'.repeat(w)).join('  ') : ''))
    .join('\n');
}

/**
 * Write a run's results as JSON into the repository's bench-results/ (created if missing);
 * `fileName` gets the run's timestamp (safe for file names). Returns the file's path.
 */
export function writeBenchResults(fileName: (stamp: string) => string, data: unknown, replacer?: (key: string, value: unknown) => unknown): string {
  const dir = join(import.meta.dirname, '..', '..', 'bench-results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, fileName(new Date().toISOString().replace(/[:.]/g, '-')));
  writeFileSync(file, JSON.stringify(data, replacer, 2) + '\n');
  return file;
}

/** The children killOnExit follows, until each exits. */
const followed = new Set<ChildProcess>();
let exitHooked = false;

/**
 * `child`, killed (SIGKILL) if this process exits while it still runs: a benchmark that fails a
 * check and exits with `process.exit(1)` before stopping the workers it started left them running,
 * retrying a Redis that was gone and taking CPU from every run after (five such workers were found
 * behind later measurements). SIGINT and SIGTERM become an exit, so that Ctrl-C goes through the
 * same path. Children stopped as usual are forgotten when they exit.
 */
export function killOnExit<T extends ChildProcess>(child: T): T {
  if (!exitHooked) {
    exitHooked = true;
    process.once('exit', () => {
      for (const c of followed) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    });
    process.once('SIGINT', () => process.exit(130));
    process.once('SIGTERM', () => process.exit(143));
  }
  followed.add(child);
  child.once('exit', () => followed.delete(child));
  return child;
}
