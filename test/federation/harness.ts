/**
 * Shared set-up for federation e2e tests: an Axon whose server name is an IP literal with the
 * federation listener's port, TLS with a leaf of the test CA, loopback only; and raw HTTPS
 * requests to a federation listener (trusting the test CA).
 */
import { startTestServer, type TestServer } from '../e2e/server-harness';
import type { SigningKey } from '../../src/protocol/crypto';
import { freePort } from '../setup/free-port';
import { createTestCa, type TestCa } from '../../scripts/lib/test-ca';
import { clientsFor, type Clients, type Json } from '../e2e/clients';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { loopbackServerName, startSynapse, synapseInstallation, type SynapsePeer } from '../peers/synapse';

export async function startFederatedAxon(ip: string, ca: TestCa, configure?: Parameters<typeof startTestServer>[0] extends infer O ? (O extends { configure?: infer C } ? C : never) : never, opts: { signingKey?: SigningKey } = {}): Promise<TestServer> {
  const fedPort = await freePort(ip);
  const clientPort = await freePort(ip);
  const leaf = ca.leaf(ip);
  return startTestServer({
    ...opts,
    configure: (c) => {
      c.serverName = `${ip}:${fedPort}`;
      c.bindHost = ip;
      c.clientPort = clientPort;
      c.publicBaseUrl = `http://${ip}:${clientPort}`;
      c.federation = { ...c.federation, enabled: true, port: fedPort, tlsCertPath: leaf.certPath, tlsKeyPath: leaf.keyPath, caPaths: [ca.caPath], ipRangeBlocklist: [] };
      configure?.(c);
    },
  });
}

/**
 * Start `old` (stopped) again: the same server name, ports, Redis prefix and signing key, so to
 * its peers it is the same server back from an outage, with everything it had committed.
 */
export function restartFederatedAxon(old: TestServer, ip: string, ca: TestCa): Promise<TestServer> {
  const was = old.config;
  return startFederatedAxon(
    ip,
    ca,
    (c) => {
      c.serverName = was.serverName;
      c.clientPort = was.clientPort;
      c.publicBaseUrl = was.publicBaseUrl;
      c.federation = { ...c.federation, port: was.federation.port };
      c.redis = { ...c.redis, keyPrefix: was.redis.keyPrefix };
    },
    { signingKey: old.signingKey },
  );
}

/** An Axon and a real Synapse on their own loopback IPs, leaves of one new test CA, started together. */
export interface AxonAndSynapse {
  ca: TestCa;
  axon: TestServer;
  synapse: SynapsePeer;
  clients: Clients;
  stop(): Promise<void>;
}

export async function startAxonAndSynapse(axonIp: string, synapseIp: string, opts: { configureSynapse?: (config: Json) => void } = {}): Promise<AxonAndSynapse> {
  const ca = createTestCa();
  const [ra, rs] = await Promise.allSettled([startFederatedAxon(axonIp, ca), loopbackServerName(synapseIp).then((serverName) => startSynapse({ serverName, ca, ...(opts.configureSynapse ? { configure: opts.configureSynapse } : {}) }))]);
  if (ra.status === 'rejected' || rs.status === 'rejected') {
    await Promise.all([ra.status === 'fulfilled' ? ra.value.stop() : undefined, rs.status === 'fulfilled' ? rs.value.stop() : undefined]);
    ca.cleanup();
    throw ra.status === 'rejected' ? ra.reason : (rs as PromiseRejectedResult).reason;
  }
  const axon = ra.value;
  const synapse = rs.value;
  const clients = await clientsFor(axon);
  return {
    ca, axon, synapse, clients,
    async stop() {
      await clients.close();
      await Promise.all([synapse.stop(), axon.stop()]);
      ca.cleanup();
    },
  };
}

/**
 * Whether a Synapse journey file skips itself: only outside CI and only when Synapse is not
 * installed (in CI `.ci/run` installs it, so a missing Synapse fails the run instead).
 */
export function skipWithoutSynapse(file: string): boolean {
  const install = synapseInstallation();
  const skip = !install.ok && !process.env.CI;
  if (skip) console.warn(`${file}: skipped. ${install.reason}`);
  return skip;
}

/** What a Synapse journey's `describe` gets from `useAxonAndSynapse`. */
export interface SynapseJourney {
  /** The pair; set once the `beforeAll` registered by `useAxonAndSynapse` has run. */
  readonly pair: AxonAndSynapse;
  /** Lines printed together after the file, e.g. "Synapse user joined in 190 ms". */
  readonly figures: string[];
  /** Runs `f` and records how long it took under `label` in `figures`. */
  timed<T>(label: string, f: () => Promise<T>): Promise<T>;
}

/**
 * The set-up every Synapse journey file shares, registered in the calling `describe`: an Axon and
 * a Synapse started before its tests (hooks run in the order registered, so the caller's own
 * `beforeAll` after this call sees the pair), their figures printed and both stopped after them,
 * and the tail of Synapse's log printed when a test fails (what Synapse said is usually the reason).
 */
export function useAxonAndSynapse(file: string, axonIp: string, synapseIp: string, opts: { configureSynapse?: (config: Json) => void; logLines?: number; logFilter?: (line: string) => boolean } = {}): SynapseJourney {
  let pair: AxonAndSynapse | undefined;
  const figures: string[] = [];
  beforeAll(async () => {
    pair = await startAxonAndSynapse(axonIp, synapseIp, opts.configureSynapse ? { configureSynapse: opts.configureSynapse } : {});
  }, 180_000);
  afterAll(async () => {
    if (figures.length) console.log(`${file} figures:\n  ${figures.join('\n  ')}`);
    await pair?.stop();
  });
  afterEach(({ task }) => {
    if (task.result?.state !== 'fail' || !pair) return;
    const lines = opts.logLines ?? 60;
    const tail = opts.logFilter ? pair.synapse.logTail(5000).split('\n').filter(opts.logFilter).slice(-lines).join('\n') : pair.synapse.logTail(lines);
    console.error(`${pair.synapse.serverName} logs:\n${tail}`);
  });
  return {
    get pair() {
      if (!pair) throw new Error(`${file}: the Axon and Synapse pair is not started (used outside a test or hook?)`);
      return pair;
    },
    figures,
    async timed(label, f) {
      const started = performance.now();
      const v = await f();
      figures.push(`${label}: ${Math.round(performance.now() - started)} ms`);
      return v;
    },
  };
}

export { fedRequest, type RawAnswer } from '../../scripts/lib/signing-peer';
