/**
 * The shared consumer group of a family's outbox readers (src/readers/reader-group.ts) on a real
 * redis-server: each entry is read and acknowledged once for all readers, handed only to the
 * readers whose kinds take it (the others' entries acknowledged all the same); a reader that fails
 * leaves the batch pending and gets it again alone, the others not; a holder that dies between
 * applying and acknowledging is taken over by another that applies the entries again; and the
 * readers' own groups of before are replaced by the shared one where the slowest had got to.
 */
import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { KeySpace, OUTBOX_READERS_GROUP } from '../../src/store/keys';
import { connectRedis, type RedisClient } from '../../src/store/redis';
import { OutboxGroupReader } from '../../src/readers/outbox-group-reader';
import { OutboxReaderGroup } from '../../src/readers/reader-group';
import type { OutboxEntry } from '../../src/runtime/envelope';
import type { Family } from '../../src/store/shards';

let redis: RedisClient;
beforeAll(() => {
  redis = connectRedis({ url: inject('redisUrl') });
});
afterAll(() => redis.disconnect());

const log = pino({ level: 'silent' });

class RecordingReader extends OutboxGroupReader {
  override readonly kinds: readonly string[] | null;
  applied: string[] = [];
  failNext = 0;
  /** While set, apply waits for it (a holder stuck between reading and acknowledging). */
  hold: Promise<void> | null = null;
  constructor(group: string, kinds: readonly string[] | null, keys: KeySpace, consumer = 'c1', family: Family = 'user') {
    super(family, group, redis, keys, consumer, log);
    this.kinds = kinds;
  }
  protected async apply(_shard: number, entries: { id: string; entry: OutboxEntry | null }[]): Promise<void> {
    await (this.hold ?? undefined);
    if (this.failNext > 0) {
      this.failNext--;
      throw new Error('injected failure');
    }
    for (const e of entries) {
      if (e.entry && !this.takes(e.entry.kind)) throw new Error(`given an entry of kind ${e.entry.kind}`);
      this.applied.push(e.id);
    }
  }
}

async function until(cond: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('condition not reached');
    await sleep(20);
  }
}

function groupsOf(outbox: string): Promise<{ name: string; pending: number; last: string }[]> {
  return (redis.xinfo('GROUPS', outbox) as Promise<unknown[][]>).then((gs) =>
    gs.map((g) => {
      const m = new Map<string, unknown>();
      for (let i = 0; i + 1 < g.length; i += 2) m.set(String(g[i]), g[i + 1]);
      return { name: String(m.get('name')), pending: Number(m.get('pending')), last: String(m.get('last-delivered-id')) };
    }),
  );
}

const pendingOf = async (outbox: string) => (await groupsOf(outbox)).find((g) => g.name === OUTBOX_READERS_GROUP)?.pending ?? -1;

describe('OutboxReaderGroup', () => {
  it('reads and acknowledges each entry once, hands each reader only its kinds, and acknowledges entries nobody takes', async () => {
    const keys = new KeySpace(`rg${randomBytes(4).toString('hex')}:`);
    const outbox = keys.shard('user', 0).outbox;
    const a = new RecordingReader('a', ['user'], keys);
    const b = new RecordingReader('b', ['user', 'presence'], keys);
    const group = new OutboxReaderGroup('user', [a, b], redis, keys, 'c1', log);
    // A commit wakes the group for the kinds some member takes only (the worker's sweep reads the rest).
    expect([group.takes('user'), group.takes('presence'), group.takes('ledger')]).toEqual([true, true, false]);
    const append = (kind: string) => redis.xadd(outbox, '*', 'k', kind, 'a', '@u:x', 'b', 'x') as Promise<string>;
    const user = await append('user');
    const presence = await append('presence');
    const ledger = await append('ledger');
    group.attach(0);
    await until(() => a.applied.length === 1 && b.applied.length === 2);
    expect(a.applied).toEqual([user]);
    expect(b.applied).toEqual([user, presence]);
    // One group on the outbox, nothing left pending (the ledger entry too, which nobody took).
    await until(async () => (await pendingOf(outbox)) === 0);
    const groups = await groupsOf(outbox);
    expect(groups.map((g) => g.name)).toEqual([OUTBOX_READERS_GROUP]);
    expect(groups[0]!.last).toBe(ledger);
    await group.stop();
  });

  it('keeps a batch a reader failed pending, and gives it again to that reader only', async () => {
    const keys = new KeySpace(`rg${randomBytes(4).toString('hex')}:`);
    const outbox = keys.shard('user', 0).outbox;
    const a = new RecordingReader('a', ['user'], keys);
    const b = new RecordingReader('b', ['user'], keys);
    const group = new OutboxReaderGroup('user', [a, b], redis, keys, 'c1', log);
    const append = () => redis.xadd(outbox, '*', 'k', 'user', 'a', '@u:x', 'b', 'x') as Promise<string>;
    const first = await append();
    group.attach(0);
    await until(() => a.applied.length === 1 && b.applied.length === 1);

    b.failNext = 1;
    const second = await append();
    group.wake(0);
    await until(async () => b.failNext === 0 && (await pendingOf(outbox)) === 1);
    await sleep(100);
    expect(a.applied).toEqual([first, second]);
    expect(b.applied).toEqual([first]);

    // The retry (with what came since): b gets the failed entry, a does not get it twice.
    const third = await append();
    group.wake(0);
    await until(() => b.applied.length === 3);
    expect(b.applied).toEqual([first, second, third]);
    expect(a.applied).toEqual([first, second, third]);
    await until(async () => (await pendingOf(outbox)) === 0);
    await group.stop();
  });

  it('a new holder claims what the previous one read and did not acknowledge, and every reader applies it', async () => {
    const keys = new KeySpace(`rg${randomBytes(4).toString('hex')}:`);
    const outbox = keys.shard('user', 0).outbox;
    const a1 = new RecordingReader('a', ['user'], keys, 'w1');
    const b1 = new RecordingReader('b', null, keys, 'w1');
    let release = () => {};
    b1.hold = new Promise<void>((r) => {
      release = r;
    });
    const g1 = new OutboxReaderGroup('user', [a1, b1], redis, keys, 'w1', log);
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await redis.xadd(outbox, '*', 'k', 'user', 'a', `@u${i}:x`, 'b', 'x')) as string);
    g1.attach(0);
    // w1 has read the entries (a applied them), b is stuck: nothing acknowledged; w1 "dies".
    await until(async () => a1.applied.length === 5 && (await pendingOf(outbox)) === 5);
    g1.detach(0);
    await g1.stop();

    const a2 = new RecordingReader('a', ['user'], keys, 'w2');
    const b2 = new RecordingReader('b', null, keys, 'w2');
    const g2 = new OutboxReaderGroup('user', [a2, b2], redis, keys, 'w2', log);
    g2.attach(0);
    await until(() => a2.applied.length === 5 && b2.applied.length === 5);
    expect(a2.applied).toEqual(ids);
    expect(b2.applied).toEqual(ids);
    await until(async () => (await pendingOf(outbox)) === 0);
    // The stuck holder finishing late changes nothing: its acknowledgement finds nothing pending.
    release();
    await sleep(100);
    expect(await pendingOf(outbox)).toBe(0);
    await g2.stop();
  });

  it('replaces the readers’ own groups with the shared group at the slowest one’s position: nothing skipped', async () => {
    const keys = new KeySpace(`rg${randomBytes(4).toString('hex')}:`);
    const outbox = keys.shard('user', 0).outbox;
    const ids: string[] = [];
    for (let i = 0; i < 10; i++) ids.push((await redis.xadd(outbox, '*', 'k', 'user', 'a', `@u${i}:x`, 'b', 'x')) as string);
    // Before: 'a' read and acknowledged 8 entries; 'b' read 6 and acknowledged the first 3 (4–6
    // pending for an old worker); an unrelated group 'other' stays.
    await redis.xgroup('CREATE', outbox, 'a', '0');
    await redis.xreadgroup('GROUP', 'a', 'old', 'COUNT', 8, 'STREAMS', outbox, '>');
    await redis.xack(outbox, 'a', ...ids.slice(0, 8));
    await redis.xgroup('CREATE', outbox, 'b', '0');
    await redis.xreadgroup('GROUP', 'b', 'old', 'COUNT', 6, 'STREAMS', outbox, '>');
    await redis.xack(outbox, 'b', ...ids.slice(0, 3));
    await redis.xgroup('CREATE', outbox, 'other', '0');

    const a = new RecordingReader('a', ['user'], keys);
    const b = new RecordingReader('b', ['user'], keys);
    const group = new OutboxReaderGroup('user', [a, b], redis, keys, 'c1', log);
    group.attach(0);
    // From b's oldest pending entry on, for both (a re-applies 4–8: idempotent).
    await until(() => a.applied.length === 7 && b.applied.length === 7);
    expect(b.applied).toEqual(ids.slice(3));
    expect(a.applied).toEqual(ids.slice(3));
    await until(async () => (await pendingOf(outbox)) === 0);
    expect((await groupsOf(outbox)).map((g) => g.name).sort()).toEqual(['other', OUTBOX_READERS_GROUP]);

    // An old worker re-creating its group meanwhile (a mixed fleet): gone at the next attach,
    // the shared group going on from where it was.
    group.detach(0);
    await redis.xgroup('CREATE', outbox, 'a', '0');
    const more = (await redis.xadd(outbox, '*', 'k', 'user', 'a', '@v:x', 'b', 'x')) as string;
    group.attach(0);
    await until(() => b.applied.length === 8);
    expect(b.applied.at(-1)).toBe(more);
    expect(a.applied.at(-1)).toBe(more);
    expect((await groupsOf(outbox)).map((g) => g.name).sort()).toEqual(['other', OUTBOX_READERS_GROUP]);
    await group.stop();
  });

  it('without old groups starts from the beginning of the outbox', async () => {
    const keys = new KeySpace(`rg${randomBytes(4).toString('hex')}:`);
    const outbox = keys.shard('room', 0).outbox;
    const first = (await redis.xadd(outbox, '*', 'k', 'room', 'a', '!r:x', 'b', 'x')) as string;
    const a = new RecordingReader('a', ['room'], keys, 'c1', 'room');
    const group = new OutboxReaderGroup('room', [a], redis, keys, 'c1', log);
    group.attach(0);
    await until(() => a.applied.length === 1);
    expect(a.applied).toEqual([first]);
    await group.stop();
  });
});
