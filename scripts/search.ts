/**
 * Search index maintenance on a server's Redis (the configuration the server uses:
 * `axon.config.json` / `AXON_CONFIG`, `AXON_*` variables):
 *
 *   npm run search -- reindex               rebuild every room's index from its stored events
 *   npm run search -- reindex --room '!id:server'   one room only
 *
 * Prints progress per room. Safe while the server runs (src/search/rebuild.ts).
 */
import { pathToFileURL } from 'node:url';
import { loadConfig } from '../cluster.config';
import { redisTargetFor, shardCountsFor } from '../src/runtime/cluster-settings';
import { allRoomIds, rebuildRoom } from '../src/search/rebuild';
import { KeySpace } from '../src/store/keys';
import { connectRedis } from '../src/store/redis';

const USAGE = "usage: npm run search -- reindex [--room '!room:server']";

export function parseSearchArgs(argv: string[]): { command: 'reindex'; room?: string } {
  const [command, ...rest] = argv;
  if (command !== 'reindex') throw new Error(USAGE);
  let room: string | undefined;
  for (let i = 0; i < rest.length; i++) {
    if (rest[i] === '--room' && rest[i + 1]) room = rest[++i];
    else throw new Error(USAGE);
  }
  return room === undefined ? { command } : { command, room };
}

async function main(): Promise<void> {
  const args = parseSearchArgs(process.argv.slice(2));
  const config = loadConfig();
  const redis = connectRedis(redisTargetFor(config));
  const keys = new KeySpace(config.redis.keyPrefix);
  const shardCounts = shardCountsFor(config);
  try {
    const rooms = args.room ? [args.room] : await allRoomIds(redis, keys);
    console.log(`reindexing ${rooms.length} room(s)`);
    const started = Date.now();
    let total = 0;
    for (const [i, room] of rooms.entries()) {
      const docs = await rebuildRoom(redis, keys, shardCounts, room, (p) => {
        if (!p.done) process.stdout.write(`  [${i + 1}/${rooms.length}] ${room}: ${p.events} events read, ${p.indexed} indexed\r`);
      });
      total += docs;
      console.log(`  [${i + 1}/${rooms.length}] ${room}: ${docs} documents indexed`);
    }
    console.log(`done: ${total} documents in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  } finally {
    redis.disconnect();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((e: Error) => {
    console.error(e.message);
    process.exit(1);
  });
}
