/**
 * ReportsActor: the server's one inbox of content reports (report_content.yaml) — rooms, events
 * and users reported by local users for the server's admins to review (as Synapse keeps its
 * `event_reports` and `room_reports` tables). One actor (id `reports`, in the user shard that id
 * hashes to) so reports get increasing ids in arrival order; reports are rare, so one mailbox is
 * plenty. The front checks who may report what; this actor numbers and stores.
 *
 * Stored (`reportData`, in this actor's shard): a hash of report id → JSON
 * `{ id, received_ts, reporter, kind, room_id?, event_id?, user_id?, reason? }`.
 */
import { ActorRejection, type ActorKind, type ActorMessage, type Decision } from '../src/runtime/actor';
import { reportData } from '../src/store/keys';

/** The id of the one reports actor. */
export const REPORTS_ACTOR = 'reports';

export interface Report {
  kind: 'room' | 'event' | 'user';
  reporter: string;
  room_id?: string;
  event_id?: string;
  user_id?: string;
  reason?: string;
}

export interface StoredReport extends Report {
  id: number;
  received_ts: number;
}

export interface ReportsState {
  next: number;
}

/** `delete`: an admin dismissed a report (Synapse's `DELETE /_synapse/admin/v1/event_reports/{id}`). */
export type ReportsMessage = { op: 'report'; report: Report } | { op: 'delete'; id: number };

export type ReportsReply = { id: number };

const MAX_REASON = 10_000;

/** Pure: number and store a report. */
export function decideReports(state: ReportsState, msg: ActorMessage<ReportsMessage>): Decision<ReportsState, ReportsReply> {
  const body = msg.body;
  if (body?.op === 'delete') {
    if (!Number.isSafeInteger(body.id) || body.id < 0) throw new ActorRejection('M_INVALID_PARAM', 'id must be a non-negative integer', 400);
    return { state, reply: { id: body.id }, writes: [{ cmd: 'HDEL', key: reportData.reports(), args: [String(body.id)] }] };
  }
  if (body?.op !== 'report') throw new TypeError(`reports: unknown op ${JSON.stringify((body as { op?: unknown } | undefined)?.op)}`);
  const r = body.report;
  if (!r || !['room', 'event', 'user'].includes(r.kind)) throw new ActorRejection('M_INVALID_PARAM', 'Unknown report kind', 400);
  if (typeof r.reporter !== 'string' || !r.reporter.startsWith('@')) throw new ActorRejection('M_INVALID_PARAM', 'reporter must be a user id', 400);
  if ((r.kind === 'room' || r.kind === 'event') && (typeof r.room_id !== 'string' || !r.room_id.startsWith('!'))) throw new ActorRejection('M_INVALID_PARAM', 'room_id must be a room id', 400);
  if (r.kind === 'event' && (typeof r.event_id !== 'string' || !r.event_id.startsWith('$'))) throw new ActorRejection('M_INVALID_PARAM', 'event_id must be an event id', 400);
  if (r.kind === 'user' && (typeof r.user_id !== 'string' || !r.user_id.startsWith('@'))) throw new ActorRejection('M_INVALID_PARAM', 'user_id must be a user id', 400);
  if (r.reason !== undefined && (typeof r.reason !== 'string' || r.reason.length > MAX_REASON)) throw new ActorRejection('M_INVALID_PARAM', `reason must be a string of at most ${MAX_REASON} characters`, 400);
  const id = state.next + 1;
  const stored: StoredReport = { id, received_ts: msg.enqueuedAt, ...r };
  return { state: { next: id }, reply: { id }, writes: [{ cmd: 'HSET', key: reportData.reports(), args: [String(id), JSON.stringify(stored)] }] };
}

export function reportsActor(): ActorKind<ReportsState, ReportsMessage, ReportsReply> {
  return { kind: 'reports', family: 'user', initialState: () => ({ next: 0 }), decide: decideReports };
}
