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
import { loopbackServerName, startSynapse, type SynapsePeer } from '../peers/synapse';

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

export { fedRequest, type RawAnswer } from '../../scripts/lib/signing-peer';
