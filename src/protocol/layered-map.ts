/**
 * An immutable map built as a short chain of small deltas over a base, so a room actor's pure
 * `decide` can return "the state plus one event" without copying a 10,000-member state map each
 * time. Lookups walk at most MAX_DEPTH layers; the chain is flattened into a new base when it
 * grows past that, so a run of n changes costs O(n · size / MAX_DEPTH) in all, not O(n · size).
 */
const MAX_DEPTH = 32;
/**
 * A map this small is copied whole on a change instead of layered: copying it costs less than
 * the lookups walking layers would (a young room's state is a handful of entries, and every
 * event's auth checks look up several of them).
 */
const FLAT_SIZE = 32;
const REMOVED = Symbol('removed');

export class LayeredMap<V> {
  private constructor(
    private readonly parent: LayeredMap<V> | null,
    private readonly delta: Map<string, V | typeof REMOVED>,
    private readonly depth: number,
    readonly size: number,
  ) {}

  static from<V>(entries: Iterable<[string, V]> = []): LayeredMap<V> {
    const m = new Map<string, V | typeof REMOVED>(entries);
    return new LayeredMap<V>(null, m, 0, m.size);
  }

  get(key: string): V | undefined {
    for (let layer: LayeredMap<V> | null = this; layer; layer = layer.parent) {
      const v = layer.delta.get(key);
      if (v !== undefined) return v === REMOVED ? undefined : v;
    }
    return undefined;
  }

  has(key: string): boolean {
    return this.get(key) !== undefined;
  }

  /** A new map with `changes` applied (undefined removes a key). This map is unchanged. */
  with(changes: Iterable<[string, V | undefined]>): LayeredMap<V> {
    const delta = new Map<string, V | typeof REMOVED>();
    let size = this.size;
    for (const [k, v] of changes) {
      const prevInDelta = delta.get(k);
      const hadBefore = prevInDelta === undefined ? this.has(k) : prevInDelta !== REMOVED;
      if (v === undefined) {
        if (hadBefore) size--;
        delta.set(k, REMOVED);
      } else {
        if (!hadBefore) size++;
        delta.set(k, v);
      }
    }
    if (delta.size === 0) return this;
    if (size <= FLAT_SIZE) {
      const flat = new Map<string, V | typeof REMOVED>(this.entries());
      for (const [k, v] of delta) {
        if (v === REMOVED) flat.delete(k);
        else flat.set(k, v);
      }
      return new LayeredMap<V>(null, flat, 0, flat.size);
    }
    const next = new LayeredMap<V>(this, delta, this.depth + 1, size);
    return next.depth > MAX_DEPTH ? LayeredMap.from(next.entries()) : next;
  }

  /** Every live entry (newest layer wins). */
  *entries(): IterableIterator<[string, V]> {
    const seen = new Set<string>();
    for (let layer: LayeredMap<V> | null = this; layer; layer = layer.parent) {
      for (const [k, v] of layer.delta) {
        if (seen.has(k)) continue;
        seen.add(k);
        if (v !== REMOVED) yield [k, v];
      }
    }
  }

  toMap(): Map<string, V> {
    return new Map(this.entries());
  }
}
