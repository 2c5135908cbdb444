/**
 * Shared set-up for federation e2e tests: an Axon whose server name is an IP literal with the
 * federation listener's port, TLS with a leaf of the test CA, loopback only; and raw HTTPS
 * requests to a federation listener (trusting the test CA).
 */
import { startTestServer, type TestServer } from '../e2e/server-harness';
import { freePort } from '../setup/free-port';
import type { TestCa } from '../../scripts/lib/test-ca';

export async function startFederatedAxon(ip: string, ca: TestCa, configure?: Parameters<typeof startTestServer>[0] extends infer O ? (O extends { configure?: infer C } ? C : never) : never): Promise<TestServer> {
  const fedPort = await freePort(ip);
  const clientPort = await freePort(ip);
  const leaf = ca.leaf(ip);
  return startTestServer({
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

export { fedRequest, type RawAnswer } from '../../scripts/lib/signing-peer';
