/**
 * What every process entry (src/main.ts, src/front-main.ts, src/worker-main.ts) does for its
 * metrics: say what it is (`axon_process_info`), let the federation gauges read the destination
 * actors its worker holds, and serve `/metrics` when `metrics.port` is set.
 */
import type { Logger } from 'pino';
import type { AxonConfig } from '../../cluster.config';
import { DESTINATION_KIND } from '../../actors/destination';
import { destinationStats } from '../federation/sender/metrics';
import type { Worker } from '../runtime/worker';
import { AXON_VERSION } from '../version';
import { destinationSources, federationTransactions, processInfo } from './metrics';
import { startConfiguredMetricsServer, type MetricsRouteHandler, type RunningMetricsServer } from './metrics-server';

export interface ProcessMetricsOptions {
  config: AxonConfig;
  role: 'main' | 'front' | 'worker';
  id: string;
  log: Logger;
  /** The process's worker, when it runs one (its destination actors feed the federation gauges). */
  worker?: Worker;
  /** More routes on the metrics port (the operator dashboard). */
  handlers?: MetricsRouteHandler[];
}

export interface ProcessMetrics {
  /** The metrics server, or null when `metrics.port` is 0. */
  server: RunningMetricsServer | null;
  close(): Promise<void>;
}

export async function startProcessMetrics(o: ProcessMetricsOptions): Promise<ProcessMetrics> {
  processInfo.set({ role: o.role, id: o.id, version: AXON_VERSION }, 1);
  const worker = o.worker;
  if (worker) for (const outcome of ['ok', 'retry', 'refused']) federationTransactions.inc({ outcome }, 0);
  const removeSource = worker ? destinationSources.add(() => destinationStats(worker.cachedActorStates(DESTINATION_KIND))) : null;
  const server = await startConfiguredMetricsServer(o.config.metrics, o.handlers, o.log);
  return {
    server,
    async close() {
      removeSource?.();
      await server?.close();
    },
  };
}
