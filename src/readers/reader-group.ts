/**
 * One consumer group for the outbox readers of a family in a worker process (issue 23 item 1).
 * Before, each reader was its own group on each outbox: every committed output was read
 * (XREADGROUP) and acknowledged (XACK) once per reader, each read making pending-list records in
 * each group — in `bench:runtime`, 3.9 acknowledgements per message, the largest Redis cost the
 * raw Streams baseline does not have. Here the group reads each outbox once and hands every entry
 * to each reader whose `kinds` take it (the entry's actor kind, `k`, read without decoding the
 * body: entries no reader takes are acknowledged undecoded), and acknowledges a batch only once
 * every reader that takes any of its entries has applied it.
 *
 * Guarantees, as with a group per reader (OutboxGroupReader): an entry is acknowledged only after
 * being applied; a crash between applying and acknowledging, or a handoff (the new holder claims
 * the previous one's pending entries), applies it again, which every reader tolerates (they apply
 * idempotently). A reader that fails a batch leaves the batch pending (the group's pump stops and
 * retries it first, as before); the readers that had applied it are not given it again on that
 * retry (`owed`: which readers still owe which entries, per shard, in memory — after a crash or a
 * handoff the new holder does not know, and every reader re-applies, idempotently). A reader
 * failing keeps the shard's other readers waiting until it succeeds, as the one outbox is read in
 * order once: the price of reading it once.
 *
 * The readers of a batch run concurrently and the next batch is read when the slowest is done, so
 * a slow reader sets the pace of the others on that shard. That is why the push evaluator is not
 * hosted (src/readers/index.ts): its cost grows with a room's members (a 1,000-member room records
 * a notification per member and event) and the membership index, the federation sender or the
 * recency index must not wait for it; it keeps its own group (and its own progress mark, which
 * /sync waits for). The other readers are cheap per entry (an index write, a tell), so one pace
 * costs them little.
 *
 * Rolling upgrade: the group is created at a shard's first read by reader-group-1.lua where the
 * hosted readers' own groups of before had got to (the slowest one's last delivered id, or the
 * entry before its oldest pending one), and those groups are removed (they would hold back the
 * outbox trim forever). The script runs at each attach, so groups an older worker re-creates
 * while it holds the shard during the upgrade go too.
 */
import type { Logger } from 'pino';
import type { OutboxEntry } from '../runtime/envelope';
import type { Family } from '../store/shards';
import { OUTBOX_READERS_GROUP, type KeySpace } from '../store/keys';
import { runScript, type RedisClient } from '../store/redis';
import { OutboxGroupReader } from './outbox-group-reader';

type Entries = { id: string; entry: OutboxEntry | null }[];

export class OutboxReaderGroup extends OutboxGroupReader {
  /** Per shard, per entry id of a failed batch: the readers that have still to apply it. */
  private readonly owed = new Map<number, Map<string, Set<OutboxGroupReader>>>();

  constructor(
    family: Family,
    readonly members: OutboxGroupReader[],
    redis: RedisClient,
    keys: KeySpace,
    consumer: string,
    log: Logger,
  ) {
    super(family, OUTBOX_READERS_GROUP, redis, keys, consumer, log);
    for (const m of members) {
      if (m.family !== family) throw new Error(`reader group ${family}: reader ${m.group} follows ${m.family} outboxes`);
      m.hostedBy(this);
    }
  }

  /**
   * The kinds some member applies: a commit of any other kind does not wake the group (the worker's
   * sweep, or the next commit of a kind taken, reads and acknowledges those entries in bulk).
   */
  override takes(kind: string): boolean {
    // Asked at every commit that has outputs: remembered per kind (members' kinds do not change).
    let t = this.takesKind.get(kind);
    if (t === undefined) this.takesKind.set(kind, (t = this.members.some((m) => m.takes(kind))));
    return t;
  }

  private readonly takesKind = new Map<string, boolean>();

  override attach(shard: number, opts: { quiet?: boolean } = {}): void {
    for (const m of this.members) m.attach(shard, opts);
    super.attach(shard, opts);
  }

  override detach(shard: number): void {
    super.detach(shard);
    this.owed.delete(shard);
    for (const m of this.members) m.detach(shard);
  }

  override async stop(): Promise<void> {
    await super.stop();
    this.owed.clear();
    await Promise.all(this.members.map((m) => m.stop().catch(() => undefined)));
  }

  /** The shared group, created where the readers' own groups had got to; those groups removed. */
  protected override async createGroup(outbox: string): Promise<void> {
    const [created, removed] = (await runScript(this.redis, 'readerGroup', [outbox], [this.group, ...this.members.map((m) => m.group)])) as [number, number];
    if (removed > 0) this.log.info({ outbox, created: created === 1, removed }, 'outbox readers: their own consumer groups replaced by the shared group');
  }

  protected async apply(shard: number, entries: Entries): Promise<void> {
    const owed = this.owed.get(shard);
    const given = new Map<OutboxGroupReader, Entries>();
    for (const m of this.members) given.set(m, []);
    for (const e of entries) {
      // A malformed entry (no body) is nobody's: every reader skipped it before.
      if (!e.entry) continue;
      const still = owed?.get(e.id);
      for (const m of this.members) if (m.takes(e.entry.kind) && (!still || still.has(m))) given.get(m)!.push(e);
    }
    const failed = new Set<OutboxGroupReader>();
    let error: unknown = null;
    await Promise.all(
      [...given].map(async ([m, mine]) => {
        if (mine.length === 0) return;
        try {
          await m.applyHosted(shard, mine);
        } catch (e) {
          failed.add(m);
          error ??= e;
          this.log.warn({ err: e, shard: `${this.family}:${shard}`, reader: m.group }, 'outbox reader failed a batch; it is retried (for the readers that failed it only)');
        }
      }),
    );
    if (failed.size === 0) {
      if (owed) {
        for (const e of entries) owed.delete(e.id);
        if (owed.size === 0) this.owed.delete(shard);
      }
      return;
    }
    // Only the failed readers owe this batch now; the batch stays pending (the throw) and the
    // pump reads it again first.
    const next = owed ?? new Map<string, Set<OutboxGroupReader>>();
    for (const e of entries) {
      const still = new Set<OutboxGroupReader>();
      for (const m of failed) if (given.get(m)!.some((x) => x.id === e.id)) still.add(m);
      next.set(e.id, still);
    }
    this.owed.set(shard, next);
    throw error;
  }
}
