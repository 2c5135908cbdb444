/** `GET /_matrix/client/versions` and `/.well-known/matrix/client`. */
import type { Front } from '../../http/server';

/** Spec versions whose Client-Server API we speak. */
export const SPEC_VERSIONS = ['r0.0.1', 'r0.1.0', 'r0.2.0', 'r0.3.0', 'r0.4.0', 'r0.5.0', 'r0.6.0', 'r0.6.1', 'v1.1', 'v1.2', 'v1.3', 'v1.4', 'v1.5', 'v1.6', 'v1.7', 'v1.8', 'v1.9', 'v1.10', 'v1.11', 'v1.12'];

export function registerVersionRoutes(front: Front, publicBaseUrl: string): void {
  // Static answers: served while Redis is unreachable too (clients' connectivity checks call
  // /versions; whether the server can serve is for /health and the 503s of the other endpoints).
  front.route('GET', '/_matrix/client/versions', () => ({ body: { versions: SPEC_VERSIONS, unstable_features: {} } }), { needsStore: false });
  front.route('GET', '/.well-known/matrix/client', () => ({ body: { 'm.homeserver': { base_url: publicBaseUrl } } }), { needsStore: false });
}
