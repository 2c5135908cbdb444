/**
 * Starts one real redis-server for the integration tests, on a free loopback port with AOF on
 * (the same flags as the managed Redis in production), and tears it down afterwards.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import type {} from 'vitest';
import { startManagedRedis } from '../../src/runtime/managed-redis';
import { freePort } from './free-port';

declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string;
  }
}

export default async function setup(project: TestProject) {
  const dir = mkdtempSync(join(tmpdir(), 'axon-test-redis-'));
  const port = await freePort();
  const redis = await startManagedRedis({ dir, port });
  project.provide('redisUrl', redis.url);
  return async () => {
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  };
}
