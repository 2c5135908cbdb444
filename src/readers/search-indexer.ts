/**
 * The search reader: a consumer group on the room outboxes that keeps each room's inverted index
 * (src/search/index-store.ts; keys `searchData` on the room's own shard, so the index spreads over
 * a Redis Cluster with the rooms). For every timeline event with searchable text — a message's
 * body, a room's name or topic — it indexes the event's terms; an edit (`m.replace` carrying
 * `m.new_content`, by the original's sender) indexes the new text for the ORIGINAL event, which
 * keeps its place and is then found by its new words only; a redaction takes the redacted event
 * out for good. Encrypted events (`m.room.encrypted`) have no text to index and are skipped.
 *
 * Batched: the new documents of a batch of entries (up to 200 of a shard) are indexed with one
 * script call per room (`SearchIndexStore.indexNew`), not a record read and a script call each.
 *
 * Idempotent: each write says which content it indexes (the timeline position of the event that
 * carried it) and search-index-5.lua ignores content no newer than what is there (a new document
 * the room has a record for already is left alone), so a batch read again after a crash or a
 * handoff counts nothing twice.
 *
 * Behind a purge: the outbox keeps a purged room's entries, and this reader may read them after
 * the purge began or ended; search-index-5.lua writes nothing of a room whose members hash is gone
 * (actors/room.ts decidePurgeBegin deletes it first), so no index key of the room comes back
 * behind the purge's scan.
 *
 * Upgrades: on taking a room shard it checks, in the background, that the shard's rooms are
 * indexed in the current format, and rebuilds those that are not (src/search/migrate.ts:
 * resumable, progress logged; queries read those rooms' stored events meanwhile).
 */
import type { Logger } from 'pino';
import type { RoomOutput } from '../rooms/model';
import type { OutboxEntry } from '../runtime/envelope';
import { indexRoomOutput, newDocumentOf, SearchIndexStore, type IndexedDocument } from '../search/index-store';
import { migrateShard } from '../search/migrate';
import { decode } from '../store/codec';
import { SEARCH_INDEX_GROUP, type KeySpace } from '../store/keys';
import type { RedisClient } from '../store/redis';
import { RoomReader } from '../store/room-reader';
import type { Family } from '../store/shards';
import { OutboxGroupReader } from './outbox-group-reader';

export class SearchIndexReader extends OutboxGroupReader {
  override readonly kinds: readonly string[] = ['room'];
  private readonly store: SearchIndexStore;
  private readonly rooms: RoomReader;

  /** Shards held now, each with its migration check (running or done) while held. */
  private readonly held = new Map<number, { timer: NodeJS.Timeout | null; running: boolean }>();
  private halted = false;

  constructor(
    redis: RedisClient,
    keys: KeySpace,
    private readonly shardCounts: Record<Family, number>,
    consumer: string,
    log: Logger,
    /** Longest delay before a shard taken quietly (a drain hands over hundreds) is checked, spread at random. */
    private readonly migrationSpreadMs = 5_000,
  ) {
    super('room', SEARCH_INDEX_GROUP, redis, keys, consumer, log);
    this.store = new SearchIndexStore(redis, keys, shardCounts.room);
    this.rooms = new RoomReader(redis, keys, shardCounts.room);
  }

  override attach(shard: number, opts: { quiet?: boolean } = {}): void {
    super.attach(shard, opts);
    if (this.halted || this.held.has(shard)) return;
    const state = { timer: null as NodeJS.Timeout | null, running: false };
    this.held.set(shard, state);
    const delay = opts.quiet ? Math.random() * this.migrationSpreadMs : 0;
    state.timer = setTimeout(() => {
      state.timer = null;
      void this.migrate(shard, state);
    }, delay);
    state.timer.unref();
  }

  override detach(shard: number): void {
    super.detach(shard);
    const state = this.held.get(shard);
    if (state?.timer) clearTimeout(state.timer);
    this.held.delete(shard);
  }

  override async stop(): Promise<void> {
    this.halted = true;
    for (const state of this.held.values()) if (state.timer) clearTimeout(state.timer);
    this.held.clear();
    await super.stop();
  }

  /** Bring the shard's rooms to the current index format (again later if Redis failed meanwhile). */
  private async migrate(shard: number, state: { timer: NodeJS.Timeout | null; running: boolean }): Promise<void> {
    const active = () => !this.halted && this.held.get(shard) === state;
    if (!active() || state.running) return;
    state.running = true;
    try {
      await migrateShard(this.redis, this.keys, this.shardCounts, shard, this.log, { active });
    } catch (e) {
      this.log.warn({ shard, err: (e as Error).message }, 'search index: migration interrupted, retrying in 10 s');
      if (active()) {
        state.timer = setTimeout(() => {
          state.timer = null;
          void this.migrate(shard, state);
        }, 10_000);
        state.timer.unref();
      }
    } finally {
      state.running = false;
    }
  }

  /**
   * A batch of a shard's entries, in order: the new documents (messages, names, topics: the usual
   * case) gathered and indexed together (`indexNew`: one script call per room of the batch, all
   * sent at once), an edit or a redaction one at a time as before — after the documents gathered
   * before it, so everything applies in the outbox's order.
   */
  protected async apply(_shard: number, entries: { id: string; entry: OutboxEntry | null }[]): Promise<void> {
    let fresh: IndexedDocument[] = [];
    const flush = async () => {
      if (fresh.length) await this.store.indexNew(fresh);
      fresh = [];
    };
    for (const { entry } of entries) {
      if (!entry || entry.kind !== 'room') continue;
      let out: RoomOutput;
      try {
        out = decode<RoomOutput>(entry.body);
      } catch {
        continue;
      }
      if (typeof out?.eventId !== 'string' || !out.event || typeof out.roomId !== 'string' || typeof out.pos !== 'number') continue;
      const doc = newDocumentOf(out);
      if (doc) {
        fresh.push(doc);
        continue;
      }
      await flush();
      await indexRoomOutput(this.store, this.rooms, out);
    }
    await flush();
  }
}
