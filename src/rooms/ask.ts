/**
 * Asking the room family's actors (a room, an alias, typing, receipts) from a front, for the
 * client and federation APIs and the workflows in src/rooms/: the actors' rejections come back as
 * the Matrix errors they are, a timeout as 504.
 */
import { MatrixError } from '../http/errors';
import { ActorReplyError, ActorTimeoutError, type AskOptions } from '../runtime/actor-client';
import type { ApiContext } from '../api/context';
import type { EventTemplate } from './model';

export interface SendReply {
  event_id: string;
  room_id: string;
  pos: number;
}

/** Ask the room actor; its rejections (M_FORBIDDEN, …) come back as the Matrix error they are. */
export function askRoom(ctx: ApiContext, roomId: string, body: unknown, opts: Pick<AskOptions, 'mid' | 'guard'> = {}): Promise<SendReply> {
  return askRoomFamily<SendReply>(ctx, 'room', roomId, body, opts);
}

/**
 * Ask an actor of the room family (a room, or an alias: actors/alias.ts); rejections come back
 * as Matrix errors, a timeout as 504 (the command stays in the inbox and is still applied).
 */
export async function askRoomFamily<R>(ctx: ApiContext, kind: 'room' | 'alias' | 'typing' | 'receipt', actorId: string, body: unknown, opts: AskOptions = {}): Promise<R> {
  try {
    const reply = await ctx.actors.ask<R>('room', kind, actorId, body, opts);
    // A room actor that accepted a command may have changed the room (ApiContext.roomWritten).
    if (kind === 'room' && ctx.roomWritten) for (const hook of ctx.roomWritten) hook(actorId);
    return reply;
  } catch (e) {
    if (e instanceof ActorReplyError) throw new MatrixError(e.status, e.errcode, e.message);
    if (e instanceof ActorTimeoutError) throw new MatrixError(504, 'M_UNKNOWN', 'The room did not answer in time; retry the request');
    throw e;
  }
}

/** Send an event built from a template (the actor signs and authorises it). */
export function sendEvent(ctx: ApiContext, roomId: string, event: EventTemplate, txn?: string, opts: Pick<AskOptions, 'mid' | 'guard'> = {}): Promise<SendReply> {
  return askRoom(ctx, roomId, txn ? { op: 'send', event, txn } : { op: 'send', event }, opts);
}
