/**
 * Consumer-group reads of a worker's shards, grouped (issue 23 item 1): the shards woken in the
 * same turn of the event loop (one front's burst of sends over many shards; one group commit's
 * outputs over many outboxes) read their streams in ONE `XREADGROUP ... STREAMS <stream…> > …` on
 * a single Redis, instead of one command per shard (TurnBatcher). On a Cluster each shard's
 * streams are in their own slot: one read each, as before. Used for the shards' inboxes
 * (ShardRunner) and by each outbox reader group (OutboxGroupReader).
 *
 * A grouped read that fails (one stream without its group, say) is retried as one read per
 * stream, so one shard's trouble does not hold back the others' reads.
 */
import { bufferCommand, isCluster, type RedisClient } from '../store/redis';
import { chunks, groupBy, Rejected, TurnBatcher } from '../store/turn-batcher';

export type StreamEntries = [Buffer, Buffer[] | null][];

interface Read {
  stream: string;
  count: number;
}

/** Streams one grouped read names at most. */
const MAX_STREAMS = 512;

export class GroupReads {
  private readonly batcher: TurnBatcher<Read, StreamEntries>;

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
