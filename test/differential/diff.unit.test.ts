/** The differential harness's structural comparison (pure): normalization, differences, patterns. */
import { describe, expect, it } from 'vitest';
import { formatDifference, normalize, patternMatches, structuralDiff, summarize } from './diff';
import { pick } from './session';

const axonN = { captured: new Map([['!abc:localhost', 'room1'], ['$ev1', 'e1']]), serverName: 'localhost' };
const synN = { captured: new Map([['!xyz:127.0.0.57:4000', 'room1'], ['$other', 'e1']]), serverName: '127.0.0.57:4000' };

describe('normalize', () => {
  it('names captured ids, in values and keys, and replaces the server name', () => {
    const a = normalize({ room_id: '!abc:localhost', rooms: { '!abc:localhost': { sender: '@alice:localhost', url: 'mxc://localhost/x' } }, e: '$ev1' }, axonN);
    const s = normalize({ room_id: '!xyz:127.0.0.57:4000', rooms: { '!xyz:127.0.0.57:4000': { sender: '@alice:127.0.0.57:4000', url: 'mxc://127.0.0.57:4000/x' } }, e: '$other' }, synN);
    expect(a).toEqual({ room_id: '{{room1}}', rooms: { '{{room1}}': { sender: '@alice:<hs>', url: 'mxc://<hs>/x' } }, e: '{{e1}}' });
    expect(structuralDiff(a, s)).toEqual([]);
  });

  it('turns ids nobody captured into placeholders', () => {
    expect(normalize(['$random', '!room:localhost', 'plain'], axonN)).toEqual(['$…', '!…', 'plain']);
  });
});

describe('structuralDiff', () => {
  it('reports keys on one side, types and values, with paths', () => {
    const d = structuralDiff({ a: 1, b: { c: 'x' }, only: true }, { a: '1', b: { c: 'y' }, extra: null });
    expect(d).toEqual([
      { path: 'only', kind: 'only-axon', axon: 'true' },
      { path: 'extra', kind: 'only-synapse', synapse: 'null' },
      { path: 'a', kind: 'type', axon: 'number 1', synapse: 'string "1"' },
      { path: 'b.c', kind: 'value', axon: '"x"', synapse: '"y"' },
    ]);
  });

  it('compares server-specific values by type only', () => {
    expect(structuralDiff({ next_batch: 's1', origin_server_ts: 5, error: 'a' }, { next_batch: 't9_0', origin_server_ts: 9, error: 'b' })).toEqual([]);
    expect(structuralDiff({ next_batch: 's1' }, { next_batch: 1 })).toHaveLength(1);
  });

  it('reports lists of different lengths once, with a summary of each', () => {
    const ev = (type: string, state_key?: string) => ({ type, ...(state_key !== undefined ? { state_key } : {}), content: {} });
    const d = structuralDiff({ events: [ev('m.room.create', ''), ev('m.room.message')] }, { events: [ev('m.room.create', '')] });
    expect(d).toEqual([{ path: 'events', kind: 'list', axon: '2 [m.room.create(), m.room.message]', synapse: '1 [m.room.create()]' }]);
    expect(formatDifference('step', d[0]!)).toContain('Axon    2 [m.room.create(), m.room.message]');
  });

  it('keeps order unless the list is declared unordered', () => {
    expect(structuralDiff({ l: [1, 2] }, { l: [2, 1] })).toHaveLength(2);
    expect(structuralDiff({ l: [1, 2] }, { l: [2, 1] }, { unordered: (p) => (p === 'l' ? (v) => String(v) : undefined) })).toEqual([]);
  });
});

describe('patternMatches', () => {
  it('matches with * and covers what is under the path', () => {
    expect(patternMatches('sync* rooms.join.*.summary', 'sync initial rooms.join.{{pub}}.summary.m.heroes')).toBe(true);
    expect(patternMatches('sync* rooms.join.*.summary', 'sync initial rooms.join.{{pub}}.summaryx')).toBe(false);
    expect(patternMatches('createRoom visibility unknown', 'createRoom visibility unknown status')).toBe(true);
    expect(patternMatches('*].age', 'messages chunk[0].age')).toBe(true);
    expect(patternMatches('*].age', 'messages chunk[0].unsigned.age')).toBe(false);
  });
});

describe('summarize and pick', () => {
  it('describes events briefly', () => {
    expect(summarize({ type: 'm.room.member', state_key: '@a:<hs>', content: { membership: 'join' } })).toBe('m.room.member(@a:<hs>)=join');
    expect(summarize({ type: 'm.room.message', content: { body: 'hi' } })).toBe('m.room.message "hi"');
  });

  it('reads dotted paths with captures and bracketed keys', () => {
    const ctx = new Map([['pub', '!r:hs']]);
    expect(pick({ rooms: { join: { '!r:hs': { timeline: { prev_batch: 'p1' } } } } }, 'rooms.join.{{pub}}.timeline.prev_batch', ctx)).toBe('p1');
    expect(pick({ a: { 'm.x': [5, 6] } }, 'a.[m.x].1', ctx)).toBe(6);
  });
});
