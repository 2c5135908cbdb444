/**
 * How long a device's next /sync computation waits after the front's last answer to it, so that a
 * busy front answers each device a few times a second with everything new, instead of once per
 * message.
 *
 * Every message in a room wakes the long-polls of all its members; a client re-polls as soon as
 * it gets an answer, and a front that computes at once answers it again with the next single
 * message. In a busy conversation each member's loop then costs one whole computation (membership
 * snapshot, feeds, to-device, counts, serialisation: ~20 Redis commands and a response) per
 * message, and a front's CPU grows with messages × members — with 200 users in rooms of 50, the
 * front saturated near 30 msg/s. Waiting a little after an answer lets the next one carry every
 * message of that interval: the cost then grows with answers, which this bounds.
 *
 * The interval follows the front's own load: the event loop's utilisation over the last sample
 * (`performance.eventLoopUtilization`), times MAX_SPACING_MS. An idle front waits a few ms (its
 * answers are as prompt as before); a saturated one waits up to MAX_SPACING_MS, which keeps
 * delivery well under a second. Only the computation after a recent answer to the same device
 * waits (a poll that sat idle answers at once when poked), and never past the poll's deadline.
 *
 * Nor past what the device's filter can carry: an answer holds at most `timeline.limit` events a
 * room (10 when the filter sets none; matrix-js-sdk asks for 8, Element for 20), and a room with
 * more new events comes back `limited` — a gap the client fills with /messages, or shows. The wait
 * ends, at the latest, when the busiest of the device's rooms, at its recent rate
 * (`RoomEventRates`, fed by the workers' notifications), has had half the limit since the last
 * answer's cut (`gapForLimit`, `capToLimit`): the wait itself adds no more than that, whatever the
 * front's load. (The rest of a cycle — computing, the client's round trip, queueing — is not the
 * wait's to shorten.) With the bench's 8-event clients in rooms of 30 msg/s, the uncapped wait
 * made limited timelines of about one answer in ten.
 */
import { performance } from 'node:perf_hooks';

/** The longest a device's next answer waits after its last one (at full load). */
export const MAX_SPACING_MS = 300;
/** How often the load is sampled. */
const SAMPLE_MS = 250;

export class AnswerSpacing {
  private utilization = 0;
  private last = performance.eventLoopUtilization();
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly maxMs = MAX_SPACING_MS) {}

  /** Take a load sample now (the timer does it every SAMPLE_MS; tests call it directly). */
  sample(): void {
    const now = performance.eventLoopUtilization();
    this.utilization = performance.eventLoopUtilization(now, this.last).utilization;
    this.last = now;
  }

  /** Start sampling (an unref'd timer: it never keeps the process up). */
  start(): this {
    if (!this.timer) {
      this.timer = setInterval(() => this.sample(), SAMPLE_MS);
      this.timer.unref();
    }
    return this;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** The interval now (ms), from the last sampled load. */
  get spacingMs(): number {
    return Math.round(Math.min(1, Math.max(0, this.utilization)) * this.maxMs);
  }

  /** How long to wait now before computing for a device last answered at `answeredAt` (Date.now() ms). */
  delayAfter(answeredAt: number, now = Date.now()): number {
    return Math.max(0, answeredAt + this.spacingMs - now);
  }
}

/**
 * `delay` (ms) cut so that the next computation starts no later than `capMs` after the last one's
 * cut (`cutAt`, performance.now() ms: its change mark, taken as it began computing).
 */
export function capToLimit(delay: number, cutAt: number, capMs: number, now = performance.now()): number {
  return Math.max(0, Math.min(delay, cutAt + capMs - now));
}

/** The share of a device's timeline limit that may pile up in one room while its next answer waits. */
const LIMIT_SHARE = 0.5;

/**
 * The longest gap (ms) between two answers that keeps a room gaining `rate` events a ms under
 * LIMIT_SHARE of the filter's `limit`; unbounded for no limit to keep (0: the client asked for no
 * timeline) or a quiet room.
 */
export function gapForLimit(limit: number, rate: number): number {
  if (!(limit > 0) || !(rate > 0)) return Number.POSITIVE_INFINITY;
  return (LIMIT_SHARE * limit) / rate;
}

/** How long a room's events count in its rate (ms): the estimate follows a change within about this. */
const RATE_TAU_MS = 1000;
/** Rooms whose rate a front keeps; beyond, the least recently busy are forgotten (a rate of 0 again). */
const RATE_ROOMS_MAX = 100_000;
/** A room without events for this long (ms) is forgotten: its rate has decayed to nothing (e^-20). */
const RATE_FORGET_MS = 20 * RATE_TAU_MS;

/**
 * Each room's recent event rate, from the events the workers' notifications count
 * (src/sync/notify.ts `roomEvents`): an exponentially decaying count, so a steady rate `r` reads as
 * `r` and a room that went quiet fades to 0 within a few RATE_TAU_MS. Times are performance.now() ms.
 */
export class RoomEventRates {
  private readonly byRoom = new Map<string, { count: number; at: number }>();

  constructor(private readonly maxRooms = RATE_ROOMS_MAX) {}

  /** `events` more events in `roomId` now. */
  note(roomId: string, events: number, now = performance.now()): void {
    if (!(Number.isFinite(events) && events > 0)) return;
    let e = this.byRoom.get(roomId);
    if (e) {
      e.count = e.count * Math.exp(-Math.max(0, now - e.at) / RATE_TAU_MS) + events;
      e.at = now;
      // Re-inserted last: the map stays in order of last activity, for forgetting.
      this.byRoom.delete(roomId);
    } else {
      if (this.byRoom.size >= this.maxRooms) this.byRoom.delete(this.byRoom.keys().next().value!);
      e = { count: events, at: now };
    }
    this.byRoom.set(roomId, e);
    // The least recently busy come first: forget those quiet long enough to read as 0.
    for (const [k, v] of this.byRoom) {
      if (now - v.at < RATE_FORGET_MS) break;
      this.byRoom.delete(k);
    }
  }

  /** The room's rate now, in events a ms (0: none lately, or not known). */
  rate(roomId: string, now = performance.now()): number {
    const e = this.byRoom.get(roomId);
    return e ? (e.count * Math.exp(-Math.max(0, now - e.at) / RATE_TAU_MS)) / RATE_TAU_MS : 0;
  }

  /** The highest rate among `rooms` now. */
  maxRate(rooms: Iterable<string>, now = performance.now()): number {
    let max = 0;
    for (const r of rooms) {
      const v = this.rate(r, now);
      if (v > max) max = v;
    }
    return max;
  }

  /** Rooms with a rate kept (tests). */
  get size(): number {
    return this.byRoom.size;
  }
}
