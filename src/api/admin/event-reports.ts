/**
 * Synapse's admin API for reported events (`/_synapse/admin/v1/event_reports`), from the reports
 * local users filed (src/api/client/report.ts, kept by the reports actor, actors/reports.ts):
 * the list (newest first by default; `from`, `limit`, `dir`, and the filters `user_id` (part of
 * the reporter's id), `room_id` (part of the room id) and `event_sender_user_id` (exactly the
 * reported event's sender)), one report with the reported event, and dismissing one. Room and user
 * reports are not event reports and are not listed (as Synapse keeps them apart).
 *
 * Reports are few: the list reads them all and filters in memory.
 */
import { errors } from '../../http/errors';
import type { Front, Request } from '../../http/server';
import type { JsonObject } from '../../protocol/json';
import { getRoomVersion } from '../../protocol/room-versions';
import { ownEventSigner } from '../../rooms/own-signatures';
import { REPORTS_ACTOR, type ReportsReply, type StoredReport } from '../../../actors/reports';
import { reportData } from '../../store/keys';
import { userKey } from '../../store/shard-keys';
import type { ApiContext } from '../context';
import { requireAdmin } from './common';

const PATH = '/_synapse/admin/v1/event_reports';

interface Listed extends JsonObject {
  id: number;
  received_ts: number;
  room_id: string;
  event_id: string;
  user_id: string;
  score: null;
  reason: string | null;
  sender: string | null;
  canonical_alias: string | null;
  name: string | null;
}

function intParam(req: Request, name: string, fallback: number): number {
  const raw = req.query[name];
  if (raw === undefined) return fallback;
  if (!/^-?\d+$/.test(raw)) throw errors.invalidParam(`Query parameter ${name} must be an integer`);
  const n = Number(raw);
  if (n < 0) throw errors.invalidParam(`Query parameter ${name} must be a positive integer.`);
  return n;
}

function reportId(req: Request): number {
  const raw = req.params.reportId ?? '';
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(Number(raw))) throw errors.invalidParam('The report_id parameter must be a string representing a positive integer.');
  return Number(raw);
}

export function registerEventReportRoutes(front: Front, ctx: ApiContext): void {
  const reportsKey = () => userKey(ctx, REPORTS_ACTOR, reportData.reports());

  const eventReports = async (): Promise<StoredReport[]> =>
    Object.values(await ctx.redis.hgetall(reportsKey()))
      .map((json) => JSON.parse(json) as StoredReport)
      .filter((r) => r.kind === 'event');

  /** The room's name and canonical alias now (null when unset). */
  const roomNames = async (roomId: string): Promise<{ canonical_alias: string | null; name: string | null }> => {
    const [alias, name] = await Promise.all([
      ctx.rooms.currentState(roomId, { type: 'm.room.canonical_alias', stateKey: '' }),
      ctx.rooms.currentState(roomId, { type: 'm.room.name', stateKey: '' }),
    ]);
    const text = (events: { event: JsonObject }[], field: string) => {
      const v = (events[0]?.event.content as JsonObject | undefined)?.[field];
      return typeof v === 'string' ? v : null;
    };
    return { canonical_alias: text(alias, 'alias'), name: text(name, 'name') };
  };

  // The event as Synapse's admin API shows it (as stored there: signed); ours are stored unsigned
  // (src/rooms/own-signatures.ts).
  const asSigned = async (roomId: string, eventId: string, event: JsonObject): Promise<JsonObject> => {
    const meta = await ctx.rooms.meta(roomId);
    const version = meta?.version ? getRoomVersion(meta.version) : undefined;
    return version ? ownEventSigner(ctx.config.serverName, ctx.signingKey).pdu(eventId, event, version) : event;
  };

  const describe = async (r: StoredReport): Promise<{ listed: Listed; event: JsonObject | null }> => {
    const [event, names] = await Promise.all([ctx.rooms.event(r.room_id!, r.event_id!), roomNames(r.room_id!)]);
    const sender = event && typeof event.event.sender === 'string' ? event.event.sender : null;
    return {
      listed: { id: r.id, received_ts: r.received_ts, room_id: r.room_id!, event_id: r.event_id!, user_id: r.reporter, score: null, reason: r.reason ?? null, sender, ...names },
      event: event?.event ?? null,
    };
  };

  front.route('GET', PATH, async (req) => {
    await requireAdmin(ctx, req);
    const from = intParam(req, 'from', 0);
    const limit = intParam(req, 'limit', 100);
    const dir = req.query.dir ?? 'b';
    if (dir !== 'f' && dir !== 'b') throw errors.invalidParam("Query parameter 'dir' must be one of ['b', 'f']");
    const { user_id: reporter, room_id: roomId, event_sender_user_id: sender } = req.query;
    let reports = await eventReports();
    if (reporter) reports = reports.filter((r) => r.reporter.includes(reporter));
    if (roomId) reports = reports.filter((r) => r.room_id!.includes(roomId));
    let described = await Promise.all(reports.map(describe));
    if (sender) described = described.filter((d) => d.listed.sender === sender);
    const sign = dir === 'b' ? -1 : 1;
    described.sort((a, b) => sign * (a.listed.received_ts - b.listed.received_ts || a.listed.id - b.listed.id));
    const page = described.slice(from, from + limit).map((d) => d.listed);
    const body: JsonObject = { event_reports: page, total: described.length };
    if (from + limit < described.length) body.next_token = from + page.length;
    return { body };
  });

  front.route('GET', `${PATH}/:reportId`, async (req) => {
    await requireAdmin(ctx, req);
    const id = reportId(req);
    const json = await ctx.redis.hget(reportsKey(), String(id));
    const report = json ? (JSON.parse(json) as StoredReport) : null;
    if (!report || report.kind !== 'event') throw errors.notFound('Event report not found');
    const { listed, event } = await describe(report);
    return { body: { ...listed, event_json: event ? await asSigned(report.room_id!, report.event_id!, event) : null } };
  });

  front.route('DELETE', `${PATH}/:reportId`, async (req) => {
    await requireAdmin(ctx, req);
    const id = reportId(req);
    const json = await ctx.redis.hget(reportsKey(), String(id));
    if (!json || (JSON.parse(json) as StoredReport).kind !== 'event') throw errors.notFound('Event report not found');
    await ctx.actors.ask<ReportsReply>('user', 'reports', REPORTS_ACTOR, { op: 'delete', id });
    return { body: {} };
  });
}

