/** The effective history visibility (client-server API, "Room History Visibility": not understood → shared). */
import { describe, expect, it } from 'vitest';
import { effectiveHistoryVisibility } from '../../src/protocol/history-visibility';
import type { JsonValue } from '../../src/protocol/json';

describe('effectiveHistoryVisibility', () => {
  it('keeps the four values the spec defines', () => {
    for (const v of ['world_readable', 'shared', 'invited', 'joined'] as const) expect(effectiveHistoryVisibility({ history_visibility: v })).toBe(v);
  });

  it.each<[string, JsonValue | undefined]>([
    ['no history_visibility event', undefined],
    ['content without the field', {}],
    ['an unknown string', { history_visibility: 'sometimes' }],
    ['another case of a known value', { history_visibility: 'World_Readable' }],
    ['an empty string', { history_visibility: '' }],
    ['a prototype key', { history_visibility: 'constructor' }],
    ['a number', { history_visibility: 5 }],
    ['a boolean', { history_visibility: true }],
    ['null', { history_visibility: null }],
    ['a list', { history_visibility: ['joined'] }],
    ['an object', { history_visibility: { v: 'joined' } }],
    ['content that is not an object', 'joined'],
  ])('reads %s as shared', (_name, content) => {
    expect(effectiveHistoryVisibility(content)).toBe('shared');
  });
});
