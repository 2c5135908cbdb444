import { describe, expect, it } from 'vitest';
import { filterEventsForServer, isUserOfServer, serverMaySee, serverVisibilityFacts, type ServerVisibilityFacts } from '../../src/rooms/visibility';
import type { HistoryVisibility } from '../../src/protocol/history-visibility';
import type { JsonObject } from '../../src/protocol/json';
import type { RoomEvent } from '../../src/store/room-reader';

const facts = (visibility: HistoryVisibility, memberships: string[] = [], senderErased = false): ServerVisibilityFacts => ({ visibility, memberships, senderErased });

describe('serverMaySee: what a remote server may be sent', () => {
  // [visibility, memberships of the server's users at the event, may see]
  const table: [HistoryVisibility, string[], boolean][] = [
    ['world_readable', [], true],
    ['shared', [], true],
    ['shared', ['leave'], true],
    ['invited', [], false],
    ['invited', ['invite'], true],
    ['invited', ['join'], true],
    ['invited', ['leave', 'ban'], false],
    ['invited', ['leave', 'invite'], true],
    ['joined', [], false],
    ['joined', ['invite'], false],
    ['joined', ['knock', 'leave'], false],
    ['joined', ['leave', 'join'], true],
  ];
  it.each(table)('%s with memberships %j → %s', (visibility, memberships, expected) => {
    expect(serverMaySee(facts(visibility, memberships))).toBe(expected);
  });

  it('never sends an erased sender’s event as it is, whatever the visibility', () => {
    for (const v of ['world_readable', 'shared', 'invited', 'joined'] as const) expect(serverMaySee(facts(v, ['join'], true))).toBe(false);
  });
});

describe('filterEventsForServer', () => {
  const events = ['a', 'b', 'c'];
  const byEvent: Record<string, ServerVisibilityFacts> = { a: facts('shared'), b: facts('joined'), c: facts('joined', ['join']) };

  it('redacts what the server may not see, in place, when asked to', () => {
    expect(filterEventsForServer(events, (e) => byEvent[e]!, (e) => `redacted:${e}`)).toEqual(['a', 'redacted:b', 'c']);
  });

  it('leaves it out without a redaction', () => {
    expect(filterEventsForServer(events, (e) => byEvent[e]!, null)).toEqual(['a', 'c']);
  });
});

describe('isUserOfServer', () => {
  it('compares the whole server name, ports and IP literals included', () => {
    expect(isUserOfServer('@a:example.org', 'example.org')).toBe(true);
    expect(isUserOfServer('@a:example.org', 'ample.org')).toBe(false);
    expect(isUserOfServer('@a:127.0.0.11:41448', '127.0.0.11:41448')).toBe(true);
    expect(isUserOfServer('@a:127.0.0.11:41448', '127.0.0.11')).toBe(false);
    expect(isUserOfServer('@a:[::1]:8448', '[::1]:8448')).toBe(true);
    expect(isUserOfServer('nocolon', 'example.org')).toBe(false);
  });
});

describe('serverVisibilityFacts', () => {
  const ev = (eventId: string, event: JsonObject, extra: Partial<RoomEvent> = {}): RoomEvent => ({ eventId, event, pos: 1, depth: 1, stateBefore: 7, stateAfter: 7, ...extra });
  const stored = new Map<string, RoomEvent>([
    ['$hv', ev('$hv', { type: 'm.room.history_visibility', state_key: '', content: { history_visibility: 'joined' } })],
    ['$m1', ev('$m1', { type: 'm.room.member', state_key: '@x:remote.example', content: { membership: 'leave' } })],
    ['$m2', ev('$m2', { type: 'm.room.member', state_key: '@y:remote.example', content: { membership: 'join' } })],
    ['$m3', ev('$m3', { type: 'm.room.member', state_key: '@z:other.example', content: { membership: 'join' } })],
  ]);
  const snapshots = new Map([[7, new Map([['m.room.history_visibility\u0000', '$hv'], ['m.room.member\u0000@x:remote.example', '$m1'], ['m.room.member\u0000@y:remote.example', '$m2'], ['m.room.member\u0000@z:other.example', '$m3']])]]);
  const rooms = {
    snapshot: async (_roomId: string, id: number) => snapshots.get(id) ?? new Map(),
    events: async (_roomId: string, ids: string[]) => ids.map((id) => stored.get(id)).filter((e): e is RoomEvent => !!e),
  };
  const message = ev('$msg', { type: 'm.room.message', sender: '@s:local.example', content: {} });

  it('reads the visibility and only the asking server’s memberships from the state before the event', async () => {
    const f = await serverVisibilityFacts(rooms, '!r:local.example', 'remote.example', message, () => false);
    expect(f.visibility).toBe('joined');
    expect([...f.memberships].sort()).toEqual(['join', 'leave']);
    expect(f.senderErased).toBe(false);
    const other = await serverVisibilityFacts(rooms, '!r:local.example', 'third.example', message, () => false);
    expect(other.memberships).toEqual([]);
    expect(serverMaySee(other)).toBe(false);
  });

  it('treats outliers as shared (no state is known before them) and asks about erasure', async () => {
    const f = await serverVisibilityFacts(rooms, '!r:local.example', 'third.example', { ...message, outlier: true, stateBefore: 0 }, async (u) => u === '@s:local.example');
    expect(f).toEqual({ visibility: 'shared', memberships: [], senderErased: true });
  });
});
