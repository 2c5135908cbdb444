/**
 * A worker process: `node dist/worker-main.js --id w1` (or `tsx src/worker-main.ts`). Holds shard leases and runs actors until
 * SIGTERM (graceful: finishes in-flight messages and releases its leases) or until an operator's
 * `npm run cluster -- drain` has moved its shards away and asks it to stop.
 */
import { argValue, loadConfigOrExit, onShutdown, runMain } from './process-lifecycle';
import { createLogger } from './log';
import { Worker } from './runtime/worker';
import { allActorKinds } from './runtime/kinds';
import { allReaders } from './readers/index';
import { KeySpace } from './store/keys';
import { connectRedis } from './store/redis';
import { redisTargetFor, shardCountsFor } from './runtime/cluster-settings';
import { faultPointFromEnv } from './runtime/fault-injection';
import { loadOrCreateSigningKeys } from './runtime/signing-key-store';
import { SYNC_OUTBOX_RETENTION_MS, workerSyncNotify } from './sync/notify';
import { federationSenderSetup } from './federation/sender/setup';
import { appserviceSenderSetup } from './appservice/sender-setup';
import { startMediaJobs } from './media/jobs';
import { startRoomDeletionJobs } from './rooms/room-deletion-jobs';
import { PushQueue } from './push/queue';
import { startPushSender } from './push/sender';
import { startProcessMetrics, type ProcessMetrics } from './ops/process-metrics';

async function main(): Promise<void> {
  const config = loadConfigOrExit();
  const workerId = argValue('--id') ?? process.env.AXON_WORKER_ID ?? `w-${process.pid}`;
  const log = createLogger(config.logLevel, `worker-${workerId}`);
  const redis = connectRedis(redisTargetFor(config));
  // The readers get a connection of their own: the push evaluator's writes for a big room are many
  // commands, and on a shared connection every actor commit would queue behind them.
  const readerRedis = connectRedis(redisTargetFor(config));
  const signingKey = loadOrCreateSigningKeys(config.signingKeyPath)[0]!;
  // The federation sender's destination actors and reader, when federation is on (issue 14.6).
  const sender = federationSenderSetup(config, signingKey, log);
  // The appservice actors and readers, when registrations are configured (issue 22.3).
  const appservices = appserviceSenderSetup(config, redis, log);
  // Pushes to phones: the evaluator queues, the sender (below) delivers (src/push/).
  const pushQueue = new PushQueue(readerRedis, new KeySpace(config.redis.keyPrefix), shardCountsFor(config), config, log);
  const worker: Worker = new Worker({
    redis,
    keys: new KeySpace(config.redis.keyPrefix),
    workerId,
    shardCounts: shardCountsFor(config),
    kinds: allActorKinds({ serverName: config.serverName, signingKey }, sender?.actor, appservices?.actor),
    leaseTtlMs: config.lease.ttlMs,
    renewMs: config.lease.renewMs,
    replicaWait: { replicas: config.redis.waitReplicas, timeoutMs: config.redis.waitTimeoutMs },
    log,
    faultPoint: faultPointFromEnv(log),
    onStopRequested: () => void shutdown(),
    notify: workerSyncNotify(redis, new KeySpace(config.redis.keyPrefix)),
    outboxRetentionMs: SYNC_OUTBOX_RETENTION_MS,
    readers: allReaders(readerRedis, new KeySpace(config.redis.keyPrefix), shardCountsFor(config), workerId, log, { serverName: config.serverName, federation: sender !== null, push: pushQueue, threadSubscriptions: config.threadSubscriptions.enabled, ...(appservices ? { appservices: appservices.registry } : {}) }),
  });
  // The media queue (pre-generated thumbnails, retention): bullmq gives each job to one worker.
  const mediaJobs = await startMediaJobs(config, log, workerId);
  const pushSender = await startPushSender(config, log, workerId);
  // Admins' room deletions (DELETE /_synapse/admin/v2/rooms/…): bullmq gives each to one worker.
  const roomDeletions = await startRoomDeletionJobs(config, log, workerId, signingKey);
  let metrics: ProcessMetrics | null = null;
  const shutdown = onShutdown(async () => {
    log.info({ worker: workerId }, 'stopping');
    await metrics?.close();
    await mediaJobs.close();
    await roomDeletions.close();
    await worker.stop();
    await pushSender.close();
    await pushQueue.close();
    sender?.close();
    redis.disconnect();
    readerRedis.disconnect();
  });
  await worker.start();
  metrics = await startProcessMetrics({ config, role: 'worker', id: workerId, log, worker });
  log.info({ worker: workerId, shards: worker.owned().length }, 'worker started');
}

runMain(main);
