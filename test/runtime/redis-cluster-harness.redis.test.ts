/**
 * Proves the Redis Cluster test harness (test/setup/redis-cluster.ts, started by the redis
 * project's global setup): a real 3-master cluster that routes keys by slot, runs multi-key Lua
 * on one hash tag, refuses multi-key commands across slots, and serves Redis Streams.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Cluster, Redis } from 'ioredis';

const nodes = inject('redisClusterNodes');
const prefix = `harness:${process.pid}:${Date.now()}:`;

let cluster: Cluster;
const direct: Redis[] = [];

beforeAll(async () => {
  cluster = new Cluster(nodes, { redisOptions: { maxRetriesPerRequest: 3 } });
  await new Promise<void>((resolve, reject) => {
    if (cluster.status === 'ready') return resolve();
    cluster.once('ready', () => resolve());
    cluster.once('error', reject);
  });
  for (const n of nodes) direct.push(new Redis({ host: n.host, port: n.port }));
});

afterAll(async () => {
  await cluster?.quit();
  await Promise.all(direct.map((r) => r.quit()));
});

async function keySlot(key: string): Promise<number> {
  return Number(await cluster.call('CLUSTER', 'KEYSLOT', key));
}

describe('Redis Cluster harness', () => {
  it('has at least 3 masters covering all 16384 slots', async () => {
    expect(nodes.length).toBeGreaterThanOrEqual(3);
    const masters = cluster.nodes('master');
    expect(masters.length).toBe(nodes.length);
    for (const r of direct) {
      const info = String(await r.call('CLUSTER', 'INFO'));
      expect(info).toContain('cluster_state:ok');
      expect(info).toContain('cluster_slots_assigned:16384');
    }
  });

  it('writes keys to different slots on every node and reads them back', async () => {
    const keys = Array.from({ length: 30 }, (_, i) => `${prefix}k${i}`);
    const slots = new Set(await Promise.all(keys.map(keySlot)));
    expect(slots.size).toBeGreaterThan(1);

    await Promise.all(keys.map((k, i) => cluster.set(k, `v${i}`)));
    const values = await Promise.all(keys.map((k) => cluster.get(k)));
    expect(values).toEqual(keys.map((_, i) => `v${i}`));

    // KEYS is node-local in cluster mode: each master holds its own share, together all of them.
    const perNode = await Promise.all(direct.map((r) => r.keys(`${prefix}k*`)));
    for (const local of perNode) expect(local.length).toBeGreaterThan(0);
    expect(perNode.flat().sort()).toEqual([...keys].sort());

    // A plain (non-cluster) client on the wrong node is redirected.
    const owner = perNode.findIndex((local) => local.includes(keys[0]!));
    const other = direct[(owner + 1) % direct.length]!;
    await expect(other.get(keys[0]!)).rejects.toThrow(/MOVED/);
  });

  it('runs a multi-key Lua script on keys sharing one hash tag', async () => {
    const a = `${prefix}{r:1}:a`;
    const b = `${prefix}{r:1}:b`;
    expect(await keySlot(a)).toBe(await keySlot(b));
    const script = `
      redis.call('SET', KEYS[1], ARGV[1])
      redis.call('SET', KEYS[2], ARGV[2])
      return redis.call('MGET', KEYS[1], KEYS[2])
    `;
    expect(await cluster.eval(script, 2, a, b, 'x', 'y')).toEqual(['x', 'y']);
    expect(await cluster.mget(a, b)).toEqual(['x', 'y']);
  });

  it('refuses a multi-key command across slots with CROSSSLOT', async () => {
    const a = `${prefix}{r:1}:a`;
    const c = `${prefix}{r:2}:c`;
    expect(await keySlot(a)).not.toBe(await keySlot(c));
    await expect(cluster.mget(a, c)).rejects.toThrow(/CROSSSLOT/);
    await expect(cluster.eval("return redis.call('GET', KEYS[1])", 2, a, c)).rejects.toThrow(/CROSSSLOT/);
  });

  it('serves Redis Streams: XADD, XREADGROUP, XACK', async () => {
    const stream = `${prefix}{s:1}:stream`;
    const group = 'workers';
    await cluster.xgroup('CREATE', stream, group, '$', 'MKSTREAM');
    const id1 = await cluster.xadd(stream, '*', 'n', '1');
    const id2 = await cluster.xadd(stream, '*', 'n', '2');
    expect(id1).toMatch(/^\d+-\d+$/);

    const read = (await cluster.xreadgroup('GROUP', group, 'c1', 'COUNT', 10, 'STREAMS', stream, '>')) as
      | [string, [string, string[]][]][]
      | null;
    expect(read).not.toBeNull();
    const [[name, entries]] = read as [[string, [string, string[]][]]];
    expect(name).toBe(stream);
    expect(entries.map(([id]) => id)).toEqual([id1, id2]);
    expect(entries.map(([, fields]) => fields)).toEqual([
      ['n', '1'],
      ['n', '2'],
    ]);

    const pendingBefore = (await cluster.xpending(stream, group)) as [number, ...unknown[]];
    expect(pendingBefore[0]).toBe(2);
    expect(await cluster.xack(stream, group, id1!, id2!)).toBe(2);
    const pendingAfter = (await cluster.xpending(stream, group)) as [number, ...unknown[]];
    expect(pendingAfter[0]).toBe(0);
  });
});
