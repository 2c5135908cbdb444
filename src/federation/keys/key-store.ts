/**
 * Other servers' signing keys: fetched directly (`GET /_matrix/key/v2/server` on the server) or
 * through the configured notaries (`POST /_matrix/key/v2/query`, tried first when configured),
 * checked with the protocol library, and cached in Redis so every process shares one copy
 * (KeySpace.remoteServerKeys). A cached key is used while its validity (the lesser of
 * `valid_until_ts` and 7 days after the fetch) covers the time asked about; keys from
 * `old_verify_keys` and keys a server stopped listing stay cached with their validity, for old
 * events. Concurrent look-ups of one server in a process share one fetch; a failed fetch is
 * remembered in Redis for FAILURE_CACHE_MS (all processes), and a server is not fetched again
 * within MIN_REFETCH_MS of a good fetch (a peer naming random key ids cannot make us hammer it).
 */
import type { Logger } from 'pino';
import type { TrustedKeyServer } from '../../../cluster.config';
import { decodeBase64 } from '../../protocol/base64';
import { canonicalJson, type JsonObject } from '../../protocol/json';
import type { OriginVerifyKey, RequestKeyLookup } from '../../protocol/server-auth';
import {
  checkNotaryKeysResponse,
  knownKeysFromDocument,
  notaryShouldRefetch,
  verifyServerKeys,
  type KnownVerifyKey,
  type ServerKeys,
} from '../../protocol/server-keys';
import type { KeySpace } from '../../store/keys';
import type { RedisClient } from '../../store/redis';
import type { FederationClient } from '../client';
import type { OwnKeyDocument } from './own-keys';

export const FAILURE_CACHE_MS = 30_000;
export const MIN_REFETCH_MS = 30_000;
const RETAIN_MS = 30 * 24 * 3600_000;
/** Key documents are small; a big answer is not one. */
const MAX_KEY_RESPONSE_BYTES = 512 * 1024;

export interface CachedServerKeys {
  keys: Map<string, KnownVerifyKey>;
  /** The last verified document as canonical JSON, with when we fetched it. */
  document?: { json: string; fetchedAtMs: number; validUntilTs: number };
}

export class ServerKeyStore {
  private readonly inFlight = new Map<string, Promise<ServerKeys | null>>();

  constructor(
    private readonly opts: {
      redis: RedisClient;
      keys: KeySpace;
      client: FederationClient;
      own: OwnKeyDocument;
      trustedKeyServers: readonly TrustedKeyServer[];
      log: Logger;
      now?: () => number;
    },
  ) {}

  private now(): number {
    return this.opts.now?.() ?? Date.now();
  }

  /** For verifyRequest: `origin`'s key `keyId`, valid at `minimumValidUntilTs`, fetched if needed. */
  readonly lookupForRequest: RequestKeyLookup = async (origin, keyId, minimumValidUntilTs) => {
    const keys = await this.verifyKeys(origin, minimumValidUntilTs, keyId);
    return keys.get(keyId) as OriginVerifyKey | undefined;
  };

  /**
   * The keys known for `serverName`, fetching them first when `keyId` (or, without one, any
   * current key) is missing or not valid at `minimumValidUntilTs`.
   */
  async verifyKeys(serverName: string, minimumValidUntilTs = this.now(), keyId?: string): Promise<Map<string, KnownVerifyKey>> {
    if (serverName === this.opts.own.serverName) return this.ownKeys();
    let cached = await this.cached(serverName);
    const usable = (c: CachedServerKeys) => {
      if (keyId !== undefined) {
        const k = c.keys.get(keyId);
        return k !== undefined && (k.expiredTs !== undefined || k.validUntilTs >= minimumValidUntilTs);
      }
      return [...c.keys.values()].some((k) => k.expiredTs === undefined && k.validUntilTs >= minimumValidUntilTs);
    };
    if (usable(cached)) return cached.keys;
    if (cached.document && this.now() - cached.document.fetchedAtMs < MIN_REFETCH_MS) return cached.keys;
    const fetched = await this.fetchCoalesced(serverName);
    if (fetched) cached = await this.cached(serverName);
    return cached.keys;
  }

  /**
   * For our notary endpoints: `serverName`'s key document (canonical JSON), fetched directly
   * when we have none or ours is due (notaryShouldRefetch); if that fetch fails, the copy we have.
   */
  async documentForNotary(serverName: string, minimumValidUntilTs: number | undefined): Promise<JsonObject | undefined> {
    if (serverName === this.opts.own.serverName) return this.opts.own.current().document;
    let cached = await this.cached(serverName);
    const due = !cached.document || notaryShouldRefetch(cached.document, minimumValidUntilTs, this.now());
    if (due && !(cached.document && this.now() - cached.document.fetchedAtMs < MIN_REFETCH_MS)) {
      if (await this.fetchCoalesced(serverName, true)) cached = await this.cached(serverName);
    }
    return cached.document ? (JSON.parse(cached.document.json) as JsonObject) : undefined;
  }

  /** What Redis holds for a server. */
  async cached(serverName: string): Promise<CachedServerKeys> {
    const raw = await this.opts.redis.hgetall(this.opts.keys.remoteServerKeys(serverName));
    const keys = new Map<string, KnownVerifyKey>();
    for (const [field, value] of Object.entries(raw)) {
      if (!field.startsWith('k:')) continue;
      try {
        keys.set(field.slice(2), JSON.parse(value) as KnownVerifyKey);
      } catch {
        // not ours: ignored
      }
    }
    const document = raw.doc ? { json: raw.doc, fetchedAtMs: Number(raw.fetchedAt), validUntilTs: Number(raw.validUntil) } : undefined;
    return { keys, document };
  }

  private ownKeys(): Map<string, KnownVerifyKey> {
    const { document } = this.opts.own.current();
    const check = verifyServerKeys(document, this.opts.own.serverName);
    return check.ok ? knownKeysFromDocument(check.keys, this.now()) : new Map();
  }

  /** One fetch per server at a time in this process; null when it failed (or failed recently). */
  private fetchCoalesced(serverName: string, directOnly = false): Promise<ServerKeys | null> {
    const key = `${directOnly ? 'd' : 'a'}:${serverName}`;
    let p = this.inFlight.get(key);
    if (!p) {
      p = this.fetchAndStore(serverName, directOnly).finally(() => this.inFlight.delete(key));
      this.inFlight.set(key, p);
    }
    return p;
  }

  private async fetchAndStore(serverName: string, directOnly: boolean): Promise<ServerKeys | null> {
    const { redis, keys, log } = this.opts;
    const failed = await redis.get(keys.remoteServerKeysFailure(serverName));
    if (failed !== null) return null;
    const started = performance.now();
    const errors: string[] = [];
    let got: ServerKeys | null = null;
    let via = 'direct';
    if (!directOnly) {
      for (const notary of this.opts.trustedKeyServers) {
        try {
          got = await this.fetchFromNotary(serverName, notary);
          if (got) {
            via = notary.serverName;
            break;
          }
          errors.push(`${notary.serverName}: no acceptable document`);
        } catch (e) {
          errors.push(`${notary.serverName}: ${(e as Error).message}`);
        }
      }
    }
    if (!got) {
      try {
        const doc = await this.opts.client.get(serverName, '/_matrix/key/v2/server', { sign: false, maxResponseBytes: MAX_KEY_RESPONSE_BYTES });
        const check = verifyServerKeys(doc, serverName);
        if (check.ok) got = check.keys;
        else errors.push(`direct: ${check.error}`);
      } catch (e) {
        errors.push(`direct: ${(e as Error).message}`);
      }
    }
    const ms = Math.round(performance.now() - started);
    if (!got) {
      log.warn({ destination: serverName, ms, errors }, 'could not fetch server keys');
      await redis.set(keys.remoteServerKeysFailure(serverName), errors.join('; ').slice(0, 1000), 'PX', FAILURE_CACHE_MS);
      return null;
    }
    await this.store(got);
    log.info({ destination: serverName, via, ms, key_ids: [...got.verifyKeys.keys()] }, 'fetched server keys');
    return got;
  }

  private async fetchFromNotary(serverName: string, notary: TrustedKeyServer): Promise<ServerKeys | null> {
    const answer = await this.opts.client.post(notary.serverName, '/_matrix/key/v2/query', { server_keys: { [serverName]: {} } }, { maxResponseBytes: MAX_KEY_RESPONSE_BYTES });
    const notaryKeys = new Map(Object.entries(notary.verifyKeys).map(([id, k]) => [id, decodeBase64(k)]));
    const check = checkNotaryKeysResponse(answer, notary.serverName, notaryKeys, [serverName]);
    if (check.rejected.length) this.opts.log.warn({ destination: notary.serverName, rejected: check.rejected }, 'notary answer entries rejected');
    // The newest document the notary vouched for.
    return check.accepted.sort((a, b) => b.validUntilTs - a.validUntilTs)[0] ?? null;
  }

  private async store(got: ServerKeys): Promise<void> {
    const now = this.now();
    const fields: Record<string, string> = {
      doc: canonicalJson(got.document),
      fetchedAt: String(now),
      validUntil: String(got.validUntilTs),
    };
    for (const [keyId, key] of knownKeysFromDocument(got, now)) fields[`k:${keyId}`] = JSON.stringify(key);
    const hash = this.opts.keys.remoteServerKeys(got.serverName);
    await this.opts.redis.multi().hset(hash, fields).pexpire(hash, RETAIN_MS).exec();
  }
}
