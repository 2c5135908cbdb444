/**
 * X-Matrix request authentication (server-server API, "Request Authentication"): every request
 * one homeserver makes to another carries, in its `Authorization` header, a signature over a
 * JSON object naming the method, the target, both server names and the body.
 *
 *   Step 1: sign `{method, uri, origin, destination, content?}` with the JSON signing algorithm.
 *   Step 2: `Authorization: X-Matrix origin="…",destination="…",key="ed25519:…",sig="…"`.
 *
 * Server names here are the names before any delegation (`.well-known`, SRV): a request to
 * example.org delegated to matrix.example.org is still signed for `destination: example.org`.
 * Key look-ups are passed in (DESIGN rule 5); this module does no I/O.
 */
import { Base64Error, decodeBase64, encodeBase64 } from './base64';
import { isValidKeyId, signBytes, verifyBytes, type SigningKey } from './crypto';
import { CanonicalJsonError, canonicalJsonBytes, type JsonObject, type JsonValue } from './json';
import type { KnownVerifyKey } from './server-keys';
import { parseServerName } from './server-names';

/** What a request is, for signing and for verification. */
export interface FederationRequestParts {
  /** HTTP method, upper case (`GET`, `PUT`…). */
  method: string;
  /**
   * The request target exactly as sent: path from `/_matrix/…` plus `?` and the query string
   * when there is one, percent-encoding untouched, no scheme or host.
   */
  uri: string;
  origin: string;
  destination: string;
  /** The JSON-parsed request body; undefined when the request has none (GET). */
  content?: JsonValue;
}

/**
 * The object that is signed (step 1, without `signatures`). `content` is present only when the
 * request has a body — for PUT/POST that is always (the spec requires a JSON object body, `{}`
 * at least).
 */
export function requestSigningJson(parts: FederationRequestParts): JsonObject {
  const json: JsonObject = { method: parts.method, uri: parts.uri, origin: parts.origin, destination: parts.destination };
  if (parts.content !== undefined) json.content = parts.content;
  return json;
}

/** The bytes signed: canonical JSON of requestSigningJson. Throws CanonicalJsonError for a body with floats. */
export function requestSigningBytes(parts: FederationRequestParts): Uint8Array {
  return canonicalJsonBytes(requestSigningJson(parts));
}

export interface XMatrixCredentials {
  origin: string;
  /** Absent only from servers older than spec v1.3; we always send it. */
  destination?: string;
  /** Key id, algorithm included (`ed25519:abc`). */
  key: string;
  /** Unpadded base64 signature. */
  sig: string;
}

/**
 * The `Authorization` header values for a request, one per signing key (a server with several
 * current keys may send several headers; receivers need one to verify). The first is the one to
 * send when only one header is wanted.
 */
export function signRequest(parts: FederationRequestParts, keys: SigningKey | readonly SigningKey[]): string[] {
  const list = Array.isArray(keys) ? keys : [keys as SigningKey];
  if (list.length === 0) throw new Error('signRequest needs at least one signing key');
  const bytes = requestSigningBytes(parts);
  return list.map((k) =>
    formatXMatrix({ origin: parts.origin, destination: parts.destination, key: k.keyId, sig: encodeBase64(signBytes(k, bytes)) }),
  );
}

/**
 * Format an X-Matrix header value the way the spec asks senders to, for older receivers: one
 * space after the scheme, lower-case names, no whitespace around commas, every value quoted
 * (server names with a port contain `:`, signatures `/` — neither is a token character), and a
 * backslash only where a value holds `"` or `\` (never for valid names, key ids or base64).
 */
export function formatXMatrix(credentials: XMatrixCredentials): string {
  const params: [string, string][] = [['origin', credentials.origin]];
  if (credentials.destination !== undefined) params.push(['destination', credentials.destination]);
  params.push(['key', credentials.key], ['sig', credentials.sig]);
  return `X-Matrix ${params.map(([name, value]) => `${name}=${quote(value)}`).join(',')}`;
}

function quote(value: string): string {
  return `"${value.replace(/["\\]/g, (c) => `\\${c}`)}"`;
}

export type XMatrixParse = { ok: true; credentials: XMatrixCredentials } | { ok: false; error: string };

// RFC 9110 §5.6.2 tchar.
const TCHAR = /[!#$%&'*+\-.^_`|~0-9A-Za-z]/;
// Unquoted values also take ':' (the spec's compatibility rule for older senders) and '/'
// (base64 signatures; Synapse takes any unquoted value up to the next comma).
const UNQUOTED_VALUE_CHAR = /[!#$%&'*+\-.^_`|~0-9A-Za-z:/]/;

/**
 * Parse an `Authorization` header value with the X-Matrix scheme (RFC 9110 §11.4 credentials, as
 * the spec summarises them): the scheme (case-insensitive), one or more spaces, then
 * comma-separated `name=value` pairs with optional spaces/tabs around commas (and, as RFC 9110
 * allows, around `=`). Names are case-insensitive; a value is a token or a quoted string whose
 * backslash escapes are undone. Unknown parameters are ignored; a parameter given twice is an
 * error (which of the two would count is unclear). `origin`, `key` and `sig` are required;
 * `destination` is optional for compatibility with servers older than v1.3.
 *
 * The spec's prose calls the signature parameter `signature`, but its example, its Python
 * sample and every server use `sig`; that is the name read here.
 */
export function parseXMatrix(header: string): XMatrixParse {
  const scheme = /^X-Matrix[ \t]+/i.exec(header);
  if (!scheme) return { ok: false, error: 'Authorization scheme is not X-Matrix' };
  const text = header;
  let pos = scheme[0].length;
  const params = new Map<string, string>();
  const skipWhitespace = () => {
    while (pos < text.length && (text[pos] === ' ' || text[pos] === '\t')) pos++;
  };

  for (;;) {
    skipWhitespace();
    if (pos >= text.length) break;
    if (text[pos] === ',') {
      // An empty list element (RFC 9110 §5.6.1: recipients accept them).
      pos++;
      continue;
    }
    const nameStart = pos;
    while (pos < text.length && TCHAR.test(text[pos]!)) pos++;
    if (pos === nameStart) return { ok: false, error: `Unexpected character ${JSON.stringify(text[pos])} at ${pos}` };
    const name = text.slice(nameStart, pos).toLowerCase();
    skipWhitespace();
    if (text[pos] !== '=') return { ok: false, error: `Parameter ${name} has no value` };
    pos++;
    skipWhitespace();

    let value: string;
    if (text[pos] === '"') {
      pos++;
      value = '';
      for (;;) {
        if (pos >= text.length) return { ok: false, error: `Unterminated quoted value for ${name}` };
        const c = text[pos]!;
        if (c === '"') {
          pos++;
          break;
        }
        if (c === '\\') {
          if (pos + 1 >= text.length) return { ok: false, error: `Unterminated quoted value for ${name}` };
          value += text[pos + 1];
          pos += 2;
          continue;
        }
        if (c.charCodeAt(0) < 0x20 && c !== '\t') return { ok: false, error: `Control character in value for ${name}` };
        if (c.charCodeAt(0) === 0x7f) return { ok: false, error: `Control character in value for ${name}` };
        value += c;
        pos++;
      }
    } else {
      const valueStart = pos;
      while (pos < text.length && UNQUOTED_VALUE_CHAR.test(text[pos]!)) pos++;
      if (pos === valueStart) return { ok: false, error: `Parameter ${name} has an empty or invalid value` };
      value = text.slice(valueStart, pos);
    }
    if (params.has(name)) return { ok: false, error: `Parameter ${name} is given more than once` };
    params.set(name, value);

    skipWhitespace();
    if (pos >= text.length) break;
    if (text[pos] !== ',') return { ok: false, error: `Expected ',' at ${pos}` };
    pos++;
  }

  const origin = params.get('origin');
  const key = params.get('key');
  const sig = params.get('sig');
  const destination = params.get('destination');
  if (origin === undefined) return { ok: false, error: 'origin is missing' };
  if (key === undefined) return { ok: false, error: 'key is missing' };
  if (sig === undefined) return { ok: false, error: 'sig is missing' };
  if (!parseServerName(origin)) return { ok: false, error: `origin is not a valid server name: ${JSON.stringify(origin)}` };
  if (destination !== undefined && !parseServerName(destination)) return { ok: false, error: `destination is not a valid server name: ${JSON.stringify(destination)}` };
  if (!isValidKeyId(key)) return { ok: false, error: `key is not a valid key id: ${JSON.stringify(key)}` };
  const credentials: XMatrixCredentials = { origin, key, sig };
  if (destination !== undefined) credentials.destination = destination;
  return { ok: true, credentials };
}

// ---------------------------------------------------------------------------------------------
// Verification
// ---------------------------------------------------------------------------------------------

/**
 * A verify key of the origin, as the key cache knows it (server-keys.ts KnownVerifyKey; the
 * public key may also be given as raw bytes).
 */
export type OriginVerifyKey = Omit<KnownVerifyKey, 'key'> & { key: string | Uint8Array };

/**
 * Look up `origin`'s key `keyId`. `minimumValidUntilTs` is the time the key must be valid at
 * (now): a cache holding an older copy should refetch, as it would with a notary's
 * `minimum_valid_until_ts`. Undefined when the key cannot be found.
 */
export type RequestKeyLookup = (
  origin: string,
  keyId: string,
  minimumValidUntilTs: number,
) => OriginVerifyKey | undefined | Promise<OriginVerifyKey | undefined>;

export interface InboundRequest {
  method: string;
  /** Path and query exactly as received (not decoded, not re-encoded). */
  uri: string;
  /** The JSON-parsed body; undefined for a request without one (GET). */
  body?: JsonValue;
  /**
   * Request headers, names in any case. Several `Authorization` headers may arrive; pass them as
   * an array (a header map that keeps only one of them loses the others).
   */
  headers: Readonly<Record<string, string | readonly string[] | undefined>>;
}

export type RequestAuthentication =
  | { ok: true; origin: string; destination: string; verifiedKeyIds: string[] }
  | { ok: false; status: 401; errcode: 'M_UNAUTHORIZED'; error: string }
  | { ok: false; status: 400; errcode: 'M_BAD_JSON'; error: string };

function unauthorized(error: string): RequestAuthentication {
  return { ok: false, status: 401, errcode: 'M_UNAUTHORIZED', error };
}

/** The `Authorization` header values of a request, in order. */
export function authorizationHeaders(headers: InboundRequest['headers']): string[] {
  const out: string[] = [];
  for (const [name, value] of Object.entries(headers)) {
    if (name.toLowerCase() !== 'authorization' || value === undefined) continue;
    if (typeof value === 'string') out.push(value);
    else out.push(...value);
  }
  return out;
}

/**
 * Authenticate an inbound federation request. Answers 401 `M_UNAUTHORIZED` when: there is no
 * X-Matrix `Authorization` header; one is malformed; the headers disagree on the origin; a
 * `destination` is not `ourServerName`; no signature can be checked with a current key of the
 * origin (unknown key, old key, key not valid now); or a signature checked is wrong. 400
 * `M_BAD_JSON` when the body cannot be put in canonical JSON.
 *
 * Several headers (the spec is silent on them): all X-Matrix headers must name the same origin
 * and pass the destination check; each signature by a key we can find must verify; signatures
 * by keys we cannot find are skipped; at least one must verify. This is what Synapse's
 * Authenticator and Keyring do together, except that Synapse lets the last header's origin win
 * where we refuse a mix of origins. Authorization headers with another scheme are ignored.
 *
 * Keys: only current keys (`verify_keys`) authenticate requests — the spec's `old_verify_keys`
 * "are only valid for signing events" — and only while `validUntilTs` covers `nowMs`. (Synapse
 * also takes an old key whose `expired_ts` is still ahead; we follow the spec.) An exception
 * thrown by `lookupKey` (say, the key cache is unreachable) propagates: that is our failure,
 * not the peer's, and deserves a 5xx rather than a 401.
 */
export async function verifyRequest(
  request: InboundRequest,
  ourServerName: string,
  lookupKey: RequestKeyLookup,
  nowMs: number,
): Promise<RequestAuthentication> {
  const all = authorizationHeaders(request.headers);
  const xMatrix = all.filter((h) => /^X-Matrix(?:[ \t]|$)/i.test(h));
  if (xMatrix.length === 0) return unauthorized(all.length ? 'Authorization header is not X-Matrix' : 'Missing Authorization header');

  const credentials: XMatrixCredentials[] = [];
  for (const header of xMatrix) {
    const parsed = parseXMatrix(header);
    if (!parsed.ok) return unauthorized(`Malformed X-Matrix Authorization header: ${parsed.error}`);
    credentials.push(parsed.credentials);
  }
  const origin = credentials[0]!.origin;
  for (const c of credentials) {
    if (c.origin !== origin) return unauthorized('Authorization headers name different origins');
    // Spec: "If this property is included, but the value does not match the receiving server's
    // name, the receiving server must deny the request with an HTTP status code 401".
    if (c.destination !== undefined && c.destination !== ourServerName) {
      return unauthorized(`Request is for ${JSON.stringify(c.destination)}, not this server`);
    }
  }
  const seen = new Map<string, string>();
  for (const c of credentials) {
    const earlier = seen.get(c.key);
    if (earlier !== undefined && earlier !== c.sig) return unauthorized(`Two different signatures with key ${c.key}`);
    seen.set(c.key, c.sig);
  }

  let signedBytes: Uint8Array;
  try {
    // Servers older than v1.3 send no destination; they signed with our name anyway.
    signedBytes = requestSigningBytes({ method: request.method, uri: request.uri, origin, destination: ourServerName, content: request.body });
  } catch (e) {
    if (e instanceof CanonicalJsonError) return { ok: false, status: 400, errcode: 'M_BAD_JSON', error: `Body cannot be signed: ${e.message}` };
    throw e;
  }

  const verifiedKeyIds: string[] = [];
  const skipped: string[] = [];
  for (const [keyId, sig] of seen) {
    if (!keyId.startsWith('ed25519:')) {
      skipped.push(`${keyId} (unsupported algorithm)`);
      continue;
    }
    const key = await lookupKey(origin, keyId, nowMs);
    if (!key) {
      skipped.push(`${keyId} (unknown)`);
      continue;
    }
    if (key.expiredTs !== undefined) {
      skipped.push(`${keyId} (an old key, valid for events only)`);
      continue;
    }
    if (key.validUntilTs < nowMs) {
      skipped.push(`${keyId} (valid only until ${key.validUntilTs})`);
      continue;
    }
    const publicKey = typeof key.key === 'string' ? decodeBase64OrNull(key.key) : key.key;
    if (!publicKey) {
      skipped.push(`${keyId} (stored key is not base64)`);
      continue;
    }
    const signature = decodeBase64OrNull(sig);
    if (!signature) return unauthorized(`Signature with ${keyId} is not base64`);
    if (!verifyBytes(publicKey, signedBytes, signature)) return unauthorized(`Invalid signature with ${origin}'s key ${keyId}`);
    verifiedKeyIds.push(keyId);
  }
  if (verifiedKeyIds.length === 0) return unauthorized(`No usable key of ${origin} to check the request with: ${skipped.join(', ')}`);
  return { ok: true, origin, destination: ourServerName, verifiedKeyIds };
}

function decodeBase64OrNull(text: string): Uint8Array | null {
  try {
    return decodeBase64(text);
  } catch (e) {
    if (e instanceof Base64Error) return null;
    throw e;
  }
}
