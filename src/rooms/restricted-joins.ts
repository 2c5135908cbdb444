/**
 * Restricted joins (room versions 8+: join rule `restricted`, 10+:
 * `knock_restricted`). A user who is not invited may join when they are joined to one of the
 * rooms the join rules' `allow` list names; the resident server vouches for that by naming, in
 * the join's `join_authorised_via_users_server`, one of its users who could invite them — the
 * authorization rules then check that user's power (the allow-list membership itself is this
 * server's check, made here). Like Synapse, the local joined member with the highest power level
 * is chosen, and only if that level reaches `invite`.
 *
 * Memberships in an allowed room are known here only while one of our users is in it (federation
 * brings its state then); asked by another server (make_join) about a room it is not in, this
 * server answers M_UNABLE_TO_AUTHORISE_JOIN so the joining server tries another resident.
 */
import { MatrixError } from '../http/errors';
import { serverOf } from '../protocol/identifiers';
import { requireRoomVersion } from '../protocol/room-versions';
import { isJsonObject, type JsonObject, type JsonValue } from '../protocol/json';
import type { ApiContext } from '../api/context';
import { currentPower } from './power';
import { partialStateOf, waitForFullState } from './partial-state';

/** How long a restricted join waits for an allowed room joined with partial state to be complete. */
const ALLOWED_ROOM_FULL_STATE_WAIT_MS = 30_000;

/**
 * The user to name in `join_authorised_via_users_server` for `userId` joining `roomId`, or null
 * when the join needs none (not a restricted room, or the user is already invited or joined).
 * 403 M_FORBIDDEN when the user is in none of the allowed rooms; 400 M_UNABLE_TO_AUTHORISE_JOIN
 * when the user is remote and this server is not in every allowed room; 400 M_UNABLE_TO_GRANT_JOIN
 * when no local member could invite them.
 */
export async function restrictedJoinAuthoriser(ctx: ApiContext, roomId: string, userId: string): Promise<string | null> {
  const meta = await ctx.rooms.meta(roomId);
  if (!meta?.version) return null;
  const version = requireRoomVersion(meta.version);
  if (!version.restrictedJoins) return null;
  const current = await ctx.rooms.membership(roomId, userId);
  if (current === 'join' || current === 'invite') return null;
  const [rules] = await ctx.rooms.currentState(roomId, { type: 'm.room.join_rules', stateKey: '' });
  const content = isJsonObject(rules?.event.content as JsonValue) ? (rules!.event.content as JsonObject) : {};
  const rule = content.join_rule;
  if (rule !== 'restricted' && !(rule === 'knock_restricted' && version.knockRestricted)) return null;

  // 1. The user must be joined to one of the allowed rooms.
  const allowed = (Array.isArray(content.allow) ? content.allow : [])
    .filter((a): a is JsonObject => isJsonObject(a) && a.type === 'm.room_membership' && typeof a.room_id === 'string')
    .map((a) => a.room_id as string);
  let member = false;
  let unknown: string | null = null;
  for (const r of allowed) {
    let m = await ctx.rooms.membership(r, userId);
    // An allowed room joined with partial state (faster joins) may lack the user's member event:
    // wait a while for its full state (Synapse's membership reads wait for it too); still partial,
    // this server cannot tell, and another resident may.
    if (m !== 'join') {
      if (await partialStateOf(ctx, r)) {
        if (await waitForFullState(ctx, r, ALLOWED_ROOM_FULL_STATE_WAIT_MS)) m = await ctx.rooms.membership(r, userId);
        else unknown ??= r;
      } else {
        // Full now, but perhaps not at the read above: the room may have got its full state in
        // between (the completion writes the members before it drops the partial-state entry),
        // and the user's member event with it. Read again rather than refuse on the older read.
        m = await ctx.rooms.membership(r, userId);
      }
    }
    if (m === 'join') {
      member = true;
      break;
    }
  }
  if (!member && unknown) throw new MatrixError(400, 'M_UNABLE_TO_AUTHORISE_JOIN', `This server does not know the members of ${unknown} yet, so it cannot tell whether you are one`);
  if (!member) {
    // A user of another server (make_join) may be in an allowed room this server is not in, so
    // its memberships there are unknown here: the spec's 400 M_UNABLE_TO_AUTHORISE_JOIN tells the
    // joining server to ask another resident (which may be in it), where a 403 would end the join.
    if (serverOf(userId) !== ctx.config.serverName) {
      for (const r of allowed) {
        const ours = [...(await ctx.rooms.members(r, 'join')).keys()].some((u) => serverOf(u) === ctx.config.serverName);
        if (!ours) throw new MatrixError(400, 'M_UNABLE_TO_AUTHORISE_JOIN', `This server is not in ${r}, so it cannot tell whether you are`);
      }
    }
    const hint = rule === 'knock_restricted' ? ' You may knock instead.' : '';
    throw new MatrixError(403, 'M_FORBIDDEN', `You do not belong to any of the required rooms/spaces to join this room.${hint}`);
  }

  // 2. A local joined member who can invite vouches for the join.
  const power = await currentPower(ctx, roomId);
  if (!power) throw new MatrixError(404, 'M_NOT_FOUND', 'Unknown room');
  const local = [...(await ctx.rooms.members(roomId, 'join')).keys()].filter((u) => serverOf(u) === ctx.config.serverName).sort();
  let best: { user: string; level: number } | null = null;
  for (const u of local) {
    const level = power.userLevel(u);
    if (!best || level > best.level) best = { user: u, level };
  }
  if (!best || best.level < power.invite) {
    throw new MatrixError(400, 'M_UNABLE_TO_GRANT_JOIN', 'Unable to find a user which could issue an invite');
  }
  return best.user;
}
