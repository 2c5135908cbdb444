/**
 * `PUT /_matrix/client/v3/sendToDevice/{eventType}/{txnId}` (to_device.yaml).
 *
 * The front validates the body, then asks each local recipient's to-device actor
 * (actors/to-device.ts) to append the messages to its devices' inboxes, and answers 200 only once
 * every one of them has committed.
 *
 * Idempotent per (sender, sender's device, txn id), the scope the spec gives transaction ids:
 * the message id of each ask is derived from those and the recipient, so a retry — after a
 * timeout, a crash, or a lost answer — is a duplicate the runtime answers from its dedupe record
 * (kept `dedupeTtlSec`, 10 minutes by default) instead of delivering twice. A retry that reaches
 * this front while the first attempt is still in flight joins it.
 *
 * Recipients on other servers: one `m.direct_to_device` EDU per server, queued at that server's
 * destination actor (actors/destination.ts) before the answer — durable there, and sent until
 * the peer takes it. Its `message_id` and the queueing's message id derive from the same
 * (sender, device, txn id, server), so a retried PUT queues it once, and the receiving server
 * dedupes on `message_id` (src/federation/inbound/edus.ts). With federation off they are dropped
 * with a log line.
 */
import { createHash } from 'node:crypto';
import { MatrixError, errors } from '../../http/errors';
import type { Front } from '../../http/server';
import { isJsonObject, utf8Length, type JsonObject } from '../../protocol/json';
import { isValidUserId, serverOf } from '../../protocol/identifiers';
import { ActorReplyError, ActorTimeoutError } from '../../runtime/actor-client';
import type { ToDeviceMessage, ToDeviceReply } from '../../../actors/to-device';
import { DESTINATION_KIND, type DestinationMessage } from '../../../actors/destination';
import type { Edu } from '../../protocol/transactions';
import { requireUser } from './auth';
import { clientRoute, jsonBody } from './accounts-common';
import type { ApiContext } from '../context';

/** Most (user, device) entries one request may name (`*` counts once). */
export const MAX_TO_DEVICE_MESSAGES = 10_000;
const MAX_TYPE_BYTES = 255;
const MAX_DEVICE_ID_BYTES = 255;

/** Asks in flight on this front, by message id: a retry arriving meanwhile joins its first attempt. */
const inFlight = new Map<string, Promise<ToDeviceReply>>();

/** The message id of one recipient's share of one request: the same for every retry. */
export function toDeviceMid(sender: string, senderDevice: string, txnId: string, recipient: string): string {
  const h = createHash('sha256').update(`${sender}\0${senderDevice}\0${txnId}\0${recipient}`).digest('base64url');
  return `todev:${h}`;
}

/** The body's `messages`, validated: recipient user id → device id (or `*`) → content JSON text. */
export function parseToDeviceMessages(body: JsonObject): Map<string, Record<string, string>> {
  const messages = body.messages;
  if (messages === undefined) throw errors.missingParam('Missing params: messages');
  if (!isJsonObject(messages)) throw errors.badJson('messages must be an object of user id → device id → content');
  const out = new Map<string, Record<string, string>>();
  let count = 0;
  for (const [userId, byDevice] of Object.entries(messages)) {
    if (!isValidUserId(userId)) throw errors.invalidParam(`Invalid user id: ${userId}`);
    if (!isJsonObject(byDevice)) throw errors.badJson(`messages.${userId} must be an object of device id → content`);
    const devices: Record<string, string> = {};
    for (const [deviceId, content] of Object.entries(byDevice)) {
      if (deviceId === '' || utf8Length(deviceId) > MAX_DEVICE_ID_BYTES) throw errors.invalidParam(`Invalid device id for ${userId}`);
      if (!isJsonObject(content)) throw errors.badJson(`The content for ${userId} / ${deviceId} must be an object`);
      devices[deviceId] = JSON.stringify(content);
      if (++count > MAX_TO_DEVICE_MESSAGES) throw new MatrixError(413, 'M_TOO_LARGE', `At most ${MAX_TO_DEVICE_MESSAGES} messages per request`);
    }
    if (Object.keys(devices).length) out.set(userId, devices);
  }
  return out;
}

export function registerToDeviceRoutes(front: Front, ctx: ApiContext): void {
  clientRoute(front, 'PUT', '/sendToDevice/:eventType/:txnId', async (req) => {
    const me = await requireUser(ctx, req);
    const type = req.params.eventType!;
    const txnId = req.params.txnId!;
    if (type === '' || utf8Length(type) > MAX_TYPE_BYTES) throw errors.invalidParam(`The event type must be 1 to ${MAX_TYPE_BYTES} bytes`);
    if (txnId === '') throw errors.invalidParam('Empty transaction id');
    const byUser = parseToDeviceMessages(jsonBody(req));
    const asks: Promise<unknown>[] = [];
    const remote = new Map<string, JsonObject>();
    for (const [userId, messages] of byUser) {
      const server = serverOf(userId);
      if (server !== ctx.config.serverName) {
        if (!ctx.federation || !server) {
          ctx.log.info({ user_id: userId, sender: me.userId, type, devices: Object.keys(messages).length }, 'to-device message for a remote user dropped: federation is off');
          continue;
        }
        let byDevice = remote.get(server);
        if (!byDevice) remote.set(server, (byDevice = {}));
        byDevice[userId] = Object.fromEntries(Object.entries(messages).map(([d, c]) => [d, JSON.parse(c) as JsonObject]));
        continue;
      }
      asks.push(deliver(ctx, toDeviceMid(me.userId, me.deviceId, txnId, userId), userId, { op: 'send', sender: me.userId, type, messages }));
    }
    for (const [server, messages] of remote) {
      const mid = toDeviceMid(me.userId, me.deviceId, txnId, `server:${server}`);
      const edu: Edu = { edu_type: 'm.direct_to_device', content: { sender: me.userId, type, message_id: mid.slice('todev:'.length), messages } };
      const body: DestinationMessage = { t: 'edus', edus: [edu] };
      asks.push(
        ctx.actors.ask('user', DESTINATION_KIND, server, body, { mid: `fed${mid}` }).catch((e: unknown) => {
          if (e instanceof ActorTimeoutError) throw new MatrixError(504, 'M_UNKNOWN', 'The federation sender did not answer in time; retry with the same transaction id');
          throw e;
        }),
      );
    }
    await Promise.all(asks);
    return { body: {} };
  });
}

function deliver(ctx: ApiContext, mid: string, userId: string, body: ToDeviceMessage): Promise<ToDeviceReply> {
  const running = inFlight.get(mid);
  // biome-ignore lint/nursery/noMisusedPromises: a Map look-up: is a delivery for this message id already in flight?
  if (running) return running;
  const p = ctx.actors
    .ask<ToDeviceReply>('user', 'todevice', userId, body, { mid })
    .catch((e: unknown) => {
      if (e instanceof ActorReplyError) throw new MatrixError(e.status, e.errcode, e.message);
      if (e instanceof ActorTimeoutError) throw new MatrixError(504, 'M_UNKNOWN', 'The to-device service did not answer in time; retry with the same transaction id');
      throw e;
    })
    .finally(() => inFlight.delete(mid));
  inFlight.set(mid, p);
  return p;
}

/**
 * After devices were deleted (logout, delete_devices, password change, deactivation): have the
 * user's to-device actor delete the inboxes of devices that no longer exist. Not awaited by the
 * caller's answer; a lost one leaves an inbox no device can read until the next deletion prunes it.
 */
export function pruneDeviceInboxes(ctx: ApiContext, userId: string): void {
  const body: ToDeviceMessage = { op: 'prune' };
  void ctx.actors.tell('user', 'todevice', userId, body).catch((e: unknown) => ctx.log.warn({ err: e, user_id: userId }, 'could not ask to delete to-device inboxes of deleted devices'));
}
