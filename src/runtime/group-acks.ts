/**
 * Acknowledgements of one consumer group over a worker's shards, grouped (issue 23 item 1): the
 * XACKs an outbox reader makes in the same turn of the event loop (one group commit's outputs
 * read over many shards) go to Redis as ONE script call on a single Redis (ack-many-1.lua), not
 * one XACK per shard (TurnBatcher). On a Cluster each shard's stream is in its own slot: one XACK
 * each. An acknowledgement resolves once Redis has it, so a caller that acks after applying still
 * knows its entries are done when its promise resolves.
 */
import { isCluster, runScript, type RedisClient } from '../store/redis';
import { chunks, TurnBatcher } from '../store/turn-batcher';

interface Ack {
  stream: string;
  ids: string[];
}

/** Ids one grouped call carries at most (Lua's unpack takes ~8,000 values per call of XACK; a stream's ids are under 8,000). */
const MAX_IDS = 20_000;

export class GroupAcks {
  private readonly batcher: TurnBatcher<Ack, void>;

  constructor(
    private readonly redis: RedisClient,
    private readonly group: string,
  ) {
    this.batcher = new TurnBatcher<Ack, void>({
      split: (queued) => chunks(queued, (q) => q.item.ids.length, MAX_IDS),
      send: (call) => this.send(call),
    });
  }

  ack(stream: string, ids: string[]): Promise<void> {
    if (ids.length === 0) return Promise.resolve();
    if (isCluster(this.redis) || ids.length > 4000) return this.redis.xack(stream, this.group, ...ids).then(() => undefined);
    return this.batcher.add({ stream, ids });
  }

  private async send(call: Ack[]): Promise<void[]> {
    if (call.length === 1) await this.redis.xack(call[0]!.stream, this.group, ...call[0]!.ids);
    else await runScript(this.redis, 'ackMany', call.map((q) => q.stream), [this.group, ...call.map((q) => q.ids.length), ...call.flatMap((q) => q.ids)]);
    return new Array<void>(call.length);
  }
}
