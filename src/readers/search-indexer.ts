/**
 * The search reader: a consumer group on the room outboxes that keeps each room's inverted index
 * (src/search/index-store.ts; keys `searchData` on the room's own shard, so the index spreads over
 * a Redis Cluster with the rooms). For every timeline event with searchable text — a message's
 * body, a room's name or topic — it indexes the event's terms; an edit (`m.replace` carrying
 * `m.new_content`, by the original's sender) indexes the new text for the ORIGINAL event, which
 * keeps its place and is then found by its new words only; a redaction takes the redacted event
 * out for good. Encrypted events (`m.room.encrypted`) have no text to index and are skipped.
 *
 * Idempotent: each write says which content it indexes (the timeline position of the event that
 * carried it) and search-index-1.lua ignores content no newer than what is there, so a batch read
 * again after a crash or a handoff counts nothing twice.
 */
import type { Logger } from 'pino';
import type { RoomOutput } from '../rooms/model';
import type { OutboxEntry } from '../runtime/envelope';
import { indexRoomOutput, SearchIndexStore } from '../search/index-store';
import { decode } from '../store/codec';
import { SEARCH_INDEX_GROUP, type KeySpace } from '../store/keys';
import type { RedisClient } from '../store/redis';
import { RoomReader } from '../store/room-reader';
import type { Family } from '../store/shards';
import { OutboxGroupReader } from './outbox-group-reader';

export class SearchIndexReader extends OutboxGroupReader {
  private readonly store: SearchIndexStore;
  private readonly rooms: RoomReader;

  constructor(redis: RedisClient, keys: KeySpace, shardCounts: Record<Family, number>, consumer: string, log: Logger) {
    super('room', SEARCH_INDEX_GROUP, redis, keys, consumer, log);
    this.store = new SearchIndexStore(redis, keys, shardCounts.room);
    this.rooms = new RoomReader(redis, keys, shardCounts.room);
  }

  protected async apply(_shard: number, entries: { id: string; entry: OutboxEntry | null }[]): Promise<void> {
    for (const { entry } of entries) {
      if (!entry || entry.kind !== 'room') continue;
      let out: RoomOutput;
      try {
        out = decode<RoomOutput>(entry.body);
      } catch {
        continue;
      }
      if (typeof out?.eventId !== 'string' || !out.event || typeof out.roomId !== 'string') continue;
      await indexRoomOutput(this.store, this.rooms, out);
    }
  }
}
