/**
 * To-device messages for /sync: reading a device's inbox (written by actors/to-device.ts) and
 * acknowledging what the client has received.
 *
 * Inbox entry ids are `<ms>-<seq>` from Redis's clock, like outbox entries, so a sync's time cut
 * bounds them: a response gives the entries with ids in (afterId, `<cutMs>-0`), at most `limit`
 * of them (the spec lets a server send them in batches; `more` says the next sync should come at
 * once). The position after the last one given goes into the sync token when the response could
 * not give everything below the cut (src/sync/token.ts).
 *
 * Deletion follows the spec: a message is deleted only when the client's next sync shows it got
 * the response that carried it — a sync whose `since` is at or past the message. That sync calls
 * `ackToDevice` with its `since` position; the owning actor trims the entries below it. Nothing is
 * deleted on the strength of a response that may have been lost on the way.
 */
import type { JsonObject } from '../protocol/json';
import { shardOf } from '../store/shards';
import { userData } from '../store/keys';
import type { ToDeviceMessage } from '../../actors/to-device';
import type { ApiContext } from '../api/context';

export interface ToDeviceBatch {
  /** The events, oldest first: `{type, sender, content}`. */
  events: JsonObject[];
  /** The id of the last event given (null: none). */
  lastId: string | null;
  /** Entries remain below the cut after these. */
  more: boolean;
}

const STREAM_ID = /^\d{1,20}-\d{1,20}$/;

export function inboxKey(ctx: ApiContext, userId: string, deviceId: string): string {
  return ctx.keys.shard('user', shardOf(userId, ctx.shardCounts.user)).data(userData.toDeviceInbox(userId, deviceId));
}

/**
 * A device's to-device messages with ids > `afterId` (null: from the start of the inbox) and
 * below `<beforeMs>-0`, oldest first, at most `limit`.
 */
export async function readToDevice(ctx: ApiContext, userId: string, deviceId: string, afterId: string | null, beforeMs: number, limit: number): Promise<ToDeviceBatch> {
  if (afterId !== null && !STREAM_ID.test(afterId)) throw new Error(`readToDevice: bad afterId ${afterId}`);
  if (limit <= 0) return { events: [], lastId: null, more: false };
  const start = afterId === null ? '-' : `(${afterId}`;
  const end = `(${Math.floor(beforeMs)}-0`;
  // One more than asked tells whether more remain below the cut.
  const rows = (await ctx.redis.xrange(inboxKey(ctx, userId, deviceId), start, end, 'COUNT', limit + 1)) as [string, string[]][];
  return toDeviceBatchOf(rows, limit);
}

/** A batch from the inbox entries read (one more than `limit` asked: it tells whether more remain). */
export function toDeviceBatchOf(rows: [string, string[]][], limit: number): ToDeviceBatch {
  const more = rows.length > limit;
  const given = more ? rows.slice(0, limit) : rows;
  const events: JsonObject[] = [];
  for (const [, fields] of given) {
    const i = fields.indexOf('e');
    if (i < 0 || i + 1 >= fields.length) continue;
    events.push(JSON.parse(fields[i + 1]!) as JsonObject);
  }
  return { events, lastId: given.length ? given[given.length - 1]![0] : null, more };
}

/**
 * The client has received everything before `keepFromId` (its sync's `since` position): have the
 * owning actor delete those entries. Fire and forget (a sync does not wait for it), sent only
 * when there is something to delete, and idempotent (the same position gives the same message id;
 * trimming twice changes nothing).
 */
export async function ackToDevice(ctx: ApiContext, userId: string, deviceId: string, keepFromId: string): Promise<void> {
  if (!STREAM_ID.test(keepFromId)) throw new Error(`ackToDevice: bad keepFromId ${keepFromId}`);
  if (keepFromId === '0-0') return;
  const first = (await ctx.redis.xrange(inboxKey(ctx, userId, deviceId), '-', `(${keepFromId}`, 'COUNT', 1)) as [string, string[]][];
  if (first.length === 0) return;
  await tellAckToDevice(ctx, userId, deviceId, keepFromId);
}

/** `ackToDevice` once an entry below `keepFromId` is known to exist (the /sync snapshot script looks). */
export async function tellAckToDevice(ctx: ApiContext, userId: string, deviceId: string, keepFromId: string): Promise<void> {
  if (!STREAM_ID.test(keepFromId)) throw new Error(`ackToDevice: bad keepFromId ${keepFromId}`);
  const body: ToDeviceMessage = { op: 'ack', deviceId, keepFromId };
  await ctx.actors.tell('user', 'todevice', userId, body, `todev-ack:${userId}:${deviceId}:${keepFromId}`);
}
