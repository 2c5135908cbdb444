/**
 * The search reader (src/readers/search-indexer.ts) indexes a batch of outbox entries together
 * (new documents many to a script call, edits and redactions in their place): on a real
 * redis-server, a batch of mixed entries — messages, a name, an encrypted event, edits (one by
 * another sender, ignored), a redaction, duplicates redelivered later in the batch, a room with a
 * long term (best postings kept) — gives exactly the index that indexing the same outputs one by
 * one gives (every search key compared, byte for byte); so does applying it all again (a
 * redelivered batch), and the reader following the outbox through its consumer group. Then, with
 * the real room actor on a single Redis and a Cluster: a reader (or a rebuild) behind a room's
 * purge writes nothing of the room, so the purge leaves none of its index.
 */
import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { JsonObject } from '../../src/protocol/json';
import { SearchIndexReader } from '../../src/readers/search-indexer';
import type { PurgeProgress, RoomConfig, RoomOutput, StoredEvent } from '../../src/rooms/model';
import { indexRoomOutput, SearchIndexStore } from '../../src/search/index-store';
import { rebuildRoom } from '../../src/search/rebuild';
import { encode } from '../../src/store/codec';
import { KeySpace, roomData, SEARCH_INDEX_GROUP } from '../../src/store/keys';
import { connectRedis, isCluster, type RedisClient } from '../../src/store/redis';
import { RoomReader } from '../../src/store/room-reader';
import { shardOf } from '../../src/store/shards';
import { buildCreateEvent } from '../../actors/room';
import { signingKeyFromSeed } from '../../src/protocol/crypto';
import type { ActorClient } from '../../src/runtime/actor-client';
import { MODES, rig, waitFor, type Rig } from '../runtime/harness';

let redis: RedisClient;
beforeAll(() => {
  redis = connectRedis({ url: inject('redisUrl') });
});
afterAll(() => redis.disconnect());

const SHARDS = 1; // every room on room shard 0: one outbox
const shardCounts = { room: SHARDS, user: 8 };
const log = pino({ level: 'silent' });
const ME = '@me:here';
const OTHER = '@other:here';
const A = '!a:here';
const B = '!b:here';

/** The room outputs, in outbox order (duplicates included), and the stored events as they end up (the redacted one redacted). */
function scenario(): { outs: RoomOutput[]; stored: { roomId: string; eventId: string; pos: number; event: JsonObject; rb?: string }[] } {
  const outs: RoomOutput[] = [];
  const pos = { [A]: 0, [B]: 0 } as Record<string, number>;
  const add = (roomId: string, type: string, content: JsonObject, extra: Partial<RoomOutput> & { sender?: string; stateKey?: string } = {}) => {
    const p = ++pos[roomId]!;
    const eventId = `$${roomId.slice(1, 2)}${p}`;
    const event: JsonObject = { type, sender: extra.sender ?? ME, room_id: roomId, origin_server_ts: 1_700_000_000_000 + p, content };
    if (extra.stateKey !== undefined) event.state_key = extra.stateKey;
    const out: RoomOutput = { roomId, eventId, pos: p, event };
    if (extra.redacted) out.redacted = extra.redacted;
    outs.push(out);
    return out;
  };
  const msg = (roomId: string, body: string, sender?: string) => add(roomId, 'm.room.message', { msgtype: 'm.text', body }, { sender });
  add(A, 'm.room.create', { creator: ME }, { stateKey: '' });
  const m1 = msg(A, 'hello brave new world');
  const m2 = msg(A, 'the quick brown fox jumps');
  add(A, 'm.room.encrypted', { algorithm: 'm.megolm.v1.aes-sha2', ciphertext: 'secret words' });
  const m3 = msg(A, 'alpha beta gamma');
  // B: a long term (more than 128 postings: best postings kept), some words varying.
  const many: RoomOutput[] = [];
  for (let i = 0; i < 150; i++) many.push(msg(B, `common ${'word '.repeat(i % 7)}number${i % 13} ${i % 5 === 0 ? 'common' : ''}`));
  add(A, 'm.room.message', { msgtype: 'm.text', body: '* delta epsilon', 'm.new_content': { msgtype: 'm.text', body: 'delta epsilon' }, 'm.relates_to': { rel_type: 'm.replace', event_id: m3.eventId } });
  add(A, 'm.room.name', { name: 'Project planning' }, { stateKey: '' });
  outs.push(m3); // redelivered after its edit: changes nothing
  const r = add(A, 'm.room.redaction', {}, { redacted: m2.eventId });
  msg(A, 'after the redaction a fox');
  add(A, 'm.room.message', { msgtype: 'm.text', body: '* hijacked', 'm.new_content': { msgtype: 'm.text', body: 'hijacked' }, 'm.relates_to': { rel_type: 'm.replace', event_id: m1.eventId } }, { sender: OTHER });
  // B: an edit and a redaction of messages with the long term, then more of them.
  add(B, 'm.room.message', { msgtype: 'm.text', body: '* common rewritten', 'm.new_content': { msgtype: 'm.text', body: 'common rewritten' }, 'm.relates_to': { rel_type: 'm.replace', event_id: many[3]!.eventId } });
  add(B, 'm.room.redaction', {}, { redacted: many[10]!.eventId });
  outs.push(many[0]!, many[1]!); // redelivered
  for (let i = 0; i < 20; i++) msg(B, `common late${i}`);
  const redactedIds = new Map([[m2.eventId, r.eventId]]);
  redactedIds.set(many[10]!.eventId, outs.find((o) => o.roomId === B && o.redacted)!.eventId);
  const seen = new Set<string>();
  const stored = [];
  for (const o of outs) {
    if (seen.has(o.eventId)) continue;
    seen.add(o.eventId);
    const rb = redactedIds.get(o.eventId);
    stored.push({ roomId: o.roomId, eventId: o.eventId, pos: o.pos, event: rb ? { ...o.event, content: {} } : o.event, ...(rb ? { rb } : {}) });
  }
  return { outs, stored };
}

async function space(stored: ReturnType<typeof scenario>['stored']): Promise<KeySpace> {
  const keys = new KeySpace(`sx${randomBytes(4).toString('hex')}:`);
  const sk = keys.shard('room', 0);
  // The rooms exist (search-index-5.lua indexes nothing of a room without its members hash).
  for (const roomId of [A, B]) await redis.hset(sk.data(roomData.members(roomId)), ME, 'join');
  for (const s of stored) {
    const blob: StoredEvent = { j: JSON.stringify(s.event), p: s.pos, d: s.pos, sb: 0, sa: 0, ...(s.rb ? { rb: s.rb } : {}) };
    await redis.set(sk.data(roomData.event(s.eventId)), encode(blob));
    await redis.zadd(sk.data(roomData.timeline(s.roomId)), s.pos, s.eventId);
  }
  return keys;
}

/** Every search key of a key space (postings, bounds, best postings, records, terms, stats, dead), by name without the prefix. */
async function dumpIndex(keys: KeySpace): Promise<Record<string, unknown>> {
  const prefix = keys.shard('room', 0).data('');
  const out: Record<string, unknown> = {};
  let cursor = '0';
  do {
    const [next, found] = await redis.scan(cursor, 'MATCH', `${prefix}s*`, 'COUNT', 1000);
    cursor = next;
    for (const k of found) {
      if (!/\}:d:s[pmdvsxt]:/.test(k)) continue;
      const type = await redis.type(k);
      const name = k.slice(prefix.length);
      if (type === 'string') out[name] = (await redis.getBuffer(k))!.toString('hex');
      else if (type === 'hash') {
        const h = await redis.hgetallBuffer(k);
        out[name] = Object.fromEntries(Object.entries(h).map(([f, v]) => [f, v.toString('hex')]));
      } else if (type === 'zset') out[name] = await redis.zrange(k, 0, -1, 'WITHSCORES');
      else if (type === 'set') out[name] = (await redis.smembers(k)).sort();
      else out[name] = type;
    }
  } while (cursor !== '0');
  return out;
}

const entriesOf = (outs: RoomOutput[]) => outs.map((o, i) => ({ id: `${1000 + i}-0`, entry: { actorId: o.roomId, kind: 'room' as const, body: encode(o) } }));
const applyOf = (reader: SearchIndexReader) => (reader as unknown as { apply(shard: number, e: ReturnType<typeof entriesOf>): Promise<void> }).apply.bind(reader);

describe('SearchIndexReader batches', () => {
  it('a batch of mixed entries gives the same index as indexing them one by one, applied again too, and through the consumer group', async () => {
    const { outs, stored } = scenario();
    // One by one: the per-output step, in order.
    const one = await space(stored);
    const oneStore = new SearchIndexStore(redis, one, SHARDS);
    const oneRooms = new RoomReader(redis, one, SHARDS);
    for (const o of outs) await indexRoomOutput(oneStore, oneRooms, o);
    const expected = await dumpIndex(one);
    // Something real to compare: both rooms' documents, postings, a long term's best postings, the redaction's dead position.
    expect(Object.keys(expected).some((k) => k.startsWith('st:'))).toBe(true);
    expect(Object.keys(expected).some((k) => k.startsWith('sx:'))).toBe(true);
    expect(await oneStore.stats(A)).toEqual({ documents: 4, totalLength: 2 + 4 + 2 + 5, top: 9 });
    expect(await oneStore.postingCount(A, 'epsilon')).toBe(1);
    expect(await oneStore.postingCount(A, 'gamma')).toBe(0);
    expect(await oneStore.postingCount(A, 'hijacked')).toBe(0);
    expect(await oneStore.postingCount(A, 'secret')).toBe(0);

    // The reader: the whole outbox as one batch (as the reader reads up to 200 at a time), then again.
    const batched = await space(stored);
    const reader = new SearchIndexReader(redis, batched, shardCounts, 'w1', log);
    await applyOf(reader)(0, entriesOf(outs));
    expect(await dumpIndex(batched)).toEqual(expected);
    await applyOf(reader)(0, entriesOf(outs));
    // Half of it again, then everything (a crash mid-batch, redelivered).
    await applyOf(reader)(0, entriesOf(outs.slice(0, 90)));
    await applyOf(reader)(0, entriesOf(outs));
    expect(await dumpIndex(batched)).toEqual(expected);
    await reader.stop();

    // Through the consumer group, from the outbox stream.
    const grouped = await space(stored);
    const outbox = grouped.shard('room', 0).outbox;
    for (const o of outs) await redis.xadd(outbox, '*', 'a', o.roomId, 'k', 'room', 'b', encode(o));
    const follower = new SearchIndexReader(redis, grouped, shardCounts, 'w2', log);
    follower.attach(0);
    const deadline = Date.now() + 30_000;
    const behind = async () => {
      const groups = (await redis.xinfo('GROUPS', outbox)) as unknown[][];
      const g = groups.map((f) => Object.fromEntries(Array.from({ length: f.length / 2 }, (_, i) => [f[2 * i], f[2 * i + 1]]))).find((x) => x.name === SEARCH_INDEX_GROUP);
      return !g || Number(g.lag) !== 0 || Number(g.pending) !== 0;
    };
    while (await behind()) {
      if (Date.now() > deadline) throw new Error('the reader did not reach the end of the outbox');
      await new Promise((r) => setTimeout(r, 20));
      follower.wake(0);
    }
    await follower.stop();
    expect(await dumpIndex(grouped)).toEqual(expected);
  });
});

/**
 * The search reader behind a room's purge (actors/room.ts purge_begin, purge), with the real room
 * actor: the purge deletes the room's keys a SCAN page per batch, so an index key written after
 * the scan has passed its place, or after the purge ended (the outbox keeps the room's entries),
 * would stay for good. search-index-5.lua writes nothing of a room whose members hash is gone,
 * and purge_begin deletes that hash first. (search-index-4.lua had no such check: the reader
 * catching up after purge_begin indexed the late message, the edit and the redaction, and read
 * again after the purge it made the room's whole index again.) The room has a long term, so the
 * purge must find its best postings too (`st:<room>:<term>`, which it left behind until 2026-12-06).
 */
describe.each(MODES)('search reader behind a room purge, on %s Redis', (mode) => {
  const SERVER = 'si.test';
  const roomConfig: RoomConfig = { serverName: SERVER, signingKey: signingKeyFromSeed('ed25519:t', new Uint8Array(32).fill(7)) };
  const alice = `@alice:${SERVER}`;
  let t: Rig;
  let actors: ActorClient;
  const readers: SearchIndexReader[] = [];

  beforeAll(async () => {
    t = await rig(mode, { room: roomConfig });
    await t.startWorker('w1');
    actors = await t.client();
  });
  afterAll(async () => {
    for (const reader of readers) await reader.stop();
    await t?.close();
  });

  /** A room made by its actor: created, alice joined (its members hash from then on), named. */
  async function newRoom(localpart: string): Promise<{ roomId: string; send: (ev: JsonObject) => Promise<{ event_id: string }>; say: (body: string) => Promise<{ event_id: string }> }> {
    const { roomId, event } = buildCreateEvent(roomConfig, { roomVersion: '10', creator: alice, roomLocalpart: localpart, ts: Date.now() });
    const send = (ev: JsonObject) => actors.ask<{ event_id: string }>('room', 'room', roomId, { op: 'send', event: ev });
    const say = (body: string) => send({ type: 'm.room.message', sender: alice, content: { msgtype: 'm.text', body } });
    await actors.ask('room', 'room', roomId, { op: 'create', event });
    await send({ type: 'm.room.member', sender: alice, state_key: alice, content: { membership: 'join' } });
    await send({ type: 'm.room.name', sender: alice, state_key: '', content: { name: 'Lighthouse keepers' } });
    return { roomId, send, say };
  }

  /** Every search index key of the room (format 2: `s<d|v|s|x|p|m|t>:<room id>…`) on its shard, with its DUMP. */
  async function searchKeys(roomId: string): Promise<Map<string, string>> {
    const base = t.keys.shard('room', shardOf(roomId, t.shardCounts.room)).data('');
    const found = new Map<string, string>();
    for (const node of isCluster(t.redis) ? t.redis.nodes('master') : [t.redis]) {
      let cursor = '0';
      do {
        const [next, page] = await node.scan(cursor, 'MATCH', `${base.replace(/[*?[\]\\]/g, '\\$&')}s*`, 'COUNT', 1000);
        for (const key of page) {
          const rel = key.slice(base.length);
          if (/^s[dvsxpmt]:/.test(rel) && rel.slice(3).startsWith(roomId)) found.set(rel, (await node.dumpBuffer(key))?.toString('hex') ?? '');
        }
        cursor = next;
      } while (cursor !== '0');
    }
    return found;
  }

  /** A reader of the room's shard (its format migration left alone: only what it reads from the outbox is indexed). */
  function readerOf(roomId: string): { reader: SearchIndexReader; caughtUp: () => Promise<void> } {
    const shard = shardOf(roomId, t.shardCounts.room);
    const outbox = t.keys.shard('room', shard).outbox;
    const reader = new SearchIndexReader(t.redis, t.keys, t.shardCounts, `r${readers.length}`, log, 3_600_000);
    readers.push(reader);
    reader.attach(shard, { quiet: true });
    /** Wake the reader until it has read and acknowledged everything in the outbox. */
    const caughtUp = async () => {
      const last = (await t.redis.xrevrange(outbox, '+', '-', 'COUNT', 1))[0]![0];
      await waitFor('the search reader to catch up', async () => {
        reader.wake(shard);
        const groups = (await t.redis.xinfo('GROUPS', outbox)) as unknown[][];
        const g = groups.map((a) => ({ name: String(a[1]), pending: Number(a[5]), last: String(a[7]) })).find((x) => x.name === SEARCH_INDEX_GROUP);
        return g !== undefined && g.pending === 0 && g.last === last;
      });
    };
    return { reader, caughtUp };
  }

  const purge = async (roomId: string) => {
    for (let cursor = '0'; ; ) {
      const batch = await actors.ask<PurgeProgress>('room', 'room', roomId, { op: 'purge', cursor }, { timeoutMs: 60_000 });
      if (batch.done) break;
      cursor = batch.cursor;
    }
  };

  it("indexes a new room's first events; once its purge has begun writes nothing of it, nor after the purge, which leaves none of its index", async () => {
    const { roomId, send, say } = await newRoom('purged');
    const first = await say('the lamp is lit at dusk');
    const doomed = await say('a ship passes the rocks');
    // A long term (more than 128 postings): its best postings are kept too (`searchData.topPrefix`).
    for (let i = 0; i < 130; i++) await say(`beam ${i}`);
    const store = new SearchIndexStore(t.redis, t.keys, t.shardCounts.room);
    const { caughtUp } = readerOf(roomId);
    await caughtUp();
    // The room's first events are indexed (its members hash exists from alice's join on, before any text).
    expect(await store.stats(roomId)).toMatchObject({ documents: 133 });
    for (const word of ['lighthouse', 'lamp', 'ship']) expect(await store.postingCount(roomId, word)).toBe(1);
    expect([...(await searchKeys(roomId)).keys()]).toContain(`st:${roomId}:beam`);

    // The deletion's last events, which the reader has not read when the purge begins: a new
    // message (the batch of new documents), an edit (a document's new content), a redaction.
    await say('the keeper leaves the island');
    await send({ type: 'm.room.message', sender: alice, content: { msgtype: 'm.text', body: '* the lamp is out', 'm.new_content': { msgtype: 'm.text', body: 'the lamp is out' }, 'm.relates_to': { rel_type: 'm.replace', event_id: first.event_id } } });
    await send({ type: 'm.room.redaction', sender: alice, redacts: doomed.event_id, content: {} });
    await actors.ask('room', 'room', roomId, { op: 'purge_begin' });
    const atBegin = await searchKeys(roomId);
    expect(atBegin.size).toBeGreaterThan(0);
    await caughtUp();
    expect(await searchKeys(roomId)).toEqual(atBegin);
    expect(await store.postingCount(roomId, 'keeper')).toBe(0);

    await purge(roomId);
    expect([...(await searchKeys(roomId)).keys()]).toEqual([]);
    // A reader far behind, or the entries read again (a handoff's redelivery): after the purge,
    // the room's whole outbox once more. Nothing of its index comes back.
    await t.redis.xgroup('SETID', t.keys.shard('room', shardOf(roomId, t.shardCounts.room)).outbox, SEARCH_INDEX_GROUP, '0');
    await caughtUp();
    expect([...(await searchKeys(roomId)).keys()]).toEqual([]);
  });

  it('a rebuild of the room once its purge has begun (the reindex, the format migration) writes nothing of it', async () => {
    const { roomId, say } = await newRoom('rebuilt');
    await say('fog over the harbour');
    const store = new SearchIndexStore(t.redis, t.keys, t.shardCounts.room);
    expect(await rebuildRoom(t.redis, t.keys, t.shardCounts, roomId)).toBe(2);
    expect(await store.postingCount(roomId, 'fog')).toBe(1);
    await actors.ask('room', 'room', roomId, { op: 'purge_begin' });
    // Its timeline is still there (the scan has not begun): the rebuild clears the index and indexes nothing.
    expect(await rebuildRoom(t.redis, t.keys, t.shardCounts, roomId)).toBe(0);
    expect([...(await searchKeys(roomId)).keys()]).toEqual([]);
    await purge(roomId);
    expect([...(await searchKeys(roomId)).keys()]).toEqual([]);
  });
});
