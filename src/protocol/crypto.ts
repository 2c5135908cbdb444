/**
 * The one crypto module: ed25519 keys, signing and verification, and SHA-256.
 *
 * The hot path uses node's built-in ed25519 (OpenSSL; tens of thousands of ops/s per core) —
 * except signing, which goes through the signer a process installs with `setEd25519Signer`:
 * libsodium (`sodium-native`, an optional dependency), loaded outside this library by
 * src/crypto/ed25519-native.ts, because opening a native binary is I/O. node's one-shot `sign`
 * sets up an OpenSSL 3.0 signing context on every call, which costs more than the signature (CPU
 * per signature of ~600 bytes, 20 alternated rounds at load 10: node 23.0 µs, libsodium 14.4 µs;
 * every local event is signed once). Ed25519 is deterministic: both give the same bytes (tests
 * check it), and an installed signer must give the spec's signature of `{}` before it is used.
 * tweetnacl is kept beside them as an independent implementation: tests cross-check the three,
 * and `scripts/bench-protocol` measures them. No I/O here: key material comes in as bytes.
 */
import { createHash, createPrivateKey, createPublicKey, hash as nodeHash, sign as nodeSign, verify as nodeVerify, type KeyObject } from 'node:crypto';
import nacl from 'tweetnacl';
import { decodeBase64, encodeBase64 } from './base64';

/**
 * A detached ed25519 signature of `message` with `secretKey` (64 bytes: the seed, then the public
 * key — the form libsodium and tweetnacl take), or null when the implementation could not sign
 * (node's signing then).
 */
export type Ed25519SignFunction = (secretKey: Uint8Array, message: Uint8Array) => Uint8Array | null;

/** A signer to use instead of node's, and its name for the benchmarks' notes. */
export interface Ed25519Signer {
  readonly name: 'libsodium';
  readonly sign: Ed25519SignFunction;
}

/** The installed signer, or null: node's then. */
let installedSigner: Ed25519Signer | null = null;

/**
 * Whether `sign` gives the known answer: the spec appendix's key ("Cryptographic Test Vectors")
 * signing `{}`. Never throws.
 */
export function ed25519SignerGivesKnownAnswer(sign: Ed25519SignFunction): boolean {
  try {
    const secret = new Uint8Array(64);
    secret.set(decodeBase64('YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1'));
    secret.set(decodeBase64('XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI'), 32);
    const signature = sign(secret, new TextEncoder().encode('{}'));
    return signature !== null && signature.length === 64 && encodeBase64(signature) === 'K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ';
  } catch {
    return false;
  }
}

/**
 * Install the signer `signBytes` uses (null: node's). Process entries do it once at start
 * (src/crypto/ed25519-native.ts). A signer that does not give the known answer is refused: node's
 * stays. Returns whether `signer` is now the one in use.
 */
export function setEd25519Signer(signer: Ed25519Signer | null): boolean {
  if (signer && !ed25519SignerGivesKnownAnswer(signer.sign)) return false;
  installedSigner = signer;
  return true;
}

/** Which implementation `signBytes` uses (for the benchmarks' notes). */
export function ed25519Signer(): 'libsodium' | 'node' {
  return installedSigner ? installedSigner.name : 'node';
}

/** DER prefixes that wrap a raw 32-byte ed25519 seed / public key for OpenSSL. */
const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

export const ED25519 = 'ed25519';

/** A server's signing key: `ed25519:<version>` plus the 32-byte seed. */
export interface SigningKey {
  /** e.g. `ed25519:a_AbCd` */
  readonly keyId: string;
  readonly seed: Uint8Array;
  readonly publicKey: Uint8Array;
  /** Unpadded base64 of the public key, as published in key documents. */
  readonly publicKeyBase64: string;
  /** OpenSSL handle for the hot path. */
  readonly privateKeyObject: KeyObject;
  /** The 64-byte secret key (seed, then public key) that an installed signer takes. */
  readonly secretKey: Uint8Array;
}

const KEY_VERSION = /^[a-zA-Z0-9_]+$/;

/** Key ids are `algorithm:version`, the version being `[a-zA-Z0-9_]` (spec: key identifiers). */
export function isValidKeyId(keyId: string): boolean {
  const i = keyId.indexOf(':');
  if (i <= 0) return false;
  return KEY_VERSION.test(keyId.slice(i + 1)) && /^[a-z0-9_.-]+$/i.test(keyId.slice(0, i));
}

export function signingKeyFromSeed(keyId: string, seed: Uint8Array): SigningKey {
  if (seed.length !== 32) throw new Error('An ed25519 seed is 32 bytes');
  if (!keyId.startsWith(`${ED25519}:`) || !isValidKeyId(keyId)) throw new Error(`Invalid ed25519 key id ${keyId}`);
  const privateKeyObject = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]), format: 'der', type: 'pkcs8' });
  const spki = createPublicKey(privateKeyObject).export({ format: 'der', type: 'spki' });
  const publicKey = new Uint8Array(spki.subarray(spki.length - 32));
  const secretKey = new Uint8Array(64);
  secretKey.set(seed);
  secretKey.set(publicKey, 32);
  return { keyId, seed: new Uint8Array(seed), publicKey, publicKeyBase64: encodeBase64(publicKey), privateKeyObject, secretKey };
}

/**
 * Parse Synapse's signing key file format (`ed25519 <version> <unpadded base64 seed>` per line), so
 * operators can bring a key from another homeserver. Returns the keys in file order.
 */
export function parseSigningKeyFile(text: string): SigningKey[] {
  const keys: SigningKey[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const parts = line.split(/\s+/);
    if (parts.length !== 3 || parts[0] !== ED25519) throw new Error('Signing key lines look like "ed25519 <version> <base64 seed>"');
    keys.push(signingKeyFromSeed(`${ED25519}:${parts[1]}`, decodeBase64(parts[2]!)));
  }
  return keys;
}

export function formatSigningKeyFile(key: SigningKey): string {
  return `${ED25519} ${key.keyId.slice(ED25519.length + 1)} ${encodeBase64(key.seed)}\n`;
}

/** Sign bytes (the hot path): with the installed signer (libsodium where it loaded), node's ed25519 otherwise. */
export function signBytes(key: SigningKey, message: Uint8Array): Uint8Array {
  if (installedSigner) {
    const signature = installedSigner.sign(key.secretKey, message);
    if (signature) return signature;
  }
  return nodeSignBytes(key, message);
}

/** Sign bytes with node's ed25519 (OpenSSL), whatever `signBytes` uses: for cross-checks and benchmarks. */
export function nodeSignBytes(key: SigningKey, message: Uint8Array): Uint8Array {
  return new Uint8Array(nodeSign(null, message, key.privateKeyObject));
}

/**
 * Public KeyObjects are cached: a server verifies many events from the same few keys, and
 * building the DER wrapper each time costs as much as the verification.
 */
const publicKeyCache = new Map<string, KeyObject>();
const PUBLIC_KEY_CACHE_LIMIT = 4096;

function publicKeyObject(publicKey: Uint8Array): KeyObject {
  const cacheKey = encodeBase64(publicKey);
  let obj = publicKeyCache.get(cacheKey);
  if (!obj) {
    obj = createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, publicKey]), format: 'der', type: 'spki' });
    if (publicKeyCache.size >= PUBLIC_KEY_CACHE_LIMIT) publicKeyCache.delete(publicKeyCache.keys().next().value!);
    publicKeyCache.set(cacheKey, obj);
  }
  return obj;
}

/** Verify an ed25519 signature with node's implementation. Never throws on bad input. */
export function verifyBytes(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (publicKey.length !== 32 || signature.length !== 64) return false;
  try {
    return nodeVerify(null, message, publicKeyObject(publicKey), signature);
  } catch {
    return false;
  }
}

/**
 * The same check run on libuv's thread pool (node's callback form of `verify`): a batch of
 * thousands (a big room's send_join answer) is verified in parallel and off the event loop.
 */
export function verifyBytesAsync(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): Promise<boolean> {
  if (publicKey.length !== 32 || signature.length !== 64) return Promise.resolve(false);
  return new Promise((resolve) => {
    try {
      nodeVerify(null, message, publicKeyObject(publicKey), signature, (err, ok) => resolve(!err && ok));
    } catch {
      resolve(false);
    }
  });
}

/** tweetnacl: the independent implementation, for cross-checks and benchmarks. */
export const tweetnaclEd25519 = {
  publicKeyFromSeed(seed: Uint8Array): Uint8Array {
    return nacl.sign.keyPair.fromSeed(seed).publicKey;
  },
  secretKeyFromSeed(seed: Uint8Array): Uint8Array {
    return nacl.sign.keyPair.fromSeed(seed).secretKey;
  },
  sign(secretKey: Uint8Array, message: Uint8Array): Uint8Array {
    return nacl.sign.detached(message, secretKey);
  },
  verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
    if (publicKey.length !== 32 || signature.length !== 64) return false;
    return nacl.sign.detached.verify(message, signature, publicKey);
  },
};

/**
 * SHA-256. node's one-shot `hash` (node ≥ 20.12) where there is one: ~4× faster than a Hash object
 * for the few hundred bytes of an event (two per event built).
 */
export function sha256(data: Uint8Array | string): Uint8Array {
  if (typeof nodeHash === 'function') {
    const b = nodeHash('sha256', data, 'buffer');
    return new Uint8Array(b.buffer, b.byteOffset, b.length);
  }
  return new Uint8Array(createHash('sha256').update(data).digest());
}

/**
 * SHA-256 as unpadded base64 (standard alphabet), a string hashed as its UTF-8: what a content
 * hash and a v3 event id are. node's one-shot `hash` gives the text itself, without a Buffer for
 * the digest and a second encoding pass (an event built pays two of these: ~0.6 µs each less).
 */
export function sha256Base64(data: Uint8Array | string): string {
  // 32 bytes are 44 base64 characters, the last one '=' padding.
  if (typeof nodeHash === 'function') return nodeHash('sha256', data, 'base64').slice(0, 43);
  return createHash('sha256').update(data).digest('base64').slice(0, 43);
}

/** SHA-256 as unpadded URL-safe base64 (v4+ event ids, v12 room ids); as `sha256Base64`. */
export function sha256Base64Url(data: Uint8Array | string): string {
  // node's base64url is unpadded.
  if (typeof nodeHash === 'function') return nodeHash('sha256', data, 'base64url');
  return createHash('sha256').update(data).digest('base64url');
}
