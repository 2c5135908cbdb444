/**
 * `npm run bench` (issue 8): the same Matrix workloads against Axon and, with `--vs synapse`,
 * against Synapse on the same machine in the same run, interleaved workload by workload, with
 * Axon/Synapse ratios. A script, not a test: it prints figures and asserts nothing. Loopback
 * only; every phase is bounded in time and count, and the whole run stops itself after
 * --max-minutes.
 *
 *   (A) steady send→sync: 200 users in 20 rooms (4 big rooms hold ~80 % of the memberships, 80 %
 *       of the messages go there), everyone long-polling /sync; open-loop sends at rising rates
 *       until send→sync delivery p99 passes 1 s. /send and delivery p50/p99, the highest rate
 *       delivered with p99 < 1 s, server CPU seconds and peak memory per rate.
 *   (B) fan-out: 1,000 members long-polling one room; a sender at 10 then 50 msg/s; delivery p99.
 *   (C) one user in 1,500 rooms: initial sync with and without lazy-loading members, then a gappy
 *       incremental sync after 10,000 events (spread over 100 of the rooms, so each is `limited`).
 *   (D) join churn: 500 joins/min with 10 % leaves into one room for 5 minutes; per-operation
 *       latency and storage bytes per membership event (Axon's only when D runs first on it).
 *   scale: (A) against Axon with 1 worker, 2 workers, and 2 workers + 2 fronts.
 *
 * Targets: `--target axon` (default: a throwaway Axon this script starts — managed Redis with AOF
 * `appendfsync always`, --workers/--fronts processes, rate limits off), `--target synapse` (started
 * through scripts/bench-synapse-setup with an emptied database), `--target http://host:port`
 * (a running server: no process figures), or `--vs synapse` (Axon and Synapse). Server cost: CPU
 * seconds and peak memory (sums of VmRSS and of Pss, sampled every 250 ms) of all the server's
 * processes — for Axon its workers, fronts and redis-server; for Synapse its Python process plus
 * PostgreSQL's processes when it uses PostgreSQL.
 *
 * `--synapse-workers N` runs Synapse the way large deployments do instead: the main process, N
 * generic workers serving the client endpoints (/sync, /send, joins, registration), an event
 * persister, replication over Redis and a router in front (scripts/synapse-worker-router.ts), on
 * PostgreSQL; its cost is all of those processes. `--synapse-workers 0,N` runs both variants in
 * the same run (columns synapse and synapse-wN).
 *
 * Users: registered through `POST /register` with the m.login.dummy stage. Synapse requires a
 * password there (its bench config uses bcrypt's minimum cost); Axon gets none, so registration
 * is not scrypt-bound. Registration is setup, not a reported figure.
 *
 * Output: a table per workload on stdout, and JSON in bench-results/<date>-<target>.json.
 * Run `npm run bench -- --help` for the knobs.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { startAxonBench, type AxonBench } from './lib/axon-bench-cluster';
import { percentile, pool, round, seededRandom, sleep, table, writeBenchResults } from './lib/bench-util';
import { C, Deliveries, MatrixLoad, enc, loopFilter, ratePhase, startSyncLoops, type RatePhase, type User } from './lib/matrix-load';
import { churnSchedule, roomLayout } from './lib/workload-plans';
import { CostMeter, processTree, type CostReport, type ServerProcesses } from './lib/proc-stats';

const root = join(import.meta.dirname, '..');

// ---- options ---------------------------------------------------------------------------------

const HELP = `npm run bench -- [options]

  --vs synapse            run every workload against Axon and Synapse, interleaved, with ratios
  --target T              axon (default) | synapse | http://host:port (a running server)
  --synapse-db D          postgres (default when available) | sqlite
  --synapse-workers LIST  Synapse variants: 0 = one process (default); N = main process + N generic
                          workers + an event persister, Redis replication, a router in front,
                          PostgreSQL; "0,2" runs both (at most one N > 0)
  --quick                 small sizes and short phases (a few minutes)
  --only LIST             workloads to run, from a,b,c,d,scale (default all)
  --users N               (A) users (200; quick 60)
  --rates LIST            (A) send rates in msg/s (20,50,100,200,400; quick 20,50,100)
  --search-steps N        (A) phases after the listed rates searching for the highest sustained
                          rate: down by halves, up by doubling, then bisecting (4; quick 2)
  --phase S               (A, B) seconds per rate (10; quick 5)
  --timeline-limit N      (A, B) the sync loops' filter: timeline events a room per answer (1–100; 100);
                          more new events in a room than that come back \`limited\` and count as
                          missing (matrix-js-sdk's default is 8, Element's 20)
  --members N             (B) members of the one room (1000; quick 100)
  --rooms N               (C) rooms of the one user (1500; quick 60)
  --events N              (C) events before the gappy incremental sync (10000; quick 600)
  --invites N             (C) extra invited members per room, for lazy-loading to drop (4)
  --duration S            (D) seconds of join churn (300; quick 30)
  --joins-per-min N       (D) membership operations per minute (500)
  --workers N --fronts N  Axon processes for A–D (2 and 1)
  --shards N              Axon virtual shards per family (256)
  --setup-timeout S       time box for each workload's setup on each server (300; quick 120)
  --max-minutes M         stop the whole run after M minutes (45; quick 20)
  --profile DIR           (A, B; Axon started by this script) per rate phase, DIR/<workload>-<rate>/:
                          a V8 CPU profile of every worker and front (.cpuprofile), Redis INFO
                          commandstats and cpu before/after and SLOWLOG (redis.json); summarise
                          with \`node --import tsx scripts/profile-summary.ts DIR/<phase>\`
`;

const argv = process.argv.slice(2);
function opt(name: string): string | undefined {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
}
if (argv.includes('--help') || argv.includes('-h')) {
  process.stdout.write(HELP);
  process.exit(0);
}
const QUICK = argv.includes('--quick');
const num = (name: string, full: number, quick = full) => {
  const v = opt(name);
  const n = v === undefined ? (QUICK ? quick : full) : Number(v);
  if (!Number.isFinite(n) || n < 0) {
    process.stderr.write(`bench: ${name} must be a non-negative number\n`);
    process.exit(1);
  }
  return n;
};
const VS = opt('--vs');
if (VS !== undefined && VS !== 'synapse') {
  process.stderr.write('bench: --vs takes only "synapse"\n');
  process.exit(1);
}
const TARGET = VS ? 'axon' : (opt('--target') ?? 'axon');
const O = {
  users: Math.max(20, num('--users', 200, 60)),
  rates: (opt('--rates') ?? (QUICK ? '20,50,100' : '20,50,100,200,400')).split(',').map(Number),
  phase: num('--phase', 10, 5),
  timelineLimit: num('--timeline-limit', 100),
  searchSteps: num('--search-steps', 4, 2),
  members: Math.max(2, num('--members', 1000, 100)),
  rooms: Math.max(1, num('--rooms', 1500, 60)),
  events: num('--events', 10_000, 600),
  invites: num('--invites', 4),
  duration: num('--duration', 300, 30),
  joinsPerMin: Math.max(1, num('--joins-per-min', 500)),
  workers: Math.max(1, num('--workers', 2)),
  fronts: Math.max(1, num('--fronts', 1)),
  shards: Math.max(1, num('--shards', 256)),
  setupTimeout: num('--setup-timeout', 300, 120),
  maxMinutes: num('--max-minutes', 45, 20),
  only: new Set((opt('--only') ?? 'a,b,c,d,scale').split(',')),
  synapseDb: opt('--synapse-db'),
  synapseWorkers: [...new Set((opt('--synapse-workers') ?? '0').split(',').map(Number))],
  profileDir: opt('--profile'),
};
if (!Number.isInteger(O.timelineLimit) || O.timelineLimit < 1 || O.timelineLimit > 100) {
  // Servers clamp a filter's limit to 100 (Synapse and Axon), and with 0 every timeline is limited.
  process.stderr.write('bench: --timeline-limit takes a whole number from 1 to 100\n');
  process.exit(1);
}
if (O.synapseWorkers.some((n) => !Number.isInteger(n) || n < 0) || O.synapseWorkers.filter((n) => n > 0).length > 1) {
  process.stderr.write('bench: --synapse-workers takes 0 (one process) and/or one worker count N > 0, e.g. 2 or 0,2\n');
  process.exit(1);
}
if (O.synapseDb === 'sqlite' && O.synapseWorkers.some((n) => n > 0)) {
  process.stderr.write("bench: Synapse's workers need PostgreSQL (--synapse-db postgres)\n");
  process.exit(1);
}
const P99_LIMIT_MS = 1000;
const GAP_ROOMS = 100;
/** (D) a join or leave not answered within this counts as an error (bounds the phase). */
const OP_TIMEOUT_MS = 60_000;
/** (B) a server whose delivery p99 is past this at 10 msg/s is saturated: 50 msg/s is not run. */
const B_SATURATED_MS = 5000;

function log(msg: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

// ---- targets ---------------------------------------------------------------------------------

interface Target {
  name: string;
  label: string;
  url: string;
  /** Registration password (Synapse requires one), or null. */
  password: ((username: string) => string) | null;
  procs: ServerProcesses | null;
  /** The kind of one of its processes (worker, front, redis), for CPU by kind; none: not split. */
  kindOf?(pid: number): string;
  /** What the server stores on disk / in memory, in bytes, by kind. */
  storage(): Promise<Record<string, number>>;
  stop(): Promise<void>;
  /** `--profile`: start profiling a phase; the returned function stops it and writes the files. */
  profile?(phase: string): Promise<() => Promise<void>>;
}

async function axonTarget(workers: number, fronts: number): Promise<Target> {
  const t0 = performance.now();
  const profileRaw = O.profileDir ? join(O.profileDir, `.raw-${Date.now()}`) : undefined;
  const axon: AxonBench = await startAxonBench({ workers, fronts, shards: O.shards, ...(profileRaw ? { cpuProfileDir: profileRaw } : {}) });
  const m = new MatrixLoad(axon.url);
  try {
    await m.waitUp(60_000);
    // The first registration waits until the workers hold the user shards.
    for (let i = 0; ; i++) {
      try {
        await m.register(`warm${i}`);
        break;
      } catch (err) {
        if (i > 100) throw err;
        await sleep(300);
      }
    }
  } catch (err) {
    m.close();
    await axon.stop();
    throw err;
  }
  m.close();
  log(`axon up in ${round((performance.now() - t0) / 1000)} s: ${workers} worker(s), ${fronts} front(s) on ${axon.url}`);
  const redis = new Redis(axon.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  const info = async (section: string, field: string) => {
    const text = await redis.info(section);
    const m2 = new RegExp(`^${field}:(\\d+)`, 'm').exec(text);
    return m2 ? Number(m2[1]) : NaN;
  };
  return {
    name: 'axon',
    label: `Axon (${workers} worker${workers > 1 ? 's' : ''} + ${fronts} front${fronts > 1 ? 's' : ''}, Redis ${redisVersion()} AOF always)`,
    url: axon.url,
    password: null,
    procs: processTree(() => axon.pids(), false),
    kindOf: (pid) => (axon.workerPids.includes(pid) ? 'workers' : axon.frontPids.includes(pid) ? 'fronts' : pid === axon.redisPid ? 'redis' : 'other'),
    async storage() {
      if (redis.status === 'wait') await redis.connect();
      // On disk: the append-only file once rewritten (what the data takes there; the raw AOF's
      // growth is every write command since the last rewrite, and a rewrite Redis starts by
      // itself during a phase shrank it: D once reported -34,560 bytes an event). In memory:
      // Redis's data set.
      await compactAof(redis, info);
      return { disk: await info('persistence', 'aof_current_size'), memory: await info('memory', 'used_memory') };
    },
    async stop() {
      redis.disconnect();
      await axon.stop();
    },
    ...(profileRaw ? { profile: (phase: string) => profileAxonPhase(axon, redis, profileRaw, join(O.profileDir!, phase), workers + fronts) } : {}),
  };
}

/**
 * Rewrite Redis's append-only file and wait until it is done (a rewrite already running — Redis
 * starts them itself as the file grows — is waited for first, then one more is made, so the
 * result holds everything written so far). At most 120 s.
 */
async function compactAof(redis: Redis, info: (section: string, field: string) => Promise<number>): Promise<void> {
  const deadline = Date.now() + 120_000;
  const idle = async () => {
    while ((await info('persistence', 'aof_rewrite_in_progress')) || (await info('persistence', 'aof_rewrite_scheduled'))) {
      if (Date.now() > deadline) throw new Error('the AOF rewrite did not finish within 120 s');
      await sleep(100);
    }
  };
  await idle();
  await redis.bgrewriteaof();
  await idle();
}

/**
 * `--profile`: Redis's command statistics and slow log are reset and the CPU profilers of every
 * worker and front started; the returned function stops them, waits for each process's
 * .cpuprofile, moves them to `outDir` and writes redis.json (INFO commandstats and cpu before and
 * after, SLOWLOG entries slower than 1 ms).
 */
async function profileAxonPhase(axon: AxonBench, redis: Redis, rawDir: string, outDir: string, processes: number): Promise<() => Promise<void>> {
  const { mkdirSync, readdirSync, renameSync, writeFileSync } = await import('node:fs');
  if (redis.status === 'wait') await redis.connect();
  const before = { commandstats: await redis.info('commandstats'), cpu: await redis.info('cpu') };
  await redis.config('SET', 'slowlog-log-slower-than', '1000');
  await redis.call('SLOWLOG', 'RESET');
  await redis.config('RESETSTAT');
  const t0 = performance.now();
  axon.toggleCpuProfiles();
  return async () => {
    axon.toggleCpuProfiles();
    const seconds = (performance.now() - t0) / 1000;
    const after = { commandstats: await redis.info('commandstats'), cpu: await redis.info('cpu') };
    const slowlog = await redis.call('SLOWLOG', 'GET', '128');
    mkdirSync(outDir, { recursive: true });
    writeFileSync(join(outDir, 'redis.json'), JSON.stringify({ seconds, before, after, slowlog }, null, 1));
    const deadline = performance.now() + 20_000;
    let files: string[] = [];
    while (performance.now() < deadline) {
      files = existsSync(rawDir) ? readdirSync(rawDir).filter((f) => f.endsWith('.cpuprofile')) : [];
      if (files.length >= processes) break;
      await sleep(200);
    }
    await sleep(300); // the last one may still be being written
    files = existsSync(rawDir) ? readdirSync(rawDir).filter((f) => f.endsWith('.cpuprofile')) : [];
    // With each profile, the same window's event-loop delay (scripts/lib/cpu-profile-preload.ts).
    const loops = existsSync(rawDir) ? readdirSync(rawDir).filter((f) => f.endsWith('.loop.json') || f.endsWith('.heapprofile')) : [];
    for (const f of [...files, ...loops]) renameSync(join(rawDir, f), join(outDir, f));
    log(`profile: ${files.length} CPU profile(s) and redis.json in ${outDir}`);
  };
}

function redisVersion(): string {
  const r = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
  return /v=(\S+)/.exec(r.stdout)?.[1] ?? '?';
}

interface SynapseEnv {
  SYNAPSE_VERSION: string;
  SYNAPSE_URL: string;
  SYNAPSE_PID_FILE: string;
  SYNAPSE_LOG: string;
  SYNAPSE_DB: string;
  SYNAPSE_SQLITE: string;
  PG_DIR: string;
  PG_PORT: string;
  PG_BIN: string;
  PG_VERSION: string;
  SYNAPSE_PYTHON: string;
  SYNAPSE_WORKERS: string;
  SYNAPSE_PIDS_FILE: string;
  REDIS_VERSION?: string;
}

const SETUP = join(root, 'scripts', 'bench-synapse-setup');

/** Synapse in one process (`workers` 0), or with `workers` generic workers (see the setup script). */
async function synapseTarget(workers: number): Promise<Target> {
  const dbArgs = [...(O.synapseDb ? ['--db', O.synapseDb] : []), '--workers', String(workers)];
  log(`starting Synapse${workers ? ` with ${workers} workers` : ''} with an empty database (scripts/bench-synapse-setup start --fresh ${dbArgs.join(' ')})`);
  const r = spawnSync('bash', [SETUP, 'start', '--fresh', ...dbArgs], { stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) throw new Error('scripts/bench-synapse-setup start failed (see above)');
  const env = Object.fromEntries(
    execFileSync('bash', [SETUP, 'env', ...dbArgs], { encoding: 'utf8' })
      .split('\n')
      .filter((l) => l.includes('='))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  ) as unknown as SynapseEnv;
  const synapsePid = Number(readFileSync(env.SYNAPSE_PID_FILE, 'utf8').trim());
  // With workers: each worker, the event persister, the router and the replication Redis.
  const others = existsSync(env.SYNAPSE_PIDS_FILE)
    ? readFileSync(env.SYNAPSE_PIDS_FILE, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => Number(l.split(' ')[1]))
    : [];
  const pg = env.SYNAPSE_DB === 'postgres';
  const pgPid = () => (pg && existsSync(join(env.PG_DIR, 'postmaster.pid')) ? Number(readFileSync(join(env.PG_DIR, 'postmaster.pid'), 'utf8').split('\n')[0]) : 0);
  const py = spawnSync(env.SYNAPSE_PYTHON, ['--version'], { encoding: 'utf8' }).stdout.trim();
  const db = pg ? `PostgreSQL ${/\d+(\.\d+)*/.exec(env.PG_VERSION)?.[0] ?? ''}`.trim() : 'SQLite';
  const shape = workers ? `; main process + ${workers} generic workers + 1 event persister, Redis ${env.REDIS_VERSION ?? '?'} replication, Node router` : '';
  return {
    name: workers ? `synapse-w${workers}` : 'synapse',
    label: `Synapse ${env.SYNAPSE_VERSION} (${py || 'Python'}, ${db}${shape})`,
    url: env.SYNAPSE_URL,
    password: (u) => `pw-${u}-bench`,
    procs: processTree(() => [synapsePid, pgPid(), ...others], true),
    async storage(): Promise<Record<string, number>> {
      if (pg) {
        const out = execFileSync(join(env.PG_BIN, 'psql'), ['-h', '127.0.0.1', '-p', env.PG_PORT, '-U', 'synapse', '-d', 'synapse', '-tAc', "SELECT pg_database_size('synapse')"], { encoding: 'utf8' });
        return { disk: Number(out.trim()) }; // the database's files (its WAL is not counted)
      }
      const size = (f: string) => (existsSync(f) ? statSync(f).size : 0);
      return { disk: size(env.SYNAPSE_SQLITE) + size(`${env.SYNAPSE_SQLITE}-wal`) };
    },
    async stop() {
      spawnSync('bash', [SETUP, 'stop', '--workers', String(workers)], { stdio: ['ignore', 'inherit', 'inherit'] });
    },
  };
}

function urlTarget(url: string): Target {
  return { name: new URL(url).host.replace(/[^a-z0-9.-]/gi, '_'), label: url, url, password: (u) => `pw-${u}-bench`, procs: null, storage: async () => ({}), stop: async () => undefined };
}

// ---- measuring a window ------------------------------------------------------------------------

/** Busy jiffies of the whole machine (all cores), to say how loaded it was by others. */
function machineBusySeconds(): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const idle = (f[3] ?? 0) + (f[4] ?? 0);
  return (f.reduce((s, x) => s + x, 0) - idle) / 100;
}

interface Window {
  cost: CostReport | null;
  /** CPU seconds of this benchmark client (load generator) in the window. */
  clientCpuSeconds: number;
  /** CPU seconds of every other process on the machine in the window (other users' work). */
  otherCpuSeconds: number;
  /** Average cores the other processes kept busy (of the machine's cores). */
  otherCores: number;
}

function measure(t: Target): { stop(): Window } {
  const meter = t.procs ? new CostMeter(t.procs).start() : null;
  const c0 = process.cpuUsage();
  const m0 = machineBusySeconds();
  const t0 = performance.now();
  return {
    stop() {
      const cost = meter?.stop() ?? null;
      const c = process.cpuUsage(c0);
      const client = (c.user + c.system) / 1e6;
      const busy = machineBusySeconds() - m0;
      const other = Math.max(0, busy - client - (cost?.cpuSeconds ?? 0));
      return { cost, clientCpuSeconds: round(client, 2), otherCpuSeconds: round(other, 1), otherCores: round(other / ((performance.now() - t0) / 1000), 2) };
    },
  };
}

/** Registers `n` users named `<prefix><i>` (at most 32 at a time), stopping at `deadline`. */
async function registerMany(m: MatrixLoad, prefix: string, n: number, deadline: number): Promise<User[]> {
  const users = await pool(Array.from({ length: n }), 32, (_x, i) => m.register(`${prefix}${i}`), deadline);
  return users.filter(Boolean);
}

/** A window's server CPU seconds, or its peak PSS (MB), added up by process kind (when the target names its kinds). */
function byKind(t: Target, win: Window, of: 'cpuByPid' | 'pssAtPeakByPid' = 'cpuByPid'): Record<string, number> | undefined {
  if (!t.kindOf || !win.cost) return undefined;
  const out: Record<string, number> = {};
  for (const [pid, s] of Object.entries(win.cost[of])) {
    const k = t.kindOf(Number(pid));
    out[k] = round((out[k] ?? 0) + s, of === 'cpuByPid' ? 2 : 1);
  }
  return out;
}

/** ` (redis 12.3, workers 45.6, ...)`: a by-kind record for a log line, or nothing. */
function kindsText(byKindValues: Record<string, number> | undefined): string {
  return byKindValues ? ` (${Object.entries(byKindValues).map(([k, v]) => `${k} ${v}`).join(', ')})` : '';
}

// ---- (A) steady send→sync ------------------------------------------------------------------------

interface APhase extends RatePhase {
  /** /sync answers the long-polls got in the phase, and the fronts' CPU per answer (ms). */
  syncAnswers: number;
  /** Room timelines in those answers that were `limited` (over the loop filter's limit, `--timeline-limit`: the rest skipped). */
  limitedTimelines: number;
  frontCpuMsPerAnswer: number | null;
  cpuSeconds: number | null;
  /** CPU seconds by process kind (Axon: workers, fronts, redis). */
  cpuByKind?: Record<string, number>;
  cpuMsPerMessage: number | null;
  peakRssMb: number | null;
  peakPssMb: number | null;
  /** The peak PSS by process kind (MB, in the sample where the sum peaked). */
  pssByKind?: Record<string, number>;
  otherCpuSeconds: number;
  otherCores: number;
}

interface AResult {
  users: number;
  rooms: number;
  memberships: number;
  bigRoomShare: number;
  setupSeconds: number;
  syncErrors: number;
  phases: APhase[];
  maxRateUnder1s: number;
  /** The lowest tried rate the server did not sustain (none: every tried rate held). */
  firstRateNotSustained?: number;
}

/** A phase the server sustained: delivery p99 under 1 s and no failed /send. */
const sustained = (p: RatePhase): boolean => p.deliveryP99ms <= P99_LIMIT_MS && p.sendErrors === 0;

async function workloadA(t: Target, users = O.users): Promise<AResult> {
  const m = new MatrixLoad(t.url, t.password);
  const rng = seededRandom(0xa11ce);
  const t0 = performance.now();
  try {
    log(`(A) ${t.name}: registering ${users} users`);
    const us = await registerMany(m, `${RUN}a`, users, Infinity);
    const layout = roomLayout(users);
    const bigCount = layout.big.length;
    const smallCount = layout.small.length;
    const rooms = [...layout.big, ...layout.small].map((members) => ({ id: '', members: members.map((i) => us[i]!) }));
    await pool(rooms, 20, async (room) => {
      room.id = await m.createRoom(room.members[0]!);
    });
    await pool(rooms.flatMap((room) => room.members.slice(1).map((u) => ({ u, room }))), 32, ({ u, room }) => m.join(u, room.id));
    const sinces = await pool(us, 32, (u) => m.initialSince(u));
    const setupSeconds = (performance.now() - t0) / 1000;
    const memberships = rooms.reduce((s, r) => s + r.members.length, 0);
    const bigMemberships = rooms.slice(0, bigCount).reduce((s, r) => s + r.members.length, 0);
    log(`(A) ${t.name}: setup ${round(setupSeconds)} s (${rooms.length} rooms, ${memberships} memberships)`);
    const deliveries = new Deliveries();
    const poller = startSyncLoops(m, us, sinces, deliveries, undefined, loopFilter(O.timelineLimit));
    await sleep(1500);
    const pick = () => {
      const room = rng() < 0.8 ? rooms[Math.floor(rng() * bigCount)]! : rooms[bigCount + Math.floor(rng() * smallCount)]!;
      return { user: room.members[Math.floor(rng() * room.members.length)]!, roomId: room.id, members: room.members.length };
    };
    const phases: APhase[] = [];
    const runRate = async (rate: number): Promise<boolean> => {
      const profiling = await t.profile?.(`${t.name}-a-${rate}-${phases.length + 1}`);
      const w = measure(t);
      const answers0 = deliveries.answers;
      const limited0 = deliveries.limited;
      const p = await ratePhase(m, deliveries, rate, O.phase, pick);
      const win = w.stop();
      const syncAnswers = deliveries.answers - answers0;
      const limitedTimelines = deliveries.limited - limited0;
      await profiling?.();
      const cpuByKind = byKind(t, win);
      const pssByKind = byKind(t, win, 'pssAtPeakByPid');
      const frontCpuMsPerAnswer = cpuByKind?.fronts !== undefined && syncAnswers ? round((cpuByKind.fronts * 1000) / syncAnswers, 3) : null;
      phases.push({ ...p, syncAnswers, limitedTimelines, frontCpuMsPerAnswer, cpuSeconds: win.cost?.cpuSeconds ?? null, ...(cpuByKind ? { cpuByKind } : {}), cpuMsPerMessage: win.cost && p.sent ? round((win.cost.cpuSeconds * 1000) / p.sent, 2) : null, peakRssMb: win.cost?.peakRssMb ?? null, peakPssMb: win.cost?.peakPssMb ?? null, ...(pssByKind ? { pssByKind } : {}), otherCpuSeconds: win.otherCpuSeconds, otherCores: win.otherCores });
      log(`(A) ${t.name} ${rate} msg/s: sent ${p.sendRate}/s, /send p50 ${p.sendP50ms} p99 ${p.sendP99ms} ms, delivery p50 ${p.deliveryP50ms} p99 ${fmtMs(p.deliveryP99ms)} ms, missing ${p.missing}, server CPU ${win.cost?.cpuSeconds ?? '?'} s${kindsText(cpuByKind)}, peak PSS ${win.cost?.peakPssMb ?? '?'} MB${kindsText(pssByKind)}, ${win.cost && p.sent ? round((win.cost.cpuSeconds * 1000) / p.sent, 1) : '?'} ms per message; ${syncAnswers} /sync answers (${limitedTimelines} limited timelines)${frontCpuMsPerAnswer !== null ? `, fronts ${frontCpuMsPerAnswer} ms CPU each` : ''}; client CPU ${win.clientCpuSeconds} s; other processes ${win.otherCores} cores`);
      return sustained(p);
    };
    // The listed rates upward until one is not sustained, then a search for the highest rate
    // that is: down (halving) when even the first rate failed, up (doubling) when every listed
    // rate held, then bisection between the two bounds — so each server's figure is bounded on
    // both sides and the Axon/Synapse ratio means something (a server that fails the lowest
    // listed rate used to report 0).
    let ok: number | undefined;
    let bad: number | undefined;
    for (const rate of O.rates) {
      if (await runRate(rate)) ok = rate;
      else {
        bad = rate;
        break;
      }
    }
    for (let step = 0; step < O.searchSteps; step++) {
      let next: number;
      if (bad === undefined) next = (ok ?? 1) * 2;
      else if (ok === undefined) next = Math.floor(bad / 2);
      else next = Math.round((ok + bad) / 2);
      // Stop when the bounds are within 15 % (or 1 msg/s) of each other, or nothing is left below.
      if (next < 1 || (ok !== undefined && bad !== undefined && bad - ok <= Math.max(1, bad * 0.15))) break;
      if (next === ok || next === bad) break;
      if (phases.length && !sustained(phases[phases.length - 1]!)) await deliveries.drain();
      if (await runRate(next)) ok = next;
      else bad = next;
    }
    const syncErrors = poller.errors();
    await poller.stop();
    const okPhases = phases.filter(sustained);
    return { users, rooms: rooms.length, memberships, bigRoomShare: round(bigMemberships / memberships, 3), setupSeconds: round(setupSeconds, 1), syncErrors, phases, maxRateUnder1s: okPhases.length ? Math.max(...okPhases.map((p) => p.sendRate)) : 0, ...(bad !== undefined ? { firstRateNotSustained: bad } : {}) };
  } finally {
    m.close();
  }
}

// ---- (B) fan-out ---------------------------------------------------------------------------------

interface BResult {
  /** Rates not run because the server was already saturated at a lower one. */
  notRun?: string;
  requestedMembers: number;
  members: number;
  setupSeconds: number;
  syncErrors: number;
  phases: APhase[];
}

async function workloadB(t: Target, cap: number | undefined): Promise<BResult> {
  const m = new MatrixLoad(t.url, t.password);
  const rng = seededRandom(0xb0b);
  const want = Math.min(O.members, cap ?? Infinity);
  const t0 = performance.now();
  const deadline = t0 + O.setupTimeout * 1000;
  try {
    log(`(B) ${t.name}: registering ${want} users and joining them to one room (time box ${O.setupTimeout} s)`);
    const us = await registerMany(m, `${RUN}b`, want, t0 + O.setupTimeout * 500);
    const owner = us[0]!;
    const roomId = await m.createRoom(owner);
    const members: User[] = [owner];
    // Joined in order, so a time-boxed setup keeps a prefix and the other server can match it.
    await pool(us.slice(1), 32, async (u) => {
      await m.join(u, roomId);
      members.push(u);
    }, deadline);
    const sinces = await pool(members, 32, (u) => m.initialSince(u));
    const setupSeconds = (performance.now() - t0) / 1000;
    log(`(B) ${t.name}: setup ${round(setupSeconds)} s, ${members.length} members`);
    const deliveries = new Deliveries();
    const poller = startSyncLoops(m, members, sinces, deliveries, undefined, loopFilter(O.timelineLimit));
    await sleep(2000);
    const phases: APhase[] = [];
    let notRun: string | undefined;
    for (const rate of [10, 50]) {
      const prev = phases[phases.length - 1];
      if (prev && !(prev.deliveryP99ms <= B_SATURATED_MS)) {
        notRun = `${rate} msg/s not run: delivery p99 was already ${fmtMs(prev.deliveryP99ms)} ms at ${prev.targetRate} msg/s`;
        log(`(B) ${t.name}: ${notRun}`);
        break;
      }
      const profiling = await t.profile?.(`${t.name}-b-${rate}`);
      const w = measure(t);
      const answers0 = deliveries.answers;
      const limited0 = deliveries.limited;
      const p = await ratePhase(m, deliveries, rate, O.phase, () => ({ user: members[Math.floor(rng() * members.length)]!, roomId, members: members.length }), 10_000);
      const win = w.stop();
      const syncAnswers = deliveries.answers - answers0;
      const limitedTimelines = deliveries.limited - limited0;
      await profiling?.();
      const cpuByKind = byKind(t, win);
      const pssByKind = byKind(t, win, 'pssAtPeakByPid');
      const frontCpuMsPerAnswer = cpuByKind?.fronts !== undefined && syncAnswers ? round((cpuByKind.fronts * 1000) / syncAnswers, 3) : null;
      phases.push({ ...p, syncAnswers, limitedTimelines, frontCpuMsPerAnswer, cpuSeconds: win.cost?.cpuSeconds ?? null, ...(cpuByKind ? { cpuByKind } : {}), cpuMsPerMessage: win.cost && p.sent ? round((win.cost.cpuSeconds * 1000) / p.sent, 2) : null, peakRssMb: win.cost?.peakRssMb ?? null, peakPssMb: win.cost?.peakPssMb ?? null, ...(pssByKind ? { pssByKind } : {}), otherCpuSeconds: win.otherCpuSeconds, otherCores: win.otherCores });
      log(`(B) ${t.name} ${rate} msg/s to ${members.length}: sent ${p.sendRate}/s, /send p50 ${p.sendP50ms} p99 ${p.sendP99ms} ms, delivery p50 ${p.deliveryP50ms} p99 ${fmtMs(p.deliveryP99ms)} ms, ${p.deliveryRate} deliveries/s, missing ${p.missing}, server CPU ${win.cost?.cpuSeconds ?? '?'} s${kindsText(cpuByKind)}, peak PSS ${win.cost?.peakPssMb ?? '?'} MB${kindsText(pssByKind)}; ${syncAnswers} /sync answers (${limitedTimelines} limited timelines)${frontCpuMsPerAnswer !== null ? `, fronts ${frontCpuMsPerAnswer} ms CPU each` : ''}; other processes ${win.otherCores} cores`);
    }
    const syncErrors = poller.errors();
    await poller.stop();
    return { ...(notRun ? { notRun } : {}), requestedMembers: O.members, members: members.length, setupSeconds: round(setupSeconds, 1), syncErrors, phases };
  } finally {
    m.close();
  }
}

// ---- (C) initial and gappy incremental sync ------------------------------------------------------

interface SyncRun {
  variant: string;
  medianMs: number;
  minMs: number;
  maxMs: number;
  bytes: number;
  rooms: number;
  limitedRooms: number;
  status: number;
  cpuSeconds: number | null;
}

interface CResult {
  requestedRooms: number;
  rooms: number;
  invitesPerRoom: number;
  setupSeconds: number;
  setupCpuSeconds: number | null;
  gapEvents: number;
  gapRooms: number;
  gapSendSeconds: number;
  variants: SyncRun[];
}

async function timedSync(m: MatrixLoad, t: Target, u: User, variant: string, query: string, runs = 3): Promise<SyncRun> {
  const times: number[] = [];
  let bytes = 0;
  let rooms = 0;
  let limited = 0;
  let status = 0;
  const w = measure(t);
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const r = await m.request('GET', `${C}/sync${query}`, { token: u.token, timeoutMs: 300_000 });
    times.push(performance.now() - t0);
    status = r.status;
    bytes = r.bytes;
    const join = r.body?.rooms?.join ?? {};
    rooms = Object.keys(join).length;
    limited = Object.values(join).filter((x) => (x as { timeline?: { limited?: boolean } }).timeline?.limited).length;
    if (r.status !== 200) {
      log(`(C) ${t.name} ${variant}: status ${r.status} ${JSON.stringify(r.body).slice(0, 200)}`);
      break;
    }
  }
  const win = w.stop();
  times.sort((a, b) => a - b);
  return { variant, medianMs: round(percentile(times, 50)), minMs: round(times[0]!), maxMs: round(times[times.length - 1]!), bytes, rooms, limitedRooms: limited, status, cpuSeconds: win.cost ? round(win.cost.cpuSeconds / times.length, 2) : null };
}

async function workloadC(t: Target, cap: { rooms: number; events: number } | undefined): Promise<CResult> {
  const m = new MatrixLoad(t.url, t.password);
  const want = Math.min(O.rooms, cap?.rooms ?? Infinity);
  const wantEvents = Math.min(O.events, cap?.events ?? Infinity);
  const t0 = performance.now();
  const deadline = t0 + O.setupTimeout * 1000;
  try {
    log(`(C) ${t.name}: ${want} rooms with ${O.invites} invited members each for one user (time box ${O.setupTimeout} s)`);
    const u = await m.register(`${RUN}c-user`);
    // Rooms are made by 8 creators at once (one createRoom at a time each, as a client does);
    // the user is invited with the others and joins.
    const creators = await registerMany(m, `${RUN}c-creator`, 8, Infinity);
    const invitees = await registerMany(m, `${RUN}c-inv`, O.invites, Infinity);
    const w = measure(t);
    const roomIds: string[] = [];
    await pool(Array.from({ length: want }), creators.length, async (_x, i) => {
      const creator = creators[i % creators.length]!;
      const roomId = await m.createRoom(creator, { name: `bench room ${i}`, topic: `topic of bench room ${i}`, invite: [u.userId, ...invitees.map((x) => x.userId)] });
      await m.join(u, roomId);
      roomIds[i] = roomId;
    }, deadline);
    const built = roomIds.filter(Boolean);
    const setupCost = w.stop();
    const setupSeconds = (performance.now() - t0) / 1000;
    log(`(C) ${t.name}: ${built.length} rooms in ${round(setupSeconds)} s`);
    const variants: SyncRun[] = [];
    variants.push(await timedSync(m, t, u, 'initial sync (before the gap events)', '', 1));
    const since = await m.initialSince(u);
    // 10,000 events into 100 rooms: 100 new events each (at least 50), far over the timeline
    // limit, so each of those rooms comes back `limited` (a gap) in the incremental sync.
    // From the requested count, not the capped one: every server spreads its events over the
    // same rooms (a capped server's 2,734 events over 54 rooms would not compare with 100).
    const gapRooms = Math.max(1, Math.min(GAP_ROOMS, built.length, Math.floor(O.events / 50)));
    const g0 = performance.now();
    let sentGap = 0;
    // Time-boxed like the room setup, to half of it: a server slower than that gets fewer events
    // (and the next server the same number).
    await pool(Array.from({ length: wantEvents }), 16, async (_x, i) => {
      const roomIndex = i % gapRooms;
      const sender = creators[roomIndex % creators.length]!;
      await m.send(sender, built[roomIndex]!, `gap event ${i}`);
      sentGap++;
    }, g0 + O.setupTimeout * 500);
    const gapSendSeconds = (performance.now() - g0) / 1000;
    log(`(C) ${t.name}: ${sentGap} gap events in ${round(gapSendSeconds)} s (${round(sentGap / gapSendSeconds)}/s)`);
    variants.push(await timedSync(m, t, u, `gappy incremental (${sentGap} events in ${gapRooms} rooms)`, `?since=${enc(since)}&timeout=0`));
    variants.push(await timedSync(m, t, u, 'initial sync', ''));
    variants.push(await timedSync(m, t, u, 'initial sync, lazy-loading members', `?filter=${enc(JSON.stringify({ room: { state: { lazy_load_members: true }, timeline: { lazy_load_members: true } } }))}`));
    for (const v of variants) log(`(C) ${t.name} ${v.variant}: median ${v.medianMs} ms, ${v.bytes} bytes, ${v.rooms} rooms (${v.limitedRooms} limited)`);
    return { requestedRooms: O.rooms, rooms: built.length, invitesPerRoom: O.invites, setupSeconds: round(setupSeconds, 1), setupCpuSeconds: setupCost.cost?.cpuSeconds ?? null, gapEvents: sentGap, gapRooms, gapSendSeconds: round(gapSendSeconds, 1), variants };
  } finally {
    m.close();
  }
}

// ---- (D) join churn -------------------------------------------------------------------------------

interface DResult {
  seconds: number;
  opsPerMinTarget: number;
  joins: number;
  leaves: number;
  errors: number;
  achievedOpsPerMin: number;
  finalMembers: number;
  joinP50ms: number;
  joinP99ms: number;
  leaveP50ms: number;
  leaveP99ms: number;
  lastMinuteP99ms: number;
  storageBefore: Record<string, number>;
  storageAfter: Record<string, number>;
  bytesPerEvent: Record<string, number>;
  cost: CostReport | null;
  otherCpuSeconds: number;
  otherCores: number;
  firstError?: string;
}

async function workloadD(t: Target): Promise<DResult> {
  const m = new MatrixLoad(t.url, t.password);
  const count = Math.round((O.joinsPerMin * O.duration) / 60);
  const { ops, users } = churnSchedule(count);
  const t0 = performance.now();
  try {
    log(`(D) ${t.name}: registering ${users} users for ${count} membership changes over ${O.duration} s`);
    const us = await registerMany(m, `${RUN}d`, users, t0 + O.setupTimeout * 1000);
    if (us.length < users) throw new Error(`registered only ${us.length} of ${users} users within the time box`);
    const owner = await m.register(`${RUN}d-owner`);
    const roomId = await m.createRoom(owner);
    await sleep(1000);
    const storageBefore = await t.storage();
    const w = measure(t);
    const lat = { join: [] as number[], leave: [] as number[] };
    const lastMinute: number[] = [];
    let errors = 0;
    let firstError: string | undefined;
    let done = 0;
    let inFlight = 0;
    const pending: Promise<void>[] = [];
    const started = performance.now();
    const interval = 60_000 / O.joinsPerMin;
    const lastMinuteFrom = started + Math.max(0, O.duration - 60) * 1000;
    for (let k = 0; k < ops.length; k++) {
      const wait = started + k * interval - performance.now();
      if (wait > 0) await sleep(wait);
      if (inFlight >= 500) {
        errors++;
        continue;
      }
      const op = ops[k]!;
      const u = us[op.user]!;
      inFlight++;
      const s = performance.now();
      pending.push(
        (op.kind === 'join' ? m.join(u, roomId, OP_TIMEOUT_MS) : m.leave(u, roomId, OP_TIMEOUT_MS))
          .then(() => {
            const ms = performance.now() - s;
            lat[op.kind].push(ms);
            if (s >= lastMinuteFrom) lastMinute.push(ms);
            done++;
          })
          .catch((err: Error) => {
            errors++;
            firstError ??= err.message;
          })
          .finally(() => {
            inFlight--;
          }),
      );
    }
    await Promise.all(pending);
    const seconds = (performance.now() - started) / 1000;
    const win = w.stop();
    await sleep(2000); // let background writes (Redis AOF, Postgres) land before sizing
    const storageAfter = await t.storage();
    const joined = await m.ok('GET', `${C}/rooms/${enc(roomId)}/joined_members`, { token: owner.token });
    for (const l of [lat.join, lat.leave, lastMinute]) l.sort((a, b) => a - b);
    const bytesPerEvent: Record<string, number> = {};
    for (const k of Object.keys(storageAfter)) bytesPerEvent[k] = done ? Math.round((storageAfter[k]! - (storageBefore[k] ?? 0)) / done) : NaN;
    // Axon's figure is the whole store's growth during D: after A, B or C on the same server it is
    // net of what their data lost meanwhile (outbox entries past their retention are trimmed, so a
    // full run printed 154 bytes an event where D alone gives ~2,000). Withheld then, not printed
    // wrong: `--only d` measures it. (PostgreSQL's files do not shrink when rows go.)
    const earlier = t.name === 'axon' && (['a', 'b', 'c'] as const).some((k) => results[t.name]?.[k] !== undefined);
    if (earlier) for (const k of Object.keys(bytesPerEvent)) bytesPerEvent[k] = NaN;
    const r: DResult = {
      seconds: round(seconds, 1),
      opsPerMinTarget: O.joinsPerMin,
      joins: lat.join.length,
      leaves: lat.leave.length,
      errors,
      achievedOpsPerMin: round((done / seconds) * 60),
      finalMembers: Object.keys(joined.joined ?? {}).length,
      joinP50ms: round(percentile(lat.join, 50)),
      joinP99ms: round(percentile(lat.join, 99)),
      leaveP50ms: round(percentile(lat.leave, 50)),
      leaveP99ms: round(percentile(lat.leave, 99)),
      lastMinuteP99ms: round(percentile(lastMinute, 99)),
      storageBefore,
      storageAfter,
      bytesPerEvent,
      cost: win.cost,
      otherCpuSeconds: win.otherCpuSeconds,
      otherCores: win.otherCores,
      ...(firstError ? { firstError } : {}),
    };
    log(`(D) ${t.name}: ${r.joins} joins + ${r.leaves} leaves in ${r.seconds} s (${r.errors} errors), join p50 ${r.joinP50ms} p99 ${r.joinP99ms} ms, bytes/event ${earlier ? 'not measured after other workloads on the same server (--only d)' : JSON.stringify(bytesPerEvent)}`);
    return r;
  } finally {
    m.close();
  }
}

// ---- report ----------------------------------------------------------------------------------

const fmtMs = (v: number) => (v === Infinity ? '>grace' : String(v));

interface Figure {
  workload: string;
  figure: string;
  /** 'lower' or 'higher' is better. */
  better: 'lower' | 'higher';
  values: Record<string, number | null | undefined>;
}

type FigureValue = Omit<Figure, 'values'> & { value: number | null | undefined };

function figuresOf(r: Results[string]): FigureValue[] {
  const out: FigureValue[] = [];
  const add = (workload: string, figure: string, better: Figure['better'], value: number | null | undefined) => out.push({ workload, figure, better, value });
  if (r.a) {
    for (const p of r.a.phases) {
      const at = `@${p.targetRate} msg/s`;
      add('A', `/send p50 ms ${at}`, 'lower', p.sendP50ms);
      add('A', `/send p99 ms ${at}`, 'lower', p.sendP99ms);
      add('A', `delivery p50 ms ${at}`, 'lower', p.deliveryP50ms);
      add('A', `delivery p99 ms ${at}`, 'lower', p.deliveryP99ms);
      add('A', `server CPU ms/msg ${at}`, 'lower', p.cpuMsPerMessage);
      add('A', `peak RSS MB ${at}`, 'lower', p.peakRssMb);
      add('A', `peak PSS MB ${at}`, 'lower', p.peakPssMb);
    }
    add('A', 'max msg/s with delivery p99 < 1 s', 'higher', r.a.maxRateUnder1s);
  }
  if (r.b) {
    for (const p of r.b.phases) {
      const at = `@${p.targetRate} msg/s`;
      add('B', `delivery p50 ms ${at}`, 'lower', p.deliveryP50ms);
      add('B', `delivery p99 ms ${at}`, 'lower', p.deliveryP99ms);
      add('B', `deliveries/s ${at}`, 'higher', p.deliveryRate);
      add('B', `server CPU s ${at}`, 'lower', p.cpuSeconds);
      add('B', `peak RSS MB ${at}`, 'lower', p.peakRssMb);
      add('B', `peak PSS MB ${at}`, 'lower', p.peakPssMb);
    }
  }
  if (r.c) {
    add('C', 'room setup s (createRoom + join)', 'lower', r.c.setupSeconds);
    for (const v of r.c.variants) {
      const name2 = v.variant.replace(/ \(.*\)$/, '');
      add('C', `${name2} ms`, 'lower', v.status === 200 ? v.medianMs : null);
      add('C', `${name2} kB`, 'lower', v.status === 200 ? round(v.bytes / 1024) : null);
      add('C', `${name2} server CPU s`, 'lower', v.cpuSeconds);
    }
  }
  if (r.d) {
    add('D', 'join p50 ms', 'lower', r.d.joinP50ms);
    add('D', 'join p99 ms', 'lower', r.d.joinP99ms);
    add('D', 'leave p50 ms', 'lower', r.d.leaveP50ms);
    add('D', 'leave p99 ms', 'lower', r.d.leaveP99ms);
    add('D', 'join/leave p99 ms, last minute', 'lower', r.d.lastMinuteP99ms);
    add('D', 'achieved ops/min', 'higher', r.d.achievedOpsPerMin);
    add('D', 'server CPU s', 'lower', r.d.cost?.cpuSeconds);
    add('D', 'peak RSS MB', 'lower', r.d.cost?.peakRssMb);
    add('D', 'peak PSS MB', 'lower', r.d.cost?.peakPssMb);
    add('D', 'storage bytes/event on disk', 'lower', r.d.bytesPerEvent.disk);
    if (r.d.bytesPerEvent.memory !== undefined) add('D', 'storage bytes/event in memory (Redis)', 'lower', r.d.bytesPerEvent.memory);
  }
  return out;
}

function fmt(v: number | null | undefined): string {
  if (v === null || v === undefined || Number.isNaN(v)) return '–';
  if (v === Infinity) return '>grace';
  return Math.abs(v) >= 100 ? String(Math.round(v)) : String(round(v, 2));
}

/**
 * The side-by-side table: one row per figure, a column per target, the ratio of the first target
 * (Axon) to each other one, and which target is ahead.
 */
function comparisonTable(results: Results, names: string[]): string {
  const rows = new Map<string, Figure>();
  for (const n of names) {
    for (const f of figuresOf(results[n] ?? {})) {
      const key = `${f.workload}|${f.figure}`;
      if (!rows.has(key)) rows.set(key, { workload: f.workload, figure: f.figure, better: f.better, values: {} });
      rows.get(key)!.values[n] = f.value;
    }
  }
  const out: Record<string, unknown>[] = [];
  const others = names.slice(1);
  const known = (v: unknown): v is number => typeof v === 'number' && !Number.isNaN(v);
  for (const f of rows.values()) {
    const row: Record<string, unknown> = { figure: `${f.workload}  ${f.figure}` };
    for (const n of names) row[n] = fmt(f.values[n]);
    if (names.length >= 2) {
      const a = f.values[names[0]!];
      others.forEach((n, i) => {
        const s = f.values[n];
        row[`ratio${i}`] = known(a) && known(s) && Number.isFinite(a) && Number.isFinite(s) && s !== 0 ? Number((a / s).toPrecision(2)) : '–';
      });
      // Ahead: the best value; Infinity (deliveries missing past the grace period) loses to any
      // finite value; '=' when every target has the same value.
      const vals = names.map((n) => ({ n, v: f.values[n] })).filter((x): x is { n: string; v: number } => known(x.v));
      row.ahead = '';
      if (vals.length === names.length) {
        const best = vals.reduce((b, x) => (f.better === 'lower' ? (x.v < b.v ? x : b) : x.v !== Infinity && (b.v === Infinity || x.v > b.v) ? x : b));
        row.ahead = vals.every((x) => x.v === best.v) ? (best.v === Infinity ? '' : '=') : best.n;
      }
    }
    out.push(row);
  }
  const ratioCols = names.length >= 2 ? [...others.map((_n, i) => `ratio${i}`), 'ahead'] : [];
  const ratioHeaders = names.length >= 2 ? [...others.map((n) => `${names[0]}/${n}`), 'ahead'] : [];
  return table(out, ['figure', ...names, ...ratioCols], ['figure', ...names, ...ratioHeaders]);
}

type Results = Record<string, { a?: AResult; b?: BResult; c?: CResult; d?: DResult; errors?: Record<string, string> }>;

// ---- main ------------------------------------------------------------------------------------

const RUN = `r${Date.now().toString(36).slice(-5)}`; // the same user names on every server of this run
const results: Results = {};
const scaling: { config: string; workers: number; fronts: number; a?: AResult; error?: string; note?: string }[] = [];
const meta: Record<string, unknown> = {};
const targets: Target[] = [];
let finished = false;

function report(): string {
  const names = Object.keys(results);
  const out: string[] = [];
  out.push(`Matrix homeserver benchmark — ${meta.date}; ${meta.cpuModel}, ${meta.cpus} cores; node ${process.version}; client on the same cores`);
  for (const t of (meta.targets ?? []) as { name: string; label: string }[]) out.push(`  ${t.name}: ${t.label}`);
  out.push(`  load average at start ${meta.loadAvgStart}; options ${JSON.stringify(meta.options)}`);
  for (const n of names) {
    const r = results[n]!;
    if (r.a) {
      out.push(`\n(A) ${n}: ${r.a.users} users in ${r.a.rooms} rooms (${r.a.memberships} memberships, ${round(r.a.bigRoomShare * 100)} % in 4 rooms), all long-polling; setup ${r.a.setupSeconds} s; sync errors ${r.a.syncErrors}`);
      out.push(table(r.a.phases.map((p) => ({ ...p, deliveryP99ms: fmtMs(p.deliveryP99ms) })), ['targetRate', 'sendRate', 'sendErrors', 'sendP50ms', 'sendP99ms', 'deliveries', 'missing', 'deliveryP50ms', 'deliveryP99ms', 'cpuSeconds', 'cpuMsPerMessage', 'peakRssMb', 'peakPssMb', 'otherCores']));
    }
    if (r.b) {
      out.push(`\n(B) ${n}: one room, ${r.b.members} syncing members (asked ${r.b.requestedMembers}); setup ${r.b.setupSeconds} s; sync errors ${r.b.syncErrors}`);
      out.push(table(r.b.phases.map((p) => ({ ...p, deliveryP99ms: fmtMs(p.deliveryP99ms) })), ['targetRate', 'sendRate', 'sendErrors', 'sendP50ms', 'sendP99ms', 'deliveries', 'missing', 'deliveryRate', 'deliveryP50ms', 'deliveryP99ms', 'cpuSeconds', 'peakRssMb', 'peakPssMb', 'otherCores']));
    }
    if (r.c) {
      out.push(`\n(C) ${n}: one user in ${r.c.rooms} rooms (asked ${r.c.requestedRooms}; ${r.c.invitesPerRoom} more invited members each); setup ${r.c.setupSeconds} s, ${r.c.setupCpuSeconds ?? '?'} server CPU s; ${r.c.gapEvents} gap events in ${r.c.gapSendSeconds} s`);
      out.push(table(r.c.variants as unknown as Record<string, unknown>[], ['variant', 'medianMs', 'minMs', 'maxMs', 'bytes', 'rooms', 'limitedRooms', 'status', 'cpuSeconds']));
    }
    if (r.d) {
      out.push(`\n(D) ${n}: join churn into one room, ${r.d.opsPerMinTarget}/min for ${r.d.seconds} s`);
      out.push(table([{ ...r.d, cpu: r.d.cost?.cpuSeconds, rss: r.d.cost?.peakRssMb, bytes: JSON.stringify(r.d.bytesPerEvent) }], ['joins', 'leaves', 'errors', 'achievedOpsPerMin', 'finalMembers', 'joinP50ms', 'joinP99ms', 'leaveP50ms', 'leaveP99ms', 'lastMinuteP99ms', 'cpu', 'rss', 'bytes', 'otherCores']));
      if (r.d.firstError) out.push(`  first error: ${r.d.firstError}`);
    }
    for (const [w, e] of Object.entries(r.errors ?? {})) out.push(`\n(${w}) ${n}: FAILED — ${e}`);
  }
  if (names.length) {
    out.push(`\nSummary (${names.join(' vs ')}${names.length >= 2 ? `; ratio = ${names[0]}/${names.slice(1).join(`, ${names[0]}/`)}; "ahead" = the best for that figure` : ''}):`);
    out.push(comparisonTable(results, names));
    for (const n of names) {
      const b = results[n]?.b;
      const c = results[n]?.c;
      if (b && b.members < b.requestedMembers) out.push(`(B) ${n}: ${b.members} of ${b.requestedMembers} members (setup time box ${O.setupTimeout} s, or the size the server before it reached)`);
      if (c && (c.rooms < c.requestedRooms || c.gapEvents < O.events)) out.push(`(C) ${n}: ${c.rooms} of ${c.requestedRooms} rooms, ${c.gapEvents} of ${O.events} gap events (setup time box ${O.setupTimeout} s, or the size the server before it reached)`);
      if (results[n]?.b?.notRun) out.push(`(B) ${n}: ${results[n]!.b!.notRun}`);
      const a = results[n]?.a;
      if (a?.firstRateNotSustained !== undefined) out.push(`(A) ${n}: highest sustained rate ${a.maxRateUnder1s} msg/s; not sustained at ${a.firstRateNotSustained} msg/s (delivery p99 ≥ 1 s or failed sends); rates tried in order: ${a.phases.map((p) => p.targetRate).join(', ')}`);
      const busy = [a?.phases, results[n]?.b?.phases].flat().filter((p): p is APhase => !!p);
      if (busy.length) out.push(`(A, B) ${n}: other processes on the machine kept ${Math.min(...busy.map((p) => p.otherCores))}–${Math.max(...busy.map((p) => p.otherCores))} of the ${cpus().length} cores busy during the measured phases`);
    }
  }
  if (scaling.length) {
    out.push(`\nScaling: (A) against Axon, ${scaling[0]?.a?.users ?? O.users} users, same rates`);
    const rows: Record<string, unknown>[] = [];
    for (const s of scaling) {
      if (!s.a) {
        rows.push({ config: s.config, rate: 'failed: ' + (s.error ?? '?') });
        continue;
      }
      for (const p of s.a.phases) rows.push({ config: s.config, rate: p.targetRate, sent: p.sendRate, sendP99: p.sendP99ms, p50: p.deliveryP50ms, p99: fmtMs(p.deliveryP99ms), cpu: p.cpuMsPerMessage, rss: p.peakRssMb, pss: p.peakPssMb });
    }
    out.push(table(rows, ['config', 'rate', 'sent', 'sendP99', 'p50', 'p99', 'cpu', 'rss', 'pss'], ['config', 'msg/s', 'sent/s', '/send p99 ms', 'delivery p50 ms', 'delivery p99 ms', 'CPU ms/msg', 'peak RSS MB', 'peak PSS MB']));
    out.push(`max msg/s with delivery p99 < 1 s: ${scaling.map((s) => `${s.config} ${s.a ? s.a.maxRateUnder1s : 'failed'}${s.note ? ` (${s.note})` : ''}`).join('; ')}`);
  }
  return out.join('\n') + '\n';
}

function writeResults(): void {
  if (finished) return;
  finished = true;
  meta.totalSeconds = round((performance.now() - startedAt) / 1000, 1);
  meta.loadAvgEnd = loadavg().map((x) => round(x, 2));
  process.stdout.write('\n' + report());
  // From meta: the targets are stopped (and removed from `targets`) before the results are
  // written, and TARGET may be a URL, whose slashes cannot go into a file name.
  const first = (meta.targets as { name: string }[] | undefined)?.[0]?.name;
  const label = VS ? 'axon-vs-synapse' : (first ?? TARGET).replace(/[^a-z0-9.-]+/gi, '_');
  const file = writeBenchResults((stamp) => `${stamp}-${label}.json`, { meta, results, scaling }, (_k, v) => (v === Infinity ? 'Infinity' : v));
  process.stdout.write(`\nJSON: ${file}\n`);
}

async function stopTargets(): Promise<void> {
  for (const t of targets.splice(0)) await t.stop().catch((err) => log(`stopping ${t.name}: ${(err as Error).message}`));
}

const startedAt = performance.now();

async function runWorkload(key: 'a' | 'b' | 'c' | 'd', order: Target[]): Promise<void> {
  let bCap: number | undefined;
  let cCap: { rooms: number; events: number } | undefined;
  for (const t of order) {
    const r = (results[t.name] ??= {});
    try {
      if (key === 'a') r.a = await workloadA(t);
      if (key === 'b') bCap = (r.b = await workloadB(t, bCap)).members;
      if (key === 'c') {
        r.c = await workloadC(t, cCap);
        cCap = { rooms: r.c.rooms, events: r.c.gapEvents };
      }
      if (key === 'd') r.d = await workloadD(t);
    } catch (err) {
      (r.errors ??= {})[key.toUpperCase()] = (err as Error).message;
      log(`(${key.toUpperCase()}) ${t.name} failed: ${(err as Error).stack ?? err}`);
    }
  }
}

async function main(): Promise<void> {
  const hardStop = setTimeout(() => {
    log(`time limit of ${O.maxMinutes} min reached: stopping with what was measured`);
    writeResults();
    void stopTargets().finally(() => process.exit(2));
  }, O.maxMinutes * 60_000);
  hardStop.unref();
  Object.assign(meta, {
    date: new Date().toISOString(),
    cpuModel: /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '?',
    cpus: cpus().length,
    memGb: round(Number(/MemTotal:\s+(\d+)/.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1] ?? 0) / 1024 / 1024, 1),
    node: process.version,
    loadAvgStart: loadavg().map((x) => round(x, 2)),
    options: { ...O, only: [...O.only], quick: QUICK, vs: VS ?? null, target: TARGET },
  });
  // Synapse first in each workload: its time-boxed setups (B, C) set the size Axon then gets.
  const wantsMain = ['a', 'b', 'c', 'd'].some((k) => O.only.has(k));
  if (wantsMain) {
    if (VS || TARGET === 'synapse') for (const w of O.synapseWorkers) targets.push(await synapseTarget(w));
    if (TARGET === 'axon') targets.push(await axonTarget(O.workers, O.fronts));
    else if (TARGET !== 'synapse') targets.push(urlTarget(TARGET));
  }
  meta.targets = targets.map((t) => ({ name: t.name, label: t.label, url: t.url }));
  if (VS) {
    // Columns read Axon first.
    const ordered = ['axon', ...O.synapseWorkers.map((w) => (w ? `synapse-w${w}` : 'synapse'))];
    for (const n of ordered) results[n] = {};
  }
  for (const key of ['a', 'b', 'c', 'd'] as const) if (O.only.has(key)) await runWorkload(key, targets);
  const mainAxon = targets.find((t) => t.name === 'axon');
  const mainAxonA = results.axon?.a;
  await stopTargets();

  if (O.only.has('scale') && (TARGET === 'axon' || VS)) {
    for (const [workers, fronts] of [
      [1, 1],
      [2, 1],
      [2, 2],
    ] as const) {
      const config = `${workers} worker${workers > 1 ? 's' : ''} + ${fronts} front${fronts > 1 ? 's' : ''}`;
      if (mainAxon && mainAxonA && workers === O.workers && fronts === O.fronts) {
        scaling.push({ config, workers, fronts, a: mainAxonA, note: 'from the run above' });
        continue;
      }
      let t: Target | null = null;
      try {
        t = await axonTarget(workers, fronts);
        targets.push(t);
        log(`(scale) ${config}`);
        scaling.push({ config, workers, fronts, a: await workloadA(t) });
      } catch (err) {
        scaling.push({ config, workers, fronts, error: (err as Error).message });
        log(`(scale) ${config} failed: ${(err as Error).stack ?? err}`);
      } finally {
        await stopTargets();
      }
    }
  }
  writeResults();
}

let exitCode = 0;
try {
  await main();
} catch (err) {
  exitCode = 1;
  log(`failed: ${(err as Error).stack ?? err}`);
  writeResults();
} finally {
  await stopTargets();
}
process.exit(exitCode);
