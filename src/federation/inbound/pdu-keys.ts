/**
 * The verify keys the room actor's `ingest` needs to check a batch's signatures (spec, "Checks
 * performed on receipt of a PDU", step 2): for every server that must sign each PDU (its
 * sender's, the v1/v2 event id's, a restricted join's authorising server), the keys it signed
 * with, fetched through the key store (Redis-cached, shared by every process). A key that cannot
 * be had is simply absent: the PDU it signed is then dropped by the check, alone.
 */
import { requiredSignatureServers } from '../../protocol/event-hashing';
import { isJsonObject, type JsonObject } from '../../protocol/json';
import type { RoomVersion } from '../../protocol/room-versions';
import type { RemoteKeys } from '../../rooms/ingest';
import type { ServerKeyStore } from '../keys/key-store';

/** More signing servers than this in one batch is not a batch we fetch keys for in one go. */
const MAX_SERVERS_PER_BATCH = 50;

/**
 * `deadline` (ms since the epoch) bounds the wait: a key server slower than that counts as
 * unreachable for this batch (its fetch goes on and is cached for the next one).
 */
export async function keysForPdus(keyStore: ServerKeyStore, pdus: readonly JsonObject[], version: RoomVersion, deadline?: number): Promise<RemoteKeys> {
  // server → key ids it signed with → the earliest event time they must cover
  const wanted = new Map<string, Map<string, number>>();
  for (const raw of pdus) {
    let servers: string[];
    try {
      servers = requiredSignatureServers(raw, version);
    } catch {
      continue;
    }
    const ts = typeof raw.origin_server_ts === 'number' ? raw.origin_server_ts : 0;
    for (const server of servers) {
      const sigs = isJsonObject(raw.signatures) ? raw.signatures[server] : undefined;
      if (!isJsonObject(sigs)) continue;
      let byKey = wanted.get(server);
      if (!byKey) {
        if (wanted.size >= MAX_SERVERS_PER_BATCH) continue;
        byKey = new Map();
        wanted.set(server, byKey);
      }
      for (const keyId of Object.keys(sigs).slice(0, 4)) byKey.set(keyId, Math.min(byKey.get(keyId) ?? Infinity, ts));
    }
  }
  const out: RemoteKeys = {};
  await Promise.all(
    [...wanted].map(async ([server, byKey]) => {
      const entry: RemoteKeys[string] = {};
      for (const keyId of byKey.keys()) {
        try {
          // Any validity: the ingest check compares it with each event's time (v5+).
          const lookup = keyStore.verifyKeys(server, 0, keyId);
          const known = deadline === undefined ? await lookup : await withDeadline(lookup, deadline);
          if (!known) continue;
          for (const [id, k] of known) entry[id] = { key: k.key, validUntilTs: k.validUntilTs };
        } catch {
          // Unreachable server, bad key document: its events fail the signature check.
        }
      }
      out[server] = entry;
    }),
  );
  return out;
}

function withDeadline<T>(p: Promise<T>, deadline: number): Promise<T | undefined> {
  p.catch(() => undefined);
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), Math.max(0, deadline - Date.now()));
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}
