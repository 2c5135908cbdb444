/**
 * One-off, for deployments with rooms made before the admin API's room list existed: adds every
 * room a room shard has (its room actor's state, with a room version, not being purged) to that shard's list
 * (`roomData.localRooms`), which the room actor keeps for rooms made since. Safe to run on a live
 * server and to run again (ZADD of a listed id changes nothing; scores are all 0).
 *
 *   npm run backfill-room-list            (the configuration the server uses: axon.config.json, AXON_*)
 */
import { pathToFileURL } from 'node:url';
import { Cluster } from 'ioredis';
import { loadConfig } from '../cluster.config';
import { redisTargetFor, shardCountsFor } from '../src/runtime/cluster-settings';
import { decode } from '../src/store/codec';
import { KeySpace, roomData } from '../src/store/keys';
import { connectRedis, type RedisClient } from '../src/store/redis';
import type { RoomMeta } from '../src/rooms/model';

/** Scan every room shard's room actor states and list the rooms they hold; returns how many rooms were listed. */
export async function backfillRoomList(redis: RedisClient, keys: KeySpace, roomShards: number): Promise<number> {
  const nodes = redis instanceof Cluster ? redis.nodes('master') : [redis];
  let listed = 0;
  for (let s = 0; s < roomShards; s++) {
    const shard = keys.shard('room', s);
    const statePrefix = shard.state('room', '');
    const listKey = shard.data(roomData.localRooms());
    for (const node of nodes) {
      let cursor = '0';
      do {
        // The shard's hash tag pins its keys to one node; the other nodes answer nothing.
        const [next, found] = await node.scan(cursor, 'MATCH', `${escapeGlob(statePrefix)}*`, 'COUNT', 1000);
        cursor = next;
        if (!found.length) continue;
        const blobs = await redis.mgetBuffer(...found);
        const ids = found.filter((_, i) => {
          const blob = blobs[i];
          const meta = blob ? decode<RoomMeta>(blob) : null;
          // A room being purged is on its way out of the list.
          return meta !== null && meta.version !== null && !meta.purging;
        }).map((k) => k.slice(statePrefix.length));
        if (ids.length) await redis.zadd(listKey, ...ids.flatMap((id) => ['0', id]));
        listed += ids.length;
      } while (cursor !== '0');
    }
  }
  return listed;
}

function escapeGlob(s: string): string {
  return s.replace(/[*?[\]\\]/g, '\\$&');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const c = loadConfig();
  const redis = connectRedis(redisTargetFor(c), { commandTimeout: c.redis.commandTimeoutMs });
  backfillRoomList(redis, new KeySpace(c.redis.keyPrefix), shardCountsFor(c).room)
    .then((n) => {
      console.log(`listed ${n} rooms`);
      redis.disconnect();
    })
    .catch((e: Error) => {
      console.error(`backfill-room-list: ${e.message}`);
      redis.disconnect();
      process.exitCode = 1;
    });
}
