/**
 * Server-side search, end to end, beside Synapse (prints figures; not a test). The same generated
 * messages go into a throwaway Axon (1 worker, 1 front, managed redis-server with AOF
 * `appendfsync always`) and into Synapse 1.163.2 on PostgreSQL (a throwaway cluster from the
 * installed PostgreSQL, Synapse's full-text search on `event_search`), one server at a time so
 * each has the machine to itself; then the same one-word, two-word and prefix queries go to both
 * through real `POST /_matrix/client/v3/search` as one user in 100 rooms (order_by rank, 10 per page).
 *
 * Messages: words drawn from a Zipf distribution over a 20,000-word pronounceable vocabulary
 * (4–24 words each), 4% with accented words (café, Zürich, …) and 3% Chinese or Japanese
 * sentences; sent by 5 users over 100 rooms, 32 sends in flight (rate limits off on both).
 *
 * Loading: both servers get their messages through the client API's /send (the only ingest path
 * both have: Synapse has no batch send since MSC2716 was dropped, and an appservice's /send is
 * the same code path with another auth). Synapse's rate is measured and printed; on a 2-core
 * machine it cannot take 1,000,000 messages in a sensible time, so its count is a flag
 * (`--synapse-messages`, default 20,000). Axon is measured at the Synapse size (the side-by-side
 * queries) and, when `--messages` is larger, again at that size.
 *
 * Axon figures: /send rate; the search reader's lag (time until every message is indexed); the
 * rebuild rate (`npm run search -- reindex`'s code: indexing stored events, no HTTP); Redis
 * memory per message, the index alone (MEMORY USAGE over its keys) and the whole server (INFO
 * used_memory, events included). Synapse: /send rate, `event_search` size per message.
 *
 *   node --import tsx scripts/bench-search.ts [--messages 20000] [--synapse-messages 20000]
 *     [--queries 100] [--no-synapse]
 *
 * With `--direct`: the 1,000,000-message mode (scripts/bench-search-direct.ts): messages into the
 * room actors through their inboxes (a share over HTTP), Synapse's database loaded directly,
 * queries over HTTP on both, `--keep DIR` / `--reuse DIR` to rerun on the loaded data.
 * Needs: redis-server; for the Synapse side the pinned Synapse (AXON_PEERS_DIR, scripts/lib/ensure.sh)
 * and PostgreSQL's binaries (Debian: apt-get install postgresql); psycopg2-binary is installed
 * from PyPI into data/synapse-psycopg2 on first use (the pinned venv has no PostgreSQL driver).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, } from 'node:fs';
import { join } from 'node:path';
import { rebuildRoom } from '../src/search/rebuild';
import { KeySpace } from '../src/store/keys';
import { connectRedis, type RedisClient } from '../src/store/redis';
import { SearchIndexStore } from '../src/search/index-store';
import { startAxonBench } from './lib/axon-bench-cluster';
import { percentile, pool, round, seededRandom, table, writeBenchResults } from './lib/bench-util';
import { C, enc, MatrixLoad, type User } from './lib/matrix-load';
import { loopbackServerName, startSynapse, SYNAPSE_VERSION, synapseInstallation, type SynapsePeer } from './lib/synapse-peer';
import { createTestCa } from './lib/test-ca';
import { pgBin, startPostgres } from './lib/postgres';

const argv = process.argv.slice(2);
const num = (name: string, dflt: number) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? Number(argv[i + 1]) : dflt;
};
const MESSAGES = num('messages', 20_000);
const SYNAPSE_MESSAGES = Math.min(MESSAGES, num('synapse-messages', 20_000));
const QUERIES = num('queries', 100);
const WITH_SYNAPSE = !argv.includes('--no-synapse');
const ROOMS = 100;
const SENDERS = 5;
const IN_FLIGHT = 32;
const VOCABULARY = 20_000;
const SHARDS = 16;
const root = join(import.meta.dirname, '..');
const log = (s: string) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${s}`);

// ---- the messages (seeded: the same for both servers) ----
const syllables = ['ka', 'to', 'mi', 're', 'su', 'na', 'lo', 've', 'di', 'pa', 'ne', 'ru', 'zo', 'ba', 'shi', 'te', 'gu', 'fa', 'lin', 'mor', 'dan', 'vek', 'sol', 'tar'];
const vocabulary = Array.from({ length: VOCABULARY }, (_, i) => {
  let w = '';
  let n = i + 24; // at least two syllables
  while (n > 0) {
    w += syllables[n % syllables.length];
    n = Math.floor(n / syllables.length);
  }
  return w;
});
const accented = ['café', 'Zürich', 'naïve', 'résumé', 'crème', 'brûlée', 'São', 'Paulo', 'façade', 'jalapeño', 'Ångström', 'smörgåsbord', 'déjà', 'vu', 'Ελλάδα'];
const cjk = ['我们明天开会讨论项目计划', '今天天气很好', '请把文件发给我', '東京で会議があります', 'ありがとうございます', '新しい機能をテストしています', '数据库备份已完成', '週末に映画を見ました'];

function makeMessages(n: number): string[] {
  const rand = seededRandom(21);
  // Zipf: rank r with probability ~ 1/r (s = 1).
  const zipf = () => vocabulary[Math.min(VOCABULARY - 1, Math.floor(Math.exp(rand() * Math.log(VOCABULARY)) - 1))]!;
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const x = rand();
    if (x < 0.03) {
      out.push(`${cjk[Math.floor(rand() * cjk.length)]!} ${zipf()}`);
      continue;
    }
    const words = Array.from({ length: 4 + Math.floor(rand() * 21) }, zipf);
    if (x < 0.07) words.splice(Math.floor(rand() * words.length), 0, accented[Math.floor(rand() * accented.length)]!);
    words[0] = words[0]![0]!.toUpperCase() + words[0]!.slice(1);
    out.push(`${words.join(' ')}${rand() < 0.3 ? '?' : '.'}`);
  }
  return out;
}

interface QueryKind {
  name: string;
  terms: string[];
}
function makeQueries(): QueryKind[] {
  const rand = seededRandom(99);
  const pick = (from: number, to: number) => vocabulary[from + Math.floor(rand() * (to - from))]!;
  return [
    { name: 'one word (common)', terms: Array.from({ length: QUERIES }, () => pick(0, 50)) },
    { name: 'one word (rare)', terms: Array.from({ length: QUERIES }, () => pick(1000, 10_000)) },
    { name: 'two words', terms: Array.from({ length: QUERIES }, () => `${pick(0, 40)} ${pick(0, 40)}`) },
    { name: 'prefix', terms: Array.from({ length: QUERIES }, () => pick(50, 2000).slice(0, 4)) },
  ];
}

// ---- driving a server ----
interface Loaded {
  load: MatrixLoad;
  searcher: User;
  senders: User[];
  rooms: string[];
}

async function setUp(load: MatrixLoad, users: User[]): Promise<Loaded> {
  const [searcher, ...others] = users;
  const rooms: string[] = [];
  for (let i = 0; i < ROOMS; i++) rooms.push(await load.createRoom(searcher!, { preset: 'public_chat' }));
  await pool(
    others.flatMap((u) => rooms.map((r) => [u, r] as const)),
    8,
    ([u, r]) => load.join(u, r),
  );
  return { load, searcher: searcher!, senders: users, rooms };
}

/** Sends messages[from, to) and returns the rate (messages/s). */
async function sendRange(l: Loaded, messages: string[], from: number, to: number, label: string): Promise<number> {
  const ids = Array.from({ length: to - from }, (_, i) => from + i);
  const started = performance.now();
  let done = 0;
  let lastLog = started;
  await pool(ids, IN_FLIGHT, async (i) => {
    const u = l.senders[i % SENDERS]!;
    const room = l.rooms[i % ROOMS]!;
    await l.load.ok('PUT', `${C}/rooms/${enc(room)}/send/m.room.message/b${i}`, { token: u.token, body: { msgtype: 'm.text', body: messages[i] } });
    done++;
    if (performance.now() - lastLog > 30_000) {
      lastLog = performance.now();
      log(`  ${label}: sent ${from + done}/${to} (${round(done / ((lastLog - started) / 1000), 0)}/s)`);
    }
  });
  return (to - from) / ((performance.now() - started) / 1000);
}

interface QueryFigures {
  kind: string;
  p50: number;
  p99: number;
  mean: number;
  /** Average `count` in the answers. */
  hits: number;
}

async function runQueries(l: Loaded, kinds: QueryKind[], label: string): Promise<QueryFigures[]> {
  const out: QueryFigures[] = [];
  for (const k of kinds) {
    const times: number[] = [];
    let hits = 0;
    for (const term of k.terms) {
      const t0 = performance.now();
      const r = await l.load.ok('POST', `${C}/search`, { token: l.searcher.token, body: { search_categories: { room_events: { search_term: term, order_by: 'rank' } } }, timeoutMs: 120_000 });
      times.push(performance.now() - t0);
      hits += Number(r.search_categories.room_events.count ?? 0);
    }
    times.sort((a, b) => a - b);
    out.push({ kind: k.name, p50: round(percentile(times, 50)), p99: round(percentile(times, 99)), mean: round(times.reduce((a, b) => a + b, 0) / times.length), hits: round(hits / k.terms.length, 0) });
    const q = out[out.length - 1]!;
    log(`  ${label}: ${q.kind}: p50 ${q.p50} ms, p99 ${q.p99} ms, count ${q.hits} on average`);
  }
  return out;
}

// ---- Axon ----
async function redisFigures(redis: RedisClient): Promise<{ used: number; index: number; indexKeys: number }> {
  const used = Number(/used_memory:(\d+)/.exec(await redis.info('memory'))?.[1] ?? 0);
  let index = 0;
  let indexKeys = 0;
  let cursor = '0';
  do {
    // Format 2's keys (src/store/keys.ts searchData: sd/sv/ss/sx/sp/sm, then the room id).
    const [next, keys] = await redis.scan(cursor, 'MATCH', '*}:d:s[pmdvsx]:!*', 'COUNT', 2000);
    cursor = next;
    if (keys.length) {
      const p = redis.pipeline();
      for (const k of keys) p.memory('USAGE', k, 'SAMPLES', '0');
      for (const [, v] of (await p.exec()) ?? []) index += Number(v ?? 0);
      indexKeys += keys.length;
    }
  } while (cursor !== '0');
  return { used, index, indexKeys };
}

async function indexedDocuments(redis: RedisClient, keys: KeySpace, rooms: string[]): Promise<number> {
  const store = new SearchIndexStore(redis, keys, SHARDS);
  let n = 0;
  for (const r of rooms) n += (await store.stats(r)).documents;
  return n;
}

interface SideFigures {
  server: string;
  messages: number;
  sendRate: number;
  extra: Record<string, number | string>;
  queries: QueryFigures[];
}

async function benchAxon(messages: string[], sizes: number[], kinds: QueryKind[]): Promise<SideFigures[]> {
  log(`Axon: starting (1 worker, 1 front, ${SHARDS} shards)`);
  const axon = await startAxonBench({ workers: 1, fronts: 1, shards: SHARDS, stderr: 'ignore' });
  const redis = connectRedis({ url: axon.redisUrl });
  const keys = new KeySpace(axon.keyPrefix);
  const out: SideFigures[] = [];
  try {
    const load = new MatrixLoad(axon.url);
    await load.waitUp(60_000);
    const users: User[] = [];
    for (let i = 0; i < SENDERS; i++) users.push(await load.register(`searcher${i}`));
    const l = await setUp(load, users);
    // Names and topics: none set, so the index holds exactly the messages.
    const base = await redisFigures(redis);
    let sent = 0;
    for (const size of sizes) {
      const t0 = performance.now();
      const sendRate = await sendRange(l, messages, sent, size, 'Axon');
      const phase = size - sent;
      sent = size;
      // The search reader follows the outboxes; wait until it has indexed every message.
      let indexed = 0;
      while ((indexed = await indexedDocuments(redis, keys, l.rooms)) < size) await new Promise((r) => setTimeout(r, 500));
      const caughtUp = (performance.now() - t0) / 1000;
      const mem = await redisFigures(redis);
      log(`Axon at ${size}: /send ${round(sendRate, 0)}/s; the ${phase} messages of this phase all indexed ${round(caughtUp)} s after its first send; index ${round(mem.index / size, 0)} B/message over ${mem.indexKeys} keys; Redis total +${round((mem.used - base.used) / size, 0)} B/message`);
      const queries = await runQueries(l, kinds, `Axon @ ${size}`);
      out.push({
        server: 'Axon',
        messages: size,
        sendRate: round(sendRate, 0),
        extra: { indexedMsgPerS: round(phase / caughtUp, 0), indexBytesPerMessage: round(mem.index / size, 0), redisBytesPerMessage: round((mem.used - base.used) / size, 0), indexed },
        queries,
      });
    }
    // The rebuild: indexing from stored events alone (what `npm run search -- reindex` does), 4 rooms at a time.
    const t0 = performance.now();
    await pool(l.rooms, 4, (r) => rebuildRoom(redis, keys, { room: SHARDS, user: SHARDS }, r));
    const rebuildS = (performance.now() - t0) / 1000;
    log(`Axon rebuild of ${sent} messages: ${round(rebuildS)} s, ${round(sent / rebuildS, 0)} messages/s`);
    out[out.length - 1]!.extra.rebuildMsgPerS = round(sent / rebuildS, 0);
  } finally {
    redis.disconnect();
    await axon.stop();
  }
  return out;
}

// ---- Synapse on PostgreSQL ----
/** The pinned venv has no PostgreSQL driver: psycopg2-binary from PyPI into data/, put on PYTHONPATH. */
function ensurePsycopg2(python: string): string {
  const target = join(root, 'data', 'synapse-psycopg2');
  const ok = () => spawnSync(python, ['-c', 'import psycopg2'], { env: { ...process.env, PYTHONPATH: target } }).status === 0;
  if (!ok()) {
    mkdirSync(target, { recursive: true });
    log('installing psycopg2-binary (PyPI) into data/synapse-psycopg2');
    execFileSync(python, ['-m', 'pip', 'install', '-q', '--disable-pip-version-check', '--target', target, 'psycopg2-binary'], { stdio: 'inherit' });
    if (!ok()) throw new Error('psycopg2 does not import after installing it');
  }
  return target;
}

async function benchSynapse(messages: string[], size: number, kinds: QueryKind[]): Promise<SideFigures> {
  const install = synapseInstallation();
  if (!install.ok) throw new Error(install.reason);
  process.env.PYTHONPATH = [ensurePsycopg2(install.python), process.env.PYTHONPATH].filter(Boolean).join(':');
  const pg = await startPostgres();
  const pgVersion = pg.psql('SHOW server_version').split(' ')[0]!;
  log(`Synapse ${SYNAPSE_VERSION} on PostgreSQL ${pgVersion}: starting`);
  const ca = createTestCa();
  let synapse: SynapsePeer | null = null;
  try {
    synapse = await startSynapse({
      serverName: await loopbackServerName('127.0.0.171'),
      ca,
      logLevel: 'WARNING',
      configure: (c) => {
        c.database = { name: 'psycopg2', args: { user: 'synapse', database: 'synapse', host: '127.0.0.1', port: pg.port, cp_min: 5, cp_max: 10 } };
      },
    });
    const load = new MatrixLoad(synapse.baseUrl);
    const users: User[] = [];
    for (let i = 0; i < SENDERS; i++) users.push(await synapse.registerUser(`searcher${i}`, `pw-searcher${i}`));
    const l = await setUp(load, users);
    const sendRate = await sendRange(l, messages, 0, size, 'Synapse');
    const rows = Number(pg.psql("SELECT count(*) FROM event_search WHERE key = 'content.body'"));
    const searchBytes = Number(pg.psql("SELECT pg_total_relation_size('event_search')"));
    const dbBytes = Number(pg.psql("SELECT pg_database_size('synapse')"));
    log(`Synapse at ${size}: /send ${round(sendRate, 0)}/s (${round(size / sendRate / 60, 1)} min); event_search ${rows} rows, ${round(searchBytes / size, 0)} B/message; database ${round(dbBytes / size, 0)} B/message`);
    const queries = await runQueries(l, kinds, `Synapse @ ${size}`);
    return { server: `Synapse ${SYNAPSE_VERSION} (PostgreSQL ${pgVersion})`, messages: size, sendRate: round(sendRate, 0), extra: { eventSearchBytesPerMessage: round(searchBytes / size, 0), databaseBytesPerMessage: round(dbBytes / size, 0), eventSearchRows: rows }, queries };
  } finally {
    await synapse?.stop();
    pg.stop();
    ca.cleanup();
  }
}

async function main(): Promise<void> {
  if (WITH_SYNAPSE) {
    const install = synapseInstallation();
    if (!install.ok) throw new Error(`${install.reason} (or run with --no-synapse)`);
    pgBin();
  }
  log(`generating ${MESSAGES} messages`);
  const messages = makeMessages(MESSAGES);
  const kinds = makeQueries();
  const results: SideFigures[] = [];
  const sizes = [...new Set([SYNAPSE_MESSAGES, MESSAGES])].sort((a, b) => a - b);
  results.push(...(await benchAxon(messages, sizes, kinds)));
  if (WITH_SYNAPSE) results.push(await benchSynapse(messages, SYNAPSE_MESSAGES, kinds));

  console.log(`\nPOST /search over ${ROOMS} rooms (order_by rank, 10 results a page), ${QUERIES} queries of each kind, one at a time; times in ms`);
  const rows = results.flatMap((r) => r.queries.map((q) => ({ server: `${r.server} @ ${r.messages}`, kind: q.kind, p50: q.p50, p99: q.p99, mean: q.mean, count: q.hits })));
  console.log(table(rows, ['server', 'kind', 'p50', 'p99', 'mean', 'count'], ['server @ messages', 'query', 'p50', 'p99', 'mean', 'avg count']));
  console.log('\nLoading and storage');
  for (const r of results) console.log(`  ${r.server} @ ${r.messages}: /send ${r.sendRate} messages/s; ${Object.entries(r.extra).map(([k, v]) => `${k} ${v}`).join('; ')}`);
  if (SYNAPSE_MESSAGES < MESSAGES && WITH_SYNAPSE) console.log(`\nSynapse was loaded with ${SYNAPSE_MESSAGES} messages, not ${MESSAGES}: at its /send rate the full count would take too long here (see above); Axon is shown at both sizes.`);
  const file = writeBenchResults((stamp) => `search-${stamp}.json`, { messages: MESSAGES, synapseMessages: SYNAPSE_MESSAGES, rooms: ROOMS, queries: QUERIES, results });
  console.log(`\nresults: ${file}`);
}

// `--direct`: the 1,000,000-message mode (scripts/bench-search-direct.ts).
(argv.includes('--direct') ? import('./bench-search-direct').then((m) => m.runDirect(argv)) : main()).then(
  () => process.exit(0),
  (e: Error) => {
    console.error(e);
    process.exit(1);
  },
);
