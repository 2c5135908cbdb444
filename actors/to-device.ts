/**
 * ToDeviceActor: the single writer of one local user's to-device inboxes (actor id = the
 * recipient's user id; it lives in the user's shard next to the devices hash).
 *
 * Each device has an inbox stream (`userData.toDeviceInbox`). Entry ids come from Redis's clock
 * (XADD `*` in the commit script), the same clock /sync takes its cuts from, so a sync delivers
 * exactly the entries below its cut and the next one continues after them (src/sync/to-device.ts).
 * Entries stay until the device's next sync acknowledges them (`ack`, told by /sync), as the spec
 * asks: a message is never lost because a sync response did not reach the client.
 *
 * Messages:
 * - `send` {sender, type, messages}: `messages` maps a device id, or `*` for every current device
 *   of the user, to the content's JSON text. As in Synapse, `*` wins over named devices in the
 *   same request, and devices that do not exist are skipped (a message to a deleted device would
 *   never be read). Each inbox keeps at most `MAX_INBOX_LENGTH` entries: beyond that the oldest
 *   are dropped (logged), so a device that never syncs cannot grow without bound (Synapse has no
 *   cap). Outputs one `to_device` entry per device written, which wakes the user's syncs.
 * - `ack` {deviceId, keepFromId}: delete the device's entries with ids below `keepFromId`
 *   (XTRIM MINID; idempotent).
 * - `prune`: delete the inboxes of devices that no longer exist (told by the fronts after any
 *   device deletion: logout, logout/all, delete_devices, password change, deactivation).
 *
 * Idempotency is the sender's: the front derives the message id from (sender, sender's device,
 * txn id, recipient), so a retried PUT /sendToDevice is a duplicate the runtime drops.
 */
import type { ActorKind, ActorMessage, Decision, ShellContext, StoreWrite } from '../src/runtime/actor';
import type { Family } from '../src/store/shards';
import { userData } from '../src/store/keys';

/** Most entries a device inbox keeps; older ones are dropped when more arrive. */
export const MAX_INBOX_LENGTH = 10_000;

export interface ToDeviceState {
  userId: string;
  /** Devices with an inbox stream (sorted): what `prune` may have to delete. */
  inboxes: string[];
}

export type ToDeviceMessage =
  | { op: 'send'; sender: string; type: string; messages: Record<string, string> }
  | { op: 'ack'; deviceId: string; keepFromId: string }
  | { op: 'prune' };

export type ToDeviceReply = { delivered: string[] } | { deleted: string[] } | { ok: true };

export interface ToDeviceOutput {
  type: 'to_device';
  user_id: string;
  device_id: string;
  /**
   * The message as stored in the inbox (`{content, sender, type}` JSON text): the appservice
   * reader (src/appservice/reader.ts) pushes it to an appservice whose user it is for, which
   * never syncs that device.
   */
  e?: string;
}

/** What the shell read: the user's current device ids (send, prune). */
export interface ToDevicePrepared {
  devices: string[];
}

type D = Decision<ToDeviceState, ToDeviceReply>;

const STREAM_ID = /^\d{1,20}-\d{1,20}$/;

export function emptyToDevice(userId: string): ToDeviceState {
  return { userId, inboxes: [] };
}

/** Pure: which devices get which content (device id → content JSON text). */
export function deliveryTargets(messages: Record<string, string>, devices: string[]): Map<string, string> {
  const out = new Map<string, string>();
  const all = messages['*'];
  if (all !== undefined) {
    for (const d of devices) out.set(d, all);
    return out;
  }
  const existing = new Set(devices);
  for (const [d, content] of Object.entries(messages)) if (existing.has(d)) out.set(d, content);
  return out;
}

/** The stored event: `{content, sender, type}` as JSON text, built without re-encoding the content. */
export function toDeviceEventJson(type: string, sender: string, contentJson: string): string {
  return `{"content":${contentJson},"sender":${JSON.stringify(sender)},"type":${JSON.stringify(type)}}`;
}

export function decideToDevice(state: ToDeviceState, msg: ActorMessage<ToDeviceMessage>, prepared: ToDevicePrepared | undefined): D {
  const body = msg.body;
  switch (body?.op) {
    case 'send': {
      const targets = deliveryTargets(body.messages ?? {}, prepared?.devices ?? []);
      if (targets.size === 0) return { state, reply: { delivered: [] } };
      const writes: StoreWrite[] = [];
      const outputs: ToDeviceOutput[] = [];
      for (const [deviceId, content] of targets) {
        writes.push({ cmd: 'XADD', key: userData.toDeviceInbox(state.userId, deviceId), args: ['MAXLEN', MAX_INBOX_LENGTH, '*', 'e', toDeviceEventJson(body.type, body.sender, content)] });
        outputs.push({ type: 'to_device', user_id: state.userId, device_id: deviceId, e: toDeviceEventJson(body.type, body.sender, content) });
      }
      const known = new Set(state.inboxes);
      const added = [...targets.keys()].filter((d) => !known.has(d));
      const next = added.length ? { ...state, inboxes: [...state.inboxes, ...added].sort() } : state;
      return { state: next, reply: { delivered: [...targets.keys()] }, writes, outputs };
    }
    case 'ack': {
      if (typeof body.keepFromId !== 'string' || !STREAM_ID.test(body.keepFromId)) throw new TypeError(`todevice: bad keepFromId ${JSON.stringify(body.keepFromId)}`);
      if (!state.inboxes.includes(body.deviceId)) return { state, reply: { ok: true } };
      return { state, reply: { ok: true }, writes: [{ cmd: 'XTRIM', key: userData.toDeviceInbox(state.userId, body.deviceId), args: ['MINID', body.keepFromId] }] };
    }
    case 'prune': {
      const live = new Set(prepared?.devices ?? []);
      const gone = state.inboxes.filter((d) => !live.has(d));
      if (gone.length === 0) return { state, reply: { deleted: [] } };
      return {
        state: { ...state, inboxes: state.inboxes.filter((d) => live.has(d)) },
        reply: { deleted: gone },
        writes: gone.map((d) => ({ cmd: 'DEL', key: userData.toDeviceInbox(state.userId, d), args: [] })),
      };
    }
    default:
      throw new TypeError(`todevice: unknown op ${JSON.stringify((body as { op?: unknown } | undefined)?.op)}`);
  }
}

async function prepareToDevice(ctx: ShellContext, state: ToDeviceState, msg: ActorMessage<ToDeviceMessage>): Promise<ToDevicePrepared | undefined> {
  const body = msg.body;
  if (body?.op !== 'send' && body?.op !== 'prune') return undefined;
  const devices = await ctx.redis.hkeys(ctx.keys.data(userData.devices(state.userId)));
  if (body.op === 'send' && ctx.log) {
    // Say so when the cap drops messages a device has not read (its client has not synced for long).
    const targets = [...deliveryTargets(body.messages ?? {}, devices).keys()];
    if (targets.length) {
      const p = ctx.redis.pipeline();
      for (const d of targets) p.xlen(ctx.keys.data(userData.toDeviceInbox(state.userId, d)));
      const lengths = (await p.exec()) ?? [];
      lengths.forEach(([err, len], i) => {
        if (!err && typeof len === 'number' && len >= MAX_INBOX_LENGTH) {
          ctx.log!.warn({ user_id: state.userId, device_id: targets[i], inbox_length: len, max: MAX_INBOX_LENGTH, mid: msg.mid }, 'to-device inbox full: dropping its oldest message');
        }
      });
    }
  }
  return { devices };
}

export function toDeviceActor(family: Family = 'user'): ActorKind<ToDeviceState, ToDeviceMessage, ToDeviceReply, ToDevicePrepared | undefined> {
  return { kind: 'todevice', family, initialState: emptyToDevice, prepare: prepareToDevice, decide: decideToDevice };
}
