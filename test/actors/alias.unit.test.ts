/** The alias actor's decide, as a pure state machine: no Redis. */
import { describe, expect, it } from 'vitest';
import { aliasActor, decideAlias, freeAlias, type AliasMessage, type AliasState } from '../../actors/alias';
import { ActorRejection } from '../../src/runtime/actor';
import { decode } from '../../src/store/codec';
import { aliasData } from '../../src/store/keys';

const ALIAS = '#lobby:test.local';
const ROOM = '!room:test.local';
const OTHER_ROOM = '!other:test.local';
const ALICE = '@alice:test.local';
const BOB = '@bob:test.local';
const msg = (body: AliasMessage) => ({ mid: 'm', actorId: ALIAS, body, enqueuedAt: 1000 });

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
    expect(kind.initialState(ALIAS)).toEqual({ alias: ALIAS, record: null });
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
