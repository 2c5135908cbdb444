/**
 * At most N /sync computations at once on a front; the rest queue in arrival order.
 *
 * One message in a room of a thousand wakes a thousand long-polls together. Computed all at once,
 * each holds its half-built answer and its Redis replies in memory while the others interleave:
 * memory and garbage collection grow with the burst, and every answer is late. Through the gate the
 * burst is worked off a few dozen at a time, each finished quickly; a waiter woken again while
 * queued still computes once (its dirty flag), so an overloaded front batches more events into
 * each answer instead of falling further behind.
 */
export class ComputeGate {
  private running = 0;
  private readonly queue: (() => void)[] = [];

  constructor(readonly limit: number) {}

  /**
   * Run `fn` in a slot. `fn` gets `outside`: a wait that should not hold a slot (the computation
   * waiting on something slow, e.g. another process) goes through it — the slot is given up for
   * the wait and taken again (in line) after it.
   */
  async run<T>(fn: (outside: <U>(wait: Promise<U>) => Promise<U>) => Promise<T>): Promise<T> {
    await this.acquire();
    let held = true;
    const outside = async <U>(wait: Promise<U>): Promise<U> => {
      if (!held) return wait;
      held = false;
      this.release();
      try {
        return await wait;
      } finally {
        // Back at the head of the line: it has queued once already, and what it holds is nearly done.
        await this.acquire(true);
        held = true;
      }
    };
    try {
      return await fn(outside);
    } finally {
      if (held) this.release();
    }
  }

  private async acquire(first = false): Promise<void> {
    if (this.running >= this.limit) await new Promise<void>((resolve) => (first ? this.queue.unshift(resolve) : this.queue.push(resolve)));
    else this.running++;
  }

  private release(): void {
    const next = this.queue.shift();
    if (next) next(); // the slot passes straight to the next in line
    else this.running--;
  }

  /** Computations waiting for a slot (status, tests). */
  get queued(): number {
    return this.queue.length;
  }
}
