/**
 * The managed local Redis: `npm start` and `npm run cluster -- up` run their own redis-server
 * with AOF on and `appendfsync always`, so a write that was acknowledged survives a crash of
 * Redis itself (DESIGN rule 4: durable before acknowledged). Loopback only.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';

export interface ManagedRedisOptions {
  dir: string;
  port: number;
  bind?: string;
  /** Extra `--flag value` pairs (tests use this for cluster mode). */
  extraArgs?: string[];
  /** How long to wait for the first PING answer (default 20 s; replaying a large AOF takes longer). */
  startTimeoutMs?: number;
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

/** Send PING over a raw socket; true on +PONG. */
export function redisPing(port: number, host = '127.0.0.1', timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = createConnection({ port, host });
    let buf = '';
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.once('connect', () => sock.write('PING\r\n'));
    sock.on('data', (d) => {
      buf += d.toString();
      if (buf.includes('\r\n')) done(buf.startsWith('+PONG'));
    });
    sock.once('error', () => done(false));
  });
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
  if (existingPid && alive(existingPid) && (await redisPing(opts.port, host))) {
    return handle(opts.port, host, existingPid, false);
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
  const startTimeoutMs = opts.startTimeoutMs ?? 20_000;
  const deadline = Date.now() + startTimeoutMs;
  while (Date.now() < deadline) {
    if (exited !== null) {
      const log = join(opts.dir, 'redis.log');
      const tail = existsSync(log) ? readFileSync(log, 'utf8').split('\n').slice(-5).join('\n') : '';
      throw new Error(`redis-server exited with code ${exited} at start:\n${tail}`);
    }
    // AOF replay of a large file can take a while: redis answers -LOADING until done.
    if (await redisPing(opts.port, host)) return handle(opts.port, host, child.pid!, true);
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill('SIGKILL');
  throw new Error(`redis-server did not answer on port ${opts.port} within ${Math.round(startTimeoutMs / 1000)} s`);
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
