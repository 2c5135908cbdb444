/**
 * Federation transactions (server-server API, "Transactions"; `PUT /_matrix/federation/v1/send/{txnId}`):
 * the envelope PDUs and EDUs travel in between two servers. Here: checking an inbound body,
 * sorting its PDUs by room, the per-PDU response, and cutting outbound queues into transactions.
 *
 * What is checked here is only what the envelope needs. Each PDU then goes through the room's
 * own checks (src/rooms/ingest.ts: format for the room version, signatures, hashes, auth), where
 * a bad PDU fails alone and the rest of the transaction goes on.
 */
import { isJsonObject, utf8Length, canonicalJson, type JsonObject, type JsonValue } from './json';
import { MAX_ID_BYTES } from './pdu-limits';
import { parseServerName } from './server-names';

/** Spec: "Transactions are limited in size; they can have at most 50 PDUs and 100 EDUs." */
export const MAX_PDUS_PER_TRANSACTION = 50;
export const MAX_EDUS_PER_TRANSACTION = 100;

export interface Edu extends JsonObject {
  edu_type: string;
  content: JsonObject;
}

export interface InboundTransaction {
  txnId: string;
  /** The authenticated origin (equal to the body's `origin`). */
  origin: string;
  originServerTs: number;
  /** The PDUs as received, in order; see sortPdusByRoom. */
  pdus: JsonValue[];
  /** Well-formed EDUs, in order. */
  edus: Edu[];
  /** EDUs dropped for their shape (not an object, no string `edu_type`, no object `content`). */
  droppedEdus: { index: number; reason: string }[];
}

export type TransactionCheck =
  | { ok: true; transaction: InboundTransaction }
  | { ok: false; status: 400; errcode: 'M_BAD_JSON'; error: string };

function badTransaction(error: string): TransactionCheck {
  return { ok: false, status: 400, errcode: 'M_BAD_JSON', error };
}

/**
 * Check an inbound transaction body (after X-Matrix authentication gave `authenticatedOrigin`).
 * Refused as a whole (400 `M_BAD_JSON`): a body that is not an object; `origin` missing or not
 * the authenticated origin; `origin_server_ts` not an integer; `pdus` not an array (it is
 * required); `edus` present but not an array; more than 50 PDUs or 100 EDUs (Synapse answers
 * these two with a bare 400 `{}`; we add the errcode and a message). A malformed EDU is dropped
 * alone (Synapse drops what its handlers cannot read), malformed PDUs are left to
 * sortPdusByRoom.
 */
export function checkInboundTransaction(body: JsonValue, txnId: string, authenticatedOrigin: string): TransactionCheck {
  if (txnId.length === 0) return badTransaction('Empty transaction id');
  if (!isJsonObject(body)) return badTransaction('Transaction is not a JSON object');
  const { origin, origin_server_ts: originServerTs, pdus, edus } = body;
  if (typeof origin !== 'string' || !parseServerName(origin)) return badTransaction("'origin' must be a server name");
  // The body's origin is not signed separately; it must be the server that signed the request.
  if (origin !== authenticatedOrigin) return badTransaction(`'origin' is ${origin}, but the request is signed by ${authenticatedOrigin}`);
  if (typeof originServerTs !== 'number' || !Number.isInteger(originServerTs)) return badTransaction("'origin_server_ts' must be an integer");
  if (!Array.isArray(pdus)) return badTransaction("'pdus' must be an array");
  if (edus !== undefined && edus !== null && !Array.isArray(edus)) return badTransaction("'edus' must be an array");
  const eduList = Array.isArray(edus) ? edus : [];
  if (pdus.length > MAX_PDUS_PER_TRANSACTION) return badTransaction(`Transaction has ${pdus.length} PDUs; the limit is ${MAX_PDUS_PER_TRANSACTION}`);
  if (eduList.length > MAX_EDUS_PER_TRANSACTION) return badTransaction(`Transaction has ${eduList.length} EDUs; the limit is ${MAX_EDUS_PER_TRANSACTION}`);

  const wellFormed: Edu[] = [];
  const droppedEdus: { index: number; reason: string }[] = [];
  eduList.forEach((edu, index) => {
    if (!isJsonObject(edu)) droppedEdus.push({ index, reason: 'EDU is not an object' });
    else if (typeof edu.edu_type !== 'string') droppedEdus.push({ index, reason: "'edu_type' must be a string" });
    else if (!isJsonObject(edu.content)) droppedEdus.push({ index, reason: "'content' must be an object" });
    else wellFormed.push({ edu_type: edu.edu_type, content: edu.content });
  });
  return { ok: true, transaction: { txnId, origin, originServerTs, pdus, edus: wellFormed, droppedEdus } };
}

/** A PDU left out of processing before its room was known, so without an event id to answer for. */
export interface IgnoredPdu {
  index: number;
  reason: string;
}

export interface PdusByRoom {
  /** Room id → its PDUs in transaction order (rooms in order of first appearance). */
  rooms: Map<string, JsonObject[]>;
  ignored: IgnoredPdu[];
}

/**
 * Sort a transaction's PDUs by room, keeping their order within each room (a room's PDUs are
 * processed in order, rooms independently). The room is the PDU's `room_id`: every PDU format
 * has one except the v12 `m.room.create` event, whose room id is derived from its own event
 * id; a create event never comes in a transaction for a room we could be in (it has no
 * prev_events to arrive after), so like Synapse we ignore PDUs without a `room_id` — and ones
 * that are not objects or whose `room_id` is not a room id. Ignored PDUs get no entry in the
 * response: without a room there is no room version, and without that no event id (v3+).
 */
export function sortPdusByRoom(pdus: readonly JsonValue[]): PdusByRoom {
  const rooms = new Map<string, JsonObject[]>();
  const ignored: IgnoredPdu[] = [];
  for (const [index, pdu] of pdus.entries()) {
    if (!isJsonObject(pdu)) {
      ignored.push({ index, reason: 'PDU is not an object' });
      continue;
    }
    const roomId = pdu.room_id;
    if (roomId === undefined) {
      ignored.push({ index, reason: 'PDU has no room_id' });
      continue;
    }
    if (typeof roomId !== 'string' || !roomId.startsWith('!') || roomId.length < 2 || utf8Length(roomId) > MAX_ID_BYTES) {
      ignored.push({ index, reason: "'room_id' is not a room id" });
      continue;
    }
    const list = rooms.get(roomId);
    if (list) list.push(pdu);
    else rooms.set(roomId, [pdu]);
  }
  return { rooms, ignored };
}

/** How one PDU was handled: `undefined`/no error for success, or a human-readable error. */
export interface PduResult {
  eventId: string;
  error?: string | undefined;
}

export interface TransactionResponse {
  pdus: Record<string, { error?: string }>;
}

/** Longest error string returned per PDU (the response is bounded whatever a check says). */
export const MAX_PDU_ERROR_LENGTH = 1000;

/**
 * The 200 answer to a transaction: `{ "pdus": { "<event id>": {} | { "error": "…" } } }`, one
 * entry per processed PDU (spec, "PDU Processing Results"). A PDU listed twice keeps the last
 * result.
 */
export function buildTransactionResponse(results: Iterable<PduResult>): TransactionResponse {
  const pdus: Record<string, { error?: string }> = {};
  for (const r of results) {
    // Event ids are data: "__proto__" must become a key, not a prototype.
    const value = r.error === undefined ? {} : { error: truncate(r.error, MAX_PDU_ERROR_LENGTH) };
    Object.defineProperty(pdus, r.eventId, { value, enumerable: true, writable: true, configurable: true });
  }
  return { pdus };
}

function truncate(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max - 1)}…`;
}

// ---------------------------------------------------------------------------------------------
// Outbound
// ---------------------------------------------------------------------------------------------

/** The body of `PUT /_matrix/federation/v1/send/{txnId}`. */
export interface TransactionBody {
  origin: string;
  origin_server_ts: number;
  pdus: JsonObject[];
  /** Left out when empty (the spec: "may be omitted"; Synapse does the same). */
  edus?: Edu[];
}

export interface OutboundTransactionLimits {
  maxPdus?: number;
  maxEdus?: number;
  /**
   * Optional cap on the body's size in bytes (canonical JSON). A single PDU or EDU larger than
   * the cap still goes, alone. Off by default: the spec limits counts, not bytes.
   */
  maxBodyBytes?: number;
}

export interface NextTransaction {
  body: TransactionBody;
  /** How many of the pending PDUs and EDUs (from the front of each queue) it carries. */
  pduCount: number;
  eduCount: number;
}

/**
 * The next transaction for a destination from its queues: the oldest pending PDUs and EDUs, up
 * to the limits, in queue order. Undefined when both queues are empty. A destination sender
 * with one transaction in flight builds one, sends it, drops `pduCount`/`eduCount` from its
 * queues once answered, and builds the next.
 */
export function nextOutboundTransaction(
  origin: string,
  originServerTs: number,
  pendingPdus: readonly JsonObject[],
  pendingEdus: readonly Edu[],
  limits: OutboundTransactionLimits = {},
): NextTransaction | undefined {
  const maxPdus = Math.min(limits.maxPdus ?? MAX_PDUS_PER_TRANSACTION, MAX_PDUS_PER_TRANSACTION);
  const maxEdus = Math.min(limits.maxEdus ?? MAX_EDUS_PER_TRANSACTION, MAX_EDUS_PER_TRANSACTION);
  if (pendingPdus.length === 0 && pendingEdus.length === 0) return undefined;

  let pduCount = Math.min(maxPdus, pendingPdus.length);
  let eduCount = Math.min(maxEdus, pendingEdus.length);
  if (limits.maxBodyBytes !== undefined) {
    // Fill PDUs first, then EDUs, while the estimate stays under the cap.
    const envelope = utf8Length(canonicalJson({ origin, origin_server_ts: originServerTs, pdus: [], edus: [] }));
    let size = envelope;
    let p = 0;
    while (p < pduCount) {
      const add = utf8Length(canonicalJson(pendingPdus[p]!)) + 1;
      if (p > 0 && size + add > limits.maxBodyBytes) break;
      size += add;
      p++;
    }
    let e = 0;
    while (e < eduCount) {
      const add = utf8Length(canonicalJson(pendingEdus[e]!)) + 1;
      if ((p > 0 || e > 0) && size + add > limits.maxBodyBytes) break;
      size += add;
      e++;
    }
    pduCount = p;
    eduCount = e;
  }
  const body: TransactionBody = { origin, origin_server_ts: originServerTs, pdus: pendingPdus.slice(0, pduCount) };
  if (eduCount > 0) body.edus = pendingEdus.slice(0, eduCount);
  return { body, pduCount, eduCount };
}

export interface OutboundTransaction {
  txnId: string;
  body: TransactionBody;
}

/**
 * Cut whole queues into transactions (each within the limits), in order. `nextTxnId` names each
 * one; it must give ids unique per destination for the sender's lifetime (a txn id is the
 * receiver's dedupe key: a reused id is answered from the receiver's memory and not processed).
 */
export function batchOutboundTransactions(
  origin: string,
  originServerTs: number,
  pdus: readonly JsonObject[],
  edus: readonly Edu[],
  nextTxnId: () => string,
  limits: OutboundTransactionLimits = {},
): OutboundTransaction[] {
  const out: OutboundTransaction[] = [];
  let p = 0;
  let e = 0;
  for (;;) {
    // Only the head of each queue can go in the next transaction.
    const next = nextOutboundTransaction(origin, originServerTs, pdus.slice(p, p + MAX_PDUS_PER_TRANSACTION), edus.slice(e, e + MAX_EDUS_PER_TRANSACTION), limits);
    if (!next) return out;
    out.push({ txnId: nextTxnId(), body: next.body });
    p += next.pduCount;
    e += next.eduCount;
  }
}
