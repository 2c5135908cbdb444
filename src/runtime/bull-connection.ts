/**
 * A Redis connection of bullmq's own, for the cluster's job queues (media jobs, push sends):
 * bullmq needs `maxRetriesPerRequest: null` and blocking commands, so it never shares the
 * process's command connection. bullmq does not close a connection it was given: the caller
 * disconnects it after closing its queue or worker.
 */
import { Cluster, Redis } from 'ioredis';
import type { AxonConfig } from '../../cluster.config';
import { redisTargetFor } from './cluster-settings';

export function bullConnection(config: AxonConfig): Redis | Cluster {
  const target = redisTargetFor(config);
  const c = target.clusterNodes?.length ? new Cluster(target.clusterNodes, { redisOptions: { maxRetriesPerRequest: null }, scaleReads: 'master' }) : new Redis(target.url!, { maxRetriesPerRequest: null });
  c.on('error', () => undefined);
  return c;
}
