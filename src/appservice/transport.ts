/**
 * The appservice actor's transport (actors/appservice.ts `AppserviceTransport`): builds a
 * transaction's body and sends `PUT {url}/_matrix/app/v1/transactions/{txnId}` with
 * `Authorization: Bearer <hs_token>` (the spec's way since v1.4; Synapse adds the legacy
 * `?access_token=` only with `use_appservice_legacy_authorization`, off by default — so do we).
 *
 * The body: `events` in the client format (the stored JSON, redacted if redacted since, with
 * `unsigned.age`), read from the rooms' stores in queue order; events gone or rejected are left
 * out. With `receive_ephemeral` (or MSC2409's `de.sorunome.msc2409.push_ephemeral`) the ephemeral
 * events under both `ephemeral` and `de.sorunome.msc2409.ephemeral`, as Synapse sends them; with
 * `push_to_device`, to-device messages under `de.sorunome.msc2409.to_device` (Synapse's name,
 * the one bridges read).
 *
 * Outcomes: a 2xx delivers; anything else (no answer, timeout, any status) is retried after a
 * backoff, as Synapse does — an appservice refusing a transaction is an appservice to fix, and
 * dropping the transaction would lose its events for good.
 */
import type { Logger } from 'pino';
import type { AppserviceBatch, AppserviceOutcome, AppserviceTransport } from '../../actors/appservice';
import type { JsonObject } from '../protocol/json';
import { clientEvent } from '../rooms/client-format';
import type { KeySpace } from '../store/keys';
import type { RedisClient } from '../store/redis';
import { RoomReader, type RoomEvent } from '../store/room-reader';
import type { AppserviceRegistry } from './registration';

/** Synapse waits 60 s for an appservice's answer to a transaction. */
export const TRANSACTION_TIMEOUT_MS = 60_000;

/** The JSON body of a transaction (pure). */
export function transactionBody(events: JsonObject[], batch: Pick<AppserviceBatch, 'ephemeral' | 'toDevice'>, flags: { receiveEphemeral: boolean; pushToDevice: boolean }): JsonObject {
  const body: JsonObject = { events };
  if (flags.receiveEphemeral) {
    body.ephemeral = batch.ephemeral;
    body['de.sorunome.msc2409.ephemeral'] = batch.ephemeral;
  }
  if (flags.pushToDevice) body['de.sorunome.msc2409.to_device'] = batch.toDevice;
  return body;
}

export class AppserviceHttpTransport implements AppserviceTransport {
  private readonly rooms: RoomReader;

  constructor(
    private readonly registry: AppserviceRegistry,
    redis: RedisClient,
    keys: KeySpace,
    roomShards: number,
    private readonly log?: Logger,
    private readonly timeoutMs = TRANSACTION_TIMEOUT_MS,
  ) {
    this.rooms = new RoomReader(redis, keys, roomShards);
  }

  async send(appserviceId: string, txnId: string, batch: AppserviceBatch): Promise<AppserviceOutcome> {
    const as = this.registry.findById(appserviceId);
    if (!as || !as.url) {
      // Removed from the configuration (or its url set to null) since it was queued: nowhere to send it.
      this.log?.warn({ appservice: appserviceId, txn_id: txnId, events: batch.events.length }, 'transaction for an appservice that is no longer registered with a url: dropped');
      return { kind: 'ok' };
    }
    const events = await this.loadEvents(batch.events);
    const body = transactionBody(events, batch, as);
    const url = `${as.url.replace(/\/+$/, '')}/_matrix/app/v1/transactions/${encodeURIComponent(txnId)}`;
    try {
      const res = await fetch(url, {
        method: 'PUT',
        headers: { authorization: `Bearer ${as.hsToken}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      const text = await res.text().catch(() => '');
      if (res.status >= 200 && res.status < 300) return { kind: 'ok' };
      return { kind: 'retry', error: `HTTP ${res.status}: ${text.slice(0, 200)}` };
    } catch (e) {
      const err = e as Error & { cause?: { code?: string } };
      return { kind: 'retry', error: err.cause?.code ?? err.message };
    }
  }

  /** The events in queue order, client format; gone, rejected and hidden ones left out. */
  private async loadEvents(refs: { r: string; e: string }[]): Promise<JsonObject[]> {
    const byRoom = new Map<string, string[]>();
    for (const { r, e } of refs) {
      let ids = byRoom.get(r);
      if (!ids) byRoom.set(r, (ids = []));
      ids.push(e);
    }
    const found = new Map<string, RoomEvent>();
    await Promise.all(
      [...byRoom].map(async ([roomId, ids]) => {
        for (const ev of await this.rooms.events(roomId, ids)) found.set(ev.eventId, ev);
      }),
    );
    const now = Date.now();
    const out: JsonObject[] = [];
    for (const { r, e } of refs) {
      const ev = found.get(e);
      if (!ev || ev.rejected || ev.softFailed || ev.pos <= 0) continue;
      out.push(clientEvent(r, ev, now, undefined, undefined));
    }
    return out;
  }
}
