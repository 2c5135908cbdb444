/**
 * Review of push delivery (4657ed2): interleavings where a push is applied over an entry that is
 * pending above the runner's last id for ANOTHER consumer — which the read path (inbox-read-2.lua)
 * claims first, and no push ever brings. Real redis-server; the ledger actor counts messages
 * applied out of order.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { LedgerReply } from '../../actors/ledger';
import { encode } from '../../src/store/codec';
import { INBOX_GROUP } from '../../src/store/keys';
import { rig, waitFor, type Rig } from './harness';

describe('push delivery review (single redis)', () => {
  let r: Rig | undefined;
  afterEach(async () => {
    await r?.close();
    r = undefined;
  });

  it('a holder that stalled past its lease and read on took an entry: a push to the new holder does not jump over it', async () => {
    // No lease round during the test (renewMs): w1 learns that its shard was taken only from its
    // own commits, as a holder that stalled past its lease does. No sweep, no idle reclaim.
    r = await rig('single', { shards: 1, renewMs: 30_000, ttlMs: 120_000 });
    const w1 = await r.startWorker('w1', { pollMs: 60_000, idleBoundMs: 600_000 });
    const c = await r.client();
    const actor = '@stale-read:test';
    const append = (seq: number) => c.ask<LedgerReply>('user', 'ledger', actor, { op: 'append', producer: 'p', seq, value: seq }, { timeoutMs: 5_000 });
    expect(await append(1)).toMatchObject({ count: 1, outOfOrder: 0 });
    const shard = r.keys.shard('user', 0);

    // w1's epoch runs out (it stalls); w2 takes the shard over (its holding found dead).
    await r.redis.hset(r.keys.workerLease('w1'), 'expires', '0');
    const w2 = await r.startWorker('w2', { pollMs: 60_000, idleBoundMs: 600_000 });
    await waitFor('w2 to run the shard', () => w2.runner('user:0')?.state === 'running');
    // w2 takes pushes as they come (a read after its subscription took effect has run).
    let warm = 0;
    await waitFor('w2 to apply a push', async () => {
      await c.ask('user', 'ledger', '@warm:test', { op: 'append', producer: 'p', seq: ++warm, value: 1 });
      return (w2.runner('user:0')?.pushedEntries ?? 0) > 0;
    });

    // Message 2 is appended by a producer that publishes its wake-up in a second command (as
    // ordered-delivery.ts does: XADD, then PUBLISH '1'). In between, w1 — still running the shard
    // as far as it knows — reads on (a timer, a sweep or a back-pressure wake), takes it into its
    // own pending list, and finds the shard taken at its commit.
    await r.redis.xadd(shard.inbox, '*', 'mid', 'stale-2', 'a', actor, 'k', 'ledger', 'b', encode({ op: 'append', producer: 'p', seq: 2, value: 2 }), 't', String(Date.now()));
    const id2 = ((await r.redis.xrevrange(shard.inbox, '+', '-', 'COUNT', 1)) as [string, string[]][])[0]![0];
    w1.runner('user:0')!.wake();
    await waitFor('w1 to read message 2 and let the shard go', () => !w1.owned().includes('user:0'));
    const rows = (await r.redis.xpending(shard.inbox, INBOX_GROUP, '-', '+', 100)) as [string, string, number, number][];
    expect(rows.find((row) => row[0] === id2)?.[1]).toBe('w1');

    // Message 3 comes by push before message 2's wake-up: w2 must still apply 2 first (its read
    // claims entries pending above its last id, whoever holds them), not 3 over it.
    const third = await append(3).catch((e: Error) => e.message);
    // Message 2's wake-up, late.
    await r.redis.publish(r.keys.wakeChannel('user', 0), '1');
    expect(third).toEqual({ count: 3, sum: 6, outOfOrder: 0 });
    expect(await c.ask('user', 'ledger', actor, { op: 'read' })).toMatchObject({ count: 3, sum: 6, outOfOrder: 0 });
  });

  it('a read that held back its new entries behind a full page of pending rows (one trimmed) and came back short: a push does not jump over them', async () => {
    // readBatch 3: a page of pending rows is 3. No sweep, no idle reclaim.
    r = await rig('single', { shards: 1 });
    const w = await r.startWorker('w1', { pollMs: 60_000, idleBoundMs: 600_000, readBatch: 3 });
    const c = await r.client();
    const shard = r.keys.shard('user', 0);
    const runner = () => w.runner('user:0')!;
    let warm = 0;
    await waitFor('w1 to apply a push', async () => {
      await c.ask('user', 'ledger', '@warm:test', { op: 'append', producer: 'p', seq: ++warm, value: 1 });
      return runner().pushedEntries > 0;
    });
    const actor = '@held-back:test';
    const entry = (a: string, seq: number) => ['mid', `held-${a}-${seq}`, 'a', a, 'k', 'ledger', 'b', encode({ op: 'append', producer: 'p', seq, value: seq }), 't', String(Date.now())] as const;
    // Three entries delivered to w1 whose answer it never got (a read resent after its connection
    // dropped finds them pending above its last id), the first of them trimmed away since.
    const m = r.redis.multi();
    m.xadd(shard.inbox, '*', ...entry('@trimmed:test', 1));
    m.xadd(shard.inbox, '*', ...entry(actor, 1));
    m.xadd(shard.inbox, '*', ...entry(actor, 2));
    m.xreadgroup('GROUP', INBOX_GROUP, 'w1', 'COUNT', 3, 'STREAMS', shard.inbox, '>');
    const res = (await m.exec())!;
    await r.redis.xdel(shard.inbox, String(res[0]![1]));
    // Message 3 and its wake-up: w1's read gives the two pending entries above its last id and
    // holds message 3 back (pending for w1, above the last entry given), as there may be more
    // pending rows; two entries for a page of three looks like the end.
    await r.redis.xadd(shard.inbox, '*', ...entry(actor, 3));
    await r.redis.publish(r.keys.wakeChannel('user', 0), '1');
    await waitFor('messages 1 and 2 applied', async () => Number(((await r!.redis.xpending(shard.inbox, INBOX_GROUP)) as [number])[0]) <= 1);
    // Message 4 by push: message 3 must still come first.
    const fourth = await c.ask<LedgerReply>('user', 'ledger', actor, { op: 'append', producer: 'p', seq: 4, value: 4 }, { timeoutMs: 5_000 }).catch((e: Error) => e.message);
    expect(fourth).toEqual({ count: 4, sum: 10, outOfOrder: 0 });
  });
});
