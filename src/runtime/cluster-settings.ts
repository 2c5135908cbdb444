/** Runtime settings derived from the config: where Redis is, how to connect, and the shard counts. */
import type { RedisOptions } from 'ioredis';
import type { AxonConfig } from '../../cluster.config';
import type { RedisTarget } from '../store/redis';
import type { Family } from '../store/shards';

export function redisTargetFor(config: AxonConfig): RedisTarget {
  switch (config.redis.mode) {
    case 'managed':
      return { url: `redis://127.0.0.1:${config.redis.managedPort}` };
    case 'url':
      return { url: config.redis.url };
    case 'cluster':
      return {
        clusterNodes: config.redis.clusterNodes.map((n) => {
          const [host, port] = n.split(':');
          return { host: host!, port: Number(port) };
        }),
      };
  }
}

export function shardCountsFor(config: AxonConfig): Record<Family, number> {
  return { room: config.shards.rooms, user: config.shards.users };
}

/**
 * Options of a front's command connection: commands fail after `redis.commandTimeoutMs` instead of
 * waiting out a Redis stall (their requests answer 503). Workers' connections have none: a worker
 * waits a stall out and carries on (its commits are fenced, its messages stay pending until acked).
 */
export function frontRedisOptions(config: AxonConfig): RedisOptions {
  return { commandTimeout: config.redis.commandTimeoutMs };
}

/**
 * Node flags a worker process is started with (the cluster scripts, the benchmarks' cluster):
 * `--max-semi-space-size=4` (MB; V8's default here is 16). A worker's allocations die young (a
 * batch read, decided, committed), and an idle worker's young generation otherwise grows to its
 * full size and stays there: 89–93 → 63 MB PSS idle, and ~40 MB less Σ PSS in workloads A and B
 * (README, "Memory"). Fronts keep the default: a front with a small young generation spends ~40 %
 * more CPU per warm initial sync. `AXON_WORKER_NODE_FLAGS` replaces the list (empty: none).
 */
export function workerNodeFlags(env: NodeJS.ProcessEnv = process.env): string[] {
  const set = env.AXON_WORKER_NODE_FLAGS;
  return (set ?? '--max-semi-space-size=4').split(' ').filter(Boolean);
}
