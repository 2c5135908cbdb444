// GET /_matrix/federation/v1/version
import type { Front } from '../../http/server';
import { AXON_VERSION } from '../../version';

export function registerVersionRoute(front: Front): void {
  front.route('GET', '/_matrix/federation/v1/version', () => ({ body: { server: { name: 'Axon', version: AXON_VERSION } } }), { needsStore: false });
}
