/**
 * The search index upgrades itself (issue 21): a cluster started with the operator's scripts (one
 * worker, one front, managed redis-server); two rooms with messages, an edit and a redaction are
 * indexed; then their index is put back to what an upgrade finds — room A in format 1 (its format
 * 2 keys deleted, a format 1 stats hash in their place, the shard's migration state gone), room B
 * half-way through an interrupted migration (its shard listed, B pending, B's index half deleted).
 * While the worker still runs (it checked the shards when it took them) every search must answer
 * as before, from the rooms' stored events. After a rolling restart of the worker, the search
 * reader rebuilds both rooms by itself (progress in its log), their shards say format 2, no
 * format 1 key is left, and every search still answers as before, now from the index.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SearchIndexStore } from '../../src/search/index-store';
import { rebuildRoom } from '../../src/search/rebuild';
import { KeySpace, legacySearchData, searchData, searchShardData } from '../../src/store/keys';
import { connectRedis, type RedisClient } from '../../src/store/redis';
import { shardOf } from '../../src/store/shards';
import { ScriptCluster, type Json } from '../setup/script-cluster';

const SHARDS = 16;

describe('search index migration to format 2 by the search reader', () => {
  let cluster: ScriptCluster;
  const call = (token: string | null, method: string, path: string, body?: unknown) => cluster.call(token, method, path, body);

  beforeAll(async () => {
    cluster = await ScriptCluster.create({ name: 'search-migrate', shards: SHARDS, env: { AXON_REDIS_KEY_PREFIX: 'axon:' } });
    await cluster.up(1, 1);
  }, 240_000);

  afterAll(async () => {
    await cluster?.destroy();
  }, 120_000);

  it('answers from stored events while rooms are not in format 2, and rebuilds them itself after a restart', async () => {
    const { token } = await cluster.register('migrator');
    const rooms: string[] = [];
    // Two rooms in two different shards: the test leaves one shard as format 1 left it and the
    // other half-way through its listing, and one shard cannot be both (1 in 16 pairs collided).
    for (let i = 0; rooms.length < 2 && i < 20; i++) {
      const created = await call(token, 'POST', '/createRoom', { preset: 'private_chat', name: `harbour ${rooms.length}` });
      expect(created.status).toBe(200);
      if (rooms.length === 0 || shardOf(created.body.room_id, SHARDS) !== shardOf(rooms[0]!, SHARDS)) rooms.push(created.body.room_id);
    }
    expect(rooms).toHaveLength(2);
    const send = async (room: string, txn: string, content: Json) => {
      const res = await call(token, 'PUT', `/rooms/${encodeURIComponent(room)}/send/m.room.message/${txn}`, content);
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      return res.body.event_id as string;
    };
    const N = 60;
    const ids: string[] = [];
    for (let i = 0; i < N; i++) ids.push(await send(rooms[i % 2]!, `m${i}`, { msgtype: 'm.text', body: `heron ${i % 3 === 0 ? 'heron ' : ''}seen at harbour number n${i}${i % 5 === 0 ? ' with kingfisher' : ''}` }));
    // An edit (message 4 is then found by "egret", not by n4), a redaction (message 7 gone).
    await send(rooms[0]!, 'edit', { msgtype: 'm.text', body: '* egret', 'm.new_content': { msgtype: 'm.text', body: 'egret at the harbour' }, 'm.relates_to': { rel_type: 'm.replace', event_id: ids[4] } });
    const red = await call(token, 'PUT', `/rooms/${encodeURIComponent(rooms[1]!)}/redact/${encodeURIComponent(ids[7]!)}/r1`, {});
    expect(red.status).toBe(200);

    const queries: [string, 'rank' | 'recent'][] = [
      ['heron', 'rank'], ['heron', 'recent'], ['heron kingfisher', 'rank'], ['harbour', 'recent'], ['egret', 'rank'], ['n4 heron', 'recent'], ['n7 heron', 'rank'], ['king', 'rank'], ['her', 'recent'],
    ];
    /** Every result of a search, over all its pages: event id and rank. */
    const answer = async (term: string, order: 'rank' | 'recent') => {
      const out: [string, number | undefined][] = [];
      let next: string | undefined;
      let count = 0;
      do {
        const res = await call(token, 'POST', `/search${next ? `?next_batch=${encodeURIComponent(next)}` : ''}`, { search_categories: { room_events: { search_term: term, order_by: order, filter: { limit: 7 } } } });
        expect(res.status, JSON.stringify(res.body)).toBe(200);
        const events = res.body.search_categories.room_events;
        if (!next) count = events.count;
        out.push(...events.results.map((x: Json): [string, number | undefined] => [x.result.event_id, order === 'rank' ? Math.round(x.rank * 1e9) : undefined]));
        next = events.next_batch;
      } while (next);
      return { out, count };
    };
    const answers = async () => Promise.all(queries.map(([t, o]) => answer(t, o)));
    // The search reader keeps up: every message and the edit are in before the reference is taken.
    let deadline = Date.now() + 60_000;
    while (((await answer('heron', 'recent')).out.length < N - 2 || (await answer('egret', 'rank')).out.length < 1) && Date.now() < deadline) await new Promise((res) => setTimeout(res, 200));

    const redis: RedisClient = connectRedis({ url: `redis://127.0.0.1:${cluster.redisPort}` });
    const raw = new Redis({ port: cluster.redisPort, host: '127.0.0.1' });
    try {
      const keys = new KeySpace('axon:');
      const store = new SearchIndexStore(redis, keys, SHARDS);
      const [a, b] = rooms as [string, string];
      // The reference: both rooms rebuilt by the manual reindex's code (a redacted message's terms,
      // left in the live index until a rebuild, would count in its frequencies otherwise).
      for (const room of rooms) await rebuildRoom(redis, keys, { room: SHARDS, user: SHARDS }, room);
      const before = await answers();
      expect(before[0]!.out).toHaveLength(N - 2); // less the redacted message and the one edited to say egret
      expect(before[4]!.out.map(([id]) => id)).toEqual([ids[4]]);
      expect(before[5]!.out).toHaveLength(0);
      expect(before[6]!.out).toHaveLength(0);
      expect(before[7]!.out.length).toBeGreaterThan(0);
      const shardA = keys.shard('room', shardOf(a, SHARDS));
      const shardB = keys.shard('room', shardOf(b, SHARDS));
      // The reader checks a shard it took quietly up to 5 s later (spread at random), and a loaded
      // machine takes longer: wait for a fresh install's check to have marked the shard.
      const formatOfA = async () => raw.hget(shardA.data(searchShardData.format), 'format');
      for (const until = Date.now() + 60_000; (await formatOfA()) !== '2' && Date.now() < until; ) await new Promise((res) => setTimeout(res, 200));
      expect(await formatOfA()).toBe('2');
      // Room A as format 1 left it; room B half-way through an interrupted migration.
      await store.clearRoom(a);
      await raw.hset(shardA.data(legacySearchData.stats(a)), 'n', '1');
      await raw.hdel(shardA.data(searchShardData.format), 'format');
      await raw.hset(shardB.data(searchShardData.format), 'format', 'listing');
      await raw.sadd(shardB.data(searchShardData.pending), b);
      for (const term of ['heron', 'harbour', 'seen']) await raw.del(shardB.data(`${searchData.postingsPrefix(b)}${term}`));
      // Meanwhile: the same answers, from the stored events.
      expect(await answers()).toEqual(before);

      const restarted = await cluster.script('restart', 'workers');
      expect(restarted.ok).toBe(true);
      deadline = Date.now() + 120_000;
      const migrated = async () =>
        (await raw.hget(shardA.data(searchShardData.format), 'format')) === '2' && (await raw.hget(shardB.data(searchShardData.format), 'format')) === '2' && (await raw.scard(shardB.data(searchShardData.pending))) === 0;
      while (!(await migrated()) && Date.now() < deadline) await new Promise((res) => setTimeout(res, 200));
      expect(await migrated()).toBe(true);
      expect(await raw.exists(shardA.data(legacySearchData.stats(a)))).toBe(0);
      expect(Number(await raw.hget(shardA.data(searchData.stats(a)), 'n'))).toBeGreaterThan(0);
      const log = readFileSync(join(cluster.dataDir, 'logs', 'w1.log'), 'utf8');
      expect(log).toContain('search index: room rebuilt in format 2');
      expect(log).toContain(a);
      expect(log).toContain(b);
      // From the rebuilt index: the same answers.
      expect(await answers()).toEqual(before);
    } finally {
      redis.disconnect();
      raw.disconnect();
    }
  }, 400_000);
});

