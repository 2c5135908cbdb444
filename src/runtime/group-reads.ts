/**
 * Consumer-group reads of a worker's shards, grouped (issue 23 item 1): the shards woken in the
 * same turn of the event loop (one front's burst of sends over many shards; one group commit's
 * outputs over many outboxes) read their streams in ONE call on a single Redis, instead of one
 * command per shard (TurnBatcher). On a Cluster each shard's streams are in their own slot: one
 * read each, as before.
 *
 * The shards' inboxes (ShardRunner) read through `readInbox`: one `inbox-read-1.lua` call per turn
 * that checks each shard's lease (a holder that lost it reads nothing) and gives first this
 * consumer's own pending entries above the last entry id the runner was given, then new ones
 * (`>`). An `XREADGROUP '>'` whose answer was lost (the connection dropped after Redis ran it; ioredis
 * sends it again and the second run finds nothing new) leaves its entries pending for this
 * consumer: the next read, or the resent one, gives them, before the actor's later messages.
 * Each outbox reader group (OutboxGroupReader) reads with `read`: one `XREADGROUP ... STREAMS
 * <stream…> > …`.
 *
 * A grouped read that fails (one stream without its group, say) is retried as one read per
 * stream, so one shard's trouble does not hold back the others' reads; the inbox script fails
 * such a shard alone.
 */
import { bufferCommand, isCluster, runScriptBuffer, type RedisClient } from '../store/redis';
import { chunks, groupBy, Rejected, TurnBatcher } from '../store/turn-batcher';

export type StreamEntries = [Buffer, Buffer[] | null][];

interface Read {
  stream: string;
  count: number;
}

/** One shard's inbox read (`readInbox`). */
export interface InboxRead {
  inbox: string;
  /** The shard's lease hash: the read is fenced by its owner (this consumer) and token. */
  lease: string;
  token: string;
  /** The last inbox entry id the runner was given ('0-0': none): own pending entries above it come first. */
  after: string;
  count: number;
}

/**
 * A shard's inbox read: the entries in id order — first this consumer's pending entries above
 * `after`, whose delivery counts are `counts` (in order), then new ones (delivered once) — or
 * 'stale' when the lease is not this worker's with that token (nothing was read).
 */
export type InboxEntries = { status: 'ok'; entries: StreamEntries; counts: number[] } | { status: 'stale'; owner: string };

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

  /** One call of the inbox script for `reads` (same count; one slot on a Cluster): one result each. */
  private async readInboxes(reads: InboxRead[]): Promise<(InboxEntries | Rejected)[]> {
    // One inbox asked twice in a turn (it cannot be: a shard has one read at a time) would read
    // its own pending entries twice; keep the first and give the other nothing.
    const seen = new Map<string, number>();
    const unique: InboxRead[] = [];
    for (const r of reads) {
      if (seen.has(r.inbox)) continue;
      seen.set(r.inbox, unique.length);
      unique.push(r);
    }
    const res = (await runScriptBuffer(
      this.redis,
      'inboxRead',
      unique.flatMap((r) => [r.inbox, r.lease]),
      [this.group, this.consumer, reads[0]!.count, ...unique.flatMap((r) => [r.token, r.after])],
    )) as [Buffer, StreamEntries | Buffer, number[]?][];
    return reads.map((r) => {
      const at = seen.get(r.inbox)!;
      if (unique[at] !== r) return { status: 'ok', entries: [], counts: [] };
      const [status, body, counts] = res[at]!;
      switch (status.toString()) {
        case 'ok':
          return { status: 'ok', entries: body as StreamEntries, counts: (counts ?? []).map(Number) };
        case 'stale':
          return { status: 'stale', owner: (body as Buffer).toString() };
        default:
          return new Rejected(new Error(`inbox read of ${r.inbox}: ${(body as Buffer).toString()}`));
      }
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
