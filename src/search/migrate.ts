/**
 * Upgrading a room shard's search index to format 2 without a manual `npm run search -- reindex`:
 * the search reader that takes a room shard runs this in the background (src/readers/search-indexer.ts).
 *
 * 1. Listing (once per shard): every room of the shard's room list (`roomData.localRooms`; rooms
 *    older than that list are added to it by `npm run backfill-room-list`) whose index is not in format 2 — one with
 *    format 1 keys, or with no format 2 index at all (rooms from before the search reader, or with
 *    no text yet) — goes into the shard's pending set (`searchShardData.pending`); then the shard's
 *    format hash says `listing` is over.
 * 2. Rebuilding: each pending room is rebuilt from its stored events (src/search/rebuild.ts, the
 *    same code as the manual reindex), then taken out of the set; when the set is empty the shard's
 *    format is `2` and its rooms are never looked at again.
 *
 * Resumable: the pending set and the format hash are in Redis, so a restart (or another worker
 * taking the shard) goes on with the rooms left; rebuilding a room again is harmless. Meanwhile
 * queries see nothing missing: the search view (search-view-2.lua) reads a pending room, and,
 * until the shard is done, any room with format 1 keys or without a format 2 index, from its
 * stored events instead of its index (SearchIndexStore.scan).
 */
import type { Logger } from 'pino';
import { legacySearchData, roomData, searchData, searchShardData, type KeySpace } from '../store/keys';
import type { RedisClient } from '../store/redis';
import type { Family } from '../store/shards';
import { rebuildRoom } from './rebuild';

export interface MigrationOptions {
  /** Whether to go on (false once the reader lost the shard or stopped): checked between rooms. */
  active: () => boolean;
}

/** Bring one room shard's index to format 2 (see the module comment). Returns the rooms rebuilt. */
export async function migrateShard(redis: RedisClient, keys: KeySpace, shardCounts: Record<Family, number>, shard: number, log: Logger, opts: MigrationOptions): Promise<number> {
  const shardKeys = keys.shard('room', shard);
  const formatKey = shardKeys.data(searchShardData.format);
  const pendingKey = shardKeys.data(searchShardData.pending);
  const format = await redis.hget(formatKey, 'format');
  if (format === '2') return 0;
  if (format !== 'listing') {
    const rooms = await redis.zrange(shardKeys.data(roomData.localRooms()), 0, -1);
    const stale: string[] = [];
    for (let i = 0; i < rooms.length; i += 200) {
      const batch = rooms.slice(i, i + 200);
      const p = redis.pipeline();
      for (const roomId of batch) {
        p.exists(shardKeys.data(legacySearchData.stats(roomId)));
        p.exists(shardKeys.data(searchData.stats(roomId)));
      }
      const found = (await p.exec()) ?? [];
      batch.forEach((roomId, j) => {
        const legacy = Number(found[2 * j]?.[1] ?? 0) === 1;
        const current = Number(found[2 * j + 1]?.[1] ?? 0) === 1;
        if (legacy || !current) stale.push(roomId);
      });
    }
    for (let i = 0; i < stale.length; i += 500) await redis.sadd(pendingKey, ...stale.slice(i, i + 500));
    await redis.hset(formatKey, 'format', 'listing');
    if (stale.length > 0) log.info({ shard, rooms: rooms.length, toRebuild: stale.length }, 'search index: rooms to rebuild in format 2');
  }
  let rebuilt = 0;
  const total = await redis.scard(pendingKey);
  const started = Date.now();
  for (;;) {
    if (!opts.active()) return rebuilt;
    const [roomId] = await redis.srandmember(pendingKey, 1);
    if (roomId === undefined) break;
    const documents = await rebuildRoom(redis, keys, shardCounts, roomId);
    await redis.srem(pendingKey, roomId);
    rebuilt++;
    log.info({ shard, room: roomId, documents, done: rebuilt, of: total, seconds: Math.round((Date.now() - started) / 100) / 10 }, 'search index: room rebuilt in format 2');
  }
  if (!opts.active()) return rebuilt;
  await redis.hset(formatKey, 'format', '2');
  if (rebuilt > 0) log.info({ shard, rooms: rebuilt, seconds: Math.round((Date.now() - started) / 100) / 10 }, 'search index: shard migrated to format 2');
  return rebuilt;
}
