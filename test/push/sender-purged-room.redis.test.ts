/**
 * The push sender (src/push/sender.ts) and a room being purged: an item queued for one of its
 * events is skipped once purge_begin has deleted the room's members hash, though the purge's
 * batches have not deleted the event yet (an evaluator running behind the purge may queue it then).
 */
import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { defaultConfig } from '../../cluster.config';
import type { StoredPusher } from '../../actors/user';
import { PushSender } from '../../src/push/sender';
import type { PushQueue } from '../../src/push/queue';
import type { ActorClient } from '../../src/runtime/actor-client';
import { encode } from '../../src/store/codec';
import { KeySpace, roomData } from '../../src/store/keys';
import { connectRedis, type RedisClient } from '../../src/store/redis';

let redis: RedisClient;
beforeAll(() => {
  redis = connectRedis({ url: inject('redisUrl') });
});
afterAll(() => redis.disconnect());

describe('PushSender: a purged room', () => {
  it("skips a queued event of a room whose members hash is gone (purge begun), though the event is still stored", async () => {
    const keys = new KeySpace(`psp${randomBytes(4).toString('hex')}:`);
    const shardCounts = { room: 1, user: 1 } as Record<'room' | 'user', number>;
    const config = defaultConfig();
    const sender = new PushSender({ redis, keys, shardCounts: shardCounts as never, config, actors: null as unknown as ActorClient, queue: null as unknown as PushQueue, log: pino({ level: 'silent' }) });
    const room = '!doomed:here';
    const bob = '@bob:here';
    const sk = keys.shard('room', 0);
    const event = { type: 'm.room.message', sender: '@alice:here', room_id: room, origin_server_ts: 1, content: { msgtype: 'm.text', body: 'hi' } };
    await redis.set(sk.data(roomData.event('$e1')), encode({ j: JSON.stringify(event), p: 5, d: 5, sb: 1, sa: 1 }));
    // A gateway nobody answers: a send that is not skipped fails (it would have been pushed).
    const pusher: StoredPusher = { app_id: 'a', pushkey: 'k', kind: 'http', app_display_name: '', device_display_name: '', profile_tag: '', lang: 'en', data: { url: 'http://127.0.0.1:9/_matrix/push/v1/notify' }, device_id: null, ts: 1 };
    const sendOne = (sender as unknown as { sendOne(u: string, p: StoredPusher, m: string): Promise<{ kind: string }> }).sendOne.bind(sender);
    const member = JSON.stringify({ r: room, e: '$e1', a: ['notify'] });
    await redis.hset(sk.data(roomData.members(room)), bob, 'join', '@alice:here', 'join');
    expect((await sendOne(bob, pusher, member)).kind).not.toBe('skipped');
    // purge_begin deletes the members hash (actors/room.ts); the event's record is still there.
    await redis.del(sk.data(roomData.members(room)));
    expect((await sendOne(bob, pusher, member)).kind).toBe('skipped');
  });
});
