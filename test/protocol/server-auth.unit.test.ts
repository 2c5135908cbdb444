import { describe, expect, it } from 'vitest';
import { decodeBase64, encodeBase64 } from '../../src/protocol/base64';
import { signingKeyFromSeed, tweetnaclEd25519 } from '../../src/protocol/crypto';
import { canonicalJson } from '../../src/protocol/json';
import {
  formatXMatrix,
  parseXMatrix,
  requestSigningJson,
  signRequest,
  verifyRequest,
  type OriginVerifyKey,
  type RequestKeyLookup,
} from '../../src/protocol/server-auth';
import { signJson } from '../../src/protocol/signing';

// content/appendices.md, "Cryptographic Test Vectors".
const SEED = decodeBase64('YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1');
const KEY = signingKeyFromSeed('ed25519:key1', SEED);
const OTHER_KEY = signingKeyFromSeed('ed25519:key2', new Uint8Array(32).fill(7));

const ORIGIN = 'origin.hs.example.com';
const DESTINATION = 'destination.hs.example.com';
const NOW = 1_700_000_000_000;

/** A key store holding the origin's keys. */
function keyStore(keys: Record<string, OriginVerifyKey>): RequestKeyLookup & { calls: [string, string, number][] } {
  const calls: [string, string, number][] = [];
  const lookup = ((origin: string, keyId: string, min: number) => {
    calls.push([origin, keyId, min]);
    return origin === ORIGIN ? keys[keyId] : undefined;
  }) as RequestKeyLookup & { calls: [string, string, number][] };
  lookup.calls = calls;
  return lookup;
}
const current = (key = KEY, validUntilTs = NOW + 3600_000): OriginVerifyKey => ({ key: key.publicKeyBase64, validUntilTs });
const store = () => keyStore({ [KEY.keyId]: current() });

describe('the signed JSON (step 1)', () => {
  it('has method, uri, origin, destination, and content only when there is a body', () => {
    expect(requestSigningJson({ method: 'GET', uri: '/target', origin: ORIGIN, destination: DESTINATION })).toEqual({
      method: 'GET', uri: '/target', origin: ORIGIN, destination: DESTINATION,
    });
    expect(requestSigningJson({ method: 'POST', uri: '/target', origin: ORIGIN, destination: DESTINATION, content: { a: 1 } })).toEqual({
      method: 'POST', uri: '/target', origin: ORIGIN, destination: DESTINATION, content: { a: 1 },
    });
    // An empty object body is still a body.
    expect(requestSigningJson({ method: 'PUT', uri: '/x', origin: ORIGIN, destination: DESTINATION, content: {} })).toHaveProperty('content', {});
  });

  it('is signed as the spec sample does it (sign_json of the object), checked with tweetnacl', () => {
    const parts = { method: 'POST', uri: '/target', origin: ORIGIN, destination: DESTINATION, content: { key: 'value', n: 1 } };
    const [header] = signRequest(parts, KEY);
    const sig = parseXMatrix(header!);
    expect(sig.ok).toBe(true);
    // Independently: the canonical JSON of the object, signed by tweetnacl.
    const bytes = new TextEncoder().encode(canonicalJson({ content: parts.content, destination: DESTINATION, method: 'POST', origin: ORIGIN, uri: '/target' }));
    const expected = encodeBase64(tweetnaclEd25519.sign(tweetnaclEd25519.secretKeyFromSeed(SEED), bytes));
    expect(sig.ok && sig.credentials.sig).toBe(expected);
    // …which is the signature signJson puts under signatures[origin][key id].
    expect(signJson(requestSigningJson(parts), ORIGIN, KEY).signatures).toEqual({ [ORIGIN]: { [KEY.keyId]: expected } });
  });
});

describe('the Authorization header (step 2)', () => {
  it('has the spec example form: one space, lower-case names, quoted values, no spaces around commas', () => {
    expect(formatXMatrix({ origin: ORIGIN, destination: DESTINATION, key: 'ed25519:key1', sig: 'ABCDEF...' })).toBe(
      'X-Matrix origin="origin.hs.example.com",destination="destination.hs.example.com",key="ed25519:key1",sig="ABCDEF..."',
    );
  });

  it('escapes quotes and backslashes (never needed for valid values)', () => {
    const header = formatXMatrix({ origin: 'a"b\\c', key: 'k', sig: 's' });
    expect(header).toBe('X-Matrix origin="a\\"b\\\\c",key="k",sig="s"');
  });

  it('gives one header per signing key', () => {
    const headers = signRequest({ method: 'GET', uri: '/x', origin: ORIGIN, destination: DESTINATION }, [KEY, OTHER_KEY]);
    expect(headers).toHaveLength(2);
    expect(headers[1]).toContain('key="ed25519:key2"');
  });
});

describe('parsing X-Matrix', () => {
  const ok = (header: string) => {
    const r = parseXMatrix(header);
    if (!r.ok) throw new Error(r.error);
    return r.credentials;
  };

  it('reads the spec example', () => {
    expect(ok('X-Matrix origin="origin.hs.example.com",destination="destination.hs.example.com",key="ed25519:key1",sig="ABCDEF..."')).toEqual({
      origin: 'origin.hs.example.com', destination: 'destination.hs.example.com', key: 'ed25519:key1', sig: 'ABCDEF...',
    });
  });

  it('names are case-insensitive, order does not matter, the scheme is case-insensitive', () => {
    expect(ok('x-matrix SIG="s",Key="ed25519:a",ORIGIN="o.org"')).toEqual({ origin: 'o.org', key: 'ed25519:a', sig: 's' });
  });

  it('takes token values unquoted, and (compatibility) colons and slashes in them', () => {
    expect(ok('X-Matrix origin=o.org:8448,key=ed25519:a,sig=ab+/cd')).toEqual({ origin: 'o.org:8448', key: 'ed25519:a', sig: 'ab+/cd' });
  });

  it('allows spaces and tabs around commas and "=", several spaces after the scheme, empty elements', () => {
    expect(ok('X-Matrix   origin = "o.org" ,\tkey="ed25519:a"\t, , sig="s" ')).toEqual({ origin: 'o.org', key: 'ed25519:a', sig: 's' });
  });

  it('undoes backslash escapes in quoted values', () => {
    expect(ok('X-Matrix origin="o\\.org",key="ed25519:a",sig="a\\"b"').sig).toBe('a"b');
    expect(ok('X-Matrix origin="o\\.org",key="ed25519:a",sig="s"').origin).toBe('o.org');
  });

  it('ignores unknown parameters', () => {
    expect(ok('X-Matrix origin="o.org",foo="bar",key="ed25519:a",sig="s",baz=1')).toEqual({ origin: 'o.org', key: 'ed25519:a', sig: 's' });
  });

  it('refuses duplicates, missing parameters, bad values and other schemes', () => {
    for (const bad of [
      'X-Matrix origin="a.org",origin="b.org",key="ed25519:a",sig="s"',
      'X-Matrix origin="a.org",ORIGIN="a.org",key="ed25519:a",sig="s"',
      'X-Matrix key="ed25519:a",sig="s"',
      'X-Matrix origin="a.org",sig="s"',
      'X-Matrix origin="a.org",key="ed25519:a"',
      'X-Matrix origin="a.org",key="ed25519:a",signature="s"', // the prose's name; nobody sends it
      'X-Matrix origin="not a server",key="ed25519:a",sig="s"',
      'X-Matrix origin="a.org",destination="b b",key="ed25519:a",sig="s"',
      'X-Matrix origin="a.org",key="nocolon",sig="s"',
      'X-Matrix origin="a.org",key="ed25519:a",sig="s',
      'X-Matrix origin="a.org",key="ed25519:a",sig=',
      'X-Matrix origin="a.org" key="ed25519:a",sig="s"',
      'X-Matrix origin="a.org",key="ed25519:a",sig="s\u0001"',
      'X-Matrix origin=a"b,key="ed25519:a",sig="s"',
      'X-Matrixorigin="a.org",key="ed25519:a",sig="s"',
      'Bearer abc',
      'X-Matrix',
    ]) {
      expect(parseXMatrix(bad).ok, bad).toBe(false);
    }
  });
});

describe('verifying requests', () => {
  const request = (headers: Record<string, string | string[]>, overrides: Partial<{ method: string; uri: string; body: unknown }> = {}) => ({
    method: 'PUT',
    uri: '/_matrix/federation/v1/send/txn1?x=%20y',
    body: { pdus: [], origin: ORIGIN, origin_server_ts: 1 },
    headers,
    ...overrides,
  }) as Parameters<typeof verifyRequest>[0];
  const signed = (overrides: Partial<{ method: string; uri: string; body: unknown; destination: string }> = {}, keys = [KEY]) => {
    const method = overrides.method ?? 'PUT';
    const uri = overrides.uri ?? '/_matrix/federation/v1/send/txn1?x=%20y';
    const body = 'body' in overrides ? overrides.body : { pdus: [], origin: ORIGIN, origin_server_ts: 1 };
    return signRequest({ method, uri, origin: ORIGIN, destination: overrides.destination ?? DESTINATION, content: body as never }, keys);
  };

  it('accepts a correctly signed request and names the origin', async () => {
    const lookup = store();
    const result = await verifyRequest(request({ Authorization: signed()[0]! }), DESTINATION, lookup, NOW);
    expect(result).toEqual({ ok: true, origin: ORIGIN, destination: DESTINATION, verifiedKeyIds: ['ed25519:key1'] });
    // The key store is asked for a key valid now.
    expect(lookup.calls).toEqual([[ORIGIN, 'ed25519:key1', NOW]]);
  });

  it('accepts a GET without a body', async () => {
    const headers = signed({ method: 'GET', uri: '/_matrix/federation/v1/version', body: undefined });
    const result = await verifyRequest(request({ authorization: headers[0]! }, { method: 'GET', uri: '/_matrix/federation/v1/version', body: undefined }), DESTINATION, store(), NOW);
    expect(result.ok).toBe(true);
  });

  it('accepts a header without destination (servers before v1.3), signed for our name', async () => {
    const header = signed()[0]!.replace(`destination="${DESTINATION}",`, '');
    expect(header).not.toContain('destination');
    expect((await verifyRequest(request({ authorization: header }), DESTINATION, store(), NOW)).ok).toBe(true);
  });

  const refused = async (req: Parameters<typeof verifyRequest>[0], lookup: RequestKeyLookup = store()) => {
    const result = await verifyRequest(req, DESTINATION, lookup, NOW);
    expect(result.ok).toBe(false);
    if (!result.ok) {
      expect(result.status).toBe(401);
      expect(result.errcode).toBe('M_UNAUTHORIZED');
    }
    return result.ok ? '' : result.error;
  };

  it('401 without an Authorization header, or with another scheme', async () => {
    expect(await refused(request({}))).toMatch(/Missing/);
    expect(await refused(request({ authorization: 'Bearer abc' }))).toMatch(/not X-Matrix/);
  });

  it('401 for a malformed header', async () => {
    expect(await refused(request({ authorization: 'X-Matrix origin="a.org"' }))).toMatch(/Malformed/);
  });

  it('401 when the destination is another server', async () => {
    expect(await refused(request({ authorization: signed({ destination: 'other.example.com' })[0]! }))).toMatch(/not this server/);
  });

  it('401 when anything signed differs: method, uri (even its encoding or query), body', async () => {
    const header = signed()[0]!;
    expect(await refused(request({ authorization: header }, { method: 'POST' }))).toMatch(/Invalid signature/);
    expect(await refused(request({ authorization: header }, { uri: '/_matrix/federation/v1/send/txn1?x=+y' }))).toMatch(/Invalid signature/);
    expect(await refused(request({ authorization: header }, { uri: '/_matrix/federation/v1/send/txn1' }))).toMatch(/Invalid signature/);
    expect(await refused(request({ authorization: header }, { body: { pdus: [], origin: ORIGIN, origin_server_ts: 2 } }))).toMatch(/Invalid signature/);
    expect(await refused(request({ authorization: header }, { body: undefined }))).toMatch(/Invalid signature/);
  });

  it('401 for a signature by another key under this key id, or a garbled one', async () => {
    const forged = signed({}, [signingKeyFromSeed('ed25519:key1', new Uint8Array(32).fill(9))])[0]!;
    expect(await refused(request({ authorization: forged }))).toMatch(/Invalid signature/);
    const garbled = signed()[0]!.replace(/sig="[^"]*"/, 'sig="!!!"');
    expect(await refused(request({ authorization: garbled }))).toMatch(/not base64/);
    const short = signed()[0]!.replace(/sig="[^"]*"/, 'sig="AAAA"');
    expect(await refused(request({ authorization: short }))).toMatch(/Invalid signature/);
  });

  it('401 for an unknown key, an expired key, or an old key (old_verify_keys sign events only)', async () => {
    const header = signed()[0]!;
    expect(await refused(request({ authorization: header }), keyStore({}))).toMatch(/unknown/);
    expect(await refused(request({ authorization: header }), keyStore({ [KEY.keyId]: current(KEY, NOW - 1) }))).toMatch(/valid only until/);
    expect(await refused(request({ authorization: header }), keyStore({ [KEY.keyId]: { key: KEY.publicKeyBase64, validUntilTs: NOW + 1e9, expiredTs: NOW + 1e9 } }))).toMatch(/old key/);
    // valid_until_ts exactly now still covers now.
    expect((await verifyRequest(request({ authorization: header }), DESTINATION, keyStore({ [KEY.keyId]: current(KEY, NOW) }), NOW)).ok).toBe(true);
  });

  it('takes the public key as bytes too, and an async key store', async () => {
    const lookup: RequestKeyLookup = async () => ({ key: KEY.publicKey, validUntilTs: NOW + 1 });
    expect((await verifyRequest(request({ authorization: signed()[0]! }), DESTINATION, lookup, NOW)).ok).toBe(true);
  });

  it('a failing key store is our failure: the error propagates instead of becoming a 401', async () => {
    const broken: RequestKeyLookup = async () => {
      throw new Error('key cache unreachable');
    };
    await expect(verifyRequest(request({ authorization: signed()[0]! }), DESTINATION, broken, NOW)).rejects.toThrow('key cache unreachable');
  });

  describe('several Authorization headers', () => {
    const both = keyStore({ [KEY.keyId]: current(KEY), [OTHER_KEY.keyId]: current(OTHER_KEY) });

    it('all signatures by known keys must verify; at least one must', async () => {
      const headers = signed({}, [KEY, OTHER_KEY]);
      const result = await verifyRequest(request({ authorization: headers }), DESTINATION, both, NOW);
      expect(result).toMatchObject({ ok: true, verifiedKeyIds: ['ed25519:key1', 'ed25519:key2'] });
      const oneBad = [headers[0]!, headers[1]!.replace(/sig="[^"]*"/, `sig="${encodeBase64(new Uint8Array(64))}"`)];
      expect(await refused(request({ authorization: oneBad }), both)).toMatch(/Invalid signature.*key2/);
    });

    it('a signature by a key we cannot find is skipped when another verifies', async () => {
      const headers = signed({}, [KEY, OTHER_KEY]);
      const result = await verifyRequest(request({ authorization: headers }), DESTINATION, store(), NOW);
      expect(result).toMatchObject({ ok: true, verifiedKeyIds: ['ed25519:key1'] });
    });

    it('headers naming different origins, or one malformed, are refused', async () => {
      const mine = signed()[0]!;
      const theirs = mine.replace(`origin="${ORIGIN}"`, 'origin="evil.example.org"');
      expect(await refused(request({ authorization: [mine, theirs] }))).toMatch(/different origins/);
      expect(await refused(request({ authorization: [mine, 'X-Matrix nonsense'] }))).toMatch(/Malformed/);
    });

    it('one header with a wrong destination spoils the request', async () => {
      const good = signed()[0]!;
      const elsewhere = signed({ destination: 'other.example.com' }, [OTHER_KEY])[0]!;
      expect(await refused(request({ authorization: [good, elsewhere] }), both)).toMatch(/not this server/);
    });

    it('the same key twice with different signatures is refused; an identical repeat is fine', async () => {
      const header = signed()[0]!;
      expect((await verifyRequest(request({ authorization: [header, header] }), DESTINATION, store(), NOW)).ok).toBe(true);
      const other = header.replace(/sig="[^"]*"/, 'sig="AAAA"');
      expect(await refused(request({ authorization: [header, other] }))).toMatch(/Two different signatures/);
    });

    it('headers with other schemes are ignored beside an X-Matrix one', async () => {
      expect((await verifyRequest(request({ authorization: ['Bearer x', signed()[0]!] }), DESTINATION, store(), NOW)).ok).toBe(true);
    });
  });

  it('400 M_BAD_JSON for a body that has no canonical JSON form', async () => {
    const result = await verifyRequest(request({ authorization: signed()[0]! }, { body: { x: 1.5 } }), DESTINATION, store(), NOW);
    expect(result).toMatchObject({ ok: false, status: 400, errcode: 'M_BAD_JSON' });
  });
});
