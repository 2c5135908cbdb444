/**
 * Search index cost (prints figures; not a test): the index layer alone — the search reader's
 * write path (src/search/index-store.ts, search-index-5.lua) and the query path `POST /search`
 * runs for a first page of 10 before its visibility checks (src/search/query.ts: freezing the
 * statistics, then the first 30 candidates, in `rank` and in `recent` order) — on a real redis-server (managed, AOF
 * `appendfsync always`, as in production). Messages are generated from a Zipf-like vocabulary of
 * 20,000 words (8–20 words each, scripts/lib/search-corpus.ts) spread over ROOMS rooms, indexed
 * 64 at a time; then one-word, two-word and prefix queries are run over all the rooms (a user's
 * 100 rooms). scripts/bench-search-postgres.ts puts the same messages and queries to Synapse's
 * `event_search` on PostgreSQL.
 *
 * The whole HTTP path beside Synapse's PostgreSQL full-text search is scripts/bench-search.ts.
 *
 *   node --import tsx scripts/bench-search-index.ts [--messages 100000] [--rooms 100] [--queries 200]
 *     [--redis redis://host:port [--queries-only]] [--reader one|batch [--shards 16]]
 *
 * `--reader`: index as the search reader does instead — per room shard, in order, 200 outbox
 * entries at a time, the shards side by side: `one`, a record read and a script call per message
 * (the reader before batching), `batch`, `indexNew` (one script call per room of a batch).
 *
 * `--redis`: index into that redis-server (kept afterwards) instead of a managed throwaway one;
 * with `--queries-only`, only the queries are run, over the index an earlier `--redis` run of the
 * same `--messages` left there (the messages are drawn again, unindexed, so the queries are the same).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startManagedRedis } from '../src/runtime/managed-redis';
import { loadavg } from 'node:os';
import { SearchIndexStore, type IndexedDocument, type KeyCode } from '../src/search/index-store';
import { shardOf } from '../src/store/shards';
import { startSearch } from '../src/search/query';
import { KeySpace, roomData } from '../src/store/keys';
import { connectRedis } from '../src/store/redis';
import { freePort, percentile, pool, round } from './lib/bench-util';
import { benchRooms, searchCorpus } from './lib/search-corpus';

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};
const MESSAGES = arg('messages', 100_000);
const ROOMS = arg('rooms', 100);
const QUERIES = arg('queries', 200);
const sarg = (name: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const REDIS = sarg('redis');
const QUERIES_ONLY = REDIS !== undefined && process.argv.includes('--queries-only');
const READER = sarg('reader');
if (READER !== undefined && READER !== 'one' && READER !== 'batch') throw new Error('--reader one|batch');
const SHARDS = arg('shards', READER ? 16 : 64);

async function main(): Promise<void> {
  const corpus = searchCorpus();
  const rooms = benchRooms(ROOMS);
  const dir = mkdtempSync(join(tmpdir(), 'axon-bench-search-'));
  const managed = REDIS ? null : await startManagedRedis({ dir: join(dir, 'redis'), port: await freePort() });
  const redis = connectRedis({ url: REDIS ?? managed!.url });
  const keys = new KeySpace('bs:');
  const store = new SearchIndexStore(redis, keys, SHARDS);
  try {
    console.log(`load average at start: ${loadavg().map((l) => l.toFixed(1)).join(' ')}`);
    if (QUERIES_ONLY) for (let i = 0; i < MESSAGES; i++) corpus.next();
    else {
    // The rooms exist (a members hash each): the script indexes nothing of a room without one (a room being purged).
    for (const roomId of rooms) await redis.hset(keys.shard('room', shardOf(roomId, SHARDS)).data(roomData.members(roomId)), '@bench:example.org', 'join');
    const before = Number(/used_memory:(\d+)/.exec(await redis.info('memory'))?.[1] ?? 0);
    const started = Date.now();
    let done = 0;
    const ids = Array.from({ length: MESSAGES }, (_, i) => i);
    const doc = (i: number, text: string): IndexedDocument => ({ roomId: rooms[i % ROOMS]!, sourcePos: i + 1, pos: i + 1, ts: 1_700_000_000_000 + i, key: 'b', text });
    if (READER) {
      // As the search reader: each room shard's messages in order, 200 at a time, the shards side by side.
      const byShard = new Map<number, IndexedDocument[]>();
      for (const i of ids) {
        const d = doc(i, corpus.next());
        const s = shardOf(d.roomId, SHARDS);
        const list = byShard.get(s);
        if (list) list.push(d);
        else byShard.set(s, [d]);
      }
      await Promise.all(
        [...byShard.values()].map(async (list) => {
          for (let j = 0; j < list.length; j += 200) {
            const batch = list.slice(j, j + 200);
            if (READER === 'batch') await store.indexNew(batch);
            else for (const d of batch) await store.index(d, async () => []);
            done += batch.length;
          }
        }),
      );
    } else
    await pool(ids, 64, async (i) => {
      const text = corpus.next();
      // New documents: no content indexed before, so no old terms to look up.
      await store.index(doc(i, text), async () => []);
      if (++done % 20_000 === 0) process.stdout.write(`  indexed ${done}/${MESSAGES}\r`);
    });
    const seconds = (Date.now() - started) / 1000;
    const after = Number(/used_memory:(\d+)/.exec(await redis.info('memory'))?.[1] ?? 0);
    console.log(`indexed ${MESSAGES} messages${READER ? ` as the search reader (${READER}, ${SHARDS} room shards)` : ''} in ${round(seconds)} s: ${round(MESSAGES / seconds, 0)} messages/s; Redis memory ${round((after - before) / MESSAGES, 0)} bytes per message`);
    // Where the bytes go, by kind of key (MEMORY USAGE, each key's whole cost in Redis).
    const byKind = new Map<string, { keys: number; bytes: number }>();
    let cursor = '0';
    do {
      const [next, found] = await redis.scan(cursor, 'MATCH', '*}:d:s[pmdvsxt]:*', 'COUNT', 2000);
      cursor = next;
      const p = redis.pipeline();
      for (const k of found) p.memory('USAGE', k, 'SAMPLES', '0');
      const sizes = (await p.exec()) ?? [];
      found.forEach((k, i) => {
        const code = /\}:d:(s[pmdvsxt]):/.exec(k)?.[1];
        const kind = { sp: 'postings', sm: 'block bounds', st: 'best postings', sd: 'docs', sv: 'terms', ss: 'stats', sx: 'dead' }[code ?? ''] ?? 'other';
        const had = byKind.get(kind) ?? { keys: 0, bytes: 0 };
        had.keys++;
        had.bytes += Number(sizes[i]?.[1] ?? 0);
        byKind.set(kind, had);
      });
    } while (cursor !== '0');
    console.log(`by kind of key: ${[...byKind].map(([k, v]) => `${k} ${v.keys} keys, ${round(v.bytes / MESSAGES, 0)} B/message`).join('; ')}`);
    }

    const keysAll = new Set<KeyCode>(['b', 'n', 't']);
    const kinds = corpus.queries(QUERIES);
    for (const order of ['rank', 'recent'] as const) {
      for (const { name, terms } of kinds) {
        const times: number[] = [];
        let hits = 0;
        for (const term of terms) {
          const t0 = process.hrtime.bigint();
          // What POST /search does for a first page of 10: freeze the statistics, find the first candidates.
          const { count } = (await startSearch(store, rooms, term, keysAll, order, 30)).batch;
          times.push(Number(process.hrtime.bigint() - t0) / 1e6);
          hits += count;
        }
        times.sort((a, b) => a - b);
        console.log(`${order.padEnd(6)} ${name.padEnd(18)} over ${ROOMS} rooms: p50 ${round(percentile(times, 50))} ms, p99 ${round(percentile(times, 99))} ms, ${round(hits / QUERIES, 0)} matches on average (count)`);
      }
    }
    console.log(`load average at end: ${loadavg().map((l) => l.toFixed(1)).join(' ')}`);
  } finally {
    redis.disconnect();
    await managed?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: Error) => {
  console.error(e);
  process.exit(1);
});
