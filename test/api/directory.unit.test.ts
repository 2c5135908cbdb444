/** The pure parts of the room and user directories: ordering, filtering, page tokens, ranking. */
import { describe, expect, it } from 'vitest';
import { pageDirectory, type RoomSummary } from '../../src/api/client/directory';
import { matchRank, searchUsers } from '../../src/api/client/user-directory';

const room = (id: string, members: number, extra: Partial<RoomSummary> = {}): RoomSummary => ({ room_id: id, num_joined_members: members, world_readable: false, guest_can_join: false, ...extra });
const ids = (page: Record<string, unknown>) => (page.chunk as RoomSummary[]).map((r) => r.room_id);

describe('pageDirectory', () => {
  const rooms = [room('!b', 5), room('!a', 5), room('!c', 9), room('!d', 1, { room_type: 'm.space', name: 'Space Catalogue' }), room('!e', 2, { topic: 'all about CATS' })];

  it('orders by joined members, then room id, and counts what the filter left', () => {
    expect(ids(pageDirectory(rooms, {}))).toEqual(['!c', '!a', '!b', '!e', '!d']);
    const page = pageDirectory(rooms, { searchTerm: 'cat' });
    expect(ids(page)).toEqual(['!e', '!d']);
    expect(page.total_room_count_estimate).toBe(2);
    expect(page.next_batch).toBeUndefined();
    expect(ids(pageDirectory(rooms, { searchTerm: '!a' }))).toEqual(['!a']);
  });

  it('filters by room type, null standing for rooms without one', () => {
    expect(ids(pageDirectory(rooms, { roomTypes: ['m.space'] }))).toEqual(['!d']);
    expect(ids(pageDirectory(rooms, { roomTypes: [null] }))).toEqual(['!c', '!a', '!b', '!e']);
    expect(ids(pageDirectory(rooms, { roomTypes: [] }))).toEqual([]);
  });

  it('pages forwards and back with keys that survive rooms appearing before the edge', () => {
    const p1 = pageDirectory(rooms, { limit: 2 });
    expect(ids(p1)).toEqual(['!c', '!a']);
    expect(p1.prev_batch).toBeUndefined();
    const p2 = pageDirectory(rooms, { limit: 2, since: p1.next_batch as string });
    expect(ids(p2)).toEqual(['!b', '!e']);
    // A room published meanwhile above the edge does not shift the next page.
    const grown = [...rooms, room('!z', 50)];
    const p3 = pageDirectory(grown, { limit: 2, since: p2.next_batch as string });
    expect(ids(p3)).toEqual(['!d']);
    expect(p3.next_batch).toBeUndefined();
    const back = pageDirectory(grown, { limit: 2, since: p3.prev_batch as string });
    expect(ids(back)).toEqual(['!b', '!e']);
    const first = pageDirectory(grown, { limit: 2, since: back.prev_batch as string });
    expect(ids(first)).toEqual(['!c', '!a']);
    expect(first.prev_batch).toBeDefined(); // !z is now before them
  });

  it('refuses malformed tokens', () => {
    expect(() => pageDirectory(rooms, { since: 'x1_abc' })).toThrow(/Malformed since token/);
    expect(() => pageDirectory(rooms, { since: 'n_abc' })).toThrow(/Malformed since token/);
  });
});

describe('user directory ranking', () => {
  const users = [
    { user_id: '@zed:test', display_name: 'Alice Zed' },
    { user_id: '@alice:test' },
    { user_id: '@malice:test', display_name: 'Mal', avatar_url: 'mxc://test/m' },
    { user_id: '@bob:test', display_name: 'alice' },
  ];

  it('ranks exact matches, then prefixes (localpart or a word of the name), then substrings', () => {
    expect(matchRank(users[3]!, 'ALICE')).toBe(0);
    expect(matchRank(users[1]!, 'alice')).toBe(1);
    expect(matchRank(users[0]!, 'alice')).toBe(1);
    expect(matchRank(users[2]!, 'alice')).toBe(2);
    expect(matchRank(users[2]!, 'carol')).toBeNull();
  });

  it('orders by rank, then profile information, then user id; says when the limit cut the list', () => {
    expect(searchUsers(users, 'alice', 10)).toEqual({ results: [users[3], users[0], users[1], users[2]], limited: false });
    expect(searchUsers(users, 'alice', 2)).toEqual({ results: [users[3], users[0]], limited: true });
    expect(searchUsers(users, 'nobody', 2)).toEqual({ results: [], limited: false });
  });
});
