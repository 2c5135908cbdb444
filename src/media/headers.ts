/**
 * The headers every media response carries, so that content uploaded by anyone cannot run as
 * our origin's page: a sandboxing Content-Security-Policy, `nosniff` so browsers trust the
 * stored type, and `Content-Disposition: inline` only for types a browser shows without running
 * anything (images other than SVG, audio, video, plain text); everything else — HTML, SVG, PDF,
 * JavaScript — is an attachment. Filenames are encoded per RFC 6266 / RFC 8187.
 */

/** Shown inline; anything else is served as an attachment (Synapse keeps a list of the same idea). */
const INLINE_TYPES = new Set([
  'text/plain', 'text/csv', 'application/json', 'application/ld+json',
  'image/jpeg', 'image/gif', 'image/png', 'image/apng', 'image/webp', 'image/avif',
  'video/mp4', 'video/webm', 'video/ogg', 'video/quicktime',
  'audio/mp4', 'audio/webm', 'audio/aac', 'audio/mpeg', 'audio/ogg', 'audio/wave', 'audio/wav', 'audio/x-wav', 'audio/x-pn-wav', 'audio/flac', 'audio/x-flac',
]);

export const MEDIA_CSP = "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; style-src 'unsafe-inline'; media-src 'self'; object-src 'self';";

/** The media type without parameters, lower-case (`Text/HTML; charset=x` → `text/html`). */
export function baseType(contentType: string): string {
  return contentType.split(';')[0]!.trim().toLowerCase();
}

export function isInlineType(contentType: string): boolean {
  return INLINE_TYPES.has(baseType(contentType));
}

/** RFC 8187 value characters (attr-char): everything else is percent-encoded. */
function encodeExtValue(s: string): string {
  return Array.from(Buffer.from(s, 'utf8'))
    .map((b) => {
      const c = String.fromCharCode(b);
      return /[A-Za-z0-9!#$&+.^_`|~-]/.test(c) ? c : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
    })
    .join('');
}

/**
 * `inline` or `attachment`, with the filename: as a plain quoted `filename` when it is printable
 * ASCII, else as `filename*=utf-8''…` (RFC 6266 §4.3) — no raw non-ASCII bytes in a header.
 */
export function contentDisposition(contentType: string, filename?: string): string {
  const kind = isInlineType(contentType) ? 'inline' : 'attachment';
  if (!filename) return kind;
  if (/^[\x20-\x7e]*$/.test(filename) && !/["\\]/.test(filename)) return `${kind}; filename="${filename}"`;
  return `${kind}; filename*=utf-8''${encodeExtValue(filename)}`;
}

/** Headers of every media answer, errors included. */
export const MEDIA_SAFETY_HEADERS: Record<string, string> = {
  'Content-Security-Policy': MEDIA_CSP,
  'X-Content-Type-Options': 'nosniff',
  'Cross-Origin-Resource-Policy': 'cross-origin',
};
