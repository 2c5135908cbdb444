import { describe, expect, it } from 'vitest';
import { redactEvent } from '../../src/protocol/redaction';
import { requireRoomVersion } from '../../src/protocol/room-versions';
import type { JsonObject } from '../../src/protocol/json';

/** One event of each type with every interesting content key, plus junk. */
const CONTENT: Record<string, JsonObject> = {
  'm.room.member': { membership: 'join', displayname: 'x', join_authorised_via_users_server: '@a:b', third_party_invite: { signed: { token: 't' }, display_name: 'd' } },
  'm.room.create': { creator: '@a:b', room_version: '9', 'm.federate': false },
  'm.room.join_rules': { join_rule: 'restricted', allow: [{ type: 'm.room_membership', room_id: '!r:b' }], other: 1 },
  'm.room.power_levels': { ban: 50, events: {}, events_default: 0, invite: 0, kick: 50, redact: 50, state_default: 50, users: {}, users_default: 0, notifications: { room: 50 }, historical: 100 },
  'm.room.aliases': { aliases: ['#a:b'] },
  'm.room.history_visibility': { history_visibility: 'shared', other: 1 },
  'm.room.redaction': { redacts: '$e', reason: 'spam' },
  'm.room.message': { body: 'hi', msgtype: 'm.text' },
};

/** Expected kept content keys per redaction rule set (content/rooms/fragments/v*-redactions.md). */
const KEPT: Record<string, Record<string, string[]>> = {
  v1: { 'm.room.member': ['membership'], 'm.room.create': ['creator'], 'm.room.join_rules': ['join_rule'], 'm.room.power_levels': ['ban', 'events', 'events_default', 'kick', 'redact', 'state_default', 'users', 'users_default'], 'm.room.aliases': ['aliases'], 'm.room.history_visibility': ['history_visibility'], 'm.room.redaction': [], 'm.room.message': [] },
};
KEPT.v6 = { ...KEPT.v1!, 'm.room.aliases': [] };
KEPT.v8 = { ...KEPT.v6!, 'm.room.join_rules': ['join_rule', 'allow'] };
KEPT.v9 = { ...KEPT.v8!, 'm.room.member': ['membership', 'join_authorised_via_users_server'] };
KEPT.v11 = { ...KEPT.v9!, 'm.room.member': ['membership', 'join_authorised_via_users_server', 'third_party_invite'], 'm.room.create': ['creator', 'room_version', 'm.federate'], 'm.room.power_levels': ['ban', 'events', 'events_default', 'invite', 'kick', 'redact', 'state_default', 'users', 'users_default'], 'm.room.redaction': ['redacts'] };

const RULES_BY_VERSION: Record<string, string> = { '1': 'v1', '2': 'v1', '3': 'v1', '4': 'v1', '5': 'v1', '6': 'v6', '7': 'v6', '8': 'v8', '9': 'v9', '10': 'v9', '11': 'v11', '12': 'v11' };

describe('redaction per room version', () => {
  for (const [version, rules] of Object.entries(RULES_BY_VERSION)) {
    it(`room version ${version} uses the ${rules} rules`, () => {
      const v = requireRoomVersion(version);
      expect(v.redaction).toBe(rules);
      for (const [type, content] of Object.entries(CONTENT)) {
        const event: JsonObject = {
          type, content, state_key: '', sender: '@a:b', room_id: '!r:b', event_id: '$e:b', origin: 'b', membership: 'join', prev_state: [],
          origin_server_ts: 1, depth: 1, prev_events: [], auth_events: [], hashes: { sha256: 'h' }, signatures: {}, unsigned: { age: 1 }, redacts: '$x', junk: 1,
        };
        const out = redactEvent(event, v);
        expect(Object.keys(out.content as JsonObject).sort(), `${type} in v${version}`).toEqual([...KEPT[rules]![type]!].sort());
        const top = Object.keys(out).sort();
        const expectedTop = ['auth_events', 'content', 'depth', 'event_id', 'hashes', 'origin_server_ts', 'prev_events', 'room_id', 'sender', 'signatures', 'state_key', 'type'];
        if (rules !== 'v11') expectedTop.push('membership', 'origin', 'prev_state');
        expect(top).toEqual(expectedTop.sort());
        expect(event.content).toBe(content); // input untouched
      }
    });
  }

  it('v11 keeps only `signed` inside third_party_invite', () => {
    const out = redactEvent({ type: 'm.room.member', content: CONTENT['m.room.member']! }, requireRoomVersion('11'));
    expect((out.content as JsonObject).third_party_invite).toEqual({ signed: { token: 't' } });
  });

  it('gives events with no or non-object content an empty content', () => {
    expect(redactEvent({ type: 'm.room.member' }, requireRoomVersion('10')).content).toEqual({});
    expect(redactEvent({ type: 'm.room.member', content: 'x' }, requireRoomVersion('10')).content).toEqual({});
  });

  it('ignores inherited property names as event types', () => {
    expect(redactEvent({ type: 'constructor', content: { a: 1 } }, requireRoomVersion('10')).content).toEqual({});
    expect(redactEvent({ type: 'toString', content: { a: 1 } }, requireRoomVersion('11')).content).toEqual({});
  });
});
