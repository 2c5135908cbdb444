/**
 * The destination actor's transport (actors/destination.ts `TransactionTransport`) over the
 * federation client: `PUT /_matrix/federation/v1/send/{txnId}` and the sorting of what can go
 * wrong into "try the same transaction again later" and "the peer refuses it for good".
 *
 * As Synapse's retry limiter (synapse/util/retryutils.py) sorts them: no answer (refused, reset,
 * TLS, DNS, timeout), 5xx, 401 (it cannot check our signature now: our keys may be unreachable
 * for it) and 429 mean the peer is down or busy — back off and retry. Any other 4xx answers the
 * request: the peer refuses this transaction and would refuse it again, so retrying would block
 * its queue forever. An IP-blocklisted destination is "unreachable" (the configuration may change).
 */
import type { SendOutcome, TransactionTransport } from '../../../actors/destination';
import { isJsonObject, type JsonObject } from '../../protocol/json';
import type { TransactionBody } from '../../protocol/transactions';
import type { FederationClient } from '../client';
import { FederationRemoteError } from '../errors';
import { federationTransactions } from '../../ops/metrics';

/** A transaction of 50 PDUs to a slow server may take a while; Synapse waits up to 60 s too. */
export const SEND_TIMEOUT_MS = 60_000;

export class FederationTransport implements TransactionTransport {
  constructor(
    private readonly client: Pick<FederationClient, 'put' | 'serverName'>,
    private readonly timeoutMs = SEND_TIMEOUT_MS,
  ) {}

  get origin(): string {
    return this.client.serverName;
  }

  async send(destination: string, txnId: string, body: TransactionBody): Promise<SendOutcome> {
    let outcome: SendOutcome;
    try {
      const answer = await this.client.put(destination, `/_matrix/federation/v1/send/${encodeURIComponent(txnId)}`, body as unknown as JsonObject, { timeoutMs: this.timeoutMs });
      outcome = { kind: 'ok', pduErrors: countPduErrors(answer) };
    } catch (e) {
      outcome = classifySendError(e);
    }
    federationTransactions.inc({ outcome: outcome.kind });
    return outcome;
  }
}

/** How many PDUs the peer's answer (`{pdus: {id: {error?}}}`) reports an error for. */
export function countPduErrors(answer: unknown): number {
  if (!isJsonObject(answer as JsonObject) || !isJsonObject((answer as JsonObject).pdus)) return 0;
  return Object.values((answer as { pdus: Record<string, unknown> }).pdus).filter((r) => isJsonObject(r as JsonObject) && (r as JsonObject).error !== undefined).length;
}

export function classifySendError(e: unknown): SendOutcome {
  const error = e instanceof Error ? e.message : String(e);
  if (e instanceof FederationRemoteError) {
    if (e.status >= 500 || e.status === 401 || e.status === 429 || e.status === 408) return { kind: 'retry', error };
    if (e.status >= 400) return { kind: 'refused', error };
  }
  return { kind: 'retry', error };
}
