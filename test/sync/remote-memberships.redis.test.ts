/**
 * Out-of-band memberships (src/sync/remote-invites.ts) on a real Redis: a remote knock, then the
 * invite that answers it, then a leave replace each other in the user's membership index (all at
 * position 0, membership-index-2.lua), /sync's readers find the right one (stripped state for the
 * invite or knock, the leave event for `rooms.leave`), and an event of the room itself (a join
 * here, position > 0) supersedes them; an out-of-band entry never overwrites a real one.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { ApiContext } from '../../src/api/context';
import { MembershipIndex } from '../../src/readers/membership-index';
import { shardOf } from '../../src/store/shards';
import { KeySpace, membershipIndexData } from '../../src/store/keys';
import { connectRedis, type RedisClient } from '../../src/store/redis';
import { remoteLeaveEntry, remoteMembership, remoteStrippedState, storeRemoteInvite, storeRemoteMembership } from '../../src/sync/remote-invites';

let redis: RedisClient;
beforeAll(() => {
  redis = connectRedis({ url: inject('redisUrl') });
});
afterAll(() => redis.disconnect());

const USER = '@me:here.example';
const ROOM = '!r:there.example';
const NAME = { type: 'm.room.name', state_key: '', sender: '@admin:there.example', content: { name: 'There' } };

describe('out-of-band memberships', () => {
  it('knock → invite → leave replace each other at position 0; a real event supersedes them and is never overwritten', async () => {
    const keys = new KeySpace(`oob${randomBytes(4).toString('hex')}:`);
    const shardCounts = { room: 4, user: 4 };
    const ctx = { redis, keys, shardCounts } as unknown as ApiContext;
    const index = new MembershipIndex(redis, keys, shardCounts.user);
    const membershipNow = async () => (await index.rooms(USER)).find((r) => r.roomId === ROOM);

    const knock = { type: 'm.room.member', state_key: USER, sender: USER, content: { membership: 'knock' } };
    await storeRemoteMembership(ctx, USER, ROOM, { membership: 'knock', state: [NAME, knock], servers: ['there.example'] });
    expect(await membershipNow()).toMatchObject({ membership: 'knock', pos: 0 });
    expect(await remoteStrippedState(ctx, USER, ROOM, 'knock')).toEqual([NAME, knock]);
    expect(await remoteStrippedState(ctx, USER, ROOM, 'invite')).toBeNull();
    const knockWritten = (await membershipNow())!.writtenAt;

    const invite = { type: 'm.room.member', state_key: USER, sender: '@admin:there.example', content: { membership: 'invite' } };
    await storeRemoteInvite(ctx, USER, ROOM, [NAME, invite], 'there.example');
    expect(await membershipNow()).toMatchObject({ membership: 'invite', pos: 0 });
    expect((await membershipNow())!.writtenAt).toBeGreaterThanOrEqual(knockWritten);
    expect(await remoteStrippedState(ctx, USER, ROOM, 'knock')).toBeNull();
    expect((await remoteMembership(ctx, USER, ROOM))?.servers).toEqual(['there.example']);

    const leaveEvent = { type: 'm.room.member', state_key: USER, sender: USER, content: { membership: 'leave' }, event_id: '$leave', origin_server_ts: 5, unsigned: {} };
    await storeRemoteMembership(ctx, USER, ROOM, { membership: 'leave', state: [NAME, invite], servers: ['there.example'], event: leaveEvent });
    expect(await membershipNow()).toMatchObject({ membership: 'leave', pos: 0 });
    expect(await remoteLeaveEntry(ctx, USER, ROOM)).toEqual({ timeline: { events: [leaveEvent], limited: false }, state: { events: [] }, account_data: { events: [] } });

    // Our user joins the room here (an event at position 12): out-of-band entries no longer apply.
    expect(await index.record(USER, ROOM, 12, 'join')).toBe(true);
    await storeRemoteInvite(ctx, USER, ROOM, [NAME, invite], 'there.example');
    expect(await membershipNow()).toMatchObject({ membership: 'join', pos: 12 });
  });

  it('an invite kept before knocks existed (a bare array) still reads as an invite', async () => {
    const keys = new KeySpace(`oob${randomBytes(4).toString('hex')}:`);
    const ctx = { redis, keys, shardCounts: { room: 4, user: 4 } } as unknown as ApiContext;
    const invite = { type: 'm.room.member', state_key: USER, sender: '@admin:there.example', content: { membership: 'invite' } };
    await storeRemoteInvite(ctx, USER, ROOM, [invite], 'there.example');
    const k = keys.shard('user', shardOf(USER, 4)).data(membershipIndexData.remoteInvite(USER, ROOM));
    expect(await redis.exists(k)).toBe(1);
    await redis.set(k, JSON.stringify([NAME, invite]));
    expect(await remoteMembership(ctx, USER, ROOM)).toEqual({ membership: 'invite', state: [NAME, invite], servers: [] });
  });
});
