/**
 * The search index across a worker kill -9 (issue 21): a cluster started with the operator's
 * scripts (two workers, one front); messages are sent, both workers are killed with -9 while
 * messages are still being sent and indexed (a hundred are searchable), `cluster up` starts them again. The shards' next holders read the
 * search reader's pending entries again: every message must be found once, and the index totals
 * (documents per room, BM25's lengths) must count each message exactly once.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Json, ScriptCluster } from '../setup/script-cluster';

describe('search index across a worker kill -9', () => {
  let c: ScriptCluster;

  beforeAll(async () => {
    c = await ScriptCluster.create({ name: 'search-kill' });
    await c.up(2);
  }, 240_000);

  afterAll(async () => {
    await c?.destroy();
  }, 120_000);

  it('finds every message once and counts each once after both workers are killed while indexing', async () => {
    const { token } = await c.register('skalice');
    const rooms: string[] = [];
    for (let i = 0; i < 4; i++) {
      const created = await c.call(token, 'POST', '/createRoom', { preset: 'private_chat' });
      expect(created.status).toBe(200);
      rooms.push(created.body.room_id);
    }
    // Sent 20 at a time while the workers are killed: a send that fails is retried with the same
    // transaction id (the room answers it with the same event), so each message exists once.
    const N = 400;
    const sent: string[] = new Array(N);
    const sendOne = async (i: number) => {
      const until = Date.now() + 200_000;
      for (;;) {
        const res = await c.call(token, 'PUT', `/rooms/${encodeURIComponent(rooms[i % rooms.length]!)}/send/m.room.message/k${i}`, { msgtype: 'm.text', body: `heron sighting number ${i}` }).catch(() => null);
        if (res?.status === 200) {
          sent[i] = res.body.event_id;
          return;
        }
        if (Date.now() > until) throw new Error(`message ${i} could not be sent: ${JSON.stringify(res?.body)}`);
        await new Promise((r) => setTimeout(r, 300));
      }
    };
    const sending = (async () => {
      for (let i = 0; i < N; i += 20) await Promise.all(Array.from({ length: 20 }, (_, j) => sendOne(i + j)));
    })();
    const body = { search_categories: { room_events: { search_term: 'heron', filter: { limit: 1 } } } };
    const count = async () => {
      const res = await c.call(token, 'POST', '/search', body).catch(() => null);
      return res?.status === 200 ? (res.body.search_categories.room_events.count as number) : -1;
    };
    let deadline = Date.now() + 60_000;
    let atKill = await count();
    while (atKill < 100 && Date.now() < deadline) atKill = await count();
    for (const w of ['w1', 'w2']) process.kill(c.pid(w), 'SIGKILL');
    await c.up(2);
    await sending;

    deadline = Date.now() + 180_000;
    let n = await count();
    while (n !== N && Date.now() < deadline) {
      await new Promise((res) => setTimeout(res, 200));
      n = await count();
    }
    expect(n).toBe(N);
    // Every message found, each once, over pages.
    const found: string[] = [];
    let next: string | undefined;
    const paged = { search_categories: { room_events: { search_term: 'heron', order_by: 'recent', filter: { limit: 100 } } } };
    do {
      const res = await c.call(token, 'POST', `/search${next ? `?next_batch=${encodeURIComponent(next)}` : ''}`, paged);
      expect(res.status).toBe(200);
      found.push(...res.body.search_categories.room_events.results.map((x: Json) => x.result.event_id));
      next = res.body.search_categories.room_events.next_batch;
    } while (next);
    expect(found).toHaveLength(N);
    expect(new Set(found)).toEqual(new Set(sent));
    // The totals count each message once: N documents of 4 words.
    const redis = new Redis({ port: c.redisPort, host: '127.0.0.1', lazyConnect: true });
    await redis.connect();
    try {
      let docs = 0;
      let words = 0;
      for (const roomId of rooms) {
        const keys: string[] = [];
        let cursor = '0';
        do {
          const [next, k] = await redis.scan(cursor, 'MATCH', `*:d:ss:${roomId}`, 'COUNT', 1000);
          cursor = next;
          keys.push(...k);
        } while (cursor !== '0');
        expect(keys).toHaveLength(1);
        const stats = await redis.hgetall(keys[0]!);
        docs += Number(stats.n);
        words += Number(stats.l);
      }
      expect(docs).toBe(N);
      expect(words).toBe(N * 4);
    } finally {
      redis.disconnect();
    }
    console.log(`search-worker-kill.e2e: ${atKill} of ${N} searchable when both workers were killed; all ${N} found once after the restart`);
  }, 420_000);
});
