/**
 * One owned shard inside a worker: reads its inbox through the consumer group, hands each message
 * to its actor's mailbox, and commits each decision atomically with the lease's fencing token.
 *
 * Ordering without head-of-line blocking: messages are ordered per actor, not per shard. Each
 * actor has its own mailbox processed one message at a time (its state is a function of the
 * order), while the shard keeps reading and other actors' mailboxes run concurrently. A slow
 * actor (a room doing a heavy state resolution) therefore only delays its own messages; the shard
 * as a whole is held back only when the messages buffered behind slow actors reach
 * `maxBuffered`, which bounds memory. Acknowledgements are per entry (inside the commit script),
 * so out-of-order completion across actors loses nothing: an unacknowledged entry stays in the
 * group's pending list and is re-delivered to whoever owns the shard next.
 */
import type { Logger } from 'pino';
import { ActorRejection, type AnyActorKind, type ActorMessage, type ReplyEnvelope, type ShellContext, type StoreWrite } from './actor';
import { parseInboxEntry, type InboxEntry, type PushedEntry } from './envelope';
import type { Family } from '../store/shards';
import { decode, encode } from '../store/codec';
import { INBOX_GROUP, type ShardKeys } from '../store/keys';
import { bufferCommand, isCluster, runScript, runScriptBuffer, waitForReplicas, type RedisClient } from '../store/redis';
import { clusterSlot } from '../store/cluster-slot';
import type { CommitMessage, CommitQueue, CommitUnit } from './commit-queue';
import type { GroupReads, InboxEntries } from './group-reads';
import { ShardTimers, timerWrites } from './timers';
import { familyCounters } from '../ops/metrics';
import { sendTrace } from './send-trace';

export interface RunnerEnv {
  redis: RedisClient;
  workerId: string;
  kinds: Map<string, AnyActorKind>;
  log: Logger;
  dedupeTtlSec: number;
  maxDeliveries: number;
  maxBuffered: number;
  readBatch: number;
  idleBoundMs: number;
  /** Actors whose state a runner keeps in memory at most (the least recently used idle ones go first). */
  cacheLimit?: number;
  /**
   * Replicas that must hold a commit before its reply goes out (`redis.waitReplicas`; 0: none).
   * Fewer within `timeoutMs`: the message fails and is retried, so its client is never told "done"
   * about a write only one copy holds.
   */
  replicaWait?: { replicas: number; timeoutMs: number };
  /** The worker's group commit: the commits of its actors decided in the same turn go in one call. */
  commits: CommitQueue;
  /** The worker's inbox reads: the shards woken in the same turn read in one call. */
  reads: GroupReads;
  /** Test-only fault injection (see Worker): called at named points; may never resolve. */
  faultPoint?: (point: 'before-commit' | 'after-commit', entry: InboxEntry) => Promise<void> | void;
  onLost(runner: ShardRunner): void;
  /** Called after a commit that appended entries to the outbox (wakes the outbox readers; notifies). */
  onOutputs?(runner: ShardRunner, committed: CommittedOutputs): void;
  /** Called when a read or reclaim got inbox entries (the worker's sweep then looks at the shard). */
  onActive?(runner: ShardRunner): void;
}

/** What one commit appended to its shard's outbox: the actor and its outputs (as decided). */
export interface CommittedOutputs {
  kind: string;
  actorId: string;
  outputs: unknown[];
  /** The committing runner's family and shard (what the worker's notify needs, without a copy). */
  family: Family;
  shard: number;
}

interface ActorSlot {
  key: string;
  /** The actor's state key (full name), made once. */
  stateKey: string;
  kind: AnyActorKind;
  actorId: string;
  queue: { entry: InboxEntry; deliveries: number }[];
  running: boolean;
  /** Cached state, valid while this worker holds the lease; undefined = load from the store. */
  state: unknown;
  loaded: boolean;
}

type RunnerState = 'starting' | 'running' | 'draining' | 'stopped';

/**
 * A derived write with its full key name (Decision.derivedWrites, prefixed); `fence`: the fencing
 * token of the holding that committed it, for an `ordered` write, and `fenceKey` where the tokens
 * of its members are kept (fenceKeyOf); both absent in records of older workers.
 */
type DerivedWrite = { cmd: string; key: string; args: (string | number | Buffer)[]; fence?: string; fenceKey?: string };

/**
 * Order of two stream entry ids (`<ms>-<seq>`), read in place: it runs for every entry given to a
 * runner, and splitting made two arrays and four strings each time.
 */
export function compareStreamIds(a: string, b: string): number {
  const ad = a.indexOf('-');
  const bd = b.indexOf('-');
  return idPart(a, 0, ad < 0 ? a.length : ad) - idPart(b, 0, bd < 0 ? b.length : bd) || (ad < 0 ? 0 : idPart(a, ad + 1, a.length)) - (bd < 0 ? 0 : idPart(b, bd + 1, b.length));
}

/** The decimal number s[from, to) (NaN if it holds anything but digits). */
function idPart(s: string, from: number, to: number): number {
  if (from >= to) return 0; // as Number('')
  let n = 0;
  for (let i = from; i < to; i++) {
    const d = s.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return NaN;
    n = n * 10 + d;
  }
  return n;
}

export const REPLY_STREAM_MAXLEN = 10_000;
/** An empty list shared by the units that have none (never written to). */
const NONE: never[] = [];
const CACHE_LIMIT = 10_000;

export class ShardRunner {
  state: RunnerState = 'starting';
  private slots = new Map<string, ActorSlot>();
  private buffered = 0;
  private tracked = new Set<string>();
  private reading = false;
  private wakePending = false;
  private idleWaiters: (() => void)[] = [];
  readonly ctx: ShellContext;
  /** Messages committed since start (for status and benchmarks). */
  applied = 0;
  /** Commit scripts that applied messages (fewer than `applied` when kinds group-commit). */
  commits = 0;
  deadLettered = 0;
  /**
   * The highest inbox entry id this runner was given by a read or a claim ('0-0': none yet), a
   * lower bound of its group's last-delivered id. An inbox entry above it has not been delivered
   * — the worker's sweep asks Redis for those across many inboxes in one XREAD — or was delivered
   * by a read whose answer was lost, or to a holder that stalled past its lease: each read gives
   * the pending entries above it first (GroupReads.readInbox).
   */
  lastDelivered = '0-0';
  /** Entries applied as pushed (ShardRunner.pushed), for tests and benchmarks. */
  pushedEntries = 0;
  /** Whether the shard's wake-up channel subscription is in effect (Worker.flushSubscriptions). */
  private subscribedNow = false;
  /** Bumped whenever pushes may have been missed: only a read started after it can set `synced`. */
  private pushEpoch = 0;
  /** Pushes can be applied as they come (see pushed). */
  private synced = false;
  private readonly timers: ShardTimers;
  /** This family's Prometheus counters (bound children: an increment is a field update). */
  private readonly counters: ReturnType<typeof familyCounters>;

  constructor(
    private readonly env: RunnerEnv,
    readonly family: Family,
    readonly shard: number,
    readonly keys: ShardKeys,
    public token: string,
  ) {
    this.name = `${family}:${shard}`;
    this.ctx = { redis: env.redis, keys, family, shard, log: env.log };
    this.counters = familyCounters(family);
    this.timers = new ShardTimers({
      redis: env.redis,
      keys,
      workerId: env.workerId,
      token: () => this.token,
      onFired: () => this.wake(),
      onStale: () => this.lose(),
      onError: (e) => env.log.warn({ err: e, shard: this.name }, 'firing timers failed; retrying'),
    });
  }

  /** `family:shard`, made once. */
  readonly name: string;

  get bufferedCount(): number {
    return this.buffered;
  }

  /** Take over the shard: create the group if needed, claim every pending entry, then read new ones. */
  async start(): Promise<void> {
    const { redis } = this.env;
    try {
      await redis.xgroup('CREATE', this.keys.inbox, INBOX_GROUP, '0', 'MKSTREAM');
    } catch (e) {
      if (!String((e as Error).message).includes('BUSYGROUP')) throw e;
    }
    await this.applyPendingDerived();
    await this.reclaim(0);
    // Every pending entry is this worker's now: the earlier holders' consumers go (they hold
    // nothing). Housekeeping: a failure is logged, not a failed takeover.
    await runScript(redis, 'inboxConsumersPrune', [this.keys.inbox], [INBOX_GROUP, this.env.workerId]).catch((e: unknown) => this.env.log.warn({ err: e, shard: this.name }, 'pruning the inbox group\'s empty consumers failed'));
    await this.timers.start();
    if (this.state === 'starting') {
      this.state = 'running';
      this.wake();
    }
  }

  /**
   * Claim pending entries idle for at least `minIdleMs` (0 at takeover: the previous holder is
   * dead or fenced) and dispatch the ones not already in hand. Claiming bumps each entry's
   * delivery count, which is how a message that crashes its worker every time ends up
   * dead-lettered instead of killing every worker in turn.
   * The idle reclaim (the sweep's, `minIdleMs` > 0) leaves alone the entries this runner holds in
   * memory: behind a slow actor they may wait past the bound without having failed anywhere, and
   * claiming them every sweep would count deliveries that never happened (after a crash, the next
   * holder would dead-letter a healthy message).
   */
  async reclaim(minIdleMs: number): Promise<number> {
    const idle = minIdleMs === 0 ? null : await this.claimIdle(minIdleMs);
    const claimed = idle ? idle.claimed : await this.claimAll();
    if (claimed.length === 0) return 0;
    // Given to this runner: the reads' look for pending entries starts above them.
    this.delivered(claimed[claimed.length - 1]![0]);
    this.env.onActive?.(this);
    // The idle claim knows each entry's count from its own listing (the entries it skipped lie in
    // the same id range and would crowd a second listing); the takeover asks for them.
    const deliveries = idle ? idle.deliveries : await this.deliveryCounts(claimed[0]![0], claimed[claimed.length - 1]![0], claimed.length);
    let n = 0;
    for (const [id, fields] of claimed) {
      if (this.tracked.has(id)) continue;
      this.dispatch(id, fields, deliveries.get(id) ?? 1);
      n++;
    }
    return n;
  }

  /** Every pending entry of the inbox, whoever holds it, claimed by this worker (takeover). */
  private async claimAll(): Promise<[string, Buffer[] | null][]> {
    const { redis, workerId } = this.env;
    let cursor = '0-0';
    const claimed: [string, Buffer[] | null][] = [];
    do {
      const res = (await bufferCommand(redis, 'xautoclaimBuffer')(this.keys.inbox, INBOX_GROUP, workerId, 0, cursor, 'COUNT', 500)) as unknown as [Buffer, [Buffer, Buffer[]][], Buffer[]];
      cursor = res[0].toString();
      for (const [id, fields] of res[1]) claimed.push([id.toString(), fields]);
      // Entries trimmed away while pending cannot be processed; acknowledge them.
      const deleted = (res[2] ?? []).map((b) => b.toString());
      if (deleted.length) await redis.xack(this.keys.inbox, INBOX_GROUP, ...deleted);
    } while (cursor !== '0-0');
    return claimed;
  }

  /**
   * The pending entries idle for at least `minIdleMs` that this runner does not hold, claimed by
   * this worker (XCLAIM keeps the idle condition: an entry someone touched since is not taken;
   * an entry trimmed away is dropped from the pending list and not returned).
   */
  private async claimIdle(minIdleMs: number): Promise<{ claimed: [string, Buffer[] | null][]; deliveries: Map<string, number> }> {
    const { redis, workerId } = this.env;
    const claimed: [string, Buffer[] | null][] = [];
    const deliveries = new Map<string, number>();
    let from = '-';
    for (;;) {
      const rows = (await redis.xpending(this.keys.inbox, INBOX_GROUP, 'IDLE', minIdleMs, from, '+', 500)) as [string, string, number, number][];
      const counts = new Map<string, number>();
      for (const row of rows) if (!this.tracked.has(row[0])) counts.set(row[0], Number(row[3]));
      if (counts.size) {
        const res = (await (redis as unknown as { xclaimBuffer(...a: unknown[]): Promise<[Buffer, Buffer[] | null][]> }).xclaimBuffer(this.keys.inbox, INBOX_GROUP, workerId, minIdleMs, ...counts.keys())) ?? [];
        for (const [idBuf, fields] of res) {
          if (!fields) continue;
          const id = idBuf.toString();
          claimed.push([id, fields]);
          // XCLAIM counted one more delivery.
          deliveries.set(id, (counts.get(id) ?? 0) + 1);
        }
      }
      if (rows.length < 500) break;
      from = `(${rows[rows.length - 1]![0]}`;
    }
    return { claimed, deliveries };
  }

  private async deliveryCounts(first: string, last: string, count: number): Promise<Map<string, number>> {
    const rows = (await this.env.redis.xpending(this.keys.inbox, INBOX_GROUP, first, last, count, this.env.workerId)) as [string, string, number, number][];
    return new Map(rows.map((r) => [r[0], Number(r[3])]));
  }

  /** Something may be waiting in the inbox: read it (coalesced: one read loop at a time). */
  wake(): void {
    if (this.state !== 'running') return;
    if (this.reading) {
      this.wakePending = true;
      return;
    }
    void this.readLoop();
  }

  private async readLoop(): Promise<void> {
    this.reading = true;
    try {
      do {
        this.wakePending = false;
        while (this.state === 'running' && this.buffered < this.env.maxBuffered) {
          const count = Math.min(this.env.readBatch, this.env.maxBuffered - this.buffered);
          // Entries delivered above `lastDelivered` and still pending come first: those of a read
          // whose answer was lost, or of a holder that stalled past its lease and read on (see
          // GroupReads), so that they are applied before the actor's later messages.
          const epoch = this.pushEpoch;
          let res: InboxEntries;
          try {
            res = await this.env.reads.readInbox({ inbox: this.keys.inbox, after: this.lastDelivered, count });
          } catch (e) {
            // Its entries may have been delivered and lost: pushes wait until a read gets them.
            this.unsync();
            throw e;
          }
          // Read after the wake-up channel's subscription took effect (and nothing lost since):
          // everything delivered to this consumer from here on comes in pushes, in order.
          if (epoch === this.pushEpoch && this.subscribedNow) this.synced = true;
          const { entries, counts, more } = res;
          if (entries.length === 0) {
            // Only trimmed rows in a full page (acknowledged by the read): the held-back entries next.
            if (more) continue;
            break;
          }
          // Entries come in id order (pending ones, then new ones): the last is the highest.
          this.delivered(entries[entries.length - 1]![0].toString());
          this.env.onActive?.(this);
          for (let i = 0; i < entries.length; i++) {
            const id = entries[i]![0].toString();
            // A pending entry a concurrent claim (reclaim) dispatched already.
            if (i < counts.length && this.tracked.has(id)) continue;
            this.dispatch(id, entries[i]![1], counts[i] ?? 1);
          }
          // A short read is the end for now: an entry appended since comes with a wake-up, which
          // sets `wakePending` while this loop runs (no empty read to find the end). Not when the
          // read held its new entries back (`more`): they are pending above the last entry given,
          // and a push must not be applied over them (pushed).
          if (entries.length < count && !more) break;
        }
      } while (this.wakePending && this.state === 'running');
    } catch (e) {
      this.env.log.warn({ err: e, shard: this.name }, 'inbox read failed; the next wake or poll retries');
    } finally {
      this.reading = false;
    }
  }

  /**
   * The shard's wake-up channel is subscribed to (`on`), again after its connection came back, or
   * no longer: pushes are taken as they come only after a read that started after this.
   */
  subscription(on: boolean): void {
    this.subscribedNow = on;
    this.unsync();
  }

  /** Whether its wake-up channel's subscription is in effect (see subscription). */
  get subscribed(): boolean {
    return this.subscribedNow;
  }

  /** Something may have been delivered to this consumer that no push will bring (see pushed). */
  private unsync(): void {
    this.pushEpoch++;
    this.synced = false;
  }

  /**
   * Entries the enqueue call read into `owner`'s pending list for this shard and published
   * (enqueue-many-6.lua, in one message for several shards or one for this shard), in delivery
   * order; `full`: as many as one push carries (more may be
   * waiting). They are applied as they come only when nothing can come between them and the
   * last entry given: no read is in flight
   * (its answer, on another connection, could hold entries delivered before these), and since a
   * read that started after the channel's subscription took effect no read failed and the
   * subscriber did not reconnect (a push lost with it would leave a gap). Otherwise the push is a
   * wake-up: the next read gives what it held, first, as pending entries above `lastDelivered`.
   */
  pushed(owner: string, entries: PushedEntry[], full: boolean): void {
    // The lease named another worker when the entries were handed on: they are its to apply (or
    // its successor's, which claims them at takeover). This runner has lost the shard and learns
    // it at its next commit or renewal; reading now would only claim them away from the holder.
    if (owner !== this.env.workerId) return;
    if (this.state !== 'running' || !this.synced || this.reading || this.buffered + entries.length > this.env.maxBuffered) {
      this.wake();
      return;
    }
    let n = 0;
    for (const [id, entry] of entries) {
      // Given already (a read that ran after this push's call got it as a pending entry).
      if (compareStreamIds(id, this.lastDelivered) <= 0) continue;
      this.lastDelivered = id;
      this.dispatch(id, entry, 1);
      n++;
    }
    this.pushedEntries += n;
    if (n) this.env.onActive?.(this);
    if (full) this.wake();
  }

  /** Entries up to `id` were given to this runner (reads and claims may end in either order). */
  private delivered(id: string): void {
    if (compareStreamIds(id, this.lastDelivered) > 0) this.lastDelivered = id;
  }

  /** `fields`: the entry's raw fields as read, or the entry a push parsed already (parsePackedPush). */
  private dispatch(id: string, fields: Buffer[] | null | InboxEntry, deliveries: number): void {
    let entry: InboxEntry | null;
    if (fields === null || Array.isArray(fields)) {
      entry = parseInboxEntry(id, fields);
      if (!entry) {
        // Unparseable input is terminated, not retried: retrying cannot make it parse.
        void this.deadLetterRaw(id, fields, 'malformed inbox entry');
        return;
      }
    } else entry = fields;
    const kind = this.env.kinds.get(entry.kind);
    if (!kind || kind.family !== this.family) {
      void this.deadLetter(entry, deliveries, `no actor kind ${JSON.stringify(entry.kind)} in family ${this.family}`);
      return;
    }
    const key = `${entry.kind}\u0000${entry.actorId}`;
    let slot = this.slots.get(key);
    if (!slot) {
      slot = { key, stateKey: this.keys.state(entry.kind, entry.actorId), kind, actorId: entry.actorId, queue: [], running: false, state: undefined, loaded: false };
    } else {
      // Most recently used last: the Map's order is the eviction order (evictIfNeeded).
      this.slots.delete(key);
    }
    this.slots.set(key, slot);
    sendTrace?.mark(entry.mid, 'read');
    slot.queue.push({ entry, deliveries });
    this.buffered++;
    this.tracked.add(id);
    if (!slot.running) void this.runSlot(slot);
  }

  private async runSlot(slot: ActorSlot): Promise<void> {
    slot.running = true;
    try {
      while (slot.queue.length > 0 && this.state !== 'stopped') {
        const batch = this.batchOf(slot);
        if (batch.length > 1) {
          let n: number | false;
          try {
            n = await this.applyBatch(slot, batch);
          } catch (e) {
            // Whether it was applied is unknown (or it was, and its derived writes failed):
            // reload, and let the one-at-a-time path (its dedupe, retries and dead-lettering)
            // take the head message.
            this.forget(slot);
            this.env.log.warn({ err: e, shard: this.name, actor: slot.actorId }, 'group commit failed; applying the messages one by one');
            n = 0;
          }
          if (n === false) return; // lease lost
          if (n > 0) {
            this.finished(slot, n);
            continue;
          }
        }
        const item = slot.queue[0]!;
        let done: boolean;
        try {
          done = await this.process(slot, item.entry, item.deliveries);
        } catch (e) {
          // Only Redis failures on the dead-letter path land here; try the same entry again.
          this.env.log.warn({ err: e, shard: this.name, mid: item.entry.mid }, 'could not finish a message; retrying');
          await sleep(500);
          continue;
        }
        if (!done) return; // lease lost: the entries stay pending for the next holder
        this.finished(slot, 1);
      }
    } finally {
      slot.running = false;
      if (slot.queue.length === 0) this.evictIfNeeded();
      if (this.buffered === 0) this.notifyIdle();
    }
  }

  /** The first `n` messages of the slot's queue are finished with. */
  private finished(slot: ActorSlot, n: number): void {
    const wasFull = this.buffered >= this.env.maxBuffered;
    // One at a time (most kinds): shift, not splice, which makes an array of what it removes.
    if (n === 1) this.tracked.delete(slot.queue.shift()!.entry.id);
    else for (const item of slot.queue.splice(0, n)) this.tracked.delete(item.entry.id);
    this.buffered -= n;
    if (wasFull && this.buffered < this.env.maxBuffered) this.wake(); // room again after back-pressure
  }

  /** The head of the queue a `batch` kind may commit together (fewer than 2: none). */
  private batchOf(slot: ActorSlot): { entry: InboxEntry; body: unknown }[] {
    const spec = slot.kind.batch;
    if (!spec || slot.queue.length < 2) return NONE;
    const out: { entry: InboxEntry; body: unknown }[] = [];
    const mids = new Set<string>();
    for (const item of slot.queue) {
      if (out.length >= spec.max || item.deliveries > 1) break;
      // The same message id twice (a producer's retry enqueued while the first still waits):
      // the script's dedupe checks the done records as they were before the batch, so the
      // repeat ends the batch and is answered from its record by the next commit.
      if (mids.has(item.entry.mid)) break;
      mids.add(item.entry.mid);
      let body: unknown;
      try {
        body = decode(item.entry.body);
      } catch {
        break;
      }
      if (!spec.accepts(body)) break;
      out.push({ entry: item.entry, body });
    }
    return out;
  }

  /**
   * Decide `batch` (the head of the slot's queue) one message after the other and commit them in
   * one script. Returns how many were finished, 0 when they must go one by one instead (one of
   * them failed or was already applied), false when the lease was lost.
   */
  private async applyBatch(slot: ActorSlot, batch: { entry: InboxEntry; body: unknown }[]): Promise<number | false> {
    const { redis } = this.env;
    const kind = slot.kind;
    if (sendTrace) for (const b of batch) sendTrace.mark(b.entry.mid, 'start');
    if (!slot.loaded) await this.load(slot); // no await (a microtask per message) when cached
    let state = slot.state;
    const replies: Buffer[] = [];
    const decided: unknown[] = [];
    let writes: { cmd: string; key: string; args: (string | number | Buffer)[]; absolute?: true }[] = [];
    let derived: DerivedWrite[] = [];
    let timerDue = Infinity;
    // The shard writes decided so far, as the kind wrote them (relative names), for the shells of
    // the messages after them (ShellContext.pending).
    const pending: StoreWrite[] = [];
    const msgs = batch.map(({ entry, body }): ActorMessage<unknown> => ({ mid: entry.mid, actorId: entry.actorId, body, enqueuedAt: entry.enqueuedAt }));
    const prefetched = kind.batch?.prefetch ? await kind.batch.prefetch(this.ctx, state, msgs) : undefined;
    const ctx: ShellContext = prefetched ? { ...this.ctx, pending, prefetched } : { ...this.ctx, pending };
    for (let i = 0; i < batch.length; i++) {
      const entry = batch[i]!.entry;
      const msg = msgs[i]!;
      let reply: ReplyEnvelope;
      try {
        const prepared = kind.prepare ? await kind.prepare(ctx, state, msg) : undefined;
        const decision = kind.decide(state, msg, prepared);
        state = decision.state;
        reply = { ok: true, value: decision.reply ?? null };
        decided.push(...(decision.outputs ?? []));
        for (const w of decision.writes ?? []) {
          writes.push(w);
          pending.push(w);
        }
        if (decision.derivedWrites?.length) {
          if (isCluster(redis)) derived = [...derived, ...this.derivedOf(decision.derivedWrites)];
          else writes = [...writes, ...decision.derivedWrites.map((w) => ({ cmd: w.cmd, key: this.keys.global(w.key), args: w.args, absolute: true as const }))];
        }
        if (decision.timers?.length) {
          writes.push(...timerWrites(this.keys, kind.kind, entry.actorId, decision.timers));
          for (const t of decision.timers) if (t.atMs !== null) timerDue = Math.min(timerDue, t.atMs);
        }
      } catch (e) {
        if (!(e instanceof ActorRejection)) return 0;
        reply = { ok: false, errcode: e.errcode, error: e.message, status: e.status };
      }
      replies.push(encode(reply));
    }
    const changed = state !== slot.state;
    const derivedId = batch[0]!.entry.id;
    if (derived.length) writes.push(this.recordDerived(derivedId, derived));
    const replyHere = this.repliesInCommit();
    const messages: CommitMessage[] = batch.map((b, i) => this.commitMessage(b.entry, replies[i]!, replyHere));
    if (sendTrace) for (const b of batch) sendTrace.mark(b.entry.mid, 'dec');
    if (this.env.faultPoint) for (const b of batch) await this.env.faultPoint('before-commit', b.entry);
    const res = await this.env.commits.submit(this.unit(slot, messages, changed ? encode(kind.serialize ? kind.serialize(state) : state) : null, decided, writes));
    if (res.status === 'stale') {
      this.env.log.warn({ shard: this.name, owner: res.owner }, 'lease lost: a newer holder fenced this worker out');
      this.lose();
      return false;
    }
    if (res.status === 'dup') {
      // A message of the batch was applied already, perhaps by a commit of ours whose answer never
      // came back (the connection dropped and the command was sent again): the cached state may
      // lack it. Reload before deciding anything else (see forget). One by one, each message's
      // commit answers 'dup' and finishes what the earlier commit left (afterDup: the head's finds
      // the derived record, which a group commit keeps under its first entry id).
      this.forget(slot);
      return 0;
    }
    if (changed) slot.state = state;
    this.applied += batch.length;
    this.commits++;
    this.counters.applied.inc(batch.length);
    this.counters.commits.inc();
    if (decided.length) this.env.onOutputs?.(this, { kind: kind.kind, actorId: slot.actorId, outputs: decided, family: this.family, shard: this.shard });
    this.timers.arm(timerDue);
    if (this.env.faultPoint) for (const b of batch) await this.env.faultPoint('after-commit', b.entry);
    // A failure throws: runSlot then takes the messages one by one, the head's commit answers
    // 'dup' and applies the record (afterDup) before any reply goes out.
    if (derived.length) await this.sendDerived(redis, derivedId, derived);
    // Replies the commit could not deliver itself (a Cluster, or waiting for replicas).
    await this.replyAndAckMany(batch.flatMap((b, i) => (messages[i]!.mode === '0' ? [{ entry: b.entry, blob: replies[i]! }] : [])));
    return batch.length;
  }

  /**
   * Whether the commit itself delivers replies and acks (mode 'r'): on one Redis the reply stream
   * is on the same server, so the commit, its reply and its acknowledgement are one atomic step.
   * Not on a Cluster (the reply stream lives in another slot: the caller replies, then acks), and
   * not with `redis.waitReplicas` (the reply must wait for the replicas: replyAndAck).
   */
  private repliesInCommit(): boolean {
    return this.env.commits.repliesInCommit && !(this.env.replicaWait && this.env.replicaWait.replicas > 0);
  }

  private commitMessage(entry: InboxEntry, reply: Buffer, replyHere: boolean): CommitMessage {
    const mode = !entry.replyTo ? '1' : replyHere ? 'r' : '0';
    const m: CommitMessage = { id: entry.id, reply, mode, mid: entry.mid };
    if (mode === 'r') m.replyTo = entry.replyTo!;
    return m;
  }

  private unit(slot: ActorSlot, messages: CommitMessage[], state: Buffer | null, outputs: unknown[], writes: { cmd: string; key: string; args: (string | number | Buffer)[]; absolute?: true }[]): CommitUnit {
    return {
      shard: this.keys,
      token: this.token,
      messages,
      state,
      outputs: outputs.length ? outputs.map((o) => encode(o)) : NONE,
      actorId: slot.actorId,
      kind: slot.kind.kind,
      // As the kind wrote them: data names of the shard, or full names where `absolute` (the script makes the keys).
      writes: writes.length ? writes : NONE,
    };
  }

  /**
   * Drop the slot's cached state: the next message reloads it from Redis. After any commit whose
   * outcome the cache may not reflect: one that failed (it may have been applied), and one answered
   * 'dup' — its message was applied before, possibly by this very worker's commit whose answer was
   * lost with its connection and which ioredis sent again on the next one (autoResendUnfulfilledCommands,
   * e.g. across a Redis restart); deciding the next message from the cached state would then
   * overwrite that applied, acknowledged write.
   */
  private forget(slot: ActorSlot): void {
    slot.loaded = false;
    slot.state = undefined;
  }

  /** Load the actor's state into the slot unless it is cached. */
  private async load(slot: ActorSlot): Promise<void> {
    if (slot.loaded) return;
    const blob = await this.env.redis.getBuffer(slot.stateKey);
    const stored = blob ? decode(blob) : undefined;
    slot.state = slot.kind.hydrate ? await slot.kind.hydrate(this.ctx, stored, slot.actorId) : (stored ?? slot.kind.initialState(slot.actorId));
    slot.loaded = true;
  }

  /**
   * Over the limit, drop the least recently used actors that are idle (nothing queued, nothing
   * running): the Map holds the slots in the order of their last message. (It dropped the slot
   * that had just finished, the most recently used: once full, a new actor was never cached and
   * the first ten thousand stayed for good.)
   */
  private evictIfNeeded(): void {
    const limit = this.env.cacheLimit ?? CACHE_LIMIT;
    if (this.slots.size <= limit) return;
    for (const slot of this.slots.values()) {
      if (this.slots.size <= limit) break;
      if (!slot.running && slot.queue.length === 0) this.slots.delete(slot.key);
    }
  }

  /**
   * Apply one message. Returns true when it is finished with (committed, answered as a
   * duplicate, or dead-lettered), false when the lease was lost.
   */
  private async process(slot: ActorSlot, entry: InboxEntry, deliveries: number): Promise<boolean> {
    const { log, maxDeliveries } = this.env;
    if (deliveries > maxDeliveries) {
      return this.deadLetter(entry, deliveries, `delivered ${deliveries} times without completing (the worker may have crashed on it)`);
    }
    let attempt = 0;
    for (;;) {
      if (this.state === 'stopped') return false;
      attempt++;
      try {
        return await this.apply(slot, entry);
      } catch (e) {
        // Whether a failed commit was applied is unknown: drop the cached state so the retry
        // reloads it (the dedupe makes the retry itself safe).
        this.forget(slot);
        const tries = deliveries + attempt - 1;
        if (tries >= maxDeliveries) return this.deadLetter(entry, tries, errorText(e));
        log.warn({ err: e, shard: this.name, actor: entry.actorId, mid: entry.mid, attempt: tries }, 'actor message failed; retrying');
        await sleep(Math.min(1000, 20 * 2 ** attempt));
      }
    }
  }

  private async apply(slot: ActorSlot, entry: InboxEntry): Promise<boolean> {
    const { redis } = this.env;
    const kind = slot.kind;
    sendTrace?.mark(entry.mid, 'start');
    if (!slot.loaded) await this.load(slot); // no await (a microtask per message) when cached
    const msg: ActorMessage<unknown> = { mid: entry.mid, actorId: entry.actorId, body: decode(entry.body), enqueuedAt: entry.enqueuedAt };
    let nextState = slot.state;
    let reply: ReplyEnvelope;
    let decided: unknown[] = [];
    let writes: { cmd: string; key: string; args: (string | number | Buffer)[]; absolute?: true }[] = [];
    let timerDue = Infinity;
    let derived: DerivedWrite[] = [];
    try {
      const prepared = kind.prepare ? await kind.prepare(this.ctx, slot.state, msg) : undefined;
      const decision = kind.decide(slot.state, msg, prepared);
      nextState = decision.state;
      reply = { ok: true, value: decision.reply ?? null };
      decided = decision.outputs ?? [];
      writes = decision.writes ?? [];
      if (decision.derivedWrites?.length) {
        if (isCluster(redis)) derived = this.derivedOf(decision.derivedWrites);
        else writes = [...writes, ...decision.derivedWrites.map((w) => ({ cmd: w.cmd, key: this.keys.global(w.key), args: w.args, absolute: true as const }))];
      }
      if (decision.timers?.length) {
        writes = [...writes, ...timerWrites(this.keys, kind.kind, entry.actorId, decision.timers)];
        for (const t of decision.timers) if (t.atMs !== null) timerDue = Math.min(timerDue, t.atMs);
      }
    } catch (e) {
      if (!(e instanceof ActorRejection)) throw e;
      reply = { ok: false, errcode: e.errcode, error: e.message, status: e.status };
    }
    const replyBlob = encode(reply);
    const changed = nextState !== slot.state;
    // With a reply to deliver, the entry is acknowledged only after the reply is out: by the
    // commit itself where it can deliver it (repliesInCommit: mode 'r'), otherwise by replyAndAck
    // after it (mode '0'), so that a crash in between leaves the entry pending and the next
    // holder re-sends the stored reply (its commit finds the done record).
    const message = this.commitMessage(entry, replyBlob, this.repliesInCommit());
    if (derived.length) writes = [...writes, this.recordDerived(entry.id, derived)];
    sendTrace?.mark(entry.mid, 'dec');
    if (this.env.faultPoint) await this.env.faultPoint('before-commit', entry);
    const res = await this.env.commits.submit(this.unit(slot, [message], changed ? encode(kind.serialize ? kind.serialize(nextState) : nextState) : null, decided, writes));
    if (res.status === 'stale') {
      this.env.log.warn({ shard: this.name, owner: res.owner }, 'lease lost: a newer holder fenced this worker out');
      this.lose();
      return false;
    }
    let sentBlob = replyBlob;
    if (res.status === 'dup') {
      sentBlob = res.reply!; // answer with what the first application answered
      this.forget(slot);
    } else {
      if (changed) slot.state = nextState;
      this.applied++;
      this.commits++;
      this.counters.applied.inc();
      this.counters.commits.inc();
      if (decided.length) this.env.onOutputs?.(this, { kind: kind.kind, actorId: entry.actorId, outputs: decided, family: this.family, shard: this.shard });
      this.timers.arm(timerDue);
    }
    if (this.env.faultPoint) await this.env.faultPoint('after-commit', entry);
    // Before the reply: a failure throws, and process retries the message, whose commit then
    // answers 'dup' and applies the record (afterDup).
    if (res.status === 'dup') await this.afterDup(entry.id, 'throw');
    else if (derived.length) await this.sendDerived(redis, entry.id, derived);
    if (message.mode === '0') await this.replyAndAck(entry, sentBlob);
    return true;
  }

  /**
   * A message answered 'dup' was applied by an earlier commit, possibly this worker's whose answer
   * was lost (then what followed that commit never ran): apply the derived writes it recorded
   * (a Cluster only; the record, not a fresh decision, is what was applied) and arm the timer it
   * may have set, from what the shard's timer set holds. `onFailure` for the derived writes:
   * 'throw' (the message is retried) or 'park' (it is being finished with: dead-letter the record).
   */
  private async afterDup(id: string, onFailure: 'throw' | 'park'): Promise<void> {
    const { redis } = this.env;
    if (isCluster(redis)) {
      const blob = await redis.hgetBuffer(this.keys.derivedPending, id);
      if (blob) {
        try {
          await this.sendDerived(redis, id, decodeDerived(blob));
        } catch (e) {
          if (onFailure === 'throw') throw e;
          await this.parkDerived(id, blob, e);
        }
      }
    }
    await this.timers.reload();
  }

  /** A decision's derived writes as a Cluster sends them: full key names, ordered ones with this holding's fencing token. */
  private derivedOf(writes: StoreWrite[]): DerivedWrite[] {
    return writes.map((w) => {
      const key = this.keys.global(w.key);
      return { cmd: w.cmd, key, args: w.args, ...(w.ordered ? { fence: this.token, fenceKey: fenceKeyOf(key, this.keys.global(DERIVED_FENCE), w.key) } : {}) };
    });
  }

  /**
   * The commit's record of its derived writes (a Cluster only; see Decision.derivedWrites), in
   * the shard's slot, so the commit holds them durably even though it cannot apply them.
   */
  private recordDerived(id: string, derived: DerivedWrite[]): { cmd: string; key: string; args: Buffer[]; absolute: true } {
    return { cmd: 'HSET', key: this.keys.derivedPending, args: [Buffer.from(id), encode(derived)], absolute: true };
  }

  /**
   * At takeover, before any message: the derived writes of commits whose worker died before
   * applying them, oldest commit first, each commit's after the one before it succeeded (one Redis
   * has none: there they are part of the commit). A record Redis keeps refusing (an error reply
   * that is not a transient cluster state, e.g. WRONGTYPE) is dead-lettered after
   * PENDING_DERIVED_TRIES tries (parkDerived) so that it cannot fail every takeover of the shard;
   * any other failure (a node unreachable) fails the takeover, the records staying.
   */
  private async applyPendingDerived(): Promise<void> {
    const { redis } = this.env;
    if (!isCluster(redis)) return;
    const pending = await redis.hgetallBuffer(this.keys.derivedPending);
    const ids = Object.keys(pending).sort(compareStreamIds);
    let parked = 0;
    for (const id of ids) {
      const derived = decodeDerived(pending[id]!);
      for (let attempt = 1; ; attempt++) {
        try {
          await this.sendDerived(redis, id, derived);
          break;
        } catch (e) {
          if (!isRefusal(e)) throw e;
          if (attempt >= PENDING_DERIVED_TRIES) {
            await this.parkDerived(id, pending[id]!, e);
            parked++;
            break;
          }
          await sleep(100 * 2 ** attempt);
        }
      }
    }
    if (ids.length) this.env.log.info({ shard: this.name, commits: ids.length - parked, deadLettered: parked }, 'applied the derived writes a previous holder left');
  }

  /**
   * Dead-letter one commit's derived record: moved from derivedPending to derivedDead with the
   * error, logged at error level. Derived data may be missing (its readers fall back to the
   * authoritative data: Decision.derivedWrites), while a record left pending would fail every
   * takeover or be applied by a later holder over the newer values of later commits.
   */
  private async parkDerived(id: string, blob: Buffer, e: unknown): Promise<void> {
    const { redis } = this.env;
    const error = errorText(e);
    // HSET first: a crash in between leaves the record in both, and the next try moves it again.
    await redis.hset(this.keys.derivedDead, id, encode({ writes: blob, error, failedAt: Date.now() }));
    await redis.hdel(this.keys.derivedPending, id);
    this.env.log.error({ shard: this.name, entry: id, error }, 'derived writes of a commit dead-lettered (they keep failing; the derived data stays without them)');
  }

  /**
   * One commit's derived writes (Decision.derivedWrites, a Cluster only), then the commit's record
   * of them dropped — only once every write succeeded. The writes go out together (each is
   * idempotent, and each node's connection keeps their order); throws when one fails, leaving the
   * record. Used after a commit (apply, applyBatch), after a 'dup' answer (afterDup) and at
   * takeover (applyPendingDerived).
   */
  private async sendDerived(redis: RedisClient, id: string, derived: DerivedWrite[]): Promise<void> {
    await Promise.all(derived.map((w) => (w.fence === undefined || w.fenceKey === undefined ? redis.call(w.cmd, [w.key, ...w.args]) : this.sendFenced(redis, id, w, w.fence, w.fenceKey))));
    await redis.hdel(this.keys.derivedPending, id);
  }

  /** An `ordered` derived write: only the members no later holding of the shard wrote (derived-fenced-1.lua). */
  private async sendFenced(redis: RedisClient, id: string, w: DerivedWrite, fence: string, fenceKey: string): Promise<void> {
    const skipped = Number(await runScript(redis, 'derivedFenced', [w.key, fenceKey], [fence, w.cmd, ...w.args]));
    if (skipped > 0) this.env.log.warn({ shard: this.name, entry: id, key: w.key, cmd: w.cmd, members: skipped, token: fence }, 'derived write of an older holding left out: a later holder of the shard wrote those members since');
  }

  /**
   * Deliver the reply, then acknowledge the entry (at-least-once replies; the sender dedupes by
   * mid). On one Redis both go out together: one connection executes them in order, so the ack
   * never lands without the reply. On a cluster they may reach different nodes: wait for the reply.
   */
  private async replyAndAck(entry: InboxEntry, blob: Buffer): Promise<void> {
    const { redis } = this.env;
    await this.awaitReplicas();
    const reply = () => runScriptBuffer(redis, 'reply', [entry.replyTo!], [REPLY_STREAM_MAXLEN, entry.mid, blob]);
    const ack = () => redis.xack(this.keys.inbox, INBOX_GROUP, entry.id);
    if (isCluster(redis)) {
      await reply();
      await ack();
    } else {
      await Promise.all([reply(), ack()]);
    }
  }

  /**
   * With `redis.waitReplicas`, a commit is answered only once that many replicas of the shard's
   * master have it (WAIT on the lease key's node); fewer in time throws, so the message is not
   * acknowledged and is retried, and the client sees a timeout rather than a reply a failover
   * could take back.
   */
  private async awaitReplicas(): Promise<void> {
    const { redis, replicaWait } = this.env;
    if (!replicaWait || replicaWait.replicas <= 0) return;
    const got = await waitForReplicas(redis, this.keys.lease, replicaWait.replicas, replicaWait.timeoutMs);
    if (got < replicaWait.replicas) throw new Error(`WAIT: ${got} of ${replicaWait.replicas} replicas had the commit within ${replicaWait.timeoutMs} ms; not replying yet`);
  }

  /**
   * replyAndAck for a group commit's messages: one reply script per asking process (its replies
   * appended in order) and one XACK for every entry that waited for its reply, in place of a
   * reply and an acknowledgement per message. The ack still goes out only after the replies.
   */
  private async replyAndAckMany(items: { entry: InboxEntry; blob: Buffer }[]): Promise<void> {
    const { redis } = this.env;
    const byStream = new Map<string, (string | Buffer)[]>();
    const ids: string[] = [];
    for (const { entry, blob } of items) {
      if (!entry.replyTo) continue;
      let args = byStream.get(entry.replyTo);
      if (!args) byStream.set(entry.replyTo, (args = []));
      args.push(entry.mid, blob);
      ids.push(entry.id);
    }
    if (ids.length === 0) return;
    await this.awaitReplicas();
    const replies = () => Promise.all([...byStream].map(([stream, pairs]) => runScriptBuffer(redis, 'replyMany', [stream], [REPLY_STREAM_MAXLEN, ...pairs])));
    const ack = () => redis.xack(this.keys.inbox, INBOX_GROUP, ...ids);
    if (isCluster(redis)) {
      await replies();
      await ack();
    } else {
      await Promise.all([replies(), ack()]);
    }
  }

  private async deadLetter(entry: InboxEntry, deliveries: number, error: string): Promise<boolean> {
    const reply = encode({ ok: false, errcode: 'M_UNKNOWN', error: `Message could not be processed: ${error}`, status: 500 } satisfies ReplyEnvelope);
    const res = await this.writeDeadLetter(entry.id, entry.mid, reply, !entry.replyTo, ['mid', entry.mid, 'a', entry.actorId, 'k', entry.kind, 'b', entry.body, 'error', error, 'deliveries', String(deliveries), 'entry', entry.id, 'failed_at', String(Date.now())]);
    if (!res) return false;
    if (res.status === 'ok') this.env.log.error({ shard: this.name, actor: entry.actorId, mid: entry.mid, error, deliveries }, 'message dead-lettered');
    // Applied already (e.g. its derived writes kept failing after its commit): it is not
    // dead-lettered; it is answered with its stored reply, and what its commit left is finished —
    // the derived record applied, or dead-lettered alone if it still fails.
    else await this.afterDup(entry.id, 'park');
    if (entry.replyTo) await this.replyAndAck(entry, res.reply ?? reply);
    return true;
  }

  private async deadLetterRaw(id: string, fields: Buffer[] | null, error: string): Promise<void> {
    const pairs: (string | Buffer)[] = [];
    for (const f of fields ?? []) pairs.push(f);
    const reply = encode({ ok: false, errcode: 'M_UNKNOWN', error, status: 500 } satisfies ReplyEnvelope);
    await this.writeDeadLetter(id, `raw:${id}`, reply, true, ['error', error, 'entry', id, 'failed_at', String(Date.now()), ...pairs]).catch((e) =>
      this.env.log.error({ err: e, shard: this.name, entry: id }, 'could not dead-letter malformed entry'),
    );
  }

  /** Null when the lease is lost; otherwise whether it was written now or had been already. */
  private async writeDeadLetter(id: string, mid: string, reply: Buffer, ack: boolean, fields: (string | Buffer)[]): Promise<{ status: 'ok' | 'dup'; reply?: Buffer } | null> {
    const res = (await runScriptBuffer(this.env.redis, 'deadLetter', [this.keys.lease, this.keys.done(mid), this.keys.inbox, this.keys.dead], [this.env.workerId, this.token, INBOX_GROUP, id, reply, this.env.dedupeTtlSec, ack ? '1' : '0', ...fields])) as Buffer[];
    const status = res[0]!.toString();
    if (status === 'stale') {
      this.lose();
      return null;
    }
    if (status === 'dup') return { status: 'dup', reply: res[1] };
    this.deadLettered++;
    this.counters.deadLetters.inc();
    return { status: 'ok' };
  }

  /** Stop reading; resolves once every buffered message is finished. */
  async drain(): Promise<void> {
    if (this.state === 'running' || this.state === 'starting') this.state = 'draining';
    if (this.buffered === 0 || this.state === 'stopped') return;
    await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  private notifyIdle(): void {
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }

  /** The lease is gone: stop at once. Unfinished entries stay pending for the next holder. */
  lose(): void {
    if (this.state === 'stopped') return;
    this.counters.lost.inc();
    this.state = 'stopped';
    this.timers.stop();
    this.slots.clear();
    this.tracked.clear();
    this.buffered = 0;
    this.notifyIdle();
    this.env.onLost(this);
  }

  /** The actors of `kind` whose state this runner holds in memory now (for gauges read at scrape time). */
  *cachedStates(kind: string): Iterable<[string, unknown]> {
    for (const slot of this.slots.values()) if (slot.loaded && slot.kind.kind === kind) yield [slot.actorId, slot.state];
  }

  /** Finished (after a drain and release). */
  stop(): void {
    this.state = 'stopped';
    this.timers.stop();
    this.slots.clear();
    this.tracked.clear();
    this.notifyIdle();
  }
}

/** Where the fences of `ordered` derived keys live, relative to the key prefix: a name no derived key has. */
const DERIVED_FENCE = 'derived-fence:';

/**
 * The fence hash of an `ordered` derived key (derived-fenced-1.lua): `<prefix>derived-fence:{tag}:<name>`,
 * under the key prefix, in a namespace of its own (a derived key's name may come from users — a
 * state key in the delayed-state index —, so the fence of one key must not be able to be another
 * derived key), and in the key's slot: `tag` is the key's own hash tag (its first `{…}` with
 * something inside, as Redis reads tags) or, for a key hashed whole, a tag of the key's slot
 * (slotTag). A prefix with a tag of its own gives both the same slot too; any other prefix
 * that would put the fence elsewhere is refused (the write fails and is dead-lettered, loudly).
 */
export function fenceKeyOf(key: string, fencePrefix: string, name: string): string {
  const open = key.indexOf('{');
  const close = open < 0 ? -1 : key.indexOf('}', open + 1);
  const slot = clusterSlot(key);
  const fence = `${fencePrefix}{${close > open + 1 ? key.slice(open + 1, close) : slotTag(slot)}}:${name}`;
  if (clusterSlot(fence) !== slot) throw new Error(`the fence of derived key ${key} would not be in its slot (a key prefix with unbalanced braces?)`);
  return fence;
}

let slotTags: string[] | null = null;
/** A short hash tag of each slot: the smallest number whose slot it is (the table is built once per process, ~160,000 CRCs, ~40 ms). */
function slotTag(slot: number): string {
  if (!slotTags) {
    const table = new Array<string>(16384);
    let left = 16384;
    for (let i = 0; left > 0; i++) {
      const s = clusterSlot(String(i));
      if (table[s] === undefined) {
        table[s] = String(i);
        left--;
      }
    }
    slotTags = table;
  }
  return slotTags[slot]!;
}

/** Tries of one left derived record at takeover before it is dead-lettered (parkDerived). */
const PENDING_DERIVED_TRIES = 3;

/** A derived record as stored (msgpack gives binary arguments back as Uint8Array; ioredis sends Buffers as they are). */
function decodeDerived(blob: Buffer): DerivedWrite[] {
  return (decode(blob) as DerivedWrite[]).map((w) => ({ ...w, args: w.args.map((a) => (a instanceof Uint8Array && !Buffer.isBuffer(a) ? Buffer.from(a) : a)) }));
}

/**
 * Redis refused the command (an error reply such as WRONGTYPE), other than a transient cluster
 * state: trying again later will not help.
 */
function isRefusal(e: unknown): boolean {
  return e instanceof Error && e.name === 'ReplyError' && !/^(CLUSTERDOWN|TRYAGAIN|LOADING|MASTERDOWN|BUSY|READONLY|NOREPLICAS)\b/.test(e.message);
}

function errorText(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
