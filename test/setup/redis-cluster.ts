/**
 * A real Redis Cluster for the integration tests: `masters` redis-server processes on loopback
 * (cluster mode, AOF on, the same flags as the managed Redis in production), joined with
 * `redis-cli --cluster create`, no replicas. Resolves once every node reports
 * `cluster_state:ok` with all 16384 slots assigned.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { startManagedRedis, type ManagedRedis } from '../../src/runtime/managed-redis';

export interface TestRedisCluster {
  nodes: { host: string; port: number }[];
  stop(): Promise<void>;
}

const HOST = '127.0.0.1';
/** Redis Cluster's bus listens on the data port + 10000, so data ports must stay below 55536. */
const BUS_OFFSET = 10_000;
/**
 * Data ports are drawn from 12000..22767, so both a data port and its bus port (22000..32767)
 * stay below Linux's default ephemeral range (32768..60999), where outgoing connections could
 * grab them between our check and redis-server's bind.
 */
const PORT_MIN = 12_000;
const PORT_MAX = 22_767;
const SLOTS = 16_384;
const READY_TIMEOUT_MS = 30_000;

/** Listen on the port on loopback; resolves the server while held, null when the port is taken. */
function hold(port: number): Promise<Server | null> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', () => resolve(null));
    srv.listen({ port, host: HOST, exclusive: true }, () => resolve(srv));
  });
}

function release(servers: Server[]): Promise<void> {
  return Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r())))).then(() => undefined);
}

/**
 * `count` distinct ports where both the port and its cluster bus port (port + 10000) were free on
 * loopback a moment ago. All are held until the whole set is found, so none repeats.
 */
async function freeClusterPorts(count: number): Promise<number[]> {
  const held: Server[] = [];
  const ports: number[] = [];
  try {
    for (let attempt = 0; ports.length < count && attempt < 500; attempt++) {
      const port = PORT_MIN + Math.floor(Math.random() * (PORT_MAX - PORT_MIN + 1));
      const clash = ports.some((p) => p === port || p === port + BUS_OFFSET || p + BUS_OFFSET === port);
      if (clash) continue;
      const a = await hold(port);
      if (!a) continue;
      const b = await hold(port + BUS_OFFSET);
      if (!b) {
        await release([a]);
        continue;
      }
      held.push(a, b);
      ports.push(port);
    }
  } finally {
    await release(held);
  }
  if (ports.length < count) throw new Error(`could not find ${count} free port pairs (port and port+${BUS_OFFSET}) on ${HOST}`);
  return ports;
}

function run(cmd: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) {
        const code = (err as NodeJS.ErrnoException).code;
        const why = code === 'ENOENT' ? `${cmd} is not installed (apt-get install -y redis-tools)` : err.message;
        reject(new Error(`${cmd} ${args.join(' ')} failed: ${why}\n${stdout}${stderr}`));
      } else resolve(stdout);
    });
  });
}

function parseInfo(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    const i = line.indexOf(':');
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1).trim();
  }
  return out;
}

/** Poll CLUSTER INFO on every node until all agree the cluster is whole, or throw after the deadline. */
async function waitClusterReady(ports: number[], timeoutMs: number): Promise<void> {
  const clients = ports.map(
    (port) => new Redis({ host: HOST, port, lazyConnect: true, maxRetriesPerRequest: 1, enableOfflineQueue: true, retryStrategy: () => 100 }),
  );
  const deadline = Date.now() + timeoutMs;
  let last: string[] = [];
  try {
    while (true) {
      last = await Promise.all(
        clients.map(async (c, i) => {
          try {
            const info = parseInfo(String(await c.call('CLUSTER', 'INFO')));
            const ok =
              info.cluster_state === 'ok' &&
              Number(info.cluster_slots_assigned) === SLOTS &&
              Number(info.cluster_slots_ok) === SLOTS &&
              Number(info.cluster_known_nodes) === ports.length;
            return ok
              ? ''
              : `${HOST}:${ports[i]} state=${info.cluster_state} slots_assigned=${info.cluster_slots_assigned} slots_ok=${info.cluster_slots_ok} known_nodes=${info.cluster_known_nodes}`;
          } catch (e) {
            return `${HOST}:${ports[i]} ${(e as Error).message}`;
          }
        }),
      );
      if (last.every((s) => s === '')) return;
      if (Date.now() >= deadline) break;
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    clients.forEach((c) => c.disconnect());
  }
  throw new Error(
    `Redis Cluster not ready within ${timeoutMs / 1000} s (want cluster_state:ok and ${SLOTS} slots on every node):\n` +
      last.filter(Boolean).join('\n'),
  );
}

export async function startRedisCluster(opts: { masters?: number } = {}): Promise<TestRedisCluster> {
  const masters = opts.masters ?? 3;
  if (!Number.isInteger(masters) || masters < 3) {
    throw new Error(`startRedisCluster: masters must be an integer >= 3 (redis-cli --cluster create needs 3 masters), got ${masters}`);
  }
  const ports = await freeClusterPorts(masters);
  const dirs: string[] = [];
  const servers: ManagedRedis[] = [];

  const stop = async () => {
    await Promise.all(servers.map((s) => s.stop().catch(() => undefined)));
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  };

  try {
    const started = await Promise.allSettled(
      ports.map((port) => {
        const dir = mkdtempSync(join(tmpdir(), `axon-test-redis-cluster-${port}-`));
        dirs.push(dir);
        return startManagedRedis({
          dir,
          port,
          extraArgs: [
            '--cluster-enabled', 'yes',
            '--cluster-config-file', join(dir, 'nodes.conf'),
            '--cluster-node-timeout', '5000',
          ],
        });
      }),
    );
    for (const r of started) if (r.status === 'fulfilled') servers.push(r.value);
    const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;

    await run(
      'redis-cli',
      ['--cluster', 'create', ...ports.map((p) => `${HOST}:${p}`), '--cluster-replicas', '0', '--cluster-yes'],
      READY_TIMEOUT_MS,
    );
    await waitClusterReady(ports, READY_TIMEOUT_MS);
  } catch (e) {
    await stop();
    throw e;
  }

  return { nodes: ports.map((port) => ({ host: HOST, port })), stop };
}
