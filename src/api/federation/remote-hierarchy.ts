/**
 * Hierarchies of rooms this server is not in, for the client API's `/hierarchy`: asked of the
 * servers in the `via` of the `m.space.child` event that names the room (at most MAX_SERVERS, in
 * order, the next one only when one fails), checked, and kept per process for CACHE_MS (the spec
 * asks requesters to cache these answers; Synapse keeps them five minutes). A room no server
 * would describe is kept as null for FAILURE_CACHE_MS, so paging through a space does not wait on
 * a dead server again and again.
 */
import { isJsonObject, type JsonObject, type JsonValue } from '../../protocol/json';
import type { FederationClient } from '../../federation/client';
import type { RemoteHierarchy } from '../context';
import type { Logger } from 'pino';

export const CACHE_MS = 5 * 60_000;
export const FAILURE_CACHE_MS = 30_000;
/** Servers of a `via` list tried (as Synapse: the first three). */
export const MAX_SERVERS = 3;
/** Time for all the servers of one room together (a client waits on the whole walk). */
export const BUDGET_MS = 8_000;
const MAX_ENTRIES = 1000;
const MAX_ANSWER_BYTES = 4 * 1024 * 1024;

export class RemoteHierarchies {
  private readonly cache = new Map<string, { at: number; value: Promise<RemoteHierarchy | null> }>();

  constructor(
    private readonly client: FederationClient,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  hierarchy(roomId: string, via: readonly string[], suggestedOnly: boolean): Promise<RemoteHierarchy | null> {
    const key = `${suggestedOnly ? 1 : 0}${roomId}`;
    const hit = this.cache.get(key);
    if (hit) {
      const age = this.now() - hit.at;
      if (age < FAILURE_CACHE_MS) return hit.value;
      if (age < CACHE_MS) {
        // An answer is good for CACHE_MS, a failure only for FAILURE_CACHE_MS.
        const kept = hit.value.then((v) => v ?? this.refresh(key, roomId, via, suggestedOnly));
        return kept;
      }
    }
    return this.refresh(key, roomId, via, suggestedOnly);
  }

  private refresh(key: string, roomId: string, via: readonly string[], suggestedOnly: boolean): Promise<RemoteHierarchy | null> {
    const value = this.fetch(roomId, via, suggestedOnly);
    if (this.cache.size >= MAX_ENTRIES && !this.cache.has(key)) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(key, { at: this.now(), value });
    return value;
  }

  private async fetch(roomId: string, via: readonly string[], suggestedOnly: boolean): Promise<RemoteHierarchy | null> {
    const servers = [...new Set(via.filter((s) => s !== this.client.serverName))].slice(0, MAX_SERVERS);
    const deadline = this.now() + BUDGET_MS;
    for (const server of servers) {
      const left = deadline - this.now();
      if (left <= 0) break;
      try {
        const answer = await this.client.get<JsonValue>(server, `/_matrix/federation/v1/hierarchy/${encodeURIComponent(roomId)}?suggested_only=${suggestedOnly}`, { timeoutMs: left, maxResponseBytes: MAX_ANSWER_BYTES });
        const checked = checkedHierarchy(roomId, answer);
        if (checked) return checked;
        this.log.info({ room_id: roomId, destination: server }, 'hierarchy: malformed answer');
      } catch (err) {
        this.log.info({ room_id: roomId, destination: server, err: (err as Error).message }, 'hierarchy: server did not describe the room');
      }
    }
    return null;
  }
}

/** A `/hierarchy` answer as the spec shapes it (entries that are not are dropped), or null. */
export function checkedHierarchy(roomId: string, answer: JsonValue): RemoteHierarchy | null {
  if (!isJsonObject(answer) || !isJsonObject(answer.room ?? null)) return null;
  const { children_state: childrenState, ...room } = answer.room as JsonObject;
  if (room.room_id !== roomId) return null;
  const state = Array.isArray(childrenState) ? childrenState.filter(isChildEvent) : [];
  const children = new Map<string, JsonObject>();
  if (Array.isArray(answer.children)) {
    for (const c of answer.children) if (isJsonObject(c) && typeof c.room_id === 'string' && c.room_id !== roomId) children.set(c.room_id, c);
  }
  const inaccessible = new Set<string>(Array.isArray(answer.inaccessible_children) ? answer.inaccessible_children.filter((r): r is string => typeof r === 'string') : []);
  return { room, childrenState: state, children, inaccessible };
}

function isChildEvent(e: JsonValue): e is JsonObject {
  if (!isJsonObject(e) || e.type !== 'm.space.child' || typeof e.state_key !== 'string' || !e.state_key.startsWith('!')) return false;
  if (!isJsonObject(e.content ?? null)) return false;
  const via = (e.content as JsonObject).via;
  return Array.isArray(via) && via.length > 0 && via.every((v) => typeof v === 'string');
}
