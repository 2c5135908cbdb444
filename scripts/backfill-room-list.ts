/**
 * One-off, for deployments with rooms made before the admin API's room list existed: adds every
 * room a room shard has (its room actor's state, with a room version, not being purged) to that shard's list
 * (`roomData.localRooms`), which the room actor keeps for rooms made since. Safe to run on a live
 * server and to run again (ZADD of a listed id changes nothing; scores are all 0).
 *
 *   npm run backfill-room-list            (the configuration the server uses: axon.config.json, AXON_*)
 */
import { shardCountsFor } from '../src/runtime/cluster-settings';
import { decode } from '../src/store/codec';
import { roomData, type KeySpace } from '../src/store/keys';
import type { RedisClient } from '../src/store/redis';
import type { RoomMeta } from '../src/rooms/model';
import { backfillShardLists, escapeGlob, runBackfillCli } from './lib/shard-list-backfill';

/** Scan every room shard's room actor states and list the rooms they hold; returns how many rooms were listed. */
export function backfillRoomList(redis: RedisClient, keys: KeySpace, roomShards: number): Promise<number> {
  return backfillShardLists(redis, roomShards, (s) => {
    const shard = keys.shard('room', s);
    const statePrefix = shard.state('room', '');
    return {
      match: `${escapeGlob(statePrefix)}*`,
      listKey: shard.data(roomData.localRooms()),
      async ids(found) {
        const blobs = await redis.mgetBuffer(...found);
        return found
          .filter((_, i) => {
            const blob = blobs[i];
            const meta = blob ? decode<RoomMeta>(blob) : null;
            // A room being purged is on its way out of the list.
            return meta !== null && meta.version !== null && !meta.purging;
          })
          .map((k) => k.slice(statePrefix.length));
      },
    };
  });
}

runBackfillCli(import.meta.url, 'backfill-room-list', 'rooms', (redis, keys, c) => backfillRoomList(redis, keys, shardCountsFor(c).room));
