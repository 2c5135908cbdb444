/**
 * End-to-end encryption between Axon and a real Synapse with real clients (issue 16.5): the
 * journey of e2ee-journey.ts — SAS verification across servers, an encrypted room, a new device,
 * deleted devices — with Alice (matrix-js-sdk, Rust crypto) on Axon and Bob on Synapse, then the
 * other way round (the room created on Synapse and joined from Axon).
 */
import { SYNAPSE_VERSION, synapseInstallation } from '../peers/synapse';
import { describeE2eeJourney, registerOnAxon } from './e2ee-journey';
import { startAxonAndSynapse, type AxonAndSynapse } from './harness';

const install = synapseInstallation();
const skip = !install.ok && !process.env.CI;
if (skip && !install.ok) console.warn(`synapse-e2ee.e2e: skipped. ${install.reason}`);

const A_IP = '127.0.0.211';
const S_IP = '127.0.0.212';
const A2_IP = '127.0.0.215';
const S2_IP = '127.0.0.216';

const synapseLogs = (s: AxonAndSynapse['synapse']) => () =>
  s.logTail(8000).split('\n').filter((l) => /federation|keys|device|WARN|ERROR|edu|signing/i.test(l) && !l.includes('v3/sync') && !l.includes('background_updates')).slice(-120).join('\n');

describeE2eeJourney(`end-to-end encryption between Axon and Synapse ${SYNAPSE_VERSION} with matrix-js-sdk (Rust crypto)`, 'synapse-e2ee.e2e', { alice: 'Axon', bob: 'Synapse' }, skip, async () => {
  const pair = await startAxonAndSynapse(A_IP, S_IP);
  const s = pair.synapse;
  return {
    alice: { name: 'Axon', baseUrl: pair.axon.baseUrl, register: (localpart, password) => registerOnAxon(pair.axon.baseUrl, localpart, password) },
    bob: {
      name: 'Synapse',
      baseUrl: s.baseUrl,
      register: (localpart, password) => s.registerUser(localpart, password),
      logs: synapseLogs(s),
    },
    stop: () => pair.stop(),
  };
});

// The other way round: Alice on Synapse creates the room, Bob on Axon joins it over federation
// (Axon's remote join), and the new device is a Synapse one that Axon's client must learn of.
describeE2eeJourney(`end-to-end encryption between Synapse ${SYNAPSE_VERSION} and Axon with matrix-js-sdk (Rust crypto), the room on Synapse`, 'synapse-e2ee.e2e (room on Synapse)', { alice: 'Synapse', bob: 'Axon' }, skip, async () => {
  const pair = await startAxonAndSynapse(A2_IP, S2_IP);
  const s = pair.synapse;
  return {
    alice: { name: 'Synapse', baseUrl: s.baseUrl, register: (localpart, password) => s.registerUser(localpart, password), logs: synapseLogs(s) },
    bob: { name: 'Axon', baseUrl: pair.axon.baseUrl, register: (localpart, password) => registerOnAxon(pair.axon.baseUrl, localpart, password) },
    stop: () => pair.stop(),
  };
});
