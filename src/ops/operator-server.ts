/**
 * The operator dashboard of a process that serves one (the fronts and `npm start`'s one process):
 * `/dashboard` (src/ops/dashboard/) as a handler on the metrics port (`metrics.port`, beside
 * `/metrics`). It reads the cluster state on a Redis connection of its own, so its polls (a few
 * commands per shard each second while someone watches) never queue in front of client requests.
 */
import type { Logger } from 'pino';
import type { AxonConfig } from '../../cluster.config';
import { frontRedisOptions, redisTargetFor, shardCountsFor } from '../runtime/cluster-settings';
import { KeySpace } from '../store/keys';
import { connectRedis } from '../store/redis';
import { createDashboard } from './dashboard/index';
import type { MetricsRouteHandler } from './metrics-server';

export interface OperatorDashboard {
  handler: MetricsRouteHandler;
  close(): void;
}

/** The dashboard's handler when the config names a metrics port; null otherwise (nothing to serve it on). */
export function operatorDashboard(config: AxonConfig, log: Logger): OperatorDashboard | null {
  if (!config.metrics.port) return null;
  const redis = connectRedis(redisTargetFor(config), frontRedisOptions(config));
  const dashboard = createDashboard({ redis, keys: new KeySpace(config.redis.keyPrefix), shardCounts: shardCountsFor(config), leaseTtlMs: config.lease.ttlMs, log: log.child({ component: 'dashboard' }) });
  return {
    handler: dashboard.handler,
    close() {
      dashboard.close();
      redis.disconnect();
    },
  };
}
