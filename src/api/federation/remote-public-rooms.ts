/**
 * Room directories of other servers, for the client API's `/publicRooms?server=<other>`: asked
 * of that server (`/_matrix/federation/v1/publicRooms`; a GET, or a POST when the client filters —
 * MSC2197 — falling back to a GET filtered here when the server does not know the POST, as
 * Synapse does). Unfiltered answers are kept per process for CACHE_MS (clients page through a
 * directory and ask again on every keystroke of a search box; Synapse caches them for as long).
 * Failures are the Matrix errors Synapse gives: the server refusing us (403) is 403
 * M_FORBIDDEN; anything else — unreachable, slow, an error, a malformed answer — is 502 M_UNKNOWN.
 */
import { MatrixError } from '../../http/errors';
import { isJsonObject, type JsonObject, type JsonValue } from '../../protocol/json';
import type { FederationClient } from '../../federation/client';
import { FederationError, FederationRemoteError } from '../../federation/errors';
import type { RemotePublicRoomsRequest } from '../context';
import { matchesSearch, type RoomSummary } from '../client/directory';

export const CACHE_MS = 30_000;
/** Asked with a client waiting (its request must be answered within requestDeadlineMs). */
export const TIMEOUT_MS = 10_000;
const MAX_ENTRIES = 1000;
const MAX_ANSWER_BYTES = 8 * 1024 * 1024;

export class RemotePublicRooms {
  private readonly cache = new Map<string, { at: number; value: Promise<JsonObject> }>();

  constructor(
    private readonly client: FederationClient,
    private readonly now: () => number = Date.now,
  ) {}

  async publicRooms(server: string, r: RemotePublicRoomsRequest): Promise<JsonObject> {
    if (r.filter && hasFilter(r.filter)) {
      try {
        return await this.ask(server, r, 'POST');
      } catch (e) {
        // A server without MSC2197 says so with 404/405 or M_UNRECOGNIZED: ask for the whole
        // list and filter it here (no pagination then, as Synapse).
        if (!(e instanceof FederationRemoteError) || !(e.status === 404 || e.status === 405 || e.errcode === 'M_UNRECOGNIZED' || e.errcode === 'M_NOT_FOUND')) throw asMatrixError(server, e);
      }
      const all = await this.cached(server, { includeAllNetworks: r.includeAllNetworks, ...(r.thirdPartyInstanceId !== undefined ? { thirdPartyInstanceId: r.thirdPartyInstanceId } : {}) });
      const chunk = (all.chunk as JsonValue[]).filter((e) => isJsonObject(e) && matchesFilter(e, r.filter!));
      return { chunk, total_room_count_estimate: chunk.length };
    }
    return this.cached(server, r);
  }

  private cached(server: string, r: RemotePublicRoomsRequest): Promise<JsonObject> {
    const key = JSON.stringify([server, r.limit ?? null, r.since ?? null, r.includeAllNetworks, r.thirdPartyInstanceId ?? null]);
    const hit = this.cache.get(key);
    if (hit && this.now() - hit.at < CACHE_MS) return hit.value;
    const value = this.ask(server, r, 'GET').catch((e: unknown) => {
      throw asMatrixError(server, e);
    });
    if (this.cache.size >= MAX_ENTRIES) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(key, { at: this.now(), value });
    // Only answers are kept: a failure is asked again next time.
    value.catch(() => {
      if (this.cache.get(key)?.value === value) this.cache.delete(key);
    });
    return value;
  }

  private async ask(server: string, r: RemotePublicRoomsRequest, method: 'GET' | 'POST'): Promise<JsonObject> {
    const path = '/_matrix/federation/v1/publicRooms';
    const opts = { timeoutMs: TIMEOUT_MS, maxResponseBytes: MAX_ANSWER_BYTES };
    let answer: JsonValue;
    if (method === 'POST') {
      const body: JsonObject = { include_all_networks: r.includeAllNetworks, filter: r.filter! };
      if (r.limit) body.limit = r.limit;
      if (r.since) body.since = r.since;
      if (r.thirdPartyInstanceId !== undefined) body.third_party_instance_id = r.thirdPartyInstanceId;
      answer = await this.client.post<JsonValue>(server, path, body, opts);
    } else {
      const q = new URLSearchParams({ include_all_networks: String(r.includeAllNetworks) });
      if (r.thirdPartyInstanceId !== undefined) q.set('third_party_instance_id', r.thirdPartyInstanceId);
      if (r.limit) q.set('limit', String(r.limit));
      if (r.since) q.set('since', r.since);
      answer = await this.client.get<JsonValue>(server, `${path}?${q.toString()}`, opts);
    }
    return checkedAnswer(server, answer);
  }
}

function hasFilter(filter: JsonObject): boolean {
  const term = filter.generic_search_term;
  return (typeof term === 'string' && term.trim() !== '') || Array.isArray(filter.room_types);
}

/** The client's filter applied to one entry of another server's list (the fallback). */
function matchesFilter(entry: JsonObject, filter: JsonObject): boolean {
  const term = filter.generic_search_term;
  if (typeof term === 'string' && term.trim() !== '' && !matchesSearch(entry as unknown as RoomSummary, term.trim())) return false;
  const types = filter.room_types;
  if (Array.isArray(types)) {
    const type = typeof entry.room_type === 'string' ? entry.room_type : null;
    if (!types.includes(type)) return false;
  }
  return true;
}

/** The answer's shape as the spec gives it: a `chunk` of entries that name a room; the rest passes through. */
function checkedAnswer(server: string, answer: JsonValue): JsonObject {
  if (!isJsonObject(answer) || !Array.isArray(answer.chunk)) throw new FederationBadAnswer(server, 'an answer without a chunk list');
  const chunk = answer.chunk.filter((e) => isJsonObject(e) && typeof e.room_id === 'string' && typeof e.num_joined_members === 'number');
  const out: JsonObject = { chunk };
  for (const k of ['next_batch', 'prev_batch'] as const) if (typeof answer[k] === 'string') out[k] = answer[k];
  if (typeof answer.total_room_count_estimate === 'number') out.total_room_count_estimate = answer.total_room_count_estimate;
  return out;
}

class FederationBadAnswer extends FederationError {}

function asMatrixError(server: string, e: unknown): unknown {
  if (e instanceof MatrixError) return e;
  if (e instanceof FederationRemoteError && e.status === 403) return new MatrixError(403, 'M_FORBIDDEN', `You are not allowed to view the public rooms list of ${server}`);
  if (e instanceof FederationError) return new MatrixError(502, 'M_UNKNOWN', `Failed to fetch the room list of ${server}: ${e.message}`);
  return e;
}
