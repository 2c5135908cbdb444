/**
 * An inbound transaction's EDUs (server-server API, "EDUs"), handed to the actors that keep the
 * same facts for our own users, so local clients see them in /sync as they see local ones:
 *   - `m.typing` → the room's typing actor (actors/typing.ts);
 *   - `m.receipt` (public `m.read` only) → the room's receipt actor, at the event's position;
 *   - `m.presence` → the remote user's presence actor (op `remote`: the record as their server
 *     says it; the fan-out reader tells our users who share a room);
 *   - `m.direct_to_device` → each local recipient's to-device actor; the runtime's message id is
 *     derived from (origin, sender, message_id, recipient), so a message the peer sends again
 *     (another transaction after an outage) is delivered once;
 *   - `m.device_list_update` / `m.signing_key_update` → the remote user's keys actor (the cache
 *     of their devices, actors/device-keys.ts `remote_*`); a `prev_id` gap there resyncs the list
 *     from `/user/devices`.
 * An EDU about a user of another server than the transaction's origin is dropped (a server
 * speaks only for its own users), as are typing and receipts of users not joined to the room,
 * receipts for events we do not have, and EDUs about rooms whose ACL denies the origin. Device
 * list updates are kept only for users sharing a room with one of ours (whose devices our users
 * need). Each EDU is handled alone: one that fails is logged and the others go on.
 */
import type { Logger } from 'pino';
import { MatrixError } from '../../http/errors';
import type { KeysMessage, KeysReply } from '../../../actors/device-keys';
import type { PresenceMessage, PresenceState } from '../../../actors/presence';
import { PRESENCE_STATES } from '../../../actors/presence';
import type { ReceiptMessage } from '../../../actors/receipts';
import type { ToDeviceMessage } from '../../../actors/to-device';
import type { TypingMessage } from '../../../actors/typing';
import type { ApiContext } from '../../api/context';
import { serverOf } from '../../protocol/identifiers';
import { isJsonObject, type JsonObject } from '../../protocol/json';
import type { Edu } from '../../protocol/transactions';
import { MembershipIndex } from '../../readers/membership-index';
import { sharedRoomUsers } from '../../readers/user-fanout';
import { askRoomFamily } from '../../rooms/ask';
import type { FederationClient } from '../client';
import { roomForServer } from './room-access';
import { servableToClients } from '../../store/room-reader';

export interface EduDeps {
  api: ApiContext;
  client: FederationClient;
  log: Logger;
}

/** How long a remote typing notice lasts without renewal (Synapse's FEDERATION_TIMEOUT is 60 s). */
export const REMOTE_TYPING_MS = 60_000;

export interface EduOutcome {
  handled: number;
  dropped: number;
}

/**
 * Handle a transaction's EDUs in order (typing on then off for one user must land in that
 * order). Past `deadline` the rest is not dropped — to-device messages and device updates cannot
 * be had again — but the whole transaction fails with 503, so the peer sends it again; every
 * handler is idempotent for a replay (to-device by its message id, typing and receipts by value,
 * device updates by stream id).
 */
export async function processTransactionEdus(deps: EduDeps, origin: string, edus: Edu[], deadline = Number.POSITIVE_INFINITY): Promise<EduOutcome> {
  const outcome: EduOutcome = { handled: 0, dropped: 0 };
  for (const edu of edus) {
    if (Date.now() > deadline) throw new MatrixError(503, 'M_UNKNOWN', 'The transaction took too long to process; send it again');
    let ok = false;
    try {
      ok = await processEdu(deps, origin, edu);
    } catch (e) {
      deps.log.warn({ err: e, origin, edu_type: edu.edu_type }, 'inbound EDU failed');
    }
    if (ok) outcome.handled++;
    else outcome.dropped++;
  }
  return outcome;
}

const fromOrigin = (userId: unknown, origin: string): userId is string => typeof userId === 'string' && serverOf(userId) === origin;

async function processEdu(deps: EduDeps, origin: string, edu: Edu): Promise<boolean> {
  const c = edu.content;
  switch (edu.edu_type) {
    case 'm.typing':
      return typing(deps, origin, c);
    case 'm.receipt':
      return receipts(deps, origin, c);
    case 'm.presence':
      return presence(deps, origin, c);
    case 'm.direct_to_device':
      return toDevice(deps, origin, c);
    case 'm.device_list_update':
      return deviceListUpdate(deps, origin, c);
    case 'm.signing_key_update':
      return signingKeyUpdate(deps, origin, c);
    default:
      return false;
  }
}

/** The room exists, its ACL lets the origin in, and `userId` is joined to it. */
async function joinedHere(deps: EduDeps, roomId: string, origin: string, userId: string): Promise<boolean> {
  const room = await roomForServer(deps.api.rooms, roomId);
  if (!room?.aclAllows(origin)) return false;
  return (await deps.api.rooms.membership(roomId, userId)) === 'join';
}

async function typing(deps: EduDeps, origin: string, c: JsonObject): Promise<boolean> {
  const { room_id: roomId, user_id: userId, typing: on } = c;
  if (typeof roomId !== 'string' || !fromOrigin(userId, origin) || typeof on !== 'boolean') return false;
  if (!(await joinedHere(deps, roomId, origin, userId))) return false;
  const msg: TypingMessage = { op: 'set', userId, typing: on, timeoutMs: REMOTE_TYPING_MS };
  await askRoomFamily(deps.api, 'typing', roomId, msg);
  return true;
}

async function receipts(deps: EduDeps, origin: string, c: JsonObject): Promise<boolean> {
  let any = false;
  for (const [roomId, byType] of Object.entries(c)) {
    if (!isJsonObject(byType) || !isJsonObject(byType['m.read'])) continue;
    for (const [userId, r] of Object.entries(byType['m.read'])) {
      if (!fromOrigin(userId, origin) || !isJsonObject(r) || !Array.isArray(r.event_ids)) continue;
      const eventId = r.event_ids.find((e): e is string => typeof e === 'string');
      if (!eventId || !(await joinedHere(deps, roomId, origin, userId))) continue;
      const e = await deps.api.rooms.event(roomId, eventId);
      if (!e || !servableToClients(e) || e.pos <= 0) continue;
      const threadId = isJsonObject(r.data) && typeof r.data.thread_id === 'string' ? r.data.thread_id : undefined;
      const msg: ReceiptMessage = { op: 'receipt', userId, receiptType: 'm.read', eventId, pos: e.pos, ...(threadId ? { threadId } : {}) };
      await askRoomFamily(deps.api, 'receipt', roomId, msg);
      any = true;
    }
  }
  return any;
}

async function presence(deps: EduDeps, origin: string, c: JsonObject): Promise<boolean> {
  const push = Array.isArray(c.push) ? c.push : [];
  const tells: Promise<void>[] = [];
  for (const p of push) {
    if (!isJsonObject(p) || !fromOrigin(p.user_id, origin)) continue;
    if (typeof p.presence !== 'string' || !(PRESENCE_STATES as readonly string[]).includes(p.presence)) continue;
    const msg: PresenceMessage = { op: 'remote', presence: p.presence as PresenceState };
    if (typeof p.status_msg === 'string') msg.statusMsg = p.status_msg;
    if (typeof p.last_active_ago === 'number') msg.lastActiveAgo = p.last_active_ago;
    tells.push(deps.api.actors.tell('user', 'presence', p.user_id, msg));
  }
  await Promise.all(tells);
  return tells.length > 0;
}

async function toDevice(deps: EduDeps, origin: string, c: JsonObject): Promise<boolean> {
  const { sender, type, message_id: messageId, messages } = c;
  if (!fromOrigin(sender, origin) || typeof type !== 'string' || typeof messageId !== 'string' || !isJsonObject(messages)) return false;
  const ours = deps.api.config.serverName;
  const asks: Promise<unknown>[] = [];
  for (const [userId, byDevice] of Object.entries(messages)) {
    if (serverOf(userId) !== ours || !isJsonObject(byDevice)) continue;
    const m: Record<string, string> = {};
    for (const [d, content] of Object.entries(byDevice)) if (isJsonObject(content)) m[d] = JSON.stringify(content);
    if (!Object.keys(m).length) continue;
    const msg: ToDeviceMessage = { op: 'send', sender, type, messages: m };
    asks.push(deps.api.actors.ask('user', 'todevice', userId, msg, { mid: `fedtodev:${origin}:${sender}:${messageId}:${userId}` }));
  }
  await Promise.all(asks);
  return asks.length > 0;
}

/** Whether one of our users shares a room with `userId` (their device list is ours to track). */
export async function tracked(api: ApiContext, userId: string): Promise<boolean> {
  const index = new MembershipIndex(api.redis, api.keys, api.shardCounts.user);
  const users = await sharedRoomUsers(api.redis, api.keys, api.shardCounts, index, userId);
  for (const u of users) if (serverOf(u) === api.config.serverName) return true;
  return false;
}

async function deviceListUpdate(deps: EduDeps, origin: string, c: JsonObject): Promise<boolean> {
  const { user_id: userId, device_id: deviceId, stream_id: streamId } = c;
  if (!fromOrigin(userId, origin) || typeof deviceId !== 'string' || typeof streamId !== 'number') return false;
  if (!(await tracked(deps.api, userId))) return false;
  const prevIds = Array.isArray(c.prev_id) ? c.prev_id.filter((p): p is number => typeof p === 'number') : [];
  const msg: KeysMessage = { op: 'remote_update', deviceId, streamId, prevIds, deleted: c.deleted === true };
  if (isJsonObject(c.keys)) msg.keys = c.keys;
  if (typeof c.device_display_name === 'string') msg.displayName = c.device_display_name;
  const reply = await deps.api.actors.ask<KeysReply>('user', 'keys', userId, msg);
  if ((reply as { resync?: boolean }).resync) {
    // Not awaited: the peer's transaction must not wait on a request back to it.
    void resyncDevices(deps.api, deps.client, userId).catch((e: unknown) => deps.log.warn({ err: e, user_id: userId }, 'device list resync failed; the next update or query retries'));
  }
  return true;
}

/** Fetch a remote user's whole device list (`/user/devices`) and replace the cache with it. */
export async function resyncDevices(api: ApiContext, client: FederationClient, userId: string): Promise<void> {
  const server = serverOf(userId);
  if (!server) return;
  const res = await client.get(server, `/_matrix/federation/v1/user/devices/${encodeURIComponent(userId)}`, { timeoutMs: 15_000 });
  if (res.user_id !== userId || !Array.isArray(res.devices)) throw new Error('malformed /user/devices answer');
  const devices: Extract<KeysMessage, { op: 'remote_resync' }>['devices'] = {};
  for (const d of res.devices) {
    // A device without keys yet is listed with none (Synapse: null or absent; Axon: {}): it has
    // nothing /keys/query could serve, and an entry without keys would be an invalid device.
    if (!isJsonObject(d) || typeof d.device_id !== 'string' || !isJsonObject(d.keys) || !Object.keys(d.keys).length) continue;
    devices[d.device_id] = typeof d.device_display_name === 'string' ? { keys: d.keys, displayName: d.device_display_name } : { keys: d.keys };
  }
  const cross: Extract<KeysMessage, { op: 'remote_resync' }>['cross'] = {};
  if (isJsonObject(res.master_key)) cross.master = res.master_key;
  if (isJsonObject(res.self_signing_key)) cross.self_signing = res.self_signing_key;
  const msg: KeysMessage = { op: 'remote_resync', streamId: typeof res.stream_id === 'number' ? res.stream_id : 0, devices, cross };
  await api.actors.ask('user', 'keys', userId, msg);
}

async function signingKeyUpdate(deps: EduDeps, origin: string, c: JsonObject): Promise<boolean> {
  if (!fromOrigin(c.user_id, origin)) return false;
  if (!(await tracked(deps.api, c.user_id))) return false;
  const cross: Extract<KeysMessage, { op: 'remote_signing' }>['cross'] = {};
  if (isJsonObject(c.master_key)) cross.master = c.master_key;
  if (isJsonObject(c.self_signing_key)) cross.self_signing = c.self_signing_key;
  if (!Object.keys(cross).length) return false;
  await deps.api.actors.ask('user', 'keys', c.user_id, { op: 'remote_signing', cross } satisfies KeysMessage);
  return true;
}
