/**
 * The inbox reads of a worker's shards, grouped: the shards woken in the same turn of the event
 * loop (one front's burst of sends over many shards) read their inboxes in ONE `XREADGROUP ...
 * STREAMS <inbox…> > …` on a single Redis, instead of one command per shard. On a Cluster each
 * shard's inbox is in its own slot: one read each, as before.
 *
 * A grouped read that fails (one inbox without its group, say) is retried as one read per inbox,
 * so one shard's trouble does not hold back the others' reads.
 */
import { bufferCommand, isCluster, type RedisClient } from '../store/redis';

export type InboxEntries = [Buffer, Buffer[] | null][];

interface Pending {
  inbox: string;
  count: number;
  resolve: (e: InboxEntries) => void;
  reject: (e: unknown) => void;
}

/** Inboxes one grouped read names at most. */
const MAX_STREAMS = 512;

export class InboxReads {
  private queued: Pending[] = [];
  private scheduled = false;

  constructor(
    private readonly redis: RedisClient,
    private readonly group: string,
    private readonly consumer: string,
  ) {}

  /** New entries of `inbox` for this consumer (`>`), at most `count`. */
  read(inbox: string, count: number): Promise<InboxEntries> {
    if (isCluster(this.redis)) return this.readOne(inbox, count);
    return new Promise((resolve, reject) => {
      this.queued.push({ inbox, count, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private async readOne(inbox: string, count: number): Promise<InboxEntries> {
    const res = (await bufferCommand(this.redis, 'xreadgroupBuffer')('GROUP', this.group, this.consumer, 'COUNT', count, 'STREAMS', inbox, '>')) as [Buffer, InboxEntries][] | null;
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
      return this.readOne(r.inbox, count).then(r.resolve, r.reject);
    }
    // One inbox asked twice in a turn (it cannot be: a runner has one read at a time) would be
    // named twice; keep the first and give the other nothing rather than send an odd command.
    const streams = [...new Set(reads.map((r) => r.inbox))];
    let res: [Buffer, InboxEntries][] | null;
    try {
      res = (await bufferCommand(this.redis, 'xreadgroupBuffer')('GROUP', this.group, this.consumer, 'COUNT', count, 'STREAMS', ...streams, ...streams.map(() => '>'))) as [Buffer, InboxEntries][] | null;
    } catch {
      for (const r of reads) this.readOne(r.inbox, count).then(r.resolve, r.reject);
      return;
    }
    const got = new Map<string, InboxEntries>();
    for (const [name, entries] of res ?? []) got.set(name.toString(), entries);
    const seen = new Set<string>();
    for (const r of reads) {
      if (seen.has(r.inbox)) {
        r.resolve([]);
        continue;
      }
      seen.add(r.inbox);
      r.resolve(got.get(r.inbox) ?? []);
    }
  }
}
