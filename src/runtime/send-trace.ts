/**
 * A trace of where a command's time goes between processes (off unless `AXON_SEND_TRACE` names a
 * directory): each process stamps the stages a message id passes through with a wall-clock time
 * in ms (performance.timeOrigin + now: sub-ms, comparable between the processes of one machine),
 * and appends one JSON line per message (`{"m": mid, "<stage>": t, …}`) to
 * `$AXON_SEND_TRACE/<role>-<pid>.jsonl` once a second. `scripts/send-trace-summary.ts` joins the
 * lines by message id and prints each stage's percentiles.
 *
 * Front (for `/send` only: the route begins the record): h0 handler running (request parsed),
 * ask (command built), enq (enqueue script answered), rep (reply stream read answered), ans
 * (answer written). Worker (every inbox entry): read (inbox read answered), start (the actor took
 * it up: after its earlier messages), dec (decided), sent (commit call written), dur (commit
 * answered: durable, reply and ack written by the same script).
 */
import { appendFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

type Rec = Record<string, number | string>;

/** Records not finished after this long are dropped (a message that went another way). */
const STALE_MS = 60_000;

export class SendTrace {
  private readonly open = new Map<string, Rec>();
  private lines: string[] = [];
  private readonly file: string;
  private readonly timer: NodeJS.Timeout;

  constructor(dir: string, role: string) {
    mkdirSync(dir, { recursive: true });
    this.file = join(dir, `${role}-${process.pid}.jsonl`);
    this.timer = setInterval(() => this.flush(), 1000);
    this.timer.unref();
    process.once('exit', () => this.flush());
  }

  static now(): number {
    return performance.timeOrigin + performance.now();
  }

  /** Start a record for `mid` (the front's /send route). */
  begin(mid: string, stage: string, t = SendTrace.now()): void {
    this.open.set(mid, { m: mid, [stage]: t });
  }

  /** Stamp `stage` on `mid`'s record; `only`: only when a record was begun. */
  mark(mid: string, stage: string, only = false, t = SendTrace.now()): void {
    let r = this.open.get(mid);
    if (!r) {
      if (only) return;
      r = { m: mid };
      this.open.set(mid, r);
    }
    r[stage] = t;
  }

  /** Stamp the last stage and queue the record for the file. */
  end(mid: string, stage: string, t = SendTrace.now()): void {
    const r = this.open.get(mid);
    if (!r) return;
    this.open.delete(mid);
    r[stage] = t;
    this.lines.push(JSON.stringify(r));
  }

  private flush(): void {
    const cutoff = SendTrace.now() - STALE_MS;
    for (const [mid, r] of this.open) {
      const first = Object.values(r).find((v) => typeof v === 'number') as number | undefined;
      if (first !== undefined && first < cutoff) this.open.delete(mid);
    }
    if (!this.lines.length) return;
    const text = `${this.lines.join('\n')}\n`;
    this.lines = [];
    try {
      appendFileSync(this.file, text);
    } catch {
      // a trace is best effort
    }
  }
}

const dir = process.env.AXON_SEND_TRACE;
const role = (process.argv[1] ?? '').includes('worker') ? 'worker' : 'front';
/** The process's trace, or null when tracing is off (the default). */
export const sendTrace: SendTrace | null = dir ? new SendTrace(dir, role) : null;
