/**
 * A whole Axon for end-to-end tests, in this process: workers running every actor kind and a
 * front serving HTTP on a free loopback port, on the test Redis under a fresh key prefix.
 * Real HTTP, real Redis, real actors; clients (matrix-js-sdk, fetch) talk to `baseUrl`.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { inject } from 'vitest';
import { defaultConfig, validateConfig, type AxonConfig } from '../../cluster.config';
import { startFront, type RunningFront } from '../../src/front';
import { startMediaJobs, type RunningMediaJobs } from '../../src/media/jobs';
import { PushQueue } from '../../src/push/queue';
import { startPushSender } from '../../src/push/sender';
import { startRoomDeletionJobs } from '../../src/rooms/room-deletion-jobs';
import { signingKeyFromSeed, type SigningKey } from '../../src/protocol/crypto';
import { allActorKinds } from '../../src/runtime/kinds';
import { allReaders } from '../../src/readers/index';
import { federationSenderSetup } from '../../src/federation/sender/setup';
import { appserviceSenderSetup } from '../../src/appservice/sender-setup';
import { PushEvaluatorReader } from '../../src/readers/push-evaluator';
import { frontRedisOptions, shardCountsFor } from '../../src/runtime/cluster-settings';
import { Worker } from '../../src/runtime/worker';
import { KeySpace } from '../../src/store/keys';
import { connectRedis, type RedisClient } from '../../src/store/redis';
import { freePort } from '../setup/free-port';
import { SYNC_OUTBOX_RETENTION_MS, workerSyncNotify } from '../../src/sync/notify';
import type { ShardReader } from '../../src/runtime/worker';

export interface TestServer {
  baseUrl: string;
  /** `https://<bindHost>:<port>` of the first front's federation listener, when federation is on. */
  federationUrl?: string;
  /** Every front's address (`baseUrl` is the first): fronts share Redis and the workers. */
  baseUrls: string[];
  serverName: string;
  config: AxonConfig;
  redis: RedisClient;
  /** Every worker's push evaluator (tests stall it on a shard with `detach`, resume with `attach`). */
  pushEvaluators: ShardReader[];
  signingKey: SigningKey;
  stop(): Promise<void>;
}

export async function startTestServer(opts: {
  workers?: number;
  cluster?: boolean;
  fronts?: number;
  configure?: (c: AxonConfig) => void;
  /** A Redis of the test's own (e.g. one it pauses) instead of the run's shared one. */
  redisUrl?: string;
  /** Run the media job queue (pre-generated thumbnails, retention) beside each worker, as worker processes do. */
  mediaJobs?: boolean;
  /** Run push delivery (the evaluator queues for pushers, a push sender per worker delivers). */
  push?: boolean;
  /** Run the admins' room deletion jobs (`DELETE /_synapse/admin/v2/rooms/…`) beside each worker, as worker processes do. */
  roomDeletions?: boolean;
  /** The signing key (default: a new one): a server restarted under its old name and prefix keeps its key. */
  signingKey?: SigningKey;
} = {}): Promise<TestServer> {
  const port = await freePort();
  const config = defaultConfig(mkdtempSync(join(tmpdir(), 'axon-e2e-')));
  config.serverName = 'localhost';
  config.clientPort = port;
  config.publicBaseUrl = `http://127.0.0.1:${port}`;
  config.redis = opts.cluster
    ? { ...config.redis, mode: 'cluster', clusterNodes: inject('redisClusterNodes').map((n) => `${n.host}:${n.port}`), keyPrefix: `e2e${randomBytes(4).toString('hex')}:` }
    : { ...config.redis, mode: 'url', url: opts.redisUrl ?? inject('redisUrl'), keyPrefix: `e2e${randomBytes(4).toString('hex')}:` };
  const target = opts.cluster ? { clusterNodes: inject('redisClusterNodes') } : { url: config.redis.url };
  config.shards = { rooms: 16, users: 16 };
  config.lease = { ttlMs: 3000, renewMs: 500 };
  config.logLevel = (process.env.AXON_TEST_LOG as AxonConfig['logLevel']) ?? 'silent';
  // Tests register and log in many users from one address; a test of the limits turns them on.
  config.rateLimit = { ...config.rateLimit, enabled: false };
  // No federation listener unless a test asks for one (`configure`: federation.enabled, port,
  // certificate, and bindHost on the loopback IP its server name names).
  config.federation = { ...config.federation, enabled: false };
  opts.configure?.(config);
  const problems = validateConfig(config);
  if (problems.length) throw new Error(problems.join('\n'));
  const log = pino({ level: config.logLevel });
  const signingKey = opts.signingKey ?? signingKeyFromSeed('ed25519:e2e', randomBytes(32));
  const keys = new KeySpace(config.redis.keyPrefix);
  const workers: Worker[] = [];
  const pushEvaluators: ShardReader[] = [];
  const senders: { close(): void }[] = [];
  const mediaJobs: RunningMediaJobs[] = [];
  const deletionJobs: { close(): Promise<void> }[] = [];
  const pushParts: { close(): Promise<void> }[] = [];
  for (let i = 0; i < (opts.workers ?? 2); i++) {
    const workerRedis = connectRedis(target);
    // The federation sender, when a test turns federation on (issue 14.6).
    const sender = federationSenderSetup(config, signingKey, log);
    if (sender) senders.push(sender);
    // The appservice actors and readers, when a test configures registrations (issue 22.3).
    const appservices = appserviceSenderSetup(config, workerRedis, log);
    const pushQueue = opts.push ? new PushQueue(workerRedis, keys, shardCountsFor(config), config, log) : undefined;
    if (pushQueue) pushParts.push(pushQueue);
    const readers = allReaders(workerRedis, keys, shardCountsFor(config), `w${i + 1}`, log, { serverName: config.serverName, federation: sender !== null, threadSubscriptions: config.threadSubscriptions.enabled, ...(pushQueue ? { push: pushQueue } : {}), ...(appservices ? { appservices: appservices.registry } : {}) });
    pushEvaluators.push(...readers.filter((r) => r instanceof PushEvaluatorReader));
    const w = new Worker({
      redis: workerRedis, keys, workerId: `w${i + 1}`, shardCounts: shardCountsFor(config),
      kinds: allActorKinds({ serverName: config.serverName, signingKey }, sender?.actor, appservices?.actor), leaseTtlMs: config.lease.ttlMs, renewMs: config.lease.renewMs, log, pollMs: 500,
      readers,
      notify: workerSyncNotify(workerRedis, keys), outboxRetentionMs: SYNC_OUTBOX_RETENTION_MS,
    });
    await w.start();
    workers.push(w);
    if (opts.mediaJobs) mediaJobs.push(await startMediaJobs(config, log, `w${i + 1}`));
    if (opts.push) pushParts.unshift(await startPushSender(config, log, `w${i + 1}`));
    if (opts.roomDeletions) deletionJobs.push(await startRoomDeletionJobs(config, log, `w${i + 1}`, signingKey));
  }
  // The fronts' command connection, with its command timeout as in production (src/front-main.ts).
  const redis = connectRedis(target, frontRedisOptions(config));
  const fronts: RunningFront[] = [];
  for (let i = 0; i < (opts.fronts ?? 1); i++) {
    // Each front on its own free port (in production they share one; here each must be addressable).
    const frontConfig = i === 0 ? config : { ...config, clientPort: await freePort(), federation: { ...config.federation, port: await freePort(config.bindHost) } };
    fronts.push(await startFront(frontConfig, redis, [signingKey], log, `f-${randomBytes(3).toString('hex')}`));
  }
  const front = fronts[0]!;
  const host = config.bindHost === '0.0.0.0' ? '127.0.0.1' : config.bindHost;
  return {
    baseUrl: `http://${host}:${front.port}`,
    federationUrl: front.federationPort ? `https://${host}:${front.federationPort}` : undefined,
    baseUrls: fronts.map((f) => `http://${host}:${f.port}`),
    serverName: config.serverName,
    config,
    redis,
    pushEvaluators,
    signingKey,
    async stop() {
      for (const f of fronts) await f.close();
      for (const j of mediaJobs) await j.close();
      for (const j of deletionJobs) await j.close();
      await Promise.all(workers.map((w) => w.stop()));
      for (const p of pushParts) await p.close();
      for (const s of senders) s.close();
      redis.disconnect();
    },
  };
}
