/**
 * Server discovery (server-server API, "Resolving server names"), the I/O half: a loop that asks
 * the pure `nextDiscoveryStep` (src/protocol/server-names.ts) what to look up, looks it up, and
 * records the answer, until it says where to connect.
 *
 * The `.well-known` results are cached per process, not in Redis: the answer is small and cheap
 * to fetch again, each front fetching it once a day per peer is nothing, and a per-process cache
 * needs no serialisation or Redis round trip on the hot path of every outbound request. Cached
 * failures follow the protocol module's rules (an hour for a server with no valid answer, two
 * minutes for one that had one recently). Concurrent resolutions of one host share one fetch.
 * SRV answers are cached per process for SRV_CACHE_MS (node's resolver does not give TTLs).
 */
import { promises as dns } from 'node:dns';
import type { Logger } from 'pino';
import {
  nextDiscoveryStep,
  wellKnownCacheState,
  wellKnownFromAnswer,
  wellKnownFromFailure,
  type ConnectionTarget,
  type DiscoveryFacts,
  type SrvRecord,
  type WellKnownCacheEntry,
  type WellKnownHttpAnswer,
} from '../protocol/server-names';
import { FederationDiscoveryError } from './errors';

/** Fetches `https://<hostname>/.well-known/matrix/server` (redirects followed); throws on no HTTP answer. */
export type WellKnownFetcher = (hostname: string) => Promise<WellKnownHttpAnswer>;
export type SrvResolver = (recordName: string) => Promise<SrvRecord[]>;

export const SRV_CACHE_MS = 10 * 60_000;
/** More steps than the spec has: a bug in the step function, not a server to chase forever. */
const MAX_STEPS = 8;

export interface ResolvedServer {
  targets: ConnectionTarget[];
  delegatedServerName: string | undefined;
}

/** node:dns SRV look-up; "no such record" is an empty answer, not an error. */
export const systemSrvResolver: SrvResolver = async (recordName) => {
  try {
    return await dns.resolveSrv(recordName);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENODATA' || code === 'ENOTFOUND' || code === 'ESERVFAIL' || code === 'ENONAME' || code === 'NXDOMAIN') return [];
    throw e;
  }
};

export class Discovery {
  private readonly wellKnown = new Map<string, WellKnownCacheEntry>();
  private readonly wellKnownInFlight = new Map<string, Promise<WellKnownCacheEntry>>();
  private readonly srv = new Map<string, { records: SrvRecord[]; expiresAtMs: number }>();

  constructor(
    private readonly opts: {
      fetchWellKnown: WellKnownFetcher;
      resolveSrv?: SrvResolver;
      log?: Logger;
      now?: () => number;
    },
  ) {}

  private now(): number {
    return this.opts.now?.() ?? Date.now();
  }

  /** Where to connect to reach `serverName`, in the order to try. */
  async resolve(serverName: string): Promise<ResolvedServer> {
    const facts: { wellKnown?: DiscoveryFacts['wellKnown']; srv: Record<string, SrvRecord[]> } = { srv: {} };
    for (let i = 0; i < MAX_STEPS; i++) {
      const step = nextDiscoveryStep(serverName, facts);
      switch (step.action) {
        case 'connect':
          return { targets: step.targets, delegatedServerName: step.delegatedServerName };
        case 'fail':
          throw new FederationDiscoveryError(serverName, step.error);
        case 'fetch-well-known': {
          const entry = await this.wellKnownFor(step.hostname);
          facts.wellKnown = { delegatedServerName: entry.delegatedServerName };
          break;
        }
        case 'lookup-srv':
          facts.srv[step.recordName] = await this.srvFor(step.recordName);
          break;
      }
    }
    throw new FederationDiscoveryError(serverName, 'discovery did not settle');
  }

  /** The cached `.well-known` outcome for a hostname, fetched when missing or due. */
  async wellKnownFor(hostname: string): Promise<WellKnownCacheEntry> {
    const now = this.now();
    let cached = this.wellKnown.get(hostname);
    if (cached && now >= cached.retainUntilMs) {
      this.wellKnown.delete(hostname);
      cached = undefined;
    }
    const state = cached ? wellKnownCacheState(cached, now) : 'expired';
    if (cached && state === 'fresh') return cached;
    let inFlight = this.wellKnownInFlight.get(hostname);
    if (!inFlight) {
      inFlight = this.fetchWellKnown(hostname, cached).finally(() => this.wellKnownInFlight.delete(hostname));
      this.wellKnownInFlight.set(hostname, inFlight);
    }
    // In its grace period the cached answer is used while the refresh runs.
    if (cached && state === 'refresh') {
      inFlight.catch(() => undefined);
      return cached;
    }
    return inFlight;
  }

  private async fetchWellKnown(hostname: string, previous: WellKnownCacheEntry | undefined): Promise<WellKnownCacheEntry> {
    let entry: WellKnownCacheEntry;
    try {
      const answer = await this.opts.fetchWellKnown(hostname);
      entry = wellKnownFromAnswer(answer, previous, this.now());
    } catch (e) {
      entry = wellKnownFromFailure('temporary', (e as Error).message, previous, this.now());
    }
    if (entry.error) this.opts.log?.debug({ destination: hostname, error: entry.error, cache_ms: entry.ttlMs }, 'no .well-known delegation');
    this.wellKnown.set(hostname, entry);
    return entry;
  }

  private async srvFor(recordName: string): Promise<SrvRecord[]> {
    const cached = this.srv.get(recordName);
    if (cached && this.now() < cached.expiresAtMs) return cached.records;
    let records: SrvRecord[];
    try {
      records = await (this.opts.resolveSrv ?? systemSrvResolver)(recordName);
    } catch (e) {
      // A DNS failure other than "no record": go on as if there were none (the next step is A/AAAA).
      this.opts.log?.debug({ record: recordName, err: e }, 'SRV look-up failed');
      records = [];
    }
    this.srv.set(recordName, { records, expiresAtMs: this.now() + SRV_CACHE_MS });
    return records;
  }
}
