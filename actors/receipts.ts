/**
 * ReceiptActor: the read receipts of one room (actor id = room id; in the room's shard, with its
 * own mailbox so receipts — as frequent as messages — never queue behind persisting events).
 *
 * `POST /rooms/{roomId}/receipt/{type}/{eventId}` and `/read_markers` send `receipt` after the
 * front checked the user is joined and the event is in the room (giving its timeline position).
 * Only the latest receipt per (type, thread, user) is kept (`roomData.receipts`), and a receipt
 * never moves backwards: one for an event at or before the stored one changes nothing (Synapse
 * ignores such receipts too), so a client replaying old receipts cannot unread a room.
 *
 * Each accepted receipt appends `{type: 'receipt', room_id, event_id, receipt_type, user_id, ts,
 * thread_id?}`; /sync turns the window's entries into the `m.receipt` EDU (private receipts only
 * for their owner) and the unread counts restart from the new position.
 */
import type { ActorKind, ActorMessage, Decision, ShellContext } from '../src/runtime/actor';
import { roomData } from '../src/store/keys';
import { RECEIPT_TYPES, receiptField, type ReceiptType, type StoredReceipt } from '../src/store/read-receipts';

export type ReceiptMessage = {
  op: 'receipt';
  userId: string;
  receiptType: ReceiptType;
  eventId: string;
  /** Timeline position of the event (the front looked it up). */
  pos: number;
  /** `main`, a thread root's event id, or absent for an unthreaded receipt. */
  threadId?: string;
};

export interface ReceiptOutput {
  type: 'receipt';
  room_id: string;
  event_id: string;
  receipt_type: ReceiptType;
  user_id: string;
  ts: number;
  thread_id?: string;
}

export interface ReceiptState {
  roomId: string;
}

/** Prepared: the stored receipt this one would replace (null: none). */
export type ReceiptPrepared = StoredReceipt | null;

export function decideReceipt(state: ReceiptState, msg: ActorMessage<ReceiptMessage>, current: ReceiptPrepared): Decision<ReceiptState, { ok: true; changed: boolean }> {
  const b = msg.body;
  if (b?.op !== 'receipt') throw new TypeError(`receipts: unknown op ${JSON.stringify((b as { op?: unknown } | undefined)?.op)}`);
  if (!(RECEIPT_TYPES as readonly string[]).includes(b.receiptType)) throw new TypeError(`receipts: bad type ${b.receiptType}`);
  if (current && current.pos >= b.pos) return { state, reply: { ok: true, changed: false } };
  const ts = msg.enqueuedAt;
  const stored: StoredReceipt = { event_id: b.eventId, ts, pos: b.pos };
  const out: ReceiptOutput = { type: 'receipt', room_id: state.roomId, event_id: b.eventId, receipt_type: b.receiptType, user_id: b.userId, ts };
  if (b.threadId !== undefined) out.thread_id = b.threadId;
  return {
    // A fresh object marks the actor as having run (the blob is tiny); receipts live in the hash.
    state: { roomId: state.roomId },
    reply: { ok: true, changed: true },
    writes: [{ cmd: 'HSET', key: roomData.receipts(state.roomId), args: [receiptField(b.receiptType, b.threadId, b.userId), JSON.stringify(stored)] }],
    outputs: [out],
  };
}

async function prepareReceipt(ctx: ShellContext, state: ReceiptState, msg: ActorMessage<ReceiptMessage>): Promise<ReceiptPrepared> {
  const b = msg.body;
  if (b?.op !== 'receipt') return null;
  const raw = await ctx.redis.hget(ctx.keys.data(roomData.receipts(state.roomId)), receiptField(b.receiptType, b.threadId, b.userId));
  if (raw === null) return null;
  try {
    return JSON.parse(raw) as StoredReceipt;
  } catch {
    return null;
  }
}

export function receiptActor(): ActorKind<ReceiptState, ReceiptMessage, { ok: true; changed: boolean }, ReceiptPrepared> {
  return {
    kind: 'receipt',
    family: 'room',
    initialState: (roomId) => ({ roomId }),
    prepare: prepareReceipt,
    decide: decideReceipt,
  };
}
