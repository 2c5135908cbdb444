/**
 * History from before we joined (client-server `/messages dir=b`, server-server "Backfilling"):
 * when a room's local timeline runs out above its create event, the events before our oldest
 * one are asked of the other servers in the room with `GET /backfill` (from the oldest event's
 * prev_events), and handed to the room actor's `backfill` op, which checks them (signatures,
 * hashes, auth rules) and places them before what the room has, with negative positions. Events
 * whose own prev_events remain unknown get the state before them from the same server
 * (`/state_ids`, the events lacking fetched with `/event`: missing-events.ts).
 *
 * Best effort: a server that fails is skipped; nothing here makes /messages fail. A server that
 * failed (unreachable, timed out, refused) is not asked again for that room for a while — a minute
 * after the first failure, doubling with each further one up to an hour, forgotten on a success —
 * as Synapse backs off a destination, so a dead peer does not add its timeout to every /messages.
 * The record is per front process (bounded), and per room: a server may be out of one room only.
 */
import type { Logger } from 'pino';
import type { ApiContext } from '../api/context';
import { serverNameOf } from '../protocol/event-hashing';
import { isJsonObject, type JsonObject, type JsonValue } from '../protocol/json';
import { askRoomFamily } from '../rooms/ask';
import type { IngestReply } from '../rooms/model';
import type { FederationClient } from './client';
import { refIds, safeEventId, suppliedStateFor } from './inbound/missing-events';
import { keysForPdus } from './inbound/pdu-keys';
import { roomForServer } from './inbound/room-access';
import type { ServerKeyStore } from './keys/key-store';

/** Events asked for per /backfill (Synapse's clients page by tens; it asks for 100). */
export const BACKFILL_LIMIT = 100;
/** Servers tried per call. */
const MAX_SERVERS = 3;
/** Events of one batch whose missing state is fetched (each costs a /state_ids and some /event). */
const MAX_STATE_FILLS = 2;
const TIME_BUDGET_MS = 20_000;
const MAX_ANSWER_BYTES = 16 * 1024 * 1024;

/** After a server's first failure for a room, it is not asked for this long; doubling, up to the cap. */
export const BACKFILL_BACKOFF_MIN_MS = 60_000;
export const BACKFILL_BACKOFF_MAX_MS = 60 * 60_000;
const BACKOFF_ENTRIES_MAX = 10_000;

/** A server's failures to backfill a room: how many in a row, and until when it is skipped. */
export interface BackfillFailure {
  failures: number;
  until: number;
}

const backoff = new Map<string, BackfillFailure>();
const backoffKey = (roomId: string, server: string) => `${roomId}\u0000${server}`;

/** The failure record of `server` for `roomId`, if it failed last time it was asked. */
export function backfillFailure(roomId: string, server: string): BackfillFailure | undefined {
  return backoff.get(backoffKey(roomId, server));
}

function recordFailure(roomId: string, server: string, now = Date.now()): void {
  const key = backoffKey(roomId, server);
  const failures = (backoff.get(key)?.failures ?? 0) + 1;
  const wait = Math.min(BACKFILL_BACKOFF_MAX_MS, BACKFILL_BACKOFF_MIN_MS * 2 ** Math.min(failures - 1, 20));
  backoff.delete(key);
  if (backoff.size >= BACKOFF_ENTRIES_MAX) backoff.delete(backoff.keys().next().value!);
  backoff.set(key, { failures, until: now + wait });
}

export interface BackfillDeps {
  client: FederationClient;
  keyStore: ServerKeyStore;
}

/**
 * Backfill `roomId` from before its oldest timeline event. Answers how many events the room took
 * (0: nothing to do, or no server could help).
 */
export async function backfillFromRemote(ctx: ApiContext, deps: BackfillDeps, roomId: string, limit = BACKFILL_LIMIT): Promise<number> {
  const oldest = (await ctx.rooms.timeline(roomId, 'f', null, 1)).events[0];
  if (!oldest || (oldest.event.type === 'm.room.create' && oldest.event.state_key === '')) return 0;
  const prevs = refIds(oldest.event.prev_events);
  if (!prevs.length) return 0;
  const room = await roomForServer(ctx.rooms, roomId);
  if (!room) return 0;
  const ours = ctx.config.serverName;
  const servers = new Set<string>();
  for (const userId of (await ctx.rooms.members(roomId, 'join')).keys()) {
    const s = serverNameOf(userId);
    if (s && s !== ours && room.aclAllows(s)) servers.add(s);
  }
  // The server that sent our oldest event is likely to have what came before it.
  const origin = serverNameOf(String(oldest.event.sender));
  const now = Date.now();
  const ready = (s: string) => (backfillFailure(roomId, s)?.until ?? 0) <= now;
  const ordered = [...(origin && servers.has(origin) ? [origin] : []), ...[...servers].filter((s) => s !== origin)].filter(ready).slice(0, MAX_SERVERS);
  const deadline = Date.now() + TIME_BUDGET_MS;
  const log: Logger = ctx.log;
  for (const server of ordered) {
    try {
      const query = [...prevs.map((id) => `v=${encodeURIComponent(id)}`), `limit=${Math.max(1, Math.min(limit, BACKFILL_LIMIT))}`].join('&');
      let answer: JsonValue;
      try {
        answer = await deps.client.get<JsonValue>(server, `/_matrix/federation/v1/backfill/${encodeURIComponent(roomId)}?${query}`, { timeoutMs: 15_000, maxResponseBytes: MAX_ANSWER_BYTES });
      } catch (e) {
        recordFailure(roomId, server);
        throw e;
      }
      backoff.delete(backoffKey(roomId, server));
      if (!isJsonObject(answer) || !Array.isArray(answer.pdus)) continue;
      const pdus = answer.pdus.filter((e): e is JsonObject => isJsonObject(e) && e.room_id === roomId);
      if (!pdus.length) continue;
      const ask = async (state?: Awaited<ReturnType<typeof suppliedStateFor>>) => {
        const keys = await keysForPdus(deps.keyStore, [...pdus, ...(state?.events ?? [])], room.version, deadline);
        return askRoomFamily<IngestReply>(ctx, 'room', roomId, { op: 'backfill', pdus, keys, ...(state ? { state } : {}) });
      };
      let reply = await ask();
      // The oldest events of the batch may need the state before them (their prev_events are further back).
      const missing = reply.results.filter((r) => r.status === 'missing' && r.event_id).slice(0, MAX_STATE_FILLS);
      if (missing.length) {
        const supplied = { events: [] as JsonObject[], before: {} as Record<string, string[]> };
        for (const r of missing) {
          const pdu = pdus.find((p) => safeEventId(p, room) === r.event_id);
          if (!pdu) continue;
          const s = await suppliedStateFor({ api: ctx, keyStore: deps.keyStore, client: deps.client, log }, room, server, pdu, r.event_id!, deadline);
          if (!s) continue;
          supplied.events.push(...s.events);
          Object.assign(supplied.before, s.before);
        }
        if (Object.keys(supplied.before).length) reply = await ask(supplied);
      }
      const taken = reply.results.filter((r) => r.status === 'accepted').length;
      log.info({ room_id: roomId, server, asked: pdus.length, taken, statuses: countBy(reply.results.map((r) => r.status)) }, 'backfill from a remote');
      if (taken) return taken;
    } catch (e) {
      log.info({ room_id: roomId, server, err: (e as Error).message }, 'backfill: a server could not help');
    }
    if (Date.now() > deadline) break;
  }
  return 0;
}

function countBy(xs: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of xs) out[x] = (out[x] ?? 0) + 1;
  return out;
}
