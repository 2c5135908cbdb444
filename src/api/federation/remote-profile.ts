/**
 * Profiles of users on other servers, for the client API's `GET /profile/{userId}`: asked of
 * the user's server (`/_matrix/federation/v1/query/profile`) and kept per process for
 * CACHE_MS (a client showing a member list asks for the same profile many times in a row;
 * Synapse caches remote profiles too). Failures become the Matrix errors clients expect: the
 * remote server's own 4xx answer passes through; unreachable or misbehaving servers give 502.
 */
import { MatrixError } from '../../http/errors';
import type { JsonValue } from '../../protocol/json';
import { isJsonObject } from '../../protocol/json';
import { serverOf } from '../../protocol/identifiers';
import type { FederationClient } from '../../federation/client';
import { FederationError, FederationRemoteError, FederationTimeoutError } from '../../federation/errors';

export const CACHE_MS = 60_000;
const MAX_ENTRIES = 10_000;
const MAX_PROFILE_BYTES = 64 * 1024;

export class RemoteProfiles {
  private readonly cache = new Map<string, { at: number; value: Promise<Record<string, JsonValue>> }>();

  constructor(
    private readonly client: FederationClient,
    private readonly now: () => number = Date.now,
  ) {}

  remoteProfile(userId: string): Promise<Record<string, JsonValue>> {
    const hit = this.cache.get(userId);
    if (hit && this.now() - hit.at < CACHE_MS) return hit.value;
    const value = this.fetch(userId);
    if (this.cache.size >= MAX_ENTRIES) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(userId, { at: this.now(), value });
    // Only answers are cached: a failure is asked again next time.
    value.catch(() => {
      if (this.cache.get(userId)?.value === value) this.cache.delete(userId);
    });
    return value;
  }

  private async fetch(userId: string): Promise<Record<string, JsonValue>> {
    const server = serverOf(userId)!;
    try {
      const answer = await this.client.get<JsonValue>(server, `/_matrix/federation/v1/query/profile?user_id=${encodeURIComponent(userId)}`, { maxResponseBytes: MAX_PROFILE_BYTES, timeoutMs: 10_000 });
      if (!isJsonObject(answer)) throw new MatrixError(502, 'M_UNKNOWN', `${server} answered the profile query with something that is not an object`);
      return answer as Record<string, JsonValue>;
    } catch (e) {
      if (e instanceof FederationRemoteError && e.status >= 400 && e.status < 500 && e.errcode) {
        throw new MatrixError(e.status === 401 || e.status === 403 ? 502 : e.status, e.errcode, e.remoteMessage ?? `${server} refused the profile query`);
      }
      if (e instanceof FederationTimeoutError) throw new MatrixError(504, 'M_UNKNOWN', `${server} did not answer the profile query in time`);
      if (e instanceof FederationError) throw new MatrixError(502, 'M_UNKNOWN', `Could not get the profile from ${server}: ${e.message}`);
      throw e;
    }
  }
}
