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
import { createHash, randomBytes } from 'node:crypto';
import type { ActorKind, ActorMessage, Decision, ShellContext, StoreWrite } from '../src/runtime/actor';
import { encode } from '../src/store/codec';
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

export interface AppserviceLimits {
  minRetryMs: number;
  maxRetryMs: number;
  maxEventsPerTxn: number;
  maxEphemeralPerTxn: number;
  watchMs: number;
}

export const DEFAULT_APPSERVICE_LIMITS: AppserviceLimits = { minRetryMs: MIN_RETRY_MS, maxRetryMs: MAX_RETRY_MS, maxEventsPerTxn: MAX_EVENTS_PER_TXN, maxEphemeralPerTxn: MAX_EPHEMERAL_PER_TXN, watchMs: WATCH_MS };

/** An entry of the ephemeral queue: an ephemeral event (`eph`) or a to-device message (`td`). */
export interface EphemeralItem {
  k: 'eph' | 'td';
  j: JsonObject;
}

/** The transaction being sent: queue ranges (inclusive; empty when `to < from`). */
export interface AppserviceInflight {
  txnId: string;
  evFrom: number;
  evTo: number;
  ephFrom: number;
  ephTo: number;
  attempts: number;
  sending?: boolean;
}

export interface AppserviceState {
  id: string;
  nextEvent: number;
  takenEvent: number;
  nextEph: number;
  takenEph: number;
  txnSeq: number;
  inflight: AppserviceInflight | null;
  failures: number;
  retryAt: number;
  lastTimerAt: number;
  prevTimerAt: number;
  /** Totals, for operators. */
  sentEvents: number;
  sentEphemeral: number;
  txns: number;
  lastError?: string;
}

export type AppserviceMessage =
  | { t: 'events'; items: { r: string; e: string }[] }
  | { t: 'ephemeral'; items: EphemeralItem[] }
  | { t: 'send' }
  | { t: 'sent'; txnId: string; attempt: number; outcome: AppserviceOutcome; events: number; ephemeral: number }
  | { t: 'wake' };

export type AppserviceOutcome = { kind: 'ok' } | { kind: 'retry'; error: string };

export type AppservicePrepared = { kind: 'started'; txnId: string; attempt: number } | { kind: 'running'; txnId: string };

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

export type AppserviceReply = { ok: true };

export function initialAppserviceState(id: string): AppserviceState {
  return { id, nextEvent: 1, takenEvent: 0, nextEph: 1, takenEph: 0, txnSeq: 0, inflight: null, failures: 0, retryAt: 0, lastTimerAt: 0, prevTimerAt: 0, sentEvents: 0, sentEphemeral: 0, txns: 0 };
}

/** The wait after the `failures`-th consecutive failure: min × 2^(n-1), capped, with a jitter in [0.9, 1.1) from a hash (decide stays pure). */
export function appserviceBackoffMs(id: string, failures: number, limits: Pick<AppserviceLimits, 'minRetryMs' | 'maxRetryMs'> = DEFAULT_APPSERVICE_LIMITS): number {
  if (failures <= 0) return 0;
  const base = limits.minRetryMs * 2 ** Math.min(failures - 1, 40);
  const h = createHash('sha256').update(`${id}\u0000${failures}`).digest().readUInt32BE(0);
  const jitter = failures === 1 ? 1 : 0.9 + (h / 2 ** 32) * 0.2;
  return Math.min(Math.round(base * jitter), limits.maxRetryMs);
}

export const seqId = (seq: number): string => `${seq}-0`;

type D = Decision<AppserviceState, AppserviceReply>;

/** Set the `send` timer at `atMs`, never at a due time a fired timer had (timer message ids derive from it). */
function sendTimer(state: AppserviceState, atMs: number, now: number): { state: AppserviceState; timer: { key: string; atMs: number; body: AppserviceMessage } } {
  const floor = state.lastTimerAt <= now ? state.lastTimerAt : state.prevTimerAt;
  const at = Math.max(atMs, floor + 1);
  return { state: { ...state, prevTimerAt: floor, lastTimerAt: at }, timer: { key: 'send', atMs: at, body: { t: 'send' } } };
}

/** With nothing in flight and something waiting: cut the next transaction from the queues and ask for it to be sent. */
function startNext(state: AppserviceState, now: number, limits: AppserviceLimits, d: D): D {
  if (state.inflight) return d;
  const evTo = Math.min(state.nextEvent - 1, state.takenEvent + limits.maxEventsPerTxn);
  const ephTo = Math.min(state.nextEph - 1, state.takenEph + limits.maxEphemeralPerTxn);
  if (evTo <= state.takenEvent && ephTo <= state.takenEph) return d;
  const txnSeq = state.txnSeq + 1;
  // Unique across the appservice's life even if this actor's state were ever lost: the
  // appservice dedupes on txn ids, and a reused one would be dropped unseen.
  const inflight: AppserviceInflight = { txnId: `${now.toString(36)}.${txnSeq}`, evFrom: state.takenEvent + 1, evTo, ephFrom: state.takenEph + 1, ephTo, attempts: 0 };
  const taken: AppserviceState = { ...state, txnSeq, inflight, takenEvent: evTo, takenEph: ephTo };
  const { state: next, timer } = sendTimer(taken, Math.max(now, state.retryAt), now);
  return { ...d, state: next, timers: [...(d.timers ?? []), timer] };
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
  switch (body?.t) {
    case 'events': {
      const items = Array.isArray(body.items) ? body.items.filter(validRef) : [];
      if (items.length === 0) return { state, reply: { ok: true } };
      const writes: StoreWrite[] = [];
      let seq = state.nextEvent;
      for (const i of items) writes.push({ cmd: 'XADD', key: appserviceData.events(id), args: [seqId(seq++), 'r', i.r, 'e', i.e] });
      const next = { ...state, nextEvent: seq };
      return startNext(next, now, limits, { state: next, reply: { ok: true }, writes });
    }
    case 'ephemeral': {
      const items = Array.isArray(body.items) ? body.items.filter(validEphemeral) : [];
      if (items.length === 0) return { state, reply: { ok: true } };
      const writes: StoreWrite[] = [];
      let seq = state.nextEph;
      for (const i of items) writes.push({ cmd: 'XADD', key: appserviceData.ephemeral(id), args: [seqId(seq++), 'k', i.k, 'j', JSON.stringify(i.j)] });
      const next = { ...state, nextEph: seq };
      return startNext(next, now, limits, { state: next, reply: { ok: true }, writes });
    }
    case 'wake': {
      if (state.retryAt === 0) return { state, reply: { ok: true } };
      if (!state.inflight || state.inflight.sending || state.retryAt <= now) return { state: { ...state, retryAt: 0, failures: 0 }, reply: { ok: true } };
      const { state: next, timer } = sendTimer({ ...state, retryAt: 0, failures: 0 }, now, now);
      return { state: next, reply: { ok: true }, timers: [timer] };
    }
    case 'send': {
      const inf = state.inflight;
      if (!inf) return startNext(state, now, limits, { state, reply: { ok: true } });
      // A late or repeated timer during a backoff: the retry timer stands.
      if (!prepared || prepared.txnId !== inf.txnId) return { state, reply: { ok: true } };
      const started = prepared.kind === 'started' ? { ...state, inflight: { ...inf, attempts: prepared.attempt, sending: true } } : state;
      const { state: next, timer } = sendTimer(started, now + limits.watchMs, now);
      return { state: next, reply: { ok: true }, timers: [timer] };
    }
    case 'sent': {
      const inf = state.inflight;
      if (!inf || body.txnId !== inf.txnId) return { state, reply: { ok: true } };
      const o = body.outcome;
      if (o?.kind === 'retry') {
        // A failure of an older attempt says nothing about the latest one, which is still out.
        if (body.attempt !== inf.attempts) return { state, reply: { ok: true } };
        const failures = state.failures + 1;
        const retryAt = now + appserviceBackoffMs(id, failures, limits);
        const { state: next, timer } = sendTimer({ ...state, failures, retryAt, inflight: { ...inf, sending: false }, lastError: String(o.error) }, retryAt, now);
        return { state: next, reply: { ok: true }, timers: [timer] };
      }
      if (o?.kind !== 'ok') return { state, reply: { ok: true } };
      // Delivered (whatever the attempt): the ranges are done; trim what was sent.
      const writes: StoreWrite[] = [
        { cmd: 'XTRIM', key: appserviceData.events(id), args: ['MINID', seqId(state.takenEvent + 1)] },
        { cmd: 'XTRIM', key: appserviceData.ephemeral(id), args: ['MINID', seqId(state.takenEph + 1)] },
      ];
      const next: AppserviceState = {
        ...state,
        inflight: null,
        failures: 0,
        retryAt: 0,
        txns: state.txns + 1,
        sentEvents: state.sentEvents + (Number.isInteger(body.events) ? body.events : 0),
        sentEphemeral: state.sentEphemeral + (Number.isInteger(body.ephemeral) ? body.ephemeral : 0),
      };
      return startNext(next, now, limits, { state: next, reply: { ok: true }, writes });
    }
    default:
      return { state, reply: { ok: true } };
  }
}

export interface AppserviceActorOptions {
  transport: AppserviceTransport;
  /** Where the wake channel is (the actor tells itself `sent`). */
  keys: KeySpace;
  limits?: Partial<AppserviceLimits>;
}

function entries(rows: [string, string[]][]): Record<string, string>[] {
  return rows.map(([, fields]) => {
    const f: Record<string, string> = {};
    for (let i = 0; i + 1 < fields.length; i += 2) f[fields[i]!] = fields[i + 1]!;
    return f;
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function appserviceActor(opts: AppserviceActorOptions): ActorKind<AppserviceState, AppserviceMessage, AppserviceReply, AppservicePrepared | undefined> {
  const limits: AppserviceLimits = { ...DEFAULT_APPSERVICE_LIMITS, ...opts.limits };
  /** The PUTs this process runs: appservice id → txn id (at most one each). */
  const running = new Map<string, string>();
  const incarnation = randomBytes(6).toString('hex');
  return {
    kind: APPSERVICE_KIND,
    family: 'user',
    initialState: initialAppserviceState,
    async prepare(ctx, state, msg) {
      const inf = state.inflight;
      if (msg.body?.t !== 'send' || !inf || msg.enqueuedAt < state.retryAt) return undefined;
      if (running.has(state.id)) return { kind: 'running', txnId: inf.txnId };
      const attempt = inf.attempts + 1;
      running.set(state.id, inf.txnId);
      void attemptSend(ctx, { ...inf }, attempt, state.id);
      return { kind: 'started', txnId: inf.txnId, attempt };
    },
    decide: (state, msg, prepared) => decideAppservice(state, msg, prepared, limits),
    batch: { max: MAX_QUEUE_BATCH, accepts: (b) => b?.t === 'events' || b?.t === 'ephemeral' },
  };

  async function attemptSend(ctx: ShellContext, inf: AppserviceInflight, attempt: number, id: string): Promise<void> {
    let report: Extract<AppserviceMessage, { t: 'sent' }>;
    try {
      report = await sendInflight(ctx, inf, attempt, id);
    } catch (e) {
      report = { t: 'sent', txnId: inf.txnId, attempt, outcome: { kind: 'retry', error: `reading the queue: ${e instanceof Error ? e.message : String(e)}` }, events: 0, ephemeral: 0 };
    } finally {
      if (running.get(id) === inf.txnId) running.delete(id);
    }
    for (let i = 0; ; i++) {
      try {
        await ctx.redis.xadd(ctx.keys.inbox, '*', 'mid', `assent:${id}:${inf.txnId}:${attempt}:${incarnation}`, 'a', id, 'k', APPSERVICE_KIND, 'b', encode(report), 't', String(Date.now()));
        await ctx.redis.publish(opts.keys.wakeChannel('user', ctx.shard), '1');
        return;
      } catch (e) {
        if (i >= 10) {
          ctx.log?.error({ err: e, appservice: id, txn_id: inf.txnId }, 'could not report an appservice transaction; the watch timer will send it again');
          return;
        }
        await sleep(Math.min(2000, 100 * 2 ** i));
      }
    }
  }

  async function sendInflight(ctx: ShellContext, inf: AppserviceInflight, attempt: number, id: string): Promise<Extract<AppserviceMessage, { t: 'sent' }>> {
    const [evRows, ephRows] = await Promise.all([
      inf.evTo >= inf.evFrom ? (ctx.redis.xrange(ctx.keys.data(appserviceData.events(id)), seqId(inf.evFrom), seqId(inf.evTo)) as Promise<[string, string[]][]>) : Promise.resolve([]),
      inf.ephTo >= inf.ephFrom ? (ctx.redis.xrange(ctx.keys.data(appserviceData.ephemeral(id)), seqId(inf.ephFrom), seqId(inf.ephTo)) as Promise<[string, string[]][]>) : Promise.resolve([]),
    ]);
    const batch: AppserviceBatch = { events: entries(evRows).map((f) => ({ r: f.r ?? '', e: f.e ?? '' })), ephemeral: [], toDevice: [] };
    for (const f of entries(ephRows)) {
      let j: JsonObject;
      try {
        j = JSON.parse(f.j ?? '{}') as JsonObject;
      } catch {
        continue;
      }
      (f.k === 'td' ? batch.toDevice : batch.ephemeral).push(j);
    }
    const sent = (outcome: AppserviceOutcome) => ({ t: 'sent' as const, txnId: inf.txnId, attempt, outcome, events: batch.events.length, ephemeral: batch.ephemeral.length + batch.toDevice.length });
    let outcome: AppserviceOutcome;
    try {
      outcome = await opts.transport.send(id, inf.txnId, batch);
    } catch (e) {
      outcome = { kind: 'retry', error: e instanceof Error ? e.message : String(e) };
    }
    if (outcome.kind !== 'ok') ctx.log?.warn({ appservice: id, txn_id: inf.txnId, attempt, outcome }, 'appservice transaction not delivered');
    return sent(outcome);
  }
}
