/**
 * Server key documents (server-server API: "Publishing Keys"): what `GET /_matrix/key/v2/server`
 * returns, signed by every current key, and the checks a peer makes on one it fetched.
 */
import { decodeBase64 } from './base64';
import { isJsonObject, type JsonObject } from './json';
import { signJson, verifyJsonSignature } from './signing';
import type { SigningKey } from './crypto';

export interface OldVerifyKey {
  keyId: string;
  publicKeyBase64: string;
  expiredTs: number;
}

export function buildServerKeyDocument(serverName: string, keys: SigningKey[], validUntilTs: number, oldKeys: OldVerifyKey[] = []): JsonObject {
  const verify_keys: JsonObject = {};
  for (const k of keys) verify_keys[k.keyId] = { key: k.publicKeyBase64 };
  const old_verify_keys: JsonObject = {};
  for (const k of oldKeys) old_verify_keys[k.keyId] = { key: k.publicKeyBase64, expired_ts: k.expiredTs };
  let doc: JsonObject = { server_name: serverName, valid_until_ts: validUntilTs, verify_keys, old_verify_keys };
  for (const k of keys) doc = signJson(doc, serverName, k);
  return doc;
}

export type KeyDocumentCheck = { ok: true; keys: Map<string, Uint8Array> } | { ok: false; error: string };

/**
 * Check a fetched key document: it names the expected server, every key in `verify_keys`
 * decodes to 32 bytes, and it is signed by each of its own verify keys (a peer must sign with
 * every key it lists, or a stolen document could add keys).
 */
export function checkServerKeyDocument(doc: unknown, expectedServer: string): KeyDocumentCheck {
  if (!isJsonObject(doc)) return { ok: false, error: 'not an object' };
  if (doc.server_name !== expectedServer) return { ok: false, error: `server_name is ${JSON.stringify(doc.server_name)}, expected ${expectedServer}` };
  if (typeof doc.valid_until_ts !== 'number') return { ok: false, error: 'valid_until_ts missing' };
  if (!isJsonObject(doc.verify_keys)) return { ok: false, error: 'verify_keys missing' };
  const keys = new Map<string, Uint8Array>();
  for (const [keyId, entry] of Object.entries(doc.verify_keys)) {
    if (!keyId.startsWith('ed25519:')) continue;
    if (!isJsonObject(entry) || typeof entry.key !== 'string') return { ok: false, error: `verify key ${keyId} malformed` };
    let bytes: Uint8Array;
    try {
      bytes = decodeBase64(entry.key);
    } catch {
      return { ok: false, error: `verify key ${keyId} is not base64` };
    }
    if (bytes.length !== 32) return { ok: false, error: `verify key ${keyId} is not 32 bytes` };
    const check = verifyJsonSignature(doc, expectedServer, keyId, bytes);
    if (!check.ok) return { ok: false, error: `signature by ${keyId} is ${check.reason}` };
    keys.set(keyId, bytes);
  }
  if (keys.size === 0) return { ok: false, error: 'no ed25519 verify keys' };
  return { ok: true, keys };
}
