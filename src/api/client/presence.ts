/**
 * Presence (presence.yaml): `PUT/GET /presence/{userId}/status`, and the pings other endpoints
 * send to the presence actor (actors/presence.ts): /sync (the user is connected, `set_presence`)
 * and sending events (the user is active).
 *
 * Pings are throttled per front and user (PING_EVERY_MS), so a client's stream of syncs and
 * messages costs the actor one message per ten seconds, not one per request; a ping that would
 * change the state (another `set_presence`) goes out at once. A user may read the presence of
 * users they share a room with, and their own (Synapse's rule); others get 403.
 */
import { errors, MatrixError } from '../../http/errors';
import type { Front } from '../../http/server';
import { isJsonObject, utf8Length } from '../../protocol/json';
import { shardOf } from '../../store/shards';
import { userData } from '../../store/keys';
import { MembershipIndex } from '../../readers/membership-index';
import { MAX_STATUS_MSG, PING_EVERY_MS, PRESENCE_STATES, offlineRecord, presenceContent, type PresenceMessage, type PresenceRecord, type PresenceState } from '../../../actors/presence';
import { requireUser } from './auth';
import type { ApiContext } from '../context';
import { clientRoute } from './room-common';

/**
 * Per front, user and kind of ping (sync / active): when it was last sent, and with what. Kept
 * apart per kind: with one slot per user, a client that sends between its syncs (every client in
 * a conversation) alternated "sync" and "active", and every request pinged the actor — a
 * presence commit (an fsync and a timer) per /send and per /sync.
 */
const lastPing = new Map<string, { at: number; what: string }>();
const MAX_TRACKED = 200_000;

function ping(ctx: ApiContext, userId: string, msg: PresenceMessage, what: string): void {
  if (!ctx.config.presence.enabled) return;
  const now = Date.now();
  const slot = `${msg.op}\u0000${userId}`;
  const last = lastPing.get(slot);
  if (last && last.what === what && now - last.at < PING_EVERY_MS) return;
  if (lastPing.size >= MAX_TRACKED) lastPing.clear();
  lastPing.set(slot, { at: now, what });
  // Fire and forget: presence must never slow down or fail the request that caused it.
  void ctx.actors.tell('user', 'presence', userId, msg).catch(() => undefined);
}

/** A /sync request is being served for the user (holding up to `holdMs`). */
export function presenceOnSync(ctx: ApiContext, userId: string, setPresence: PresenceState | undefined, holdMs: number): void {
  ping(ctx, userId, { op: 'sync', holdMs, ...(setPresence ? { setPresence } : {}) }, `sync:${setPresence ?? ''}`);
}

/** The user did something (sent an event). */
export function presenceOnActivity(ctx: ApiContext, userId: string): void {
  ping(ctx, userId, { op: 'active' }, 'active');
}

async function sharesRoom(ctx: ApiContext, a: string, b: string): Promise<boolean> {
  const index = new MembershipIndex(ctx.redis, ctx.keys, ctx.shardCounts.user);
  const [ra, rb] = await Promise.all([index.rooms(a, 'join'), index.rooms(b, 'join')]);
  const set = new Set(ra.map((r) => r.roomId));
  return rb.some((r) => set.has(r.roomId));
}

export function registerPresenceRoutes(front: Front, ctx: ApiContext): void {
  clientRoute(front, 'PUT', '/presence/:userId/status', async (req) => {
    const me = await requireUser(ctx, req);
    if (req.params.userId !== me.userId) throw new MatrixError(403, 'M_FORBIDDEN', 'You may only set your own presence');
    const body = req.json();
    if (!isJsonObject(body)) throw errors.badJson('The body must be a JSON object');
    if (typeof body.presence !== 'string' || !(PRESENCE_STATES as readonly string[]).includes(body.presence)) throw errors.badJson('presence must be online, unavailable or offline');
    let statusMsg: string | null | undefined;
    if (body.status_msg !== undefined) {
      if (body.status_msg !== null && typeof body.status_msg !== 'string') throw errors.badJson('status_msg must be a string');
      if (typeof body.status_msg === 'string' && utf8Length(body.status_msg) > MAX_STATUS_MSG) throw errors.badJson(`status_msg must be at most ${MAX_STATUS_MSG} bytes`);
      statusMsg = body.status_msg as string | null;
    }
    if (ctx.config.presence.enabled) {
      const msg: PresenceMessage = { op: 'set', presence: body.presence as PresenceState, ...(statusMsg !== undefined ? { statusMsg } : {}) };
      await ctx.actors.ask('user', 'presence', me.userId, msg);
    }
    return { body: {} };
  });

  clientRoute(front, 'GET', '/presence/:userId/status', async (req) => {
    const me = await requireUser(ctx, req);
    const userId = req.params.userId ?? '';
    if (!/^@[^:]+:.+$/.test(userId)) throw errors.invalidParam('userId must be a user id');
    if (!ctx.config.presence.enabled) return { body: presenceContent(offlineRecord(), Date.now()) };
    if (userId !== me.userId && !(await sharesRoom(ctx, me.userId, userId))) throw new MatrixError(403, 'M_FORBIDDEN', 'You are not allowed to see their presence');
    const raw = await ctx.redis.get(ctx.keys.shard('user', shardOf(userId, ctx.shardCounts.user)).data(userData.presence(userId)));
    let rec: PresenceRecord = offlineRecord();
    try {
      if (raw) rec = JSON.parse(raw) as PresenceRecord;
    } catch {
      /* unreadable: offline */
    }
    return { body: presenceContent(rec, Date.now()) };
  });
}
