/**
 * Memberships of our users in rooms this server does not have ("out-of-band" memberships, as
 * Synapse calls them): an invite another server sent (`PUT /invite`), a knock our user made on a
 * room elsewhere (`send_knock`), and the leave that ended either (an invite rejected, a knock
 * retracted). Each is kept in the user's shard with what /sync shows of it: the room's stripped
 * state as the remote server gave it plus the member event itself (invite, knock), or the leave
 * event (client format). The user's membership index gets the membership at stream position 0
 * (no event of the room here); out-of-band entries replace each other (a knock becomes an invite,
 * an invite a leave), and any event of the room this server later holds supersedes them.
 *
 * /sync reads them (src/sync/engine.ts): `rooms.invite` and `rooms.knock` from the stripped state
 * when the room's own state has nothing for the user, `rooms.leave` with the leave event as the
 * timeline — so clients drop the invite or knock from their lists, as with Synapse.
 */
import type { ApiContext } from '../api/context';
import { isJsonObject, type JsonObject, type JsonValue } from '../protocol/json';
import { MembershipIndex } from '../readers/membership-index';
import { shardOf } from '../runtime/shards';
import { membershipIndexData } from '../store/keys';

/** How long an out-of-band membership's record is kept. */
const REMOTE_INVITE_TTL_S = 30 * 24 * 3600;
/** At most this many stripped events are kept (a peer may send anything). */
const MAX_STRIPPED = 50;

export type OutOfBandMembership = 'invite' | 'knock' | 'leave';

/** What is kept of an out-of-band membership. */
export interface RemoteMembership {
  membership: OutOfBandMembership;
  /** Stripped state (invite, knock), the member event last; for a leave, the stripped state it ended. */
  state: JsonObject[];
  /** Servers known to be in the room (the inviter's, the one that took the knock): where a leave goes. */
  servers: string[];
  /** The leave event, client format (leave only). */
  event?: JsonObject;
}

function key(ctx: ApiContext, userId: string, roomId: string): string {
  return ctx.keys.shard('user', shardOf(userId, ctx.shardCounts.user)).data(membershipIndexData.remoteInvite(userId, roomId));
}

/** A stripped state event (type, state_key, sender, content), or null for anything else. */
export function strippedEvent(e: JsonValue | undefined): JsonObject | null {
  if (!isJsonObject(e) || typeof e.type !== 'string' || typeof e.state_key !== 'string' || typeof e.sender !== 'string' || !isJsonObject(e.content)) return null;
  return { type: e.type, state_key: e.state_key, sender: e.sender, content: e.content };
}

/** Stripped events from what a peer sent (anything that is not one is left out). */
export function strippedEvents(given: JsonValue | undefined): JsonObject[] {
  return (Array.isArray(given) ? given : []).map((e) => strippedEvent(e)).filter((e): e is JsonObject => e !== null);
}

/** Keep an out-of-band membership and index it (position 0), waking the user's /sync. */
export async function storeRemoteMembership(ctx: ApiContext, userId: string, roomId: string, kept: RemoteMembership): Promise<void> {
  const value: RemoteMembership = { ...kept, state: kept.state.slice(-MAX_STRIPPED), servers: kept.servers.slice(0, 10) };
  await ctx.redis.set(key(ctx, userId, roomId), JSON.stringify(value), 'EX', REMOTE_INVITE_TTL_S);
  await new MembershipIndex(ctx.redis, ctx.keys, ctx.shardCounts.user).record(userId, roomId, 0, kept.membership);
}

/** An invite another server sent our user (the inviter's server is where a rejection goes). */
export async function storeRemoteInvite(ctx: ApiContext, userId: string, roomId: string, stripped: JsonObject[], inviterServer: string): Promise<void> {
  await storeRemoteMembership(ctx, userId, roomId, { membership: 'invite', state: stripped, servers: [inviterServer] });
}

/** The out-of-band membership kept for the user in the room, if any. */
export async function remoteMembership(ctx: ApiContext, userId: string, roomId: string): Promise<RemoteMembership | null> {
  const text = await ctx.redis.get(key(ctx, userId, roomId));
  if (!text) return null;
  const v = JSON.parse(text) as JsonValue;
  // Kept before knocks came: a bare array of an invite's stripped state.
  if (Array.isArray(v)) return { membership: 'invite', state: v.filter(isJsonObject), servers: [] };
  if (!isJsonObject(v) || (v.membership !== 'invite' && v.membership !== 'knock' && v.membership !== 'leave')) return null;
  return {
    membership: v.membership,
    state: Array.isArray(v.state) ? v.state.filter(isJsonObject) : [],
    servers: Array.isArray(v.servers) ? v.servers.filter((s): s is string => typeof s === 'string') : [],
    ...(isJsonObject(v.event) ? { event: v.event } : {}),
  };
}

/** The stripped state /sync shows for a pending remote invite or knock, or null. */
export async function remoteStrippedState(ctx: ApiContext, userId: string, roomId: string, membership: 'invite' | 'knock'): Promise<JsonObject[] | null> {
  const kept = await remoteMembership(ctx, userId, roomId);
  return kept?.membership === membership ? kept.state : null;
}

/**
 * What /sync's `rooms.leave` shows for an invite rejected or a knock retracted on a room this
 * server does not have: the leave event as the timeline, no state (Synapse answers the same).
 */
export async function remoteLeaveEntry(ctx: ApiContext, userId: string, roomId: string): Promise<JsonObject | null> {
  const kept = await remoteMembership(ctx, userId, roomId);
  if (kept?.membership !== 'leave' || !kept.event) return null;
  return { timeline: { events: [kept.event], limited: false }, state: { events: [] }, account_data: { events: [] } };
}

/** The room is here now (our user joined it): what was kept for it out of band goes. */
export async function dropRemoteMembership(ctx: ApiContext, userId: string, roomId: string): Promise<void> {
  await ctx.redis.del(key(ctx, userId, roomId));
}
