/**
 * The push evaluator lets a room shard go (a move to another worker) and gets it back: the rooms
 * it cached for that shard must not outlive the letting go. On a real redis-server with a worker
 * running the room actor; the reader's batches are applied directly (`apply`), so the test decides
 * which events this reader sees (the others are the other holder's).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { buildCreateEvent } from '../../actors/room';
import { signingKeyFromSeed } from '../../src/protocol/crypto';
import type { RoomConfig, RoomOutput } from '../../src/rooms/model';
import { BADGE_MEMBER, type PushQueue, type QueuedNotification } from '../../src/push/queue';
import { PushEvaluatorReader } from '../../src/readers/push-evaluator';
import { parseOutboxEntry } from '../../src/runtime/envelope';
import { decode } from '../../src/store/codec';
import { userData } from '../../src/store/keys';
import { connectRedis } from '../../src/store/redis';
import { shardOf } from '../../src/store/shards';
import { rig, silent, type Rig } from '../runtime/harness';

const OURS = 'push.test';
const room: RoomConfig = { serverName: OURS, signingKey: signingKeyFromSeed('ed25519:t', new Uint8Array(32).fill(5)) };
const [alice, bob, carol] = ['alice', 'bob', 'carol'].map((n) => `@${n}:${OURS}`) as [string, string, string];
const N = 4;
type Sendable = { type: string; sender: string; content: Record<string, unknown>; state_key?: string };

describe('push evaluator: a room shard let go and taken back (redis)', () => {
  let r: Rig;
  let reader: PushEvaluatorReader | undefined;
  afterEach(async () => {
    await reader?.stop();
    reader = undefined;
    await r?.close();
  });

  it('evaluates the events after it for the members of now, not those cached before it let the shard go', async () => {
    r = await rig('single', { shards: N, room });
    await r.startWorker('w1');
    const c = await r.client();
    const { roomId, event } = buildCreateEvent(room, { roomVersion: '10', creator: alice, roomLocalpart: 'moved', ts: Date.now() });
    // bob has an http pusher: what the reader pushes him is recorded here.
    const pushed: string[] = [];
    let badges = 0;
    const queue = {
      enqueue: async (userId: string, _app: string, _key: string, member: string) => {
        // Badge updates (after bob's own messages lower his counts) carry no event.
        if (userId === bob && member === BADGE_MEMBER) badges++;
        else if (userId === bob) pushed.push((JSON.parse(member) as QueuedNotification).e);
      },
    } as unknown as PushQueue;
    await r.redis.hset(r.keys.shard('user', shardOf(bob, N)).data(userData.pushers(bob)), 'p', JSON.stringify({ kind: 'http', app_id: 'app', pushkey: 'key-bob' }));
    reader = new PushEvaluatorReader(connectRedis(r.target), r.keys, r.shardCounts, OURS, 'moved', silent, queue);
    const shard = shardOf(roomId, N);
    const inner = reader as unknown as { held: Set<number>; apply(shard: number, entries: unknown[]): Promise<void> };
    const outbox = r.keys.shard('room', shard).outbox;
    let after = '-';
    /** The room's outbox entries this reader has not seen yet: applied (`apply`), or skipped (the other holder's). */
    const next = async (apply: boolean) => {
      const rows = (await r.redis.xrangeBuffer(outbox, after === '-' ? '-' : `(${after}`, '+')) as [Buffer, Buffer[]][];
      if (!rows.length) return;
      after = rows[rows.length - 1]![0].toString();
      if (!apply) return;
      await inner.apply(shard, rows.map(([id, f]) => ({ id: id.toString(), entry: parseOutboxEntry(f) })).filter((e) => e.entry?.kind === 'room' && decode<RoomOutput>(e.entry.body).roomId === roomId));
    };
    inner.held.add(shard); // as attach does, without the group's own reads
    // The reader follows the room event by event.
    const send = async (ev: Sendable) => {
      const id = (await c.ask<{ event_id: string }>('room', 'room', roomId, { op: 'send', event: ev })).event_id;
      await next(true);
      return id;
    };
    await c.ask('room', 'room', roomId, { op: 'create', event });
    await next(true);
    await send({ type: 'm.room.member', sender: alice, state_key: alice, content: { membership: 'join' } });
    await send({ type: 'm.room.join_rules', sender: alice, state_key: '', content: { join_rule: 'public' } });
    await send({ type: 'm.room.member', sender: bob, state_key: bob, content: { membership: 'join' } });
    // carol too: bob's mention is then his own outcome (an own list entry), not the room's common one.
    await send({ type: 'm.room.member', sender: carol, state_key: carol, content: { membership: 'join' } });
    const first = await send({ type: 'm.room.message', sender: alice, content: { msgtype: 'm.text', body: 'bob?', 'm.mentions': { user_ids: [bob] } } });
    expect(pushed).toEqual([first]);
    // Bob answers: his own message reads as his receipt, so his count drops and his phone gets
    // the new badge; answering again with nothing new for him since sends none.
    const badgesBefore = badges;
    await send({ type: 'm.room.message', sender: bob, content: { msgtype: 'm.text', body: 'here' } });
    expect(badges).toBe(badgesBefore + 1);
    await send({ type: 'm.room.message', sender: bob, content: { msgtype: 'm.text', body: 'still here' } });
    expect(badges).toBe(badgesBefore + 1);
    expect(pushed).toEqual([first]);

    // The shard moves to another worker, whose evaluator sees bob leave; then it comes back.
    reader.detach(shard);
    await c.ask('room', 'room', roomId, { op: 'send', event: { type: 'm.room.member', sender: bob, state_key: bob, content: { membership: 'leave' } } });
    await next(false);
    inner.held.add(shard);
    const later = await send({ type: 'm.room.message', sender: alice, content: { msgtype: 'm.text', body: 'bob??', 'm.mentions': { user_ids: [bob] } } });
    expect(pushed).not.toContain(later);
    expect(pushed).toEqual([first]);
  });
});
