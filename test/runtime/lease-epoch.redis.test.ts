/**
 * Per-worker lease epochs (lease-worker-*.lua, lease-acquire-3.lua): a worker renews one record per
 * round, whatever its shard count; a shard lease names its holder's epoch; a lapsed epoch never
 * comes back, so a takeover may look at the holder's record and write the shard's lease in two
 * calls (different slots on a Cluster), and the fencing token in the shard's lease still refuses
 * every write of the old holder in the commit script itself. A worker below its share declares
 * dead only the epochs it takes shards from (free shards first): a late holder whose shards
 * nobody takes keeps them.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { INBOX_GROUP } from '../../src/store/keys';
import { runScript, runScriptBuffer } from '../../src/store/redis';
import { encodeScriptArgs } from '../../src/store/codec';
import { executeMoves } from '../../src/runtime/cluster-admin';
import { FAMILIES } from '../../src/store/shards';
import { MODES, rig, waitFor, type Rig } from './harness';


/**
 * A new holding's token: above every earlier one of the shard (lease-acquire-3.lua makes it at least
 * the time in ms as well as one more than the last, so it stays above them after a data loss).
 */
function expectNewToken(got: unknown[], above: number, owner: string): void {
  expect(got[1]).toBe(owner);
  expect(got[0] as number).toBeGreaterThan(above);
}

for (const mode of MODES) {
  describe(`worker lease epochs (${mode} redis)`, () => {
    let r: Rig;
    afterEach(async () => {
      await r?.close();
    });

    const start = (w: string, ttl = 60_000) => runScript(r.redis, 'workerLeaseStart', [r.keys.workerLease(w), r.keys.workerHandoffs(w)], [ttl]).then(String);
    const renew = (w: string, epoch: string, ttl = 60_000) => runScript(r.redis, 'workerLeaseRenew', [r.keys.workerLease(w), r.keys.workerHandoffs(w)], [epoch, ttl]) as Promise<(number | string)[]>;
    const live = (w: string, epoch: string, declareDead = false) => runScript(r.redis, 'workerLeaseLive', [r.keys.workerLease(w)], [epoch, declareDead ? '1' : '0']).then(Number);
    const acquire = (shard: number, w: string, epoch: string, dead: [string, string] = ['', '']) =>
      runScript(r.redis, 'leaseAcquire', [r.keys.shard('user', shard).lease], [w, epoch, ...dead]) as Promise<[number, string]>;

    it('renews one record per worker, reports the handoffs asked of it, and never revives an epoch declared dead', async () => {
      r = await rig(mode);
      const e1 = await start('w1');
      expect(Number(e1)).toBeGreaterThan(Date.now() - 60_000);
      expect(await renew('w1', e1)).toEqual([1]);
      expect(await live('w1', e1)).toBeGreaterThan(50_000);
      await r.redis.hset(r.keys.workerHandoffs('w1'), 'user:3', 'w2');
      expect(await renew('w1', e1)).toEqual([1, 'user:3', 'w2']);
      // The worker deletes an entry once it has handed the shard off.
      await r.redis.hdel(r.keys.workerHandoffs('w1'), 'user:3');
      // A wrong epoch is not renewed.
      expect(await renew('w1', `${e1}0`)).toEqual([0]);
      // The epoch lapses (a long pause) and nobody takes over: a look says expired, and the late
      // renewal still goes through (the worker is still its shards' only holder).
      await r.redis.hset(r.keys.workerLease('w1'), 'expires', '1');
      expect(await live('w1', e1)).toBe(0);
      expect(await renew('w1', e1)).toEqual([1]);
      expect(await live('w1', e1)).toBeGreaterThan(0);
      // A taker's look at a live epoch declares nothing.
      expect(await live('w1', e1, true)).toBeGreaterThan(0);
      expect(await renew('w1', e1)).toEqual([1]);
      // It lapses again, and this time a taker declares it dead: dead for good, renewals refused.
      await r.redis.hset(r.keys.workerLease('w1'), 'expires', '1');
      expect(await live('w1', e1, true)).toBe(0);
      expect(await renew('w1', e1)).toEqual([0]);
      expect(await live('w1', e1)).toBe(0);
      // A new epoch is larger, live, and its start forgets the old handoffs.
      const e2 = await start('w1');
      expect(Number(e2)).toBeGreaterThan(Number(e1));
      expect(await live('w1', e2)).toBeGreaterThan(0);
      expect(await live('w1', e1)).toBe(0);
      expect(await renew('w1', e2)).toEqual([1]);
    });

    it('takes a shard from a dead epoch only, with a new token, and the old holder cannot commit', async () => {
      r = await rig(mode);
      const keys = r.keys.shard('user', 5);
      const a1 = await start('wa');
      const b1 = await start('wb');
      const t1 = await acquire(5, 'wa', a1);
      expect(t1[0]).toBeGreaterThan(0);
      // Same worker and epoch again (a new runner in the same process): kept, under a new token,
      // so that what an earlier runner of the process may still have in flight is fenced out.
      const again = await acquire(5, 'wa', a1);
      expectNewToken(again, t1[0], 'wa');
      t1[0] = again[0];
      // Held by a live epoch: refused, and refused too when the caller names another holding as dead.
      expect(await acquire(5, 'wb', b1)).toEqual([0, 'wa', a1]);
      expect(await acquire(5, 'wb', b1, ['wa', `${a1}1`])).toEqual([0, 'wa', a1]);
      // wa's epoch lapses; wb declares it dead and takes the shard under a higher token.
      await r.redis.hset(r.keys.workerLease('wa'), 'expires', '1');
      expect(await live('wa', a1, true)).toBe(0);
      const t2 = await acquire(5, 'wb', b1, ['wa', a1]);
      expectNewToken(t2, t1[0], 'wb');
      // wa, back from its pause, commits with its old token: refused in the commit script itself.
      await r.redis.xgroup('CREATE', keys.inbox, INBOX_GROUP, '0', 'MKSTREAM');
      const id = await r.redis.xadd(keys.inbox, '*', 'mid', 'm1', 'a', 'x', 'k', 'ledger', 'b', 'x');
      // One unit of the group commit (commit-many-7.lua): KEYS lease, inbox, outbox; the shard's prefixes.
      const commit = async (worker: string, token: number) =>
        ((await runScriptBuffer(r.redis, 'commitMany', [keys.lease, keys.inbox, keys.outbox], [encodeScriptArgs([
          worker, INBOX_GROUP, 60, 100, 1, 1, String(token), 2, 3, keys.donePrefix, keys.statePrefix, keys.dataPrefix,
          1, 1, 1, id!, 'reply', '1', 0, 'm1', 's', 'STATE', 0, 'x', 'ledger', 0,
        ])])) as Buffer[][])[0]!;
      expect((await commit('wa', t1[0]))[0]!.toString()).toBe('stale');
      expect(await r.redis.exists(keys.state('ledger', 'x'))).toBe(0);
      expect((await commit('wb', t2[0]))[0]!.toString()).toBe('ok');
      // wa learns at its next renewal that its epoch is over, starts another and may take the shard
      // back only once wb's epoch is dead or wb released it.
      expect(await renew('wa', a1)).toEqual([0]);
      const a2 = await start('wa');
      expect(await acquire(5, 'wa', a2, ['wa', a1])).toEqual([0, 'wb', b1]);
      expect(await runScript(r.redis, 'leaseRelease', [keys.lease], ['wb', String(t2[0])])).toBe(1);
      expectNewToken(await acquire(5, 'wa', a2), t2[0], 'wa');
    });

    it('a lease hash that lost its last token increments (failover, older AOF) still gives a token above every one handed out', async () => {
      r = await rig(mode);
      const a1 = await start('wa');
      const t1 = await acquire(3, 'wa', a1);
      // The node comes back without the last increments: the token it holds is older than t1.
      await r.redis.hset(r.keys.shard('user', 3).lease, 'token', '1');
      // (A failover takes seconds; here a few ms stand for it: the token is the time at the least.)
      await new Promise((res) => setTimeout(res, 5));
      const a2 = await start('wa');
      expectNewToken(await acquire(3, 'wa', a2), t1[0], 'wa');
    });

    it('a worker takes back, under a new token, a shard its own earlier epoch held', async () => {
      r = await rig(mode);
      const a1 = await start('wa');
      const t1 = await acquire(2, 'wa', a1);
      const a2 = await start('wa');
      expectNewToken(await acquire(2, 'wa', a2), t1[0], 'wa');
    });

    it('a worker whose round came late keeps its shards; one whose epoch was declared dead takes them back under new tokens', async () => {
      r = await rig(mode, { shards: 4 });
      const w = await r.startWorker('w1');
      await waitFor('w1 to hold every shard', () => w.owned().length === 8);
      const tokens = () => Object.fromEntries(w.status().shards.map((s) => [s.name, s.token]));
      const before = tokens();
      const epoch = await r.redis.hget(r.keys.workerLease('w1'), 'epoch');
      // A stall past the TTL (its expiry passed) with nobody taking over: the next round renews.
      await r.redis.hset(r.keys.workerLease('w1'), 'expires', '1');
      await waitFor('the late round to renew', async () => Number(await r.redis.hget(r.keys.workerLease('w1'), 'expires')) > 1);
      expect(await r.redis.hget(r.keys.workerLease('w1'), 'epoch')).toBe(epoch);
      expect(tokens()).toEqual(before);
      // This time a taker declares the expired epoch dead: the worker starts a new epoch and takes
      // its shards back, each under a higher token (its old holding's writes are fenced).
      await r.redis.hset(r.keys.workerLease('w1'), 'expires', '1');
      expect(await live('w1', epoch!, true)).toBe(0);
      await waitFor('a new epoch', async () => (await r.redis.hget(r.keys.workerLease('w1'), 'epoch')) !== epoch);
      await waitFor('w1 to hold every shard again', () => w.owned().length === 8 && w.status().shards.every((s) => s.state === 'running'));
      for (const [name, token] of Object.entries(tokens())) expect(Number(token), name).toBeGreaterThan(Number(before[name]));
    });

    it('a worker below its share takes free shards first and declares dead no epoch it does not take from: a late holder keeps its shards', async () => {
      r = await rig(mode, { shards: 4 });
      // w1's rounds run only when the test calls them (its timer's period outlasts the test), and
      // its TTL does not lapse by itself: its lateness below is exactly the one the test makes.
      const w1 = await r.startWorker('w1', { leaseTtlMs: 60_000, renewMs: 60_000 });
      expect(w1.owned()).toHaveLength(8);
      // Shards 0 and 1 of each family move to w3, which then stops and releases them: two free
      // shards per family, two held by w1.
      const w3 = await r.startWorker('w3');
      await executeMoves(r.redis, r.keys, FAMILIES.flatMap((family) => [0, 1].map((shard) => ({ family, shard, from: 'w1', to: 'w3' }))));
      await w3.stop();
      expect(w1.owned().sort()).toEqual(['room:2', 'room:3', 'user:2', 'user:3']);
      const tokens = () => Object.fromEntries(w1.status().shards.map((s) => [s.name, s.token]));
      const before = tokens();
      const epoch = await r.redis.hget(r.keys.workerLease('w1'), 'epoch');
      // w1's renewal is late: its epoch has expired, its heartbeat is recent.
      await r.redis.hset(r.keys.workerLease('w1'), 'expires', '1');
      // w2 is below its share (ceil(4 / 2) per family: w1 counts as live) and looks at every shard
      // it does not hold, w1's among them; the free ones fill its share.
      const w2 = await r.startWorker('w2', { leaseTtlMs: 60_000 });
      expect(w2.owned().sort()).toEqual(['room:0', 'room:1', 'user:0', 'user:1']);
      expect(await r.redis.hget(r.keys.workerLease('w1'), 'killed')).toBeNull();
      // w1's late round renews its epoch: it keeps every shard, under the same tokens.
      await w1.tick();
      expect(await r.redis.hget(r.keys.workerLease('w1'), 'epoch')).toBe(epoch);
      expect(Number(await r.redis.hget(r.keys.workerLease('w1'), 'expires'))).toBeGreaterThan(Date.now());
      expect(w1.owned().sort()).toEqual(['room:2', 'room:3', 'user:2', 'user:3']);
      expect(w1.status().shards.every((s) => s.state === 'running')).toBe(true);
      expect(tokens()).toEqual(before);
    });

    it('a reservation lets only its target take a free shard', async () => {
      r = await rig(mode);
      const a = await start('wa');
      const b = await start('wb');
      const c = await start('wc');
      const lease = r.keys.shard('user', 1).lease;
      const t1 = await acquire(1, 'wa', a);
      expect(await runScript(r.redis, 'leaseReserve', [lease], ['wc', 30_000])).toBe('wa');
      expect(await runScript(r.redis, 'leaseRelease', [lease], ['wa', String(t1[0])])).toBe(1);
      expect(await acquire(1, 'wb', b)).toEqual([0, 'reserved:wc']);
      expectNewToken(await acquire(1, 'wc', c), t1[0], 'wc');
      expect(await r.redis.hget(lease, 'target')).toBeNull();
    });
  });
}
