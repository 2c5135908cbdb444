/**
 * Server key documents (server-server API, "Retrieving server keys"): what
 * `GET /_matrix/key/v2/server` returns, signed by every current key, served as canonical JSON;
 * the checks made on a document fetched directly or through a notary (`/_matrix/key/v2/query`);
 * which keys are valid for an event or a request at a given time; and the notary side: reading
 * a query, deciding when to refetch, re-signing documents for the answer.
 */
import { decodeBase64, encodeBase64 } from './base64';
import { canonicalJson, isJsonObject, type JsonObject } from './json';
import { signJson, signingKeyIdsOf, verifyJsonSignature } from './signing';
import type { SigningKey } from './crypto';
import type { RoomVersion } from './room-versions';

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

// ---------------------------------------------------------------------------------------------
// Serving our key document as canonical JSON
// ---------------------------------------------------------------------------------------------

/**
 * The text to serve for `GET /_matrix/key/v2/server`: the signed document as canonical JSON.
 * `JSON.stringify` would send the fields in insertion order (`server_name, valid_until_ts, …,
 * signatures`); a peer that checks the signature over the bytes it received rather than over
 * their re-encoding, or a notary that stores and re-serves them, needs the canonical form.
 */
export function serverKeyDocumentJson(document: JsonObject): string {
  return canonicalJson(document);
}

/** buildServerKeyDocument plus its canonical JSON text, for a handler to cache and serve as is. */
export function buildServerKeyResponse(
  serverName: string,
  keys: SigningKey[],
  validUntilTs: number,
  oldKeys: OldVerifyKey[] = [],
): { document: JsonObject; json: string } {
  const document = buildServerKeyDocument(serverName, keys, validUntilTs, oldKeys);
  return { document, json: serverKeyDocumentJson(document) };
}

// ---------------------------------------------------------------------------------------------
// Checking fetched key documents (direct or through a notary)
// ---------------------------------------------------------------------------------------------

/**
 * Spec (room versions 5+, "Signing key validity period"): "Servers MUST use the lesser of
 * `valid_until_ts` and 7 days into the future when determining if a key is valid", so a stolen
 * key published with a far-off validity cannot outlive its owner's rotation by long.
 */
export const MAX_KEY_VALIDITY_MS = 7 * 24 * 3600_000;

/** A server's key document, checked. */
export interface ServerKeys {
  serverName: string;
  /** `valid_until_ts` as published. */
  validUntilTs: number;
  /** `verify_keys` (ed25519 only): key id → 32-byte public key. */
  verifyKeys: Map<string, Uint8Array>;
  /** `old_verify_keys` (ed25519 only). */
  oldVerifyKeys: Map<string, { publicKey: Uint8Array; expiredTs: number }>;
  /** The document as received, every signature kept (what a notary serves again). */
  document: JsonObject;
}

export type ServerKeysCheck = { ok: true; keys: ServerKeys } | { ok: false; error: string };

/**
 * Check a key document as peers do (the shape of keys.yaml, then the origin's own signature):
 * `server_name` is the expected server (when given); `valid_until_ts` an integer; every ed25519
 * key in `verify_keys` and `old_verify_keys` 32 bytes of base64 (`expired_ts` an integer);
 * keys of other algorithms are skipped. Signatures: at least one by the server with a key from
 * its own `verify_keys`, and every such signature valid; signatures by other keys (an old key,
 * a notary's) are not this check's business.
 *
 * Unlike checkServerKeyDocument, a listed key that did not sign does not fail the document:
 * the spec asks only that the document be "signed using the verify_keys", and Synapse accepts
 * a document with one valid self-signature; requiring all would refuse such peers.
 */
export function verifyServerKeys(doc: unknown, expectedServer?: string): ServerKeysCheck {
  if (!isJsonObject(doc)) return { ok: false, error: 'key document is not an object' };
  const serverName = doc.server_name;
  if (typeof serverName !== 'string') return { ok: false, error: 'server_name missing' };
  if (expectedServer !== undefined && serverName !== expectedServer) {
    return { ok: false, error: `server_name is ${JSON.stringify(serverName)}, expected ${expectedServer}` };
  }
  if (typeof doc.valid_until_ts !== 'number' || !Number.isInteger(doc.valid_until_ts)) return { ok: false, error: 'valid_until_ts missing or not an integer' };
  if (!isJsonObject(doc.verify_keys)) return { ok: false, error: 'verify_keys missing' };

  const verifyKeys = new Map<string, Uint8Array>();
  for (const [keyId, entry] of Object.entries(doc.verify_keys)) {
    if (!keyId.startsWith('ed25519:')) continue;
    const key = isJsonObject(entry) ? decodePublicKey(entry.key) : null;
    if (!key) return { ok: false, error: `verify key ${keyId} is not a base64 ed25519 key` };
    verifyKeys.set(keyId, key);
  }
  const oldVerifyKeys = new Map<string, { publicKey: Uint8Array; expiredTs: number }>();
  if (doc.old_verify_keys !== undefined) {
    if (!isJsonObject(doc.old_verify_keys)) return { ok: false, error: 'old_verify_keys is not an object' };
    for (const [keyId, entry] of Object.entries(doc.old_verify_keys)) {
      if (!keyId.startsWith('ed25519:')) continue;
      const key = isJsonObject(entry) ? decodePublicKey(entry.key) : null;
      if (!key) return { ok: false, error: `old verify key ${keyId} is not a base64 ed25519 key` };
      const expiredTs = (entry as JsonObject).expired_ts;
      if (typeof expiredTs !== 'number' || !Number.isInteger(expiredTs)) return { ok: false, error: `old verify key ${keyId} has no integer expired_ts` };
      oldVerifyKeys.set(keyId, { publicKey: key, expiredTs });
    }
  }

  const signedWith = signingKeyIdsOf(doc, serverName).filter((keyId) => verifyKeys.has(keyId));
  if (signedWith.length === 0) return { ok: false, error: `not signed by ${serverName} with any of its verify_keys` };
  for (const keyId of signedWith) {
    const check = verifyJsonSignature(doc, serverName, keyId, verifyKeys.get(keyId)!);
    if (!check.ok) return { ok: false, error: `signature by ${serverName}'s ${keyId} is ${check.reason}` };
  }
  return { ok: true, keys: { serverName, validUntilTs: doc.valid_until_ts, verifyKeys, oldVerifyKeys, document: doc } };
}

function decodePublicKey(value: unknown): Uint8Array | null {
  if (typeof value !== 'string') return null;
  try {
    const bytes = decodeBase64(value);
    return bytes.length === 32 ? bytes : null;
  } catch {
    return null;
  }
}

export interface NotaryKeysCheck {
  /** The documents that passed both checks. */
  accepted: ServerKeys[];
  /** Entries left out, and why (the rest of the answer is still used, as Synapse does). */
  rejected: { serverName: string | undefined; error: string }[];
}

/**
 * Check a notary's answer to `POST /_matrix/key/v2/query` (or `GET …/query/{serverName}`): each
 * entry of `server_keys` must be a valid key document signed by its own server
 * (verifyServerKeys) and by the notary with one of the keys we trust it by (`notaryKeys`, from
 * configuration); every notary signature by a trusted key must be valid. A bad entry is
 * rejected alone. With `requestedServers`, entries for other servers are rejected too (a notary
 * has no business vouching for servers we did not ask about). Throws nothing; an answer that
 * is not `{server_keys: [...]}` rejects everything.
 */
export function checkNotaryKeysResponse(
  response: unknown,
  notaryServerName: string,
  notaryKeys: ReadonlyMap<string, Uint8Array>,
  requestedServers?: Iterable<string>,
): NotaryKeysCheck {
  const accepted: ServerKeys[] = [];
  const rejected: NotaryKeysCheck['rejected'] = [];
  if (!isJsonObject(response) || !Array.isArray(response.server_keys)) {
    rejected.push({ serverName: undefined, error: `${notaryServerName}'s answer has no server_keys array` });
    return { accepted, rejected };
  }
  const requested = requestedServers === undefined ? undefined : new Set(requestedServers);
  for (const entry of response.server_keys) {
    const serverName = isJsonObject(entry) && typeof entry.server_name === 'string' ? entry.server_name : undefined;
    if (serverName === undefined) {
      rejected.push({ serverName, error: 'entry without a server_name' });
      continue;
    }
    if (requested && !requested.has(serverName)) {
      rejected.push({ serverName, error: 'not a server we asked about' });
      continue;
    }
    const notarySignature = checkSignatureByAnyKey(entry as JsonObject, notaryServerName, notaryKeys);
    if (!notarySignature.ok) {
      rejected.push({ serverName, error: notarySignature.error });
      continue;
    }
    const own = verifyServerKeys(entry, serverName);
    if (!own.ok) {
      rejected.push({ serverName, error: own.error });
      continue;
    }
    accepted.push(own.keys);
  }
  return { accepted, rejected };
}

function checkSignatureByAnyKey(obj: JsonObject, signer: string, keys: ReadonlyMap<string, Uint8Array>): { ok: true } | { ok: false; error: string } {
  const usable = signingKeyIdsOf(obj, signer).filter((keyId) => keys.has(keyId));
  if (usable.length === 0) return { ok: false, error: `not signed by ${signer} with a key we trust it by` };
  for (const keyId of usable) {
    const check = verifyJsonSignature(obj, signer, keyId, keys.get(keyId)!);
    if (!check.ok) return { ok: false, error: `signature by ${signer}'s ${keyId} is ${check.reason}` };
  }
  return { ok: true };
}

// ---------------------------------------------------------------------------------------------
// Which keys are valid when
// ---------------------------------------------------------------------------------------------

/**
 * A verify key as a key cache keeps it. The field names match the room ingest's `RemoteKeys`
 * (`{ key, validUntilTs }`), so a map of these can be handed to it as is.
 */
export interface KnownVerifyKey {
  /** Unpadded base64 public key. */
  key: string;
  /**
   * A current key: the lesser of `valid_until_ts` and 7 days after the document was fetched
   * (MAX_KEY_VALIDITY_MS). An old key: its `expired_ts`.
   */
  validUntilTs: number;
  /** Set for a key from `old_verify_keys`: its `expired_ts`. */
  expiredTs?: number;
}

/**
 * The keys of a checked document as a cache should record them, by key id. A key id listed in
 * both `verify_keys` and `old_verify_keys` counts as current.
 */
export function knownKeysFromDocument(keys: ServerKeys, fetchedAtMs: number): Map<string, KnownVerifyKey> {
  const out = new Map<string, KnownVerifyKey>();
  for (const [keyId, old] of keys.oldVerifyKeys) {
    out.set(keyId, { key: encodeBase64(old.publicKey), validUntilTs: old.expiredTs, expiredTs: old.expiredTs });
  }
  const validUntilTs = Math.min(keys.validUntilTs, fetchedAtMs + MAX_KEY_VALIDITY_MS);
  for (const [keyId, publicKey] of keys.verifyKeys) out.set(keyId, { key: encodeBase64(publicKey), validUntilTs });
  return out;
}

/**
 * May `key` check a signature on an event sent at `originServerTs` (server-server API,
 * "Validating hashes and signatures on received events")? An old key only if it had not
 * expired before the event ("keys that are known to have expired prior to the event's
 * origin_server_ts are ignored"); a current key always in room versions 1–4 (whose events
 * "MUST ignore" `valid_until_ts`), and from v5 only if its validity reaches the event's time.
 */
export function isKeyValidForEvent(key: KnownVerifyKey, originServerTs: number, version: Pick<RoomVersion, 'enforceKeyValidity'>): boolean {
  if (key.expiredTs !== undefined) return originServerTs <= key.expiredTs;
  return !version.enforceKeyValidity || originServerTs <= key.validUntilTs;
}

/**
 * May `key` authenticate a request (X-Matrix) received at `nowMs`? Only a current key
 * (`old_verify_keys` "are only valid for signing events") whose validity covers now.
 */
export function isKeyValidForRequest(key: KnownVerifyKey, nowMs: number): boolean {
  return key.expiredTs === undefined && nowMs <= key.validUntilTs;
}

/** The public keys among `keys` usable for an event sent at `originServerTs` in a room of `version`. */
export function keysValidForEvent(
  keys: ReadonlyMap<string, KnownVerifyKey>,
  originServerTs: number,
  version: Pick<RoomVersion, 'enforceKeyValidity'>,
): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>();
  for (const [keyId, key] of keys) if (isKeyValidForEvent(key, originServerTs, version)) out.set(keyId, decodeBase64(key.key));
  return out;
}

/** The public keys among `keys` usable to authenticate a request at `nowMs`. */
export function keysValidForRequest(keys: ReadonlyMap<string, KnownVerifyKey>, nowMs: number): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>();
  for (const [keyId, key] of keys) if (isKeyValidForRequest(key, nowMs)) out.set(keyId, decodeBase64(key.key));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Acting as a notary (`/_matrix/key/v2/query`)
// ---------------------------------------------------------------------------------------------

/** server name → key id → the requested `minimum_valid_until_ts` (undefined: not given). An empty inner map asks for all keys. */
export type NotaryQuery = Map<string, Map<string, number | undefined>>;

export type NotaryQueryCheck = { ok: true; query: NotaryQuery } | { ok: false; errcode: 'M_BAD_JSON' | 'M_NOT_JSON'; error: string };

/**
 * Check the body of `POST /_matrix/key/v2/query`: `{"server_keys": {server: {keyId: {"minimum_valid_until_ts"?: int}}}}`.
 * "If no key IDs are given to be queried, the notary server should query for all keys. If no
 * servers are given, the notary server must return an empty server_keys array."
 */
export function parseNotaryQuery(body: unknown): NotaryQueryCheck {
  if (!isJsonObject(body)) return { ok: false, errcode: 'M_NOT_JSON', error: 'Body is not a JSON object' };
  if (!isJsonObject(body.server_keys)) return { ok: false, errcode: 'M_BAD_JSON', error: "'server_keys' must be an object" };
  const query: NotaryQuery = new Map();
  for (const [serverName, byKey] of Object.entries(body.server_keys)) {
    if (!isJsonObject(byKey)) return { ok: false, errcode: 'M_BAD_JSON', error: `criteria for ${serverName} must be an object` };
    const keys = new Map<string, number | undefined>();
    for (const [keyId, criteria] of Object.entries(byKey)) {
      if (!isJsonObject(criteria)) return { ok: false, errcode: 'M_BAD_JSON', error: `criteria for ${serverName} ${keyId} must be an object` };
      const min = criteria.minimum_valid_until_ts;
      if (min !== undefined && (typeof min !== 'number' || !Number.isInteger(min))) {
        return { ok: false, errcode: 'M_BAD_JSON', error: `minimum_valid_until_ts for ${serverName} ${keyId} must be an integer` };
      }
      keys.set(keyId, min);
    }
    query.set(serverName, keys);
  }
  return { ok: true, query };
}

/**
 * Should a notary fetch a server's keys again before answering, given its cached copy? Yes when
 * the copy's `valid_until_ts` is before the requested `minimum_valid_until_ts` — "If not
 * supplied, the notary server MUST use the current time" — and, without a minimum, also once
 * half the copy's lifetime has passed ("Intermediate notary servers should cache a response for
 * half of its lifetime"; Synapse's remote_key_resource does both). If the fetch fails, the
 * cached copy is still served ("notary servers should continue to return the last response").
 */
export function notaryShouldRefetch(cached: { fetchedAtMs: number; validUntilTs: number }, minimumValidUntilTs: number | undefined, nowMs: number): boolean {
  if (cached.validUntilTs < (minimumValidUntilTs ?? nowMs)) return true;
  if (minimumValidUntilTs === undefined && nowMs > cached.fetchedAtMs + (cached.validUntilTs - cached.fetchedAtMs) / 2) return true;
  return false;
}

/**
 * Our answer as a notary: `{"server_keys": [...]}`, each document as its server signed it (and
 * with any signatures already on it) plus ours with every key in `notaryKeys`. Serve it as
 * canonical JSON (canonicalJson), for the same reason as our own key document.
 */
export function buildNotaryResponse(documents: readonly JsonObject[], notaryServerName: string, notaryKeys: readonly SigningKey[]): { server_keys: JsonObject[] } {
  return {
    server_keys: documents.map((doc) => {
      let signed = doc;
      for (const key of notaryKeys) signed = signJson(signed, notaryServerName, key);
      return signed;
    }),
  };
}
