/** Inbound transactions once per (origin, txn id): claim, replay, concurrent duplicate, release. */
import RedisMock from 'ioredis-mock';
import { describe, expect, it } from 'vitest';
import { TxnDedupe } from '../../src/federation/inbound/txn-dedupe';
import { errorForOutcome } from '../../src/federation/inbound/transaction';
import { KeySpace } from '../../src/store/keys';
import type { RedisClient } from '../../src/store/redis';

const fresh = () => new TxnDedupe(new RedisMock() as unknown as RedisClient, new KeySpace(`t${Math.random()}:`));

describe('TxnDedupe', () => {
  it('the first request claims; a replay gets the stored answer', async () => {
    const d = fresh();
    const first = await d.claim<{ pdus: object }>('a.example', 't1');
    expect(first.kind).toBe('claimed');
    if (first.kind !== 'claimed') return;
    await first.finish({ pdus: { $e: {} } });
    expect(await d.claim('a.example', 't1')).toEqual({ kind: 'done', response: { pdus: { $e: {} } } });
    // Another origin's txn of the same id is its own.
    expect((await d.claim('b.example', 't1')).kind).toBe('claimed');
  });

  it('a concurrent duplicate waits for the answer; one that waits too long is busy', async () => {
    const d = fresh();
    const first = await d.claim<string>('a.example', 't2');
    const waiting = d.claim<string>('a.example', 't2');
    expect((await d.claim('a.example', 't2', AbortSignal.timeout(80))).kind).toBe('busy');
    if (first.kind === 'claimed') await first.finish('answer');
    expect(await waiting).toEqual({ kind: 'done', response: 'answer' });
  });

  it('a released claim (processing failed) lets a retry process', async () => {
    const d = fresh();
    const first = await d.claim('a.example', 't3');
    if (first.kind === 'claimed') await first.release();
    expect((await d.claim('a.example', 't3')).kind).toBe('claimed');
  });
});

describe('errorForOutcome', () => {
  it('success for what the room took (also soft-failed and duplicates), an error otherwise', () => {
    for (const status of ['accepted', 'soft_failed', 'outlier', 'duplicate'] as const) expect(errorForOutcome({ event_id: '$e', status })).toBeUndefined();
    expect(errorForOutcome({ event_id: '$e', status: 'dropped', reason: 'bad signature' })).toBe('dropped: bad signature');
    expect(errorForOutcome({ event_id: '$e', status: 'missing', missing: ['$p'], reason: 'unknown prev_events' })).toMatch(/\$p/);
  });
});
