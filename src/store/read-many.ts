/**
 * Reads of many keys in few commands: grouped by the slot their shard's hash tag puts them in, each
 * group one call of the `readMany` script (src/store/scripts/read-many-3.lua) — so it works on a
 * Redis Cluster too. A /sync of a user in 1,500 rooms asks a handful of hashes per room; one
 * command each is ~10,000 commands to build, write and parse on the front, against a few hundred
 * here (one per shard holding the rooms).
 */
import { runScript, type RedisClient } from './redis';

/**
 * 'hgetall': the hash; 'ztop': the sorted set's top member and its score; 'sha1': the SHA-1 (hex)
 * of the string value ('' when there is none); 'hpairs': the hash as the flat `[field, value, …]`
 * HGETALL gives (no object built: a caller that wants a Map makes it from this directly).
 */
export type ReadOp = 'hgetall' | 'hpairs' | 'ztop' | 'sha1';

export interface Read {
  /** Keys of one group must share a hash slot: the group is the shard whose keys they are. */
  group: string;
  key: string;
  op: ReadOp;
}

/** Keys per script call: a call runs alone in Redis, so a huge batch is split. */
const KEYS_PER_CALL = 200;

/**
 * Every read's reply, in order: a hash as an object for 'hgetall', `[member, score]` or `[]` for
 * 'ztop', `[field, value, …]` for 'hpairs', a string for 'sha1'.
 */
export async function readMany(redis: RedisClient, reads: readonly Read[]): Promise<(Record<string, string> | string[] | string)[]> {
  const groups = new Map<string, number[]>();
  reads.forEach((r, i) => (groups.get(r.group) ?? groups.set(r.group, []).get(r.group)!).push(i));
  const out: (Record<string, string> | string[] | string)[] = new Array(reads.length);
  const calls: Promise<void>[] = [];
  for (const indexes of groups.values()) {
    for (let at = 0; at < indexes.length; at += KEYS_PER_CALL) {
      const part = indexes.slice(at, at + KEYS_PER_CALL);
      calls.push(
        runScript(redis, 'readMany', part.map((i) => reads[i]!.key), part.map((i) => (reads[i]!.op === 'hpairs' ? 'hgetall' : reads[i]!.op))).then((replies) => {
          (replies as (string[] | string)[]).forEach((flat, j) => {
            const i = part[j]!;
            const op = reads[i]!.op;
            if (typeof flat === 'string' || op === 'ztop' || op === 'hpairs') {
              out[i] = flat;
              return;
            }
            const hash: Record<string, string> = {};
            for (let k = 0; k + 1 < flat.length; k += 2) hash[flat[k]!] = flat[k + 1]!;
            out[i] = hash;
          });
        }),
      );
    }
  }
  await Promise.all(calls);
  return out;
}
