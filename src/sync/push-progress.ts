/**
 * How far the push evaluator has got on each room shard's outbox, as a front sees it — so a
 * /sync answer that carries a room's new events can carry the unread counts that include them.
 *
 * The push evaluator (src/readers/push-evaluator.ts) runs behind the room actor: an event is in
 * the outbox (and wakes the room's long-polls) a little before its notifications are recorded.
 * Counts read at once would miss it, and a second answer just for the counts would double every
 * member's work in a busy room. Instead the evaluator records, per room shard, the id of the last
 * outbox entry it has finished (`pushData.evaluatedUpTo`, set after that batch's writes) and
 * publishes it on the sync channel; a sync about to read counts for events up to entry X of
 * shard S waits until S's progress reaches X — normally a few milliseconds — as Synapse computes
 * push actions before an event is persisted.
 *
 * Bounded: a shard the evaluator never wrote progress for (it is not running there) is not waited
 * on, and no wait lasts more than `capMs`; after that the counts are what they are, and the room's
 * next answer brings them up to date. A lost notification is caught by re-reading the key every
 * `recheckMs` while someone waits.
 */
import type { KeySpace } from '../store/keys';
import { pushData } from '../store/keys';
import type { RedisClient } from '../store/redis';

type Id = readonly [number, number];

function parseId(id: string): Id | null {
  const dash = id.indexOf('-');
  if (dash <= 0) return null;
  const ms = Number(id.slice(0, dash));
  const seq = Number(id.slice(dash + 1));
  return Number.isFinite(ms) && Number.isFinite(seq) ? [ms, seq] : null;
}

function atLeast(a: Id, b: Id): boolean {
  return a[0] > b[0] || (a[0] === b[0] && a[1] >= b[1]);
}

/** The later of two stream ids. */
export function laterId(a: string, b: string): string {
  const x = parseId(a);
  const y = parseId(b);
  if (!x) return b;
  if (!y) return a;
  return atLeast(x, y) ? a : b;
}

interface Waiter {
  want: Id;
  done: () => void;
}

export class PushProgress {
  /** Known progress per shard; null: the evaluator has never written any there. */
  private readonly upto = new Map<number, Id | null>();
  private readonly waiters = new Map<number, Set<Waiter>>();
  private readonly loading = new Map<number, Promise<Id | null>>();
  /** Shards whose progress did not move through a whole wait: not waited on until it moves. */
  private readonly stalled = new Set<number>();
  /** Called at the next move of a shard's progress (`onNextMove`). */
  private readonly moveListeners = new Map<number, Set<() => void>>();
  /** Figures for status and tests. */
  waits = 0;
  timeouts = 0;

  constructor(
    private readonly redis: RedisClient,
    keys: KeySpace,
    private readonly o: { capMs: number; recheckMs: number } = { capMs: 2_000, recheckMs: 250 },
    /** Where a shard's progress is stored (default: the push evaluator's; the recency index reader keeps its own the same way). */
    private readonly progressKey: (shard: number) => string = (shard) => keys.shard('room', shard).data(pushData.evaluatedUpTo()),
  ) {}

  /** From the sync channel: the evaluator finished shard `shard` up to entry `id`. */
  advance(shard: number, id: string): void {
    const next = parseId(id);
    if (!next) return;
    const cur = this.upto.get(shard);
    if (cur && atLeast(cur, next)) return;
    this.upto.set(shard, next);
    this.stalled.delete(shard);
    const listeners = this.moveListeners.get(shard);
    if (listeners) {
      this.moveListeners.delete(shard);
      for (const f of listeners) f();
    }
    const set = this.waiters.get(shard);
    if (!set) return;
    for (const w of [...set]) if (atLeast(next, w.want)) w.done();
  }

  /**
   * Resolves once the evaluator has finished entry `id` of room shard `shard`'s outbox (true), or
   * at once when it has never run on that shard, or after the cap (false).
   */
  async waitFor(shard: number, id: string): Promise<boolean> {
    const want = parseId(id);
    if (!want) return true;
    let cur = this.upto.has(shard) ? this.upto.get(shard)! : await this.load(shard);
    if (cur === null) return true; // never ran here: nothing to wait for
    if (atLeast(cur, want)) return true;
    // An evaluator that is stuck (or has no holder for a moment) should cost one capped wait,
    // not one per answer: until its progress moves again, answers go without waiting.
    if (this.stalled.has(shard)) return false;
    this.waits++;
    const deadline = Date.now() + this.o.capMs;
    while (Date.now() < deadline) {
      const reached = await new Promise<boolean>((resolve) => {
        let set = this.waiters.get(shard);
        if (!set) this.waiters.set(shard, (set = new Set()));
        const w: Waiter = {
          want,
          done: () => {
            clearTimeout(timer);
            set!.delete(w);
            if (set!.size === 0) this.waiters.delete(shard);
            resolve(true);
          },
        };
        const timer = setTimeout(() => {
          set!.delete(w);
          if (set!.size === 0) this.waiters.delete(shard);
          resolve(false);
        }, Math.min(this.o.recheckMs, Math.max(1, deadline - Date.now())));
        set.add(w);
      });
      if (reached) return true;
      // A notification may have been lost: look at the key itself.
      cur = await this.load(shard);
      if (cur === null || atLeast(cur, want)) return true;
    }
    this.timeouts++;
    this.stalled.add(shard);
    return false;
  }

  /**
   * Call `f` once, at the next move of any of these shards' progress; returns a cancel function.
   * (A sync that had to send counts too early waits for this as well as for its notifications.)
   */
  onNextMove(shards: Iterable<number>, f: () => void): () => void {
    let done = false;
    const once = () => {
      if (done) return;
      done = true;
      cancel();
      f();
    };
    const list = [...new Set(shards)];
    for (const shard of list) {
      let set = this.moveListeners.get(shard);
      if (!set) this.moveListeners.set(shard, (set = new Set()));
      set.add(once);
    }
    const cancel = () => {
      for (const shard of list) {
        const set = this.moveListeners.get(shard);
        set?.delete(once);
        if (set && set.size === 0) this.moveListeners.delete(shard);
      }
    };
    return cancel;
  }

  private load(shard: number): Promise<Id | null> {
    let p = this.loading.get(shard);
    if (!p) {
      p = this.redis
        .get(this.progressKey(shard))
        .then((raw) => {
          const id = raw ? parseId(raw) : null;
          if (id) this.advance(shard, raw!);
          else if (!this.upto.has(shard)) this.upto.set(shard, null);
          return this.upto.get(shard) ?? null;
        })
        .finally(() => this.loading.delete(shard));
      this.loading.set(shard, p);
    }
    return p;
  }
}
