/**
 * Where a benchmark's round trips wait: reads the traces `scripts/lib/redis-call-trace.mjs` wrote
 * (one file per process) and prints, per process and command, how many were sent and their round
 * trip (sent to answered: the command's time in Redis, behind what Redis was doing, fsync
 * included, and the answer's way back); then, with --window, the calls of every process merged on
 * one clock for a slice of the run (a wave of messages followed from stage to stage).
 *
 *   node --import tsx scripts/redis-call-timeline.ts DIR [--window AT MS]
 *
 * AT: where the slice starts, as a fraction of the span of the traced workers' rows (0.5: the
 * middle); MS: its length. A script that prints figures; it changes nothing.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

type Row = [number, 'S' | 'R' | 'M', string, number, string, number?];
interface Trace {
  pid: number;
  argv: string;
  origin: number;
  rows: Row[];
}

const argv = process.argv.slice(2);
const dir = argv[0];
if (!dir) {
  process.stderr.write('usage: node --import tsx scripts/redis-call-timeline.ts DIR [--window AT MS]\n');
  process.exit(1);
}
const w = argv.indexOf('--window');
const window = w >= 0 ? { at: Number(argv[w + 1] ?? 0.5), ms: Number(argv[w + 2] ?? 30) } : null;

/** A short name for a process: its script, its id for a worker, and its pid (a benchmark's phases reuse worker ids). */
function label(t: Trace): string {
  const id = /--(?:id|worker) (\S+)/.exec(t.argv)?.[1];
  const script = /([\w.-]+)\.(?:ts|js|mjs)\b/.exec(t.argv)?.[1] ?? 'node';
  return `${id ? `${script}:${id}` : script}[${t.pid}]`;
}

const traces = readdirSync(dir)
  .filter((f) => /^trace-\d+\.json$/.test(f))
  .map((f) => ({ ...(JSON.parse(readFileSync(join(dir, f), 'utf8')) as Omit<Trace, 'pid'>), pid: Number(/\d+/.exec(f)![0]) }))
  .filter((t) => t.rows.length > 0);
if (traces.length === 0) {
  process.stderr.write(`no traces in ${dir}\n`);
  process.exit(1);
}

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
console.log('process                        command       conn     calls   round trip ms: mean / p50 / p90 / max');
for (const t of traces) {
  const byKey = new Map<string, number[]>();
  let messages = 0;
  for (const r of t.rows) {
    if (r[1] === 'M') messages++;
    if (r[1] !== 'R' || r[5] === undefined) continue;
    const key = `${r[2]}\u0000${r[4]}`;
    let l = byKey.get(key);
    if (!l) byKey.set(key, (l = []));
    l.push(r[0] - r[5]);
  }
  for (const [key, l] of [...byKey].sort((a, b) => b[1].length - a[1].length)) {
    const [cmd, conn] = key.split('\u0000');
    l.sort((a, b) => a - b);
    const mean = l.reduce((a, b) => a + b, 0) / l.length;
    console.log(`${label(t).padEnd(30)} ${cmd!.padEnd(12)}  ${conn!.padEnd(7)} ${String(l.length).padStart(6)}   ${[mean, pct(l, 50), pct(l, 90), l[l.length - 1]!].map((x) => x.toFixed(2)).join(' / ')}`);
  }
  if (messages) console.log(`${label(t).padEnd(30)} pub/sub messages received: ${messages}`);
}

if (window) {
  const workers = traces.filter((t) => /worker/.test(label(t)) || /--id /.test(t.argv));
  const span = (workers.length ? workers : traces).flatMap((t) => [t.origin + t.rows[0]![0], t.origin + t.rows[t.rows.length - 1]![0]]);
  const first = Math.min(...span);
  const from = first + (Math.max(...span) - first) * window.at;
  const to = from + window.ms;
  const events = traces
    .flatMap((t) => t.rows.map((r) => ({ t: t.origin + r[0], who: label(t), r })))
    .filter((e) => e.t >= from && e.t < to)
    .sort((a, b) => a.t - b.t);
  console.log(`\n${window.ms} ms from ${(window.at * 100).toFixed(0)} % of the run (ms, process, S sent / R answered, command, arguments or reply length, connection):`);
  let run: { who: string; n: number } | null = null;
  const flush = () => {
    if (run) console.log(`${' '.repeat(9)} ${run.who}: ${run.n} pub/sub message${run.n > 1 ? 's' : ''}`);
    run = null;
  };
  for (const e of events) {
    if (e.r[1] === 'M') {
      if (run && run.who === e.who) run.n++;
      else {
        flush();
        run = { who: e.who, n: 1 };
      }
      continue;
    }
    flush();
    const rtt = e.r[1] === 'R' && e.r[5] !== undefined ? `  (round trip ${(e.r[0] - e.r[5]).toFixed(2)})` : '';
    console.log(`${(e.t - from).toFixed(2).padStart(8)} ${e.who} ${e.r[1]} ${e.r[2]} ${e.r[3]} ${e.r[4]}${rtt}`);
  }
  flush();
}
