/**
 * The common loop of an outbox reader: one consumer group over the outboxes of the shards a
 * worker owns (of one family). The worker attaches it to a shard when it takes the shard, wakes it
 * after every commit that produced outputs (and on its backstop poll), and detaches it when the
 * shard goes. At attach it first claims entries a previous holder left pending; then it reads its
 * own pending entries (an apply that failed) and new ones, in batches, acknowledging each batch
 * after `apply` returns. Appliers must be idempotent: an entry may be applied twice (a crash
 * between apply and ack, two holders during a handoff).
 */
import type { Logger } from 'pino';
import type { Family } from '../runtime/shards';
import type { ShardReader } from '../runtime/worker';
import type { KeySpace } from '../store/keys';
import { bufferCommand, type RedisClient } from '../store/redis';

export type RawEntry = [Buffer, Buffer[] | null];

interface ShardCursor {
  running: boolean;
  again: boolean;
  claim: boolean;
  ready: Promise<void>;
}

const BATCH = 200;

export abstract class OutboxGroupReader implements ShardReader {
  private readonly shards = new Map<number, ShardCursor>();
  private stopped = false;

  constructor(
    readonly family: Family,
    /** The consumer group's name (one per reader kind: each kind sees every entry). */
    private readonly group: string,
    protected readonly redis: RedisClient,
    protected readonly keys: KeySpace,
    private readonly consumer: string,
    protected readonly log: Logger,
  ) {}

  /** Apply a batch of entries of one shard's outbox (acknowledged when this resolves). */
  protected abstract apply(shard: number, entries: RawEntry[]): Promise<void>;

  attach(shard: number): void {
    if (this.shards.has(shard) || this.stopped) return;
    const outbox = this.keys.shard(this.family, shard).outbox;
    const ready = this.redis.xgroup('CREATE', outbox, this.group, '0', 'MKSTREAM').then(
      () => undefined,
      (e: Error) => {
        if (!String(e.message).includes('BUSYGROUP')) throw e;
      },
    );
    this.shards.set(shard, { running: false, again: false, claim: true, ready });
    this.wake(shard);
  }

  detach(shard: number): void {
    this.shards.delete(shard);
  }

  wake(shard: number): void {
    const cur = this.shards.get(shard);
    if (!cur || this.stopped) return;
    if (cur.running) {
      cur.again = true;
      return;
    }
    void this.pump(shard, cur);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.shards.clear();
  }

  private async pump(shard: number, cur: ShardCursor): Promise<void> {
    cur.running = true;
    const outbox = this.keys.shard(this.family, shard).outbox;
    try {
      await cur.ready;
      do {
        cur.again = false;
        if (cur.claim) {
          await this.claimAll(shard, outbox);
          cur.claim = false;
        }
        // Own pending entries first (a failed apply earlier), then new ones.
        for (const from of ['0', '>']) {
          for (;;) {
            if (this.shards.get(shard) !== cur) return;
            const res = (await bufferCommand(this.redis, 'xreadgroupBuffer')('GROUP', this.group, this.consumer, 'COUNT', BATCH, 'STREAMS', outbox, from)) as [Buffer, RawEntry[]][] | null;
            const entries = res?.[0]?.[1] ?? [];
            if (entries.length === 0) break;
            await this.applyAndAck(shard, outbox, entries);
            if (from === '0' && entries.length < BATCH) break;
          }
        }
      } while (cur.again && this.shards.get(shard) === cur);
    } catch (e) {
      this.log.warn({ err: e, shard: `${this.family}:${shard}`, group: this.group }, 'outbox reader: read or apply failed; the next wake retries');
    } finally {
      cur.running = false;
    }
  }

  private async applyAndAck(shard: number, outbox: string, entries: RawEntry[]): Promise<void> {
    await this.apply(shard, entries);
    const ids = entries.map(([id]) => id.toString());
    if (ids.length) await this.redis.xack(outbox, this.group, ...ids);
  }

  /** Take over entries left pending by other consumers (the shard's previous holder). */
  private async claimAll(shard: number, outbox: string): Promise<void> {
    let cursor = '0-0';
    do {
      const res = (await bufferCommand(this.redis, 'xautoclaimBuffer')(outbox, this.group, this.consumer, 0, cursor, 'COUNT', BATCH)) as unknown as [Buffer, RawEntry[], Buffer[]];
      cursor = res[0].toString();
      if (res[1].length) await this.applyAndAck(shard, outbox, res[1]);
      const deleted = (res[2] ?? []).map((b) => b.toString());
      if (deleted.length) await this.redis.xack(outbox, this.group, ...deleted);
    } while (cursor !== '0-0');
  }
}
