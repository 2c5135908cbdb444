/**
 * Whether a process can reach Redis now, known without waiting on a request: a PING every
 * `intervalMs` on the connection the process's commands use, with its own short timeout.
 *
 * - No answer within `timeoutMs` (Redis paused, overloaded, or the connection is down): not ready.
 *   A front then answers requests that need Redis with 503 at once instead of letting each wait
 *   out its command timeout, and `/health` answers 503.
 * - The PING still outstanding is the probe: the moment Redis answers it, ready again. No PING is
 *   sent while one is outstanding (a stall does not pile them up); one that failed outright
 *   (connection refused, timed out by the client) is followed by another after a short pause.
 */
import type { Logger } from 'pino';

/** What is pinged: a Redis or Cluster client (only `ping` is used, so tests can pass a fake). */
export interface Pingable {
  ping(): Promise<unknown>;
}

export interface RedisHealthOptions {
  /** How long a PING may go unanswered before Redis counts as unreachable (ms). */
  timeoutMs: number;
  /** Time between PINGs while Redis answers (ms). */
  intervalMs?: number;
  /** Pause after a PING that failed outright, before the next (ms). */
  retryMs?: number;
  log?: Logger;
}

export class RedisHealth {
  private readyNow = false;
  private stopped = true;
  private inFlight: { sentAt: number } | null = null;
  private timer: NodeJS.Timeout | null = null;
  private overdue: NodeJS.Timeout | null = null;
  private unreachableSince: number | null = null;
  private lastRtt: number | null = null;
  private readonly listeners = new Set<(ready: boolean) => void>();
  private firstAnswer: Promise<void>;
  private settleFirst!: () => void;

  constructor(
    private readonly redis: Pingable,
    private readonly o: RedisHealthOptions,
  ) {
    this.firstAnswer = new Promise((r) => (this.settleFirst = r));
  }

  /** Start pinging. Resolves once the first PING is answered, or at its timeout (then not ready). */
  start(): Promise<void> {
    if (!this.stopped) return this.firstAnswer;
    this.stopped = false;
    this.probe();
    const timeout = setTimeout(() => this.settleFirst(), this.o.timeoutMs);
    timeout.unref();
    return this.firstAnswer.finally(() => clearTimeout(timeout));
  }

  stop(): void {
    this.stopped = true;
    for (const t of [this.timer, this.overdue]) if (t) clearTimeout(t);
    this.timer = this.overdue = null;
  }

  /** Redis answered the latest PING in time (or the one outstanding is not yet overdue). */
  get ready(): boolean {
    return this.readyNow;
  }

  /** Round trip of the last answered PING (ms), or null before the first. */
  get rttMs(): number | null {
    return this.lastRtt;
  }

  /** Since when (ms since epoch) Redis has been unreachable, or null while it is reachable. */
  get unreachableSinceMs(): number | null {
    return this.unreachableSince;
  }

  /** Called on every change between ready and not ready. Returns a function that removes it. */
  onChange(fn: (ready: boolean) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private probe(): void {
    if (this.stopped || this.inFlight) return;
    const sent = { sentAt: performance.now() };
    this.inFlight = sent;
    this.overdue = setTimeout(() => {
      this.overdue = null;
      // Decided after this turn's I/O: when the event loop itself was blocked past the timeout,
      // the answer may be waiting in the socket, and timers run before sockets are read.
      setImmediate(() => {
        if (this.inFlight === sent && !this.stopped) this.set(false, `no answer to PING within ${this.o.timeoutMs} ms`);
      });
    }, this.o.timeoutMs);
    this.overdue.unref();
    let ping: Promise<unknown>;
    try {
      ping = this.redis.ping();
    } catch (e) {
      ping = Promise.reject(e);
    }
    ping.then(
      () => {
        if (this.inFlight !== sent) return;
        this.inFlight = null;
        if (this.overdue) clearTimeout(this.overdue);
        this.overdue = null;
        this.lastRtt = Math.round((performance.now() - sent.sentAt) * 100) / 100;
        this.set(true);
        this.settleFirst();
        this.schedule(this.o.intervalMs ?? 1000);
      },
      (e: unknown) => {
        if (this.inFlight !== sent) return;
        this.inFlight = null;
        if (this.overdue) clearTimeout(this.overdue);
        this.overdue = null;
        this.set(false, `PING failed: ${e instanceof Error ? e.message : String(e)}`);
        this.schedule(this.o.retryMs ?? 250);
      },
    );
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.probe();
    }, ms);
    this.timer.unref();
  }

  private set(ready: boolean, why?: string): void {
    if (!ready && this.unreachableSince === null) {
      this.unreachableSince = Date.now();
      this.o.log?.warn({ reason: why }, 'redis unreachable: requests that need it answer 503 until it answers again');
    }
    if (ready === this.readyNow) return;
    this.readyNow = ready;
    if (ready && this.unreachableSince !== null) {
      this.o.log?.info({ unreachable_ms: Date.now() - this.unreachableSince }, 'redis reachable again');
      this.unreachableSince = null;
    }
    for (const fn of this.listeners) {
      try {
        fn(ready);
      } catch {
        /* a listener's failure is its own */
      }
    }
  }
}
