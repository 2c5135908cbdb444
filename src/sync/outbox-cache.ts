/**
 * A front's shared read cache of shard outbox windows for /sync.
 *
 * When a message lands in a room with a thousand members, a thousand long-polls wake at once and
 * each reads the same room shard's outbox window — nearly the same ids, a thousand XRANGEs of the
 * same entries and a thousand msgpack decodes of each. This cache keeps, per outbox stream, the
 * entries with ids from `baseMs` up to `knownMs` (exclusive), complete: the first sync that reads
 * a stream loads its window from Redis (with the trimming check), later ones extend the cached
 * range with one XRANGE for the part past `knownMs` (concurrent extensions share one request),
 * and every window inside the range is answered from memory. Decoded outputs are kept with the
 * entries, so each entry is decoded once per front.
 *
 * Complete means complete: a sync's cut comes from Redis TIME taken before its reads, and every
 * entry with an id below the cut's millisecond exists by then (src/api/client/sync.ts), so once a
 * range [base, known) has been read it never gains entries. Trimming in Redis does not matter for
 * a range already held. The range's start moves up as entries age past `retentionMs` or the
 * stream holds more than `maxEntries`; a `since` before the start falls back to Redis.
 */
import { parseOutboxEntry, type OutboxEntry } from '../runtime/envelope';
import { decode } from '../store/codec';
import type { RedisClient } from '../store/redis';

export interface CachedEntry extends OutboxEntry {
  /** The entry's stream id (`<ms>-<seq>`). */
  id: string;
  /** Entry id's millisecond part. */
  ms: number;
  /** The decoded body (undefined until first asked; null when it does not decode). */
  decoded?: unknown;
}

interface StreamCache {
  entries: CachedEntry[];
  baseMs: number;
  knownMs: number;
  extending: { toMs: number; done: Promise<void> } | null;
  usedAt: number;
  /** What its entries are reckoned to weigh (`weighEntry`), counted in the cache's `maxBytes`. */
  bytes: number;
  /** Whether it is the stream's entry in the cache (its bytes counted in `held`). */
  held?: boolean;
}

export interface OutboxCacheOptions {
  /** Entries older than this (ms) leave the cache. */
  retentionMs: number;
  /** Entries kept per stream at most. */
  maxEntries: number;
  /** Streams kept at most (least recently used go first). */
  maxStreams: number;
  /** A window with this many entries or more is answered as a gap (null). */
  maxWindow: number;
  /**
   * Bytes all streams' entries may weigh (their bodies, and the decoded outputs kept with them):
   * past it the least recently used streams go, then the oldest half of the one left.
   */
  maxBytes?: number;
}

/** An entry's weight: its body, the decoded output kept with it (some three times the body), its id. */
function weighEntry(e: CachedEntry): number {
  return 160 + 4 * e.body.length;
}

function weighEntries(entries: CachedEntry[], from = 0, to = entries.length): number {
  let bytes = 0;
  for (let i = from; i < to; i++) bytes += weighEntry(entries[i]!);
  return bytes;
}

export function decodedBody<T>(e: CachedEntry | OutboxEntry): T | null {
  const c = e as CachedEntry;
  if (c.decoded === undefined) {
    try {
      c.decoded = decode(e.body);
    } catch {
      c.decoded = null;
    }
  }
  return c.decoded as T | null;
}

function parseRows(rows: [Buffer, Buffer[]][]): CachedEntry[] {
  const out: CachedEntry[] = [];
  for (const [rawId, fields] of rows) {
    const e = parseOutboxEntry(fields);
    if (!e) continue;
    const id = rawId.toString();
    // One object per entry (not the parsed one spread into another), with `decoded` in its shape from the start.
    out.push({ actorId: e.actorId, kind: e.kind, body: e.body, id, ms: Number(id.slice(0, id.indexOf('-'))), decoded: undefined });
  }
  return out;
}

/** First index whose ms is >= ms. */
function lowerBound(entries: CachedEntry[], ms: number): number {
  let lo = 0;
  let hi = entries.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (entries[mid]!.ms < ms) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export class OutboxWindowCache {
  private readonly streams = new Map<string, StreamCache>();
  /** Bytes the streams' entries weigh in all (see `maxBytes`). */
  private held = 0;
  /** Figures for tests and status: windows answered from memory / read from Redis. */
  hits = 0;
  misses = 0;

  constructor(
    private readonly redis: RedisClient,
    private readonly o: OutboxCacheOptions,
  ) {}

  /**
   * Entries with ids in [sinceMs, cutMs), or null when Redis no longer holds all of them
   * (trimmed at or after `sinceMs`) or there are too many: the caller answers a gap.
   */
  async window(stream: string, sinceMs: number, cutMs: number): Promise<CachedEntry[] | null> {
    if (sinceMs >= cutMs) return [];
    let c = this.streams.get(stream);
    if (c && sinceMs >= c.baseMs) {
      while (c.knownMs < cutMs && sinceMs >= c.baseMs) await this.extend(c, stream, cutMs);
      // Still complete from `since` (the byte bound or the retention may have moved the range's
      // start while it was being extended): answered from memory, else read from Redis below.
      if (sinceMs >= c.baseMs) {
        const answer = this.slice(c, sinceMs, cutMs);
        c.usedAt = Date.now();
        if (c.held && this.streams.get(stream) === c) {
          this.streams.delete(stream); // keep the map in use order (for LRU eviction)
          this.streams.set(stream, c);
        } else if (!this.streams.has(stream)) this.store(stream, c); // evicted while it was being extended
        this.hits++;
        return answer;
      }
    }
    this.misses++;
    const loaded = await this.readFromRedis(stream, sinceMs, cutMs);
    if (loaded === null) return null;
    // A window cut short by COUNT is not complete: answer the gap, cache nothing.
    if (loaded.length >= this.o.maxWindow) return null;
    // Start (or extend back) the cached range with what was just read, when the two touch.
    const now = Date.now();
    if (!c || c.knownMs <= cutMs) {
      // A copy: bounding the cache may drop entries from the front of what it holds, not from the answer.
      this.store(stream, { entries: loaded.slice(), baseMs: sinceMs, knownMs: cutMs, extending: null, usedAt: now, bytes: weighEntries(loaded) });
    } else if (cutMs >= c.baseMs && !c.extending) {
      const rest = c.entries.slice(lowerBound(c.entries, cutMs));
      const entries = [...loaded, ...rest];
      this.store(stream, { entries, baseMs: sinceMs, knownMs: c.knownMs, extending: null, usedAt: now, bytes: weighEntries(entries) });
    }
    return loaded;
  }

  /**
   * Where the cached part of `stream` ends (ms), when the cache holds it and is not extending it:
   * its next part can then be read elsewhere, with other reads (`absorb`).
   */
  knownEnd(stream: string): number | null {
    const c = this.streams.get(stream);
    return c && !c.extending ? c.knownMs : null;
  }

  /**
   * The entries of `stream` with ids in [fromMs, toMs), read elsewhere after a Redis TIME of
   * `toMs` (the /sync snapshot script): the cached range grows by them when it still ends at
   * `fromMs` (else they are dropped — an extension got there first — and nothing is lost: the
   * range is only ever complete). Saves the extension's XRANGE.
   */
  absorb(stream: string, fromMs: number, toMs: number, rows: [Buffer, Buffer[]][]): void {
    const c = this.streams.get(stream);
    if (!c || c.knownMs !== fromMs || toMs <= fromMs) return;
    this.grow(c, stream, parseRows(rows), toMs);
  }

  private grow(c: StreamCache, stream: string, added: CachedEntry[], toMs: number): void {
    c.entries.push(...added);
    c.knownMs = toMs;
    const bytes = weighEntries(added);
    c.bytes += bytes;
    if (c.held) this.held += bytes;
    this.trim(c);
    this.bound(stream);
  }

  private slice(c: StreamCache, sinceMs: number, cutMs: number): CachedEntry[] | null {
    const from = lowerBound(c.entries, sinceMs);
    const to = lowerBound(c.entries, cutMs);
    if (to - from >= this.o.maxWindow) return null;
    return c.entries.slice(from, to);
  }

  private extend(c: StreamCache, stream: string, cutMs: number): Promise<void> {
    if (c.extending && c.extending.toMs >= cutMs) return c.extending.done;
    if (c.extending) return c.extending.done; // wait for the one in flight, then look again
    const fromMs = c.knownMs;
    const done = (async () => {
      try {
        const rows = (await this.redis.xrangeBuffer(stream, `${fromMs}-0`, `(${cutMs}-0`)) as [Buffer, Buffer[]][];
        if (c.knownMs === fromMs) this.grow(c, stream, parseRows(rows), cutMs);
      } finally {
        c.extending = null;
      }
    })();
    c.extending = { toMs: cutMs, done };
    return done;
  }

  private trim(c: StreamCache): void {
    const oldest = Date.now() - this.o.retentionMs;
    let drop = 0;
    if (c.entries.length > this.o.maxEntries) drop = c.entries.length - Math.floor(this.o.maxEntries / 2);
    drop = Math.max(drop, lowerBound(c.entries, oldest));
    this.dropOldest(c, drop);
    if (oldest > c.baseMs) c.baseMs = Math.min(oldest, c.knownMs);
  }

  /** Drops a stream's `n` oldest entries: its range then starts after them. */
  private dropOldest(c: StreamCache, n: number): void {
    if (n <= 0) return;
    c.baseMs = Math.max(c.baseMs, c.entries[n - 1]!.ms + 1);
    const bytes = weighEntries(c.entries, 0, n);
    c.entries.splice(0, n);
    c.bytes -= bytes;
    if (c.held) this.held -= bytes;
  }

  private store(stream: string, c: StreamCache): void {
    this.remove(stream);
    this.streams.set(stream, c);
    c.held = true;
    this.held += c.bytes;
    while (this.streams.size > this.o.maxStreams) this.remove(this.streams.keys().next().value as string);
    this.bound(stream);
  }

  private remove(stream: string): void {
    const old = this.streams.get(stream);
    if (!old) return;
    this.held -= old.bytes;
    old.held = false;
    this.streams.delete(stream);
  }

  /**
   * Keeps the entries within `maxBytes`: the least recently used streams go first (a later sync
   * of theirs reads its window from Redis again), and when `keep` — the stream just used — is over
   * the bound alone, its older half.
   */
  private bound(keep: string): void {
    const max = this.o.maxBytes;
    if (max === undefined) return;
    for (const stream of [...this.streams.keys()]) {
      if (this.held <= max) return;
      if (stream !== keep) this.remove(stream);
    }
    const c = this.streams.get(keep);
    while (c && this.held > max && c.entries.length > 0) this.dropOldest(c, Math.ceil(c.entries.length / 2));
  }

  /** Bytes held in all (estimated; what `maxBytes` bounds). */
  get bytes(): number {
    return this.held;
  }

  /** The direct read: trimming check, then XRANGE of the window. */
  private async readFromRedis(stream: string, sinceMs: number, cutMs: number): Promise<CachedEntry[] | null> {
    const lost = await lostSince(this.redis, stream, sinceMs);
    if (lost === 'missing') return []; // no such stream: nothing was ever appended
    if (lost) return null;
    const rows = (await this.redis.xrangeBuffer(stream, `${sinceMs}-0`, `(${cutMs}-0`, 'COUNT', this.o.maxWindow)) as [Buffer, Buffer[]][];
    return parseRows(rows);
  }
}

/**
 * Whether a stream may have lost entries with ids at or after `sinceMs` (`missing`: no stream).
 * XTRIM does not move `max-deleted-entry-id` (Redis 7.0 moves it for XDEL only), so trimming is
 * seen from the counts: fewer entries than were ever added means the oldest ones went, all of
 * them below the first entry still there. Conservative: when the first remaining entry is after
 * `<sinceMs>-0`, the window may have lost some, and the caller answers a gap.
 */
export async function lostSince(redis: RedisClient, stream: string, sinceMs: number): Promise<boolean | 'missing'> {
  let info: unknown[];
  try {
    info = (await redis.xinfo('STREAM', stream)) as unknown[];
  } catch (e) {
    // Only "no such key" means no stream. Anything else (a command timeout while Redis stalls, a
    // dropped connection) must fail the read: taken for an empty window, the answer's token would
    // move past entries this client never got.
    if (e instanceof Error && /no such key/i.test(e.message)) return 'missing';
    throw e;
  }
  return lostFromInfo(info, sinceMs);
}

/** `lostSince` from a stream's `XINFO STREAM` reply (read elsewhere, e.g. in a script). */
export function lostFromInfo(info: unknown[], sinceMs: number): boolean {
  const f: Record<string, unknown> = {};
  for (let i = 0; i + 1 < info.length; i += 2) f[String(info[i])] = info[i + 1];
  const ms = (id: unknown) => Number(String(id ?? '0-0').split('-')[0]);
  const maxDeleted = String(f['max-deleted-entry-id'] ?? '0-0');
  if (maxDeleted !== '0-0' && ms(maxDeleted) >= sinceMs) return true;
  const length = Number(f.length ?? 0);
  const added = Number(f['entries-added'] ?? length);
  if (added <= length) return false;
  // Everything trimmed lies below the first entry left: nothing at or after `<sinceMs>-0` was lost
  // only when that first entry is `<sinceMs>-0` itself or earlier.
  const first = f['first-entry'] as [unknown, unknown] | null | undefined;
  const firstId = String(first ? first[0] : f['last-generated-id']);
  const firstMs = ms(firstId);
  return firstMs > sinceMs || (firstMs === sinceMs && firstId !== `${sinceMs}-0`);
}
