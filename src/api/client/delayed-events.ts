// PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}?org.matrix.msc4140.delay=<ms>
// PUT /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}?org.matrix.msc4140.delay=<ms>
// GET /_matrix/client/unstable/org.matrix.msc4140/delayed_events[/{delayId}]
// POST /_matrix/client/unstable/org.matrix.msc4140/delayed_events/{delayId}[/{cancel|restart|send}]
/**
 * Delayed events (MSC4140) as Synapse 1.163.2 serves them (synapse/rest/client/delayed_events.py):
 * - scheduling is `/send` or `/state` with the `org.matrix.msc4140.delay` query parameter (ms):
 *   the answer is `{delay_id}` instead of an event id. Off (`delayedEvents.maxDelayMs: 0`): 403
 *   `M_FORBIDDEN`; a delay over the maximum: 400 `ORG.MATRIX.MSC4140_DELAY_TOO_LARGE` (Synapse's
 *   code; the MSC's `max_delay` field is added); at the per-user maximum: 429 `M_LIMIT_EXCEEDED`.
 *   A retried PUT with the same transaction id answers the same delay id.
 * - management (`cancel`, `restart`, `send`) is unauthenticated — the delay id is the capability —
 *   through `POST …/delayed_events/{id}` with `{"action": …}` and the per-action paths; unknown
 *   ids answer 404 `M_NOT_FOUND`. Rate limited per user, or per address without a token
 *   (`rateLimit.delayedEventMgmt`, Synapse's rc_delayed_event_mgmt).
 * - listing (authenticated): every pending delayed event of the user, by send time, with Synapse's
 *   fields (`delay_ms`, `delayed_since_ts`) and the earlier revision's (`delay`, `running_since`).
 */
import { randomBytes } from 'node:crypto';
import { DELAYED_EVENTS_KIND, delayedEventTxn, sendTimeOf, type DelayedEventRecord, type DelayedEventsMessage } from '../../../actors/delayed-events';
import { MatrixError, errors } from '../../http/errors';
import type { Front, Request } from '../../http/server';
import type { JsonObject } from '../../protocol/json';
import { ActorReplyError, ActorTimeoutError } from '../../runtime/actor-client';
import { delayedEventData } from '../../store/keys';
import { shardOf } from '../../store/shards';
import type { EventTemplate } from '../../rooms/model';
import type { ApiContext } from '../context';
import { bearerToken, requireUser, type Requester } from './auth';
import { clientRoute, jsonBody } from './accounts-common';

const PREFIX = ['unstable/org.matrix.msc4140'];
export const DELAY_PARAM = 'org.matrix.msc4140.delay';

/** Whether the request asks for a delay at all (checked or not: requestedDelay says). */
export function asksForDelay(req: Request): boolean {
  return req.query[DELAY_PARAM] !== undefined;
}

/** The delay asked for (ms), or null for an ordinary send; 400 when it is not a non-negative integer. */
export function requestedDelay(req: Request): number | null {
  const raw = req.query[DELAY_PARAM];
  if (raw === undefined) return null;
  if (!/^[0-9]{1,15}$/.test(raw)) throw errors.invalidParam(`${DELAY_PARAM} must be a non-negative integer`);
  return Number(raw);
}

/** `ax<user shard>_<random>`: unguessable, and names the shard whose owners hash knows the owner. */
function newDelayId(ctx: ApiContext, userId: string): string {
  return `ax${shardOf(userId, ctx.shardCounts.user)}_${randomBytes(15).toString('base64url')}`;
}

async function askDelayed<R>(ctx: ApiContext, userId: string, body: DelayedEventsMessage, mid?: string): Promise<R> {
  try {
    return await ctx.actors.ask<R>('user', DELAYED_EVENTS_KIND, userId, body, mid ? { mid } : {});
  } catch (e) {
    if (e instanceof ActorReplyError) throw new MatrixError(e.status, e.errcode, e.message);
    if (e instanceof ActorTimeoutError) throw new MatrixError(504, 'M_UNKNOWN', 'The server did not answer in time; retry the request');
    throw e;
  }
}

/**
 * Schedule a delayed event (the room routes call this when the delay parameter is given).
 * `txn`: the transaction key of a `/send`, so a retried PUT answers the same delay id.
 */
export async function scheduleDelayedEvent(ctx: ApiContext, user: Requester, roomId: string, type: string, stateKey: string | undefined, content: JsonObject, delayMs: number, txn?: string): Promise<{ delay_id: string }> {
  const { maxDelayMs, maxPerUser } = ctx.config.delayedEvents;
  if (maxDelayMs === 0) throw new MatrixError(403, 'M_FORBIDDEN', 'Sending delayed events has been disallowed');
  if (delayMs > maxDelayMs) throw new MatrixError(400, 'ORG.MATRIX.MSC4140_DELAY_TOO_LARGE', `The requested delay (${delayMs}ms) exceeds the allowed maximum (${maxDelayMs}ms)`, { max_delay: maxDelayMs });
  const body: DelayedEventsMessage = { op: 'add', delayId: newDelayId(ctx, user.userId), roomId, type, content, delayMs, deviceId: user.deviceId, maxPerUser, ...(stateKey !== undefined ? { stateKey } : {}) };
  return askDelayed<{ delay_id: string }>(ctx, user.userId, body, txn ? `delayed-add:${txn}` : undefined);
}

/** The owner of a delay id (from its shard's owners hash), or 404. */
async function ownerOf(ctx: ApiContext, delayId: string): Promise<string> {
  const m = /^ax([0-9]{1,5})_[A-Za-z0-9_-]{1,64}$/.exec(delayId);
  const shard = m ? Number(m[1]) : NaN;
  if (!(shard >= 0 && shard < ctx.shardCounts.user)) throw errors.notFound('Delayed event not found');
  const owner = await ctx.redis.hget(ctx.keys.shard('user', shard).data(delayedEventData.owners()), delayId);
  if (owner === null) throw errors.notFound('Delayed event not found');
  return owner;
}

/** The API form of a record (Synapse's fields, and the legacy ones it still sends in lists). */
function describe(e: DelayedEventRecord, legacy: boolean): JsonObject {
  const out: JsonObject = { delay_id: e.delay_id, room_id: e.room_id, type: e.type, delay_ms: e.delay, delayed_since_ts: e.running_since, content: e.content };
  if (e.state_key !== undefined) out.state_key = e.state_key;
  if (legacy) {
    out.delay = e.delay;
    out.running_since = e.running_since;
  }
  return out;
}

const ACTIONS = ['cancel', 'restart', 'send'] as const;
type Action = (typeof ACTIONS)[number];

/** Send a delayed event now, as the reader would (same ids: one event whoever is first). */
async function sendNow(ctx: ApiContext, owner: string, e: DelayedEventRecord): Promise<void> {
  const event: EventTemplate = { type: e.type, sender: owner, content: e.content, ...(e.state_key !== undefined ? { state_key: e.state_key } : {}) };
  try {
    await ctx.actors.ask('room', 'room', e.room_id, { op: 'send', event, txn: delayedEventTxn(e.delay_id) }, { mid: `delayed:${e.delay_id}` });
  } catch (err) {
    if (err instanceof ActorReplyError) throw new MatrixError(err.status, err.errcode, err.message);
    if (err instanceof ActorTimeoutError) throw new MatrixError(504, 'M_UNKNOWN', 'The room did not answer in time; the event is still sent');
    throw err;
  }
}

export function registerDelayedEventRoutes(front: Front, ctx: ApiContext): void {
  /** Rate limit a management call: per user with a token, per address without. */
  const mgmtLimit = async (req: Request): Promise<void> => {
    const key = bearerToken(req) ? (await requireUser(ctx, req)).userId : req.remoteAddress;
    await ctx.limiter?.check('delayedEventMgmt', key);
  };
  const manage = async (req: Request, action: Action) => {
    await mgmtLimit(req);
    const delayId = req.params.delayId!;
    const owner = await ownerOf(ctx, delayId);
    const recordJson = action === 'send' ? await ctx.redis.hget(ctx.keys.shard('user', shardOf(owner, ctx.shardCounts.user)).data(delayedEventData.events(owner)), delayId) : null;
    await askDelayed(ctx, owner, { op: action, delayId });
    // `send`: the actor has taken it off the schedule and put it on the outbox (the reader sends
    // it even if this process dies now); sending it from here as well, with the same message id
    // and transaction key, answers the room's verdict as Synapse does (e.g. 403 when the owner may
    // no longer send it) — whichever of the two comes second gets the first one's stored answer.
    if (recordJson !== null) await sendNow(ctx, owner, JSON.parse(recordJson) as DelayedEventRecord);
    return { body: {} };
  };

  clientRoute(front, 'POST', '/delayed_events/:delayId', async (req) => {
    const body = jsonBody(req);
    if (body.action === undefined) throw new MatrixError(400, 'M_MISSING_PARAM', "'action' is missing");
    if (typeof body.action !== 'string' || !(ACTIONS as readonly string[]).includes(body.action)) throw errors.invalidParam(`'action' is not one of ${ACTIONS.map((a) => `'${a}'`).join(', ')}`);
    return manage(req, body.action as Action);
  }, PREFIX);
  for (const action of ACTIONS) clientRoute(front, 'POST', `/delayed_events/:delayId/${action}`, (req) => manage(req, action), PREFIX);

  clientRoute(front, 'GET', '/delayed_events', async (req) => {
    const user = await requireUser(ctx, req);
    await ctx.limiter?.check('delayedEventMgmt', user.userId);
    const shard = ctx.keys.shard('user', shardOf(user.userId, ctx.shardCounts.user));
    const records = Object.values(await ctx.redis.hgetall(shard.data(delayedEventData.events(user.userId)))).map((j) => JSON.parse(j) as DelayedEventRecord);
    records.sort((a, b) => sendTimeOf(a) - sendTimeOf(b) || (a.delay_id < b.delay_id ? -1 : 1));
    return { body: { delayed_events: records.map((e) => describe(e, true)) } };
  }, PREFIX);

  clientRoute(front, 'GET', '/delayed_events/:delayId', async (req) => {
    const user = await requireUser(ctx, req);
    await ctx.limiter?.check('delayedEventMgmt', user.userId);
    const shard = ctx.keys.shard('user', shardOf(user.userId, ctx.shardCounts.user));
    const json = await ctx.redis.hget(shard.data(delayedEventData.events(user.userId)), req.params.delayId!);
    if (json === null) throw errors.notFound('Delayed event not found');
    return { body: describe(JSON.parse(json) as DelayedEventRecord, false) };
  }, PREFIX);
}
