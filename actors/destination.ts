/**
 * DestinationActor: everything this server sends to one other server, in order (actor id = the
 * destination's server name; it lives in the user shard the name hashes to). DESIGN: work that
 * must happen once per peer, in order, with retries is an actor on our runtime — the shard's
 * lease and fencing token make it the only sender to that peer in the cluster, durable timers
 * carry its backoff across crashes and shard moves.
 *
 * Queues. The federation sender reader (src/federation/sender/reader.ts) tells the actor about
 * each event it must send (`pdus`: room id + event id), EDU producers send `edus`. The actor
 * appends them to two streams in its own shard (destinationData) with its own sequence numbers
 * as entry ids (`<seq>-0`), in the same commit as its state, so
 *  - the reader's message ids (`fedq:<destination>:<event id>`) make a re-delivered outbox entry
 *    (a reader crash before its ack) a duplicate the runtime's dedupe drops: queued once;
 *  - the state holds only numbers (next seq, highest seq taken into a transaction, the
 *    transaction in flight as two seq ranges), not the queue: a commit writes a small blob
 *    whatever the backlog.
 * PDUs are queued by reference and read from the room's store when sent: an event redacted
 * meanwhile goes out in its redacted form (what the peer would get from /event or
 * get_missing_events anyway — leaving it out would only leave a hole in its DAG); rejected,
 * outlier, soft-failed and backfilled events are never sent (the reader only queues events our
 * own users sent, and the shell skips any stored that way).
 *
 * One transaction in flight, exactly once to the peer's eyes. Starting a transaction is a
 * decision: `inflight = {txnId, PDU seq range, EDU seq range, ts}` is committed BEFORE anything
 * is sent, with a timer `send` due now. The PUT runs outside the actor's mailbox, so a hanging
 * peer never holds the actor (nor, with many messages queued behind it, its shard's read
 * buffer): the `send` message's shell (prepare) starts the PUT in the background of the worker
 * process and returns at once; decide commits "attempt n is out" (`inflight.sending`) with a
 * watch timer; when the PUT ends, the process tells the actor `sent` (txn id, attempt, outcome)
 * and decide records the outcome in the same commit that takes the next range. While a PUT is
 * out nothing else is started, and the process keeps a note of the PUTs it runs, so a `send`
 * (the watch timer firing) finds it still running and only re-arms the watch: exactly one
 * transaction in flight per destination. A worker killed mid-send leaves `inflight` committed
 * as it was and no process running its PUT: the watch timer fires at the next lease holder, which
 * finds no PUT of its own for it and re-sends the same txn id with the same events; the peer,
 * which dedupes by (origin, txn id) as the spec requires, processes it once. Nothing is skipped:
 * the range only advances after an answer was committed. A `sent` for an older attempt or
 * another transaction changes nothing (a success is taken whatever the attempt: it was delivered).
 *
 * Outcomes (src/federation/sender/transport.ts sorts the errors):
 *  - 200: done; per-PDU errors in the answer are the peer's judgement of those events (counted,
 *    not retried: sending them again cannot change it).
 *  - unreachable, timeout, 5xx, 401, 429: the peer is down or asks us to wait: the same
 *    transaction is retried after a backoff (Synapse's shape, synapse/util/retryutils.py: first
 *    interval, then × `destination_retry_multiplier` (2) × a jitter in [0.8, 1.4), capped; Synapse
 *    starts at 10 min and caps at 7 days, we start at 2 s and cap at 1 h so a peer that was down
 *    briefly catches up quickly). The jitter is derived from the destination and the attempt
 *    number, so decide stays pure. Meanwhile new events keep being queued.
 *  - any other 4xx (400 M_BAD_JSON, 403 M_FORBIDDEN — e.g. the peer's ACL denies us —, 404):
 *    the peer refuses the transaction itself and would refuse it again: it is dropped (logged,
 *    counted in `refused`) and the next one goes. Retrying would block the peer's queue forever.
 *  - `wake` (the peer just sent us a request: src/federation/sender/wake.ts) ends a backoff at
 *    once, as Synapse does when it hears from a destination. While backing off the actor keeps
 *    `fed:<destination>:backoff` set in its shard, so the inbound path asks Redis one cheap
 *    question per request instead of telling the actor every time.
 *
 * Catch-up. After an outage every missed PDU goes, in order, 50 per transaction (with up to 100
 * EDUs each, so EDUs keep flowing during catch-up instead of waiting for it to end). Past
 * `maxPendingPdus` (`federation.sender.catchUpLimit`) waiting PDUs the oldest are dropped and
 * counted in `dropped` (a transaction in flight between attempts is abandoned to the bound, one
 * being sent right now is not): the peer then receives only the newest events, finds their
 * prev_events unknown and fills the gap with its own get_missing_events / backfill. EDUs have
 * their own bound.
 */
import type { ActorKind, ActorMessage, Decision, ShellContext, StoreWrite } from '../src/runtime/actor';
import { appendToQueue, backoffDelayMs, callPeer, decideDelivery, deliveryShell, rangeEnd, readQueueRange, startNext, trimQueue, type DeliveryLimits, type DeliveryPrepared, type DeliveryReply, type DeliveryRules, type DeliveryState, type InflightTransaction, type SentReport } from '../src/runtime/ordered-delivery';
import type { RoomMeta, StoredEvent } from '../src/rooms/model';
import type { OwnEventSigner } from '../src/rooms/own-signatures';
import { getRoomVersion, type RoomVersion } from '../src/protocol/room-versions';
import { hasSignatureBy, serverNameOf } from '../src/protocol/event-hashing';
import { shardOf } from '../src/store/shards';
import { decode } from '../src/store/codec';
import { destinationData, roomData, type KeySpace } from '../src/store/keys';
import type { JsonObject } from '../src/protocol/json';
import { MAX_EDUS_PER_TRANSACTION, MAX_PDUS_PER_TRANSACTION, type Edu, type TransactionBody } from '../src/protocol/transactions';

export const DESTINATION_KIND = 'destination';

/** Waiting PDUs kept per destination beyond the one in flight; older ones are dropped (the peer backfills). */
export const MAX_PENDING_PDUS = 1_000;
/**
 * EDUs kept waiting per destination. Larger than the PDU bound because what waits during an outage
 * is what must not be lost — to-device messages and device list updates (typing is dropped while
 * backing off, presence is coalesced in the state) — and, unlike PDUs, a peer cannot fetch a
 * dropped EDU back. Still a bound: a peer gone for good must not grow the queue forever.
 */
export const MAX_PENDING_EDUS = 10_000;
/** First retry interval after a failure (Synapse: 10 min). */
export const MIN_RETRY_MS = 2_000;
/** Longest interval between retries (Synapse: 7 days). */
export const MAX_RETRY_MS = 60 * 60 * 1000;
/** The retry interval's jitter from the 2nd failure on (Synapse's retryutils draws it in [0.8, 1.4) too). */
const JITTER = { min: 0.8, max: 1.4 };
/**
 * How often the actor looks whether the PUT it started is still running (the watch timer). A
 * running one is left alone; one no process runs any more (its worker died) is started again,
 * so this is also the longest a dead worker's transaction waits for its re-send after the
 * destination's shard has a new holder.
 */
export const WATCH_MS = 5_000;

/** Queueing messages (`edus`, `pdus`) committed together at most (see `batch` below). */
export const MAX_QUEUE_BATCH = 100;

export interface DestinationLimits extends DeliveryLimits {
  maxPendingPdus: number;
  maxPendingEdus: number;
  maxPdusPerTxn: number;
  maxEdusPerTxn: number;
}

export const DEFAULT_LIMITS: DestinationLimits = {
  maxPendingPdus: MAX_PENDING_PDUS,
  maxPendingEdus: MAX_PENDING_EDUS,
  minRetryMs: MIN_RETRY_MS,
  maxRetryMs: MAX_RETRY_MS,
  maxPdusPerTxn: MAX_PDUS_PER_TRANSACTION,
  maxEdusPerTxn: MAX_EDUS_PER_TRANSACTION,
  watchMs: WATCH_MS,
};

/** The transaction being sent: queue ranges (inclusive; empty when `to < from`), committed before the first attempt. */
export interface Inflight extends InflightTransaction {
  pduFrom: number;
  pduTo: number;
  eduFrom: number;
  eduTo: number;
  /** `origin_server_ts` of the body (the same on every attempt). */
  ts: number;
  /** Presence updates riding in this transaction (one `m.presence` EDU), taken from `presence`. */
  presence?: JsonObject[];
}

/** The stored state (txn and backoff bookkeeping: DeliveryState, src/runtime/ordered-delivery.ts). */
export interface DestinationState extends DeliveryState<Inflight> {
  destination: string;
  /** Seq the next queued PDU gets (the first is 1). */
  nextPdu: number;
  /** Every PDU seq up to this one is in a transaction (sent, in flight) or was dropped. */
  takenPdu: number;
  nextEdu: number;
  takenEdu: number;
  /** Totals, for operators. */
  sentPdus: number;
  sentEdus: number;
  refused: number;
  pduErrors: number;
  dropped: number;
  droppedEdus: number;
  /**
   * Presence waiting to go, latest per user (user id → the `push` entry). Coalesced here rather
   * than queued: a burst of changes of one user while a transaction is out becomes one entry,
   * and all of them ride as a single `m.presence` EDU in the next transaction — so presence
   * never floods a peer, whatever the rate of changes, and never outgrows the number of users.
   */
  presence?: Record<string, JsonObject>;
}

/** How a transaction went, with what it carried. */
export interface DestinationSent extends SentReport<SendOutcome> {
  pdus: number;
  edus: number;
}

export type DestinationMessage =
  /** From the federation sender reader: events to send (in order). */
  | { t: 'pdus'; items: { r: string; e: string }[] }
  | { t: 'edus'; edus: Edu[] }
  /** The actor's own timer: start the transaction in flight (if its backoff is over), or watch the one out. */
  | { t: 'send' }
  /** From the process that ran attempt `attempt` of `txnId`: how it went. */
  | DestinationSent
  /** The peer is reachable again (it just talked to us): end any backoff now. */
  | { t: 'wake' };

export type SendOutcome =
  | { kind: 'ok'; pduErrors: number }
  /** Unreachable, timed out, 5xx, 401, 429: the same transaction again after a backoff. */
  | { kind: 'retry'; error: string; retryAfterMs?: number }
  /** Refused as a whole (4xx): dropped, the next one goes. */
  | { kind: 'refused'; error: string };

/** What the shell did for a `send`. */
export type DestinationPrepared = DeliveryPrepared;

/** The only code that calls the peer (implemented over src/federation/client.ts). */
export interface TransactionTransport {
  /** Our server name: the body's `origin`. */
  readonly origin: string;
  send(destination: string, txnId: string, body: TransactionBody): Promise<SendOutcome>;
}

export type DestinationReply = DeliveryReply;

export function initialDestinationState(destination: string): DestinationState {
  return { destination, nextPdu: 1, takenPdu: 0, nextEdu: 1, takenEdu: 0, txnSeq: 0, inflight: null, failures: 0, retryAt: 0, lastTimerAt: 0, prevTimerAt: 0, sentPdus: 0, sentEdus: 0, txns: 0, refused: 0, pduErrors: 0, dropped: 0, droppedEdus: 0 };
}

/**
 * The wait after the `failures`-th consecutive failure: min × 2^(n-1) × jitter, capped — the
 * shape of Synapse's retryutils (there the jitter compounds; here it is drawn once per attempt
 * from a hash, so the schedule is a pure function and stays within [0.8, 1.4) × the doubling).
 */
export function backoffMs(destination: string, failures: number, limits: Pick<DestinationLimits, 'minRetryMs' | 'maxRetryMs'> = DEFAULT_LIMITS): number {
  return backoffDelayMs(destination, failures, limits, JITTER);
}

type D = Decision<DestinationState, DestinationReply>;

/** The actor's shard key the inbound path checks (see the header): set while backing off. */
function backoffWrites(dest: string, retryAt: number | null): StoreWrite[] {
  return retryAt === null ? [{ cmd: 'DEL', key: destinationData.backoff(dest), args: [] }] : [{ cmd: 'SET', key: destinationData.backoff(dest), args: [String(retryAt)] }];
}

/**
 * How a destination delivers (src/runtime/ordered-delivery.ts runs the cycle). Transactions go
 * up to 50 PDUs and 100 EDUs, the coalesced presence riding as one of those EDUs (not before the
 * backoff is over: a transaction abandoned by the bound is replaced during one); a refusal ends
 * a transaction like an answer does; while backing off `fed:<destination>:backoff` is set.
 */
function deliveryRules(dest: string, limits: DestinationLimits): DeliveryRules<DestinationState, Inflight, DestinationSent> {
  return {
    id: dest,
    limits,
    jitter: JITTER,
    cut(state, now) {
      const pduTo = rangeEnd(state.nextPdu, state.takenPdu, limits.maxPdusPerTxn);
      const eduTo = rangeEnd(state.nextEdu, state.takenEdu, limits.maxEdusPerTxn);
      const pendingPresence = state.presence ? Object.values(state.presence) : [];
      if (pduTo <= state.takenPdu && eduTo <= state.takenEdu && pendingPresence.length === 0) return null;
      // The presence EDU takes one of the transaction's EDU slots.
      const edusTo = pendingPresence.length && eduTo - state.takenEdu >= limits.maxEdusPerTxn ? eduTo - 1 : eduTo;
      const ranges: Omit<Inflight, 'txnId' | 'attempts' | 'sending'> = { pduFrom: state.takenPdu + 1, pduTo, eduFrom: state.takenEdu + 1, eduTo: edusTo, ts: now };
      if (pendingPresence.length) ranges.presence = pendingPresence;
      const taken: DestinationState = { ...state, takenPdu: pduTo, takenEdu: edusTo };
      delete taken.presence;
      return { state: taken, ranges };
    },
    // Answered (or refused for good): the range is done; trim what was sent.
    finish(state, report) {
      const o = report.outcome;
      if (o?.kind !== 'ok' && o?.kind !== 'refused') return null;
      return {
        state: {
          ...state,
          sentPdus: state.sentPdus + (o.kind === 'ok' ? report.pdus : 0),
          sentEdus: state.sentEdus + (o.kind === 'ok' ? report.edus : 0),
          pduErrors: state.pduErrors + (o.kind === 'ok' ? o.pduErrors : 0),
          refused: state.refused + (o.kind === 'refused' ? 1 : 0),
          ...(o.kind === 'refused' ? { lastError: o.error } : {}),
        },
        writes: [trimQueue(destinationData.pdus(dest), state.takenPdu + 1), trimQueue(destinationData.edus(dest), state.takenEdu + 1)],
      };
    },
    backoffWrites: (retryAt) => backoffWrites(dest, retryAt),
  };
}

/**
 * Keep at most `maxPendingPdus` PDUs (and `maxPendingEdus` EDUs) queued, the transaction in
 * flight included, dropping the oldest. Dropping into the transaction in flight abandons it (it
 * was never answered: the peer is down): its PDUs and EDUs go back to the queue, the oldest of
 * them are dropped, and the next transaction (a new txn id, still after the backoff) starts at
 * the first one kept. So the queue's storage stays bounded during an outage however long it is.
 * A transaction being sent right now is not abandoned (two would be in flight): the bound then
 * counts only what waits behind it.
 */
function bound(state: DestinationState, limits: DestinationLimits, writes: StoreWrite[]): DestinationState {
  let next = state;
  const inf = next.inflight;
  const abandonable = inf && !inf.sending;
  const pduBase = abandonable ? inf.pduFrom - 1 : next.takenPdu;
  const eduBase = abandonable ? inf.eduFrom - 1 : next.takenEdu;
  const overPdus = next.nextPdu - 1 - pduBase > limits.maxPendingPdus;
  const overEdus = next.nextEdu - 1 - eduBase > limits.maxPendingEdus;
  if (!overPdus && !overEdus) return next;
  if (abandonable) next = { ...next, inflight: null, takenPdu: pduBase, takenEdu: eduBase };
  if (overPdus) {
    const takenPdu = next.nextPdu - 1 - limits.maxPendingPdus;
    next = { ...next, takenPdu, dropped: next.dropped + (takenPdu - next.takenPdu) };
    // Never trim the entries of a transaction being sent (its shell reads them).
    writes.push(trimQueue(destinationData.pdus(state.destination), next.inflight?.pduFrom ?? takenPdu + 1));
  }
  if (overEdus) {
    const takenEdu = next.nextEdu - 1 - limits.maxPendingEdus;
    next = { ...next, takenEdu, droppedEdus: next.droppedEdus + (takenEdu - next.takenEdu) };
    writes.push(trimQueue(destinationData.edus(state.destination), next.inflight?.eduFrom ?? takenEdu + 1));
  }
  return next;
}

export function decideDestination(state: DestinationState, msg: ActorMessage<DestinationMessage>, prepared: DestinationPrepared | undefined, limits: DestinationLimits = DEFAULT_LIMITS): D {
  const now = msg.enqueuedAt;
  const body = msg.body;
  const dest = state.destination;
  const rules = deliveryRules(dest, limits);
  switch (body?.t) {
    case 'pdus': {
      const items = Array.isArray(body.items) ? body.items.filter((i) => typeof i?.r === 'string' && typeof i?.e === 'string') : [];
      if (items.length === 0) return { state, reply: { ok: true } };
      const writes: StoreWrite[] = [];
      const nextPdu = appendToQueue(destinationData.pdus(dest), state.nextPdu, items.map((i) => ['r', i.r, 'e', i.e]), writes);
      const next = bound({ ...state, nextPdu }, limits, writes);
      return startNext(next, now, rules, { state: next, reply: { ok: true }, writes });
    }
    case 'edus': {
      const all = Array.isArray(body.edus) ? body.edus.filter((e) => typeof e?.edu_type === 'string' && e.content !== null && typeof e.content === 'object') : [];
      // Typing notices are only worth anything now: while the peer is down they are dropped
      // (it times them out itself); presence is coalesced into the state (see `presence`).
      const backingOff = state.retryAt > now;
      let presence = state.presence;
      const edus: Edu[] = [];
      for (const e of all) {
        if (e.edu_type === 'm.presence') {
          const push = Array.isArray(e.content.push) ? e.content.push : [];
          for (const p of push) {
            if (p && typeof p === 'object' && !Array.isArray(p) && typeof p.user_id === 'string') presence = { ...presence, [p.user_id]: p };
          }
        } else if (e.edu_type === 'm.typing' && backingOff) continue;
        else edus.push(e);
      }
      if (edus.length === 0 && presence === state.presence) return { state, reply: { ok: true } };
      const writes: StoreWrite[] = [];
      const nextEdu = appendToQueue(destinationData.edus(dest), state.nextEdu, edus.map((e) => ['j', JSON.stringify(e)]), writes);
      const next = bound({ ...state, nextEdu, ...(presence ? { presence } : {}) }, limits, writes);
      return startNext(next, now, rules, { state: next, reply: { ok: true }, writes });
    }
    default:
      return decideDelivery(state, body, now, prepared, rules);
  }
}

export interface DestinationActorOptions {
  transport: TransactionTransport;
  /** Signs our events stored without our signature as they go out (src/rooms/own-signatures.ts). */
  signer: OwnEventSigner;
  /** Where the rooms' stores are (the PDUs are read from them when sent). */
  keys: KeySpace;
  roomShards: number;
  limits?: Partial<DestinationLimits>;
}

/**
 * The PDUs of a queue range as they go over federation: the stored event JSON (federation
 * format: redacted if it was redacted since) without the local `unsigned`, with our signature
 * added to our events (stored without it: src/rooms/own-signatures.ts). Events that are gone,
 * rejected, outliers, soft-failed or backfilled are left out.
 */
export async function loadPdus(ctx: Pick<ShellContext, 'redis' | 'log'>, keys: KeySpace, roomShards: number, signer: OwnEventSigner, items: { r: string; e: string }[]): Promise<JsonObject[]> {
  if (items.length === 0) return [];
  const blobs = await ctx.redis.mgetBuffer(...items.map((i) => keys.shard('room', shardOf(i.r, roomShards)).data(roomData.event(i.e))));
  const loaded: { roomId: string; eventId: string; pdu: JsonObject; sign: boolean }[] = [];
  blobs.forEach((b, i) => {
    if (!b) return;
    let pdu: JsonObject;
    try {
      const stored = decode<StoredEvent>(b);
      if (stored.rej || stored.o || stored.sf || stored.p <= 0) return;
      pdu = JSON.parse(stored.j) as JsonObject;
    } catch {
      return; // an unreadable record must not hold the destination's queue up forever
    }
    delete pdu.unsigned;
    loaded.push({ roomId: items[i]!.r, eventId: items[i]!.e, pdu, sign: mayNeedOwnSignature(pdu, signer.serverName) });
  });
  // Signing needs the room's version (its redaction rules), read once per room and process (a
  // room's version never changes); this call's rooms are kept in a map of its own, so another
  // call clearing the shared one meanwhile takes nothing from it.
  const versions = new Map<string, RoomVersion>();
  const missing: string[] = [];
  for (const roomId of new Set(loaded.filter((l) => l.sign).map((l) => l.roomId))) {
    const known = roomVersions.get(roomId);
    if (known) versions.set(roomId, known);
    else missing.push(roomId);
  }
  if (missing.length) {
    const metas = await ctx.redis.mgetBuffer(...missing.map((r) => keys.shard('room', shardOf(r, roomShards)).state('room', r)));
    if (roomVersions.size + missing.length > MAX_ROOM_VERSIONS) roomVersions.clear();
    metas.forEach((m, i) => {
      let id: string | null = null;
      try {
        id = m ? decode<RoomMeta>(m).version : null;
      } catch {
        // An unreadable record: its events are left out below, like a purged room's.
      }
      const version = id ? getRoomVersion(id) : undefined;
      if (!version) return;
      versions.set(missing[i]!, version);
      roomVersions.set(missing[i]!, version);
    });
  }
  const out: JsonObject[] = [];
  let unsignable = 0;
  for (const l of loaded) {
    if (!l.sign) {
      out.push(l.pdu);
      continue;
    }
    const version = versions.get(l.roomId);
    // Without a version (the room's record gone: purged) our event cannot be signed, and unsigned
    // the peer would reject it: it is left out.
    if (version) out.push(signer.pdu(l.eventId, l.pdu, version));
    else unsignable++;
  }
  if (unsignable) ctx.log?.warn({ events: unsignable }, 'events of ours left out of a transaction: their room has no version to sign them with (purged?)');
  return out;
}

/** Room versions of rooms whose events this process signed for sending (bounded: cleared when full). */
const roomVersions = new Map<string, RoomVersion>();
const MAX_ROOM_VERSIONS = 10_000;

/**
 * Whether our signature may be missing from an event: none of ours on it, and it is ours (its
 * sender's server, or for v1/v2 its event id's). `needsOwnSignature` decides with the room version;
 * this tells which rooms' versions are needed at all (relayed events of other servers are not).
 */
function mayNeedOwnSignature(pdu: JsonObject, serverName: string): boolean {
  if (hasSignatureBy(pdu, serverName)) return false;
  const ours = (id: unknown) => typeof id === 'string' && serverNameOf(id) === serverName;
  return ours(pdu.sender) || ours(pdu.event_id);
}

export function destinationActor(opts: DestinationActorOptions): ActorKind<DestinationState, DestinationMessage, DestinationReply, DestinationPrepared | undefined> {
  const limits: DestinationLimits = { ...DEFAULT_LIMITS, ...opts.limits };
  return {
    kind: DESTINATION_KIND,
    family: 'user',
    initialState: initialDestinationState,
    // The shell: a `send` whose backoff is over starts the PUT in the background, unless one runs.
    prepare: deliveryShell<DestinationState, Inflight, DestinationSent>({ kind: DESTINATION_KIND, keys: opts.keys, idOf: (s) => s.destination, reportPrefix: 'fedsent', send: sendInflight, nothingSent: { pdus: 0, edus: 0 } }),
    decide: (state, msg, prepared) => decideDestination(state, msg, prepared, limits),
    // Queueing is the hot path (every to-device message, receipt, typing notice and event asks
    // the actor once): messages that only queue — no shell, no side effect — are committed
    // together when several wait (the runtime's group commit), one commit for up to 100 instead
    // of one each. `send`/`sent`/`wake` go one at a time (a `send`'s shell starts a PUT).
    batch: { max: MAX_QUEUE_BATCH, accepts: (b) => b?.t === 'edus' || b?.t === 'pdus' },
  };

  async function sendInflight(ctx: ShellContext, inf: Inflight, attempt: number, dest: string): Promise<DestinationSent> {
    const [pduRows, eduRows] = await Promise.all([readQueueRange(ctx, destinationData.pdus(dest), inf.pduFrom, inf.pduTo), readQueueRange(ctx, destinationData.edus(dest), inf.eduFrom, inf.eduTo)]);
    const pdus = await loadPdus(ctx, opts.keys, opts.roomShards, opts.signer, pduRows.map((f) => ({ r: f.r ?? '', e: f.e ?? '' })));
    const edus = eduRows.map((f) => JSON.parse(f.j ?? '{}') as Edu);
    if (inf.presence?.length) edus.push({ edu_type: 'm.presence', content: { push: inf.presence } });
    const sent = (outcome: SendOutcome): DestinationSent => ({ t: 'sent', txnId: inf.txnId, attempt, outcome, pdus: pdus.length, edus: edus.length });
    if (pdus.length === 0 && edus.length === 0) return sent({ kind: 'ok', pduErrors: 0 });
    const txn: TransactionBody = { origin: opts.transport.origin, origin_server_ts: inf.ts, pdus };
    if (edus.length) txn.edus = edus;
    return sent(await callPeer(ctx, { kind: DESTINATION_KIND, id: dest, txnId: inf.txnId, attempt }, () => opts.transport.send(dest, inf.txnId, txn)));
  }
}
