/**
 * One-off, for deployments with accounts made before the admin API's user list existed: adds every
 * local account to its user shard's list (`userData.registeredUsers`), which the user actor keeps
 * for accounts registered since. Safe to run on a live server and to run again (ZADD of an id
 * already listed changes nothing; scores are all 0).
 *
 *   npm run backfill-user-list            (the configuration the server uses: axon.config.json, AXON_*)
 */
import { pathToFileURL } from 'node:url';
import { Cluster } from 'ioredis';
import { loadConfig } from '../cluster.config';
import { redisTargetFor, shardCountsFor } from '../src/runtime/cluster-settings';
import { KeySpace, userData } from '../src/store/keys';
import { connectRedis, type RedisClient } from '../src/store/redis';

const ACCOUNT = /^user:(@.+):acct$/;

/** Scan every user shard's account records and list their users; returns how many accounts were seen. */
export async function backfillUserList(redis: RedisClient, keys: KeySpace, userShards: number): Promise<number> {
  const nodes = redis instanceof Cluster ? redis.nodes('master') : [redis];
  let seen = 0;
  for (let s = 0; s < userShards; s++) {
    const shard = keys.shard('user', s);
    const base = shard.data('');
    const listKey = shard.data(userData.registeredUsers());
    for (const node of nodes) {
      let cursor = '0';
      do {
        // The shard's hash tag pins its keys to one node; the other nodes answer nothing.
        const [next, found] = await node.scan(cursor, 'MATCH', `${escapeGlob(base)}user:*:acct`, 'COUNT', 1000);
        cursor = next;
        const ids = found.map((k) => ACCOUNT.exec(k.slice(base.length))?.[1]).filter((id): id is string => id !== undefined);
        if (ids.length) await redis.zadd(listKey, ...ids.flatMap((id) => ['0', id]));
        seen += ids.length;
      } while (cursor !== '0');
    }
  }
  return seen;
}

function escapeGlob(s: string): string {
  return s.replace(/[*?[\]\\]/g, '\\$&');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const c = loadConfig();
  const redis = connectRedis(redisTargetFor(c), { commandTimeout: c.redis.commandTimeoutMs });
  backfillUserList(redis, new KeySpace(c.redis.keyPrefix), shardCountsFor(c).user)
    .then((n) => {
      console.log(`listed ${n} accounts`);
      redis.disconnect();
    })
    .catch((e: Error) => {
      console.error(`backfill-user-list: ${e.message}`);
      redis.disconnect();
      process.exitCode = 1;
    });
}
