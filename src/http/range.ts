/**
 * The `Range` request header (RFC 9110 §14.2), as media downloads answer it: one byte range.
 * Several ranges would need a multipart/byteranges answer; a server may send the whole content
 * instead (§14.2: a server MAY ignore Range), so they get a 200, as does anything not `bytes=`.
 */

/** First and last byte, inclusive. */
export interface ByteRange {
  start: number;
  end: number;
}

/** The range to send, null to send everything (no usable Range), or 'unsatisfiable' (416). */
export function parseRange(header: string, size: number): ByteRange | null | 'unsatisfiable' {
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!m) return null;
  const [, first, last] = m;
  if (first === '' && last === '') return null;
  if (first === '') {
    // A suffix: the last N bytes.
    const n = Number(last);
    if (n === 0) return 'unsatisfiable';
    return size === 0 ? 'unsatisfiable' : { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(first);
  if (!Number.isSafeInteger(start)) return 'unsatisfiable';
  const end = last === '' ? size - 1 : Math.min(Number(last), size - 1);
  if (last !== '' && Number(last) < start) return null; // invalid: ignored (§14.1.1)
  if (start >= size) return 'unsatisfiable';
  return { start, end };
}
