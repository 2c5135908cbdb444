// GET /_matrix/federation/v1/hierarchy/{roomId}?suggested_only=
/**
 * A room and its children for another server (server-server API, "Spaces"): not walked further
 * and not paginated — the asking server walks and filters for its user. Each room is shown only
 * if the asking server could see or join it: world-readable history, a `public`, `knock` or
 * `knock_restricted` join rule, one of its users joined (or invited), or, for a restricted room,
 * one of its users in a room the join rule allows; and never when the room's server ACL denies it.
 * The requested room failing that (or unknown here) is 404 M_NOT_FOUND; a child failing it is named in
 * `inaccessible_children`; a child this server is not in is left out (it cannot describe it).
 */
import type { Front } from '../../http/server';
import { MatrixError, errors } from '../../http/errors';
import { effectiveHistoryVisibility } from '../../protocol/history-visibility';
import { isJsonObject, type JsonObject, type JsonValue } from '../../protocol/json';
import { roomForServer } from '../../federation/inbound/room-access';
import { isUserOfServer } from '../../rooms/visibility';
import { localEntry, serverInRoom } from '../client/space-hierarchy';
import { requireRoomId } from '../../http/params';
import { federationRoute } from './auth';
import type { FederationContext } from './context';

export function registerHierarchyRoute(front: Front, ctx: FederationContext): void {
  const api = ctx.api;

  /** Whether `origin` may see the room (see the header); false for a room we are not in. */
  const accessibleTo = async (roomId: string, origin: string): Promise<boolean> => {
    const room = await roomForServer(api.rooms, roomId);
    if (!room || !room.aclAllows(origin)) return false;
    const [[jr], [hv]] = await Promise.all([
      api.rooms.currentState(roomId, { type: 'm.room.join_rules', stateKey: '' }),
      api.rooms.currentState(roomId, { type: 'm.room.history_visibility', stateKey: '' }),
    ]);
    const rules = isJsonObject((jr?.event.content ?? null) as JsonValue) ? (jr!.event.content as JsonObject) : {};
    const rule = rules.join_rule;
    if (rule === 'public' || rule === 'knock' || rule === 'knock_restricted') return true;
    if (effectiveHistoryVisibility(hv?.event.content as JsonValue | undefined) === 'world_readable') return true;
    if (await serverInRoom(api, roomId, origin)) return true;
    const members = await api.rooms.members(roomId, 'invite');
    for (const u of members.keys()) if (isUserOfServer(u, origin)) return true;
    if ((rule === 'restricted' || rule === 'knock_restricted') && Array.isArray(rules.allow)) {
      for (const a of rules.allow) {
        if (isJsonObject(a) && a.type === 'm.room_membership' && typeof a.room_id === 'string' && (await serverInRoom(api, a.room_id, origin))) return true;
      }
    }
    return false;
  };

  federationRoute(front, ctx, 'GET', '/_matrix/federation/v1/hierarchy/:roomId', async (req, caller) => {
    const roomId = requireRoomId(req.params.roomId);
    const raw = req.query.suggested_only;
    if (raw !== undefined && raw !== 'true' && raw !== 'false') throw errors.invalidParam('suggested_only must be true or false');
    const suggestedOnly = raw === 'true';
    if (!(await serverInRoom(api, roomId, ctx.config.serverName)) || !(await accessibleTo(roomId, caller.origin))) {
      throw new MatrixError(404, 'M_NOT_FOUND', `Unknown room: ${roomId}`);
    }
    const room = await localEntry(api, roomId, suggestedOnly, true);
    const children: JsonObject[] = [];
    const inaccessible: string[] = [];
    for (const c of room.children_state as JsonObject[]) {
      const childId = String(c.state_key);
      if (childId === roomId || !(await serverInRoom(api, childId, ctx.config.serverName))) continue;
      if (await accessibleTo(childId, caller.origin)) children.push(await localEntry(api, childId, suggestedOnly, false));
      else inaccessible.push(childId);
    }
    return { body: { room, children, inaccessible_children: inaccessible } };
  });
}
