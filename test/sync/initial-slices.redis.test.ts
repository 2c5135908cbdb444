/**
 * Initial-sync slices (src/sync/initial-slices.ts) on a real Redis: the JSON written from a slice
 * is byte for byte what `syncEventsJson` writes from the stored events (heads, transaction ids per
 * device, prev_content, redacted_because, membership or not), a slice is kept per room version,
 * top and page size, and a newer version of the room is a new slice; a slice written to Redis by
 * one front is read by another (a new RoomReader: nothing cached) and answers byte for byte alike.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it, vi } from 'vitest';
import type { ApiContext } from '../../src/api/context';
import { stringifyWithRaw } from '../../src/protocol/raw-json';
import { syncEventsJson } from '../../src/rooms/client-format';
import { paginate } from '../../src/rooms/pagination';
import { KeySpace, roomData } from '../../src/store/keys';
import { connectRedis, type RedisClient } from '../../src/store/redis';
import { RoomReader } from '../../src/store/room-reader';
import { shardOf } from '../../src/store/shards';
import { InitialSlices, decodeSlice, encodeSlice, initialSliceStats, renderSliceEvents, sliceEvents, slicePage, slicePaginate } from '../../src/sync/initial-slices';
import { alice, bob, writeStoredRoom } from '../rooms/stored-room-fixture';

let redis: RedisClient;
beforeAll(() => {
  redis = connectRedis({ url: inject('redisUrl') });
});
afterAll(() => redis.disconnect());

const SHARDS = 8;

describe('initial-sync slices', () => {
  it('write what syncEventsJson writes, byte for byte, for every viewer', async () => {
    const keys = new KeySpace(`isl${randomBytes(4).toString('hex')}:`);
    const roomId = '!room:test';
    const rk = keys.shard('room', shardOf(roomId, SHARDS));
    await writeStoredRoom(redis, keys, roomId, SHARDS);

    // The timeline: positions 1 to 9 as stored.
    const order = ['$create', '$join', '$name1', '$name2', '$bobjoin', '$msg', '$gone', '$redaction', '$odd'];
    for (const [i, id] of order.entries()) await redis.zadd(rk.data(roomData.timeline(roomId)), i + 1, id);
    const rooms = new RoomReader(redis, keys, SHARDS);
    const ctx = { redis, keys, rooms, shardCounts: { room: SHARDS, user: SHARDS }, config: {} } as unknown as ApiContext;
    const slices = new InitialSlices(2 ** 20);
    const slice = slices.slice(roomId, 'v1', 9, 20);
    const page = await slicePage(ctx, slice);
    expect(page.events.map((se) => se.e.eventId)).toEqual(['$odd', '$redaction', '$gone', '$msg', '$bobjoin', '$name2', '$name1', '$join', '$create']);
    expect(page.next).toBeNull();
    const ids = ['$create', '$join', '$name1', '$name2', '$bobjoin', '$msg', '$gone', '$redaction', '$odd'];
    const events = await rooms.events(roomId, ids);
    const fromSlice = await sliceEvents(ctx, slice, ids);
    expect(fromSlice.map((se) => se.e.eventId)).toEqual(ids);
    vi.useFakeTimers({ now: 1_700_000_123_456, toFake: ['Date'] });
    try {
      for (const viewer of [{ userId: alice, deviceId: 'PHONE' }, { userId: alice, deviceId: 'LAPTOP' }, { userId: bob, deviceId: 'X' }]) {
        for (const opts of [{}, { membership: false }]) {
          const expected = stringifyWithRaw({ events: await syncEventsJson(ctx, roomId, events, viewer, opts) });
          expect(stringifyWithRaw({ events: await renderSliceEvents(ctx, roomId, fromSlice, viewer, opts) })).toBe(expected);
        }
      }
    } finally {
      vi.useRealTimers();
    }
    const text = JSON.parse((await renderSliceEvents(ctx, roomId, fromSlice, { userId: alice, deviceId: 'PHONE' })).json) as { event_id: string; unsigned: Record<string, unknown> }[];
    const byId = new Map(text.map((e) => [e.event_id, e]));
    expect(byId.get('$msg')!.unsigned.transaction_id).toBe('txn "1"');
    expect(byId.get('$name2')!.unsigned).toMatchObject({ replaces_state: '$name1', prev_content: { name: 'old' } });
    expect((byId.get('$gone')!.unsigned.redacted_because as { event_id: string }).event_id).toBe('$redaction');

    // The slice's events are light: only what the checks read of their JSON.
    const msg = slice.events.get('$msg')!.e.event;
    expect(msg).toEqual({ type: 'm.room.message', sender: alice, content: {} });
    expect(slice.events.get('$bobjoin')!.e.event.content).toEqual({ membership: 'join' });

    // Paginating the slice: as paginate does for the first page (visibility: alice joined at $join).
    const two = await slicePaginate(ctx, slice, alice, 2, {});
    expect(two!.map((se) => se.e.eventId)).toEqual(['$odd', '$redaction']);
    // Any page size: a page holding the whole room gives what paginate gives for more events.
    const ids21 = (await paginate(ctx, roomId, alice, 'b', 9, null, 21, {})).events.map((e) => e.eventId);
    expect((await slicePaginate(ctx, slice, alice, 21, {}))!.map((se) => se.e.eventId)).toEqual(ids21);
    // A page of exactly the events a sync sends (its limit + 1): the same first events as
    // paginate's; asked for more than it holds while older events exist, no answer (the caller reads).
    const small = new InitialSlices(2 ** 20).slice(roomId, 'v1', 9, 3);
    expect((await slicePage(ctx, small)).events.map((se) => se.e.eventId)).toEqual(['$odd', '$redaction', '$gone']);
    for (const want of [1, 2, 3]) expect((await slicePaginate(ctx, small, alice, want, {}))!.map((se) => se.e.eventId)).toEqual((await paginate(ctx, roomId, alice, 'b', 9, null, want, {})).events.map((e) => e.eventId));
    expect(await slicePaginate(ctx, small, alice, 4, {})).toBeNull();
    expect((await slicePaginate(ctx, slice, alice, 3, { types: ['m.room.name'] }))!.map((se) => se.e.eventId)).toEqual(['$name2', '$name1']);

    // Kept per (version, top, page size); a new version or top is a new slice.
    slices.keep(slice);
    expect(slices.slice(roomId, 'v1', 9, 20)).toBe(slice);
    expect(slices.slice(roomId, 'v2', 9, 20)).not.toBe(slice);
    expect(slices.slice(roomId, 'v1', 10, 20)).not.toBe(slice);
    // A kept page serves a smaller one (a sync with a smaller limit), not a bigger one.
    expect(slices.slice(roomId, 'v1', 9, 4)).toBe(slice);
    expect(slices.slice(roomId, 'v1', 9, 21)).not.toBe(slice);
    expect(slices.slice(roomId, 'v1', 9, 30)).not.toBe(slice);
    // A slice that asked for an event not stored is not kept.
    const holed = slices.slice(roomId, 'v3', 9, 20);
    await slicePage(ctx, holed);
    expect(await sliceEvents(ctx, holed, ['$missing', '$msg'])).toHaveLength(1);
    slices.keep(holed);
    expect(slices.kept(roomId)).toBe(slice);
  });

  it('are shared through Redis: another front reads them, with their snapshots, and answers alike', async () => {
    const keys = new KeySpace(`isr${randomBytes(4).toString('hex')}:`);
    const roomId = '!shared:test';
    const rk = keys.shard('room', shardOf(roomId, SHARDS));
    await writeStoredRoom(redis, keys, roomId, SHARDS);
    const order = ['$create', '$join', '$name1', '$name2', '$bobjoin', '$msg', '$gone', '$redaction', '$odd'];
    for (const [i, id] of order.entries()) await redis.zadd(rk.data(roomData.timeline(roomId)), i + 1, id);
    const ctxOf = (rooms: RoomReader) => ({ redis, keys, rooms, shardCounts: { room: SHARDS, user: SHARDS }, config: {} }) as unknown as ApiContext;
    const first = ctxOf(new RoomReader(redis, keys, SHARDS));
    const built = new InitialSlices(2 ** 20, 60);
    const slice = built.slice(roomId, 'v1', 9, 20);
    const viewers = [{ userId: alice, deviceId: 'PHONE' }, { userId: alice, deviceId: 'LAPTOP' }, { userId: bob, deviceId: 'X' }];
    const ids = ['$create', '$join', '$name1', '$name2', '$bobjoin', '$msg', '$gone', '$redaction', '$odd'];
    // What a sync does with a slice: pages over it (visibility checks read the snapshots), takes
    // state events, renders; then keeps and shares it.
    expect(await slicePaginate(first, slice, alice, 20, {})).not.toBeNull();
    await sliceEvents(first, slice, ids);
    built.keep(slice);
    const written = initialSliceStats.sharedWritten;
    built.share(first, slice);
    built.share(first, slice); // nothing new in it: not queued again
    built.flushSharedSoon();
    const key = rk.data(roomData.syncSlice(roomId));
    for (let i = 0; i < 200 && !(await redis.exists(key)); i++) await new Promise((r) => setTimeout(r, 10));
    expect(initialSliceStats.sharedWritten).toBe(written + 1);
    expect(await redis.ttl(key)).toBeGreaterThan(0);

    // Another front: a new RoomReader (no snapshot, no visibility fact cached).
    const otherRooms = new RoomReader(redis, keys, SHARDS);
    const other = ctxOf(otherRooms);
    const theirs = new InitialSlices(2 ** 20, 60);
    const read = initialSliceStats.sharedRead;
    // A copy for another version or top, or with a smaller page than asked, is not taken.
    await theirs.loadShared(other, [{ roomId, version: 'v2', top: 9, pageSize: 20 }, { roomId, version: 'v1', top: 8, pageSize: 20 }, { roomId, version: 'v1', top: 9, pageSize: 30 }]);
    expect(initialSliceStats.sharedRead).toBe(read);
    expect(theirs.kept(roomId)).toBeUndefined();
    await theirs.loadShared(other, [{ roomId, version: 'v1', top: 9, pageSize: 11 }]);
    expect(initialSliceStats.sharedRead).toBe(read + 1);
    const loaded = theirs.slice(roomId, 'v1', 9, 20);
    expect(loaded).toBe(theirs.kept(roomId));
    // The snapshots the page's events stand on came with it.
    const page = await slicePage(other, loaded);
    for (const se of page.events) if (se.e.stateBefore) expect(otherRooms.cachedSnapshot(roomId, se.e.stateBefore)).toEqual(await first.rooms.snapshot(roomId, se.e.stateBefore));
    expect(page.events.map((se) => se.e.eventId)).toEqual((await slicePage(first, slice)).events.map((se) => se.e.eventId));
    expect(loaded.events.get('$msg')!.e).toEqual(slice.events.get('$msg')!.e);
    vi.useFakeTimers({ now: 1_700_000_123_456, toFake: ['Date'] });
    try {
      for (const viewer of viewers) {
        for (const want of [20, 3]) {
          const mine = (await slicePaginate(first, slice, viewer.userId, want, {}))!;
          const yours = (await slicePaginate(other, loaded, viewer.userId, want, {}))!;
          expect(yours.map((se) => se.e.eventId)).toEqual(mine.map((se) => se.e.eventId));
          for (const opts of [{}, { membership: false }]) {
            expect(stringifyWithRaw(await renderSliceEvents(other, roomId, yours, viewer, { ...opts, known: loaded.known }))).toBe(stringifyWithRaw(await renderSliceEvents(first, roomId, mine, viewer, opts)));
          }
        }
        const state = await sliceEvents(other, loaded, ids);
        expect(stringifyWithRaw(await renderSliceEvents(other, roomId, state, viewer, { membership: false }))).toBe(stringifyWithRaw(await renderSliceEvents(first, roomId, await sliceEvents(first, slice, ids), viewer, { membership: false })));
      }
    } finally {
      vi.useRealTimers();
    }
    // Nothing of the events was read again: they all came with the copy.
    expect(loaded.events.size).toBe(slice.events.size);

    // A damaged copy is not used.
    const text = encodeSlice(first.rooms, slice);
    expect(decodeSlice(otherRooms, { roomId, version: 'v1', top: 9, pageSize: 20 }, text)).not.toBeNull();
    expect(decodeSlice(otherRooms, { roomId, version: 'v1', top: 9, pageSize: 20 }, text.slice(0, -1))).toBeNull();
    expect(decodeSlice(otherRooms, { roomId, version: 'v1', top: 9, pageSize: 20 }, `{${text}`)).toBeNull();
  });

  it('are written and read on a Redis Cluster (one MGET per shard: keys of one hash slot)', async () => {
    const cluster = connectRedis({ clusterNodes: inject('redisClusterNodes') });
    try {
      const keys = new KeySpace(`isc${randomBytes(4).toString('hex')}:`);
      const shards = 64;
      const roomIds = ['!one:test', '!two:test', '!three:test', '!four:test'];
      expect(new Set(roomIds.map((r) => shardOf(r, shards))).size).toBeGreaterThan(1);
      const ctxOf = (rooms: RoomReader) => ({ redis: cluster, keys, rooms, shardCounts: { room: shards, user: shards }, config: {} }) as unknown as ApiContext;
      const first = ctxOf(new RoomReader(cluster, keys, shards));
      const built = new InitialSlices(2 ** 20, 60);
      const order = ['$create', '$join', '$name1', '$name2', '$bobjoin', '$msg', '$gone', '$redaction', '$odd'];
      for (const roomId of roomIds) {
        await writeStoredRoom(cluster, keys, roomId, shards);
        const rk = keys.shard('room', shardOf(roomId, shards));
        for (const [i, id] of order.entries()) await cluster.zadd(rk.data(roomData.timeline(roomId)), i + 1, id);
        const slice = built.slice(roomId, 'v1', 9, 20);
        await slicePaginate(first, slice, alice, 20, {});
        built.keep(slice);
        built.share(first, slice);
      }
      built.flushSharedSoon();
      const keyOf = (roomId: string) => keys.shard('room', shardOf(roomId, shards)).data(roomData.syncSlice(roomId));
      for (let i = 0; i < 200 && (await Promise.all(roomIds.map((r) => cluster.exists(keyOf(r))))).some((n) => !n); i++) await new Promise((r) => setTimeout(r, 10));
      const other = ctxOf(new RoomReader(cluster, keys, shards));
      const theirs = new InitialSlices(2 ** 20, 60);
      const read = initialSliceStats.sharedRead;
      await theirs.loadShared(other, roomIds.map((roomId) => ({ roomId, version: 'v1', top: 9, pageSize: 20 })));
      expect(initialSliceStats.sharedRead - read).toBe(roomIds.length);
      for (const roomId of roomIds) {
        const mine = (await slicePaginate(first, built.kept(roomId)!, alice, 20, {}))!;
        const yours = (await slicePaginate(other, theirs.kept(roomId)!, alice, 20, {}))!;
        expect(yours.map((se) => se.e.eventId)).toEqual(mine.map((se) => se.e.eventId));
      }
    } finally {
      cluster.disconnect();
    }
  });
});
