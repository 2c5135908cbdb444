/**
 * Review 2: Worker.stop() clears the lease-round timer before it drains its runners, and a round
 * asked for meanwhile returns at once (`stopped`): no renewal while the in-flight messages finish.
 * A drain longer than the lease TTL lets the epoch lapse; another worker declares it dead and
 * takes the shards over (reclaiming the very entries the stopping worker is still processing),
 * instead of the clean hand-back stop() promises.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { rig, waitFor, type Rig } from './harness';
import type { LedgerReply } from '../../actors/ledger';

describe('stop() under a slow message (single redis)', () => {
  let r: Rig;
  afterEach(async () => {
    await r?.close();
  });

  it('keeps its lease epoch alive while it drains: no takeover of a stopping worker', async () => {
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
    await asked;
    // The epoch of the stopping worker was not declared dead by a taker while it was stopping.
    expect(killedWhileStopping).toBeNull();
  });
});
