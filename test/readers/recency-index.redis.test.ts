/**
 * The recency index reader (src/readers/recency-index.ts) on a real redis-server, through its
 * consumer group on a real outbox stream: stamps follow bumping events only, membership moves
 * rooms in and out, remote users are not indexed, and a reader that dies between applying and
 * acknowledging (its entries left pending) is taken over by another that ends with the same
 * index as a clean run — and the same again when everything is applied twice.
 */
import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { shardOf } from '../../src/store/shards';
import { encode } from '../../src/store/codec';
import { KeySpace, RECENCY_INDEX_GROUP, recencyIndexData, roomData } from '../../src/store/keys';
import { connectRedis, type RedisClient } from '../../src/store/redis';
import { RecencyIndexReader } from '../../src/readers/recency-index';
import type { RoomOutput } from '../../src/rooms/model';

let redis: RedisClient;
beforeAll(() => {
  redis = connectRedis({ url: inject('redisUrl') });
});
afterAll(() => redis.disconnect());

const SHARDS = 1; // every room on room shard 0: one outbox, one reader
const shardCounts = { room: SHARDS, user: 8 };
const log = pino({ level: 'silent' });
const ME = '@me:here';
const REMOTE = '@far:elsewhere';

interface Scenario {
  keys: KeySpace;
  ids: string[];
  expected: Record<string, number>;
}

let seq = 0;
function output(roomId: string, type: string, ts: number, extra: Partial<RoomOutput['event']> = {}): RoomOutput {
  seq++;
  return { roomId, eventId: `$e${seq}`, pos: seq, event: { type, origin_server_ts: ts, sender: ME, room_id: roomId, content: {}, ...extra } };
}

/**
 * Ten rooms I am joined to, each with a create and messages; a room I left (its messages must not
 * bring it back); reactions and name changes that do not bump; a remote member. Written to the
 * outbox; the room's current membership in its members hash (what the reader consults).
 */
async function scenario(): Promise<Scenario> {
  const keys = new KeySpace(`rec${randomBytes(4).toString('hex')}:`);
  const sk = keys.shard('room', 0);
  const outs: RoomOutput[] = [];
  const expected: Record<string, number> = {};
  for (let i = 0; i < 10; i++) {
    const room = `!room${i}:here`;
    outs.push(output(room, 'm.room.create', 1000 + i));
    outs.push(output(room, 'm.room.member', 1000 + i, { state_key: ME, content: { membership: 'join' } }));
    outs.push(output(room, 'm.room.member', 1000 + i, { state_key: REMOTE, content: { membership: 'join' } }));
    const last = 5000 + ((i * 37) % 10) * 100;
    outs.push(output(room, 'm.room.message', last - 50));
    outs.push(output(room, 'm.room.message', last));
    // Later in time but not bumping: a reaction and a name.
    outs.push(output(room, 'm.reaction', last + 10_000));
    outs.push(output(room, 'm.room.name', last + 20_000, { state_key: '' }));
    await redis.hset(sk.data(roomData.members(room)), ME, 'join', REMOTE, 'join');
    expected[room] = last;
  }
  const left = '!left:here';
  outs.push(output(left, 'm.room.create', 900));
  outs.push(output(left, 'm.room.member', 901, { state_key: ME, content: { membership: 'join' } }));
  outs.push(output(left, 'm.room.message', 9000));
  outs.push(output(left, 'm.room.member', 9001, { state_key: ME, content: { membership: 'leave' } }));
  outs.push(output(left, 'm.room.message', 9500));
  await redis.hset(sk.data(roomData.members(left)), ME, 'leave');
  const ids: string[] = [];
  for (const o of outs) ids.push((await redis.xadd(sk.outbox, '*', 'a', o.roomId, 'k', 'room', 'b', encode(o)))!);
  return { keys, ids, expected };
}

async function indexOf(keys: KeySpace, userId: string): Promise<Record<string, number>> {
  const raw = await redis.zrange(keys.shard('user', shardOf(userId, 8)).data(recencyIndexData.rooms(userId)), 0, -1, 'WITHSCORES');
  const out: Record<string, number> = {};
  for (let i = 0; i < raw.length; i += 2) out[raw[i]!] = Number(raw[i + 1]);
  return out;
}

async function runUntilDone(reader: RecencyIndexReader, keys: KeySpace, lastId: string): Promise<void> {
  reader.attach(0);
  const upTo = keys.shard('room', 0).data(recencyIndexData.upTo());
  const deadline = Date.now() + 30_000;
  // Done: progress at the outbox's end, and everything acknowledged (the ack follows the batch's writes).
  const pending = async () => ((await redis.xpending(keys.shard('room', 0).outbox, RECENCY_INDEX_GROUP)) as [number, ...unknown[]])[0];
  while ((await redis.get(upTo)) !== lastId || (await pending()) !== 0) {
    if (Date.now() > deadline) throw new Error('the reader did not reach the end of the outbox');
    await new Promise((r) => setTimeout(r, 20));
    reader.wake(0);
  }
}

describe('RecencyIndexReader', () => {
  it('indexes joined rooms by their newest bumping event, not rooms left, not remote users', async () => {
    const s = await scenario();
    const reader = new RecencyIndexReader(redis, s.keys, shardCounts, 'here', 'w1', log);
    await runUntilDone(reader, s.keys, s.ids.at(-1)!);
    await reader.stop();
    expect(await indexOf(s.keys, ME)).toEqual(s.expected);
    expect(await indexOf(s.keys, REMOTE)).toEqual({});
    // Each room's own stamp, on its shard (what a joining user's entry gets).
    const stamps = await redis.zrange(s.keys.shard('room', 0).data(recencyIndexData.roomStamps()), 0, -1, 'WITHSCORES');
    expect(Object.fromEntries(Array.from({ length: stamps.length / 2 }, (_, i) => [stamps[2 * i], Number(stamps[2 * i + 1])]))).toEqual({ ...s.expected, '!left:here': 9500 });
  });

  it('a reader that dies before acknowledging is taken over; applying twice changes nothing', async () => {
    const s = await scenario();
    const outbox = s.keys.shard('room', 0).outbox;
    // Worker A: its group, a first read of 30 entries, half of them applied — then it dies (no ack).
    await redis.xgroup('CREATE', outbox, RECENCY_INDEX_GROUP, '0', 'MKSTREAM');
    const a = new RecencyIndexReader(redis, s.keys, shardCounts, 'here', 'wA', log);
    const read = (await redis.xreadgroup('GROUP', RECENCY_INDEX_GROUP, 'wA', 'COUNT', 30, 'STREAMS', outbox, '>')) as [string, [string, string[]][]][];
    expect(read[0]![1]).toHaveLength(30);
    const { parseOutboxEntry } = await import('../../src/runtime/envelope');
    const half = read[0]![1].slice(0, 15).map(([id, fields]) => ({ id, entry: parseOutboxEntry(fields.map((f) => Buffer.from(f))) }));
    await (a as unknown as { apply(shard: number, e: typeof half): Promise<void> }).apply(0, half);
    await a.stop();
    // Worker B takes the shard over: it claims A's pending entries, applies them (again for the
    // first 15) and goes on to the end.
    const b = new RecencyIndexReader(redis, s.keys, shardCounts, 'here', 'wB', log);
    await runUntilDone(b, s.keys, s.ids.at(-1)!);
    expect(await indexOf(s.keys, ME)).toEqual(s.expected);
    // The whole outbox applied once more (a handoff that redelivers everything): the same index.
    const all = (await redis.xrange(outbox, '-', '+')).map(([id, fields]) => ({ id, entry: parseOutboxEntry(fields.map((f) => Buffer.from(f))) }));
    await (b as unknown as { apply(shard: number, e: typeof all): Promise<void> }).apply(0, all);
    await b.stop();
    expect(await indexOf(s.keys, ME)).toEqual(s.expected);
  });

  it('a join puts the room in with its stamp, a leave takes it out, whatever order the entries are applied in', async () => {
    const s = await scenario();
    const reader = new RecencyIndexReader(redis, s.keys, shardCounts, 'here', 'w1', log);
    await runUntilDone(reader, s.keys, s.ids.at(-1)!);
    const sk = s.keys.shard('room', 0);
    const apply = (outs: RoomOutput[]) => (reader as unknown as { apply(shard: number, e: unknown[]): Promise<void> }).apply(0, outs.map((o, i) => ({ id: `9999999999999-${i}`, entry: { actorId: o.roomId, kind: 'room', body: encode(o) } })));
    // I rejoin the room I left: it comes back with the room's stamp.
    await redis.hset(sk.data(roomData.members('!left:here')), ME, 'join');
    await apply([output('!left:here', 'm.room.member', 9600, { state_key: ME, content: { membership: 'join' } })]);
    expect((await indexOf(s.keys, ME))['!left:here']).toBe(9500);
    // I leave room 3; an old join entry of room 3 applied late (redelivered) does not bring it back,
    // since the room's membership now says leave.
    await redis.hset(sk.data(roomData.members('!room3:here')), ME, 'leave');
    await apply([output('!room3:here', 'm.room.member', 9700, { state_key: ME, content: { membership: 'leave' } })]);
    await apply([output('!room3:here', 'm.room.member', 1003, { state_key: ME, content: { membership: 'join' } })]);
    const after = await indexOf(s.keys, ME);
    expect(after['!room3:here']).toBeUndefined();
    // A message older than a room's stamp (a late remote event) does not lower it.
    await apply([output('!room4:here', 'm.room.message', 1)]);
    expect((await indexOf(s.keys, ME))['!room4:here']).toBe(s.expected['!room4:here']);
    await reader.stop();
  });

  it("a room being purged (members hash gone) gets no stamp again from entries applied late", async () => {
    const s = await scenario();
    const reader = new RecencyIndexReader(redis, s.keys, shardCounts, 'here', 'w1', log);
    await runUntilDone(reader, s.keys, s.ids.at(-1)!);
    const sk = s.keys.shard('room', 0);
    const stampsKey = sk.data(recencyIndexData.roomStamps());
    const apply = (outs: RoomOutput[]) => (reader as unknown as { apply(shard: number, e: unknown[]): Promise<void> }).apply(0, outs.map((o, i) => ({ id: `9999999999999-${i}`, entry: { actorId: o.roomId, kind: 'room', body: encode(o) } })));
    // The purge of room 5: purge_begin deletes its members hash, my purge_room takes it out of my
    // index, the last batch out of the shard's stamps (actors/room.ts) — then the reader, behind,
    // applies the room's last events.
    await redis.del(sk.data(roomData.members('!room5:here')));
    await redis.zrem(s.keys.shard('user', shardOf(ME, 8)).data(recencyIndexData.rooms(ME)), '!room5:here');
    await redis.zrem(stampsKey, '!room5:here');
    await apply([output('!room5:here', 'm.room.message', 99_000), output('!room5:here', 'm.room.member', 99_001, { state_key: ME, content: { membership: 'leave' } })]);
    await reader.stop();
    expect(await redis.zscore(stampsKey, '!room5:here')).toBeNull();
    expect((await indexOf(s.keys, ME))['!room5:here']).toBeUndefined();
    // The other rooms are as they were.
    expect(Number(await redis.zscore(stampsKey, '!room6:here'))).toBe(s.expected['!room6:here']);
  });
});
