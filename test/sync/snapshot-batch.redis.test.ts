/**
 * The /sync snapshot reads of computations that start together (src/sync/snapshot-batch.ts,
 * sync-snapshot-3.lua) and script segments batched alike (src/store/script-batch.ts,
 * unread-counts-4.lua), against a real Redis: each computation gets what it would have read alone
 * — its own index, feed, to-device entries, the outbox parts it asked for — with one cut for the
 * batch, and the feed's trimming check judged in the script as `lostFromInfo` judges it.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { connectRedis, type RedisClient } from '../../src/store/redis';
import { SnapshotBatcher, type SnapshotRequest } from '../../src/sync/snapshot-batch';
import { lostSince } from '../../src/sync/outbox-cache';
import { ScriptBatcher } from '../../src/store/script-batch';

let redis: RedisClient;
beforeAll(() => {
  redis = connectRedis({ url: inject('redisUrl') });
});
afterAll(() => redis.disconnect());

const k = (name: string) => `sb${randomBytes(4).toString('hex')}:${name}`;

function request(p: string, feedFrom: string, outboxes: { stream: string; fromMs: number }[] = []): SnapshotRequest {
  return { keys: [`${p}:rooms`, `${p}:written`, `${p}:forgotten`, `${p}:partial`, `${p}:feed`, `${p}:inbox`], args: [feedFrom, '', '101', ''], outboxes };
}

const ids = (rows: [Buffer, Buffer[]][]) => rows.map(([id]) => id.toString());

/** Counts the calls of one of the client's commands (EVALSHA: the scripts) while `fn` runs. */
async function counting<T>(command: string, fn: () => Promise<T>): Promise<{ result: T; calls: number }> {
  const client = redis as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
  const original = client[command]!;
  let calls = 0;
  client[command] = (...a: unknown[]) => {
    calls++;
    return original.apply(redis, a);
  };
  try {
    return { result: await fn(), calls };
  } finally {
    client[command] = original;
  }
}

describe('SnapshotBatcher', () => {
  it('answers computations asked together in one call, one cut, each with its own reads', async () => {
    const a = k('a');
    const b = k('b');
    const outbox = k('outbox');
    await redis.hset(`${a}:rooms`, '!r1:x', '5 join');
    await redis.hset(`${b}:rooms`, '!r2:x', '7 join', '!r3:x', '9 invite');
    await redis.sadd(`${b}:forgotten`, '!old:x');
    const past = Date.now() - 5_000;
    await redis.xadd(`${a}:inbox`, `${past}-1`, 'm', 'for a');
    await redis.xadd(`${b}:feed`, `${past}-1`, 'k', 'd', 'u', '@c:x');
    await redis.xadd(outbox, `${past}-1`, 'n', '1');
    await redis.xadd(outbox, `${past + 10}-1`, 'n', '2');
    const batcher = new SnapshotBatcher(redis);
    const { result, calls } = await counting('evalshaBuffer', () =>
      Promise.all([
        batcher.read(request(a, '', [{ stream: outbox, fromMs: past }])),
        batcher.read(request(b, String(past - 1000), [{ stream: outbox, fromMs: past }])),
        batcher.read(request(b, String(past - 1000), [{ stream: outbox, fromMs: past + 5 }])),
      ]),
    );
    const [ra, rb, rc] = result;
    expect(calls).toBe(1);
    expect(ra.time.map(String)).toEqual(rb.time.map(String));
    expect(rb.time.map(String)).toEqual(rc.time.map(String));
    expect(ra.own[0].map(String)).toEqual(['!r1:x', '5 join']);
    expect(rb.own[0].map(String)).toEqual(['!r2:x', '7 join', '!r3:x', '9 invite']);
    expect(rb.own[2].map(String)).toEqual(['!old:x']);
    expect(ids(ra.own[6])).toEqual([`${past}-1`]);
    expect(ids(rb.own[6])).toEqual([]);
    // a asked for the whole feed (none); b for its window, which nothing trimmed.
    expect(ra.own[4]).toBe(1);
    expect(rb.own[4]).toBe(2);
    expect(ids(rb.own[5])).toEqual([`${past}-1`]);
    // The same stream from the same point: one read, the same entries for both.
    expect(ids(ra.outboxes[0]!)).toEqual([`${past}-1`, `${past + 10}-1`]);
    expect(ids(rb.outboxes[0]!)).toEqual([`${past}-1`, `${past + 10}-1`]);
    expect(ids(rc.outboxes[0]!)).toEqual([`${past + 10}-1`]);
    // Asked in different turns: separate calls, each its own cut.
    const first = await batcher.read(request(a, ''));
    const second = await batcher.read(request(a, ''));
    expect(Number(String(second.time[0])) * 1e6 + Number(String(second.time[1]))).toBeGreaterThanOrEqual(Number(String(first.time[0])) * 1e6 + Number(String(first.time[1])));
  });

  it("judges the feed's trimming in the script as lostSince does from XINFO", async () => {
    const batcher = new SnapshotBatcher(redis);
    const base = Date.now() - 60_000;
    const p = k('t');
    const feed = `${p}:feed`;
    const check = async (sinceMs: number) => {
      const r = await batcher.read(request(p, String(sinceMs)));
      const lost = await lostSince(redis, feed, sinceMs);
      expect(r.own[4]).toBe(lost === 'missing' ? 0 : lost ? 3 : 2);
      return r.own[4];
    };
    expect(await check(base)).toBe(0); // no feed
    for (let i = 0; i < 10; i++) await redis.xadd(feed, `${base + i * 10}-0`, 'k', 'd', 'u', `@u${i}:x`);
    expect(await check(base)).toBe(2);
    await redis.xtrim(feed, 'MAXLEN', 5);
    // Trimmed below base+50: a window from base+50 is whole, one from base+40 (or base+45) may not be.
    expect(await check(base + 50)).toBe(2);
    expect(await check(base + 45)).toBe(3);
    expect(await check(base + 40)).toBe(3);
    await redis.xdel(feed, `${base + 70}-0`);
    expect(await check(base + 60)).toBe(3);
    expect(await check(base + 80)).toBe(2);
  });
});

describe('ScriptBatcher', () => {
  it('sends the segments asked in one turn as one call and gives each caller its own reply', async () => {
    const user = (n: number) => `@u${n}:x`;
    // unread-counts-4.lua's nine keys per room: the room's receipts and push logs, the user's
    // exceptions and the unread sets of before the logs, the room's sentUpTo.
    const keysOf = (n: number) => [k(`receipts${n}`), k(`log${n}`), k(`logh${n}`), k(`logt${n}`), k(`px${n}`), k(`threads${n}`), k(`unread${n}`), k(`highlight${n}`), k(`sent${n}`)];
    const sets = [keysOf(0), keysOf(1), keysOf(2)];
    // User n has n + 1 unread notifications after position 10, n of them highlights.
    for (let n = 0; n < 3; n++) {
      for (let i = 0; i <= n; i++) await redis.zadd(sets[n]![1]!, 11 + i, `$e${i}`);
      for (let i = 0; i < n; i++) await redis.zadd(sets[n]![2]!, 11 + i, `$e${i}`);
    }
    const batcher = new ScriptBatcher(redis, 'unreadCounts');
    const { result: replies, calls } = await counting('evalsha', () => Promise.all(sets.map((keys, n) => batcher.call(keys, [1, 2, `m.read\u0000${user(n)}`, `m.read.private\u0000${user(n)}`, user(n), 10]))));
    expect(calls).toBe(1);
    (replies as [string, string, number, number, string[]][][]).forEach((rows, n) => {
      expect(rows).toHaveLength(1);
      expect(rows[0]).toEqual(['10', '10', n + 1, n, []]);
    });
  });
});
