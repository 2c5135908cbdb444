/**
 * `GET /_matrix/key/v2/server`: our verify keys, signed by themselves. The deprecated
 * `/_matrix/key/v2/server/{keyId}` form answers the same document, as Synapse does.
 */
import type { Front } from '../../http/server';
import type { SigningKey } from '../../protocol/crypto';
import { buildServerKeyDocument } from '../../protocol/server-keys';
import type { JsonObject } from '../../protocol/json';

export function registerKeyRoutes(front: Front, serverName: string, keys: SigningKey[], validityMs: number): void {
  // Signing costs ~50 µs; re-sign only when the cached document is past half its validity.
  let cached: { doc: JsonObject; refreshAt: number } | null = null;
  const document = () => {
    const now = Date.now();
    if (!cached || now >= cached.refreshAt) {
      cached = { doc: buildServerKeyDocument(serverName, keys, now + validityMs), refreshAt: now + validityMs / 2 };
    }
    return cached.doc;
  };
  // Signed from memory: served while Redis is unreachable too.
  front.route('GET', '/_matrix/key/v2/server', () => ({ body: document() }), { needsStore: false });
  front.route('GET', '/_matrix/key/v2/server/:keyId', () => ({ body: document() }), { needsStore: false });
}
