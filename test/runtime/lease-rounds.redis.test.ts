/**
 * A worker's lease round against the failures issue 24's multi-host bed pointed at, on real Redis:
 * - a heartbeat write that fails does not stop the renewal (the heartbeat says the worker is
 *   alive; the renewal is what keeps its shards), so the worker keeps its shards;
 * - taking shards does not wait on the wake-up subscriber: with the subscriber's connection cut
 *   off (silent, as a cut host's node), the shards are still taken, run, and answer (the safety
 *   sweep finds what their lost wake-ups would have announced).
 */
import { afterEach, describe, expect, inject, it } from 'vitest';
import type { LedgerReply } from '../../actors/ledger';
import { connectRedis } from '../../src/store/redis';
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
