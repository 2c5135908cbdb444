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
 * together ~40–80 MB less Σ PSS.
 *
 * And both `--heap-growing-percent=100`: after each full collection the old generation may grow
 * to 2× what survived it, instead of V8's own factor (up to 4× while the process allocates fast,
 * which is exactly under load). In workload B (1,000 members) a worker or a front holds 25–60 MB
 * of live objects after a full collection but had grown its heap to 150–550 MB of mostly dead
 * ones (heap snapshots, `v8.getHeapStatistics()` sampled; README "Memory"). With the cap, A's
 * peaks are 20–85 MB lower at the same CPU per message, B's median peak ~650 instead of ~960 MB
 * over alternated runs on a loaded machine. 1.2× made the workers spend most of B's first phase
 * collecting; 1.5× for workers gave about the same peaks as 2× in two B pairs, for as much or
 * more worker CPU (within that load's noise, but each step down doubles the collections).
 *
 * And both `--v8-pool-size=2`: V8's background threads (GC helpers, concurrent compilation) are
 * 2 instead of Node's 4. Each thread that allocates gets its own glibc malloc arena, which keeps
 * what it freed; on the 2 cores of the bench machine more than 2 helpers per process cannot run
 * at once anyway. Workload A at 20 msg/s (200 users; 2026-12-05 05:45–05:52 UTC, load 8–16,
 * alternated runs): the processes' malloc heaps (smaps: `[heap]` and the arenas) 54–61 → 38–42
 * MB in all, Σ anonymous PSS 209–211 → 196–205 MB; bench:room 100 rooms, 1 worker, worker CPU per
 * event 147 / 141 / 129 µs against 143 / 129 / 137 (06:01–06:02 UTC, load 4–5): unchanged. A at
 * 20 msg/s with and without only this flag (06:08–06:10 UTC, load 2–4.5, four pairs): peak Σ PSS
 * 228–231 → 210–224 MB, CPU per message 28–30 ms in both, /send p99 no worse.
 *
 * `AXON_WORKER_NODE_FLAGS` / `AXON_FRONT_NODE_FLAGS` replace the list (empty: none).
 */
export function nodeFlagsFor(role: 'worker' | 'front', env: NodeJS.ProcessEnv = process.env): string[] {
  const set = role === 'worker' ? env.AXON_WORKER_NODE_FLAGS : env.AXON_FRONT_NODE_FLAGS;
  return (set ?? (role === 'worker' ? '--max-semi-space-size=4 --heap-growing-percent=100 --v8-pool-size=2' : '--max-semi-space-size=8 --heap-growing-percent=100 --v8-pool-size=2')).split(' ').filter(Boolean);
}
