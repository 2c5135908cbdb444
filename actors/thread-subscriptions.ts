/**
 * ThreadSubscriptionsActor: one user's thread subscriptions (MSC4306, as Synapse 1.163.2 keeps
 * them: synapse/storage/databases/main/thread_subscriptions.py). Actor id = the user id; it lives
 * in the user's shard, so a user's changes are serialized and numbered: each change gets the next
 * stream id of the user (its `bump_stamp`, and the order of `GET …/thread_subscriptions`).
 *
 * Rules:
 * - subscribing manually always wins: it replaces an automatic subscription and an unsubscription;
 *   subscribing again when subscribed (manually, or automatically over an automatic one) is a no-op;
 * - an automatic subscription (`automatic`: the client's cause event, an event in the thread)
 *   over an unsubscription is refused (409 `IO.ELEMENT.MSC4306.M_CONFLICTING_UNSUBSCRIPTION`) when
 *   the cause event is not newer than the room's newest event at the unsubscription: the user
 *   had already seen it and chose to leave the thread. Backfilled cause events (negative stream
 *   positions) are older than any live unsubscription;
 * - unsubscribing when not subscribed is a no-op; it records the room's stream position then.
 * Records are kept after unsubscribing (`subscribed: false`), so the conflict rule and the
 * listing's `unsubscribed` part work. Each change is a `thread_subscription` entry on the user's
 * outbox (what a sliding-sync extension reads as a wake-up).
 */
import type { ActorKind, ActorMessage, Decision, ShellContext } from '../src/runtime/actor';
import { ActorRejection } from '../src/runtime/actor';
import { threadSubscriptionData } from '../src/store/keys';

export const THREAD_SUBSCRIPTIONS_KIND = 'thread-subscriptions';

export interface ThreadSubscriptionRecord {
  room_id: string;
  thread_root_id: string;
  subscribed: boolean;
  automatic: boolean;
  /** The user's stream id of the latest change (`bump_stamp`). */
  stream: number;
  /** The room's stream position when the user unsubscribed. */
  unsubscribed_at?: number;
}

export interface ThreadSubscriptionsState {
  userId: string;
  /** The last stream id given. */
  seq: number;
}

export type ThreadSubscriptionsMessage =
  /** `automaticPos`: the room stream position of the cause event of an automatic subscription. */
  | { op: 'subscribe'; roomId: string; root: string; automaticPos?: number }
  /** `roomPos`: the room's newest stream position now. */
  | { op: 'unsubscribe'; roomId: string; root: string; roomPos: number }
  /** The account was deactivated: every record goes (as Synapse purges them; nothing is streamed). */
  | { op: 'purge' }
  /**
   * An admin purged the room (src/rooms/room-deletion.ts): the user's records of its threads go, as
   * Synapse's purge takes them with the room's events (thread_subscriptions' foreign key on
   * `events`, ON DELETE CASCADE). Nothing is streamed (the room is gone for the user). Idempotent.
   */
  | { op: 'purge_room'; roomId: string };

export type ThreadSubscriptionsReply = { stream: number | null };

export interface ThreadSubscriptionOutput {
  type: 'thread_subscription';
  user_id: string;
  room_id: string;
  thread_root_id: string;
  stream: number;
}

export interface ThreadSubscriptionsPrepared {
  current: ThreadSubscriptionRecord | null;
  /** purge_room: the user's records of that room (their members, `threadMember`). */
  roomMembers?: string[];
}

export const threadMember = (roomId: string, root: string): string => `${roomId}\u0000${root}`;

type D = Decision<ThreadSubscriptionsState, ThreadSubscriptionsReply>;

function write(state: ThreadSubscriptionsState, rec: ThreadSubscriptionRecord): D {
  const member = threadMember(rec.room_id, rec.thread_root_id);
  const output: ThreadSubscriptionOutput = { type: 'thread_subscription', user_id: state.userId, room_id: rec.room_id, thread_root_id: rec.thread_root_id, stream: rec.stream };
  return {
    state: { ...state, seq: rec.stream },
    reply: { stream: rec.stream },
    writes: [
      { cmd: 'HSET', key: threadSubscriptionData.records(state.userId), args: [member, JSON.stringify(rec)] },
      { cmd: 'ZADD', key: threadSubscriptionData.byStream(state.userId), args: [rec.stream, member] },
    ],
    outputs: [output],
  };
}

export function decideThreadSubscriptions(state: ThreadSubscriptionsState, msg: ActorMessage<ThreadSubscriptionsMessage>, prepared: ThreadSubscriptionsPrepared): D {
  const body = msg.body;
  const cur = prepared?.current ?? null;
  const stream = state.seq + 1;
  if (body?.op === 'subscribe') {
    const automatic = body.automaticPos !== undefined;
    if (cur?.subscribed && (!cur.automatic || automatic)) return { state, reply: { stream: null } };
    if (cur && !cur.subscribed && automatic && cur.unsubscribed_at !== undefined) {
      const pos = body.automaticPos!;
      if (pos < 0 || pos <= cur.unsubscribed_at) throw new ActorRejection('IO.ELEMENT.MSC4306.M_CONFLICTING_UNSUBSCRIPTION', 'Automatic subscription obsoleted by an unsubscription request.', 409);
    }
    return write(state, { room_id: body.roomId, thread_root_id: body.root, subscribed: true, automatic, stream });
  }
  if (body?.op === 'purge') {
    return {
      state,
      reply: { stream: null },
      writes: [
        { cmd: 'DEL', key: threadSubscriptionData.records(state.userId), args: [] },
        { cmd: 'DEL', key: threadSubscriptionData.byStream(state.userId), args: [] },
      ],
    };
  }
  if (body?.op === 'purge_room') {
    const members = prepared?.roomMembers ?? [];
    if (!members.length) return { state, reply: { stream: null } };
    return {
      state,
      reply: { stream: null },
      writes: [
        { cmd: 'HDEL', key: threadSubscriptionData.records(state.userId), args: members },
        { cmd: 'ZREM', key: threadSubscriptionData.byStream(state.userId), args: members },
      ],
    };
  }
  if (body?.op === 'unsubscribe') {
    if (!cur?.subscribed) return { state, reply: { stream: null } };
    return write(state, { room_id: body.roomId, thread_root_id: body.root, subscribed: false, automatic: false, stream, unsubscribed_at: body.roomPos });
  }
  throw new TypeError(`thread-subscriptions: unknown op ${JSON.stringify((body as { op?: unknown } | undefined)?.op)}`);
}

export function threadSubscriptionsActor(): ActorKind<ThreadSubscriptionsState, ThreadSubscriptionsMessage, ThreadSubscriptionsReply, ThreadSubscriptionsPrepared> {
  return {
    kind: THREAD_SUBSCRIPTIONS_KIND,
    family: 'user',
    initialState: (userId) => ({ userId, seq: 0 }),
    async prepare(ctx: ShellContext, state, msg) {
      if (msg.body?.op === 'purge') return { current: null };
      if (msg.body?.op === 'purge_room') {
        // A user's records are few (one per thread they ever (un)subscribed to): read whole, kept to the room's.
        const prefix = threadMember(msg.body.roomId, '');
        const fields = await ctx.redis.hkeys(ctx.keys.data(threadSubscriptionData.records(state.userId)));
        return { current: null, roomMembers: fields.filter((f) => f.startsWith(prefix)) };
      }
      const json = await ctx.redis.hget(ctx.keys.data(threadSubscriptionData.records(state.userId)), threadMember(msg.body.roomId, msg.body.root));
      return { current: json === null ? null : (JSON.parse(json) as ThreadSubscriptionRecord) };
    },
    decide: decideThreadSubscriptions,
  };
}
