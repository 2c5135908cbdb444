/**
 * Our own key document, signed by every current key, kept as canonical JSON text (the bytes we
 * serve: a peer may check the signature over exactly what it received). Re-signed once half its
 * validity has passed (signing costs ~50 µs; serving from memory works while Redis is down).
 */
import type { SigningKey } from '../../protocol/crypto';
import type { JsonObject } from '../../protocol/json';
import { buildServerKeyResponse } from '../../protocol/server-keys';

export class OwnKeyDocument {
  private cached: { document: JsonObject; json: string; refreshAt: number } | null = null;

  constructor(
    readonly serverName: string,
    readonly keys: SigningKey[],
    private readonly validityMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  current(): { document: JsonObject; json: string } {
    const now = this.now();
    if (!this.cached || now >= this.cached.refreshAt) {
      const { document, json } = buildServerKeyResponse(this.serverName, this.keys, now + this.validityMs);
      this.cached = { document, json, refreshAt: now + this.validityMs / 2 };
    }
    return this.cached;
  }
}
