/**
 * Acknowledgements of one consumer group over a worker's shards, grouped (issue 23 item 1): the
 * XACKs an outbox reader makes in the same turn of the event loop (one group commit's outputs
 * read over many shards) go to Redis as ONE script call on a single Redis (ack-many-1.lua), not
 * one XACK per shard. On a Cluster each shard's stream is in its own slot: one XACK each.
 * An acknowledgement resolves once Redis has it, so a caller that acks after applying still
 * knows its entries are done when its promise resolves.
 */
import { isCluster, runScript, type RedisClient } from '../store/redis';

interface Pending {
  stream: string;
  ids: string[];
  resolve: () => void;
  reject: (e: unknown) => void;
}

/** Ids one grouped call carries at most (Lua's unpack takes ~8,000 values per call of XACK; a stream's ids are under 8,000). */
const MAX_IDS = 20_000;

export class GroupAcks {
  private queued: Pending[] = [];
  private scheduled = false;

  constructor(
    private readonly redis: RedisClient,
    private readonly group: string,
  ) {}

  ack(stream: string, ids: string[]): Promise<void> {
    if (ids.length === 0) return Promise.resolve();
    if (isCluster(this.redis) || ids.length > 4000) return this.redis.xack(stream, this.group, ...ids).then(() => undefined);
    return new Promise((resolve, reject) => {
      this.queued.push({ stream, ids, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.scheduled = false;
    const queued = this.queued;
    this.queued = [];
    let call: Pending[] = [];
    let size = 0;
    for (const q of queued) {
      if (call.length && size + q.ids.length > MAX_IDS) {
        void this.send(call);
        call = [];
        size = 0;
      }
      call.push(q);
      size += q.ids.length;
    }
    if (call.length) void this.send(call);
  }

  private async send(call: Pending[]): Promise<void> {
    try {
      if (call.length === 1) await this.redis.xack(call[0]!.stream, this.group, ...call[0]!.ids);
      else await runScript(this.redis, 'ackMany', call.map((q) => q.stream), [this.group, ...call.map((q) => q.ids.length), ...call.flatMap((q) => q.ids)]);
    } catch (e) {
      for (const q of call) q.reject(e);
      return;
    }
    for (const q of call) q.resolve();
  }
}
