/**
 * Rebuilding the search index from the stored rooms (`npm run search -- reindex`): after an
 * upgrade that changes the tokeniser or the index format (format 2, binary postings, replaced the
 * first format's hashes: the rebuild deletes a room's keys in both), or to index rooms from
 * before the search reader existed.
 * A room's index is dropped, then its timeline is read in order and every event goes through the
 * same step as the search reader's (edits after their originals, as the timeline has them);
 * redacted events are recorded as such, so a late redelivery cannot bring them back.
 *
 * Safe while the server runs: the reader's writes for events committed during the rebuild are
 * the same idempotent writes the rebuild makes.
 */
import type { KeySpace } from '../store/keys';
import { isCluster, type RedisClient } from '../store/redis';
import { RoomReader, servableToClients } from '../store/room-reader';
import type { Family } from '../store/shards';
import { indexRoomOutput, SearchIndexStore, storedTerms } from './index-store';

const PAGE = 500;

export interface RebuildProgress {
  room: string;
  events: number;
  indexed: number;
  done: boolean;
}

/** Every room id with a timeline, found by scanning each room shard's keys. */
export async function allRoomIds(redis: RedisClient, keys: KeySpace): Promise<string[]> {
  const nodes = isCluster(redis) ? redis.nodes('master') : [redis];
  const rooms = new Set<string>();
  const marker = ':timeline';
  for (const node of nodes) {
    let cursor = '0';
    do {
      const [next, found] = await node.scan(cursor, 'MATCH', `${keys.prefix}{r:*}:d:room:*${marker}`, 'COUNT', 1000);
      cursor = next;
      for (const key of found) {
        const start = key.indexOf('}:d:room:');
        if (start < 0) continue;
        rooms.add(key.slice(start + '}:d:room:'.length, key.length - marker.length));
      }
    } while (cursor !== '0');
  }
  return [...rooms].sort();
}

/** Rebuild one room's index; `progress` is told after every page of events. Returns the documents indexed. */
export async function rebuildRoom(redis: RedisClient, keys: KeySpace, shardCounts: Record<Family, number>, roomId: string, progress: (p: RebuildProgress) => void = () => undefined): Promise<number> {
  const store = new SearchIndexStore(redis, keys, shardCounts.room);
  const rooms = new RoomReader(redis, keys, shardCounts.room);
  await store.clearRoom(roomId);
  let from: number | null = null;
  let events = 0;
  for (;;) {
    const page = await rooms.timeline(roomId, 'f', from, PAGE);
    for (const e of page.events) {
      events++;
      if (!servableToClients(e)) continue;
      if (e.redactedBy) {
        await store.remove(roomId, e.pos, storedTerms(store, rooms, roomId));
        continue;
      }
      await indexRoomOutput(store, rooms, { roomId, eventId: e.eventId, pos: e.pos, event: e.event });
    }
    const { documents } = await store.stats(roomId);
    progress({ room: roomId, events, indexed: documents, done: page.next === null });
    if (page.next === null) return documents;
    from = page.next;
  }
}
