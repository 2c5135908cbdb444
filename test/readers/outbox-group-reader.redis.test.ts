/**
 * The loop every outbox reader shares (src/readers/outbox-group-reader.ts): a wake-up reads new
 * entries once (its own pending ones only after a failed batch), and a batch that failed is
 * applied again, first, on the next wake-up — nothing is skipped, nothing acknowledged unapplied.
 */
import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { KeySpace } from '../../src/store/keys';
import { connectRedis, type RedisClient } from '../../src/store/redis';
import { OutboxGroupReader } from '../../src/readers/outbox-group-reader';
import type { OutboxEntry } from '../../src/runtime/envelope';
import { answerDroppingProxy } from '../setup/answer-dropping-proxy';

let redis: RedisClient;
beforeAll(() => {
  redis = connectRedis({ url: inject('redisUrl') });
});
afterAll(() => redis.disconnect());

class RecordingReader extends OutboxGroupReader {
  applied: string[] = [];
  failNext = false;
  protected async apply(_shard: number, entries: { id: string; entry: OutboxEntry | null }[]): Promise<void> {
    if (this.failNext) {
      this.failNext = false;
      throw new Error('injected failure');
    }
    this.applied.push(...entries.map((e) => e.id));
  }
}

async function until(cond: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('condition not reached');
    await sleep(20);
  }
}

describe('OutboxGroupReader', () => {
  it('applies every entry once per wake-up, retries a failed batch first, and acknowledges only what it applied', async () => {
    const keys = new KeySpace(`ogr${randomBytes(4).toString('hex')}:`);
    const outbox = keys.shard('room', 0).outbox;
    const reader = new RecordingReader('room', 'test-group', redis, keys, 'c1', pino({ level: 'silent' }));
    const append = (n: number) => redis.xadd(outbox, '*', 'k', 'room', 'a', `!r${n}:x`, 'b', 'x');
    const ids = [await append(1), await append(2)];
    reader.attach(0);
    await until(() => reader.applied.length === 2);
    expect(reader.applied).toEqual(ids);

    // A batch that fails stays pending for this consumer, unacknowledged.
    reader.failNext = true;
    const third = await append(3);
    reader.wake(0);
    await until(async () => Number(((await redis.xpending(outbox, 'test-group')) as [number])[0]) === 1 && !reader.failNext);
    await sleep(100);
    expect(reader.applied).toEqual(ids);

    // The next wake-up applies it first, then what came since.
    const fourth = await append(4);
    reader.wake(0);
    await until(() => reader.applied.length === 4);
    expect(reader.applied).toEqual([...ids, third, fourth]);
    await until(async () => Number(((await redis.xpending(outbox, 'test-group')) as [number])[0]) === 0);
    await reader.stop();
  });

  it('a read whose answer was lost (connection dropped, read sent again) leaves nothing pending: its entry is applied at the reconnect, not at the next attach', async () => {
    const keys = new KeySpace(`ogrl${randomBytes(4).toString('hex')}:`);
    const outbox = keys.shard('room', 0).outbox;
    const group = `lost-${randomBytes(4).toString('hex')}`;
    const proxy = await answerDroppingProxy(Number(new URL(inject('redisUrl')).port), group);
    const viaProxy = connectRedis({ url: `redis://127.0.0.1:${proxy.port}` });
    const reader = new RecordingReader('room', group, viaProxy, keys, 'c1', pino({ level: 'silent' }));
    try {
      const append = (n: number) => redis.xadd(outbox, '*', 'k', 'room', 'a', `!r${n}:x`, 'b', 'x');
      const first = await append(1);
      reader.attach(0);
      await until(() => reader.applied.length === 1);
      // The next read of the group runs in Redis (entry 2 is now this consumer's), its answer is
      // dropped with the connection, and ioredis sends it again: the second run finds nothing new.
      proxy.arm();
      const second = await append(2);
      reader.wake(0);
      await until(() => proxy.tripped() === 1);
      await until(() => reader.applied.length === 2);
      const third = await append(3);
      reader.wake(0);
      await until(() => reader.applied.length === 3);
      expect(reader.applied).toEqual([first, second, third]);
      await until(async () => Number(((await redis.xpending(outbox, group)) as [number])[0]) === 0);
    } finally {
      await reader.stop();
      viaProxy.disconnect();
      await new Promise<void>((res) => proxy.server.close(() => res()));
    }
  });
});
