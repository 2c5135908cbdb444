/**
 * Review 2: Worker.tryAcquire takes the lease, then ShardRunner.start() fails (one Redis error
 * during the takeover: XGROUP, XAUTOCLAIM, XPENDING, the timers' ZRANGE, or on a Cluster a
 * pending derived write to an unreachable node). The catch drops the runner (lose()) but keeps the
 * lease: it names the worker's live epoch, renewed every round, so no other worker may take the
 * shard, and the worker itself only looks again while it is below its fair share. A shard moved
 * to a worker at or above its share (move-shard, a drain's target) is then held by nobody, while
 * executeMoves reports the move done (the lease names the target).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { executeMoves } from '../../src/runtime/cluster-admin';
import { connectRedis } from '../../src/store/redis';
import { rig, waitFor, type Rig } from './harness';

describe('a takeover whose runner fails to start (single redis)', () => {
  let r: Rig;
  afterEach(async () => {
    await r?.close();
  });

  it('the shard is run by someone afterwards', async () => {
    r = await rig('single', { shards: 4 });
    const w1 = await r.startWorker('w1');
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
    // w1 took everything first; give w2 a fair half by moves.
    const moves = w1.owned().filter((n) => n.startsWith('user:')).slice(0, 2).filter((n) => n !== 'user:0').map((n) => ({ family: 'user' as const, shard: Number(n.split(':')[1]), from: 'w1', to: 'w2' }));
    await executeMoves(r.redis, r.keys, moves);
    expect(w2.owned().filter((n) => n.startsWith('user:')).length).toBe(2); // its share: ceil(4 / 2)
    // Now move user:0 to w2: its runner fails to start once.
    await executeMoves(r.redis, r.keys, [{ family: 'user', shard: 0, from: w1.owned().includes('user:0') ? 'w1' : 'w2', to: 'w2' }]);
    expect(failOnce).toBe(false);
    const runBy = await waitFor('user:0 to be run by a worker', () => w1.owned().includes('user:0') || w2.owned().includes('user:0'), 5000).catch(() => false);
    expect({ lease: await r.redis.hget(r.keys.shard('user', 0).lease, 'owner'), runBy }).toEqual({ lease: 'w2', runBy: true });
  });
});
