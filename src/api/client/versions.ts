/** `GET /_matrix/client/versions` and `/.well-known/matrix/client`. */
import type { Front } from '../../http/server';

/**
 * Spec versions whose Client-Server API we speak. What v1.13–v1.16 added and Axon has: room and
 * user reports (v1.13, v1.14), `/v1/room_summary` and the rich `m.topic` (v1.15), extended profile
 * fields and room version 12 with its stripped create event (v1.16). The optional OAuth 2.0 API
 * (v1.15) is absent, which a server may leave out. docs/conformance.md lists what is partial.
 */
export const SPEC_VERSIONS = ['r0.0.1', 'r0.1.0', 'r0.2.0', 'r0.3.0', 'r0.4.0', 'r0.5.0', 'r0.6.0', 'r0.6.1', 'v1.1', 'v1.2', 'v1.3', 'v1.4', 'v1.5', 'v1.6', 'v1.7', 'v1.8', 'v1.9', 'v1.10', 'v1.11', 'v1.12', 'v1.13', 'v1.14', 'v1.15', 'v1.16'];

/**
 * The MSCs Axon implements that clients look for here (names as Synapse advertises them): only
 * what works, so clients do not use what is not there.
 */
export const UNSTABLE_FEATURES: Readonly<Record<string, boolean>> = {
  // Event filters' `org.matrix.msc3874.rel_types` / `not_rel_types` (src/rooms/event-filter.ts).
  'org.matrix.msc3874': true,
  // Room summaries: `/v1/room_summary` and the `im.nheko.summary` paths (room-summary.ts).
  'org.matrix.msc3266': true,
  // `unsigned.membership` on timeline events (src/rooms/client-format.ts).
  'org.matrix.msc4115': true,
  // /sync `use_state_after` → `org.matrix.msc4222.state_after` (src/sync/engine.ts).
  'org.matrix.msc4222': true,
  // Deleting account data (src/api/client/account-data.ts).
  'org.matrix.msc3391': true,
  // Simplified sliding sync on its unstable path (src/api/client/sliding-sync.ts).
  'org.matrix.simplified_msc3575': true,
};

/**
 * The unstable features of this server's configuration: delayed events (MSC4140) and thread
 * subscriptions (MSC4306, src/api/client/thread-subscriptions.ts; Synapse's name) only when on.
 */
export function unstableFeatures(opts: { delayedEvents: boolean; threadSubscriptions?: boolean }): Record<string, boolean> {
  return { ...UNSTABLE_FEATURES, ...(opts.delayedEvents ? { 'org.matrix.msc4140': true } : {}), ...(opts.threadSubscriptions ? { 'org.matrix.msc4306': true } : {}) };
}

export function registerVersionRoutes(front: Front, publicBaseUrl: string, opts: { delayedEvents: boolean; threadSubscriptions?: boolean } = { delayedEvents: false }): void {
  const features = unstableFeatures(opts);
  // Static answers: served while Redis is unreachable too (clients' connectivity checks call
  // /versions; whether the server can serve is for /health and the 503s of the other endpoints).
  front.route('GET', '/_matrix/client/versions', () => ({ body: { versions: SPEC_VERSIONS, unstable_features: features } }), { needsStore: false });
  front.route('GET', '/.well-known/matrix/client', () => ({ body: { 'm.homeserver': { base_url: publicBaseUrl } } }), { needsStore: false });
}
