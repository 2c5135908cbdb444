import { describe, expect, it } from 'vitest';
import { decideThreadSubscriptions, type ThreadSubscriptionRecord, type ThreadSubscriptionsMessage, type ThreadSubscriptionsState } from '../../actors/thread-subscriptions';
import { ActorRejection, type ActorMessage } from '../../src/runtime/actor';

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
});
