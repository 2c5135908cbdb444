/**
 * The inbox read (GroupReads.readInbox: inbox-read-2.lua and XREADGROUP in one MULTI) on a real
 * Redis, single server and Cluster: entries delivered above the runner's last id and left pending
 * — by a read whose answer was lost, or by a holder that stalled past its lease and read on —
 * come first, claimed by the reader, then the new ones; trimmed pending entries are acknowledged;
 * one inbox's trouble fails that shard alone.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { GroupReads } from '../../src/runtime/group-reads';
import { startManagedRedis } from '../../src/runtime/managed-redis';
import { connectRedis, type RedisClient } from '../../src/store/redis';
import { freePort } from '../setup/free-port';
import { MODES, targetFor } from './harness';

const GROUP = 'g';

/** A fresh inbox with its group (one hash tag: a Cluster slot of its own). */
async function makeInbox(redis: RedisClient): Promise<string> {
  const name = `gr:{${randomBytes(5).toString('hex')}}:inbox`;
  await redis.xgroup('CREATE', name, GROUP, '0', 'MKSTREAM');
  return name;
}
/** Entry n's id: its one field is n. */
const addTo = (redis: RedisClient, stream: string, n: number) => redis.xadd(stream, '*', 'n', String(n)) as Promise<string>;
/** The entries' n, in order. */
const ids = (entries: [Buffer, Buffer[] | null][]) => entries.map(([, f]) => f![1]!.toString());

describe.each(MODES)('inbox reads (%s redis)', (mode) => {
  let redis: RedisClient | undefined;
  afterEach(() => {
    redis?.disconnect();
    redis = undefined;
  });

  const pendingOf = async (stream: string) => ((await redis!.xpending(stream, GROUP, '-', '+', 100)) as [string, string, number, number][]).map((r) => [r[0], r[1], Number(r[3])]);

  it('gives new entries, then nothing more; what it gave is pending for the reader', async () => {
    redis = connectRedis(targetFor(mode));
    const s = await makeInbox(redis);
    const a = await addTo(redis, s, 1);
    const b = await addTo(redis, s, 2);
    const reads = new GroupReads(redis, GROUP, 'w1');
    const first = await reads.readInbox({ inbox: s, after: '0-0', count: 10 });
    expect(ids(first.entries)).toEqual(['1', '2']);
    expect(first.counts).toEqual([]);
    expect(await pendingOf(s)).toEqual([
      [a, 'w1', 1],
      [b, 'w1', 1],
    ]);
    // The runner was given up to b: its own pending entries at or below b are in hand, not given again.
    expect((await reads.readInbox({ inbox: s, after: b, count: 10 })).entries).toEqual([]);
  });

  it("a read whose answer was lost: its entries come first in the next read, before newer ones, with their delivery counts", async () => {
    redis = connectRedis(targetFor(mode));
    const s = await makeInbox(redis);
    const reads = new GroupReads(redis, GROUP, 'w1');
    const first = await addTo(redis, s, 1);
    expect(ids((await reads.readInbox({ inbox: s, after: '0-0', count: 10 })).entries)).toEqual(['1']);
    await addTo(redis, s, 2);
    await addTo(redis, s, 3);
    // What Redis ran for a read whose answer never came back: entries 2 and 3 are now w1's.
    await redis.xreadgroup('GROUP', GROUP, 'w1', 'COUNT', 10, 'STREAMS', s, '>');
    await addTo(redis, s, 4);
    const next = await reads.readInbox({ inbox: s, after: first, count: 10 });
    expect(ids(next.entries)).toEqual(['2', '3', '4']);
    expect(next.counts).toEqual([1, 1]);
  });

  it('a holder that stalled past its lease and read on: the entries it took are claimed and come first, before newer ones', async () => {
    redis = connectRedis(targetFor(mode));
    const s = await makeInbox(redis);
    const reads = new GroupReads(redis, GROUP, 'new');
    await addTo(redis, s, 1);
    const one = (await reads.readInbox({ inbox: s, after: '0-0', count: 10 })).entries;
    const last = one[0]![0].toString();
    await addTo(redis, s, 2);
    // The old holder, cut off, reads entry 2 into its own pending list (it can no longer commit it).
    await redis.xreadgroup('GROUP', GROUP, 'old', 'COUNT', 10, 'STREAMS', s, '>');
    await addTo(redis, s, 3);
    const next = await reads.readInbox({ inbox: s, after: last, count: 10 });
    expect(ids(next.entries)).toEqual(['2', '3']);
    // Claimed: delivered once to the old holder, once now.
    expect(next.counts).toEqual([2]);
    expect((await pendingOf(s)).map(([, consumer]) => consumer)).toEqual(['new', 'new', 'new']);
  });

  it('a pending entry that was trimmed away is acknowledged, not given', async () => {
    redis = connectRedis(targetFor(mode));
    const s = await makeInbox(redis);
    const reads = new GroupReads(redis, GROUP, 'w1');
    const one = await addTo(redis, s, 1);
    await reads.readInbox({ inbox: s, after: '0-0', count: 10 });
    await addTo(redis, s, 2);
    const three = await addTo(redis, s, 3);
    await redis.xreadgroup('GROUP', GROUP, 'w1', 'COUNT', 10, 'STREAMS', s, '>');
    await redis.xreadgroup('GROUP', GROUP, 'old', 'COUNT', 10, 'STREAMS', s, '>'); // nothing left for it
    await redis.xdel(s, (await redis.xrange(s, '(' + one, '+', 'COUNT', 1))[0]![0]);
    const next = await reads.readInbox({ inbox: s, after: one, count: 10 });
    expect(next.entries.map(([id]) => id.toString())).toEqual([three]);
    expect((await pendingOf(s)).map(([id]) => id)).toEqual([one, three]);
  });

  it('a stalled holder took more entries than the new holder reads at a time: all of them come before newer ones, none is left behind', async () => {
    redis = connectRedis(targetFor(mode));
    const s = await makeInbox(redis);
    const reads = new GroupReads(redis, GROUP, 'new');
    await addTo(redis, s, 1);
    let after = (await reads.readInbox({ inbox: s, after: '0-0', count: 10 })).entries[0]![0].toString();
    for (let n = 2; n <= 4; n++) await addTo(redis, s, n);
    // The old holder, cut off, read on: entries 2 to 4 are its own (its runner reads batch after
    // batch, up to its maxBuffered, before its first commit comes back refused).
    await redis.xreadgroup('GROUP', GROUP, 'old', 'COUNT', 10, 'STREAMS', s, '>');
    await addTo(redis, s, 5);
    // The new holder reads as ShardRunner.readLoop does with room for 2 (count = min(readBatch,
    // maxBuffered - buffered)): each read from the last id it was given, here until a read gives
    // nothing (the runner stops earlier, at a short read).
    const order: string[] = [];
    for (let i = 0; i < 10; i++) {
      const got = await reads.readInbox({ inbox: s, after, count: 2 });
      if (got.entries.length === 0) break;
      order.push(...ids(got.entries));
      after = got.entries[got.entries.length - 1]![0].toString();
    }
    expect(order).toEqual(['2', '3', '4', '5']);
    expect((await pendingOf(s)).map(([, consumer]) => consumer)).toEqual(['new', 'new', 'new', 'new', 'new']);
  });

  it('reads at most `count` new entries a shard', async () => {
    redis = connectRedis(targetFor(mode));
    const s = await makeInbox(redis);
    for (let n = 1; n <= 5; n++) await addTo(redis, s, n);
    const reads = new GroupReads(redis, GROUP, 'w1');
    const first = await reads.readInbox({ inbox: s, after: '0-0', count: 3 });
    expect(ids(first.entries)).toEqual(['1', '2', '3']);
    const rest = await reads.readInbox({ inbox: s, after: first.entries[2]![0].toString(), count: 3 });
    expect(ids(rest.entries)).toEqual(['4', '5']);
  });
});

// A Cluster reads each shard alone (its own slot): grouping is a single server's.
describe('inbox reads grouped in one call (single redis)', () => {
  let redis: RedisClient | undefined;
  afterEach(() => {
    redis?.disconnect();
    redis = undefined;
  });

  it("several inboxes in one read: each gets its own entries, and one inbox's trouble fails that shard alone", async () => {
    redis = connectRedis(targetFor('single'));
    const [s1, s2] = [await makeInbox(redis), await makeInbox(redis)];
    const broken = `gr:{${randomBytes(5).toString('hex')}}:inbox`;
    await redis.set(broken, 'not a stream');
    const noGroup = `gr:{${randomBytes(5).toString('hex')}}:inbox`;
    await redis.xadd(noGroup, '*', 'n', '0');
    await addTo(redis, s1, 1);
    await addTo(redis, s2, 2);
    await redis.xreadgroup('GROUP', GROUP, 'old', 'COUNT', 10, 'STREAMS', s2, '>');
    await addTo(redis, s2, 3);
    const reads = new GroupReads(redis, GROUP, 'w1');
    // Asked in one turn: one MULTI for all of them, then one read each when the grouped one fails.
    const all = await Promise.allSettled([s1, broken, s2, noGroup].map((inbox) => reads.readInbox({ inbox, after: '0-0', count: 10 })));
    expect(all.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'rejected']);
    const got = all.map((r) => (r.status === 'fulfilled' ? ids(r.value.entries) : null));
    expect(got).toEqual([['1'], null, ['2', '3'], null]);
  });
});

// SCRIPT FLUSH would break every other test file's script calls on the shared server: a server of its own.
describe('inbox reads after SCRIPT FLUSH (a redis-server of its own)', () => {
  it('a connection whose scripts were flushed reads its inbox again: the read that failed is retried and gives the entry', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'axon-read-flush-'));
    const server = await startManagedRedis({ dir, port: await freePort() });
    const redis = connectRedis({ url: server.url });
    const admin = connectRedis({ url: server.url });
    try {
      const s = await makeInbox(redis);
      const reads = new GroupReads(redis, GROUP, 'w1');
      const one = await addTo(redis, s, 1);
      expect(ids((await reads.readInbox({ inbox: s, after: '0-0', count: 10 })).entries)).toEqual(['1']);
      // An operator's SCRIPT FLUSH (or a script evicted): every other script call of this
      // connection recovers (ioredis sends EVAL after a NOSCRIPT answer).
      await admin.script('FLUSH');
      await addTo(redis, s, 2);
      // The runner reads again at each wake: a failed read may be retried, not fail for ever.
      const failures: string[] = [];
      let got: string[] | undefined;
      for (let i = 0; i < 3 && !got; i++) {
        try {
          got = ids((await reads.readInbox({ inbox: s, after: one, count: 10 })).entries);
        } catch (e) {
          failures.push(String(e));
        }
      }
      expect(got, `reads failed: ${failures.join(' | ')}; pending: ${JSON.stringify(await admin.xpending(s, GROUP, '-', '+', 10))}`).toEqual(['2']);
    } finally {
      redis.disconnect();
      admin.disconnect();
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
