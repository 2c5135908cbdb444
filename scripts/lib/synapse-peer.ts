/**
 * A real Synapse as a federation peer for tests and bench-federation: `startSynapse({ serverName: '127.0.0.11:41448', ca })`
 * runs one from the venv that scripts/lib/ensure.sh's `ensure_synapse` installs, in a temp dir, with
 * - its server name an IP literal with a port (no .well-known, no SRV, no DNS), its federation
 *   listener on exactly that IP and port over TLS, with a leaf certificate for the IP from the test CA;
 * - a client listener over plain HTTP on a free port of the same loopback IP (`baseUrl`);
 * - outbound federation that trusts the test CA (`federation_custom_ca_list`, certificates verified)
 *   and may reach loopback (`federation_ip_range_blacklist: []`: for an IP-literal destination
 *   Synapse consults only that list), keys fetched from the origin itself (`trusted_key_servers: []`);
 * - SQLite, every rc_* rate limit out of reach, no open registration: users come through the
 *   shared-secret admin API (`registerUser`).
 * Give each server its own loopback IP (127.0.0.11, 127.0.0.12, ...; Linux routes all of 127/8 to lo),
 * so each has its own certificate, as servers on the internet do.
 *
 * The process runs in its own process group and is told to die with the test process (Linux
 * PR_SET_PDEATHSIG), and `stop()` ends the group (SIGTERM, then SIGKILL); a process-exit hook kills
 * any server a test forgot. The config is written from here as JSON (YAML's subset), with absolute paths.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatSigningKeyFile, signingKeyFromSeed } from '../../src/protocol/crypto';
import { freePort } from './bench-util';
import type { Json } from './signing-peer';
import { httpsGet, type TestCa } from './test-ca';

/**
 * One request to a server with a session's token (none: unauthenticated): `path` under
 * `/_matrix/client/v3`, or whole when it starts with `/_` (`/_matrix/...`, `/_synapse/...`); the body is sent as JSON.
 */
export async function callServer(server: { baseUrl: string }, s: { token: string } | null, method: string, path: string, body?: unknown): Promise<{ status: number; body: Json; headers: Headers }> {
  const url = path.startsWith('/_') ? `${server.baseUrl}${path}` : `${server.baseUrl}/_matrix/client/v3${path}`;
  const r = await fetch(url, {
    method,
    headers: { ...(s ? { Authorization: `Bearer ${s.token}` } : {}), 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: r.status, body: (await r.json()) as Json, headers: r.headers };
}

/** Keep in step with AXON_SYNAPSE_VERSION in scripts/lib/ensure.sh. */
export const SYNAPSE_VERSION = '1.163.2';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));

/** Where ensure_synapse puts the venv: $AXON_PEERS_DIR/synapse-venv, by default <repo>/.peers/synapse-venv. */
export function synapseVenvDir(): string {
  return join(resolve(repoRoot, process.env.AXON_PEERS_DIR ?? '.peers'), 'synapse-venv');
}

export type SynapseInstallation = { ok: true; python: string; version: string } | { ok: false; reason: string };

/** Whether the pinned Synapse is installed (the marker ensure_synapse writes after a good install). */
export function synapseInstallation(): SynapseInstallation {
  const venv = synapseVenvDir();
  const python = join(venv, 'bin', 'python');
  let version = '';
  try {
    version = readFileSync(join(venv, '.axon-synapse-version'), 'utf8').trim();
  } catch {
    // not installed
  }
  if (!existsSync(python) || version !== SYNAPSE_VERSION) {
    return {
      ok: false,
      reason: `Synapse ${SYNAPSE_VERSION} is not installed in ${venv}${version ? ` (found ${version})` : ''}; install it with: bash -c '. scripts/lib/ensure.sh && ensure_synapse' (npm test does)`,
    };
  }
  return { ok: true, python, version };
}

export interface PeerSession {
  userId: string;
  deviceId: string;
  token: string;
}

export interface SynapseOptions {
  /** `IPv4:port`, e.g. `127.0.0.11:41448` (see `loopbackServerName`): the federation listener binds it. */
  serverName: string;
  /** Signs this server's certificate; trusted for its outbound federation. */
  ca: TestCa;
  /** More CA files to trust for outbound federation (e.g. another CA an Axon under test uses). */
  extraCaPaths?: string[];
  /** Python logging level of the log file: INFO (default) shows every request, WARNING only trouble. */
  logLevel?: 'DEBUG' | 'INFO' | 'WARNING';
  /** Change the config before it is written (a plain object: Synapse's homeserver.yaml keys). */
  configure?: (config: Json) => void;
  /** How long to wait for /health (default 90 s: two cores shared, several servers starting at once). */
  startTimeoutMs?: number;
}

export interface SynapsePeer {
  serverName: string;
  /** Client API over plain HTTP on loopback, e.g. `http://127.0.0.11:40123`. */
  baseUrl: string;
  /** Federation API over TLS, e.g. `https://127.0.0.11:41448` (the server name's IP and port). */
  federationUrl: string;
  /** The CA that signed this server's certificate (trust it to call `federationUrl`). */
  caPath: string;
  dir: string;
  /** Synapse's own log (INFO: one line per request) and its stdout/stderr. */
  logPath: string;
  stdoutPath: string;
  /** Of the running process (changes with `up()`). */
  readonly pid: number;
  /** Milliseconds from spawn until /health answered on both listeners. */
  startupMs: number;
  /** Registers a user through the shared-secret admin API and returns its first device's session. */
  registerUser(localpart: string, password: string, admin?: boolean): Promise<PeerSession>;
  /** A new device for an existing user (`m.login.password`). */
  login(localpart: string, password: string): Promise<PeerSession>;
  /** `/_matrix/client/v3<path>` on this server (or `<path>` whole when it starts with `/_`, e.g. `/_synapse/admin/...`). */
  call(s: { token: string } | null, method: string, path: string, body?: unknown): Promise<{ status: number; body: Json }>;
  /** The last `lines` lines of the log and of stdout/stderr, for failure messages. */
  logTail(lines?: number): string;
  /** Stops the process (SIGTERM; SIGKILL with `kill`), keeping its directory and data: `up()` starts it again. */
  down(kill?: boolean): Promise<void>;
  /** Starts a stopped server again on the same config and database; the ms until it was healthy. */
  up(): Promise<number>;
  /** Ends the process group and removes the directory (kept when AXON_KEEP_PEERS is set). */
  stop(): Promise<void>;
}

/** `127.0.0.11` → `127.0.0.11:<a port free on that IP>`. */
export async function loopbackServerName(ip: string): Promise<string> {
  return `${ip}:${await freePort(ip)}`;
}

/** Process groups of servers still running, killed if the test process exits without stopping them. */
const running = new Set<number>();
let exitHookInstalled = false;
function trackGroup(pid: number) {
  running.add(pid);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const p of running) killGroup(p, 'SIGKILL');
  });
}

function killGroup(pid: number, signal: NodeJS.Signals) {
  try {
    process.kill(-pid, signal);
  } catch {
    // already gone
  }
}

/**
 * Runs Synapse in the child after asking the kernel to SIGKILL it when its parent (the test process)
 * dies, so a crashed or killed test run leaves no server behind. Linux only; elsewhere it just execs.
 */
const LAUNCHER = `
import ctypes, os, signal, sys
try:
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
except Exception:
    pass
if os.getppid() != int(sys.argv[1]):
    sys.exit("parent already gone")
os.execv(sys.executable, [sys.executable, "-m", "synapse.app.homeserver", "-c", sys.argv[2]])
`;

const tail = (path: string, lines: number) => {
  try {
    return readFileSync(path, 'utf8').split('\n').slice(-lines - 1).join('\n');
  } catch {
    return '(none)';
  }
};

/** Every rc_* limit Synapse 1.163 reads, set far beyond what a test does. */
function rateLimitsOff(): Json {
  const off = { per_second: 1_000_000, burst_count: 1_000_000 };
  return {
    rc_message: off,
    rc_registration: off,
    rc_registration_token_validity: off,
    rc_login: { address: off, account: off, failed_attempts: off },
    rc_admin_redaction: off,
    rc_joins: { local: off, remote: off },
    rc_joins_per_room: off,
    rc_key_requests: off,
    rc_3pid_validation: off,
    rc_invites: { per_room: off, per_user: off, per_issuer: off },
    rc_third_party_invite: off,
    rc_media_create: off,
    rc_presence: { per_user: off },
    rc_delayed_event_mgmt: off,
    rc_room_creation: off,
    rc_reports: off,
    rc_user_directory: off,
    rc_profile: off,
    rc_federation: { window_size: 1000, sleep_limit: 1_000_000, sleep_delay: 0, reject_limit: 1_000_000, concurrent: 1_000_000 },
    remote_media_download_per_second: '1G',
    remote_media_download_burst_count: '10G',
  };
}

function parseServerName(serverName: string): { ip: string; port: number } {
  const m = /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}):(\d{1,5})$/.exec(serverName);
  if (!m) throw new Error(`startSynapse: serverName must be a loopback IPv4 literal with a port, like 127.0.0.11:41448 (got ${serverName})`);
  return { ip: m[1]!, port: Number(m[2]) };
}

export async function startSynapse(opts: SynapseOptions): Promise<SynapsePeer> {
  const install = synapseInstallation();
  if (!install.ok) throw new Error(install.reason);
  const { ip, port } = parseServerName(opts.serverName);
  const dir = mkdtempSync(join(tmpdir(), `axon-synapse-${ip}-`));
  const clientPort = await freePort(ip);
  const leaf = opts.ca.leaf(ip);
  const logPath = join(dir, 'homeserver.log');
  const stdoutPath = join(dir, 'stdout.log');
  const configPath = join(dir, 'homeserver.yaml');
  const sharedSecret = randomBytes(24).toString('hex');

  // Synapse's signing key file format, written by our own crypto module (no --generate-keys run).
  const signingKey = signingKeyFromSeed(`ed25519:a_${randomBytes(3).toString('hex')}`, randomBytes(32));
  writeFileSync(join(dir, 'signing.key'), formatSigningKeyFile(signingKey));
  mkdirSync(join(dir, 'media_store'));

  writeFileSync(
    join(dir, 'log.config.yaml'),
    JSON.stringify({
      version: 1,
      formatters: { line: { format: '%(asctime)s %(levelname)s %(name)s %(request)s %(message)s' } },
      filters: { context: { '()': 'synapse.logging.context.LoggingContextFilter' } },
      handlers: { file: { class: 'logging.FileHandler', filename: logPath, formatter: 'line', filters: ['context'], encoding: 'utf8' } },
      loggers: { 'synapse.storage.SQL': { level: 'WARNING' }, twisted: { level: 'WARNING' } },
      root: { level: opts.logLevel ?? 'INFO', handlers: ['file'] },
      disable_existing_loggers: false,
    }),
  );

  const config: Json = {
    server_name: opts.serverName,
    public_baseurl: `http://${ip}:${clientPort}/`,
    pid_file: join(dir, 'homeserver.pid'),
    listeners: [
      // Federation (and /_matrix/key/v2/server) over TLS on the server name's own IP and port.
      { port, bind_addresses: [ip], type: 'http', tls: true, x_forwarded: false, resources: [{ names: ['federation'], compress: false }] },
      // Client API, admin API included, over plain HTTP.
      { port: clientPort, bind_addresses: [ip], type: 'http', tls: false, x_forwarded: false, resources: [{ names: ['client'], compress: false }] },
    ],
    database: { name: 'sqlite3', args: { database: join(dir, 'homeserver.db') } },
    log_config: join(dir, 'log.config.yaml'),
    media_store_path: join(dir, 'media_store'),
    signing_key_path: join(dir, 'signing.key'),
    report_stats: false,
    registration_shared_secret: sharedSecret,
    macaroon_secret_key: randomBytes(24).toString('hex'),
    form_secret: randomBytes(24).toString('hex'),
    enable_registration: false,
    // Test passwords need no protection; the lowest cost keeps registration and login fast.
    bcrypt_rounds: 4,
    tls_certificate_path: leaf.certPath,
    tls_private_key_path: leaf.keyPath,
    federation_verify_certificates: true,
    federation_custom_ca_list: [opts.ca.caPath, ...(opts.extraCaPaths ?? [])],
    federation_ip_range_blacklist: [],
    ip_range_whitelist: ['127.0.0.0/8', '::1/128'],
    trusted_key_servers: [],
    suppress_key_server_warning: true,
    ...rateLimitsOff(),
  };
  opts.configure?.(config);
  writeFileSync(configPath, JSON.stringify(config, null, 2));

  const baseUrl = `http://${ip}:${clientPort}`;
  const federationUrl = `https://${ip}:${port}`;
  const logTail = (lines = 40) => `--- ${logPath}\n${tail(logPath, lines)}\n--- ${stdoutPath}\n${tail(stdoutPath, lines)}`;

  let pid = 0;
  let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  let exitPromise: Promise<void> = Promise.resolve();
  // Read through a function: the exit handler sets it behind the type checker's back.
  const exitedNow = () => exited;

  /** Ends the running process (group): SIGTERM, SIGKILL after 10 s (or at once with `kill`). */
  const halt = async (kill = false) => {
    if (exited) return;
    killGroup(pid, kill ? 'SIGKILL' : 'SIGTERM');
    const timer = setTimeout(() => killGroup(pid, 'SIGKILL'), 10_000);
    await exitPromise;
    clearTimeout(timer);
    // Anything left in the group (Synapse forks nothing in this setup) goes with it.
    killGroup(pid, 'SIGKILL');
    running.delete(pid);
  };

  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      await halt();
      running.delete(pid);
      if (!process.env.AXON_KEEP_PEERS) rmSync(dir, { recursive: true, force: true });
    })());

  /** Spawns Synapse on the config (and data) in `dir` and waits until it is healthy; the ms it took. */
  const launch = async (): Promise<number> => {
    const out = openSync(stdoutPath, 'a');
    const started = Date.now();
    let child: ChildProcess;
    try {
      child = spawn(install.python, ['-c', LAUNCHER, String(process.pid), configPath], {
        cwd: dir,
        detached: true, // its own process group: stop() kills Synapse and anything it forked
        stdio: ['ignore', out, out],
        env: { ...process.env, PYTHONUNBUFFERED: '1' },
      });
    } finally {
      closeSync(out);
    }
    const childPid = child.pid;
    if (childPid === undefined) throw new Error(`startSynapse ${opts.serverName}: spawn failed`);
    pid = childPid;
    exited = undefined;
    trackGroup(childPid);
    exitPromise = new Promise<void>((res) => {
      child.once('exit', (code, signal) => {
        exited = { code, signal };
        running.delete(childPid);
        res();
      });
    });

    // Ready when both listeners answer /health (the federation one over TLS, trusting only the test CA).
    const deadline = started + (opts.startTimeoutMs ?? 90_000);
    for (;;) {
      const gone = exitedNow();
      if (gone) {
        const why = `startSynapse ${opts.serverName}: Synapse exited (${gone.code ?? gone.signal}) before it was healthy\n${logTail()}`;
        await stop();
        throw new Error(why);
      }
      const healthy = await Promise.all([
        fetch(`${baseUrl}/health`).then((r) => r.ok, () => false),
        httpsGet(`${federationUrl}/health`, { caPath: opts.ca.caPath, timeoutMs: 2000 }).then((r) => r.status === 200, () => false),
      ]);
      if (healthy.every(Boolean)) break;
      if (Date.now() > deadline) {
        const why = `startSynapse ${opts.serverName}: not healthy after ${opts.startTimeoutMs ?? 90_000} ms (pid ${pid}, dir ${dir})\n${logTail()}`;
        await stop();
        throw new Error(why);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    return Date.now() - started;
  };

  const startupMs = await launch();

  const call = (s: { token: string } | null, method: string, path: string, body?: unknown) =>
    callServer({ baseUrl }, s, method, path, body).then(({ status, body: json }) => ({ status, body: json }));

  const expectOk = (what: string, r: { status: number; body: Json }) => {
    if (r.status !== 200) throw new Error(`${opts.serverName} ${what}: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  };

  return {
    serverName: opts.serverName,
    baseUrl,
    federationUrl,
    caPath: opts.ca.caPath,
    dir,
    logPath,
    stdoutPath,
    get pid() {
      return pid;
    },
    startupMs,
    async registerUser(localpart, password, admin = false) {
      // Shared-secret registration: a fresh nonce, then an HMAC-SHA1 keyed by the secret over
      // nonce, user, password and admin flag, NUL-separated.
      const { nonce } = expectOk('register nonce', await call(null, 'GET', '/_synapse/admin/v1/register'));
      const mac = createHmac('sha1', sharedSecret)
        .update([nonce, localpart, password, admin ? 'admin' : 'notadmin'].join('\0'))
        .digest('hex');
      const body = expectOk(`register ${localpart}`, await call(null, 'POST', '/_synapse/admin/v1/register', { nonce, username: localpart, password, admin, mac }));
      return { userId: body.user_id, deviceId: body.device_id, token: body.access_token };
    },
    async login(localpart, password) {
      const body = expectOk(`login ${localpart}`, await call(null, 'POST', '/login', { type: 'm.login.password', identifier: { type: 'm.id.user', user: localpart }, password }));
      return { userId: body.user_id, deviceId: body.device_id, token: body.access_token };
    },
    call,
    logTail,
    async down(kill = false) {
      await halt(kill);
    },
    async up() {
      if (!exited) throw new Error(`${opts.serverName}: still running`);
      return launch();
    },
    stop,
  };
}
