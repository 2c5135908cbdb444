/**
 * Consumer-group reads of a worker's shards, grouped (issue 23 item 1): the shards woken in the
 * same turn of the event loop (one front's burst of sends over many shards; one group commit's
 * outputs over many outboxes) read their streams in ONE `XREADGROUP ... STREAMS <stream…> > …` on
 * a single Redis, instead of one command per shard. On a Cluster each shard's streams are in
 * their own slot: one read each, as before. Used for the shards' inboxes (ShardRunner) and by each
 * outbox reader group (OutboxGroupReader).
 *
 * A grouped read that fails (one stream without its group, say) is retried as one read per
 * stream, so one shard's trouble does not hold back the others' reads.
 */
import { bufferCommand, isCluster, type RedisClient } from '../store/redis';

export type StreamEntries = [Buffer, Buffer[] | null][];

interface Pending {
  stream: string;
  count: number;
  resolve: (e: StreamEntries) => void;
  reject: (e: unknown) => void;
}

/** Streams one grouped read names at most. */
const MAX_STREAMS = 512;

export class GroupReads {
  private queued: Pending[] = [];
  private scheduled = false;

  constructor(
    private readonly redis: RedisClient,
    private readonly group: string,
    private readonly consumer: string,
  ) {}

  /** New entries of `stream` for this consumer (`>`), at most `count`. */
  read(stream: string, count: number): Promise<StreamEntries> {
    if (isCluster(this.redis)) return this.readOne(stream, count);
    return new Promise((resolve, reject) => {
      this.queued.push({ stream, count, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private async readOne(stream: string, count: number): Promise<StreamEntries> {
    const res = (await bufferCommand(this.redis, 'xreadgroupBuffer')('GROUP', this.group, this.consumer, 'COUNT', count, 'STREAMS', stream, '>')) as [Buffer, StreamEntries][] | null;
    return res?.[0]?.[1] ?? [];
  }

  private flush(): void {
    this.scheduled = false;
    const queued = this.queued;
    this.queued = [];
    // COUNT applies to each stream of a read: the reads asking for the same count go together
    // (nearly always all of them: the runner's batch, unless its buffer is nearly full).
    const byCount = new Map<number, Pending[]>();
    for (const q of queued) {
      const g = byCount.get(q.count);
      if (g) g.push(q);
      else byCount.set(q.count, [q]);
    }
    for (const [count, reads] of byCount) {
      for (let i = 0; i < reads.length; i += MAX_STREAMS) void this.readMany(count, reads.slice(i, i + MAX_STREAMS));
    }
  }

  private async readMany(count: number, reads: Pending[]): Promise<void> {
    if (reads.length === 1) {
      const r = reads[0]!;
      return this.readOne(r.stream, count).then(r.resolve, r.reject);
    }
    // One stream asked twice in a turn (it cannot be: a shard has one read at a time) would be
    // named twice; keep the first and give the other nothing rather than send an odd command.
    const streams = [...new Set(reads.map((r) => r.stream))];
    let res: [Buffer, StreamEntries][] | null;
    try {
      res = (await bufferCommand(this.redis, 'xreadgroupBuffer')('GROUP', this.group, this.consumer, 'COUNT', count, 'STREAMS', ...streams, ...streams.map(() => '>'))) as [Buffer, StreamEntries][] | null;
    } catch {
      for (const r of reads) this.readOne(r.stream, count).then(r.resolve, r.reject);
      return;
    }
    const got = new Map<string, StreamEntries>();
    for (const [name, entries] of res ?? []) got.set(name.toString(), entries);
    const seen = new Set<string>();
    for (const r of reads) {
      if (seen.has(r.stream)) {
        r.resolve([]);
        continue;
      }
      seen.add(r.stream);
      r.resolve(got.get(r.stream) ?? []);
    }
  }
}
