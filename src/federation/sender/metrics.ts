/**
 * The federation sender's gauges (src/ops/metrics.ts) from the destination actors' states a
 * worker holds in memory (Worker.cachedActorStates): read when scraped, no Redis. A destination
 * actor not touched since its shard was taken is not in memory and not counted until it is; one
 * with work waiting or backing off always has a timer that brings it back.
 */
import type { DestinationState } from '../../../actors/destination';
import type { DestinationStats } from '../../ops/metrics';

export function destinationStats(states: Iterable<[string, unknown]>, now = Date.now()): DestinationStats {
  const out: DestinationStats = { destinations: 0, pending: 0, backingOff: 0, pendingPdus: 0, pendingEdus: 0 };
  for (const [, raw] of states) {
    const s = raw as DestinationState | undefined;
    if (!s || typeof s.nextPdu !== 'number') continue;
    out.destinations++;
    // Seqs start at 1: nextPdu - 1 queued so far, takenPdu of them in transactions or dropped.
    const pdus = Math.max(0, s.nextPdu - 1 - s.takenPdu);
    const edus = Math.max(0, s.nextEdu - 1 - s.takenEdu) + Object.keys(s.presence ?? {}).length;
    out.pendingPdus += pdus;
    out.pendingEdus += edus;
    if (pdus > 0 || edus > 0 || s.inflight) out.pending++;
    if (s.failures > 0 && s.retryAt > now) out.backingOff++;
  }
  return out;
}
