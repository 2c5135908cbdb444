/** The /sync notifier: one subscription per front, exact wake-ups, aborted waits removed at once. */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { inject } from 'vitest';
import { KeySpace } from '../../src/store/keys';
import { connectRedis, duplicateClient, type RedisClient } from '../../src/store/redis';
import { decodeNotification, SAME_MS_MARGIN, SyncNotifier, workerSyncNotify, type SyncNotification } from '../../src/sync/notify';

async function waitUntil(ok: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}

let redis: RedisClient;
let keys: KeySpace;
let notifier: SyncNotifier;

beforeAll(async () => {
  redis = connectRedis({ url: inject('redisUrl') });
  keys = new KeySpace(`notify${randomBytes(4).toString('hex')}:`);
  notifier = new SyncNotifier(redis, keys);
  await notifier.start();
});

afterAll(() => {
  notifier?.close();
  redis?.disconnect();
});

describe('SyncNotifier', () => {
  it('wakes waiters in the room or named as users, and no others', async () => {
    const publish = workerSyncNotify(redis, keys);
    const inRoom = await notifier.waiter('@a:x');
    inRoom.setRooms(['!r:x']);
    const elsewhere = await notifier.waiter('@b:x');
    elsewhere.setRooms(['!other:x']);
    const invited = await notifier.waiter('@c:x');
    invited.setRooms([]);
    const started = performance.now();
    const woken = Promise.all([inRoom.wait(5000), invited.wait(5000)]);
    publish({ kind: 'room', actorId: '!r:x', outputs: [{ event: { type: 'm.room.member', state_key: '@c:x' } }], family: 'room', shard: 0 });
    await woken;
    expect(performance.now() - started).toBeLessThan(2000);
    expect(inRoom.dirty && invited.dirty).toBe(true);
    expect(elsewhere.dirty).toBe(false);
    // A user output wakes that user.
    const w = elsewhere.wait(5000);
    publish({ kind: 'user', actorId: '@b:x', outputs: [{ type: 'account_data' }], family: 'user', shard: 0 });
    await w;
    expect(elsewhere.dirty).toBe(true);
    for (const x of [inRoom, elsewhere, invited]) x.close();
    expect(notifier.waiting).toBe(0);
  });

  it('publishes the commits of one turn as one notification: rooms, the users named, and only user actors\' users as userData', async () => {
    const sub = duplicateClient(redis);
    const got: SyncNotification[] = [];
    sub.on('message', (_c: string, m: string) => got.push(decodeNotification(m)!));
    await sub.subscribe(keys.syncNotify());
    try {
      const publish = workerSyncNotify(redis, keys);
      publish({ kind: 'user', actorId: '@u:x', outputs: [{ notify_users: ['@v:x', 7, '@u:x'] }], family: 'user', shard: 0 });
      publish({ kind: 'devices', actorId: '@d:x', outputs: [{ notify_users: ['@w:x'] }, { other: 1 }, null], family: 'user', shard: 1 });
      publish({ kind: 'typing', actorId: '!t:x', outputs: [{}], family: 'room', shard: 2 });
      publish({ kind: 'room', actorId: '!r:x', outputs: [{ event: { type: 'm.room.member', state_key: '@c:x' } }, { event: { type: 'm.room.message' } }], family: 'room', shard: 3 });
      await waitUntil(() => got.length > 0);
      await new Promise((r) => setTimeout(r, 50));
      expect(got).toHaveLength(1);
      const n = got[0]!;
      expect(new Set(n.rooms)).toEqual(new Set(['!t:x', '!r:x']));
      expect(new Set(n.users)).toEqual(new Set(['@u:x', '@v:x', '@d:x', '@w:x', '@c:x']));
      // The user actor's own user, and a room's members (no userData field there: all its users).
      expect(new Set(n.userData)).toEqual(new Set(['@u:x', '@c:x']));
      // The room events each room gained, in the order of `rooms` (typing: none).
      expect(Object.fromEntries(n.rooms!.map((r, i) => [r, n.roomEvents![i]]))).toEqual({ '!t:x': 0, '!r:x': 2 });
    } finally {
      sub.disconnect();
    }
  });

  it("feeds each room's event counts to the rates of a notifier built to keep them (the answer spacing's cap), and no other's", async () => {
    const rated = new SyncNotifier(redis, keys, { roomRates: true });
    await rated.start();
    const w = await rated.waiter('@rate:x');
    try {
      const noted = vi.spyOn(rated.roomRates!, 'note');
      w.setRooms(['!busy:x', '!calm:x', '!quiet:x']);
      const publish = workerSyncNotify(redis, keys);
      const message = { event: { type: 'm.room.message' } };
      // One turn: the busy room committed twice (20 and 10 events: summed), the calm one once, a
      // typing update in a third (no events).
      publish({ kind: 'room', actorId: '!busy:x', outputs: Array.from({ length: 20 }, () => message), family: 'room', shard: 0 });
      publish({ kind: 'room', actorId: '!calm:x', outputs: [message], family: 'room', shard: 1 });
      publish({ kind: 'room', actorId: '!busy:x', outputs: Array.from({ length: 10 }, () => message), family: 'room', shard: 0 });
      publish({ kind: 'typing', actorId: '!quiet:x', outputs: [{}], family: 'room', shard: 2 });
      await w.wait(5000);
      await waitUntil(() => noted.mock.calls.length >= 2);
      expect(noted.mock.calls.map(([room, n]) => [room, n])).toEqual([
        ['!busy:x', 30],
        ['!calm:x', 1],
        ['!quiet:x', 0],
      ]);
      expect(rated.roomRates!.rate('!busy:x')).toBeGreaterThan(rated.roomRates!.rate('!calm:x'));
      expect(rated.roomRates!.rate('!quiet:x')).toBe(0);
      // Counts that do not match their rooms, or none: nothing noted.
      noted.mockClear();
      w.dirty = false;
      await redis.publish(keys.syncNotify(), JSON.stringify({ rooms: ['!odd:x', '!odd2:x'], roomEvents: [5] }));
      await redis.publish(keys.syncNotify(), JSON.stringify({ rooms: ['!odd3:x'] }));
      await redis.publish(keys.syncNotify(), JSON.stringify({ rooms: ['!busy:x'], roomEvents: ['x'] }));
      await w.wait(5000);
      await new Promise((r) => setTimeout(r, 50));
      expect(noted).not.toHaveBeenCalled();
      // The notifier without `roomRates` (sliding sync's) keeps none.
      expect(notifier.roomRates).toBeNull();
    } finally {
      w.close();
      rated.close();
    }
  });

  it('an aborted wait returns at once and its request is removed', async () => {
    const w = await notifier.waiter('@d:x');
    w.setRooms(['!r:x']);
    const abort = new AbortController();
    const started = performance.now();
    const waiting = w.wait(10_000, abort.signal);
    abort.abort();
    await waiting;
    w.close();
    expect(performance.now() - started).toBeLessThan(100);
    expect(notifier.waiting).toBe(0);
  });

  it('before its first computation a waiter takes any room notification', async () => {
    const w = await notifier.waiter('@e:x');
    const waiting = w.wait(5000);
    await redis.publish(keys.syncNotify(), JSON.stringify({ rooms: ['!any:x'] }));
    await waiting;
    expect(w.dirty).toBe(true);
    w.close();
  });

  it('tells whether anything concerning a user or their rooms was notified since a mark', async () => {
    const publish = workerSyncNotify(redis, keys);
    const mark = notifier.changeMark;
    expect(notifier.unchangedSince('@m:x', ['!m1:x', '!m2:x'], mark)).toBe(true);
    // Something elsewhere changes nothing for this user.
    const other = await notifier.waiter('@watch:x');
    other.setRooms(['!elsewhere:x']);
    publish({ kind: 'room', actorId: '!elsewhere:x', outputs: [], family: 'room', shard: 0 });
    await other.wait(5000);
    other.close();
    expect(notifier.unchangedSince('@m:x', ['!m1:x', '!m2:x'], mark)).toBe(true);
    // One of their rooms: changed.
    const w = await notifier.waiter('@m:x');
    w.setRooms(['!m2:x']);
    publish({ kind: 'room', actorId: '!m2:x', outputs: [], family: 'room', shard: 0 });
    await w.wait(5000);
    expect(notifier.unchangedSince('@m:x', ['!m1:x', '!m2:x'], mark)).toBe(false);
    // A mark taken within SAME_MS_MARGIN of a notification does not trust it (its commit may share
    // the cut's millisecond); one taken later does.
    await new Promise((r) => setTimeout(r, 5));
    const mark2 = notifier.changeMark;
    expect(notifier.unchangedSince('@m:x', ['!m1:x', '!m2:x'], mark2)).toBe(true);
    // The user named (a device change fanned out, an invite): changed.
    w.dirty = false;
    publish({ kind: 'user', actorId: '@m:x', outputs: [], family: 'user', shard: 0 });
    await w.wait(5000);
    w.close();
    expect(notifier.unchangedSince('@m:x', [], mark2)).toBe(false);
  });

  it('does not trust a notification that came within the same-millisecond margin of the mark', () => {
    const now = vi.spyOn(performance, 'now').mockReturnValue(1_000_000);
    try {
      (notifier as unknown as { deliver(m: string): void }).deliver(JSON.stringify({ rooms: ['!q:x'] }));
      const seq = notifier.changeMark.seq;
      // A mark 1 ms after the notification: the commit may share the cut's millisecond.
      expect(notifier.unchangedSince('@q:x', ['!q:x'], { seq, at: 1_000_001 })).toBe(false);
      // Past the margin: the commit is in an earlier millisecond than any cut taken after the mark.
      expect(notifier.unchangedSince('@q:x', ['!q:x'], { seq, at: 1_000_000 + SAME_MS_MARGIN + 1 })).toBe(true);
      // changedNear: the same question for a poll that computed empty — look again?
      expect(notifier.changedNear('@q:x', ['!q:x'], { seq, at: 1_000_001 })).toBe(true);
      expect(notifier.changedNear('@q:x', ['!other:x'], { seq, at: 1_000_001 })).toBe(false);
      expect(notifier.changedNear('@q:x', ['!q:x'], { seq, at: 1_000_000 + SAME_MS_MARGIN + 1 })).toBe(false);
    } finally {
      now.mockRestore();
    }
  });

  it('trusts no mark taken before its subscription was up', async () => {
    const fresh = new SyncNotifier(redis, keys);
    try {
      expect(fresh.unchangedSince('@n:x', [], fresh.changeMark)).toBe(false);
      await fresh.start();
      expect(fresh.unchangedSince('@n:x', [], fresh.changeMark)).toBe(true);
    } finally {
      fresh.close();
    }
  });
});
