/**
 * One of our users invites a user of another server into a room this server has (server-server
 * API, "Inviting to a room", the inviting side). The invitee's server must sign the invite before
 * the room takes it, so the event is built here rather than by the room actor: an unsigned invite
 * on the room's current extremities, checked against the current state with the auth rules
 * (src/rooms/remote-join.ts `membershipTemplate`; 403 when the inviter may not invite), hashed and
 * signed with our key, and sent with `PUT /invite` v2 with the room's stripped state. The event the
 * invitee's server returns (co-signed) must be the one sent; it then goes to the room actor's
 * `ingest`, live, as a peer's event would, and from the room's outbox to the servers in the room.
 *
 * This is how a user who knocked from another server is let in: the invite reaches their server,
 * which shows it to them, and they join.
 */
import { randomBytes } from 'node:crypto';
import { MatrixError } from '../http/errors';
import type { ApiContext } from '../api/context';
import { FederationError, FederationRemoteError } from '../federation/errors';
import { ingestMembershipEvent } from '../federation/inbound/membership';
import { roomForServer } from '../federation/inbound/room-access';
import { computeEventId, hashAndSignEvent } from '../protocol/event-hashing';
import { serverOf } from '../protocol/identifiers';
import { isJsonObject, type JsonObject } from '../protocol/json';
import type { RemoteJoinDeps } from './join-remote';
import { membershipTemplate, strippedRoomState } from './remote-join';

/** Invite `target` (a user of another server) to `roomId` on behalf of our user `sender`. Answers the invite's event id. */
export async function inviteRemoteUser(ctx: ApiContext, deps: RemoteJoinDeps, roomId: string, sender: string, target: string, content: JsonObject): Promise<string> {
  const ours = ctx.config.serverName;
  const room = await roomForServer(ctx.rooms, roomId);
  if (!room) throw new MatrixError(403, 'M_FORBIDDEN', 'You are not in this room (or it does not exist)');
  const destination = serverOf(target);
  if (!destination) throw new MatrixError(400, 'M_INVALID_PARAM', `Not a user id: ${target}`);
  if (!room.aclAllows(destination)) throw new MatrixError(403, 'M_FORBIDDEN', `${destination} is banned from this room by its server ACL`);
  const made = await membershipTemplate(ctx.rooms, roomId, room.version, target, { ...content, membership: 'invite' }, Date.now(), sender);
  if (!made) throw new MatrixError(403, 'M_FORBIDDEN', 'You are not in this room (or it does not exist)');
  if (!made.auth.allowed) throw new MatrixError(403, 'M_FORBIDDEN', `You may not invite ${target}: ${made.auth.reason}`);
  const event: JsonObject = { ...made.template, origin: ours };
  if (room.version.eventIdFormat === 'v1') event.event_id = `$${randomBytes(12).toString('base64url')}:${ours}`;
  const signed = hashAndSignEvent(event, room.version, ours, ctx.signingKey);
  const eventId = computeEventId(signed, room.version);

  let answer: JsonObject;
  try {
    answer = await deps.client.put(
      destination,
      `/_matrix/federation/v2/invite/${encodeURIComponent(roomId)}/${encodeURIComponent(eventId)}`,
      { room_version: room.version.id, event: signed, invite_room_state: await strippedRoomState(ctx.rooms, roomId) },
      { timeoutMs: 30_000 },
    );
  } catch (e) {
    if (e instanceof FederationRemoteError && e.status >= 400 && e.status < 500 && e.errcode) {
      throw new MatrixError(e.status === 401 ? 403 : e.status, e.errcode, e.remoteMessage ?? `${destination} refused the invite`);
    }
    if (e instanceof FederationError) throw new MatrixError(502, 'M_UNKNOWN', `Could not reach ${destination} to invite ${target}: ${e.message}`);
    throw e;
  }
  const returned = answer.event;
  let sameEvent = false;
  try {
    sameEvent = isJsonObject(returned) && computeEventId(returned, room.version) === eventId;
  } catch {
    sameEvent = false;
  }
  if (!sameEvent) throw new MatrixError(502, 'M_UNKNOWN', `${destination} answered the invite with another event`);
  await ingestMembershipEvent(ctx, deps.keyStore, room, returned as JsonObject, ctx.signingKey, ours, Date.now() + 10_000);
  return eventId;
}
