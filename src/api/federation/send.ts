// PUT /_matrix/federation/v1/send/{txnId}
/**
 * An inbound transaction. The envelope is checked first (400 `M_BAD_JSON` for a malformed one, or
 * more than 50 PDUs / 100 EDUs), then the transaction is claimed once per (origin, txn id) in Redis:
 * a replay — or a concurrent duplicate, once the first is done — gets the stored answer and
 * nothing is processed twice. The PDUs go to their rooms (src/federation/inbound/transaction.ts),
 * bounded by the request's deadline; then the EDUs go to their actors (src/federation/inbound/edus.ts:
 * typing, receipts, presence, to-device, device lists), once per transaction like the PDUs. The answer is `{ "pdus": { "<event id>": {} | { "error": "…" } } }`.
 */
import { MatrixError } from '../../http/errors';
import type { Front } from '../../http/server';
import { checkInboundTransaction, type TransactionResponse } from '../../protocol/transactions';
import { processTransactionPdus } from '../../federation/inbound/transaction';
import { processTransactionEdus } from '../../federation/inbound/edus';
import { TxnDedupe } from '../../federation/inbound/txn-dedupe';
import { federationRoute } from './auth';
import type { FederationContext } from './context';

/** Transaction ids longer than this are not ids we keep. */
const MAX_TXN_ID_LENGTH = 255;
/** Time kept back from the request deadline for answering (the work is bounded by the rest). */
const ANSWER_MARGIN_MS = 2_500;

export function registerSendRoute(front: Front, ctx: FederationContext): void {
  const dedupe = new TxnDedupe(ctx.api.redis, ctx.api.keys);
  const deps = { api: ctx.api, keyStore: ctx.keyStore, client: ctx.client, log: ctx.log };
  federationRoute(front, ctx, 'PUT', '/_matrix/federation/v1/send/:txnId', async (req, caller) => {
    const started = Date.now();
    const deadline = started + Math.max(2_000, ctx.config.requestDeadlineMs - ANSWER_MARGIN_MS);
    const txnId = req.params.txnId ?? '';
    if (txnId.length > MAX_TXN_ID_LENGTH) throw new MatrixError(400, 'M_BAD_JSON', `Transaction ids are at most ${MAX_TXN_ID_LENGTH} characters`);
    const check = checkInboundTransaction(caller.body ?? null, txnId, caller.origin);
    if (!check.ok) throw new MatrixError(check.status, check.errcode, check.error);
    const txn = check.transaction;

    const claim = await dedupe.claim<TransactionResponse>(caller.origin, txnId, AbortSignal.any([req.signal, AbortSignal.timeout(Math.max(0, deadline - Date.now()))]));
    if (claim.kind === 'done') {
      ctx.log.info({ origin: caller.origin, txn_id: txnId }, 'transaction replayed: answered from the stored result');
      return { body: claim.response };
    }
    if (claim.kind === 'busy') throw new MatrixError(429, 'M_LIMIT_EXCEEDED', 'This transaction is still being processed; retry it later', { retry_after_ms: 1000 });
    let response: TransactionResponse;
    let edus = { handled: 0, dropped: 0 };
    try {
      response = await processTransactionPdus(deps, txn, deadline);
      if (txn.edus.length) edus = await processTransactionEdus(deps, caller.origin, txn.edus, deadline);
    } catch (e) {
      await claim.release().catch(() => undefined);
      throw e;
    }
    await claim.finish(response);
    ctx.log.info(
      { origin: caller.origin, txn_id: txnId, pdus: txn.pdus.length, edus: txn.edus.length, dropped_edus: txn.droppedEdus.length + edus.dropped, errors: Object.values(response.pdus).filter((r) => r.error).length, ms: Date.now() - started },
      'transaction processed',
    );
    return { body: response };
  });
}
