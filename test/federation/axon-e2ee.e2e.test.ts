/**
 * End-to-end encryption between two Axon servers with real clients (issue 16.5): the journey of
 * e2ee-journey.ts — SAS verification across servers, an encrypted room, a new device, deleted
 * devices — with Alice (matrix-js-sdk, Rust crypto) on one Axon and Bob on the other.
 */
import { createTestCa } from '../peers/test-ca';
import { describeE2eeJourney, registerOnAxon } from './e2ee-journey';
import { startFederatedAxon } from './harness';

const A_IP = '127.0.0.213';
const B_IP = '127.0.0.214';

describeE2eeJourney('end-to-end encryption between two Axon servers with matrix-js-sdk (Rust crypto)', 'axon-e2ee.e2e', { alice: 'Axon A', bob: 'Axon B' }, false, async () => {
  const ca = createTestCa();
  const [ra, rb] = await Promise.allSettled([startFederatedAxon(A_IP, ca), startFederatedAxon(B_IP, ca)]);
  if (ra.status === 'rejected' || rb.status === 'rejected') {
    await Promise.all([ra, rb].map((r) => (r.status === 'fulfilled' ? r.value.stop() : undefined)));
    ca.cleanup();
    throw ra.status === 'rejected' ? ra.reason : (rb as PromiseRejectedResult).reason;
  }
  const a = ra.value;
  const b = rb.value;
  return {
    alice: { name: 'Axon A', baseUrl: a.baseUrl, register: (localpart, password) => registerOnAxon(a.baseUrl, localpart, password) },
    bob: { name: 'Axon B', baseUrl: b.baseUrl, register: (localpart, password) => registerOnAxon(b.baseUrl, localpart, password) },
    async stop() {
      await Promise.all([a.stop(), b.stop()]);
      ca.cleanup();
    },
  };
});
