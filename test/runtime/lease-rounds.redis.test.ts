/**
 * A worker's lease round against the failures issue 24's multi-host bed pointed at, on real Redis:
 * - a heartbeat write that fails does not stop the renewal (the heartbeat says the worker is
 *   alive; the renewal is what keeps its shards), so the worker keeps its shards;
 * - taking shards does not wait on the wake-up subscriber: with the subscriber's connection cut
 *   off (silent, as a cut host's node), the shards are still taken, run, and answer (the safety
 *   sweep finds what their lost wake-ups would have announced);
 * - the fair share counts only the live workers that take shards: with a draining worker alive,
 *   a dead worker's shards are all taken by the others;
 * - a runner that fails to start after its lease was taken gives the lease back (a move is tried
 *   again), instead of leaving the shard held by a live epoch and run by nobody;
 * - stop() goes on renewing its epoch while it finishes its in-flight messages: a stop longer
 *   than the lease TTL is a hand-back, never a takeover;
 * - a control word does not outlive its purpose: a restarted worker ignores its predecessor's,
 *   and a drain that fails is called off (the worker takes shards again).
 */
import { afterEach, describe, expect, inject, it } from 'vitest';
import type { LedgerReply } from '../../actors/ledger';
import { drain, executeMoves } from '../../src/runtime/cluster-admin';
import { connectRedis } from '../../src/store/redis';
import { shardOf } from '../../src/store/shards';
import { TcpProxy } from '../setup/tcp-proxy';
import { MODES, rig, waitFor, type Rig } from './harness';

for (const mode of MODES) {
  describe(`lease rounds (${mode} redis)`, () => {
    let r: Rig;
    afterEach(async () => {
      await r?.close();
    });

    it('renews the leases while the heartbeat write fails, and keeps every shard', async () => {
      r = await rig(mode, { shards: 4, ttlMs: 2000, renewMs: 200 });
      const w1 = await r.startWorker('w1');
      expect(w1.owned()).toHaveLength(8);
      const record = r.keys.workerLease('w1');
      // The heartbeat's HSET now fails with WRONGTYPE (a real Redis error on every round).
      await r.redis.del(r.keys.workerInfo('w1'));
      await r.redis.set(r.keys.workerInfo('w1'), 'not a hash');
      // Rounds that began before the key changed may still renew: wait past them, then watch for
      // a renewal that can only have come from a round whose heartbeat failed.
      await new Promise((res) => setTimeout(res, 1000));
      const before = Number(await r.redis.hget(record, 'expires'));
      await waitFor('a renewal after the heartbeat failed', async () => Number(await r.redis.hget(record, 'expires')) > before);
      expect(w1.owned()).toHaveLength(8);
      expect(w1.status().shards.every((s) => s.state === 'running')).toBe(true);
      // It still serves them.
      const c = await r.client();
      expect(await c.ask<LedgerReply>('user', 'ledger', '@beat:test', { op: 'append', producer: 'p', seq: 1, value: 3 })).toMatchObject({ count: 1, sum: 3 });
      // The write works again: the heartbeat comes back by itself.
      await r.redis.del(r.keys.workerInfo('w1'));
      await waitFor('the heartbeat to be written again', async () => (await r.redis.hget(r.keys.workerInfo('w1'), 'state')) === 'running');
    });
  });
}

describe('taking shards with the wake-up subscriber cut off (single redis)', () => {
  let r: Rig;
  let proxy: TcpProxy | null = null;
  afterEach(async () => {
    await r?.close();
    proxy?.close();
    proxy = null;
  });

  it('takes, runs and serves the shards without waiting on SUBSCRIBE', async () => {
    r = await rig('single', { shards: 4, ttlMs: 1500, renewMs: 300 });
    const w1 = await r.startWorker('w1');
    expect(w1.owned()).toHaveLength(8);
    const target = new URL(inject('redisUrl'));
    proxy = new TcpProxy({ host: target.hostname, port: Number(target.port) });
    await proxy.start();
    // w2 talks to Redis through the proxy: its commands and its subscriber both.
    const w2 = await r.startWorker('w2', { redis: connectRedis({ url: proxy.url }) });
    expect(w2.owned()).toHaveLength(0);
    // The next SUBSCRIBE (a shard's wake-up channel) silences the connection that sends it: the
    // subscriber's node cut off, the command connection still fine.
    proxy.silenceWhenSent(/\$9\r\nsubscribe\r\n/i);
    // w1 leaves: w2 takes all 8 shards.
    await w1.stop();
    r.workers.splice(r.workers.indexOf(w1), 1);
    await waitFor('w2 to run all 8 shards', () => w2.owned().length === 8 && w2.status().shards.every((s) => s.state === 'running'));
    expect(proxy.silencedCount).toBe(1);
    // A message to one of them: its wake-up is lost on the silent subscriber, the sweep finds it.
    const c = await r.client();
    expect(await c.ask<LedgerReply>('user', 'ledger', '@cut:test', { op: 'append', producer: 'p', seq: 1, value: 7 })).toMatchObject({ count: 1, sum: 7 });
  });
});

describe('the fair share counts only workers that take shards (single redis)', () => {
  let r: Rig;
  afterEach(async () => {
    await r?.close();
  });

  it("a dead worker's shards are all taken by the accepting workers while a draining worker lives", async () => {
    r = await rig('single', { shards: 8 });
    const w1 = await r.startWorker('w1');
    expect(w1.owned().length).toBe(16);
    // w2 is alive and draining (a drain under way, or one left on its control key).
    const w2 = await r.startWorker('w2');
    await r.redis.set(r.keys.workerControl('w2'), 'drain');
    await waitFor('w2 to report the drain', async () => (await r.redis.hget(r.keys.workerInfo('w2'), 'state')) === 'draining', 5000);
    expect(w2.owned().length).toBe(0);
    w1.crash();
    const w3 = await r.startWorker('w3');
    // Every shard ends up run by w3 (w2 takes none); give the takeover a few lease TTLs.
    await waitFor('w3 to take every shard', () => w3.owned().length === 16, 8000).catch(() => undefined);
    expect({ w2: w2.owned().length, w3: w3.owned().length }).toEqual({ w2: 0, w3: 16 });
  });
});

describe('a takeover whose runner fails to start (single redis)', () => {
  let r: Rig;
  afterEach(async () => {
    await r?.close();
  });

  it('gives the lease back: the shard moved is run by its target afterwards, not held by nobody', async () => {
    r = await rig('single', { shards: 4 });
    const w1 = await r.startWorker('w1');
    // w2's first XGROUP on user:0 fails (one Redis error during the takeover).
    const w2redis = connectRedis(r.target);
    let failOnce = true;
    const xgroup = w2redis.xgroup.bind(w2redis) as (...a: unknown[]) => Promise<unknown>;
    (w2redis as unknown as { xgroup: (...a: unknown[]) => Promise<unknown> }).xgroup = (...a: unknown[]) => {
      if (failOnce && String(a[1]).includes('{u:0}')) {
        failOnce = false;
        return Promise.reject(new Error('simulated: connection reset during the takeover'));
      }
      return xgroup(...a);
    };
    const w2 = await r.startWorker('w2', { redis: w2redis });
    // w1 took everything first; give w2 its fair half (ceil(4 / 2)) by moves, so that it looks at
    // no free shard by itself afterwards.
    const moves = w1.owned().filter((n) => n.startsWith('user:') && n !== 'user:0').slice(0, 2).map((n) => ({ family: 'user' as const, shard: Number(n.split(':')[1]), from: 'w1', to: 'w2' }));
    await executeMoves(r.redis, r.keys, moves);
    expect(w2.owned().filter((n) => n.startsWith('user:')).length).toBe(2);
    // Now move user:0 to w2: its runner fails to start once.
    await executeMoves(r.redis, r.keys, [{ family: 'user', shard: 0, from: 'w1', to: 'w2' }]);
    expect(failOnce).toBe(false);
    const runBy = await waitFor('user:0 to be run by a worker', () => w1.owned().includes('user:0') || w2.owned().includes('user:0'), 5000).catch(() => false);
    expect({ lease: await r.redis.hget(r.keys.shard('user', 0).lease, 'owner'), runBy }).toEqual({ lease: 'w2', runBy: true });
    expect(w2.runner('user:0')?.state).toBe('running');
    // It serves it.
    const c = await r.client();
    const actor = Array.from({ length: 200 }, (_x, i) => `@u${i}:test`).find((a) => shardOf(a, r.shardCounts.user) === 0)!;
    expect(await c.ask<LedgerReply>('user', 'ledger', actor, { op: 'append', producer: 'p', seq: 1, value: 5 })).toMatchObject({ count: 1, sum: 5 });
  });
});

describe('stop() under a slow message (single redis)', () => {
  let r: Rig;
  afterEach(async () => {
    await r?.close();
  });

  it('keeps renewing its lease epoch while it drains: a stop longer than the lease TTL is a hand-back, no takeover', async () => {
    r = await rig('single', { shards: 4, ttlMs: 1500, renewMs: 300 });
    let inSlow = false;
    const w1 = await r.startWorker('w1', {
      faultPoint: async (point, entry) => {
        if (point === 'before-commit' && entry.mid === 'slow-1') {
          inSlow = true;
          await new Promise((res) => setTimeout(res, 3000));
        }
      },
    });
    const w2 = await r.startWorker('w2');
    expect(w2.owned().length).toBe(0);
    const c = await r.client();
    const asked = c.ask<LedgerReply>('user', 'ledger', '@slow:test', { op: 'append', producer: 'p', seq: 1, value: 1 }, { mid: 'slow-1', timeoutMs: 30_000 });
    await waitFor('the slow message to be in hand', () => inSlow, 10_000, 5);
    let stopped = false;
    let killedWhileStopping: string | null = null;
    const watch = (async () => {
      while (!stopped) {
        killedWhileStopping ??= await r.redis.hget(r.keys.workerLease('w1'), 'killed');
        await new Promise((res) => setTimeout(res, 20));
      }
    })();
    await w1.stop();
    stopped = true;
    await watch;
    expect(await asked).toMatchObject({ count: 1, sum: 1 });
    // The epoch of the stopping worker was not declared dead by a taker while it was stopping.
    expect(killedWhileStopping).toBeNull();
    // Its shards were handed back: w2 takes them all.
    await waitFor('w2 to take every shard', () => w2.owned().length === 8);
  });
});

describe('control words (single redis)', () => {
  let r: Rig;
  afterEach(async () => {
    await r?.close();
  });

  it("a worker restarted under the same id ignores its predecessor's drain or stop", async () => {
    r = await rig('single', { shards: 4 });
    await r.redis.set(r.keys.workerControl('w1'), 'drain');
    const w1 = await r.startWorker('w1');
    expect(w1.owned()).toHaveLength(8);
    expect(await r.redis.get(r.keys.workerControl('w1'))).toBeNull();
    expect(w1.status().accepting).toBe(true);
    let stopAsked = false;
    await r.redis.set(r.keys.workerControl('w2'), 'stop');
    const w2 = await r.startWorker('w2', { onStopRequested: () => (stopAsked = true) });
    // A few rounds: none reads a stop.
    await new Promise((res) => setTimeout(res, 1000));
    expect({ stopAsked, accepting: w2.status().accepting }).toEqual({ stopAsked: false, accepting: true });
  });

  it('a drain that fails is called off: the worker takes shards again', async () => {
    r = await rig('single', { shards: 4 });
    const w1 = await r.startWorker('w1');
    // w2 serves rooms only: the user shards drained to it never reach it, and the drain times out.
    await r.startWorker('w2', { families: ['room'] });
    const phases: string[] = [];
    await expect(drain(r.redis, r.keys, r.shardCounts, 1500, 'w1', { timeoutMs: 2000, onPhase: (p) => phases.push(p) })).rejects.toThrow(/did not reach/);
    expect(phases).toContain('acknowledged');
    expect(await r.redis.get(r.keys.workerControl('w1'))).toBeNull();
    await waitFor('w1 to take shards again', async () => (await r.redis.hget(r.keys.workerInfo('w1'), 'state')) === 'running' && w1.status().accepting);
  });
});
