/**
 * A front process: `node dist/front-main.js --id f1 [--ready-file path]` (built by scripts/build;
 * `node --import tsx src/front-main.ts` runs the source). Serves HTTP
 * on the configured port; on SIGTERM it drains (answers what is in flight, closes connections)
 * before it exits.
 */
import { writeFileSync } from 'node:fs';
import { argValue, loadConfigOrExit, onShutdown, runMain } from './process-lifecycle';
import { createLogger } from './log';
import { frontRedisOptions, redisTargetFor } from './runtime/cluster-settings';
import { loadOrCreateSigningKeys } from './runtime/signing-key-store';
import { startFront } from './front';
import { operatorDashboard } from './ops/operator-server';
import { connectRedis } from './store/redis';
import { startProcessMetrics } from './ops/process-metrics';

async function main(): Promise<void> {
  const config = loadConfigOrExit();
  const frontId = argValue('--id') ?? `f-${process.pid}`;
  const log = createLogger(config.logLevel, `front-${frontId}`);
  const redis = connectRedis(redisTargetFor(config), frontRedisOptions(config));
  const front = await startFront(config, redis, loadOrCreateSigningKeys(config.signingKeyPath), log, frontId);
  log.info({ front: frontId, port: front.port }, 'front listening');
  // The operator dashboard on the metrics port, beside /metrics. With several fronts on one
  // machine each has its own metrics port (the cluster scripts count up from metrics.port).
  const dashboard = operatorDashboard(config, log);
  const metrics = await startProcessMetrics({ config, role: 'front', id: frontId, log, handlers: dashboard ? [dashboard.handler] : [] });
  // The cluster scripts' rolling restart starts a new front beside the old one (they share the
  // port) and stops the old one only once this file names the new process.
  const readyFile = argValue('--ready-file');
  if (readyFile) writeFileSync(readyFile, String(process.pid));
  onShutdown(async () => {
    await metrics.close();
    dashboard?.close();
    await front.close();
    redis.disconnect();
  });
}

runMain(main);
