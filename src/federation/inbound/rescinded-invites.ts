/**
 * Rescinded invites (and refused knocks): the one kind of PDU this server takes for a room it
 * does not have. When a remote room's member kicks (membership `leave`) or bans one of our users
 * who only holds an invite (or a knock) there, that server sends the event to ours although we are
 * not in the room (Synapse does). Without it our user's /sync would offer the invite until it
 * expired.
 *
 * Taken only when all of these hold; anything else of an unknown room stays an error:
 *   - an `m.room.member` event with membership `leave` or `ban`, for a user of ours, sent by
 *     someone else (our user's own leave is made here, through make_leave/send_leave);
 *   - our user holds a pending out-of-band invite or knock for the room (src/sync/remote-invites.ts),
 *     and the origin — the sender's server — is the inviting server or one known to be in the
 *     room (a third server may not cancel another's invite);
 *   - the event is well-formed for the room version the kept stripped create event names, and
 *     signed by the sender's server (the receipt checks 1–2, src/rooms/ingest.ts).
 * Then the leave is kept in place of the invite or knock, so /sync shows the room under
 * `rooms.leave` with the kick or ban (as it shows a rejected invite).
 */
import { computeEventId, serverNameOf } from '../../protocol/event-hashing';
import { serverOf } from '../../protocol/identifiers';
import { isJsonObject, type JsonObject } from '../../protocol/json';
import { getRoomVersion } from '../../protocol/room-versions';
import type { PduResult } from '../../protocol/transactions';
import { checkReceivedPdu } from '../../rooms/ingest';
import { remoteMembership, storeRemoteMembership } from '../../sync/remote-invites';
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
    const kept = await remoteMembership(deps.api, target, roomId);
    if (!kept || (kept.membership !== 'invite' && kept.membership !== 'knock')) continue;
    const inviter = kept.state.find((e) => e.type === 'm.room.member' && e.state_key === target && typeof e.sender === 'string' && e.sender !== target);
    const deciders = new Set([...kept.servers, ...(inviter ? [serverNameOf(inviter.sender as string)] : [])]);
    if (!deciders.has(origin)) continue;
    const create = kept.state.find((e) => e.type === 'm.room.create' && e.state_key === '');
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
    const e = checked.raw;
    const leave: JsonObject = { type: 'm.room.member', state_key: target, sender: raw.sender, content: isJsonObject(e.content) ? e.content : {}, origin_server_ts: typeof e.origin_server_ts === 'number' ? e.origin_server_ts : Date.now(), event_id: eventId, unsigned: {} };
    await storeRemoteMembership(deps.api, target, roomId, { membership: 'leave', state: kept.state, servers: kept.servers, event: leave });
    deps.log.info({ room_id: roomId, user_id: target, sender: raw.sender, membership: content.membership, was: kept.membership }, 'a remote invite or knock was ended by the room');
    out.push({ eventId });
  }
  return out;
}
