/**
 * Operator commands for an Axon cluster on this machine (see README, "Cluster scripts"):
 *
 *   npm run cluster -- up [--workers N] [--fronts M]   start Redis (if managed), workers, fronts
 *   npm run cluster -- status [--json]                  Redis, workers and fronts (alive, ready), shards,
 *                                                       lease age, lag, pending, dead, metrics port
 *   npm run cluster -- move-shard <family> <shard> <worker>
 *   npm run cluster -- rebalance                        even out shard counts between workers
 *   npm run cluster -- drain <worker>                   move its shards away, then stop it
 *   npm run cluster -- restart [fronts|workers]         rolling restart (both: fronts, then
 *                                                       workers), nothing refused or lost
 *   npm run cluster -- down                             stop fronts, workers, managed Redis
 *   npm run cluster -- load [--seconds S] [--concurrency C]
 *                                                       drive traffic through the actors (a
 *                                                       canary: rate, latency, then a check that
 *                                                       every message was applied once, in order)
 *
 * Processes run in the background with pid files in <dataDir>/run and logs in <dataDir>/logs.
 * Add `--json` to any command for machine-readable output.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, loadConfig, type AxonConfig } from '../cluster.config';
import { acceptingWorkers, drain, moveShard as moveShardTo, readShards, readWorkers, rebalance, workerRows } from '../src/runtime/cluster-admin';
import { redisTargetFor, shardCountsFor, nodeFlagsFor } from '../src/runtime/cluster-settings';
import { readFronts } from '../src/runtime/front-heartbeat';
import { portOpen, startManagedRedis } from '../src/runtime/managed-redis';
import { FAMILIES, isFamily } from '../src/store/shards';
import { KeySpace } from '../src/store/keys';
import { connectRedis, type RedisClient } from '../src/store/redis';

const root = join(import.meta.dirname, '..');
const args = process.argv.slice(2);
const json = args.includes('--json');
const VALUE_FLAGS = ['--workers', '--fronts', '--seconds', '--concurrency'];
const positional = args.filter((a, i) => !a.startsWith('--') && !(i > 0 && VALUE_FLAGS.includes(args[i - 1]!)));
const command = positional[0];

function flag(name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

function out(human: string, machine: unknown): void {
  if (json) process.stdout.write(JSON.stringify(machine, null, 2) + '\n');
  else process.stdout.write(human + '\n');
}

function fail(message: string): never {
  if (json) process.stdout.write(JSON.stringify({ ok: false, error: message }) + '\n');
  else process.stderr.write(`cluster: ${message}\n`);
  process.exit(1);
}

const runDir = (c: AxonConfig) => join(c.dataDir, 'run');
const logDir = (c: AxonConfig) => join(c.dataDir, 'logs');

function readPid(file: string): number | null {
  if (!existsSync(file)) return null;
  const pid = Number(readFileSync(file, 'utf8').trim());
  return Number.isInteger(pid) && pid > 0 ? pid : null;
}

function alive(pid: number | null): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A process killed with -9 stays a zombie until its parent (here often init, which may be slow
  // to reap) collects it; it answers signal 0 but is gone.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true; // no /proc (not Linux): trust the signal
  }
}

/** Local processes we started: name → pid (alive or not). */
function localProcesses(c: AxonConfig): { name: string; pid: number | null; alive: boolean }[] {
  if (!existsSync(runDir(c))) return [];
  return readdirSync(runDir(c))
    .filter((f) => f.endsWith('.pid'))
    .map((f) => {
      const pid = readPid(join(runDir(c), f));
      return { name: f.slice(0, -4), pid, alive: alive(pid) };
    })
    .sort((a, b) => a.name.localeCompare(b.name, undefined, { numeric: true }));
}

function startProcess(c: AxonConfig, name: string, entry: string): number {
  const pidFile = join(runDir(c), `${name}.pid`);
  const existing = readPid(pidFile);
  if (alive(existing)) return existing!;
  const pid = spawnProcess(c, name, entry);
  writeFileSync(pidFile, String(pid));
  return pid;
}

/** The metrics port recorded for a process (`<runDir>/<name>.metrics-port`), or null. */
function readMetricsPort(c: AxonConfig, name: string): number | null {
  const file = join(runDir(c), `${name}.metrics-port`);
  if (!c.metrics.port || !existsSync(file)) return null;
  const port = Number(readFileSync(file, 'utf8').trim());
  return Number.isInteger(port) && port > 0 ? port : null;
}

/**
 * Each process's own metrics port, from `metrics.port` upward in the order processes are first
 * started (`up`: w1, w2, …, then f1, …), kept in a file so a restarted process (and the new front
 * of a rolling restart) serves on the same one. Null when metrics are off.
 */
function metricsPortFor(c: AxonConfig, name: string): number | null {
  if (!c.metrics.port) return null;
  const known = readMetricsPort(c, name);
  if (known) return known;
  const used = new Set(
    readdirSync(runDir(c))
      .filter((f) => f.endsWith('.metrics-port'))
      .map((f) => readMetricsPort(c, f.slice(0, -'.metrics-port'.length))),
  );
  let port = c.metrics.port;
  while (used.has(port)) port++;
  writeFileSync(join(runDir(c), `${name}.metrics-port`), String(port));
  return port;
}

/** Start a process in the background (logs appended to `<dataDir>/logs/<name>.log`); its pid. */
function spawnProcess(c: AxonConfig, name: string, entry: string, extraArgs: string[] = []): number {
  mkdirSync(runDir(c), { recursive: true });
  mkdirSync(logDir(c), { recursive: true });
  const log = openSync(join(logDir(c), `${name}.log`), 'a');
  const metricsPort = metricsPortFor(c, name);
  const env = metricsPort ? { ...process.env, AXON_METRICS_PORT: String(metricsPort) } : process.env;
  // `node` directly on the built JavaScript (scripts/build; the wrapper scripts/cluster built it if
  // it was stale): no TypeScript loader in the process, and the pid file names the real process.
  const flags = nodeFlagsFor(entry.includes('worker') ? 'worker' : 'front');
  const child = spawn(process.execPath, [...flags, entry, '--id', name, ...extraArgs], { cwd: root, detached: true, stdio: ['ignore', log, log], env });
  child.unref();
  return child.pid!;
}

async function waitExit(pid: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (alive(pid) && Date.now() < deadline) await sleep(50);
  if (alive(pid)) process.kill(pid, 'SIGKILL');
  while (alive(pid)) await sleep(20);
}

async function stopProcess(c: AxonConfig, name: string, timeoutMs = 20_000): Promise<boolean> {
  const pidFile = join(runDir(c), `${name}.pid`);
  const pid = readPid(pidFile);
  if (alive(pid)) {
    process.kill(pid!, 'SIGTERM');
    const deadline = Date.now() + timeoutMs;
    while (alive(pid) && Date.now() < deadline) await sleep(50);
    if (alive(pid)) process.kill(pid!, 'SIGKILL');
  }
  rmSync(pidFile, { force: true });
  rmSync(join(runDir(c), `${name}.metrics-port`), { force: true });
  return true;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Redis answering PING within the configured ping timeout, or why not. */
type Reach = { ok: true; redis: RedisClient; pingMs: number } | { ok: false; why: string };

async function reach(c: AxonConfig): Promise<Reach> {
  if (c.redis.mode === 'managed' && !(await portOpen(c.redis.managedPort))) return { ok: false, why: `the managed Redis is not running (port ${c.redis.managedPort}); run \`npm run cluster -- up\` first` };
  // Commands time out as a front's do: a stalled Redis makes a command fail, not hang.
  const redis = connectRedis(redisTargetFor(c), { commandTimeout: c.redis.commandTimeoutMs });
  const t = performance.now();
  const answered = await Promise.race([redis.ping().then(() => true, () => false), sleep(c.redis.pingTimeoutMs).then(() => false)]);
  if (!answered) {
    redis.disconnect();
    return { ok: false, why: `Redis did not answer PING within ${c.redis.pingTimeoutMs} ms (stalled, overloaded or unreachable)` };
  }
  return { ok: true, redis, pingMs: Math.round((performance.now() - t) * 100) / 100 };
}

async function connect(c: AxonConfig): Promise<RedisClient> {
  const r = await reach(c);
  if (!r.ok) fail(r.why);
  return r.redis;
}

async function up(c: AxonConfig): Promise<void> {
  const workers = Number(flag('--workers') ?? c.workers);
  const fronts = Number(flag('--fronts') ?? c.fronts);
  if (!Number.isInteger(workers) || workers < 1) fail('--workers must be a positive integer');
  if (!Number.isInteger(fronts) || fronts < 0) fail('--fronts must be a non-negative integer');
  let redisInfo: string = c.redis.mode;
  if (c.redis.mode === 'managed') {
    const r = await startManagedRedis({ dir: join(c.dataDir, 'redis'), port: c.redis.managedPort, onLoading: (seconds) => process.stderr.write(`cluster: the managed Redis is still loading its data (${seconds} s)\n`) });
    redisInfo = `managed redis pid ${r.pid} on ${r.url}${r.started ? '' : ' (already running)'}`;
  }
  const redis = await connect(c);
  const keys = new KeySpace(c.redis.keyPrefix);
  const started: { name: string; pid: number }[] = [];
  for (let i = 1; i <= workers; i++) started.push({ name: `w${i}`, pid: startProcess(c, `w${i}`, 'dist/worker-main.js') });
  // Wait until every worker heartbeats, and the first has its shards, before starting fronts.
  const deadline = Date.now() + 60_000;
  for (;;) {
    const live = (await readWorkers(redis, keys, c.lease.ttlMs)).filter((w) => w.alive).map((w) => w.id);
    if (started.every((s) => live.includes(s.name))) break;
    if (Date.now() > deadline) fail(`workers did not start; see ${logDir(c)}`);
    await sleep(100);
  }
  for (let i = 1; i <= fronts; i++) started.push({ name: `f${i}`, pid: startProcess(c, `f${i}`, 'dist/front-main.js') });
  if (fronts > 0) {
    while (!(await portOpen(c.clientPort, c.bindHost === '0.0.0.0' ? '127.0.0.1' : c.bindHost))) {
      if (Date.now() > deadline) fail(`fronts did not start listening on ${c.clientPort}; see ${logDir(c)}`);
      await sleep(100);
    }
  }
  // Wait for every shard to be held, then even out the counts.
  const total = FAMILIES.reduce((n, f) => n + shardCountsFor(c)[f], 0);
  while ((await readShards(redis, keys, shardCountsFor(c))).filter((s) => s.owner).length < total) {
    if (Date.now() > deadline) fail('not every shard was taken within 60 s');
    await sleep(200);
  }
  const moves = workers > 1 ? await rebalance(redis, keys, shardCountsFor(c), c.lease.ttlMs) : [];
  redis.disconnect();
  out(
    [`redis: ${redisInfo}`, ...started.map((s) => `${s.name}: pid ${s.pid}${metricsUrl(c, s.name) ? `, metrics ${metricsUrl(c, s.name)}` : ''}`), `shards moved to balance: ${moves.length}`, `client API: http://${c.bindHost}:${c.clientPort}`, `logs: ${logDir(c)}`].join('\n'),
    { ok: true, redis: redisInfo, processes: started.map((s) => ({ ...s, metricsPort: readMetricsPort(c, s.name) })), rebalanced: moves.length, url: `http://${c.bindHost}:${c.clientPort}` },
  );
}

function metricsUrl(c: AxonConfig, name: string): string | null {
  const port = readMetricsPort(c, name);
  return port ? `http://${c.metrics.host}:${port}/metrics` : null;
}

async function status(c: AxonConfig): Promise<void> {
  const reached = await reach(c);
  if (!reached.ok) {
    // What can be told without Redis: that it does not answer, and which local processes run.
    const processes = localProcesses(c);
    out(
      [`redis: NOT READY: ${reached.why}`, 'workers and fronts: unknown (their heartbeats are in Redis); none can serve until Redis answers', '', `local processes: ${processes.map((p) => `${p.name}(${p.pid ?? '-'}${p.alive ? '' : ', dead'})`).join(' ') || 'none'}`].join('\n'),
      { ok: false, redis: { ready: false, error: reached.why }, workers: null, fronts: null, processes },
    );
    process.exit(1);
  }
  const redis = reached.redis;
  const keys = new KeySpace(c.redis.keyPrefix);
  const [workers, fronts, shards] = await Promise.all([readWorkers(redis, keys, c.lease.ttlMs), readFronts(redis, keys), readShards(redis, keys, shardCountsFor(c), { details: true })]);
  redis.disconnect();
  const rows = workerRows(workers, shards).map((r) => ({ ...r, metricsPort: readMetricsPort(c, r.worker) }));
  const frontRows = fronts.map((f) => ({ ...f, metricsPort: readMetricsPort(c, f.id) }));
  const processes = localProcesses(c);
  const human = [
    `redis: ready (PING ${reached.pingMs} ms)`,
    '',
    'worker      alive  ready  state     pid      room  user  lease age (s)   lag  pending  dead  inbox  metrics',
    ...rows.map((r) =>
      [
        r.worker.padEnd(10), String(r.alive).padEnd(6), String(r.ready).padEnd(6), r.state.padEnd(9), String(r.pid ?? '-').padEnd(8), String(r.shards.room).padStart(4), String(r.shards.user).padStart(5),
        (r.leaseAgeMs ? `${(r.leaseAgeMs.min / 1000).toFixed(0)}-${(r.leaseAgeMs.max / 1000).toFixed(0)}` : '-').padStart(14), String(r.inboxLag).padStart(5), String(r.pending).padStart(8), String(r.deadLetters).padStart(5), (r.inboxFormat === null ? '-' : `v${r.inboxFormat}`).padStart(6), ` ${r.metricsPort ?? '-'}`,
      ].join(' '),
    ),
    '',
    'front       alive  ready  state     pid      port   ping (ms)  in flight  heartbeat (s ago)  metrics',
    ...(frontRows.length
      ? frontRows.map((f) =>
          [
            f.id.padEnd(10), String(f.alive).padEnd(6), String(f.ready).padEnd(6), f.state.padEnd(9), String(f.pid ?? '-').padEnd(8), String(f.port ?? '-').padEnd(6),
            (f.pingMs === null ? '-' : String(f.pingMs)).padStart(9), String(f.inFlight).padStart(10), (f.heartbeatAgoMs / 1000).toFixed(1).padStart(18), ` ${f.metricsPort ?? '-'}`,
          ].join(' '),
        )
      : ['(none)']),
    '',
    `local processes: ${processes.map((p) => `${p.name}(${p.pid ?? '-'}${p.alive ? '' : ', dead'})`).join(' ') || 'none'}`,
    ...(c.metrics.port ? [`metrics: http://${c.metrics.host}:<port>/metrics (per process, column "metrics")`] : []),
  ].join('\n');
  out(human, { ok: true, redis: { ready: true, pingMs: reached.pingMs }, workers: rows, fronts: frontRows, processes, shardCounts: shardCountsFor(c), metricsHost: c.metrics.port ? c.metrics.host : null });
}

async function moveShard(c: AxonConfig): Promise<void> {
  const [, family, shardText, target] = positional;
  if (!family || !isFamily(family)) fail(`usage: move-shard <${FAMILIES.join('|')}> <shard> <worker>`);
  const redis = await connect(c);
  const res = await moveShardTo(redis, new KeySpace(c.redis.keyPrefix), shardCountsFor(c), c.lease.ttlMs, family, Number(shardText), target ?? '');
  redis.disconnect();
  const { from, to } = res.move;
  out(`moved ${family}:${res.move.shard} from ${from || '(none)'} to ${to} in ${res.ms} ms`, { ok: true, family, shard: res.move.shard, from, to, ms: res.ms });
}

async function doRebalance(c: AxonConfig): Promise<void> {
  const redis = await connect(c);
  const began = Date.now();
  const res = await rebalance(redis, new KeySpace(c.redis.keyPrefix), shardCountsFor(c), c.lease.ttlMs);
  const ms = Date.now() - began;
  redis.disconnect();
  out(`moved ${res.length} shards in ${(ms / 1000).toFixed(1)} s`, { ok: true, ms, moved: res.map((r) => ({ ...r.move, ms: r.ms })) });
}

async function doDrain(c: AxonConfig): Promise<void> {
  const worker = positional[1];
  if (!worker) fail('usage: drain <worker>');
  const redis = await connect(c);
  const keys = new KeySpace(c.redis.keyPrefix);
  const began = Date.now();
  // When each step ended (ms since the start): where a slow drain spent its time.
  const phases: Record<string, number> = {};
  const res = await drain(redis, keys, shardCountsFor(c), c.lease.ttlMs, worker, { onPhase: (p) => (phases[p] ??= Date.now() - began) });
  const ms = Date.now() - began;
  // A local worker exits once asked to stop; wait for it and tidy its pid file.
  const pidFile = join(runDir(c), `${worker}.pid`);
  const pid = readPid(pidFile);
  const deadline = Date.now() + 30_000;
  while (alive(pid) && Date.now() < deadline) await sleep(50);
  if (!alive(pid)) rmSync(pidFile, { force: true });
  redis.disconnect();
  const steps = Object.entries(phases).map(([p, t]) => `${p} ${(t / 1000).toFixed(2)} s`).join(', ');
  // How long this command took to start (node, config, connecting) before the drain began.
  const startupMs = Math.round(began - performance.timeOrigin);
  out(`drained ${worker}: moved ${res.length} shards in ${(ms / 1000).toFixed(1)} s (${steps}; the command started in ${(startupMs / 1000).toFixed(1)} s)${pid ? `, process ${alive(pid) ? 'still running' : 'stopped'}` : ''}`, { ok: true, worker, moved: res.length, ms, startupMs, phases, stopped: pid ? !alive(pid) : null });
}

/**
 * Rolling restart (an upgrade: fronts first, then workers — see README), with nothing refused:
 * - a front's replacement starts beside it (both listen on the port) and the old one is told to
 *   stop only once the new one listens; the old one answers what it has in flight, ends its
 *   long-polls with what they have, closes its connections and exits;
 * - a worker is drained (its shards move live to the others), stopped, started again and given
 *   shards back by a rebalance at the end. A lone worker cannot be drained: it is stopped (its
 *   leases released) and started again, and commands wait in the inboxes meanwhile.
 */
async function restart(c: AxonConfig): Promise<void> {
  const which = positional[1] ?? 'all';
  if (!['fronts', 'workers', 'all'].includes(which)) fail('usage: restart [fronts|workers]');
  const procs = localProcesses(c).filter((p) => p.alive);
  const report: { name: string; oldPid: number; newPid: number; ms: number }[] = [];
  if (which !== 'workers') {
    for (const p of procs.filter((x) => x.name.startsWith('f'))) {
      const t0 = Date.now();
      const readyFile = join(runDir(c), `${p.name}.ready`);
      rmSync(readyFile, { force: true });
      const pid = spawnProcess(c, p.name, 'dist/front-main.js', ['--ready-file', readyFile]);
      const deadline = Date.now() + 60_000;
      while (!(existsSync(readyFile) && readFileSync(readyFile, 'utf8').trim() === String(pid))) {
        if (!alive(pid)) fail(`the new ${p.name} exited before listening; see ${logDir(c)}`);
        if (Date.now() > deadline) fail(`the new ${p.name} did not listen within 60 s; see ${logDir(c)}`);
        await sleep(50);
      }
      rmSync(readyFile, { force: true });
      writeFileSync(join(runDir(c), `${p.name}.pid`), String(pid));
      process.kill(p.pid!, 'SIGTERM');
      await waitExit(p.pid!, 30_000);
      report.push({ name: p.name, oldPid: p.pid!, newPid: pid, ms: Date.now() - t0 });
    }
  }
  if (which !== 'fronts') {
    const redis = await connect(c);
    const keys = new KeySpace(c.redis.keyPrefix);
    const workers = procs.filter((x) => x.name.startsWith('w'));
    for (const p of workers) {
      const t0 = Date.now();
      const others = (await acceptingWorkers(redis, keys, c.lease.ttlMs)).filter((w) => w !== p.name);
      if (others.length > 0) {
        await drain(redis, keys, shardCountsFor(c), c.lease.ttlMs, p.name);
        await waitExit(p.pid!, 60_000);
      } else {
        process.kill(p.pid!, 'SIGTERM');
        await waitExit(p.pid!, 60_000);
      }
      rmSync(join(runDir(c), `${p.name}.pid`), { force: true });
      const pid = startProcess(c, p.name, 'dist/worker-main.js');
      const deadline = Date.now() + 60_000;
      while (!(await acceptingWorkers(redis, keys, c.lease.ttlMs)).includes(p.name)) {
        if (!alive(pid)) fail(`${p.name} exited after its restart; see ${logDir(c)}`);
        if (Date.now() > deadline) fail(`${p.name} did not come back within 60 s; see ${logDir(c)}`);
        await sleep(100);
      }
      report.push({ name: p.name, oldPid: p.pid!, newPid: pid, ms: Date.now() - t0 });
    }
    const moves = workers.length > 1 ? await rebalance(redis, keys, shardCountsFor(c), c.lease.ttlMs) : [];
    redis.disconnect();
    if (moves.length && !json) process.stdout.write(`shards moved to balance: ${moves.length}\n`);
  }
  out(report.map((r) => `${r.name}: pid ${r.oldPid} → ${r.newPid} (${r.ms} ms)`).join('\n') || 'nothing running to restart', { ok: true, restarted: report });
}

async function down(c: AxonConfig): Promise<void> {
  const procs = localProcesses(c);
  // Fronts first (no new requests), then workers (they finish in-flight messages and release).
  const order = [...procs.filter((p) => p.name.startsWith('f')), ...procs.filter((p) => !p.name.startsWith('f'))];
  for (const p of order) await stopProcess(c, p.name);
  let redisStopped = false;
  if (c.redis.mode === 'managed') {
    const pid = readPid(join(c.dataDir, 'redis', 'redis.pid'));
    if (alive(pid)) {
      process.kill(pid!, 'SIGTERM');
      const deadline = Date.now() + 20_000;
      while (alive(pid) && Date.now() < deadline) await sleep(50);
      redisStopped = !alive(pid);
    }
  }
  out(`stopped: ${order.map((p) => p.name).join(' ') || 'nothing'}${redisStopped ? ', managed redis' : ''}`, { ok: true, stopped: order.map((p) => p.name), redisStopped });
}

/**
 * Traffic for an operator to watch while moving shards: LedgerActor appends over many actors,
 * a line of figures per second, then every actor's count checked against what was sent.
 */
async function load(c: AxonConfig): Promise<void> {
  const seconds = Number(flag('--seconds') ?? 30);
  const concurrency = Number(flag('--concurrency') ?? 50);
  if (!(seconds > 0) || !Number.isInteger(concurrency) || concurrency < 1) fail('--seconds must be positive and --concurrency a positive integer');
  const redis = await connect(c);
  const { ActorClient } = await import('../src/runtime/actor-client');
  const client = new ActorClient(redis, new KeySpace(c.redis.keyPrefix), shardCountsFor(c));
  await client.start();
  const actors = 500;
  const run = Date.now().toString(36);
  const sent = new Array<number>(actors).fill(0);
  const latencies: number[] = [];
  let errors = 0;
  let window: number[] = [];
  const end = Date.now() + seconds * 1000;
  const ticker = setInterval(() => {
    const w = window.sort((a, b) => a - b);
    window = [];
    if (!json) process.stdout.write(`${w.length} msg/s  p50 ${(w[Math.floor(w.length * 0.5)] ?? 0).toFixed(1)} ms  p99 ${(w[Math.floor(w.length * 0.99)] ?? 0).toFixed(1)} ms  errors ${errors}\n`);
  }, 1000);
  let n = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (Date.now() < end) {
        const a = n++ % actors;
        const seq = ++sent[a]!;
        const t = performance.now();
        try {
          await client.ask('user', 'ledger', `load:${run}:${a}`, { op: 'append', producer: run, seq, value: 1 }, { timeoutMs: 30_000 });
          const ms = performance.now() - t;
          latencies.push(ms);
          window.push(ms);
        } catch {
          errors++;
        }
      }
    }),
  );
  clearInterval(ticker);
  let applied = 0;
  let wrong = 0;
  for (let a = 0; a < actors; a++) {
    if (!sent[a]) continue;
    const s = await client.ask<{ count: number; outOfOrder: number }>('user', 'ledger', `load:${run}:${a}`, { op: 'read' }, { timeoutMs: 30_000 });
    applied += s.count;
    if (s.count !== sent[a] || s.outOfOrder) wrong++;
  }
  await client.close();
  redis.disconnect();
  latencies.sort((x, y) => x - y);
  const total = sent.reduce((x, y) => x + y, 0);
  const summary = {
    ok: wrong === 0 && errors === 0,
    sent: total,
    applied,
    actorsWrong: wrong,
    errors,
    perSecond: Math.round(latencies.length / seconds),
    p50ms: Math.round((latencies[Math.floor(latencies.length * 0.5)] ?? 0) * 10) / 10,
    p99ms: Math.round((latencies[Math.floor(latencies.length * 0.99)] ?? 0) * 10) / 10,
  };
  out(`sent ${total}, applied ${applied} (each once and in order: ${wrong === 0 ? 'yes' : `NO, ${wrong} actors differ`}), ${summary.perSecond} msg/s, p50 ${summary.p50ms} ms, p99 ${summary.p99ms} ms, errors ${errors}`, summary);
  if (!summary.ok) process.exit(1);
}

async function main(): Promise<void> {
  let config: AxonConfig;
  try {
    config = loadConfig();
  } catch (e) {
    if (e instanceof ConfigError) fail(e.message);
    throw e;
  }
  switch (command) {
    case 'up':
      return up(config);
    case 'status':
      return status(config);
    case 'move-shard':
      return moveShard(config);
    case 'rebalance':
      return doRebalance(config);
    case 'drain':
      return doDrain(config);
    case 'restart':
      return restart(config);
    case 'down':
      return down(config);
    case 'load':
      return load(config);
    default:
      fail(`unknown command ${JSON.stringify(command ?? '')}; use up, status, move-shard, rebalance, drain, restart, down or load`);
  }
}

main().then(
  () => process.exit(0),
  (e) => fail(e instanceof Error ? e.message : String(e)),
);
