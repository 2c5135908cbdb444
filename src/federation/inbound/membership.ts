/**
 * The gate of the membership endpoints (make_join, send_join, make_leave, send_leave): the user
 * belongs to the requesting server (403), the room is known here (404 `M_NOT_FOUND`), and the
 * room's server ACL lets the requester in (403).
 */
import type { ApiContext } from '../../api/context';
import { MatrixError } from '../../http/errors';
import type { SigningKey } from '../../protocol/crypto';
import { serverNameOf } from '../../protocol/event-hashing';
import type { JsonObject } from '../../protocol/json';
import { askRoomFamily } from '../../rooms/ask';
import type { IngestReply } from '../../rooms/model';
import type { RoomReader } from '../../store/room-reader';
import type { ServerKeyStore } from '../keys/key-store';
import { keysForPdus } from './pdu-keys';
import { roomForServer, type RoomForServer } from './room-access';

export async function requireMembershipRoom(rooms: RoomReader, roomId: string, userId: string | null, origin: string): Promise<RoomForServer> {
  if (userId !== null && serverNameOf(userId) !== origin) throw new MatrixError(403, 'M_FORBIDDEN', 'The user does not belong to the requesting server');
  const room = await roomForServer(rooms, roomId);
  if (!room) throw new MatrixError(404, 'M_NOT_FOUND', 'Unknown room');
  if (!room.aclAllows(origin)) throw new MatrixError(403, 'M_FORBIDDEN', 'Server is banned from this room by its server ACL');
  return room;
}

/**
 * Hand a membership event a remote server built (send_join, send_leave) to the room actor's
 * `ingest`, live: the receipt checks (signatures — ours too, when we co-signed —, hashes, auth
 * rules against its auth events, the state before it and the current state). Accepted, or
 * already stored (a retried send_join), it is answered for; anything else is 403 `M_FORBIDDEN`
 * (400 `M_BAD_JSON` when it was dropped as malformed or badly signed). Accepted, it is marked
 * to be sent to the room's other servers by our federation sender.
 */
export async function ingestMembershipEvent(api: ApiContext, keyStore: ServerKeyStore, room: RoomForServer, raw: JsonObject, own: SigningKey, ownServer: string, deadline: number): Promise<void> {
  const keys = await keysForPdus(keyStore, [raw], room.version, deadline);
  keys[ownServer] = { ...keys[ownServer], [own.keyId]: { key: own.publicKeyBase64, validUntilTs: Number.MAX_SAFE_INTEGER } };
  // Only we hear of it (the membership endpoints talk to the resident server alone): the room's
  // other servers get it from us, on behalf of the sender's server.
  const onBehalfOf = typeof raw.sender === 'string' ? serverNameOf(raw.sender) : null;
  const reply = await askRoomFamily<IngestReply>(api, 'room', room.roomId, { op: 'ingest', pdus: [raw], keys, ...(onBehalfOf ? { onBehalfOf } : {}) });
  const r = reply.results[0];
  if (!r) throw new MatrixError(500, 'M_UNKNOWN', 'The room gave no result for the event');
  if (r.status === 'accepted' || r.status === 'duplicate') return;
  if (r.status === 'dropped') throw new MatrixError(400, 'M_BAD_JSON', `The event was refused: ${r.reason ?? 'invalid'}`);
  if (r.status === 'missing') throw new MatrixError(400, 'M_BAD_JSON', `The event refers to events this server does not have: ${(r.missing ?? []).slice(0, 5).join(', ')}`);
  throw new MatrixError(403, 'M_FORBIDDEN', `The event is not allowed (${r.status}): ${r.reason ?? ''}`);
}
