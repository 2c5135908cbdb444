/**
 * The machinery every consumer-group reader of shard outboxes shares (as MembershipIndexReader
 * does it for room shards): the group created once per shard, entries left pending by a previous
 * holder claimed at attach, own pending entries retried before new ones, wake-ups coalesced while
 * a pump runs, entries acknowledged only after `apply` returns. `apply` must be idempotent: an
 * entry may be applied twice (a crash between applying and acknowledging, a handoff). The new
 * entries of the shards woken in one turn are read in one call and acknowledged in one call
 * (GroupReads, GroupAcks: one command each per turn on a single Redis, not one per shard).
 * A reader either runs this loop with its own group or is hosted by an OutboxReaderGroup
 * (src/readers/reader-group.ts), which runs it once for all the readers of a family (`hostedBy`)
 * and hands each reader the entries of the actor kinds it takes (`kinds`).
 */
import type { Logger } from 'pino';
import type { ShardReader } from '../runtime/worker';
import type { Family } from '../store/shards';
import { parseOutboxEntry, type OutboxEntry } from '../runtime/envelope';
import { decode } from '../store/codec';
import type { KeySpace } from '../store/keys';
import { bufferCommand, type RedisClient } from '../store/redis';
import { GroupReads } from '../runtime/group-reads';
import { GroupAcks } from '../runtime/group-acks';

interface ShardCursor {
  running: boolean;
  again: boolean;
  claim: boolean;
  /**
   * This consumer may have entries of its own pending (read, not acknowledged): only after a
   * batch failed. A pump reads them back (id `0`) only then; otherwise every wake-up paid an
   * empty XREADGROUP for them — one per reader per commit, and per shard on each idle poll.
   */
  pending: boolean;
  /** The group's creation (null until the first pump of a quiet attach). */
  ready: Promise<void> | null;
}

const BATCH = 200;

/**
 * An outbox entry's output, decoded; undefined when its body does not decode (the reader skips
 * it: reading it again cannot mend it, and one bad entry must not hold the outbox up).
 */
export function decodeOutput<T = unknown>(entry: OutboxEntry): T | undefined {
  try {
    return decode<T>(entry.body);
  } catch {
    return undefined;
  }
}

export abstract class OutboxGroupReader implements ShardReader {
  private readonly shards = new Map<number, ShardCursor>();
  private stopped = false;
  /**
   * The actor kinds (an outbox entry's `k`) whose outputs this reader applies; null: every kind.
   * A reader hosted by a shared group (OutboxReaderGroup) is only handed these entries; the entries
   * no reader of the group takes are acknowledged without their bodies being decoded.
   */
  readonly kinds: readonly string[] | null = null;
  /**
   * Set when the reader is one of an OutboxReaderGroup's: it then reads nothing itself (its
   * attach/detach/stop hooks still run, called by the group, which hands it its entries).
   */
  private hosted = false;
  /** New entries of the shards woken in one turn read in one call, their acks in one call (one Redis). */
  private readonly reads: GroupReads;
  private readonly acks: GroupAcks;

  constructor(
    readonly family: Family,
    readonly group: string,
    protected readonly redis: RedisClient,
    protected readonly keys: KeySpace,
    private readonly consumer: string,
    protected readonly log: Logger,
  ) {
    this.reads = new GroupReads(redis, group, consumer);
    this.acks = new GroupAcks(redis, group);
  }

  /** Whether onReconnect listens on the connection (from the first shard followed to stop()). */
  private listening = false;

  /**
   * The connection came back (or up): a read whose answer was lost with the old one may have run
   * in Redis — ioredis sends it again, and the second run finds nothing new — leaving its entries
   * pending for this consumer with nothing reading them. Every followed shard reads its own pending
   * entries first at its next pump, which this starts (or asks of a running one). They may come
   * after entries the resent read found; they are not left until the next attach.
   */
  private readonly onReconnect = (): void => {
    if (this.hosted || this.stopped) return;
    for (const [shard, cur] of this.shards) {
      cur.pending = true;
      if (cur.running) cur.again = true;
      else this.wake(shard);
    }
  };

  /** Apply one batch of entries (stream id, parsed entry or null when malformed) of a shard's outbox. */
  protected abstract apply(shard: number, entries: { id: string; entry: OutboxEntry | null }[]): Promise<void>;

  /**
   * Follow a shard's outbox. `quiet`: no Redis command now (a drain hands a worker hundreds of
   * shards at once); the group is created and the previous holder's entries claimed at the first
   * wake-up, which the worker's sweep gives every shard whose outbox this group has not finished.
   */
  attach(shard: number, opts: { quiet?: boolean } = {}): void {
    if (this.hosted || this.shards.has(shard) || this.stopped) return;
    // Only readers that read themselves listen (a shared group's members do not): one listener
    // per reading group on the worker's reader connection, not one per reader kind.
    if (!this.listening) {
      this.listening = true;
      this.redis.on('ready', this.onReconnect);
    }
    this.shards.set(shard, { running: false, again: false, claim: true, pending: true, ready: null });
    if (!opts.quiet) this.wake(shard);
  }

  /** Make this reader one of a shared group's (OutboxReaderGroup): from now on it reads nothing itself. */
  hostedBy(_group: ShardReader): void {
    this.hosted = true;
    this.shards.clear();
  }

  /** Whether this reader applies outputs of actor kind `kind`. */
  takes(kind: string): boolean {
    return this.kinds === null || this.kinds.includes(kind);
  }

  /** A batch handed over by the shared group hosting this reader (same contract as `apply`). */
  applyHosted(shard: number, entries: { id: string; entry: OutboxEntry | null }[]): Promise<void> {
    return this.apply(shard, entries);
  }

  protected createGroup(outbox: string): Promise<void> {
    return this.redis.xgroup('CREATE', outbox, this.group, '0', 'MKSTREAM').then(
      () => undefined,
      (e: Error) => {
        if (!String(e.message).includes('BUSYGROUP')) throw e;
      },
    );
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
    this.redis.off('ready', this.onReconnect);
  }

  private async pump(shard: number, cur: ShardCursor): Promise<void> {
    cur.running = true;
    const outbox = this.keys.shard(this.family, shard).outbox;
    try {
      cur.ready ??= this.createGroup(outbox);
      await cur.ready;
      do {
        cur.again = false;
        if (cur.claim) {
          await this.claimAll(shard, outbox);
          cur.claim = false;
        }
        for (const from of cur.pending ? ['0', '>'] : ['>']) {
          for (;;) {
            if (this.shards.get(shard) !== cur) return;
            let entries: [Buffer, Buffer[] | null][];
            if (from === '>') entries = await this.reads.read(outbox, BATCH);
            else {
              const res = (await bufferCommand(this.redis, 'xreadgroupBuffer')('GROUP', this.group, this.consumer, 'COUNT', BATCH, 'STREAMS', outbox, from)) as [Buffer, [Buffer, Buffer[] | null][]][] | null;
              entries = res?.[0]?.[1] ?? [];
            }
            if (entries.length) await this.applyAndAck(shard, outbox, entries);
            // A short read is the end for now: an entry appended since comes with a wake-up,
            // which sets `again` while this pump runs (no empty read to find the end).
            if (entries.length < BATCH) break;
          }
          if (from === '0') cur.pending = false;
        }
      } while (cur.again && this.shards.get(shard) === cur);
    } catch (e) {
      // What was read and not acknowledged is pending for this consumer: the next pump reads it
      // first. A failed creation is tried again by the next pump.
      cur.pending = true;
      if (this.shards.get(shard) === cur) cur.ready = null;
      this.log.warn({ err: e, shard: `${this.family}:${shard}`, group: this.group }, 'outbox reader: read failed; the next wake (or the sweep of the worker) retries');
    } finally {
      cur.running = false;
    }
  }

  private async claimAll(shard: number, outbox: string): Promise<void> {
    let cursor = '0-0';
    do {
      const res = (await bufferCommand(this.redis, 'xautoclaimBuffer')(outbox, this.group, this.consumer, 0, cursor, 'COUNT', BATCH)) as unknown as [Buffer, [Buffer, Buffer[] | null][], Buffer[]];
      cursor = res[0].toString();
      if (res[1].length) await this.applyAndAck(shard, outbox, res[1]);
      const deleted = (res[2] ?? []).map((b) => b.toString());
      if (deleted.length) await this.redis.xack(outbox, this.group, ...deleted);
    } while (cursor !== '0-0');
  }

  private async applyAndAck(shard: number, outbox: string, raw: [Buffer, Buffer[] | null][]): Promise<void> {
    const entries = raw.map(([id, fields]) => ({ id: id.toString(), entry: parseOutboxEntry(fields) }));
    await this.apply(shard, entries);
    await this.acks.ack(outbox, entries.map((e) => e.id));
  }
}
