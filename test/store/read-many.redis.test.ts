/**
 * Batched reads on a real Redis: `readMany` (one script call per shard, replies in order) and the
 * RoomReader's snapshot reads through delta chains (`snapshot`, `stateEntryAt`) against snapshots
 * stored as the room actor stores them.
 */
import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { connectRedis, type RedisClient } from '../../src/store/redis';
import { readMany } from '../../src/store/read-many';
import { KeySpace, roomData } from '../../src/store/keys';
import { RoomReader } from '../../src/store/room-reader';
import { shardOf } from '../../src/store/shards';
import { encode } from '../../src/store/codec';
import type { StoredSnapshot } from '../../src/rooms/model';

let redis: RedisClient;
beforeAll(() => {
  redis = connectRedis({ url: inject('redisUrl') });
});
afterAll(() => redis.disconnect());

describe('readMany', () => {
  it('reads hashes and timeline tops of many shards, in order, empty for missing keys', async () => {
    const keys = new KeySpace(`rm${randomBytes(4).toString('hex')}`);
    const reads = [];
    for (let i = 0; i < 450; i++) {
      const shard = i % 7;
      const h = keys.shard('room', shard).data(`h${i}`);
      const z = keys.shard('room', shard).data(`z${i}`);
      if (i % 3) await redis.hset(h, { a: String(i), b: 'x' });
      await redis.zadd(z, 1, 'low', i, `top${i}`);
      reads.push({ group: `room ${shard}`, key: h, op: 'hgetall' as const }, { group: `room ${shard}`, key: z, op: 'ztop' as const });
    }
    const replies = await readMany(redis, reads);
    for (let i = 0; i < 450; i++) {
      expect(replies[2 * i]).toEqual(i % 3 ? { a: String(i), b: 'x' } : {});
      expect(replies[2 * i + 1]).toEqual(i === 0 ? ['low', '1'] : [`top${i}`, String(i)]);
    }
  });
});

describe('readMany sha1', () => {
  it('gives the SHA-1 of a string value (binary too), the empty string for none, and a new one when the value changes', async () => {
    const keys = new KeySpace(`rh${randomBytes(4).toString('hex')}`);
    const k = keys.shard('room', 2).state('room', '!a:x');
    const blob = encode({ seq: 7, snapSeq: 3, extremities: ['$x'] });
    await redis.set(k, blob);
    const group = 'room 2';
    const [one, none] = await readMany(redis, [{ group, key: k, op: 'sha1' }, { group, key: keys.shard('room', 2).state('room', '!b:x'), op: 'sha1' }]);
    expect(one).toBe(createHash('sha1').update(blob).digest('hex'));
    expect(none).toBe('');
    await redis.set(k, encode({ seq: 8, snapSeq: 3, extremities: ['$y'] }));
    const [two] = await readMany(redis, [{ group, key: k, op: 'sha1' }]);
    expect(two).not.toBe(one);
  });

  it('gives a hash as flat pairs with hpairs', async () => {
    const keys = new KeySpace(`rp${randomBytes(4).toString('hex')}`);
    const h = keys.shard('room', 1).data('h');
    await redis.hset(h, { a: '1', b: '2' });
    const [pairs, none, obj] = await readMany(redis, [{ group: 'room 1', key: h, op: 'hpairs' }, { group: 'room 1', key: keys.shard('room', 1).data('none'), op: 'hpairs' }, { group: 'room 1', key: h, op: 'hgetall' }]);
    expect(new Map(Array.from({ length: (pairs as string[]).length / 2 }, (_x, i) => [(pairs as string[])[2 * i], (pairs as string[])[2 * i + 1]]))).toEqual(new Map([['a', '1'], ['b', '2']]));
    expect(none).toEqual([]);
    expect(obj).toEqual({ a: '1', b: '2' });
  });
});

describe('RoomReader snapshots', () => {
  it('gives the same state and entries through delta chains as a step-by-step walk', async () => {
    const keys = new KeySpace(`rs${randomBytes(4).toString('hex')}`);
    const shards = 16;
    const roomId = `!r${randomBytes(3).toString('hex')}:example.org`;
    const data = (name: string) => keys.shard('room', shardOf(roomId, shards)).data(name);
    // 1: full root; 2..30 a chain (one key each, key 3 removed at 12); 31 re-based on 1.
    const snaps: Record<number, StoredSnapshot> = { 1: { p: null, d: [['m.room.create\u0000', '$c'], ['k\u00003', '$old3']], n: 0 } };
    for (let id = 2; id <= 30; id++) snaps[id] = { p: id - 1, d: id === 12 ? [['k\u00003', null]] : [[`k\u0000${id}`, `$e${id}`]], n: id - 1 };
    snaps[31] = { p: 1, d: [['k\u00005', '$rebased']], n: 1 };
    for (const [id, s] of Object.entries(snaps)) await redis.set(data(roomData.snapshot(roomId, Number(id))), encode(s));
    const reader = new RoomReader(redis, keys, shards);
    const at30 = await reader.snapshot(roomId, 30);
    expect(at30.get('k\u000029')).toBe('$e29');
    expect(at30.has('k\u00003')).toBe(false);
    expect(at30.get('m.room.create\u0000')).toBe('$c');
    expect(at30.size).toBe(28); // create + k2..k30 without k3 (removed at 12) and k12 (12 is that removal)
    const fresh = new RoomReader(redis, keys, shards);
    const entries = await Promise.all([
      fresh.stateEntryAt(roomId, 30, 'k\u000017'),
      fresh.stateEntryAt(roomId, 11, 'k\u00003'),
      fresh.stateEntryAt(roomId, 2, 'k\u00003'),
      fresh.stateEntryAt(roomId, 20, 'k\u00003'),
      fresh.stateEntryAt(roomId, 31, 'k\u00005'),
      fresh.stateEntryAt(roomId, 31, 'k\u00007'),
      fresh.stateEntryAt(roomId, 25, 'm.room.create\u0000'),
      fresh.stateEntryAt(roomId, 0, 'm.room.create\u0000'),
    ]);
    expect(entries).toEqual(['$e17', '$e3', '$old3', undefined, '$rebased', undefined, '$c', undefined]);
    // Asked again (the entries are cached now, removals and absences included): the same answers,
    // and with the snapshots' keys gone from Redis, from the cache alone.
    for (const id of Object.keys(snaps)) await redis.del(data(roomData.snapshot(roomId, Number(id))));
    const again = await Promise.all([
      fresh.stateEntryAt(roomId, 30, 'k\u000017'),
      fresh.stateEntryAt(roomId, 11, 'k\u00003'),
      fresh.stateEntryAt(roomId, 2, 'k\u00003'),
      fresh.stateEntryAt(roomId, 20, 'k\u00003'),
      fresh.stateEntryAt(roomId, 31, 'k\u00005'),
      fresh.stateEntryAt(roomId, 31, 'k\u00007'),
      fresh.stateEntryAt(roomId, 25, 'm.room.create\u0000'),
    ]);
    expect(again).toEqual(['$e17', '$e3', '$old3', undefined, '$rebased', undefined, '$c']);
    await expect(new RoomReader(redis, keys, shards).snapshot(roomId, 40)).rejects.toThrow(/missing/);
  });
});
