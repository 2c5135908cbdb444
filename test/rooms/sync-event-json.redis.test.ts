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
import { stringifyWithRaw } from '../../src/protocol/raw-json';
import { formatEvents, rememberSentTxn, syncEventsJson, txnKey } from '../../src/rooms/client-format';
import { KeySpace } from '../../src/store/keys';
import { connectRedis, type RedisClient } from '../../src/store/redis';
import { RoomReader } from '../../src/store/room-reader';
import { alice, bob, writeStoredRoom } from './stored-room-fixture';

let redis: RedisClient;
beforeAll(() => {
  redis = connectRedis({ url: inject('redisUrl') });
});
afterAll(() => redis.disconnect());

const SHARDS = 8;

describe('syncEventsJson', () => {
  it('writes what formatEvents gives without room_id, byte for byte', async () => {
    const keys = new KeySpace(`sej${randomBytes(4).toString('hex')}:`);
    const roomId = '!room:test';
    await writeStoredRoom(redis, keys, roomId, SHARDS);

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

  it('gives the transaction ids of events this process sent from memory, reading the others', async () => {
    const keys = new KeySpace(`sej${randomBytes(4).toString('hex')}:`);
    const roomId = '!room:test';
    await writeStoredRoom(redis, keys, roomId, SHARDS);
    const rooms = new RoomReader(redis, keys, SHARDS);
    const ctx = { redis, keys, rooms, shardCounts: { room: SHARDS, user: SHARDS } } as unknown as ApiContext;
    const [msg, redaction] = await rooms.events(roomId, ['$msg', '$redaction']);
    // As the /redact route does once the room actor answered (its mapping is not in Redis here).
    rememberSentTxn('$redaction', txnKey('redact', alice, 'PHONE', 'r1'));
    const txnOf = async (events: NonNullable<typeof msg>[], viewer: { userId: string; deviceId: string }) => new Map((JSON.parse(stringifyWithRaw(await syncEventsJson(ctx, roomId, events, viewer))) as { event_id: string; unsigned: { transaction_id?: string } }[]).map((e) => [e.event_id, e.unsigned.transaction_id]));
    const hmget = vi.spyOn(redis, 'hmget');
    try {
      expect(await txnOf([redaction!], { userId: alice, deviceId: 'PHONE' })).toEqual(new Map([['$redaction', 'r1']]));
      expect(await txnOf([redaction!], { userId: alice, deviceId: 'LAPTOP' })).toEqual(new Map([['$redaction', undefined]]));
      expect(hmget).not.toHaveBeenCalled();
      // One not remembered: read, alone.
      expect(await txnOf([msg!, redaction!], { userId: alice, deviceId: 'PHONE' })).toEqual(new Map([['$msg', 'txn "1"'], ['$redaction', 'r1']]));
      expect(hmget).toHaveBeenCalledTimes(1);
      expect(hmget.mock.calls[0]!.slice(1)).toEqual(['$msg']);
    } finally {
      hmget.mockRestore();
    }
  });
});
