/**
 * Before/after pairs on a machine whose speed drifts from one minute to the next (README,
 * "Performance": quiet runs of the same code here differ by up to 25 % within minutes, so two
 * runs, one of each, say nothing). Runs one benchmark command for side A and side B in turns —
 * A B, B A, A B, … — reads one or more figures from each run's output, and prints every pair,
 * both medians, the median of the pairs' ratios (B / A), in how many pairs B was above, and the
 * sign test's p-value of that split. A script that prints figures; it asserts nothing.
 *
 *   node --import tsx scripts/bench-ab.ts [--a DIR] [--b DIR] [--a-env K=V,…] [--b-env K=V,…]
 *     [--pairs N] --value REGEX [--value REGEX …] -- COMMAND [ARG…]
 *
 * The sides differ by checkout (`--a`/`--b`: the directories COMMAND runs in; default both the
 * current one), by environment (`--a-env`/`--b-env`: added to this process's), or both.
 * REGEX: matched against each line of the run's output; its first group is the figure
 * (`--value '^100 rooms, 1 worker\s+(\d+)'` for bench:room's events/s). N: default 5.
 *
 *   node --import tsx scripts/bench-ab.ts --a /work/main --b /work/wt/x --pairs 6 \
 *     --value '^100 rooms, 1 worker\s+(\d+)' -- npm run -s bench:room   # with BENCH_ONLY=b BENCH_WORKERS=1
 */
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { abOrder, figureIn, summarizePairs, type Side } from './lib/ab-pairs';

function usage(problem: string): never {
  process.stderr.write(`${problem}\nusage: node --import tsx scripts/bench-ab.ts [--a DIR] [--b DIR] [--a-env K=V,…] [--b-env K=V,…] [--pairs N] --value REGEX [--value REGEX …] -- COMMAND [ARG…]\n`);
  process.exit(2);
}

function parseEnv(text: string | undefined): Record<string, string> {
  const env: Record<string, string> = {};
  if (!text) return env;
  for (const part of text.split(',')) {
    const eq = part.indexOf('=');
    if (eq <= 0) usage(`not K=V: ${part}`);
    env[part.slice(0, eq)] = part.slice(eq + 1);
  }
  return env;
}

const argv = process.argv.slice(2);
const dash = argv.indexOf('--');
if (dash < 0 || dash === argv.length - 1) usage('no command after --');
const command = argv.slice(dash + 1);
const opts = argv.slice(0, dash);
const values: RegExp[] = [];
const flag: Record<string, string> = {};
for (let i = 0; i < opts.length; i += 2) {
  const [k, v] = [opts[i]!, opts[i + 1]];
  if (v === undefined) usage(`${k} needs a value`);
  if (k === '--value') {
    try {
      values.push(new RegExp(v, 'm'));
    } catch (e) {
      usage(`--value ${v}: ${(e as Error).message}`);
    }
  } else if (['--a', '--b', '--a-env', '--b-env', '--pairs'].includes(k)) flag[k] = v;
  else usage(`unknown option ${k}`);
}
if (values.length === 0) usage('no --value');
const pairsWanted = Number(flag['--pairs'] ?? 5);
if (!Number.isInteger(pairsWanted) || pairsWanted < 1) usage('--pairs: a whole number ≥ 1');
const sides: Record<Side, { dir: string; env: Record<string, string>; label: string }> = {
  a: { dir: resolve(flag['--a'] ?? '.'), env: parseEnv(flag['--a-env']), label: 'A' },
  b: { dir: resolve(flag['--b'] ?? '.'), env: parseEnv(flag['--b-env']), label: 'B' },
};
for (const s of ['a', 'b'] as const) {
  const { dir, env } = sides[s];
  console.log(`${sides[s].label}: ${dir}${Object.keys(env).length ? ` with ${Object.entries(env).map(([k, v]) => `${k}=${v}`).join(' ')}` : ''}`);
}
console.log(`command: ${command.join(' ')}; ${pairsWanted} pairs\n`);

/** One run of one side: its figures, in the order of --value. */
function run(side: Side): number[] {
  const { dir, env } = sides[side];
  const r = spawnSync(command[0]!, command.slice(1), { cwd: dir, env: { ...process.env, ...env }, encoding: 'utf8', maxBuffer: 256 * 2 ** 20 });
  const output = `${r.stdout ?? ''}\n${r.stderr ?? ''}`;
  const figures = values.map((re) => figureIn(output, re));
  if (r.status !== 0 || figures.some((f) => f === null)) {
    process.stderr.write(`${sides[side].label} run failed (exit ${r.status ?? r.signal}${figures.some((f) => f === null) ? `, no figure for ${values.filter((_, i) => figures[i] === null).map(String).join(', ')}` : ''}); its output ended:\n${output.split('\n').slice(-25).join('\n')}\n`);
    process.exit(1);
  }
  return figures as number[];
}

const pairs: { a: number[]; b: number[] }[] = [];
for (const [i, order] of abOrder(pairsWanted).entries()) {
  const got: Partial<Record<Side, number[]>> = {};
  for (const side of order) got[side] = run(side);
  pairs.push({ a: got.a!, b: got.b! });
  console.log(`pair ${i + 1} (${order.map((s) => sides[s].label).join(' then ')}): ${values.map((_, v) => `${got.a![v]} / ${got.b![v]}`).join('; ')}  (A / B)`);
}
console.log('');
for (const [v, re] of values.entries()) {
  const s = summarizePairs(pairs.map((p) => ({ a: p.a[v]!, b: p.b[v]! })));
  console.log(`${re.source}: median A ${s.medianA}, median B ${s.medianB}; B / A median of the pairs ${s.medianRatio.toFixed(3)}; B above in ${s.bAbove}, below in ${s.bBelow}${s.ties ? `, equal in ${s.ties}` : ''} of ${s.pairs} (sign test p = ${s.signTestP.toFixed(3)})`);
}
