/**
 * A front: the uWS HTTP server with every route, plus the ActorClient it uses to reach actors.
 * Several front processes can serve one port (uWS listens with SO_REUSEPORT on Linux; the kernel
 * spreads connections between them).
 *
 * Redis stalls fail fast instead of hanging requests: the command connection given here should
 * have a command timeout (`frontRedisOptions`); a PING loop (RedisHealth) tells the Front when
 * Redis is unreachable, so requests that need it answer 503 with `Retry-After` at once; every
 * request has a deadline (`requestDeadlineMs`); `GET /health` says whether this front can serve.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { AxonConfig } from '../cluster.config';
import { ActorClient, ActorTimeoutError } from './runtime/actor-client';
import { shardCountsFor } from './runtime/cluster-settings';
import { startFrontHeartbeat } from './runtime/front-heartbeat';
import { Front } from './http/server';
import { MatrixError, UNAVAILABLE_RETRY_AFTER_S, errors } from './http/errors';
import { RateLimiter } from './http/rate-limit';
import { registerClientApi } from './api/client/index';
import type { ApiContext } from './api/context';
import { RoomReader } from './store/room-reader';
import { registerKeyRoutes } from './api/federation/keys';
import { registerFederationApi, registerWellKnownServer } from './api/federation/index';
import type { FederationContext } from './api/federation/context';
import { RemoteProfiles } from './api/federation/remote-profile';
import { RemotePublicRooms } from './api/federation/remote-public-rooms';
import { RemoteHierarchies } from './api/federation/remote-hierarchy';
import { FederationClient } from './federation/client';
import { ServerKeyStore } from './federation/keys/key-store';
import { OwnKeyDocument } from './federation/keys/own-keys';
import { ensureSelfSignedCertificate } from './federation/tls';
import { PartialStateResyncer } from './rooms/partial-state';
import { MembershipIndex } from './readers/membership-index';
import { federationIpBlocklist } from './protocol/ip-ranges';
import type { SigningKey } from './protocol/crypto';
import { KeySpace } from './store/keys';
import { isRedisUnavailableError, type RedisClient } from './store/redis';
import { RedisHealth } from './store/redis-health';
import { watchConnections } from './store/redis-watchdog';
import { createMediaStore } from './media/create-store';
import { MediaRepository } from './media/repository';
import { RemoteMediaFetcher } from './media/remote';
import { LocalMediaStore } from './media/local-store';
import { MediaJobQueue } from './media/jobs';
import { MediaPreviews } from './media/preview-service';
import { MediaThumbnails } from './media/thumbnail-service';
import { Thumbnailer } from './media/thumbnails';
import { AppserviceRegistry } from './appservice/registration';
import { AppserviceQueries } from './appservice/queries';

export interface RunningFront {
  port: number;
  /** The federation listener's port (TLS), when federation is on. */
  federationPort?: number;
  actors: ActorClient;
  /** Redis reachability as this front sees it. */
  health: RedisHealth;
  close(): Promise<void>;
}

/** A failure that is not a MatrixError, as the Matrix error the client gets (null: a bug, 500). */
export function infrastructureError(e: unknown): MatrixError | null {
  if (isRedisUnavailableError(e)) return errors.unavailable('The server could not reach its database in time; try again');
  // Handlers turn their own actor timeouts into 504s with a message that names the service; this
  // covers the rest.
  if (e instanceof ActorTimeoutError) return new MatrixError(504, 'M_UNKNOWN', 'The server did not answer in time; retry the request');
  return null;
}

export async function startFront(config: AxonConfig, redis: RedisClient, keys: SigningKey[], log: Logger, frontId?: string): Promise<RunningFront> {
  const keySpace = new KeySpace(config.redis.keyPrefix);
  const shardCounts = shardCountsFor(config);
  const health = new RedisHealth(redis, { timeoutMs: config.redis.pingTimeoutMs, log });
  // A command connection left silent by a healed partition (TCP backoff) is replaced after twice
  // the PING timeout instead of answering 503 until TCP retries (src/store/redis-watchdog.ts).
  const stopWatchdog = watchConnections(redis, { stallMs: 2 * config.redis.pingTimeoutMs, log });
  await health.start();
  if (!health.ready) {
    // As before there were command timeouts: a front started while Redis does not answer waits for it.
    log.warn('waiting for Redis to answer before serving');
    await new Promise<void>((resolve) => {
      const off = health.onChange((ready) => {
        if (!ready) return;
        off();
        resolve();
      });
    });
  }
  const id = frontId ?? `f-${randomBytes(6).toString('hex')}`;
  // The enqueues (/send's write path) on a connection of their own, watched like the command one.
  const actors = new ActorClient(redis, keySpace, shardCounts, id, { ownWriteConnection: true });
  await actors.start();
  const stopWriteWatchdog = watchConnections(actors.writeConnection, { stallMs: 2 * config.redis.pingTimeoutMs, log });
  let closing = false;
  const front = new Front({
    host: config.bindHost,
    port: config.clientPort,
    logger: log,
    requestDeadlineMs: config.requestDeadlineMs,
    storeReady: () => health.ready,
    mapError: infrastructureError,
  });
  // Checked by loadConfig already; a config built in code (tests) is checked here.
  const appservices = AppserviceRegistry.load(config.appservices.configFiles, config.serverName);
  // Appservice senders, and the exclusive users of an appservice registered with
  // `rate_limited: false`, skip the per-user buckets (as Synapse exempts senders and the requests
  // of such an appservice), except the failed-password one: that guards accounts, not load.
  const unlimited = appservices.all().filter((as) => !as.rateLimited);
  const rateExempt = appservices.size ? (limit: string, key: string) => limit !== 'failedLogin' && key.startsWith('@') && (appservices.findBySender(key) !== undefined || unlimited.some((as) => as.isExclusiveUser(key))) : undefined;
  const ctx: ApiContext = { config, redis, keys: keySpace, shardCounts, actors, rooms: new RoomReader(redis, keySpace, shardCounts.room, { stateCacheBytes: config.caches.stateBytes, recentEventsBytes: config.caches.recentEventsBytes, parsedEventsBytes: config.caches.eventsBytes }), signingKey: keys[0]!, log, limiter: new RateLimiter({ login: config.rateLimit.login, failedLogin: config.rateLimit.failedLogin, register: config.rateLimit.register, client: config.rateLimit.client, mediaUpload: config.rateLimit.mediaUpload, urlPreview: config.rateLimit.urlPreview, delayedEventMgmt: config.rateLimit.delayedEventMgmt }, config.rateLimit.enabled, { redis, keys: keySpace, log }, rateExempt), closers: [], storeReady: () => health.ready };
  ctx.appservices = { registry: appservices, queries: new AppserviceQueries(appservices, { timeoutMs: config.appservices.queryTimeoutMs, log: log.child({ component: 'appservice' }) }) };
  if (appservices.size) log.info({ appservices: appservices.all().map((as) => as.id) }, 'application services registered');
  const mediaStore = await createMediaStore(config);
  // Temp files of uploads cut off by a process that died (older than an hour: not in progress).
  if (mediaStore instanceof LocalMediaStore) void mediaStore.sweepTemp().then((n) => n && log.info({ removed: n }, 'media: removed temp files of interrupted uploads'), (err) => log.warn({ err }, 'media: temp sweep failed'));
  const mediaLog = log.child({ component: 'media' });
  const mediaRepo = new MediaRepository({ store: mediaStore, actors, redis, keys: keySpace, shardCounts, serverName: config.serverName, config: config.media, log: mediaLog });
  const mediaJobs = new MediaJobQueue(config, mediaLog);
  ctx.media = {
    repository: mediaRepo,
    ...(config.media.thumbnails.enabled ? { thumbnailer: new MediaThumbnails(mediaRepo, new Thumbnailer({ maxPixels: config.media.thumbnails.maxPixels, maxConcurrent: config.media.thumbnails.maxConcurrent }), mediaLog) } : {}),
    ...(config.media.urlPreviews.enabled ? { previewer: new MediaPreviews({ config, repo: mediaRepo, redis, keys: keySpace, log: mediaLog, rateLimit: (userId) => ctx.limiter?.check('urlPreview', userId) ?? Promise.resolve() }) } : {}),
    afterUpload: (mediaId, contentType) => mediaJobs.afterUpload(mediaId, contentType),
  };
  // GET /health (as Synapse serves it, text/plain): 200 `OK` when this front reaches Redis and
  // serves; 503 otherwise, so a load balancer takes it out of rotation.
  front.route('GET', '/health', () => {
    if (closing) return { status: 503, text: 'Shutting down' };
    if (!health.ready) return { status: 503, text: 'Redis unreachable', headers: { 'Retry-After': String(UNAVAILABLE_RETRY_AFTER_S) } };
    return { status: 200, text: 'OK' };
  }, { needsStore: false });
  registerClientApi(front, ctx);
  const own = new OwnKeyDocument(config.serverName, keys, config.keyValidityMs);
  // The key document on the client port too (as before federation had its own listener).
  registerKeyRoutes(front, own);
  registerWellKnownServer(front, config.federation.wellKnownServer);
  const federation = config.federation.enabled ? startFederation(config, ctx, own, log, health) : null;
  if (federation) mirrorFederationPaths(front, federation.front);
  const port = await front.listen();
  const federationPort = federation ? await federation.front.listen() : undefined;
  if (federation) log.info({ port: federationPort, server_name: config.serverName }, 'federation listening (TLS)');
  const heartbeat = startFrontHeartbeat(redis, keySpace, id, port, { ready: () => health.ready && !closing, pingMs: () => health.rttMs, inFlight: () => front.inFlight });
  return {
    port,
    federationPort,
    actors,
    health,
    async close() {
      closing = true;
      // Requests in flight are answered first (drain), then the actor client lets go.
      await Promise.all([front.drain(), federation?.front.drain()]);
      federation?.client.close();
      for (const c of ctx.closers ?? []) c();
      mediaStore.close?.();
      await mediaJobs.close();
      await actors.close();
      await heartbeat.stop();
      health.stop();
      stopWatchdog();
      stopWriteWatchdog();
    },
  };
}

/**
 * The federation API's paths on the client port, answering 404 M_UNRECOGNIZED there (they are
 * served on the federation listener), so that a known path called with the wrong method is
 * 405 M_UNRECOGNIZED on the client port too, as for client paths and as Synapse answers.
 */
function mirrorFederationPaths(client: Front, federation: Front): void {
  const known = new Set(client.routePatterns().map((r) => `${r.method} ${r.pattern}`));
  const elsewhere = () => {
    throw errors.unrecognized('This federation path is served on the federation port');
  };
  for (const { method, pattern } of federation.routePatterns()) {
    if (pattern === '/health' || known.has(`${method} ${pattern}`)) continue;
    client.route(method, pattern, elsewhere, { needsStore: false });
  }
}

/** The body limit of the federation listener: a `/send` of 50 PDUs of 64 KiB plus 100 EDUs. */
export const FEDERATION_MAX_BODY_BYTES = 4 * 1024 * 1024 + 512 * 1024;

/**
 * The federation side of a front: the outbound client, the key cache, and a second Front on the
 * federation port over TLS (a configured certificate, or a self-signed one under dataDir).
 */
function startFederation(config: AxonConfig, ctx: ApiContext, own: OwnKeyDocument, log: Logger, health: RedisHealth): { front: Front; client: FederationClient } {
  const f = config.federation;
  const tls = f.tlsCertPath ? { certPath: f.tlsCertPath, keyPath: f.tlsKeyPath } : ensureSelfSignedCertificate(config.dataDir, config.serverName);
  const client = new FederationClient({
    serverName: config.serverName,
    signingKey: own.keys[0]!,
    caPaths: f.caPaths,
    verifyTls: f.verifyTls,
    blocklist: federationIpBlocklist(f.ipRangeBlocklist),
    log: log.child({ component: 'federation-client' }),
  });
  const keyStore = new ServerKeyStore({ redis: ctx.redis, keys: ctx.keys, client, own, trustedKeyServers: f.trustedKeyServers, log });
  const profiles = new RemoteProfiles(client);
  const directories = new RemotePublicRooms(client);
  const hierarchies = new RemoteHierarchies(client, log.child({ component: 'remote-hierarchy' }));
  ctx.federation = {
    remoteProfile: (userId) => profiles.remoteProfile(userId),
    publicRooms: (server, request) => directories.publicRooms(server, request),
    hierarchy: (roomId, via, suggestedOnly) => hierarchies.hierarchy(roomId, via, suggestedOnly),
    client,
    keyStore,
  };
  // Faster joins: rooms joined with partial state get their full state in the background; those
  // left partial by a front that stopped are taken up again here.
  const resyncer = new PartialStateResyncer(ctx, { client, keyStore, index: new MembershipIndex(ctx.redis, ctx.keys, ctx.shardCounts.user), log: log.child({ component: 'partial-state' }) });
  ctx.federation.partialStates = resyncer;
  (ctx.closers ??= []).push(() => resyncer.stop());
  resyncer.resumeAll().catch((e: unknown) => log.warn({ err: e }, 'partial state: could not resume resyncs'));
  if (ctx.media) ctx.media.remote = new RemoteMediaFetcher(ctx.media.repository, client, log.child({ component: 'media-remote' }));
  const fctx: FederationContext = { config, own, keyStore, client, log, api: ctx };
  const front = new Front({
    host: config.bindHost,
    port: f.port,
    logger: log,
    tls,
    maxBodyBytes: FEDERATION_MAX_BODY_BYTES,
    metricsListener: 'federation',
    requestDeadlineMs: config.requestDeadlineMs,
    storeReady: () => health.ready,
    mapError: infrastructureError,
  });
  front.route('GET', '/health', () => (health.ready ? { status: 200, text: 'OK' } : { status: 503, text: 'Redis unreachable' }), { needsStore: false });
  registerFederationApi(front, fctx);
  return { front, client };
}
