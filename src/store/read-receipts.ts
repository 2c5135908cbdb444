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

/** One user's receipt positions in a room, from the whole receipts hash (`readsOfRoom`). */
export interface UserReads {
  /** Latest unthreaded receipt (covers the main timeline and every thread). */
  unthreaded: number;
  /** Latest receipt with thread id `main`. */
  main: number;
  /** Latest receipt per thread root, when the user has threaded receipts. */
  threads?: Map<string, number>;
}

/**
 * Every user's receipt positions in a room from the room's whole receipts hash (HGETALL), parsed
 * once: the push evaluator reads a room's receipts once per batch and needs the read positions of
 * every member it notifies, where `readFields` + `readPositions` would build and parse six fields
 * per member per event.
 */
export function readsOfRoom(hash: Record<string, string>): Map<string, UserReads> {
  const out = new Map<string, UserReads>();
  for (const field in hash) {
    const f = parseReceiptField(field);
    if (!f || !(READ_RECEIPT_TYPES as readonly string[]).includes(f.receiptType)) continue;
    const pos = receiptPos(hash[field]);
    if (pos <= 0) continue;
    let r = out.get(f.userId);
    if (!r) out.set(f.userId, (r = { unthreaded: 0, main: 0 }));
    if (f.threadId === undefined) r.unthreaded = Math.max(r.unthreaded, pos);
    else if (f.threadId === 'main') r.main = Math.max(r.main, pos);
    else {
      if (!r.threads) r.threads = new Map();
      r.threads.set(f.threadId, Math.max(r.threads.get(f.threadId) ?? 0, pos));
    }
  }
  return out;
}

/** `readPositions` from a user's `readsOfRoom` entry (none: nothing read). */
export function readPositionsOf(reads: UserReads | undefined, thread: string | null): { unthreaded: number; main: number; thread: number } {
  if (!reads) return { unthreaded: 0, main: 0, thread: 0 };
  const main = Math.max(reads.unthreaded, reads.main);
  return { unthreaded: reads.unthreaded, main, thread: thread ? Math.max(reads.unthreaded, reads.threads?.get(thread) ?? 0) : main };
}
