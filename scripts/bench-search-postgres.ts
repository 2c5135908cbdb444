/**
 * Synapse's full-text search at the index level (prints figures; not a test): the messages and
 * queries of scripts/bench-search-index.ts (scripts/lib/search-corpus.ts, same seed) put into
 * Synapse's `event_search` table on a throwaway PostgreSQL cluster — its schema (columns and the
 * indexes Synapse creates, the GIN index on `vector` included), each row's vector built by
 * `to_tsvector('english', body)` as Synapse stores it — then the SQL Synapse's `search_msgs` and
 * `search_rooms` run for `POST /search` (the matches query and the count query, over the user's
 * 100 rooms, `websearch_to_tsquery('english', …)`), timed inside one psql session.
 *
 * Why not through Synapse itself: Synapse's only ingest path is /send, 28 messages/s on this
 * machine (scripts/bench-search.ts), about 10 hours for 1,000,000 messages. Loading
 * `event_search` directly costs minutes and measures the part that grows with the corpus (the
 * full-text query); what it leaves out is per request and does not grow with it (Synapse
 * fetching the ≤ 10 events of a page and filtering them for visibility), as Axon's index bench
 * leaves out its visibility check.
 *
 *   node --import tsx scripts/bench-search-postgres.ts [--messages 1000000] [--rooms 100] [--queries 10]
 * Needs PostgreSQL's binaries (Debian: apt-get install postgresql).
 */
import { execFileSync } from 'node:child_process';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { percentile, round } from './lib/bench-util';
import { startPostgres } from './lib/postgres';
import { benchRooms, searchCorpus } from './lib/search-corpus';

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};
const MESSAGES = arg('messages', 1_000_000);
const ROOMS = arg('rooms', 100);
const QUERIES = arg('queries', 10);
const CHUNK = 100_000;

async function main(): Promise<void> {
  const corpus = searchCorpus();
  const rooms = benchRooms(ROOMS);
  const pg = await startPostgres();
  const psqlArgs = ['-h', '127.0.0.1', '-p', String(pg.port), '-U', 'synapse', '-d', 'synapse', '-v', 'ON_ERROR_STOP=1'];
  const psqlWith = (sql: string, input?: string) => execFileSync(join(pg.bin, 'psql'), [...psqlArgs, '-tA', '-c', sql], { encoding: 'utf8', input, maxBuffer: 1 << 28 });
  try {
    console.log(`PostgreSQL ${pg.psql('SHOW server_version').split(' ')[0]}; load average at start: ${loadavg().map((l) => l.toFixed(1)).join(' ')}`);
    // Synapse's table (full_schemas/72) and the indexes its background updates leave.
    pg.psql(`CREATE TABLE event_search (event_id text, room_id text, sender text, key text, vector tsvector, origin_server_ts bigint, stream_ordering bigint);
      CREATE UNLOGGED TABLE staging (event_id text, room_id text, ts bigint, stream bigint, body text);`);
    const started = Date.now();
    for (let from = 0; from < MESSAGES; from += CHUNK) {
      const lines: string[] = [];
      for (let i = from; i < Math.min(MESSAGES, from + CHUNK); i++) lines.push(`$e${i}\t${rooms[i % ROOMS]}\t${1_700_000_000_000 + i}\t${i + 1}\t${corpus.next()}`);
      psqlWith('COPY staging FROM STDIN', `${lines.join('\n')}\n`);
      process.stdout.write(`  copied ${Math.min(MESSAGES, from + CHUNK)}/${MESSAGES}\r`);
    }
    const copied = Date.now();
    pg.psql(`INSERT INTO event_search SELECT event_id, room_id, '@bench:bench.local', 'content.body', to_tsvector('english', body), ts, stream FROM staging`);
    const vectors = Date.now();
    pg.psql(`CREATE INDEX event_search_fts_idx ON event_search USING gin (vector);
      CREATE INDEX event_search_ev_ridx ON event_search (room_id);
      CREATE UNIQUE INDEX event_search_event_id_idx ON event_search (event_id);
      CREATE INDEX event_search_room_order ON event_search (room_id, origin_server_ts NULLS FIRST, stream_ordering NULLS FIRST);
      CREATE INDEX event_search_order ON event_search (origin_server_ts NULLS FIRST, stream_ordering NULLS FIRST);
      DROP TABLE staging;`);
    pg.psql('VACUUM ANALYZE event_search');
    const indexed = Date.now();
    const bytes = Number(pg.psql("SELECT pg_total_relation_size('event_search')"));
    console.log(
      `loaded ${MESSAGES} rows: COPY ${round((copied - started) / 1000)} s, to_tsvector ${round((vectors - copied) / 1000)} s (${round(MESSAGES / ((vectors - copied) / 1000), 0)} rows/s), indexes ${round((indexed - vectors) / 1000)} s; event_search with its indexes ${round(bytes / MESSAGES, 0)} bytes per message`,
    );

    const inRooms = `room_id IN (${rooms.map((r) => `'${r}'`).join(', ')})`;
    const keys = "(key = 'content.body' OR key = 'content.name' OR key = 'content.topic')";
    const tsq = (term: string) => `websearch_to_tsquery('english', '${term.replace(/'/g, "''")}')`;
    // What Synapse runs per POST /search: the matches (rank: best 500 by ts_rank_cd; recent: newest
    // page by origin_server_ts, stream_ordering) and the count per room.
    const matchesSql = (term: string, order: 'rank' | 'recent') =>
      order === 'rank'
        ? `SELECT ts_rank_cd(vector, ${tsq(term)}) AS rank, room_id, event_id FROM event_search WHERE vector @@ ${tsq(term)} AND ${inRooms} AND ${keys} ORDER BY rank DESC LIMIT 500`
        : `SELECT ts_rank_cd(vector, ${tsq(term)}) AS rank, room_id, event_id, origin_server_ts, stream_ordering FROM event_search WHERE vector @@ ${tsq(term)} AND ${inRooms} AND ${keys} ORDER BY origin_server_ts DESC NULLS LAST, stream_ordering DESC NULLS LAST LIMIT 11`;
    const countSql = (term: string) => `SELECT room_id, count(*) AS count FROM event_search WHERE vector @@ ${tsq(term)} AND ${inRooms} AND ${keys} GROUP BY room_id`;
    const kinds = corpus.queries(QUERIES);
    for (const order of ['rank', 'recent'] as const) {
      for (const { name, terms } of kinds) {
        // One session: \timing gives each statement's time as the client sees it (no process start-up).
        const script = ['\\timing on', ...terms.flatMap((t) => [`SELECT count(*) FROM (${matchesSql(t, order)}) m;`, `SELECT coalesce(sum(count), 0) FROM (${countSql(t)}) c;`])].join('\n');
        const out = execFileSync(join(pg.bin, 'psql'), [...psqlArgs, '-tA'], { encoding: 'utf8', input: script, maxBuffer: 1 << 26 });
        const times = [...out.matchAll(/^Time: ([\d.]+) ms/gm)].map((m) => Number(m[1]));
        const counts = out.split('\n').filter((l) => /^\d+$/.test(l)).map(Number);
        const perQuery: number[] = [];
        let hits = 0;
        for (let q = 0; q < terms.length; q++) {
          perQuery.push(times[2 * q]! + times[2 * q + 1]!);
          hits += counts[2 * q + 1] ?? 0;
        }
        perQuery.sort((a, b) => a - b);
        console.log(`${order.padEnd(6)} ${name.padEnd(18)} over ${ROOMS} rooms: p50 ${round(percentile(perQuery, 50))} ms, p99 ${round(percentile(perQuery, 99))} ms, ${round(hits / terms.length, 0)} matches on average (count)`);
      }
    }
    console.log(`load average at end: ${loadavg().map((l) => l.toFixed(1)).join(' ')}`);
  } finally {
    pg.stop();
  }
}

main().catch((e: Error) => {
  console.error(e);
  process.exit(1);
});
