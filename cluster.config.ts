/**
 * Axon's configuration: typed, with defaults that give a working dev server on localhost:8008,
 * overridable by a JSON file (`AXON_CONFIG=path`, or `axon.config.json` in the working directory)
 * and then by environment variables. `loadConfig()` validates everything at start and reports
 * one clear line per problem, so a bad deployment fails before it serves anything.
 */
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { ROOM_VERSIONS, SPEC_DEFAULT_ROOM_VERSION } from './src/protocol/room-versions';
import { DEFAULT_FEDERATION_IP_BLOCKLIST, parseCidr } from './src/protocol/ip-ranges';
import { isValidFederationServerName } from './src/protocol/server-names';
import { isValidKeyId } from './src/protocol/crypto';
import { checkAppserviceFiles } from './src/appservice/registration';

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface RedisConfig {
  /**
   * `managed`: Axon starts and stops its own redis-server (AOF on, fsync on every write) with
   * data under `dataDir/redis`. `url`: an external single Redis. `cluster`: a Redis Cluster.
   */
  mode: 'managed' | 'url' | 'cluster';
  url: string;
  clusterNodes: string[];
  /** Port the managed redis-server listens on (loopback only). */
  managedPort: number;
  /** Prefix for every key, so several servers (or tests) can share one Redis. */
  keyPrefix: string;
  /**
   * A front's Redis command not answered within this time (ms) fails, and its request answers
   * 503 (the command may still run once Redis answers again: clients retry with the same txn id).
   * A command may first wait for the auto-pipelined batch before it (one in flight at a time), so
   * in a stall it fails within about twice this. Not applied to blocking reads or subscriptions,
   * nor to workers, which wait a stall out.
   */
  commandTimeoutMs: number;
  /**
   * A front pings Redis every second; no answer within this time (ms) marks Redis unreachable:
   * `/health` answers 503 and requests fail at once (503) until a ping is answered again.
   */
  pingTimeoutMs: number;
  /**
   * Replicas that must have a worker's commit before its reply goes out (Redis `WAIT` on the
   * shard's master). 0 (the default): a commit is acknowledged once its master has it (on disk
   * with the managed config) — on a Redis Cluster, a failover that promotes a replica the last
   * writes had not reached yet loses them, and a master cut off with its clients keeps
   * acknowledging writes for up to `cluster-node-timeout` that its promoted replica never gets.
   * 1: such writes are answered 504 (the client retries with its txn id) instead of being
   * acknowledged and then lost; each commit waits one replication round trip, and a shard whose
   * master has no reachable replica stops acknowledging until one is back (README, "Past one machine").
   */
  waitReplicas: number;
  /** How long a commit waits for `waitReplicas` replicas before its message is retried (ms). */
  waitTimeoutMs: number;
}

/** One token bucket: `burst` requests at once, refilled at `perMinute`. */
export interface RateLimitBucket {
  burst: number;
  perMinute: number;
}

export interface RegistrationConfig {
  /**
   * Whether `POST /register` creates accounts. `auto` (the default): open when the front binds a
   * loopback address (a dev server), closed otherwise — an internet-facing server must opt in.
   */
  enabled: boolean | 'auto';
  /**
   * Require the `m.login.registration_token` stage: with one of `tokens`, or one an admin made
   * (`/_synapse/admin/v1/registration_tokens`, with uses and expiry).
   */
  requiresToken: boolean;
  tokens: string[];
  /**
   * Secret for shared-secret admin registration (`/_synapse/admin/v1/register`, used by
   * `npm run register-user`). Empty: that API is off.
   */
  sharedSecret: string;
}

export interface RateLimitConfig {
  /** Off for benchmarks. */
  enabled: boolean;
  /** `POST /login`, per client IP. */
  login: RateLimitBucket;
  /**
   * Failed `POST /login` attempts, per account, from any address (Synapse's
   * `rc_login.failed_attempts`): an account whose bucket is empty gets 429 even with the right password.
   */
  failedLogin: RateLimitBucket;
  /** `POST /register` and `/register/available`, per client IP. */
  register: RateLimitBucket;
  /** Every authenticated request, per user. */
  client: RateLimitBucket;
  /**
   * Managing delayed events (MSC4140: cancel, restart, send, list), per user or, for the
   * unauthenticated management calls, per client IP (Synapse's rc_delayed_event_mgmt).
   */
  delayedEventMgmt: RateLimitBucket;
  /** Media uploads and `/media/v1/create`, per user (Synapse's rc_media_create). */
  mediaUpload: RateLimitBucket;
  /** `GET /_matrix/client/v1/media/preview_url`, per user (fetches the outside world for them). */
  urlPreview: RateLimitBucket;
}

/** A notary we ask for other servers' keys (`POST /_matrix/key/v2/query`), and the keys we know it by. */
export interface TrustedKeyServer {
  serverName: string;
  /** key id → unpadded base64 ed25519 public key. */
  verifyKeys: Record<string, string>;
}

export interface FederationConfig {
  /** Serve the Server-Server API (and call peers). */
  enabled: boolean;
  /** TLS port of the federation listener (binds `bindHost`). */
  port: number;
  /**
   * PEM certificate chain and key of the federation listener. Both empty: a self-signed pair is
   * made under `dataDir/federation-tls` on first start (fine for a dev server; peers that verify
   * certificates will refuse it).
   */
  tlsCertPath: string;
  tlsKeyPath: string;
  /** Extra CA certificates (PEM files) trusted for outbound TLS, on top of the system's roots. */
  caPaths: string[];
  /** Check peers' certificates (off only for experiments: anyone on the path could impersonate a peer). */
  verifyTls: boolean;
  /**
   * CIDR ranges outbound federation requests may not connect to, checked after DNS resolution
   * (Synapse's default list: loopback, RFC 1918, link-local, ULA...). Empty allows every address
   * (for tests on loopback); `0.0.0.0/8` and `::` are refused whatever this says.
   */
  ipRangeBlocklist: string[];
  /** Notaries asked for keys before the server itself; none by default. */
  trustedKeyServers: TrustedKeyServer[];
  /** `m.server` served at `/.well-known/matrix/server` (delegation); empty: not served (404). */
  wellKnownServer: string;
  /**
   * Join rooms of other servers with partial state (MSC3706 faster joins): send_join asks the
   * resident to omit the member events, our user can send at once, and the full state is fetched
   * in the background (src/rooms/partial-state.ts). False: every join waits for the full state.
   */
  fasterJoins: boolean;
  /** The outbound sender's destination actors (actors/destination.ts). */
  sender: FederationSenderConfig;
}

export interface FederationSenderConfig {
  /**
   * PDUs kept waiting per destination while it is down (beyond this the oldest are dropped: the
   * peer gets the newest events and fills the gap with its own get_missing_events).
   */
  catchUpLimit: number;
  /** First retry interval after a failed transaction (doubles with jitter after each failure). */
  backoffStartMs: number;
  /** Longest interval between retries. */
  backoffMaxMs: number;
}

/** The media repository (issue 15): where uploads go and what they may be. */
export interface MediaConfig {
  /** Backend of the bytes: `local` (files under `localPath`) or `s3` (an S3-compatible bucket). */
  store: 'local' | 's3';
  /** Directory of the local store; empty: `<dataDir>/media`. */
  localPath: string;
  /** Largest upload (bytes): larger ones answer 413 M_TOO_LARGE. Advertised as `m.upload.size`. */
  maxUploadBytes: number;
  /** Bytes a user may have uploaded in all (0: no quota). */
  userQuotaBytes: number;
  /**
   * Media uploaded before this time (ms since the epoch) stays downloadable on the legacy
   * unauthenticated `/_matrix/media/v3/download|thumbnail` paths; newer media answers 404 there
   * (the spec's freeze of unauthenticated media, v1.11). 0: nothing is served there.
   */
  legacyFreezeAt: number;
  /** `POST /_matrix/media/v1/create` reservations a user may hold unused at once (M_LIMIT_EXCEEDED beyond). */
  maxPendingUploads: number;
  /** How long a reserved media id waits for its upload before it expires (ms). */
  pendingUploadExpiryMs: number;
  /** Largest media fetched from another server (bytes); 0: `maxUploadBytes`. Larger ones answer 502 M_TOO_LARGE. */
  maxRemoteBytes: number;
  /** Longest a fetch of another server's media may take in all (ms): past it the download answers 504. */
  remoteFetchTimeoutMs: number;
  s3: {
    /** Empty: AWS's endpoint for `region`. */
    endpoint: string;
    bucket: string;
    region: string;
    accessKeyId: string;
    secretAccessKey: string;
    forcePathStyle: boolean;
    /** Prepended to every object key. */
    prefix: string;
  };
  /** Thumbnails (src/media/thumbnail-service.ts). */
  thumbnails: {
    /** Off: the thumbnail endpoints answer 501 and nothing is pre-generated. */
    enabled: boolean;
    /** Images with more pixels than this (all frames of an animation) are not decoded (Synapse's max_image_pixels). */
    maxPixels: number;
    /** Thumbnails computed at once per process (each takes a libuv thread). */
    maxConcurrent: number;
    /** Sizes pre-generated at upload (Synapse's thumbnail_sizes); empty: Synapse's defaults. */
    sizes: { width: number; height: number; method: 'crop' | 'scale' }[];
  };
  /** URL previews (src/media/preview-service.ts); off by default, as Synapse. */
  urlPreviews: {
    enabled: boolean;
    /** Addresses fetched even though `federation.ipRangeBlocklist` names them (Synapse's url_preview_ip_range_whitelist). */
    ipRangeAllowlist: string[];
    /** Largest page or image fetched (bytes). */
    maxBytes: number;
    /** Deadline of one fetch, redirects included (ms). */
    timeoutMs: number;
  };
  /** The retention job (src/media/jobs.ts). */
  retention: {
    /** Local media not downloaded (else uploaded) for this many days is deleted; 0: kept forever. */
    localMaxAgeDays: number;
    /** Other servers' media cached here and not accessed for this many days is deleted; 0: kept. */
    remoteMaxAgeDays: number;
    /** How often the job runs (ms). */
    intervalMs: number;
  };
}

export interface AxonConfig {
  /** The server name in user ids and room aliases, e.g. `example.org` or `localhost:8008`. */
  serverName: string;
  /** Address the HTTP front binds. Loopback by default. */
  bindHost: string;
  /** Client-Server API port. */
  clientPort: number;
  /** Base URL clients reach us at (for .well-known). */
  publicBaseUrl: string;
  dataDir: string;
  /** Signing key file (Synapse's format); created on first start when missing. */
  signingKeyPath: string;
  /** How long (ms) published server keys are valid for (`valid_until_ts` = now + this). */
  keyValidityMs: number;
  redis: RedisConfig;
  shards: { rooms: number; users: number };
  workers: number;
  fronts: number;
  lease: {
    /** A lease not renewed within this time is free for another worker. */
    ttlMs: number;
    /** How often owners renew their leases. Must be well under ttlMs. */
    renewMs: number;
  };
  /** The room version for new rooms when the client names none. */
  defaultRoomVersion: string;
  logLevel: LogLevel;
  /**
   * Prometheus metrics (`GET /metrics`, src/ops/metrics-server.ts) on a port of their own, apart
   * from the client and federation listeners so it is never exposed with them. 0: off. The cluster
   * scripts give each process its own port from this one upward. The fronts (and `npm start`'s one
   * process) also serve the operator dashboard there (`/dashboard`, src/ops/dashboard/).
   */
  metrics: { port: number; host: string };
  registration: RegistrationConfig;
  /**
   * Server notices (Synapse's `server_notices`): admins send them with
   * `/_synapse/admin/v1/send_server_notice` into a room per user that the system user
   * `@<systemUserLocalpart>:<serverName>` makes on first use. Off while the localpart is empty.
   */
  serverNotices: { systemUserLocalpart: string; displayName: string; avatarUrl: string; roomName: string };
  /** Lifetime of access tokens issued with a refresh token (`refresh_token: true`). */
  accessTokenLifetimeMs: number;
  rateLimit: RateLimitConfig;
  /**
   * Presence (online / unavailable / offline). Disabled: `PUT /presence` is accepted and ignored,
   * `GET` answers `offline` and /sync carries no presence, as Synapse does with `presence.enabled: false`.
   */
  presence: { enabled: boolean };
  /**
   * What a front's read caches may hold, in bytes (estimates of the V8 heap they keep alive; README
   * "Configuration"): state snapshots and their deltas, parsed events, the events one message's
   * /sync fan-out shares, the outbox windows of /sync, and the rooms' initial-sync slices
   * (src/sync/initial-slices.ts; 0: none).
   */
  caches: { stateBytes: number; eventsBytes: number; recentEventsBytes: number; syncOutboxBytes: number; syncSlicesBytes: number; syncSlicesSharedSeconds: number };
  /**
   * TURN servers handed to clients by `GET /voip/turnServer` (Synapse's `turn_uris`,
   * `turn_shared_secret`, `turn_username`/`turn_password`, `turn_user_lifetime`). With a shared
   * secret each user gets time-limited credentials (the TURN REST API scheme coturn's
   * `use-auth-secret` checks); otherwise the fixed username and password. No URIs: the endpoint
   * answers 404 `M_UNRECOGNIZED` (no TURN here).
   */
  voip: { turnUris: string[]; turnSharedSecret: string; turnUsername: string; turnPassword: string; turnUserLifetimeMs: number };
  /**
   * Every request is answered within this time (ms): one not done by then answers 503 `M_UNKNOWN`
   * with `Retry-After`, and its late answer is dropped. A long-poll (`/sync?timeout=`) gets its
   * timeout on top.
   */
  requestDeadlineMs: number;
  federation: FederationConfig;
  media: MediaConfig;
  /** Delayed events (MSC4140, used by Element Call). */
  delayedEvents: DelayedEventsConfig;
  /**
   * Thread subscriptions (MSC4306/MSC4308; Synapse's `experimental_features.msc4306_enabled`,
   * off by default there too): the subscription endpoints, `org.matrix.msc4306` in `/versions`
   * and the `postcontent` push rules that notify for subscribed threads only — with it on, replies
   * in threads a user is not subscribed to stop notifying, which clients without MSC4306 do not expect.
   */
  threadSubscriptions: { enabled: boolean };
  push: PushConfig;
  appservices: AppservicesConfig;
}

/** Application services (bridges, bots): src/appservice/. */
export interface AppservicesConfig {
  /**
   * Registration files in Synapse's YAML format (`AXON_APPSERVICE_CONFIG_FILES`, comma-separated;
   * Synapse's `app_service_config_files`), read and checked at start: a bad file stops the server
   * with one line per problem.
   */
  configFiles: string[];
  /**
   * Longest wait (ms) for an appservice's answer to a query (`/users`, `/rooms`, `/thirdparty/*`,
   * `/ping`): a late one counts as no answer.
   */
  queryTimeoutMs: number;
  /**
   * Retries of transactions pushed to an appservice (actors/appservice.ts): the first wait after a
   * failure, doubling up to the cap (Synapse: 2 s, capped at 2^9 s).
   */
  sender: { backoffStartMs: number; backoffMaxMs: number };
}

export interface DelayedEventsConfig {
  /**
   * Longest delay a client may ask for (ms); longer answers 400 `ORG.MATRIX.MSC4140_DELAY_TOO_LARGE` (Synapse's code). 0 turns
   * delayed events off (Synapse's unset `max_event_delay_duration`): scheduling answers 403 and
   * `/versions` does not advertise `org.matrix.msc4140`.
   */
  maxDelayMs: number;
  /** Delayed events one user may have scheduled at a time (Synapse's `msc4140_max_delayed_events_per_user`, 100). */
  maxPerUser: number;
}

/** Push notifications to phones through push gateways (pushers; src/push/). */
export interface PushConfig {
  /**
   * Gateways at these addresses are reached even though the federation IP blocklist covers them
   * (`AXON_PUSH_IP_ALLOWLIST`, comma-separated CIDRs; Synapse's `ip_range_whitelist`): a gateway
   * on a private network or loopback. Empty by default.
   */
  ipRangeAllowlist: string[];
  /** Send event content to gateways (Synapse's `push.include_content`; off: ids and counts only). */
  includeContent: boolean;
  /** A gateway answer later than this (ms) is a failure, retried with backoff. */
  timeoutMs: number;
}

const DEFAULT_PORT = 8008;

export function defaultConfig(cwd = process.cwd()): AxonConfig {
  const dataDir = resolve(cwd, 'data');
  return {
    serverName: 'localhost',
    bindHost: '127.0.0.1',
    clientPort: DEFAULT_PORT,
    publicBaseUrl: `http://localhost:${DEFAULT_PORT}`,
    dataDir,
    signingKeyPath: '',
    keyValidityMs: 24 * 3600 * 1000,
    redis: { mode: 'managed', url: '', clusterNodes: [], managedPort: 6390, keyPrefix: 'axon:', commandTimeoutMs: 5000, pingTimeoutMs: 2000, waitReplicas: 0, waitTimeoutMs: 1000 },
    shards: { rooms: 1024, users: 1024 },
    workers: 1,
    fronts: 1,
    // A dead worker's shards are taken within ttlMs + renewMs (default: at most 4 s).
    lease: { ttlMs: 3000, renewMs: 1000 },
    // The spec's recommendation for new rooms (content/rooms/_index.md: "SHOULD use room version 12").
    defaultRoomVersion: SPEC_DEFAULT_ROOM_VERSION,
    logLevel: 'info',
    metrics: { port: 0, host: '127.0.0.1' },
    registration: { enabled: 'auto', requiresToken: false, tokens: [], sharedSecret: '' },
    serverNotices: { systemUserLocalpart: '', displayName: '', avatarUrl: '', roomName: 'Server Notices' },
    accessTokenLifetimeMs: 5 * 60 * 1000,
    rateLimit: {
      enabled: true,
      login: { burst: 10, perMinute: 30 },
      // Synapse's default: burst 3, 0.17/s (10.2 a minute).
      failedLogin: { burst: 3, perMinute: 10 },
      register: { burst: 10, perMinute: 20 },
      client: { burst: 300, perMinute: 6000 },
      // Synapse's rc_delayed_event_mgmt default: burst 5, 1 a second.
      delayedEventMgmt: { burst: 5, perMinute: 60 },
      // Synapse's rc_media_create default: burst 50, 10 a second.
      mediaUpload: { burst: 50, perMinute: 600 },
      // Synapse has no preview limit of its own but rc_message-like defaults; previews fetch for the user.
      urlPreview: { burst: 10, perMinute: 60 },
    },
    presence: { enabled: true },
    caches: { stateBytes: 48 * 2 ** 20, eventsBytes: 0, recentEventsBytes: 16 * 2 ** 20, syncOutboxBytes: 32 * 2 ** 20, syncSlicesBytes: 64 * 2 ** 20, syncSlicesSharedSeconds: 900 },
    // Element Call's recommended setting for Synapse (`max_event_delay_duration: 24h`); Synapse itself is off by default.
    delayedEvents: { maxDelayMs: 24 * 3600 * 1000, maxPerUser: 100 },
    threadSubscriptions: { enabled: false },
    voip: { turnUris: [], turnSharedSecret: '', turnUsername: '', turnPassword: '', turnUserLifetimeMs: 60 * 60 * 1000 },
    requestDeadlineMs: 15_000,
    federation: {
      enabled: true,
      port: 8448,
      tlsCertPath: '',
      tlsKeyPath: '',
      caPaths: [],
      verifyTls: true,
      ipRangeBlocklist: [...DEFAULT_FEDERATION_IP_BLOCKLIST],
      trustedKeyServers: [],
      wellKnownServer: '',
      fasterJoins: true,
      sender: { catchUpLimit: 1_000, backoffStartMs: 2_000, backoffMaxMs: 60 * 60 * 1000 },
    },
    media: {
      store: 'local',
      localPath: '',
      maxUploadBytes: 50 * 1024 * 1024,
      userQuotaBytes: 0,
      legacyFreezeAt: 0,
      // Synapse's defaults (max_pending_media_uploads, unused_expiration_time).
      maxPendingUploads: 5,
      pendingUploadExpiryMs: 24 * 3600_000,
      maxRemoteBytes: 0,
      remoteFetchTimeoutMs: 120_000,
      s3: { endpoint: '', bucket: '', region: 'us-east-1', accessKeyId: '', secretAccessKey: '', forcePathStyle: false, prefix: '' },
      // Synapse's defaults: max_image_pixels 32M, thumbnail_sizes (empty here means those).
      thumbnails: { enabled: true, maxPixels: 32 * 1024 * 1024, maxConcurrent: 2, sizes: [] },
      // Synapse's max_spider_size (10M); off by default as Synapse's url_preview_enabled.
      urlPreviews: { enabled: false, ipRangeAllowlist: [], maxBytes: 10 * 1024 * 1024, timeoutMs: 10_000 },
      // Synapse keeps remote media forever by default (media_retention); so does Axon.
      retention: { localMaxAgeDays: 0, remoteMaxAgeDays: 0, intervalMs: 3600_000 },
    },
    push: { ipRangeAllowlist: [], includeContent: true, timeoutMs: 10_000 },
    appservices: { configFiles: [], queryTimeoutMs: 10_000, sender: { backoffStartMs: 2_000, backoffMaxMs: 512_000 } },
  };
}

/** `bindHost` is a loopback address (only this machine can reach the front). */
export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** Whether `POST /register` creates accounts (resolves `registration.enabled: 'auto'`). */
export function registrationOpen(c: AxonConfig): boolean {
  return c.registration.enabled === 'auto' ? isLoopbackHost(c.bindHost) : c.registration.enabled;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

type Env = Record<string, string | undefined>;

/** Environment variables and the config path each one sets. */
const ENV_OVERRIDES: Record<string, string> = {
  AXON_SERVER_NAME: 'serverName',
  AXON_BIND_HOST: 'bindHost',
  AXON_PORT: 'clientPort',
  AXON_PUBLIC_BASE_URL: 'publicBaseUrl',
  AXON_DATA_DIR: 'dataDir',
  AXON_SIGNING_KEY_PATH: 'signingKeyPath',
  AXON_KEY_VALIDITY_MS: 'keyValidityMs',
  AXON_REDIS_MODE: 'redis.mode',
  AXON_REDIS_URL: 'redis.url',
  AXON_REDIS_CLUSTER_NODES: 'redis.clusterNodes',
  AXON_REDIS_MANAGED_PORT: 'redis.managedPort',
  AXON_REDIS_KEY_PREFIX: 'redis.keyPrefix',
  AXON_REDIS_COMMAND_TIMEOUT_MS: 'redis.commandTimeoutMs',
  AXON_REDIS_PING_TIMEOUT_MS: 'redis.pingTimeoutMs',
  AXON_REDIS_WAIT_REPLICAS: 'redis.waitReplicas',
  AXON_REDIS_WAIT_TIMEOUT_MS: 'redis.waitTimeoutMs',
  AXON_ROOM_SHARDS: 'shards.rooms',
  AXON_USER_SHARDS: 'shards.users',
  AXON_WORKERS: 'workers',
  AXON_FRONTS: 'fronts',
  AXON_LEASE_TTL_MS: 'lease.ttlMs',
  AXON_LEASE_RENEW_MS: 'lease.renewMs',
  AXON_DEFAULT_ROOM_VERSION: 'defaultRoomVersion',
  AXON_LOG_LEVEL: 'logLevel',
  AXON_METRICS_PORT: 'metrics.port',
  AXON_METRICS_HOST: 'metrics.host',
  AXON_REGISTRATION_ENABLED: 'registration.enabled',
  AXON_REGISTRATION_REQUIRES_TOKEN: 'registration.requiresToken',
  AXON_REGISTRATION_TOKENS: 'registration.tokens',
  AXON_REGISTRATION_SHARED_SECRET: 'registration.sharedSecret',
  AXON_SERVER_NOTICES_LOCALPART: 'serverNotices.systemUserLocalpart',
  AXON_ACCESS_TOKEN_LIFETIME_MS: 'accessTokenLifetimeMs',
  AXON_RATE_LIMIT_ENABLED: 'rateLimit.enabled',
  AXON_RATE_LIMIT_FAILED_LOGIN_BURST: 'rateLimit.failedLogin.burst',
  AXON_RATE_LIMIT_FAILED_LOGIN_PER_MINUTE: 'rateLimit.failedLogin.perMinute',
  AXON_PRESENCE_ENABLED: 'presence.enabled',
  AXON_CACHE_STATE_BYTES: 'caches.stateBytes',
  AXON_CACHE_EVENTS_BYTES: 'caches.eventsBytes',
  AXON_CACHE_RECENT_EVENTS_BYTES: 'caches.recentEventsBytes',
  AXON_CACHE_SYNC_OUTBOX_BYTES: 'caches.syncOutboxBytes',
  AXON_CACHE_SYNC_SLICES_BYTES: 'caches.syncSlicesBytes',
  AXON_CACHE_SYNC_SLICES_SHARED_SECONDS: 'caches.syncSlicesSharedSeconds',
  AXON_DELAYED_EVENTS_MAX_DELAY_MS: 'delayedEvents.maxDelayMs',
  AXON_DELAYED_EVENTS_MAX_PER_USER: 'delayedEvents.maxPerUser',
  AXON_THREAD_SUBSCRIPTIONS_ENABLED: 'threadSubscriptions.enabled',
  AXON_VOIP_TURN_URIS: 'voip.turnUris',
  AXON_VOIP_TURN_SHARED_SECRET: 'voip.turnSharedSecret',
  AXON_VOIP_TURN_USERNAME: 'voip.turnUsername',
  AXON_VOIP_TURN_PASSWORD: 'voip.turnPassword',
  AXON_VOIP_TURN_USER_LIFETIME_MS: 'voip.turnUserLifetimeMs',
  AXON_REQUEST_DEADLINE_MS: 'requestDeadlineMs',
  AXON_FEDERATION_ENABLED: 'federation.enabled',
  AXON_FEDERATION_PORT: 'federation.port',
  AXON_FEDERATION_TLS_CERT: 'federation.tlsCertPath',
  AXON_FEDERATION_TLS_KEY: 'federation.tlsKeyPath',
  AXON_FEDERATION_CA: 'federation.caPaths',
  AXON_FEDERATION_VERIFY_TLS: 'federation.verifyTls',
  AXON_FEDERATION_FASTER_JOINS: 'federation.fasterJoins',
  AXON_FEDERATION_IP_BLOCKLIST: 'federation.ipRangeBlocklist',
  AXON_TRUSTED_KEY_SERVERS: 'federation.trustedKeyServers',
  AXON_FEDERATION_WELL_KNOWN_SERVER: 'federation.wellKnownServer',
  AXON_FEDERATION_SENDER_CATCH_UP_LIMIT: 'federation.sender.catchUpLimit',
  AXON_FEDERATION_SENDER_BACKOFF_START_MS: 'federation.sender.backoffStartMs',
  AXON_FEDERATION_SENDER_BACKOFF_MAX_MS: 'federation.sender.backoffMaxMs',
  AXON_MEDIA_STORE: 'media.store',
  AXON_MEDIA_PATH: 'media.localPath',
  AXON_MEDIA_MAX_UPLOAD_BYTES: 'media.maxUploadBytes',
  AXON_MEDIA_USER_QUOTA_BYTES: 'media.userQuotaBytes',
  AXON_MEDIA_LEGACY_FREEZE_AT: 'media.legacyFreezeAt',
  AXON_MEDIA_MAX_PENDING_UPLOADS: 'media.maxPendingUploads',
  AXON_MEDIA_PENDING_UPLOAD_EXPIRY_MS: 'media.pendingUploadExpiryMs',
  AXON_MEDIA_MAX_REMOTE_BYTES: 'media.maxRemoteBytes',
  AXON_MEDIA_REMOTE_FETCH_TIMEOUT_MS: 'media.remoteFetchTimeoutMs',
  AXON_MEDIA_S3_ENDPOINT: 'media.s3.endpoint',
  AXON_MEDIA_S3_BUCKET: 'media.s3.bucket',
  AXON_MEDIA_S3_REGION: 'media.s3.region',
  AXON_MEDIA_S3_ACCESS_KEY_ID: 'media.s3.accessKeyId',
  AXON_MEDIA_S3_SECRET_ACCESS_KEY: 'media.s3.secretAccessKey',
  AXON_MEDIA_S3_FORCE_PATH_STYLE: 'media.s3.forcePathStyle',
  AXON_MEDIA_S3_PREFIX: 'media.s3.prefix',
  AXON_MEDIA_THUMBNAILS_ENABLED: 'media.thumbnails.enabled',
  AXON_MEDIA_THUMBNAILS_MAX_PIXELS: 'media.thumbnails.maxPixels',
  AXON_MEDIA_THUMBNAILS_MAX_CONCURRENT: 'media.thumbnails.maxConcurrent',
  AXON_MEDIA_URL_PREVIEWS_ENABLED: 'media.urlPreviews.enabled',
  AXON_MEDIA_URL_PREVIEWS_IP_RANGE_ALLOWLIST: 'media.urlPreviews.ipRangeAllowlist',
  AXON_MEDIA_URL_PREVIEWS_MAX_BYTES: 'media.urlPreviews.maxBytes',
  AXON_MEDIA_URL_PREVIEWS_TIMEOUT_MS: 'media.urlPreviews.timeoutMs',
  AXON_MEDIA_RETENTION_LOCAL_MAX_AGE_DAYS: 'media.retention.localMaxAgeDays',
  AXON_MEDIA_RETENTION_REMOTE_MAX_AGE_DAYS: 'media.retention.remoteMaxAgeDays',
  AXON_MEDIA_RETENTION_INTERVAL_MS: 'media.retention.intervalMs',
  AXON_PUSH_IP_ALLOWLIST: 'push.ipRangeAllowlist',
  AXON_PUSH_INCLUDE_CONTENT: 'push.includeContent',
  AXON_PUSH_TIMEOUT_MS: 'push.timeoutMs',
  AXON_APPSERVICE_CONFIG_FILES: 'appservices.configFiles',
  AXON_APPSERVICE_QUERY_TIMEOUT_MS: 'appservices.queryTimeoutMs',
  AXON_APPSERVICE_BACKOFF_START_MS: 'appservices.sender.backoffStartMs',
  AXON_APPSERVICE_BACKOFF_MAX_MS: 'appservices.sender.backoffMaxMs',
};

/** Variables whose empty value means something (an empty list), rather than "not set". */
const EMPTY_MEANS_EMPTY = new Set(['AXON_FEDERATION_IP_BLOCKLIST']);

/**
 * `AXON_TRUSTED_KEY_SERVERS`: entries separated by commas, each the notary's server name and then
 * its keys as `keyId=base64` pairs, separated by spaces:
 * `matrix.org ed25519:auto=Noi6WqcDj0QmPxCNQqgezwTlBKrfqehY1u2FyWP9uYw`.
 */
export function parseTrustedKeyServersEnv(raw: string): TrustedKeyServer[] | string {
  const out: TrustedKeyServer[] = [];
  for (const entry of raw.split(',').map((e) => e.trim()).filter(Boolean)) {
    const [serverName, ...pairs] = entry.split(/\s+/);
    const verifyKeys: Record<string, string> = {};
    for (const pair of pairs) {
      const eq = pair.indexOf('=');
      if (eq <= 0) return `entry ${JSON.stringify(entry)}: keys must be keyId=base64`;
      verifyKeys[pair.slice(0, eq)] = pair.slice(eq + 1);
    }
    out.push({ serverName: serverName!, verifyKeys });
  }
  return out;
}

/** The room versions this server implements. */
export const SUPPORTED_ROOM_VERSIONS = [...ROOM_VERSIONS.keys()];

export function loadConfig(env: Env = process.env, cwd = process.cwd()): AxonConfig {
  const problems: string[] = [];
  const config = defaultConfig(cwd);
  const filePath = env.AXON_CONFIG ? resolve(cwd, env.AXON_CONFIG) : resolve(cwd, 'axon.config.json');
  if (env.AXON_CONFIG && !existsSync(filePath)) problems.push(`AXON_CONFIG: no file at ${filePath}`);
  if (existsSync(filePath)) {
    try {
      mergeInto(config as unknown as Record<string, unknown>, JSON.parse(readFileSync(filePath, 'utf8')), '', problems, filePath);
    } catch (e) {
      problems.push(`${filePath}: ${(e as Error).message}`);
    }
  }
  for (const [name, path] of Object.entries(ENV_OVERRIDES)) {
    const raw = env[name];
    if (raw === undefined || (raw === '' && !EMPTY_MEANS_EMPTY.has(name))) continue;
    if (name === 'AXON_TRUSTED_KEY_SERVERS') {
      const parsed = parseTrustedKeyServersEnv(raw);
      if (typeof parsed === 'string') problems.push(`${name}: ${parsed}`);
      else config.federation.trustedKeyServers = parsed;
      continue;
    }
    applyEnv(config as unknown as Record<string, unknown>, path, raw, name, problems);
  }
  // Values that follow from others unless set explicitly.
  if (!config.signingKeyPath) config.signingKeyPath = resolve(config.dataDir, `${config.serverName.replace(/[^A-Za-z0-9.-]/g, '_')}.signing.key`);
  config.dataDir = resolve(cwd, config.dataDir);
  if (config.media && typeof config.media.localPath === 'string') config.media.localPath = config.media.localPath ? resolve(cwd, config.media.localPath) : resolve(config.dataDir, 'media');
  const f = config.federation;
  if (f && typeof f.tlsCertPath === 'string' && f.tlsCertPath) f.tlsCertPath = resolve(cwd, f.tlsCertPath);
  if (f && typeof f.tlsKeyPath === 'string' && f.tlsKeyPath) f.tlsKeyPath = resolve(cwd, f.tlsKeyPath);
  if (f && Array.isArray(f.caPaths)) f.caPaths = f.caPaths.map((p) => (typeof p === 'string' ? resolve(cwd, p) : p));
  const as = config.appservices;
  if (as && Array.isArray(as.configFiles)) as.configFiles = as.configFiles.map((p) => (typeof p === 'string' ? resolve(cwd, p) : p));
  problems.push(...validateConfig(config));
  // The registration files themselves, once their list is well formed.
  if (problems.length === 0) problems.push(...checkAppserviceFiles(config.appservices.configFiles, config.serverName).map((line) => `appservices.configFiles: ${line}`));
  if (problems.length) throw new ConfigError(problems);
  return config;
}

function mergeInto(target: Record<string, unknown>, source: unknown, prefix: string, problems: string[], file: string): void {
  if (typeof source !== 'object' || source === null || Array.isArray(source)) {
    problems.push(`${file}: ${prefix || 'top level'} must be an object`);
    return;
  }
  for (const [key, value] of Object.entries(source)) {
    const path = prefix ? `${prefix}.${key}` : key;
    if (!(key in target)) {
      problems.push(`${file}: unknown setting ${path}`);
      continue;
    }
    const current = target[key];
    if (typeof current === 'object' && current !== null && !Array.isArray(current)) mergeInto(current as Record<string, unknown>, value, path, problems, file);
    else target[key] = value;
  }
}

function applyEnv(config: Record<string, unknown>, path: string, raw: string, name: string, problems: string[]): void {
  const parts = path.split('.');
  let obj = config;
  for (const p of parts.slice(0, -1)) obj = obj[p] as Record<string, unknown>;
  const leaf = parts[parts.length - 1]!;
  const current = obj[leaf];
  if (typeof current === 'number') {
    const n = Number(raw);
    if (!/^-?\d+$/.test(raw.trim()) || !Number.isSafeInteger(n)) problems.push(`${name}=${raw}: must be an integer`);
    else obj[leaf] = n;
  } else if (typeof current === 'boolean' || leaf === 'enabled') {
    const v = raw.trim().toLowerCase();
    if (v === 'true' || v === '1') obj[leaf] = true;
    else if (v === 'false' || v === '0') obj[leaf] = false;
    else if (v === 'auto' && current === 'auto') obj[leaf] = 'auto';
    else problems.push(`${name}=${raw}: must be true or false${current === 'auto' ? ' or auto' : ''}`);
  } else if (Array.isArray(current)) {
    obj[leaf] = raw.split(',').map((s) => s.trim()).filter(Boolean);
  } else {
    obj[leaf] = raw;
  }
}

const SERVER_NAME = /^(?:\[[0-9A-Fa-f:.]{2,45}\]|[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[A-Za-z0-9\-.]{1,255})(?::[0-9]{1,5})?$/;
const LOG_LEVELS: LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** Every problem with a config, one line each. */
export function validateConfig(c: AxonConfig): string[] {
  const p: string[] = [];
  const int = (v: unknown, name: string, min: number, max: number) => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) p.push(`${name}: must be an integer from ${min} to ${max} (got ${JSON.stringify(v)})`);
  };
  if (typeof c.serverName !== 'string' || !SERVER_NAME.test(c.serverName)) p.push(`serverName: ${JSON.stringify(c.serverName)} is not a valid server name (host[:port])`);
  if (typeof c.bindHost !== 'string' || !c.bindHost) p.push('bindHost: must be an address');
  int(c.clientPort, 'clientPort', 1, 65535);
  if (typeof c.publicBaseUrl !== 'string' || !/^https?:\/\/[^/]+/.test(c.publicBaseUrl)) p.push(`publicBaseUrl: must be an http(s) URL (got ${JSON.stringify(c.publicBaseUrl)})`);
  if (typeof c.dataDir !== 'string' || !c.dataDir) p.push('dataDir: must be a directory path');
  int(c.keyValidityMs, 'keyValidityMs', 60_000, 7 * 24 * 3600 * 1000);
  if (!['managed', 'url', 'cluster'].includes(c.redis.mode)) p.push(`redis.mode: must be managed, url or cluster (got ${JSON.stringify(c.redis.mode)})`);
  if (c.redis.mode === 'url' && !/^rediss?:\/\//.test(c.redis.url)) p.push(`redis.url: must be a redis:// URL when redis.mode is url (got ${JSON.stringify(c.redis.url)})`);
  if (c.redis.mode === 'cluster' && (!Array.isArray(c.redis.clusterNodes) || c.redis.clusterNodes.length === 0 || !c.redis.clusterNodes.every((n) => /^[^:\s]+:\d+$/.test(n)))) {
    p.push('redis.clusterNodes: must list host:port entries when redis.mode is cluster');
  }
  int(c.redis.managedPort, 'redis.managedPort', 1, 65535);
  if (typeof c.redis.keyPrefix !== 'string' || /[{}\s]/.test(c.redis.keyPrefix)) p.push('redis.keyPrefix: must be a string without braces or spaces (braces are hash tags)');
  int(c.redis.commandTimeoutMs, 'redis.commandTimeoutMs', 100, 600_000);
  int(c.redis.pingTimeoutMs, 'redis.pingTimeoutMs', 100, 60_000);
  int(c.redis.waitReplicas, 'redis.waitReplicas', 0, 16);
  int(c.redis.waitTimeoutMs, 'redis.waitTimeoutMs', 10, 60_000);
  int(c.requestDeadlineMs, 'requestDeadlineMs', 1000, 600_000);
  if (typeof c.redis.pingTimeoutMs === 'number' && typeof c.redis.commandTimeoutMs === 'number' && c.redis.pingTimeoutMs > c.redis.commandTimeoutMs) {
    p.push('redis.pingTimeoutMs: must be at most redis.commandTimeoutMs (a stall is noticed before commands time out)');
  }
  // A command can wait behind the auto-pipelined batch in flight before its own timeout starts, so
  // during a stall it fails within about twice the command timeout.
  if (typeof c.redis.commandTimeoutMs === 'number' && typeof c.requestDeadlineMs === 'number' && 2 * c.redis.commandTimeoutMs >= c.requestDeadlineMs) {
    p.push('redis.commandTimeoutMs: must be under half of requestDeadlineMs, or a request runs out of time before a Redis failure can be told apart');
  }
  int(c.shards.rooms, 'shards.rooms', 1, 16384);
  int(c.shards.users, 'shards.users', 1, 16384);
  int(c.workers, 'workers', 1, 256);
  int(c.fronts, 'fronts', 1, 256);
  int(c.lease.ttlMs, 'lease.ttlMs', 500, 600_000);
  int(c.lease.renewMs, 'lease.renewMs', 100, 600_000);
  if (typeof c.lease.renewMs === 'number' && typeof c.lease.ttlMs === 'number' && c.lease.renewMs * 2 > c.lease.ttlMs) p.push('lease.renewMs: must be at most half of lease.ttlMs, or leases lapse between renewals');
  if (!SUPPORTED_ROOM_VERSIONS.includes(c.defaultRoomVersion)) p.push(`defaultRoomVersion: ${JSON.stringify(c.defaultRoomVersion)} is not one of ${SUPPORTED_ROOM_VERSIONS.join(', ')}`);
  if (!LOG_LEVELS.includes(c.logLevel)) p.push(`logLevel: must be one of ${LOG_LEVELS.join(', ')}`);
  int(c.metrics?.port, 'metrics.port', 0, 65535);
  if (typeof c.metrics?.host !== 'string' || !c.metrics.host) p.push('metrics.host: must be an address');
  const r = c.registration;
  if (r.enabled !== 'auto' && typeof r.enabled !== 'boolean') p.push(`registration.enabled: must be true, false or "auto" (got ${JSON.stringify(r.enabled)})`);
  if (typeof r.requiresToken !== 'boolean') p.push(`registration.requiresToken: must be true or false (got ${JSON.stringify(r.requiresToken)})`);
  if (!Array.isArray(r.tokens) || !r.tokens.every((t) => typeof t === 'string' && /^[A-Za-z0-9._~-]{1,64}$/.test(t))) {
    p.push('registration.tokens: must be a list of tokens of 1 to 64 characters from A-Z a-z 0-9 . _ ~ -');
  }
  if (typeof r.sharedSecret !== 'string') p.push('registration.sharedSecret: must be a string (empty: shared-secret registration off)');
  else if (r.sharedSecret !== '' && r.sharedSecret.length < 16) p.push('registration.sharedSecret: must be at least 16 characters (or empty to turn shared-secret registration off)');
  const sn = c.serverNotices;
  if (!sn || typeof sn !== 'object') p.push('serverNotices: must be an object');
  else {
    for (const k of ['systemUserLocalpart', 'displayName', 'avatarUrl', 'roomName'] as const) if (typeof sn[k] !== 'string') p.push(`serverNotices.${k}: must be a string`);
    if (typeof sn.systemUserLocalpart === 'string' && sn.systemUserLocalpart !== '' && !/^[a-z0-9._=\-/+]+$/.test(sn.systemUserLocalpart)) p.push('serverNotices.systemUserLocalpart: must be a user localpart (a-z 0-9 . _ = - / +), or empty to turn server notices off');
    if (typeof sn.avatarUrl === 'string' && sn.avatarUrl !== '' && !sn.avatarUrl.startsWith('mxc://')) p.push('serverNotices.avatarUrl: must be an mxc:// URI or empty');
  }
  int(c.accessTokenLifetimeMs, 'accessTokenLifetimeMs', 10_000, 30 * 24 * 3600 * 1000);
  if (typeof c.presence?.enabled !== 'boolean') p.push(`presence.enabled: must be true or false (got ${JSON.stringify(c.presence?.enabled)})`);
  if (!Array.isArray(c.voip?.turnUris) || !c.voip.turnUris.every((u) => typeof u === 'string' && /^turns?:/.test(u))) p.push(`voip.turnUris: must be a list of turn: or turns: URIs (got ${JSON.stringify(c.voip?.turnUris)})`);
  else if (c.voip.turnUris.length && !c.voip.turnSharedSecret && !(c.voip.turnUsername && c.voip.turnPassword)) p.push('voip: turnUris needs turnSharedSecret, or turnUsername and turnPassword');
  int(c.voip?.turnUserLifetimeMs, 'voip.turnUserLifetimeMs', 60_000, 7 * 24 * 3600_000);
  if (typeof c.rateLimit.enabled !== 'boolean') p.push(`rateLimit.enabled: must be true or false (got ${JSON.stringify(c.rateLimit.enabled)})`);
  if (typeof c.threadSubscriptions?.enabled !== 'boolean') p.push(`threadSubscriptions.enabled: must be true or false (got ${JSON.stringify(c.threadSubscriptions?.enabled)})`);
  int(c.delayedEvents?.maxDelayMs, 'delayedEvents.maxDelayMs', 0, 365 * 24 * 3600 * 1000);
  int(c.delayedEvents?.maxPerUser, 'delayedEvents.maxPerUser', 1, 100_000);
  for (const k of ['stateBytes', 'eventsBytes', 'recentEventsBytes', 'syncOutboxBytes', 'syncSlicesBytes'] as const) int(c.caches?.[k], `caches.${k}`, 0, 2 ** 40);
  int(c.caches?.syncSlicesSharedSeconds, 'caches.syncSlicesSharedSeconds', 0, 7 * 24 * 3600);
  for (const name of ['login', 'failedLogin', 'register', 'client', 'mediaUpload', 'urlPreview', 'delayedEventMgmt'] as const) {
    int(c.rateLimit[name]?.burst, `rateLimit.${name}.burst`, 1, 1_000_000);
    int(c.rateLimit[name]?.perMinute, `rateLimit.${name}.perMinute`, 1, 60_000_000);
  }
  p.push(...validateFederation(c.federation, int));
  p.push(...validateMedia(c.media, int));
  if (typeof c.appservices !== 'object' || c.appservices === null) p.push('appservices: must be an object');
  else {
    if (!Array.isArray(c.appservices.configFiles) || !c.appservices.configFiles.every((x) => typeof x === 'string' && x !== '')) p.push('appservices.configFiles: must be a list of registration file paths');
    int(c.appservices.queryTimeoutMs, 'appservices.queryTimeoutMs', 100, 600_000);
    const sender = c.appservices.sender;
    if (typeof sender !== 'object' || sender === null) p.push('appservices.sender: must be an object');
    else {
      int(sender.backoffStartMs, 'appservices.sender.backoffStartMs', 10, 24 * 3600 * 1000);
      int(sender.backoffMaxMs, 'appservices.sender.backoffMaxMs', 10, 7 * 24 * 3600 * 1000);
      if (typeof sender.backoffStartMs === 'number' && typeof sender.backoffMaxMs === 'number' && sender.backoffMaxMs < sender.backoffStartMs) p.push('appservices.sender.backoffMaxMs: must be at least backoffStartMs');
    }
  }
  const push = c.push;
  if (typeof push !== 'object' || push === null) p.push('push: must be an object');
  else {
    if (typeof push.includeContent !== 'boolean') p.push('push.includeContent: must be true or false');
    int(push.timeoutMs, 'push.timeoutMs', 100, 600_000);
    if (!Array.isArray(push.ipRangeAllowlist) || !push.ipRangeAllowlist.every((x) => typeof x === 'string')) p.push('push.ipRangeAllowlist: must be a list of CIDR ranges');
    else
      for (const cidr of push.ipRangeAllowlist) {
        try {
          parseCidr(cidr);
        } catch {
          p.push(`push.ipRangeAllowlist: not a CIDR range: ${JSON.stringify(cidr)}`);
        }
      }
  }
  return p;
}

function validateMedia(m: MediaConfig, int: (v: unknown, name: string, min: number, max: number) => void): string[] {
  const p: string[] = [];
  if (typeof m !== 'object' || m === null) return ['media: must be an object'];
  if (m.store !== 'local' && m.store !== 's3') p.push(`media.store: must be local or s3 (got ${JSON.stringify(m.store)})`);
  if (typeof m.localPath !== 'string') p.push('media.localPath: must be a directory path (empty: <dataDir>/media)');
  int(m.maxUploadBytes, 'media.maxUploadBytes', 1, 64 * 1024 ** 3);
  int(m.userQuotaBytes, 'media.userQuotaBytes', 0, Number.MAX_SAFE_INTEGER);
  int(m.legacyFreezeAt, 'media.legacyFreezeAt', 0, Number.MAX_SAFE_INTEGER);
  int(m.maxPendingUploads, 'media.maxPendingUploads', 1, 10_000);
  int(m.pendingUploadExpiryMs, 'media.pendingUploadExpiryMs', 1000, 30 * 24 * 3600_000);
  int(m.maxRemoteBytes, 'media.maxRemoteBytes', 0, 64 * 1024 ** 3);
  int(m.remoteFetchTimeoutMs, 'media.remoteFetchTimeoutMs', 1000, 3600_000);
  const s3 = m.s3;
  if (typeof s3 !== 'object' || s3 === null) p.push('media.s3: must be an object');
  else {
    for (const k of ['endpoint', 'bucket', 'region', 'accessKeyId', 'secretAccessKey', 'prefix'] as const) if (typeof s3[k] !== 'string') p.push(`media.s3.${k}: must be a string`);
    if (typeof s3.forcePathStyle !== 'boolean') p.push('media.s3.forcePathStyle: must be true or false');
    if (m.store === 's3' && !s3.bucket) p.push('media.s3.bucket: must name a bucket when media.store is s3');
    if (s3.endpoint && !/^https?:\/\/[^/]+/.test(s3.endpoint)) p.push(`media.s3.endpoint: must be an http(s) URL (got ${JSON.stringify(s3.endpoint)})`);
    if (!s3.accessKeyId !== !s3.secretAccessKey) p.push('media.s3.accessKeyId / secretAccessKey: set both or neither (neither: the AWS SDK finds credentials itself)');
  }
  const th = m.thumbnails;
  if (typeof th !== 'object' || th === null) p.push('media.thumbnails: must be an object');
  else {
    if (typeof th.enabled !== 'boolean') p.push('media.thumbnails.enabled: must be true or false');
    int(th.maxPixels, 'media.thumbnails.maxPixels', 1, 1_000_000_000);
    int(th.maxConcurrent, 'media.thumbnails.maxConcurrent', 1, 64);
    if (!Array.isArray(th.sizes)) p.push('media.thumbnails.sizes: must be a list of {width, height, method}');
    else
      for (const [i, size] of th.sizes.entries()) {
        int(size?.width, `media.thumbnails.sizes[${i}].width`, 1, 10_000);
        int(size?.height, `media.thumbnails.sizes[${i}].height`, 1, 10_000);
        if (size?.method !== 'crop' && size?.method !== 'scale') p.push(`media.thumbnails.sizes[${i}].method: must be crop or scale`);
      }
  }
  const up = m.urlPreviews;
  if (typeof up !== 'object' || up === null) p.push('media.urlPreviews: must be an object');
  else {
    if (typeof up.enabled !== 'boolean') p.push('media.urlPreviews.enabled: must be true or false');
    if (!Array.isArray(up.ipRangeAllowlist) || !up.ipRangeAllowlist.every((x) => typeof x === 'string')) p.push('media.urlPreviews.ipRangeAllowlist: must be a list of CIDR ranges');
    else
      for (const cidr of up.ipRangeAllowlist) {
        try {
          parseCidr(cidr);
        } catch {
          p.push(`media.urlPreviews.ipRangeAllowlist: not a CIDR range: ${JSON.stringify(cidr)}`);
        }
      }
    int(up.maxBytes, 'media.urlPreviews.maxBytes', 1024, 1024 ** 3);
    int(up.timeoutMs, 'media.urlPreviews.timeoutMs', 100, 600_000);
  }
  const rt = m.retention;
  if (typeof rt !== 'object' || rt === null) p.push('media.retention: must be an object');
  else {
    // Days may be fractional in the JSON file (tests use seconds); the environment takes whole days.
    for (const k of ['localMaxAgeDays', 'remoteMaxAgeDays'] as const) if (typeof rt[k] !== 'number' || !Number.isFinite(rt[k]) || rt[k] < 0) p.push(`media.retention.${k}: must be a number of days, 0 or more (0: kept forever)`);
    int(rt.intervalMs, 'media.retention.intervalMs', 100, 30 * 24 * 3600_000);
  }
  return p;
}

const BASE64_32_BYTES = /^[A-Za-z0-9+/]{43}$/;

function validateFederation(f: FederationConfig, int: (v: unknown, name: string, min: number, max: number) => void): string[] {
  const p: string[] = [];
  if (typeof f !== 'object' || f === null) return ['federation: must be an object'];
  if (typeof f.enabled !== 'boolean') p.push(`federation.enabled: must be true or false (got ${JSON.stringify(f.enabled)})`);
  int(f.port, 'federation.port', 1, 65535);
  if (typeof f.verifyTls !== 'boolean') p.push(`federation.verifyTls: must be true or false (got ${JSON.stringify(f.verifyTls)})`);
  if (typeof f.fasterJoins !== 'boolean') p.push(`federation.fasterJoins: must be true or false (got ${JSON.stringify(f.fasterJoins)})`);
  if (typeof f.tlsCertPath !== 'string' || typeof f.tlsKeyPath !== 'string') p.push('federation.tlsCertPath / tlsKeyPath: must be file paths (or both empty for a self-signed pair)');
  else {
    if (!f.tlsCertPath !== !f.tlsKeyPath) p.push('federation.tlsCertPath / tlsKeyPath: set both or neither (neither: a self-signed pair is made under dataDir)');
    if (f.tlsCertPath && !existsSync(f.tlsCertPath)) p.push(`federation.tlsCertPath: no file at ${f.tlsCertPath}`);
    if (f.tlsKeyPath && !existsSync(f.tlsKeyPath)) p.push(`federation.tlsKeyPath: no file at ${f.tlsKeyPath}`);
  }
  if (!Array.isArray(f.caPaths) || !f.caPaths.every((x) => typeof x === 'string')) p.push('federation.caPaths: must be a list of PEM file paths');
  else for (const ca of f.caPaths) if (!existsSync(ca)) p.push(`federation.caPaths: no file at ${ca}`);
  if (!Array.isArray(f.ipRangeBlocklist) || !f.ipRangeBlocklist.every((x) => typeof x === 'string')) p.push('federation.ipRangeBlocklist: must be a list of CIDR ranges');
  else {
    for (const cidr of f.ipRangeBlocklist) {
      try {
        parseCidr(cidr);
      } catch (e) {
        p.push(`federation.ipRangeBlocklist: ${JSON.stringify(cidr)} is not a CIDR range (${(e as Error).message})`);
      }
    }
  }
  if (!Array.isArray(f.trustedKeyServers)) p.push('federation.trustedKeyServers: must be a list of { serverName, verifyKeys }');
  else {
    for (const t of f.trustedKeyServers) {
      const name = (t as TrustedKeyServer | null)?.serverName;
      if (typeof name !== 'string' || !isValidFederationServerName(name)) {
        p.push(`federation.trustedKeyServers: ${JSON.stringify(name)} is not a valid server name`);
        continue;
      }
      const keys = t.verifyKeys;
      if (typeof keys !== 'object' || keys === null || Object.keys(keys).length === 0) {
        p.push(`federation.trustedKeyServers: ${name} needs at least one verify key (keyId → base64 public key)`);
        continue;
      }
      for (const [keyId, key] of Object.entries(keys)) {
        if (!keyId.startsWith('ed25519:') || !isValidKeyId(keyId)) p.push(`federation.trustedKeyServers: ${name}'s key id ${JSON.stringify(keyId)} is not an ed25519 key id`);
        else if (typeof key !== 'string' || !BASE64_32_BYTES.test(key)) p.push(`federation.trustedKeyServers: ${name}'s key ${keyId} is not an unpadded base64 ed25519 public key`);
      }
    }
  }
  if (typeof f.wellKnownServer !== 'string') p.push('federation.wellKnownServer: must be a server name or empty');
  else if (f.wellKnownServer && !isValidFederationServerName(f.wellKnownServer)) p.push(`federation.wellKnownServer: ${JSON.stringify(f.wellKnownServer)} is not a valid server name (host[:port])`);
  const s = f.sender;
  if (typeof s !== 'object' || s === null) p.push('federation.sender: must be an object');
  else {
    int(s.catchUpLimit, 'federation.sender.catchUpLimit', 1, 1_000_000);
    int(s.backoffStartMs, 'federation.sender.backoffStartMs', 10, 7 * 24 * 3600 * 1000);
    int(s.backoffMaxMs, 'federation.sender.backoffMaxMs', 10, 30 * 24 * 3600 * 1000);
    if (typeof s.backoffStartMs === 'number' && typeof s.backoffMaxMs === 'number' && s.backoffMaxMs < s.backoffStartMs) p.push('federation.sender.backoffMaxMs: must be at least backoffStartMs');
  }
  return p;
}
