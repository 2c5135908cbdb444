/**
 * Where a `/send`'s time goes, from the trace that AXON_SEND_TRACE=<dir> makes the fronts and
 * workers write (src/runtime/send-trace.ts): joins their records by message id and prints each
 * stage's p50/p90/p99/max in ms. A script: it prints figures and asserts nothing.
 *
 *   node --import tsx scripts/send-trace-summary.ts <dir> [--from <epoch ms>] [--to <epoch ms>] [--last <s>]
 *
 * `--last S`: only the sends whose request began in the last S seconds of the trace (one rate
 * phase of `npm run bench`, say).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const argv = process.argv.slice(2);
const dir = argv[0];
if (!dir) {
  process.stderr.write('usage: send-trace-summary <dir> [--from ms] [--to ms] [--last s]\n');
  process.exit(1);
}
const opt = (n: string) => {
  const i = argv.indexOf(n);
  return i >= 0 ? Number(argv[i + 1]) : undefined;
};

type Rec = Record<string, number>;
const front = new Map<string, Rec>();
const worker = new Map<string, Rec>();
for (const f of readdirSync(dir)) {
  if (!f.endsWith('.jsonl')) continue;
  const into = f.startsWith('worker') ? worker : front;
  for (const line of readFileSync(join(dir, f), 'utf8').split('\n')) {
    if (!line) continue;
    const r = JSON.parse(line) as Rec & { m: string };
    into.set(r.m, r);
  }
}
const joined: Rec[] = [];
for (const [mid, f] of front) {
  const w = worker.get(mid);
  if (w && f.h0 !== undefined && f.ans !== undefined) joined.push({ ...w, ...f });
}
let from = opt('--from') ?? -Infinity;
const to = opt('--to') ?? Infinity;
const last = opt('--last');
if (last !== undefined && joined.length) from = Math.max(from, Math.max(...joined.map((r) => r.h0!)) - last * 1000);
const rows = joined.filter((r) => r.h0! >= from && r.h0! <= to);

// Consecutive stages: [label, from stage, to stage].
const STAGES: [string, string, string][] = [
  ['front: parsed -> ask (auth, checks)', 'h0', 'ask'],
  ['front: ask -> enqueue answered', 'ask', 'enq'],
  ['enqueue answered -> worker read it', 'enq', 'read'],
  ['worker: read -> actor took it up', 'read', 'start'],
  ['worker: took up -> decided', 'start', 'dec'],
  ['worker: decided -> commit call written', 'dec', 'sent'],
  ['worker: commit written -> durable', 'sent', 'dur'],
  ['durable -> front read the reply', 'dur', 'rep'],
  ['front: reply read -> answered', 'rep', 'ans'],
  ['total (parsed -> answered)', 'h0', 'ans'],
];
const pct = (xs: number[], p: number) => xs[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;
const f1 = (x: number) => x.toFixed(1).padStart(7);
process.stdout.write(`${rows.length} sends (of ${front.size} front and ${worker.size} worker records)\n`);
process.stdout.write(`${'stage'.padEnd(42)}    p50     p90     p99     max    mean\n`);
for (const [label, a, b] of STAGES) {
  const xs = rows.filter((r) => r[a] !== undefined && r[b] !== undefined).map((r) => r[b]! - r[a]!).sort((x, y) => x - y);
  if (!xs.length) continue;
  const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
  process.stdout.write(`${label.padEnd(42)}${f1(pct(xs, 50))} ${f1(pct(xs, 90))} ${f1(pct(xs, 99))} ${f1(xs[xs.length - 1]!)} ${f1(mean)}\n`);
}
// The slowest 1 %: which stage held them most.
const total = rows.map((r) => r.ans! - r.h0!).sort((x, y) => x - y);
if (total.length >= 100) {
  const cut = pct(total, 99);
  const slow = rows.filter((r) => r.ans! - r.h0! >= cut);
  process.stdout.write(`\nthe slowest 1 % (${slow.length} sends, >= ${cut.toFixed(1)} ms): mean ms per stage\n`);
  for (const [label, a, b] of STAGES.slice(0, -1)) {
    const xs = slow.filter((r) => r[a] !== undefined && r[b] !== undefined).map((r) => r[b]! - r[a]!);
    if (xs.length) process.stdout.write(`${label.padEnd(42)}${f1(xs.reduce((s, x) => s + x, 0) / xs.length)}\n`);
  }
}
