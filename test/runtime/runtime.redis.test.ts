/**
 * The actor runtime on real Redis, single server and Cluster: request/reply through inbox →
 * actor → outbox, exactly-once per message id, per-actor order, dead letters, fencing.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ActorReplyError, ActorTimeoutError } from '../../src/runtime/actor-client';
import { shardOf } from '../../src/store/shards';
import { runScript, runScriptBuffer } from '../../src/store/redis';
import { INBOX_GROUP } from '../../src/store/keys';
import { decode, encode, encodeScriptArgs } from '../../src/store/codec';
import type { LedgerReply, LedgerState } from '../../actors/ledger';
import { MODES, rig, waitFor, type Rig } from './harness';
import { allActorKinds } from '../../src/runtime/kinds';
import { CommitQueue, type CommitUnit } from '../../src/runtime/commit-queue';

/**
 * User shard `shard` held by worker `w` (its lease taken under a live worker lease), its inbox
 * group made, and one ledger message appended per id in `mids` and read by `w`: the entries'
 * ids, in order, and the holding's fencing token.
 */
async function heldWithEntries<const M extends readonly string[]>(r: Rig, shard: number, mids: M): Promise<{ keys: ReturnType<Rig['keys']['shard']>; token: number; ids: { -readonly [K in keyof M]: string } }> {
  const keys = r.keys.shard('user', shard);
  const epoch = await runScript(r.redis, 'workerLeaseStart', [r.keys.workerLease('w'), r.keys.workerHandoffs('w')], [60_000]).then(String);
  const [token] = (await runScript(r.redis, 'leaseAcquire', [keys.lease], ['w', epoch, '', ''])) as [number, string];
  await r.redis.xgroup('CREATE', keys.inbox, INBOX_GROUP, '0', 'MKSTREAM');
  const ids: string[] = [];
  for (const mid of mids) ids.push((await r.redis.xadd(keys.inbox, '*', 'mid', mid, 'a', 'x', 'k', 'ledger', 'b', 'x'))!);
  await r.redis.xreadgroup('GROUP', INBOX_GROUP, 'w', 'STREAMS', keys.inbox, '>');
  return { keys, token, ids: ids as { -readonly [K in keyof M]: string } };
}

for (const mode of MODES) {
  describe(`actor runtime (${mode} redis)`, () => {
    let r: Rig;
    afterEach(async () => {
      await r?.close();
    });

    it('answers asks through inbox → actor → outbox, in order per actor', async () => {
      r = await rig(mode);
      await r.startWorker('w1');
      const c = await r.client();
      const actors = Array.from({ length: 10 }, (_, i) => `@user${i}:test`);
      const replies = await Promise.all(
        actors.flatMap((a) => Array.from({ length: 20 }, (_, i) => c.ask<LedgerReply>('user', 'ledger', a, { op: 'append', producer: 'p', seq: i + 1, value: i + 1 }))),
      );
      expect(replies).toHaveLength(200);
      for (const a of actors) {
        const state = await c.ask<LedgerReply>('user', 'ledger', a, { op: 'read' });
        expect(state).toEqual({ count: 20, sum: 210, outOfOrder: 0, lastSeq: { p: 20 } });
      }
      // Every append produced one output entry on its shard's outbox.
      let outputs = 0;
      for (let s = 0; s < r.shardCounts.user; s++) outputs += await r.redis.xlen(r.keys.shard('user', s).outbox);
      expect(outputs).toBe(200);
    });

    it("the actors a runner keeps in memory past its limit are the most recently used: the least recently used idle one is dropped", async () => {
      r = await rig(mode, { shards: 1 });
      const w = await r.startWorker('w1', { cachedActorsPerShard: 2 });
      const c = await r.client();
      let seq = 0;
      const use = (actor: string) => c.ask<LedgerReply>('user', 'ledger', actor, { op: 'append', producer: 'p', seq: ++seq, value: 1 });
      const cached = () => [...w.cachedActorStates('ledger')].map(([id]) => id).sort();
      await use('@a:test');
      await use('@b:test');
      await use('@a:test');
      expect(cached()).toEqual(['@a:test', '@b:test']);
      // Over the limit: @b (used before @a's last message) goes, the new @c stays.
      await use('@c:test');
      await waitFor('the cache back at its limit', () => cached().length === 2);
      expect(cached()).toEqual(['@a:test', '@c:test']);
      // A dropped actor is loaded again from Redis: nothing of its state is lost.
      expect(await c.ask<LedgerReply>('user', 'ledger', '@b:test', { op: 'read' })).toMatchObject({ count: 1, sum: 1 });
      await waitFor('the cache back at its limit', () => cached().length === 2);
      expect(cached()).toEqual(['@b:test', '@c:test']);
    });

    it('times asks out in deadline order (one timer per timeout length), each once, and answers the asks made after', async () => {
      r = await rig(mode);
      const c = await r.client();
      // No worker yet: nothing answers. Asks of two timeout lengths, interleaved.
      const started = performance.now();
      const asks = Array.from({ length: 40 }, (_, i) => {
        const ms = i % 2 ? 300 : 150;
        return c.ask('user', 'ledger', `@t${i}:test`, { op: 'read' }, { timeoutMs: ms }).then(
          () => ({ i, ms, at: performance.now() - started, err: null as unknown }),
          (err: unknown) => ({ i, ms, at: performance.now() - started, err }),
        );
      });
      for (const a of await Promise.all(asks)) {
        expect(a.err).toBeInstanceOf(ActorTimeoutError);
        expect(a.at).toBeGreaterThanOrEqual(a.ms - 1);
      }
      // A worker comes up: the old asks' messages are applied (their replies find no waiter), new asks are answered.
      await r.startWorker('w1');
      expect(await c.ask('user', 'ledger', '@t0:test', { op: 'read' }, { timeoutMs: 30_000 })).toMatchObject({ count: 0 });
      const late = await Promise.all(Array.from({ length: 20 }, (_, i) => c.ask<LedgerReply>('user', 'ledger', `@t${i}:test`, { op: 'append', producer: 'p', seq: 1, value: 1 }, { timeoutMs: 30_000 })));
      expect(late.every((x) => x.count === 1)).toBe(true);
    });

    it('an unanswered ask still times out at its deadline after thousands of settled asks behind it were dropped from its queue', async () => {
      r = await rig(mode);
      const c = await r.client();
      // No worker: the first ask stays unanswered at the head of its timeout queue.
      const started = performance.now();
      const head = c.ask('user', 'ledger', '@head:test', { op: 'read' }, { timeoutMs: 400 }).catch((e: unknown) => ({ e, at: performance.now() - started }));
      // 3,000 asks of the same timeout that fail at once (a body msgpack cannot hold): settled
      // behind the head, past the length at which the queue drops its settled waiters.
      const failed = await Promise.allSettled(Array.from({ length: 3000 }, (_, i) => c.ask('user', 'ledger', `@f${i}:test`, { v: 1n << 70n }, { timeoutMs: 400 })));
      expect(failed.every((f) => f.status === 'rejected' && !(f.reason instanceof ActorTimeoutError))).toBe(true);
      const tail = c.ask('user', 'ledger', '@tail:test', { op: 'read' }, { timeoutMs: 400 }).catch((e: unknown) => e);
      const h = (await head) as { e: unknown; at: number };
      expect(h.e).toBeInstanceOf(ActorTimeoutError);
      expect(h.at).toBeGreaterThanOrEqual(399);
      expect(await tail).toBeInstanceOf(ActorTimeoutError);
    });

    it('close() settles every ask in flight, a first ask displaced by a later one with the same message id too', async () => {
      r = await rig(mode);
      const c = await r.client();
      // No worker: nothing answers. Two asks share a message id (a retried transaction, say).
      const outcome: Record<string, string> = {};
      const settle = (name: string, p: Promise<unknown>) => p.then(() => (outcome[name] = 'answered'), (e: Error) => (outcome[name] = e.message));
      void settle('first', c.ask('user', 'ledger', '@closing:test', { op: 'read' }, { mid: 'same-mid', timeoutMs: 600_000 }));
      void settle('second', c.ask('user', 'ledger', '@closing:test', { op: 'read' }, { mid: 'same-mid', timeoutMs: 600_000 }));
      await c.close(0);
      // close() rejects them as it returns: their handlers have run after one more turn.
      await new Promise((res) => setImmediate(res));
      expect(outcome).toEqual({ first: 'ActorClient closed', second: 'ActorClient closed' });
    });

    it('a timeout queue (one per distinct timeout length) is dropped once empty', async () => {
      r = await rig(mode);
      const c = await r.client();
      const queues = () => (c as unknown as { timeouts: Map<number, unknown> }).timeouts.size;
      // No worker: asks of ten timeout lengths all time out, each queue emptied by its own timer.
      const timedOut = await Promise.allSettled(Array.from({ length: 10 }, (_, i) => c.ask('user', 'ledger', `@q${i}:test`, { op: 'read' }, { timeoutMs: 100 + i })));
      expect(timedOut.every((t) => t.status === 'rejected' && t.reason instanceof ActorTimeoutError)).toBe(true);
      expect(queues()).toBe(0);
      // Answered asks of ten more lengths: each queue goes once its timer finds only settled asks.
      await r.startWorker('w1');
      for (let i = 0; i < 10; i++) expect(await c.ask('user', 'ledger', '@q0:test', { op: 'read' }, { timeoutMs: 5_000 + i })).toMatchObject({ count: 0 });
      expect(queues()).toBeGreaterThan(0);
      await vi.waitFor(() => expect(queues()).toBe(0), { timeout: 60_000, interval: 200 });
    });

    it('commits a decision whose writes run past a spread call and Lua unpack (70,000 hash fields + 70,000 set members)', async () => {
      // Regression: a remote join of a 10,000-member room failed with "RangeError: Maximum call
      // stack size exceeded" (the commit's arguments spread into the script call).
      r = await rig(mode);
      await r.startWorker('w1');
      const c = await r.client();
      const actor = '@bulk:test';
      expect(await c.ask<LedgerReply>('user', 'ledger', actor, { op: 'bulk', items: 70_000 }, { timeoutMs: 60_000 })).toMatchObject({ count: 1 });
      const shard = r.keys.shard('user', shardOf(actor, r.shardCounts.user));
      expect(await r.redis.hlen(shard.data(`ledger:${actor}:bulk-hash`))).toBe(70_000);
      expect(await r.redis.hget(shard.data(`ledger:${actor}:bulk-hash`), 'f69999')).toBe('69999');
      expect(await r.redis.scard(shard.data(`ledger:${actor}:bulk-set`))).toBe(70_000);
    });

    it('applies a message id once: a re-sent command gets the first reply and changes nothing', async () => {
      r = await rig(mode);
      await r.startWorker('w1');
      const c = await r.client();
      const first = await c.ask<LedgerReply>('user', 'ledger', '@a:test', { op: 'append', producer: 'p', seq: 1, value: 5 }, { mid: 'fixed-mid-1' });
      const again = await c.ask<LedgerReply>('user', 'ledger', '@a:test', { op: 'append', producer: 'p', seq: 1, value: 5 }, { mid: 'fixed-mid-1' });
      expect(again).toEqual(first);
      expect(await c.ask('user', 'ledger', '@a:test', { op: 'read' })).toMatchObject({ count: 1, sum: 5, outOfOrder: 0 });
    });

    it('a front restarted under the same name gets its own replies, never those of its earlier life', async () => {
      // Regression: message ids were `<front>:<counter>` with the counter restarting at 1, so a
      // restarted `f1` was answered from the workers' dedupe records of its previous life.
      r = await rig(mode);
      await r.startWorker('w1');
      const { ActorClient } = await import('../../src/runtime/actor-client');
      const { connectRedis } = await import('../../src/store/redis');
      const life = async (value: number) => {
        const c = new ActorClient(connectRedis(r.target), r.keys, r.shardCounts, 'f1');
        await c.start();
        const replies: LedgerReply[] = [];
        for (let i = 0; i < 20; i++) replies.push(await c.ask<LedgerReply>('user', 'ledger', '@restart:test', { op: 'append', producer: `life${value}`, seq: i + 1, value }));
        await c.close();
        return replies;
      };
      const first = await life(1);
      const second = await life(1000);
      expect(first.map((x) => x.count)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
      // Each reply of the second life reflects its own append (count 21.., sum grows by 1000).
      expect(second.map((x) => x.count)).toEqual(Array.from({ length: 20 }, (_, i) => i + 21));
      expect(second.map((x) => x.sum)).toEqual(Array.from({ length: 20 }, (_, i) => 20 + 1000 * (i + 1)));
      expect(await (await r.client()).ask('user', 'ledger', '@restart:test', { op: 'read' })).toMatchObject({ count: 40, outOfOrder: 0 });
    });

    it("a front's asks do not queue behind its command connection's slow replies (ownWriteConnection)", async () => {
      // A /send's enqueue once shared the front's one command connection with the /sync reads:
      // it waited for every reply sent before it. Here the command connection is held by a
      // blocking read that ends only when the ask has been answered.
      r = await rig(mode);
      await r.startWorker('w1');
      const { ActorClient } = await import('../../src/runtime/actor-client');
      const { connectRedis } = await import('../../src/store/redis');
      const shared = connectRedis(r.target);
      const c = new ActorClient(shared, r.keys, r.shardCounts, 'f-own', { ownWriteConnection: true });
      await c.start();
      const release = r.keys.shard('user', 0).data('test:release-blocked-read');
      let blockedDone = false;
      const blocked = shared.blpop(release, 30).then(() => {
        blockedDone = true;
      });
      const reply = await c.ask<LedgerReply>('user', 'ledger', '@own-write:test', { op: 'append', producer: 'p', seq: 1, value: 7 });
      expect(reply).toMatchObject({ count: 1, sum: 7 });
      expect(blockedDone).toBe(false);
      await r.redis.lpush(release, 'go');
      await blocked;
      await c.close();
      shared.disconnect();
    });

    it('a reply to a front that is gone does not recreate its reply stream', async () => {
      r = await rig(mode);
      await r.startWorker('w1');
      const c = await r.client();
      const stream = r.keys.replies(`f.${c.incarnation}`);
      expect(await r.redis.exists(stream)).toBe(1);
      expect(await r.redis.pttl(stream)).toBeGreaterThan(0);
      // A front killed with -9 leaves its stream to its TTL; simulate the expiry, then a late reply.
      await r.redis.del(stream);
      await runScriptBuffer(r.redis, 'reply', [stream], [100, 'late-mid', Buffer.from('x')]);
      expect(await r.redis.exists(stream)).toBe(0);
    });

    it('replies once read are deleted from the reply stream (the delete is not awaited before the next read)', async () => {
      r = await rig(mode);
      await r.startWorker('w1');
      const c = await r.client();
      const stream = r.keys.replies(`f.${c.incarnation}`);
      const replies = await Promise.all(Array.from({ length: 50 }, (_, i) => c.ask<LedgerReply>('user', 'ledger', `@reply-del-${i % 5}:test`, { op: 'append', producer: `p${i}`, seq: 1, value: 1 })));
      expect(replies.map((x) => x.sum)).toHaveLength(50);
      // Every reply entry goes once it is read; the stream itself stays (its TTL is renewed).
      await vi.waitFor(async () => expect(await r.redis.xlen(stream)).toBe(0), { timeout: 10_000 });
      expect(await r.redis.exists(stream)).toBe(1);
      // And the reader keeps reading after those deletes.
      expect(await c.ask<LedgerReply>('user', 'ledger', '@reply-del-0:test', { op: 'append', producer: 'later', seq: 1, value: 1 })).toMatchObject({ count: 11 });
      await c.close();
    });

    it('dead-letters a message that keeps failing, answers it with an error, and the shard keeps going', async () => {
      r = await rig(mode);
      await r.startWorker('w1', { maxDeliveries: 3 });
      const c = await r.client();
      await c.ask('user', 'ledger', '@poison:test', { op: 'append', producer: 'p', seq: 1, value: 1 });
      const err = await c.ask('user', 'ledger', '@poison:test', { op: 'explode' }).catch((e) => e);
      expect(err).toBeInstanceOf(ActorReplyError);
      expect((err as ActorReplyError).errcode).toBe('M_UNKNOWN');
      const shard = shardOf('@poison:test', r.shardCounts.user);
      const dead = (await r.redis.xrange(r.keys.shard('user', shard).dead, '-', '+')) as [string, string[]][];
      expect(dead).toHaveLength(1);
      const fields = Object.fromEntries(dead[0]![1].reduce<[string, string][]>((acc, v, i, arr) => (i % 2 ? acc : [...acc, [v, arr[i + 1]!]]), []));
      expect(fields.error).toContain('unknown op "explode"');
      expect(fields.a).toBe('@poison:test');
      expect(Number(fields.deliveries)).toBe(3);
      // The same actor and its shard carry on.
      expect(await c.ask('user', 'ledger', '@poison:test', { op: 'append', producer: 'p', seq: 2, value: 1 })).toMatchObject({ count: 2, outOfOrder: 0 });
      // Nothing is left pending (entries are acknowledged just after their reply goes out).
      await waitFor('every entry to be acknowledged', async () => Number(((await r.redis.xpending(r.keys.shard('user', shard).inbox, INBOX_GROUP)) as [number])[0]) === 0);
    });

    it('a message whose write fails in Redis (a key of the wrong type) is dead-lettered with an error, never answered as applied; the actor keeps its state', async () => {
      r = await rig(mode);
      await r.startWorker('w1', { maxDeliveries: 3 });
      const c = await r.client();
      const actor = '@wrongtype:test';
      expect(await c.ask<LedgerReply>('user', 'ledger', actor, { op: 'append', producer: 'p', seq: 1, value: 1 })).toMatchObject({ count: 1 });
      const shard = r.keys.shard('user', shardOf(actor, r.shardCounts.user));
      // The hash the bulk op writes holds a string: its HSET fails inside the commit (WRONGTYPE).
      await r.redis.set(shard.data(`ledger:${actor}:bulk-hash`), 'not a hash');
      const err = await c.ask('user', 'ledger', actor, { op: 'bulk', items: 3 }).catch((e) => e);
      expect(err).toBeInstanceOf(ActorReplyError);
      expect((err as ActorReplyError).errcode).toBe('M_UNKNOWN');
      const dead = (await r.redis.xrange(shard.dead, '-', '+')) as [string, string[]][];
      expect(dead).toHaveLength(1);
      expect(dead[0]![1].join(' ')).toMatch(/WRONGTYPE/);
      // Not applied: the state still counts one message, and the actor carries on from it.
      expect(await c.ask<LedgerReply>('user', 'ledger', actor, { op: 'read' })).toMatchObject({ count: 1 });
      await r.redis.del(shard.data(`ledger:${actor}:bulk-hash`));
      expect(await c.ask<LedgerReply>('user', 'ledger', actor, { op: 'bulk', items: 3 })).toMatchObject({ count: 2 });
      expect(await r.redis.hlen(shard.data(`ledger:${actor}:bulk-hash`))).toBe(3);
    });

    it('refuses a commit carrying a stale fencing token, atomically', async () => {
      r = await rig(mode);
      const keys = r.keys.shard('user', 3);
      const epoch = (w: string) => runScript(r.redis, 'workerLeaseStart', [r.keys.workerLease(w), r.keys.workerHandoffs(w)], [60_000]).then(String);
      const oldEpoch = await epoch('old');
      const t1 = (await runScript(r.redis, 'leaseAcquire', [keys.lease], ['old', oldEpoch, '', ''])) as [number, string];
      expect(t1[0]).toBeGreaterThan(0);
      // The old holder's lease lapses (a long pause: its worker lease record expires) and a new
      // holder takes the shard.
      await r.redis.hset(r.keys.workerLease('old'), 'expires', 0);
      expect(await runScript(r.redis, 'workerLeaseLive', [r.keys.workerLease('old')], [oldEpoch, '1'])).toBe(0);
      const t2 = (await runScript(r.redis, 'leaseAcquire', [keys.lease], ['new', await epoch('new'), 'old', oldEpoch])) as [number, string];
      expect(t2[0]).toBeGreaterThan(t1[0]);
      await r.redis.xgroup('CREATE', keys.inbox, INBOX_GROUP, '0', 'MKSTREAM');
      const id = await r.redis.xadd(keys.inbox, '*', 'mid', 'm1', 'a', 'x', 'k', 'ledger', 'b', 'x');
      // One unit of the group commit (commit-many-7.lua): KEYS lease, inbox, outbox; the shard's prefixes; a write of a data key.
      const commit = async (worker: string, token: number) =>
        ((await runScriptBuffer(r.redis, 'commitMany', [keys.lease, keys.inbox, keys.outbox], [encodeScriptArgs([
          worker, INBOX_GROUP, 60, 100, 1, 1, String(token), 2, 3, keys.donePrefix, keys.statePrefix, keys.dataPrefix,
          1, 1, 1, id!, 'reply', '1', 0, 'm1', 's', 'STATE', 1, 'OUT', 'x', 'ledger', 1, 'SET', 'extra', '0', 1, 'v',
        ])])) as Buffer[][])[0]!;
      const stale = await commit('old', t1[0]);
      expect(stale[0]!.toString()).toBe('stale');
      expect(await r.redis.exists(keys.state('ledger', 'x'), keys.data('extra'), keys.done('m1'))).toBe(0);
      expect(await r.redis.xlen(keys.outbox)).toBe(0);
      // The holder's commit goes through, once.
      expect((await commit('new', t2[0]))[0]!.toString()).toBe('ok');
      expect((await commit('new', t2[0]))[0]!.toString()).toBe('dup');
      expect(await r.redis.get(keys.state('ledger', 'x'))).toBe('STATE');
      expect(await r.redis.xlen(keys.outbox)).toBe(1);
    });

    it("a message whose id its asker minted ('~') is deduplicated by its pending entry, without a done record, when the commit acknowledges it", async () => {
      r = await rig(mode);
      const { keys, token, ids: [a, b, c] } = await heldWithEntries(r, 5, ['~f1.i:1', '~f1.i:2', 'caller-1']);
      // One unit: one message (its ack mode), state kept, one output, no writes.
      const commit = async (id: string, mid: string, ackMode: '0' | '1', output: string) =>
        ((await runScriptBuffer(r.redis, 'commitMany', [keys.lease, keys.inbox, keys.outbox], [encodeScriptArgs([
          'w', INBOX_GROUP, 60, 100, 1, 1, String(token), 2, 3, keys.donePrefix, keys.statePrefix, keys.dataPrefix,
          1, 1, 1, id, `reply-${mid}`, ackMode, 0, mid, 'k', '', 1, output, 'x', 'ledger', 0,
        ])])) as Buffer[][])[0]!.map(String);
      const pending = async () => ((await r.redis.xpending(keys.inbox, INBOX_GROUP, '-', '+', 10)) as [string][]).map((p) => p[0]);
      expect(await commit(a, '~f1.i:1', '1', 'out-a')).toEqual(['ok']);
      expect(await r.redis.exists(keys.done('~f1.i:1'))).toBe(0);
      expect(await pending()).toEqual([b, c]);
      // The same commit again (as when its answer was lost and it was sent again): done, nothing written twice.
      expect(await commit(a, '~f1.i:1', '1', 'out-a')).toEqual(['dup']);
      expect(await r.redis.xlen(keys.outbox)).toBe(1);
      // Acknowledged after the reply by its caller (a Cluster's mode '0'): the record is kept, and
      // a second commit is answered with the first one's reply.
      expect(await commit(b, '~f1.i:2', '0', 'out-b')).toEqual(['ok']);
      expect(await r.redis.get(keys.done('~f1.i:2'))).toBe('reply-~f1.i:2');
      expect(await commit(b, '~f1.i:2', '0', 'out-b')).toEqual(['dup', 'reply-~f1.i:2']);
      // A caller's id keeps its record too (it may come again in another entry).
      expect(await commit(c, 'caller-1', '1', 'out-c')).toEqual(['ok']);
      expect(await r.redis.get(keys.done('caller-1'))).toBe('reply-caller-1');
      expect(await r.redis.xlen(keys.outbox)).toBe(3);
      expect(await pending()).toEqual([b]);
      // Ids beginning with '~' are the client's own: a caller may not choose one. A Cluster's client
      // appends with a plain XADD, which ioredis may send twice: its ids keep their records ('=').
      const client = await r.client();
      expect(client.newMessageId()).toMatch(mode === 'single' ? /^~/ : /^=/);
      await expect(client.ask('user', 'ledger', '@x:test', { op: 'read' }, { mid: '~f9.other:1' })).rejects.toThrow(/minted by ActorClient.newMessageId/);
      await expect(client.tell('user', 'ledger', '@x:test', { op: 'read' }, '~f9.other:2')).rejects.toThrow(/minted/);
    });

    it("a minted id's check acknowledges its entry: a unit that then writes nothing (a later message done, a failing command) leaves its entries pending again, decided again and applied once", async () => {
      r = await rig(mode);
      const { keys, token, ids: [a, b, c, d] } = await heldWithEntries(r, 6, ['~f1.i:1', '~f1.i:2', '~f1.i:3', '~f1.i:4']);
      const pending = async () => ((await r.redis.xpending(keys.inbox, INBOX_GROUP, '-', '+', 10)) as [string, string, number, number][]).map((p) => [p[0], p[1], p[3]]);
      // One unit of the given messages (ack mode '1'), state S, one output, the given writes.
      const commit = async (msgs: [string, string][], writes: (string | number)[] = [0]) =>
        ((await runScriptBuffer(r.redis, 'commitMany', [keys.lease, keys.inbox, keys.outbox], [encodeScriptArgs([
          'w', INBOX_GROUP, 60, 100, 1, 1, String(token), 2, 3, keys.donePrefix, keys.statePrefix, keys.dataPrefix,
          1, 1, msgs.length, ...msgs.flatMap(([id, mid]) => [id, `reply-${mid}`, '1', 0, mid]), 's', 'S', 1, 'out', 'x', 'ledger', ...writes,
        ])])) as Buffer[][])[0]!.map(String);
      // b applied on its own.
      expect(await commit([[b, '~f1.i:2']])).toEqual(['ok']);
      expect((await pending()).map((p) => p[0])).toEqual([a, c, d]);
      // a, b, c as one unit: a's check acknowledges it, b's finds b done — nothing written, and a is pending again (c was never touched).
      expect(await commit([[a, '~f1.i:1'], [b, '~f1.i:2'], [c, '~f1.i:3']])).toEqual(['dup']);
      expect(await pending()).toEqual([[a, 'w', 1], [c, 'w', 1], [d, 'w', 1]]);
      expect(await r.redis.xlen(keys.outbox)).toBe(1);
      // c and d as one unit whose write fails (a string where it writes a hash): both pending again, for this worker.
      await r.redis.set(keys.data('broken'), 'a string');
      const failing = await commit([[c, '~f1.i:3'], [d, '~f1.i:4']], [1, 'HSET', 'broken', '0', 2, 'f', 'v']);
      expect(failing[0]).toBe('err');
      expect(await pending()).toEqual([[a, 'w', 1], [c, 'w', 1], [d, 'w', 1]]);
      expect(await r.redis.xlen(keys.outbox)).toBe(1);
      // Decided again, each applies once.
      await r.redis.del(keys.data('broken'));
      expect(await commit([[a, '~f1.i:1']])).toEqual(['ok']);
      expect(await commit([[c, '~f1.i:3'], [d, '~f1.i:4']], [1, 'HSET', 'broken', '0', 2, 'f', 'v'])).toEqual(['ok']);
      expect(await commit([[c, '~f1.i:3'], [d, '~f1.i:4']], [1, 'HSET', 'broken', '0', 2, 'f', 'v'])).toEqual(['dup']);
      expect(await pending()).toEqual([]);
      expect(await r.redis.xlen(keys.outbox)).toBe(3);
      expect(await r.redis.hget(keys.data('broken'), 'f')).toBe('v');
    });

    it('group commit: messages waiting in one mailbox are committed together, each with its reply, dedupe record and outputs, in order', async () => {
      r = await rig(mode, { shards: 2 });
      // The ledger kind with group commit on for appends (the destination actor's opt-in, on a kind whose state checks order).
      const kinds = allActorKinds().map((k) => (k.kind === 'ledger' ? { ...k, batch: { max: 50, accepts: (b: { op?: string }) => b?.op === 'append' } } : k));
      let release!: () => void;
      const gate = new Promise<void>((res) => (release = res));
      let held = false;
      const w = await r.startWorker('wg', {
        kinds,
        faultPoint: async (point, entry) => {
          if (point === 'before-commit' && entry.mid === 'gate') {
            held = true;
            await gate;
          }
        },
      });
      const c = await r.client();
      const actor = '@grouped:test';
      const shard = shardOf(actor, 2);
      const runner = () => w.runner(`user:${shard}`)!;
      // The first message holds the actor while 60 more queue up behind it.
      const first = c.ask<LedgerReply>('user', 'ledger', actor, { op: 'append', producer: 'p', seq: 1, value: 1 }, { mid: 'gate', timeoutMs: 30_000 });
      await waitFor('the gate message to be held', () => held);
      const rest = Array.from({ length: 60 }, (_, i) => c.ask<LedgerReply>('user', 'ledger', actor, { op: 'append', producer: 'p', seq: i + 2, value: i + 2 }, { mid: `g-${i + 2}`, timeoutMs: 30_000 }));
      await waitFor('the 60 to be buffered', () => runner().bufferedCount >= 61);
      const commitsBefore = runner().commits;
      release();
      const replies = await Promise.all([first, ...rest]);
      // Each got the reply of its own place in the order.
      replies.forEach((rep, i) => expect(rep).toEqual({ count: i + 1, sum: ((i + 1) * (i + 2)) / 2, outOfOrder: 0 }));
      // 61 messages in at most 1 + ceil(60 / 50) commits. (On one Redis the replies go out inside
      // the commit: the worker may count it a moment after the asker has its reply.)
      await waitFor('the worker to count the 61', () => runner().applied >= 61);
      expect(runner().commits - commitsBefore).toBeLessThanOrEqual(3);
      expect(await r.redis.xlen(r.keys.shard('user', shard).outbox)).toBe(61);
      // Every message has its dedupe record: asked again, the first reply comes back and nothing changes.
      expect(await c.ask<LedgerReply>('user', 'ledger', actor, { op: 'append', producer: 'p', seq: 30, value: 30 }, { mid: 'g-30' })).toEqual({ count: 30, sum: 465, outOfOrder: 0 });
      expect(await c.ask('user', 'ledger', actor, { op: 'read' })).toMatchObject({ count: 61, outOfOrder: 0 });
      // Nothing left pending.
      await waitFor('every entry to be acknowledged', async () => Number(((await r.redis.xpending(r.keys.shard('user', shard).inbox, INBOX_GROUP)) as [number])[0]) === 0);
    });

    it('group commit: a batch holding a message already applied is not written; the messages then go one by one, each once', async () => {
      r = await rig(mode, { shards: 2 });
      const kinds = allActorKinds().map((k) => (k.kind === 'ledger' ? { ...k, batch: { max: 50, accepts: (b: { op?: string }) => b?.op === 'append' } } : k));
      let release!: () => void;
      const gate = new Promise<void>((res) => (release = res));
      let held = false;
      const w = await r.startWorker('wd', {
        kinds,
        faultPoint: async (point, entry) => {
          if (point === 'before-commit' && entry.mid === 'gate2') {
            held = true;
            await gate;
          }
        },
      });
      const c = await r.client();
      const actor = '@dupes:test';
      const shard = shardOf(actor, 2);
      const first = c.ask<LedgerReply>('user', 'ledger', actor, { op: 'append', producer: 'p', seq: 1, value: 1 }, { mid: 'gate2', timeoutMs: 30_000 });
      await waitFor('the gate message to be held', () => held);
      const rest = Array.from({ length: 10 }, (_, i) => c.ask<LedgerReply>('user', 'ledger', actor, { op: 'append', producer: 'p', seq: i + 2, value: 1 }, { mid: `d-${i + 2}`, timeoutMs: 30_000 }));
      await waitFor('the 10 to be buffered', () => w.runner(`user:${shard}`)!.bufferedCount >= 11);
      // Another holder (a fenced predecessor, say) already applied d-5: its done record is there.
      await r.redis.set(r.keys.shard('user', shard).done('d-5'), encode({ ok: true, value: { prior: true } }));
      release();
      await first;
      const got = await Promise.all(rest);
      // d-5 is answered from its record, not applied again; the others are applied once, in order.
      expect(got[3]).toEqual({ prior: true });
      expect(got.filter((g) => 'count' in g).map((g) => g.count)).toEqual([2, 3, 4, 5, 6, 7, 8, 9, 10]);
      expect(await c.ask('user', 'ledger', actor, { op: 'read' })).toMatchObject({ count: 10, sum: 10 });
    });

    it('group commit across actors: messages of many actors and shards ready in one turn commit in few calls, each applied once with its reply', async () => {
      r = await rig(mode, { shards: 8 });
      const w = await r.startWorker('wm');
      const c = await r.client();
      const actors = Array.from({ length: 40 }, (_, i) => `@many${i}:test`);
      // Warm up: every actor's state loaded (the first message of an actor reads its state).
      const warmupFrom = w.commits.units;
      await Promise.all(actors.map((a) => c.ask<LedgerReply>('user', 'ledger', a, { op: 'append', producer: 'p', seq: 1, value: 1 })));
      // (On one Redis the replies go out inside the commit: the worker may count it a moment later.)
      await waitFor('the worker to count the warm-up', () => w.commits.units - warmupFrom === 40);
      const callsBefore = w.commits.calls;
      const unitsBefore = w.commits.units;
      const replies = await Promise.all(actors.map((a) => c.ask<LedgerReply>('user', 'ledger', a, { op: 'append', producer: 'p', seq: 2, value: 2 })));
      for (const rep of replies) expect(rep).toEqual({ count: 2, sum: 3, outOfOrder: 0 });
      await waitFor('the worker to count the 40 commits', () => w.commits.units - unitsBefore === 40);
      // 40 actors over 8 shards, sent in one turn: far fewer calls than commits (one Redis: across
      // shards; a Cluster: per shard at most).
      expect(w.commits.calls - callsBefore).toBeLessThan(mode === 'single' ? 20 : 40);
      let outputs = 0;
      for (let s = 0; s < 8; s++) outputs += await r.redis.xlen(r.keys.shard('user', s).outbox);
      expect(outputs).toBe(80);
      for (let s = 0; s < 8; s++) {
        await waitFor('every entry to be acknowledged', async () => Number(((await r.redis.xpending(r.keys.shard('user', s).inbox, INBOX_GROUP)) as [number])[0]) === 0);
      }
    });

    it('enqueue: the asks of one turn go in one call; an entry whose inbox cannot take it fails alone, the others are appended and answered', async () => {
      r = await rig(mode, { shards: 8 });
      await r.startWorker('we');
      const c = await r.client();
      const actors = Array.from({ length: 30 }, (_, i) => `@enq${i}:test`);
      // One actor's shard inbox made a string: its XADD fails (WRONGTYPE) — on one Redis inside
      // the shared enqueue-many call. The worker's group on it is gone with it, so nothing reads it.
      const broken = actors[0]!;
      const brokenInbox = r.keys.shard('user', shardOf(broken, r.shardCounts.user)).inbox;
      const sameShard = actors.filter((a) => shardOf(a, r.shardCounts.user) === shardOf(broken, r.shardCounts.user));
      await r.redis.del(brokenInbox);
      await r.redis.set(brokenInbox, 'not a stream');
      const results = await Promise.allSettled(actors.map((a) => c.ask<LedgerReply>('user', 'ledger', a, { op: 'append', producer: 'p', seq: 1, value: 1 }, { timeoutMs: 5000 })));
      results.forEach((res, i) => {
        if (sameShard.includes(actors[i]!)) {
          expect(res.status).toBe('rejected');
          expect(String((res as PromiseRejectedResult).reason)).toMatch(/WRONGTYPE/);
        } else expect(res).toEqual({ status: 'fulfilled', value: { count: 1, sum: 1, outOfOrder: 0 } });
      });
      expect(results.filter((x) => x.status === 'fulfilled').length).toBe(actors.length - sameShard.length);
      await r.redis.del(brokenInbox);
    });

    it('commit-many: a unit refused (stale lease, done message) writes nothing and does not stop the other units of the call', async () => {
      if (mode !== 'single') return; // units of two shards share a call on one Redis only
      r = await rig(mode);
      const a = r.keys.shard('user', 1);
      const b = r.keys.shard('user', 2);
      const ta = (await runScript(r.redis, 'leaseAcquire', [a.lease], ['w', 60_000])) as [number, string];
      const tb = (await runScript(r.redis, 'leaseAcquire', [b.lease], ['w', 60_000])) as [number, string];
      for (const k of [a, b]) await r.redis.xgroup('CREATE', k.inbox, INBOX_GROUP, '0', 'MKSTREAM');
      const id1 = (await r.redis.xadd(a.inbox, '*', 'mid', 'm1', 'a', 'x', 'k', 'ledger', 'b', 'x'))!;
      const id2 = (await r.redis.xadd(b.inbox, '*', 'mid', 'm2', 'a', 'y', 'k', 'ledger', 'b', 'x'))!;
      const id3 = (await r.redis.xadd(a.inbox, '*', 'mid', 'm3', 'a', 'z', 'k', 'ledger', 'b', 'x'))!;
      await r.redis.xreadgroup('GROUP', INBOX_GROUP, 'w', 'STREAMS', a.inbox, b.inbox, '>', '>');
      await r.redis.set(a.done('m3'), 'earlier');
      // Unit 1: shard a, actor x (applies). Unit 2: shard b with a stale token. Unit 3: shard a,
      // actor z, whose message is done already: answered from its record, acked, nothing written.
      // KEYS: the shards' lease, inbox and outbox; the actors' keys are made from each shard's prefixes.
      const keys = [a.lease, a.inbox, a.outbox, b.lease, b.inbox, b.outbox];
      const args = ['w', INBOX_GROUP, 60, 100, 2,
        1, String(ta[0]), 2, 3, a.donePrefix, a.statePrefix, a.dataPrefix,
        4, String(tb[0] + 1), 5, 6, b.donePrefix, b.statePrefix, b.dataPrefix,
        3,
        // Unit 1 also writes a key given by its full name (a shard key outside the data names).
        1, 1, id1, 'R1', '1', 0, 'm1', 's', 'SX', 1, 'OUT1', 'x', 'ledger', 2, 'SET', 'kx', '0', 1, 'v', 'ZADD', a.timers, '1', 2, '5', 'tx',
        2, 1, id2, 'R2', '1', 0, 'm2', 's', 'SY', 1, 'OUT2', 'y', 'ledger', 0,
        1, 1, id3, 'R3', '1', 0, 'm3', 's', 'SZ', 1, 'OUT3', 'z', 'ledger', 0,
      ];
      const res = (await runScriptBuffer(r.redis, 'commitMany', keys, [encodeScriptArgs(args)])) as Buffer[][];
      expect(res.map((u) => u.map((x) => x.toString()))).toEqual([['ok'], ['stale', 'w'], ['dup', 'earlier']]);
      expect(await r.redis.get(a.state('ledger', 'x'))).toBe('SX');
      expect(await r.redis.get(a.data('kx'))).toBe('v');
      expect(await r.redis.zscore(a.timers, 'tx')).toBe('5');
      expect(await r.redis.get(a.done('m1'))).toBe('R1');
      expect(await r.redis.exists(b.state('ledger', 'y'), b.done('m2'), a.state('ledger', 'z'))).toBe(0);
      expect(await r.redis.xlen(a.outbox)).toBe(1);
      expect(await r.redis.xlen(b.outbox)).toBe(0);
      // Acked: m1 (applied) and m3 (done before); m2 stays pending for the shard's real holder.
      expect(Number(((await r.redis.xpending(a.inbox, INBOX_GROUP)) as [number])[0])).toBe(0);
      expect(Number(((await r.redis.xpending(b.inbox, INBOX_GROUP)) as [number])[0])).toBe(1);
      // A command outside the allowed list fails the whole call before anything is written.
      await expect(runScriptBuffer(r.redis, 'commitMany', [a.lease, a.inbox, a.outbox], [encodeScriptArgs(['w', INBOX_GROUP, 60, 100, 1, 1, String(ta[0]), 2, 3, a.donePrefix, a.statePrefix, a.dataPrefix, 1, 1, 1, id1, 'R', '1', 0, 'm9', 's', 'SQ', 0, 'q', 'ledger', 1, 'FLUSHALL', 'kq', '0', 0])])).rejects.toThrow(/not allowed/);
      expect(await r.redis.exists(a.state('ledger', 'q'), a.done('m9'))).toBe(0);
    });

    it('commit-many: the replies of a call to one stream go as one entry; a unit with a message done already writes nothing, not even the done records of its other messages', async () => {
      if (mode !== 'single') return; // units of two shards share a call on one Redis only
      r = await rig(mode);
      const a = r.keys.shard('user', 1);
      const ta = (await runScript(r.redis, 'leaseAcquire', [a.lease], ['w', 60_000])) as [number, string];
      await r.redis.xgroup('CREATE', a.inbox, INBOX_GROUP, '0', 'MKSTREAM');
      const ids: string[] = [];
      for (const mid of ['m4', 'm5', 'm6', 'm7']) ids.push((await r.redis.xadd(a.inbox, '*', 'mid', mid, 'a', 'x', 'k', 'ledger', 'b', 'x'))!);
      await r.redis.xreadgroup('GROUP', INBOX_GROUP, 'w', 'STREAMS', a.inbox, '>');
      await r.redis.set(a.done('m5'), 'earlier');
      const stream = r.keys.replies('f.test');
      const first = (await r.redis.xadd(stream, '*', 'mid', 'other', 'b', 'x'))!;
      // Unit 1: actor x, m4 then m5 (done already). Units 2 and 3: actors v and w, replying to one stream.
      const keys = [a.lease, a.inbox, a.outbox, stream];
      const args = ['w', INBOX_GROUP, 60, 100, 1, 1, String(ta[0]), 2, 3, a.donePrefix, a.statePrefix, a.dataPrefix,
        3,
        1, 2, ids[0]!, 'R4', 'r', 4, 'm4', ids[1]!, 'R5', 'r', 4, 'm5', 's', 'SX', 1, 'OUTX', 'x', 'ledger', 0,
        1, 1, ids[2]!, 'R6', 'r', 4, 'm6', 's', 'SV', 1, 'OUTV', 'v', 'ledger', 0,
        1, 1, ids[3]!, 'R7', 'r', 4, 'm7', 's', 'SW', 1, 'OUTW', 'w', 'ledger', 0,
      ];
      const res = (await runScriptBuffer(r.redis, 'commitMany', keys, [encodeScriptArgs(args)])) as Buffer[][];
      expect(res.map((u) => u.map((x) => x.toString()))).toEqual([['dup'], ['ok'], ['ok']]);
      // Unit 1 wrote nothing: no state, no output, m4 not recorded done (the caller applies m4 and m5 one by one).
      expect(await r.redis.exists(a.state('ledger', 'x'), a.done('m4'))).toBe(0);
      expect(await r.redis.get(a.done('m5'))).toBe('earlier');
      expect(await r.redis.get(a.done('m6'))).toBe('R6');
      expect(await r.redis.get(a.done('m7'))).toBe('R7');
      // The applied units' states.
      expect(await r.redis.mget(a.state('ledger', 'v'), a.state('ledger', 'w'))).toEqual(['SV', 'SW']);
      expect(await r.redis.xlen(a.outbox)).toBe(2);
      const entries = (await r.redis.xrange(stream, '-', '+')).filter(([id]) => id !== first);
      expect(entries.map(([, fields]) => fields)).toEqual([['mid', 'm6', 'b', 'R6', 'mid', 'm7', 'b', 'R7']]);
      // m6 and m7 acked; m4 and m5 stay pending for the one-by-one path.
      expect(Number(((await r.redis.xpending(a.inbox, INBOX_GROUP)) as [number])[0])).toBe(2);
    });

    it('commit-many: a command that fails when it runs fails its unit alone — not recorded done, no state, no output — and the units before and after it commit', async () => {
      r = await rig(mode);
      const a = r.keys.shard('user', 1);
      const ta = (await runScript(r.redis, 'leaseAcquire', [a.lease], ['w', 60_000])) as [number, string];
      await r.redis.xgroup('CREATE', a.inbox, INBOX_GROUP, '0', 'MKSTREAM');
      const ids: string[] = [];
      for (const mid of ['m1', 'm2', 'm3']) ids.push((await r.redis.xadd(a.inbox, '*', 'mid', mid, 'a', 'x', 'k', 'ledger', 'b', 'x'))!);
      await r.redis.xreadgroup('GROUP', INBOX_GROUP, 'w', 'STREAMS', a.inbox, '>');
      // Actor y's hash is a string (data that is not what the actor believes): its HSET fails (WRONGTYPE).
      await r.redis.set(a.data('broken'), 'a string');
      const args = ['w', INBOX_GROUP, 60, 100, 1, 1, String(ta[0]), 2, 3, a.donePrefix, a.statePrefix, a.dataPrefix,
        3,
        1, 1, ids[0]!, 'R1', '1', 0, 'm1', 's', 'SX', 1, 'OUTX', 'x', 'ledger', 1, 'SET', 'kx', '0', 1, 'vx',
        // Unit 2: a write that succeeds, then the failing one; an output and a state it must not get.
        1, 1, ids[1]!, 'R2', '1', 0, 'm2', 's', 'SY', 1, 'OUTY', 'y', 'ledger', 2, 'SET', 'ky', '0', 1, 'vy', 'HSET', 'broken', '0', 2, 'f', 'v',
        1, 1, ids[2]!, 'R3', '1', 0, 'm3', 's', 'SZ', 1, 'OUTZ', 'z', 'ledger', 1, 'SET', 'kz', '0', 1, 'vz',
      ];
      const res = (await runScriptBuffer(r.redis, 'commitMany', [a.lease, a.inbox, a.outbox], [encodeScriptArgs(args)])) as Buffer[][];
      const got = res.map((u) => u.map((x) => x.toString()));
      expect(got[0]).toEqual(['ok']);
      expect(got[1]![0]).toBe('err');
      expect(got[1]![1]).toMatch(/WRONGTYPE/);
      expect(got[2]).toEqual(['ok']);
      // x and z: applied in full.
      expect(await r.redis.mget(a.state('ledger', 'x'), a.state('ledger', 'z'), a.data('kx'), a.data('kz'), a.done('m1'), a.done('m3'))).toEqual(['SX', 'SZ', 'vx', 'vz', 'R1', 'R3']);
      // y: not recorded done (decided again), no state, no output; only the write before the failing one stays.
      expect(await r.redis.exists(a.state('ledger', 'y'), a.done('m2'))).toBe(0);
      expect(await r.redis.get(a.data('ky'))).toBe('vy');
      const outputs = (await r.redis.xrange(a.outbox, '-', '+')).map(([, f]) => f[f.indexOf('a') + 1]);
      expect(outputs).toEqual(['x', 'z']);
      // m1 and m3 acked; m2 stays pending, for its retry.
      const pending = (await r.redis.xpending(a.inbox, INBOX_GROUP, '-', '+', 10)) as [string, string, number, number][];
      expect(pending.map((p) => p[0])).toEqual([ids[1]]);
    });

    it('a commit whose write fails is retried, not answered as applied, and the actors committed with it in the same call keep their states', async () => {
      r = await rig(mode);
      const a = r.keys.shard('user', 1);
      const token = String(((await runScript(r.redis, 'leaseAcquire', [a.lease], ['w', 60_000])) as [number, string])[0]);
      await r.redis.xgroup('CREATE', a.inbox, INBOX_GROUP, '0', 'MKSTREAM');
      const id1 = (await r.redis.xadd(a.inbox, '*', 'mid', 'm1', 'a', 'x', 'k', 'ledger', 'b', 'x'))!;
      const id2 = (await r.redis.xadd(a.inbox, '*', 'mid', 'm2', 'a', 'y', 'k', 'ledger', 'b', 'x'))!;
      await r.redis.xreadgroup('GROUP', INBOX_GROUP, 'w', 'STREAMS', a.inbox, '>');
      await r.redis.set(a.data('broken'), 'a string');
      const q = new CommitQueue(r.redis, 'w', INBOX_GROUP, 600, 100);
      const unit = (id: string, mid: string, actor: string, state: string, writes: CommitUnit['writes']): CommitUnit => ({
        shard: a, token, messages: [{ id, reply: Buffer.from(`R-${mid}`), mode: '1', mid }], state: Buffer.from(state), outputs: [], actorId: actor, kind: 'ledger', writes,
      });
      // One turn, one call: x's unit, then y's, whose HSET meets a string.
      const [x, y] = await Promise.allSettled([q.submit(unit(id1, 'm1', 'x', 'SX', [{ cmd: 'SET', key: 'kx', args: ['vx'] }])), q.submit(unit(id2, 'm2', 'y', 'SY', [{ cmd: 'HSET', key: 'broken', args: ['f', 'v'] }]))]);
      expect(x).toEqual({ status: 'fulfilled', value: { status: 'ok' } });
      expect(y.status).toBe('rejected');
      expect(String((y as PromiseRejectedResult).reason)).toMatch(/ledger y failed: WRONGTYPE/);
      expect(await r.redis.mget(a.state('ledger', 'x'), a.data('kx'))).toEqual(['SX', 'vx']);
      // Once the data is right again, y's retry commits (it was never recorded done).
      await r.redis.del(a.data('broken'));
      expect(await q.submit(unit(id2, 'm2', 'y', 'SY', [{ cmd: 'HSET', key: 'broken', args: ['f', 'v'] }]))).toEqual({ status: 'ok' });
      expect(await r.redis.get(a.state('ledger', 'y'))).toBe('SY');
    });

    it('commit-many: a call with 4,000 units that write states (more values than one Lua unpack takes)', async () => {
      if (mode !== 'single') return;
      r = await rig(mode);
      const a = r.keys.shard('user', 1);
      const token = String(((await runScript(r.redis, 'leaseAcquire', [a.lease], ['w', 60_000])) as [number, string])[0]);
      await r.redis.xgroup('CREATE', a.inbox, INBOX_GROUP, '0', 'MKSTREAM');
      const n = 4000;
      const args: (string | number)[] = ['w', INBOX_GROUP, 60, 100, 1, 1, token, 2, 3, a.donePrefix, a.statePrefix, a.dataPrefix, n];
      for (let i = 0; i < n; i++) args.push(1, 1, `0-${i + 1}`, 'R', '0', 0, `mu${i}`, 's', `S${i}`, 0, `x${i}`, 'ledger', 0);
      const res = (await runScriptBuffer(r.redis, 'commitMany', [a.lease, a.inbox, a.outbox], [encodeScriptArgs(args)])) as Buffer[][];
      expect(res.filter((u) => u[0]!.toString() === 'ok')).toHaveLength(n);
      expect(await r.redis.mget(a.state('ledger', 'x0'), a.state('ledger', `x${n - 1}`))).toEqual(['S0', `S${n - 1}`]);
    });

    it('a worker whose lease lapsed mid-message is fenced out; the new owner applies the message once', async () => {
      r = await rig(mode, { shards: 2 });
      let release!: () => void;
      const held = new Promise<void>((res) => (release = res));
      let reached = false;
      const a = await r.startWorker('wa', {
        faultPoint: async (point, entry) => {
          if (point === 'before-commit' && entry.mid.includes('slow')) {
            reached = true;
            await held;
          }
        },
      });
      const c = await r.client();
      const actor = '@fenced:test';
      const shard = shardOf(actor, 2);
      const answer = c.ask<LedgerReply>('user', 'ledger', actor, { op: 'append', producer: 'p', seq: 1, value: 7 }, { mid: 'slow-1', timeoutMs: 30_000 });
      await waitFor('worker A to hold the message', () => reached);
      // A stalls (as in a long GC pause): it stops renewing and its lease lapses; B takes over.
      a.crash();
      await r.redis.hset(r.keys.workerLease('wa'), 'expires', 0);
      const b = await r.startWorker('wb');
      await waitFor('B to own the shard', () => b.owned().includes(`user:${shard}`));
      expect(await answer).toEqual({ count: 1, sum: 7, outOfOrder: 0 });
      // A wakes up and tries to commit with its old token: refused.
      release();
      await new Promise((res) => setTimeout(res, 200));
      const blob = await r.redis.getBuffer(r.keys.shard('user', shard).state('ledger', actor));
      expect(decode<LedgerState>(blob!)).toMatchObject({ count: 1, sum: 7 });
    });
  });
}

for (const mode of MODES) {
  describe(`stream trimming (${mode} redis)`, () => {
    let r: Rig;
    afterEach(async () => {
      await r?.close();
    });

    it('trims only below the oldest entry every group still needs', async () => {
      r = await rig(mode);
      const stream = r.keys.shard('user', 1).outbox;
      const ids: string[] = [];
      for (let i = 0; i < 10; i++) ids.push((await r.redis.xadd(stream, '*', 'n', String(i)))!);
      // No groups: nothing is trimmed (nobody said what they still need).
      expect(await runScript(r.redis, 'trimStream', [stream], [])).toBe(0);
      await r.redis.xgroup('CREATE', stream, 'sync', '0');
      await r.redis.xgroup('CREATE', stream, 'push', '0');
      // "sync" has read 6 entries and acknowledged the first 3; "push" has read 8, acknowledged all.
      await r.redis.xreadgroup('GROUP', 'sync', 'c1', 'COUNT', 6, 'STREAMS', stream, '>');
      await r.redis.xack(stream, 'sync', ids[0]!, ids[1]!, ids[2]!);
      await r.redis.xreadgroup('GROUP', 'push', 'c1', 'COUNT', 8, 'STREAMS', stream, '>');
      await r.redis.xack(stream, 'push', ...ids.slice(0, 8));
      expect(await runScript(r.redis, 'trimStream', [stream], [])).toBe(3);
      const left = (await r.redis.xrange(stream, '-', '+')) as [string, string[]][];
      expect(left.map((e) => e[0])).toEqual(ids.slice(3));
      // Once "sync" has acknowledged everything it read, only what it has not read yet stays.
      await r.redis.xack(stream, 'sync', ids[3]!, ids[4]!, ids[5]!);
      expect(await runScript(r.redis, 'trimStream', [stream], [])).toBe(3);
      expect(await r.redis.xlen(stream)).toBe(4);
    });
  });
}
