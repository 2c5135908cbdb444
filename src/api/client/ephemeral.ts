/**
 * Typing notices, receipts and read markers (typing.yaml, receipts.yaml, read_markers.yaml).
 *
 * - `PUT /rooms/{roomId}/typing/{userId}`: the requester's own notice, only while joined; the
 *   typing actor (actors/typing.ts) keeps the list and expires notices itself.
 * - `POST /rooms/{roomId}/receipt/{receiptType}/{eventId}`: `m.read` and `m.read.private` go to
 *   the receipt actor (actors/receipts.ts) with the event's timeline position; `m.fully_read` is
 *   the room account data of that name (as the spec says and Synapse does), through the user actor.
 * - `POST /rooms/{roomId}/read_markers`: any of the three at once.
 *
 * The event of a receipt must be an event of the room the requester may be shown (stored, not
 * rejected, not soft-failed, in the timeline) — otherwise 404, so receipts cannot probe for
 * events. `thread_id` (threaded receipts, v1.4) is `main` or a thread root's id; `m.fully_read`
 * takes none.
 */
import { canonicalJson, isJsonObject, type JsonObject } from '../../protocol/json';
import { errors, MatrixError } from '../../http/errors';
import type { Front, Request } from '../../http/server';
import { servableToClients } from '../../store/room-reader';
import type { ReceiptMessage } from '../../../actors/receipts';
import { RECEIPT_TYPES, type ReceiptType } from '../../store/read-receipts';
import type { TypingMessage } from '../../../actors/typing';
import { requireUser, type Requester } from './auth';
import { askUser } from './accounts-common';
import type { ApiContext } from '../context';
import { clientRoute } from './room-common';
import { requireRoomId } from '../../http/params';
import { askRoomFamily } from '../../rooms/ask';

const FULLY_READ = 'm.fully_read';

async function requireJoined(ctx: ApiContext, roomId: string, userId: string): Promise<void> {
  if ((await ctx.rooms.membership(roomId, userId)) !== 'join') throw new MatrixError(403, 'M_FORBIDDEN', 'You are not joined to this room');
}

/** The event's timeline position, if the requester may mark it read. */
async function receiptTarget(ctx: ApiContext, roomId: string, eventId: string): Promise<number> {
  if (!eventId.startsWith('$')) throw errors.invalidParam('eventId must be an event id');
  const e = await ctx.rooms.event(roomId, eventId);
  if (!e || !servableToClients(e) || e.event.room_id !== undefined && e.event.room_id !== roomId) throw new MatrixError(404, 'M_NOT_FOUND', 'Unknown event');
  return e.pos;
}

function parseThreadId(body: JsonObject): string | undefined {
  const t = body.thread_id;
  if (t === undefined) return undefined;
  if (typeof t !== 'string' || t === '') throw errors.invalidParam('thread_id must be "main" or an event id');
  if (t !== 'main' && !t.startsWith('$')) throw errors.invalidParam('thread_id must be "main" or an event id');
  return t;
}

async function sendReceipt(ctx: ApiContext, me: Requester, roomId: string, receiptType: ReceiptType, eventId: string, threadId?: string): Promise<void> {
  const pos = await receiptTarget(ctx, roomId, eventId);
  const msg: ReceiptMessage = { op: 'receipt', userId: me.userId, receiptType, eventId, pos, ...(threadId !== undefined ? { threadId } : {}) };
  await askRoomFamily(ctx, 'receipt', roomId, msg);
}

async function setFullyRead(ctx: ApiContext, me: Requester, roomId: string, eventId: string): Promise<void> {
  await receiptTarget(ctx, roomId, eventId);
  await askUser(ctx, me.userId, { op: 'set_account_data', roomId, type: FULLY_READ, json: canonicalJson({ event_id: eventId }) });
}

function objectBody(req: Request, emptyOk: boolean): JsonObject {
  if (emptyOk && req.body.length === 0) return {};
  const v = req.json();
  if (!isJsonObject(v)) throw errors.badJson('The body must be a JSON object');
  return v;
}

export function registerEphemeralRoutes(front: Front, ctx: ApiContext): void {
  clientRoute(front, 'PUT', '/rooms/:roomId/typing/:userId', async (req) => {
    const me = await requireUser(ctx, req);
    const roomId = requireRoomId(req.params.roomId);
    if (req.params.userId !== me.userId) throw new MatrixError(403, 'M_FORBIDDEN', 'You may only set your own typing notice');
    const body = objectBody(req, false);
    if (typeof body.typing !== 'boolean') throw errors.badJson('typing must be a boolean');
    let timeoutMs: number | undefined;
    if (body.typing && body.timeout !== undefined) {
      if (typeof body.timeout !== 'number' || !Number.isInteger(body.timeout) || body.timeout < 0) throw errors.badJson('timeout must be a non-negative integer (ms)');
      timeoutMs = body.timeout;
    }
    await requireJoined(ctx, roomId, me.userId);
    const msg: TypingMessage = { op: 'set', userId: me.userId, typing: body.typing, ...(timeoutMs !== undefined ? { timeoutMs } : {}) };
    await askRoomFamily(ctx, 'typing', roomId, msg);
    return { body: {} };
  });

  clientRoute(front, 'POST', '/rooms/:roomId/receipt/:receiptType/:eventId', async (req) => {
    const me = await requireUser(ctx, req);
    const roomId = requireRoomId(req.params.roomId);
    const type = req.params.receiptType ?? '';
    const eventId = req.params.eventId ?? '';
    // Older clients send no body at all.
    const body = objectBody(req, true);
    const threadId = parseThreadId(body);
    if (type !== FULLY_READ && !(RECEIPT_TYPES as readonly string[]).includes(type)) throw errors.invalidParam(`Unknown receipt type ${type}`);
    await requireJoined(ctx, roomId, me.userId);
    if (type === FULLY_READ) {
      if (threadId !== undefined) throw errors.invalidParam('m.fully_read takes no thread_id');
      await setFullyRead(ctx, me, roomId, eventId);
    } else await sendReceipt(ctx, me, roomId, type as ReceiptType, eventId, threadId);
    return { body: {} };
  });

  clientRoute(front, 'POST', '/rooms/:roomId/read_markers', async (req) => {
    const me = await requireUser(ctx, req);
    const roomId = requireRoomId(req.params.roomId);
    const body = objectBody(req, false);
    const marks: [string, string][] = [];
    for (const key of [FULLY_READ, ...RECEIPT_TYPES]) {
      const v = body[key];
      if (v === undefined || v === null) continue;
      if (typeof v !== 'string') throw errors.badJson(`${key} must be an event id`);
      marks.push([key, v]);
    }
    await requireJoined(ctx, roomId, me.userId);
    // Check every event first, so a bad one changes nothing.
    for (const [, eventId] of marks) await receiptTarget(ctx, roomId, eventId);
    for (const [key, eventId] of marks) {
      if (key === FULLY_READ) await setFullyRead(ctx, me, roomId, eventId);
      else await sendReceipt(ctx, me, roomId, key as ReceiptType, eventId);
    }
    return { body: {} };
  });
}
