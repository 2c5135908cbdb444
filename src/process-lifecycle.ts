/** What every Axon process entry (npm start, worker, front) does the same way at start and stop. */
import { ConfigError, loadConfig, type AxonConfig } from '../cluster.config';
import { installNativeEd25519Signer } from './crypto/ed25519-native';

/** Load and validate the configuration; on problems print them, one per line, and exit 2. */
export function loadConfigOrExit(): AxonConfig {
  try {
    return loadConfig();
  } catch (e) {
    if (e instanceof ConfigError) {
      console.error(e.message);
      process.exit(2);
    }
    throw e;
  }
}

/**
 * How long a graceful stop may take before the process exits anyway (ms). A stop that cannot
 * finish — its Redis unreachable, each lease release and acknowledgement retried without end —
 * kept a worker running for good after SIGTERM (seen: workers a failed benchmark left behind,
 * and a worker stopped with its Redis down, still running 45 s after the signal). Exiting then
 * loses nothing: a lease runs out on its own and a message not acknowledged stays pending for
 * the next holder. Longer than a front's 5 s of grace for its asks; the cluster scripts send
 * SIGKILL after 20 s, so this is for processes they do not manage (`npm start`, a service manager).
 */
export const SHUTDOWN_DEADLINE_MS = 15_000;

/**
 * Run `stop` once on SIGINT/SIGTERM (or when the returned function is called), then exit 0:
 * graceful shutdown finishes in-flight work and releases leases before the process goes. A stop
 * still running after `deadlineMs` exits 1 instead, saying so.
 */
export function onShutdown(stop: () => Promise<void>, deadlineMs = SHUTDOWN_DEADLINE_MS): () => Promise<void> {
  let stopping = false;
  const shutdown = async () => {
    if (stopping) return;
    stopping = true;
    setTimeout(() => {
      console.error(`the graceful stop did not finish within ${deadlineMs / 1000} s; exiting without it`);
      process.exit(1);
    }, deadlineMs).unref();
    await stop();
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown());
  process.on('SIGTERM', () => void shutdown());
  return shutdown;
}

/** The value after `--name` on the command line. */
export function argValue(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

/**
 * Run a process entry's main, printing a failure and exiting 1. First installs libsodium as the
 * ed25519 signer where it loads (src/crypto/ed25519-native.ts): every entry signs the same way.
 */
export function runMain(main: () => Promise<void>): void {
  installNativeEd25519Signer();
  main().catch((e) => {
    console.error(e instanceof Error ? (e.stack ?? e.message) : e);
    process.exit(1);
  });
}
