/**
 * Consumer-group reads of a worker's shards, grouped (issue 23 item 1): the shards woken in the
 * same turn of the event loop (one front's burst of sends over many shards; one group commit's
 * outputs over many outboxes) read their streams in ONE call on a single Redis, instead of one
 * command per shard (TurnBatcher). On a Cluster each shard's streams are in their own slot: one
 * read each, as before.
 *
 * The shards' inboxes (ShardRunner) read through `readInbox`: one MULTI per turn of
 * `inbox-read-2.lua` and a plain `XREADGROUP ... >` over the same inboxes. The script gives, for
 * each shard, the entries delivered above the last entry id the runner was given that are still
 * pending (for this consumer or another): in steady state none, one seek each. Such entries come
 * from a read whose answer was lost (the connection dropped after Redis ran it; ioredis aborts or
 * resends it, and a second run finds nothing new), or from a holder that stalled past its lease
 * and read on after the shard was taken (it cannot commit them: commits are fenced). They were
 * delivered before what the XREADGROUP gives, so they come first and an actor's messages stay in
 * order; MULTI keeps any other read out from between the two. The new entries go from Redis to
 * the worker as XREADGROUP answers them, not through Lua.
 * Each outbox reader group (OutboxGroupReader) reads with `read`: one `XREADGROUP ... STREAMS
 * <stream…> > …`.
 *
 * A grouped read that fails (one stream without its group, say) is retried as one read per
 * stream, so one shard's trouble does not hold back the others' reads; the inbox script fails
 * such a shard alone.
 */
import { bufferCommand, isCluster, isNoScript, loadScript, queueScriptBuffer, type RedisClient } from '../store/redis';
import { chunks, groupBy, Rejected, TurnBatcher } from '../store/turn-batcher';

export type StreamEntries = [Buffer, Buffer[] | null][];

/** inbox-read-2.lua's answer for one shard: 0, ['p', entries, counts, rows] or ['e', message]. */
type PendingReply = number | [Buffer, StreamEntries | Buffer, number[]?, number?];

interface Read {
  stream: string;
  count: number;
}

/** One shard's inbox read (`readInbox`). */
export interface InboxRead {
  inbox: string;
  /** The last inbox entry id the runner was given ('0-0': none): pending entries above it come first. */
  after: string;
  count: number;
}

/**
 * A shard's inbox read: the entries in id order — first the entries delivered above `after` that
 * were still pending (this consumer's, or another's, now claimed by this one), whose delivery
 * counts are `counts` (in order), then new ones (delivered once).
 */
export interface InboxEntries {
  entries: StreamEntries;
  counts: number[];
  /** A page of pending rows came first and the new entries were held back: read again, even if short. */
  more?: boolean;
}

/** Streams one grouped read names at most. */
const MAX_STREAMS = 512;

export class GroupReads {
  private readonly batcher: TurnBatcher<Read, StreamEntries>;
  private readonly inboxes: TurnBatcher<InboxRead, InboxEntries>;

  constructor(
    private readonly redis: RedisClient,
    private readonly group: string,
    private readonly consumer: string,
  ) {
    this.batcher = new TurnBatcher<Read, StreamEntries>({
      // COUNT applies to each stream of a read: the reads asking for the same count go together
      // (nearly always all of them: the runner's batch, unless its buffer is nearly full).
      split: (queued) => groupBy(queued, (q) => q.item.count).flatMap((g) => chunks(g, () => 1, MAX_STREAMS)),
      send: (call) => this.readMany(call),
    });
    this.inboxes = new TurnBatcher<InboxRead, InboxEntries>({
      split: (queued) => groupBy(queued, (q) => q.item.count).flatMap((g) => chunks(g, () => 1, MAX_STREAMS)),
      send: (call) => this.readInboxes(call),
    });
  }

  /** A shard's inbox read (see the header and InboxEntries), at most `count` entries. */
  readInbox(read: InboxRead): Promise<InboxEntries> {
    if (isCluster(this.redis)) return this.readInboxes([read]).then(([r]) => (r instanceof Rejected ? Promise.reject(r.error) : r!));
    return this.inboxes.add(read);
  }

  /**
   * One MULTI for `reads` (same count; one slot on a Cluster): the pending entries above each
   * shard's `after` (inbox-read-2.lua), then the new ones (XREADGROUP). One result each.
   */
  private async readInboxes(reads: InboxRead[], loaded = false): Promise<(InboxEntries | Rejected)[]> {
    // One inbox asked twice in a turn (it cannot be: a shard has one read at a time) would be
    // named twice; keep the first and give the other nothing.
    const seen = new Map<string, number>();
    const unique: InboxRead[] = [];
    for (const r of reads) {
      if (seen.has(r.inbox)) continue;
      seen.set(r.inbox, unique.length);
      unique.push(r);
    }
    const count = reads[0]!.count;
    const inboxes = unique.map((r) => r.inbox);
    const multi = this.redis.multi() as unknown as Record<string, (...a: unknown[]) => unknown> & { exec(): Promise<[Error | null, unknown][] | null> };
    queueScriptBuffer(multi, 'inboxRead', inboxes, [this.group, this.consumer, count, ...unique.map((r) => `(${r.after}`)]);
    multi.xreadgroupBuffer!('GROUP', this.group, this.consumer, 'COUNT', count, 'STREAMS', ...inboxes, ...inboxes.map(() => '>'));
    const res = await multi.exec();
    if (!res) throw new Error('inbox read: the transaction was discarded');
    const [[pendingErr, pending], [readErr, read]] = res as [[Error | null, PendingReply[]], [Error | null, [Buffer, StreamEntries][] | null]];
    if (pendingErr) {
      // The script is gone from the server (SCRIPT FLUSH): inside a MULTI ioredis does not fall
      // back to EVAL by itself, and every read of this connection would fail. Load it and read
      // again: what this transaction's XREADGROUP delivered is pending for this consumer above
      // `after`, so the read again gives it first.
      if (!loaded && isNoScript(pendingErr)) {
        await loadScript(this.redis, 'inboxRead', inboxes[0]!);
        return this.readInboxes(reads, true);
      }
      throw pendingErr;
    }
    if (readErr) {
      // One stream's trouble (no group, a key of the wrong type) fails the grouped XREADGROUP:
      // read each shard alone, so that it fails that shard only. What the script claimed above is
      // this consumer's and pending above `after`: the shard's own read gives it again.
      if (unique.length === 1) return reads.map((r) => (unique[0] === r ? new Rejected(readErr) : { entries: [], counts: [] }));
      return Promise.all(reads.map((r) => (unique[seen.get(r.inbox)!] === r ? this.readInboxes([r]).then(([one]) => one!) : { entries: [], counts: [] })));
    }
    const fresh = new Map<string, StreamEntries>();
    for (const [name, entries] of read ?? []) fresh.set(name.toString(), entries);
    return reads.map((r) => {
      const at = seen.get(r.inbox)!;
      if (unique[at] !== r) return { entries: [], counts: [] };
      const p = pending[at]!;
      const added = fresh.get(r.inbox) ?? [];
      if (!Array.isArray(p)) return { entries: added, counts: [] };
      if (p[0].toString() === 'e') return new Rejected(new Error(`inbox read of ${r.inbox}: ${(p[1] as Buffer).toString()}`));
      const before = p[1] as StreamEntries;
      // `count` pending rows: more may be pending above the last one (a stalled holder read on
      // batch after batch, or a lost read's resend finds its own entries and those it claimed).
      // The new entries would jump over them: leave them pending for this consumer, above the
      // last entry given, where the next read finds them first.
      if (Number(p[3]) >= r.count) return { entries: before, counts: (p[2] as number[]).map(Number), more: true };
      return { entries: added.length ? [...before, ...added] : before, counts: (p[2] as number[]).map(Number) };
    });
  }

  /** New entries of `stream` for this consumer (`>`), at most `count`. */
  read(stream: string, count: number): Promise<StreamEntries> {
    if (isCluster(this.redis)) return this.readOne(stream, count);
    return this.batcher.add({ stream, count });
  }

  private async readOne(stream: string, count: number): Promise<StreamEntries> {
    const res = (await bufferCommand(this.redis, 'xreadgroupBuffer')('GROUP', this.group, this.consumer, 'COUNT', count, 'STREAMS', stream, '>')) as [Buffer, StreamEntries][] | null;
    return res?.[0]?.[1] ?? [];
  }

  /** One call's reads (same count): one XREADGROUP; if it fails, one read per stream (each failing alone). */
  private async readMany(reads: Read[]): Promise<(StreamEntries | Rejected)[]> {
    const count = reads[0]!.count;
    if (reads.length === 1) return [await this.readOne(reads[0]!.stream, count)];
    // One stream asked twice in a turn (it cannot be: a shard has one read at a time) would be
    // named twice; keep the first and give the other nothing rather than send an odd command.
    const streams = [...new Set(reads.map((r) => r.stream))];
    let res: [Buffer, StreamEntries][] | null;
    try {
      res = (await bufferCommand(this.redis, 'xreadgroupBuffer')('GROUP', this.group, this.consumer, 'COUNT', count, 'STREAMS', ...streams, ...streams.map(() => '>'))) as [Buffer, StreamEntries][] | null;
    } catch {
      return Promise.all(reads.map((r) => this.readOne(r.stream, count).catch((e: unknown) => new Rejected(e))));
    }
    const got = new Map<string, StreamEntries>();
    for (const [name, entries] of res ?? []) got.set(name.toString(), entries);
    const seen = new Set<string>();
    return reads.map((r) => {
      if (seen.has(r.stream)) return [];
      seen.add(r.stream);
      return got.get(r.stream) ?? [];
    });
  }
}
