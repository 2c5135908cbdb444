import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    reporters: ['default', './test/setup/summary-reporter.ts'],
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/**/*.unit.test.ts'],
          setupFiles: ['test/setup/ed25519-signer.ts'],
          // Some pure tests do real work (thousands of random globs against a reference, thumbnails):
          // on a loaded 2-core CI machine the default 5 s is a timing assertion, which tests must not make.
          testTimeout: 60_000,
        },
      },
      {
        test: {
          name: 'redis',
          include: ['test/**/*.redis.test.ts', 'test/**/*.e2e.test.ts'],
          // One real redis-server for the run, on a free loopback port; each test file uses
          // its own key prefix so files can run in parallel against it.
          globalSetup: ['test/setup/redis-global.ts'],
          setupFiles: ['test/setup/node20-polyfills.ts', 'test/setup/ed25519-signer.ts'],
          testTimeout: 60_000,
          hookTimeout: 60_000,
        },
      },
      // `npm run test:hosts` only (AXON_HOSTS=1; not in `npm test`): needs root for network
      // namespaces and takes minutes. Skips itself with the reason when it cannot build the bed.
      ...(process.env.AXON_HOSTS ? [{
        test: {
          name: 'hosts',
          include: ['test/**/*.hosts.test.ts'],
          setupFiles: ['test/setup/node20-polyfills.ts', 'test/setup/ed25519-signer.ts'],
          testTimeout: 600_000,
          hookTimeout: 600_000,
        },
      }] : []),
    ],
  },
});
