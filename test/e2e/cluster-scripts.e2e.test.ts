/**
 * The operator's path through the README: `npm run cluster -- up` with 2 workers and a front,
 * `status`, `move-shard`, `rebalance` and `drain` while traffic flows, then `down` — real
 * processes, a real managed redis-server, nothing lost or applied twice. On the way: readiness
 * in `status` and `/health`, also while the managed Redis is paused (SIGSTOP) for a few seconds.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ActorClient } from '../../src/runtime/actor-client';
import { KeySpace } from '../../src/store/keys';
import { connectRedis } from '../../src/store/redis';
import { redisPing } from '../../src/runtime/managed-redis';
import type { LedgerReply } from '../../actors/ledger';
import { ScriptCluster } from '../setup/script-cluster';

describe('cluster scripts', () => {
  let c: ScriptCluster;

  beforeAll(async () => {
    c = await ScriptCluster.create({ name: 'cluster', scriptTimeoutMs: 120_000 });
  });

  afterAll(async () => {
    await c?.destroy();
  });

  it('brings up a cluster, moves and drains shards under traffic, and takes it down', async () => {
    const up = await c.up(2, 1);
    expect(up.processes.map((p: { name: string }) => p.name)).toEqual(['w1', 'w2', 'f1']);
    const versions = await fetch(`${c.base}/_matrix/client/versions`);
    expect(versions.status).toBe(200);

    const status = await c.script('status');
    const live = status.workers.filter((w: { alive: boolean }) => w.alive);
    expect(live.map((w: { worker: string }) => w.worker)).toEqual(['w1', 'w2']);
    for (const w of live) expect(w.shards).toEqual({ room: 8, user: 8 });

    // Traffic: 40 actors, 3,000 appends, up to 100 in flight, while the operator works.
    const redis = connectRedis({ url: `redis://127.0.0.1:${c.redisPort}` });
    const client = new ActorClient(redis, new KeySpace('axon:'), { room: 16, user: 16 });
    await client.start();
    const actors = Array.from({ length: 40 }, (_, i) => `@load${i}:test`);
    const sent = new Map<string, number>();
    let stop = false;
    const traffic = (async () => {
      const inFlight = new Set<Promise<unknown>>();
      for (let i = 0; i < 3000 && !stop; i++) {
        const actor = actors[i % actors.length]!;
        const seq = (sent.get(actor) ?? 0) + 1;
        sent.set(actor, seq);
        const p = client.ask('user', 'ledger', actor, { op: 'append', producer: 'load', seq, value: 1 }, { timeoutMs: 60_000 });
        inFlight.add(p);
        void p.finally(() => inFlight.delete(p)).catch(() => undefined);
        if (inFlight.size >= 100) await Promise.race(inFlight);
        if (i % 50 === 0) await new Promise((r) => setTimeout(r, 5));
      }
      await Promise.all(inFlight);
    })();

    const move = await c.script('move-shard', 'user', '3', status.workers.find((w: { worker: string }) => w.worker === 'w1').shards.user > 0 ? 'w2' : 'w1');
    expect(move.ok).toBe(true);
    expect(move.ms).toBeLessThan(30_000);
    const rebalanced = await c.script('rebalance');
    expect(rebalanced.ok).toBe(true);
    const drained = await c.script('drain', 'w1');
    expect(drained).toMatchObject({ ok: true, worker: 'w1', stopped: true });
    expect(drained.moved).toBe(16);

    await traffic;
    stop = true;
    let total = 0;
    for (const actor of actors) {
      const state = await client.ask<LedgerReply>('user', 'ledger', actor, { op: 'read' });
      expect(state.outOfOrder, actor).toBe(0);
      expect(state.count, actor).toBe(sent.get(actor));
      total += state.count;
    }
    expect(total).toBe(3000);

    const after = await c.script('status');
    const w2 = after.workers.find((w: { worker: string }) => w.worker === 'w2');
    expect(w2.shards).toEqual({ room: 16, user: 16 });
    expect(after.workers.filter((w: { alive: boolean }) => w.alive).map((w: { worker: string }) => w.worker)).toEqual(['w2']);
    await client.close();
    redis.disconnect();

    // The operator's own canary.
    const load = await c.script('load', '--seconds', '2', '--concurrency', '20');
    expect(load.ok).toBe(true);
    expect(load.sent).toBeGreaterThan(0);
    expect(load.applied).toBe(load.sent);

    // Readiness: Redis, the live worker and the front are ready; /health says OK.
    const health = `${c.base}/health`;
    const ready = await c.script('status');
    expect(ready.redis.ready).toBe(true);
    expect(ready.workers.filter((w: { alive: boolean }) => w.alive).map((w: { worker: string; ready: boolean }) => [w.worker, w.ready])).toEqual([['w2', true]]);
    expect(ready.fronts.map((f: { id: string; ready: boolean }) => [f.id, f.ready])).toEqual([['f1', true]]);
    const ok = await fetch(health);
    expect([ok.status, await ok.text()]).toEqual([200, 'OK']);

    // Redis paused: /health answers 503 at once and `status` says Redis is not ready (exit 1)
    // instead of hanging; both come back by themselves after SIGCONT.
    const redisPid = Number(readFileSync(join(c.dataDir, 'redis', 'redis.pid'), 'utf8').trim());
    process.kill(redisPid, 'SIGSTOP');
    try {
      await new Promise((r) => setTimeout(r, 3500)); // the front's PING goes unanswered past its 2 s timeout
      const t = Date.now();
      const unhealthy = await fetch(health);
      expect(unhealthy.status).toBe(503);
      expect(Date.now() - t).toBeLessThan(2000);
      const stalled = await c.scriptFails('status');
      expect(stalled.code).toBe(1);
      expect(stalled.answer).toMatchObject({ ok: false, redis: { ready: false }, workers: null, fronts: null });
    } finally {
      process.kill(redisPid, 'SIGCONT');
    }
    let back: any = null;
    for (let i = 0; i < 100 && !(back?.fronts?.[0]?.ready && (await fetch(health)).status === 200); i++) {
      await new Promise((r) => setTimeout(r, 200));
      back = await c.script('status');
    }
    expect(back.fronts.map((f: { id: string; ready: boolean }) => [f.id, f.ready])).toEqual([['f1', true]]);
    expect((await fetch(health)).status).toBe(200);

    const down = await c.script('down');
    expect(down.ok).toBe(true);
    expect(down.stopped.sort()).toEqual(['f1', 'w2']);
    expect(down.redisStopped).toBe(true);
    expect(await redisPing(c.redisPort)).toBe(false);
  }, 180_000); // a dozen script runs (each a tsx start) and a Redis pause: past the project's 60 s on a loaded machine
});
