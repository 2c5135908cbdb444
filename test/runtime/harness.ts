/** Shared set-up for runtime tests: a fresh key prefix per test, workers and clients on it. */
import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { inject } from 'vitest';
import { ActorClient } from '../../src/runtime/actor-client';
import { allActorKinds } from '../../src/runtime/kinds';
import type { RoomConfig } from '../../src/rooms/model';
import type { Family } from '../../src/store/shards';
import { Worker, type WorkerOptions } from '../../src/runtime/worker';
import { KeySpace } from '../../src/store/keys';
import { connectRedis, type RedisClient, type RedisTarget } from '../../src/store/redis';

export type Mode = 'single' | 'cluster';
export const MODES: Mode[] = ['single', 'cluster'];

export function targetFor(mode: Mode): RedisTarget {
  return mode === 'single' ? { url: inject('redisUrl') } : { clusterNodes: inject('redisClusterNodes') };
}

export const silent = pino({ level: process.env.AXON_TEST_LOG ?? 'silent' });

export interface Rig {
  mode: Mode;
  target: RedisTarget;
  prefix: string;
  keys: KeySpace;
  redis: RedisClient;
  shardCounts: Record<Family, number>;
  workers: Worker[];
  clients: ActorClient[];
  startWorker(id: string, extra?: Partial<WorkerOptions>): Promise<Worker>;
  client(): Promise<ActorClient>;
  close(): Promise<void>;
}

export async function rig(mode: Mode, opts: { shards?: number; ttlMs?: number; renewMs?: number; room?: RoomConfig; prefix?: string } = {}): Promise<Rig> {
  const target = targetFor(mode);
  const prefix = opts.prefix ?? `t${randomBytes(4).toString('hex')}:`;
  const keys = new KeySpace(prefix);
  const redis = connectRedis(target);
  const n = opts.shards ?? 8;
  const shardCounts: Record<Family, number> = { room: n, user: n };
  const workers: Worker[] = [];
  const clients: ActorClient[] = [];
  const r: Rig = {
    mode, target, prefix, keys, redis, shardCounts, workers, clients,
    async startWorker(id, extra = {}) {
      const w = new Worker({
        redis: connectRedis(target), keys, workerId: id, shardCounts, kinds: allActorKinds(opts.room),
        leaseTtlMs: opts.ttlMs ?? 1500, renewMs: opts.renewMs ?? 300, log: silent, pollMs: 500, ...extra,
      });
      await w.start();
      workers.push(w);
      return w;
    },
    async client() {
      const c = new ActorClient(connectRedis(target), keys, shardCounts);
      await c.start();
      clients.push(c);
      return c;
    },
    async close() {
      await Promise.all(clients.map((c) => c.close()));
      await Promise.all(workers.map((w) => w.stop().catch(() => undefined)));
      redis.disconnect();
    },
  };
  return r;
}

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | null | false> | T | undefined | null | false, timeoutMs = 20_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
