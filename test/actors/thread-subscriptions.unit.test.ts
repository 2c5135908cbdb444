import { describe, expect, it } from 'vitest';
import { decideThreadSubscriptions, threadMember, threadSubscriptionsActor, type ThreadSubscriptionRecord, type ThreadSubscriptionsMessage, type ThreadSubscriptionsState } from '../../actors/thread-subscriptions';
import { ActorRejection, type ActorMessage, type ShellContext } from '../../src/runtime/actor';
import { threadSubscriptionData } from '../../src/store/keys';
import RedisMock from 'ioredis-mock';

const U = '@u:example.org';
const R = '!r:x';
let n = 0;
const msg = (body: ThreadSubscriptionsMessage): ActorMessage<ThreadSubscriptionsMessage> => ({ mid: `m${++n}`, actorId: U, body, enqueuedAt: 0 });
const s0: ThreadSubscriptionsState = { userId: U, seq: 0 };
const rec = (over: Partial<ThreadSubscriptionRecord>): ThreadSubscriptionRecord => ({ room_id: R, thread_root_id: '$t', subscribed: true, automatic: false, stream: 1, ...over });
const run = (state: ThreadSubscriptionsState, body: ThreadSubscriptionsMessage, current: ThreadSubscriptionRecord | null) => decideThreadSubscriptions(state, msg(body), { current });

describe('thread subscriptions actor (Synapse’s rules)', () => {
  it('numbers changes and writes the record and the stream index', () => {
    const d = run(s0, { op: 'subscribe', roomId: R, root: '$t' }, null);
    expect(d.reply).toEqual({ stream: 1 });
    expect(d.state.seq).toBe(1);
    expect(d.writes?.[0]?.args[1]).toBe(JSON.stringify(rec({})));
    expect(d.writes?.[1]).toEqual({ cmd: 'ZADD', key: `user:${U}:threadsubs:stream`, args: [1, `${R}\u0000$t`] });
    expect(d.outputs).toEqual([{ type: 'thread_subscription', user_id: U, room_id: R, thread_root_id: '$t', stream: 1 }]);
  });

  it('manual wins; repeats are no-ops; automatic after an unsubscription only for newer events', () => {
    const s = { userId: U, seq: 5 };
    // Manual over automatic: written; automatic over manual or automatic: no-op.
    expect(run(s, { op: 'subscribe', roomId: R, root: '$t' }, rec({ automatic: true })).reply).toEqual({ stream: 6 });
    expect(run(s, { op: 'subscribe', roomId: R, root: '$t', automaticPos: 9 }, rec({})).reply).toEqual({ stream: null });
    expect(run(s, { op: 'subscribe', roomId: R, root: '$t' }, rec({})).reply).toEqual({ stream: null });
    expect(run(s, { op: 'subscribe', roomId: R, root: '$t', automaticPos: 9 }, rec({ automatic: true })).reply).toEqual({ stream: null });
    // Unsubscribed at room position 40: a cause at 40 or before (or backfilled) conflicts, 41 is taken.
    const unsub = rec({ subscribed: false, unsubscribed_at: 40 });
    for (const pos of [40, 3, -2]) expect(() => run(s, { op: 'subscribe', roomId: R, root: '$t', automaticPos: pos }, unsub)).toThrow(ActorRejection);
    expect(run(s, { op: 'subscribe', roomId: R, root: '$t', automaticPos: 41 }, unsub).reply).toEqual({ stream: 6 });
    expect(run(s, { op: 'subscribe', roomId: R, root: '$t' }, unsub).reply).toEqual({ stream: 6 });
    // Unsubscribing records the room position; when not subscribed it is a no-op.
    const u = run(s, { op: 'unsubscribe', roomId: R, root: '$t', roomPos: 77 }, rec({}));
    expect(JSON.parse(String(u.writes?.[0]?.args[1]))).toMatchObject({ subscribed: false, unsubscribed_at: 77, stream: 6 });
    expect(run(s, { op: 'unsubscribe', roomId: R, root: '$t', roomPos: 77 }, unsub).reply).toEqual({ stream: null });
    expect(run(s, { op: 'unsubscribe', roomId: R, root: '$t', roomPos: 77 }, null).reply).toEqual({ stream: null });
  });

  it('purges everything at deactivation', () => {
    expect(run(s0, { op: 'purge' }, null).writes?.map((w) => w.cmd)).toEqual(['DEL', 'DEL']);
  });

  it("a purged room's records go (prepare and decide on a store), the other rooms' stay; run again it changes nothing", async () => {
    const redis = new RedisMock();
    const ctx = { redis, keys: { data: (name: string) => name } } as unknown as ShellContext;
    const actor = threadSubscriptionsActor();
    const OTHER = '!r:xy'; // its id begins with R's
    const records = threadSubscriptionData.records(U);
    const byStream = threadSubscriptionData.byStream(U);
    let stream = 0;
    for (const [room, root] of [[R, '$a'], [R, '$b'], [OTHER, '$a'], ['!s:x', '$c']] as const) {
      await redis.hset(records, threadMember(room, root), JSON.stringify(rec({ room_id: room, thread_root_id: root, stream: ++stream })));
      await redis.zadd(byStream, stream, threadMember(room, root));
    }
    const purge = async () => {
      const m = msg({ op: 'purge_room', roomId: R });
      const d = actor.decide({ userId: U, seq: 4 }, m, await actor.prepare!(ctx, { userId: U, seq: 4 }, m));
      for (const w of d.writes ?? []) await (redis as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[w.cmd.toLowerCase()]!(w.key, ...w.args);
      expect(d.outputs ?? []).toEqual([]);
      return d;
    };
    expect((await purge()).state.seq).toBe(4);
    const left = [threadMember(OTHER, '$a'), threadMember('!s:x', '$c')];
    expect((await redis.hkeys(records)).sort()).toEqual(left.sort());
    expect(await redis.zrange(byStream, 0, -1)).toEqual(left);
    expect((await purge()).writes ?? []).toEqual([]);
    expect((await redis.hkeys(records)).sort()).toEqual(left.sort());
  });
});
