/**
 * A worker process: `tsx src/worker-main.ts --id w1`. Holds shard leases and runs actors until
 * SIGTERM (graceful: finishes in-flight messages and releases its leases) or an operator's
 * `cluster stop`/`drain`.
 */
import { ConfigError, loadConfig } from '../cluster.config';
import { createLogger } from './log';
import { Worker } from './runtime/worker';
import { allActorKinds } from './runtime/kinds';
import { KeySpace } from './store/keys';
import { connectRedis } from './store/redis';
import { redisTargetFor, shardCountsFor } from './runtime/cluster-settings';
import { faultPointFromEnv } from './runtime/fault-injection';

function argValue(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (e) {
    if (e instanceof ConfigError) {
      console.error(e.message);
      process.exit(2);
    }
    throw e;
  }
  const workerId = argValue('--id') ?? process.env.AXON_WORKER_ID ?? `w-${process.pid}`;
  const log = createLogger(config.logLevel, `worker-${workerId}`);
  const redis = connectRedis(redisTargetFor(config));
  const worker = new Worker({
    redis,
    keys: new KeySpace(config.redis.keyPrefix),
    workerId,
    shardCounts: shardCountsFor(config),
    kinds: allActorKinds(),
    leaseTtlMs: config.lease.ttlMs,
    renewMs: config.lease.renewMs,
    log,
    faultPoint: faultPointFromEnv(log),
    onStopRequested: () => void shutdown(),
  });
  let stopping = false;
  const shutdown = async () => {
    if (stopping) return;
    stopping = true;
    log.info({ worker: workerId }, 'stopping');
    await worker.stop();
    redis.disconnect();
    process.exit(0);
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
  await worker.start();
  log.info({ worker: workerId, shards: worker.owned().length }, 'worker started');
}

main().catch((e) => {
  console.error(e instanceof Error ? e.stack : e);
  process.exit(1);
});
