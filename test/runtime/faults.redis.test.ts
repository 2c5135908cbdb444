/**
 * Fault tests on real Redis (single server and Cluster) with real worker processes killed with
 * SIGKILL at exact points, a real redis-server killed and restarted from its AOF, and shards
 * moved while 10,000 messages flow.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { answerDroppingProxy } from '../setup/answer-dropping-proxy';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { GroupReads } from '../../src/runtime/group-reads';
import { parseInboxEntry } from '../../src/runtime/envelope';
import { ActorClient } from '../../src/runtime/actor-client';
import { startManagedRedis } from '../../src/runtime/managed-redis';
import { executeMoves, rebalance } from '../../src/runtime/cluster-admin';
import { INBOX_GROUP, KeySpace } from '../../src/store/keys';
import { connectRedis, runScript } from '../../src/store/redis';
import { decode, encode } from '../../src/store/codec';
import { LEDGER_INDEX, type LedgerReply } from '../../actors/ledger';
import type { TypingOutput } from '../../actors/typing';
import { shardOf } from '../../src/store/shards';
import { clusterSlot } from '../../src/store/cluster-slot';
import { fenceKeyOf } from '../../src/runtime/shard-runner';
import pino from 'pino';
import { freePort } from '../setup/free-port';
import { MODES, rig, silent, targetFor, waitFor, type Mode, type Rig } from './harness';

const root = join(import.meta.dirname, '../..');

interface WorkerProc {
  child: ChildProcess;
  output: () => string;
  kill9(): Promise<void>;
}

function spawnWorker(mode: Mode, r: Rig, id: string, extraEnv: Record<string, string> = {}): WorkerProc {
  const target = targetFor(mode);
  const env: Record<string, string> = {
    ...(process.env as Record<string, string>),
    AXON_REDIS_KEY_PREFIX: r.prefix,
    AXON_ROOM_SHARDS: String(r.shardCounts.room),
    AXON_USER_SHARDS: String(r.shardCounts.user),
    AXON_LEASE_TTL_MS: '1500',
    AXON_LEASE_RENEW_MS: '300',
    AXON_LOG_LEVEL: 'info',
    AXON_DATA_DIR: tmpdir(),
    ...(mode === 'single' ? { AXON_REDIS_MODE: 'url', AXON_REDIS_URL: target.url! } : { AXON_REDIS_MODE: 'cluster', AXON_REDIS_CLUSTER_NODES: target.clusterNodes!.map((n) => `${n.host}:${n.port}`).join(',') }),
    ...extraEnv,
  };
  // `node --import tsx` (not the tsx CLI, which runs the program in a child): the pid we kill is
  // the worker itself.
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/worker-main.ts', '--id', id], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  return {
    child,
    output: () => out,
    async kill9() {
      if (child.exitCode !== null || child.signalCode) return;
      const exited = new Promise((res) => child.once('exit', res));
      child.kill('SIGKILL');
      await exited;
    },
  };
}

async function leaseOwners(r: Rig): Promise<string[]> {
  return Promise.all(Array.from({ length: r.shardCounts.user }, (_, s) => r.redis.hget(r.keys.shard('user', s).lease, 'owner').then((o) => o ?? '')));
}

async function pendingTotal(r: Rig): Promise<number> {
  let total = 0;
  for (let s = 0; s < r.shardCounts.user; s++) {
    const p = (await r.redis.xpending(r.keys.shard('user', s).inbox, INBOX_GROUP).catch(() => [0])) as [number];
    total += Number(p[0]);
  }
  return total;
}

for (const mode of MODES) {
  describe(`faults (${mode} redis)`, () => {
    let r: Rig;
    const procs: WorkerProc[] = [];
    afterEach(async () => {
      for (const p of procs.splice(0)) {
        if (p.child.exitCode === null && !p.child.signalCode) {
          const exited = new Promise((res) => p.child.once('exit', res));
          p.child.kill('SIGTERM');
          await exited;
        }
      }
      await r?.close();
    });

    it("messages waiting in a worker's memory behind a slow one past the idle bound are not claimed again: their delivery counts stay at one", async () => {
      r = await rig(mode, { shards: 1 });
      let release: () => void = () => undefined;
      const gate = new Promise<void>((res) => (release = res));
      let held = false;
      // The first message's commit waits on the gate: the actor's next messages queue behind it.
      await r.startWorker('w1', {
        idleBoundMs: 200,
        pollMs: 100,
        faultPoint: async (point, entry) => {
          if (point === 'before-commit' && entry.mid === 'slow-1') {
            held = true;
            await gate;
          }
        },
      });
      const c = await r.client();
      const actor = '@slow:test';
      const append = (seq: number) => c.ask<LedgerReply>('user', 'ledger', actor, { op: 'append', producer: 'p', seq, value: seq }, { mid: `slow-${seq}`, timeoutMs: 30_000 });
      const answers = [1, 2, 3].map((seq) => append(seq));
      const inbox = r.keys.shard('user', 0).inbox;
      const pending = async () => (await r.redis.xpending(inbox, INBOX_GROUP, '-', '+', 10)) as [string, string, number, number][];
      await waitFor('the first message to be held and the others read', async () => held && (await pending()).length === 3);
      // Several sweeps (every 100 ms) find the entries idle past the bound (200 ms).
      await new Promise((res) => setTimeout(res, 1_500));
      const rows = await pending();
      expect(rows.map((row) => Number(row[3]))).toEqual([1, 1, 1]);
      expect(rows.every((row) => Number(row[2]) >= 1_000)).toBe(true);
      release();
      expect(await Promise.all(answers)).toEqual([1, 2, 3].map((n) => ({ count: n, sum: (n * (n + 1)) / 2, outOfOrder: 0 })));
      await waitFor('every entry to be acknowledged', async () => (await pending()).length === 0);
    });

    it('kill -9 after reading a message and before acking it: the restarted worker applies it exactly once', async () => {
      r = await rig(mode, { shards: 4 });
      const w1 = spawnWorker(mode, r, 'w1', { AXON_FAULT: 'before-commit', AXON_FAULT_MATCH: 'crash-here' });
      procs.push(w1);
      await waitFor('w1 to own every shard', async () => (await leaseOwners(r)).every((o) => o === 'w1'));
      const c = await r.client();
      const actor = '@victim:test';
      expect(await c.ask<LedgerReply>('user', 'ledger', actor, { op: 'append', producer: 'p', seq: 1, value: 1 })).toMatchObject({ count: 1 });
      const answer = c.ask<LedgerReply>('user', 'ledger', actor, { op: 'append', producer: 'p', seq: 2, value: 10 }, { mid: 'crash-here-1', timeoutMs: 30_000 });
      await waitFor('w1 to hold the message unacknowledged', () => w1.output().includes('fault point reached'));
      expect(await pendingTotal(r)).toBe(1);
      await w1.kill9();
      // The same worker comes back (no fault this time): it re-reads its own pending entry first.
      const restarted = spawnWorker(mode, r, 'w1');
      procs.push(restarted);
      expect(await answer).toEqual({ count: 2, sum: 11, outOfOrder: 0 });
      expect(await c.ask('user', 'ledger', actor, { op: 'read' })).toMatchObject({ count: 2, sum: 11, outOfOrder: 0 });
      await waitFor('every entry to be acknowledged', async () => (await pendingTotal(r)) === 0);
    });

    it('kill -9 after committing and before replying: another worker answers from the dedupe record, nothing applied twice', async () => {
      r = await rig(mode, { shards: 4 });
      const w1 = spawnWorker(mode, r, 'w1', { AXON_FAULT: 'after-commit', AXON_FAULT_MATCH: 'crash-here' });
      procs.push(w1);
      await waitFor('w1 to own every shard', async () => (await leaseOwners(r)).every((o) => o === 'w1'));
      const c = await r.client();
      const actor = '@victim2:test';
      const answer = c.ask<LedgerReply>('user', 'ledger', actor, { op: 'append', producer: 'p', seq: 1, value: 5 }, { mid: 'crash-here-2', timeoutMs: 30_000 });
      await waitFor('w1 to commit and stop before replying', () => w1.output().includes('fault point reached'));
      const killedAt = Date.now();
      await w1.kill9();
      const w2 = spawnWorker(mode, r, 'w2');
      procs.push(w2);
      expect(await answer).toEqual({ count: 1, sum: 5, outOfOrder: 0 });
      const takeoverMs = Date.now() - killedAt;
      // The read waits for w2 to start and take the shard (node start-up on a loaded machine can pass 10 s).
      expect(await c.ask('user', 'ledger', actor, { op: 'read' }, { timeoutMs: 30_000 })).toMatchObject({ count: 1, sum: 5 });
      await waitFor('w2 to own every shard', async () => (await leaseOwners(r)).every((o) => o === 'w2'));
      console.log(`[${mode}] takeover after kill -9 answered in ${takeoverMs} ms (lease ttl 1500 ms)`);
    });

    it("kill -9 right after a commit with derived writes (on a Cluster outside the commit's slot): the shard's next holder applies them", async () => {
      r = await rig(mode, { shards: 4 });
      const w1 = spawnWorker(mode, r, 'w1', { AXON_FAULT: 'after-commit', AXON_FAULT_MATCH: 'crash-here' });
      procs.push(w1);
      await waitFor('w1 to own every shard', async () => (await leaseOwners(r)).every((o) => o === 'w1'));
      const c = await r.client();
      const actor = '@indexer:test';
      const index = `${r.prefix}${LEDGER_INDEX}`;
      const answer = c.ask<LedgerReply>('user', 'ledger', actor, { op: 'index', name: 'k1', value: 'v1' }, { mid: 'crash-here-3', timeoutMs: 30_000 });
      await waitFor('w1 to commit and stop', () => w1.output().includes('fault point reached'));
      // On one Redis the derived write is part of the commit; on a Cluster it is not applied yet.
      expect(await r.redis.hget(index, 'k1')).toBe(mode === 'single' ? 'v1' : null);
      await w1.kill9();
      const w2 = spawnWorker(mode, r, 'w2');
      procs.push(w2);
      expect(await answer).toMatchObject({ count: 1 });
      await waitFor('w2 to own every shard', async () => (await leaseOwners(r)).every((o) => o === 'w2'));
      expect(await r.redis.hget(index, 'k1')).toBe('v1');
      // Applied once taken over, the commit's record of them is gone.
      const shard = r.keys.shard('user', shardOf(actor, r.shardCounts.user));
      expect(await r.redis.hlen(shard.derivedPending)).toBe(0);
      // A derived write with no crash is applied and leaves no record either.
      expect(await c.ask<LedgerReply>('user', 'ledger', actor, { op: 'index', name: 'k2', value: 'v2' })).toMatchObject({ count: 2 });
      expect(await r.redis.hget(index, 'k2')).toBe('v2');
      await waitFor('the record of the second commit to be dropped', async () => (await r.redis.hlen(shard.derivedPending)) === 0);
    });

    it('moves shards between live workers during a stream of 10,000 messages: all applied once, in order per actor', async () => {
      r = await rig(mode, { shards: 8 });
      const a = await r.startWorker('wa');
      const b = await r.startWorker('wb');
      await waitFor('every shard to be held', () => a.owned().length + b.owned().length === 16);
      // The first worker took everything; even it out the way an operator would.
      await rebalance(r.redis, r.keys, r.shardCounts, 1500);
      const users = (w: typeof a) => w.owned().filter((n) => n.startsWith('user:')).length;
      // A worker forgets a released shard a moment after Redis shows the new holder.
      await waitFor('both workers to hold 4 user shards', () => users(a) === 4 && users(b) === 4, 5_000);
      const c = await r.client();
      const actors = Array.from({ length: 40 }, (_, i) => `@stream${i}:test`);
      const total = 10_000;
      const seq = new Map<string, number>();
      let moves = 0;
      const inFlight = new Set<Promise<unknown>>();
      for (let i = 0; i < total; i++) {
        const actor = actors[i % actors.length]!;
        const n = (seq.get(actor) ?? 0) + 1;
        seq.set(actor, n);
        const p = c.ask('user', 'ledger', actor, { op: 'append', producer: 'p', seq: n, value: 1 }, { timeoutMs: 60_000 });
        inFlight.add(p);
        void p.finally(() => inFlight.delete(p));
        if (inFlight.size >= 400) await Promise.race(inFlight);
        if (i > 0 && i % 1500 === 0) {
          // Move every shard of one worker to the other, alternating direction.
          const from = moves % 2 === 0 ? a : b;
          const to = from === a ? b : a;
          // Not awaited: the stream keeps flowing while the shards move.
          void executeMoves(r.redis, r.keys, from.owned().filter((n) => n.startsWith('user:')).map((name) => ({ family: 'user' as const, shard: Number(name.split(':')[1]), from: from.id, to: to.id })));
          moves++;
        }
      }
      await Promise.all(inFlight);
      expect(moves).toBeGreaterThanOrEqual(6);
      let applied = 0;
      for (const actor of actors) {
        const state = await c.ask<LedgerReply>('user', 'ledger', actor, { op: 'read' });
        expect(state.outOfOrder, actor).toBe(0);
        expect(state.count, actor).toBe(seq.get(actor));
        expect(state.lastSeq).toEqual({ p: seq.get(actor) });
        applied += state.count;
      }
      expect(applied).toBe(total);
      let outputs = 0;
      for (let s = 0; s < r.shardCounts.user; s++) outputs += await r.redis.xlen(r.keys.shard('user', s).outbox);
      expect(outputs).toBe(total);
      await waitFor('every entry to be acknowledged', async () => (await pendingTotal(r)) === 0);
    });
  });
}

describe('redis-server killed with -9 and restarted (AOF, appendfsync always)', () => {
  let dir = '';
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('keeps every write that was acknowledged', async () => {
    dir = mkdtempSync(join(tmpdir(), 'axon-aof-'));
    const port = await freePort();
    let redis = await startManagedRedis({ dir, port });
    const target = { url: redis.url };
    const keys = new KeySpace('aof:');
    const shardCounts = { room: 4, user: 4 };
    const { Worker } = await import('../../src/runtime/worker');
    const { allActorKinds } = await import('../../src/runtime/kinds');
    const worker = new Worker({ redis: connectRedis(target), keys, workerId: 'w1', shardCounts, kinds: allActorKinds(), leaseTtlMs: 3000, renewMs: 500, log: silent, pollMs: 300 });
    await worker.start();
    const client = new ActorClient(connectRedis(target), keys, shardCounts);
    await client.start();
    const actors = Array.from({ length: 10 }, (_, i) => `@durable${i}:test`);
    const acked = await Promise.all(
      Array.from({ length: 300 }, (_, i) => client.ask<LedgerReply>('user', 'ledger', actors[i % 10]!, { op: 'append', producer: 'p', seq: Math.floor(i / 10) + 1, value: 1 })),
    );
    expect(acked).toHaveLength(300);
    process.kill(redis.pid, 'SIGKILL');
    await waitFor('redis to die', async () => {
      try {
        process.kill(redis.pid, 0);
        return false;
      } catch {
        return true;
      }
    });
    redis = await startManagedRedis({ dir, port });
    try {
      for (const actor of actors) {
        const state = await client.ask<LedgerReply>('user', 'ledger', actor, { op: 'read' }, { timeoutMs: 30_000 });
        expect(state).toMatchObject({ count: 30, sum: 30, outOfOrder: 0 });
      }
      // And the system carries on writing after the restart.
      expect(await client.ask('user', 'ledger', actors[0]!, { op: 'append', producer: 'p', seq: 31, value: 1 }, { timeoutMs: 30_000 })).toMatchObject({ count: 31, outOfOrder: 0 });
    } finally {
      await client.close();
      await worker.stop();
      await redis.stop();
    }
  });
});

/**
 * A worker that talks to a real Redis through answerDroppingProxy (armed on `script`'s sha), a
 * client and a direct connection, for the tests of answers lost after Redis ran the command.
 * `armOn`: the proxy is armed when the worker is about to commit that message id.
 */
async function droppedAnswerRig(o: { prefix: string; script: string; armOn?: string; idleBoundMs?: number; push?: boolean }) {
  // Read first: a missing script fails here, before anything was started.
  const sha = createHash('sha1').update(readFileSync(join(root, 'src/store/scripts', o.script), 'utf8')).digest('hex');
  const dir = mkdtempSync(join(tmpdir(), `axon-${o.prefix}-`));
  const redis = await startManagedRedis({ dir, port: await freePort() });
  // What was started so far, stopped again if the set-up fails half-way (a detached redis-server
  // would otherwise outlive the test run).
  const undo: (() => Promise<unknown> | void)[] = [() => redis.stop(), () => rmSync(dir, { recursive: true, force: true })];
  const unwind = async () => {
    for (const u of undo.splice(0).reverse()) await Promise.resolve(u()).catch(() => undefined);
  };
  try {
    return await droppedAnswerParts(o, sha, redis, undo, unwind);
  } catch (e) {
    await unwind();
    throw e;
  }
}

async function droppedAnswerParts(
  o: { prefix: string; armOn?: string; idleBoundMs?: number; push?: boolean },
  sha: string,
  redis: Awaited<ReturnType<typeof startManagedRedis>>,
  undo: (() => Promise<unknown> | void)[],
  unwind: () => Promise<void>,
) {
  const proxy = await answerDroppingProxy(redis.port, sha);
  undo.push(() => new Promise<void>((res) => proxy.server.close(() => res())));
  const keys = new KeySpace(`${o.prefix}:`);
  const shardCounts = { room: 2, user: 2 };
  const { Worker } = await import('../../src/runtime/worker');
  const { allActorKinds } = await import('../../src/runtime/kinds');
  const worker = new Worker({
    redis: connectRedis({ url: `redis://127.0.0.1:${proxy.port}` }),
    keys,
    workerId: 'w1',
    shardCounts,
    kinds: allActorKinds(),
    leaseTtlMs: 10_000,
    renewMs: 1000,
    log: silent,
    pollMs: 300,
    ...(o.idleBoundMs !== undefined ? { idleBoundMs: o.idleBoundMs } : {}),
    ...(o.armOn !== undefined
      ? {
          faultPoint: (point: string, entry: { mid: string }) => {
            if (point === 'before-commit' && entry.mid === o.armOn) proxy.arm();
          },
        }
      : {}),
  });
  const direct = connectRedis({ url: redis.url });
  undo.push(() => direct.disconnect());
  // `push: false`: wake-ups only, so the worker reads each message (a read's answer can be lost).
  const client = new ActorClient(connectRedis({ url: redis.url }), keys, shardCounts, undefined, { push: o.push ?? true });
  undo.push(() => worker.stop());
  await worker.start();
  undo.push(() => client.close());
  await client.start();
  return {
    keys,
    shardCounts,
    proxy,
    worker,
    client,
    direct,
    /** Stops what the set-up started, last first: client, worker, connection, proxy, Redis, its directory. */
    close: unwind,
  };
}

describe('a commit that ran in Redis but whose answer the worker never got (connection dropped, command sent again)', () => {
  it('the worker does not go on from the state it had before that commit: no applied write is overwritten', async () => {
    const t = await droppedAnswerRig({ prefix: 'resent', script: 'commit-many-7.lua', armOn: 'resent-5' });
    try {
      const { client, direct, proxy } = t;
      const actor = '@resent:test';
      const append = (seq: number) => client.ask<LedgerReply>('user', 'ledger', actor, { op: 'append', producer: 'p', seq, value: seq }, { mid: `resent-${seq}`, timeoutMs: 30_000 });
      for (let seq = 1; seq <= 10; seq++) expect(await append(seq)).toEqual({ count: seq, sum: (seq * (seq + 1)) / 2, outOfOrder: 0 });
      // The fifth commit's answer was dropped once: the scenario did happen.
      expect(proxy.tripped()).toBe(1);
      expect(await client.ask('user', 'ledger', actor, { op: 'read' })).toMatchObject({ count: 10, sum: 55, outOfOrder: 0 });
      const stored = await direct.getBuffer((await direct.keys('resent:*state:ledger:@resent:test'))[0]!);
      expect(decode(stored!)).toMatchObject({ count: 10, sum: 55, outOfOrder: 0 });
    } finally {
      await t.close();
    }
  });

  it("a timer set by that commit fires: the retry answered 'dup' arms the shard's timer from what Redis holds", async () => {
    const t = await droppedAnswerRig({ prefix: 'resent-timer', script: 'commit-many-7.lua', armOn: 'typing-lost-answer' });
    try {
      const { client, direct, proxy, keys, shardCounts } = t;
      const roomId = '!resent-timer:test';
      const shard = keys.shard('room', shardOf(roomId, shardCounts.room));
      // A first commit (on another shard) loads the commit script: later ones go by its sha.
      await client.ask('user', 'ledger', '@warm:test', { op: 'append', producer: 'p', seq: 1, value: 1 });
      // A typing notice for 300 ms: its commit stores the expiry timer, and its answer is lost.
      await client.ask('room', 'typing', roomId, { op: 'set', userId: '@t:test', typing: true, timeoutMs: 300 }, { mid: 'typing-lost-answer', timeoutMs: 30_000 });
      // The commit delivers the reply itself (one Redis): the answer it drops may come just after.
      await waitFor('the commit answer to be dropped', () => proxy.tripped() === 1);
      // No other commit on the shard arms it: the notice ends only if the 'dup' answer armed the timer.
      const outs = await waitFor('the expiry output', async () => {
        const rows = (await direct.xrangeBuffer(shard.outbox, '-', '+')) as [Buffer, Buffer[]][];
        const found: TypingOutput[] = [];
        for (const [, f] of rows) {
          const fields = new Map<string, Buffer>();
          for (let i = 0; i + 1 < f.length; i += 2) fields.set(f[i]!.toString(), f[i + 1]!);
          if (fields.get('k')?.toString() === 'typing' && fields.get('a')?.toString() === roomId) found.push(decode<TypingOutput>(fields.get('b')!));
        }
        return found.length >= 2 ? found : null;
      });
      expect(outs.map((o) => o.user_ids)).toEqual([['@t:test'], []]);
    } finally {
      await t.close();
    }
  });
});

describe("an actor's messages stay in order when an inbox read's entries could be left with nobody tracking them", () => {
  let dir = '';
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('a read that ran in Redis but whose answer the worker never got (connection dropped, read sent again): its entries come first in the next read, not after the idle reclaim', async () => {
    // XREADGROUP '>' in the read script moved message 5 into the worker's pending list; the
    // answer is dropped and ioredis sends the read again, which finds nothing new. The sweep's
    // idle reclaim (the backstop for entries lost track of) cannot be what saves it.
    const t = await droppedAnswerRig({ prefix: 'read-lost', script: 'inbox-read-2.lua', idleBoundMs: 600_000, push: false });
    try {
      const { client, proxy } = t;
      const actor = '@read-lost:test';
      const append = (seq: number) => client.ask<LedgerReply>('user', 'ledger', actor, { op: 'append', producer: 'p', seq, value: seq }, { mid: `read-lost-${seq}`, timeoutMs: 30_000 });
      // The first reads load the script: later ones go by its sha.
      for (let seq = 1; seq <= 4; seq++) expect(await append(seq)).toEqual({ count: seq, sum: (seq * (seq + 1)) / 2, outOfOrder: 0 });
      proxy.arm();
      const fifth = append(5);
      fifth.catch(() => undefined); // awaited below; a failure before that must not go unhandled
      await waitFor('the read of message 5 to lose its answer', () => proxy.tripped() > 0, 10_000, 5);
      await new Promise((r) => setTimeout(r, 300));
      // Message 6 is applied after message 5, not before it.
      expect(await append(6)).toEqual({ count: 6, sum: 21, outOfOrder: 0 });
      expect(await fifth).toEqual({ count: 5, sum: 15, outOfOrder: 0 });
      expect(proxy.tripped()).toBe(1);
      expect(await client.ask('user', 'ledger', actor, { op: 'read' })).toMatchObject({ count: 6, sum: 21, outOfOrder: 0 });
    } finally {
      await t.close();
    }
  });

  it("a holder whose shard lease was taken and that read on: the entry it took is given to the new holder's next read first, before the actor's later messages", async () => {
    dir = mkdtempSync(join(tmpdir(), 'axon-read-stale-'));
    const redis = await startManagedRedis({ dir, port: await freePort() });
    const keys = new KeySpace('read-stale:');
    const shardCounts = { room: 1, user: 1 };
    const { Worker } = await import('../../src/runtime/worker');
    const { allActorKinds } = await import('../../src/runtime/kinds');
    // No lease round during the test (renewMs): w1 learns that the lease was taken only from its
    // own reads and commits, as a holder that stalled past its lease does.
    const worker = new Worker({ redis: connectRedis({ url: redis.url }), keys, workerId: 'w1', shardCounts, kinds: allActorKinds(), leaseTtlMs: 120_000, renewMs: 30_000, log: silent, pollMs: 300, idleBoundMs: 600_000 });
    const direct = connectRedis({ url: redis.url });
    // Wake-ups only: a push would name the new holder, and w1 would leave it alone (push-delivery
    // tests); here w1 is woken and reads on, as a holder without push delivery does.
    const client = new ActorClient(connectRedis({ url: redis.url }), keys, shardCounts, undefined, { push: false });
    try {
      await worker.start();
      await client.start();
      const actor = '@read-stale:test';
      const append = (seq: number, timeoutMs = 30_000) => client.ask<LedgerReply>('user', 'ledger', actor, { op: 'append', producer: 'p', seq, value: seq }, { mid: `read-stale-${seq}`, timeoutMs });
      expect(await append(1)).toEqual({ count: 1, sum: 1, outOfOrder: 0 });
      const shard = keys.shard('user', 0);
      // w2, live, takes the shard as a takeover does: w1's holding found dead, the token bumped.
      await direct.hset(keys.workerLease('w2'), 'epoch', '1', 'expires', String(Date.now() + 600_000));
      const epoch = (await direct.hget(shard.lease, 'epoch'))!;
      const taken = (await runScript(direct, 'leaseAcquire', [shard.lease], ['w2', '1', 'w1', epoch])) as [number, string];
      expect(taken).toEqual([expect.any(Number), 'w2']);
      expect(taken[0]).toBeGreaterThan(0);
      // A message for the shard wakes w1, which reads it and finds the shard taken only when it
      // commits (nobody answers it: w2 is not running).
      const second = append(2, 3_000).catch(() => 'no answer');
      await waitFor('w1 to let the shard go', () => !worker.owned().includes('user:0'));
      // Message 2 is in w1's pending list, where w1 (fenced) cannot commit it.
      expect(((await direct.xpending(shard.inbox, INBOX_GROUP, '-', '+', 10)) as [string, string][]).map((r) => r[1])).toEqual(['w1']);
      const third = append(3, 3_000).catch(() => 'no answer');
      await waitFor('message 3 in the inbox', async () => (await direct.xlen(shard.inbox)) === 3);
      // The new holder, which was given message 1 (applied by w1), reads: message 2 first (claimed
      // from w1), then message 3.
      const first = ((await direct.xrange(shard.inbox, '-', '+', 'COUNT', 1)) as [string, string[]][])[0]![0];
      const got = await new GroupReads(direct, INBOX_GROUP, 'w2').readInbox({ inbox: shard.inbox, after: first, count: 10 });
      expect(got.entries.map(([id, f]) => parseInboxEntry(String(id), f)?.mid)).toEqual(['read-stale-2', 'read-stale-3']);
      expect(got.counts).toEqual([2]);
      expect(((await direct.xpending(shard.inbox, INBOX_GROUP, '-', '+', 10)) as [string, string][]).map((r) => r[1])).toEqual(['w2', 'w2']);
      expect(await second).toBe('no answer');
      expect(await third).toBe('no answer');
    } finally {
      await client.close();
      await worker.stop();
      direct.disconnect();
      await redis.stop();
    }
  });
});

describe('derived writes on a Cluster: applied by the holder that committed them, never replayed over later commits', () => {
  let r: Rig | undefined;
  afterEach(async () => {
    await r?.close();
    r = undefined;
  });

  it("a commit answered 'dup' (its first answer lost) gets its derived writes applied, and a left record is not re-applied over a later commit's write", async () => {
    r = await rig('cluster', { shards: 2 });
    let thrown = false;
    // Stands for the commit's answer being lost after Redis applied it (a dropped connection:
    // ioredis resends it and the second run answers 'dup'): the runner's next try finds it done.
    const wa = await r.startWorker('wa', {
      faultPoint: (point, entry) => {
        if (point === 'after-commit' && entry.mid === 'lost-answer' && !thrown) {
          thrown = true;
          throw new Error('simulated: commit applied, answer lost');
        }
      },
    });
    await waitFor('wa to hold every shard', () => wa.owned().length === 4);
    const c = await r.client();
    const actor = '@indexer:test';
    const index = `${r.prefix}${LEDGER_INDEX}`;
    const shard = r.keys.shard('user', shardOf(actor, r.shardCounts.user));
    expect(await c.ask<LedgerReply>('user', 'ledger', actor, { op: 'index', name: 'k1', value: 'v1' }, { mid: 'lost-answer', timeoutMs: 20_000 })).toMatchObject({ count: 1 });
    expect(thrown).toBe(true);
    // Answered once its derived write is applied by the worker holding the shard: no record left.
    expect(await r.redis.hget(index, 'k1'), 'derived write of the dup-answered commit').toBe('v1');
    expect(await r.redis.hlen(shard.derivedPending), 'records left while the worker holds the shard').toBe(0);
    // A later message overwrites the same entry; applied at once.
    expect(await c.ask<LedgerReply>('user', 'ledger', actor, { op: 'index', name: 'k1', value: 'v2' })).toMatchObject({ count: 2 });
    expect(await r.redis.hget(index, 'k1')).toBe('v2');
    // The worker stalls and its lease lapses; another takes over and applies what was left (nothing).
    wa.crash();
    await r.redis.hset(r.keys.workerLease('wa'), 'expires', 0);
    const wb = await r.startWorker('wb');
    await waitFor('wb to hold the shard', () => wb.owned().includes(`user:${shardOf(actor, r!.shardCounts.user)}`));
    await c.ask('user', 'ledger', actor, { op: 'read' });
    // The index still says v2 (the latest commit); before, the left record put v1 back.
    expect(await r.redis.hget(index, 'k1')).toBe('v2');
  });

  it("a holder that stalls past its lease between its commit and its derived write cannot put an old value back over the next holder's (ordered writes are fenced)", async () => {
    r = await rig('cluster', { shards: 2 });
    let release!: () => void;
    const stall = new Promise<void>((res) => (release = res));
    let reached!: () => void;
    const atStall = new Promise<void>((res) => (reached = res));
    const lines: string[] = [];
    const log = pino({ level: 'warn' }, { write: (line: string) => void lines.push(line) });
    const wa = await r.startWorker('wa', {
      log,
      faultPoint: async (point, entry) => {
        if (point === 'after-commit' && entry.mid === 'stalls') {
          reached();
          await stall;
        }
      },
    });
    await waitFor('wa to hold every shard', () => wa.owned().length === 4);
    const c = await r.client();
    const actor = '@indexer:test';
    const index = `${r.prefix}${LEDGER_INDEX}`;
    // k1 = v1: wa commits it, then stalls before its derived write (a GC pause, a frozen VM).
    void c.ask('user', 'ledger', actor, { op: 'index', name: 'k1', value: 'v1' }, { mid: 'stalls', timeoutMs: 60_000 }).catch(() => undefined);
    await atStall;
    expect(await r.redis.hget(index, 'k1')).toBeNull();
    // Its lease lapses meanwhile; wb takes the shard over, applies the left record (v1), and a
    // later message sets k1 = v2.
    wa.crash();
    await r.redis.hset(r.keys.workerLease('wa'), 'expires', 0);
    const wb = await r.startWorker('wb');
    await waitFor('wb to hold the shard', () => wb.owned().includes(`user:${shardOf(actor, r!.shardCounts.user)}`));
    expect(await c.ask<LedgerReply>('user', 'ledger', actor, { op: 'index', name: 'k1', value: 'v2' })).toMatchObject({ count: 2 });
    expect(await r.redis.hget(index, 'k1')).toBe('v2');
    // wa wakes up and sends its derived write, v1, with its older fencing token: left out (before
    // the fence, it put v1 back over v2).
    release();
    await waitFor('wa to have sent its late write', async () => lines.some((l) => l.includes('derived write of an older holding left out')) || (await r!.redis.hget(index, 'k1')) !== 'v2');
    expect(await r.redis.hget(index, 'k1')).toBe('v2');
    expect(lines.find((l) => l.includes('left out'))).toContain('"members":1');
  });

  it('the fence script: older tokens are left out member by member, and a fence outlives its emptied key by a day only', async () => {
    r = await rig('cluster', { shards: 2 });
    const name = 'delayed-state:!r:x\u0000org.x\u0000{k}';
    const key = `${r.prefix}${name}`;
    const fence = fenceKeyOf(key, `${r.prefix}derived-fence:`, name);
    const write = (token: number, cmd: string, ...args: string[]) => runScript(r!.redis, 'derivedFenced', [key, fence], [String(token), cmd, ...args]);
    expect(await write(1796000000005, 'SADD', '@a:x', '@b:x')).toBe(0);
    expect((await r.redis.smembers(key)).sort()).toEqual(['@a:x', '@b:x']);
    expect(await r.redis.pttl(fence)).toBe(-1); // the key is there: the fence stays
    // An older holding's write: left out (counted); a member of its own it may still write.
    expect(await write(1796000000004, 'SREM', '@a:x')).toBe(1);
    expect(await write(1796000000005, 'SREM', '@a:x', '@b:x')).toBe(0);
    expect(await r.redis.exists(key)).toBe(0);
    // The key is gone: its fence expires (a day), so fences do not pile up for keys that come and go…
    const ttl = await r.redis.pttl(fence);
    expect(ttl).toBeGreaterThan(86_000_000);
    expect(ttl).toBeLessThanOrEqual(86_400_000);
    // …and still refuses the stale write meanwhile; a newer one brings the key back and keeps the fence.
    expect(await write(1796000000004, 'SADD', '@a:x')).toBe(1);
    expect(await r.redis.exists(key)).toBe(0);
    expect(await write(1796000000006, 'SADD', '@a:x')).toBe(0);
    expect(await r.redis.smembers(key)).toEqual(['@a:x']);
    expect(await r.redis.pttl(fence)).toBe(-1);
    // Options are not members: refused rather than misread.
    await expect(write(1796000000007, 'ZADD', 'GT', '1', 'm')).rejects.toThrow(/no options/);
  });

  it('the fence of an ordered derived key is in its slot, also for keys with braces of their own', () => {
    for (const name of ['{pstate}', 'ledger-index', 'delayed-state:!r:x\u0000org.x\u0000{}', 'delayed-state:!r:x\u0000org.x\u0000{a}', 'a}b{', '{}x{y}']) {
      const key = `t:${name}`;
      const fence = fenceKeyOf(key, 't:derived-fence:', name);
      expect(clusterSlot(fence), key).toBe(clusterSlot(key));
      // Under the key prefix, in a namespace no derived key has: a fence is never another key's name.
      expect(fence.startsWith('t:derived-fence:{')).toBe(true);
    }
  });

  it('derived writes that fail after the commit fail the message: it is retried until they are applied, by the worker holding the shard, before the reply', async () => {
    r = await rig('cluster', { shards: 2 });
    let afterCommits = 0;
    const w = await r.startWorker('w', {
      maxDeliveries: 1000,
      faultPoint: (point, entry) => {
        if (point === 'after-commit' && entry.mid === 'refused') afterCommits++;
      },
    });
    await waitFor('w to hold every shard', () => w.owned().length === 4);
    const c = await r.client();
    const actor = '@indexer:test';
    const index = `${r.prefix}${LEDGER_INDEX}`;
    const shard = r.keys.shard('user', shardOf(actor, r.shardCounts.user));
    // The global hash is a string for now: its HSET answers WRONGTYPE.
    await r.redis.set(index, 'not a hash');
    let answered = false;
    const answer = c.ask<LedgerReply>('user', 'ledger', actor, { op: 'index', name: 'k1', value: 'v1' }, { mid: 'refused', timeoutMs: 60_000 }).finally(() => (answered = true));
    // Committed once, then tried again (answered 'dup'), and not answered meanwhile.
    await waitFor('the message to be retried', () => afterCommits >= 3);
    expect(answered).toBe(false);
    expect(await r.redis.hlen(shard.derivedPending)).toBe(1);
    await r.redis.del(index);
    expect(await answer).toMatchObject({ count: 1 });
    expect(await r.redis.hget(index, 'k1')).toBe('v1');
    expect(await r.redis.hlen(shard.derivedPending)).toBe(0);
    // Applied once: the ledger counted it once.
    expect(await c.ask<LedgerReply>('user', 'ledger', actor, { op: 'read' })).toMatchObject({ count: 1 });
  });

  it('derived writes that keep failing after the commit: the message is answered as applied (not dead-lettered) and its record alone is dead-lettered', async () => {
    r = await rig('cluster', { shards: 2 });
    const w = await r.startWorker('w', { maxDeliveries: 3 });
    await waitFor('w to hold every shard', () => w.owned().length === 4);
    const c = await r.client();
    const actor = '@indexer:test';
    const index = `${r.prefix}${LEDGER_INDEX}`;
    const shard = r.keys.shard('user', shardOf(actor, r.shardCounts.user));
    await r.redis.set(index, 'not a hash');
    expect(await c.ask<LedgerReply>('user', 'ledger', actor, { op: 'index', name: 'k1', value: 'v1' }, { mid: 'always-refused', timeoutMs: 60_000 })).toMatchObject({ count: 1 });
    expect(await r.redis.hlen(shard.derivedPending)).toBe(0);
    const dead = await r.redis.hgetallBuffer(shard.derivedDead);
    expect(Object.keys(dead)).toHaveLength(1);
    const record = decode<{ writes: Uint8Array; error: string }>(Object.values(dead)[0]!);
    expect(record.error).toContain('WRONGTYPE');
    expect(decode(Buffer.from(record.writes))).toMatchObject([{ cmd: 'HSET', key: index, args: ['k1', 'v1'] }]);
    // The message itself is not in the dead-letter stream; the shard goes on.
    expect(await r.redis.xlen(shard.dead)).toBe(0);
    expect(w.status().shards.reduce((n, s) => n + s.deadLettered, 0)).toBe(0);
    await r.redis.del(index);
    expect(await c.ask<LedgerReply>('user', 'ledger', actor, { op: 'index', name: 'k2', value: 'v2' })).toMatchObject({ count: 2 });
    expect(await r.redis.hget(index, 'k2')).toBe('v2');
  });

  it('a left derived record that Redis keeps refusing at takeover is dead-lettered after a few tries; the takeover goes on', async () => {
    r = await rig('cluster', { shards: 2 });
    const actor = '@indexer:test';
    const index = `${r.prefix}${LEDGER_INDEX}`;
    const shard = r.keys.shard('user', shardOf(actor, r.shardCounts.user));
    // As a worker that died after its commit leaves it; the global hash is a string (WRONGTYPE).
    await r.redis.set(index, 'not a hash');
    await r.redis.hset(shard.derivedPending, '1-0', encode([{ cmd: 'HSET', key: index, args: ['k0', 'v0'] }]));
    const w = await r.startWorker('w');
    // Taken over: its runner started (owned() lists a shard from the start of its takeover).
    await waitFor('w to run every shard', () => w.status().shards.filter((s) => s.state === 'running').length === 4);
    expect(await r.redis.hlen(shard.derivedPending)).toBe(0);
    const dead = await r.redis.hgetallBuffer(shard.derivedDead);
    expect(Object.keys(dead)).toEqual(['1-0']);
    expect(decode<{ error: string }>(dead['1-0']!).error).toContain('WRONGTYPE');
    const c = await r.client();
    await r.redis.del(index);
    expect(await c.ask<LedgerReply>('user', 'ledger', actor, { op: 'index', name: 'k1', value: 'v1' })).toMatchObject({ count: 1 });
    expect(await r.redis.hget(index, 'k1')).toBe('v1');
  });
});
