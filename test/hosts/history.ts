/**
 * The recorded history of a load run on the multi-host bed (test/hosts/load-main.ts) and its check,
 * Jepsen style: afterwards, from what clients were told and what the rooms hold.
 *
 * - a txn id acknowledged more than once names one event (idempotent retries);
 * - every acknowledged event is in its room's timeline exactly once, sent by the request's user
 *   with the request's body (not lost, not duplicated, not another request's event);
 * - no message body appears twice in the timelines, acknowledged or not (a retry that was not
 *   recognised as one would show as a second copy), and none appears that nobody sent;
 * - a /sync reader sees each event at most once, with the timeline's content, and — when it caught
 *   up and no sync of its had a gap in that room — every acknowledged event. One exception,
 *   counted apart (`rereadAfterRollback`): a reader sent an event a second time where the first copy
 *   reached it before the event was acknowledged and a fault began between the two copies. That is
 *   a read of a commit not yet acknowledged (not yet on a replica) that a Redis failover took
 *   back; the retried send committed it again with the same id and content, and the reader got it
 *   again. It says nothing about acknowledged messages, which the other rules check.
 *
 * Pure: no I/O, so the check itself is unit-tested (history.unit.test.ts).
 */

export interface SendAttempt {
  sender: number;
  user: string;
  room: string;
  txn: string;
  body: string;
  attempt: number;
  front: number;
  /** ms since the run started. */
  t0: number;
  t1: number;
  /** HTTP status; 0 when there was no answer (connection error or client timeout). */
  status: number;
  eventId?: string;
  error?: string;
  retryAfter?: string;
}

export interface TimelineEvent {
  room: string;
  eventId: string;
  sender: string;
  body: string;
}

export interface SyncPoll {
  reader: number;
  front: number;
  t0: number;
  t1: number;
  status: number;
  events: TimelineEvent[];
  /** Rooms whose timeline in this incremental sync was `limited` (a gap). */
  limited: string[];
  error?: string;
  retryAfter?: string;
}

export interface History {
  startedAt: number;
  endedAt?: number;
  rooms?: string[];
  sends: SendAttempt[];
  polls: SyncPoll[];
  marks: { t: number; label: string }[];
  /** Each room's whole timeline (m.room.message events), oldest first, read after the run. */
  timelines: Record<string, TimelineEvent[]>;
  readersCaughtUp: Record<number, boolean>;
}

export interface HistoryCheck {
  /** Each a sentence naming the request or event: empty when everything holds. */
  violations: string[];
  acknowledged: number;
  /** Messages tried but never acknowledged (none when the run stopped properly). */
  unacknowledged: number;
  timelineMessages: number;
  /** Readers that caught up and so were checked for completeness. */
  readersChecked: number;
  /** Acknowledged messages that are in no timeline (each also a violation). */
  lost: { eventId: string; body: string; ackedAt: number }[];
  /** Events a reader was sent again after a failover took back the unacknowledged first copy (see above). */
  rereadAfterRollback: { reader: number; eventId: string; firstSeenAt: number; ackedAt: number; againAt: number }[];
}

export function checkHistory(h: History): HistoryCheck {
  const violations: string[] = [];
  const lost: HistoryCheck['lost'] = [];
  const key = (s: { user: string; txn: string }) => `${s.user} ${s.txn}`;

  // 1. One event id per acknowledged txn.
  const ackOf = new Map<string, SendAttempt>();
  const tried = new Map<string, SendAttempt>();
  for (const s of h.sends) {
    tried.set(key(s), s);
    if (!s.eventId) continue;
    const prev = ackOf.get(key(s));
    if (prev && prev.eventId !== s.eventId) violations.push(`txn ${s.txn} of ${s.user} acknowledged as ${prev.eventId} and as ${s.eventId}`);
    if (!prev) ackOf.set(key(s), s);
  }

  // 2. Every acknowledged event exactly once in its room, with its own request's content.
  const byId = new Map<string, TimelineEvent[]>();
  const byBody = new Map<string, TimelineEvent[]>();
  let timelineMessages = 0;
  for (const [room, events] of Object.entries(h.timelines)) {
    for (const e of events) {
      timelineMessages++;
      byId.set(e.eventId, [...(byId.get(e.eventId) ?? []), { ...e, room }]);
      byBody.set(e.body, [...(byBody.get(e.body) ?? []), { ...e, room }]);
    }
  }
  for (const s of ackOf.values()) {
    const found = byId.get(s.eventId!) ?? [];
    if (found.length === 0) {
      violations.push(`lost: ${s.eventId} (acknowledged for ${s.body}, txn ${s.txn}, at ${s.t1} ms) is in no timeline`);
      lost.push({ eventId: s.eventId!, body: s.body, ackedAt: s.t1 });
    }
    else if (found.length > 1) violations.push(`duplicated: ${s.eventId} is in the timelines ${found.length} times`);
    for (const e of found) {
      if (e.room !== s.room || e.sender !== s.user || e.body !== s.body) {
        violations.push(`wrong event: ${s.eventId} acknowledged for ${s.body} by ${s.user} in ${s.room} holds ${e.body} by ${e.sender} in ${e.room}`);
      }
    }
  }

  // 3. No body twice; none that nobody sent.
  const sentBodies = new Map<string, SendAttempt>();
  for (const s of h.sends) sentBodies.set(s.body, s);
  for (const [body, events] of byBody) {
    if (events.length > 1) violations.push(`duplicated: ${body} appears ${events.length} times (${events.map((e) => e.eventId).join(', ')})`);
    const s = sentBodies.get(body);
    if (!s) violations.push(`phantom: ${body} (${events[0]!.eventId}) was never sent`);
    else if (events.some((e) => e.sender !== s.user)) violations.push(`phantom: ${body} appears with a sender other than ${s.user}`);
  }

  // 4. Readers: at most once each, same content, complete when caught up without gaps.
  let readersChecked = 0;
  const rereadAfterRollback: HistoryCheck['rereadAfterRollback'] = [];
  const ackById = new Map([...ackOf.values()].map((s) => [s.eventId!, s]));
  const faultStarts = h.marks.filter((m) => m.label.endsWith(' start')).map((m) => m.t);
  const readers = new Set(h.polls.map((p) => p.reader));
  for (const r of readers) {
    const seen = new Map<string, number>();
    /** When each copy of an event reached the reader (poll ends). */
    const seenAt = new Map<string, number[]>();
    const gapRooms = new Set<string>();
    for (const p of h.polls) {
      if (p.reader !== r) continue;
      for (const room of p.limited) gapRooms.add(room);
      for (const e of p.events) {
        seen.set(e.eventId, (seen.get(e.eventId) ?? 0) + 1);
        seenAt.set(e.eventId, [...(seenAt.get(e.eventId) ?? []), p.t1]);
        const t = byId.get(e.eventId)?.[0];
        if (t && (t.body !== e.body || t.sender !== e.sender)) violations.push(`reader ${r} saw ${e.eventId} as ${e.body} by ${e.sender}; the timeline has ${t.body} by ${t.sender}`);
      }
    }
    for (const [id, n] of seen) {
      if (n <= 1) continue;
      const [first, again] = seenAt.get(id)!;
      const ack = ackById.get(id);
      if (n === 2 && ack && first! < ack.t1 && faultStarts.some((t) => t > first! && t < again!)) {
        rereadAfterRollback.push({ reader: r, eventId: id, firstSeenAt: first!, ackedAt: ack.t1, againAt: again! });
        continue;
      }
      violations.push(`reader ${r} was sent ${id} ${n} times`);
    }
    if (!h.readersCaughtUp[r]) continue;
    readersChecked++;
    for (const s of ackOf.values()) {
      if (!gapRooms.has(s.room) && !seen.has(s.eventId!)) violations.push(`reader ${r} never saw acknowledged ${s.eventId} (${s.body})`);
    }
  }

  let unacknowledged = 0;
  for (const k of tried.keys()) if (!ackOf.has(k)) unacknowledged++;
  return { violations, acknowledged: ackOf.size, unacknowledged, timelineMessages, readersChecked, lost, rereadAfterRollback };
}

export interface FaultFigures {
  fault: string;
  /** Send attempts between the fault's start and the next fault (or the end) that got no 200. */
  sendsFailed: number;
  sendsTried: number;
  /** Failed attempts by answer: `503`, `504`, `0 client timeout`… */
  failedBy: Record<string, number>;
  /** 503/504 answers without a Retry-After header (the issue wants one on each). */
  unavailableWithoutRetryAfter: number;
  syncPollsFailed: number;
  /** Longest time with no send acknowledged at all, from the fault's start (ms). */
  longestAckGapMs: number;
  /** Longest time one message took from its first attempt to its acknowledgement (ms). */
  slowestMessageMs: number;
  /**
   * From the heal (or the fault's start when there is no heal mark) to the moment every front had
   * acknowledged a send it was given after the heal (ms): service back on every front.
   */
  recoverMs: number | null;
}

/** Figures for the fault whose marks are `<fault> start` and (optionally) `<fault> heal`. */
export function faultFigures(h: History, fault: string): FaultFigures {
  const start = h.marks.find((m) => m.label === `${fault} start`)?.t;
  if (start === undefined) throw new Error(`no mark "${fault} start"`);
  const heal = h.marks.find((m) => m.label === `${fault} heal`)?.t ?? start;
  const next = h.marks.filter((m) => m.t > start && m.label.endsWith(' start')).map((m) => m.t)[0] ?? Number.POSITIVE_INFINITY;
  // Attempts answered after the start (those in flight when the fault began count) and begun before the next fault.
  const inWindow = h.sends.filter((s) => s.t1 >= start && s.t0 < next);
  const failed = inWindow.filter((s) => !s.eventId);
  const failedBy: Record<string, number> = {};
  for (const s of failed) {
    const k = s.status === 0 ? `0 ${s.error ?? ''}`.trim() : String(s.status);
    failedBy[k] = (failedBy[k] ?? 0) + 1;
  }
  const acks = h.sends.filter((s) => s.eventId && s.t1 >= start && s.t1 < next).map((s) => s.t1).sort((a, b) => a - b);
  let gap = 0;
  let prev = start;
  for (const t of acks) {
    gap = Math.max(gap, t - prev);
    prev = t;
  }
  const firstAttempt = new Map<string, number>();
  let slowest = 0;
  for (const s of h.sends) {
    const k = `${s.user} ${s.txn}`;
    if (!firstAttempt.has(k)) firstAttempt.set(k, s.t0);
    if (s.eventId && s.t1 >= start && s.t1 < next) slowest = Math.max(slowest, s.t1 - firstAttempt.get(k)!);
  }
  // Per front: the first acknowledgement of an attempt it was sent after the heal.
  const fronts = new Set(h.sends.map((s) => s.front));
  let recoverAt = heal;
  for (const front of fronts) {
    const firstAfter = h.sends.filter((s) => s.front === front && s.eventId && s.t0 >= heal && s.t0 < next).sort((a, b) => a.t1 - b.t1)[0];
    if (!firstAfter) {
      recoverAt = Number.NaN;
      break;
    }
    recoverAt = Math.max(recoverAt, firstAfter.t1);
  }
  return {
    fault,
    sendsFailed: failed.length,
    sendsTried: inWindow.length,
    failedBy,
    unavailableWithoutRetryAfter: failed.filter((s) => (s.status === 503 || s.status === 504) && !s.retryAfter).length,
    syncPollsFailed: h.polls.filter((p) => p.t1 >= start && p.t0 < next && p.status !== 200).length,
    longestAckGapMs: gap,
    slowestMessageMs: slowest,
    recoverMs: Number.isNaN(recoverAt) ? null : recoverAt - heal,
  };
}
