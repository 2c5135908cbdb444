/**
 * A small room written straight into Redis as the room actor stores it, for tests of the readers
 * of stored events (/sync's spliced JSON, initial-sync slices): three state snapshots (1 = create +
 * alice joined; 2 = + name "old" by bob; 3 = name "new" by alice, bob joined), nine events at
 * positions 1–9 (state that replaced something, strings that need escaping, a redacted message and
 * its redaction, an event with a non-object content and a non-number timestamp) and alice's
 * transaction id for `$msg` from device PHONE.
 */
import { stateKeyOf } from '../../src/protocol/pdu';
import { txnKey } from '../../src/rooms/client-format';
import type { StoredEvent, StoredSnapshot } from '../../src/rooms/model';
import { encode } from '../../src/store/codec';
import { type KeySpace, roomData } from '../../src/store/keys';
import type { RedisClient } from '../../src/store/redis';
import { shardOf } from '../../src/store/shards';

export const alice = '@alice:test';
export const bob = '@bob:test';
/** The events, in timeline order (positions 1 to 9). */
export const storedRoomEvents = ['$create', '$join', '$name1', '$name2', '$bobjoin', '$msg', '$gone', '$redaction', '$odd'];

export async function writeStoredRoom(redis: RedisClient, keys: KeySpace, roomId: string, shards: number): Promise<void> {
  const rk = keys.shard('room', shardOf(roomId, shards));
  const put = (id: string, s: StoredEvent) => redis.set(rk.data(roomData.event(id)), encode(s));
  const snap = (id: number, s: StoredSnapshot) => redis.set(rk.data(roomData.snapshot(roomId, id)), encode(s));
  const ev = (o: Record<string, unknown>) => JSON.stringify({ room_id: roomId, origin_server_ts: 1_700_000_000_000, auth_events: [], prev_events: [], depth: 1, hashes: { sha256: 'x' }, signatures: {}, ...o });
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
}
