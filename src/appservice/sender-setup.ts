/**
 * What a worker process needs to push transactions to the application services (issue 22.3),
 * built once from the configuration by every place that starts workers (src/worker-main.ts,
 * src/main.ts, the e2e harness): the registrations, and the appservice actors' options (the
 * HTTP transport over a Redis connection that reads the events it sends, the retry limits of
 * `appservices.sender`). Null when no registration file is configured: no actors, no readers.
 */
import type { Logger } from 'pino';
import type { AxonConfig } from '../../cluster.config';
import type { AppserviceActorOptions } from '../../actors/appservice';
import { shardCountsFor } from '../runtime/cluster-settings';
import { KeySpace } from '../store/keys';
import type { RedisClient } from '../store/redis';
import { AppserviceRegistry } from './registration';
import { AppserviceHttpTransport } from './transport';

export interface AppserviceSenderSetup {
  registry: AppserviceRegistry;
  /** For allActorKinds(…, appservice). */
  actor: AppserviceActorOptions;
}

export function appserviceSenderSetup(config: AxonConfig, redis: RedisClient, log: Logger): AppserviceSenderSetup | null {
  if (config.appservices.configFiles.length === 0) return null;
  const registry = AppserviceRegistry.load(config.appservices.configFiles, config.serverName);
  const keys = new KeySpace(config.redis.keyPrefix);
  const s = config.appservices.sender;
  return {
    registry,
    actor: {
      transport: new AppserviceHttpTransport(registry, redis, keys, shardCountsFor(config).room, log.child({ component: 'appservice-sender' })),
      keys,
      limits: { minRetryMs: s.backoffStartMs, maxRetryMs: s.backoffMaxMs },
    },
  };
}
