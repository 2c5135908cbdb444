/**
 * The push evaluator behind the room (it loads a room's members when it first meets the room, so
 * for the outbox entries before that load its members are newer than the events): a member who
 * joined after an event is not pushed that event — what was said before they came — while the
 * events from their join on are pushed. Real room actors on a real Redis; the push queue is the
 * reader's only way out to a pusher, recorded here.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { buildCreateEvent } from '../../actors/room';
import { signingKeyFromSeed } from '../../src/protocol/crypto';
import type { RoomConfig, RoomOutput } from '../../src/rooms/model';
import { BADGE_MEMBER, type PushQueue } from '../../src/push/queue';
import { PushEvaluatorReader } from '../../src/readers/push-evaluator';
import { parseOutboxEntry } from '../../src/runtime/envelope';
import { decode } from '../../src/store/codec';
import { userData } from '../../src/store/keys';
import { connectRedis } from '../../src/store/redis';
import { shardOf } from '../../src/store/shards';
import { rig, silent, type Rig } from '../runtime/harness';

const OURS = 'push.test';
const room: RoomConfig = { serverName: OURS, signingKey: signingKeyFromSeed('ed25519:t', new Uint8Array(32).fill(5)) };
const alice = `@alice:${OURS}`;
const bob = `@bob:${OURS}`;
const N = 4;

describe('push evaluator behind the room (redis)', () => {
  let r: Rig;
  afterEach(async () => {
    await r?.close();
  });

  it('does not push a member an event from before they joined, and pushes those after (a later rename of theirs changes nothing)', async () => {
    r = await rig('single', { shards: N, room });
    await r.startWorker('w1'); // the room actors only: the test runs the reader over the outbox itself
    const c = await r.client();
    const { roomId, event } = buildCreateEvent(room, { roomVersion: '10', creator: alice, roomLocalpart: 'later', ts: Date.now() });
    await c.ask('room', 'room', roomId, { op: 'create', event });
    const send = async (ev: { type: string; sender: string; content: Record<string, unknown>; state_key?: string }) => (await c.ask<{ event_id: string }>('room', 'room', roomId, { op: 'send', event: ev })).event_id;
    await send({ type: 'm.room.member', sender: alice, state_key: alice, content: { membership: 'join' } });
    await send({ type: 'm.room.join_rules', sender: alice, state_key: '', content: { join_rule: 'public' } });
    // bob has an http pusher; alice too (she is in the room all along).
    for (const u of [alice, bob]) await r.redis.hset(r.keys.shard('user', shardOf(u, N)).data(userData.pushers(u)), 'p', JSON.stringify({ kind: 'http', app_id: 'app', pushkey: `key-${u}` }));
    const before = await send({ type: 'm.room.message', sender: alice, content: { msgtype: 'm.text', body: 'before bob came' } });
    await send({ type: 'm.room.member', sender: bob, state_key: bob, content: { membership: 'join' } });
    const after = await send({ type: 'm.room.message', sender: alice, content: { msgtype: 'm.text', body: 'bob is here' } });
    const reply = await send({ type: 'm.room.message', sender: bob, content: { msgtype: 'm.text', body: 'hello alice' } });
    // bob's later member event (a display name) does not make him new to what came before it.
    const whileIn = await send({ type: 'm.room.message', sender: alice, content: { msgtype: 'm.text', body: 'before the rename' } });
    await send({ type: 'm.room.member', sender: bob, state_key: bob, content: { membership: 'join', displayname: 'Bob' } });

    const pushed: { user: string; event: string }[] = [];
    const queue = {
      enqueue: async (userId: string, _app: string, _key: string, member: string) => {
        // Badge updates (after a member's own message lowers their counts) carry no event.
        if (member !== BADGE_MEMBER) pushed.push({ user: userId, event: (JSON.parse(member) as { e: string }).e });
      },
    } as unknown as PushQueue;
    const reader = new PushEvaluatorReader(connectRedis(r.target), r.keys, r.shardCounts, OURS, 'behind', silent, queue);
    const shard = shardOf(roomId, N);
    const rows = (await r.redis.xrangeBuffer(r.keys.shard('room', shard).outbox, '-', '+')) as [Buffer, Buffer[]][];
    const entries = rows.map(([id, fields]) => ({ id: id.toString(), entry: parseOutboxEntry(fields) })).filter((e) => e.entry?.kind === 'room' && decode<RoomOutput>(e.entry.body).roomId === roomId);
    // Read after everything was committed: the room is loaded with bob already in it. The shard
    // counted as held (as `attach` does) without starting the reader's own group reads.
    (reader as unknown as { held: Set<number> }).held.add(shard);
    await (reader as unknown as { apply(shard: number, entries: unknown[]): Promise<void> }).apply(shard, entries);
    expect(pushed.filter((p) => p.user === bob).map((p) => p.event)).toEqual([after, whileIn]);
    expect(pushed.filter((p) => p.user === alice).map((p) => p.event)).toEqual([reply]);
    expect(pushed.some((p) => p.event === before)).toBe(false); // alice sent it: nobody else was in
  });
});
