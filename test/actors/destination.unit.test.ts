import { describe, expect, it } from 'vitest';
import { backoffMs, decideDestination, DEFAULT_LIMITS, initialDestinationState, type DestinationLimits, type DestinationMessage, type DestinationPrepared, type DestinationState, type SendOutcome } from '../../actors/destination';
import type { ActorMessage } from '../../src/runtime/actor';

const DEST = 'peer.example:8448';
let n = 0;
const msg = (body: DestinationMessage, at: number): ActorMessage<DestinationMessage> => ({ mid: `m${n++}`, actorId: DEST, body, enqueuedAt: at });
const pdus = (from: number, count: number): DestinationMessage => ({ t: 'pdus', items: Array.from({ length: count }, (_, i) => ({ r: '!r:here', e: `$e${from + i}` })) });

/** A model of the actor: applies decisions, keeps the queue the writes describe, fires timers by hand. */
class Model {
  state: DestinationState = initialDestinationState(DEST);
  queue = new Map<number, string>();
  timer: { atMs: number } | null = null;
  sent: { txnId: string; events: string[] }[] = [];
  constructor(readonly limits: DestinationLimits = DEFAULT_LIMITS) {}

  apply(m: ActorMessage<DestinationMessage>, prepared?: DestinationPrepared) {
    const d = decideDestination(this.state, m, prepared, this.limits);
    for (const w of d.writes ?? []) {
      if (w.cmd === 'XADD' && w.key.endsWith(':pdus')) this.queue.set(Number(String(w.args[0]).split('-')[0]), String(w.args[4]));
      if (w.cmd === 'XTRIM' && w.key.endsWith(':pdus')) {
        const min = Number(String(w.args[1]).split('-')[0]);
        for (const k of [...this.queue.keys()]) if (k < min) this.queue.delete(k);
      }
    }
    for (const t of d.timers ?? []) this.timer = t.atMs === null ? null : { atMs: t.atMs };
    this.state = d.state;
    return d;
  }

  /** What the shell would send for the transaction in flight. */
  body(): string[] {
    const inf = this.state.inflight!;
    const out: string[] = [];
    for (let s = inf.pduFrom; s <= inf.pduTo; s++) if (this.queue.has(s)) out.push(this.queue.get(s)!);
    return out;
  }

  /**
   * Fire the `send` timer: the shell starts an attempt (when the backoff is over and none is
   * out), and the peer answers `outcome` (null: no answer yet — the PUT is still out).
   */
  fire(outcome: SendOutcome | null) {
    const at = this.timer!.atMs;
    this.timer = null;
    const inf = this.state.inflight;
    let prepared: DestinationPrepared | undefined;
    if (inf && at >= this.state.retryAt) prepared = inf.sending ? { kind: 'running', txnId: inf.txnId } : { kind: 'started', txnId: inf.txnId, attempt: inf.attempts + 1 };
    const d = this.apply(msg({ t: 'send' }, at), prepared);
    if (prepared?.kind !== 'started' || !outcome) return d;
    const events = this.body();
    this.sent.push({ txnId: prepared.txnId, events });
    return this.apply(msg({ t: 'sent', txnId: prepared.txnId, attempt: prepared.attempt, outcome, pdus: events.length, edus: 0 }, at));
  }
}

const OK: SendOutcome = { kind: 'ok', pduErrors: 0 };
const DOWN: SendOutcome = { kind: 'retry', error: 'connect ECONNREFUSED' };

describe('destination actor: batching and order', () => {
  it('takes a transaction at once, commits it before sending, and sends the next batch after the answer', () => {
    const m = new Model();
    const d = m.apply(msg(pdus(1, 3), 1000));
    expect(m.state.inflight).toMatchObject({ pduFrom: 1, pduTo: 3, ts: 1000 });
    expect(d.timers).toEqual([{ key: 'send', atMs: 1000, body: { t: 'send' } }]);
    // More events while the first transaction is in flight wait for it.
    m.apply(msg(pdus(4, 2), 1001));
    expect(m.state.inflight).toMatchObject({ pduFrom: 1, pduTo: 3 });
    m.fire(OK);
    expect(m.sent).toEqual([{ txnId: expect.any(String), events: ['$e1', '$e2', '$e3'] }]);
    expect(m.state.inflight).toMatchObject({ pduFrom: 4, pduTo: 5 });
    m.fire(OK);
    expect(m.sent.map((s) => s.events)).toEqual([['$e1', '$e2', '$e3'], ['$e4', '$e5']]);
    expect(m.state.inflight).toBeNull();
    expect(m.state.sentPdus).toBe(5);
    expect(m.queue.size).toBe(0); // sent entries trimmed
    expect(new Set(m.sent.map((s) => s.txnId)).size).toBe(2);
  });

  it('cuts a backlog into transactions of at most 50 PDUs and 100 EDUs, in order', () => {
    const m = new Model();
    m.apply(msg(pdus(1, 1), 0));
    m.apply(msg(pdus(2, 129), 1));
    m.apply(msg({ t: 'edus', edus: Array.from({ length: 150 }, (_, i) => ({ edu_type: 'm.x', content: { i } })) }, 2));
    while (m.state.inflight) {
      const inf = m.state.inflight;
      expect(inf.pduTo - inf.pduFrom + 1).toBeLessThanOrEqual(50);
      expect(inf.eduTo - inf.eduFrom + 1).toBeLessThanOrEqual(100);
      m.fire(OK);
    }
    expect(m.sent.map((s) => s.events.length)).toEqual([1, 50, 50, 29]);
    expect(m.sent.flatMap((s) => s.events)).toEqual(Array.from({ length: 130 }, (_, i) => `$e${i + 1}`));
    // EDUs rode along with the PDU catch-up: the first transactions after the EDUs came carry them.
    expect(m.state.sentEdus).toBe(0); // the model's prepared counts PDUs only
    expect(m.state.takenEdu).toBe(150);
  });

  it('sets each send timer at a new time (timer message ids derive from the due time)', () => {
    const m = new Model();
    m.apply(msg(pdus(1, 60), 5000));
    const first = m.timer!.atMs;
    m.fire(OK); // answered "at" the same ms
    expect(m.timer!.atMs).toBeGreaterThan(first);
  });
});

describe('destination actor: failures', () => {
  it('retries the same transaction (same txn id, same events) after a growing, capped backoff', () => {
    const limits = { ...DEFAULT_LIMITS, minRetryMs: 2000, maxRetryMs: 60_000 };
    const m = new Model(limits);
    m.apply(msg(pdus(1, 2), 0));
    const txn = m.state.inflight!.txnId;
    const waits: number[] = [];
    for (let i = 0; i < 8; i++) {
      const at = m.timer!.atMs;
      m.fire(DOWN);
      waits.push(m.timer!.atMs - at);
      m.apply(msg(pdus(3 + i, 1), at + 1)); // events keep coming while the peer is down
    }
    expect(waits[0]).toBe(2000);
    for (let i = 1; i < waits.length; i++) {
      expect(waits[i]).toBeGreaterThanOrEqual(Math.min(2000 * 2 ** i * 0.8, 60_000) - 1);
      expect(waits[i]).toBeLessThanOrEqual(Math.min(2000 * 2 ** i * 1.4, 60_000));
    }
    expect(waits.at(-1)).toBe(60_000);
    expect(new Set(m.sent.map((s) => s.txnId))).toEqual(new Set([txn]));
    expect(m.sent.every((s) => s.events.join() === '$e1,$e2')).toBe(true);
    m.fire(OK);
    expect(m.state.failures).toBe(0);
    expect(m.state.inflight).toMatchObject({ pduFrom: 3, pduTo: 10 });
  });

  it('does not send while backing off; a wake ends the backoff', () => {
    const m = new Model();
    m.apply(msg(pdus(1, 1), 0));
    m.fire(DOWN);
    const retryAt = m.state.retryAt;
    // A stale send timer before the retry time: nothing sent (the shell prepares nothing).
    const d = m.apply(msg({ t: 'send' }, retryAt - 10), undefined);
    expect(d.state.inflight?.attempts).toBe(1);
    m.apply(msg({ t: 'wake' }, 100));
    expect(m.state.retryAt).toBe(0);
    expect(m.timer!.atMs).toBeLessThan(retryAt);
  });

  it('honours a longer retry_after from a 429', () => {
    const m = new Model();
    m.apply(msg(pdus(1, 1), 0));
    const at = m.timer!.atMs;
    m.fire({ kind: 'retry', error: '429', retryAfterMs: 30_000 });
    expect(m.state.retryAt - at).toBe(30_000);
  });

  it('drops a transaction the peer refuses (4xx) and goes on with the next', () => {
    const m = new Model({ ...DEFAULT_LIMITS, maxPdusPerTxn: 2 });
    m.apply(msg(pdus(1, 4), 0));
    m.fire({ kind: 'refused', error: 'HTTP 403 M_FORBIDDEN' });
    expect(m.state).toMatchObject({ refused: 1, failures: 0, inflight: { pduFrom: 3, pduTo: 4 } });
    m.fire(OK);
    expect(m.sent.map((s) => s.events)).toEqual([['$e1', '$e2'], ['$e3', '$e4']]);
  });

  it('ignores an answer for another transaction', () => {
    const m = new Model();
    m.apply(msg(pdus(1, 1), 0));
    const before = m.state;
    m.apply(msg({ t: 'sent', txnId: 'other', attempt: 1, outcome: OK, pdus: 1, edus: 0 }, 1));
    expect(m.state.inflight).toEqual(before.inflight);
  });
});

describe('destination actor: bounded catch-up', () => {
  it('keeps at most maxPendingPdus queued: the oldest are dropped (the one in flight abandoned), the newest sent in order', () => {
    const m = new Model({ ...DEFAULT_LIMITS, maxPendingPdus: 100 });
    m.apply(msg(pdus(1, 10), 0)); // in flight: 1..10
    const first = m.state.inflight!.txnId;
    m.fire(DOWN);
    const retryAt = m.state.retryAt;
    for (let i = 0; i < 30; i++) m.apply(msg(pdus(11 + i * 10, 10), 10 + i)); // 300 more while down
    expect(m.state.dropped).toBe(210);
    expect(m.queue.size).toBe(100); // storage bounded
    // The abandoned transaction is replaced by one of the newest events, still after the backoff.
    expect(m.state.inflight).toMatchObject({ pduFrom: 211 });
    expect(m.state.inflight!.txnId).not.toBe(first);
    expect(m.timer!.atMs).toBeGreaterThanOrEqual(retryAt);
    while (m.state.inflight) m.fire(OK);
    const sent = m.sent.filter((_, i) => i > 0).flatMap((s) => s.events);
    expect(sent).toEqual(Array.from({ length: 100 }, (_, i) => `$e${211 + i}`));
    expect(m.sent.slice(1).every((s) => s.events.length <= 50)).toBe(true);
  });

  it('a backlog under the bound is sent whole after the outage', () => {
    const m = new Model();
    m.apply(msg(pdus(1, 1), 0));
    m.fire(DOWN);
    m.fire(DOWN);
    for (let i = 0; i < 99; i++) m.apply(msg(pdus(2 + i * 10, 10), 10 + i));
    expect(m.state.dropped).toBe(0);
    m.fire(OK);
    while (m.state.inflight) m.fire(OK);
    expect(m.sent.filter((_, i) => i > 1).flatMap((s) => s.events)).toEqual(Array.from({ length: 991 }, (_, i) => `$e${i + 1}`));
  });

  it('backoff schedule: 2 s first, doubling with jitter in [0.8, 1.4), capped at 1 h', () => {
    expect(backoffMs(DEST, 0)).toBe(0);
    expect(backoffMs(DEST, 1)).toBe(2000);
    for (let f = 2; f < 12; f++) {
      const b = backoffMs(DEST, f);
      expect(b).toBeGreaterThanOrEqual(Math.min(2000 * 2 ** (f - 1) * 0.8, 3_600_000) - 1);
      expect(b).toBeLessThanOrEqual(Math.min(2000 * 2 ** (f - 1) * 1.4, 3_600_000));
    }
    expect(backoffMs(DEST, 30)).toBe(3_600_000);
    expect(backoffMs(DEST, 5)).toBe(backoffMs(DEST, 5)); // pure
  });
});

describe('destination actor: the PUT outside the mailbox', () => {
  it('one attempt out at a time: a watch timer while it runs starts nothing; new events wait; the answer takes the next range', () => {
    const m = new Model({ ...DEFAULT_LIMITS, watchMs: 5000 });
    m.apply(msg(pdus(1, 2), 0));
    const startedAt = m.timer!.atMs;
    m.fire(null); // the PUT hangs
    expect(m.state.inflight).toMatchObject({ attempts: 1, sending: true });
    expect(m.timer!.atMs).toBe(startedAt + 5000); // the watch
    m.apply(msg(pdus(3, 5), 100));
    expect(m.state.inflight).toMatchObject({ pduFrom: 1, pduTo: 2 });
    // The watch fires: this process still runs the PUT.
    const d = m.apply(msg({ t: 'send' }, startedAt + 5000), { kind: 'running', txnId: m.state.inflight!.txnId });
    expect(m.state.inflight).toMatchObject({ attempts: 1, sending: true });
    expect(d.timers![0]!.atMs).toBe(startedAt + 10_000);
    // The answer of attempt 1 arrives.
    m.apply(msg({ t: 'sent', txnId: m.state.inflight!.txnId, attempt: 1, outcome: OK, pdus: 2, edus: 0 }, 6000));
    expect(m.state.inflight).toMatchObject({ pduFrom: 3, pduTo: 7, attempts: 0 });
    expect(m.timer!.atMs).toBe(6000); // below the unfired watch (10 000), above every fired timer
  });

  it('a dead worker: the next holder finds no PUT running and starts the same txn again (attempt 2)', () => {
    const m = new Model();
    m.apply(msg(pdus(1, 1), 0));
    const txnId = m.state.inflight!.txnId;
    m.fire(null);
    // New holder: the shell has no PUT of its own for it and starts attempt 2.
    m.apply(msg({ t: 'send' }, 5000), { kind: 'started', txnId, attempt: 2 });
    expect(m.state.inflight).toMatchObject({ txnId, attempts: 2, sending: true });
    // The late failure of attempt 1 changes nothing; the success of attempt 2 completes it.
    m.apply(msg({ t: 'sent', txnId, attempt: 1, outcome: DOWN, pdus: 1, edus: 0 }, 5100));
    expect(m.state).toMatchObject({ failures: 0, inflight: { sending: true } });
    m.apply(msg({ t: 'sent', txnId, attempt: 2, outcome: OK, pdus: 1, edus: 0 }, 5200));
    expect(m.state).toMatchObject({ inflight: null, sentPdus: 1, txns: 1 });
  });

  it('the bound never abandons a transaction being sent: it drops only what waits behind it', () => {
    const m = new Model({ ...DEFAULT_LIMITS, maxPendingPdus: 10 });
    m.apply(msg(pdus(1, 5), 0));
    m.fire(null);
    const txnId = m.state.inflight!.txnId;
    m.apply(msg(pdus(6, 30), 10));
    expect(m.state.inflight).toMatchObject({ txnId, pduFrom: 1, pduTo: 5, sending: true });
    expect(m.state.dropped).toBe(20);
    m.apply(msg({ t: 'sent', txnId, attempt: 1, outcome: OK, pdus: 5, edus: 0 }, 20));
    expect(m.state.inflight).toMatchObject({ pduFrom: 26, pduTo: 35 });
  });

  it('backing off is visible to the inbound path (a key in the shard), and cleared by success or wake', () => {
    const m = new Model();
    m.apply(msg(pdus(1, 1), 0));
    m.fire(null);
    const txnId = m.state.inflight!.txnId;
    const failed = m.apply(msg({ t: 'sent', txnId, attempt: 1, outcome: DOWN, pdus: 1, edus: 0 }, 100));
    expect(failed.writes).toEqual([{ cmd: 'SET', key: 'fed:peer.example:8448:backoff', args: [String(m.state.retryAt)] }]);
    const woke = m.apply(msg({ t: 'wake' }, 200));
    expect(woke.writes).toEqual([{ cmd: 'DEL', key: 'fed:peer.example:8448:backoff', args: [] }]);
    expect(woke.timers![0]!.atMs).toBe(200);
    expect(m.state).toMatchObject({ retryAt: 0, failures: 0 });
    // A wake with no backoff changes nothing.
    const again = m.apply(msg({ t: 'wake' }, 300));
    expect(again.state).toBe(m.state);
  });
});
