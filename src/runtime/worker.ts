/**
 * A worker process's runtime: holds shard leases (with fencing tokens), runs a ShardRunner per
 * owned shard, and keeps the cluster's ownership healthy:
 *
 * - every `renewMs` it heartbeats, renews its lease — one record per worker, whose epoch every
 *   shard lease it holds names: one script call and one write per round, whatever its shard
 *   count — and takes free shards, or shards of dead epochs, up to its fair share
 *   (ceil(shards / live workers that take shards)), so a dead worker's shards are taken within
 *   about `ttlMs + renewMs`; a runner that fails to start gives its lease back at once;
 * - stop() hands every shard back: the rounds go on renewing (nothing else) until all are released;
 * - a shard reserved for another worker (move-shard, rebalance, drain; the renewal reads the
 *   handoffs asked of this worker) is drained — no new reads, in-flight messages finished — and
 *   released; only the target may take it;
 * - wake-ups arrive on a pub/sub channel per owned shard, and only a woken shard reads its inbox
 *   (outbox readers are woken in-process after each commit with outputs): an idle shard costs no
 *   Redis command at all, whatever the shard count. Pub/sub drops messages when a connection
 *   blips, so every shard is woken again when the subscriber reconnects, and a slow safety sweep
 *   (shard-sweep-1.lua: one script call per family and round on a single Redis) finds any shard
 *   whose inbox or outbox still has work — a wake-up lost any other way costs at most `pollMs`;
 * - housekeeping (trimming inboxes and outboxes, reclaiming pending entries left idle) touches
 *   only the shards the sweep found holding entries.
 */
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { AnyActorKind } from './actor';
import { INBOX_FORMAT, parseHolderPush, parsePackedPush, parsePush, PUSH_LIMIT, type InboxEntry } from './envelope';
import { REPLY_STREAM_MAXLEN, ShardRunner, type CommittedOutputs, type RunnerEnv } from './shard-runner';
import { CommitQueue } from './commit-queue';
import { GroupReads } from './group-reads';
import { FAMILIES, parseShardName, shardName, type Family } from '../store/shards';
import type { KeySpace } from '../store/keys';
import { isCluster, runScript, subscriberClient, type RedisClient } from '../store/redis';
import type { Redis } from 'ioredis';
import { INBOX_GROUP } from '../store/keys';
import { inboxStatsSources, initialiseWorkerSeries, leaseAcquisitions, leaseRoundDuration, shardMoves, workerLocalSources, type InboxStats } from '../ops/metrics';

export interface WorkerOptions {
  redis: RedisClient;
  keys: KeySpace;
  workerId: string;
  shardCounts: Record<Family, number>;
  /** Families this worker serves (all by default). */
  families?: Family[];
  kinds: AnyActorKind[];
  leaseTtlMs: number;
  renewMs: number;
  log: Logger;
  /** How long a message id is remembered for dedupe (seconds). */
  dedupeTtlSec?: number;
  /** Deliveries after which a message is dead-lettered. */
  maxDeliveries?: number;
  /** Replicas a commit must reach before its reply (`redis.waitReplicas`); none by default. */
  replicaWait?: { replicas: number; timeoutMs: number };
  /**
   * The safety sweep's period (ms, default 5000): the longest a message waits when its wake-up
   * was lost. One script call per family per round on a single Redis (one per shard on a Cluster).
   */
  pollMs?: number;
  maxBufferedPerShard?: number;
  readBatch?: number;
  /** Pending entries idle this long that no runner holds in memory are claimed again (ms, default 60,000). */
  idleBoundMs?: number;
  /** Actors whose state each shard runner keeps in memory at most (default 10,000; least recently used idle ones go first). */
  cachedActorsPerShard?: number;
  /** Test-only: lets the fault tests stop a worker at an exact point (never set in production). */
  faultPoint?: RunnerEnv['faultPoint'];
  /** Called when an operator asks this worker to stop (after `drain`). */
  onStopRequested?: () => void;
  /** Readers of the owned shards' outboxes (consumer groups), e.g. the membership index. */
  readers?: ShardReader[];
  /**
   * Called after every commit that appended outputs, with what it appended (the process entries
   * publish /sync wake-ups from it: src/sync/notify.ts). Must not throw or block.
   */
  notify?: (committed: CommittedOutputs) => void;
  /**
   * Outbox entries younger than this (ms) are kept by the housekeeping trim even when every
   * consumer group has read them: /sync reads the outboxes by time window. 0: trim to the groups.
   */
  outboxRetentionMs?: number;
}

/**
 * Something that follows the outbox of the shards this worker owns (a consumer group reader):
 * attached when a shard is taken, woken after each commit that produced outputs (and by the
 * backstop poll), detached when the shard goes.
 */
export interface ShardReader {
  family: Family;
  /** `quiet`: no Redis command now; the worker's sweep wakes it where the outbox needs it. */
  attach(shard: number, opts?: { quiet?: boolean }): void;
  detach(shard: number): void;
  wake(shard: number): void;
  stop(): Promise<void>;
  /** The outbox consumer group it reads with (the sweep looks at these groups only). */
  readonly group?: string;
  /**
   * Whether a commit's outputs of actor kind `kind` wake it at once (absent: every kind does). A
   * reader that applies none of a kind's outputs only acknowledges them: it reads them at its next
   * wake-up (another kind's commit on the shard) or when the worker's sweep finds its group behind
   * on the outbox, many entries a read instead of one per commit.
   */
  takes?(kind: string): boolean;
}

export interface WorkerStatus {
  workerId: string;
  accepting: boolean;
  shards: { name: string; token: string; state: string; buffered: number; applied: number; commits: number; deadLettered: number }[];
}

const RESERVATION_MS = 30_000;
/** Shards one sweep call looks at on a single Redis (an idle, trimmed shard costs two XLENs). */
const SWEEP_BATCH = 1024;
/**
 * Shards reserved for this worker that it takes at once (a drain moves hundreds in one batch):
 * a whole batch of a drain or rebalance. Each take is several round trips (lease, group, pending
 * entries, timers); on a loaded machine a round trip took hundreds of ms, and 256 lanes made a
 * 1,024-shard drain four takes long per lane (as the fair-share takes, all go at once).
 */
const ACQUIRE_PARALLEL = 1024;
/** A shard reserved for this worker and found still held is tried again after this (ms), or when its holder says it let go. */
const HELD_RETRY_MS = 1000;
/**
 * Shards whose inbox figures one metrics script call reads on a single Redis: XINFO GROUPS is
 * heavier than a lease renewal (about 20 ms per 256 shards measured on a loaded machine), so the
 * calls stay small and other commands run between them.
 */
const STATS_BATCH = 64;

/** How a shard's lease was taken (the `reason` label of `axon_lease_acquisitions_total`). */
type AcquireReason = 'free' | 'takeover' | 'move';

export class Worker {
  private readonly runners = new Map<string, ShardRunner>();
  private readonly channels = new Map<string, ShardRunner>();
  /** The same runners by inbox key: a holder push names its shards by their inboxes. */
  private readonly inboxes = new Map<string, ShardRunner>();
  private readonly pending = new Set<string>(); // shards being acquired or released
  private sub: Redis | null = null;
  private tickTimer: NodeJS.Timeout | null = null;
  private sweepTimer: NodeJS.Timeout | null = null;
  private housekeepTimer: NodeJS.Timeout | null = null;
  private sweeping = false;
  private sweepAgain = false;
  /** Shards the last sweep found holding inbox or outbox entries: what housekeeping trims. */
  private readonly holdingEntries = new Set<string>();
  /**
   * Shards the sweep script looks at (shard name → a stamp bumped at each activity): taken, woken,
   * read from, committed to, or found by the last sweep with entries or work. A shard leaves when
   * a sweep finds it empty and nothing happened to it meanwhile; the others cost the sweep one
   * XREAD per family and round, whatever their number.
   */
  private readonly active = new Map<string, number>();
  private activity = 0;
  /** Workers to nudge at the end of this turn of the event loop (handoffs finishing together). */
  private readonly nudgeTargets = new Map<string, string[]>();
  /**
   * Shards reserved for this worker that a round found still held by their live owner, and when:
   * rounds in the next HELD_RETRY_MS leave them alone (a drain's target is nudged by every batch
   * of handoffs; each would otherwise try the hundreds still held, one script call each). The
   * holder names the shards it lets go in its nudge, which takes them out of here at once.
   */
  private readonly heldAt = new Map<string, number>();
  /**
   * Shards a holder named in its nudge as let go for this worker: tried at the next acquisition
   * with the incoming set's names, even if the set no longer has them (a round may prune a name
   * whose old reservation had just expired while a new move of the same shard was adding it).
   */
  private readonly handedOver = new Set<string>();
  /** Shard names to take off the incoming set / handoffs hash at the end of this turn (batchSoon). */
  private readonly settledNames = { incomingDone: new Set<string>(), handoffsDone: new Set<string>() };
  /** Handoffs under way: how many, how many finished since the first began, and when it began. */
  private readonly handoffs = { active: 0, done: 0, began: 0 };
  /** Wake-up channels to subscribe to (true) or unsubscribe from (false) at the end of this turn. */
  private readonly subscriptionWishes = new Map<string, boolean>();
  private ticking = false;
  private retick = false;
  /** This worker's lease epoch (its worker lease record); null before the first round. */
  private epoch: string | null = null;
  private acquiring = false;
  private acquireAgain = false;
  private acquisition: Promise<void> = Promise.resolve();
  /** Holdings looked up during the current acquisition round (see holdingLeftNow). */
  private roundLiveness = new Map<string, Promise<number>>();
  /** Draining on an operator's request (control key `drain`): takes no new shards. */
  private controlDrain = false;
  /** stop() was called: takes no new shards. */
  private stopping = false;
  private stopped = false;
  /**
   * stop() is finishing and releasing its runners: the lease rounds go on renewing the epoch and
   * heartbeating (no control, handoffs or acquisitions), so a drain longer than the lease TTL
   * stays a clean hand-back instead of becoming a takeover.
   */
  private holding = false;
  /**
   * Leases taken whose runner failed to start, and whose release failed too (shard name → family,
   * shard, token): released again at each lease round, so the shard does not stay held by nobody.
   */
  private readonly unstarted = new Map<string, { family: Family; shard: number; token: string }>();
  private readonly env: RunnerEnv;
  /** The group commit shared by this worker's shards (for status and the benchmarks' figures). */
  readonly commits: CommitQueue;
  private readonly families: Family[];
  private readonly started = Date.now();
  /** How the last lease round went: reported as readiness in the heartbeat. */
  private lastRound: { ok: boolean; ms: number } | null = null;
  /** Removes this worker's metric sources (at stop). */
  private readonly metricSources: (() => void)[] = [];

  constructor(private readonly o: WorkerOptions) {
    this.families = o.families ?? [...FAMILIES];
    const dedupeTtlSec = o.dedupeTtlSec ?? 600;
    this.commits = new CommitQueue(o.redis, o.workerId, INBOX_GROUP, dedupeTtlSec, REPLY_STREAM_MAXLEN);
    this.env = {
      redis: o.redis,
      workerId: o.workerId,
      kinds: new Map(o.kinds.map((k) => [k.kind, k])),
      log: o.log,
      dedupeTtlSec,
      commits: this.commits,
      reads: new GroupReads(o.redis, INBOX_GROUP, o.workerId),
      maxDeliveries: o.maxDeliveries ?? 5,
      ...(o.replicaWait ? { replicaWait: o.replicaWait } : {}),
      maxBuffered: o.maxBufferedPerShard ?? 1000,
      readBatch: o.readBatch ?? 200,
      idleBoundMs: o.idleBoundMs ?? 60_000,
      ...(o.cachedActorsPerShard !== undefined ? { cacheLimit: o.cachedActorsPerShard } : {}),
      faultPoint: o.faultPoint,
      onLost: (r) => this.forget(r),
      onActive: (r) => this.touch(r.name),
      onOutputs: (r, committed) => {
        this.touch(r.name);
        this.wakeReaders(r, committed.kind);
        try {
          o.notify?.(committed);
        } catch (e) {
          o.log.warn({ err: e, shard: r.name }, 'output notification failed');
        }
      },
    };
  }

  get id(): string {
    return this.o.workerId;
  }

  /** Takes new shards: neither draining nor stopping. */
  private get accepting(): boolean {
    return !this.controlDrain && !this.stopping;
  }

  async start(): Promise<void> {
    if (isCluster(this.o.redis)) await waitReady(this.o.redis);
    this.sub = subscriberClient(this.o.redis);
    const nudgeChannel = this.o.keys.workerNudge(this.id);
    const pushChannel = this.o.keys.workerPush(this.id);
    this.sub.on('messageBuffer', (channelBuf: Buffer, payload: Buffer) => {
      const channel = channelBuf.toString();
      if (channel === pushChannel) {
        this.holderPush(payload);
        return;
      }
      if (channel !== nudgeChannel) {
        const r = this.channels.get(channel);
        if (!r) return;
        this.touch(r.name);
        // A push (enqueue-many-3.lua to -5 'M', or -2's 'P' from an asker not yet upgraded): entries
        // delivered to the shard's holder; 'W' (enqueue-many-6.lua): entries read for the holder it
        // names but too big to push — a wake-up for that worker only (another would read and claim
        // them away from it, as ShardRunner.pushed says); else a wake-up.
        if (payload[0] === 0x57) {
          if (payload.toString('utf8', 1) === this.id) r.wake();
          return;
        }
        const push = payload[0] === 0x4d ? parsePackedPush(payload) : payload[0] === 0x50 ? parsePush(payload) : null;
        if (push) r.pushed(push.owner, push.entries, push.entries.length >= PUSH_LIMIT);
        else r.wake();
        return;
      }
      const message = payload.toString();
      // A holder that let shards go for this worker names them: take them at once (no lease
      // round first: taking runs beside the rounds anyway), even those a recent round found
      // still held (see heldAt).
      if (message.startsWith('handoff ') && this.accepting && this.epoch && !this.stopped) {
        for (const name of message.slice(8).split(' ')) {
          this.heldAt.delete(name);
          this.handedOver.add(name);
        }
        this.acquireInBackground();
      } else this.nudge();
    });
    // After the first connection, 'ready' means the subscriber reconnected: wake-ups published
    // meanwhile are gone. ioredis sends the resubscriptions right after this event; a PING behind
    // them answers once they are in place, and then every shard reads what it may have missed.
    let connectedBefore = false;
    this.sub.on('ready', () => {
      if (!connectedBefore) {
        connectedBefore = true;
        return;
      }
      // Pushes published while it was away are gone: none is applied as it comes until a read
      // that starts once the subscriptions are back (rewakeAll) has run.
      // The runners whose subscription was in effect are the ones ioredis subscribes again (a
      // SUBSCRIBE still on its way confirms its own runner when it is answered).
      const confirmed = new Set<ShardRunner>();
      for (const r of this.runners.values()) {
        if (r.subscribed) confirmed.add(r);
        r.subscription(false);
      }
      setImmediate(() => {
        void this.sub
          ?.ping()
          .catch(() => undefined)
          .then(() => this.rewakeAll(confirmed));
      });
    });
    // The push channel before any shard is taken: a runner's pushes are taken as they come only
    // after a read that started once its own shard's channel was subscribed (ShardRunner.pushed),
    // and by then this one is in place too (both on the one subscriber connection).
    await this.sub.subscribe(nudgeChannel, pushChannel);
    connectedBefore = true;
    // A fresh process: a control word left by an earlier process under this id (a drain whose
    // operator or worker died, a stop it never read) is not meant for this one.
    await this.o.redis.del(this.o.keys.workerControl(this.id));
    await this.startEpoch();
    initialiseWorkerSeries();
    this.metricSources.push(
      workerLocalSources.add(() => {
        const owned = { room: 0, user: 0 };
        const buffered = { room: 0, user: 0 };
        for (const r of this.runners.values()) {
          if (r.state === 'stopped') continue;
          owned[r.family]++;
          buffered[r.family] += r.bufferedCount;
        }
        return { owned, buffered };
      }),
      inboxStatsSources.add(() => this.inboxStats()),
    );
    await this.tick();
    // The first round's shards are taken before start resolves.
    await this.acquisition;
    this.tickTimer = setInterval(() => void this.tick(), this.o.renewMs);
    this.sweepTimer = setInterval(() => void this.sweep(), this.o.pollMs ?? 5000);
    this.housekeepTimer = setInterval(() => void this.housekeep(), Math.max(1000, (this.o.idleBoundMs ?? 60_000) / 2));
  }

  /**
   * A push of several of this worker's shards in one message (enqueue-many-6.lua): each part to its
   * shard's runner, as a push on the shard's own channel goes. One that does not parse (it cannot
   * be told which shards it was for) wakes every shard: what it held is pending for this worker.
   */
  private holderPush(payload: Buffer): void {
    const push = payload[0] === 0x4e ? parseHolderPush(payload) : null;
    if (!push) {
      this.o.log.warn({ worker: this.id, bytes: payload.length }, 'a push message that does not parse: waking every shard');
      for (const r of this.runners.values()) r.wake();
      return;
    }
    for (const [inbox, entries] of push.shards) {
      const r = this.inboxes.get(inbox);
      if (!r) continue;
      this.touch(r.name);
      r.pushed(push.owner, entries, entries.length >= PUSH_LIMIT);
    }
  }

  /** The subscriber reconnected: every shard reads its inbox, and a sweep finds the readers' work. */
  private rewakeAll(confirmed: Set<ShardRunner>): void {
    if (this.stopped) return;
    this.o.log.info({ worker: this.id, shards: this.runners.size }, 'wake-up subscriber reconnected: waking every shard');
    for (const r of this.runners.values()) {
      if (confirmed.has(r) && this.channels.get(this.o.keys.wakeChannel(r.family, r.shard)) === r) r.subscription(true);
      this.touch(r.name);
      r.wake();
    }
    void this.sweep();
  }

  /** Something happened on the shard: the sweeps look at it until it is found empty. */
  private touch(name: string): void {
    this.active.set(name, ++this.activity);
  }

  /**
   * The safety sweep, in two parts per family:
   * - the quiet shards (no activity since a sweep found them empty): one XREAD over all their
   *   inboxes from the last entry each runner was given (per SWEEP_BATCH shards on a single Redis,
   *   per shard on a Cluster, where keys of different slots cannot share a command) — an inbox
   *   with anything newer had its wake-up lost: the shard is woken and looked at below next time;
   * - the active shards (shard-sweep-1.lua, one call per SWEEP_BATCH of them on a single Redis):
   *   undelivered inbox entries (woken), pending entries idle past the bound (reclaimed), outbox
   *   entries a reader has not finished (readers woken), or any entries (trimmed by the next
   *   housekeeping round). A shard found empty, with nothing happening since, turns quiet.
   * Entries only appear in a quiet shard's streams through a send (the XREAD finds it) or through
   * this worker (a read, commit, timer or takeover marks it active), so an idle shard costs no
   * command of its own.
   */
  async sweep(): Promise<void> {
    if (this.stopped) return;
    if (this.sweeping) {
      this.sweepAgain = true;
      return;
    }
    this.sweeping = true;
    this.sweepAgain = false;
    try {
      const { redis } = this.o;
      const bound = this.env.idleBoundMs;
      for (const family of this.families) {
        const live = [...this.runners.values()].filter((r) => r.family === family && r.state === 'running' && !this.pending.has(r.name));
        if (live.length === 0) continue;
        const quiet = live.filter((r) => !this.active.has(r.name));
        const busy = live.filter((r) => this.active.has(r.name));
        for (const r of await this.undelivered(quiet)) {
          this.touch(r.name);
          r.wake();
        }
        if (busy.length === 0) continue;
        const stamps = busy.map((r) => this.active.get(r.name));
        const groups = (this.o.readers ?? []).filter((x) => x.family === family && x.group).map((x) => x.group!);
        const args = [INBOX_GROUP, bound, ...groups];
        if (isCluster(redis)) {
          await Promise.all(busy.map(async (r, j) => this.swept(r, Number(((await runScript(redis, 'shardSweep', [r.keys.inbox, r.keys.outbox], args)) as number[])[0]), stamps[j])));
          continue;
        }
        for (let i = 0; i < busy.length; i += SWEEP_BATCH) {
          const batch = busy.slice(i, i + SWEEP_BATCH);
          const res = (await runScript(redis, 'shardSweep', batch.flatMap((r) => [r.keys.inbox, r.keys.outbox]), args)) as number[];
          batch.forEach((r, j) => this.swept(r, Number(res[j] ?? 0), stamps[i + j]));
        }
      }
    } catch (e) {
      this.o.log.warn({ err: e }, 'shard sweep failed; the next round retries');
    } finally {
      this.sweeping = false;
      if (this.sweepAgain) setImmediate(() => void this.sweep());
    }
  }

  /** The runners among `rs` whose inbox holds an entry above the last one they were given. */
  private async undelivered(rs: ShardRunner[]): Promise<ShardRunner[]> {
    const { redis } = this.o;
    const read = async (batch: ShardRunner[]) => {
      const res = (await redis.xread('COUNT', 1, 'STREAMS', ...batch.map((r) => r.keys.inbox), ...batch.map((r) => r.lastDelivered))) as [string, unknown[]][] | null;
      const found = new Set((res ?? []).filter(([, entries]) => entries.length > 0).map(([stream]) => stream));
      return batch.filter((r) => found.has(r.keys.inbox));
    };
    if (isCluster(redis)) return (await Promise.all(rs.map((r) => read([r])))).flat();
    const out: ShardRunner[] = [];
    for (let i = 0; i < rs.length; i += SWEEP_BATCH) out.push(...(await read(rs.slice(i, i + SWEEP_BATCH))));
    return out;
  }

  private swept(r: ShardRunner, flags: number, stamp: number | undefined): void {
    if (r.state !== 'running') return;
    // Empty and untouched since the sweep began: quiet from now on.
    if (flags === 0 && this.active.get(r.name) === stamp) this.active.delete(r.name);
    if (flags & 1) r.wake();
    if (flags & 2) void this.reclaim(r);
    if (flags & 4) this.wakeReaders(r);
    if (flags & 8) this.holdingEntries.add(r.name);
    else this.holdingEntries.delete(r.name);
  }

  /** Entries pending past the idle bound that the runner does not hold: a message whose processing was lost track of. */
  private async reclaim(r: ShardRunner): Promise<void> {
    try {
      const n = await r.reclaim(this.env.idleBoundMs);
      if (n) this.o.log.warn({ shard: r.name, count: n }, 'reclaimed idle pending entries');
    } catch (e) {
      this.o.log.warn({ err: e, shard: r.name }, 'reclaiming idle entries failed');
    }
  }

  /** Shards this worker holds now. */
  owned(): string[] {
    return [...this.runners.keys()];
  }

  /**
   * Inbox lag, pending and dead-letter counts summed per family over the owned shards (for the
   * metrics): one script call per STATS_BATCH shards on a single Redis, one per shard on a Cluster.
   */
  async inboxStats(): Promise<InboxStats> {
    const out: InboxStats = { lag: { room: 0, user: 0 }, pending: { room: 0, user: 0 }, dead: { room: 0, user: 0 } };
    const live = [...this.runners.values()].filter((r) => r.state !== 'stopped');
    const add = (r: ShardRunner, res: unknown[], at: number) => {
      out.lag[r.family] += Number(res[at] ?? 0);
      out.pending[r.family] += Number(res[at + 1] ?? 0);
      out.dead[r.family] += Number(res[at + 2] ?? 0);
    };
    const { redis } = this.o;
    if (isCluster(redis)) {
      await Promise.all(live.map(async (r) => add(r, (await runScript(redis, 'inboxStats', [r.keys.inbox, r.keys.dead], [INBOX_GROUP])) as unknown[], 0)));
      return out;
    }
    for (let i = 0; i < live.length; i += STATS_BATCH) {
      const batch = live.slice(i, i + STATS_BATCH);
      const res = (await runScript(redis, 'inboxStats', batch.flatMap((r) => [r.keys.inbox, r.keys.dead]), [INBOX_GROUP])) as unknown[];
      batch.forEach((r, j) => add(r, res, 3 * j));
    }
    return out;
  }

  /** The states of actors of `kind` held in memory by the owned shards (read by gauges when scraped). */
  *cachedActorStates(kind: string): Iterable<[string, unknown]> {
    for (const r of this.runners.values()) if (r.state !== 'stopped') yield* r.cachedStates(kind);
  }

  runner(name: string): ShardRunner | undefined {
    return this.runners.get(name);
  }

  status(): WorkerStatus {
    return {
      workerId: this.id,
      accepting: this.accepting,
      shards: [...this.runners.values()].map((r) => ({ name: r.name, token: r.token, state: r.state, buffered: r.bufferedCount, applied: r.applied, commits: r.commits, deadLettered: r.deadLettered })),
    };
  }

  /** Run a lease round now (a shard was reserved for or away from this worker). */
  private nudge(): void {
    if (this.ticking) this.retick = true;
    else void this.tick();
  }

  /** One round of heartbeat, control, renewal and acquisition. Never overlaps itself. */
  async tick(): Promise<void> {
    if (this.ticking || (this.stopped && !this.holding)) return;
    this.ticking = true;
    const began = performance.now();
    let ok = false;
    let ms = 0;
    try {
      // Control first: a drain asked for is reported by this round's heartbeat, not the next one's.
      // Neither may keep the renewal from running: the heartbeat only says the worker is alive
      // (for fair shares and the operator), the renewal is what keeps its shards, so a heartbeat
      // write that fails (a slot moving, a refused write) must not let every lease lapse.
      // Fencing does not depend on the heartbeat: a taker asks the lease record itself.
      // (On a Cluster the workers' set and this worker's lease record are on different masters.)
      const failure = (e: unknown) => e;
      // While stop() finishes its runners only the heartbeat and the renewal run.
      const controlFailed = this.stopped ? null : await this.readControl().then(() => null, failure);
      const failed = (await this.heartbeat().then(() => null, failure)) ?? controlFailed;
      await this.renewAll();
      if (this.unstarted.size && !this.stopped) await this.releaseUnstarted();
      if (failed) this.o.log.warn({ err: failed }, 'control read or heartbeat failed; leases renewed all the same');
      // Heartbeat to renewal: what decides whether leases could lapse (taking new shards may be slow).
      ms = Math.round(performance.now() - began);
      // Taking shards runs beside the rounds, not inside them: a worker taking hundreds of shards
      // (each subscribed to and started) must not let its own epoch lapse meanwhile.
      if (this.accepting) this.acquireInBackground();
      ok = true;
    } catch (e) {
      this.o.log.warn({ err: e }, 'lease tick failed');
    } finally {
      if (!ok && ms === 0) ms = Math.round(performance.now() - began);
      // Renewal came later than the lease TTL (Redis stalled or unreachable meanwhile): the leases
      // may have lapsed. Renewal found out which are still ours; the rest were dropped (lose()).
      if (ms > this.o.leaseTtlMs) this.o.log.warn({ ms }, 'lease renewal took longer than the lease ttl (Redis stalled?)');
      this.lastRound = { ok, ms };
      leaseRoundDuration.observe(ms / 1000);
      this.ticking = false;
      if (this.retick) {
        this.retick = false;
        setImmediate(() => void this.tick());
      }
    }
  }

  private async heartbeat(): Promise<void> {
    const { redis, keys } = this.o;
    const now = Date.now();
    await Promise.all([
      redis.zadd(keys.workers(), now, this.id),
      redis.hset(keys.workerInfo(this.id), {
        pid: process.pid, host: hostname(), started: this.started, heartbeat: now, state: this.stopping ? 'stopping' : this.accepting ? 'running' : 'draining', families: this.families.join(','), shards: this.runners.size,
        // Ready: its previous lease round reached Redis and finished within the lease TTL (after a
        // stall the first heartbeat says 0: its leases may have lapsed meanwhile).
        ready: this.lastRound === null || (this.lastRound.ok && this.lastRound.ms <= this.o.leaseTtlMs) ? 1 : 0,
        lease_round_ms: this.lastRound?.ms ?? '',
        // The inbox entry formats it reads, stamped with this heartbeat's time: askers write the
        // newest once every live worker reads it, and only believe a stamp that matches the
        // record's heartbeat (a worker of an earlier version started under the same id rewrites
        // the heartbeat and leaves this field as it was).
        inbox_format: `${INBOX_FORMAT}:${now}`,
      }),
    ]);
  }

  private async readControl(): Promise<void> {
    const control = await this.o.redis.get(this.o.keys.workerControl(this.id));
    if (control === 'drain' && !this.controlDrain) {
      this.controlDrain = true;
      this.o.log.info({ worker: this.id }, 'draining: taking no new shards');
    } else if (control === 'stop' && !this.stopping) {
      this.o.log.info({ worker: this.id }, 'stop requested');
      this.o.onStopRequested?.();
    } else if (control === null && this.controlDrain) {
      // The drain was called off (it failed, or its operator went away and the word expired).
      this.controlDrain = false;
      this.o.log.info({ worker: this.id }, 'drain called off: taking shards again');
    }
  }

  /** Run acquireShare unless one is running; one asked for meanwhile runs right after it. */
  private acquireInBackground(): void {
    if (this.acquiring) {
      this.acquireAgain = true;
      return;
    }
    this.acquiring = true;
    this.acquireAgain = false;
    this.acquisition = this.acquireShare()
      .catch((e) => this.o.log.warn({ err: e }, 'taking shards failed; the next round retries'))
      .finally(() => {
        this.acquiring = false;
        if (this.acquireAgain && this.accepting && !this.stopped) setImmediate(() => this.acquireInBackground());
      });
  }

  /** A new lease epoch: every shard lease of an earlier epoch of this worker is dead from now on. */
  private async startEpoch(): Promise<void> {
    const { redis, keys, leaseTtlMs } = this.o;
    this.epoch = String(await runScript(redis, 'workerLeaseStart', [keys.workerLease(this.id), keys.workerHandoffs(this.id)], [leaseTtlMs]));
  }

  /**
   * The lease round proper: one script call extends this worker's epoch (and with it every shard
   * lease it holds) and returns the handoffs asked of it. A late round (a stall past the TTL)
   * still renews, unless another worker declared the expired epoch dead to take its shards: then
   * it is gone for good, every runner stops (its commits would be refused anyway once a shard has
   * a new holder) and a new epoch starts; the shards nobody took are taken back by this round's
   * acquisitions, under new fencing tokens.
   */
  private async renewAll(): Promise<void> {
    const { redis, keys, leaseTtlMs } = this.o;
    if (!this.epoch) {
      if (this.stopped) return;
      await this.startEpoch();
    }
    const res = (await runScript(redis, 'workerLeaseRenew', [keys.workerLease(this.id), keys.workerHandoffs(this.id)], [this.epoch!, leaseTtlMs])) as (number | string)[];
    if (Number(res[0]) !== 1) {
      this.o.log.warn({ worker: this.id, epoch: this.epoch, shards: this.runners.size }, 'lease epoch declared dead (it lapsed and another worker took over): dropping every shard and starting a new epoch');
      for (const r of [...this.runners.values()]) r.lose();
      // Those leases named the dead epoch: nothing left to release.
      this.unstarted.clear();
      if (this.stopped) {
        this.epoch = null;
        return;
      }
      await this.startEpoch();
      return;
    }
    // Stopping: every shard is released by stop() itself (a target finds it free).
    if (this.stopped) return;
    const settled: string[] = [];
    for (let i = 1; i + 1 < res.length; i += 2) {
      const name = String(res[i]);
      const target = String(res[i + 1]);
      const r = this.runners.get(name);
      if (this.pending.has(name)) continue;
      if (!r || r.state === 'stopped' || target === this.id) settled.push(name);
      else void this.handOff(r, target);
    }
    if (settled.length) await redis.hdel(keys.workerHandoffs(this.id), ...settled);
  }

  /** Finish what the shard has in hand, then release it for `target`. */
  private async handOff(r: ShardRunner, target: string): Promise<void> {
    if (this.pending.has(r.name)) return;
    this.pending.add(r.name);
    const batch = this.handoffs;
    if (batch.active++ === 0) {
      batch.began = performance.now();
      batch.done = 0;
    }
    try {
      this.o.log.debug({ shard: r.name, target }, 'handing shard off');
      await r.drain();
      await this.release(r);
      shardMoves.inc({ family: r.family, direction: 'out' });
      this.nudgeSoon(target, r.name);
      // Settled: off the handoffs hash with the others finished in this turn (one HDEL; an entry
      // left a moment longer is settled again by the next renewal, the shard being gone).
      this.batchSoon('handoffsDone', r.name);
    } finally {
      this.pending.delete(r.name);
      batch.done++;
      // One line per batch of handoffs (a drain hands off hundreds at once), not per shard.
      if (--batch.active === 0) this.o.log.info({ worker: this.id, shards: batch.done, ms: Math.round(performance.now() - batch.began) }, `handed off ${batch.done} shard${batch.done === 1 ? '' : 's'} in ${((performance.now() - batch.began) / 1000).toFixed(2)} s`);
    }
  }

  /**
   * Names to take off this worker's incoming set or handoffs hash, sent at the end of this turn of
   * the event loop in one command (a drain settles hundreds of shards in a few turns).
   */
  private batchSoon(what: 'incomingDone' | 'handoffsDone', name: string): void {
    const names = this.settledNames[what];
    if (names.size === 0) {
      setImmediate(() => {
        const list = [...names];
        names.clear();
        if (!list.length) return;
        const { redis, keys } = this.o;
        const sent = what === 'incomingDone' ? redis.srem(keys.workerIncoming(this.id), ...list) : redis.hdel(keys.workerHandoffs(this.id), ...list);
        sent.catch((e: unknown) => this.o.log.warn({ err: e, what, count: list.length }, 'clearing settled shard names failed; the next round settles them'));
      });
    }
    names.add(name);
  }

  /**
   * Nudge `target` once for every handoff to it that finishes in this turn of the event loop,
   * naming the shards let go (it takes them at once rather than at its next round).
   */
  private nudgeSoon(target: string, name: string): void {
    if (this.nudgeTargets.size === 0) {
      setImmediate(() => {
        const targets = [...this.nudgeTargets];
        this.nudgeTargets.clear();
        for (const [t, names] of targets) void this.o.redis.publish(this.o.keys.workerNudge(t), `handoff ${names.join(' ')}`).catch(() => undefined);
      });
    }
    const names = this.nudgeTargets.get(target);
    if (names) names.push(name);
    else this.nudgeTargets.set(target, [name]);
  }

  private async release(r: ShardRunner): Promise<void> {
    const { redis, keys } = this.o;
    this.unsubscribe(r);
    if (r.state !== 'stopped') {
      await runScript(redis, 'leaseRelease', [keys.shard(r.family, r.shard).lease], [this.id, r.token]);
      r.stop();
    }
    this.runners.delete(r.name);
  }

  private forget(r: ShardRunner): void {
    this.unsubscribe(r);
    if (this.runners.get(r.name) === r) this.runners.delete(r.name);
  }

  /** Wake the shard's outbox readers (`kind`: only those that take outputs of that actor kind). */
  private wakeReaders(r: ShardRunner, kind?: string): void {
    for (const reader of this.o.readers ?? []) if (reader.family === r.family && (kind === undefined || !reader.takes || reader.takes(kind))) reader.wake(r.shard);
  }

  private unsubscribe(r: ShardRunner): void {
    for (const reader of this.o.readers ?? []) if (reader.family === r.family) reader.detach(r.shard);
    const channel = this.o.keys.wakeChannel(r.family, r.shard);
    this.channels.delete(channel);
    if (this.inboxes.get(r.keys.inbox) === r) this.inboxes.delete(r.keys.inbox);
    this.holdingEntries.delete(r.name);
    this.active.delete(r.name);
    this.subscribeSoon(channel, false);
  }

  /**
   * Subscribe to (or, `on` false, unsubscribe from) a shard's wake-up channel at the end of this
   * turn of the event loop, together with every other shard taken or let go in it: one SUBSCRIBE
   * and one UNSUBSCRIBE for a batch of hundreds. Only the latest wish per channel is sent.
   */
  private subscribeSoon(channel: string, on = true): void {
    if (this.subscriptionWishes.size === 0) setImmediate(() => this.flushSubscriptions());
    this.subscriptionWishes.set(channel, on);
  }

  private flushSubscriptions(): void {
    const wishes = [...this.subscriptionWishes];
    this.subscriptionWishes.clear();
    const sub = this.sub;
    if (!sub || this.stopped) return;
    const off = wishes.filter(([, on]) => !on).map(([c]) => c);
    const on = wishes.filter(([, on]) => on).map(([c]) => c);
    if (off.length) void sub.unsubscribe(...off).catch(() => undefined);
    if (!on.length) return;
    // The runner each SUBSCRIBE is for: when it is answered, the channel may have been let go and
    // taken again by a new runner, whose own SUBSCRIBE is still on its way.
    const forRunner = on.map((c) => this.channels.get(c));
    sub.subscribe(...on).then(
      () => {
        // Subscribed: what was sent to these shards before it took effect is read now.
        for (let i = 0; i < on.length; i++) {
          const r = this.channels.get(on[i]!);
          if (!r) continue;
          if (r === forRunner[i]) r.subscription(true);
          this.touch(r.name);
          r.wake();
        }
      },
      (e: unknown) => {
        if (this.stopped || this.sub !== sub) return;
        this.o.log.warn({ err: e, channels: on.length }, 'subscribing to shard wake-ups failed; retrying (the sweep covers the wait)');
        setTimeout(() => {
          for (const c of on) if (this.channels.has(c) && !this.subscriptionWishes.has(c)) this.subscribeSoon(c);
        }, 1000).unref();
      },
    );
  }

  /**
   * Take shards up to this worker's fair share, plus any reserved for it. The scan of lease
   * hashes only happens while below the share, so a balanced cluster does no scanning at all.
   */
  private async acquireShare(): Promise<void> {
    const { redis, keys, leaseTtlMs } = this.o;
    const now = Date.now();
    const began = performance.now();
    const taken: Record<Family, number> = { room: 0, user: 0 };
    const note = (family: Family) => (ok: boolean) => {
      if (ok) taken[family]++;
    };
    this.roundLiveness.clear();
    // The fair share counts the live workers that take shards: one draining (or stopping) would
    // otherwise hold a share it never takes, and a dead worker's shards beyond the survivors'
    // shares would stay run by nobody. Each worker's heartbeat says whether it takes shards (a
    // worker that has not said counts, as it did before heartbeats said so).
    const others = (await redis.zrangebyscore(keys.workers(), now - leaseTtlMs, '+inf')).filter((w) => w !== this.id);
    // (A record that cannot be read counts too: a worker's bad info hash must not stop the others taking shards.)
    const states = await Promise.all(others.map((w) => redis.hget(keys.workerInfo(w), 'state').catch(() => null)));
    const liveCount = Math.max(1, (this.accepting ? 1 : 0) + states.filter((s) => s === null || s === 'running').length);
    // Shards reserved for this worker (a drain or rebalance reserves hundreds at once): taken
    // ACQUIRE_PARALLEL at a time; one still held by its owner stays in the set for the next round
    // (its owner nudges this worker when it lets go).
    // A name leaves the set once its shard runs here (executeMoves reads that as the move done:
    // a runner still starting keeps its name), or once its reservation is over (tryAcquire).
    const named = [...this.handedOver];
    this.handedOver.clear();
    const incoming = [...new Set([...(await redis.smembers(keys.workerIncoming(this.id))), ...named])];
    const held = incoming.filter((name) => this.runners.get(name)?.state === 'running');
    if (held.length) await redis.srem(keys.workerIncoming(this.id), ...held);
    const recently = performance.now() - HELD_RETRY_MS;
    for (const [name, at] of this.heldAt) if (at < recently) this.heldAt.delete(name);
    await pool(incoming.filter((name) => !this.runners.has(name) && !this.heldAt.has(name)), ACQUIRE_PARALLEL, async (name) => {
      const ref = parseShardName(name);
      // Not a shard this worker can ever take: the move cannot happen here.
      if (!ref || !this.families.includes(ref.family) || ref.shard >= this.o.shardCounts[ref.family]) return this.batchSoon('incomingDone', name);
      note(ref.family)(await this.tryAcquire(ref.family, ref.shard, 'move'));
    });
    for (const family of this.families) {
      const total = this.o.shardCounts[family];
      const share = Math.ceil(total / liveCount);
      const mine = [...this.runners.values()].filter((r) => r.family === family).length;
      if (mine >= share) continue;
      const candidates: number[] = [];
      for (let s = 0; s < total; s++) if (!this.runners.has(shardName({ family, shard: s }))) candidates.push(s);
      const leases = await Promise.all(candidates.map((s) => redis.hmget(keys.shard(family, s).lease, 'owner', 'epoch', 'target', 'target_expires')));
      // Whether each holding named is live: one look per worker and epoch, at its lease record,
      // read only. An expired epoch nobody declared dead may still renew late (a stalled round):
      // only the epochs of the shards chosen below are declared dead, right before their takeover.
      const left = await holdingsLeft(redis, keys, leases.map(([owner, epoch]) => ({ owner: owner ?? '', epoch: epoch ?? '' })).filter((h) => h.owner && h.owner !== this.id));
      // A lease still naming another worker whose epoch is over was not released: its holder died
      // or stalled, and taking it is a takeover (a released lease names no owner). A lease naming
      // this worker but not a runner of it is from an earlier epoch of its own (or a runner lost
      // since): free to take again.
      // A shard reserved for this worker and released meanwhile is the end of a move (its holder
      // handed it off between this round's look at the incoming set and now).
      const reasons = new Map<number, AcquireReason>();
      const dead = new Map<number, { owner: string; epoch: string }>();
      const free = candidates.filter((s, i) => {
        const [owner, epoch, target, targetExpires] = leases[i]!;
        const other = !!owner && owner !== this.id;
        const held = other && (left.get(holdingKey(owner!, epoch ?? '')) ?? 0) > 0;
        const reserved = !!target && Number(targetExpires) > now;
        if (reserved && target === this.id) reasons.set(s, 'move');
        else if (other) reasons.set(s, 'takeover');
        if (other && !held) dead.set(s, { owner: owner!, epoch: epoch ?? '' });
        return !held && !(reserved && target !== this.id);
      });
      // Random order (workers racing for the same free shards spread out instead of colliding),
      // shards nobody holds first: a takeover kills its holder's epoch (its late renewal then
      // fails and it drops every shard), so none is done while a free shard fills the share.
      shuffle(free);
      const chosen = [...free.filter((s) => !dead.has(s)), ...free.filter((s) => dead.has(s))].slice(0, share - mine);
      await Promise.all(
        chosen.map(async (s) => {
          const d = dead.get(s);
          // Declared dead now, for good (once per holding and round), so no late renewal can race
          // the takeover; an epoch renewed since the look is live again and keeps its shard.
          if (d && (await this.holdingLeftNow(d)) > 0) return;
          note(family)(await this.tryAcquire(family, s, reasons.get(s) ?? 'free', d));
        }),
      );
    }
    // One line per round, not per shard (a fresh worker takes thousands): the detail is at debug.
    const n = taken.room + taken.user;
    if (n > 0) void this.sweep();
    if (n > 0) this.o.log.info({ worker: this.id, room: taken.room, user: taken.user, owned: this.runners.size, ms: Math.round(performance.now() - began) }, `acquired ${n} shard${n === 1 ? '' : 's'} in ${((performance.now() - began) / 1000).toFixed(1)} s`);
  }

  /**
   * Whether a holding is live, declaring it dead if expired; looked up once per acquisition round
   * (a move's target tries hundreds of shards of one holder, still live until it lets them go).
   */
  private holdingLeftNow(h: { owner: string; epoch: string }): Promise<number> {
    const key = holdingKey(h.owner, h.epoch);
    let p = this.roundLiveness.get(key);
    if (!p) {
      p = holdingsLeft(this.o.redis, this.o.keys, [h], { declareDead: true }).then((m) => holdingLeft(m, h.owner, h.epoch));
      this.roundLiveness.set(key, p);
    }
    return p;
  }

  /** `dead`: the holding the lease names, found dead (a takeover); the script takes it only if the lease still names exactly that. */
  private async tryAcquire(family: Family, shard: number, reason: AcquireReason, dead?: { owner: string; epoch: string }): Promise<boolean> {
    const name = shardName({ family, shard });
    if (this.runners.has(name) || this.pending.has(name) || this.stopped || !this.epoch) return false;
    const { redis, keys } = this.o;
    const shardKeys = keys.shard(family, shard);
    this.pending.add(name);
    let token = '';
    try {
      // [token, owner]; refused by a holder: [0, owner, epoch, 1 when reserved for this worker].
      const acquire = async (d?: { owner: string; epoch: string }) => (await runScript(redis, 'leaseAcquire', [shardKeys.lease], [this.id, this.epoch!, d?.owner ?? '', d?.epoch ?? ''])) as [number, string, string?, number?];
      let res = await acquire(dead);
      if (!res[0] && reason === 'move' && Number(res[3] ?? 0) !== 1) {
        // Refused, and the shard is no longer reserved for this worker (the reservation expired,
        // or another move replaced it): that move is over. Off the incoming set, or every round
        // would try it again for good.
        this.heldAt.delete(name);
        this.batchSoon('incomingDone', name);
        return false;
      }
      if (!res[0] && res[2] !== undefined && !dead) {
        // Held: by a dead epoch (a move of a shard whose holder died or stalled past its TTL)?
        const holding = { owner: String(res[1]), epoch: String(res[2]) };
        if ((await this.holdingLeftNow(holding)) === 0) res = await acquire(holding);
        else if (reason === 'move') this.heldAt.set(name, performance.now());
      }
      if (!res[0]) return false;
      token = String(res[0]);
      this.heldAt.delete(name);
      const runner = new ShardRunner(this.env, family, shard, shardKeys, token);
      this.runners.set(name, runner);
      this.touch(name);
      const channel = keys.wakeChannel(family, shard);
      this.channels.set(channel, runner);
      this.inboxes.set(shardKeys.inbox, runner);
      // In the background, with the other shards taken in this turn (one SUBSCRIBE): a subscriber
      // connection that is slow or cut off must not hold up the takeover. The runner reads its
      // inbox at start, and again once the subscription is in place (a send in between lost its
      // wake-up); the safety sweep covers a subscription that fails.
      this.subscribeSoon(channel);
      await runner.start();
      // Quietly: the sweep after this round wakes the readers of the shards whose outbox needs it
      // (the previous holder's unfinished entries), instead of every reader reading every shard.
      for (const reader of this.o.readers ?? []) if (reader.family === family) reader.attach(shard, { quiet: true });
      // Off the incoming set, once running, with the others taken in this turn (one SREM; a name
      // left there a moment longer only costs a look at the next round, which finds it held).
      this.batchSoon('incomingDone', name);
      this.o.log.debug({ shard: name, token: runner.token, reason }, 'shard acquired');
      leaseAcquisitions.inc({ family, reason });
      if (reason === 'move') shardMoves.inc({ family, direction: 'in' });
      return true;
    } catch (e) {
      this.o.log.warn({ err: e, shard: name }, 'shard acquisition failed');
      const r = this.runners.get(name);
      if (r) r.lose();
      // The lease was taken: give it back, or the shard stays held by this live epoch and run by
      // nobody (no other worker may take it, and this one looks again only below its share).
      if (token) await this.giveBack(family, shard, token, reason);
      return false;
    } finally {
      this.pending.delete(name);
    }
  }

  /**
   * A lease taken whose runner failed to start: release it. A move's shard stays reserved for this
   * worker and in its incoming set, so the move is tried again at the next round (and reported
   * done only then); any other shard is free for every worker. A release that fails is retried at
   * each lease round (releaseUnstarted).
   */
  private async giveBack(family: Family, shard: number, token: string, reason: AcquireReason): Promise<void> {
    const { redis, keys } = this.o;
    const name = shardName({ family, shard });
    const lease = keys.shard(family, shard).lease;
    try {
      if (reason === 'move') {
        await runScript(redis, 'leaseReserve', [lease], [this.id, RESERVATION_MS]);
        await redis.sadd(keys.workerIncoming(this.id), name);
      }
      await runScript(redis, 'leaseRelease', [lease], [this.id, token]);
      this.o.log.warn({ shard: name, token, reason }, `shard runner failed to start: lease released${reason === 'move' ? ', the move is tried again' : ''}`);
    } catch (e) {
      this.unstarted.set(name, { family, shard, token });
      this.o.log.warn({ err: e, shard: name, token }, 'shard runner failed to start and releasing its lease failed; the next lease round retries');
    }
  }

  /** Release again the leases giveBack could not release (only while still held with that token). */
  private async releaseUnstarted(): Promise<void> {
    const { redis, keys } = this.o;
    await Promise.all(
      [...this.unstarted].map(async ([name, { family, shard, token }]) => {
        if (this.runners.has(name) || this.pending.has(name)) return this.unstarted.delete(name);
        try {
          await runScript(redis, 'leaseRelease', [keys.shard(family, shard).lease], [this.id, token]);
          this.unstarted.delete(name);
          this.o.log.info({ shard: name, token }, 'lease of a shard whose runner failed to start released');
        } catch (e) {
          this.o.log.warn({ err: e, shard: name }, 'releasing the lease of a shard whose runner failed to start failed; retrying');
        }
      }),
    );
  }

  /**
   * Housekeeping of the shards the last sweep found holding entries (an idle shard, once trimmed,
   * is left alone): trim the inbox and outbox below what every consumer group still needs
   * (trim-stream-1.lua; a stream without groups is left alone). Idle pending entries are
   * reclaimed by the sweep itself.
   */
  private async housekeep(): Promise<void> {
    for (const name of [...this.holdingEntries]) {
      const r = this.runners.get(name);
      if (!r || r.state !== 'running') continue;
      try {
        await runScript(this.o.redis, 'trimStream', [r.keys.inbox], []);
        await runScript(this.o.redis, 'trimStream', [r.keys.outbox], this.o.outboxRetentionMs ? [this.o.outboxRetentionMs] : []);
      } catch (e) {
        this.o.log.warn({ err: e, shard: r.name }, 'shard housekeeping failed');
      }
    }
  }

  /**
   * Stop: take no new shards, finish what is in hand, release every lease (so others take over
   * at once instead of waiting for expiry) and leave the live set. The lease rounds go on renewing
   * and heartbeating (nothing else) until every runner is released: however long the in-flight
   * messages take, the shards are handed back, not taken over.
   */
  async stop(): Promise<void> {
    if (this.stopped || this.stopping) return;
    this.stopping = true;
    for (const t of [this.sweepTimer, this.housekeepTimer]) if (t) clearInterval(t);
    // Let the acquisitions and handoffs under way finish, so none is left half-done (no new
    // acquisition starts: the worker no longer accepts shards).
    while (this.acquiring || this.pending.size) await new Promise((r) => setTimeout(r, 10));
    this.holding = true;
    this.stopped = true;
    for (const remove of this.metricSources.splice(0)) remove();
    await Promise.all([...this.runners.values()].map((r) => r.drain()));
    await Promise.all([...this.runners.values()].map((r) => this.release(r).catch(() => undefined)));
    // Every runner is released: no more rounds (a round under way finishes first, so its
    // heartbeat cannot put this worker back in the live set once it has left).
    this.holding = false;
    if (this.tickTimer) clearInterval(this.tickTimer);
    while (this.ticking) await new Promise((r) => setTimeout(r, 10));
    await Promise.all((this.o.readers ?? []).map((reader) => reader.stop().catch(() => undefined)));
    const { redis, keys } = this.o;
    // The epoch ends: a lease whose release failed is free for the others at once.
    await redis.hset(keys.workerLease(this.id), 'expires', 0).catch(() => undefined);
    await redis.zrem(keys.workers(), this.id).catch(() => undefined);
    await redis.hset(keys.workerInfo(this.id), { state: 'stopped', shards: 0 }).catch(() => undefined);
    await redis.del(keys.workerControl(this.id)).catch(() => undefined);
    this.sub?.disconnect();
    this.sub = null;
  }

  /** Simulate a crash (tests): stop everything without releasing anything. */
  crash(): void {
    this.stopped = true;
    this.holding = false;
    for (const remove of this.metricSources.splice(0)) remove();
    for (const t of [this.tickTimer, this.sweepTimer, this.housekeepTimer]) if (t) clearInterval(t);
    for (const r of this.runners.values()) r.stop();
    this.runners.clear();
    for (const reader of this.o.readers ?? []) void reader.stop();
    this.sub?.disconnect();
  }
}

/**
 * Reserve many shards at once (a batch of a drain or rebalance): the reservations (sent
 * together), then the targets' incoming sets, then one nudge per worker involved instead of two
 * per shard. Returns each shard's current owner ('' for none), in the order of `moves`.
 */
export async function reserveShards(redis: RedisClient, keys: KeySpace, moves: { family: Family; shard: number; to: string }[]): Promise<string[]> {
  const byTarget = new Map<string, string[]>();
  for (const m of moves) {
    const names = byTarget.get(m.to) ?? [];
    names.push(shardName(m));
    byTarget.set(m.to, names);
  }
  // The reservations first: a target prunes from its incoming set a name whose shard is not
  // reserved for it (a move that expired or failed), so a name must never be there before its
  // reservation is.
  const owners = await Promise.all(moves.map(async (m) => String((await runScript(redis, 'leaseReserve', [keys.shard(m.family, m.shard).lease], [m.to, RESERVATION_MS])) ?? '')));
  await Promise.all([...byTarget].map(([target, names]) => redis.sadd(keys.workerIncoming(target), ...names)));
  // Each holder reads the handoffs asked of it at its next lease round (its own record's slot).
  const asked = new Map<string, string[]>();
  moves.forEach((m, i) => {
    const owner = owners[i]!;
    if (!owner || owner === m.to) return;
    const fields = asked.get(owner) ?? [];
    fields.push(shardName(m), m.to);
    asked.set(owner, fields);
  });
  await Promise.all([...asked].map(([owner, fields]) => redis.hset(keys.workerHandoffs(owner), ...fields)));
  // The holders, and the targets of shards nobody holds (free to take now). A shard's holder
  // nudges its target itself once it has let go: nudged now, the target would only find its
  // shards still held (a round of futile tries while the holders are at work).
  const nudged = new Set(owners.filter(Boolean));
  moves.forEach((m, i) => {
    if (!owners[i] || owners[i] === m.to) nudged.add(m.to);
  });
  await Promise.all([...nudged].map((w) => redis.publish(keys.workerNudge(w), 'reserved')));
  return owners;
}

function holdingKey(owner: string, epoch: string): string {
  return `${owner}\u0000${epoch}`;
}

/**
 * How long each holding (a worker and the lease epoch a shard lease names) stays live without a
 * renewal, in ms (0: expired or dead), keyed by `holdingKey`: one script call per distinct holding,
 * at the worker's lease record (on its node's clock, the one renewals use). `declareDead` (a taker
 * about to take such shards): an expired epoch is declared dead there, for good, so no late
 * renewal can revive it between this look and the takeover; without it the look is read only.
 */
export async function holdingsLeft(redis: RedisClient, keys: KeySpace, holdings: { owner: string; epoch: string }[], opts: { declareDead?: boolean } = {}): Promise<Map<string, number>> {
  const distinct = new Map<string, { owner: string; epoch: string }>();
  for (const h of holdings) if (h.owner) distinct.set(holdingKey(h.owner, h.epoch), h);
  const out = new Map<string, number>();
  await Promise.all(
    [...distinct].map(async ([k, h]) => {
      out.set(k, h.epoch ? Number(await runScript(redis, 'workerLeaseLive', [keys.workerLease(h.owner)], [h.epoch, opts.declareDead ? '1' : '0'])) : 0);
    }),
  );
  return out;
}

/** How long the holding a shard lease names stays live (ms; 0 dead), from `holdingsLeft`'s answer. */
export function holdingLeft(left: Map<string, number>, owner: string, epoch: string): number {
  return owner ? (left.get(holdingKey(owner, epoch)) ?? 0) : 0;
}

/**
 * Resolve once a cluster client knows its nodes (needed before picking a subscriber node).
 * ioredis fails the commands queued behind a first
 * attempt that reached no seed node ("None of startup nodes is available") and then keeps trying
 * in the background; on a loaded machine that first attempt can miss (seen on the multi-host bed),
 * so retry for up to two minutes rather than exit.
 */
async function waitReady(c: RedisClient): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    if (c.status === 'ready') return;
    try {
      await c.ping();
      return;
    } catch (e) {
      if (attempt >= 120) throw e;
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

/** Run `fn` over `items`, at most `limit` at a time. */
async function pool<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
}

function shuffle<T>(a: T[]): void {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
}

export type { InboxEntry, CommittedOutputs };
