/**
 * Inbound transactions are processed once per (origin, txn id) — server-server API,
 * "Transactions": a sender retries a transaction it got no answer for under the same id, and
 * expects the answer, not a second processing. Kept in Redis, shared by every front:
 *
 * - the first request claims the id (`SET NX`, a `p:<token>` marker with a lease) and processes;
 *   its response is then stored in place of the marker for DONE_TTL_MS;
 * - a replay finds the stored response and gets it as it is;
 * - a concurrent duplicate finds the marker and waits for the response (polling), up to its own
 *   deadline; if the first front died mid-way its lease runs out and the next retry processes
 *   again (the room actor answers events it already has as duplicates, so nothing is stored twice).
 */
import { randomBytes } from 'node:crypto';
import type { KeySpace } from '../../store/keys';
import type { RedisClient } from '../../store/redis';

/** How long a processed transaction's response is kept (Synapse keeps its response cache ~a day too). */
export const DONE_TTL_MS = 24 * 3600_000;
/** How long a claim holds without a response (longer than any request deadline). */
export const CLAIM_TTL_MS = 60_000;
const POLL_MS = 50;

export type TxnClaim<R> = { kind: 'claimed'; finish(response: R): Promise<void>; release(): Promise<void> } | { kind: 'done'; response: R } | { kind: 'busy' };

export class TxnDedupe {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: KeySpace,
  ) {}

  /**
   * Claim (origin, txnId) for processing, or get the stored response. A transaction another
   * request is processing is waited for until `signal` aborts (then `busy`).
   */
  async claim<R>(origin: string, txnId: string, signal?: AbortSignal): Promise<TxnClaim<R>> {
    const key = this.keys.federationTxn(origin, txnId);
    const token = `p:${randomBytes(8).toString('hex')}`;
    for (;;) {
      const set = await this.redis.set(key, token, 'PX', CLAIM_TTL_MS, 'NX');
      if (set === 'OK') {
        return {
          kind: 'claimed',
          finish: async (response: R) => {
            await this.redis.set(key, JSON.stringify(response), 'PX', DONE_TTL_MS);
          },
          // Processing failed before a response: let a retry process it (only our own claim goes).
          release: async () => {
            if ((await this.redis.get(key)) === token) await this.redis.del(key);
          },
        };
      }
      const value = await this.redis.get(key);
      if (value !== null && !value.startsWith('p:')) return { kind: 'done', response: JSON.parse(value) as R };
      if (signal?.aborted) return { kind: 'busy' };
      // Another request is processing it (or the claim just went away: try again).
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  }
}
