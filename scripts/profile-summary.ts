/**
 * Where the time goes: a summary of the CPU profiles and Redis statistics a `npm run bench --
 * --profile DIR` phase wrote (DIR/<phase>/*.cpuprofile and redis.json; see scripts/bench.ts).
 *
 *   node --import tsx scripts/profile-summary.ts DIR/<phase> [--top N] [--filter TEXT]
 *
 * Per process kind (front, worker: the .cpuprofile names' prefix; several processes of a kind are
 * added up): CPU time sampled against the phase's wall time, the share of idle, GC and program
 * time, time by area (our directories, each dependency), the top functions by self time, and the
 * top functions by inclusive time (each function counted once per sample, however deep it
 * recurses). Then Redis: its CPU seconds in the phase, the commands by total time, and the slow
 * log. A script that prints figures; it changes nothing.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join, relative } from 'node:path';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

const argv = process.argv.slice(2);
const dir = argv.find((a, i) => !a.startsWith('--') && !['--top', '--filter'].includes(argv[i - 1] ?? ''));
if (!dir) {
  process.stderr.write('usage: node --import tsx scripts/profile-summary.ts DIR [--top N] [--filter TEXT]\n');
  process.exit(1);
}
const opt = (name: string) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};
const TOP = Number(opt('--top') ?? 25);
const FILTER = opt('--filter');
const root = join(import.meta.dirname, '..');

/** `src/sync/engine.ts:123` for our code, `ioredis` for a dependency, `node:net` for node's own. */
function where(f: CallFrame): string {
  const url = f.url.replace(/^file:\/\//, '');
  if (!url) return '';
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + '/node_modules/'.length).split('/');
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  if (url.startsWith('node:')) return url;
  if (url.startsWith('/')) return `${relative(root, url)}:${f.lineNumber + 1}`;
  return url;
}

/** The area a frame belongs to: a directory of ours (src/sync), a package, node, or V8's own. */
function area(f: CallFrame): string {
  const w = where(f);
  if (!w) return f.functionName.startsWith('(') ? f.functionName : '(native/V8)';
  if (w.startsWith('node:')) return 'node:' + w.slice(5).split('/')[1]?.split(':')[0] || w;
  if (w.includes(':') && !w.startsWith('node:')) {
    const path = w.split(':')[0]!;
    const parts = path.split('/');
    return parts.length > 2 ? parts.slice(0, 2).join('/') : parts[0]!;
  }
  return w;
}

const label = (f: CallFrame) => `${f.functionName || '(anonymous)'} ${where(f)}`.trim();

interface Summary {
  processes: number;
  sampledMs: number;
  wallMs: number;
  self: Map<string, number>;
  inclusive: Map<string, number>;
  areas: Map<string, number>;
}

function addProfile(s: Summary, p: CpuProfile): void {
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of p.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  s.processes++;
  s.wallMs += (p.endTime - p.startTime) / 1000;
  // The inclusive set of each leaf node is computed once.
  const stacks = new Map<number, string[]>();
  const stackOf = (id: number): string[] => {
    let st = stacks.get(id);
    if (st) return st;
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const f = byId.get(cur)!.callFrame;
      if (f.functionName === '(root)') continue;
      seen.add(label(f));
    }
    st = [...seen];
    stacks.set(id, st);
    return st;
  };
  for (let i = 0; i < p.samples.length; i++) {
    // timeDeltas[i] is the time before sample i; the time of sample i is the next delta.
    const ms = (p.timeDeltas[i + 1] ?? 0) / 1000;
    const node = byId.get(p.samples[i]!)!;
    const f = node.callFrame;
    const l = label(f);
    s.sampledMs += ms;
    s.self.set(l, (s.self.get(l) ?? 0) + ms);
    const a = area(f);
    s.areas.set(a, (s.areas.get(a) ?? 0) + ms);
    for (const fn of stackOf(node.id)) s.inclusive.set(fn, (s.inclusive.get(fn) ?? 0) + ms);
  }
}

const ms = (v: number) => Math.round(v).toLocaleString('en-US');
const pct = (v: number, of: number) => `${((100 * v) / of).toFixed(1)} %`;

function top(m: Map<string, number>, n: number, skip: (k: string) => boolean = () => false): [string, number][] {
  return [...m].filter(([k]) => !skip(k) && (!FILTER || k.includes(FILTER))).sort((a, b) => b[1] - a[1]).slice(0, n);
}

const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
const kinds = new Map<string, Summary>();
for (const f of files) {
  const kind = f.split('-')[0]!;
  const s = kinds.get(kind) ?? { processes: 0, sampledMs: 0, wallMs: 0, self: new Map(), inclusive: new Map(), areas: new Map() };
  kinds.set(kind, s);
  addProfile(s, JSON.parse(readFileSync(join(dir, f), 'utf8')) as CpuProfile);
}

const out: string[] = [];
for (const [kind, s] of kinds) {
  const idle = s.self.get('(idle)') ?? 0;
  const busy = s.sampledMs - idle;
  const wall = s.wallMs / s.processes;
  out.push(`\n== ${kind} (${s.processes} process${s.processes > 1 ? 'es' : ''}): ${ms(busy)} ms busy of ${ms(wall)} ms wall each = ${(busy / wall).toFixed(2)} cores; GC ${pct(s.self.get('(garbage collector)') ?? 0, busy)}, (program) ${pct(s.self.get('(program)') ?? 0, busy)} of busy`);
  // Event-loop delay in the same window (scripts/lib/cpu-profile-preload.ts), per process.
  const loops = readdirSync(dir).filter((f) => f.startsWith(`${kind}-`) && f.endsWith('.loop.json'));
  for (const f of loops) {
    const l = JSON.parse(readFileSync(join(dir, f), 'utf8')) as { p50: number; p99: number; max: number; mean: number; gc?: Record<string, { count: number; ms: number }> };
    const gcs = Object.entries(l.gc ?? {}).map(([k, v]) => `${k} ${v.count} × ${v.ms} ms`).join(', ');
    out.push(`event-loop delay ${f.replace(/\.loop\.json$/, '')}: p50 ${l.p50} ms, p99 ${l.p99} ms, max ${l.max} ms, mean ${l.mean} ms${gcs ? `; GC pauses: ${gcs}` : ''}`);
  }
  out.push('-- by area (self time) --');
  for (const [k, v] of top(s.areas, 14, (k) => k === '(idle)')) out.push(`${ms(v).padStart(8)} ms ${pct(v, busy).padStart(7)}  ${k}`);
  out.push('-- top self time --');
  for (const [k, v] of top(s.self, TOP, (k) => k.startsWith('(idle)'))) out.push(`${ms(v).padStart(8)} ms ${pct(v, busy).padStart(7)}  ${k}`);
  out.push('-- top inclusive time (our code) --');
  for (const [k, v] of top(s.inclusive, TOP, (k) => k.startsWith('(') || !/ (src|actors|scripts)\//.test(k))) out.push(`${ms(v).padStart(8)} ms ${pct(v, busy).padStart(7)}  ${k}`);
  out.push('-- top inclusive time (dependencies and node) --');
  for (const [k, v] of top(s.inclusive, 12, (k) => k.startsWith('(') || / (src|actors|scripts)\//.test(k) || !/ \S/.test(k))) out.push(`${ms(v).padStart(8)} ms ${pct(v, busy).padStart(7)}  ${k}`);
}

// ---- Redis ----------------------------------------------------------------------------------

interface RedisDump {
  seconds: number;
  before: { commandstats: string; cpu: string };
  after: { commandstats: string; cpu: string };
  slowlog: [number, number, number, string[], string, string][];
}

function parseInfo(text: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of text.split(/\r?\n/)) {
    const i = line.indexOf(':');
    if (i > 0 && !line.startsWith('#')) m.set(line.slice(0, i), line.slice(i + 1));
  }
  return m;
}

try {
  const r = JSON.parse(readFileSync(join(dir, 'redis.json'), 'utf8')) as RedisDump;
  const cpu0 = parseInfo(r.before.cpu);
  const cpu1 = parseInfo(r.after.cpu);
  const used = (m: Map<string, string>) => Number(m.get('used_cpu_sys') ?? 0) + Number(m.get('used_cpu_user') ?? 0);
  const cpuS = used(cpu1) - used(cpu0);
  const cmds = [...parseInfo(r.after.commandstats)]
    .filter(([k]) => k.startsWith('cmdstat_'))
    .map(([k, v]) => {
      const f = Object.fromEntries(v.split(',').map((kv) => kv.split('=') as [string, string]));
      return { cmd: k.slice('cmdstat_'.length), calls: Number(f.calls), usec: Number(f.usec), perCall: Number(f.usec_per_call) };
    })
    .sort((a, b) => b.usec - a.usec);
  const totalUs = cmds.reduce((s, c) => s + c.usec, 0);
  const totalCalls = cmds.reduce((s, c) => s + c.calls, 0);
  out.push(`\n== redis: ${cpuS.toFixed(2)} CPU s in ${r.seconds.toFixed(1)} s (${(cpuS / r.seconds).toFixed(2)} cores); ${ms(totalCalls)} commands (${ms(totalCalls / r.seconds)}/s), ${ms(totalUs / 1000)} ms inside commands`);
  out.push('-- commands by total time --');
  out.push(`${'command'.padEnd(24)} ${'calls'.padStart(9)} ${'calls/s'.padStart(8)} ${'ms'.padStart(8)} ${'share'.padStart(7)} ${'µs/call'.padStart(8)}`);
  for (const c of cmds.slice(0, 20)) out.push(`${c.cmd.padEnd(24)} ${String(c.calls).padStart(9)} ${ms(c.calls / r.seconds).padStart(8)} ${ms(c.usec / 1000).padStart(8)} ${pct(c.usec, totalUs).padStart(7)} ${c.perCall.toFixed(1).padStart(8)}`);
  out.push(`-- slow log (> 1 ms): ${r.slowlog.length} entries --`);
  const byCmd = new Map<string, { n: number; us: number; max: number }>();
  for (const e of r.slowlog) {
    const args = e[3] ?? [];
    const k = String(args[0] ?? '?').toLowerCase() + (String(args[0]).toLowerCase().startsWith('eval') ? ` ${String(args[1]).slice(0, 12)}` : ` ${String(args[1] ?? '').slice(0, 40)}`);
    const v = byCmd.get(k) ?? { n: 0, us: 0, max: 0 };
    v.n++;
    v.us += e[2];
    v.max = Math.max(v.max, e[2]);
    byCmd.set(k, v);
  }
  for (const [k, v] of [...byCmd].sort((a, b) => b[1].us - a[1].us).slice(0, 12)) out.push(`${String(v.n).padStart(5)} × ${k}: total ${ms(v.us / 1000)} ms, max ${ms(v.max / 1000)} ms`);
} catch (err) {
  out.push(`\n(no redis.json: ${(err as Error).message})`);
}
process.stdout.write(out.join('\n') + '\n');
