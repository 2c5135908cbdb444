/**
 * Request/reply from a front process to actors: `ask` appends a command to the inbox of the
 * shard that owns the actor, wakes the owner, and awaits the reply on this front's own reply
 * stream. The front never needs to know which worker owns the shard, so a shard moving
 * mid-request changes nothing here: the new owner handles the re-delivered command (or answers
 * it from the dedupe record if the old owner already applied it) and replies to the same stream.
 *
 * Message ids are the workers' dedupe keys (a seen id is answered with the stored reply of its
 * first application, for 10 minutes), so no two process lifetimes may ever mint the same one: a
 * front restarted under the same name (`f1`) once counted from 1 again and was answered with the
 * replies of its previous life — 200 with another request's event id, and the message dropped.
 * Every ActorClient therefore draws a random incarnation (96 bits) and puts it in every id it
 * mints and in the name of its reply stream; the counter only orders ids within one lifetime.
 *
 * An id this client mints on one Redis begins with `~` and goes with one inbox entry only (an
 * ask is never appended twice under it: an enqueue call sent again by ioredis after a dropped
 * connection finds its own record and appends nothing, enqueue-many-6.lua), so the worker needs
 * no dedupe record for it: the entry still pending in the inbox's group says the message was not
 * applied, since the commit that applies it acknowledges it in the same script call
 * (commit-many-7.lua; a record per message was ~8 µs of Redis a room event, issue 23). Ids a
 * caller chooses (`AskOptions.mid`: the same id for the same command sent again, in another
 * entry) keep their record, and so they may not begin with `~` unless this client minted them;
 * so do the ids a Cluster's client mints (`=`: see newMessageId).
 */
import { randomBytes } from 'node:crypto';
import type { ReplyEnvelope } from './actor';
import { shardOf, type Family } from '../store/shards';
import { decode, encode, encodeScriptArgs } from '../store/codec';
import { INBOX_GROUP, type KeySpace } from '../store/keys';
import { commandClient, duplicateClient, isCluster, runScriptBuffer, type RedisClient } from '../store/redis';
import { SendTrace, sendTrace } from './send-trace';
import { packInboxEntry, PUSH_LIMIT, PUSH_MAX_BYTES, readsPacked } from './envelope';

/** How long a reply stream outlives its process; renewed (or re-created) every 30 s while it runs. */
const REPLY_STREAM_TTL_MS = 60 * 60 * 1000;
const REPLY_STREAM_RENEW_MS = 30_000;

export class ActorTimeoutError extends Error {
  constructor(readonly mid: string, ms: number) {
    super(`No reply from the actor within ${ms} ms`);
    this.name = 'ActorTimeoutError';
  }
}

/** An error reply from an actor (an ActorRejection, or a dead-lettered message). */
export class ActorReplyError extends Error {
  constructor(readonly errcode: string, message: string, readonly status: number) {
    super(message);
    this.name = 'ActorReplyError';
  }
}

export interface AskOptions {
  timeoutMs?: number;
  /** Message id for dedupe; give the same id when re-sending the same command. Not beginning with `~` (minted ids: newMessageId). */
  mid?: string;
  /**
   * Append the command only while the string key `guard.key` holds exactly `guard.value`, checked
   * atomically with the append (enqueue-many-6.lua); when it does not, the ask fails with
   * EnqueueGuardError and nothing was appended. A front passes its copy of the access token's
   * record (asGuardedUser, src/api/client/auth.ts). A single Redis only: on a Cluster the key
   * and the inbox are in different slots, so a guarded ask is refused there (nothing appended).
   */
  guard?: EnqueueGuard;
}

/** A key and the exact bytes it must hold for a guarded ask to be appended (AskOptions.guard). */
export interface EnqueueGuard {
  key: string;
  value: Buffer;
  /** Set once an ask appended under this guard (its holder can tell that the guard was checked). */
  held?: boolean;
}

/** A guarded ask whose guard key no longer held its value: nothing was appended. */
export class EnqueueGuardError extends Error {
  constructor() {
    super('enqueue: the guard key no longer holds the guarded value');
    this.name = 'EnqueueGuardError';
  }
}

/** enqueue-many-6.lua's answer for an entry whose guard did not hold (a Buffer: the call is made for Buffers). */
function isGuardAnswer(r: unknown): boolean {
  return (Buffer.isBuffer(r) || typeof r === 'string') && r.toString() === 'GUARD';
}

/**
 * How often an asker looks again at which inbox entry formats the live workers read: every 5 s,
 * every second while it has seen no live worker (a cluster starting: its first entries are then
 * in the packed format once its workers are up). A worker counts as live while its last
 * heartbeat is at most 2 minutes older than the newest worker's (the workers' clocks, not the
 * asker's): one of an earlier version that crashed keeps the askers on format 1 that long.
 */
const FORMAT_CHECK_MS = 5_000;
const FORMAT_CHECK_NO_WORKER_MS = 1_000;
const FORMAT_LIVE_MS = 120_000;

/** Messages one enqueue-many call carries at most (a bigger turn goes in several). */
const ENQUEUE_BATCH = 500;
/**
 * How long an enqueue call's record is kept (s): as long as a done record (the workers'
 * dedupe window), well past any reconnection after which ioredis would send the call again.
 */
const ENQUEUE_CALL_TTL_SEC = 600;

interface PendingEnqueue {
  inbox: string;
  /** The shard's lease hash: its holder is who the entries are pushed to (enqueue-many-6.lua). */
  lease: string;
  fields: (string | Buffer)[];
  guard: EnqueueGuard | undefined;
  wake: string;
  /** An ask's waiter (a failed append fails it), or a tell's callbacks. */
  waiter: Waiter | null;
  resolve?: () => void;
  reject?: (e: Error) => void;
}

/**
 * One ask waiting for its reply. Its timeout is not a timer of its own: the asks of one timeout
 * length wait in a queue in deadline order (they were asked in that order), with one timer for the
 * queue's head (TimeoutQueue). A setTimeout/clearTimeout pair per ask was ~10 % of the asking
 * process's CPU at 17,000 asks/s.
 */
interface Waiter {
  mid: string;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  /** performance.now() past which it times out. */
  deadline: number;
  settled: boolean;
}

interface TimeoutQueue {
  ms: number;
  list: Waiter[];
  head: number;
  timer: NodeJS.Timeout | null;
  /** The deadline the timer is set for. */
  armedFor: number;
  /**
   * Length past which the settled waiters are filtered out of the list: an ask that stays
   * unanswered at the head (a slow actor) must not keep every later, answered one in memory.
   */
  compactAt: number;
}

/** How long one read of the reply stream blocks in Redis (ms). */
const REPLY_BLOCK_MS = 1000;
/** A read not answered this long after its BLOCK ran out is on a dead connection: reconnect (ms). */
const REPLY_READ_STALL_MS = 4000;

export class ActorClient {
  private readonly frontId: string;
  /** Random per process lifetime (per ActorClient): what makes message ids and the reply stream unique. */
  readonly incarnation = randomBytes(12).toString('base64url');
  private readonly replyStream: string;
  private replyTtlTimer: NodeJS.Timeout | null = null;
  /** Where it learns whether every live worker reads packed entries (null: `opts.inboxFormat` decides). */
  private formatWatch: FormatWatch | null = null;
  private reader: RedisClient | null = null;
  /**
   * Where the enqueues go: `redis`, or (ownWriteConnection: a front) a connection of their own, so
   * that a /send's enqueue does not queue on the socket behind the replies of the /sync reads
   * sent before it on the shared command connection (feeds, snapshots: up to megabytes).
   */
  private writer: RedisClient;
  private readonly waiters = new Map<string, Waiter>();
  private readonly timeouts = new Map<number, TimeoutQueue>();
  private counter = 0;
  private closed = false;
  private closing = false;
  private lastId = '$';

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: KeySpace,
    private readonly shardCounts: Record<Family, number>,
    frontId?: string,
    /**
     * `push` (default true): on a single Redis, the enqueue call hands new entries to the shard's
     * holder (enqueue-many-6.lua); false: wake-ups only, the holder reads (tests of the read path).
     * `inboxFormat`: the entry format to write (envelope.ts), fixed; default: format 2 once every
     * live worker reads it (FormatWatch), format 1 until then.
     */
    private readonly opts: { ownWriteConnection?: boolean; push?: boolean; inboxFormat?: 1 | 2 } = {},
  ) {
    this.frontId = frontId ?? 'f';
    this.replyStream = keys.replies(`${this.frontId}.${this.incarnation}`);
    this.writer = redis;
  }

  /** The connection the enqueues use (a front watches it like its command connection). */
  get writeConnection(): RedisClient {
    return this.writer;
  }

  async start(): Promise<void> {
    this.reader = duplicateClient(this.redis);
    if (this.opts.ownWriteConnection) this.writer = commandClient(this.redis);
    // The stream must exist before the first ask: workers reply only to streams that exist
    // (reply-1.lua), so that replies to a front that died do not recreate its stream forever.
    // An empty stream stays; its TTL is renewed while this process lives.
    await this.keepReplyStream();
    this.lastId = '0-1';
    this.replyTtlTimer = setInterval(() => void this.keepReplyStream().catch(() => undefined), REPLY_STREAM_RENEW_MS);
    this.replyTtlTimer.unref();
    if (this.opts.inboxFormat === undefined && !this.closing && !this.closed) {
      const watch = FormatWatch.join(this.keys, this.redis);
      this.formatWatch = watch;
      await watch.firstLook;
      // Closed meanwhile (close() left whatever watch it found): nothing else will leave this one.
      if ((this.closing || this.closed) && this.formatWatch === watch) {
        watch.leave();
        this.formatWatch = null;
      }
    }
    void this.readReplies();
  }

  /** The inbox entry format this asker writes now (1: field pairs, 2: packed). */
  get inboxFormat(): 1 | 2 {
    if (this.formatWatch) return this.formatWatch.packed ? 2 : 1;
    return this.opts.inboxFormat ?? 1;
  }

  /** Renew the reply stream's TTL; create it (empty) when it is not there (first start, or a Redis that lost it). */
  private async keepReplyStream(): Promise<void> {
    if ((await this.redis.pexpire(this.replyStream, REPLY_STREAM_TTL_MS)) === 1) return;
    await this.redis.xadd(this.replyStream, '0-1', 'init', '1');
    await this.redis.xdel(this.replyStream, '0-1');
    await this.redis.pexpire(this.replyStream, REPLY_STREAM_TTL_MS);
  }

  private async readReplies(): Promise<void> {
    while (!this.closed) {
      try {
        const read = this.reader!.xreadBuffer('COUNT', 1000, 'BLOCK', REPLY_BLOCK_MS, 'STREAMS', this.replyStream, this.lastId) as Promise<[Buffer, [Buffer, Buffer[]][]][] | null>;
        let timer: NodeJS.Timeout | undefined;
        const stalled = new Promise<'stalled'>((r) => {
          timer = setTimeout(() => r('stalled'), REPLY_BLOCK_MS + REPLY_READ_STALL_MS);
        });
        const res = await Promise.race([read, stalled]);
        clearTimeout(timer);
        if (res === 'stalled') {
          // No answer long after the BLOCK ran out: the connection is silent (a network partition).
          // After one heals, TCP's backed-off retransmissions can keep it silent for tens of
          // seconds more (seen on the multi-host bed, issue 24); a new connection answers at once.
          // A fresh client rather than reconnecting this one: a Cluster client told to reconnect
          // mid-partition was seen never to read again once the partition healed.
          read.catch(() => undefined);
          const stale = this.reader;
          this.reader = this.closed ? null : duplicateClient(this.redis);
          stale?.disconnect();
          continue;
        }
        if (!res) continue;
        const readAt = sendTrace ? SendTrace.now() : 0;
        const ids: string[] = [];
        for (const [idBuf, fields] of res[0]![1]) {
          const id = idBuf.toString();
          this.lastId = id;
          ids.push(id);
          // One entry holds one reply or several (a group commit's replies to this process:
          // commit-many-7.lua), each a `mid` field followed by its `b`.
          // Field names told apart by their bytes: `mid` (3 bytes), `b` (1), no string made per name.
          let mid = '';
          for (let i = 0; i + 1 < fields.length; i += 2) {
            const name = fields[i]!;
            if (name.length === 3 && name[0] === 0x6d && name[1] === 0x69 && name[2] === 0x64) mid = fields[i + 1]!.toString();
            else if (name.length === 1 && name[0] === 0x62) {
              sendTrace?.mark(mid, 'rep', true, readAt);
              this.deliver(mid, fields[i + 1]!);
            }
          }
        }
        // Replies are read once; delete them so the stream stays small. Not awaited: the next
        // read starts from lastId, not from what is left in the stream, so it need not wait for
        // the delete's round trip (one fsync with appendfsync always, 0.4-1.5 ms measured under
        // load) — a reply committed meanwhile would have waited that long to be read.
        if (ids.length) this.redis.xdel(this.replyStream, ...ids).catch(() => undefined);
      } catch {
        if (this.closed) return;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }

  private deliver(mid: string, blob: Buffer): void {
    const waiter = this.waiters.get(mid);
    if (!waiter) return;
    this.waiters.delete(mid);
    waiter.settled = true;
    const reply = decode<ReplyEnvelope>(blob);
    if (reply.ok) waiter.resolve(reply.value);
    else waiter.reject(new ActorReplyError(reply.errcode, reply.error, reply.status));
  }

  /** Fail one ask (its append failed, it timed out, the client closed). */
  private fail(w: Waiter, e: Error): void {
    if (w.settled) return;
    w.settled = true;
    if (this.waiters.get(w.mid) === w) this.waiters.delete(w.mid);
    w.reject(e);
  }

  /** Queue `w` for its timeout (`ms` after now; its queue is in deadline order). */
  private track(w: Waiter, ms: number): void {
    let q = this.timeouts.get(ms);
    if (!q) this.timeouts.set(ms, (q = { ms, list: [], head: 0, timer: null, armedFor: Infinity, compactAt: 1024 }));
    q.list.push(w);
    if (q.list.length - q.head >= q.compactAt) {
      // Still in deadline order; at most twice the live waiters are kept (amortised O(1) an ask).
      q.list = q.list.slice(q.head).filter((x) => !x.settled);
      q.head = 0;
      q.compactAt = Math.max(1024, 2 * q.list.length);
    }
    this.expire(q, -Infinity);
  }

  /** Drop the queue's settled head, time out every head past its deadline at `now`, and keep the timer set for the new head. */
  private expire(q: TimeoutQueue, now: number): void {
    const list = q.list;
    let h = q.head;
    while (h < list.length && (list[h]!.settled || list[h]!.deadline <= now)) {
      const w = list[h++]!;
      if (!w.settled) this.fail(w, new ActorTimeoutError(w.mid, q.ms));
    }
    if (h === list.length) {
      // Empty: drop the queue (one is made per distinct timeout length, and some lengths are
      // computed, e.g. from a request's size) — the next ask of this length makes a new one.
      if (q.timer) clearTimeout(q.timer);
      q.timer = null;
      q.list = [];
      q.head = 0;
      q.armedFor = Infinity;
      if (this.timeouts.get(q.ms) === q) this.timeouts.delete(q.ms);
      return;
    } else if (h > 1024 && h * 2 > list.length) {
      q.list = list.slice(h);
      q.head = 0;
    } else q.head = h;
    const next = q.head < q.list.length ? q.list[q.head]!.deadline : Infinity;
    if (next === q.armedFor) return;
    if (q.timer) clearTimeout(q.timer);
    q.timer = null;
    q.armedFor = next;
    if (next === Infinity) return;
    q.timer = setTimeout(() => {
      q.timer = null;
      q.armedFor = Infinity;
      this.expire(q, performance.now());
    }, Math.max(0, next - performance.now()));
  }

  /**
   * `~<front>.<incarnation>:<n>`: unique across every process lifetime, one inbox entry each (see
   * the header). On a Cluster `=` instead of `~`: there an entry is appended by a plain XADD,
   * which ioredis may send again after a dropped connection (a second entry under the same id), so
   * the id keeps its done record — the commit dedupes by the pending entry only ids beginning
   * with `~` (commit-many-7.lua).
   */
  newMessageId(): string {
    return `${this.mintedPrefix}${(++this.counter).toString(36)}`;
  }

  private get mintedPrefix(): string {
    return (this.mintedPrefixText ??= `${isCluster(this.redis) ? '=' : '~'}${this.frontId}.${this.incarnation}:`);
  }

  private mintedPrefixText: string | undefined;
  private enqueueCalls = 0;

  /** A caller's id that begins with `~` and was not minted here would lose its dedupe record (see the header; a Cluster's client mints none). */
  private checkCallerMid(mid: string): void {
    if (mid.charCodeAt(0) === 0x7e && !mid.startsWith(this.mintedPrefix)) throw new Error(`message id ${JSON.stringify(mid)}: ids beginning with "~" are minted by ActorClient.newMessageId`);
  }

  /** Send a command to an actor and await its reply. */
  ask<R = unknown>(family: Family, kind: string, actorId: string, body: unknown, opts: AskOptions = {}): Promise<R> {
    if (!this.reader) return Promise.reject(new Error('ActorClient.start() first'));
    if (this.closing) return Promise.reject(new Error('ActorClient is shutting down'));
    if (opts.mid !== undefined) {
      try {
        this.checkCallerMid(opts.mid);
      } catch (e) {
        return Promise.reject(e);
      }
    }
    const mid = opts.mid ?? this.newMessageId();
    sendTrace?.mark(mid, 'ask', true);
    const timeoutMs = opts.timeoutMs ?? 10_000;
    // One promise per ask: the append's outcome reaches it through the waiter (a failed append
    // fails the ask), not through a promise of its own.
    return new Promise<R>((resolve, reject) => {
      const w: Waiter = { mid, resolve: resolve as (v: unknown) => void, reject, deadline: performance.now() + timeoutMs, settled: false };
      this.waiters.set(mid, w);
      this.track(w, timeoutMs);
      try {
        this.enqueue(family, kind, actorId, body, mid, this.replyStream, w, undefined, undefined, opts.guard);
      } catch (e) {
        this.fail(w, e as Error);
      }
    });
  }

  /** Send without waiting for a reply. */
  tell(family: Family, kind: string, actorId: string, body: unknown, mid = this.newMessageId()): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      try {
        this.checkCallerMid(mid);
        this.enqueue(family, kind, actorId, body, mid, null, null, resolve, reject);
      } catch (e) {
        reject(e);
      }
    });
  }

  /** Append the message (its outcome to `waiter`, or to `resolve`/`reject` for a tell). */
  private enqueue(family: Family, kind: string, actorId: string, body: unknown, mid: string, replyTo: string | null, waiter: Waiter | null, resolve?: () => void, reject?: (e: Error) => void, guard?: EnqueueGuard): void {
    const shard = shardOf(actorId, this.shardCounts[family]);
    const shardKeys = this.keys.shard(family, shard);
    let fields: (string | Buffer)[];
    if (this.inboxFormat === 2) fields = ['m', packInboxEntry(mid, actorId, kind, replyTo, Date.now(), encode(body))];
    else {
      fields = ['mid', mid, 'a', actorId, 'k', kind, 'b', encode(body), 't', String(Date.now())];
      if (replyTo) fields.push('r', replyTo);
    }
    const wake = this.keys.wakeChannel(family, shard);
    if (isCluster(this.redis)) {
      if (guard) throw new Error('a guarded ask needs a single Redis (the guard key and the inbox are in different slots on a Cluster)');
      // The entry must exist before the wake-up is seen; on a cluster the two commands may go
      // to different nodes, so wait for the first.
      void (async () => {
        await this.writer.xadd(shardKeys.inbox, '*', ...fields);
        await this.writer.publish(wake, '1');
      })().then(
        () => (waiter ? sendTrace?.mark(waiter.mid, 'enq', true) : resolve?.()),
        (e: Error) => (waiter ? this.fail(waiter, e) : reject?.(e)),
      );
      return;
    }
    // The asks of one turn go in ONE call (enqueue-many-6.lua): every entry appended, then the
    // woken shards' new entries read for their holders and published to each holder in one
    // message on its push channel (or a wake-up published once per shard), so that the holder has
    // them without a read of its own.
    this.pendingEnqueues.push({ inbox: shardKeys.inbox, lease: shardKeys.lease, fields, guard, wake, waiter, resolve, reject });
    if (this.enqueueScheduled) return;
    this.enqueueScheduled = true;
    // After every promise continuation of this turn: the lanes woken by one read of the
    // reply stream all ask before the call goes out.
    process.nextTick(this.flushEnqueues);
  }

  private pendingEnqueues: PendingEnqueue[] = [];
  private enqueueScheduled = false;

  private readonly flushEnqueues = (): void => {
    this.enqueueScheduled = false;
    const batch = this.pendingEnqueues;
    this.pendingEnqueues = [];
    for (let i = 0; i < batch.length; i += ENQUEUE_BATCH) void this.sendEnqueues(batch.slice(i, i + ENQUEUE_BATCH));
  };

  private async sendEnqueues(batch: PendingEnqueue[]): Promise<void> {
    const keys: string[] = [];
    const keyIndex = new Map<string, number>();
    const indexOf = (key: string): number => {
      let k = keyIndex.get(key);
      if (k === undefined) {
        keys.push(key);
        keyIndex.set(key, (k = keys.length));
      }
      return k;
    };
    // Per woken shard: its channel, inbox and lease (indices into KEYS), once each.
    const wakes = new Map<string, [string, number, number]>();
    const args: (string | Buffer | number)[] = [batch.length];
    for (const e of batch) {
      const k = indexOf(e.inbox);
      if (e.guard) args.push(k, indexOf(e.guard.key), e.guard.value, e.fields.length);
      else args.push(k, 0, '', e.fields.length);
      for (const f of e.fields) args.push(f);
      if (!wakes.has(e.wake)) wakes.set(e.wake, [e.wake, k, indexOf(e.lease)]);
    }
    const wakeArgs: (string | number)[] = [];
    for (const w of wakes.values()) wakeArgs.push(...w);
    let res: unknown[];
    try {
      // The call's record (its answer, once it ran): a call ioredis sends again after a dropped
      // connection gets that answer and appends nothing twice (enqueue-many-6.lua).
      const callKey = indexOf(this.keys.enqueueCall(`${this.mintedPrefix}e${(++this.enqueueCalls).toString(36)}`));
      res = (await runScriptBuffer(this.writer, 'enqueueMany', keys, [encodeScriptArgs(args), this.opts.push === false ? '' : INBOX_GROUP, PUSH_LIMIT, PUSH_MAX_BYTES, this.keys.workerPush(''), callKey, ENQUEUE_CALL_TTL_SEC, ...wakeArgs])) as unknown[];
    } catch (err) {
      for (const e of batch) this.settleEnqueue(e, err as Error);
      return;
    }
    for (let i = 0; i < batch.length; i++) {
      const r = res[i];
      this.settleEnqueue(batch[i]!, r === 1 ? null : isGuardAnswer(r) ? new EnqueueGuardError() : new Error(`enqueue: ${r === undefined ? 'no answer' : String(r)}`));
    }
  }

  private settleEnqueue(e: PendingEnqueue, err: Error | null): void {
    if (!err && e.guard) e.guard.held = true;
    if (e.waiter) {
      if (err) this.fail(e.waiter, err);
      else sendTrace?.mark(e.waiter.mid, 'enq', true);
    } else if (err) e.reject?.(err);
    else e.resolve?.();
  }

  /**
   * Stop: new asks are refused at once; asks in flight get up to `graceMs` to be answered (a
   * front shutting down lets its requests finish), then are rejected.
   */
  async close(graceMs = 5_000): Promise<void> {
    this.closing = true;
    const deadline = Date.now() + graceMs;
    while (this.waiters.size > 0 && Date.now() < deadline && this.reader) await new Promise((r) => setTimeout(r, 20));
    this.closed = true;
    if (this.replyTtlTimer) clearInterval(this.replyTtlTimer);
    this.formatWatch?.leave();
    this.formatWatch = null;
    // Every unsettled ask is in a timeout queue, including one displaced from `waiters` by a later
    // ask with the same message id (a retried transaction): fail them all, not only the mapped ones.
    const closedError = new Error('ActorClient closed');
    for (const q of this.timeouts.values()) {
      if (q.timer) clearTimeout(q.timer);
      for (let i = q.head; i < q.list.length; i++) this.fail(q.list[i]!, closedError);
    }
    this.timeouts.clear();
    for (const w of [...this.waiters.values()]) this.fail(w, closedError);
    this.reader?.disconnect();
    this.reader = null;
    if (this.writer !== this.redis) this.writer.disconnect();
    await this.redis.del(this.replyStream).catch(() => undefined);
  }
}

/**
 * Whether every live worker reads the packed entry format (their heartbeats' `inbox_format`),
 * looked at once per connection and key space for all the askers sharing them (a worker process
 * runs a dozen): until then, and while no worker is live, askers write field pairs, which every
 * version reads. Looked at again every FORMAT_CHECK_MS (FORMAT_CHECK_NO_WORKER_MS while none is
 * live); a failed look changes nothing. Stops when the last of its askers closes.
 */
class FormatWatch {
  private static readonly watches = new WeakMap<RedisClient, Map<string, FormatWatch>>();
  packed = false;
  /** Settled once the first look is done (whatever it found). */
  readonly firstLook: Promise<void>;
  private askers = 1;
  private timer: NodeJS.Timeout | null = null;

  private constructor(private readonly keys: KeySpace, private readonly redis: RedisClient) {
    this.firstLook = this.look();
  }

  static join(keys: KeySpace, redis: RedisClient): FormatWatch {
    let byKeys = FormatWatch.watches.get(redis);
    if (!byKeys) FormatWatch.watches.set(redis, (byKeys = new Map()));
    const w = byKeys.get(keys.workers());
    if (w) {
      w.askers++;
      return w;
    }
    const created = new FormatWatch(keys, redis);
    byKeys.set(keys.workers(), created);
    return created;
  }

  leave(): void {
    if (--this.askers > 0) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    FormatWatch.watches.get(this.redis)?.delete(this.keys.workers());
  }

  private async look(): Promise<void> {
    let workers = 0;
    try {
      const rows = (await this.redis.zrange(this.keys.workers(), 0, -1, 'WITHSCORES')) as string[];
      let newest = -Infinity;
      for (let i = 1; i < rows.length; i += 2) newest = Math.max(newest, Number(rows[i]));
      const ids: string[] = [];
      for (let i = 0; i + 1 < rows.length; i += 2) if (Number(rows[i + 1]) >= newest - FORMAT_LIVE_MS) ids.push(rows[i]!);
      workers = ids.length;
      const records = await Promise.all(ids.map((id) => this.redis.hmget(this.keys.workerInfo(id), 'inbox_format', 'heartbeat')));
      this.packed = workers > 0 && records.every(([format, heartbeat]) => readsPacked(format, heartbeat));
    } catch {
      // Redis unreachable: keep what was decided.
    }
    if (this.askers === 0) return;
    this.timer = setTimeout(() => void this.look(), workers > 0 ? FORMAT_CHECK_MS : FORMAT_CHECK_NO_WORKER_MS);
    this.timer.unref();
  }
}
