/**
 * The room actor on the real runtime and Redis (single and Cluster): rooms created and used
 * through asks, read back with RoomReader; forbidden events leave nothing behind; redactions;
 * history visibility; and a replay of a room's recorded inbox into a fresh store giving the same
 * room.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { buildCreateEvent } from '../../actors/room';
import type { RoomConfig, RoomReply } from '../../src/rooms/model';
import { ActorReplyError, type ActorClient } from '../../src/runtime/actor-client';
import { packInboxEntry, parseInboxEntry } from '../../src/runtime/envelope';
import { signingKeyFromSeed } from '../../src/protocol/crypto';
import { shardOf } from '../../src/store/shards';
import { RoomReader } from '../../src/store/room-reader';
import type { JsonObject } from '../../src/protocol/json';
import { MODES, rig, waitFor, type Rig } from '../runtime/harness';

const room: RoomConfig = { serverName: 'test.local', signingKey: signingKeyFromSeed('ed25519:t', new Uint8Array(32).fill(9)) };
const alice = '@alice:test.local';
const bob = '@bob:test.local';
const carol = '@carol:test.local';

async function createRoom(c: ActorClient, version: string, localpart: string): Promise<string> {
  const { roomId, event } = buildCreateEvent(room, { roomVersion: version, creator: alice, roomLocalpart: localpart, ts: Date.now() });
  await c.ask('room', 'room', roomId, { op: 'create', event });
  return roomId;
}

function send(c: ActorClient, roomId: string, sender: string, type: string, content: JsonObject, stateKey?: string, redacts?: string) {
  return c.ask<Extract<RoomReply, { event_id: string }>>('room', 'room', roomId, { op: 'send', event: { type, sender, content, ...(stateKey !== undefined ? { state_key: stateKey } : {}), ...(redacts ? { redacts } : {}) } });
}

async function setUp(c: ActorClient, version: string, localpart: string, history = 'shared'): Promise<string> {
  const roomId = await createRoom(c, version, localpart);
  await send(c, roomId, alice, 'm.room.member', { membership: 'join' }, alice);
  await send(c, roomId, alice, 'm.room.power_levels', { users: version === '12' ? {} : { [alice]: 100 }, users_default: 0 }, '');
  await send(c, roomId, alice, 'm.room.join_rules', { join_rule: 'public' }, '');
  await send(c, roomId, alice, 'm.room.history_visibility', { history_visibility: history }, '');
  return roomId;
}

for (const mode of MODES) {
  describe(`room actor on the runtime (${mode} redis)`, () => {
    let r: Rig;
    afterEach(async () => {
      await r?.close();
    });

    for (const version of ['10', '12']) {
      it(`room v${version}: events persist with state, members, timeline pages and snapshots`, async () => {
        r = await rig(mode, { room });
        await r.startWorker('w1');
        const c = await r.client();
        const reader = new RoomReader(r.redis, r.keys, r.shardCounts.room);
        const roomId = await setUp(c, version, 'persist');
        await send(c, roomId, bob, 'm.room.member', { membership: 'join' }, bob);
        const firstMsg = await send(c, roomId, bob, 'm.room.message', { msgtype: 'm.text', body: 'm0' });
        for (let i = 1; i < 30; i++) await send(c, roomId, i % 2 ? alice : bob, 'm.room.message', { msgtype: 'm.text', body: `m${i}` });
        const topic = await send(c, roomId, alice, 'm.room.topic', { topic: 'late topic' }, '');

        const meta = (await reader.meta(roomId))!;
        expect(meta.version).toBe(version);
        expect(meta.seq).toBe(37);
        expect(meta.extremities).toEqual([topic.event_id]);
        expect([...(await reader.members(roomId, 'join')).keys()].sort()).toEqual([alice, bob]);
        const state = await reader.currentState(roomId);
        expect(state.map((e) => e.event.type).sort()).toEqual(['m.room.create', 'm.room.history_visibility', 'm.room.join_rules', 'm.room.member', 'm.room.member', 'm.room.power_levels', 'm.room.topic']);
        expect((await reader.currentState(roomId, { type: 'm.room.member' })).length).toBe(2);
        expect((await reader.currentState(roomId, { type: 'm.room.topic', stateKey: '' }))[0]!.eventId).toBe(topic.event_id);

        // Paging backwards 10 at a time visits every event once, newest first.
        const seen: number[] = [];
        let from: number | null = null;
        for (;;) {
          const page = await reader.timeline(roomId, 'b', from, 10);
          seen.push(...page.events.map((e) => e.pos));
          if (page.next === null) break;
          from = page.next;
        }
        expect(seen).toEqual(Array.from({ length: 37 }, (_, i) => 37 - i));
        const forward = await reader.timeline(roomId, 'f', 30, 100);
        expect(forward.events.map((e) => e.pos)).toEqual([31, 32, 33, 34, 35, 36, 37]);
        expect(forward.next).toBeNull();

        // State at an event: the topic came later.
        const at = (await reader.stateAt(roomId, firstMsg.event_id))!;
        expect(at.has('m.room.topic\u0000')).toBe(false);
        expect(at.get(`m.room.member\u0000${bob}`)).toBeDefined();
        expect((await reader.stateAt(roomId, topic.event_id, 'after'))!.get('m.room.topic\u0000')).toBe(topic.event_id);
        const ctx = (await reader.context(roomId, firstMsg.event_id, 2))!;
        expect(ctx.before.map((e) => e.pos)).toEqual([firstMsg.pos - 1, firstMsg.pos - 2]);
        expect(ctx.after.map((e) => e.pos)).toEqual([firstMsg.pos + 1, firstMsg.pos + 2]);

        // Snapshots: one per state event, none per message.
        let snapshots = 0;
        const shard = r.keys.shard('room', shardOf(roomId, r.shardCounts.room));
        for (let id = 1; id <= meta.snapSeq; id++) if (await r.redis.exists(shard.data(`room:${roomId}:snap:${id}`))) snapshots++;
        expect(snapshots).toBe(7);
      });
    }

    it('a big room with churn re-bases long snapshot chains on their root instead of writing the state in full, and every state reads back right', async () => {
      r = await rig(mode, { room });
      await r.startWorker('w1');
      const c = await r.client();
      const reader = new RoomReader(r.redis, r.keys, r.shardCounts.room);
      const roomId = await setUp(c, '10', 'big');
      // 700 members join (asks in flight together: the actor takes them one by one), then 300
      // changes of display name and leaves; the expected state is tracked alongside.
      const user = (i: number) => `@m${i}:test.local`;
      const joins: unknown[] = [];
      for (let i = 0; i < 700; i += 50) {
        joins.push(...(await Promise.all(Array.from({ length: 50 }, (_, j) => c.ask('room', 'room', roomId, { op: 'send', event: { type: 'm.room.member', sender: user(i + j), state_key: user(i + j), content: { membership: 'join' } } }, { timeoutMs: 60_000 })))));
      }
      const expected = new Map<string, string>(await reader.currentStateIds(roomId));
      const samples: { id: string; state: Map<string, string> }[] = [];
      for (let k = 0; k < 300; k++) {
        const u = user((k * 37) % 700);
        const content: JsonObject = k % 5 === 0 ? { membership: 'leave' } : { membership: 'join', displayname: `d${k}` };
        const sent = await send(c, roomId, u, 'm.room.member', content, u);
        expected.set(`m.room.member\u0000${u}`, sent.event_id);
        if (k % 23 === 0) samples.push({ id: sent.event_id, state: new Map(expected) });
      }
      expect(joins).toHaveLength(700);
      const meta = (await reader.meta(roomId))!;
      // About 1,000 state events: with a full state every 64 there would be ~16 full snapshots.
      let full = 0;
      let rebased = 0;
      const sk = r.keys.shard('room', shardOf(roomId, r.shardCounts.room));
      const { decode } = await import('../../src/store/codec');
      for (let id = 1; id <= meta.snapSeq; id++) {
        const snap = decode<{ p: number | null; n: number }>((await r.redis.getBuffer(sk.data(`room:${roomId}:snap:${id}`)))!);
        if (snap.p === null) full++;
        else if (snap.n === 1 && snap.p !== id - 1) rebased++;
        expect(snap.n).toBeLessThanOrEqual(64);
      }
      // The re-basing limit is an eighth of the state (here ~90 entries) once that exceeds the
      // chain bound: this room is just big enough for some chains to be re-based instead of
      // written in full (the old rule wrote one full state per 65 state events).
      expect(meta.snapSeq).toBeGreaterThan(1000);
      expect(rebased).toBeGreaterThanOrEqual(2);
      expect(full + rebased).toBeGreaterThanOrEqual(Math.floor(meta.snapSeq / 65));
      expect(full).toBeLessThan(Math.floor(meta.snapSeq / 65));
      const fresh = new RoomReader(r.redis, r.keys, r.shardCounts.room);
      expect(Object.fromEntries(await fresh.snapshot(roomId, meta.snap))).toEqual(Object.fromEntries(expected));
      for (const s of samples) expect(Object.fromEntries((await fresh.stateAt(roomId, s.id, 'after'))!)).toEqual(Object.fromEntries(s.state));
      expect(Object.fromEntries(await fresh.currentStateIds(roomId))).toEqual(Object.fromEntries(expected));
    }, 120_000);

    it('refuses forbidden events with M_FORBIDDEN and writes nothing', async () => {
      r = await rig(mode, { room });
      await r.startWorker('w1');
      const c = await r.client();
      const reader = new RoomReader(r.redis, r.keys, r.shardCounts.room);
      const roomId = await setUp(c, '10', 'forbidden');
      const before = (await reader.meta(roomId))!;
      const err = await send(c, roomId, carol, 'm.room.message', { body: 'not joined' }).catch((e) => e);
      expect(err).toBeInstanceOf(ActorReplyError);
      expect((err as ActorReplyError).errcode).toBe('M_FORBIDDEN');
      expect((err as ActorReplyError).status).toBe(403);
      await send(c, roomId, carol, 'm.room.member', { membership: 'join' }, carol);
      const pl = await send(c, roomId, carol, 'm.room.power_levels', { users: { [carol]: 100 } }, '').catch((e) => e);
      expect((pl as ActorReplyError).errcode).toBe('M_FORBIDDEN');
      const after = (await reader.meta(roomId))!;
      expect(after.seq).toBe(before.seq + 1); // only carol's join
      expect((await reader.timeline(roomId, 'b', null, 100)).events).toHaveLength(after.seq);
    });

    it('redacts events and serves them redacted', async () => {
      r = await rig(mode, { room });
      await r.startWorker('w1');
      const c = await r.client();
      const reader = new RoomReader(r.redis, r.keys, r.shardCounts.room);
      const roomId = await setUp(c, '11', 'redact');
      await send(c, roomId, bob, 'm.room.member', { membership: 'join' }, bob);
      const msg = await send(c, roomId, bob, 'm.room.message', { msgtype: 'm.text', body: 'regret' });
      const red = await send(c, roomId, bob, 'm.room.redaction', { reason: 'oops' }, undefined, msg.event_id);
      const stored = (await reader.event(roomId, msg.event_id))!;
      expect(stored.redactedBy).toBe(red.event_id);
      expect(stored.event.content).toEqual({});
      expect(((await reader.event(roomId, red.event_id))!.event.content as JsonObject).redacts).toBe(msg.event_id);
    });

    it('applies history visibility', async () => {
      r = await rig(mode, { room });
      await r.startWorker('w1');
      const c = await r.client();
      const reader = new RoomReader(r.redis, r.keys, r.shardCounts.room);
      const joinedOnly = await setUp(c, '10', 'hvjoined', 'joined');
      const early = await send(c, joinedOnly, alice, 'm.room.message', { body: 'before carol' });
      await send(c, joinedOnly, carol, 'm.room.member', { membership: 'join' }, carol);
      const late = await send(c, joinedOnly, alice, 'm.room.message', { body: 'after carol' });
      expect(await reader.canSee(joinedOnly, carol, early.event_id)).toBe(false);
      expect(await reader.canSee(joinedOnly, carol, late.event_id)).toBe(true);

      const shared = await setUp(c, '10', 'hvshared', 'shared');
      const old = await send(c, shared, alice, 'm.room.message', { body: 'old news' });
      expect(await reader.canSee(shared, carol, old.event_id)).toBe(false);
      await send(c, shared, carol, 'm.room.member', { membership: 'join' }, carol);
      expect(await reader.canSee(shared, carol, old.event_id)).toBe(true);
      await send(c, shared, carol, 'm.room.member', { membership: 'leave' }, carol);
      expect(await reader.canSee(shared, carol, old.event_id)).toBe(true); // joined after it, then left

      const world = await setUp(c, '10', 'hvworld', 'world_readable');
      const pub = await send(c, world, alice, 'm.room.message', { body: 'anyone' });
      expect(await reader.canSee(world, '@stranger:elsewhere', pub.event_id)).toBe(true);

      // The promise-free answers from the visibility cache (what a woken /sync answer asks first)
      // agree with canSee and membershipAfter wherever they answer, and answer once those did.
      for (const [roomId, ids] of [
        [joinedOnly, [early.event_id, late.event_id]],
        [shared, [old.event_id]],
        [world, [pub.event_id]],
      ] as const) {
        for (const id of ids) {
          const e = (await reader.event(roomId, id))!;
          for (const user of [carol, alice, '@stranger:elsewhere']) {
            const seen = await reader.canSee(roomId, user, e);
            const cached = reader.canSeeCached(roomId, user, e);
            if (cached !== undefined) expect(cached).toBe(seen);
            const membership = await reader.membershipAfter(roomId, e, user);
            expect(reader.membershipAfterCached(roomId, e, user)).toBe(membership);
          }
        }
      }
      const lateEvent = (await reader.event(joinedOnly, late.event_id))!;
      expect(reader.canSeeCached(joinedOnly, carol, lateEvent)).toBe(true);
      expect(reader.canSeeCached(joinedOnly, carol, (await reader.event(joinedOnly, early.event_id))!)).toBe(false);
      expect(reader.canSeeCached(joinedOnly, '@never-asked:x', lateEvent)).toBeUndefined();
    });

    it("replaying a room's recorded inputs in a fresh store gives the same room", async () => {
      r = await rig(mode, { room });
      await r.startWorker('w1');
      const c = await r.client();
      const roomId = await setUp(c, '10', 'replay');
      // A random history: joins, leaves, topics, messages, power changes — some forbidden.
      let seed = 42;
      const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) % n);
      const users = [alice, bob, carol, '@dave:test.local'];
      for (let i = 0; i < 120; i++) {
        const u = users[rand(users.length)]!;
        const op = rand(6);
        const body: { type: string; content: JsonObject; stateKey?: string } =
          op === 0 ? { type: 'm.room.member', content: { membership: 'join' }, stateKey: u }
          : op === 1 ? { type: 'm.room.member', content: { membership: 'leave' }, stateKey: u }
          : op === 2 ? { type: 'm.room.topic', content: { topic: `t${i}` }, stateKey: '' }
          : op === 3 ? { type: 'm.room.power_levels', content: { users: { [alice]: 100, [u]: 50 + rand(60) } }, stateKey: '' }
          : { type: 'm.room.message', content: { body: `m${i}` } };
        await send(c, roomId, u, body.type, body.content, body.stateKey).catch((e) => {
          if (!(e instanceof ActorReplyError) || e.errcode !== 'M_FORBIDDEN') throw e;
        });
      }
      const reader = new RoomReader(r.redis, r.keys, r.shardCounts.room);
      const original = { state: await reader.currentStateIds(roomId), timeline: (await reader.timeline(roomId, 'f', null, 1000)).events.map((e) => e.eventId), meta: await reader.meta(roomId) };
      expect(original.timeline.length).toBeGreaterThan(40);

      // Record the room's inbox as it was delivered, and replay it into a fresh key space.
      const inbox = r.keys.shard('room', shardOf(roomId, r.shardCounts.room)).inbox;
      const entries = (await r.redis.xrangeBuffer(inbox, '-', '+')) as [Buffer, Buffer[]][];
      const fresh = await rig(mode, { room });
      try {
        await fresh.startWorker('w2');
        const freshInbox = fresh.keys.shard('room', shardOf(roomId, fresh.shardCounts.room)).inbox;
        for (const [id, fields] of entries) {
          // Replies go nowhere: the entry again without its reply stream.
          const e = parseInboxEntry(id.toString(), fields)!;
          await fresh.redis.xadd(freshInbox, '*', 'm', packInboxEntry(e.mid, e.actorId, e.kind, null, e.enqueuedAt, e.body));
        }
        const freshReader = new RoomReader(fresh.redis, fresh.keys, fresh.shardCounts.room);
        await waitFor('the replay to finish', async () => (await freshReader.meta(roomId))?.seq === original.meta!.seq, 30_000, 100);
        expect(await freshReader.currentStateIds(roomId)).toEqual(original.state);
        expect((await freshReader.timeline(roomId, 'f', null, 1000)).events.map((e) => e.eventId)).toEqual(original.timeline);
        expect(await freshReader.meta(roomId)).toEqual(original.meta);
      } finally {
        await fresh.close();
      }
    });
  });
}
