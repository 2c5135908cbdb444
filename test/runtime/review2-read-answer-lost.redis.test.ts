/**
 * Review 2: an inbox read (XREADGROUP) that Redis ran but whose answer the worker never got
 * (connection dropped; ioredis sends the command again). The first run delivered the entry to the
 * worker's consumer; the resent read gets nothing, the runner never tracks the entry, and it waits
 * in the pending list until the sweep's idle reclaim (idleBoundMs) — while the actor's later
 * messages are read and applied first: per-actor order is broken.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ActorClient } from '../../src/runtime/actor-client';
import { startManagedRedis } from '../../src/runtime/managed-redis';
import { KeySpace } from '../../src/store/keys';
import { connectRedis } from '../../src/store/redis';
import type { LedgerReply } from '../../actors/ledger';
import { freePort } from '../setup/free-port';
import { silent, waitFor } from './harness';

/** Forwards to Redis; once armed, the first command containing `needle` runs but the connection is cut before any further answer. */
function answerDroppingProxy(redisPort: number, needle: string): Promise<{ port: number; server: Server; arm(): void; tripped(): number }> {
  let armed = false;
  let tripped = 0;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(redisPort, '127.0.0.1');
    sockets.add(client).add(upstream);
    let dropping = false;
    const close = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('data', (d: Buffer) => {
      if (armed && d.toString('latin1').toLowerCase().includes(needle.toLowerCase())) {
        armed = false;
        dropping = true;
      }
      upstream.write(d);
    });
    upstream.on('data', (d: Buffer) => {
      if (!dropping) {
        client.write(d);
        return;
      }
      tripped++;
      close();
    });
    for (const s of [client, upstream]) {
      s.on('error', close);
      s.on('close', () => {
        sockets.delete(s);
        close();
      });
    }
  });
  return new Promise((resolve) => {
    void freePort().then((port) => server.listen(port, '127.0.0.1', () => resolve({ port, server, arm: () => (armed = true), tripped: () => tripped })));
  }).then((p) => {
    const close = server.close.bind(server);
    (server as { close: Server['close'] }).close = (cb?: (err?: Error) => void) => {
      for (const s of sockets) s.destroy();
      return close(cb);
    };
    return p as { port: number; server: Server; arm(): void; tripped(): number };
  });
}

describe('an inbox read whose answer was lost (connection dropped, XREADGROUP sent again)', () => {
  let dir = '';
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("the actor's next message is not applied before the one that read delivered", async () => {
    dir = mkdtempSync(join(tmpdir(), 'axon-review2-'));
    const redis = await startManagedRedis({ dir, port: await freePort() });
    const proxy = await answerDroppingProxy(redis.port, 'XREADGROUP');
    const keys = new KeySpace('review2:');
    const shardCounts = { room: 2, user: 2 };
    const { Worker } = await import('../../src/runtime/worker');
    const { allActorKinds } = await import('../../src/runtime/kinds');
    const worker = new Worker({
      redis: connectRedis({ url: `redis://127.0.0.1:${proxy.port}` }),
      keys,
      workerId: 'w1',
      shardCounts,
      kinds: allActorKinds(),
      leaseTtlMs: 10_000,
      renewMs: 1000,
      log: silent,
      pollMs: 300,
      idleBoundMs: 2000,
    });
    const client = new ActorClient(connectRedis({ url: redis.url }), keys, shardCounts);
    try {
      await worker.start();
      await client.start();
      const actor = '@review2:test';
      const append = (seq: number) => client.ask<LedgerReply>('user', 'ledger', actor, { op: 'append', producer: 'p', seq, value: seq }, { mid: `r2-${seq}`, timeoutMs: 30_000 });
      for (let seq = 1; seq <= 4; seq++) await append(seq);
      // The read that delivers message 5 runs in Redis, its answer is lost.
      proxy.arm();
      const fifth = append(5);
      await waitFor('the read of message 5 to lose its answer', () => proxy.tripped() > 0, 10_000, 5);
      await new Promise((r) => setTimeout(r, 300));
      const sixth = await append(6);
      await fifth;
      const state = await client.ask<LedgerReply>('user', 'ledger', actor, { op: 'read' });
      // Applied in order 1..6: no message seen out of order.
      expect({ sixth, state }).toMatchObject({ sixth: { count: 6, outOfOrder: 0 }, state: { count: 6, sum: 21, outOfOrder: 0 } });
    } finally {
      await client.close();
      await worker.stop();
      await new Promise<void>((res) => proxy.server.close(() => res()));
      await redis.stop();
    }
  });
});
