/**
 * How far a user has read a room, from the room's receipts hash (src/store/keys.ts
 * `roomData.receipts`, written by the receipt actor, actors/receipts.ts): field `<receipt type>\0<thread id, '' for
 * unthreaded>\0<user id>`, value JSON `{"event_id", "ts", "pos"}` with `pos` the event's timeline
 * position. The format is defined here, at the bottom layer, so the receipt actor (which writes
 * it), /sync and the readers share one definition. Shared by the push evaluator (trimming what was
 * read) and unread counts.
 */

export const RECEIPT_TYPES = ['m.read', 'm.read.private'] as const;
export type ReceiptType = (typeof RECEIPT_TYPES)[number];

/** Stored value of one receipt (JSON text in the receipts hash). */
export interface StoredReceipt {
  event_id: string;
  ts: number;
  /** Timeline position of the event. */
  pos: number;
}

export function receiptField(receiptType: string, threadId: string | undefined, userId: string): string {
  return `${receiptType}\u0000${threadId ?? ''}\u0000${userId}`;
}

/** Parse a field of the receipts hash. */
export function parseReceiptField(field: string): { receiptType: string; threadId?: string; userId: string } | null {
  const parts = field.split('\u0000');
  if (parts.length !== 3) return null;
  const [receiptType, threadId, userId] = parts as [string, string, string];
  return threadId ? { receiptType, threadId, userId } : { receiptType, userId };
}

/** The receipt types that mark events read for notification counts. */
export const READ_RECEIPT_TYPES = RECEIPT_TYPES;

/** The position of a stored receipt (JSON `{event_id, ts, pos}`), 0 when there is none. */
export function receiptPos(value: string | null | undefined): number {
  if (!value) return 0;
  try {
    const v = JSON.parse(value) as { pos?: unknown };
    return typeof v.pos === 'number' && Number.isFinite(v.pos) ? v.pos : 0;
  } catch {
    return 0;
  }
}

/** The receipt fields that say how far a user has read a room's main timeline and, optionally, one thread. */
export function readFields(userId: string, thread: string | null): string[] {
  const threads = ['', 'main', ...(thread ? [thread] : [])];
  return threads.flatMap((t) => READ_RECEIPT_TYPES.map((type) => receiptField(type, t, userId)));
}

/**
 * The member of a room's `pushData.sentUpTo` that says how far a user has read by sending: their
 * events in the main timeline (`thread` null: read as an unthreaded receipt at the event would be)
 * or in one thread (a receipt in that thread). User ids never hold a NUL, so the two cannot meet.
 */
export function sentMember(userId: string, thread: string | null): string {
  return thread ? `${thread}\u0000${userId}` : userId;
}

/** The `sentUpTo` members `readPositions` takes the scores of (ZMSCORE, same order): the main timeline's, then the thread's. */
export function sentMembers(userId: string, thread: string | null): string[] {
  return thread ? [sentMember(userId, null), sentMember(userId, thread)] : [sentMember(userId, null)];
}

/** A `sentUpTo` score as a position (0: none). */
export function sentPos(score: string | null | undefined): number {
  const n = score ? Number(score) : 0;
  return Number.isFinite(n) ? n : 0;
}

/**
 * Read positions from the values of `readFields` (same order): unthreaded, main timeline, the
 * thread; with `sent` (the scores of `sentMembers`, same order), the user's own latest events count
 * as receipts: in the main timeline as an unthreaded one, in the thread as one in that thread.
 */
export function readPositions(values: (string | null)[], thread: string | null, sent: (string | null)[] = []): { unthreaded: number; main: number; thread: number } {
  const pos = values.map(receiptPos);
  const unthreaded = Math.max(pos[0] ?? 0, pos[1] ?? 0, sentPos(sent[0]));
  const main = Math.max(unthreaded, pos[2] ?? 0, pos[3] ?? 0);
  return { unthreaded, main, thread: thread ? Math.max(unthreaded, pos[4] ?? 0, pos[5] ?? 0, sentPos(sent[1])) : main };
}
