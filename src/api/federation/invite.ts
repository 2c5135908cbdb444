// PUT /_matrix/federation/v2/invite/{roomId}/{eventId}
// PUT /_matrix/federation/v1/invite/{roomId}/{eventId}
/**
 * Another server invites one of our users into a room (server-server API, "Inviting to a room").
 * The event must be an `m.room.member` invite of a user of this server, sent by a user of the
 * origin, for the path's room, with the path's event id, in a room version we support (400
 * `M_INCOMPATIBLE_ROOM_VERSION` otherwise), with a good content hash and the origin's signature.
 * This server signs it and answers `{ event }` (v1: `[200, { event }]`).
 *
 * For a room this server does not have, the invite is kept for the user with the stripped state
 * the inviter sent (`invite_room_state`, v2; v1 carries it in `unsigned.invite_room_state`) and
 * the invite event itself, and reaches them in /sync's `rooms.invite` (src/sync/remote-invites.ts).
 * A room an admin blocked (src/rooms/blocked.ts) is refused with 403, as Synapse does.
 * The same for a room this server has but none of our users is joined to (its copy stopped being
 * updated when they left). For a room one of our users is in, the invite also comes in the
 * inviter's transactions, through the room actor like any event; nothing is kept here.
 */
import { MatrixError } from '../../http/errors';
import type { Front, Request } from '../../http/server';
import { keysForPdus } from '../../federation/inbound/pdu-keys';
import { roomForServer, serverInRoom } from '../../federation/inbound/room-access';
import { decodeBase64 } from '../../protocol/base64';
import { checkContentHash, computeEventId, serverNameOf, signEventOnly, verifyEventSignature } from '../../protocol/event-hashing';
import { isJsonObject, type JsonObject, type JsonValue } from '../../protocol/json';
import { checkPduFormat } from '../../protocol/pdu-limits';
import { getRoomVersion } from '../../protocol/room-versions';
import { assertRoomNotBlocked } from '../../rooms/blocked';
import { storeRemoteInvite, strippedEvent, strippedEvents } from '../../sync/remote-invites';
import { federationRoute, type FederationCaller } from './auth';
import type { FederationContext } from './context';

export function registerInviteRoutes(front: Front, ctx: FederationContext): void {
  const invite = async (req: Request, caller: FederationCaller, v: 1 | 2): Promise<JsonObject> => {
    const roomId = req.params.roomId ?? '';
    const eventId = req.params.eventId ?? '';
    const body = caller.body;
    if (!isJsonObject(body)) throw new MatrixError(400, 'M_BAD_JSON', 'The body must be a JSON object');
    const raw = v === 2 ? body.event : body;
    if (!isJsonObject(raw)) throw new MatrixError(400, 'M_BAD_JSON', 'No event');
    const versionId = v === 2 ? body.room_version : '1';
    const version = typeof versionId === 'string' ? getRoomVersion(versionId) : undefined;
    if (!version) throw new MatrixError(400, 'M_INCOMPATIBLE_ROOM_VERSION', `Room version ${JSON.stringify(versionId)} is not supported here`, { room_version: versionId });
    const problems = checkPduFormat(raw, version);
    if (problems.length) throw new MatrixError(400, 'M_BAD_JSON', `Not a valid event: ${problems.join('; ')}`);
    const content = raw.content as JsonObject;
    if (raw.type !== 'm.room.member' || content.membership !== 'invite') throw new MatrixError(400, 'M_BAD_JSON', 'Not an invite');
    if (raw.room_id !== roomId) throw new MatrixError(400, 'M_BAD_JSON', 'The event is for another room');
    const invitee = raw.state_key;
    if (typeof invitee !== 'string' || serverNameOf(invitee) !== ctx.config.serverName) throw new MatrixError(403, 'M_FORBIDDEN', 'The invitee is not a user of this server');
    if (typeof raw.sender !== 'string' || serverNameOf(raw.sender) !== caller.origin) throw new MatrixError(403, 'M_FORBIDDEN', 'The inviter is not a user of the requesting server');
    if (computeEventId(raw, version) !== eventId) throw new MatrixError(400, 'M_BAD_JSON', 'The event id does not match the path');
    if (!checkContentHash(raw)) throw new MatrixError(400, 'M_BAD_JSON', 'The content hash does not match');
    const keys = await keysForPdus(ctx.keyStore, [raw], version, Date.now() + 10_000);
    const sigs = isJsonObject(raw.signatures) ? raw.signatures[caller.origin] : undefined;
    const signed = isJsonObject(sigs) && Object.keys(sigs).some((keyId) => {
      const k = keys[caller.origin]?.[keyId];
      return !!k && verifyEventSignature(raw, version, caller.origin, keyId, decodeBase64(k.key)).ok;
    });
    if (!signed) throw new MatrixError(403, 'M_FORBIDDEN', 'The invite is not signed by the requesting server');
    // A room an admin blocked takes no invites, from other servers either (as Synapse: 403).
    await assertRoomNotBlocked(ctx.api, roomId);

    const event = signEventOnly(raw, version, ctx.config.serverName, ctx.api.signingKey);
    // Kept out of band unless one of our users is joined: a room we have but all our users left
    // gets no transactions from its servers any more (our copy is stale), so the invite would not
    // reach the invitee through the room actor either.
    const ours = ctx.config.serverName;
    if (!(await roomForServer(ctx.api.rooms, roomId)) || !(await serverInRoom(ctx.api.rooms, roomId, ours))) {
      const given = v === 2 ? body.invite_room_state : isJsonObject(raw.unsigned) ? raw.unsigned.invite_room_state : undefined;
      const stripped = strippedEvents(given as JsonValue | undefined);
      stripped.push(strippedEvent(raw)!);
      // A knock of the user on this room (src/rooms/join-remote.ts) becomes this invite.
      await storeRemoteInvite(ctx.api, invitee, roomId, stripped, caller.origin);
    }
    return { event };
  };
  federationRoute(front, ctx, 'PUT', '/_matrix/federation/v2/invite/:roomId/:eventId', async (req, caller) => ({ body: await invite(req, caller, 2) }));
  federationRoute(front, ctx, 'PUT', '/_matrix/federation/v1/invite/:roomId/:eventId', async (req, caller) => ({ body: [200, await invite(req, caller, 1)] }));
}
