/**
 * Presence reads shared between /sync computations (src/sync/device-lists.ts `presenceEvents` with
 * a freshness bound): a read made after a window's newest feed entry serves that window; a change
 * fanned out after the read is read again.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { shardOf } from '../../src/store/shards';
import { KeySpace, userData } from '../../src/store/keys';
import { connectRedis, type RedisClient } from '../../src/store/redis';
import { presenceEvents } from '../../src/sync/device-lists';
import type { ApiContext } from '../../src/api/context';

let redis: RedisClient;
beforeAll(() => {
  redis = connectRedis({ url: inject('redisUrl') });
});
afterAll(() => redis.disconnect());

const shardCounts = { room: 8, user: 8 };

describe('shared presence reads', () => {
  it('serve windows whose changes were stored before the read, and read again for a later change', async () => {
    const keys = new KeySpace(`pr${randomBytes(4).toString('hex')}:`);
    const ctx = { redis, keys, shardCounts } as unknown as ApiContext;
    const users = ['@a:x', '@b:x', '@c:x'];
    const set = (u: string, presence: string) => redis.set(keys.shard('user', shardOf(u, 8)).data(userData.presence(u)), JSON.stringify({ presence, last_active: Date.now() }));
    for (const u of users) await set(u, 'online');
    const stateOf = (events: { sender?: unknown; content?: unknown }[]) => Object.fromEntries(events.map((e) => [e.sender, (e.content as { presence: string }).presence]));

    // The changes were fanned out at ms 1,000; a computation cut at 2,000 reads them.
    expect(stateOf(await presenceEvents(ctx, users, false, { afterMs: 1_000, cutMs: 2_000 }))).toEqual({ '@a:x': 'online', '@b:x': 'online', '@c:x': 'online' });
    await set('@b:x', 'unavailable');
    // Another member's window with the same changes (newest entry at 1,500, before that read's cut): the
    // read is shared, so what was stored since is not seen — nor is it due: its feed entry comes later.
    expect(stateOf(await presenceEvents(ctx, users, false, { afterMs: 1_500, cutMs: 2_100 }))).toEqual({ '@a:x': 'online', '@b:x': 'online', '@c:x': 'online' });
    // The change's own feed entry (at 2,000, not before the shared read's cut): read again.
    expect(stateOf(await presenceEvents(ctx, users, false, { afterMs: 2_000, cutMs: 3_000 }))['@b:x']).toBe('unavailable');
    // And that newer read serves the windows after it.
    await set('@c:x', 'offline');
    expect(stateOf(await presenceEvents(ctx, users, false, { afterMs: 2_500, cutMs: 3_100 }))).toEqual({ '@a:x': 'online', '@b:x': 'unavailable', '@c:x': 'online' });
    // Without a freshness bound (an initial sync, newcomers to a room) every record is read as it is now.
    expect(stateOf(await presenceEvents(ctx, users, false))).toEqual({ '@a:x': 'online', '@b:x': 'unavailable', '@c:x': 'offline' });
    // An older computation's read (cut 2,900) does not replace a newer one's.
    expect(stateOf(await presenceEvents(ctx, ['@c:x'], false, { afterMs: 3_500, cutMs: 2_900 }))['@c:x']).toBe('offline');
    expect(stateOf(await presenceEvents(ctx, ['@c:x'], false, { afterMs: 2_500, cutMs: 3_200 }))['@c:x']).toBe('online');
  });
});
