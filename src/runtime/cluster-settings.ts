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
 * Node flags a process of the cluster is started with (the cluster scripts, the benchmarks'
 * cluster): a young generation smaller than V8's default 16 MB semi-spaces, which an idle process
 * otherwise grows to and keeps. Workers `--max-semi-space-size=4` (MB): their allocations die
 * young (a batch read, decided, committed); idle worker 89–93 → 63 MB PSS. Fronts 8: a front
 * builds whole /sync answers in the young generation, and 2 cost a warm initial sync ~40 % more
 * CPU; 8 measured within the noise of the default (README, "Memory"). In workloads A and B
 * together ~40–80 MB less Σ PSS. `AXON_WORKER_NODE_FLAGS` / `AXON_FRONT_NODE_FLAGS` replace
 * the list (empty: none).
 */
export function nodeFlagsFor(role: 'worker' | 'front', env: NodeJS.ProcessEnv = process.env): string[] {
  const set = role === 'worker' ? env.AXON_WORKER_NODE_FLAGS : env.AXON_FRONT_NODE_FLAGS;
  return (set ?? (role === 'worker' ? '--max-semi-space-size=4' : '--max-semi-space-size=8')).split(' ').filter(Boolean);
}
