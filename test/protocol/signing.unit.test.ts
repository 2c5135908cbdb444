import { describe, expect, it } from 'vitest';
import { decodeBase64, decodeBase64Url, encodeBase64, encodeBase64Url, Base64Error } from '../../src/protocol/base64';
import { ed25519Signer, formatSigningKeyFile, isValidKeyId, nodeSignBytes, parseSigningKeyFile, signBytes, signingKeyFromSeed, tweetnaclEd25519, verifyBytes } from '../../src/protocol/crypto';
import { signJson, verifyJsonSignature } from '../../src/protocol/signing';
import { buildServerKeyDocument, checkServerKeyDocument } from '../../src/protocol/server-keys';
import type { JsonObject } from '../../src/protocol/json';
import { SIGNERS, signWith } from './signers';

// content/appendices.md, "Cryptographic Test Vectors".
const SEED = decodeBase64('YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1');
const KEY = signingKeyFromSeed('ed25519:1', SEED);

describe('unpadded base64 (appendix examples)', () => {
  const cases: [string, string][] = [['', ''], ['f', 'Zg'], ['fo', 'Zm8'], ['foo', 'Zm9v'], ['foob', 'Zm9vYg'], ['fooba', 'Zm9vYmE'], ['foobar', 'Zm9vYmFy']];
  for (const [plain, encoded] of cases) {
    it(`"${plain}" <-> "${encoded}"`, () => {
      expect(encodeBase64(new TextEncoder().encode(plain))).toBe(encoded);
      expect(new TextDecoder().decode(decodeBase64(encoded))).toBe(plain);
    });
  }
  it('accepts padding when decoding', () => {
    expect(new TextDecoder().decode(decodeBase64('Zg=='))).toBe('f');
    expect(new TextDecoder().decode(decodeBase64('Zm8='))).toBe('fo');
  });
  it('URL-safe alphabet uses - and _', () => {
    const bytes = new Uint8Array([0xfb, 0xff, 0xbf]);
    expect(encodeBase64(bytes)).toBe('+/+/');
    expect(encodeBase64Url(bytes)).toBe('-_-_');
    expect(decodeBase64Url('-_-_')).toEqual(bytes);
  });
  it('refuses junk, wrong alphabets, and bad lengths', () => {
    for (const bad of ['Zm9v!', 'Zm 9v', 'Z', 'Zm9vY', '-_-_', 'Zg=', 'Zm8==', '=Zg']) expect(() => decodeBase64(bad)).toThrow(Base64Error);
    expect(() => decodeBase64Url('+/+/')).toThrow(Base64Error);
  });
});

for (const signer of SIGNERS) describe(`signing with ${signer}`, () => {
  signWith(signer);

  describe('ed25519 keys and signatures', () => {
    it('derives the appendix public key from the seed, in node and in tweetnacl', () => {
      expect(KEY.publicKeyBase64).toBe('XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI');
      expect(encodeBase64(tweetnaclEd25519.publicKeyFromSeed(SEED))).toBe(KEY.publicKeyBase64);
    });

    it('node and tweetnacl produce identical signatures and verify each other', () => {
      const secret = tweetnaclEd25519.secretKeyFromSeed(SEED);
      for (const msg of ['', 'hello', '{"a":1}', 'x'.repeat(10_000)]) {
        const bytes = new TextEncoder().encode(msg);
        const a = signBytes(KEY, bytes);
        const b = tweetnaclEd25519.sign(secret, bytes);
        expect(encodeBase64(a)).toBe(encodeBase64(b)); // ed25519 is deterministic
        expect(verifyBytes(KEY.publicKey, bytes, b)).toBe(true);
        expect(tweetnaclEd25519.verify(KEY.publicKey, bytes, a)).toBe(true);
        const tampered = new Uint8Array(a);
        tampered[0]! ^= 1;
        expect(verifyBytes(KEY.publicKey, bytes, tampered)).toBe(false);
        expect(tweetnaclEd25519.verify(KEY.publicKey, bytes, tampered)).toBe(false);
      }
    });

    it(`signs with ${signer}, and its signatures are node's and tweetnacl's bytes`, () => {
      expect(ed25519Signer()).toBe(signer);
      const secret = tweetnaclEd25519.secretKeyFromSeed(SEED);
      const other = signingKeyFromSeed('ed25519:2', new Uint8Array(32).fill(7));
      for (let n = 0; n < 300; n++) {
        const bytes = new TextEncoder().encode(`{"n":${n},"pad":"${'y'.repeat(n * 7)}"}`);
        const a = signBytes(KEY, bytes);
        expect(encodeBase64(a)).toBe(encodeBase64(nodeSignBytes(KEY, bytes)));
        expect(encodeBase64(a)).toBe(encodeBase64(tweetnaclEd25519.sign(secret, bytes)));
        expect(encodeBase64(signBytes(other, bytes))).toBe(encodeBase64(nodeSignBytes(other, bytes)));
      }
    });

    it('never throws on malformed keys or signatures', () => {
      expect(verifyBytes(new Uint8Array(31), new Uint8Array(1), new Uint8Array(64))).toBe(false);
      expect(verifyBytes(KEY.publicKey, new Uint8Array(1), new Uint8Array(63))).toBe(false);
      expect(verifyBytes(new Uint8Array(32), new Uint8Array(1), new Uint8Array(64))).toBe(false);
    });

    it('validates key ids', () => {
      expect(isValidKeyId('ed25519:1')).toBe(true);
      expect(isValidKeyId('ed25519:a_AbC9')).toBe(true);
      expect(isValidKeyId('ed25519:')).toBe(false);
      expect(isValidKeyId('ed25519:a-b')).toBe(false);
      expect(isValidKeyId('nocolon')).toBe(false);
      expect(() => signingKeyFromSeed('curve25519:1', SEED)).toThrow();
      expect(() => signingKeyFromSeed('ed25519:1', new Uint8Array(31))).toThrow();
    });

    it('reads and writes the signing key file format', () => {
      const text = formatSigningKeyFile(KEY);
      // The spec's seed has non-zero trailing bits; we write the canonical spelling.
      expect(text).toBe('ed25519 1 YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA0\n');
      const [parsed] = parseSigningKeyFile(text);
      expect(parsed!.keyId).toBe('ed25519:1');
      expect(parsed!.publicKeyBase64).toBe(KEY.publicKeyBase64);
      expect(() => parseSigningKeyFile('ed25519 onlytwo')).toThrow();
    });
  });

  describe('signing JSON (appendix "JSON Signing")', () => {
    it('signs {}', () => {
      expect(signJson({}, 'domain', KEY)).toEqual({
        signatures: { domain: { 'ed25519:1': 'K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ' } },
      });
    });

    it('signs {"one":1,"two":"Two"}', () => {
      expect(signJson({ one: 1, two: 'Two' }, 'domain', KEY)).toEqual({
        one: 1,
        two: 'Two',
        signatures: { domain: { 'ed25519:1': 'KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw' } },
      });
    });

    it('excludes unsigned and existing signatures from what is signed, and keeps both', () => {
      const signed = signJson({ one: 1, two: 'Two', unsigned: { age_ts: 5 }, signatures: { other: { 'ed25519:x': 'abc' } } }, 'domain', KEY);
      expect(signed.signatures).toEqual({ other: { 'ed25519:x': 'abc' }, domain: { 'ed25519:1': 'KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw' } });
      expect(signed.unsigned).toEqual({ age_ts: 5 });
    });

    it('verifies, and detects tampering, missing and malformed signatures', () => {
      const signed = signJson({ one: 1, two: 'Two' }, 'domain', KEY);
      expect(verifyJsonSignature(signed, 'domain', 'ed25519:1', KEY.publicKey)).toEqual({ ok: true });
      expect(verifyJsonSignature({ ...signed, unsigned: { x: 1 } }, 'domain', 'ed25519:1', KEY.publicKey)).toEqual({ ok: true });
      expect(verifyJsonSignature({ ...signed, one: 2 }, 'domain', 'ed25519:1', KEY.publicKey)).toEqual({ ok: false, reason: 'invalid' });
      expect(verifyJsonSignature(signed, 'other', 'ed25519:1', KEY.publicKey)).toEqual({ ok: false, reason: 'missing' });
      expect(verifyJsonSignature(signed, 'domain', 'ed25519:2', KEY.publicKey)).toEqual({ ok: false, reason: 'missing' });
      const bad = { ...signed, signatures: { domain: { 'ed25519:1': 'not base64!' } } };
      expect(verifyJsonSignature(bad, 'domain', 'ed25519:1', KEY.publicKey)).toEqual({ ok: false, reason: 'malformed' });
    });
  });

  describe('server key documents', () => {
    it('are signed by their own key and pass the peer check', () => {
      const doc = buildServerKeyDocument('example.org', [KEY], 1_700_000_000_000);
      expect(doc.verify_keys).toEqual({ 'ed25519:1': { key: KEY.publicKeyBase64 } });
      const check = checkServerKeyDocument(doc, 'example.org');
      expect(check.ok).toBe(true);
      if (check.ok) expect(encodeBase64(check.keys.get('ed25519:1')!)).toBe(KEY.publicKeyBase64);
    });
    it('fail the peer check when tampered with or for another server', () => {
      const doc = buildServerKeyDocument('example.org', [KEY], 1_700_000_000_000);
      expect(checkServerKeyDocument(doc, 'evil.org').ok).toBe(false);
      expect(checkServerKeyDocument({ ...doc, valid_until_ts: 9_999_999_999_999 }, 'example.org').ok).toBe(false);
      const other = signingKeyFromSeed('ed25519:2', new Uint8Array(32).fill(7));
      const added = { ...doc, verify_keys: { ...(doc.verify_keys as JsonObject), 'ed25519:2': { key: other.publicKeyBase64 } } };
      expect(checkServerKeyDocument(added, 'example.org').ok).toBe(false);
    });
  });
});
