/**
 * The room actor's group commit on the real runtime and Redis (single and Cluster): sends that
 * wait in one room's mailbox are committed together, and the room they make is the room the same
 * sends make committed one by one — positions, prev_events, depths, state, the replayed
 * transaction answered with its first event, the forbidden send refused, the redaction of an
 * event of the same batch applied — with one dedupe record per message and nothing left pending.
 */
import { createHash } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { buildCreateEvent } from '../../actors/room';
import type { RoomConfig, RoomMessage } from '../../src/rooms/model';
import { ActorReplyError, type ActorClient } from '../../src/runtime/actor-client';
import { allActorKinds } from '../../src/runtime/kinds';
import { signingKeyFromSeed } from '../../src/protocol/crypto';
import { encodeBase64Url } from '../../src/protocol/base64';
import { shardOf } from '../../src/store/shards';
import { INBOX_GROUP, roomData } from '../../src/store/keys';
import { RoomReader } from '../../src/store/room-reader';
import type { JsonObject } from '../../src/protocol/json';
import { MODES, rig, waitFor, type Mode, type Rig } from '../runtime/harness';

const room: RoomConfig = { serverName: 'test.local', signingKey: signingKeyFromSeed('ed25519:t', new Uint8Array(32).fill(7)) };
const alice = '@alice:test.local';
const bob = '@bob:test.local';
const carol = '@carol:test.local';

function send(type: string, sender: string, content: JsonObject, extra: { stateKey?: string; txn?: string; redacts?: string } = {}): RoomMessage {
  return { op: 'send', event: { type, sender, content, ...(extra.stateKey !== undefined ? { state_key: extra.stateKey } : {}), ...(extra.redacts ? { redacts: extra.redacts } : {}) }, ...(extra.txn ? { txn: extra.txn } : {}) };
}

/** Room version 1 event ids are the server's to choose; Axon derives them from the message id (so a retried message makes the same event). */
const v1EventId = (mid: string) => `$${encodeBase64Url(createHash('sha256').update(mid).digest()).slice(0, 24)}:${room.serverName}`;

type Outcome = { pos: number } | { errcode: string };

interface Run {
  outcomes: Outcome[];
  timeline: JsonObject[];
  txns: Record<string, number>;
  commits: number;
  applied: number;
}

/**
 * One room, set up one message at a time; then a send holds the room's mailbox (at its commit)
 * while the script's messages queue behind it, and all are let go at once.
 */
async function runScript(r: Rig, batched: boolean): Promise<Run> {
  const kinds = allActorKinds(room).map((k) => (k.kind === 'room' && !batched ? { ...k, batch: undefined } : k));
  let release!: () => void;
  const gate = new Promise<void>((res) => (release = res));
  let held = false;
  const w = await r.startWorker(batched ? 'wb' : 'w1', {
    kinds,
    faultPoint: async (point, entry) => {
      if (point === 'before-commit' && entry.mid === 'gate') {
        held = true;
        await gate;
      }
    },
  });
  const c: ActorClient = await r.client();
  const { roomId, event } = buildCreateEvent(room, { roomVersion: '1', creator: alice, roomLocalpart: 'batch', ts: Date.now() });
  const ask = (body: RoomMessage, mid?: string) => c.ask<{ event_id: string; pos: number }>('room', 'room', roomId, body, { timeoutMs: 60_000, ...(mid ? { mid } : {}) });
  await ask({ op: 'create', event });
  await ask(send('m.room.member', alice, { membership: 'join' }, { stateKey: alice }));
  await ask(send('m.room.power_levels', alice, { users: { [alice]: 100 }, users_default: 0, events_default: 0, state_default: 50, redact: 50 }, { stateKey: '' }));
  await ask(send('m.room.join_rules', alice, { join_rule: 'public' }, { stateKey: '' }));
  const runner = w.runner(`room:${shardOf(roomId, r.shardCounts.room)}`)!;

  const first = ask(send('m.room.message', alice, { msgtype: 'm.text', body: 'gate' }), 'gate');
  await waitFor('the gate message to be held at its commit', () => held);
  const script: RoomMessage[] = [
    send('m.room.message', alice, { msgtype: 'm.text', body: 'one' }, { txn: 'alice|dev|t1' }),
    send('m.room.member', bob, { membership: 'join', displayname: 'Bob' }, { stateKey: bob }),
    send('m.room.message', bob, { msgtype: 'm.text', body: 'two' }),
    send('m.room.message', alice, { msgtype: 'm.text', body: 'one' }, { txn: 'alice|dev|t1' }),
    send('m.room.topic', alice, { topic: 'batched' }, { stateKey: '' }),
    send('m.room.message', carol, { msgtype: 'm.text', body: 'intruder' }),
    send('m.room.redaction', alice, { reason: 'spam' }, { redacts: v1EventId('s2') }),
    send('m.room.topic', alice, { topic: 'batched' }, { stateKey: '' }),
    ...Array.from({ length: 20 }, (_, i) => send('m.room.message', i % 2 ? alice : bob, { msgtype: 'm.text', body: `m${i}` }, { txn: `t${i}` })),
    send('m.room.message', bob, { msgtype: 'm.text', body: 'm3 again' }, { txn: 't3' }),
  ];
  const asks = script.map((body, i) =>
    ask(body, `s${i}`).then(
      (rep) => rep,
      (e: unknown) => {
        if (e instanceof ActorReplyError) return { errcode: e.errcode };
        throw e;
      },
    ),
  );
  await waitFor('the script to wait behind the gate', () => runner.bufferedCount >= script.length + 1);
  const commitsBefore = runner.commits;
  const appliedBefore = runner.applied;
  release();
  await first;
  const replies = await Promise.all(asks);
  // On one Redis the commit itself delivers the reply: the runner counts it a moment after.
  await waitFor('the runner to finish every message', () => runner.bufferedCount === 0);
  const commits = runner.commits - commitsBefore;
  const applied = runner.applied - appliedBefore;

  const reader = new RoomReader(r.redis, r.keys, r.shardCounts.room);
  const meta = (await reader.meta(roomId))!;
  const page = await reader.timeline(roomId, 'f', 0, 1000);
  expect(page.events.map((e) => e.pos)).toEqual(Array.from({ length: meta.seq }, (_, i) => i + 1));
  const posOf = new Map(page.events.map((e) => [e.eventId, e.pos]));
  const refs = (v: unknown) => (v as unknown[]).map((p) => posOf.get(String(Array.isArray(p) ? p[0] : p)) ?? `unknown ${String(p)}`);
  const timeline = page.events.map((e) => ({
    pos: e.pos,
    type: e.event.type,
    sender: e.event.sender,
    state_key: e.event.state_key ?? null,
    content: e.event.content,
    depth: e.depth,
    prev: refs(e.event.prev_events),
    auth: refs(e.event.auth_events),
    redactedBy: e.redactedBy ? posOf.get(e.redactedBy)! : null,
    stateAfter: e.stateAfter,
  })) as JsonObject[];
  const outcomes = replies.map((rep): Outcome => ('errcode' in rep ? { errcode: rep.errcode } : { pos: posOf.get(rep.event_id)! }));
  const txns = Object.fromEntries(Object.entries(await r.redis.hgetall(r.keys.shard('room', shardOf(roomId, r.shardCounts.room)).data(roomData.txns(roomId)))).map(([t, id]) => [t, posOf.get(id)!]));
  // Every message has its dedupe record: asked again under its message id, it gets its first answer.
  expect(await ask(script[2]!, 's2')).toMatchObject({ event_id: v1EventId('s2') });
  expect((await reader.meta(roomId))!.seq).toBe(meta.seq);
  const inbox = r.keys.shard('room', shardOf(roomId, r.shardCounts.room)).inbox;
  await waitFor('every inbox entry to be acknowledged', async () => Number(((await r.redis.xpending(inbox, INBOX_GROUP)) as [number])[0]) === 0);
  return { outcomes, timeline, txns, commits, applied };
}

for (const mode of MODES) {
  describe(`room group commit on the runtime (${mode} redis)`, () => {
    let r: Rig | undefined;
    afterEach(async () => {
      await r?.close();
      r = undefined;
    });

    const run = async (m: Mode, batched: boolean) => {
      r = await rig(m, { room, shards: 2 });
      try {
        return await runScript(r, batched);
      } finally {
        await r.close();
        r = undefined;
      }
    };

    it('sends waiting in one room commit together and make the room committing them one by one makes', async () => {
      const oneByOne = await run(mode, false);
      const together = await run(mode, true);
      // One commit per message without group commit; the gate and then at most a batch or two with it.
      expect(oneByOne.commits).toBe(oneByOne.applied);
      expect(together.applied).toBe(oneByOne.applied);
      expect(together.commits).toBeLessThanOrEqual(3);
      expect(together.outcomes).toEqual(oneByOne.outcomes);
      expect(together.timeline).toEqual(oneByOne.timeline);
      expect(together.txns).toEqual(oneByOne.txns);

      const o = together.outcomes;
      // The replayed transactions got their first events; the intruder was refused.
      expect(o[3]).toEqual(o[0]);
      expect(o[28]).toEqual(o[8 + 3]);
      expect(o[5]).toEqual({ errcode: 'M_FORBIDDEN' });
      // The same topic again is the batch's own topic event.
      expect(o[7]).toEqual(o[4]);
      // Events chain one after the other, depth by depth, from the gate message on.
      const tl = together.timeline;
      const gatePos = 5;
      for (const e of tl.filter((e) => (e.pos as number) > gatePos)) {
        expect(e.prev).toEqual([(e.pos as number) - 1]);
        expect(e.depth).toBe(e.pos);
      }
      // The redaction (of bob's "two", sent in the same batch) took effect.
      const two = tl.find((e) => (e.pos as number) === (o[2] as { pos: number }).pos)!;
      expect(two.redactedBy).toBe((o[6] as { pos: number }).pos);
      expect(two.content).toEqual({});
      // 4 set-up + gate + 25 new events (29 messages: 2 replays, 1 refusal, 1 unchanged state).
      expect(tl).toHaveLength(30);
    });
  });
}
