/**
 * Push delivery (enqueue-many-6.lua, ShardRunner.pushed; single Redis): the enqueue call reads its
 * shards' new entries into their holders' pending lists and publishes them, one message per holder
 * on its push channel (or per shard on the shard's channel), and the holder
 * applies them without a read of its own — unless something could have come between (a read in
 * flight, a lost subscriber connection), when the push is a wake-up and the next read gives the
 * entries first. Real redis-server; the ledger actor counts messages applied out of order.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { LedgerReply } from '../../actors/ledger';
import { packInboxEntry, parseHolderPush, parseInboxEntry, parsePackedPush, parsePush } from '../../src/runtime/envelope';
import { compareStreamIds } from '../../src/runtime/shard-runner';
import { INBOX_GROUP } from '../../src/store/keys';
import { connectRedis, runScript } from '../../src/store/redis';
import { shardOf } from '../../src/store/shards';
import type { Redis } from 'ioredis';
import { rig, waitFor, type Rig } from './harness';

// One rig at a time in this file, closed after each test.
let r: Rig | undefined;
afterEach(async () => {
  await r?.close();
  r = undefined;
});

describe('push delivery (single redis)', () => {
  const pushedTotal = (w: { owned(): string[]; runner(name: string): { pushedEntries: number } | undefined }) => w.owned().reduce((n, name) => n + (w.runner(name)?.pushedEntries ?? 0), 0);

  it('messages are applied from the enqueue call’s push, without a read, in order, each once', async () => {
    r = await rig('single', { shards: 4 });
    const w = await r.startWorker('w1');
    const c = await r.client();
    // Once a first read after the subscriptions took effect has run, pushes are taken as they come.
    await c.ask<LedgerReply>('user', 'ledger', '@warm:test', { op: 'append', producer: 'p', seq: 1, value: 1 });
    const before = pushedTotal(w);
    const actors = Array.from({ length: 8 }, (_, i) => `@push${i}:test`);
    for (let round = 1; round <= 20; round++) {
      const replies = await Promise.all(actors.map((a) => c.ask<LedgerReply>('user', 'ledger', a, { op: 'append', producer: 'p', seq: round, value: round })));
      expect(replies.map((x) => x.count)).toEqual(actors.map(() => round));
    }
    for (const a of actors) expect(await c.ask('user', 'ledger', a, { op: 'read' })).toMatchObject({ count: 20, sum: 210, outOfOrder: 0 });
    // Most of the 160 came by push (a push that finds a read in flight is a wake-up instead).
    expect(pushedTotal(w) - before).toBeGreaterThan(80);
    await waitFor('every entry acknowledged', async () => {
      let pending = 0;
      for (let s = 0; s < r!.shardCounts.user; s++) pending += Number(((await r!.redis.xpending(r!.keys.shard('user', s).inbox, INBOX_GROUP)) as [number])[0]);
      return pending === 0;
    });
  });

  it('an enqueue call sent again (as ioredis does after a dropped connection) appends nothing twice: an ask with a minted id is applied once', async () => {
    r = await rig('single', { shards: 4 });
    await r.startWorker('w1');
    const c = await r.client();
    await c.ask<LedgerReply>('user', 'ledger', '@warm:test', { op: 'append', producer: 'p', seq: 1, value: 1 });
    // The client's next script call goes to Redis twice, the second once the first has run.
    const writer = (c as unknown as { writer: Redis }).writer as unknown as { evalshaBuffer: (...a: unknown[]) => Promise<unknown> };
    const original = writer.evalshaBuffer;
    let answers: Promise<[unknown, unknown]> | undefined;
    writer.evalshaBuffer = function (this: unknown, ...a: unknown[]) {
      const first = original.apply(this, a);
      answers ??= first.then(async (one) => [one, await original.apply(this, a)]);
      return first;
    };
    const actor = '@once:test';
    const reply = await c.ask<LedgerReply>('user', 'ledger', actor, { op: 'append', producer: 'p', seq: 1, value: 5 });
    writer.evalshaBuffer = original;
    const [one, again] = await answers!;
    expect(again).toEqual(one);
    expect(reply.count).toBe(1);
    const inbox = r.keys.shard('user', shardOf(actor, r.shardCounts.user)).inbox;
    const entries = ((await r.redis.xrangeBuffer(inbox, '-', '+')) as [Buffer, Buffer[]][]).map(([id, f]) => parseInboxEntry(id.toString(), f)).filter((e) => e?.actorId === actor);
    expect(entries).toHaveLength(1);
    expect(entries[0]!.mid).toMatch(/^~/);
    expect(await c.ask('user', 'ledger', actor, { op: 'read' })).toMatchObject({ count: 1, sum: 5 });
  });

  /** Every pub/sub message on `channels` (patterns), as [channel, message]. */
  const watch = async (...patterns: string[]) => {
    const sub = connectRedis(r!.target) as Redis;
    const seen: [string, Buffer][] = [];
    sub.on('pmessageBuffer', (_p: Buffer, ch: Buffer, m: Buffer) => seen.push([ch.toString(), m]));
    await sub.psubscribe(...patterns);
    return { seen, close: () => sub.disconnect() };
  };
  /** `n` actor ids whose user shards are all different (of `shards`). */
  const spread = (n: number, shards: number, tag: string) => {
    const ids: string[] = [];
    const used = new Set<number>();
    for (let i = 0; ids.length < n; i++) {
      const id = `@${tag}${i}:test`;
      const s = shardOf(id, shards);
      if (used.has(s)) continue;
      used.add(s);
      ids.push(id);
    }
    return ids;
  };
  /** Each actor's first message, applied (a first read after the subscriptions has run by then). */
  const firstAppend = async (c: { ask<R>(f: 'user', k: string, a: string, b: unknown): Promise<R> }, actors: string[]) => {
    for (const a of actors) await c.ask<LedgerReply>('user', 'ledger', a, { op: 'append', producer: 'p', seq: 1, value: 1 });
  };
  /** w2 takes shard user:0 from w1, as a takeover does (the token bumped), before w1 learns of it; the lease answer. */
  const takeShardForW2 = async () => {
    const shard = r!.keys.shard('user', 0);
    await r!.redis.hset(r!.keys.workerLease('w2'), 'epoch', '1', 'expires', String(Date.now() + 600_000));
    const epoch = (await r!.redis.hget(shard.lease, 'epoch'))!;
    return (await runScript(r!.redis, 'leaseAcquire', [shard.lease], ['w2', '1', 'w1', epoch])) as [number, string];
  };

  it("one call's entries for several shards of one holder go to it as ONE message on its push channel, applied without reads, in order", async () => {
    r = await rig('single', { shards: 8 });
    const w = await r.startWorker('w1');
    const c = await r.client();
    const actors = spread(6, 8, 'many');
    await firstAppend(c, actors);
    const seen = await watch(`${r.keys.workerPush('')}*`, `${r.prefix}wake:*`);
    try {
      const before = pushedTotal(w);
      for (let round = 2; round <= 11; round++) {
        // Asked in one turn: one enqueue call for the six shards.
        const replies = await Promise.all(actors.map((a) => c.ask<LedgerReply>('user', 'ledger', a, { op: 'append', producer: 'p', seq: round, value: round })));
        expect(replies.map((x) => x.count)).toEqual(actors.map(() => round));
      }
      // Every reply came after its push was published, and the watcher's connection had it first.
      await new Promise((ok) => setTimeout(ok, 50));
      const holderPushes = seen.seen.filter(([ch]) => ch === r!.keys.workerPush('w1'));
      // One message a call: ten calls, every one naming several shards' inboxes.
      expect(holderPushes.length).toBe(10);
      for (const [, m] of holderPushes) {
        const p = parseHolderPush(m)!;
        expect(p.owner).toBe('w1');
        expect(p.shards.length).toBeGreaterThan(1);
        for (const [inbox, entries] of p.shards) {
          expect(inbox.startsWith(`${r.prefix}`)).toBe(true);
          expect(entries.length).toBeGreaterThan(0);
        }
      }
      // Nothing per shard: neither the old push message nor wake-ups (no read needed).
      expect(seen.seen.filter(([ch]) => ch.includes(':wake:')).map(([, m]) => m.toString())).toEqual([]);
      // Applied as they came, but for a push that found a read in flight (a sweep's), which is taken as a wake-up.
      expect(pushedTotal(w) - before).toBeGreaterThan(40);
      for (const a of actors) expect(await c.ask('user', 'ledger', a, { op: 'read' })).toMatchObject({ count: 11, sum: 66, outOfOrder: 0 });
    } finally {
      seen.close();
    }
  });

  it("a holder's message bigger than the byte cap goes as one message per shard on the shards' own channels, still applied as pushed", async () => {
    r = await rig('single', { shards: 8 });
    // No sweeps: a sweep's read in flight makes a push a wake-up, and this counts pushes.
    const w = await r.startWorker('w1', { pollMs: 60_000 });
    const c = await r.client();
    const actors = spread(4, 8, 'wide');
    await firstAppend(c, actors);
    const seen = await watch(`${r.keys.workerPush('')}*`, `${r.prefix}wake:*`);
    try {
      const before = pushedTotal(w);
      // ~100 KB a shard: ~400 KB for the holder, above the 256 KB cap; each shard's below it.
      const pad = 'y'.repeat(100_000);
      const replies = await Promise.all(actors.map((a) => c.ask<LedgerReply>('user', 'ledger', a, { op: 'append', producer: 'p', seq: 2, value: 2, pad } as never)));
      expect(replies.map((x) => x.count)).toEqual([2, 2, 2, 2]);
      await waitFor('the four shard messages seen', () => seen.seen.length >= 4);
      expect(seen.seen.filter(([ch]) => ch.startsWith(r!.keys.workerPush('')))).toEqual([]);
      const perShard = seen.seen.map(([ch, m]) => [ch, parsePackedPush(m)] as const);
      expect(new Set(perShard.map(([ch]) => ch)).size).toBe(4);
      for (const [, p] of perShard) expect(p?.owner).toBe('w1');
      expect(pushedTotal(w) - before).toBe(4);
      for (const a of actors) expect(await c.ask('user', 'ledger', a, { op: 'read' })).toMatchObject({ count: 2, sum: 3, outOfOrder: 0 });
    } finally {
      seen.close();
    }
  });

  it('a holder that does not listen on its push channel (an earlier version) gets per-shard pushes, applied in order; a pattern subscriber does not count as listening', async () => {
    r = await rig('single', { shards: 8 });
    const w = await r.startWorker('w1', { pollMs: 60_000 });
    const c = await r.client();
    const actors = spread(4, 8, 'old');
    await firstAppend(c, actors);
    // As a worker of enqueue-many-4's time: subscribed to its shards' channels only.
    await (w as unknown as { sub: Redis }).sub.unsubscribe(r.keys.workerPush('w1'));
    const seen = await watch(`${r.keys.workerPush('')}*`, `${r.prefix}wake:*`);
    try {
      const before = pushedTotal(w);
      for (let round = 2; round <= 6; round++) {
        const replies = await Promise.all(actors.map((a) => c.ask<LedgerReply>('user', 'ledger', a, { op: 'append', producer: 'p', seq: round, value: round })));
        expect(replies.map((x) => x.count)).toEqual(actors.map(() => round));
      }
      await new Promise((ok) => setTimeout(ok, 50));
      expect(seen.seen.filter(([ch]) => ch.startsWith(r!.keys.workerPush('')))).toEqual([]);
      const perShard = seen.seen.map(([ch, m]) => [ch, parsePackedPush(m)?.owner] as const);
      expect(perShard.length).toBe(20);
      expect(perShard.every(([, owner]) => owner === 'w1')).toBe(true);
      expect(pushedTotal(w) - before).toBe(20);
      for (const a of actors) expect(await c.ask('user', 'ledger', a, { op: 'read' })).toMatchObject({ count: 6, sum: 21, outOfOrder: 0 });
    } finally {
      seen.close();
    }
  });

  it("an inbox without its group does not cost the holder's other shards their push: each is read on its own then", async () => {
    r = await rig('single', { shards: 8 });
    await r.startWorker('w1', { pollMs: 60_000 });
    const c = await r.client();
    const [good, broken] = spread(2, 8, 'grp');
    await firstAppend(c, [good!, broken!]);
    const brokenInbox = r.keys.shard('user', shardOf(broken!, 8)).inbox;
    // The stream and its group gone (the next append makes a stream without a group).
    await r.redis.del(brokenInbox);
    const seen = await watch(`${r.keys.workerPush('')}*`, `${r.prefix}wake:*`);
    try {
      const lost = c.ask('user', 'ledger', broken!, { op: 'append', producer: 'p', seq: 2, value: 2 }, { timeoutMs: 1_000 }).catch(() => 'no answer');
      const reply = await c.ask<LedgerReply>('user', 'ledger', good!, { op: 'append', producer: 'p', seq: 2, value: 2 });
      expect(reply.count).toBe(2);
      await lost;
      const holder = seen.seen.filter(([ch]) => ch === r!.keys.workerPush('w1')).map(([, m]) => parseHolderPush(m)!);
      // Both asks went in one call (one turn): the good shard's entry pushed, the other woken.
      expect(holder.flatMap((p) => p.shards.map(([inbox]) => inbox))).toEqual([r.keys.shard('user', shardOf(good!, 8)).inbox]);
      expect(seen.seen.filter(([ch]) => ch === r!.keys.wakeChannel('user', shardOf(broken!, 8))).map(([, m]) => m.toString())).toEqual(['1']);
    } finally {
      seen.close();
    }
  });

  it('entries read for a new holder but too big to push: the wake-up names it, and the worker that lost the shard leaves them alone', async () => {
    r = await rig('single', { shards: 1, renewMs: 30_000, ttlMs: 120_000 });
    const w = await r.startWorker('w1', { pollMs: 60_000 });
    const c = await r.client();
    const actor = '@bigmoved:test';
    expect(await c.ask<LedgerReply>('user', 'ledger', actor, { op: 'append', producer: 'p', seq: 1, value: 1 })).toMatchObject({ count: 1 });
    const shard = r.keys.shard('user', 0);
    expect((await takeShardForW2())[1]).toBe('w2');
    const seen = await watch(`${r.prefix}wake:*`);
    try {
      const big = c.ask('user', 'ledger', actor, { op: 'append', producer: 'p', seq: 2, value: 2, pad: 'z'.repeat(300_000) } as never, { timeoutMs: 1_500 }).catch(() => 'no answer');
      expect(await big).toBe('no answer');
      expect(seen.seen.map(([, m]) => m.toString())).toEqual(['Ww2']);
      const rows = (await r.redis.xpending(shard.inbox, INBOX_GROUP, '-', '+', 10)) as [string, string, number, number][];
      expect(rows.map((row) => [row[1], Number(row[3])])).toEqual([['w2', 1]]);
      expect(w.owned()).toContain('user:0');
    } finally {
      seen.close();
    }
  });

  it('a worker whose lease was taken leaves a push naming the new holder alone: it neither reads nor claims the entry', async () => {
    r = await rig('single', { shards: 1, renewMs: 30_000, ttlMs: 120_000 });
    const w = await r.startWorker('w1', { pollMs: 60_000 });
    const c = await r.client();
    const actor = '@moved:test';
    expect(await c.ask<LedgerReply>('user', 'ledger', actor, { op: 'append', producer: 'p', seq: 1, value: 1 })).toMatchObject({ count: 1 });
    const shard = r.keys.shard('user', 0);
    // w2 takes the shard, as a takeover does (the token bumped), before w1 learns of it.
    const taken = await takeShardForW2();
    expect(taken[1]).toBe('w2');
    // Nobody listens on w2's push channel (as with a holder of an earlier version): the entry goes
    // on the shard's own channel as a push naming w2, which w1 leaves alone.
    const seen = await watch(`${r.prefix}wake:*`);
    const second = c.ask('user', 'ledger', actor, { op: 'append', producer: 'p', seq: 2, value: 2 }, { timeoutMs: 1_500 }).catch(() => 'no answer');
    expect(await second).toBe('no answer');
    seen.close();
    expect(seen.seen.map(([ch, m]) => [ch, parsePackedPush(m)?.owner])).toEqual([[r.keys.wakeChannel('user', 0), 'w2']]);
    // The entry went to w2's pending list with the enqueue call, delivered once, and stays there.
    const rows = (await r.redis.xpending(shard.inbox, INBOX_GROUP, '-', '+', 10)) as [string, string, number, number][];
    expect(rows.map((row) => [row[1], Number(row[3])])).toEqual([['w2', 1]]);
    expect(w.owned()).toContain('user:0');
  });

  it('a push bigger than the byte cap goes as a wake-up naming the holder: it reads the entries, in order', async () => {
    r = await rig('single', { shards: 1 });
    const w = await r.startWorker('w1');
    const c = await r.client();
    const actor = '@big:test';
    expect(await c.ask<LedgerReply>('user', 'ledger', actor, { op: 'append', producer: 'p', seq: 1, value: 1 })).toMatchObject({ count: 1 });
    const watch = (await import('../../src/store/redis')).connectRedis(r.target) as import('ioredis').Redis;
    const messages: Buffer[] = [];
    watch.on('messageBuffer', (_ch: Buffer, m: Buffer) => messages.push(m));
    await watch.subscribe(r.keys.wakeChannel('user', 0));
    try {
      const pushedBefore = pushedTotal(w);
      // Four messages of ~100 KB in one call: ~400 KB of entries, above the 256 KB cap.
      const pad = 'x'.repeat(100_000);
      const replies = await Promise.all([2, 3, 4, 5].map((seq) => c.ask<LedgerReply>('user', 'ledger', actor, { op: 'append', producer: 'p', seq, value: seq, pad } as never)));
      expect(replies.map((x) => x.count)).toEqual([2, 3, 4, 5]);
      expect(pushedTotal(w)).toBe(pushedBefore);
      expect(await c.ask('user', 'ledger', actor, { op: 'read' })).toMatchObject({ count: 5, sum: 15, outOfOrder: 0 });
      // Read into w1's pending list, too big to push: a wake-up naming w1.
      expect(messages.some((m) => m.toString() === 'Ww1')).toBe(true);
      expect(messages.every((m) => m.length < 256 * 1024)).toBe(true);
    } finally {
      watch.disconnect();
    }
  });

  it("a shard's new holder deletes the earlier holders' consumers once it has claimed their entries", async () => {
    r = await rig('single', { shards: 1 });
    const inbox = r.keys.shard('user', 0).inbox;
    await r.redis.xgroup('CREATE', inbox, INBOX_GROUP, '0', 'MKSTREAM');
    // Two earlier holders: one read an entry it never finished, one holds nothing.
    await r.redis.xadd(inbox, '*', 'n', '1');
    await r.redis.xreadgroup('GROUP', INBOX_GROUP, 'gone-1', 'COUNT', 1, 'STREAMS', inbox, '>');
    await r.redis.xreadgroup('GROUP', INBOX_GROUP, 'gone-2', 'COUNT', 1, 'STREAMS', inbox, '>');
    await r.startWorker('w1');
    const names = async () => ((await r!.redis.call('XINFO', 'CONSUMERS', inbox, INBOX_GROUP)) as unknown[][]).map((c) => String(c[c.indexOf('name') + 1]));
    await waitFor('the earlier consumers gone', async () => (await names()).every((n) => n === 'w1'));
    // The unfinished entry (malformed: no actor) was claimed and dead-lettered by w1, not lost with its consumer.
    await waitFor('the entry dead-lettered', async () => (await r!.redis.xlen(r!.keys.shard('user', 0).dead)) === 1);
    expect(Number(((await r.redis.xpending(inbox, INBOX_GROUP)) as [number])[0])).toBe(0);
  });

  it("the worker's subscriber connection killed again and again during a stream of one actor's messages: none lost, none applied out of order or twice", async () => {
    r = await rig('single', { shards: 2 });
    await r.startWorker('w1', { pollMs: 300 });
    const c = await r.client();
    const actor = '@stream:test';
    const total = 5000;
    let sent = 0;
    let kills = 0;
    const killer = (async () => {
      while (sent < total) {
        await new Promise((res) => setTimeout(res, 5));
        // The worker's wake-up subscriber (the only pub/sub client here): pushes published while
        // it is away are lost for good.
        kills += Number(await r!.redis.call('CLIENT', 'KILL', 'TYPE', 'pubsub'));
      }
    })();
    // 100 in flight, in seq order: the inbox holds them in that order. A push taken while one before
    // it was lost would leave that entry below the runner's last id, where no read looks: its ask
    // would time out (20 s) and the ledger would count the later ones out of order (seen with the
    // push taken unconditionally).
    const lanes = Array.from({ length: 100 }, async () => {
      while (sent < total) {
        const seq = ++sent;
        await c.ask<LedgerReply>('user', 'ledger', actor, { op: 'append', producer: 'p', seq, value: 1 }, { timeoutMs: 20_000 });
      }
    });
    await Promise.all(lanes);
    await killer;
    expect(kills).toBeGreaterThan(3);
    expect(await c.ask('user', 'ledger', actor, { op: 'read' })).toMatchObject({ count: total, sum: total, outOfOrder: 0 });
  });
});

describe('push messages', () => {
  it('of one shard, as Redis packs them (cmsgpack, enqueue-many-4.lua and -5), parse back byte for byte, whatever the lengths; a cut or padded message is not taken for a push', async () => {
    r = await rig('single', { shards: 1 });
    // Every string header cmsgpack writes (fixstr, str8, str16, str32), binary bytes that are
    // not UTF-8, an entry with no fields, and more entries than a fixarray holds.
    const body = Buffer.from([0x00, 0xff, 0xc1, 0xa0, 0x4d, 0xdb]);
    const sizes = [0, 31, 32, 255, 256, 65_535, 65_536];
    const values = [body, ...sizes.map((n) => Buffer.alloc(n, 0x61 + (n % 20)))];
    const script = `local e = {}
      e[1] = {'1-0', {ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]}}
      e[2] = {'2-0', {}}
      for i = 3, 20 do e[i] = {i .. '-1', {'mid', 'm' .. i}} end
      return 'M' .. cmsgpack.pack('w1', e)`;
    const msg = (await (r.redis as unknown as { evalBuffer(s: string, n: number, ...a: Buffer[]): Promise<Buffer> }).evalBuffer(script, 0, ...values));
    const parsed = parsePackedPush(msg);
    expect(parsed?.owner).toBe('w1');
    expect(parsed?.entries.length).toBe(20);
    expect(parsed!.entries[0]).toEqual(['1-0', values]);
    expect(parsed!.entries[1]).toEqual(['2-0', []]);
    expect(parsed!.entries[19]).toEqual(['20-1', [Buffer.from('mid'), Buffer.from('m20')]]);
    for (const cut of [1, 2, 5, 1000, msg.length - 1]) expect(parsePackedPush(msg.subarray(0, msg.length - cut))).toBeNull();
    expect(parsePackedPush(Buffer.concat([msg, Buffer.from([0xa0])]))).toBeNull();
    expect(parsePackedPush(Buffer.from('M'))).toBeNull();
    // A number where a string belongs is not a push either.
    expect(parsePackedPush(Buffer.concat([Buffer.from('M'), Buffer.from([0xa2, 0x77, 0x31, 0x91, 0x92, 0x01, 0x90])]))).toBeNull();
  });


  it("of several shards (enqueue-many-6.lua's 'N', as cmsgpack packs XREADGROUP's answer) parse back per inbox; a cut or padded message is not taken for a push", async () => {
    r = await rig('single', { shards: 1 });
    const body = Buffer.from([0x00, 0xff, 0xc1, 0xa0, 0x4e, 0xdb]);
    const script = `local parts = {}
      parts[1] = {'axon:inbox:{user:1}', {{'1-0', {'mid', 'm1', 'a', '@a:s', 'k', 'ledger', 'b', ARGV[1]}}, {'1-1', {'mid', 'm2'}}}}
      parts[2] = {'axon:inbox:{user:2}', {}}
      local many = {}
      for i = 1, 20 do many[i] = {'5-' .. i, {'mid', 'n' .. i, 'a', '@b:s', 'k', 'ledger', 'b', ARGV[2]}} end
      parts[3] = {'axon:inbox:{user:3}', many}
      return 'N' .. cmsgpack.pack('w1', parts)`;
    const big = Buffer.alloc(70_000, 0x62);
    const msg = await (r.redis as unknown as { evalBuffer(s: string, n: number, ...a: Buffer[]): Promise<Buffer> }).evalBuffer(script, 0, body, big);
    const p = parseHolderPush(msg)!;
    expect(p.owner).toBe('w1');
    expect(p.shards.map(([inbox, e]) => [inbox, e.length])).toEqual([['axon:inbox:{user:1}', 2], ['axon:inbox:{user:2}', 0], ['axon:inbox:{user:3}', 20]]);
    expect(p.shards[0]![1][0]).toEqual(['1-0', { id: '1-0', mid: 'm1', actorId: '@a:s', kind: 'ledger', body, replyTo: null, enqueuedAt: 0 }]);
    // Not an inbox entry: its raw fields.
    expect(p.shards[0]![1][1]).toEqual(['1-1', [Buffer.from('mid'), Buffer.from('m2')]]);
    expect(p.shards[2]![1][19]![1]).toMatchObject({ mid: 'n20', body: big });
    for (const cut of [1, 2, 7, 1000, msg.length - 1]) expect(parseHolderPush(msg.subarray(0, msg.length - cut))).toBeNull();
    expect(parseHolderPush(Buffer.concat([msg, Buffer.from([0xa0])]))).toBeNull();
    expect(parseHolderPush(Buffer.from('N'))).toBeNull();
    // A shard's message ('M') is not a holder's.
    expect(parseHolderPush(Buffer.concat([Buffer.from('N'), msg.subarray(1, 4)]))).toBeNull();
  });

  it('hold inbox entries read in place: each parses to what parseInboxEntry makes of its fields, and one that is not an entry keeps its raw fields', async () => {
    r = await rig('single', { shards: 1 });
    const body = Buffer.from([0x00, 0xff, 0xc1, 0xa0, 0x4d, 0xdb, 0x81]);
    const fields = (...v: (string | Buffer)[]) => v.map((x) => (Buffer.isBuffer(x) ? x : Buffer.from(x)));
    const entries: [string, Buffer[]][] = [
      // As ActorClient writes one: a UTF-8 actor id, a binary body, a reply stream and a time.
      ['1700000000000-0', fields('mid', 'f.abc:1', 'a', '@zoë:example.org', 'k', 'ledger', 'b', body, 't', '1700000000000', 'r', 'axon:replies:f.abc')],
      // No reply stream (a tell), an unknown field, a field given twice (the last counts), a 300-byte body.
      ['1700000000000-1', fields('mid', 'm2', 'x', 'ignored', 'a', '!r:s', 'k', 'room', 'k', 'typing', 'b', Buffer.alloc(300, 7), 't', '12')],
      // Not an entry (no kind): raw fields.
      ['1700000000001-0', fields('mid', 'm3', 'a', '@u:s', 'b', body)],
      // A name without its value.
      ['1700000000001-1', fields('mid', 'm4', 'a', '@u:s', 'k', 'ledger', 'b', body, 't')],
      // Packed (format 2), read in place from the middle of the message: a UTF-8 actor id, a reply stream.
      ['1700000000002-0', fields('m', packInboxEntry('f.abc:5', '@zoë:example.org', 'ledger', 'axon:replies:f.abc', 1700000000002, body))],
      // Packed, of a layout this version does not know: raw fields.
      ['1700000000002-1', fields('m', Buffer.concat([Buffer.from([9]), packInboxEntry('m6', '@u:s', 'ledger', null, 1, body).subarray(1)]))],
    ];
    const script = `local e = {}
      local p = 1
      for i = 1, tonumber(ARGV[p]) do
        local id, n = ARGV[p + 1], tonumber(ARGV[p + 2])
        local f = {}
        for j = 1, n do f[j] = ARGV[p + 2 + j] end
        e[i] = {id, f}
        p = p + 2 + n
      end
      return 'M' .. cmsgpack.pack('w1', e)`;
    const args: (string | Buffer)[] = [String(entries.length)];
    for (const [id, f] of entries) args.push(id, String(f.length), ...f);
    const msg = await (r.redis as unknown as { evalBuffer(s: string, n: number, ...a: (string | Buffer)[]): Promise<Buffer> }).evalBuffer(script, 0, ...args);
    const parsed = parsePackedPush(msg)!;
    expect(parsed.owner).toBe('w1');
    expect(parsed.entries.map(([id]) => id)).toEqual(entries.map(([id]) => id));
    const [e1, e2, e3, e4, e5, e6] = parsed.entries.map(([, e]) => e);
    expect(e1).toEqual(parseInboxEntry(entries[0]![0], entries[0]![1]));
    expect(e1).toMatchObject({ actorId: '@zoë:example.org', kind: 'ledger', body, replyTo: 'axon:replies:f.abc', enqueuedAt: 1700000000000 });
    expect(e2).toEqual(parseInboxEntry(entries[1]![0], entries[1]![1]));
    expect(e2).toMatchObject({ mid: 'm2', kind: 'typing', replyTo: null, enqueuedAt: 12 });
    expect(e3).toEqual(entries[2]![1]);
    expect(parseInboxEntry(entries[2]![0], entries[2]![1])).toBeNull();
    expect(e4).toEqual(parseInboxEntry(entries[3]![0], entries[3]![1]));
    expect(e5).toEqual({ id: '1700000000002-0', mid: 'f.abc:5', actorId: '@zoë:example.org', kind: 'ledger', body, replyTo: 'axon:replies:f.abc', enqueuedAt: 1700000000002 });
    expect(e5).toEqual(parseInboxEntry(entries[4]![0], entries[4]![1]));
    expect(e6).toEqual(entries[5]![1]);
  });

  it('order stream ids by their numbers, not their text', () => {
    expect(compareStreamIds('9-0', '10-0')).toBeLessThan(0);
    expect(compareStreamIds('10-2', '10-10')).toBeLessThan(0);
    expect(compareStreamIds('1700000000000-5', '1700000000000-5')).toBe(0);
    expect(compareStreamIds('1700000000001-0', '1700000000000-99')).toBeGreaterThan(0);
    expect(compareStreamIds('0-1', '0-0')).toBeGreaterThan(0);
  });

  it('of enqueue-many-2.lua (an asker not yet upgraded) parse back to the holder and the entries, field by field; a cut message is not taken for a push', () => {
    const str = (s: string | Buffer) => {
      const b = Buffer.isBuffer(s) ? s : Buffer.from(s);
      const n = Buffer.alloc(4);
      n.writeUInt32BE(b.length);
      return Buffer.concat([n, b]);
    };
    const count = (k: number) => {
      const n = Buffer.alloc(4);
      n.writeUInt32BE(k);
      return n;
    };
    const body = Buffer.from([0x00, 0xff, 0x50, 0x31]);
    const msg = Buffer.concat([Buffer.from('P'), str('w1'), str('1-0'), count(4), str('mid'), str('m1'), str('b'), str(body), str('2-0'), count(0)]);
    expect(parsePush(msg)).toEqual({ owner: 'w1', entries: [['1-0', [Buffer.from('mid'), Buffer.from('m1'), Buffer.from('b'), body]], ['2-0', []]] });
    expect(parsePush(msg.subarray(0, msg.length - 3))).toBeNull();
    expect(parsePush(Buffer.from('P'))).toBeNull();
  });
});
