/**
 * /sync's spliced event JSON (src/rooms/client-format.ts `syncEventsJson`) against the object
 * format every other endpoint sends (`formatEvents`), on the same stored events in a real Redis:
 * byte for byte the text `JSON.stringify` made of the objects before, `room_id` left out — for
 * the sender's own device (transaction_id) and another viewer (none), state events that replaced
 * something (prev_content), a redacted event (redacted_because), a v11 redaction (top-level
 * `redacts`), strings that need escaping, and state sections without `membership`.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it, vi } from 'vitest';
import type { ApiContext } from '../../src/api/context';
import { stateKeyOf } from '../../src/protocol/pdu';
import { stringifyWithRaw } from '../../src/protocol/raw-json';
import { formatEvents, syncEventsJson, txnKey } from '../../src/rooms/client-format';
import type { StoredEvent, StoredSnapshot } from '../../src/rooms/model';
import { encode } from '../../src/store/codec';
import { KeySpace, roomData } from '../../src/store/keys';
import { connectRedis, type RedisClient } from '../../src/store/redis';
import { RoomReader } from '../../src/store/room-reader';
import { shardOf } from '../../src/store/shards';

let redis: RedisClient;
beforeAll(() => {
  redis = connectRedis({ url: inject('redisUrl') });
});
afterAll(() => redis.disconnect());

const SHARDS = 8;
const alice = '@alice:test';
const bob = '@bob:test';

describe('syncEventsJson', () => {
  it('writes what formatEvents gives without room_id, byte for byte', async () => {
    const keys = new KeySpace(`sej${randomBytes(4).toString('hex')}:`);
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

    const rooms = new RoomReader(redis, keys, SHARDS);
    const ctx = { redis, keys, rooms, shardCounts: { room: SHARDS, user: SHARDS } } as unknown as ApiContext;
    const ids = ['$create', '$join', '$name1', '$name2', '$bobjoin', '$msg', '$gone', '$redaction', '$odd'];
    const events = await rooms.events(roomId, ids);
    expect(events).toHaveLength(ids.length);
    vi.useFakeTimers({ now: 1_700_000_123_456, toFake: ['Date'] });
    try {
      for (const viewer of [{ userId: alice, deviceId: 'PHONE' }, { userId: alice, deviceId: 'LAPTOP' }, { userId: bob, deviceId: 'X' }, null]) {
        for (const opts of [{}, { membership: false }]) {
          const objects = await formatEvents(ctx, roomId, events, viewer, opts);
          for (const o of objects) delete o.room_id;
          const spliced = stringifyWithRaw({ events: await syncEventsJson(ctx, roomId, events, viewer, opts) });
          expect(spliced).toBe(JSON.stringify({ events: objects }));
        }
      }
      // What the comparison must have covered.
      const text = stringifyWithRaw(await syncEventsJson(ctx, roomId, events, { userId: alice, deviceId: 'PHONE' }));
      const parsed = JSON.parse(text) as { event_id: string; redacts?: string; unsigned: Record<string, unknown> }[];
      const byId = new Map(parsed.map((e) => [e.event_id, e]));
      expect(byId.get('$msg')!.unsigned.transaction_id).toBe('txn "1"');
      expect(byId.get('$name2')!.unsigned).toMatchObject({ replaces_state: '$name1', prev_content: { name: 'old' }, prev_sender: bob });
      expect((byId.get('$gone')!.unsigned.redacted_because as { event_id: string }).event_id).toBe('$redaction');
      expect(byId.get('$redaction')!.redacts).toBe('$gone');
      expect(byId.get('$msg')!.unsigned.membership).toBe('join');
      expect(byId.get('$msg')!.unsigned.age).toBe(123_456);
      const other = JSON.parse(stringifyWithRaw(await syncEventsJson(ctx, roomId, events, { userId: alice, deviceId: 'LAPTOP' }))) as { event_id: string; unsigned: Record<string, unknown> }[];
      expect(other.find((e) => e.event_id === '$msg')!.unsigned.transaction_id).toBeUndefined();
    } finally {
      vi.useRealTimers();
    }
  });
});
