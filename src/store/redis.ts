/**
 * Redis connections (single server or Cluster) and the Lua scripts, loaded from
 * `src/store/scripts/*.lua` and run by their SHA-1 (`runScript`).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { clusterSlot } from './cluster-slot';

export type RedisClient = Redis | Cluster;

export interface RedisTarget {
  /** `redis://host:port` for a single server. */
  url?: string;
  /** Cluster seed nodes. */
  clusterNodes?: { host: string; port: number }[];
}

const SCRIPTS = {
  leaseAcquire: 'lease-acquire-3.lua',
  leaseRelease: 'lease-release-2.lua',
  leaseReserve: 'lease-reserve-2.lua',
  workerLeaseStart: 'lease-worker-start-1.lua',
  workerLeaseRenew: 'lease-worker-renew-1.lua',
  workerLeaseLive: 'lease-worker-live-1.lua',
  commitMany: 'commit-many-7.lua',
  enqueueMany: 'enqueue-many-6.lua',
  ackMany: 'ack-many-1.lua',
  readerGroup: 'reader-group-1.lua',
  deadLetter: 'dead-letter-1.lua',
  derivedFenced: 'derived-fenced-1.lua',
  trimStream: 'trim-stream-1.lua',
  membershipIndex: 'membership-index-2.lua',
  timersFire: 'timers-fire-1.lua',
  pushLog: 'push-log-1.lua',
  pushJoins: 'push-joins-2.lua',
  pushSent: 'push-sent-1.lua',
  pushProgress: 'push-progress-1.lua',
  rateLimit: 'rate-limit-2.lua',
  reply: 'reply-1.lua',
  replyMany: 'reply-many-1.lua',
  searchIndex: 'search-index-5.lua',
  searchView: 'search-view-2.lua',
  inboxStats: 'inbox-stats-1.lua',
  inboxRead: 'inbox-read-2.lua',
  inboxConsumersPrune: 'inbox-consumers-prune-1.lua',
  shardSweep: 'shard-sweep-1.lua',
  recencyBump: 'recency-bump-2.lua',
  registrationToken: 'registration-token-3.lua',
  readMany: 'read-many-3.lua',
  syncSnapshot: 'sync-snapshot-3.lua',
  unreadCounts: 'unread-counts-4.lua',
} as const;
export type ScriptName = keyof typeof SCRIPTS;

const scriptDir = join(import.meta.dirname, 'scripts');
/** A script's text and its SHA-1 (what EVALSHA names it by), read once per process. */
interface ScriptText {
  lua: string;
  sha: string;
}
const scriptTexts = new Map<ScriptName, ScriptText>();
function script(name: ScriptName): ScriptText {
  let s = scriptTexts.get(name);
  if (!s) {
    const lua = readFileSync(join(scriptDir, SCRIPTS[name]), 'utf8');
    s = { lua, sha: createHash('sha1').update(lua).digest('hex') };
    scriptTexts.set(name, s);
  }
  return s;
}

/** A connected client (our scripts are run on it with `runScript`). */
export function connectRedis(target: RedisTarget, options: RedisOptions = {}): RedisClient {
  // Auto-pipelining groups commands by the slot of their first argument, which for EVALSHA is the
  // script's hash, so on a cluster it would mix slots in one pipeline. Scripts are sent on their
  // own; ioredis still writes them without waiting. XGROUP and XINFO carry their key after a
  // subcommand, which auto-pipelining misreads as well. PING (RedisHealth's probe) is written at
  // once rather than behind the next batch: it measures Redis, not how much this process has queued.
  const autoPipeliningIgnoredCommands = ['evalsha', 'eval', 'xgroup', 'xinfo', 'ping'];
  const common: RedisOptions = { maxRetriesPerRequest: null, enableAutoPipelining: true, autoPipeliningIgnoredCommands, ...options };
  let client: RedisClient;
  if (target.clusterNodes?.length) {
    // slotsRefreshInterval: ioredis refreshes its slot map when a lone command is redirected, but
    // an auto-pipelined batch that mixes slots hands its MOVED answers back without a refresh; a
    // process whose traffic is all batches (a worker's heartbeat and lease round) then kept a stale
    // map after a failover and failed with MOVED for up to a minute (seen on the multi-host bed).
    // One CLUSTER SLOTS a second bounds that to a second.
    client = new Cluster(target.clusterNodes, { redisOptions: common, enableAutoPipelining: true, autoPipeliningIgnoredCommands, scaleReads: 'master', slotsRefreshInterval: 1000 });
  } else {
    if (!target.url) throw new Error('connectRedis: a url or cluster nodes are needed');
    client = new Redis(target.url, common);
  }
  quietErrors(client);
  return client;
}

/**
 * ioredis reconnects by itself; without a listener it also prints every connection error as
 * "Unhandled error event". Commands still fail (and are retried) where it matters.
 */
function quietErrors(client: RedisClient): void {
  client.on('error', () => undefined);
}

/**
 * A second connection to the same target, for blocking reads. It has no command timeout (a front's
 * command connection has one): an `XREAD BLOCK` waits by design, and one given up on client side
 * would stay queued in Redis behind the stall while its retry queues behind it.
 */
export function duplicateClient(client: RedisClient): RedisClient {
  const dup = withoutCommandTimeout(client);
  quietErrors(dup);
  return dup;
}

/**
 * A second command connection to the same target with the same options (its command timeout
 * too): for traffic that must not queue behind the other's (a front's enqueues).
 */
export function commandClient(client: RedisClient): RedisClient {
  const dup = client instanceof Cluster ? client.duplicate() : client.duplicate();
  quietErrors(dup);
  return dup;
}

function withoutCommandTimeout(client: RedisClient): RedisClient {
  if (client instanceof Cluster) return client.duplicate([], { redisOptions: { ...client.options.redisOptions, commandTimeout: undefined } });
  return client.duplicate({ commandTimeout: undefined });
}

/**
 * The error of the commands a connection had sent when the connection watchdog dropped it for
 * silence (src/store/redis-watchdog.ts): Redis may or may not have run them.
 */
export const SILENT_CONNECTION_DROPPED = 'Connection dropped: no answer from Redis';

/**
 * Whether an error means Redis could not be reached in time (a command timed out, the connection
 * is down or closed, the server is loading or busy) rather than that the command was wrong: the
 * request may succeed when retried, so it answers 503, not 500.
 */
export function isRedisUnavailableError(e: unknown): boolean {
  if (!(e instanceof Error)) return false;
  if (e.name === 'MaxRetriesPerRequestError') return true;
  const m = e.message;
  return (
    m === 'Command timed out' ||
    m === 'Connection is closed.' ||
    m === SILENT_CONNECTION_DROPPED ||
    m.startsWith("Stream isn't writeable") ||
    // NOREPLICAS: a master with `min-replicas-to-write` set refuses writes while too few replicas
    // are in reach (a partition, a failover); writes resume when one is back.
    /^(LOADING|BUSY|MASTERDOWN|CLUSTERDOWN|TRYAGAIN|READONLY|NOREPLICAS) /.test(m) ||
    // A Cluster slot that moved (a failover, a handover): ioredis follows the redirect for a lone
    // command, but an auto-pipelined batch that mixes slots gets the error back while its slot
    // map is refreshed. The same request succeeds once it is.
    /^(MOVED|ASK) \d+ /.test(m) ||
    /^(connect )?(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|EHOSTUNREACH|ENOTCONN)\b/.test(m) ||
    m.startsWith('Failed to refresh slots cache') ||
    m.startsWith('None of startup nodes is available')
  );
}

/** How long a cluster subscriber may go without answering a PING before it moves to another node. */
export const SUBSCRIBER_STALL_MS = 4000;

/**
 * A cluster subscriber hangs on one node. When that node's host is cut off, its connection goes
 * silent (no reset), so SUBSCRIBE calls wait and wake-ups published meanwhile never arrive, for as
 * long as the cut lasts — on the multi-host bed a worker's shard takeover waited on it for the
 * whole cut. A PING every second; none answered within `stallMs` (or no connection for that long):
 * connect to the next node the cluster knows (any node hears every PUBLISH). ioredis resubscribes
 * and resends what was waiting, and the owner's 'ready' handler catches up on missed wake-ups.
 */
function watchSubscriber(cluster: Cluster, sub: Redis, stallMs: number): void {
  let lastOk = Date.now();
  let pinging = false;
  const timer = setInterval(() => {
    if (sub.status === 'ready' && !pinging) {
      pinging = true;
      sub.ping().then(
        () => {
          lastOk = Date.now();
          pinging = false;
        },
        () => {
          pinging = false;
        },
      );
    }
    if (Date.now() - lastOk < stallMs) return;
    const nodes = cluster.nodes().map((n) => n.options);
    const here = nodes.findIndex((o) => o.host === sub.options.host && o.port === sub.options.port);
    const next = nodes[(here + 1) % nodes.length];
    if (!next) return;
    sub.options.host = next.host;
    sub.options.port = next.port;
    lastOk = Date.now();
    pinging = false;
    sub.disconnect(true);
  }, Math.min(1000, stallMs / 2));
  timer.unref();
  sub.once('end', () => clearInterval(timer));
}

/**
 * A connection for SUBSCRIBE. On a cluster, classic PUBLISH reaches subscribers on every node, so
 * one plain connection to one node hears everything; ioredis's cluster subscriber breaks when many
 * channels are subscribed at once before it is ready.
 */
export function subscriberClient(client: RedisClient, stallMs = SUBSCRIBER_STALL_MS): Redis {
  if (client instanceof Cluster) {
    const node = client.nodes('master')[0] ?? client.nodes()[0];
    const opts = node ? node.options : undefined;
    if (!opts) throw new Error('subscriberClient: the cluster has no known node yet');
    const sub = new Redis({ host: opts.host, port: opts.port, maxRetriesPerRequest: null });
    quietErrors(sub);
    watchSubscriber(client, sub, stallMs);
    return sub;
  }
  const sub = client.duplicate({ commandTimeout: undefined });
  quietErrors(sub);
  return sub;
}

/**
 * Call one of our scripts: `keys` then `args`. Values may be strings or Buffers. The arrays are
 * handed to ioredis as they are (it flattens one level): spreading them into the call overflows
 * the stack past ~120,000 values (a commit of a 10,000-member room's state does that).
 */
export function runScript(client: RedisClient, name: ScriptName, keys: string[], args: (string | number | Buffer)[]): Promise<unknown> {
  return evalScript(client as unknown as EvalCommands, name, keys, args, false);
}

/** Same, returning Buffers instead of strings (for binary replies). */
export function runScriptBuffer(client: RedisClient, name: ScriptName, keys: string[], args: (string | number | Buffer)[]): Promise<unknown> {
  return evalScript(client as unknown as EvalCommands, name, keys, args, true);
}

type EvalCall = (script: string, numKeys: number, keys: string[], args: (string | number | Buffer)[]) => Promise<unknown>;
/** A client's EVALSHA / EVAL commands (ioredis flattens the two arrays into the command's arguments). */
interface EvalCommands {
  evalsha: EvalCall;
  evalshaBuffer: EvalCall;
  eval: EvalCall;
  evalBuffer: EvalCall;
}

/**
 * EVALSHA of the script, and EVAL of its text when the server does not have it (first use, a
 * restart, SCRIPT FLUSH), which also loads it there. The scripts are not registered as ioredis
 * commands (`defineCommand`): ioredis copies every registered command onto every pipeline it
 * makes, and auto-pipelining makes one per batch of commands — with our ~35 scripts (×2 for the
 * Buffer variants) that was 3–7 % of a front's and a worker's CPU in workload A (issue 23).
 */
function evalScript(client: EvalCommands, name: ScriptName, keys: string[], args: (string | number | Buffer)[], buffer: boolean): Promise<unknown> {
  const { sha, lua } = script(name);
  return (buffer ? client.evalshaBuffer : client.evalsha).call(client, sha, keys.length, keys, args).catch((e: unknown) => {
    if (!isNoScript(e)) throw e;
    return (buffer ? client.evalBuffer : client.eval).call(client, lua, keys.length, keys, args);
  });
}

/** Whether a command failed because the server does not have the script (NOSCRIPT). */
export function isNoScript(e: unknown): boolean {
  return e instanceof Error && e.message.startsWith('NOSCRIPT');
}

/**
 * Queue a script on a MULTI: EVALSHA only (inside a MULTI the NOSCRIPT refusal comes in EXEC's
 * answer, too late to send EVAL in its place — the caller loads it with `loadScript` and tries
 * again).
 */
export function queueScriptBuffer(multi: unknown, name: ScriptName, keys: string[], args: (string | number | Buffer)[]): void {
  (multi as { evalshaBuffer(sha: string, numKeys: number, keys: string[], args: (string | number | Buffer)[]): unknown }).evalshaBuffer(script(name).sha, keys.length, keys, args);
}

/**
 * Redis `WAIT` for the writes this client sent to the master holding `key` (on a Cluster, the
 * master of the key's slot, on the same connection as those writes): how many replicas have them
 * within `timeoutMs`. WAIT blocks its connection, so every command this process sends to that
 * master queues behind it for one replication round trip.
 */
export async function waitForReplicas(client: RedisClient, key: string, replicas: number, timeoutMs: number): Promise<number> {
  return Number(await serverOf(client, key, 'WAIT').call('WAIT', replicas, timeoutMs));
}

/** The connection to the server holding `key`: the client itself, or on a Cluster the master of the key's slot. */
function serverOf(client: RedisClient, key: string, what: string): Redis {
  if (!(client instanceof Cluster)) return client;
  const owner = client.slots[clusterSlot(key)]?.[0];
  const node = client.nodes('master').find((n) => `${n.options.host}:${n.options.port}` === owner);
  if (!node) throw new Error(`${what}: no connection to the master of ${key}'s slot yet`);
  return node;
}

/**
 * Load a script on the server that holds `key` (its master on a Cluster). `runScript` sends the
 * script's text itself when its EVALSHA is refused with NOSCRIPT — but that cannot be done inside
 * a MULTI, where the EVALSHA was QUEUED and the refusal comes in EXEC's answer: a caller that sends
 * a script in a MULTI (`queueScriptBuffer`) loads it with this after a NOSCRIPT, and tries again.
 */
export async function loadScript(client: RedisClient, name: ScriptName, key: string): Promise<void> {
  await serverOf(client, key, 'SCRIPT LOAD').script('LOAD', script(name).lua);
}

export function isCluster(client: RedisClient): client is Cluster {
  return client instanceof Cluster;
}

/**
 * A command's Buffer-replying variant, which ioredis generates for every command but does not
 * type for all (e.g. `xreadgroupBuffer`). `callBuffer` is not a substitute: with auto-pipelining
 * on, ioredis drops its command name.
 */
export function bufferCommand(client: RedisClient, name: 'xreadgroupBuffer' | 'xautoclaimBuffer'): (...args: (string | number | Buffer)[]) => Promise<unknown> {
  const fn = (client as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[name]!;
  return (...args) => fn.apply(client, args);
}
