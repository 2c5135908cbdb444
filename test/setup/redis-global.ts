/**
 * Starts one real redis-server for the integration tests, on a free loopback port with AOF on
 * (the same flags as the managed Redis in production), plus one real 3-master Redis Cluster
 * (test/setup/redis-cluster.ts), both in parallel, and tears them down afterwards.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import type {} from 'vitest';
import { startManagedRedis, type ManagedRedis } from '../../src/runtime/managed-redis';
import { freePort } from './free-port';
import { startRedisCluster, type TestRedisCluster } from './redis-cluster';

declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string;
    redisClusterNodes: { host: string; port: number }[];
  }
}

export default async function setup(project: TestProject) {
  const dir = mkdtempSync(join(tmpdir(), 'axon-test-redis-'));
  const single = async (): Promise<ManagedRedis> => startManagedRedis({ dir, port: await freePort() });
  const [redisResult, clusterResult] = await Promise.allSettled([single(), startRedisCluster()]);

  const teardown = async () => {
    await Promise.all([
      redisResult.status === 'fulfilled' ? redisResult.value.stop() : undefined,
      clusterResult.status === 'fulfilled' ? clusterResult.value.stop() : undefined,
    ]);
    rmSync(dir, { recursive: true, force: true });
  };

  if (redisResult.status === 'rejected' || clusterResult.status === 'rejected') {
    await teardown();
    throw redisResult.status === 'rejected' ? redisResult.reason : (clusterResult as PromiseRejectedResult).reason;
  }
  const redis: ManagedRedis = redisResult.value;
  const cluster: TestRedisCluster = clusterResult.value;

  project.provide('redisUrl', redis.url);
  project.provide('redisClusterNodes', cluster.nodes);
  return teardown;
}
