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
