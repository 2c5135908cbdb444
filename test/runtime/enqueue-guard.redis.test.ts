/**
 * Guarded asks (AskOptions.guard, enqueue-many-4.lua): a command is appended only while a key
 * holds exactly the guard's bytes, checked in the same call as the append; otherwise the ask fails
 * with EnqueueGuardError and the inbox has nothing new. Then asGuardedUser (src/api/client/auth.ts)
 * over it: the second request of a token is authenticated from the front's copy of the token's
 * record without reading it, and a token revoked (or rewritten: locked, suspended) since the copy
 * appends nothing and is answered as without the copy. Real redis-server, both modes where the
 * mode matters.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { LedgerReply } from '../../actors/ledger';
import { asGuardedUser, newToken, tokenHash, tokenKeyName, type Requester, type TokenRecord } from '../../src/api/client/auth';
import type { ApiContext } from '../../src/api/context';
import { MatrixError } from '../../src/http/errors';
import { RateLimiter } from '../../src/http/rate-limit';
import type { Request } from '../../src/http/server';
import { EnqueueGuardError } from '../../src/runtime/actor-client';
import { encode } from '../../src/store/codec';
import { shardOf } from '../../src/store/shards';
import type { RedisClient } from '../../src/store/redis';
import { rig, waitFor, type Rig } from './harness';

let r: Rig | undefined;
afterEach(async () => {
  await r?.close();
  r = undefined;
});

/** Entries in the inbox of the user shard that owns `actorId`. */
const inboxLength = (x: Rig, actorId: string) => x.redis.xlen(x.keys.shard('user', shardOf(actorId, x.shardCounts.user)).inbox);

describe('guarded asks (single redis)', () => {
  it('appends while the guard key holds the bytes, and nothing once it does not', async () => {
    r = await rig('single', { shards: 4 });
    await r.startWorker('w1');
    const c = await r.client();
    const actor = '@guarded:test';
    const guardKey = r.keys.shard('user', shardOf(actor, r.shardCounts.user)).data('guard:1');
    await r.redis.set(guardKey, Buffer.from([1, 2, 3]));
    const ok = await c.ask<LedgerReply>('user', 'ledger', actor, { op: 'append', producer: 'p', seq: 1, value: 5 }, { guard: { key: guardKey, value: Buffer.from([1, 2, 3]) } });
    expect(ok.count).toBe(1);

    const before = await inboxLength(r, actor);
    // Other bytes, then no key at all, then a key of another type: each a guard that does not hold.
    await r.redis.set(guardKey, Buffer.from([1, 2, 4]));
    await expect(c.ask('user', 'ledger', actor, { op: 'append', producer: 'p', seq: 2, value: 5 }, { guard: { key: guardKey, value: Buffer.from([1, 2, 3]) } })).rejects.toBeInstanceOf(EnqueueGuardError);
    await r.redis.del(guardKey);
    await expect(c.ask('user', 'ledger', actor, { op: 'append', producer: 'p', seq: 2, value: 5 }, { guard: { key: guardKey, value: Buffer.from([1, 2, 3]) } })).rejects.toBeInstanceOf(EnqueueGuardError);
    await r.redis.hset(guardKey, 'f', 'v');
    await expect(c.ask('user', 'ledger', actor, { op: 'append', producer: 'p', seq: 2, value: 5 }, { guard: { key: guardKey, value: Buffer.from([1, 2, 3]) } })).rejects.toBeInstanceOf(EnqueueGuardError);
    expect(await inboxLength(r, actor)).toBe(before);

    // Unguarded asks of the same call are not held back by a guarded one that fails.
    const [refused, plain] = await Promise.allSettled([
      c.ask('user', 'ledger', actor, { op: 'append', producer: 'p', seq: 2, value: 5 }, { guard: { key: guardKey, value: Buffer.from([9]) } }),
      c.ask<LedgerReply>('user', 'ledger', actor, { op: 'append', producer: 'p', seq: 2, value: 7 }),
    ]);
    expect(refused.status === 'rejected' && refused.reason instanceof EnqueueGuardError).toBe(true);
    expect(plain.status === 'fulfilled' && plain.value.count).toBe(2);
    expect(await c.ask('user', 'ledger', actor, { op: 'read' })).toMatchObject({ count: 2, sum: 12, outOfOrder: 0 });
  });

  it('wakes no shard whose only entries were refused', async () => {
    r = await rig('single', { shards: 1 });
    await r.startWorker('w1');
    const c = await r.client();
    const actor = '@quiet:test';
    await c.ask('user', 'ledger', actor, { op: 'append', producer: 'p', seq: 1, value: 1 });
    const channel = r.keys.wakeChannel('user', 0);
    const sub = r.redis.duplicate();
    const heard: string[] = [];
    await sub.subscribe(channel);
    sub.on('message', (_c: string, m: string) => heard.push(m));
    const guardKey = r.keys.shard('user', 0).data('guard:2');
    await expect(c.ask('user', 'ledger', actor, { op: 'append', producer: 'p', seq: 2, value: 1 }, { guard: { key: guardKey, value: Buffer.from('x') } })).rejects.toBeInstanceOf(EnqueueGuardError);
    // A wake-up of our own, published after the refused call was answered: messages reach a
    // subscriber in the order Redis published them, so anything the refused call published
    // would be heard before it.
    await r.redis.publish(channel, '1');
    await waitFor('our own wake-up', () => heard.length > 0);
    expect(heard).toEqual(['1']);
    sub.disconnect();
  });
});

describe('guarded asks (cluster)', () => {
  it('are refused on a Cluster (the guard key and the inbox are in different slots), nothing appended', async () => {
    r = await rig('cluster', { shards: 4 });
    await r.startWorker('w1');
    const c = await r.client();
    const actor = '@guarded:test';
    const guardKey = r.keys.shard('user', shardOf(actor, r.shardCounts.user)).data('guard:1');
    await r.redis.set(guardKey, 'v');
    const before = await inboxLength(r, actor);
    await expect(c.ask('user', 'ledger', actor, { op: 'append', producer: 'p', seq: 1, value: 1 }, { guard: { key: guardKey, value: Buffer.from('v') } })).rejects.toThrow(/single Redis/);
    expect(await inboxLength(r, actor)).toBe(before);
  });
});

/** Counts the reads of token records made through it (everything else passes through). */
function countingReads(redis: RedisClient): { redis: RedisClient; reads: () => number } {
  let reads = 0;
  const wrapped = new Proxy(redis, {
    get(target, prop, receiver) {
      if (prop === 'getBuffer') {
        return (key: string) => {
          if (key.includes(':tok:')) reads++;
          return target.getBuffer(key);
        };
      }
      const v = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
  return { redis: wrapped as RedisClient, reads: () => reads };
}

describe('asGuardedUser (single redis)', () => {
  it('reads a token’s record once, then guards the write with its copy; a revoked or rewritten token appends nothing', async () => {
    r = await rig('single', { shards: 4 });
    await r.startWorker('w1');
    const actors = await r.client();
    const userId = '@alice:test';
    const token = newToken(userId, r.shardCounts.user);
    const recordKey = r.keys.shard('user', shardOf(userId, r.shardCounts.user)).data(tokenKeyName(token));
    expect(recordKey).toContain(tokenHash(token));
    const record: TokenRecord = { u: userId, d: 'DEV' };
    await r.redis.set(recordKey, encode(record));
    const counted = countingReads(r.redis);
    const ctx = { redis: counted.redis, keys: r.keys, shardCounts: r.shardCounts, actors } as unknown as ApiContext;
    const req = { headers: { authorization: `Bearer ${token}` }, query: {} } as unknown as Request;
    let seq = 0;
    const guards: boolean[] = [];
    const users: Requester[] = [];
    // The write: one guarded ask (the ledger actor stands in for the room).
    // A retried act asks with the same sequence number; a refused one uses none.
    const write = () => {
      const next = seq + 1;
      return asGuardedUser(ctx, req, (user, guard) => {
        guards.push(guard !== undefined);
        users.push(user);
        expect(user).toMatchObject({ userId, deviceId: 'DEV', accessToken: token });
        return actors.ask<LedgerReply>('user', 'ledger', userId, { op: 'append', producer: 'p', seq: next, value: 1 }, guard ? { guard } : {});
      }).then((reply) => {
        seq = next;
        return reply;
      });
    };

    expect((await write()).count).toBe(1);
    expect(counted.reads()).toBe(1);
    expect((await write()).count).toBe(2);
    expect((await write()).count).toBe(3);
    expect(counted.reads()).toBe(1);
    expect(guards).toEqual([false, true, true]);

    // Suspended since the copy: the guarded ask fails (nothing appended), and the act runs again
    // as the record says now — the requester suspended, as without the copy.
    await r.redis.set(recordKey, encode({ ...record, s: 1 }));
    guards.length = 0;
    users.length = 0;
    expect((await write()).count).toBe(4);
    expect(guards).toEqual([true, false]);
    expect(users.map((u) => u.suspended === true)).toEqual([false, true]);
    // A copy that says suspended is not used: the record is read (and restricts) every time.
    expect((await write()).count).toBe(5);
    expect(guards.slice(2)).toEqual([false]);
    expect(counted.reads()).toBe(3);

    // Revoked: the record is gone. The guarded ask appends nothing; the answer is 401.
    await r.redis.set(recordKey, encode(record));
    expect((await write()).count).toBe(6); // a fresh copy (the rewrite changed the bytes back)
    const inbox = r.keys.shard('user', shardOf(userId, r.shardCounts.user)).inbox;
    await r.redis.del(recordKey);
    const before = await r.redis.xlen(inbox);
    const err = await write().then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(MatrixError);
    expect((err as MatrixError).status).toBe(401);
    expect((err as MatrixError).errcode).toBe('M_UNKNOWN_TOKEN');
    expect(await r.redis.xlen(inbox)).toBe(before);
    expect(await actors.ask('user', 'ledger', userId, { op: 'read' })).toMatchObject({ count: 6 });

    // Locked while the copy is kept: 401 M_USER_LOCKED, nothing appended.
    await r.redis.set(recordKey, encode(record));
    expect((await write()).count).toBe(7);
    await r.redis.set(recordKey, encode({ ...record, l: 1 }));
    const locked = await write().then(
      () => null,
      (e: unknown) => e,
    );
    expect((locked as MatrixError).errcode).toBe('M_USER_LOCKED');
    expect(await actors.ask('user', 'ledger', userId, { op: 'read' })).toMatchObject({ count: 7, outOfOrder: 0 });

    // An error of the act under a copy is answered only for a token that is still good: revoked,
    // the answer is 401, not the act's error.
    await r.redis.set(recordKey, encode(record));
    await write();
    await r.redis.del(recordKey);
    const leaked = await asGuardedUser(ctx, req, async () => {
      throw new MatrixError(403, 'M_FORBIDDEN', 'something only a member may learn');
    }).then(
      () => null,
      (e: unknown) => e,
    );
    expect((leaked as MatrixError).errcode).toBe('M_UNKNOWN_TOKEN');
  });

  it('the rate limit, an expired copy and an act that does not ask: each answered for the token as it is now', async () => {
    r = await rig('single', { shards: 4 });
    await r.startWorker('w1');
    const actors = await r.client();
    const userId = '@bob:test';
    const token = newToken(userId, r.shardCounts.user);
    const recordKey = r.keys.shard('user', shardOf(userId, r.shardCounts.user)).data(tokenKeyName(token));
    const record: TokenRecord = { u: userId, d: 'DEV' };
    await r.redis.set(recordKey, encode(record));
    const counted = countingReads(r.redis);
    // Three requests a minute for a user, refilling one a minute (local buckets: no shared limiter).
    const limiter = new RateLimiter({ client: { perMinute: 1, burst: 3 } });
    const ctx = { redis: counted.redis, keys: r.keys, shardCounts: r.shardCounts, actors, limiter } as unknown as ApiContext;
    const req = { headers: { authorization: `Bearer ${token}` }, query: {} } as unknown as Request;
    let seq = 0;
    const write = () => {
      const next = seq + 1;
      return asGuardedUser(ctx, req, (_user, guard) => actors.ask<LedgerReply>('user', 'ledger', userId, { op: 'append', producer: 'p', seq: next, value: 1 }, guard ? { guard } : {})).then((reply) => {
        seq = next;
        return reply;
      });
    };
    const failure = (p: Promise<unknown>) =>
      p.then(
        () => null,
        (e: unknown) => e as MatrixError,
      );
    expect((await write()).count).toBe(1); // the record read; 2 left in the bucket
    expect((await write()).count).toBe(2); // the copy; 1 left
    // Revoked: the copy's charge is given back when the guard fails and the token turns out gone.
    await r.redis.del(recordKey);
    expect((await failure(write()))?.errcode).toBe('M_UNKNOWN_TOKEN');
    expect(limiter.local.take('client', userId)).toBe(0); // the unit given back, taken here: 0 left
    await r.redis.set(recordKey, encode(record));
    limiter.local.refund('client', userId);
    expect((await write()).count).toBe(3); // a read again (the copy was dropped); 0 left
    // Revoked with the bucket empty: 401, not the 429 that would tell its holder about the user's use.
    await r.redis.del(recordKey);
    const limited = await failure(write());
    expect(limited?.status).toBe(401);
    expect(limited?.errcode).toBe('M_UNKNOWN_TOKEN');

    // An act that answers without a guarded ask: answered only after a read confirms the token.
    const plain = { ...ctx, limiter: undefined } as unknown as ApiContext;
    await r.redis.set(recordKey, encode(record));
    await asGuardedUser(plain, req, async () => 'fresh'); // the read (no copy after the 401)
    const readsBefore = counted.reads();
    expect(await asGuardedUser(plain, req, async () => 'from the copy')).toBe('from the copy');
    expect(counted.reads()).toBe(readsBefore + 1);
    await r.redis.del(recordKey);
    expect((await failure(asGuardedUser(plain, req, async () => 'leak')))?.errcode).toBe('M_UNKNOWN_TOKEN');

    // An expired copy is not used: the record decides (expired, 401 soft logout).
    await r.redis.set(recordKey, encode({ ...record, exp: Date.now() + 150 }));
    await asGuardedUser(plain, req, async () => 'fresh');
    await new Promise((resolve) => setTimeout(resolve, 200));
    const reads = counted.reads();
    const expired = await failure(asGuardedUser(plain, req, async () => 'late'));
    expect(expired?.errcode).toBe('M_UNKNOWN_TOKEN');
    expect(expired?.extra).toMatchObject({ soft_logout: true });
    expect(counted.reads()).toBe(reads + 1);
    expect(await actors.ask('user', 'ledger', userId, { op: 'read' })).toMatchObject({ count: 3, outOfOrder: 0 });
  });
});
