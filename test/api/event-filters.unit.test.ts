/**
 * Event filters' `types` / `not_types` (src/api/client/room-common.ts): `*` globs matched by the
 * linear-time matcher, literal entries, the bounds on patterns (400 M_INVALID_PARAM for inline
 * filters), and the adversarial pattern that held the front for 25 seconds on a RegExp.
 */
import { describe, expect, it } from 'vitest';
import { eventFilterFromJson, parseEventFilter } from '../../src/api/client/room-common';
import { filterAllowsType, filterMatches } from '../../src/rooms/event-filter';
import { MatrixError } from '../../src/http/errors';

const ev = (type: string, sender = '@a:x') => ({ type, sender, content: {} });

describe('event filter types', () => {
  it('matches literal types and * globs, case-sensitively, with ? literal', () => {
    const f = eventFilterFromJson({ types: ['m.room.message', 'm.call.*', 'org.*.thing'], not_types: ['m.call.hangup'] });
    expect(filterMatches(f, ev('m.room.message'))).toBe(true);
    expect(filterMatches(f, ev('m.call.invite'))).toBe(true);
    expect(filterMatches(f, ev('m.call.hangup'))).toBe(false);
    expect(filterMatches(f, ev('org.example.thing'))).toBe(true);
    expect(filterMatches(f, ev('M.ROOM.MESSAGE'))).toBe(false);
    expect(filterMatches(f, ev('m.room.member'))).toBe(false);
    expect(filterAllowsType(f, 'm.call.answer')).toBe(true);
    expect(filterAllowsType(f, 'm.call.hangup')).toBe(false);
    expect(filterAllowsType(eventFilterFromJson({ types: ['m.?'] }), 'm.x')).toBe(false);
    expect(filterAllowsType(eventFilterFromJson({ types: ['m.?'] }), 'm.?')).toBe(true);
    expect(filterAllowsType(eventFilterFromJson({ types: [] }), 'm.x')).toBe(false);
    expect(filterAllowsType(eventFilterFromJson({}), 'm.x')).toBe(true);
    expect(filterAllowsType(eventFilterFromJson({ not_types: ['*'] }), 'm.x')).toBe(false);
    // The same filter asked again (answers are remembered per type) answers the same.
    for (let i = 0; i < 3; i++) for (const t of ['m.call.x', 'm.call.hangup', 'x']) expect(filterAllowsType(f, t)).toBe(t === 'm.call.x');
  });

  it('takes the adversarial glob against a 60-character type in one pass', () => {
    const f = parseEventFilter(JSON.stringify({ types: ['*a*a*a*a*a*a*a*b'] }));
    expect(filterMatches(f, ev('a'.repeat(60)))).toBe(false);
    expect(filterMatches(f, ev(`${'a'.repeat(59)}b`))).toBe(true);
    const g = parseEventFilter(JSON.stringify({ not_types: Array.from({ length: 100 }, () => '*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b') }));
    for (let i = 0; i < 200; i++) expect(filterAllowsType(g, `${'a'.repeat(250)}${i}`)).toBe(true);
  });

  it('refuses patterns past the bounds with 400 M_INVALID_PARAM', () => {
    const refuse = (v: unknown) => {
      try {
        eventFilterFromJson(v as never);
      } catch (e) {
        expect(e).toBeInstanceOf(MatrixError);
        return [(e as MatrixError).status, (e as MatrixError).errcode];
      }
      return null;
    };
    expect(refuse({ types: [`*${'a'.repeat(255)}`] })).toEqual([400, 'M_INVALID_PARAM']);
    expect(refuse({ not_types: Array.from({ length: 101 }, (_, i) => `${i}*`) })).toEqual([400, 'M_INVALID_PARAM']);
    expect(refuse({ types: [`*${'a'.repeat(254)}`] })).toBeNull();
  });
});
