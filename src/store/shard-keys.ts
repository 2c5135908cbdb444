/**
 * Where an actor's records live: the keys of the shard its id hashes to (src/store/shards.ts),
 * for a room, an alias (room family) or a user. Used by the APIs and the workflows under them.
 */
import type { Family } from './shards';
import { shardOf } from './shards';
import type { KeySpace } from './keys';

/** What placing a record needs: the key space and the deployment's shard counts (an ApiContext has both). */
export interface ShardLayout {
  keys: KeySpace;
  shardCounts: Record<Family, number>;
}

/** The server-side home of an alias: the room-family shard it hashes to. */
export function aliasShard(ctx: ShardLayout, alias: string) {
  return ctx.keys.shard('room', shardOf(alias, ctx.shardCounts.room));
}

export function roomShard(ctx: ShardLayout, roomId: string) {
  return ctx.keys.shard('room', shardOf(roomId, ctx.shardCounts.room));
}

/** The key of one of a user's records, on the user's shard. */
export function userKey(ctx: ShardLayout, userId: string, name: string): string {
  return ctx.keys.shard('user', shardOf(userId, ctx.shardCounts.user)).data(name);
}
