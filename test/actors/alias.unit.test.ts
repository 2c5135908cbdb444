/** The alias actor's decide, as a pure state machine: no Redis. */
import { describe, expect, it } from 'vitest';
import { aliasActor, decideAlias, freeAlias, MAX_RESERVATION_MS, type AliasMessage, type AliasState } from '../../actors/alias';
import { ActorRejection } from '../../src/runtime/actor';
import { decode } from '../../src/store/codec';
import { aliasData } from '../../src/store/keys';

const ALIAS = '#lobby:test.local';
const ROOM = '!room:test.local';
const OTHER_ROOM = '!other:test.local';
const ALICE = '@alice:test.local';
const BOB = '@bob:test.local';
const msg = (body: AliasMessage, enqueuedAt = 1000) => ({ mid: 'm', actorId: ALIAS, body, enqueuedAt });

function rejection(f: () => unknown): ActorRejection {
  try {
    f();
  } catch (e) {
    if (e instanceof ActorRejection) return e;
    throw e;
  }
  throw new Error('expected a rejection');
}

function taken(): AliasState {
  return decideAlias(freeAlias(ALIAS), msg({ op: 'create', roomId: ROOM, creator: ALICE })).state;
}

describe('AliasActor', () => {
  it('is a room-family kind named alias', () => {
    const kind = aliasActor();
    expect(kind.kind).toBe('alias');
    expect(kind.family).toBe('room');
    expect(kind.initialState(ALIAS)).toEqual({ alias: ALIAS, record: null, reservation: null });
  });
});

describe('AliasActor.decide', () => {
  it('creates a free alias: the record fronts resolve it with, under its own key', () => {
    const d = decideAlias(freeAlias(ALIAS), msg({ op: 'create', roomId: ROOM, creator: ALICE }));
    expect(d.reply).toEqual({ room_id: ROOM, creator: ALICE });
    expect(d.state.record).toEqual({ r: ROOM, c: ALICE });
    expect(d.writes).toHaveLength(1);
    expect(d.writes![0]!).toMatchObject({ cmd: 'SET', key: aliasData.alias(ALIAS) });
    expect(decode(d.writes![0]!.args[0] as Buffer)).toEqual({ r: ROOM, c: ALICE });
    expect(d.outputs ?? []).toEqual([]);
  });

  it('refuses a taken alias with 409 M_UNKNOWN, even for the same room', () => {
    const s = taken();
    for (const roomId of [ROOM, OTHER_ROOM]) {
      const e = rejection(() => decideAlias(s, msg({ op: 'create', roomId, creator: BOB })));
      expect(e).toMatchObject({ errcode: 'M_UNKNOWN', status: 409 });
      expect(e.message).toBe(`Room alias ${ALIAS} already exists`);
    }
  });

  it('refuses malformed room and user ids', () => {
    expect(rejection(() => decideAlias(freeAlias(ALIAS), msg({ op: 'create', roomId: 'room', creator: ALICE })))).toMatchObject({ errcode: 'M_INVALID_PARAM' });
    expect(rejection(() => decideAlias(freeAlias(ALIAS), msg({ op: 'create', roomId: ROOM, creator: 'alice' })))).toMatchObject({ errcode: 'M_INVALID_PARAM' });
  });

  it('lets the creator delete it; the name is free again', () => {
    const d = decideAlias(taken(), msg({ op: 'delete', requester: ALICE }));
    expect(d.reply).toEqual({ room_id: ROOM, creator: ALICE });
    expect(d.state.record).toBeNull();
    expect(d.writes).toEqual([{ cmd: 'DEL', key: aliasData.alias(ALIAS), args: [] }]);
    expect(decideAlias(d.state, msg({ op: 'create', roomId: OTHER_ROOM, creator: BOB })).state.record).toEqual({ r: OTHER_ROOM, c: BOB });
  });

  it('lets others delete it only when the front says they may (force)', () => {
    expect(rejection(() => decideAlias(taken(), msg({ op: 'delete', requester: BOB })))).toMatchObject({ errcode: 'M_FORBIDDEN', status: 403 });
    expect(rejection(() => decideAlias(taken(), msg({ op: 'delete', requester: BOB, force: false })))).toMatchObject({ errcode: 'M_FORBIDDEN' });
    expect(decideAlias(taken(), msg({ op: 'delete', requester: BOB, force: true })).state.record).toBeNull();
  });

  it('a delete checked against one room does not delete the alias once it points elsewhere', () => {
    expect(rejection(() => decideAlias(taken(), msg({ op: 'delete', requester: BOB, force: true, roomId: OTHER_ROOM })))).toMatchObject({ errcode: 'M_NOT_FOUND', status: 404 });
    expect(decideAlias(taken(), msg({ op: 'delete', requester: BOB, force: true, roomId: ROOM })).reply).toEqual({ room_id: ROOM, creator: ALICE });
  });

  it('deleting a free alias is 404', () => {
    expect(rejection(() => decideAlias(freeAlias(ALIAS), msg({ op: 'delete', requester: ALICE, force: true })))).toMatchObject({ errcode: 'M_NOT_FOUND', status: 404 });
  });

  it('fails an unknown op (a bug upstream, dead-lettered by the runtime)', () => {
    expect(() => decideAlias(freeAlias(ALIAS), msg({ op: 'rename' } as never))).toThrow(TypeError);
  });
});

describe('AliasActor.decide: reservations (createRoom holds its alias before creating the room)', () => {
  const reserve = (state: AliasState, token: string, at = 1000, creator = ALICE) => decideAlias(state, msg({ op: 'reserve', creator, token, ttlMs: 60_000 }, at));

  it('holds a free alias under its own key with a TTL; the record (what resolves it) is untouched', () => {
    const d = reserve(freeAlias(ALIAS), 'tok-a');
    expect(d.reply).toEqual({ reserved_until: 61_000 });
    expect(d.state).toEqual({ alias: ALIAS, record: null, reservation: { t: 'tok-a', c: ALICE, u: 61_000 } });
    expect(d.writes).toHaveLength(1);
    expect(d.writes![0]!).toMatchObject({ cmd: 'SET', key: aliasData.reservation(ALIAS), args: [expect.anything(), 'PX', 60_000] });
    expect(decode(d.writes![0]!.args[0] as Buffer)).toEqual({ t: 'tok-a', c: ALICE, u: 61_000 });
  });

  it('of racing reservations the first wins; the others are 409 until it ends', () => {
    const held = reserve(freeAlias(ALIAS), 'tok-a').state;
    expect(rejection(() => reserve(held, 'tok-b', 2000, BOB))).toMatchObject({ errcode: 'M_UNKNOWN', status: 409 });
    // The holder asking again (a retry) keeps it.
    expect(reserve(held, 'tok-a', 2000).state.reservation?.t).toBe('tok-a');
    // A taken alias cannot be reserved.
    expect(rejection(() => reserve(taken(), 'tok-b'))).toMatchObject({ errcode: 'M_UNKNOWN', status: 409 });
  });

  it('only the holder\'s token binds it; binding ends the hold (its key deleted)', () => {
    const held = reserve(freeAlias(ALIAS), 'tok-a').state;
    expect(rejection(() => decideAlias(held, msg({ op: 'create', roomId: OTHER_ROOM, creator: BOB }, 2000)))).toMatchObject({ status: 409 });
    expect(rejection(() => decideAlias(held, msg({ op: 'create', roomId: OTHER_ROOM, creator: BOB, token: 'tok-b' }, 2000)))).toMatchObject({ status: 409 });
    const d = decideAlias(held, msg({ op: 'create', roomId: ROOM, creator: ALICE, token: 'tok-a' }, 2000));
    expect(d.state).toEqual({ alias: ALIAS, record: { r: ROOM, c: ALICE }, reservation: null });
    expect(d.writes!.map((w) => [w.cmd, w.key])).toEqual([['SET', aliasData.alias(ALIAS)], ['DEL', aliasData.reservation(ALIAS)]]);
  });

  it('a hold expires by itself: past its time others may reserve or create, and the late holder is refused', () => {
    const held = reserve(freeAlias(ALIAS), 'tok-a').state;
    expect(reserve(held, 'tok-b', 61_000, BOB).state.reservation).toEqual({ t: 'tok-b', c: BOB, u: 121_000 });
    const other = decideAlias(held, msg({ op: 'create', roomId: OTHER_ROOM, creator: BOB }, 61_001));
    expect(other.state.record).toEqual({ r: OTHER_ROOM, c: BOB });
    expect(rejection(() => decideAlias(other.state, msg({ op: 'create', roomId: ROOM, creator: ALICE, token: 'tok-a' }, 61_002)))).toMatchObject({ status: 409 });
    // An expired hold that nobody replaced still lets its holder bind.
    expect(decideAlias(held, msg({ op: 'create', roomId: ROOM, creator: ALICE, token: 'tok-a' }, 99_000)).state.record).toEqual({ r: ROOM, c: ALICE });
  });

  it('release ends only the hold it names', () => {
    const held = reserve(freeAlias(ALIAS), 'tok-a').state;
    const wrong = decideAlias(held, msg({ op: 'release', token: 'tok-b' }));
    expect(wrong.reply).toEqual({ released: false });
    expect(wrong.state).toBe(held);
    const right = decideAlias(held, msg({ op: 'release', token: 'tok-a' }));
    expect(right.reply).toEqual({ released: true });
    expect(right.state.reservation).toBeNull();
    expect(right.writes).toEqual([{ cmd: 'DEL', key: aliasData.reservation(ALIAS), args: [] }]);
    expect(reserve(right.state, 'tok-b', 2000, BOB).state.reservation?.t).toBe('tok-b');
  });

  it('refuses malformed reservations', () => {
    for (const body of [
      { op: 'reserve', creator: 'alice', token: 't', ttlMs: 1000 },
      { op: 'reserve', creator: ALICE, token: '', ttlMs: 1000 },
      { op: 'reserve', creator: ALICE, token: 't', ttlMs: 0 },
      { op: 'reserve', creator: ALICE, token: 't', ttlMs: MAX_RESERVATION_MS + 1 },
      { op: 'reserve', creator: ALICE, token: 't', ttlMs: 1.5 },
    ]) {
      expect(rejection(() => decideAlias(freeAlias(ALIAS), msg(body as AliasMessage)))).toMatchObject({ errcode: 'M_INVALID_PARAM', status: 400 });
    }
  });

  it('PUT /directory/room (no token) is refused while a createRoom holds the name', () => {
    const held = reserve(freeAlias(ALIAS), 'tok-a').state;
    expect(rejection(() => decideAlias(held, msg({ op: 'create', roomId: OTHER_ROOM, creator: BOB }, 5000)))).toMatchObject({ errcode: 'M_UNKNOWN', status: 409 });
  });
});

describe('AliasActor.decide (unknown ops)', () => {
  it('fails an unknown op (a bug upstream, dead-lettered by the runtime)', () => {
    expect(() => decideAlias(freeAlias(ALIAS), msg({ op: 'rename' } as never))).toThrow(TypeError);
  });
});
