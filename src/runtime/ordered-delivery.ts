/**
 * Ordered delivery: the state machine an actor runs to push a queue of its own to one remote
 * party in transactions, in order, exactly once to that party's eyes, with retries — shared by the
 * federation destination actor (actors/destination.ts) and the appservice actor
 * (actors/appservice.ts). DESIGN: work that must happen once per peer, in order, with retries is
 * an actor on our runtime; this module is the part of such an actor that does not depend on whom
 * it talks to. Each actor keeps its own queues, transaction limits, bodies and outcomes.
 *
 * The shape (each actor's header tells why, for its peer):
 *  - Queues are streams in the actor's shard whose entry ids are the actor's own sequence numbers
 *    (`<seq>-0`, appended in the commit that takes the message); the state holds only numbers.
 *  - Starting a transaction is a decision: `inflight` (txn id, the queue ranges it carries) is
 *    committed BEFORE anything is sent, with the `send` timer due now (or when the backoff ends).
 *  - The `send` message's shell starts the PUT in the background of the worker process and
 *    returns at once (`started`), or finds this process still running one (`running`); decide
 *    commits `sending` and re-arms the timer as a watch, so a worker killed mid-send leaves the
 *    transaction committed and the next shard holder sends the same txn id again.
 *  - The process reports `sent` (txn id, attempt, outcome) to the actor's inbox. A retryable
 *    failure of the latest attempt backs off (min × 2^(n-1) × a jitter drawn from a hash, so
 *    decide stays pure; capped) and keeps the transaction; a final outcome (delivered, or given
 *    up by the actor's rules) ends it and cuts the next one. Late reports change nothing.
 *  - `wake` (the peer showed it is up) ends a backoff at once.
 *
 * Stored shape: the fields below (`txnSeq`, `inflight.{txnId, attempts, sending}`, `failures`,
 * `retryAt`, `lastTimerAt`, `prevTimerAt`, `txns`, `lastError`) are part of both actors' stored
 * state, with these names; renaming one would strand the queues of a running cluster.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { ActorMessage, Decision, ShellContext, StoreWrite } from './actor';
import { encode } from '../store/codec';
import type { KeySpace } from '../store/keys';

/** What every transaction in flight records beside the queue ranges of its actor. */
export interface InflightTransaction {
  txnId: string;
  /** Attempts started so far (the number of the latest). */
  attempts: number;
  /** An attempt (the latest) is out and has not reported back. */
  sending?: boolean;
}

/** The part of an ordered-delivery actor's state this module reads and writes. */
export interface DeliveryState<I extends InflightTransaction> {
  /** Transactions started so far (part of the txn id). */
  txnSeq: number;
  inflight: I | null;
  /** Consecutive failed attempts (0: the peer is fine). */
  failures: number;
  /** No attempt before this time (ms); 0 = none pending. */
  retryAt: number;
  /** The due time of the last `send` timer set (timer message ids derive from it: each must be new). */
  lastTimerAt: number;
  /** The latest due time of the `send` timers set before that one that may have fired. */
  prevTimerAt: number;
  /** Transactions ended (delivered or given up), for operators. */
  txns: number;
  lastError?: string;
}

export interface DeliveryLimits {
  /** First retry interval after a failure. */
  minRetryMs: number;
  /** Longest interval between retries. */
  maxRetryMs: number;
  /** How often the actor looks whether the PUT it started still runs (a dead worker's is started again). */
  watchMs: number;
}

/** The retry interval's jitter: a factor drawn in [min, max) from the 2nd failure on (the 1st waits exactly minRetryMs). */
export interface BackoffJitter {
  min: number;
  max: number;
}

/** A retryable failure: the same transaction again after the backoff (or `retryAfterMs`, if longer). */
export interface RetryOutcome {
  kind: 'retry';
  error: string;
  retryAfterMs?: number;
}

/** From the process that ran attempt `attempt` of `txnId`: how it went (each actor adds its counts). */
export interface SentReport<O extends { kind: string } = { kind: string }> {
  t: 'sent';
  txnId: string;
  attempt: number;
  outcome: O;
}

/** The messages of the delivery cycle (each actor adds its queueing messages). */
export type DeliveryMessage<R extends SentReport> =
  /** The actor's own timer: start the transaction in flight (if its backoff is over), or watch the one out. */
  | { t: 'send' }
  | R
  /** The peer is reachable again: end any backoff now. */
  | { t: 'wake' };

/** What the shell did for a `send`. */
export type DeliveryPrepared =
  /** It started attempt `attempt` of the transaction in flight (in the background). */
  | { kind: 'started'; txnId: string; attempt: number }
  /** This process is still running a PUT for the actor: nothing new was started. */
  | { kind: 'running'; txnId: string };

export type DeliveryReply = { ok: true };

type Timer = { key: string; atMs: number; body: { t: 'send' } };

/** The wait after the `failures`-th consecutive failure: min × 2^(n-1) × jitter, capped (pure: the jitter comes from a hash of `seed` and n). */
export function backoffDelayMs(seed: string, failures: number, limits: Pick<DeliveryLimits, 'minRetryMs' | 'maxRetryMs'>, jitter: BackoffJitter): number {
  if (failures <= 0) return 0;
  const base = limits.minRetryMs * 2 ** Math.min(failures - 1, 40);
  const h = createHash('sha256').update(`${seed}\u0000${failures}`).digest().readUInt32BE(0);
  const factor = failures === 1 ? 1 : jitter.min + (h / 2 ** 32) * (jitter.max - jitter.min);
  return Math.min(Math.round(base * factor), limits.maxRetryMs);
}

/** The stream id of a queue seq (`<seq>-0`: ids must be above 0-0, seqs start at 1). */
export const seqId = (seq: number): string => `${seq}-0`;

/** Append entries (field/value lists) to a queue stream from seq `nextSeq` on; returns the seq the next entry gets. */
export function appendToQueue(key: string, nextSeq: number, entries: string[][], writes: StoreWrite[]): number {
  let seq = nextSeq;
  for (const fields of entries) writes.push({ cmd: 'XADD', key, args: [seqId(seq++), ...fields] });
  return seq;
}

/** Drop a queue's entries below seq `firstKept`. */
export function trimQueue(key: string, firstKept: number): StoreWrite {
  return { cmd: 'XTRIM', key, args: ['MINID', seqId(firstKept)] };
}

/** The last seq of the next transaction's range of a queue: up to `max` after `taken`, no further than what is queued. */
export function rangeEnd(next: number, taken: number, max: number): number {
  return Math.min(next - 1, taken + max);
}

/** A queue's entries `from`..`to` (inclusive; none when `to < from`) as field maps, in order (shell side). */
export async function readQueueRange(ctx: Pick<ShellContext, 'redis' | 'keys'>, key: string, from: number, to: number): Promise<Record<string, string>[]> {
  if (to < from) return [];
  const rows = (await ctx.redis.xrange(ctx.keys.data(key), seqId(from), seqId(to))) as [string, string[]][];
  return rows.map(([, fields]) => {
    const f: Record<string, string> = {};
    for (let i = 0; i + 1 < fields.length; i += 2) f[fields[i]!] = fields[i + 1]!;
    return f;
  });
}

/**
 * Set the `send` timer at `atMs`, never at a time a fired timer had: the timer's message id is
 * derived from its due time, so a repeat would be dropped as a duplicate. The pending timer
 * (due at `lastTimerAt`) may have fired when that time is past (timers never fire early);
 * otherwise it is replaced unfired and the floor is the latest due time before it.
 */
export function scheduleSend<S extends DeliveryState<InflightTransaction>>(state: S, atMs: number, now: number): { state: S; timer: Timer } {
  const floor = state.lastTimerAt <= now ? state.lastTimerAt : state.prevTimerAt;
  const at = Math.max(atMs, floor + 1);
  return { state: { ...state, prevTimerAt: floor, lastTimerAt: at }, timer: { key: 'send', atMs: at, body: { t: 'send' } } };
}

/** The next transaction an actor cuts from its queues: its state with the ranges taken, and the ranges (the inflight record but its id and attempts). */
export interface NextTransaction<S, I extends InflightTransaction> {
  state: S;
  ranges: Omit<I, keyof InflightTransaction>;
}

/** How one actor kind delivers: what this module asks of it. */
export interface DeliveryRules<S extends DeliveryState<I>, I extends InflightTransaction, R extends SentReport> {
  /** Whose queue this is (seeds the backoff jitter). */
  id: string;
  limits: DeliveryLimits;
  jitter: BackoffJitter;
  /** Cut the next transaction from the queues (null: nothing waits). `state.inflight` is null. */
  cut(state: S, now: number): NextTransaction<S, I> | null;
  /**
   * A final outcome of the transaction in flight (delivered, or given up for good): the state with
   * the actor's totals counted and the writes that drop what it carried; null when `report`'s
   * outcome is no outcome this actor knows (nothing changes).
   */
  finish(state: S, report: R): { state: S; writes: StoreWrite[] } | null;
  /** Writes that tell others the actor backs off until `retryAt` (null: it no longer does). */
  backoffWrites?(retryAt: number | null): StoreWrite[];
}

type D<S> = Decision<S, DeliveryReply>;

const withWrites = (writes: StoreWrite[] | undefined) => (writes?.length ? { writes } : {});

/** With nothing in flight and something waiting: commit the next transaction and ask for it to be sent (not before the backoff is over). */
export function startNext<S extends DeliveryState<I>, I extends InflightTransaction, R extends SentReport>(state: S, now: number, rules: DeliveryRules<S, I, R>, d: D<S>): D<S> {
  if (state.inflight) return d;
  const cut = rules.cut(state, now);
  if (!cut) return d;
  const txnSeq = state.txnSeq + 1;
  // Unique across the actor's life even if its state were ever lost: the peer dedupes on txn
  // ids, and a reused one would be dropped unseen.
  const inflight = { txnId: `${now.toString(36)}.${txnSeq}`, ...cut.ranges, attempts: 0 } as I;
  const { state: next, timer } = scheduleSend({ ...cut.state, txnSeq, inflight }, Math.max(now, state.retryAt), now);
  return { ...d, state: next, timers: [...(d.timers ?? []), timer] };
}

/** Decide a `send`, `sent` or `wake` (see the header) arrived at `now`. */
export function decideDelivery<S extends DeliveryState<I>, I extends InflightTransaction, R extends SentReport>(
  state: S,
  body: DeliveryMessage<R>,
  now: number,
  prepared: DeliveryPrepared | undefined,
  rules: DeliveryRules<S, I, R>,
): D<S> {
  const unchanged: D<S> = { state, reply: { ok: true } };
  switch (body?.t) {
    case 'wake': {
      if (state.retryAt === 0) return unchanged;
      const writes = withWrites(rules.backoffWrites?.(null));
      const woken = { ...state, retryAt: 0, failures: 0 };
      if (!state.inflight || state.inflight.sending || state.retryAt <= now) return { state: woken, reply: { ok: true }, ...writes };
      // The pending timer (due at retryAt > now) has not fired: it is replaced.
      const { state: next, timer } = scheduleSend(woken, now, now);
      return { state: next, reply: { ok: true }, timers: [timer], ...writes };
    }
    case 'send': {
      const inf = state.inflight;
      if (!inf) return startNext(state, now, rules, unchanged);
      // A late or repeated timer during a backoff: the retry timer stands.
      if (!prepared || prepared.txnId !== inf.txnId) return unchanged;
      const started = prepared.kind === 'started' ? { ...state, inflight: { ...inf, attempts: prepared.attempt, sending: true } } : state;
      const { state: next, timer } = scheduleSend(started, now + rules.limits.watchMs, now);
      return { state: next, reply: { ok: true }, timers: [timer] };
    }
    case 'sent': {
      const inf = state.inflight;
      // A late report: the transaction was answered (or abandoned) meanwhile.
      if (!inf || body.txnId !== inf.txnId) return unchanged;
      const o = body.outcome as R['outcome'] | undefined;
      if (o?.kind === 'retry') {
        // A failure of an older attempt says nothing about the latest one, which is still out.
        if (body.attempt !== inf.attempts) return unchanged;
        const r = o as RetryOutcome;
        const failures = state.failures + 1;
        const retryAt = now + Math.max(backoffDelayMs(rules.id, failures, rules.limits, rules.jitter), typeof r.retryAfterMs === 'number' ? r.retryAfterMs : 0);
        const { state: next, timer } = scheduleSend({ ...state, failures, retryAt, inflight: { ...inf, sending: false }, lastError: String(r.error) }, retryAt, now);
        return { state: next, reply: { ok: true }, timers: [timer], ...withWrites(rules.backoffWrites?.(retryAt)) };
      }
      // Final (whatever the attempt: it was answered): the ranges are done.
      const done = rules.finish(state, body);
      if (!done) return unchanged;
      const writes = done.writes;
      if (state.retryAt !== 0 || state.failures !== 0) writes.push(...(rules.backoffWrites?.(null) ?? []));
      const next: S = { ...done.state, inflight: null, failures: 0, retryAt: 0, txns: state.txns + 1 };
      return startNext(next, now, rules, { state: next, reply: { ok: true }, writes });
    }
    default:
      return unchanged;
  }
}

/** How one actor kind's shell sends a transaction. */
export interface DeliveryShellOptions<S extends DeliveryState<I>, I extends InflightTransaction, R extends SentReport> {
  /** The actor kind (its inbox entries' `k`; the log field naming the actor). */
  kind: string;
  /** Where the wake channel is (the actor tells itself `sent`). */
  keys: KeySpace;
  /** The actor id of a state. */
  idOf(state: S): string;
  /** The report's message id prefix (`<prefix>:<actor id>:<txn id>:<attempt>:<process>`). */
  reportPrefix: string;
  /** Read the transaction's entries, send it, report how it went (reading may throw: a failed attempt). */
  send(ctx: ShellContext, inflight: I, attempt: number, id: string): Promise<R>;
  /** The actor's counts in the report of an attempt that failed before anything was sent. */
  nothingSent: Omit<R, keyof SentReport>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const messageOf = (e: unknown) => (e instanceof Error ? e.message : String(e));

/**
 * Call the peer: an outcome, a thrown error counting as a retryable failure; a failure is logged.
 */
export async function callPeer<O extends { kind: string }>(ctx: ShellContext, log: { kind: string; id: string; txnId: string; attempt: number }, call: () => Promise<O>): Promise<O | RetryOutcome> {
  let outcome: O | RetryOutcome;
  try {
    outcome = await call();
  } catch (e) {
    outcome = { kind: 'retry', error: messageOf(e) };
  }
  if (outcome.kind !== 'ok') ctx.log?.warn({ [log.kind]: log.id, txn_id: log.txnId, attempt: log.attempt, outcome }, `${log.kind} transaction not delivered`);
  return outcome;
}

/**
 * The shell of an ordered-delivery actor: a `send` whose backoff is over starts the PUT in the
 * background of this process, unless one of the actor's already runs here; when it ends, its
 * report goes to the actor's inbox (retried while Redis is unavailable; given up after a while,
 * the watch timer finds no PUT running and starts the same transaction again).
 */
export function deliveryShell<S extends DeliveryState<I>, I extends InflightTransaction, R extends SentReport>(
  opts: DeliveryShellOptions<S, I, R>,
): (ctx: ShellContext, state: S, msg: ActorMessage<{ t: string }>) => Promise<DeliveryPrepared | undefined> {
  /** The PUTs this process runs: actor id → txn id (at most one each). */
  const running = new Map<string, string>();
  const incarnation = randomBytes(6).toString('hex');

  async function attemptSend(ctx: ShellContext, inf: I, attempt: number, id: string): Promise<void> {
    let report: R;
    try {
      report = await opts.send(ctx, inf, attempt, id);
    } catch (e) {
      // A failed read is a failed attempt (backoff, retry).
      report = { t: 'sent', txnId: inf.txnId, attempt, outcome: { kind: 'retry', error: `reading the queue: ${messageOf(e)}` }, ...opts.nothingSent } as unknown as R;
    } finally {
      // The PUT is over: nothing of this actor's is in flight from this process any more.
      if (running.get(id) === inf.txnId) running.delete(id);
    }
    for (let i = 0; ; i++) {
      try {
        // The runtime's inbox format, then a wake-up for the shard's holder.
        await ctx.redis.xadd(ctx.keys.inbox, '*', 'mid', `${opts.reportPrefix}:${id}:${inf.txnId}:${attempt}:${incarnation}`, 'a', id, 'k', opts.kind, 'b', encode(report), 't', String(Date.now()));
        await ctx.redis.publish(opts.keys.wakeChannel(ctx.family, ctx.shard), '1');
        return;
      } catch (e) {
        if (i >= 10) {
          ctx.log?.error({ err: e, [opts.kind]: id, txn_id: inf.txnId }, `could not report the ${opts.kind} transaction; the watch timer will send it again`);
          return;
        }
        await sleep(Math.min(2000, 100 * 2 ** i));
      }
    }
  }

  return async (ctx, state, msg) => {
    const inf = state.inflight;
    if (msg.body?.t !== 'send' || !inf || msg.enqueuedAt < state.retryAt) return undefined;
    const id = opts.idOf(state);
    if (running.has(id)) return { kind: 'running', txnId: inf.txnId };
    const attempt = inf.attempts + 1;
    running.set(id, inf.txnId);
    void attemptSend(ctx, { ...inf }, attempt, id);
    return { kind: 'started', txnId: inf.txnId, attempt };
  };
}
