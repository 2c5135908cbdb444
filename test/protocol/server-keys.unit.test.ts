import { describe, expect, it } from 'vitest';
import { decodeBase64, encodeBase64 } from '../../src/protocol/base64';
import { signingKeyFromSeed } from '../../src/protocol/crypto';
import { canonicalJson, parseStrictJson, type JsonObject } from '../../src/protocol/json';
import { requireRoomVersion } from '../../src/protocol/room-versions';
import {
  buildNotaryResponse,
  buildServerKeyDocument,
  buildServerKeyResponse,
  checkNotaryKeysResponse,
  checkServerKeyDocument,
  isKeyValidForEvent,
  isKeyValidForRequest,
  keysValidForEvent,
  keysValidForRequest,
  knownKeysFromDocument,
  MAX_KEY_VALIDITY_MS,
  notaryShouldRefetch,
  parseNotaryQuery,
  serverKeyDocumentJson,
  verifyServerKeys,
} from '../../src/protocol/server-keys';
import { signJson, verifyJsonSignature } from '../../src/protocol/signing';

// content/appendices.md, "Cryptographic Test Vectors".
const SEED = decodeBase64('YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1');
const KEY = signingKeyFromSeed('ed25519:1', SEED);
const SECOND_KEY = signingKeyFromSeed('ed25519:2', new Uint8Array(32).fill(2));
const OLD_KEY = signingKeyFromSeed('ed25519:old', new Uint8Array(32).fill(3));
const NOTARY_KEY = signingKeyFromSeed('ed25519:notary', new Uint8Array(32).fill(4));
const NOTARY = 'notary.server.com';
const NOW = 1_700_000_000_000;
const DAY = 24 * 3600_000;

const doc = (validUntilTs = NOW + DAY) =>
  buildServerKeyDocument('example.org', [KEY], validUntilTs, [{ keyId: OLD_KEY.keyId, publicKeyBase64: OLD_KEY.publicKeyBase64, expiredTs: NOW - DAY }]);

describe('our key document is served as canonical JSON', () => {
  it('JSON.stringify of the built document (what is served today) is not canonical', () => {
    const document = doc();
    const servedToday = JSON.stringify(document);
    expect(servedToday.startsWith('{"server_name"')).toBe(true);
    expect(servedToday).not.toBe(canonicalJson(document));
  });

  it('a checker following the spec (parse, drop signatures, re-encode canonically) accepts either form', () => {
    // So the non-canonical form fails only peers that check the signature over the bytes as received.
    const document = doc();
    expect(verifyServerKeys(parseStrictJson(JSON.stringify(document)), 'example.org').ok).toBe(true);
    expect(verifyServerKeys(parseStrictJson(serverKeyDocumentJson(document)), 'example.org').ok).toBe(true);
  });

  it('serverKeyDocumentJson gives canonical bytes that verify as received', () => {
    const { document, json } = buildServerKeyResponse('example.org', [KEY], NOW + DAY);
    expect(json).toBe(serverKeyDocumentJson(document));
    // The served bytes are their own canonical form…
    const received = parseStrictJson(json) as JsonObject;
    expect(canonicalJson(received)).toBe(json);
    // …so the signed bytes are the served bytes minus `signatures` (what a byte-level checker sees).
    const { signatures: _s, ...unsigned } = received;
    expect(json.replace(/,"signatures":\{[^}]*\}\}/, '')).toBe(canonicalJson(unsigned));
    expect(verifyJsonSignature(received, 'example.org', KEY.keyId, KEY.publicKey).ok).toBe(true);
    expect(json.startsWith('{"old_verify_keys":{},"server_name":"example.org","signatures":{"example.org":{"ed25519:1":"')).toBe(true);
  });
});

describe('checking a key document (keys.yaml)', () => {
  it('accepts our own document and reads its keys', () => {
    const r = verifyServerKeys(doc(), 'example.org');
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.keys.serverName).toBe('example.org');
    expect(r.keys.validUntilTs).toBe(NOW + DAY);
    expect(encodeBase64(r.keys.verifyKeys.get('ed25519:1')!)).toBe('XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI');
    expect(r.keys.oldVerifyKeys.get('ed25519:old')?.expiredTs).toBe(NOW - DAY);
  });

  it('the spec example has the right shape but a made-up signature', () => {
    // data/api/server-server/examples/server_key.json
    const example = {
      server_name: 'example.org',
      verify_keys: { 'ed25519:abc123': { key: 'VGhpcyBzaG91bGQgYmUgYSByZWFsIGVkMjU1MTkgcGF5bG9hZA' } },
      old_verify_keys: { 'ed25519:0ldk3y': { expired_ts: 1532645052628, key: 'VGhpcyBzaG91bGQgYmUgeW91ciBvbGQga2V5J3MgZWQyNTUxOSBwYXlsb2FkLg' } },
      signatures: { 'example.org': { 'ed25519:auto2': 'VGhpcyBzaG91bGQgYWN0dWFsbHkgYmUgYSBzaWduYXR1cmU' } },
      valid_until_ts: 1652262000000,
    };
    // Its "keys" are placeholders ("This should be a real ed25519 payload", 37 bytes).
    expect(verifyServerKeys(example, 'example.org')).toEqual({ ok: false, error: 'verify key ed25519:abc123 is not a base64 ed25519 key' });
    // With a real key in their place: signed by ed25519:auto2, which it does not list…
    const realKey = { ...example, verify_keys: { 'ed25519:abc123': { key: KEY.publicKeyBase64 } }, old_verify_keys: {} };
    expect(verifyServerKeys(realKey, 'example.org')).toEqual({ ok: false, error: 'not signed by example.org with any of its verify_keys' });
    // …and under the listed key, that made-up signature is not even 64 bytes.
    const signedByListed = { ...realKey, signatures: { 'example.org': { 'ed25519:abc123': 'VGhpcyBzaG91bGQgYWN0dWFsbHkgYmUgYSBzaWduYXR1cmU' } } };
    expect(verifyServerKeys(signedByListed, 'example.org')).toMatchObject({ ok: false, error: expect.stringMatching(/abc123 is malformed/) });
  });

  it('needs one valid self-signature by a listed key, not one per listed key (unlike checkServerKeyDocument)', () => {
    const listed = buildServerKeyDocument('example.org', [KEY], NOW + DAY);
    const twoListedOneSigned = { ...listed, verify_keys: { ...(listed.verify_keys as JsonObject), [SECOND_KEY.keyId]: { key: SECOND_KEY.publicKeyBase64 } } };
    delete (twoListedOneSigned as JsonObject).signatures;
    const signed = signJson(twoListedOneSigned, 'example.org', KEY);
    expect(verifyServerKeys(signed, 'example.org').ok).toBe(true);
    expect(checkServerKeyDocument(signed, 'example.org').ok).toBe(false);
  });

  it('every self-signature by a listed key must be valid', () => {
    const both = buildServerKeyDocument('example.org', [KEY, SECOND_KEY], NOW + DAY);
    expect(verifyServerKeys(both, 'example.org').ok).toBe(true);
    const sigs = both.signatures as Record<string, Record<string, string>>;
    const broken = { ...both, signatures: { 'example.org': { ...sigs['example.org'], [SECOND_KEY.keyId]: sigs['example.org']![KEY.keyId]! } } };
    expect(verifyServerKeys(broken, 'example.org')).toMatchObject({ ok: false, error: expect.stringMatching(/ed25519:2 is invalid/) });
  });

  it('refuses a document changed after signing, for another server, or signed only by an old key', () => {
    expect(verifyServerKeys({ ...doc(), valid_until_ts: NOW + 1000 * DAY }, 'example.org').ok).toBe(false);
    expect(verifyServerKeys(doc(), 'evil.org')).toMatchObject({ ok: false, error: expect.stringMatching(/expected evil.org/) });
    const byOld = signJson({ server_name: 'example.org', valid_until_ts: NOW, verify_keys: { [KEY.keyId]: { key: KEY.publicKeyBase64 } }, old_verify_keys: { [OLD_KEY.keyId]: { key: OLD_KEY.publicKeyBase64, expired_ts: 1 } } }, 'example.org', OLD_KEY);
    expect(verifyServerKeys(byOld, 'example.org').ok).toBe(false);
  });

  it('refuses malformed fields and skips keys of other algorithms', () => {
    const base = { server_name: 'example.org', valid_until_ts: NOW, verify_keys: { [KEY.keyId]: { key: KEY.publicKeyBase64 } } };
    const sign = (d: JsonObject) => signJson(d, 'example.org', KEY);
    expect(verifyServerKeys('x').ok).toBe(false);
    expect(verifyServerKeys(sign({ ...base, server_name: 5 })).ok).toBe(false);
    expect(verifyServerKeys(sign({ ...base, valid_until_ts: '1' })).ok).toBe(false);
    expect(verifyServerKeys(sign({ ...base, verify_keys: [] })).ok).toBe(false);
    expect(verifyServerKeys(sign({ ...base, verify_keys: { ...base.verify_keys, 'ed25519:x': { key: 'AAAA' } } })).ok).toBe(false);
    expect(verifyServerKeys(sign({ ...base, old_verify_keys: { 'ed25519:o': { key: OLD_KEY.publicKeyBase64 } } })).ok).toBe(false);
    expect(verifyServerKeys(sign({ ...base, old_verify_keys: [] })).ok).toBe(false);
    const other = verifyServerKeys(sign({ ...base, verify_keys: { ...base.verify_keys, 'curve25519:x': { key: 'nonsense' } } }));
    expect(other.ok && [...other.keys.verifyKeys.keys()]).toEqual([KEY.keyId]);
    // Without an expected server, the document's own name is used.
    expect(verifyServerKeys(sign(base)).ok).toBe(true);
  });
});

describe('notary answers (/_matrix/key/v2/query)', () => {
  const trusted = new Map([[NOTARY_KEY.keyId, NOTARY_KEY.publicKey]]);
  const answer = (...docs: JsonObject[]) => buildNotaryResponse(docs, NOTARY, [NOTARY_KEY]);

  it('our notary answer re-signs each document and keeps the origin signature', () => {
    const a = answer(doc());
    const entry = a.server_keys[0]!;
    expect(Object.keys(entry.signatures as JsonObject).sort()).toEqual(['example.org', NOTARY]);
    expect(verifyJsonSignature(entry, 'example.org', KEY.keyId, KEY.publicKey).ok).toBe(true);
    expect(verifyJsonSignature(entry, NOTARY, NOTARY_KEY.keyId, NOTARY_KEY.publicKey).ok).toBe(true);
  });

  it('accepts entries signed by their server and by the notary', () => {
    const other = buildServerKeyDocument('other.org', [SECOND_KEY], NOW + DAY);
    const r = checkNotaryKeysResponse(answer(doc(), other), NOTARY, trusted, ['example.org', 'other.org']);
    expect(r.rejected).toEqual([]);
    expect(r.accepted.map((k) => k.serverName)).toEqual(['example.org', 'other.org']);
    // The stored document keeps both signatures, to serve again.
    expect(Object.keys(r.accepted[0]!.document.signatures as JsonObject).sort()).toEqual(['example.org', NOTARY]);
  });

  it('rejects an entry alone: not notary-signed, signed by an untrusted notary key, forged origin signature, changed after signing', () => {
    const unsignedByNotary = doc();
    const byUntrusted = signJson(doc(), NOTARY, signingKeyFromSeed('ed25519:notary', new Uint8Array(32).fill(5)));
    const forgedOrigin = signJson(buildServerKeyDocument('victim.org', [SECOND_KEY], NOW + DAY), NOTARY, NOTARY_KEY);
    (forgedOrigin.verify_keys as JsonObject)[SECOND_KEY.keyId] = { key: KEY.publicKeyBase64 }; // keys swapped after signing
    const changed = answer(doc()).server_keys[0]!;
    changed.valid_until_ts = NOW + 365 * DAY;
    const good = answer(buildServerKeyDocument('good.org', [SECOND_KEY], NOW + DAY)).server_keys[0]!;
    const r = checkNotaryKeysResponse({ server_keys: [unsignedByNotary, byUntrusted, forgedOrigin, changed, good] }, NOTARY, trusted);
    expect(r.accepted.map((k) => k.serverName)).toEqual(['good.org']);
    expect(r.rejected.map((x) => x.error)).toEqual([
      expect.stringMatching(/not signed by notary.server.com/),
      expect.stringMatching(/notary.server.com's ed25519:notary is invalid/),
      expect.stringMatching(/invalid/),
      expect.stringMatching(/invalid/),
    ]);
  });

  it('the spec example (made-up signatures) is rejected', () => {
    // data/api/server-server/examples/server_key_notary_signed.json
    const example = {
      server_name: 'example.org',
      verify_keys: { 'ed25519:abc123': { key: 'VGhpcyBzaG91bGQgYmUgYSByZWFsIGVkMjU1MTkgcGF5bG9hZA' } },
      old_verify_keys: { 'ed25519:0ldk3y': { expired_ts: 1532645052628, key: 'VGhpcyBzaG91bGQgYmUgeW91ciBvbGQga2V5J3MgZWQyNTUxOSBwYXlsb2FkLg' } },
      signatures: {
        'example.org': { 'ed25519:abc123': 'VGhpcyBzaG91bGQgYWN0dWFsbHkgYmUgYSBzaWduYXR1cmU' },
        'notary.server.com': { 'ed25519:010203': 'VGhpcyBpcyBhbm90aGVyIHNpZ25hdHVyZQ' },
      },
      valid_until_ts: 1652262000000,
    };
    const r = checkNotaryKeysResponse({ server_keys: [example] }, NOTARY, new Map([['ed25519:010203', NOTARY_KEY.publicKey]]));
    expect(r.accepted).toEqual([]);
    expect(r.rejected[0]!.error).toMatch(/010203 is malformed/);
  });

  it('rejects entries for servers not asked about, and whole answers of the wrong shape', () => {
    expect(checkNotaryKeysResponse(answer(doc()), NOTARY, trusted, ['other.org']).rejected[0]!.error).toMatch(/did not ask|not a server we asked/);
    for (const bad of [null, [], {}, { server_keys: {} }]) {
      const r = checkNotaryKeysResponse(bad, NOTARY, trusted);
      expect(r.accepted).toEqual([]);
      expect(r.rejected).toHaveLength(1);
    }
    expect(checkNotaryKeysResponse({ server_keys: [{}] }, NOTARY, trusted).rejected[0]!.error).toMatch(/server_name/);
  });
});

describe('which keys are valid when', () => {
  const checked = (validUntilTs: number) => {
    const r = verifyServerKeys(doc(validUntilTs), 'example.org');
    if (!r.ok) throw new Error(r.error);
    return r.keys;
  };
  const v4 = requireRoomVersion('4');
  const v5 = requireRoomVersion('5');
  const v12 = requireRoomVersion('12');

  it('a current key is valid until the lesser of valid_until_ts and 7 days after fetching', () => {
    expect(knownKeysFromDocument(checked(NOW + DAY), NOW).get(KEY.keyId)).toEqual({ key: KEY.publicKeyBase64, validUntilTs: NOW + DAY });
    expect(knownKeysFromDocument(checked(NOW + 365 * DAY), NOW).get(KEY.keyId)?.validUntilTs).toBe(NOW + MAX_KEY_VALIDITY_MS);
  });

  it('an old key is valid until its expired_ts, and marked old', () => {
    expect(knownKeysFromDocument(checked(NOW + DAY), NOW).get(OLD_KEY.keyId)).toEqual({ key: OLD_KEY.publicKeyBase64, validUntilTs: NOW - DAY, expiredTs: NOW - DAY });
  });

  it('a key id in both lists counts as current', () => {
    const both = signJson(
      { server_name: 'example.org', valid_until_ts: NOW + DAY, verify_keys: { [KEY.keyId]: { key: KEY.publicKeyBase64 } }, old_verify_keys: { [KEY.keyId]: { key: KEY.publicKeyBase64, expired_ts: 1 } } },
      'example.org',
      KEY,
    );
    const r = verifyServerKeys(both);
    expect(r.ok && knownKeysFromDocument(r.keys, NOW).get(KEY.keyId)?.expiredTs).toBeUndefined();
  });

  it('events: v1–v4 ignore valid_until_ts, v5+ need it to reach origin_server_ts (inclusive)', () => {
    const key = { key: KEY.publicKeyBase64, validUntilTs: NOW };
    expect(isKeyValidForEvent(key, NOW + 1, v4)).toBe(true);
    expect(isKeyValidForEvent(key, NOW, v5)).toBe(true);
    expect(isKeyValidForEvent(key, NOW + 1, v5)).toBe(false);
    expect(isKeyValidForEvent(key, NOW + 1, v12)).toBe(false);
  });

  it('events: an old key only for events sent before it expired, in every room version', () => {
    const old = { key: OLD_KEY.publicKeyBase64, validUntilTs: NOW, expiredTs: NOW };
    expect(isKeyValidForEvent(old, NOW - 1, v4)).toBe(true);
    expect(isKeyValidForEvent(old, NOW, v12)).toBe(true);
    expect(isKeyValidForEvent(old, NOW + 1, v4)).toBe(false);
    expect(isKeyValidForEvent(old, NOW + 1, v12)).toBe(false);
  });

  it('requests: current keys valid now only', () => {
    expect(isKeyValidForRequest({ key: '', validUntilTs: NOW }, NOW)).toBe(true);
    expect(isKeyValidForRequest({ key: '', validUntilTs: NOW - 1 }, NOW)).toBe(false);
    expect(isKeyValidForRequest({ key: '', validUntilTs: NOW + DAY, expiredTs: NOW + DAY }, NOW)).toBe(false);
  });

  it('picks the usable public keys from a key set', () => {
    const known = knownKeysFromDocument(checked(NOW + DAY), NOW);
    expect([...keysValidForEvent(known, NOW - 2 * DAY, v12).keys()].sort()).toEqual([KEY.keyId, OLD_KEY.keyId]);
    expect([...keysValidForEvent(known, NOW, v12).keys()]).toEqual([KEY.keyId]);
    expect([...keysValidForEvent(known, NOW + 2 * DAY, v12).keys()]).toEqual([]);
    expect([...keysValidForEvent(known, NOW + 2 * DAY, v4).keys()]).toEqual([KEY.keyId]);
    const forRequest = keysValidForRequest(known, NOW);
    expect([...forRequest.keys()]).toEqual([KEY.keyId]);
    expect(forRequest.get(KEY.keyId)).toEqual(KEY.publicKey);
  });
});

describe('acting as a notary', () => {
  it('reads the spec example query', () => {
    const r = parseNotaryQuery({ server_keys: { 'example.org': { 'ed25519:abc123': { minimum_valid_until_ts: 1234567890 } } } });
    expect(r).toEqual({ ok: true, query: new Map([['example.org', new Map([['ed25519:abc123', 1234567890]])]]) });
  });

  it('an empty criteria object asks for all keys; no servers asks for nothing', () => {
    const all = parseNotaryQuery({ server_keys: { 'example.org': {} } });
    expect(all.ok && all.query.get('example.org')?.size).toBe(0);
    const none = parseNotaryQuery({ server_keys: {} });
    expect(none.ok && none.query.size).toBe(0);
    const noMinimum = parseNotaryQuery({ server_keys: { 'example.org': { 'ed25519:a': {} } } });
    expect(noMinimum.ok && noMinimum.query.get('example.org')?.get('ed25519:a')).toBeUndefined();
  });

  it('refuses malformed queries', () => {
    for (const bad of ['x', {}, { server_keys: [] }, { server_keys: { a: [] } }, { server_keys: { a: { k: 1 } } }, { server_keys: { a: { k: { minimum_valid_until_ts: '1' } } } }]) {
      expect(parseNotaryQuery(bad).ok, JSON.stringify(bad)).toBe(false);
    }
  });

  it('refetches when the copy does not reach the minimum (now by default) or is past half its life', () => {
    const cached = { fetchedAtMs: NOW, validUntilTs: NOW + 2 * DAY };
    expect(notaryShouldRefetch(cached, undefined, NOW + DAY - 1)).toBe(false);
    expect(notaryShouldRefetch(cached, undefined, NOW + DAY + 1)).toBe(true);
    // With a minimum, only the minimum counts (Synapse's rule).
    expect(notaryShouldRefetch(cached, NOW + 2 * DAY, NOW + DAY + 1)).toBe(false);
    expect(notaryShouldRefetch(cached, NOW + 2 * DAY + 1, NOW)).toBe(true);
    // Expired: always.
    expect(notaryShouldRefetch({ fetchedAtMs: NOW - 2 * DAY, validUntilTs: NOW - 1 }, undefined, NOW)).toBe(true);
  });
});
