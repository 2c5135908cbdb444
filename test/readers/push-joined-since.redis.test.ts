/**
 * The push evaluator behind the room (it loads a room's members when it first meets the room, so
 * for the outbox entries before that load its members are newer than the events): the members an
 * event is evaluated for are those joined in the state before it. A member who joined after an
 * event is not pushed that event — what was said before they came — while the events from their
 * join on are pushed; a member who was in the room when an event was sent and has left since is
 * pushed it and finds it in their notifications, but not what came after they left. Real room
 * actors on a real Redis; the push queue is the reader's only way out to a pusher, recorded here.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { buildCreateEvent } from '../../actors/room';
import { signingKeyFromSeed } from '../../src/protocol/crypto';
import type { RoomConfig, RoomOutput } from '../../src/rooms/model';
import type { PushQueue, QueuedNotification } from '../../src/push/queue';
import { PushEvaluatorReader, memberIntervals, notificationMember } from '../../src/readers/push-evaluator';
import { parseOutboxEntry } from '../../src/runtime/envelope';
import { decode } from '../../src/store/codec';
import { pushData, roomData, userData } from '../../src/store/keys';
import { connectRedis } from '../../src/store/redis';
import { shardOf } from '../../src/store/shards';
import { rig, silent, type Rig } from '../runtime/harness';

const OURS = 'push.test';
const room: RoomConfig = { serverName: OURS, signingKey: signingKeyFromSeed('ed25519:t', new Uint8Array(32).fill(5)) };
const alice = `@alice:${OURS}`;
const bob = `@bob:${OURS}`;
const carol = `@carol:${OURS}`;
const dan = `@dan:${OURS}`;
const N = 4;

type Sendable = { type: string; sender: string; content: Record<string, unknown>; state_key?: string };

describe('push evaluator behind the room (redis)', () => {
  let r: Rig;
  let reader: PushEvaluatorReader | undefined;
  afterEach(async () => {
    await reader?.stop();
    reader = undefined;
    await r?.close();
  });

  /** A room created by alice (joined, public), with a way to send events into it as its members. */
  async function newRoom(localpart: string): Promise<{ roomId: string; send: (ev: Sendable) => Promise<string> }> {
    r = await rig('single', { shards: N, room });
    await r.startWorker('w1'); // the room actors only: the test runs the reader over the outbox itself
    const c = await r.client();
    const { roomId, event } = buildCreateEvent(room, { roomVersion: '10', creator: alice, roomLocalpart: localpart, ts: Date.now() });
    await c.ask('room', 'room', roomId, { op: 'create', event });
    const send = async (ev: Sendable) => (await c.ask<{ event_id: string }>('room', 'room', roomId, { op: 'send', event: ev })).event_id;
    await send({ type: 'm.room.member', sender: alice, state_key: alice, content: { membership: 'join' } });
    await send({ type: 'm.room.join_rules', sender: alice, state_key: '', content: { join_rule: 'public' } });
    return { roomId, send };
  }

  const addPusher = (u: string) => r.redis.hset(r.keys.shard('user', shardOf(u, N)).data(userData.pushers(u)), 'p', JSON.stringify({ kind: 'http', app_id: 'app', pushkey: `key-${u}` }));

  /**
   * Run a fresh reader over the room's whole outbox, after everything was committed: it loads the
   * room with its members as they are now, newer than every event. What it pushes, in order.
   */
  async function evaluateBehind(roomId: string): Promise<{ user: string; event: string; actions: QueuedNotification['a'] }[]> {
    const pushed: { user: string; event: string; actions: QueuedNotification['a'] }[] = [];
    const queue = {
      enqueue: async (userId: string, _app: string, _key: string, member: string) => {
        const n = JSON.parse(member) as QueuedNotification;
        pushed.push({ user: userId, event: n.e, actions: n.a });
      },
    } as unknown as PushQueue;
    reader = new PushEvaluatorReader(connectRedis(r.target), r.keys, r.shardCounts, OURS, 'behind', silent, queue);
    const shard = shardOf(roomId, N);
    const rows = (await r.redis.xrangeBuffer(r.keys.shard('room', shard).outbox, '-', '+')) as [Buffer, Buffer[]][];
    const entries = rows.map(([id, fields]) => ({ id: id.toString(), entry: parseOutboxEntry(fields) })).filter((e) => e.entry?.kind === 'room' && decode<RoomOutput>(e.entry.body).roomId === roomId);
    // The shard counted as held (as `attach` does) without starting the reader's own group reads.
    (reader as unknown as { held: Set<number> }).held.add(shard);
    await (reader as unknown as { apply(shard: number, entries: unknown[]): Promise<void> }).apply(shard, entries);
    return pushed;
  }

  it('does not push a member an event from before they joined, and pushes those after (a later rename of theirs changes nothing)', async () => {
    const { roomId, send } = await newRoom('later');
    // bob has an http pusher; alice too (she is in the room all along).
    for (const u of [alice, bob]) await addPusher(u);
    const before = await send({ type: 'm.room.message', sender: alice, content: { msgtype: 'm.text', body: 'before bob came' } });
    await send({ type: 'm.room.member', sender: bob, state_key: bob, content: { membership: 'join' } });
    const after = await send({ type: 'm.room.message', sender: alice, content: { msgtype: 'm.text', body: 'bob is here' } });
    const reply = await send({ type: 'm.room.message', sender: bob, content: { msgtype: 'm.text', body: 'hello alice' } });
    // bob's later member event (a display name) does not make him new to what came before it.
    const whileIn = await send({ type: 'm.room.message', sender: alice, content: { msgtype: 'm.text', body: 'before the rename' } });
    await send({ type: 'm.room.member', sender: bob, state_key: bob, content: { membership: 'join', displayname: 'Bob' } });

    const pushed = await evaluateBehind(roomId);
    expect(pushed.filter((p) => p.user === bob).map((p) => p.event)).toEqual([after, whileIn]);
    expect(pushed.filter((p) => p.user === alice).map((p) => p.event)).toEqual([reply]);
    expect(pushed.some((p) => p.event === before)).toBe(false); // alice sent it: nobody else was in
  });

  it('pushes and lists a member who has left since the events from while they were in, and nothing from after; later joiners get none of them', async () => {
    const { roomId, send } = await newRoom('left');
    for (const u of [alice, bob, carol, dan]) await addPusher(u);
    await send({ type: 'm.room.member', sender: bob, state_key: bob, content: { membership: 'join' } });
    const m1 = await send({ type: 'm.room.message', sender: alice, content: { msgtype: 'm.text', body: 'bob is here' } });
    const m2 = await send({ type: 'm.room.message', sender: alice, content: { msgtype: 'm.text', body: 'still here?' } });
    await send({ type: 'm.room.member', sender: bob, state_key: bob, content: { membership: 'leave' } });
    const alone = await send({ type: 'm.room.message', sender: alice, content: { msgtype: 'm.text', body: 'bob has gone' } });
    await send({ type: 'm.room.member', sender: carol, state_key: carol, content: { membership: 'join' } });
    await send({ type: 'm.room.member', sender: dan, state_key: dan, content: { membership: 'join' } });
    const m4 = await send({ type: 'm.room.message', sender: alice, content: { msgtype: 'm.text', body: 'carol and dan are here' } });

    // Loaded now: alice, carol and dan joined, bob left — all after m1 and m2.
    const pushed = await evaluateBehind(roomId);
    const to = (u: string) => pushed.filter((p) => p.user === u);
    // bob was in when m1 and m2 were sent: pushed them, as the room was then — two members, so
    // `.m.rule.room_one_to_one` (the room's member count at the event, not the three of now).
    const oneToOne = ['notify', { set_tweak: 'sound', value: 'default' }];
    expect(to(bob).map((p) => p.event)).toEqual([m1, m2]);
    for (const p of to(bob)) expect(p.actions).toEqual(oneToOne);
    // carol and dan came later: only m4, at which the room had three members (`.m.rule.message`).
    for (const u of [carol, dan]) expect(to(u).map((p) => [p.event, p.actions])).toEqual([[m4, ['notify']]]);
    expect(to(alice)).toEqual([]);
    expect(pushed.some((p) => p.event === alone)).toBe(false);

    // GET /notifications' view: the room's list over the times each was a member (the joins
    // record, pushData.roomJoins, as src/api/client/notifications.ts reads it), less what they are
    // excluded from, with their own list.
    const roomKey = (name: string) => r.keys.shard('room', shardOf(roomId, N)).data(name);
    const userKey = (u: string, name: string) => r.keys.shard('user', shardOf(u, N)).data(name);
    const listed = async (u: string, joinedNow: boolean): Promise<string[]> => {
      const out: string[] = [];
      for (const [from, until] of memberIntervals(await r.redis.hget(roomKey(pushData.roomJoins(roomId)), u), joinedNow)) {
        const upper = until === Number.POSITIVE_INFINITY ? '+inf' : `(${until}`;
        for (const e of await r.redis.zrangebyscore(roomKey(pushData.roomList(roomId)), `(${from}`, upper)) {
          if ((await r.redis.zscore(userKey(u, pushData.excluded(u)), notificationMember(roomId, e))) === null) out.push(e);
        }
      }
      for (const m of await r.redis.zrange(userKey(u, pushData.notifications(u)), 0, -1)) out.push(m.slice(roomId.length + 1));
      return out;
    };
    expect(await listed(bob, false)).toEqual([m1, m2]);
    for (const u of [carol, dan]) expect(await listed(u, true)).toEqual([m4]);
    expect(await listed(alice, true)).toEqual([]);
    // The counts' records: the room's push log has what notified its members of the time; only
    // the sender's outcome differs from the room's.
    expect(await r.redis.zrange(roomKey(pushData.roomLog(roomId)), 0, -1)).toEqual([m1, m2, m4]);
    for (const u of [bob, carol, dan]) expect(await r.redis.zcard(userKey(u, pushData.exceptions(u, roomId)))).toBe(0);
    expect((await r.redis.zrange(userKey(alice, pushData.exceptions(alice, roomId)), 0, -1)).map((m) => m.slice(m.lastIndexOf('\0') + 1))).toEqual([m1, m2, m4]);
  });

  it('pushes no member an event whose state snapshot is gone (a purge under way), and does not fail', async () => {
    const { roomId, send } = await newRoom('gone');
    for (const u of [alice, bob, carol]) await addPusher(u);
    await send({ type: 'm.room.member', sender: bob, state_key: bob, content: { membership: 'join' } });
    await send({ type: 'm.room.message', sender: alice, content: { msgtype: 'm.text', body: 'hello' } });
    const invite = await send({ type: 'm.room.member', sender: alice, state_key: carol, content: { membership: 'invite' } });
    await send({ type: 'm.room.message', sender: alice, content: { msgtype: 'm.text', body: 'carol is coming' } });
    const last = await send({ type: 'm.room.message', sender: bob, content: { msgtype: 'm.text', body: 'hi' } });
    // The snapshots go first (the rest of the room stays): the members at the events cannot be read.
    const roomKey = (name: string) => r.keys.shard('room', shardOf(roomId, N)).data(name);
    await r.redis.del(...Array.from({ length: 20 }, (_, i) => roomKey(roomData.snapshot(roomId, i + 1))));
    // Of the events behind the loaded state, only the invite is pushed, to the invitee (it is for
    // them whoever was in the room); the newest event is the loaded state's own, its members need
    // no snapshot.
    expect((await evaluateBehind(roomId)).map((p) => [p.user, p.event])).toEqual([
      [carol, invite],
      [alice, last],
    ]);
  });
});
