/**
 * The profile fields a local user's membership events carry (joins, invites, knocks and profile
 * changes, as Synapse sends them): read from the user's stored profile. Used by the membership
 * workflows (src/rooms/join.ts) and the profile API's propagation into rooms.
 */
import type { JsonObject } from '../protocol/json';
import type { ApiContext } from '../api/context';
import { userData } from '../store/keys';
import { userKey } from '../store/shard-keys';

/** The standard profile fields (the ones membership events carry). */
export const PROFILE_FIELDS = ['displayname', 'avatar_url'] as const;
export type ProfileField = (typeof PROFILE_FIELDS)[number];

/** A local user's stored profile (no account checks). */
export async function storedProfile(ctx: ApiContext, userId: string): Promise<Partial<Record<ProfileField, string>>> {
  const stored = await ctx.redis.hgetall(userKey(ctx, userId, userData.profile(userId)));
  const profile: Partial<Record<ProfileField, string>> = {};
  for (const f of PROFILE_FIELDS) if (stored[f] !== undefined && stored[f] !== '') profile[f] = stored[f];
  return profile;
}

/** Membership content with the profile fields set as in `profile` (absent ones removed). */
export function withProfile(content: JsonObject, profile: Partial<Record<ProfileField, string>>): JsonObject {
  const out: JsonObject = { ...content };
  for (const f of PROFILE_FIELDS) {
    if (profile[f] !== undefined) out[f] = profile[f]!;
    else delete out[f];
  }
  return out;
}
