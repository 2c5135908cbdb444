/**
 * Every Prometheus metric an Axon process exports (prom-client), in one registry served at
 * `GET /metrics` on the metrics port (src/ops/metrics-server.ts).
 *
 * A leaf module (it imports nothing of ours; .dependency-cruiser.cjs keeps it so), so every layer —
 * the HTTP front, the actor runtime, /sync, the federation sender, push — records into it directly.
 *
 * Conventions (https://prometheus.io/docs/practices/naming/): `axon_` prefix, base units (seconds,
 * messages), `_total` on counters. Names follow Synapse's where the concept is the same
 * (`synapse_http_server_requests_received_total` → `axon_http_server_requests_received_total`,
 * `synapse_storage_events_persisted_events_total` → `axon_events_persisted_events_total`,
 * `synapse_federation_transaction_queue_pending_pdus` → `axon_federation_transaction_queue_pending_pdus`),
 * so an operator's queries carry over. Cardinality stays bounded: HTTP requests are labelled by
 * endpoint group (from the route pattern, never the raw path), the runtime by shard family (room,
 * user), never by room, user, shard or destination.
 *
 * The hot path only increments counters (bound label children, no lookups). Gauges of state are
 * read when scraped, from sources the running parts register (`addSource`): in-memory reads,
 * except the inbox lag, pending and dead-letter counts, which take one Lua call per 64 owned
 * shards (Worker.inboxStats), at most once a second whatever the number of scrapers.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export const registry = new Registry();

/** Shard families, as the runtime names them (src/store/shards.ts; not imported: this module is a leaf). */
export type MetricFamily = 'room' | 'user';
export const METRIC_FAMILIES: readonly MetricFamily[] = ['room', 'user'];

let processMetricsOn = false;
/**
 * Node's process metrics (CPU, memory, file descriptors, heap, GC durations, event-loop lag) under
 * their standard names (`process_*`, `nodejs_*`), as every Node exporter has them. Once per process.
 */
export function enableProcessMetrics(): void {
  if (processMetricsOn) return;
  processMetricsOn = true;
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 20 });
  // prom-client also exports these sums as gauges named `…_total`, which Prometheus reserves for
  // counters (`promtool check metrics` flags them); the same figures by type remain
  // (nodejs_active_handles{type}, nodejs_active_requests, nodejs_active_resources{type}).
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) registry.removeSingleMetric(name);
}

/**
 * A set of callbacks a gauge reads when scraped. Each running part adds its own and removes it
 * when it stops (several fronts or workers may share a process in tests: their values add up).
 */
export class SourceSet<T> {
  private readonly sources = new Set<() => T>();

  add(source: () => T): () => void {
    this.sources.add(source);
    return () => {
      this.sources.delete(source);
    };
  }

  values(): T[] {
    const out: T[] = [];
    for (const s of this.sources) {
      try {
        out.push(s());
      } catch {
        // A source that fails leaves its part out of this scrape; the scrape itself still answers.
      }
    }
    return out;
  }
}

/** A gauge whose value, per label set, is the sum of its sources' values when scraped. */
function summedGauge<L extends string>(name: string, help: string, labelNames: readonly L[], sources: SourceSet<{ labels: Partial<Record<L, string>>; value: number }[]>): Gauge<L> {
  return new Gauge<L>({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      this.reset();
      for (const rows of sources.values()) for (const r of rows) this.inc(r.labels, r.value);
    },
  });
}

type Rows<L extends string> = { labels: Partial<Record<L, string>>; value: number }[];

// ---------------------------------------------------------------------------------------------
// Process identity

/** `axon_process_info{role, id, version} 1`: what this process is (join other series on `instance`). */
export const processInfo = new Gauge({
  name: 'axon_process_info',
  help: 'Always 1: the role (main, front, worker), id and version of this Axon process',
  labelNames: ['role', 'id', 'version'] as const,
  registers: [registry],
});

// ---------------------------------------------------------------------------------------------
// HTTP (the uWS fronts: client and federation listeners)

/** Buckets of `axon_http_server_response_time_seconds` (upper bounds, seconds). */
export const HTTP_RESPONSE_TIME_BUCKETS: readonly number[] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/**
 * One (listener, method, endpoint group)'s HTTP figures, kept as plain numbers by the front that
 * serves it (src/http/request-metrics.ts): a request costs a few additions, not prom-client's
 * label hashing (a few microseconds each under load). The metrics below read them when scraped.
 */
export interface HttpSlot {
  labels: { listener: string; method: string; endpoint: string };
  received: number;
  /** Answers per status code (`aborted`: the client left first). */
  codes: Map<string, number>;
  /** Answers per bucket of HTTP_RESPONSE_TIME_BUCKETS (not cumulative; beyond the last: only in count). */
  buckets: number[];
  sum: number;
  count: number;
}
export const httpSources = new SourceSet<Iterable<HttpSlot>>();

export const httpRequestsReceived = new Counter({
  name: 'axon_http_server_requests_received_total',
  help: 'HTTP requests received, by listener (client, federation), method and endpoint group',
  labelNames: ['listener', 'method', 'endpoint'] as const,
  registers: [registry],
  collect() {
    this.reset();
    for (const slots of httpSources.values()) for (const s of slots) this.inc(s.labels, s.received);
  },
});

export const httpResponses = new Counter({
  name: 'axon_http_server_responses_total',
  help: 'HTTP responses sent, by listener, method, endpoint group and status code',
  labelNames: ['listener', 'method', 'endpoint', 'code'] as const,
  registers: [registry],
  collect() {
    this.reset();
    for (const slots of httpSources.values()) for (const s of slots) for (const [code, n] of s.codes) this.inc({ ...s.labels, code }, n);
  },
});

export const httpResponseTime = new Histogram({
  name: 'axon_http_server_response_time_seconds',
  help: 'Time from a request arriving to its answer going out (long-polls included: /sync waits count)',
  labelNames: ['listener', 'method', 'endpoint'] as const,
  buckets: [...HTTP_RESPONSE_TIME_BUCKETS],
  registers: [registry],
  collect() {
    // prom-client has no API to set a histogram's buckets; its per-label-set record is
    // { labels, bucketValues: { <bound>: count }, sum, count } in `hashMap` (lib/histogram.js), and
    // the unit test checks the exposition this gives bucket by bucket.
    const table: Record<string, { labels: HttpSlot['labels']; bucketValues: Record<number, number>; sum: number; count: number }> = {};
    for (const slots of httpSources.values()) {
      for (const s of slots) {
        if (s.count === 0) continue;
        const key = `${s.labels.listener}\u0000${s.labels.method}\u0000${s.labels.endpoint}`;
        let row = table[key];
        if (!row) {
          row = { labels: s.labels, bucketValues: Object.fromEntries(HTTP_RESPONSE_TIME_BUCKETS.map((b) => [b, 0])), sum: 0, count: 0 };
          table[key] = row;
        }
        HTTP_RESPONSE_TIME_BUCKETS.forEach((b, i) => {
          row!.bucketValues[b]! += s.buckets[i]!;
        });
        row.sum += s.sum;
        row.count += s.count;
      }
    }
    (this as unknown as { hashMap: typeof table }).hashMap = table;
  },
});

/** Requests whose handler runs now, per listener (sources: each Front). */
export const httpInFlightSources = new SourceSet<Rows<'listener'>>();
export const httpInFlight = summedGauge('axon_http_server_in_flight_requests', 'HTTP requests being handled now, by listener', ['listener'] as const, httpInFlightSources);

// ---------------------------------------------------------------------------------------------
// /sync

/** Long-polling /sync requests registered now (sources: each front's SyncNotifier). */
export const syncWaitingSources = new SourceSet<Rows<never>>();
export const syncWaiting = summedGauge('axon_sync_waiting_requests', '/sync (and sliding sync) requests registered for wake-ups now', [] as const, syncWaitingSources);

export const syncWakeups = new Counter({
  name: 'axon_sync_wakeups_total',
  help: 'Sleeping /sync requests woken by a notification (a commit concerning their user or rooms)',
  registers: [registry],
});

export const syncNotifications = new Counter({
  name: 'axon_sync_notifications_received_total',
  help: 'Notifications received on the sync channel by this process',
  registers: [registry],
});

// ---------------------------------------------------------------------------------------------
// Events

export const eventsPersisted = new Counter({
  name: 'axon_events_persisted_events_total',
  help: 'Room events committed by the room actors of this process (local and from other servers)',
  registers: [registry],
});

// ---------------------------------------------------------------------------------------------
// Actor runtime (workers)

/**
 * A per-family count kept in a plain number and added to its counter when the registry is read
 * (the counter's `collect`). For the counters a worker bumps on every message and commit: a
 * prom-client increment hashes its labels into a new string and returns a new object, even on a
 * bound child — two increments a message were ~2 % of the bytes a worker allocates (issue 23).
 */
class CountCell {
  n = 0;
  inc(v = 1): void {
    this.n += v;
  }
}

function cellsFor(): { cells: Map<MetricFamily, CountCell>; collect(this: Counter<'family'>): void } {
  const cells = new Map<MetricFamily, CountCell>();
  return {
    cells,
    collect(this: Counter<'family'>) {
      for (const [family, cell] of cells) {
        if (cell.n === 0) continue;
        this.inc({ family }, cell.n);
        cell.n = 0;
      }
    },
  };
}

const appliedCells = cellsFor();
const commitCells = cellsFor();

export const actorMessagesApplied = new Counter({
  name: 'axon_actor_messages_applied_total',
  help: 'Actor messages applied and committed, by shard family',
  labelNames: ['family'] as const,
  registers: [registry],
  collect: appliedCells.collect,
});

export const actorCommits = new Counter({
  name: 'axon_actor_commits_total',
  help: 'Commit scripts run (fewer than messages when kinds commit in groups), by shard family',
  labelNames: ['family'] as const,
  registers: [registry],
  collect: commitCells.collect,
});

export const actorDeadLetters = new Counter({
  name: 'axon_actor_dead_letters_total',
  help: 'Messages dead-lettered by this process (failed too often, malformed, or of no known kind), by shard family',
  labelNames: ['family'] as const,
  registers: [registry],
});

/** In-memory per-family figures of a worker's owned shards (cheap: no Redis). */
export interface WorkerLocalStats {
  owned: Record<MetricFamily, number>;
  buffered: Record<MetricFamily, number>;
}
export const workerLocalSources = new SourceSet<WorkerLocalStats>();

function familyRows(pick: (s: WorkerLocalStats) => Record<MetricFamily, number>): SourceSet<Rows<'family'>> {
  // A view of workerLocalSources as rows for one figure.
  const view = new SourceSet<Rows<'family'>>();
  view.add(() => workerLocalSources.values().flatMap((s) => METRIC_FAMILIES.map((f) => ({ labels: { family: f }, value: pick(s)[f] }))));
  return view;
}

export const shardsOwned = summedGauge('axon_lease_shards_owned', 'Shards whose lease this process holds, by family', ['family'] as const, familyRows((s) => s.owned));
export const actorBuffered = summedGauge('axon_actor_buffered_messages', 'Messages read from owned inboxes and not yet finished (in this process memory), by family', ['family'] as const, familyRows((s) => s.buffered));

/** Per-family sums over a worker's owned shards, read from Redis (Worker.inboxStats). */
export interface InboxStats {
  /** Entries not yet delivered to the consumer group (XINFO GROUPS lag). */
  lag: Record<MetricFamily, number>;
  /** Entries delivered and not yet acknowledged. */
  pending: Record<MetricFamily, number>;
  /** Entries in the dead-letter streams. */
  dead: Record<MetricFamily, number>;
}
export const inboxStatsSources = new SourceSet<Promise<InboxStats>>();

/** One read of every source per second at most: the three gauges below share it, and so do scrapers. */
let inboxStatsMemo: { at: number; value: Promise<InboxStats[]> } | null = null;
function inboxStats(): Promise<InboxStats[]> {
  const now = performance.now();
  if (!inboxStatsMemo || now - inboxStatsMemo.at > 1000) {
    inboxStatsMemo = { at: now, value: Promise.all(inboxStatsSources.values().map((p) => p.catch(() => null))).then((rows) => rows.filter((r): r is InboxStats => r !== null)) };
  }
  return inboxStatsMemo.value;
}

function inboxGauge(name: string, help: string, pick: (s: InboxStats) => Record<MetricFamily, number>): Gauge<'family'> {
  return new Gauge({
    name,
    help,
    labelNames: ['family'] as const,
    registers: [registry],
    async collect() {
      const all = await inboxStats();
      this.reset();
      if (all.length === 0) return;
      for (const f of METRIC_FAMILIES) this.set({ family: f }, all.reduce((n, s) => n + pick(s)[f], 0));
    },
  });
}

export const inboxLag = inboxGauge('axon_actor_inbox_lag_messages', 'Inbox entries of the shards this process owns not yet read by their actors, by family', (s) => s.lag);
export const inboxPending = inboxGauge('axon_actor_inbox_pending_messages', 'Inbox entries of the shards this process owns read and not yet acknowledged, by family', (s) => s.pending);
export const deadLetterMessages = inboxGauge('axon_actor_dead_letter_messages', 'Entries in the dead-letter streams of the shards this process owns, by family', (s) => s.dead);

export const leaseAcquisitions = new Counter({
  name: 'axon_lease_acquisitions_total',
  help: 'Shard leases taken by this process, by family and how: free (unowned), takeover (the holder stopped renewing: it died or stalled), move (handed over by a move, rebalance or drain)',
  labelNames: ['family', 'reason'] as const,
  registers: [registry],
});

export const leaseLosses = new Counter({
  name: 'axon_lease_losses_total',
  help: 'Shard leases this process lost without releasing them (not renewed in time, or fenced by a newer holder), by family',
  labelNames: ['family'] as const,
  registers: [registry],
});

export const shardMoves = new Counter({
  name: 'axon_shard_moves_total',
  help: 'Live shard moves (move-shard, rebalance, drain) through this process, by family and direction (in: taken over, out: handed off)',
  labelNames: ['family', 'direction'] as const,
  registers: [registry],
});

export const leaseRoundDuration = new Histogram({
  name: 'axon_lease_round_duration_seconds',
  help: 'A worker lease round from heartbeat to renewed leases (longer than the lease TTL: leases may lapse)',
  buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
  registers: [registry],
});

// ---------------------------------------------------------------------------------------------
// Federation sender (destination actors)

/** Per-destination figures, summed over the destination actors this process holds in memory. */
export interface DestinationStats {
  destinations: number;
  pending: number;
  backingOff: number;
  pendingPdus: number;
  pendingEdus: number;
}
export const destinationSources = new SourceSet<DestinationStats>();

function destinationGauge(name: string, help: string, pick: (s: DestinationStats) => number): Gauge {
  return new Gauge({
    name,
    help,
    registers: [registry],
    collect() {
      this.set(destinationSources.values().reduce((n, s) => n + pick(s), 0));
    },
  });
}

export const federationDestinations = destinationGauge('axon_federation_destinations', 'Other servers whose destination actor this process holds', (s) => s.destinations);
export const federationDestinationsPending = destinationGauge('axon_federation_transaction_queue_pending_destinations', 'Destinations with PDUs or EDUs waiting or a transaction in flight', (s) => s.pending);
export const federationDestinationsBackingOff = destinationGauge('axon_federation_destinations_backing_off', 'Destinations waiting out a retry backoff after failed transactions', (s) => s.backingOff);
export const federationPendingPdus = destinationGauge('axon_federation_transaction_queue_pending_pdus', 'PDUs queued for other servers and not yet in a transaction', (s) => s.pendingPdus);
export const federationPendingEdus = destinationGauge('axon_federation_transaction_queue_pending_edus', 'EDUs queued for other servers and not yet in a transaction', (s) => s.pendingEdus);

export const federationTransactions = new Counter({
  name: 'axon_federation_client_sent_transactions_total',
  help: 'Transactions PUT to other servers, by outcome: ok, retry (unreachable, 5xx, 429…: retried after a backoff), refused (4xx: dropped)',
  labelNames: ['outcome'] as const,
  registers: [registry],
});

// ---------------------------------------------------------------------------------------------
// Push (src/push/sender.ts)

export const pushesProcessed = new Counter({
  name: 'axon_push_http_pushes_processed_total',
  help: 'Notifications a push gateway accepted',
  registers: [registry],
});

export const pushesFailed = new Counter({
  name: 'axon_push_http_pushes_failed_total',
  help: 'Pushes that failed (no answer in time, non-2xx, refused address): retried with backoff',
  registers: [registry],
});

export const pushkeysRejected = new Counter({
  name: 'axon_push_pushkeys_rejected_total',
  help: 'Pushkeys a gateway rejected (the pusher is removed)',
  registers: [registry],
});

export const pushesGivenUp = new Counter({
  name: 'axon_push_notifications_given_up_total',
  help: 'Notifications given up after a day of gateway failures',
  registers: [registry],
});

/**
 * Start every per-family counter of a worker at 0, so its series exist from the first scrape and
 * `rate()` sees the first increment (a series that appears at 1 loses it).
 */
export function initialiseWorkerSeries(): void {
  // (A bound child made with labels() has no series until its first increment: add 0 instead.)
  for (const family of METRIC_FAMILIES) {
    for (const counter of [actorMessagesApplied, actorCommits, actorDeadLetters, leaseLosses]) counter.inc({ family }, 0);
    for (const reason of ['free', 'takeover', 'move']) leaseAcquisitions.inc({ family, reason }, 0);
    for (const direction of ['in', 'out']) shardMoves.inc({ family, direction }, 0);
  }
}

/** The family's cell of `c` (one per family, shared by the family's shard runners). */
function cellOf(c: ReturnType<typeof cellsFor>, family: MetricFamily): CountCell {
  let cell = c.cells.get(family);
  if (!cell) c.cells.set(family, (cell = new CountCell()));
  return cell;
}

/**
 * Per-family counters for the hot path: the applied and commit counts as plain-number cells read
 * at scrape time (CountCell), the rare ones as bound children (no label lookup).
 */
export function familyCounters(family: MetricFamily): { applied: { inc(v?: number): void }; commits: { inc(v?: number): void }; deadLetters: Counter.Internal; lost: Counter.Internal } {
  return {
    applied: cellOf(appliedCells, family),
    commits: cellOf(commitCells, family),
    deadLetters: actorDeadLetters.labels(family),
    lost: leaseLosses.labels(family),
  };
}
