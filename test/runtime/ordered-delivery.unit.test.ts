/**
 * The ordered-delivery state machine (src/runtime/ordered-delivery.ts) on its own — the backoff
 * schedule and the send timer's due times — and through the two actors that run it, from states
 * in the shape those actors stored before the machine was shared: an upgrade with queues pending
 * (a destination backing off, an appservice transaction out) must carry on where it was.
 */
import { describe, expect, it } from 'vitest';
import { decideAppservice, type AppserviceMessage, type AppserviceState } from '../../actors/appservice';
import { decideDestination, type DestinationMessage, type DestinationState } from '../../actors/destination';
import { backoffDelayMs, scheduleSend } from '../../src/runtime/ordered-delivery';
import { decode, encode } from '../../src/store/codec';
import { appserviceData, destinationData } from '../../src/store/keys';

const at = <M>(body: M, enqueuedAt: number) => ({ mid: `m${enqueuedAt}`, actorId: 'x', body, enqueuedAt });
/** As the runtime reads a state back from its blob. */
const stored = <S>(s: S): S => decode<S>(encode(s));

describe('ordered delivery', () => {
  it('backs off from the first interval, doubling, within the jitter, up to the cap, the same way every time', () => {
    const limits = { minRetryMs: 2_000, maxRetryMs: 600_000 };
    const jitter = { min: 0.8, max: 1.4 };
    expect(backoffDelayMs('peer', 0, limits, jitter)).toBe(0);
    expect(backoffDelayMs('peer', 1, limits, jitter)).toBe(2_000);
    for (let n = 2; n <= 8; n++) {
      const base = 2_000 * 2 ** (n - 1);
      const wait = backoffDelayMs('peer', n, limits, jitter);
      expect(wait).toBeGreaterThanOrEqual(Math.round(base * 0.8));
      expect(wait).toBeLessThan(Math.round(base * 1.4) + 1);
      expect(backoffDelayMs('peer', n, limits, jitter)).toBe(wait);
    }
    expect(backoffDelayMs('peer', 60, limits, jitter)).toBe(600_000);
    // The jitter depends on whose queue it is: two peers down together do not retry in step.
    const waits = new Set(['a', 'b', 'c', 'd'].map((p) => backoffDelayMs(p, 5, limits, jitter)));
    expect(waits.size).toBeGreaterThan(1);
  });

  it('never sets the send timer at a due time a fired timer had (timer message ids derive from it)', () => {
    const base = { txnSeq: 0, inflight: null, failures: 0, retryAt: 0, txns: 0 };
    // The last timer (5000) is past: it may have fired, so the next is after it even if asked earlier.
    const fired = scheduleSend({ ...base, lastTimerAt: 5_000, prevTimerAt: 1_000 }, 4_000, 6_000);
    expect(fired.timer).toEqual({ key: 'send', atMs: 5_001, body: { t: 'send' } });
    expect(fired.state).toMatchObject({ lastTimerAt: 5_001, prevTimerAt: 5_000 });
    // The last timer (9000) is still pending: it is replaced unfired; the floor is the one before it.
    const pending = scheduleSend({ ...base, lastTimerAt: 9_000, prevTimerAt: 4_000 }, 3_000, 6_000);
    expect(pending.timer.atMs).toBe(4_001);
    expect(pending.state).toMatchObject({ lastTimerAt: 4_001, prevTimerAt: 4_000 });
  });

  it('a destination state stored before the machine was shared (backing off, presence coalesced) carries on', () => {
    // Committed by the destination actor of the previous release: 2 PDUs out in a transaction
    // whose first attempt failed, a to-device EDU and a presence update queued behind it.
    const old = stored({
      destination: 'peer.example', nextPdu: 3, takenPdu: 2, nextEdu: 2, takenEdu: 0, txnSeq: 1, failures: 1, retryAt: 3500, lastTimerAt: 3500, prevTimerAt: 1000,
      inflight: { txnId: 'rs.1', pduFrom: 1, pduTo: 2, eduFrom: 1, eduTo: 0, ts: 1000, attempts: 1, sending: false },
      sentPdus: 0, sentEdus: 0, txns: 0, refused: 0, pduErrors: 0, dropped: 0, droppedEdus: 0, lastError: 'connect ECONNREFUSED',
      presence: { '@u:here': { user_id: '@u:here', presence: 'online' } },
    } satisfies DestinationState);
    const run = (s: DestinationState, body: DestinationMessage, now: number, prepared?: Parameters<typeof decideDestination>[2]) => decideDestination(s, at(body, now), prepared);

    // Before the retry time a `send` starts nothing; the peer talking to us ends the backoff.
    expect(run(old, { t: 'send' }, 2_000).state).toBe(old);
    const woke = run(old, { t: 'wake' }, 2_000);
    expect(woke.state).toMatchObject({ retryAt: 0, failures: 0 });
    expect(woke.writes).toEqual([{ cmd: 'DEL', key: destinationData.backoff('peer.example'), args: [] }]);
    expect(woke.timers).toEqual([{ key: 'send', atMs: 2_000, body: { t: 'send' } }]);

    // The same transaction again (attempt 2), then its answer: the next one carries the queued EDU and the presence.
    const sending = run(stored(woke.state), { t: 'send' }, 2_000, { kind: 'started', txnId: 'rs.1', attempt: 2 });
    expect(sending.state.inflight).toMatchObject({ txnId: 'rs.1', attempts: 2, sending: true });
    expect(sending.timers?.[0]?.atMs).toBe(7_000);
    const done = run(stored(sending.state), { t: 'sent', txnId: 'rs.1', attempt: 2, outcome: { kind: 'ok', pduErrors: 0 }, pdus: 2, edus: 0 }, 2_500);
    expect(done.writes).toEqual([
      { cmd: 'XTRIM', key: destinationData.pdus('peer.example'), args: ['MINID', '3-0'] },
      { cmd: 'XTRIM', key: destinationData.edus('peer.example'), args: ['MINID', '1-0'] },
    ]);
    expect(done.state).toMatchObject({ txns: 1, sentPdus: 2, takenPdu: 2, takenEdu: 1, txnSeq: 2 });
    expect(done.state.presence).toBeUndefined();
    expect(done.state.inflight).toEqual({ txnId: `${(2_500).toString(36)}.2`, pduFrom: 3, pduTo: 2, eduFrom: 1, eduTo: 1, ts: 2_500, presence: [{ user_id: '@u:here', presence: 'online' }], attempts: 0 });
  });

  it('an appservice state stored before the machine was shared (a transaction out) carries on', () => {
    const old = stored({
      id: 'bridge', nextEvent: 2, takenEvent: 1, nextEph: 2, takenEph: 0, txnSeq: 1, failures: 0, retryAt: 0, lastTimerAt: 6000, prevTimerAt: 1000,
      inflight: { txnId: 'rs.1', evFrom: 1, evTo: 1, ephFrom: 1, ephTo: 0, attempts: 1, sending: true },
      sentEvents: 0, sentEphemeral: 0, txns: 0,
    } satisfies AppserviceState);
    const run = (s: AppserviceState, body: AppserviceMessage, now: number, prepared?: Parameters<typeof decideAppservice>[2]) => decideAppservice(s, at(body, now), prepared);

    // The watch timer fires at the shard's new holder, which runs no PUT for it: attempt 2 of the same txn id.
    const resent = run(old, { t: 'send' }, 6_000, { kind: 'started', txnId: 'rs.1', attempt: 2 });
    expect(resent.state.inflight).toEqual({ ...old.inflight, attempts: 2, sending: true });
    expect(resent.timers).toEqual([{ key: 'send', atMs: 11_000, body: { t: 'send' } }]);
    // Attempt 1's failure arrives late: it says nothing about attempt 2.
    const late = run(stored(resent.state), { t: 'sent', txnId: 'rs.1', attempt: 1, outcome: { kind: 'retry', error: 'timeout' }, events: 0, ephemeral: 0 }, 6_500);
    expect(late.state.failures).toBe(0);
    const done = run(late.state, { t: 'sent', txnId: 'rs.1', attempt: 2, outcome: { kind: 'ok' }, events: 1, ephemeral: 0 }, 7_000);
    expect(done.writes).toEqual([
      { cmd: 'XTRIM', key: appserviceData.events('bridge'), args: ['MINID', '2-0'] },
      { cmd: 'XTRIM', key: appserviceData.ephemeral('bridge'), args: ['MINID', '1-0'] },
    ]);
    expect(done.state).toMatchObject({ txns: 1, sentEvents: 1, txnSeq: 2, takenEph: 1 });
    expect(done.state.inflight).toEqual({ txnId: `${(7_000).toString(36)}.2`, evFrom: 2, evTo: 1, ephFrom: 1, ephTo: 1, attempts: 0 });
  });
});
