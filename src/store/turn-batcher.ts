/**
 * The one turn-batching pattern behind the worker's grouped Redis calls (issue 23 item 1): the
 * group commit (CommitQueue), the grouped inbox and outbox reads (GroupReads) and the grouped
 * acknowledgements (GroupAcks). Requests made during one turn of the event loop are queued and
 * sent together from `setImmediate` — the actors woken by one read, or answered by one reply,
 * ask in the same turn — cut into calls by `split` (by shard on a Cluster, by size), each call
 * sent by `send`, whose answer holds one result per request, in order (a `Rejected` result rejects
 * its request alone). A call that fails rejects each of its requests (and only them). Nothing waits for a timer: a lone request goes out at the
 * end of its turn.
 *
 * `eagerMs`: once the oldest queued request has waited that long (a turn busy deciding), the queue
 * goes out at the next request instead of at the end of the turn, so Redis works on the first part
 * while the rest is decided.
 */

export interface Queued<T, R> {
  readonly item: T;
  resolve(r: R): void;
  reject(e: unknown): void;
}

/** A request's result that is a failure of that request alone (the others of its call go on). */
export class Rejected {
  constructor(readonly error: unknown) {}
}

export interface TurnBatcherOptions<T, R> {
  /** One call: one result per request, in the order given. */
  send(items: T[]): Promise<(R | Rejected)[]>;
  /** The calls a turn's requests go in (default: one call with all of them). */
  split?<E extends Queued<T, R>>(queued: E[]): E[][];
  /** See the header; default: none (the end of the turn). */
  eagerMs?: number;
}

export class TurnBatcher<T, R> {
  private queued: Queued<T, R>[] = [];
  private scheduled = false;
  private firstQueuedAt = 0;
  /** Calls sent and requests answered through them (for the benchmarks' figures). */
  calls = 0;
  items = 0;

  constructor(private readonly o: TurnBatcherOptions<T, R>) {}

  add(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      const eager = this.o.eagerMs;
      if (eager !== undefined && this.queued.length === 0) this.firstQueuedAt = performance.now();
      this.queued.push({ item, resolve, reject });
      if (eager !== undefined && performance.now() - this.firstQueuedAt >= eager) {
        this.flush();
        return;
      }
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(this.onImmediate);
      }
    });
  }

  private readonly onImmediate = (): void => {
    this.scheduled = false;
    this.flush();
  };

  private flush(): void {
    const queued = this.queued;
    if (queued.length === 0) return;
    this.queued = [];
    const calls = this.o.split ? this.o.split(queued) : [queued];
    for (const call of calls) if (call.length) void this.sendCall(call);
  }

  private async sendCall(call: Queued<T, R>[]): Promise<void> {
    let res: (R | Rejected)[];
    try {
      res = await this.o.send(call.map((q) => q.item));
    } catch (e) {
      for (const q of call) q.reject(e);
      return;
    }
    this.calls++;
    this.items += call.length;
    for (let i = 0; i < call.length; i++) {
      const r = res[i]!;
      if (r instanceof Rejected) call[i]!.reject(r.error);
      else call[i]!.resolve(r);
    }
  }
}

/** `items` grouped by `key`, each group in the order given, groups in order of first appearance. */
export function groupBy<E>(items: E[], key: (e: E) => string | number): E[][] {
  const groups = new Map<string | number, E[]>();
  for (const e of items) {
    const k = key(e);
    const g = groups.get(k);
    if (g) g.push(e);
    else groups.set(k, [e]);
  }
  return [...groups.values()];
}

/**
 * `items` cut in order into runs of at most `maxWeight` in all (a single heavier item goes alone)
 * and at most `maxCount` items.
 */
export function chunks<E>(items: E[], weight: (e: E) => number, maxWeight: number, maxCount = Infinity): E[][] {
  const out: E[][] = [];
  let run: E[] = [];
  let size = 0;
  for (const e of items) {
    const w = weight(e);
    if (run.length > 0 && (size + w > maxWeight || run.length >= maxCount)) {
      out.push(run);
      run = [];
      size = 0;
    }
    run.push(e);
    size += w;
  }
  if (run.length) out.push(run);
  return out;
}
