/**
 * One-off, for deployments with accounts made before the admin API's user list existed: adds every
 * local account to its user shard's list (`userData.registeredUsers`), which the user actor keeps
 * for accounts registered since. Safe to run on a live server and to run again (ZADD of an id
 * already listed changes nothing; scores are all 0).
 *
 *   npm run backfill-user-list            (the configuration the server uses: axon.config.json, AXON_*)
 */
import { shardCountsFor } from '../src/runtime/cluster-settings';
import { userData, type KeySpace } from '../src/store/keys';
import type { RedisClient } from '../src/store/redis';
import { backfillShardLists, escapeGlob, runBackfillCli } from './lib/shard-list-backfill';

const ACCOUNT = /^user:(@.+):acct$/;

/** Scan every user shard's account records and list their users; returns how many accounts were seen. */
export function backfillUserList(redis: RedisClient, keys: KeySpace, userShards: number): Promise<number> {
  return backfillShardLists(redis, userShards, (s) => {
    const shard = keys.shard('user', s);
    const base = shard.data('');
    return {
      match: `${escapeGlob(base)}user:*:acct`,
      listKey: shard.data(userData.registeredUsers()),
      ids: (found) => found.map((k) => ACCOUNT.exec(k.slice(base.length))?.[1]).filter((id): id is string => id !== undefined),
    };
  });
}

runBackfillCli(import.meta.url, 'backfill-user-list', 'accounts', (redis, keys, c) => backfillUserList(redis, keys, shardCountsFor(c).user));
