/** A front process: `tsx src/front-main.ts --id f1`. Serves HTTP on the configured port. */
import { argValue, loadConfigOrExit, onShutdown, runMain } from './process-lifecycle';
import { createLogger } from './log';
import { frontRedisOptions, redisTargetFor } from './runtime/cluster-settings';
import { loadOrCreateSigningKeys } from './runtime/signing-key-store';
import { startFront } from './front';
import { connectRedis } from './store/redis';

async function main(): Promise<void> {
  const config = loadConfigOrExit();
  const frontId = argValue('--id') ?? `f-${process.pid}`;
  const log = createLogger(config.logLevel, `front-${frontId}`);
  const redis = connectRedis(redisTargetFor(config), frontRedisOptions(config));
  const front = await startFront(config, redis, loadOrCreateSigningKeys(config.signingKeyPath), log, frontId);
  log.info({ front: frontId, port: front.port }, 'front listening');
  onShutdown(async () => {
    await front.close();
    redis.disconnect();
  });
}

runMain(main);
