/**
 * Review finding: the sweep's idle reclaim (ShardRunner.claimIdle) skips the entries its runner
 * holds in memory, but ShardRunner.deliveryCounts then asks XPENDING for `claimed.length` rows of
 * the range first..last claimed: the skipped (held) entries inside that range take rows of the
 * answer, and a claimed entry past them gets the default delivery count 1 instead of its own.
 */
import { afterEach, expect, it } from 'vitest';
import type { LedgerReply } from '../../actors/ledger';
import { INBOX_GROUP } from '../../src/store/keys';
import { rig, waitFor, type Rig } from './harness';

let r: Rig | undefined;
afterEach(async () => {
  await r?.close();
  r = undefined;
});

it('entries claimed by the idle reclaim around one the runner holds keep their own delivery counts (both past the limit are dead-lettered)', async () => {
  r = await rig('single', { shards: 1 });
  let release: () => void = () => undefined;
  const gate = new Promise<void>((res) => (release = res));
  let held = false;
  // maxDeliveries 1: an entry delivered twice is dead-lettered.
  await r.startWorker('w1', {
    idleBoundMs: 300,
    pollMs: 100,
    maxDeliveries: 1,
    faultPoint: async (point, entry) => {
      if (point === 'before-commit' && entry.mid === 'slow-1') {
        held = true;
        await gate;
      }
    },
  });
  const c = await r.client();
  const inbox = r.keys.shard('user', 0).inbox;
  const append = (actor: string, mid: string, seq: number) => c.ask<LedgerReply>('user', 'ledger', actor, { op: 'append', producer: 'p', seq, value: seq }, { mid, timeoutMs: 30_000 });
  // Ids in the inbox: slow-1 < c-1 < slow-2 < c-2. The slow actor's two are held by the runner
  // (the first waits on the gate, the second queues behind it); c-1 and c-2 finish.
  const slow1 = append('@slow:test', 'slow-1', 1);
  await waitFor('slow-1 to be held', () => held);
  await append('@c1:test', 'c-1', 1);
  const slow2 = append('@slow:test', 'slow-2', 2);
  await waitFor('slow-2 to be read', async () => ((await r!.redis.xpending(inbox, INBOX_GROUP)) as [number])[0] === 2);
  await append('@c2:test', 'c-2', 1);
  const ids = (await r.redis.xrange(inbox, '-', '+')).map(([id]) => id);
  expect(ids).toHaveLength(4);
  const [, c1, , c2] = ids as [string, string, string, string];
  // c-1 and c-2 pending again for w1, lost track of (as after a reply and ack that failed), idle
  // long past the bound, each delivered once; their done records gone, so they are not dups.
  await r.redis.del(r.keys.shard('user', 0).done('c-1'), r.keys.shard('user', 0).done('c-2'));
  await r.redis.call('XCLAIM', inbox, INBOX_GROUP, 'w1', 0, c1, c2, 'IDLE', 100_000, 'RETRYCOUNT', 1, 'FORCE');
  // The sweep's idle reclaim claims both (each now delivered twice, past maxDeliveries 1) and
  // leaves slow-2 (held, between them) alone: both go to the dead-letter stream.
  await waitFor('c-1 and c-2 to be finished with', async () => {
    const rows = (await r!.redis.xpending(inbox, INBOX_GROUP, '-', '+', 10)) as [string][];
    return !rows.some(([id]) => id === c1 || id === c2);
  });
  const dead = await r.redis.xrange(r.keys.shard('user', 0).dead, '-', '+');
  const deadEntries = dead.map(([, f]) => f[f.indexOf('entry') + 1]);
  release();
  await Promise.all([slow1, slow2]);
  expect(deadEntries.sort()).toEqual([c1, c2].sort());
});
