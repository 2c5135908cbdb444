/**
 * The command-connection watchdog (src/store/redis-watchdog.ts) on a real redis-server behind a
 * TCP proxy that can cut the link as a partition does: connections open during the cut stay
 * silent after it heals (as TCP's backed-off retransmissions keep them on a real network: issue
 * 24's front answered 503 for 37 s after a heal), while new connections get through. Without the
 * watchdog the client never answers again; with it, it answers again within a few stall periods.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { connectRedis, isRedisUnavailableError, SILENT_CONNECTION_DROPPED, type RedisClient } from '../../src/store/redis';
import { watchConnections } from '../../src/store/redis-watchdog';
import { TcpProxy } from '../setup/tcp-proxy';

const target = new URL(inject('redisUrl'));
const prefix = `watchdog:${process.pid}:${Date.now()}:`;
let proxy: TcpProxy;

beforeAll(async () => {
  proxy = new TcpProxy({ host: target.hostname, port: Number(target.port) });
  await proxy.start();
});
afterAll(() => proxy?.close());

/** Until `client` answers a GET (true), or `ms` passed (false); each attempt times out on its own. */
async function answersWithin(client: RedisClient, ms: number): Promise<{ ok: boolean; after: number }> {
  const began = performance.now();
  while (performance.now() - began < ms) {
    const ok = await client.get(`${prefix}k`).then(
      (v) => v === 'v',
      () => false,
    );
    if (ok) return { ok: true, after: performance.now() - began };
    await new Promise((r) => setTimeout(r, 100));
  }
  return { ok: false, after: performance.now() - began };
}

describe('command connection watchdog', () => {
  it('a connection left silent by a healed cut stays silent without the watchdog', async () => {
    const client = connectRedis({ url: proxy.url }, { commandTimeout: 300 });
    try {
      await client.set(`${prefix}k`, 'v');
      proxy.cut();
      await expect(client.get(`${prefix}k`)).rejects.toThrow('Command timed out');
      proxy.heal();
      // ioredis sees no reset and no close: the connection stays "ready" and silent.
      expect((await answersWithin(client, 3000)).ok).toBe(false);
      expect(client.status).toBe('ready');
    } finally {
      client.disconnect();
    }
  });

  it('replaces a silent connection: commands answer again soon after the heal', async () => {
    const client = connectRedis({ url: proxy.url }, { commandTimeout: 10_000 });
    const drops: string[] = [];
    const stop = watchConnections(client, { stallMs: 1000, intervalMs: 200, onReconnect: (_n, why) => drops.push(why) });
    try {
      await client.set(`${prefix}k`, 'v');
      await client.set(`${prefix}n`, '0');
      proxy.cut();
      // A command sent into the silence fails when its connection is dropped (before its own
      // timeout), as unavailable (a front answers 503), and is not sent again on the new one.
      const err = await client.incr(`${prefix}n`).then(
        () => null,
        (e: Error) => e,
      );
      expect(err?.message).toBe(SILENT_CONNECTION_DROPPED);
      expect(isRedisUnavailableError(err)).toBe(true);
      // Through the cut the watchdog drops the connections it makes into the silence as well.
      for (const until = Date.now() + 30_000; drops.length < 2 && Date.now() < until; ) await new Promise((r) => setTimeout(r, 100));
      expect(drops.length).toBeGreaterThan(1);
      proxy.heal();
      const back = await answersWithin(client, 30_000);
      expect(back.ok).toBe(true);
      expect(await client.get(`${prefix}n`)).toBe('0');
      console.log(`answered again ${Math.round(back.after)} ms after the heal (stall 1,000 ms); ${drops.length} drops: ${[...new Set(drops.map((d) => d.replace(/\d+ ms/, 'N ms')))].join('; ')}`);
    } finally {
      stop();
      client.disconnect();
    }
  });

  it('leaves a live connection alone', async () => {
    const client = connectRedis({ url: proxy.url });
    const drops: string[] = [];
    const stop = watchConnections(client, { stallMs: 2000, intervalMs: 100, onReconnect: (_n, why) => drops.push(why) });
    try {
      const until = performance.now() + 2000;
      let n = 0;
      while (performance.now() < until) {
        await client.set(`${prefix}live`, String(n++));
        await new Promise((r) => setTimeout(r, 20));
      }
      expect(n).toBeGreaterThan(10);
      expect(drops).toEqual([]);
    } finally {
      stop();
      client.disconnect();
    }
  });
});
