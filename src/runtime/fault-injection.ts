/**
 * Fault injection for the fault tests, and only for them: with AXON_FAULT=before-commit or
 * after-commit and AXON_FAULT_MATCH=<text>, a worker that reaches that point for a message whose
 * id contains the text logs `fault point reached` and hangs there, so a test can kill -9 it at
 * exactly that moment. Unset (always, outside tests), nothing here runs.
 */
import type { Logger } from 'pino';
import type { RunnerEnv } from './shard-runner';

export function faultPointFromEnv(log: Logger, env = process.env): RunnerEnv['faultPoint'] {
  const point = env.AXON_FAULT;
  const match = env.AXON_FAULT_MATCH;
  if (!point || !match) return undefined;
  if (point !== 'before-commit' && point !== 'after-commit') throw new Error(`AXON_FAULT must be before-commit or after-commit, not ${point}`);
  log.warn({ point, match }, 'fault injection enabled (tests only)');
  return (at, entry) => {
    if (at !== point || !entry.mid.includes(match)) return;
    log.warn({ point, mid: entry.mid }, 'fault point reached');
    return new Promise<void>(() => undefined); // hang until killed
  };
}
