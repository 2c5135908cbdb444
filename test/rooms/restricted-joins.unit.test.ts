// restrictedJoinAuthoriser against a room reader whose answers change between two reads, as they do
// when an allowed room joined with partial state gets its full state in the middle of a check.
import { describe, expect, it } from 'vitest';
import type { ApiContext } from '../../src/api/context';
import { restrictedJoinAuthoriser } from '../../src/rooms/restricted-joins';

function fakeContext(memberships: (string | null)[]): { ctx: ApiContext; reads: () => number } {
  let reads = 0;
  const room = '!room:a.test';
  const rooms = {
    meta: async () => ({ version: '10' }),
    membership: async (roomId: string) => (roomId === room ? null : memberships[Math.min(reads++, memberships.length - 1)]!),
    currentState: async () => [{ event: { content: { join_rule: 'restricted', allow: [{ type: 'm.room_membership', room_id: '!space:b.test' }] } } }],
    currentStateIds: async () => new Map([['m.room.create\u0000', '$create'], ['m.room.power_levels\u0000', '$pl']]),
    events: async () => [
      { eventId: '$create', event: { type: 'm.room.create', state_key: '', sender: '@alice:a.test', content: { creator: '@alice:a.test', room_version: '10' } } },
      { eventId: '$pl', event: { type: 'm.room.power_levels', state_key: '', sender: '@alice:a.test', content: { users: { '@alice:a.test': 100 }, invite: 0 } } },
    ],
    members: async () => new Map([['@alice:a.test', {}]]),
  };
  // No partial-state entry: the allowed room has its full state (now).
  const redis = { hget: async () => null };
  const ctx = { rooms, redis, keys: { partialStateRooms: () => 'partial-state-rooms' }, config: { serverName: 'a.test' } } as unknown as ApiContext;
  return { ctx, reads: () => reads };
}

describe('restrictedJoinAuthoriser', () => {
  it('reads the membership again when the allowed room is full by the time it checks: a completion between the reads does not turn a member away', async () => {
    // First read: before the room's full state (no member event yet); then the completion.
    const { ctx, reads } = fakeContext([null, 'join']);
    await expect(restrictedJoinAuthoriser(ctx, '!room:a.test', '@bob:b.test')).resolves.toBe('@alice:a.test');
    expect(reads()).toBe(2);
  });

  it('refuses a user who is not in the allowed room at either read (403 M_FORBIDDEN)', async () => {
    const { ctx } = fakeContext([null, null]);
    // Alice (local) is in the allowed room here, so a remote user's membership is known: a refusal.
    (ctx.rooms as unknown as { members: () => Promise<Map<string, object>> }).members = async () => new Map([['@alice:a.test', {}]]);
    await expect(restrictedJoinAuthoriser(ctx, '!room:a.test', '@bob:b.test')).rejects.toMatchObject({ status: 403, errcode: 'M_FORBIDDEN' });
  });
});
