/** The `POST /createRoom` body, field by field (create-room-request.ts): what passes, and the error each bad field gets. */
import { describe, expect, it } from 'vitest';
import { parseCreateRoomRequest } from '../../src/rooms/create-room-request';
import { MatrixError } from '../../src/http/errors';
import type { JsonObject } from '../../src/protocol/json';

const CREATOR = '@alice:example.org';
const parse = (body: JsonObject) => parseCreateRoomRequest(body, { serverName: 'example.org', defaultRoomVersion: '12', creator: CREATOR });

function refusal(body: JsonObject): { status: number; errcode: string } {
  try {
    parse(body);
  } catch (e) {
    if (e instanceof MatrixError) return { status: e.status, errcode: e.errcode };
    throw e;
  }
  throw new Error(`accepted: ${JSON.stringify(body)}`);
}

const BAD_JSON = { status: 400, errcode: 'M_BAD_JSON' };

describe('parseCreateRoomRequest', () => {
  it('fills in the defaults for an empty body', () => {
    const r = parse({});
    expect(r).toMatchObject({ visibility: 'private', presetName: 'private_chat', creation: {}, invites: [], threepidInvites: 0, isDirect: false, initialState: [], alias: null });
    expect(r.version.id).toBe('12');
    expect(r.preset.join_rule).toBe('invite');
    expect(parse({ visibility: 'public' }).presetName).toBe('public_chat');
  });

  it('accepts a full, well-typed body', () => {
    const r = parse({
      visibility: 'public', preset: 'trusted_private_chat', room_version: '10', name: 'n', topic: 't', is_direct: true,
      invite: ['@bob:example.org'], room_alias_name: 'lobby',
      creation_content: { type: 'm.space', 'm.federate': false, additional_creators: 'ignored before v12' },
      initial_state: [{ type: 'm.room.encryption', content: { algorithm: 'm.megolm.v1.aes-sha2' } }, { type: 'org.example', state_key: 'k', content: {} }],
      power_level_content_override: { users: { [CREATOR]: 100, '@bob:example.org': 50 }, events: { 'm.room.name': 10 }, ban: 60 },
    });
    expect(r).toMatchObject({ presetName: 'trusted_private_chat', isDirect: true, invites: ['@bob:example.org'], alias: '#lobby:example.org', name: 'n', topic: 't' });
    expect(r.initialState).toEqual([
      { type: 'm.room.encryption', state_key: '', content: { algorithm: 'm.megolm.v1.aes-sha2' } },
      { type: 'org.example', state_key: 'k', content: {} },
    ]);
    // v12: additional_creators that are user ids; the creator need not (may not) be in users.
    expect(parse({ creation_content: { additional_creators: ['@bob:example.org'] }, power_level_content_override: { users: { '@bob:example.org': 50 } } }).version.id).toBe('12');
  });

  it.each<[string, JsonObject]>([
    ['is_direct as a string', { is_direct: 'yes' }],
    ['is_direct as a number', { is_direct: 1 }],
    ['creation_content.type as a number', { creation_content: { type: 5 } }],
    ['creation_content.m.federate as a string', { creation_content: { 'm.federate': 'false' } }],
    ['creation_content.additional_creators not a list (v12)', { creation_content: { additional_creators: '@bob:example.org' } }],
    ['creation_content.additional_creators with a non-user-id (v12)', { creation_content: { additional_creators: ['bob'] } }],
    ['creation_content not an object', { creation_content: [] }],
    ['preset not a string', { preset: 1 }],
    ['an unknown preset', { preset: 'party' }],
    ['a preset that is an Object.prototype key', { preset: 'toString' }],
    ['visibility not public/private', { visibility: 'secret' }],
    ['visibility not a string', { visibility: true }],
    ['name not a string', { name: 5 }],
    ['topic not a string', { topic: { text: 'x' } }],
    ['room_version not a string', { room_version: 12 }],
    ['room_alias_name not a string', { room_alias_name: ['a'] }],
    ['invite not a list', { invite: '@bob:example.org' }],
    ['invite with a non-user-id', { invite: ['bob'] }],
    ['invite with a non-string', { invite: [7] }],
    ['invite_3pid not a list', { invite_3pid: {} }],
    ['invite_3pid with a non-object', { invite_3pid: ['x'] }],
    ['initial_state not a list', { initial_state: {} }],
    ['initial_state entry without content', { initial_state: [{ type: 'm.room.topic' }] }],
    ['initial_state entry with a non-string state_key', { initial_state: [{ type: 'm.room.topic', state_key: 1, content: {} }] }],
    ['initial_state with an m.room.create', { initial_state: [{ type: 'm.room.create', content: {} }] }],
    ['power_level_content_override not an object', { power_level_content_override: 'all' }],
    ['power_level_content_override.ban not an integer (v12)', { power_level_content_override: { ban: '50' } }],
    ['power_level_content_override.ban a float', { power_level_content_override: { ban: 50.5 } }],
    ['power_level_content_override.events not an object', { power_level_content_override: { events: [] } }],
    ['power_level_content_override.events with a non-integer', { power_level_content_override: { events: { 'm.room.name': 'high' } } }],
    ['power_level_content_override.notifications with a non-integer', { power_level_content_override: { notifications: { room: null } } }],
    ['power_level_content_override.users not an object', { power_level_content_override: { users: [] } }],
    ['power_level_content_override.users with a non-user-id key', { power_level_content_override: { users: { bob: 50 } } }],
  ])('refuses %s with 400 M_BAD_JSON', (_name, body) => {
    expect(refusal(body)).toEqual(BAD_JSON);
  });

  it('answers the other errors the spec and Synapse give', () => {
    expect(refusal({ room_version: '99' })).toEqual({ status: 400, errcode: 'M_UNSUPPORTED_ROOM_VERSION' });
    expect(refusal({ room_alias_name: 'a:b' })).toEqual({ status: 400, errcode: 'M_INVALID_PARAM' });
    expect(refusal({ room_alias_name: 'a b' })).toEqual({ status: 400, errcode: 'M_INVALID_PARAM' });
    expect(refusal({ room_alias_name: 'x'.repeat(250) })).toEqual({ status: 400, errcode: 'M_INVALID_PARAM' });
    expect(refusal({ invite_3pid: [{ medium: 'email', address: 'a@b.c' }] })).toEqual({ status: 400, errcode: 'M_MISSING_PARAM' });
    // Before v12, a users map without the creator would leave them powerless mid-creation (Synapse's check).
    expect(refusal({ room_version: '10', power_level_content_override: { users: { '@bob:example.org': 100 } } })).toEqual({ status: 400, errcode: 'M_UNKNOWN' });
  });

  it('reads power levels as the room version does: integer strings before v10, integers after', () => {
    expect(parse({ room_version: '9', power_level_content_override: { ban: '60', users: { [CREATOR]: '100' } } }).version.id).toBe('9');
    expect(refusal({ room_version: '10', power_level_content_override: { ban: '60' } })).toEqual(BAD_JSON);
  });
});
