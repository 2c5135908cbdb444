/**
 * /sync computations that outlive their request, for the client's retry.
 *
 * A cold initial sync of a user in thousands of rooms can take longer than the front's request
 * deadline: the request answers 503 and the client retries with the same parameters. Were the
 * computation thrown away, every retry would start over and hit the deadline again, forever. So a
 * computation that answers no request keeps going; a retry with the same parameters (same user,
 * device and query) joins it while it runs, or takes its result if it finished since — once, within
 * `keepMs` — as Synapse serves a retried sync from its response cache. A result its own request
 * delivered is not kept: a later request computes afresh.
 *
 * The result is an answer at the cut its computation took: a little older than a new one would be,
 * but complete at that cut, and the next incremental sync continues from it without a gap.
 */
export class UnclaimedResults<T> {
  private readonly entries = new Map<string, Entry<T>>();

  constructor(
    private readonly keepMs: number,
    private readonly maxEntries: number,
  ) {}

  /**
   * The running or unclaimed computation for `key`, or a new one from `compute`. `answered()` says,
   * once the computation is done, whether the request that started it is still there to answer it.
   */
  run(key: string, compute: () => Promise<T>, answered: () => boolean): Promise<T> {
    const existing = this.entries.get(key);
    if (existing) {
      if (existing.timer) {
        // Done and kept: this retry takes it (once).
        clearTimeout(existing.timer);
        this.entries.delete(key);
      } else existing.requests.push(answered); // still running: one more request may answer it
      return existing.value;
    }
    if (this.entries.size >= this.maxEntries) return compute();
    const entry: Entry<T> = { value: compute(), requests: [answered] };
    this.entries.set(key, entry);
    entry.value.then(
      () => {
        if (entry.requests.some((stillThere) => stillThere())) {
          this.entries.delete(key);
          return;
        }
        // Nobody took it: kept for the retry, for a while.
        entry.timer = setTimeout(() => {
          if (this.entries.get(key) === entry) this.entries.delete(key);
        }, this.keepMs);
        entry.timer.unref();
      },
      () => {
        if (this.entries.get(key) === entry) this.entries.delete(key);
      },
    );
    return entry.value;
  }

  /** Computations running or kept (status, tests). */
  get size(): number {
    return this.entries.size;
  }
}

interface Entry<T> {
  value: Promise<T>;
  /** Per request waiting on the computation: whether it can still be answered. */
  requests: (() => boolean)[];
  /** Set once done and nobody could take it: when it is dropped. */
  timer?: NodeJS.Timeout;
}
