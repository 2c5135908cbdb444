/** The room actor's decide, as a pure state machine: no Redis. */
import { describe, expect, it } from 'vitest';
import { buildCreateEvent, chooseSnapshot, decideRoom, emptyRoom } from '../../actors/room';
import { UPGRADE_CLAIM_MS, type RoomConfig, type RoomMessage, type RoomReply, type RoomOutput, type RoomPrepared, type RoomState, type StoredEvent, type StoredSnapshot } from '../../src/rooms/model';
import { ActorRejection, type ActorMessage, type Decision } from '../../src/runtime/actor';
import { signingKeyFromSeed } from '../../src/protocol/crypto';
import { computeEventId, verifyEventSignature, checkContentHash } from '../../src/protocol/event-hashing';
import { OwnEventSigner } from '../../src/rooms/own-signatures';
import { requireRoomVersion } from '../../src/protocol/room-versions';
import { decode } from '../../src/store/codec';
import { PARTIAL_STATE_ROOMS, recencyIndexData, roomData } from '../../src/store/keys';
import type { JsonObject } from '../../src/protocol/json';

const cfg: RoomConfig = { serverName: 'test.local', signingKey: signingKeyFromSeed('ed25519:t', new Uint8Array(32).fill(3)) };

/** A tiny room driver: applies decisions in order and keeps the writes, as the runtime would. */
class Room {
  state: RoomState;
  writes = new Map<string, unknown[]>();
  outputs: RoomOutput[] = [];
  n = 0;
  constructor(readonly roomId: string) {
    this.state = emptyRoom(roomId);
  }
  private msg(body: RoomMessage): ActorMessage<RoomMessage> {
    return { mid: `m${++this.n}`, actorId: this.roomId, body, enqueuedAt: 1_700_000_000_000 + this.n };
  }
  run(body: RoomMessage, prepared: RoomPrepared = {}) {
    const d = decideRoom(cfg, this.state, this.msg(body), prepared) as Decision<RoomState, Extract<RoomReply, { event_id: string }>>;
    this.state = d.state;
    for (const w of d.writes ?? []) this.writes.set(`${w.cmd} ${w.key} ${String(w.args[0]).slice(0, 80)}`, w.args);
    this.outputs.push(...((d.outputs ?? []) as RoomOutput[]));
    return d.reply!;
  }
  send(sender: string, type: string, content: JsonObject, stateKey?: string, extra: Partial<{ redacts: string; txn: string }> = {}, prepared: RoomPrepared = {}) {
    return this.run({ op: 'send', event: { type, sender, content, ...(stateKey !== undefined ? { state_key: stateKey } : {}), ...(extra.redacts ? { redacts: extra.redacts } : {}) }, ...(extra.txn ? { txn: extra.txn } : {}) }, prepared);
  }
  stored(eventId: string): StoredEvent {
    const w = [...this.writes.entries()].filter(([k]) => k.startsWith(`SET ${roomData.event(eventId)} `)).pop();
    return decode<StoredEvent>(w![1][0] as Buffer);
  }
  snapshot(id: number): StoredSnapshot {
    const w = [...this.writes.entries()].find(([k]) => k.startsWith(`SET ${roomData.snapshot(this.roomId, id)} `));
    return decode<StoredSnapshot>(w![1][0] as Buffer);
  }
  event(eventId: string): JsonObject {
    return JSON.parse(this.stored(eventId).j) as JsonObject;
  }
}

function forbidden(fn: () => unknown, errcode = 'M_FORBIDDEN') {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ActorRejection);
    expect((e as ActorRejection).errcode).toBe(errcode);
    return;
  }
  throw new Error('was allowed');
}

function newRoom(version: string): Room {
  const alice = '@alice:test.local';
  const { roomId, event } = buildCreateEvent(cfg, { roomVersion: version, creator: alice, roomLocalpart: `r${version}`, ts: 1_700_000_000_000 });
  const room = new Room(roomId);
  room.run({ op: 'create', event });
  room.send(alice, 'm.room.member', { membership: 'join' }, alice);
  room.send(alice, 'm.room.power_levels', { users: version === '12' ? {} : { [alice]: 100 }, users_default: 0, events_default: 0, state_default: 50, ban: 50, kick: 50, redact: 50, invite: 0 }, '');
  room.send(alice, 'm.room.join_rules', { join_rule: 'invite' }, '');
  return room;
}

describe.each(['1', '3', '10', '11', '12'])('RoomActor.decide, room version %s', (version) => {
  const alice = '@alice:test.local';
  const bob = '@bob:test.local';

  it('creates a room whose events are hashed, chained and authorised, stored unsigned and signed as they leave', () => {
    const room = newRoom(version);
    const v = requireRoomVersion(version);
    expect(room.state.version).toBe(version);
    expect(room.state.seq).toBe(4);
    expect(room.state.depth).toBe(4);
    expect(room.state.extremities).toHaveLength(1);
    if (v.roomIdFromCreateEvent) expect(room.roomId).toBe('!' + room.state.createId.slice(1));
    const last = room.event(room.state.extremities[0]!);
    expect(computeEventId(last, v)).toBe(room.state.extremities[0]);
    expect(checkContentHash(last)).toBe(true);
    // Stored without our signature (src/rooms/own-signatures.ts); the one added on the way out is
    // valid and leaves the event id as it was.
    expect(last.signatures).toBeUndefined();
    const out = new OwnEventSigner('test.local', cfg.signingKey).pdu(computeEventId(last, v), last, v);
    expect(verifyEventSignature(out, v, 'test.local', cfg.signingKey.keyId, cfg.signingKey.publicKey)).toEqual({ ok: true });
    expect(computeEventId(out, v)).toBe(room.state.extremities[0]);
    expect(last.signatures).toBeUndefined(); // the stored object is not touched
    // The join rules event names the create (not in v12), power levels and alice's join as auth events.
    const authCount = (last.auth_events as unknown[]).length;
    expect(authCount).toBe(v.createEventInAuthEvents ? 3 : 2);
  });

  it('a partial-state completion for a room that is complete already answers completed and drops the room from the partial-state list again', () => {
    const room = newRoom(version);
    const d = decideRoom(cfg, room.state, { mid: 'c1', actorId: room.roomId, body: { op: 'complete_partial_state', join: '$x', stateIds: [] }, enqueuedAt: 1 }, {});
    expect(d.state).toBe(room.state);
    expect(d.reply).toEqual({ completed: true, added: 0, rejected: [] });
    expect(d.derivedWrites).toEqual([{ cmd: 'HDEL', key: PARTIAL_STATE_ROOMS, args: [room.roomId], ordered: true }]);
    expect(d.writes ?? []).toEqual([]);
  });

  it('lets an invited user join and speak, and refuses strangers', () => {
    const room = newRoom(version);
    forbidden(() => room.send(bob, 'm.room.member', { membership: 'join' }, bob)); // invite-only
    forbidden(() => room.send(bob, 'm.room.message', { body: 'hi', msgtype: 'm.text' })); // not joined
    room.send(alice, 'm.room.member', { membership: 'invite' }, bob);
    room.send(bob, 'm.room.member', { membership: 'join' }, bob);
    const { event_id } = room.send(bob, 'm.room.message', { body: 'hi', msgtype: 'm.text' });
    expect(room.event(event_id).sender).toBe(bob);
    forbidden(() => room.send(bob, 'm.room.topic', { topic: 'no power' }, '')); // state_default 50
    forbidden(() => room.send('@mallory:elsewhere', 'm.room.message', { body: 'x' })); // not a local user
  });

  it('stores state as shared snapshots with deltas, and messages share their snapshot', () => {
    const room = newRoom(version);
    const before = room.state.snap;
    const { event_id } = room.send(alice, 'm.room.message', { body: 'x' });
    expect(room.state.snap).toBe(before);
    expect(room.stored(event_id)).toMatchObject({ sb: before, sa: before });
    const topic = room.send(alice, 'm.room.topic', { topic: 't' }, '');
    const snap = room.snapshot(room.state.snap);
    expect(snap.p).toBe(before);
    expect(snap.d).toEqual([['m.room.topic\u0000', topic.event_id]]);
    const out = room.outputs.at(-1)!;
    expect(out.state).toEqual({ key: 'm.room.topic\u0000', replaces: null });
  });

  it('answers a repeated client transaction with the first event', () => {
    const room = newRoom(version);
    const first = room.send(alice, 'm.room.message', { body: 'once' }, undefined, { txn: 'dev1|t1' });
    const again = room.send(alice, 'm.room.message', { body: 'once' }, undefined, { txn: 'dev1|t1' }, { txnEventId: first.event_id });
    expect(again.event_id).toBe(first.event_id);
    expect(room.state.seq).toBe(5);
  });

  it('redacts an event when the redaction is allowed, and keeps it when not', () => {
    const room = newRoom(version);
    room.send(alice, 'm.room.member', { membership: 'invite' }, bob);
    room.send(bob, 'm.room.member', { membership: 'join' }, bob);
    const msg = room.send(alice, 'm.room.message', { body: 'secret', msgtype: 'm.text' });
    const red = room.send(alice, 'm.room.redaction', { reason: 'oops' }, undefined, { redacts: msg.event_id }, { redactionTarget: room.stored(msg.event_id) });
    expect(room.stored(msg.event_id)).toMatchObject({ rb: red.event_id });
    expect(room.event(msg.event_id).content).toEqual({});
    expect(room.outputs.at(-1)!.redacted).toBe(msg.event_id);
    const redEvent = room.event(red.event_id);
    const v = requireRoomVersion(version);
    if (v.redactsInContent) expect((redEvent.content as JsonObject).redacts).toBe(msg.event_id);
    else expect(redEvent.redacts).toBe(msg.event_id);
  });

  it('refuses events over the size limit with M_TOO_LARGE', () => {
    const room = newRoom(version);
    forbidden(() => room.send(alice, 'm.room.message', { body: 'x'.repeat(70_000) }), 'M_TOO_LARGE');
  });

  it('refuses a second create and events for a room that does not exist', () => {
    const room = newRoom(version);
    const other = buildCreateEvent(cfg, { roomVersion: version, creator: alice, roomLocalpart: 'other', ts: 5 });
    forbidden(() => room.run({ op: 'create', event: other.event }), version === '12' ? 'M_ROOM_IN_USE' : 'M_ROOM_IN_USE');
    const empty = new Room('!nothing:test.local');
    forbidden(() => empty.send(alice, 'm.room.message', { body: 'x' }), 'M_NOT_FOUND');
  });
});

describe('RoomActor upgrade claims', () => {
  it('one claim at a time: the same upgrader gets the same room, others 400; members without power 403; released claims free the room', () => {
    const alice = '@alice:test.local';
    const bob = '@bob:test.local';
    const room = newRoom('10');
    forbidden(() => room.run({ op: 'claim_upgrade', replacement: '!x:test.local', sender: bob }));
    room.send(alice, 'm.room.member', { membership: 'invite' }, bob);
    room.send(bob, 'm.room.member', { membership: 'join' }, bob);
    forbidden(() => room.run({ op: 'claim_upgrade', replacement: '!x:test.local', sender: bob })); // no power for the tombstone
    expect(room.run({ op: 'claim_upgrade', replacement: '!new1:test.local', sender: alice })).toEqual({ replacement: '!new1:test.local', fresh: true });
    expect(room.run({ op: 'claim_upgrade', replacement: '!new2:test.local', sender: alice })).toEqual({ replacement: '!new1:test.local', fresh: false });
    room.send(alice, 'm.room.power_levels', { users: { [alice]: 100, [bob]: 100 } }, '');
    forbidden(() => room.run({ op: 'claim_upgrade', replacement: '!new3:test.local', sender: bob }), 'M_UNKNOWN');
    // Releasing someone else's replacement does nothing; releasing the claimed one frees the room.
    room.run({ op: 'release_upgrade', replacement: '!new2:test.local' });
    forbidden(() => room.run({ op: 'claim_upgrade', replacement: '!new3:test.local', sender: bob }), 'M_UNKNOWN');
    room.run({ op: 'release_upgrade', replacement: '!new1:test.local' });
    expect(room.run({ op: 'claim_upgrade', replacement: '!new3:test.local', sender: bob })).toEqual({ replacement: '!new3:test.local', fresh: true });
    // A claim lapses after UPGRADE_CLAIM_MS (Synapse keeps an upgrade's answer five minutes).
    const later = decideRoom(cfg, room.state, { mid: 'late', actorId: room.roomId, body: { op: 'claim_upgrade', replacement: '!new4:test.local', sender: alice }, enqueuedAt: room.state.upgrade!.at + UPGRADE_CLAIM_MS }, {});
    expect(later.reply).toEqual({ replacement: '!new4:test.local', fresh: true });
  });
});

describe('RoomActor read indexes (relations, threads, timestamps)', () => {
  const alice = '@alice:test.local';
  const zadds = (room: Room, key: string) => [...room.writes.entries()].filter(([k]) => k.startsWith(`ZADD ${key} `)).map(([, args]) => args);

  it('indexes relations by parent, thread roots by latest reply, events by timestamp; a redaction drops the relation', () => {
    const room = newRoom('11');
    const root = room.send(alice, 'm.room.message', { body: 'root', msgtype: 'm.text' });
    const reply = room.send(alice, 'm.room.message', { body: 'r', msgtype: 'm.text', 'm.relates_to': { rel_type: 'm.thread', event_id: root.event_id } });
    const like = room.send(alice, 'm.reaction', { 'm.relates_to': { rel_type: 'm.annotation', event_id: root.event_id, key: '+1' } });
    room.send(alice, 'm.room.message', { body: 'no relation', 'm.relates_to': { 'm.in_reply_to': { event_id: root.event_id } } });
    expect(zadds(room, roomData.relations(room.roomId, root.event_id))).toEqual([[reply.pos, reply.event_id], [like.pos, like.event_id]]);
    expect(zadds(room, roomData.threads(room.roomId))).toEqual([[reply.pos, root.event_id]]);
    const ts = zadds(room, roomData.byTimestamp(room.roomId)).find(([, id]) => id === reply.event_id);
    expect(ts?.[0]).toBe(room.event(reply.event_id).origin_server_ts);

    room.send(alice, 'm.room.redaction', {}, undefined, { redacts: reply.event_id }, { redactionTarget: room.stored(reply.event_id) });
    expect(room.writes.has(`ZREM ${roomData.relations(room.roomId, root.event_id)} ${reply.event_id}`)).toBe(true);
  });
});

describe('RoomActor: directory visibility and the alias set', () => {
  const published = (room: Room) => [...room.writes.keys()].filter((k) => k.includes(roomData.published(room.roomId)));

  it('publishes and unpublishes the room: its flag, its key, and an output entry each time', () => {
    const room = newRoom('11');
    const before = room.outputs.length;
    expect(room.run({ op: 'set_directory_visibility', visibility: 'public' })).toEqual({ ok: true });
    expect(room.state.published).toBe(true);
    expect(published(room)).toEqual([`SET ${roomData.published(room.roomId)} 1`]);
    expect(room.outputs.slice(before)).toEqual([{ roomId: room.roomId, directory: 'public' }]);
    room.writes.clear();
    room.run({ op: 'set_directory_visibility', visibility: 'private' });
    expect(room.state.published).toBeUndefined();
    expect(published(room)).toEqual([`DEL ${roomData.published(room.roomId)} undefined`]);
    expect(room.outputs.slice(before + 1)).toEqual([{ roomId: room.roomId, directory: 'private' }]);
  });

  it('announces an unchanged visibility again (the derived set heals), and keeps the state as it was', () => {
    const room = newRoom('11');
    const d = decideRoom(cfg, room.state, { mid: 'x', actorId: room.roomId, body: { op: 'set_directory_visibility', visibility: 'private' }, enqueuedAt: 1 }, {});
    expect(d.state).toBe(room.state);
    expect(d.writes).toEqual([{ cmd: 'DEL', key: roomData.published(room.roomId), args: [] }]);
    expect(d.outputs).toEqual([{ roomId: room.roomId, directory: 'private' }]);
  });

  it('refuses visibility for unknown rooms and unknown values', () => {
    forbidden(() => new Room('!nothing:test.local').run({ op: 'set_directory_visibility', visibility: 'public' }), 'M_NOT_FOUND');
    forbidden(() => newRoom('11').run({ op: 'set_directory_visibility', visibility: 'secret' as never }), 'M_INVALID_PARAM');
  });

  it('adds and removes aliases in its alias set, idempotently, without events', () => {
    const room = newRoom('12');
    const seq = room.state.seq;
    const outputs = room.outputs.length;
    for (const present of [true, true, false]) {
      const d = decideRoom(cfg, room.state, { mid: 'a', actorId: room.roomId, body: { op: 'alias_index', alias: '#a:test.local', present }, enqueuedAt: 1 }, {});
      expect(d.reply).toEqual({ ok: true });
      expect(d.state).toBe(room.state);
      expect(d.writes).toEqual([{ cmd: present ? 'SADD' : 'SREM', key: roomData.aliases(room.roomId), args: ['#a:test.local'] }]);
      expect(d.outputs ?? []).toEqual([]);
    }
    expect(room.state.seq).toBe(seq);
    expect(room.outputs.length).toBe(outputs);
    forbidden(() => room.run({ op: 'alias_index', alias: 'a', present: true }), 'M_INVALID_PARAM');
    forbidden(() => new Room('!nothing:test.local').run({ op: 'alias_index', alias: '#a:test.local', present: true }), 'M_NOT_FOUND');
  });
});

describe('RoomActor: the beginning of a purge', () => {
  it("deletes the room's members hash as it begins, again when begun again, and then refuses all but purge batches", () => {
    const room = newRoom('11');
    const [alice, bob, carol] = ['@alice:test.local', '@bob:test.local', '@carol:test.local'];
    room.send(alice, 'm.room.member', { membership: 'invite' }, bob);
    room.send(bob, 'm.room.member', { membership: 'join' }, bob);
    room.send(bob, 'm.room.member', { membership: 'leave' }, bob);
    room.send(alice, 'm.room.member', { membership: 'invite' }, carol);
    room.send(alice, 'm.room.member', { membership: 'invite' }, '@zed:elsewhere.example');
    const members = { cmd: 'DEL', key: roomData.members(room.roomId), args: [] };
    const begin = decideRoom(cfg, room.state, { mid: 'p', actorId: room.roomId, body: { op: 'purge_begin' }, enqueuedAt: 1 }, {});
    // The local users of the member list, whatever their membership: the deletion asks them for purge_room.
    const local = [alice, bob, carol];
    expect(begin.reply).toEqual({ ok: true, users: local });
    expect(begin.state.purging).toBe(true);
    expect(begin.state.purgeUsers).toEqual(local);
    // The push evaluator's and the search index's scripts write nothing of a room without it (see decidePurgeBegin).
    expect(begin.writes).toEqual([members]);
    // Begun again (a deletion run again before it had asked them all): the same users.
    const again = decideRoom(cfg, begin.state, { mid: 'q', actorId: room.roomId, body: { op: 'purge_begin' }, enqueuedAt: 2 }, {});
    expect(again.state).toBe(begin.state);
    expect(again.reply).toEqual({ ok: true, users: local });
    expect(again.writes).toEqual([members]);
    room.state = begin.state;
    forbidden(() => room.send(alice, 'm.room.message', { body: 'late', msgtype: 'm.text' }), 'M_NOT_FOUND');
    // The first batch comes after they were all asked: the list goes, and is not stored with every batch.
    const batch = decideRoom(cfg, begin.state, { mid: 'r', actorId: room.roomId, body: { op: 'purge', cursor: '0' }, enqueuedAt: 3 }, { purge: { keys: [], eventIds: [], cursor: '7' } });
    expect(batch.reply).toEqual({ cursor: '7', deleted: 0, done: false });
    expect(batch.state.purging).toBe(true);
    expect(batch.state.purgeUsers).toBeUndefined();
    const late = decideRoom(cfg, batch.state, { mid: 's', actorId: room.roomId, body: { op: 'purge_begin' }, enqueuedAt: 4 }, {});
    expect(late.reply).toEqual({ ok: true, users: [] });
  });

  it('the last batch takes the room out of the shard lists; begun again after it (or for a room never here), nothing is begun', () => {
    const room = newRoom('12');
    const begin = decideRoom(cfg, room.state, { mid: 'p', actorId: room.roomId, body: { op: 'purge_begin' }, enqueuedAt: 1 }, {});
    const last = decideRoom(cfg, begin.state, { mid: 'r', actorId: room.roomId, body: { op: 'purge', cursor: '0' }, enqueuedAt: 2 }, { purge: { keys: [], eventIds: [], cursor: '0' } });
    expect(last.reply).toEqual({ cursor: '0', deleted: 0, done: true });
    expect(last.writes).toEqual([
      { cmd: 'ZREM', key: roomData.localRooms(), args: [room.roomId] },
      { cmd: 'ZREM', key: recencyIndexData.roomStamps(), args: [room.roomId] },
    ]);
    expect(last.state.purging).toBeUndefined();
    // A second deletion that raced the first past its missing-room check: the room is not put
    // back into the purging state (where it would refuse a later create or join of the id, with
    // no deletion left to finish it), and nothing is written.
    for (const state of [last.state, emptyRoom('!never:test.local')]) {
      const again = decideRoom(cfg, state, { mid: 's', actorId: state.roomId, body: { op: 'purge_begin' }, enqueuedAt: 3 }, {});
      expect(again.reply).toEqual({ ok: true, users: [], nothing: true });
      expect(again.state).toBe(state);
      expect(again.writes ?? []).toEqual([]);
    }
  });
});

describe('chooseSnapshot: state snapshots past the chain bound', () => {
  const state = (n: number) => new Map(Array.from({ length: n }, (_, i) => [`m.room.member\u0000@u${i}:x`, `$e${i}`] as [string, string]));
  it('extends the parent within the bound', () => {
    expect(chooseSnapshot(7, 6, 10, [['k', '$a']], () => state(5), undefined).snap).toEqual({ p: 6, d: [['k', '$a']], n: 11 });
  });
  it('past the bound, re-bases on the root with the merged deltas while they stay small against the state', () => {
    const root = { root: 3, delta: new Map<string, string | null>([['a', '$1'], ['b', null], ['k', '$old']]) };
    const { snap, root: next } = chooseSnapshot(70, 69, 64, [['k', '$new']], () => state(2000), root);
    expect(snap).toEqual({ p: 3, d: [['a', '$1'], ['b', null], ['k', '$new']], n: 1 });
    expect(next).toEqual({ root: 3, delta: new Map([['a', '$1'], ['b', null], ['k', '$new']]) });
    // The root's own delta is not changed in place (it belongs to the parent).
    expect(root.delta.get('k')).toBe('$old');
  });
  it('writes the state in full when the merged deltas grew too big, when the parent is unknown or empty', () => {
    const big = { root: 3, delta: new Map<string, string | null>(Array.from({ length: 300 }, (_, i) => [`k${i}`, `$${i}`])) };
    expect(chooseSnapshot(70, 69, 64, [['k', '$new']], () => state(2000), big).snap).toMatchObject({ p: null, n: 0 });
    expect(chooseSnapshot(70, 69, 64, [['k', '$new']], () => state(2000), undefined).snap).toMatchObject({ p: null, n: 0 });
    expect(chooseSnapshot(70, 69, undefined, [['k', '$new']], () => state(3), undefined).snap).toEqual({ p: null, d: [...state(3)], n: 0 });
    expect(chooseSnapshot(1, 0, 0, [['k', '$new']], () => new Map([['k', '$new']]), undefined).snap).toEqual({ p: null, d: [['k', '$new']], n: 0 });
  });
});
