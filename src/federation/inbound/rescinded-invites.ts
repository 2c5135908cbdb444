/**
 * Rescinded invites: the one kind of PDU this server takes for a room it does not have. When a
 * remote room's member kicks (membership `leave`) or bans one of our users who only holds an
 * invite there, the inviting server sends that event to the invitee's server although it is not in
 * the room (Synapse does). Without it our user's /sync would offer the invite until it expired.
 *
 * Taken only when all of these hold; anything else of an unknown room stays an error:
 *   - an `m.room.member` event with membership `leave` or `ban`, for a user of ours, sent by
 *     someone else (our user's own leave is made here, through make_leave/send_leave);
 *   - our user holds a pending remote invite to the room, and the sender is of the inviting
 *     server, which is the transaction's origin (a third server may not cancel another's invite);
 *   - the event is well-formed for the room version the invite's stripped create event names,
 *     and signed by the sender's server (the receipt checks 1–2, src/rooms/ingest.ts).
 * Then the invite is dropped (src/sync/remote-invites.ts), which wakes the user's /sync.
 */
import { computeEventId, serverNameOf } from '../../protocol/event-hashing';
import { serverOf } from '../../protocol/identifiers';
import { isJsonObject, type JsonObject } from '../../protocol/json';
import { getRoomVersion } from '../../protocol/room-versions';
import type { PduResult } from '../../protocol/transactions';
import { checkReceivedPdu } from '../../rooms/ingest';
import { dropRemoteInvite, remoteInviteState } from '../../sync/remote-invites';
import type { GapDeps } from './missing-events';
import { keysForPdus } from './pdu-keys';

/**
 * The results for the PDUs of `roomId` (unknown here) that rescind an invite of ours, each
 * dropping it; PDUs that do not are left out (the caller answers them as of an unknown room).
 */
export async function takeRescindedInvites(deps: GapDeps, origin: string, roomId: string, pdus: readonly JsonObject[], deadline: number): Promise<PduResult[]> {
  const out: PduResult[] = [];
  const ours = deps.api.config.serverName;
  for (const raw of pdus) {
    const target = raw.state_key;
    const content = isJsonObject(raw.content) ? raw.content : {};
    if (raw.type !== 'm.room.member' || typeof target !== 'string' || serverOf(target) !== ours) continue;
    if (content.membership !== 'leave' && content.membership !== 'ban') continue;
    if (typeof raw.sender !== 'string' || raw.sender === target || serverNameOf(raw.sender) !== origin) continue;
    const stripped = await remoteInviteState(deps.api, target, roomId);
    const invite = stripped?.find((e) => e.type === 'm.room.member' && e.state_key === target && isJsonObject(e.content) && e.content.membership === 'invite');
    if (!invite || typeof invite.sender !== 'string' || serverNameOf(invite.sender) !== origin) continue;
    const create = stripped!.find((e) => e.type === 'm.room.create' && e.state_key === '');
    const versionId = create && isJsonObject(create.content) && typeof create.content.room_version === 'string' ? create.content.room_version : null;
    const version = versionId ? getRoomVersion(versionId) : undefined;
    if (!version) continue;
    let eventId: string;
    try {
      eventId = computeEventId(raw, version);
    } catch {
      continue;
    }
    const keys = await keysForPdus(deps.keyStore, [raw], version, deadline - 1000);
    const checked = checkReceivedPdu(raw, { version, roomId, known: () => undefined, getEvent: () => undefined }, keys);
    if (!checked.ok) {
      out.push({ eventId, error: checked.reason });
      continue;
    }
    await dropRemoteInvite(deps.api, target, roomId);
    deps.log.info({ room_id: roomId, user_id: target, sender: raw.sender, membership: content.membership }, 'a remote invite was rescinded');
    out.push({ eventId });
  }
  return out;
}
