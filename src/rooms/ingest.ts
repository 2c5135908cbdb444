/**
 * The checks an externally built event goes through before the room takes it (server-server API,
 * "Checks performed on receipt of a PDU"), numbered as the spec numbers them so code and spec can
 * be read side by side:
 *
 *   1. Is a valid event, otherwise it is dropped.
 *   2. Passes signature checks, otherwise it is dropped.
 *   3. Passes hash checks, otherwise it is redacted before being processed further.
 *   4. Passes authorization rules based on the event's auth events, otherwise it is rejected.
 *   5. Passes authorization rules based on the state before the event, otherwise it is rejected.
 *   6. Passes authorization rules based on the current state of the room, otherwise it is
 *      "soft failed".
 *
 * Pure: events, snapshots and keys come in through `IngestView`; the room actor's shell loads
 * them beforehand.
 */
import { checkAuthEventsList, checkEventAuth } from '../protocol/auth-rules';
import { decodeBase64 } from '../protocol/base64';
import { verifyBytesAsync } from '../protocol/crypto';
import { checkContentHash, eventIdFromSignable, eventSignableBytes, requiredSignatureServers, verifyEventSignature } from '../protocol/event-hashing';
import { isJsonObject, type JsonObject } from '../protocol/json';
import { checkPduFormat, checkPduSize } from '../protocol/pdu-limits';
import { lookupFromEvents, stateKeyOf, toPdu, type Pdu, type StateLookup, type StateMap } from '../protocol/pdu';
import { redactEvent } from '../protocol/redaction';
import type { RoomVersion } from '../protocol/room-versions';
import { resolveState } from '../protocol/state-resolution';

/** Verify keys of remote servers, as fetched (and checked) by the federation layer. */
export type RemoteKeys = Record<string, Record<string, { key: string; validUntilTs: number }>>;

/** What the room knows about an event (from the store or from earlier in the same batch). */
export interface KnownEvent {
  pdu: Pdu;
  rejected: boolean;
  outlier: boolean;
  /** State after the event (absent for outliers and rejected events). */
  stateAfter?: StateMap;
}

export interface IngestView {
  version: RoomVersion;
  roomId: string;
  known(eventId: string): KnownEvent | undefined;
  /** Any loaded event (state resolution walks auth chains through it). */
  getEvent(eventId: string): Pdu | undefined;
}

export type IngestOutcome =
  | { status: 'dropped'; reason: string }
  | { status: 'missing'; reason: string; missing: string[] }
  | { status: 'rejected'; pdu: Pdu; reason: string }
  | { status: 'outlier'; pdu: Pdu }
  | { status: 'soft_failed'; pdu: Pdu; stateBefore: StateMap; reason: string }
  | { status: 'accepted'; pdu: Pdu; stateBefore: StateMap };

/**
 * Steps 2 and 3 worked out ahead of `checkReceivedPdu` (by the room actor's shell, before the
 * pure decide): the event id, whether the signatures check out, whether the content hash matches.
 */
export interface PduPrecheck {
  /** Undefined when the event is too malformed to have one. */
  eventId?: string;
  /** Why step 2 fails, or null when every required server's signature verified. */
  signatureProblem: string | null;
  contentHashOk: boolean;
}

/** For each server that must sign, the keys to try (known, valid at the event's time), or why it cannot pass. */
function signatureTries(raw: JsonObject, version: RoomVersion, keys: RemoteKeys): { server: string; keyId: string; publicKey: Uint8Array }[][] | string {
  const out: { server: string; keyId: string; publicKey: Uint8Array }[][] = [];
  for (const server of requiredSignatureServers(raw, version)) {
    const sigs = isJsonObject(raw.signatures) ? raw.signatures[server] : undefined;
    if (!isJsonObject(sigs)) return `no signature from ${server}`;
    const tries: { server: string; keyId: string; publicKey: Uint8Array }[] = [];
    for (const keyId of Object.keys(sigs)) {
      const known = keys[server]?.[keyId];
      if (!known) continue; // unknown keys are skipped
      if (version.enforceKeyValidity && known.validUntilTs < (raw.origin_server_ts as number)) continue;
      try {
        tries.push({ server, keyId, publicKey: decodeBase64(known.key) });
      } catch {
        /* a malformed key verifies nothing */
      }
    }
    if (!tries.length) return `no valid signature from ${server} with a known key`;
    out.push(tries);
  }
  return out;
}

function signatureBytes(raw: JsonObject, server: string, keyId: string): Uint8Array | null {
  const sigs = isJsonObject(raw.signatures) ? raw.signatures[server] : undefined;
  const sig = isJsonObject(sigs) ? sigs[keyId] : undefined;
  if (typeof sig !== 'string') return null;
  try {
    const bytes = decodeBase64(sig);
    return bytes.length === 64 ? bytes : null;
  } catch {
    return null;
  }
}

/** How many events `precheckPdus` works through between turns of the event loop. */
const PRECHECK_CHUNK = 200;

/**
 * Steps 2–3 and the event ids of a batch, for the room actor's shell: the signable bytes are
 * computed once per event (they are also what the event id hashes), and the signatures are
 * verified on the thread pool, in parallel, a chunk at a time so the worker's event loop keeps
 * turning (lease renewals, other actors) through a 10,000-event send_join answer.
 */
export async function precheckPdus(raws: readonly JsonObject[], version: RoomVersion, keys: RemoteKeys): Promise<Map<JsonObject, PduPrecheck>> {
  const out = new Map<JsonObject, PduPrecheck>();
  for (let i = 0; i < raws.length; i += PRECHECK_CHUNK) {
    const chunk = raws.slice(i, i + PRECHECK_CHUNK);
    await Promise.all(
      chunk.map(async (raw) => {
        let signable: Uint8Array;
        let eventId: string | undefined;
        try {
          signable = eventSignableBytes(raw, version);
          eventId = eventIdFromSignable(raw, signable, version);
        } catch {
          out.set(raw, { signatureProblem: 'invalid event', contentHashOk: false });
          return;
        }
        let contentHashOk = false;
        try {
          contentHashOk = checkContentHash(raw);
        } catch {
          /* malformed: the format check drops it */
        }
        let signatureProblem: string | null = null;
        try {
          const tries = signatureTries(raw, version, keys);
          if (typeof tries === 'string') signatureProblem = tries;
          else {
            for (const perServer of tries) {
              const verdicts = await Promise.all(perServer.map((t) => {
                const sig = signatureBytes(raw, t.server, t.keyId);
                return sig ? verifyBytesAsync(t.publicKey, signable, sig) : Promise.resolve(false);
              }));
              if (!verdicts.includes(true)) {
                signatureProblem = `no valid signature from ${perServer[0]!.server} with a known key`;
                break;
              }
            }
          }
        } catch {
          signatureProblem = 'invalid event';
        }
        out.set(raw, { eventId, signatureProblem, contentHashOk });
      }),
    );
    await new Promise<void>((r) => setImmediate(r));
  }
  return out;
}

/**
 * 1–3: format, signatures, hashes. Returns the event to continue with (maybe redacted) or why it
 * was dropped. `pre`: steps 2–3 already worked out (`precheckPdus`).
 */
export function checkReceivedPdu(raw: JsonObject, view: IngestView, keys: RemoteKeys, pre?: PduPrecheck): { ok: true; raw: JsonObject; redacted: boolean } | { ok: false; reason: string } {
  const { version } = view;
  // 1. A valid event for this room version and this room.
  const problems = checkPduFormat(raw, version);
  if (problems.length) return { ok: false, reason: `invalid event: ${problems.join('; ')}` };
  const size = checkPduSize(raw);
  if (!size.ok) return { ok: false, reason: size.error };
  const isCreate = raw.type === 'm.room.create' && raw.state_key === '';
  if (!(version.roomIdFromCreateEvent && isCreate) && raw.room_id !== view.roomId) return { ok: false, reason: 'event is for another room' };
  // 2. Signatures from every server that must sign, with a key valid at the event's time (v5+).
  if (pre) {
    if (pre.signatureProblem) return { ok: false, reason: pre.signatureProblem };
  } else {
    const tries = signatureTries(raw, version, keys);
    if (typeof tries === 'string') return { ok: false, reason: tries };
    for (const perServer of tries) {
      if (!perServer.some((t) => verifyEventSignature(raw, version, t.server, t.keyId, t.publicKey).ok)) return { ok: false, reason: `no valid signature from ${perServer[0]!.server} with a known key` };
    }
  }
  // 3. The content hash; a mismatch means we were given (or must use) the redacted event.
  if (!(pre ? pre.contentHashOk : checkContentHash(raw))) return { ok: true, raw: redactEvent(raw, version), redacted: true };
  return { ok: true, raw, redacted: false };
}

/**
 * 4–6 for an event that passed 1–3. `current` is the room's current state (null: no soft-fail
 * check — outliers, and backfilled history, which Synapse does not soft-fail either); `asOutlier`
 * stores an event without placing it in the room's history (auth chains and state fetched for a
 * join). `givenStateBefore` is the state before the event when its prev_events are not known
 * here (what a remote's /state_ids answered for it: backfill's oldest events, the first event of
 * a room joined over federation); it is used only when some prev event has no known state.
 * `partialState`: the room was joined with partial state (MSC3706) and its full state is not in
 * yet, so the state before the event may lack member events the event needs (its sender's, say):
 * step 5 reads the state before it, completed by the event's own auth events where the state has
 * no entry (what is there — a ban, a leave — still counts). Synapse resolves the two instead; both
 * let through what the partial state cannot judge, and the event is checked again once the full
 * state is in (src/protocol/partial-state.ts `recheckSinceJoin`).
 */
export function authorizeReceivedPdu(pdu: Pdu, view: IngestView, current: StateLookup | null, asOutlier: boolean, givenStateBefore?: StateMap, partialState = false): IngestOutcome {
  const { version } = view;
  // 4. Against its auth events: all known, none rejected, the right ones, and the rules pass.
  const missingAuth = pdu.authEvents.filter((id) => !view.known(id));
  if (missingAuth.length) return { status: 'missing', reason: 'unknown auth events', missing: missingAuth };
  const authEvents = pdu.authEvents.map((id) => view.known(id)!.pdu);
  const listCheck = checkAuthEventsList(pdu, authEvents, version, (id) => view.known(id)?.rejected ?? false);
  if (!listCheck.allowed) return { status: 'rejected', pdu, reason: listCheck.reason };
  const authLookup = withCreate(lookupFromEvents(authEvents), view);
  const byAuthEvents = checkEventAuth(pdu, authLookup, version);
  if (!byAuthEvents.allowed) return { status: 'rejected', pdu, reason: byAuthEvents.reason };
  if (asOutlier) return { status: 'outlier', pdu };

  // 5. Against the state before it: the state after its prev event, or the resolution of the
  //    states after each of them.
  const prevs = pdu.prevEvents.map((id) => ({ id, known: view.known(id) }));
  const missingPrev = prevs.filter((p) => !p.known?.stateAfter).map((p) => p.id);
  if (missingPrev.length && !givenStateBefore) return { status: 'missing', reason: 'unknown prev_events (or known only as outliers)', missing: missingPrev };
  const stateSets = prevs.map((p) => p.known?.stateAfter).filter((s): s is StateMap => s !== undefined);
  const stateBefore = missingPrev.length ? givenStateBefore! : stateSets.length === 1 ? stateSets[0]! : resolveState({ version, stateSets, getEvent: view.getEvent, isRejected: (id) => view.known(id)?.rejected ?? false });
  const overState = lookupOver(stateBefore, view);
  const beforeLookup = withCreate(partialState ? { get: (type, key) => overState.get(type, key) ?? authLookup.get(type, key) } : overState, view);
  const byStateBefore = checkEventAuth(pdu, beforeLookup, version);
  if (!byStateBefore.allowed) return { status: 'rejected', pdu, reason: byStateBefore.reason };

  // 6. Against the current state: a failure here does not reject the event (others may accept
  //    it), but it is kept out of clients' view and not built upon.
  if (current) {
    const byCurrent = checkEventAuth(pdu, withCreate(current, view), version);
    if (!byCurrent.allowed) return { status: 'soft_failed', pdu, stateBefore, reason: byCurrent.reason };
  }
  return { status: 'accepted', pdu, stateBefore };
}

function lookupOver(state: StateMap, view: IngestView): StateLookup {
  return {
    get(type, key) {
      const id = state.get(stateKeyOf(type, key));
      return id === undefined ? undefined : view.getEvent(id);
    },
  };
}

/** v12 events do not list the create event; it is found from the room id. */
function withCreate(lookup: StateLookup, view: IngestView): StateLookup {
  if (!view.version.roomIdFromCreateEvent) return lookup;
  return {
    get(type, key) {
      if (type === 'm.room.create' && key === '') return lookup.get(type, key) ?? view.getEvent('$' + view.roomId.slice(1));
      return lookup.get(type, key);
    },
  };
}

/** Parse an event that passed checks 1–3 into a Pdu. */
export function receivedPdu(raw: JsonObject, version: RoomVersion): Pdu {
  return toPdu(raw, version);
}
