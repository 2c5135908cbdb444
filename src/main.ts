/**
 * `npm start`: one process that runs a whole dev homeserver on http://localhost:8008 — a managed
 * local Redis (AOF on), a worker owning every shard, and a front. The cluster scripts run the
 * same parts as separate processes (src/worker-main.ts, src/front-main.ts).
 */
import { join } from 'node:path';
import type { AxonConfig } from '../cluster.config';
import { loadConfigOrExit, onShutdown, runMain } from './process-lifecycle';
import { createLogger } from './log';
import { startManagedRedis, type ManagedRedis } from './runtime/managed-redis';
import { loadOrCreateSigningKeys } from './runtime/signing-key-store';
import { frontRedisOptions, redisTargetFor, shardCountsFor } from './runtime/cluster-settings';
import { allActorKinds } from './runtime/kinds';
import { allReaders } from './readers/index';
import { Worker } from './runtime/worker';
import { startFront } from './front';
import { operatorDashboard } from './ops/operator-server';
import { KeySpace } from './store/keys';
import { connectRedis } from './store/redis';
import { SYNC_OUTBOX_RETENTION_MS, workerSyncNotify } from './sync/notify';
import { federationSenderSetup } from './federation/sender/setup';
import { appserviceSenderSetup } from './appservice/sender-setup';
import { PushQueue } from './push/queue';
import { startPushSender } from './push/sender';
import { startRoomDeletionJobs } from './rooms/room-deletion-jobs';
import { startProcessMetrics } from './ops/process-metrics';

export interface RunningServer {
  config: AxonConfig;
  port: number;
  /** The metrics port (`GET /metrics`), or null when `metrics.port` is 0. */
  metricsPort: number | null;
  redisUrl: string;
  stop(): Promise<void>;
}

export async function startServer(config: AxonConfig): Promise<RunningServer> {
  const log = createLogger(config.logLevel, 'axon');
  let managed: ManagedRedis | null = null;
  if (config.redis.mode === 'managed') {
    managed = await startManagedRedis({ dir: join(config.dataDir, 'redis'), port: config.redis.managedPort, onLoading: (seconds) => log.info({ seconds }, 'managed redis is still loading its data (AOF replay)') });
    log.info({ url: managed.url, redis_pid: managed.pid, started: managed.started }, 'managed redis ready');
  }
  const target = redisTargetFor(config);
  // The front's command connection: its commands time out instead of waiting out a Redis stall.
  const redis = connectRedis(target, frontRedisOptions(config));
  await redis.ping();

  const keys = loadOrCreateSigningKeys(config.signingKeyPath);
  log.info({ key_id: keys[0]!.keyId, public_key: keys[0]!.publicKeyBase64 }, 'signing key loaded');

  const workerRedis = connectRedis(target);
  // The federation sender's destination actors and reader, when federation is on (issue 14.6).
  const sender = federationSenderSetup(config, keys[0]!, log);
  // The appservice actors and readers, when registrations are configured (issue 22.3).
  const appservices = appserviceSenderSetup(config, workerRedis, log);
  // The readers get a connection of their own: the push evaluator's writes for a big room are many
  // commands, and on a shared connection every actor commit would queue behind them.
  const readerRedis = connectRedis(target);
  // Pushes to phones: the evaluator queues, the sender delivers (src/push/).
  const pushQueue = new PushQueue(readerRedis, new KeySpace(config.redis.keyPrefix), shardCountsFor(config), config, log);
  const worker = new Worker({
    redis: workerRedis,
    keys: new KeySpace(config.redis.keyPrefix),
    workerId: 'main',
    shardCounts: shardCountsFor(config),
    kinds: allActorKinds({ serverName: config.serverName, signingKey: keys[0]! }, sender?.actor, appservices?.actor),
    leaseTtlMs: config.lease.ttlMs,
    renewMs: config.lease.renewMs,
    log,
    notify: workerSyncNotify(workerRedis, new KeySpace(config.redis.keyPrefix)),
    outboxRetentionMs: SYNC_OUTBOX_RETENTION_MS,
    readers: allReaders(readerRedis, new KeySpace(config.redis.keyPrefix), shardCountsFor(config), 'main', log, { serverName: config.serverName, federation: sender !== null, push: pushQueue, threadSubscriptions: config.threadSubscriptions.enabled, ...(appservices ? { appservices: appservices.registry } : {}) }),
  });
  await worker.start();
  const pushSender = await startPushSender(config, log, 'main');
  const roomDeletions = await startRoomDeletionJobs(config, log, 'main', keys[0]!);
  const front = await startFront(config, redis, keys, log, 'main');
  const dashboard = operatorDashboard(config, log);
  const metrics = await startProcessMetrics({ config, role: 'main', id: 'main', log, worker, handlers: dashboard ? [dashboard.handler] : [] });
  log.info({ server_name: config.serverName, url: `http://${config.bindHost}:${front.port}`, federation: front.federationPort ? `https://${config.bindHost}:${front.federationPort}` : 'off', shards: worker.owned().length }, 'axon listening');

  return {
    config,
    port: front.port,
    metricsPort: metrics.server?.port ?? null,
    redisUrl: target.url ?? '',
    async stop() {
      await metrics.close();
      dashboard?.close();
      await front.close();
      await roomDeletions.close();
      await worker.stop();
      await pushSender.close();
      await pushQueue.close();
      sender?.close();
      redis.disconnect();
      workerRedis.disconnect();
      readerRedis.disconnect();
      if (managed?.started) await managed.stop();
    },
  };
}

async function main(): Promise<void> {
  const server = await startServer(loadConfigOrExit());
  onShutdown(() => server.stop());
}

if (import.meta.url === `file://${process.argv[1]}`) runMain(main);
