/**
 * Initial-sync slices (src/sync/initial-slices.ts) on a real Redis: the JSON written from a slice
 * is byte for byte what `syncEventsJson` writes from the stored events (heads, transaction ids per
 * device, prev_content, redacted_because, membership or not), a slice is kept per room version,
 * top and page size, and a newer version of the room is a new slice.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it, vi } from 'vitest';
import type { ApiContext } from '../../src/api/context';
import { stateKeyOf } from '../../src/protocol/pdu';
import { stringifyWithRaw } from '../../src/protocol/raw-json';
import { syncEventsJson, txnKey } from '../../src/rooms/client-format';
import type { StoredEvent, StoredSnapshot } from '../../src/rooms/model';
import { encode } from '../../src/store/codec';
import { KeySpace, roomData } from '../../src/store/keys';
import { connectRedis, type RedisClient } from '../../src/store/redis';
import { RoomReader } from '../../src/store/room-reader';
import { shardOf } from '../../src/store/shards';
import { InitialSlices, renderSliceEvents, sliceEvents, slicePage, slicePaginate } from '../../src/sync/initial-slices';

let redis: RedisClient;
beforeAll(() => {
  redis = connectRedis({ url: inject('redisUrl') });
});
afterAll(() => redis.disconnect());

const SHARDS = 8;
const alice = '@alice:test';
const bob = '@bob:test';

describe('initial-sync slices', () => {
  it('write what syncEventsJson writes, byte for byte, for every viewer', async () => {
    const keys = new KeySpace(`isl${randomBytes(4).toString('hex')}:`);
    const roomId = '!room:test';
    const rk = keys.shard('room', shardOf(roomId, SHARDS));
    const put = (id: string, s: StoredEvent) => redis.set(rk.data(roomData.event(id)), encode(s));
    const snap = (id: number, s: StoredSnapshot) => redis.set(rk.data(roomData.snapshot(roomId, id)), encode(s));
    const ev = (o: Record<string, unknown>) => JSON.stringify({ room_id: roomId, origin_server_ts: 1_700_000_000_000, auth_events: [], prev_events: [], depth: 1, hashes: { sha256: 'x' }, signatures: {}, ...o });
    // Snapshots: 1 = create + alice joined; 2 = + name "old" (by bob); 3 = name "new" (by alice), bob joined.
    await snap(1, { p: null, n: 1, d: [[stateKeyOf('m.room.create', ''), '$create'], [stateKeyOf('m.room.member', alice), '$join']] });
    await snap(2, { p: 1, n: 2, d: [[stateKeyOf('m.room.name', ''), '$name1']] });
    await snap(3, { p: 2, n: 3, d: [[stateKeyOf('m.room.name', ''), '$name2'], [stateKeyOf('m.room.member', bob), '$bobjoin']] });
    await put('$create', { j: ev({ type: 'm.room.create', state_key: '', sender: alice, content: { creator: alice, room_version: '11' } }), p: 1, d: 1, sb: 0, sa: 1 });
    await put('$join', { j: ev({ type: 'm.room.member', state_key: alice, sender: alice, content: { membership: 'join', displayname: 'Alice "A" \u2028 ✓' } }), p: 2, d: 2, sb: 1, sa: 1 });
    await put('$name1', { j: ev({ type: 'm.room.name', state_key: '', sender: bob, content: { name: 'old' } }), p: 3, d: 3, sb: 1, sa: 2 });
    await put('$name2', { j: ev({ type: 'm.room.name', state_key: '', sender: alice, content: { name: 'new\n\t</script>' } }), p: 4, d: 4, sb: 2, sa: 3 });
    await put('$bobjoin', { j: ev({ type: 'm.room.member', state_key: bob, sender: bob, content: { membership: 'join' } }), p: 5, d: 5, sb: 2, sa: 3 });
    await put('$msg', { j: ev({ type: 'm.room.message', sender: alice, content: { msgtype: 'm.text', body: 'hi 🎉 \\ "quoted"', nested: { a: [1, 2, { b: null }] } } }), p: 6, d: 6, sb: 3, sa: 3 });
    await put('$gone', { j: ev({ type: 'm.room.message', sender: bob, content: {} }), p: 7, d: 7, sb: 3, sa: 3, rb: '$redaction' });
    await put('$redaction', { j: ev({ type: 'm.room.redaction', sender: alice, content: { redacts: '$gone', reason: 'spam' } }), p: 8, d: 8, sb: 3, sa: 3 });
    await put('$odd', { j: ev({ type: 'm.room.message', sender: bob, content: 'not an object', origin_server_ts: 'later' }), p: 9, d: 9, sb: 3, sa: 3 });
    await redis.hset(rk.data(roomData.eventTxns(roomId)), '$msg', txnKey('send', alice, 'PHONE', 'txn "1"'));

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
    expect(msg).toEqual({ type: 'm.room.message', sender: alice, auth_events: [], content: {} });
    expect(slice.events.get('$bobjoin')!.e.event.content).toEqual({ membership: 'join' });

    // Paginating the slice: as paginate does for the first page (visibility: alice joined at $join).
    const two = await slicePaginate(ctx, slice, alice, 2, {});
    expect(two!.map((se) => se.e.eventId)).toEqual(['$odd', '$redaction']);
    expect(await slicePaginate(ctx, slice, alice, 21, {})).toBeNull(); // another page size
    expect((await slicePaginate(ctx, slice, alice, 3, { types: ['m.room.name'] }))!.map((se) => se.e.eventId)).toEqual(['$name2', '$name1']);

    // Kept per (version, top, page size); a new version or top is a new slice.
    slices.keep(slice);
    expect(slices.slice(roomId, 'v1', 9, 20)).toBe(slice);
    expect(slices.slice(roomId, 'v2', 9, 20)).not.toBe(slice);
    expect(slices.slice(roomId, 'v1', 10, 20)).not.toBe(slice);
    expect(slices.slice(roomId, 'v1', 9, 30)).not.toBe(slice);
    // A slice that asked for an event not stored is not kept.
    const holed = slices.slice(roomId, 'v3', 9, 20);
    await slicePage(ctx, holed);
    expect(await sliceEvents(ctx, holed, ['$missing', '$msg'])).toHaveLength(1);
    slices.keep(holed);
    expect(slices.kept(roomId)).toBe(slice);
  });
});
