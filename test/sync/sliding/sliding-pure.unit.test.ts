/** The pure parts of simplified sliding sync: request parsing, required state, lists. */
import { describe, expect, it } from 'vitest';
import { parseSlidingRequest, RequestProblem } from '../../../src/sync/sliding/request';
import { changedState, compileRequiredState, mergeRequiredState, requiredStateFingerprint, selectState } from '../../../src/sync/sliding/required-state';
import { computeList, passesFilters, type RoomFacts } from '../../../src/sync/sliding/lists';

const k = (type: string, key: string) => `${type}\u0000${key}`;
const ME = '@me:x';

describe('parseSlidingRequest', () => {
  it('reads lists, subscriptions and extensions', () => {
    const r = parseSlidingRequest({
      conn_id: 'main',
      lists: { a: { ranges: [[0, 9]], timeline_limit: 5, required_state: [['m.room.name', '']], filters: { is_dm: true, room_types: [null, 'm.space'], not_tags: ['m.lowpriority'] } } },
      room_subscriptions: { '!r:x': { timeline_limit: 0, required_state: [['*', '*']] } },
      unsubscribe_rooms: ['!s:x'],
      extensions: { to_device: { enabled: true, since: '5-0', limit: 10 }, e2ee: { enabled: true }, typing: { enabled: false }, receipts: { enabled: true, lists: ['a'] } },
    });
    expect(r.connId).toBe('main');
    expect(r.lists.get('a')).toEqual({ ranges: [[0, 9]], timelineLimit: 5, requiredState: [['m.room.name', '']], filters: { isDm: true, roomTypes: [null, 'm.space'], notTags: ['m.lowpriority'] } });
    expect(r.roomSubscriptions.get('!r:x')).toEqual({ timelineLimit: 0, requiredState: [['*', '*']] });
    expect(r.unsubscribeRooms).toEqual(['!s:x']);
    expect(r.extensions).toEqual({ toDevice: { since: '5-0', limit: 10 }, e2ee: true, receipts: { lists: ['a'] } });
  });

  it('refuses what Synapse refuses, with a reason', () => {
    const bad = [
      [],
      { lists: { a: { ranges: [[0, 1]], required_state: [] } } },
      { lists: { a: { ranges: [[3, 1]], required_state: [], timeline_limit: 1 } } },
      { lists: { a: { ranges: [[0, 1]], required_state: [['only-type']], timeline_limit: 1 } } },
      { lists: { a: { required_state: [], timeline_limit: -1 } } },
      { room_subscriptions: { notaroom: { required_state: [], timeline_limit: 1 } } },
      { extensions: { to_device: { enabled: true, since: 'zzz' } } },
      { conn_id: 5 },
      { lists: { a: { required_state: [], timeline_limit: 1, filters: { is_dm: 'yes' } } } },
    ];
    for (const b of bad) expect(() => parseSlidingRequest(b as never), JSON.stringify(b)).toThrow(RequestProblem);
    const many = Object.fromEntries(Array.from({ length: 101 }, (_, i) => [`!r${i}:x`, { required_state: [], timeline_limit: 1 }]));
    expect(() => parseSlidingRequest({ room_subscriptions: many })).toThrow(/at most 100/);
  });
});

describe('required state', () => {
  const state = new Map([
    [k('m.room.create', ''), '$create'],
    [k('m.room.name', ''), '$name'],
    [k('m.room.member', ME), '$me'],
    [k('m.room.member', '@a:x'), '$a'],
    [k('m.room.member', '@b:x'), '$b'],
    [k('m.space.child', '!c:x'), '$c1'],
    [k('m.space.child', '!d:x'), '$c2'],
  ]);

  it('selects exact keys, wildcards, $ME and $LAZY members', () => {
    expect(selectState(compileRequiredState([['m.room.name', ''], ['m.room.member', '$ME']], ME), state).sort()).toEqual(['$me', '$name']);
    expect(selectState(compileRequiredState([['m.space.child', '*']], ME), state).sort()).toEqual(['$c1', '$c2']);
    expect(selectState(compileRequiredState([['*', '*']], ME), state)).toHaveLength(7);
    expect(selectState(compileRequiredState([['*', '']], ME), state).sort()).toEqual(['$create', '$name']);
    expect(selectState(compileRequiredState([['m.room.member', '$LAZY']], ME), state, new Set(['@b:x']))).toEqual(['$b']);
  });

  it('merges configs and notices a changed one', () => {
    const a = compileRequiredState([['m.room.name', '']], ME);
    const b = compileRequiredState([['m.room.member', '*'], ['m.room.member', '$LAZY']], ME);
    const m = mergeRequiredState(a, b);
    expect(selectState(m, state).sort()).toEqual(['$a', '$b', '$me', '$name']);
    expect(m.lazyMembers).toBe(true);
    expect(requiredStateFingerprint(a)).toBe(requiredStateFingerprint(compileRequiredState([['m.room.name', '']], ME)));
    expect(requiredStateFingerprint(a)).not.toBe(requiredStateFingerprint(m));
  });

  it('sends only the wanted entries that changed', () => {
    const after = new Map(state);
    after.set(k('m.room.name', ''), '$name2');
    after.set(k('m.room.member', '@a:x'), '$a2');
    after.set(k('m.room.topic', ''), '$topic');
    after.delete(k('m.space.child', '!d:x'));
    const rs = compileRequiredState([['m.room.name', ''], ['m.space.child', '*'], ['m.room.member', '$LAZY']], ME);
    const diff = changedState(rs, state, after, new Set(['@a:x']));
    expect(diff.changed.sort()).toEqual(['$a2', '$name2']);
    expect(diff.removed).toEqual([k('m.space.child', '!d:x')]);
    expect(changedState(rs, state, after, new Set()).changed).toEqual(['$name2']);
  });
});

describe('lists', () => {
  const rooms: RoomFacts[] = [
    { roomId: '!old:x', membership: 'join', bumpStamp: 100, isDm: true, tags: ['m.favourite'], roomType: null, isEncrypted: true },
    { roomId: '!new:x', membership: 'join', bumpStamp: 300, isDm: false, tags: [], roomType: null, isEncrypted: false },
    { roomId: '!space:x', membership: 'join', bumpStamp: 200, isDm: false, tags: ['m.lowpriority'], roomType: 'm.space', isEncrypted: false },
    { roomId: '!inv:x', membership: 'invite', bumpStamp: 250, isDm: true, tags: [], roomType: null, isEncrypted: false },
    { roomId: '!tie:x', membership: 'join', bumpStamp: 300, isDm: false, tags: [], roomType: null, isEncrypted: false },
  ];
  const list = (filters = {}, ranges: [number, number][] = [[0, 10]]) => ({ ranges, timelineLimit: 1, requiredState: [], filters });

  it('sorts by recency (ties by room id) and cuts to the ranges', () => {
    const r = computeList(rooms, list({}, [[0, 1], [3, 3]]), null);
    expect(r.count).toBe(5);
    expect(r.ops).toEqual([
      { op: 'SYNC', range: [0, 1], room_ids: ['!new:x', '!tie:x'] },
      { op: 'SYNC', range: [3, 3], room_ids: ['!space:x'] },
    ]);
    expect(r.roomIds).toEqual(['!new:x', '!tie:x', '!space:x']);
  });

  it('filters', () => {
    const ids = (f: object, children: Set<string> | null = null) => computeList(rooms, list(f), children).roomIds;
    expect(ids({ isDm: true })).toEqual(['!inv:x', '!old:x']);
    expect(ids({ isInvite: true })).toEqual(['!inv:x']);
    expect(ids({ isInvite: false, isEncrypted: true })).toEqual(['!old:x']);
    expect(ids({ roomTypes: ['m.space'] })).toEqual(['!space:x']);
    expect(ids({ notRoomTypes: ['m.space'] })).toHaveLength(4);
    expect(ids({ roomTypes: [null] })).toHaveLength(4);
    expect(ids({ tags: ['m.favourite'] })).toEqual(['!old:x']);
    expect(ids({ notTags: ['m.lowpriority'] })).toHaveLength(4);
    expect(ids({ spaces: ['!space:x'] }, new Set(['!old:x']))).toEqual(['!old:x']);
    expect(passesFilters({ roomId: '!n:x', membership: 'join', bumpStamp: 0, name: 'Team Chat' }, { roomNameLike: 'team' }, null)).toBe(true);
  });
});

describe('the v4 shape', () => {
  it('reads range, include/exclude/lazy_members, is_invited and the body parameters', () => {
    const r = parseSlidingRequest(
      {
        pos: 'abcd0123_4',
        timeout: 3000,
        set_presence: 'offline',
        lists: {
          a: { range: [0, 19], timeline_limit: 1, required_state: { include: [{ type: 'm.room.name', state_key: '' }, {}], exclude: [{ type: 'm.room.member' }], lazy_members: true }, filters: { is_invited: false } },
          b: { timeline_limit: 0, required_state: {} },
        },
      },
      'v4',
    );
    expect(r.shape).toBe('v4');
    expect(r.pos).toBe('abcd0123_4');
    expect(r.timeout).toBe(3000);
    expect(r.setPresence).toBe('offline');
    const a = r.lists.get('a')!;
    expect(a.ranges).toEqual([[0, 19]]);
    expect(a.requiredState).toEqual([['m.room.name', ''], ['*', '*'], ['m.room.member', '$LAZY']]);
    expect(a.exclude).toEqual([['m.room.member', '*']]);
    expect(a.filters).toEqual({ isInvite: false });
    expect(r.lists.get('b')!.ranges).toEqual([[0, Number.MAX_SAFE_INTEGER]]);
    expect(() => parseSlidingRequest({ set_presence: 'busy' }, 'v4')).toThrow(RequestProblem);
    expect(() => parseSlidingRequest({ lists: { a: { timeline_limit: 1, required_state: [['m.room.name', '']] } } }, 'v4')).toThrow(RequestProblem);
  });

  it('excludes per part: another list asking for what one list excludes still gets it', () => {
    const state = new Map([
      [k('m.room.member', '@a:x'), '$a'],
      [k('m.room.name', ''), '$name'],
    ]);
    const excluding = compileRequiredState([['*', '*']], ME, [['m.room.member', '*']]);
    expect(selectState(excluding, state)).toEqual(['$name']);
    // Lazy members are not filtered by exclude.
    expect(selectState(compileRequiredState([['*', '*'], ['m.room.member', '$LAZY']], ME, [['m.room.member', '*']]), state, new Set(['@a:x'])).sort()).toEqual(['$a', '$name']);
    const merged = mergeRequiredState(excluding, compileRequiredState([['m.room.member', '@a:x']], ME));
    expect(selectState(merged, state).sort()).toEqual(['$a', '$name']);
  });
});
