/** Pure parts of the account endpoints: filter validation, UIA flow logic, password hashes. */
import { describe, expect, it } from 'vitest';
import { MAX_FILTER_TYPE_BYTES, MAX_FILTER_TYPE_GLOBS, validateFilter } from '../../src/api/client/filter-validation';
import { flowComplete, identifiedUser, stageAllowed } from '../../src/api/client/uia';
import { hashPassword, verifyPassword } from '../../src/api/client/passwords';

describe('validateFilter', () => {
  it('accepts the spec example and unknown fields', () => {
    const example = {
      room: { state: { types: ['m.room.*'], not_rooms: ['!726s6s6q:example.com'] }, timeline: { limit: 10, types: ['m.room.message'], not_rooms: ['!726s6s6q:example.com'], not_senders: ['@spam:example.com'] }, ephemeral: { types: ['m.receipt', 'm.typing'], not_rooms: ['!726s6s6q:example.com'], not_senders: ['@spam:example.com'] } },
      presence: { types: ['m.presence'], not_senders: ['@alice:example.com'] },
      event_format: 'client',
      event_fields: ['type', 'content', 'sender'],
      org_example_extension: 1,
    };
    expect(validateFilter(example)).toEqual([]);
    expect(validateFilter({})).toEqual([]);
  });

  it('names each field of the wrong type', () => {
    expect(validateFilter([])).toEqual(['the filter must be a JSON object']);
    expect(validateFilter({ event_format: 'xml', event_fields: 'type', room: { include_leave: 'yes', timeline: { limit: -1, lazy_load_members: 1, rooms: ['#alias:x'] } }, presence: { senders: ['bob'] } })).toEqual([
      'event_fields must be a list of strings',
      'event_format must be client or federation',
      'presence.senders must only hold ids starting with @',
      'room.include_leave must be a boolean',
      'room.timeline.limit must be a non-negative integer',
      'room.timeline.lazy_load_members must be a boolean',
      'room.timeline.rooms must only hold ids starting with !',
    ]);
    expect(validateFilter({ room: [] })).toEqual(['room must be an object']);
  });

  it('bounds type patterns: entries of at most 255 bytes, at most 100 globs per list', () => {
    const long = `m.${'x'.repeat(MAX_FILTER_TYPE_BYTES - 2)}`;
    expect(validateFilter({ room: { timeline: { types: [long, '*a*a*a*a*a*a*a*b'] } } })).toEqual([]);
    expect(validateFilter({ room: { timeline: { types: [`${long}*`] }, state: { not_types: [`${long}x`] } }, account_data: { types: [`*${long}`] } })).toEqual([
      'account_data.types entries must be at most 255 bytes',
      'room.state.not_types entries must be at most 255 bytes',
      'room.timeline.types entries must be at most 255 bytes',
    ]);
    const globs = Array.from({ length: MAX_FILTER_TYPE_GLOBS + 1 }, (_, i) => `m.${i}.*`);
    expect(validateFilter({ presence: { not_types: globs.slice(1) } })).toEqual([]);
    expect(validateFilter({ presence: { not_types: globs } })).toEqual(['presence.not_types may hold at most 100 entries with a *']);
    // Literal entries are not counted (a set lookup each).
    expect(validateFilter({ presence: { types: Array.from({ length: 5000 }, (_, i) => `m.${i}`) } })).toEqual([]);
  });
});

describe('user-interactive auth flows', () => {
  const flows = [['m.login.registration_token', 'm.login.terms'], ['m.login.dummy']];
  it('allows only the next stage of a flow the completed stages follow', () => {
    expect(stageAllowed(flows, [], 'm.login.dummy')).toBe(true);
    expect(stageAllowed(flows, [], 'm.login.terms')).toBe(false);
    expect(stageAllowed(flows, ['m.login.registration_token'], 'm.login.terms')).toBe(true);
    expect(stageAllowed(flows, ['m.login.registration_token'], 'm.login.dummy')).toBe(false);
  });
  it('is complete when every stage of one flow is', () => {
    expect(flowComplete(flows, [])).toBe(false);
    expect(flowComplete(flows, ['m.login.registration_token'])).toBe(false);
    expect(flowComplete(flows, ['m.login.registration_token', 'm.login.terms'])).toBe(true);
    expect(flowComplete(flows, ['m.login.dummy'])).toBe(true);
  });
  it('finds the user named by an identifier or the legacy user field', () => {
    expect(identifiedUser({ identifier: { type: 'm.id.user', user: 'alice' } })).toBe('alice');
    expect(identifiedUser({ user: '@alice:x' })).toBe('@alice:x');
    expect(identifiedUser({ identifier: { type: 'm.id.thirdparty', medium: 'email', address: 'a@b' } })).toBeNull();
    expect(identifiedUser({})).toBeNull();
  });
});

describe('password hashes', () => {
  it('verify the password they were made from, and nothing else', async () => {
    const h = await hashPassword('correct horse');
    expect(h).toMatch(/^scrypt\$16384\$8\$1\$/);
    expect(await hashPassword('correct horse')).not.toBe(h);
    expect(await verifyPassword('correct horse', h)).toBe(true);
    expect(await verifyPassword('correct horsE', h)).toBe(false);
    expect(await verifyPassword('x', 'garbage')).toBe(false);
    expect(await verifyPassword('x', 'scrypt$0$8$1$AA$AA')).toBe(false);
  });
});
