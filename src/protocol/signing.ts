/**
 * Signing JSON objects (appendix "Signing JSON"): the signature covers the canonical JSON of the
 * object without its `signatures` and `unsigned` members; signatures are kept under
 * `signatures[<entity>][<key id>]`, and `unsigned` is carried through untouched.
 */
import { Base64Error, decodeBase64, encodeBase64 } from './base64';
import { canonicalJsonBytes, isJsonObject, type JsonObject } from './json';
import { signBytes, verifyBytes, type SigningKey } from './crypto';

export type Signatures = Record<string, Record<string, string>>;

/** What is signed: the object without `signatures` and `unsigned`. */
export function signableBytes(obj: JsonObject): Uint8Array {
  const { signatures: _s, unsigned: _u, ...rest } = obj;
  return canonicalJsonBytes(rest);
}

/** The bare signature (unpadded base64) of an object by one key. */
export function signatureFor(obj: JsonObject, key: SigningKey): string {
  return encodeBase64(signBytes(key, signableBytes(obj)));
}

/**
 * Returns a copy of `obj` signed by `key` on behalf of `entity` (a server name, or a user id for
 * device keys). Existing signatures are kept: several servers sign the same event.
 */
export function signJson<T extends JsonObject>(obj: T, entity: string, key: SigningKey): T {
  const signature = signatureFor(obj, key);
  const existing = isJsonObject(obj.signatures) ? (obj.signatures as Signatures) : {};
  return {
    ...obj,
    signatures: { ...existing, [entity]: { ...(existing[entity] ?? {}), [key.keyId]: signature } },
  };
}

export type SignatureCheck =
  | { ok: true }
  | { ok: false; reason: 'missing' | 'malformed' | 'invalid' };

/** Verify `obj`'s signature by `entity` with key `keyId` against `publicKey`. */
export function verifyJsonSignature(obj: JsonObject, entity: string, keyId: string, publicKey: Uint8Array): SignatureCheck {
  const sigs = obj.signatures;
  if (!isJsonObject(sigs)) return { ok: false, reason: 'missing' };
  const byEntity = sigs[entity];
  if (!isJsonObject(byEntity)) return { ok: false, reason: 'missing' };
  const sig = byEntity[keyId];
  if (typeof sig !== 'string') return { ok: false, reason: 'missing' };
  let sigBytes: Uint8Array;
  try {
    sigBytes = decodeBase64(sig);
  } catch (e) {
    if (e instanceof Base64Error) return { ok: false, reason: 'malformed' };
    throw e;
  }
  if (sigBytes.length !== 64) return { ok: false, reason: 'malformed' };
  return verifyBytes(publicKey, signableBytes(obj), sigBytes) ? { ok: true } : { ok: false, reason: 'invalid' };
}

/** The key ids (`ed25519:...` only) with which `entity` signed `obj`. */
export function signingKeyIdsOf(obj: JsonObject, entity: string): string[] {
  const sigs = obj.signatures;
  if (!isJsonObject(sigs)) return [];
  const byEntity = sigs[entity];
  if (!isJsonObject(byEntity)) return [];
  return Object.keys(byEntity).filter((k) => k.startsWith('ed25519:'));
}
