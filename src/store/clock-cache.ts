/**
 * A cache bounded by the bytes its values weigh, about least recently used first out (CLOCK: a
 * hit only marks its entry, and eviction gives a marked entry a second chance at the back, so a
 * hit is one Map lookup instead of a delete and re-insert). The weights are estimates of what a
 * value keeps alive on the V8 heap (see `weighStateMap`, `weighString`): a bound by entries would
 * let a few big values (a 10,000-member room's state) take the process's memory, or make many
 * small ones (an initial sync of 1,500 small rooms) thrash.
 */
export class ClockCache<K, V> {
  /** Insertion order; `used` marks a hit since the entry was last (re)inserted. */
  private readonly map = new Map<K, { value: V; weight: number; used: boolean }>();
  private held = 0;

  constructor(
    /** Bytes the values may weigh in all. */
    readonly maxBytes: number,
    private readonly weigh: (value: V, key: K) => number,
  ) {}

  get(key: K): V | undefined {
    const hit = this.map.get(key);
    if (!hit) return undefined;
    hit.used = true;
    return hit.value;
  }

  has(key: K): boolean {
    return this.map.has(key);
  }

  set(key: K, value: V): void {
    this.delete(key);
    const weight = this.weigh(value, key);
    // A value over a quarter of the bound is not kept: it would evict everything else.
    if (weight > this.maxBytes / 4) return;
    this.map.set(key, { value, weight, used: false });
    this.held += weight;
    while (this.held > this.maxBytes) {
      const [k, e] = this.map.entries().next().value as [K, { value: V; weight: number; used: boolean }];
      this.map.delete(k);
      if (e.used && k !== key) {
        e.used = false;
        this.map.set(k, e);
        continue;
      }
      this.held -= e.weight;
    }
  }

  delete(key: K): boolean {
    const old = this.map.get(key);
    if (!old) return false;
    this.held -= old.weight;
    return this.map.delete(key);
  }

  /** Drops the entries `stale` says are no longer wanted (e.g. expired), oldest first, stopping at the first kept. */
  dropOldestWhile(stale: (value: V, key: K) => boolean): void {
    for (const [k, e] of this.map) {
      if (!stale(e.value, k)) return;
      this.held -= e.weight;
      this.map.delete(k);
    }
  }

  clear(): void {
    this.map.clear();
    this.held = 0;
  }

  /** Estimated bytes held (what the bound counts). */
  get bytes(): number {
    return this.held;
  }

  get size(): number {
    return this.map.size;
  }
}

/** Bytes of a string on the V8 heap: a header and one byte per char (two when not Latin-1; not checked, so a low guess there). */
export function weighString(s: string): number {
  return 16 + s.length;
}

/**
 * Bytes a Map of state (key → event id, or null for a removal in a delta) keeps alive: its hash
 * table (about 3 words per entry plus a bucket) and, with `ownStrings`, its keys and values —
 * counted for maps decoded from storage, whose strings are their own; a snapshot materialised from
 * another shares its strings with it, so only its table counts.
 */
export function weighStateMap(m: ReadonlyMap<string, string | null>, ownStrings: boolean): number {
  let bytes = 64 + m.size * 32;
  if (ownStrings) for (const [k, v] of m) bytes += weighString(k) + (v === null ? 0 : weighString(v));
  return bytes;
}
