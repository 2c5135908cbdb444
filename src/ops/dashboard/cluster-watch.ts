/**
 * What the operator dashboard shows, read from Redis as `npm run cluster -- status` reads it
 * (src/runtime/cluster-admin.ts): one poll every `pollMs` while someone watches, turned into a
 * snapshot (workers, fronts, per-shard inbox lag, dead letters, rates) plus the shard moves seen
 * between two polls. A move is seen, not announced: a lease whose owner changed between polls,
 * whoever moved it (this page, the cluster scripts, or a takeover after a worker died).
 */
import type { Logger } from 'pino';
import { readShards, readWorkers, workerRows, type ShardInfo, type WorkerRow } from '../../runtime/cluster-admin';
import { readFronts, type FrontInfo } from '../../runtime/front-heartbeat';
import { FAMILIES, type Family } from '../../store/shards';
import type { KeySpace } from '../../store/keys';
import type { RedisClient } from '../../store/redis';

/** A shard that changed hands between two polls (`from` empty: it had no owner; `to` empty: it has none now). */
export interface ObservedMove {
  at: number;
  family: Family;
  shard: number;
  from: string;
  to: string;
}

export interface DeadLetter {
  family: Family;
  shard: number;
  id: string;
  failedAt: number | null;
  kind: string;
  actor: string;
  error: string;
}

/**
 * One shard in the heat map: [owner index into `owners` (-1: none), inbox lag (entries not yet
 * read by the worker), pending (read, not yet acknowledged), dead letters, reserved-for index (-1: none)].
 */
export type HeatCell = [number, number, number, number, number];

export interface ClusterSnapshot {
  at: number;
  shardCounts: Record<Family, number>;
  workers: WorkerRow[];
  fronts: FrontInfo[];
  /** Worker ids the heat map's cells point into. */
  owners: string[];
  heat: Record<Family, HeatCell[]>;
  /** Per second since the previous poll; null on the first. */
  rates: { messagesPerSecond: number; eventsPerSecond: number; intervalMs: number } | null;
  deadLetters: { total: number; recent: DeadLetter[] };
  /** Shards reserved for another worker, their handoff under way. */
  movesInProgress: number;
  /** The latest moves seen, newest first. */
  moves: ObservedMove[];
}

export interface ClusterWatchOptions {
  redis: RedisClient;
  keys: KeySpace;
  shardCounts: Record<Family, number>;
  leaseTtlMs: number;
  log: Logger;
  /** How often to poll while watched (ms). Each poll is a few commands per shard. */
  pollMs?: number;
}

const KEPT_MOVES = 200;
const DEAD_SHARDS_SHOWN = 10;
const DEAD_PER_SHARD = 3;

export class ClusterWatch {
  private readonly pollMs: number;
  private timer: NodeJS.Timeout | null = null;
  private polling: Promise<ClusterSnapshot> | null = null;
  private last: ClusterSnapshot | null = null;
  /** Counters of the previous poll, for rates and move detection. */
  private previous: { at: number; owners: Map<string, string>; read: number; outputs: number } | null = null;
  private moves: ObservedMove[] = [];
  private deadCache: { total: number; recent: DeadLetter[] } = { total: 0, recent: [] };
  private readonly snapshotListeners = new Set<(s: ClusterSnapshot) => void>();
  private readonly moveListeners = new Set<(m: ObservedMove) => void>();

  constructor(private readonly o: ClusterWatchOptions) {
    this.pollMs = o.pollMs ?? 1000;
  }

  /** Follow every poll and every move seen; polls run while anyone follows. Returns the unfollow. */
  follow(onSnapshot: (s: ClusterSnapshot) => void, onMove: (m: ObservedMove) => void): () => void {
    this.snapshotListeners.add(onSnapshot);
    this.moveListeners.add(onMove);
    if (!this.timer) this.schedule(0);
    return () => {
      this.snapshotListeners.delete(onSnapshot);
      this.moveListeners.delete(onMove);
      if (this.snapshotListeners.size === 0) this.stop();
    };
  }

  /** The latest snapshot if it is fresh (younger than a poll interval), else a new poll's. */
  async current(): Promise<ClusterSnapshot> {
    if (this.last && Date.now() - this.last.at < this.pollMs) return this.last;
    return this.poll();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    // Moves are told relative to the previous poll: after a pause in watching, start afresh
    // rather than report everything that changed meanwhile as if it had just happened.
    this.previous = null;
  }

  private schedule(delayMs: number): void {
    this.timer = setTimeout(() => {
      void this.poll()
        .catch((err) => this.o.log.warn({ err }, 'dashboard: could not read the cluster state'))
        .finally(() => {
          if (this.snapshotListeners.size > 0) this.schedule(this.pollMs);
        });
    }, delayMs);
    this.timer.unref();
  }

  /** One poll at a time: callers arriving during one share its result. */
  private poll(): Promise<ClusterSnapshot> {
    if (!this.polling) this.polling = this.read().finally(() => (this.polling = null));
    return this.polling;
  }

  private async read(): Promise<ClusterSnapshot> {
    const { redis, keys, shardCounts, leaseTtlMs } = this.o;
    const [workers, fronts, shards] = await Promise.all([
      readWorkers(redis, keys, leaseTtlMs),
      readFronts(redis, keys),
      readShards(redis, keys, shardCounts, { details: true, outputs: true }),
    ]);
    const at = Date.now();
    const owners = new Map(shards.map((s) => [`${s.family}:${s.shard}`, s.owner]));
    const read = shards.reduce((n, s) => n + s.entriesRead, 0);
    // Room outboxes carry the rooms' persisted events; the other families' outputs are not events.
    const outputs = shards.filter((s) => s.family === 'room').reduce((n, s) => n + s.outputsAdded, 0);
    let rates: ClusterSnapshot['rates'] = null;
    const seen: ObservedMove[] = [];
    // A poll long ago (a one-off read while nobody watched) is no base: what changed since then
    // did not just happen.
    if (this.previous && at - this.previous.at > 3 * this.pollMs) this.previous = null;
    if (this.previous) {
      const dt = (at - this.previous.at) / 1000;
      // A counter that went down was reset (a stream deleted and made anew): no rate this time.
      if (dt > 0 && read >= this.previous.read && outputs >= this.previous.outputs) {
        rates = { messagesPerSecond: round1((read - this.previous.read) / dt), eventsPerSecond: round1((outputs - this.previous.outputs) / dt), intervalMs: at - this.previous.at };
      }
      for (const s of shards) {
        const before = this.previous.owners.get(`${s.family}:${s.shard}`) ?? '';
        if (before !== s.owner) seen.push({ at, family: s.family, shard: s.shard, from: before, to: s.owner });
      }
    }
    this.previous = { at, owners, read, outputs };
    if (seen.length) this.moves = [...seen.reverse(), ...this.moves].slice(0, KEPT_MOVES);
    const rows = workerRows(workers, shards).filter((w) => w.worker !== '(unowned)');
    const ownerIds = rows.map((w) => w.worker);
    const index = new Map(ownerIds.map((id, i) => [id, i]));
    const heat = Object.fromEntries(FAMILIES.map((f) => [f, [] as HeatCell[]])) as Record<Family, HeatCell[]>;
    for (const s of [...shards].sort((a, b) => a.shard - b.shard)) {
      heat[s.family].push([s.owner ? (index.get(s.owner) ?? -1) : -1, s.lag, s.pending, s.dead, s.target ? (index.get(s.target) ?? -1) : -1]);
    }
    const snapshot: ClusterSnapshot = {
      at,
      shardCounts,
      workers: rows,
      fronts,
      owners: ownerIds,
      heat,
      rates,
      deadLetters: await this.deadLetters(shards),
      movesInProgress: shards.filter((s) => s.target && s.target !== s.owner).length,
      moves: this.moves,
    };
    this.last = snapshot;
    for (const m of seen) for (const l of this.moveListeners) l(m);
    for (const l of this.snapshotListeners) l(snapshot);
    return snapshot;
  }

  /** The total, and the newest entries of the shards with the most (re-read only when a count changed). */
  private async deadLetters(shards: ShardInfo[]): Promise<{ total: number; recent: DeadLetter[] }> {
    const withDead = shards.filter((s) => s.dead > 0);
    const total = withDead.reduce((n, s) => n + s.dead, 0);
    if (total === this.deadCache.total) return this.deadCache;
    const shown = withDead.sort((a, b) => b.dead - a.dead).slice(0, DEAD_SHARDS_SHOWN);
    const recent: DeadLetter[] = [];
    for (const s of shown) {
      const entries = (await this.o.redis.xrevrange(this.o.keys.shard(s.family, s.shard).dead, '+', '-', 'COUNT', DEAD_PER_SHARD)) as [string, string[]][];
      for (const [id, fields] of entries) {
        const f = new Map<string, string>();
        for (let i = 0; i + 1 < fields.length; i += 2) f.set(fields[i]!, fields[i + 1]!);
        recent.push({ family: s.family, shard: s.shard, id, failedAt: f.has('failed_at') ? Number(f.get('failed_at')) : null, kind: f.get('k') ?? '', actor: f.get('a') ?? '', error: (f.get('error') ?? '').slice(0, 500) });
      }
    }
    recent.sort((a, b) => (b.failedAt ?? 0) - (a.failedAt ?? 0));
    this.deadCache = { total, recent };
    return this.deadCache;
  }
}

function round1(n: number): number {
  return Math.round(n * 10) / 10;
}
