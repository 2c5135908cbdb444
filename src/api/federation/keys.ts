// GET /_matrix/key/v2/server
// GET /_matrix/key/v2/server/{keyId}   (deprecated: answers the same document, as Synapse does)
/**
 * Our verify keys, signed by themselves, sent as canonical JSON bytes (a peer may check the
 * signature over the bytes it received). Signed from memory: served while Redis is unreachable.
 */
import type { Front } from '../../http/server';
import type { OwnKeyDocument } from '../../federation/keys/own-keys';

export function registerKeyRoutes(front: Front, own: OwnKeyDocument): void {
  const serve = () => ({ rawJson: own.current().json });
  front.route('GET', '/_matrix/key/v2/server', serve, { needsStore: false });
  front.route('GET', '/_matrix/key/v2/server/:keyId', serve, { needsStore: false });
}
