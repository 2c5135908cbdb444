/**
 * The pure checks of discovery over federation: `/publicRooms` requests as the client API and
 * federation take them (GET query, POST body), and another server's `/hierarchy` answer as we
 * accept it (what is malformed is dropped, a wrong room is refused).
 */
import { describe, expect, it } from 'vitest';
import { networkOf, parsePublicRoomsBody, parsePublicRoomsQuery } from '../../src/api/client/directory';
import { checkedHierarchy } from '../../src/api/federation/remote-hierarchy';
import { MatrixError } from '../../src/http/errors';
import type { JsonValue } from '../../src/protocol/json';

const errcode = (f: () => unknown): string | undefined => {
  try {
    f();
  } catch (e) {
    if (e instanceof MatrixError) return e.errcode;
    throw e;
  }
  return undefined;
};

describe('publicRooms requests', () => {
  it('GET: limit, since, include_all_networks, third_party_instance_id', () => {
    expect(parsePublicRoomsQuery({ limit: '3', since: 'n1_IQ', include_all_networks: 'false' })).toEqual({ query: { limit: 3, since: 'n1_IQ' }, includeAllNetworks: false });
    expect(parsePublicRoomsQuery({ include_all_networks: 'true' }).includeAllNetworks).toBe(true);
    expect(parsePublicRoomsQuery({ third_party_instance_id: 'irc' }).thirdPartyInstanceId).toBe('irc');
    expect(errcode(() => parsePublicRoomsQuery({ limit: '-1' }))).toBe('M_INVALID_PARAM');
    expect(errcode(() => parsePublicRoomsQuery({ include_all_networks: 'yes' }))).toBe('M_INVALID_PARAM');
    expect(errcode(() => parsePublicRoomsQuery({ include_all_networks: 'true', third_party_instance_id: 'irc' }))).toBe('M_INVALID_PARAM');
  });

  it('POST: the filter is read (term trimmed, room types with null) and kept as sent for another server', () => {
    const r = parsePublicRoomsBody({ limit: 2, since: '', filter: { generic_search_term: '  blue ', room_types: [null, 'm.space'] } });
    expect(r.query).toEqual({ limit: 2, searchTerm: 'blue', roomTypes: [null, 'm.space'] });
    expect(r.filter).toEqual({ generic_search_term: '  blue ', room_types: [null, 'm.space'] });
    expect(parsePublicRoomsBody({ filter: { generic_search_term: '   ' } }).query.searchTerm).toBeUndefined();
    expect(errcode(() => parsePublicRoomsBody({ limit: 1.5 }))).toBe('M_INVALID_PARAM');
    expect(errcode(() => parsePublicRoomsBody({ filter: { room_types: 'm.space' } }))).toBe('M_INVALID_PARAM');
    expect(errcode(() => parsePublicRoomsBody({ filter: { generic_search_term: 7 } }))).toBe('M_INVALID_PARAM');
    expect(errcode(() => parsePublicRoomsBody({ include_all_networks: true, third_party_instance_id: 'irc' }))).toBe('M_INVALID_PARAM');
    // An instance id is `<appservice id>|<network id>`; anything else is 400 (as Synapse).
    expect(errcode(() => networkOf(parsePublicRoomsBody({ third_party_instance_id: 'irc' })))).toBe('M_INVALID_PARAM');
    expect(errcode(() => networkOf(parsePublicRoomsBody({ third_party_instance_id: 'a|b|c' })))).toBe('M_INVALID_PARAM');
    expect(networkOf(parsePublicRoomsBody({ third_party_instance_id: 'heisenbridge|libera' }))).toEqual({ kind: 'network', appserviceId: 'heisenbridge', networkId: 'libera' });
    expect(networkOf(parsePublicRoomsBody({ include_all_networks: true }))).toEqual({ kind: 'all' });
    expect(networkOf(parsePublicRoomsQuery({}))).toEqual({ kind: 'local' });
  });
});

describe('checkedHierarchy', () => {
  const child = (roomId: string, via: JsonValue = ['b.example']) => ({ type: 'm.space.child', state_key: roomId, content: { via }, sender: '@u:b.example', origin_server_ts: 1 });

  it('keeps the room, its valid child events, its children by id and the inaccessible ones', () => {
    const h = checkedHierarchy('!s:b.example', {
      room: { room_id: '!s:b.example', room_type: 'm.space', num_joined_members: 3, children_state: [child('!a:b.example'), child('!b:b.example', []), child('not-a-room'), { type: 'm.room.name', state_key: '!c:b.example', content: { via: ['x'] } }, child('!d:b.example', [1])] },
      children: [{ room_id: '!a:b.example', name: 'A' }, 'junk', { name: 'no id' }, { room_id: '!s:b.example' }],
      inaccessible_children: ['!secret:b.example', 3],
    });
    expect(h).not.toBeNull();
    expect(h!.room).toEqual({ room_id: '!s:b.example', room_type: 'm.space', num_joined_members: 3 });
    expect(h!.childrenState.map((c) => c.state_key)).toEqual(['!a:b.example']);
    expect([...h!.children.keys()]).toEqual(['!a:b.example']);
    expect([...h!.inaccessible]).toEqual(['!secret:b.example']);
  });

  it('refuses an answer about another room or without a room', () => {
    expect(checkedHierarchy('!s:b.example', { room: { room_id: '!other:b.example' }, children: [], inaccessible_children: [] })).toBeNull();
    expect(checkedHierarchy('!s:b.example', { children: [] })).toBeNull();
    expect(checkedHierarchy('!s:b.example', [])).toBeNull();
    // Missing lists are empty ones.
    expect(checkedHierarchy('!s:b.example', { room: { room_id: '!s:b.example' } })).toMatchObject({ childrenState: [], children: new Map(), inaccessible: new Set() });
  });
});
