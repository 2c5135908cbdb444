/**
 * Idle shards are not polled (issue 23.4): an inbox is read when a wake-up says so, so these
 * tests check each way a message still gets processed — the wake-up itself, the safety sweep
 * when the wake-up was lost, the re-wake when the wake-up subscriber reconnects — and that a
 * drain moving many shards at once loses nothing. Real Redis (single server and Cluster).
 */
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import type { LedgerReply } from '../../actors/ledger';
import { drain } from '../../src/runtime/cluster-admin';
import { decode, encode } from '../../src/store/codec';
import { shardOf } from '../../src/store/shards';
import type { Worker } from '../../src/runtime/worker';
import { OutboxGroupReader } from '../../src/readers/outbox-group-reader';
import { OutboxReaderGroup } from '../../src/readers/reader-group';
import { OUTBOX_READERS_GROUP } from '../../src/store/keys';
import type { OutboxEntry } from '../../src/runtime/envelope';
import { connectRedis } from '../../src/store/redis';
import { MODES, rig, silent, waitFor, type Rig } from './harness';

/** A reader that records the ids of the outbox entries it was given. */
class RecordingReader extends OutboxGroupReader {
  readonly seen: string[] = [];
  protected async apply(_shard: number, entries: { id: string; entry: OutboxEntry | null }[]): Promise<void> {
    for (const e of entries) this.seen.push(e.id);
  }
}

/** A sweep period no test waits for: only a wake-up (or a reconnect) can get a message read. */
const NO_SWEEP_MS = 3_600_000;

/** A reply stream of the test's own (replies are only delivered to a stream that exists). */
async function replyStream(r: Rig, name: string): Promise<string> {
  const stream = `${r.prefix}{${name}}`;
  await r.redis.xadd(stream, '*', 'opened', '1');
  return stream;
}

/**
 * Append a ledger message to its shard's inbox the way a client does, but without the wake-up
 * (what a wake-up lost to a connection blip leaves behind); its reply goes to `replyTo`.
 */
async function enqueueWithoutWake(r: Rig, actorId: string, body: unknown, replyTo: string): Promise<string> {
  const mid = `m-${randomBytes(6).toString('hex')}`;
  const shard = shardOf(actorId, r.shardCounts.user);
  await r.redis.xadd(r.keys.shard('user', shard).inbox, '*', 'mid', mid, 'a', actorId, 'k', 'ledger', 'b', encode(body), 't', String(Date.now()), 'r', replyTo);
  return mid;
}

/** The reply to `mid` once it is in the reply stream (the worker writes it with the commit). */
async function replyIn(r: Rig, stream: string, mid: string, timeoutMs = 60_000): Promise<unknown> {
  return waitFor(
    `the reply to ${mid}`,
    async () => {
      const rows = (await r.redis.xrangeBuffer(stream, '-', '+')) as [Buffer, Buffer[]][];
      // An entry holds one reply or several (a group commit's: commit-many-7.lua), each a `mid` then its `b`.
      for (const [, fields] of rows) {
        let m = '';
        for (let i = 0; i + 1 < fields.length; i += 2) {
          const name = fields[i]!.toString();
          if (name === 'mid') m = fields[i + 1]!.toString();
          else if (name === 'b' && m === mid) return { value: decode(fields[i + 1]!) };
        }
      }
      return null;
    },
    timeoutMs,
    50,
  );
}

function subscriberOf(w: Worker): Redis {
  return (w as unknown as { sub: Redis }).sub;
}

for (const mode of MODES) {
  describe(`[${mode}] idle shards are read on wake-ups only`, () => {
    let r: Rig;
    afterEach(async () => {
      await r?.close();
    });

    it('processes a message sent to an idle shard at once, with no sweep to fall back on', async () => {
      r = await rig(mode, { shards: 16 });
      const w = await r.startWorker('w1', { pollMs: NO_SWEEP_MS });
      await waitFor('every shard to be held', () => w.owned().length === 32);
      const c = await r.client();
      // Let every shard go idle (the start-up reads are over), then send.
      await new Promise((res) => setTimeout(res, 500));
      const actor = '@idle-wake:test';
      expect(await c.ask<LedgerReply>('user', 'ledger', actor, { op: 'append', producer: 'p', seq: 1, value: 7 }, { timeoutMs: 60_000 })).toMatchObject({ count: 1, sum: 7 });
      expect(await c.ask<LedgerReply>('user', 'ledger', actor, { op: 'read' }, { timeoutMs: 60_000 })).toMatchObject({ count: 1, sum: 7, outOfOrder: 0 });
    });

    it('a message whose wake-up was lost is processed by the safety sweep', async () => {
      r = await rig(mode, { shards: 16 });
      const w = await r.startWorker('w1', { pollMs: 300 });
      await waitFor('every shard to be held', () => w.owned().length === 32);
      const actor = '@lost-wake:test';
      const replyTo = await replyStream(r, 'lost-wake-replies');
      const mid = await enqueueWithoutWake(r, actor, { op: 'append', producer: 'p', seq: 1, value: 3 }, replyTo);
      const reply = (await replyIn(r, replyTo, mid)) as { value: { ok: boolean; value: LedgerReply } };
      expect(reply.value).toMatchObject({ ok: true, value: { count: 1, sum: 3 } });
      const c = await r.client();
      expect(await c.ask<LedgerReply>('user', 'ledger', actor, { op: 'read' }, { timeoutMs: 60_000 })).toMatchObject({ count: 1, sum: 3, outOfOrder: 0 });
    });

    it('when the wake-up subscriber reconnects, every shard reads what it may have missed', async () => {
      r = await rig(mode, { shards: 16 });
      const w = await r.startWorker('w1', { pollMs: NO_SWEEP_MS });
      await waitFor('every shard to be held', () => w.owned().length === 32);
      const replyTo = await replyStream(r, 'reconnect-replies');
      // Messages whose wake-ups never came (they were published while the subscriber was away).
      const actors = Array.from({ length: 6 }, (_, i) => `@reconnect${i}:test`);
      const mids = await Promise.all(actors.map((a) => enqueueWithoutWake(r, a, { op: 'append', producer: 'p', seq: 1, value: 1 }, replyTo)));
      const sub = subscriberOf(w);
      const reconnected = new Promise<void>((res) => sub.once('ready', () => res()));
      sub.disconnect(true);
      await reconnected;
      for (const mid of mids) await replyIn(r, replyTo, mid);
      const c = await r.client();
      for (const a of actors) expect(await c.ask<LedgerReply>('user', 'ledger', a, { op: 'read' }, { timeoutMs: 60_000 })).toMatchObject({ count: 1, outOfOrder: 0 });
      // Wake-ups work again on the new connection.
      expect(await c.ask<LedgerReply>('user', 'ledger', actors[0]!, { op: 'append', producer: 'p', seq: 2, value: 1 }, { timeoutMs: 60_000 })).toMatchObject({ count: 2 });
    });

    it('a reader attached quietly at takeover still gets the entries the previous holder left in the outbox', async () => {
      r = await rig(mode, { shards: 16 });
      // Outputs a previous holder committed and no reader of this group has read (the group does
      // not even exist yet): only the sweep after the takeover can point the reader at them.
      const left: string[] = [];
      for (const shard of [2, 9, 15]) left.push(String(await r.redis.xadd(r.keys.shard('user', shard).outbox, '*', 'k', 'ledger', 'a', `@left${shard}:test`, 'o', encode({ n: shard }))));
      const readerRedis = connectRedis(r.target);
      const reader = new RecordingReader('user', 'test-recorder', readerRedis, r.keys, 'w1', silent);
      const w = await r.startWorker('w1', { pollMs: NO_SWEEP_MS, readers: [reader] });
      await waitFor('every shard to be held', () => w.owned().length === 32);
      await waitFor('the reader to get every entry left behind', () => left.every((id) => reader.seen.includes(id)));
      expect(reader.seen.filter((id) => left.includes(id))).toHaveLength(left.length);
      await w.stop();
      readerRedis.disconnect();
    });

    it('a shared reader group attached quietly replaces the readers’ own groups where the slowest had got to', async () => {
      r = await rig(mode, { shards: 16 });
      // Outboxes a worker of the previous version left: reader a had read up to the second entry
      // of each, reader b up to the first; nobody has created the shared group yet.
      const expected: string[] = [];
      for (const shard of [2, 9, 15]) {
        const outbox = r.keys.shard('user', shard).outbox;
        const ids: string[] = [];
        for (let i = 0; i < 3; i++) ids.push(String(await r.redis.xadd(outbox, '*', 'k', 'ledger', 'a', `@old${shard}:test`, 'b', encode({ n: i }))));
        await r.redis.xgroup('CREATE', outbox, 'rec-a', ids[1]!);
        await r.redis.xgroup('CREATE', outbox, 'rec-b', ids[0]!);
        expected.push(ids[1]!, ids[2]!);
      }
      const readerRedis = connectRedis(r.target);
      const a = new RecordingReader('user', 'rec-a', readerRedis, r.keys, 'w1', silent);
      const b = new RecordingReader('user', 'rec-b', readerRedis, r.keys, 'w1', silent);
      const group = new OutboxReaderGroup('user', [a, b], readerRedis, r.keys, 'w1', silent);
      const w = await r.startWorker('w1', { pollMs: NO_SWEEP_MS, readers: [group] });
      await waitFor('every shard to be held', () => w.owned().length === 32);
      await waitFor('both readers to get what reader b had not read', () => expected.every((id) => a.seen.includes(id) && b.seen.includes(id)));
      for (const shard of [2, 9, 15]) {
        const groups = (await r.redis.xinfo('GROUPS', r.keys.shard('user', shard).outbox)) as unknown[][];
        expect(groups.map((g) => String(g[1]))).toEqual([OUTBOX_READERS_GROUP]);
      }
      await w.stop();
      readerRedis.disconnect();
    });

    it('a commit wakes the outbox readers only for actor kinds some reader takes; the sweep reads and acknowledges the others', async () => {
      r = await rig(mode, { shards: 4 });
      const readerRedis = connectRedis(r.target);
      const userOnly = new (class extends RecordingReader {
        override readonly kinds: readonly string[] = ['user'];
      })('user', 'rec-user', readerRedis, r.keys, 'w1', silent);
      const group = new (class extends OutboxReaderGroup {
        wakes = 0;
        override wake(shard: number): void {
          this.wakes++;
          super.wake(shard);
        }
      })('user', [userOnly], readerRedis, r.keys, 'w1', silent);
      const w = await r.startWorker('w1', { pollMs: NO_SWEEP_MS, readers: [group] });
      await waitFor('every shard to be held', () => w.owned().length === 8);
      const c = await r.client();
      const wakesBefore = group.wakes;
      const actors = Array.from({ length: 8 }, (_, i) => `@kinds${i}:test`);
      await Promise.all(actors.map((a) => c.ask<LedgerReply>('user', 'ledger', a, { op: 'append', producer: 'p', seq: 1, value: 1 })));
      const outboxes = [...new Set(actors.map((a) => r.keys.shard('user', shardOf(a, r.shardCounts.user)).outbox))];
      const behind = async () => {
        let n = 0;
        for (const outbox of outboxes) {
          const last = String(((await r.redis.xrevrange(outbox, '+', '-', 'COUNT', 1)) as [string, string[]][])[0]![0]);
          const g = ((await r.redis.xinfo('GROUPS', outbox)) as unknown[][]).map((x) => new Map(Array.from({ length: x.length / 2 }, (_, i) => [String(x[2 * i]), x[2 * i + 1]]))).find((m) => m.get('name') === OUTBOX_READERS_GROUP);
          if (!g || String(g.get('last-delivered-id')) !== last || Number(g.get('pending')) !== 0) n++;
        }
        return n;
      };
      // No reader takes ledger outputs and no sweep runs: the commits did not wake the group.
      expect(group.wakes).toBe(wakesBefore);
      // The sweep finds the group behind on those outboxes and wakes it: read and acknowledged.
      await w.sweep();
      await waitFor('the group to read and acknowledge every ledger output', async () => (await behind()) === 0);
      expect(userOnly.seen).toEqual([]);
      await w.stop();
      readerRedis.disconnect();
    });

    it('drains a worker of many shards in batches while messages flow: every message applied once, in order', async () => {
      r = await rig(mode, { shards: 128 });
      const a = await r.startWorker('wa');
      await waitFor('wa to hold every shard', () => a.owned().length === 256, 60_000);
      const b = await r.startWorker('wb');
      await waitFor('wb to be alive', async () => (await r.redis.zscore(r.keys.workers(), 'wb')) !== null);
      const c = await r.client();
      const actors = Array.from({ length: 60 }, (_, i) => `@drain${i}:test`);
      const seq = new Map<string, number>();
      let stop = false;
      let errors = 0;
      const lanes = actors.map(async (actor) => {
        while (!stop) {
          const n = (seq.get(actor) ?? 0) + 1;
          seq.set(actor, n);
          try {
            await c.ask('user', 'ledger', actor, { op: 'append', producer: 'p', seq: n, value: 1 }, { timeoutMs: 60_000 });
          } catch {
            errors++;
          }
        }
      });
      await new Promise((res) => setTimeout(res, 300));
      const moved = await drain(r.redis, r.keys, r.shardCounts, 1500, 'wa', { timeoutMs: 120_000, stop: false });
      stop = true;
      await Promise.all(lanes);
      expect(errors).toBe(0);
      expect(moved.length).toBeGreaterThan(0);
      await waitFor('wb to hold every shard', () => b.owned().length === 256, 30_000);
      expect(a.owned().length).toBe(0);
      for (const actor of actors) {
        const state = await c.ask<LedgerReply>('user', 'ledger', actor, { op: 'read' }, { timeoutMs: 60_000 });
        expect(state.outOfOrder, actor).toBe(0);
        expect(state.count, actor).toBe(seq.get(actor));
      }
    });
  });
}
