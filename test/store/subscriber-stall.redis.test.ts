/**
 * A cluster subscriber whose node goes silent (its host cut off: no reset, no answer) moves to
 * another node by itself, keeps its subscriptions, and hears PUBLISH again (issue 24: on the
 * multi-host bed a worker's shard takeover waited on such a subscriber for a whole cut).
 * Real Redis Cluster; the silent node is a local TCP server that accepts and never answers.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { connectRedis, subscriberClient, type RedisClient } from '../../src/store/redis';

const nodes = inject('redisClusterNodes');
const prefix = `substall:${process.pid}:${Date.now()}:`;
let cluster: RedisClient;
let silent: Server;
const held: Socket[] = [];

beforeAll(async () => {
  cluster = connectRedis({ clusterNodes: nodes });
  await cluster.set(`${prefix}warm`, '1');
  silent = createServer((s) => {
    held.push(s);
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
});
afterAll(() => {
  cluster?.disconnect();
  for (const s of held) s.destroy();
  silent?.close();
});

describe('cluster subscriber on a silent node', () => {
  it('moves to another node and hears what is published after', async () => {
    const sub = subscriberClient(cluster, 1000);
    const channel = `${prefix}wake`;
    const got: string[] = [];
    sub.on('message', (_c: string, m: string) => got.push(m));
    await sub.subscribe(channel);
    // Send it to a node that accepts the connection and then says nothing, as a cut-off host.
    const port = (silent.address() as { port: number }).port;
    sub.options.host = '127.0.0.1';
    sub.options.port = port;
    sub.disconnect(true);
    await new Promise((r) => setTimeout(r, 300));
    expect(held.length).toBeGreaterThan(0);
    // Within a few stall periods it is on a real node again, subscribed.
    const deadline = Date.now() + 15_000;
    let n = 0;
    while (!got.length && Date.now() < deadline) {
      await cluster.publish(channel, `m${n++}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(got.length).toBeGreaterThan(0);
    expect(sub.options.port).not.toBe(port);
    sub.disconnect();
  }, 30_000);
});
