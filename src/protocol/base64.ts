/**
 * Unpadded base64 as Matrix uses it (appendix "Unpadded Base64"): the standard alphabet for keys,
 * signatures and hashes, the URL-safe alphabet for room v4+ event ids and v12 room ids.
 * Decoding accepts padded and unpadded input but is strict about the alphabet: Buffer's own
 * decoder silently skips junk, which would let two different strings decode to one key.
 */

const STANDARD = /^[A-Za-z0-9+/]*={0,2}$/;
const URL_SAFE = /^[A-Za-z0-9\-_]*={0,2}$/;

export function encodeBase64(bytes: Uint8Array): string {
  return stripPadding(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64'));
}

export function encodeBase64Url(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64url');
}

function stripPadding(s: string): string {
  let end = s.length;
  while (end > 0 && s.charCodeAt(end - 1) === 0x3d) end--;
  return s.slice(0, end);
}

/** Decode standard-alphabet base64, padded or not. Throws on other characters or a bad length. */
export function decodeBase64(s: string): Uint8Array {
  return decodeWith(s, STANDARD, 'base64');
}

/** Decode URL-safe base64, padded or not. */
export function decodeBase64Url(s: string): Uint8Array {
  return decodeWith(s, URL_SAFE, 'base64url');
}

function decodeWith(s: string, alphabet: RegExp, encoding: 'base64' | 'base64url'): Uint8Array {
  if (!alphabet.test(s)) throw new Base64Error('Invalid base64 character');
  const body = stripPadding(s);
  if (body.length % 4 === 1) throw new Base64Error('Invalid base64 length');
  const padded = s.length - body.length;
  if (padded > 0 && (body.length + padded) % 4 !== 0) throw new Base64Error('Invalid base64 padding');
  // Non-zero trailing bits are tolerated, as other servers do: the spec's own test seed
  // ("...XA1") has them.
  const out = Buffer.from(body, encoding);
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

export class Base64Error extends Error {
  override name = 'Base64Error';
}
