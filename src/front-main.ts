/**
 * A front process: `node --import tsx src/front-main.ts --id f1 [--ready-file path]`. Serves HTTP
 * on the configured port; on SIGTERM it drains (answers what is in flight, closes connections)
 * before it exits.
 */
import { writeFileSync } from 'node:fs';
import { argValue, loadConfigOrExit, onShutdown, runMain } from './process-lifecycle';
import { createLogger } from './log';
import { frontRedisOptions, redisTargetFor } from './runtime/cluster-settings';
import { loadOrCreateSigningKeys } from './runtime/signing-key-store';
import { startFront } from './front';
import { startOperatorServer } from './ops/operator-server';
import { connectRedis } from './store/redis';

async function main(): Promise<void> {
  const config = loadConfigOrExit();
  const frontId = argValue('--id') ?? `f-${process.pid}`;
  const log = createLogger(config.logLevel, `front-${frontId}`);
  const redis = connectRedis(redisTargetFor(config), frontRedisOptions(config));
  const front = await startFront(config, redis, loadOrCreateSigningKeys(config.signingKeyPath), log, frontId);
  log.info({ front: frontId, port: front.port }, 'front listening');
  // The operator dashboard (metrics.port): a front serves it; with several fronts on one machine
  // only the first to bind the port does, and the others carry on without it.
  const operator = await startOperatorServer(config, log).catch((err) => {
    log.error({ err, port: config.metrics.port }, 'operator dashboard not started');
    return null;
  });
  // The cluster scripts' rolling restart starts a new front beside the old one (they share the
  // port) and stops the old one only once this file names the new process.
  const readyFile = argValue('--ready-file');
  if (readyFile) writeFileSync(readyFile, String(process.pid));
  onShutdown(async () => {
    await operator?.close();
    await front.close();
    redis.disconnect();
  });
}

runMain(main);
