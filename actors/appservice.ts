/**
 * AppserviceActor: everything this server pushes to one application service, in order (actor id
 * = the registration's `id`; it lives in the user shard the id hashes to). The same design as the
 * federation destination actor (actors/destination.ts), for the same reasons: the shard's lease
 * and fencing token make it the only sender to that appservice in the cluster, durable timers
 * carry its backoff across crashes and shard moves, and the transaction in flight is committed
 * before it is sent.
 *
 * Queues. The appservice reader (src/appservice/reader.ts) tells the actor about each room event
 * that interests the appservice (`events`: room id + event id) and about ephemeral data
 * (`ephemeral`: typing, receipts, presence as ephemeral events; to-device messages). The actor
 * appends them to two streams of its own shard (appserviceData) with its own sequence numbers as
 * entry ids, in the same commit as its state; the reader's message ids (`asq:<id>:<event id>`, …)
 * make a re-delivered outbox entry a duplicate the runtime drops: queued once. Events are queued
 * by reference and read from the room's store when sent (src/appservice/transport.ts formats them
 * for clients, as Synapse's transactions carry them).
 *
 * One transaction in flight, exactly once to the appservice's eyes. Starting a transaction is a
 * decision: `inflight = {txnId, event range, ephemeral range}` is committed BEFORE anything is
 * sent, with a timer `send` due now. The PUT runs in the background of the worker process (a
 * hanging appservice never holds the actor or its shard); when it ends the process tells the
 * actor `sent`. A worker killed mid-send leaves `inflight` committed and no process running it:
 * the watch timer fires at the shard's next holder, which re-sends the same txn id with the same
 * events; the appservice dedupes by txn id (the spec asks it to), so it processes them once.
 * Nothing is skipped: the ranges advance only after a 2xx was committed.
 *
 * Failures. Synapse retries every failed transaction (unreachable, timeout, any non-2xx) with a
 * backoff of 2 s doubling up to 2^9 s (synapse/appservice/scheduler.py `_Recoverer`), never
 * dropping one: an appservice that refuses a transaction would refuse losing it too. The same
 * here (the first interval and the cap are `appservices.sender.backoffStartMs/backoffMaxMs`). A
 * `wake` ends a backoff at once (the appservice pinged us: it is up).
 *
 * Catch-up, batched. Synapse's recoverer sends the backlog of a down appservice one stored
 * transaction after another, and its transactions, made while the appservice was down, hold one
 * event each under light load (synapse#8704), so a backlog of N events takes N round trips. Here
 * a transaction is cut from the queue when it starts, not when an event arrives: after an outage
 * the backlog goes `maxEventsPerTxn` (100) events and `maxEphemeralPerTxn` (100) ephemeral
 * entries at a time, in order. Nothing is dropped while the appservice is down: the queue grows
 * (an appservice registered with a dead URL must be removed from the configuration).
 */
import type { ActorKind, ActorMessage, Decision, ShellContext, StoreWrite } from '../src/runtime/actor';
import { appendToQueue, backoffDelayMs, callPeer, decideDelivery, deliveryShell, rangeEnd, readQueueRange, startNext, trimQueue, type DeliveryLimits, type DeliveryPrepared, type DeliveryReply, type DeliveryRules, type DeliveryState, type InflightTransaction, type SentReport } from '../src/runtime/ordered-delivery';
import { appserviceData, type KeySpace } from '../src/store/keys';
import type { JsonObject } from '../src/protocol/json';

export const APPSERVICE_KIND = 'appservice';

export const MAX_EVENTS_PER_TXN = 100;
export const MAX_EPHEMERAL_PER_TXN = 100;
/** Synapse's recoverer: 2 s after the first failure, doubling. */
export const MIN_RETRY_MS = 2_000;
/** Synapse's cap: 2^9 s. */
export const MAX_RETRY_MS = 512_000;
/** How often the actor looks whether the PUT it started still runs (a dead worker's is started again). */
export const WATCH_MS = 5_000;
/** Queueing messages committed together at most (the runtime's group commit). */
export const MAX_QUEUE_BATCH = 100;
/** The retry interval's jitter from the 2nd failure on. */
const JITTER = { min: 0.9, max: 1.1 };

export interface AppserviceLimits extends DeliveryLimits {
  maxEventsPerTxn: number;
  maxEphemeralPerTxn: number;
}

export const DEFAULT_APPSERVICE_LIMITS: AppserviceLimits = { minRetryMs: MIN_RETRY_MS, maxRetryMs: MAX_RETRY_MS, maxEventsPerTxn: MAX_EVENTS_PER_TXN, maxEphemeralPerTxn: MAX_EPHEMERAL_PER_TXN, watchMs: WATCH_MS };

/** An entry of the ephemeral queue: an ephemeral event (`eph`) or a to-device message (`td`). */
export interface EphemeralItem {
  k: 'eph' | 'td';
  j: JsonObject;
}

/** The transaction being sent: queue ranges (inclusive; empty when `to < from`). */
export interface AppserviceInflight extends InflightTransaction {
  evFrom: number;
  evTo: number;
  ephFrom: number;
  ephTo: number;
}

export interface AppserviceState extends DeliveryState<AppserviceInflight> {
  id: string;
  nextEvent: number;
  takenEvent: number;
  nextEph: number;
  takenEph: number;
  /** Totals, for operators. */
  sentEvents: number;
  sentEphemeral: number;
}

export type AppserviceOutcome = { kind: 'ok' } | { kind: 'retry'; error: string };

/** How a transaction went, with what it carried. */
export interface AppserviceSent extends SentReport<AppserviceOutcome> {
  events: number;
  ephemeral: number;
}

export type AppserviceMessage = { t: 'events'; items: { r: string; e: string }[] } | { t: 'ephemeral'; items: EphemeralItem[] } | { t: 'send' } | AppserviceSent | { t: 'wake' };

export type AppservicePrepared = DeliveryPrepared;

/** What one transaction carries, as queued (the transport reads the events and builds the body). */
export interface AppserviceBatch {
  events: { r: string; e: string }[];
  ephemeral: JsonObject[];
  toDevice: JsonObject[];
}

/** The only code that calls the appservice (src/appservice/transport.ts). */
export interface AppserviceTransport {
  send(appserviceId: string, txnId: string, batch: AppserviceBatch): Promise<AppserviceOutcome>;
}

export type AppserviceReply = DeliveryReply;

export function initialAppserviceState(id: string): AppserviceState {
  return { id, nextEvent: 1, takenEvent: 0, nextEph: 1, takenEph: 0, txnSeq: 0, inflight: null, failures: 0, retryAt: 0, lastTimerAt: 0, prevTimerAt: 0, sentEvents: 0, sentEphemeral: 0, txns: 0 };
}

/** The wait after the `failures`-th consecutive failure: min × 2^(n-1), capped, with a jitter in [0.9, 1.1) from a hash (decide stays pure). */
export function appserviceBackoffMs(id: string, failures: number, limits: Pick<AppserviceLimits, 'minRetryMs' | 'maxRetryMs'> = DEFAULT_APPSERVICE_LIMITS): number {
  return backoffDelayMs(id, failures, limits, JITTER);
}

type D = Decision<AppserviceState, AppserviceReply>;

/** How the appservice actor delivers (src/runtime/ordered-delivery.ts runs the cycle). */
function deliveryRules(id: string, limits: AppserviceLimits): DeliveryRules<AppserviceState, AppserviceInflight, AppserviceSent> {
  return {
    id,
    limits,
    jitter: JITTER,
    // Up to 100 events and 100 ephemeral entries, from where the last transaction ended.
    cut(state) {
      const evTo = rangeEnd(state.nextEvent, state.takenEvent, limits.maxEventsPerTxn);
      const ephTo = rangeEnd(state.nextEph, state.takenEph, limits.maxEphemeralPerTxn);
      if (evTo <= state.takenEvent && ephTo <= state.takenEph) return null;
      return { state: { ...state, takenEvent: evTo, takenEph: ephTo }, ranges: { evFrom: state.takenEvent + 1, evTo, ephFrom: state.takenEph + 1, ephTo } };
    },
    // Only a 2xx ends a transaction (anything else is retried: see the header); trim what was sent.
    finish(state, report) {
      if (report.outcome?.kind !== 'ok') return null;
      return {
        state: {
          ...state,
          sentEvents: state.sentEvents + (Number.isInteger(report.events) ? report.events : 0),
          sentEphemeral: state.sentEphemeral + (Number.isInteger(report.ephemeral) ? report.ephemeral : 0),
        },
        writes: [trimQueue(appserviceData.events(id), state.takenEvent + 1), trimQueue(appserviceData.ephemeral(id), state.takenEph + 1)],
      };
    },
  };
}

function validRef(i: unknown): i is { r: string; e: string } {
  return !!i && typeof (i as { r?: unknown }).r === 'string' && typeof (i as { e?: unknown }).e === 'string';
}

function validEphemeral(i: unknown): i is EphemeralItem {
  const x = i as { k?: unknown; j?: unknown };
  return !!x && (x.k === 'eph' || x.k === 'td') && !!x.j && typeof x.j === 'object' && !Array.isArray(x.j);
}

export function decideAppservice(state: AppserviceState, msg: ActorMessage<AppserviceMessage>, prepared: AppservicePrepared | undefined, limits: AppserviceLimits = DEFAULT_APPSERVICE_LIMITS): D {
  const now = msg.enqueuedAt;
  const body = msg.body;
  const id = state.id;
  const rules = deliveryRules(id, limits);
  switch (body?.t) {
    case 'events': {
      const items = Array.isArray(body.items) ? body.items.filter(validRef) : [];
      if (items.length === 0) return { state, reply: { ok: true } };
      const writes: StoreWrite[] = [];
      const next = { ...state, nextEvent: appendToQueue(appserviceData.events(id), state.nextEvent, items.map((i) => ['r', i.r, 'e', i.e]), writes) };
      return startNext(next, now, rules, { state: next, reply: { ok: true }, writes });
    }
    case 'ephemeral': {
      const items = Array.isArray(body.items) ? body.items.filter(validEphemeral) : [];
      if (items.length === 0) return { state, reply: { ok: true } };
      const writes: StoreWrite[] = [];
      const next = { ...state, nextEph: appendToQueue(appserviceData.ephemeral(id), state.nextEph, items.map((i) => ['k', i.k, 'j', JSON.stringify(i.j)]), writes) };
      return startNext(next, now, rules, { state: next, reply: { ok: true }, writes });
    }
    default:
      return decideDelivery(state, body, now, prepared, rules);
  }
}

export interface AppserviceActorOptions {
  transport: AppserviceTransport;
  /** Where the wake channel is (the actor tells itself `sent`). */
  keys: KeySpace;
  limits?: Partial<AppserviceLimits>;
}

export function appserviceActor(opts: AppserviceActorOptions): ActorKind<AppserviceState, AppserviceMessage, AppserviceReply, AppservicePrepared | undefined> {
  const limits: AppserviceLimits = { ...DEFAULT_APPSERVICE_LIMITS, ...opts.limits };
  return {
    kind: APPSERVICE_KIND,
    family: 'user',
    initialState: initialAppserviceState,
    prepare: deliveryShell<AppserviceState, AppserviceInflight, AppserviceSent>({ kind: APPSERVICE_KIND, keys: opts.keys, idOf: (s) => s.id, reportPrefix: 'assent', send: sendInflight, nothingSent: { events: 0, ephemeral: 0 } }),
    decide: (state, msg, prepared) => decideAppservice(state, msg, prepared, limits),
    batch: { max: MAX_QUEUE_BATCH, accepts: (b) => b?.t === 'events' || b?.t === 'ephemeral' },
  };

  async function sendInflight(ctx: ShellContext, inf: AppserviceInflight, attempt: number, id: string): Promise<AppserviceSent> {
    const [evRows, ephRows] = await Promise.all([readQueueRange(ctx, appserviceData.events(id), inf.evFrom, inf.evTo), readQueueRange(ctx, appserviceData.ephemeral(id), inf.ephFrom, inf.ephTo)]);
    const batch: AppserviceBatch = { events: evRows.map((f) => ({ r: f.r ?? '', e: f.e ?? '' })), ephemeral: [], toDevice: [] };
    for (const f of ephRows) {
      let j: JsonObject;
      try {
        j = JSON.parse(f.j ?? '{}') as JsonObject;
      } catch {
        continue;
      }
      (f.k === 'td' ? batch.toDevice : batch.ephemeral).push(j);
    }
    const outcome = await callPeer(ctx, { kind: APPSERVICE_KIND, id, txnId: inf.txnId, attempt }, () => opts.transport.send(id, inf.txnId, batch));
    return { t: 'sent', txnId: inf.txnId, attempt, outcome, events: batch.events.length, ephemeral: batch.ephemeral.length + batch.toDevice.length };
  }
}
