/**
 * Sliding sync's recency index end to end (issue 18, item 5): a cluster started with the
 * operator's scripts (two worker processes, one front, managed Redis), a user in 40 rooms, real
 * HTTP. The list's order follows new messages across the rooms — on a first answer, and on a
 * long-poll woken by a message in a room far down the list — and stays right through both workers
 * being killed with -9 while messages are sent (the recency reader's pending entries are applied
 * by the next holders: the index must end exactly as the rooms' messages say, nothing missing or
 * extra). An account whose index is gone (as one from before it) is listed right and its index
 * rebuilt on its first request (the lazy backfill).
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Json, ScriptCluster } from '../setup/script-cluster';

const SS = '/_matrix/client/unstable/org.matrix.simplified_msc3575/sync';
const ROOMS = 40;

describe('sliding sync lists by recency from the per-user index', () => {
  let c: ScriptCluster;
  let redis: Redis;

  beforeAll(async () => {
    c = await ScriptCluster.create({ name: 'ss-recency', callTimeoutMs: 120_000 });
    await c.up(2);
    redis = new Redis({ port: c.redisPort, host: '127.0.0.1' });
  }, 240_000);

  afterAll(async () => {
    redis?.disconnect();
    await c?.destroy();
  }, 120_000);

  it('orders by the newest message, follows new ones, survives kill -9 of the workers, backfills a lost index', async () => {
    const reg = await c.call(null, 'POST', '/register', { username: 'recent', password: 'pw-recent', auth: { type: 'm.login.dummy' } });
    expect(reg.status, JSON.stringify(reg.body)).toBe(200);
    const token = reg.body.access_token as string;
    const userId = reg.body.user_id as string;
    const rooms: string[] = [];
    for (let i = 0; i < ROOMS; i += 8) {
      rooms.push(...(await Promise.all(Array.from({ length: Math.min(8, ROOMS - i) }, (_, j) => c.persist(token, 'POST', '/createRoom', { preset: 'private_chat', name: `room ${i + j}` }).then((b) => b.room_id as string)))));
    }
    // The newest message's time per room (from the events themselves: that is what recency is).
    const latest = new Map<string, number>();
    let txn = 0;
    const say = async (roomId: string) => {
      const sent = await c.persist(token, 'PUT', `/rooms/${encodeURIComponent(roomId)}/send/m.room.message/t${txn++}`, { msgtype: 'm.text', body: `news ${txn}` });
      const ev = await c.persist(token, 'GET', `/rooms/${encodeURIComponent(roomId)}/event/${encodeURIComponent(sent.event_id)}`);
      latest.set(roomId, Math.max(latest.get(roomId) ?? 0, ev.origin_server_ts as number));
    };
    // Messages in a shuffled order, one after another.
    const order = [...rooms].sort((a, b) => ((a.charCodeAt(3) * 31 + a.length) % 7) - ((b.charCodeAt(3) * 31 + b.length) % 7));
    for (const r of order) await say(r);
    const expected = () => [...rooms].sort((a, b) => latest.get(b)! - latest.get(a)! || (a < b ? -1 : 1));
    const body = (connId: string) => ({ conn_id: connId, lists: { all: { ranges: [[0, 9]], timeline_limit: 1, required_state: [['m.room.name', '']] } } });
    const ask = async (connId: string, query = '') => {
      const r = await c.call(token, 'POST', `${SS}${query}`, body(connId));
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      return r.body;
    };
    const firstTen = (b: Json) => b.lists.all.ops[0].room_ids as string[];

    // A first answer: the ten most recent, newest first, and the exact count.
    let first = await ask('a');
    for (let i = 0; i < 100 && first.lists.all.count < ROOMS; i++) first = await ask('a');
    expect(first.lists.all.count).toBe(ROOMS);
    expect(firstTen(first)).toEqual(expected().slice(0, 10));

    // Long-polls: a message in a room far down the list wakes the connection with it on top.
    let pos = first.pos as string;
    for (const depth of [35, 20, 11]) {
      const target = expected()[depth]!;
      const poll = ask('a', `?pos=${encodeURIComponent(pos)}&timeout=20000`);
      await new Promise((r) => setTimeout(r, 300));
      await say(target);
      let inc = await poll;
      // The poll may have answered for something before the message (then ask again).
      for (let i = 0; i < 5 && firstTen(inc)?.[0] !== target; i++) inc = await ask('a', `?pos=${encodeURIComponent(inc.pos)}&timeout=10000`);
      expect(firstTen(inc)).toEqual(expected().slice(0, 10));
      expect(inc.rooms[target].timeline.at(-1).content.body).toMatch(/^news /);
      pos = inc.pos;
    }

    // Both workers killed with -9 while messages go out; `cluster up` starts them again.
    const sending = (async () => {
      for (let i = 0; i < 30; i++) await say(rooms[(i * 13) % ROOMS]!);
    })();
    await new Promise((r) => setTimeout(r, 1500));
    for (const w of ['w1', 'w2']) process.kill(c.pid(w), 'SIGKILL');
    await c.up(2);
    await sending;

    // The index itself, once the readers have caught up: exactly the rooms, each with its newest message's time.
    const indexKey = async () => {
      const [, keys] = await redis.scan('0', 'MATCH', `*:d:user:${userId}:recency`, 'COUNT', 100_000);
      return keys[0];
    };
    const want = Object.fromEntries(rooms.map((r) => [r, latest.get(r)!]));
    let index: Record<string, number> = {};
    const deadline = Date.now() + 120_000;
    for (;;) {
      const key = await indexKey();
      const raw = key ? await redis.zrange(key, 0, -1, 'WITHSCORES') : [];
      index = Object.fromEntries(Array.from({ length: raw.length / 2 }, (_, i) => [raw[2 * i]!, Number(raw[2 * i + 1])]));
      if (JSON.stringify(Object.entries(index).sort()) === JSON.stringify(Object.entries(want).sort()) || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(index).toEqual(want);
    const after = await ask('b');
    expect(after.lists.all.count).toBe(ROOMS);
    expect(firstTen(after)).toEqual(expected().slice(0, 10));

    // An index lost (an account from before it): listed right all the same, and rebuilt.
    await redis.del((await indexKey())!);
    const rebuilt = await ask('c');
    expect(firstTen(rebuilt)).toEqual(expected().slice(0, 10));
    expect(await redis.zcard((await indexKey())!)).toBe(ROOMS);
  }, 600_000);
});
