/**
 * Which inbox entry format an asker writes (src/runtime/actor-client.ts, FormatWatch): field pairs
 * (format 1, which every version reads) until every live worker says in its heartbeat that it
 * reads the packed entry (format 2); back to field pairs while a live worker does not say so (one
 * of an earlier version during a rolling upgrade, which would dead-letter a packed entry). Entries
 * of both formats in one inbox are applied once each, in order. Real redis-server, both modes.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { LedgerReply } from '../../actors/ledger';
import { readWorkers } from '../../src/runtime/cluster-admin';
import { shardOf } from '../../src/store/shards';
import { MODES, rig, waitFor, type Rig } from './harness';

let r: Rig | undefined;
afterEach(async () => {
  await r?.close();
  r = undefined;
});

/** The field names of the newest entry of the inbox of `actorId`'s user shard. */
async function lastFields(x: Rig, actorId: string): Promise<string[]> {
  const inbox = x.keys.shard('user', shardOf(actorId, x.shardCounts.user)).inbox;
  const [entry] = (await x.redis.xrevrangeBuffer(inbox, '+', '-', 'COUNT', 1)) as [Buffer, Buffer[]][];
  return entry![1].filter((_, i) => i % 2 === 0).map(String);
}

describe.each(MODES)('the inbox entry format askers write (%s)', (mode) => {
  it('field pairs until every live worker reads packed entries, packed then, field pairs again while an older worker lives; both applied in order', async () => {
    r = await rig(mode, { shards: 4 });
    const c = await r.client();
    const actor = '@format:test';
    const append = (seq: number) => c.ask<LedgerReply>('user', 'ledger', actor, { op: 'append', producer: 'p', seq, value: seq });

    // No worker yet: field pairs (the message waits in the inbox for one).
    expect(c.inboxFormat).toBe(1);
    const first = append(1);
    await waitFor('the first entry', async () => (await r!.redis.xlen(r!.keys.shard('user', shardOf(actor, r!.shardCounts.user)).inbox)) === 1);
    expect(await lastFields(r, actor)).toEqual(['mid', 'a', 'k', 'b', 't', 'r']);

    // A worker of this version: its heartbeat says it reads format 2.
    await r.startWorker('w1');
    expect((await first).count).toBe(1);
    await waitFor('the asker to see the worker', () => c.inboxFormat === 2, 10_000);
    expect((await append(2)).count).toBe(2);
    expect(await lastFields(r, actor)).toEqual(['m']);

    // A live worker whose heartbeat says nothing of formats: one of an earlier version.
    await r.redis.zadd(r.keys.workers(), Date.now(), 'older-1');
    await r.redis.hset(r.keys.workerInfo('older-1'), { pid: 1, state: 'running', shards: 0 });
    await waitFor('the asker to go back to field pairs', () => c.inboxFormat === 1, 10_000);
    // What `npm run cluster -- status` and the dashboard show of each.
    const shown = Object.fromEntries((await readWorkers(r.redis, r.keys, 120_000)).map((w) => [w.id, w.inboxFormat]));
    expect(shown).toEqual({ w1: 2, 'older-1': 1 });
    expect((await append(3)).count).toBe(3);
    expect(await lastFields(r, actor)).toEqual(['mid', 'a', 'k', 'b', 't', 'r']);

    // A worker of an earlier version started under the id a worker of this version had: its
    // heartbeat rewrites the record's time and leaves the stale format stamp. Field pairs still.
    await r.redis.zrem(r.keys.workers(), 'older-1');
    await r.redis.zadd(r.keys.workers(), Date.now(), 'reused-1');
    await r.redis.hset(r.keys.workerInfo('reused-1'), { heartbeat: Date.now(), inbox_format: `2:${Date.now() - 60_000}` });
    await new Promise((res) => setTimeout(res, 6_000));
    expect(c.inboxFormat).toBe(1);

    // It stopped (its record gone): packed again.
    await r.redis.zrem(r.keys.workers(), 'reused-1');
    await waitFor('the asker to pack again', () => c.inboxFormat === 2, 10_000);
    // Several asks of one call, after entries of the other format: applied once each, in order.
    const replies = await Promise.all([4, 5, 6].map(append));
    expect(replies.map((x) => x.count)).toEqual([4, 5, 6]);
    expect(await lastFields(r, actor)).toEqual(['m']);
    expect(await c.ask('user', 'ledger', actor, { op: 'read' })).toMatchObject({ count: 6, sum: 21, outOfOrder: 0 });
  });
});
