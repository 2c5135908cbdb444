/**
 * The operator's port of a process (`metrics.port` / `AXON_METRICS_PORT`; off when 0): the
 * dashboard (src/ops/dashboard/) on the metrics server. It reads the cluster state on a Redis
 * connection of its own, so its polls (a few commands per shard each second while someone
 * watches) never queue in front of client requests.
 */
import type { Logger } from 'pino';
import type { AxonConfig } from '../../cluster.config';
import { frontRedisOptions, redisTargetFor, shardCountsFor } from '../runtime/cluster-settings';
import { KeySpace } from '../store/keys';
import { connectRedis } from '../store/redis';
import { createDashboard } from './dashboard/index';
import { startMetricsServer } from './metrics-server';

export interface RunningOperatorServer {
  port: number;
  close(): Promise<void>;
}

/** Start it when the config names a port; null otherwise. */
export async function startOperatorServer(config: AxonConfig, log: Logger): Promise<RunningOperatorServer | null> {
  if (!config.metrics.port) return null;
  const redis = connectRedis(redisTargetFor(config), frontRedisOptions(config));
  const dashboard = createDashboard({ redis, keys: new KeySpace(config.redis.keyPrefix), shardCounts: shardCountsFor(config), leaseTtlMs: config.lease.ttlMs, log: log.child({ component: 'dashboard' }) });
  try {
    const server = await startMetricsServer({ port: config.metrics.port, host: config.bindHost, handlers: [dashboard.handler] });
    log.info({ url: `http://${config.bindHost}:${server.port}/dashboard` }, 'operator dashboard listening');
    return {
      port: server.port,
      async close() {
        dashboard.close();
        await server.close();
        redis.disconnect();
      },
    };
  } catch (err) {
    dashboard.close();
    redis.disconnect();
    throw err;
  }
}
