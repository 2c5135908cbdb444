/**
 * A throwaway Axon for benchmarks: a managed redis-server in a temp dir (AOF on, `appendfsync
 * always`, as production), N worker processes and M front processes (`node
 * dist/{worker,front}-main.js`, the built JavaScript as in production: scripts/build runs first
 * when dist/ is missing or stale; the fronts share the HTTP port), loopback only, rate limits off,
 * open registration. stop() ends every process it started and removes the temp dir.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nodeFlagsFor } from '../../src/runtime/cluster-settings';
import { startManagedRedis, type ManagedRedis } from '../../src/runtime/managed-redis';
import { loadOrCreateSigningKeys } from '../../src/runtime/signing-key-store';
import { freePort, sleep } from './bench-util';

const root = join(import.meta.dirname, '..', '..');

/**
 * Build `codeRoot`'s dist/ if it is missing or stale (cheap when it is not) and say how to start
 * its processes: `node dist/<entry>.js`, or, for a checkout from before the build step,
 * `node --import tsx src/<entry>.ts`.
 */
function entryArgs(codeRoot: string): (entry: 'front-main' | 'worker-main') => string[] {
  if (!existsSync(join(codeRoot, 'scripts', 'build'))) return (entry) => ['--import', 'tsx', `src/${entry}.ts`];
  execFileSync('bash', [join(codeRoot, 'scripts', 'build'), '--if-stale'], { stdio: ['ignore', 'inherit', 'inherit'] });
  return (entry) => [`dist/${entry}.js`];
}

export interface AxonBenchOptions {
  workers: number;
  fronts: number;
  /** Virtual shards per family. */
  shards: number;
  logLevel?: string;
  /** The workers' log level, when it should differ from `logLevel` (e.g. their lease lines at info); their log then goes to this process's stdout. */
  workerLogLevel?: string;
  /** Where the processes' stderr goes (default: inherited). */
  stderr?: 'inherit' | 'ignore';
  /** Loopback IP to bind (default 127.0.0.1; any of 127/8 on Linux). */
  host?: string;
  /** Server name (default localhost). */
  serverName?: string;
  /** More AXON_* settings (e.g. the federation listener's). */
  env?: Record<string, string>;
  /**
   * Load scripts/lib/cpu-profile-preload.ts into every worker and front: `toggleCpuProfiles()`
   * then starts and stops V8's CPU profiler in all of them, writing .cpuprofile files here.
   */
  cpuProfileDir?: string;
  /**
   * Keep the data (Redis's AOF, the signing key) in this directory instead of a temp dir, and
   * leave it there on stop(): a later start with the same directory comes back on the same data
   * (scripts/bench-search.ts `--keep` / `--reuse`).
   */
  dataDir?: string;
}

export interface AxonBench {
  url: string;
  redisUrl: string;
  redisPid: number;
  keyPrefix: string;
  workerPids: number[];
  frontPids: number[];
  /** Every process of this Axon: workers, fronts and its redis-server. */
  pids(): number[];
  /** Start (first call) or stop and write (next call) the CPU profiles (needs `cpuProfileDir`). */
  toggleCpuProfiles(): void;
  /**
   * One more front process on its own port, run from the checkout at `codeRoot` (default: this
   * one): A/B figures of two versions of the front against the same cluster and the same data.
   */
  extraFront(codeRoot?: string): Promise<{ url: string; pid: number; stop: () => Promise<void> }>;
  stop(): Promise<void>;
}

export async function startAxonBench(opts: AxonBenchOptions): Promise<AxonBench> {
  const children: ChildProcess[] = [];
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'axon-bench-'));
  if (opts.dataDir) mkdirSync(opts.dataDir, { recursive: true });
  let redis: ManagedRedis | null = null;
  const stop = async () => {
    for (const c of children) if (c.exitCode === null && c.pid) c.kill('SIGTERM');
    const deadline = Date.now() + 10_000;
    while (children.some((c) => c.exitCode === null && c.signalCode === null) && Date.now() < deadline) await sleep(50);
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    if (redis?.started) await redis.stop();
    if (!opts.dataDir) rmSync(dataDir, { recursive: true, force: true });
  };
  try {
    // A kept data dir may hold GBs of AOF to replay (minutes on a loaded machine): startManagedRedis
    // waits as long as Redis says it is loading.
    redis = await startManagedRedis({ dir: join(dataDir, 'redis'), port: await freePort() });
    const host = opts.host ?? '127.0.0.1';
    const port = await freePort(host);
    const signingKeyPath = join(dataDir, 'localhost.signing.key');
    loadOrCreateSigningKeys(signingKeyPath); // once, before the processes read it (kept when the data dir is)
    const keyPrefix = 'bench:';
    const env: Record<string, string> = {
      AXON_REDIS_MODE: 'url', AXON_REDIS_URL: redis.url, AXON_REDIS_KEY_PREFIX: keyPrefix, AXON_DATA_DIR: dataDir, AXON_SIGNING_KEY_PATH: signingKeyPath,
      AXON_SERVER_NAME: opts.serverName ?? 'localhost', AXON_BIND_HOST: host, AXON_PORT: String(port), AXON_PUBLIC_BASE_URL: `http://${host}:${port}`,
      AXON_ROOM_SHARDS: String(opts.shards), AXON_USER_SHARDS: String(opts.shards), AXON_LOG_LEVEL: opts.logLevel ?? 'warn', AXON_RATE_LIMIT_ENABLED: 'false', AXON_REGISTRATION_ENABLED: 'true',
      ...opts.env,
    };
    // BENCH_FRONT_NODE_ARGS / BENCH_WORKER_NODE_ARGS: extra node flags, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof".
    // After the cluster scripts' flags (nodeFlagsFor; a later flag wins).
    const nodeArgs = (entry: string) => {
      const role = entry.includes('front') ? 'front' : 'worker';
      return [...nodeFlagsFor(role), ...((role === 'front' ? process.env.BENCH_FRONT_NODE_ARGS : process.env.BENCH_WORKER_NODE_ARGS) ?? '').split(' ').filter(Boolean)];
    };
    const built = new Map<string, ReturnType<typeof entryArgs>>();
    const spawnAxon = (entry: 'front-main' | 'worker-main', id: string, cwd = root, more: Record<string, string> = {}) => {
      if (!built.has(cwd)) built.set(cwd, entryArgs(cwd));
      const profileArgs = opts.cpuProfileDir ? ['--import', join(root, 'dist', 'cpu-profile-preload.js')] : [];
      const profileEnv = opts.cpuProfileDir ? { AXON_CPU_PROFILE_DIR: opts.cpuProfileDir, AXON_CPU_PROFILE_LABEL: `${entry.includes('front') ? 'front' : 'worker'}-${id}` } : {};
      const child = spawn(process.execPath, [...nodeArgs(entry), ...profileArgs, ...built.get(cwd)!(entry), '--id', id], { cwd, env: { ...process.env, ...env, ...profileEnv, ...more }, stdio: ['ignore', more.AXON_LOG_LEVEL ? 'inherit' : 'ignore', opts.stderr ?? 'inherit'] });
      children.push(child);
      return child;
    };
    let extra = 0;
    const extraFront = async (codeRoot = root) => {
      const p = await freePort(host);
      const child = spawnAxon('front-main', `bench-x${++extra}`, codeRoot, { AXON_PORT: String(p), AXON_PUBLIC_BASE_URL: `http://${host}:${p}` });
      const url = `http://${host}:${p}`;
      for (const deadline = Date.now() + 60_000; Date.now() < deadline; await sleep(200)) {
        if (child.exitCode !== null) throw new Error(`front from ${codeRoot} exited with ${child.exitCode}`);
        const up = await fetch(`${url}/_matrix/client/versions`).then((r) => r.ok, () => false);
        if (up) break;
      }
      const stopFront = async () => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        child.kill('SIGTERM');
        for (const deadline = Date.now() + 10_000; child.exitCode === null && child.signalCode === null && Date.now() < deadline; ) await sleep(50);
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      };
      return { url, pid: child.pid!, stop: stopFront };
    };
    const workers = Array.from({ length: opts.workers }, (_x, i) => spawnAxon('worker-main', `bench-w${i + 1}`, root, opts.workerLogLevel ? { AXON_LOG_LEVEL: opts.workerLogLevel } : {}));
    const fronts = Array.from({ length: opts.fronts }, (_x, i) => spawnAxon('front-main', `bench-f${i + 1}`));
    const redisPid = redis.pid;
    return {
      url: `http://${host}:${port}`,
      redisUrl: redis.url,
      redisPid,
      keyPrefix,
      workerPids: workers.map((c) => c.pid!),
      frontPids: fronts.map((c) => c.pid!),
      pids: () => [...children.filter((c) => c.exitCode === null && c.signalCode === null).map((c) => c.pid!), redisPid],
      toggleCpuProfiles: () => {
        if (!opts.cpuProfileDir) throw new Error('startAxonBench: no cpuProfileDir');
        for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGUSR2');
      },
      extraFront,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
