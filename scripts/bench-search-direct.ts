/**
 * `npm run bench:search -- --direct`: server-side search at sizes /send cannot reach here
 * (1,000,000 messages), through the real pipeline, beside Synapse on the same messages in the same
 * run (prints figures; not a test).
 *
 * Axon (a throwaway cluster: managed redis-server with AOF `appendfsync always`, W workers, one
 * front, 16 shards, the built JavaScript as in production): one user creates 100 rooms and four
 * others join them over HTTP; then the messages go into the room actors as the fronts put them
 * there — `send` asks through an ActorClient on the shards' inboxes, many in flight — and a share
 * of them (`--http-share`, 1% by default) through `PUT /send` over HTTP. Each room actor builds,
 * signs, authorises and persists each message with its outbox entry; the workers' readers follow
 * the outboxes as always, the search reader among them indexing every message. The bench prints
 * the ingest rate, how the search reader kept up (indexed documents sampled every 10 s: the
 * largest lag, the time to catch up after the last send, the indexing rate), Redis memory per
 * message (INFO used_memory, and every key's MEMORY USAGE by kind of key), the AOF's size on disk.
 *
 * The messages and query terms are those of the index-level benches (scripts/lib/search-corpus.ts,
 * same seed: 8–20 words from a Zipf-like 20,000-word vocabulary, message i in room i mod 100, sent
 * by the room's one sender; the terms drawn after `--messages` messages, so at 1,000,000 they are
 * the terms of bench-search-index.ts and bench-search-postgres.ts at 1,000,000).
 *
 * Synapse 1.163.2 on PostgreSQL (a throwaway cluster): the same users and rooms over HTTP, the
 * first `--synapse-http` messages (default 2,000) through its `PUT /send` (its rate printed); then,
 * Synapse stopped, the rest put into its database as Synapse persists a message
 * (scripts/lib/synapse-bulk-load.ts: real events signed with its key, their rows in `events`,
 * `event_json`, `event_search`, `event_to_state_groups`, `event_edges`), and Synapse started
 * again. Why: its /send takes 28–50 messages/s here (6–10 hours for 1,000,000; no batch send since
 * MSC2716 was withdrawn); loaded this way, the queries go through Synapse's real `POST /search`
 * (the full-text query, then fetching up to 500 matched events and filtering them for visibility),
 * which the index-level comparison (bench-search-postgres.ts) leaves out.
 *
 * Queries: `POST /_matrix/client/v3/search` over real HTTP as the user in the 100 rooms, 10 a page,
 * `order_by` rank then recent; one-word (common and rare), two-word and prefix terms, `--queries`
 * of each kind (default 20); Axon and Synapse alternate query by query (which goes first
 * alternates too), so both see the same load on this shared machine.
 *
 *   npm run bench:search -- --direct [--messages 1000000] [--queries 20] [--http-share 0.01]
 *     [--synapse-http 2000] [--workers 1] [--in-flight 128] [--ingest-minutes M]
 *     [--keep DIR | --reuse DIR] [--no-synapse] [--no-key-sizes]
 *
 * `--keep DIR`: the Redis data (AOF), PostgreSQL's cluster and a manifest (users, tokens, rooms,
 * how many messages each side holds) stay in DIR. `--reuse DIR`: start both again on that data,
 * load only what is missing up to `--messages` (none when it is all there) and run the queries:
 * a rerun on new code takes minutes instead of the load (on a new index format, the workers'
 * search reader rebuilds the rooms first: the bench waits for it and prints how long it took).
 * `--ingest-minutes`: stop taking new messages after that long (the figures are then at the size
 * reached; `--reuse` continues from there). Remove DIR by hand when done (several GB at 1,000,000).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { installNativeEd25519Signer } from '../src/crypto/ed25519-native';
import { ActorClient, ActorTimeoutError } from '../src/runtime/actor-client';
import { readShards, readWorkers, rebalance } from '../src/runtime/cluster-admin';
import { SearchIndexStore } from '../src/search/index-store';
import { KeySpace, searchShardData } from '../src/store/keys';
import { connectRedis, type RedisClient } from '../src/store/redis';
import { startAxonBench, type AxonBench } from './lib/axon-bench-cluster';
import { percentile, pool, round, seededRandom, sleep, table, writeBenchResults } from './lib/bench-util';
import { C, enc, MatrixLoad, type User } from './lib/matrix-load';
import { pgBin, startPostgres } from './lib/postgres';
import { searchCorpus } from './lib/search-corpus';
import { bulkLoadSynapse } from './lib/synapse-bulk-load';
import { loopbackServerName, startSynapse, SYNAPSE_VERSION, synapseInstallation, type SynapsePeer } from './lib/synapse-peer';
import { createTestCa } from './lib/test-ca';

// libsodium as the ed25519 signer where it loads, as in every process entry (src/process-lifecycle.ts).
installNativeEd25519Signer();

const ROOMS = 100;
const SENDERS = 5;
const SHARDS = 16;
const HTTP_IN_FLIGHT = 32;
const root = join(import.meta.dirname, '..');
const log = (s: string) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${s}`);
const load1 = () => loadavg().map((l) => l.toFixed(1)).join(' ');

interface Options {
  messages: number;
  queries: number;
  httpShare: number;
  synapseHttp: number;
  workers: number;
  inFlight: number;
  ingestMinutes: number;
  keep: string | null;
  reuse: boolean;
  synapse: boolean;
  keySizes: boolean;
}

function options(argv: string[]): Options {
  const num = (name: string, dflt: number) => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? Number(argv[i + 1]) : dflt;
  };
  const str = (name: string) => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? (argv[i + 1] ?? null) : null;
  };
  const reuse = str('reuse');
  return {
    messages: num('messages', 1_000_000),
    queries: num('queries', 20),
    httpShare: num('http-share', 0.01),
    synapseHttp: num('synapse-http', 2_000),
    workers: num('workers', 1),
    inFlight: num('in-flight', 128),
    ingestMinutes: num('ingest-minutes', Infinity),
    keep: reuse ?? str('keep'),
    reuse: reuse !== null,
    synapse: !argv.includes('--no-synapse'),
    keySizes: !argv.includes('--no-key-sizes'),
  };
}

interface SavedUser {
  userId: string;
  token: string;
}
interface Manifest {
  axon?: { users: SavedUser[]; rooms: string[]; loaded: number; baseUsedMemory: number };
  synapse?: { serverName: string; users: SavedUser[]; rooms: string[]; loaded: number; httpSent: number };
}

/** The messages in order: text, room index, and whether it goes through HTTP (Axon). */
function messageStream(httpShare: number) {
  const corpus = searchCorpus();
  const http = seededRandom(7);
  let i = 0;
  return {
    corpus,
    next: () => {
      const text = corpus.next();
      const viaHttp = http() < httpShare;
      const k = i++;
      return { i: k, text, room: k % ROOMS, viaHttp };
    },
    skip(n: number) {
      for (let k = 0; k < n; k++) this.next();
    },
  };
}

async function createRooms(load: MatrixLoad, users: User[]): Promise<string[]> {
  const [searcher, ...others] = users;
  const rooms: string[] = [];
  for (let i = 0; i < ROOMS; i++) rooms.push(await load.createRoom(searcher!, { preset: 'public_chat' }));
  await pool(
    others.flatMap((u) => rooms.map((r) => [u, r] as const)),
    8,
    ([u, r]) => load.join(u, r),
  );
  return rooms;
}

const usedMemory = async (redis: RedisClient) => Number(/used_memory:(\d+)/.exec(await redis.info('memory'))?.[1] ?? 0);

/** Where Redis's memory goes, by kind of key (MEMORY USAGE of every key). */
async function memoryByKind(redis: RedisClient, prefix: string): Promise<Map<string, { keys: number; bytes: number }>> {
  const search: Record<string, string> = { sp: 'search postings', sm: 'search block bounds', sd: 'search document records', sv: 'search term sets', ss: 'search stats', sx: 'search dead sets' };
  // Key shapes: src/store/keys.ts (`<prefix>{r:N}:…` room shards, `{u:N}:…` user shards, `d:` their data).
  const kind = (key: string): string => {
    const rel = key.startsWith(prefix) ? key.slice(prefix.length) : key;
    const m = /^\{([ru]):\d+\}:(.*)$/s.exec(rel);
    if (!m) return `global ${rel.split(/[:{}]/).filter(Boolean)[0] ?? rel}`;
    const family = m[1] === 'r' ? 'room' : 'user';
    const rest = m[2]!;
    if (rest.startsWith('done:')) return `${family} shards: dedupe records of asks (10 min)`;
    if (!rest.startsWith('d:')) return `${family} shards: ${rest.split(':')[0]}`;
    const name = rest.slice(2);
    if (name.startsWith('ev:')) return 'event bodies';
    // Room ids with or without a server name (`!opaque:server`, v12's `!hash`): the kind is the last word.
    const room = /^room:!.*:([a-z]+)(?::\d+)?$/s.exec(name);
    if (room) return `room ${room[1]}`;
    const user = /^user:@[^:]+:[^:]+:([a-z]+)/.exec(name);
    if (user) return `user ${user[1] === 'pn' ? 'pn (unread notifications per room)' : user[1]}`;
    const s = /^(s[a-z]):/.exec(name);
    if (s) return search[s[1]!] ?? `search ${s[1]}`;
    return `${family} ${name.split(':')[0]}`;
  };
  const out = new Map<string, { keys: number; bytes: number }>();
  let cursor = '0';
  do {
    const [next, found] = await redis.scan(cursor, 'COUNT', 5000);
    cursor = next;
    if (found.length === 0) continue;
    const p = redis.pipeline();
    for (const k of found) p.memory('USAGE', k, 'SAMPLES', '0');
    const sizes = (await p.exec()) ?? [];
    found.forEach((k, j) => {
      const name = kind(k);
      const had = out.get(name) ?? { keys: 0, bytes: 0 };
      had.keys++;
      had.bytes += Number(sizes[j]?.[1] ?? 0);
      out.set(name, had);
    });
  } while (cursor !== '0');
  return out;
}

function duBytes(dir: string): number {
  const r = spawnSync('du', ['-sb', dir], { encoding: 'utf8' });
  return Number(r.stdout.split('\t')[0] ?? 0);
}

interface QueryTimes {
  times: number[];
  counts: number[];
  errors: number;
}

interface Side {
  name: string;
  load: MatrixLoad;
  searcher: User;
  results: Map<string, QueryTimes>;
}

async function searchOnce(side: Side, term: string, order: 'rank' | 'recent', key: string | null): Promise<void> {
  const t0 = performance.now();
  let status = 0;
  let count = 0;
  try {
    const r = await side.load.request('POST', `${C}/search`, { token: side.searcher.token, body: { search_categories: { room_events: { search_term: term, order_by: order } } }, timeoutMs: 300_000 });
    status = r.status;
    if (status === 200) count = Number((r.body as { search_categories: { room_events: { count?: number } } }).search_categories.room_events.count ?? 0);
  } catch {
    status = 0;
  }
  const ms = performance.now() - t0;
  if (key === null) return; // a warm-up
  const q = side.results.get(key) ?? { times: [], counts: [], errors: 0 };
  if (status === 200) {
    q.times.push(ms);
    q.counts.push(count);
  } else q.errors++;
  side.results.set(key, q);
}

/** Axon side: load (what is missing of) the messages, measure; returns the running cluster. */
async function axonPhase(o: Options, manifest: Manifest, save: () => void, figures: Record<string, unknown>): Promise<{ axon: AxonBench; side: Side; redis: RedisClient }> {
  log(`Axon: starting (${o.workers} worker${o.workers > 1 ? 's' : ''}, 1 front, ${SHARDS} shards${o.keep ? `, data in ${join(o.keep, 'axon')}` : ''})`);
  const t0 = performance.now();
  const axon = await startAxonBench({ workers: o.workers, fronts: 1, shards: SHARDS, stderr: 'ignore', ...(o.keep ? { dataDir: join(o.keep, 'axon') } : {}) });
  const redis = connectRedis({ url: axon.redisUrl });
  const keys = new KeySpace(axon.keyPrefix);
  const load = new MatrixLoad(axon.url);
  await load.waitUp(600_000);
  if (o.workers > 1) {
    // The first worker up takes every shard: even them out (as `cluster up` does), or one worker does all the work.
    const counts = { room: SHARDS, user: SHARDS };
    for (;;) {
      const live = (await readWorkers(redis, keys, 5000)).filter((w) => w.alive).length;
      const held = (await readShards(redis, keys, counts)).filter((s) => s.owner).length;
      if (live === o.workers && held === 2 * SHARDS) break;
      await sleep(200);
    }
    await rebalance(redis, keys, counts, 5000);
  }
  log(`Axon up in ${round((performance.now() - t0) / 1000)} s (Redis's AOF loaded); load average ${load1()}`);
  let users: User[];
  let rooms: string[];
  if (manifest.axon) ({ users, rooms } = manifest.axon);
  else {
    users = [];
    for (let i = 0; i < SENDERS; i++) users.push(await load.register(`searcher${i}`));
    rooms = await createRooms(load, users);
    manifest.axon = { users, rooms, loaded: 0, baseUsedMemory: await usedMemory(redis) };
    save();
  }
  const ax = manifest.axon;
  const store = new SearchIndexStore(redis, keys, SHARDS);
  const indexed = async () => (await Promise.all(rooms.map((r) => store.stats(r)))).reduce((a, s) => a + s.documents, 0);

  if (ax.loaded > 0) {
    // A rerun: the search reader may be rebuilding the index in a new format (src/search/migrate.ts).
    const w0 = performance.now();
    for (;;) {
      const p = redis.pipeline();
      for (let s = 0; s < SHARDS; s++) {
        const shard = keys.shard('room', s);
        p.hget(shard.data(searchShardData.format), 'format');
        p.scard(shard.data(searchShardData.pending));
      }
      const r = ((await p.exec()) ?? []).map(([, v]) => v);
      const formats = new Set(r.filter((_, k) => k % 2 === 0).map(String));
      const pending = r.filter((_, k) => k % 2 === 1).reduce((a: number, v) => a + Number(v), 0);
      const docs = await indexed();
      if (pending === 0 && formats.size === 1 && !formats.has('listing') && !formats.has('null') && docs >= ax.loaded) break;
      if (performance.now() - w0 > 3_600_000) throw new Error(`the index did not settle in an hour: formats ${[...formats]}, ${pending} rooms pending, ${docs}/${ax.loaded} documents`);
      await sleep(2000);
    }
    const waited = (performance.now() - w0) / 1000;
    log(`Axon: the index of the ${ax.loaded} messages already there is ready (waited ${round(waited)} s for the search reader's format check${waited > 5 ? ' and rebuild' : ''})`);
    figures.axonIndexReadyAfterRestartSeconds = round(waited);
  }

  const target = o.messages;
  if (ax.loaded < target) {
    const stream = messageStream(o.httpShare);
    stream.skip(ax.loaded);
    const client = new ActorClient(connectRedis({ url: axon.redisUrl }), keys, { room: SHARDS, user: SHARDS }, 'bench-search');
    await client.start();
    const run = randomBytes(6).toString('base64url');
    const docsBefore = await indexed();
    const memBefore = await usedMemory(redis);
    const from = ax.loaded;
    const httpTimes: number[] = [];
    const samples: { t: number; sent: number; indexed: number }[] = [];
    let sent = 0;
    const started = performance.now();
    const deadline = started + o.ingestMinutes * 60_000;
    let lastLog = started;
    const sampler = setInterval(() => {
      void indexed().then((n) => {
        const t = (performance.now() - started) / 1000;
        samples.push({ t, sent, indexed: n - docsBefore });
        if (performance.now() - lastLog >= 30_000) {
          lastLog = performance.now();
          log(`  Axon: ${from + sent}/${target} sent (${round(sent / t, 0)}/s), ${n - docsBefore} indexed (lag ${sent - (n - docsBefore)}); load average ${load1()}`);
        }
      }, () => undefined);
    }, 10_000);
    const ids = Array.from({ length: target - from }, (_, k) => k);
    try {
      await pool(
        ids,
        o.inFlight,
        async () => {
          const m = stream.next();
          const u = users[m.room % SENDERS]!;
          const roomId = rooms[m.room]!;
          if (m.viaHttp) {
            const h0 = performance.now();
            await load.ok('PUT', `${C}/rooms/${enc(roomId)}/send/m.room.message/m${m.i}`, { token: u.token, body: { msgtype: 'm.text', body: m.text }, timeoutMs: 300_000 });
            httpTimes.push(performance.now() - h0);
          } else {
            const mid = `bench-search:${run}:${m.i}`;
            for (let attempt = 0; ; attempt++) {
              try {
                await client.ask('room', 'room', roomId, { op: 'send', event: { type: 'm.room.message', sender: u.userId, content: { msgtype: 'm.text', body: m.text } } }, { mid, timeoutMs: 120_000 });
                break;
              } catch (e) {
                // The same message id again: the room actor answers a repeat from its dedupe record.
                if (!(e instanceof ActorTimeoutError) || attempt >= 4) throw e;
              }
            }
          }
          sent++;
        },
        deadline,
      );
    } finally {
      clearInterval(sampler);
      await client.close();
    }
    const ingestSeconds = (performance.now() - started) / 1000;
    ax.loaded = from + sent;
    save();
    const lagAtEnd = sent - ((await indexed()) - docsBefore);
    log(`Axon: ${sent} messages in ${round(ingestSeconds)} s: ${round(sent / ingestSeconds, 0)} messages/s (${httpTimes.length} of them through HTTP /send); the search reader ${lagAtEnd} behind at the last send; load average ${load1()}`);
    // The search reader catching up: every message of the rooms indexed (they hold no other text).
    let docs = 0;
    while ((await indexed()) < ax.loaded) await sleep(500);
    docs = (await indexed()) - docsBefore;
    const allIndexed = (performance.now() - started) / 1000;
    const catchUp = allIndexed - ingestSeconds;
    const maxLag = Math.max(lagAtEnd, ...samples.map((s) => s.sent - s.indexed));
    const during = samples.length ? samples[samples.length - 1]! : { t: 0, indexed: 0 };
    httpTimes.sort((a, b) => a - b);
    const ingest = {
      messages: sent,
      total: ax.loaded,
      seconds: round(ingestSeconds),
      messagesPerS: round(sent / ingestSeconds, 0),
      httpSends: httpTimes.length,
      httpSendP50ms: round(percentile(httpTimes, 50)),
      httpSendP99ms: round(percentile(httpTimes, 99)),
      indexedMessagesPerSWhileSending: round(during.t ? during.indexed / during.t : 0, 0),
      maxIndexLag: maxLag,
      indexLagAtLastSend: lagAtEnd,
      catchUpSeconds: round(catchUp),
      catchUpMessagesPerS: catchUp > 1 ? round(lagAtEnd / catchUp, 0) : null,
      allIndexedSeconds: round(allIndexed),
      indexedMessagesPerS: round(sent / allIndexed, 0),
      indexed: docs,
      memoryPerMessageThisLoad: round(((await usedMemory(redis)) - memBefore) / sent, 0),
      loadAverageAtEnd: load1(),
    };
    figures.axonIngest = ingest;
    log(
      `Axon: every message indexed ${round(allIndexed)} s after the first send (${ingest.indexedMessagesPerS} messages/s overall; ${ingest.indexedMessagesPerSWhileSending}/s while sending; largest lag ${maxLag}; caught up ${round(catchUp)} s after the last send${ingest.catchUpMessagesPerS ? `, ${ingest.catchUpMessagesPerS} messages/s` : ''}); /send over HTTP p50 ${ingest.httpSendP50ms} / p99 ${ingest.httpSendP99ms} ms`,
    );
  }

  // Memory and disk at the size reached.
  const used = await usedMemory(redis);
  const mem: Record<string, unknown> = { messages: ax.loaded, usedMemoryBytes: used, bytesPerMessage: round((used - ax.baseUsedMemory) / ax.loaded, 0) };
  log(`Axon: Redis used_memory ${round(used / 2 ** 20, 0)} MB, ${mem.bytesPerMessage} bytes per message (over the empty rooms)`);
  if (o.keySizes) {
    const k0 = performance.now();
    const byKind = await memoryByKind(redis, axon.keyPrefix);
    const rows = [...byKind].sort((a, b) => b[1].bytes - a[1].bytes).map(([kind, v]) => ({ kind, keys: v.keys, perMessage: round(v.bytes / ax.loaded, 0) }));
    mem.byKind = rows;
    console.log(`Redis memory by kind of key (MEMORY USAGE of every key, ${round((performance.now() - k0) / 1000)} s), bytes per message:`);
    console.log(table(rows, ['kind', 'keys', 'perMessage'], ['kind of key', 'keys', 'B/message']));
  }
  const dir = String(((await redis.config('GET', 'dir')) as string[])[1]);
  mem.aofBytes = duBytes(dir);
  log(`Axon: Redis data dir ${dir}: ${round(Number(mem.aofBytes) / 2 ** 30, 2)} GB on disk`);
  figures.axonMemory = mem;
  return { axon, redis, side: { name: 'Axon', load, searcher: users[0]!, results: new Map() } };
}

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

async function synapsePhase(o: Options, manifest: Manifest, save: () => void, figures: Record<string, unknown>, size: number) {
  const install = synapseInstallation();
  if (!install.ok) throw new Error(install.reason);
  process.env.PYTHONPATH = [ensurePsycopg2(install.python), process.env.PYTHONPATH].filter(Boolean).join(':');
  const pg = await startPostgres(o.keep ? { dir: join(o.keep, 'pg') } : {});
  const pgVersion = pg.psql('SHOW server_version').split(' ')[0]!;
  const ca = createTestCa();
  let synapse: SynapsePeer | null = null;
  const stop = async () => {
    await synapse?.stop();
    pg.stop();
    ca.cleanup();
  };
  try {
    const serverName = manifest.synapse?.serverName ?? (await loopbackServerName('127.0.0.171'));
    log(`Synapse ${SYNAPSE_VERSION} on PostgreSQL ${pgVersion}: starting as ${serverName}`);
    synapse = await startSynapse({
      serverName,
      ca,
      logLevel: 'WARNING',
      startTimeoutMs: 600_000,
      configure: (c) => {
        c.database = { name: 'psycopg2', args: { user: 'synapse', database: 'synapse', host: '127.0.0.1', port: pg.port, cp_min: 5, cp_max: 10 } };
      },
    });
    const load = new MatrixLoad(synapse.baseUrl);
    if (!manifest.synapse) {
      const users: User[] = [];
      for (let i = 0; i < SENDERS; i++) users.push(await synapse.registerUser(`searcher${i}`, `pw-searcher${i}`));
      const rooms = await createRooms(load, users);
      manifest.synapse = { serverName, users, rooms, loaded: 0, httpSent: 0 };
      save();
    }
    const sy = manifest.synapse;
    const stream = messageStream(0);
    stream.skip(sy.loaded);
    // The first messages through /send (every room gets its first ones this way: the bulk load starts from them).
    const httpTo = Math.min(size, Math.max(sy.loaded, Math.max(o.synapseHttp, ROOMS)));
    if (sy.loaded < httpTo) {
      const n = httpTo - sy.loaded;
      const t0 = performance.now();
      const batch = Array.from({ length: n }, () => stream.next());
      await pool(batch, HTTP_IN_FLIGHT, async (m) => {
        await load.ok('PUT', `${C}/rooms/${enc(sy.rooms[m.room]!)}/send/m.room.message/m${m.i}`, { token: sy.users[m.room % SENDERS]!.token, body: { msgtype: 'm.text', body: m.text }, timeoutMs: 300_000 });
      });
      const s = (performance.now() - t0) / 1000;
      sy.loaded = httpTo;
      sy.httpSent += n;
      save();
      figures.synapseSend = { messages: n, messagesPerS: round(n / s, 1), loadAverage: load1() };
      log(`Synapse: ${n} messages through /send in ${round(s)} s: ${round(n / s, 1)} messages/s (${round(size / (n / s) / 3600, 1)} hours for ${size} this way); load average ${load1()}`);
    }
    if (sy.loaded < size) {
      await synapse.down();
      const from = sy.loaded;
      log(`Synapse stopped: loading messages ${from}–${size} into its database`);
      const iter = function* () {
        for (let i = from; i < size; i++) {
          const m = stream.next();
          yield { roomId: sy.rooms[m.room]!, body: m.text };
        }
      };
      const f = bulkLoadSynapse({ bin: pg.bin, port: pg.port }, synapse, iter(), { firstTs: Date.now(), log });
      sy.loaded = size;
      save();
      figures.synapseBulkLoad = { ...f, loadAverage: load1() };
      log(`Synapse: ${f.messages} messages loaded: built and copied in ${round(f.buildSeconds)} s, inserted in ${round(f.insertSeconds)} s, analysed in ${round(f.analyzeSeconds)} s`);
      const upMs = await synapse.up();
      log(`Synapse up again in ${round(upMs / 1000)} s`);
      if (f.last) {
        // Synapse reads a loaded event as its own (it recomputes the id from the stored JSON and refuses a mismatch).
        const ev = await load.ok('GET', `${C}/rooms/${enc(f.last.roomId)}/event/${enc(f.last.eventId)}`, { token: sy.users[0]!.token });
        if (ev.content?.body !== f.last.body) throw new Error(`Synapse serves the last loaded event with another body: ${JSON.stringify(ev).slice(0, 300)}`);
      }
    }
    const rows = Number(pg.psql("SELECT count(*) FROM event_search WHERE key = 'content.body'"));
    const searchBytes = Number(pg.psql("SELECT pg_total_relation_size('event_search')"));
    const dbBytes = Number(pg.psql("SELECT pg_database_size('synapse')"));
    figures.synapseStorage = { postgres: pgVersion, eventSearchRows: rows, eventSearchBytesPerMessage: round(searchBytes / size, 0), databaseBytesPerMessage: round(dbBytes / size, 0) };
    log(`Synapse: event_search ${rows} rows, ${round(searchBytes / size, 0)} bytes per message with its indexes; the whole database ${round(dbBytes / size, 0)} bytes per message`);
    return { side: { name: `Synapse ${SYNAPSE_VERSION}`, load, searcher: sy.users[0]!, results: new Map() } as Side, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

export async function runDirect(argv: string[]): Promise<void> {
  const o = options(argv);
  if (o.synapse) {
    const install = synapseInstallation();
    if (!install.ok) throw new Error(`${install.reason} (or run with --no-synapse)`);
    pgBin();
  }
  if (o.reuse && !existsSync(join(o.keep!, 'manifest.json'))) throw new Error(`--reuse ${o.keep}: no manifest.json there (make one with --keep)`);
  if (o.keep) {
    mkdirSync(o.keep, { recursive: true });
    // One run at a time on a kept dir: two redis-servers on one AOF directory corrupt each other's data.
    const lock = join(o.keep, 'lock');
    if (existsSync(lock)) {
      const pid = Number(readFileSync(lock, 'utf8'));
      let alive = false;
      try {
        process.kill(pid, 0);
        alive = pid !== process.pid;
      } catch {
        alive = false;
      }
      if (alive) throw new Error(`${o.keep} is in use by process ${pid}`);
    }
    writeFileSync(lock, String(process.pid));
    process.once('exit', () => rmSync(lock, { force: true }));
  }
  const manifestPath = o.keep ? join(o.keep, 'manifest.json') : null;
  const manifest: Manifest = manifestPath && existsSync(manifestPath) ? (JSON.parse(readFileSync(manifestPath, 'utf8')) as Manifest) : {};
  const save = () => {
    if (manifestPath) writeFileSync(manifestPath, `${JSON.stringify(manifest, null, 2)}\n`);
  };
  const figures: Record<string, unknown> = { loadAverageAtStart: load1() };
  log(`bench:search --direct: ${o.messages} messages over ${ROOMS} rooms, ${o.queries} queries of each kind; load average ${load1()}`);

  const { axon, redis, side: axonSide } = await axonPhase(o, manifest, save, figures);
  let synapse: { side: Side; stop: () => Promise<void> } | null = null;
  try {
    const size = manifest.axon!.loaded;
    if (o.synapse) synapse = await synapsePhase(o, manifest, save, figures, size);
    // The terms: drawn after --messages messages (the index-level benches' terms at that size).
    const corpus = searchCorpus();
    for (let i = 0; i < o.messages; i++) corpus.next();
    const kinds = corpus.queries(o.queries);
    const sides = synapse ? [axonSide, synapse.side] : [axonSide];
    log(`queries over ${size} messages: ${sides.map((s) => s.name).join(' and ')} alternating; load average ${load1()}`);
    for (const s of sides) for (const w of ['warm', 'up', 'query']) await searchOnce(s, w, 'rank', null);
    let turn = 0;
    for (const order of ['rank', 'recent'] as const) {
      for (const { name, terms } of kinds) {
        for (const term of terms) {
          const ordered = turn++ % 2 === 0 ? sides : [...sides].reverse();
          for (const s of ordered) await searchOnce(s, term, order, `${order}|${name}`);
        }
        log(`  ${order} ${name}: ${sides.map((s) => `${s.name} p50 ${round(percentile([...s.results.get(`${order}|${name}`)!.times].sort((a, b) => a - b), 50))} ms`).join(', ')}; load average ${load1()}`);
      }
    }
    figures.loadAverageAtEnd = load1();

    const rows = sides.flatMap((s) =>
      [...s.results].map(([key, q]) => {
        const [order, kind] = key.split('|');
        const t = [...q.times].sort((a, b) => a - b);
        return { server: s.name, order, kind, p50: round(percentile(t, 50)), p99: round(percentile(t, 99)), mean: round(t.reduce((a, b) => a + b, 0) / Math.max(1, t.length)), count: round(q.counts.reduce((a, b) => a + b, 0) / Math.max(1, q.counts.length), 0), errors: q.errors };
      }),
    );
    console.log(`\nPOST /search over ${ROOMS} rooms, ${size} messages, 10 a page, ${o.queries} terms of each kind, one query at a time (Axon and Synapse alternating); ms`);
    console.log(table(rows, ['order', 'kind', 'server', 'p50', 'p99', 'mean', 'count', 'errors'], ['order_by', 'query', 'server', 'p50', 'p99', 'mean', 'avg count', 'errors']));
    console.log(`\nload average at start ${figures.loadAverageAtStart}, at end ${figures.loadAverageAtEnd} (2 cores, shared with other work)`);
    const file = writeBenchResults((stamp) => `search-direct-${stamp}.json`, { options: { ...o, ingestMinutes: Number.isFinite(o.ingestMinutes) ? o.ingestMinutes : null }, messages: size, figures, queries: rows });
    console.log(`results: ${file}`);
    if (o.keep) console.log(`data kept in ${o.keep}: rerun with --reuse ${o.keep}; remove it when done`);
  } finally {
    await synapse?.stop();
    redis.disconnect();
    await axon.stop();
  }
}
