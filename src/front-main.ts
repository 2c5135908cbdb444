/** A front process: `tsx src/front-main.ts --id f1`. Serves HTTP on the configured port. */
import { ConfigError, loadConfig } from '../cluster.config';
import { createLogger } from './log';
import { redisTargetFor } from './runtime/cluster-settings';
import { loadOrCreateSigningKeys } from './runtime/signing-key-store';
import { startFront } from './front';
import { connectRedis } from './store/redis';

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
  const i = process.argv.indexOf('--id');
  const frontId = i >= 0 ? process.argv[i + 1]! : `f-${process.pid}`;
  const log = createLogger(config.logLevel, `front-${frontId}`);
  const redis = connectRedis(redisTargetFor(config));
  const front = await startFront(config, redis, loadOrCreateSigningKeys(config.signingKeyPath), log, frontId);
  log.info({ front: frontId, port: front.port }, 'front listening');
  let stopping = false;
  const shutdown = async () => {
    if (stopping) return;
    stopping = true;
    await front.close();
    redis.disconnect();
    process.exit(0);
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
}

main().catch((e) => {
  console.error(e instanceof Error ? e.stack : e);
  process.exit(1);
});
