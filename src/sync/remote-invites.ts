/**
 * Invites to rooms this server does not have (server-server API, `PUT /invite`): the room's
 * stripped state, as the inviting server gave it, with the invite event itself (stripped too),
 * kept in the invited user's shard; the user's membership index gets an `invite` entry at stream
 * position 0 (any event of the room this server later holds supersedes it). /sync's
 * `rooms.invite` reads the stripped state from here when the room's own state has no invite
 * for the user (src/sync/engine.ts).
 */
import type { ApiContext } from '../api/context';
import { isJsonObject, type JsonObject, type JsonValue } from '../protocol/json';
import { MembershipIndex } from '../readers/membership-index';
import { shardOf } from '../store/shards';
import { membershipIndexData } from '../store/keys';
import { encodeNotification } from './notify';

/** How long an unanswered remote invite's state is kept. */
const REMOTE_INVITE_TTL_S = 30 * 24 * 3600;
/** At most this many stripped events are kept (a peer may send anything). */
const MAX_STRIPPED = 50;

function key(ctx: ApiContext, userId: string, roomId: string): string {
  return ctx.keys.shard('user', shardOf(userId, ctx.shardCounts.user)).data(membershipIndexData.remoteInvite(userId, roomId));
}

/** A stripped state event (type, state_key, sender, content), or null for anything else. */
export function strippedEvent(e: JsonValue | undefined): JsonObject | null {
  if (!isJsonObject(e) || typeof e.type !== 'string' || typeof e.state_key !== 'string' || typeof e.sender !== 'string' || !isJsonObject(e.content)) return null;
  return { type: e.type, state_key: e.state_key, sender: e.sender, content: e.content };
}

export async function storeRemoteInvite(ctx: ApiContext, userId: string, roomId: string, stripped: JsonObject[]): Promise<void> {
  await ctx.redis.set(key(ctx, userId, roomId), JSON.stringify(stripped.slice(-MAX_STRIPPED)), 'EX', REMOTE_INVITE_TTL_S);
  await new MembershipIndex(ctx.redis, ctx.keys, ctx.shardCounts.user).record(userId, roomId, 0, 'invite');
}

export async function remoteInviteState(ctx: ApiContext, userId: string, roomId: string): Promise<JsonObject[] | null> {
  const text = await ctx.redis.get(key(ctx, userId, roomId));
  if (!text) return null;
  const v = JSON.parse(text) as JsonValue;
  return Array.isArray(v) ? v.filter(isJsonObject) : null;
}

/**
 * The user rejected the invite (or it is otherwise gone): its state and its entry in the user's
 * membership index (position 0: no event of the room here) are dropped.
 */
export async function dropRemoteInvite(ctx: ApiContext, userId: string, roomId: string): Promise<void> {
  const k = ctx.keys.shard('user', shardOf(userId, ctx.shardCounts.user));
  await ctx.redis.del(key(ctx, userId, roomId));
  const current = await ctx.redis.hget(k.data(membershipIndexData.rooms(userId)), roomId);
  if (current === '0:invite') await ctx.redis.hdel(k.data(membershipIndexData.rooms(userId)), roomId);
  await ctx.redis.publish(ctx.keys.syncNotify(), encodeNotification({ users: [userId] })).catch(() => undefined);
}
