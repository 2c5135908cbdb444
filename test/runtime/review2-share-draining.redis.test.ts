/**
 * Review 2: a worker that does not accept shards (draining: its control key says so — e.g. left
 * over from a drain whose worker was killed before it deleted the key, and read again by the
 * worker restarted under the same id) still counts as live in every other worker's fair share
 * (ceil(shards / live workers)). When another worker dies, the survivors take only their share of
 * its shards: the rest stay owned by nobody, their messages never processed.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { rig, waitFor, type Rig } from './harness';

describe('fair share with a non-accepting worker alive (single redis)', () => {
  let r: Rig;
  afterEach(async () => {
    await r?.close();
  });

  it("a dead worker's shards are all taken by the accepting workers", async () => {
    r = await rig('single', { shards: 8 });
    const w1 = await r.startWorker('w1');
    expect(w1.owned().length).toBe(16);
    // w2 comes up with a drain left on its control key (its previous process was killed mid-drain).
    await r.redis.set(r.keys.workerControl('w2'), 'drain');
    const w2 = await r.startWorker('w2');
    expect(w2.owned().length).toBe(0);
    w1.crash();
    const w3 = await r.startWorker('w3');
    // Every shard ends up run by w3 (w2 takes none); give the takeover a few lease TTLs.
    await waitFor('w3 to take every shard', () => w3.owned().length === 16, 8000).catch(() => undefined);
    expect({ w2: w2.owned().length, w3: w3.owned().length }).toEqual({ w2: 0, w3: 16 });
  });
});
