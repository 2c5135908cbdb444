/**
 * `npm start`: one process that runs a whole dev homeserver on http://localhost:8008 with a
 * managed local Redis (AOF on). The cluster scripts run the same parts as separate processes.
 */
import { Redis } from 'ioredis';
import { join } from 'node:path';
import { ConfigError, loadConfig, type AxonConfig } from '../cluster.config';
import { createLogger } from './log';
import { startManagedRedis, type ManagedRedis } from './runtime/managed-redis';
import { loadOrCreateSigningKeys } from './runtime/signing-key-store';
import { Front } from './http/server';
import { registerVersionRoutes } from './api/client/versions';
import { registerKeyRoutes } from './api/federation/keys';

export interface RunningServer {
  config: AxonConfig;
  port: number;
  redisUrl: string;
  stop(): Promise<void>;
}

export async function startServer(config: AxonConfig): Promise<RunningServer> {
  const log = createLogger(config.logLevel, 'axon');
  let managed: ManagedRedis | null = null;
  let redisUrl = config.redis.url;
  if (config.redis.mode === 'managed') {
    managed = await startManagedRedis({ dir: join(config.dataDir, 'redis'), port: config.redis.managedPort });
    redisUrl = managed.url;
    log.info({ url: redisUrl, redis_pid: managed.pid, started: managed.started }, 'managed redis ready');
  }
  const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 3 });
  await redis.connect();
  await redis.ping();

  const keys = loadOrCreateSigningKeys(config.signingKeyPath);
  log.info({ key_id: keys[0]!.keyId, public_key: keys[0]!.publicKeyBase64 }, 'signing key loaded');

  const front = new Front({ host: config.bindHost, port: config.clientPort, logger: log });
  registerVersionRoutes(front, config.publicBaseUrl);
  registerKeyRoutes(front, config.serverName, keys, config.keyValidityMs);
  const port = await front.listen();
  log.info({ server_name: config.serverName, url: `http://${config.bindHost}:${port}` }, 'axon listening');

  return {
    config,
    port,
    redisUrl,
    async stop() {
      front.close();
      redis.disconnect();
      if (managed?.started) await managed.stop();
    },
  };
}

async function main(): Promise<void> {
  let config: AxonConfig;
  try {
    config = loadConfig();
  } catch (e) {
    if (e instanceof ConfigError) {
      console.error(e.message);
      process.exit(2);
    }
    throw e;
  }
  const server = await startServer(config);
  let stopping = false;
  const shutdown = async () => {
    if (stopping) return;
    stopping = true;
    await server.stop();
    process.exit(0);
  };
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((e) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  });
}
