/**
 * The managed local Redis: `npm start` and `npm run cluster -- up` run their own redis-server
 * with AOF on and `appendfsync always`, so a write that was acknowledged survives a crash of
 * Redis itself (DESIGN rule 4: durable before acknowledged). Loopback only.
 */
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, rmSync, statSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';

export interface ManagedRedisOptions {
  dir: string;
  port: number;
  bind?: string;
  /** Extra `--flag value` pairs (tests use this for cluster mode). */
  extraArgs?: string[];
  /**
   * How long to wait for the first PING answer while Redis is not loading its data (default 20 s).
   * While it loads (its log says it started and is not ready yet; it answers -LOADING or, between
   * two slices of a large AOF, nothing at all) the wait goes on as long as the process lives: a
   * large AOF takes as long as it takes, and killing it half-way would only start the replay over.
   */
  startTimeoutMs?: number;
  /** Told every ~10 s while Redis loads its data (seconds waited so far). */
  onLoading?: (seconds: number) => void;
}

export interface ManagedRedis {
  url: string;
  port: number;
  pid: number;
  /** True when this call started it; false when one was already running on that port. */
  started: boolean;
  stop(): Promise<void>;
}

export function redisServerPath(): string | null {
  const r = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' });
  const path = r.stdout.trim();
  return r.status === 0 && path ? path : null;
}

export function redisArgs(opts: ManagedRedisOptions): string[] {
  return [
    '--port', String(opts.port),
    '--bind', opts.bind ?? '127.0.0.1',
    '--dir', opts.dir,
    '--appendonly', 'yes',
    '--appendfsync', 'always',
    '--appendfilename', 'appendonly.aof',
    '--save', '',
    '--daemonize', 'no',
    '--pidfile', join(opts.dir, 'redis.pid'),
    '--logfile', join(opts.dir, 'redis.log'),
    '--protected-mode', 'yes',
    ...(opts.extraArgs ?? []),
  ];
}

/** Resolves true when something accepts TCP connections on the port. */
export function portOpen(port: number, host = '127.0.0.1', timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = createConnection({ port, host });
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

/**
 * PING over a raw socket: `pong`; `loading` when Redis answers -LOADING (it replays its AOF);
 * `silent` when the port takes the connection but nothing answers in time (a Redis deep in a large
 * AOF serves clients only between slices of it, or one that is stalled); `closed` when nothing
 * listens.
 */
export function redisProbe(port: number, host = '127.0.0.1', timeoutMs = 1000): Promise<'pong' | 'loading' | 'silent' | 'closed'> {
  return new Promise((resolve) => {
    const sock = createConnection({ port, host });
    let buf = '';
    let connected = false;
    const done = (r: 'pong' | 'loading' | 'silent' | 'closed') => {
      sock.destroy();
      resolve(r);
    };
    sock.setTimeout(timeoutMs, () => done(connected ? 'silent' : 'closed'));
    sock.once('connect', () => {
      connected = true;
      sock.write('PING\r\n');
    });
    sock.on('data', (d) => {
      buf += d.toString();
      if (buf.includes('\r\n')) done(buf.startsWith('+PONG') ? 'pong' : buf.startsWith('-LOADING') ? 'loading' : 'silent');
    });
    sock.once('error', () => done(connected ? 'silent' : 'closed'));
  });
}

/** Send PING over a raw socket; true on +PONG. */
export async function redisPing(port: number, host = '127.0.0.1', timeoutMs = 1000): Promise<boolean> {
  return (await redisProbe(port, host, timeoutMs)) === 'pong';
}

/**
 * Whether the managed Redis's log says its last start is still loading data: a start line after
 * which no "Ready to accept connections" follows. Only the log's tail is read.
 */
export function logSaysLoading(dir: string): boolean {
  const log = join(dir, 'redis.log');
  if (!existsSync(log)) return false;
  const size = statSync(log).size;
  const fd = openSync(log, 'r');
  const buf = Buffer.alloc(Math.min(size, 64 * 1024));
  try {
    readSync(fd, buf, 0, buf.length, size - buf.length);
  } finally {
    closeSync(fd);
  }
  const text = buf.toString('utf8');
  const started = Math.max(text.lastIndexOf('Server initialized'), text.lastIndexOf('Redis is starting'));
  return started >= 0 && text.indexOf('Ready to accept connections', started) < 0;
}

function readPid(dir: string): number | null {
  const f = join(dir, 'redis.pid');
  if (!existsSync(f)) return null;
  const pid = Number(readFileSync(f, 'utf8').trim());
  return Number.isInteger(pid) && pid > 0 ? pid : null;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Start redis-server (or adopt one already running on that port with our data dir) and wait
 * until it answers PING. The process is detached, so it outlives a crashed Axon process; the
 * caller decides whether to stop it.
 */
export async function startManagedRedis(opts: ManagedRedisOptions): Promise<ManagedRedis> {
  const host = opts.bind ?? '127.0.0.1';
  mkdirSync(opts.dir, { recursive: true });
  const existingPid = readPid(opts.dir);
  if (existingPid && alive(existingPid)) {
    // Ours (its pid file in our data dir) and running: adopt it, once it has loaded its data —
    // a Redis replaying its AOF takes the connection and answers -LOADING or nothing, which is
    // not another process on the port.
    const probe = await redisProbe(opts.port, host);
    if (probe === 'pong') return handle(opts.port, host, existingPid, false);
    if (probe !== 'closed') {
      await waitReady(opts, host, existingPid, () => null);
      return handle(opts.port, host, existingPid, false);
    }
  }
  if (await portOpen(opts.port, host)) {
    throw new Error(`Port ${opts.port} is taken by another process; set AXON_REDIS_MANAGED_PORT to a free port`);
  }
  const bin = redisServerPath();
  if (!bin) throw new Error('redis-server is not installed: run `apt-get install -y redis-server` (as root) and start again');
  const child = spawn(bin, redisArgs(opts), { detached: true, stdio: 'ignore' });
  child.unref();
  let exited: number | null = null;
  child.once('exit', (code) => {
    exited = code ?? -1;
  });
  try {
    await waitReady(opts, host, child.pid!, () => exited);
  } catch (e) {
    if (exited === null) child.kill('SIGKILL');
    throw e;
  }
  return handle(opts.port, host, child.pid!, true);
}

/**
 * Until the Redis of that pid answers PING: at most `startTimeoutMs` while it is not loading, as
 * long as it lives while it loads (see ManagedRedisOptions.startTimeoutMs).
 */
async function waitReady(opts: ManagedRedisOptions, host: string, pid: number, exitCode: () => number | null): Promise<void> {
  const startTimeoutMs = opts.startTimeoutMs ?? 20_000;
  const began = Date.now();
  let deadline = began + startTimeoutMs;
  let toldAt = began;
  for (;;) {
    const code = exitCode();
    if (code !== null || !alive(pid)) {
      const log = join(opts.dir, 'redis.log');
      const tail = existsSync(log) ? readFileSync(log, 'utf8').split('\n').slice(-5).join('\n') : '';
      throw new Error(`redis-server exited${code !== null ? ` with code ${code}` : ''} at start:\n${tail}`);
    }
    const probe = await redisProbe(opts.port, host);
    if (probe === 'pong') return;
    if (probe === 'loading' || (probe === 'silent' && logSaysLoading(opts.dir))) {
      deadline = Date.now() + startTimeoutMs;
      if (Date.now() - toldAt >= 10_000) {
        toldAt = Date.now();
        opts.onLoading?.(Math.round((toldAt - began) / 1000));
      }
    }
    if (Date.now() > deadline) throw new Error(`redis-server did not answer on port ${opts.port} within ${Math.round(startTimeoutMs / 1000)} s`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function handle(port: number, host: string, pid: number, started: boolean): ManagedRedis {
  return {
    url: `redis://${host}:${port}`,
    port,
    pid,
    started,
    async stop() {
      if (!alive(pid)) return;
      process.kill(pid, 'SIGTERM'); // redis flushes the AOF on SIGTERM
      const deadline = Date.now() + 10_000;
      while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      if (alive(pid)) process.kill(pid, 'SIGKILL');
    },
  };
}

/** Remove a managed Redis's data (tests only). */
export function removeRedisData(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}
