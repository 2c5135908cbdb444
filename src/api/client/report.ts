/**
 * Reporting content (report_content.yaml): `POST /rooms/{roomId}/report/{eventId}` (the reporter
 * must be joined and able to see the event), `POST /rooms/{roomId}/report` (any user, any room
 * this server has; `reason` required) and `POST /users/{userId}/report` (`reason` required; local
 * users must exist, remote ones cannot be checked without federation and are taken as given, as
 * the spec allows). Reports go to the reports actor (actors/reports.ts) for admins to review.
 */
import type { Front, Request } from '../../http/server';
import { MatrixError, errors } from '../../http/errors';
import { isValidUserId, serverOf } from '../../protocol/identifiers';
import type { JsonObject } from '../../protocol/json';
import { ActorReplyError } from '../../runtime/actor-client';
import { REPORTS_ACTOR, type Report, type ReportsReply } from '../../../actors/reports';
import { servableToClients } from '../../store/room-reader';
import { requireUser } from './auth';
import { clientRoute, readAccount } from './accounts-common';
import type { ApiContext } from '../context';
import { bodyObject } from './room-common';
import { eventRoomId } from '../../rooms/client-format';
import { requireRoomId } from '../../http/params';

export function registerReportRoutes(front: Front, ctx: ApiContext): void {
  const file = async (report: Report): Promise<void> => {
    try {
      await ctx.actors.ask<ReportsReply>('user', 'reports', REPORTS_ACTOR, { op: 'report', report });
    } catch (e) {
      if (e instanceof ActorReplyError) throw new MatrixError(e.status, e.errcode, e.message);
      throw e;
    }
  };

  clientRoute(front, 'POST', '/rooms/:roomId/report/:eventId', async (req) => {
    const user = await requireUser(ctx, req);
    const roomId = requireRoomId(req.params.roomId);
    const eventId = req.params.eventId!;
    const reason = optionalReason(bodyObject(req));
    const notFound = () => new MatrixError(404, 'M_NOT_FOUND', 'The event was not found or you are not joined to the room.');
    if (!eventId.startsWith('$')) throw notFound();
    if ((await ctx.rooms.membership(roomId, user.userId)) !== 'join') throw notFound();
    const e = await ctx.rooms.event(roomId, eventId);
    if (!e || !servableToClients(e) || eventRoomId(e) !== roomId || !(await ctx.rooms.canSee(roomId, user.userId, eventId))) throw notFound();
    await file({ kind: 'event', reporter: user.userId, room_id: roomId, event_id: eventId, ...(reason !== undefined ? { reason } : {}) });
    return { body: {} };
  });

  clientRoute(front, 'POST', '/rooms/:roomId/report', async (req) => {
    const user = await requireUser(ctx, req);
    const roomId = requireRoomId(req.params.roomId);
    const reason = requiredReason(req);
    if (!(await ctx.rooms.meta(roomId))) throw new MatrixError(404, 'M_NOT_FOUND', 'The room was not found.');
    await file({ kind: 'room', reporter: user.userId, room_id: roomId, reason });
    return { body: {} };
  });

  clientRoute(front, 'POST', '/users/:userId/report', async (req) => {
    const user = await requireUser(ctx, req);
    const target = req.params.userId!;
    if (!isValidUserId(target)) throw errors.invalidParam('Not a user id');
    const reason = requiredReason(req);
    if (serverOf(target) === ctx.config.serverName && !(await readAccount(ctx, target))) throw new MatrixError(404, 'M_NOT_FOUND', 'The user was not found.');
    await file({ kind: 'user', reporter: user.userId, user_id: target, reason });
    return { body: {} };
  });
}

function optionalReason(body: JsonObject): string | undefined {
  if (body.reason === undefined || body.reason === null) return undefined;
  if (typeof body.reason !== 'string') throw errors.badJson('reason must be a string');
  return body.reason;
}

function requiredReason(req: Request): string {
  const reason = optionalReason(bodyObject(req));
  if (reason === undefined) throw errors.missingParam('reason is required');
  return reason;
}
