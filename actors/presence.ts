/**
 * PresenceActor: one local user's presence (actor id = user id, in the user's shard, with its own
 * mailbox so presence traffic never queues behind account changes).
 *
 * What moves it (the clock is each message's `enqueuedAt`, so decide stays pure):
 * - `set` — `PUT /presence/{userId}/status`, or `set_presence` on /sync: the state the client
 *   asks for, with an optional status message;
 * - `sync` — a /sync request is being served (fronts send one at most every PING_EVERY_MS per
 *   user): the user is connected; `offline` users become `online` unless the request said
 *   otherwise. Without another one the user goes offline SYNC_TIMEOUT_MS after the end of the
 *   request (`holdMs`, its long-poll timeout), as Synapse's sync-based presence does;
 * - `active` — the user did something (sent an event): `last_active` now, `online`;
 * - timers (src/runtime/timers.ts): `idle` turns online into `unavailable` after IDLE_MS without
 *   activity; `offline` turns anyone offline once their syncs have stopped.
 *
 * Every change of what others see (presence, status message) writes the record
 * (`userData.presence`) and appends `{type: 'presence', user_id}`; the fan-out reader then puts it
 * in the feed of every user who shares a room with this one — work proportional to who can see
 * it (src/readers/user-fanout.ts). `last_active_ago` and `currently_active` are derived when read.
 */
import type { ActorKind, ActorMessage, Decision, ShellContext } from '../src/runtime/actor';
import { userData } from '../src/store/keys';

export const PRESENCE_STATES = ['online', 'unavailable', 'offline'] as const;
export type PresenceState = (typeof PRESENCE_STATES)[number];

/** Online without activity for this long → unavailable (Synapse's IDLE_TIMER). */
export const IDLE_MS = 5 * 60_000;
/** No sync for this long after the last one ended → offline (Synapse's SYNC_ONLINE_TIMEOUT). */
export const SYNC_TIMEOUT_MS = 30_000;
/** Active within this long → `currently_active` (Synapse's LAST_ACTIVE_GRANULARITY). */
export const CURRENTLY_ACTIVE_MS = 60_000;
/** Fronts send `sync` / `active` pings at most this often per user. */
export const PING_EVERY_MS = 10_000;
export const MAX_STATUS_MSG = 1024;

/** The stored record fronts read (JSON). */
export interface PresenceRecord {
  presence: PresenceState;
  status_msg?: string;
  /** ms; 0 = never. */
  last_active: number;
}

export interface PresenceActorState {
  userId: string;
  record: PresenceRecord;
  /** When the user's syncs stop counting (ms; 0: not syncing). */
  syncUntil: number;
}

export type PresenceMessage =
  | { op: 'set'; presence: PresenceState; statusMsg?: string | null }
  | { op: 'sync'; setPresence?: PresenceState; holdMs: number }
  | { op: 'active' }
  | { op: 'idle' }
  | { op: 'offline' }
  /**
   * A remote user's presence as their server said it (`m.presence`, checked by
   * src/federation/inbound/edus.ts): the record is taken as is, with no timers — their server
   * runs the state machine and tells us when it changes.
   */
  | { op: 'remote'; presence: PresenceState; statusMsg?: string; lastActiveAgo?: number };

export interface PresenceOutput {
  type: 'presence';
  user_id: string;
  presence: PresenceState;
}

/** The `m.presence` content for a record, as seen at `now`. */
export function presenceContent(r: PresenceRecord, now: number): Record<string, unknown> {
  const c: Record<string, unknown> = { presence: r.presence };
  if (r.last_active > 0) c.last_active_ago = Math.max(0, now - r.last_active);
  if (r.presence === 'online') c.currently_active = r.last_active > 0 && now - r.last_active < CURRENTLY_ACTIVE_MS;
  if (r.status_msg !== undefined) c.status_msg = r.status_msg;
  return c;
}

export function offlineRecord(): PresenceRecord {
  return { presence: 'offline', last_active: 0 };
}

export function decidePresence(state: PresenceActorState, msg: ActorMessage<PresenceMessage>): Decision<PresenceActorState, { ok: true }> {
  const now = msg.enqueuedAt;
  const b = msg.body;
  const rec: PresenceRecord = { ...state.record };
  let syncUntil = state.syncUntil;
  const timers: NonNullable<Decision<unknown, unknown>['timers']> = [];
  switch (b?.op) {
    case 'set': {
      if (!(PRESENCE_STATES as readonly string[]).includes(b.presence)) throw new TypeError(`presence: bad state ${b.presence}`);
      rec.presence = b.presence;
      if (b.statusMsg === null) delete rec.status_msg;
      else if (typeof b.statusMsg === 'string') rec.status_msg = b.statusMsg;
      if (b.presence === 'online') rec.last_active = now;
      // Going online by hand counts as syncing for a while (Synapse times it out the same way).
      if (b.presence !== 'offline') syncUntil = Math.max(syncUntil, now + SYNC_TIMEOUT_MS);
      break;
    }
    case 'sync': {
      syncUntil = Math.max(syncUntil, now + Math.max(0, b.holdMs) + SYNC_TIMEOUT_MS);
      if (b.setPresence === 'offline') break; // a client syncing "offline" changes nothing
      if (b.setPresence === 'unavailable') rec.presence = 'unavailable';
      else if (rec.presence === 'offline') {
        rec.presence = 'online';
        rec.last_active = now;
      }
      break;
    }
    case 'active':
      rec.last_active = now;
      rec.presence = 'online';
      syncUntil = Math.max(syncUntil, now + SYNC_TIMEOUT_MS);
      break;
    case 'idle':
      if (rec.presence === 'online' && now - rec.last_active >= IDLE_MS) rec.presence = 'unavailable';
      break;
    case 'remote': {
      if (!(PRESENCE_STATES as readonly string[]).includes(b.presence)) throw new TypeError(`presence: bad state ${b.presence}`);
      const next: PresenceRecord = { presence: b.presence, last_active: typeof b.lastActiveAgo === 'number' && b.lastActiveAgo >= 0 ? now - b.lastActiveAgo : state.record.last_active };
      if (typeof b.statusMsg === 'string') next.status_msg = b.statusMsg.slice(0, MAX_STATUS_MSG);
      const visible = next.presence !== state.record.presence || next.status_msg !== state.record.status_msg;
      if (!visible && next.last_active === state.record.last_active) return { state, reply: { ok: true } };
      return {
        state: { userId: state.userId, record: next, syncUntil: 0 },
        reply: { ok: true },
        writes: [{ cmd: 'SET', key: userData.presence(state.userId), args: [JSON.stringify(next)] }],
        outputs: visible ? [{ type: 'presence', user_id: state.userId, presence: next.presence } satisfies PresenceOutput] : [],
      };
    }
    case 'offline':
      if (syncUntil <= now && rec.presence !== 'offline') {
        rec.presence = 'offline';
        syncUntil = 0;
      }
      break;
    default:
      throw new TypeError(`presence: unknown op ${JSON.stringify((b as { op?: unknown } | undefined)?.op)}`);
  }
  // Timers follow the state: idle only matters while online, offline only while not offline.
  timers.push({ key: 'idle', atMs: rec.presence === 'online' ? rec.last_active + IDLE_MS : null, body: { op: 'idle' } satisfies PresenceMessage });
  timers.push({ key: 'offline', atMs: rec.presence !== 'offline' && syncUntil > 0 ? syncUntil : null, body: { op: 'offline' } satisfies PresenceMessage });
  const visibleChange = rec.presence !== state.record.presence || rec.status_msg !== state.record.status_msg;
  const changed = visibleChange || rec.last_active !== state.record.last_active || syncUntil !== state.syncUntil;
  if (!changed) return { state, reply: { ok: true } };
  return {
    state: { userId: state.userId, record: rec, syncUntil },
    reply: { ok: true },
    writes: [{ cmd: 'SET', key: userData.presence(state.userId), args: [JSON.stringify(rec)] }],
    outputs: visibleChange ? [{ type: 'presence', user_id: state.userId, presence: rec.presence } satisfies PresenceOutput] : [],
    timers,
  };
}

async function hydratePresence(ctx: ShellContext, stored: unknown, userId: string): Promise<PresenceActorState> {
  const raw = await ctx.redis.get(ctx.keys.data(userData.presence(userId)));
  const s = stored as Partial<PresenceActorState> | undefined;
  let record = offlineRecord();
  if (raw) {
    try {
      record = JSON.parse(raw) as PresenceRecord;
    } catch {
      /* a broken record is replaced by the next change */
    }
  }
  return { userId, record, syncUntil: typeof s?.syncUntil === 'number' ? s.syncUntil : 0 };
}

export function presenceActor(): ActorKind<PresenceActorState, PresenceMessage, { ok: true }> {
  return {
    kind: 'presence',
    family: 'user',
    initialState: (userId) => ({ userId, record: offlineRecord(), syncUntil: 0 }),
    hydrate: hydratePresence,
    serialize: (s) => ({ syncUntil: s.syncUntil }),
    decide: decidePresence,
  };
}
