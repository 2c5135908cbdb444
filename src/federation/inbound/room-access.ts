/**
 * What every inbound federation path asks of a room before it serves or takes anything for
 * another server: the room's version, whether its server ACL (`m.room.server_acl`, current state)
 * lets that server take part, and whether that server is in the room (one of its users joined in
 * the current state, as Synapse's `is_host_in_room`) or the room's history is world_readable.
 */
import { MatrixError } from '../../http/errors';
import { effectiveHistoryVisibility } from '../../protocol/history-visibility';
import { isJsonObject, type JsonValue } from '../../protocol/json';
import { requireRoomVersion, type RoomVersion } from '../../protocol/room-versions';
import { compileServerAcl, serverAclAllowsCompiled } from '../../protocol/server-acl';
import { isUserOfServer } from '../../rooms/visibility';
import type { RoomReader } from '../../store/room-reader';

export interface RoomForServer {
  roomId: string;
  version: RoomVersion;
  /** Whether the room's server ACL lets a server take part (checked against its current state). */
  aclAllows(serverName: string): boolean;
}

/** The room as it stands for federation, or null when this server does not know it. */
export async function roomForServer(rooms: RoomReader, roomId: string): Promise<RoomForServer | null> {
  const meta = await rooms.meta(roomId);
  if (!meta?.version) return null;
  let version: RoomVersion;
  try {
    version = requireRoomVersion(meta.version);
  } catch {
    return null;
  }
  const [aclEvent] = await rooms.currentState(roomId, { type: 'm.room.server_acl', stateKey: '' });
  const content = aclEvent?.event.content as JsonValue | undefined;
  // 1. No ACL event (or one whose content is not an object: nothing to read): allow.
  const acl = aclEvent && isJsonObject(content) ? compileServerAcl(content) : null;
  return { roomId, version, aclAllows: (serverName) => acl === null || serverAclAllowsCompiled(acl, serverName) };
}

/**
 * Whether one of `serverName`'s users is joined to the room (current state). In a room we joined
 * with partial state (faster joins), whose member events are not all here yet, the servers the
 * resident named in `servers_in_room` count as in the room too.
 */
export async function serverInRoom(rooms: RoomReader, roomId: string, serverName: string): Promise<boolean> {
  const joined = await rooms.members(roomId, 'join');
  for (const userId of joined.keys()) if (isUserOfServer(userId, serverName)) return true;
  return (await rooms.partialStateServers(roomId))?.includes(serverName) ?? false;
}

/**
 * The gate of the read endpoints: the room exists, the ACL lets `origin` in, and `origin` has a
 * user in the room (or, with `worldReadable`, the room's history is world_readable). Anything
 * else is 403 M_FORBIDDEN — an unknown room too, so room existence does not leak.
 */
export async function requireServerAccess(rooms: RoomReader, roomId: string, origin: string, opts: { worldReadable?: boolean } = {}): Promise<RoomForServer> {
  const room = await roomForServer(rooms, roomId);
  if (!room) throw new MatrixError(403, 'M_FORBIDDEN', 'Host not in room');
  if (!room.aclAllows(origin)) throw new MatrixError(403, 'M_FORBIDDEN', 'Server is banned from this room by its server ACL');
  if (await serverInRoom(rooms, roomId, origin)) return room;
  if (opts.worldReadable) {
    const [hv] = await rooms.currentState(roomId, { type: 'm.room.history_visibility', stateKey: '' });
    if (effectiveHistoryVisibility(hv?.event.content as JsonValue | undefined) === 'world_readable') return room;
  }
  throw new MatrixError(403, 'M_FORBIDDEN', 'Host not in room');
}
