/**
 * What the one-off list backfills share (scripts/backfill-user-list.ts, backfill-room-list.ts):
 * walk each shard of a family, SCAN its keys that match a pattern on every node, turn a batch of
 * found keys into the ids to list, and ZADD them (score 0) to the shard's list; and the command
 * line around it (the server's configuration, one line of output, exit code 1 on failure).
 * Idempotent by construction: ZADD of an id already listed changes nothing.
 */
import { pathToFileURL } from 'node:url';
import { Cluster } from 'ioredis';
import { loadConfig, type AxonConfig } from '../../cluster.config';
import { redisTargetFor } from '../../src/runtime/cluster-settings';
import { KeySpace } from '../../src/store/keys';
import { connectRedis, type RedisClient } from '../../src/store/redis';

export interface ShardScan {
  /** SCAN pattern of the shard's keys to look at (already glob-escaped where it needs to be). */
  match: string;
  /** The shard's sorted set the ids go into. */
  listKey: string;
  /** The ids to list from one SCAN batch of found keys (may read them). */
  ids(found: string[]): Promise<string[]> | string[];
}

/** Lists every id `scanOf(shard)` finds in shards 0..shards-1; returns how many were listed. */
export async function backfillShardLists(redis: RedisClient, shards: number, scanOf: (shard: number) => ShardScan): Promise<number> {
  const nodes = redis instanceof Cluster ? redis.nodes('master') : [redis];
  let listed = 0;
  for (let s = 0; s < shards; s++) {
    const scan = scanOf(s);
    for (const node of nodes) {
      let cursor = '0';
      do {
        // The shard's hash tag pins its keys to one node; the other nodes answer nothing.
        const [next, found] = await node.scan(cursor, 'MATCH', scan.match, 'COUNT', 1000);
        cursor = next;
        if (!found.length) continue;
        const ids = await scan.ids(found);
        if (ids.length) await redis.zadd(scan.listKey, ...ids.flatMap((id) => ['0', id]));
        listed += ids.length;
      } while (cursor !== '0');
    }
  }
  return listed;
}

/** A literal key prefix made safe inside a SCAN MATCH pattern. */
export function escapeGlob(s: string): string {
  return s.replace(/[*?[\]\\]/g, '\\$&');
}

/**
 * Runs `backfill` with the server's configuration when `moduleUrl` is the script node was started
 * with (so tests can import the function without running it); prints `listed N <what>`.
 */
export function runBackfillCli(moduleUrl: string, name: string, what: string, backfill: (redis: RedisClient, keys: KeySpace, config: AxonConfig) => Promise<number>): void {
  if (moduleUrl !== pathToFileURL(process.argv[1] ?? '').href) return;
  const c = loadConfig();
  const redis = connectRedis(redisTargetFor(c), { commandTimeout: c.redis.commandTimeoutMs });
  backfill(redis, new KeySpace(c.redis.keyPrefix), c)
    .then((n) => {
      console.log(`listed ${n} ${what}`);
      redis.disconnect();
    })
    .catch((e: Error) => {
      console.error(`${name}: ${e.message}`);
      redis.disconnect();
      process.exitCode = 1;
    });
}
