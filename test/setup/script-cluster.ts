/**
 * A cluster run by the operator's scripts (`scripts/cluster … --json`) in a data dir of its own,
 * on ports of its own: the set-up of the end-to-end tests that kill, stop or restart its processes
 * (worker kill -9, SIGSTOP, front restarts). Client API calls go over real HTTP to its front.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'vitest';
import { freePort } from './free-port';

const run = promisify(execFile);
const root = join(import.meta.dirname, '../..');

/** JSON answers of the server and the scripts, read field by field in the tests. */
export type Json = Record<string, any>;

export interface ScriptClusterOptions {
  /** Names the temp data dir (axon-<name>-…). */
  name: string;
  /** The loopback address its front binds (AXON_BIND_HOST; default 127.0.0.1), for tests that give servers addresses of their own. */
  host?: string;
  /** Room and user shards (default 16). */
  shards?: number;
  /** More AXON_* settings; they win over the defaults. */
  env?: Record<string, string>;
  /** How long one script call may take (default 240 s: `up` builds and waits for health). */
  scriptTimeoutMs?: number;
  /** How long a client API call may take by default (60 s). */
  callTimeoutMs?: number;
}

export class ScriptCluster {
  readonly base: string;
  readonly env: Record<string, string>;

  private constructor(
    readonly dataDir: string,
    readonly httpPort: number,
    readonly redisPort: number,
    env: Record<string, string>,
    private readonly scriptTimeoutMs: number,
    private readonly callTimeoutMs: number,
    host: string,
  ) {
    this.base = `http://${host}:${httpPort}`;
    this.env = env;
  }

  /** The federation listener's port (AXON_FEDERATION_PORT: one of its own unless the options' env names one). */
  get federationPort(): number {
    return Number(this.env.AXON_FEDERATION_PORT);
  }

  /** Data dir and ports, nothing started yet (see `up`). */
  static async create(opts: ScriptClusterOptions): Promise<ScriptCluster> {
    const dataDir = mkdtempSync(join(tmpdir(), `axon-${opts.name}-`));
    const host = opts.host ?? '127.0.0.1';
    const httpPort = await freePort(host);
    const redisPort = await freePort();
    const shards = String(opts.shards ?? 16);
    const env = {
      ...(process.env as Record<string, string>),
      AXON_DATA_DIR: dataDir, AXON_BIND_HOST: host, AXON_PORT: String(httpPort), AXON_PUBLIC_BASE_URL: `http://${host}:${httpPort}`,
      // The federation listener too on a port of its own: two clusters at once must not both want 8448.
      AXON_FEDERATION_PORT: String(opts.env?.AXON_FEDERATION_PORT ?? (await freePort(host))), AXON_REDIS_MANAGED_PORT: String(redisPort),
      AXON_ROOM_SHARDS: shards, AXON_USER_SHARDS: shards, AXON_LOG_LEVEL: 'info', AXON_RATE_LIMIT_ENABLED: 'false',
      ...opts.env,
    };
    return new ScriptCluster(dataDir, httpPort, Number(env.AXON_REDIS_MANAGED_PORT), env, opts.scriptTimeoutMs ?? 240_000, opts.callTimeoutMs ?? 60_000, host);
  }

  /** `scripts/cluster <args> --json`, its answer parsed. */
  async script(...args: string[]): Promise<Json> {
    const { stdout } = await run('bash', ['scripts/cluster', ...args, '--json'], { cwd: root, env: this.env, timeout: this.scriptTimeoutMs }).catch((e: Error & { stdout?: string; stderr?: string }) => {
      // The scripts answer a failure on stdout (--json) and the processes write their own logs:
      // both go into the error, so a failure in a loaded CI run says why without a rerun.
      e.message = `${e.message.split('\n')[0]}\nstdout: ${e.stdout?.trim() || '(empty)'}\nstderr: ${e.stderr?.trim() || '(empty)'}\n${this.logTails()}`;
      throw e;
    });
    return JSON.parse(stdout) as Json;
  }

  /** The last lines of each process's log and of the managed Redis's log. */
  logTails(lines = 15): string {
    const files = [join(this.dataDir, 'redis', 'redis.log')];
    const logs = join(this.dataDir, 'logs');
    if (existsSync(logs)) files.push(...readdirSync(logs).map((f) => join(logs, f)));
    return files
      .filter((f) => existsSync(f))
      .map((f) => `--- ${f} (last ${lines} lines)\n${readFileSync(f, 'utf8').trimEnd().split('\n').slice(-lines).join('\n')}`)
      .join('\n');
  }

  /** A script call that must fail: its exit code and its JSON answer. */
  async scriptFails(...args: string[]): Promise<{ code: number | undefined; answer: Json }> {
    const failed = await this.script(...args).then(
      () => null,
      (e: { code?: number; stdout?: string }) => e,
    );
    expect(failed, `cluster ${args.join(' ')} succeeded`).not.toBeNull();
    return { code: failed!.code, answer: JSON.parse(failed!.stdout!) as Json };
  }

  /** `cluster up` with that many workers and fronts; fails the test unless it says ok. */
  async up(workers: number, fronts = 1): Promise<Json> {
    const up = await this.script('up', '--workers', String(workers), '--fronts', String(fronts));
    expect(up.ok, JSON.stringify(up)).toBe(true);
    return up;
  }

  /** The pid the scripts recorded for a process (w1, w2, f1, …). */
  pid(name: string): number {
    return Number(readFileSync(join(this.dataDir, 'run', `${name}.pid`), 'utf8'));
  }

  /** `cluster down` (errors ignored: a test may have killed what it stops), then the data dir goes. */
  async destroy(): Promise<void> {
    await this.script('down').catch(() => undefined);
    rmSync(this.dataDir, { recursive: true, force: true });
  }

  /** A client API call; `path` is below /_matrix/client/v3 unless it starts with /_matrix. */
  async call(token: string | null, method: string, path: string, body?: unknown, timeoutMs = this.callTimeoutMs): Promise<{ status: number; body: Json }> {
    const url = path.startsWith('/_matrix') ? `${this.base}${path}` : `${this.base}/_matrix/client/v3${path}`;
    const r = await fetch(url, {
      method,
      headers: { ...(token ? { Authorization: `Bearer ${token}` } : {}), 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
    return { status: r.status, body: (await r.json()) as Json };
  }

  /** A call that must answer 200: its body. */
  async must(token: string | null, method: string, path: string, body?: unknown): Promise<Json> {
    const r = await this.call(token, method, path, body);
    expect(r.status, `${method} ${path}: ${JSON.stringify(r.body)}`).toBe(200);
    return r.body;
  }

  /**
   * A call retried until it answers 200 (connection errors and error answers alike) while
   * processes are down: the same request each time, so a send keeps its transaction id and the
   * room answers it once.
   */
  async persist(token: string, method: string, path: string, body?: unknown, withinMs = 200_000): Promise<Json> {
    const until = Date.now() + withinMs;
    for (;;) {
      const r = await this.call(token, method, path, body).catch(() => null);
      if (r?.status === 200) return r.body;
      if (Date.now() > until) throw new Error(`${method} ${path}: ${JSON.stringify(r?.body)}`);
      await new Promise((res) => setTimeout(res, 300));
    }
  }

  /** A new user through /register with the dummy stage (password pw-<username>). */
  async register(username: string): Promise<{ userId: string; token: string }> {
    const r = await this.must(null, 'POST', '/register', { username, password: `pw-${username}`, auth: { type: 'm.login.dummy' } });
    return { userId: r.user_id, token: r.access_token };
  }
}
