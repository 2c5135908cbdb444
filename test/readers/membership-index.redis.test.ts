/**
 * The membership index reader (src/readers/membership-index.ts) behind a room's purge: the
 * deletion's own leave events are on the outbox when the purge begins, and a reader that applies
 * them after the users' purge_room must not write the room's entries again (they would stay for
 * good). Its guard is the room's members hash, which purge_begin deletes (actors/room.ts).
 */
import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { encode } from '../../src/store/codec';
import { KeySpace, membershipIndexData, roomData } from '../../src/store/keys';
import { connectRedis, type RedisClient } from '../../src/store/redis';
import { shardOf } from '../../src/store/shards';
import { MembershipIndexReader } from '../../src/readers/membership-index';
import type { RoomOutput } from '../../src/rooms/model';

let redis: RedisClient;
beforeAll(() => {
  redis = connectRedis({ url: inject('redisUrl') });
});
afterAll(() => redis.disconnect());

const USER_SHARDS = 8;

describe('MembershipIndexReader behind a purge', () => {
  it("writes a member's entry while the room has its members hash, none once purge_begin deleted it", async () => {
    const keys = new KeySpace(`mir${randomBytes(4).toString('hex')}:`);
    const reader = new MembershipIndexReader(redis, keys, USER_SHARDS, 'w1', pino({ level: 'silent' }));
    const apply = (outs: RoomOutput[]) => (reader as unknown as { apply(shard: number, e: unknown[]): Promise<void> }).apply(0, outs.map((o, i) => ({ id: `1-${i}`, entry: { actorId: o.roomId, kind: 'room', body: encode(o) } })));
    const bob = '@bob:here';
    const [room, other] = ['!doomed:here', '!stays:here'];
    const member = (roomId: string, pos: number, membership: string): RoomOutput => ({ roomId, eventId: `$m${pos}`, pos, event: { type: 'm.room.member', state_key: bob, sender: bob, room_id: roomId, origin_server_ts: pos, content: { membership } } });
    const sk = keys.shard('room', 0);
    const uk = keys.shard('user', shardOf(bob, USER_SHARDS));
    const entries = async () => ({ rooms: await redis.hgetall(uk.data(membershipIndexData.rooms(bob))), at: Object.keys(await redis.hgetall(uk.data(membershipIndexData.writtenAt(bob)))).sort() });
    for (const r of [room, other]) await redis.hset(sk.data(roomData.members(r)), bob, 'join');
    await apply([member(room, 3, 'join'), member(other, 4, 'join')]);
    expect((await entries()).rooms).toEqual({ [room]: '3:join', [other]: '4:join' });
    // The deletion: bob leaves (the room's members hash says so), the purge begins (the hash goes),
    // bob's purge_room drops his entries of the room (actors/user.ts) — and only then does the
    // reader, running behind, come to the leave.
    await redis.del(sk.data(roomData.members(room)));
    await redis.hdel(uk.data(membershipIndexData.rooms(bob)), room);
    await redis.hdel(uk.data(membershipIndexData.writtenAt(bob)), room);
    await apply([member(room, 9, 'leave'), member(other, 10, 'leave')]);
    expect(await entries()).toEqual({ rooms: { [other]: '10:leave' }, at: [other] });
  });
});
