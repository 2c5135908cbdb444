/**
 * User directory search (users.yaml): `POST /user_directory/search`. Which users a requester may
 * find follows Synapse's default (`search_all_users: false`) and the spec's minimum: users who
 * share a room with the requester, and users joined to rooms with a `public` join rule or
 * `world_readable` history (the set the membership index reader keeps) or published in the room
 * directory. Matching is case-insensitive on the user id and the display name; local users'
 * names and avatars come from their profiles, remote users' from their membership events.
 */
import { errors } from '../../http/errors';
import type { Front } from '../../http/server';
import { isJsonObject, type JsonObject, type JsonValue } from '../../protocol/json';
import { serverOf } from '../../protocol/identifiers';
import { MembershipIndex } from '../../readers/membership-index';
import { requireUser } from './auth';
import { readAccount } from './accounts-common';
import type { ApiContext } from '../context';
import { storedProfile } from '../../rooms/member-profile';
import { bodyObject, clientRoute } from './room-common';

const DEFAULT_LIMIT = 10;
const MAX_LIMIT = 1000;

export interface DirectoryUser {
  user_id: string;
  display_name?: string;
  avatar_url?: string;
}

/**
 * Rank of a match (lower is better), or null for no match: an exact user id or display name;
 * the localpart or a word of the display name starting with the term; anything containing it.
 */
export function matchRank(u: DirectoryUser, term: string): number | null {
  const t = term.toLowerCase();
  const id = u.user_id.toLowerCase();
  const name = u.display_name?.toLowerCase();
  if (id === t || name === t) return 0;
  if (id.startsWith(t) || id.startsWith(`@${t}`) || (name !== undefined && name.split(/\s+/).some((w) => w.startsWith(t)))) return 1;
  if (id.includes(t) || (name !== undefined && name.includes(t))) return 2;
  return null;
}

/** Matching users, best first; users with profile information before those without, then by id. */
export function searchUsers(users: DirectoryUser[], term: string, limit: number): { results: DirectoryUser[]; limited: boolean } {
  const ranked: { u: DirectoryUser; rank: number }[] = [];
  for (const u of users) {
    const rank = matchRank(u, term);
    if (rank !== null) ranked.push({ u, rank });
  }
  const info = (u: DirectoryUser) => (u.display_name !== undefined ? 0 : 1) + (u.avatar_url !== undefined ? 0 : 1);
  ranked.sort((a, b) => a.rank - b.rank || info(a.u) - info(b.u) || (a.u.user_id < b.u.user_id ? -1 : a.u.user_id > b.u.user_id ? 1 : 0));
  return { results: ranked.slice(0, limit).map((r) => r.u), limited: ranked.length > limit };
}

export function registerUserDirectoryRoutes(front: Front, ctx: ApiContext): void {
  const index = new MembershipIndex(ctx.redis, ctx.keys, ctx.shardCounts.user);

  clientRoute(front, 'POST', '/user_directory/search', async (req) => {
    const me = await requireUser(ctx, req);
    const body = bodyObject(req);
    if (typeof body.search_term !== 'string') throw errors.badJson('search_term must be a string');
    const term = body.search_term.trim();
    let limit = DEFAULT_LIMIT;
    if (body.limit !== undefined && body.limit !== null) {
      if (typeof body.limit !== 'number' || !Number.isInteger(body.limit) || body.limit < 0) throw errors.invalidParam('limit must be a non-negative integer');
      limit = Math.min(body.limit, MAX_LIMIT);
    }
    if (term === '') return { body: { results: [], limited: false } };

    // 1. The rooms whose members the requester may find.
    const rooms = new Set<string>((await index.rooms(me.userId, 'join')).map((r) => r.roomId));
    for (const id of await ctx.redis.smembers(ctx.keys.directoryVisibleRooms())) rooms.add(id);
    for (const id of await ctx.redis.smembers(ctx.keys.publicRooms())) rooms.add(id);

    // 2. Their joined members (a remote user's name and avatar from one membership event).
    const candidates = new Map<string, DirectoryUser>();
    const remote = new Map<string, string>();
    for (const roomId of rooms) {
      for (const userId of (await ctx.rooms.members(roomId, 'join')).keys()) {
        if (candidates.has(userId)) continue;
        candidates.set(userId, { user_id: userId });
        if (serverOf(userId) !== ctx.config.serverName) remote.set(userId, roomId);
      }
    }

    // 3. Names: match cheaply on the user id first, then read the profiles needed for names.
    const users: DirectoryUser[] = [];
    await Promise.all([...candidates.values()].map(async (u) => {
      if (serverOf(u.user_id) === ctx.config.serverName) {
        const account = await readAccount(ctx, u.user_id);
        if (account?.x) return; // deactivated
        const p = await storedProfile(ctx, u.user_id);
        if (p.displayname !== undefined) u.display_name = p.displayname;
        if (p.avatar_url !== undefined) u.avatar_url = p.avatar_url;
      } else {
        const [e] = await ctx.rooms.currentState(remote.get(u.user_id)!, { type: 'm.room.member', stateKey: u.user_id });
        const c = e?.event.content;
        if (isJsonObject(c as JsonValue)) {
          const { displayname, avatar_url } = c as JsonObject;
          if (typeof displayname === 'string' && displayname !== '') u.display_name = displayname;
          if (typeof avatar_url === 'string' && avatar_url !== '') u.avatar_url = avatar_url;
        }
      }
      users.push(u);
    }));
    return { body: searchUsers(users, term, limit) };
  });
}
