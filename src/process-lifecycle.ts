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
 * Run `stop` once on SIGINT/SIGTERM (or when the returned function is called), then exit 0:
 * graceful shutdown finishes in-flight work and releases leases before the process goes.
 */
export function onShutdown(stop: () => Promise<void>): () => Promise<void> {
  let stopping = false;
  const shutdown = async () => {
    if (stopping) return;
    stopping = true;
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
