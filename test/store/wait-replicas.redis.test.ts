/**
 * `waitForReplicas` (redis.waitReplicas, issue 24) sends WAIT to the master that holds the key: on
 * the test setup's 3-master Cluster (no replicas) every master answers that no replica has the
 * write, after the timeout; the key's slot is the one Redis itself computes. The multi-host bed
 * (test/hosts/) covers it with replicas and a failover.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Redis } from 'ioredis';
import { clusterSlot } from '../../src/store/cluster-slot';
import { connectRedis, waitForReplicas, type RedisClient } from '../../src/store/redis';

const nodes = inject('redisClusterNodes');
const prefix = `waitrep:${process.pid}:${Date.now()}:`;
let cluster: RedisClient;

beforeAll(async () => {
  cluster = connectRedis({ clusterNodes: nodes });
  await cluster.set(`${prefix}warm`, '1');
});
afterAll(() => cluster?.disconnect());

describe('waitForReplicas on a Redis Cluster', () => {
  it('asks the master of each key (no replicas here: 0 after the timeout)', async () => {
    for (const tag of ['r:1', 'r:417', 'u:9', 'x']) {
      const key = `${prefix}{${tag}}:lease`;
      await cluster.set(key, '1');
      expect(await waitForReplicas(cluster, key, 1, 50)).toBe(0);
      const direct = new Redis({ host: nodes[0]!.host, port: nodes[0]!.port });
      expect(Number(await direct.call('CLUSTER', 'KEYSLOT', key))).toBe(clusterSlot(key));
      direct.disconnect();
    }
  });
});
