/**
 * The room actor's group commit, as pure functions: a batch of sends decided one after the other
 * with each shell reading through the batch's pending writes (what the runtime does in
 * applyBatch) gives exactly the decisions — events, ids, positions, prev_events, depths, writes,
 * outputs, replies — that committing the same messages one by one gives. No Redis: the store the
 * shells read is the map of what earlier commits wrote.
 */
import { describe, expect, it } from 'vitest';
import RedisMock from 'ioredis-mock';
import { buildCreateEvent, emptyRoom, overlayPending, pendingValue, prefetchSendTxns, prepareSend, roomActor, roomBatchAccepts, roomStoreView, ROOM_BATCH_MAX, type RoomStoreView } from '../../actors/room';
import type { RoomConfig, RoomMessage, RoomOutput, RoomState, StoredEvent } from '../../src/rooms/model';
import { ActorRejection, type ActorMessage, type ShellContext, type StoreWrite } from '../../src/runtime/actor';
import { signingKeyFromSeed } from '../../src/protocol/crypto';
import { decode } from '../../src/store/codec';
import { KeySpace, roomData } from '../../src/store/keys';
import type { RedisClient } from '../../src/store/redis';
import type { JsonObject } from '../../src/protocol/json';

const cfg: RoomConfig = { serverName: 'test.local', signingKey: signingKeyFromSeed('ed25519:t', new Uint8Array(32).fill(5)) };
const actor = roomActor(cfg);
const alice = '@alice:test.local';
const bob = '@bob:test.local';
const carol = '@carol:test.local';

/** The strings and hashes earlier commits wrote (what a send's shell reads back). */
class Store implements RoomStoreView {
  strings = new Map<string, Buffer>();
  hashes = new Map<string, Map<string, string>>();
  apply(writes: readonly StoreWrite[]): void {
    for (const w of writes) {
      if (w.cmd === 'SET') this.strings.set(w.key, Buffer.from(w.args[0] as string | Buffer));
      else if (w.cmd === 'DEL') this.strings.delete(w.key);
      else if (w.cmd === 'HSET') {
        const h = this.hashes.get(w.key) ?? new Map<string, string>();
        for (let i = 0; i < w.args.length; i += 2) h.set(String(w.args[i]), String(w.args[i + 1]));
        this.hashes.set(w.key, h);
      } else if (w.cmd === 'HDEL') for (const f of w.args) this.hashes.get(w.key)?.delete(String(f));
    }
  }
  async get(name: string): Promise<Buffer | null> {
    return this.strings.get(name) ?? null;
  }
  async hget(name: string, field: string): Promise<string | null> {
    return this.hashes.get(name)?.get(field) ?? null;
  }
}

type Outcome = { reply?: unknown; rejected?: string };

/** A room with its store; `run` commits one message, `runBatch` decides several and commits them together. */
class Room {
  state: RoomState;
  store = new Store();
  outputs: RoomOutput[] = [];
  writes: StoreWrite[] = [];
  constructor(readonly roomId: string) {
    this.state = emptyRoom(roomId);
  }
  private async decideOne(msg: ActorMessage<RoomMessage>, view: RoomStoreView): Promise<{ outcome: Outcome; writes: StoreWrite[] }> {
    try {
      const prepared = msg.body.op === 'send' ? await prepareSend(view, this.state, msg.body) : {};
      const d = actor.decide(this.state, msg, prepared);
      this.state = d.state;
      this.outputs.push(...((d.outputs ?? []) as RoomOutput[]));
      const writes = [...(d.writes ?? []), ...(d.derivedWrites ?? [])];
      this.writes.push(...writes);
      return { outcome: { reply: d.reply }, writes };
    } catch (e) {
      if (!(e instanceof ActorRejection)) throw e;
      return { outcome: { rejected: e.errcode }, writes: [] };
    }
  }
  async run(msg: ActorMessage<RoomMessage>): Promise<Outcome> {
    const { outcome, writes } = await this.decideOne(msg, this.store);
    this.store.apply(writes);
    return outcome;
  }
  async runBatch(msgs: ActorMessage<RoomMessage>[]): Promise<Outcome[]> {
    const pending: StoreWrite[] = [];
    const out: Outcome[] = [];
    for (const msg of msgs) {
      const { outcome, writes } = await this.decideOne(msg, overlayPending(pending, this.store));
      pending.push(...writes);
      out.push(outcome);
    }
    this.store.apply(pending);
    return out;
  }
  event(eventId: string): StoredEvent {
    return decode<StoredEvent>(this.store.strings.get(roomData.event(eventId))!);
  }
}

let n = 0;
function msg(roomId: string, body: RoomMessage, mid = `m${++n}`, at = 1_700_000_000_000 + n): ActorMessage<RoomMessage> {
  return { mid, actorId: roomId, body, enqueuedAt: at };
}

function send(type: string, sender: string, content: JsonObject, extra: { stateKey?: string; txn?: string; redacts?: string } = {}): RoomMessage {
  return { op: 'send', event: { type, sender, content, ...(extra.stateKey !== undefined ? { state_key: extra.stateKey } : {}), ...(extra.redacts ? { redacts: extra.redacts } : {}) }, ...(extra.txn ? { txn: extra.txn } : {}) };
}

async function newRoom(version: string): Promise<Room> {
  const { roomId, event } = buildCreateEvent(cfg, { roomVersion: version, creator: alice, roomLocalpart: `batch${version}`, ts: 1_700_000_000_000 });
  const room = new Room(roomId);
  const setup: [RoomMessage, string][] = [
    [{ op: 'create', event }, 'create'],
    [send('m.room.member', alice, { membership: 'join' }, { stateKey: alice }), 'join'],
    [send('m.room.power_levels', alice, { users: version === '12' ? {} : { [alice]: 100 }, users_default: 0, events_default: 0, state_default: 50, redact: 50 }, { stateKey: '' }), 'pl'],
    [send('m.room.join_rules', alice, { join_rule: 'public' }, { stateKey: '' }), 'jr'],
  ];
  for (const [body, mid] of setup) {
    const o = await room.run(msg(roomId, body, mid, 1_700_000_000_000));
    expect(o.rejected).toBeUndefined();
  }
  return room;
}

/** The messages of one batch: messages and state events interleaved, a replayed transaction, a forbidden send, a redaction of an event of the batch. */
function script(roomId: string, redactTarget: string | null): ActorMessage<RoomMessage>[] {
  const t = 1_700_000_100_000;
  const bodies: RoomMessage[] = [
    send('m.room.message', alice, { msgtype: 'm.text', body: 'one' }, { txn: 'alice|dev|t1' }),
    send('m.room.member', bob, { membership: 'join', displayname: 'Bob' }, { stateKey: bob }),
    send('m.room.message', bob, { msgtype: 'm.text', body: 'two' }),
    // The same client transaction again, inside the batch: the first event's id, nothing new.
    send('m.room.message', alice, { msgtype: 'm.text', body: 'one' }, { txn: 'alice|dev|t1' }),
    send('m.room.topic', alice, { topic: 'batched' }, { stateKey: '' }),
    // Not in the room: refused, and the batch goes on.
    send('m.room.message', carol, { msgtype: 'm.text', body: 'intruder' }),
    send('m.room.redaction', alice, { reason: 'spam' }, { redacts: redactTarget ?? '$unknown:test.local' }),
    // The same state again: answered with the state event, nothing new.
    send('m.room.topic', alice, { topic: 'batched' }, { stateKey: '' }),
    send('m.room.message', bob, { msgtype: 'm.text', body: 'three' }, { txn: 'bob|dev|t1' }),
    { op: 'alias_index', alias: '#batch:test.local', present: true },
    send('m.room.message', alice, { msgtype: 'm.text', body: 'four' }),
  ];
  return bodies.map((body, i) => msg(roomId, body, `s${i}`, t + i));
}

describe.each(['1', '10', '12'])('room group commit, room version %s', (version) => {
  it('a batch decided over pending writes equals the same messages committed one by one', async () => {
    // Learn the id bob's "two" gets (decisions are deterministic), so the batch can redact it.
    const probe = await newRoom(version);
    const dry = script(probe.roomId, null);
    for (const m of dry.slice(0, 3)) await probe.run(m);
    const target = (probe.outputs.at(-1) as RoomOutput).eventId;

    const oneByOne = await newRoom(version);
    const batched = await newRoom(version);
    const msgs = script(oneByOne.roomId, target);
    const alone: Outcome[] = [];
    for (const m of msgs) alone.push(await oneByOne.run(m));
    const together = await batched.runBatch(msgs);

    expect(together).toEqual(alone);
    expect(batched.outputs).toEqual(oneByOne.outputs);
    expect(batched.writes).toEqual(oneByOne.writes);
    expect(batched.state.seq).toBe(oneByOne.state.seq);
    expect(batched.state.extremities).toEqual(oneByOne.state.extremities);
    expect(batched.state.current.toMap()).toEqual(oneByOne.state.current.toMap());
    expect([...batched.store.strings.keys()].sort()).toEqual([...oneByOne.store.strings.keys()].sort());

    // What the batch made: 7 new events (one, join, two, topic, redaction, three, four), in order.
    const outs = batched.outputs.slice(4);
    expect(outs.map((o) => o.pos)).toEqual([5, 6, 7, 8, 9, 10, 11]);
    expect(outs.map((o) => o.event.type)).toEqual(['m.room.message', 'm.room.member', 'm.room.message', 'm.room.topic', 'm.room.redaction', 'm.room.message', 'm.room.message']);
    // Each event's prev_events is the one before it; depths climb by one.
    const prevOf = (o: RoomOutput) => (o.event.prev_events as unknown[]).map((p) => (Array.isArray(p) ? p[0] : p));
    for (let i = 1; i < outs.length; i++) {
      expect(prevOf(outs[i]!)).toEqual([outs[i - 1]!.eventId]);
      expect(outs[i]!.event.depth).toBe((outs[i - 1]!.event.depth as number) + 1);
    }
    // The replayed transaction got the first event, and only one event carries it.
    expect((together[3]!.reply as { event_id: string }).event_id).toBe((together[0]!.reply as { event_id: string }).event_id);
    expect(batched.store.hashes.get(roomData.txns(batched.roomId))?.get('alice|dev|t1')).toBe(outs[0]!.eventId);
    expect(outs.filter((o) => (o.event.content as JsonObject).body === 'one')).toHaveLength(1);
    expect(together[5]!.rejected).toBe('M_FORBIDDEN');
    // The same topic again: the topic event of the batch.
    expect((together[7]!.reply as { event_id: string }).event_id).toBe(outs[3]!.eventId);
    // The redaction found its target among the batch's own writes and redacted it.
    expect(outs[4]!.redacted).toBe(target);
    expect(batched.event(target).rb).toBe(outs[4]!.eventId);
    expect((JSON.parse(batched.event(target).j) as JsonObject).content).toEqual({});
    // Bob's message after his join is sent with him joined; the topic is in the state after it.
    expect(batched.state.current.get('m.room.topic\u0000')).toBe(outs[3]!.eventId);
  });

  it('without the pending writes the replayed transaction would make a second event (what the overlay prevents)', async () => {
    const room = await newRoom(version);
    const pending: StoreWrite[] = [];
    const blind = room.store; // the store as before the batch, ignoring the batch's writes
    const first = msg(room.roomId, send('m.room.message', alice, { msgtype: 'm.text', body: 'x' }, { txn: 'tx' }), 'b1');
    const again = msg(room.roomId, send('m.room.message', alice, { msgtype: 'm.text', body: 'x' }, { txn: 'tx' }), 'b2');
    const d1 = actor.decide(room.state, first, await prepareSend(blind, room.state, first.body as Extract<RoomMessage, { op: 'send' }>));
    pending.push(...(d1.writes ?? []));
    const blindPrepared = await prepareSend(blind, d1.state, again.body as Extract<RoomMessage, { op: 'send' }>);
    expect(blindPrepared.txnEventId).toBeUndefined();
    const seen = await prepareSend(overlayPending(pending, blind), d1.state, again.body as Extract<RoomMessage, { op: 'send' }>);
    expect(seen.txnEventId).toBe((d1.reply as { event_id: string }).event_id);
    const d2 = actor.decide(d1.state, again, seen);
    expect(d2.outputs ?? []).toHaveLength(0);
    expect(d2.state.seq).toBe(d1.state.seq);
  });
});

describe('room group commit: what may share a batch, and reading pending writes', () => {
  it('local sends and bookkeeping ops share batches; the create, federation input and purges do not', () => {
    expect(ROOM_BATCH_MAX).toBeGreaterThan(1);
    for (const op of ['send', 'set_directory_visibility', 'alias_index', 'claim_upgrade', 'release_upgrade']) expect(roomBatchAccepts({ op } as RoomMessage)).toBe(true);
    for (const op of ['create', 'ingest', 'backfill', 'complete_partial_state', 'purge_begin', 'purge']) expect(roomBatchAccepts({ op } as RoomMessage)).toBe(false);
    expect(actor.batch?.accepts(send('m.room.message', alice, { body: 'x' }))).toBe(true);
  });

  it('pendingValue: the last write of a key or hash field wins; deletes read as null; untouched reads as undefined', () => {
    const pending: StoreWrite[] = [
      { cmd: 'SET', key: 'a', args: ['1'] },
      { cmd: 'HSET', key: 'h', args: ['f', 'x', 'g', 'y'] },
      { cmd: 'SET', key: 'a', args: [Buffer.from('2')] },
      { cmd: 'HSET', key: 'h', args: ['f', 'z'] },
      { cmd: 'HDEL', key: 'h', args: ['g'] },
      { cmd: 'SET', key: 'b', args: ['1'] },
      { cmd: 'DEL', key: 'b', args: [] },
    ];
    expect(pendingValue(pending, 'a')?.toString()).toBe('2');
    expect(pendingValue(pending, 'h', 'f')).toBe('z');
    expect(pendingValue(pending, 'h', 'g')).toBeNull();
    expect(pendingValue(pending, 'h', 'nope')).toBeUndefined();
    expect(pendingValue(pending, 'b')).toBeNull();
    expect(pendingValue(pending, 'c')).toBeUndefined();
    expect(pendingValue(undefined, 'a')).toBeUndefined();
  });

  it("a batch's transaction ids are read in one HMGET before its shells; the shells then ask Redis nothing, and the batch's own writes still come first", async () => {
    const redis = new RedisMock() as unknown as RedisClient;
    const keys = new KeySpace('t:').shard('room', 3);
    const state = emptyRoom('!r:test.local');
    const txns = roomData.txns(state.roomId);
    await redis.hset(keys.data(txns), 'known', '$seen');
    const msgs = ['known', 'fresh', 'fresh', 'later'].map((txn, i): ActorMessage<RoomMessage> => ({ mid: `m${i}`, actorId: state.roomId, body: send('m.room.message', alice, { body: txn }, { txn }), enqueuedAt: 0 }));
    const calls: string[] = [];
    const counted = new Proxy(redis, {
      get(target, prop, receiver) {
        const v = Reflect.get(target, prop, receiver);
        return typeof v === 'function' && ['hget', 'hmget', 'get', 'getBuffer'].includes(String(prop)) ? (...a: unknown[]) => (calls.push(String(prop)), v.apply(target, a)) : v;
      },
    });
    const ctx: ShellContext = { redis: counted, keys, family: 'room', shard: 3 };
    const prefetched = await prefetchSendTxns(ctx, state, msgs);
    expect(calls).toEqual(['hmget']);
    // The second 'fresh' sees the first's write (pending), not the store's null read ahead.
    const pending: StoreWrite[] = [{ cmd: 'HSET', key: txns, args: ['fresh', '$first'] }];
    const view = overlayPending(pending, roomStoreView({ ...ctx, pending, prefetched }));
    expect(await view.hget(txns, 'known')).toBe('$seen');
    expect(await view.hget(txns, 'fresh')).toBe('$first');
    expect(await view.hget(txns, 'later')).toBeNull();
    expect(calls).toEqual(['hmget']);
    // Prepared through the view, a batch's send finds a repeated transaction id as one by one.
    expect((await prepareSend(view, state, msgs[0]!.body as Extract<RoomMessage, { op: 'send' }>)).txnEventId).toBe('$seen');
    expect((await prepareSend(view, state, msgs[3]!.body as Extract<RoomMessage, { op: 'send' }>)).txnEventId).toBeUndefined();
    // A field not read ahead still goes to the store.
    expect(await view.hget(txns, 'other')).toBeNull();
    expect(calls).toEqual(['hmget', 'hget']);
    // A batch without transaction ids reads nothing.
    calls.length = 0;
    expect((await prefetchSendTxns(ctx, state, [{ mid: 'x', actorId: state.roomId, body: { op: 'set_directory_visibility', visibility: 'public' } as RoomMessage, enqueuedAt: 0 }])).size).toBe(0);
    expect(calls).toEqual([]);
  });
});
