/**
 * The federation media answer (spec v1.11, `GET /_matrix/federation/v1/media/download|thumbnail`):
 * `multipart/mixed` with two parts — a JSON metadata object, then either the bytes (with their
 * `Content-Type` and `Content-Disposition`) or a `Location` header naming where to get them.
 *
 * Written here: the boundary, the framing around the bytes (so the answer's length is known and
 * the bytes stream from the store between the two), and a streaming reader of such an answer — the
 * content part is handed on chunk by chunk as it arrives, never held whole. Only the part headers
 * and the JSON part are buffered, each under a small limit. No I/O: bytes in, bytes out.
 */
import { randomBytes } from 'node:crypto';

/** Headers of one part, and the JSON metadata, are refused past these sizes (they are tiny in practice). */
export const MAX_PART_HEADER_BYTES = 16 * 1024;
export const MAX_METADATA_BYTES = 64 * 1024;

export class MultipartError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MultipartError';
  }
}

export function newBoundary(): string {
  return randomBytes(16).toString('hex');
}

/** The bytes before and after the content of a two-part answer: `head + content + tail` is the whole body. */
export function multipartFraming(boundary: string, metadata: unknown, contentHeaders: Record<string, string>): { head: Buffer; tail: Buffer } {
  const lines = Object.entries(contentHeaders).map(([k, v]) => `${k}: ${v}\r\n`).join('');
  const head = Buffer.from(`--${boundary}\r\nContent-Type: application/json\r\n\r\n${JSON.stringify(metadata)}\r\n--${boundary}\r\n${lines}\r\n`);
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  return { head, tail };
}

/** The boundary parameter of a `multipart/mixed` Content-Type, or null when it is not one. */
export function multipartBoundary(contentType: string | undefined): string | null {
  if (!contentType) return null;
  const [type, ...params] = contentType.split(';');
  if (type!.trim().toLowerCase() !== 'multipart/mixed') return null;
  for (const p of params) {
    const eq = p.indexOf('=');
    if (eq < 0 || p.slice(0, eq).trim().toLowerCase() !== 'boundary') continue;
    let v = p.slice(eq + 1).trim();
    if (v.startsWith('"') && v.endsWith('"') && v.length >= 2) v = v.slice(1, -1);
    // RFC 2046: 1 to 70 characters.
    return v.length >= 1 && v.length <= 70 ? v : null;
  }
  return null;
}

/** The file name of a `Content-Disposition` value (`filename*=utf-8''…` preferred, else `filename=`). */
export function dispositionFilename(value: string | undefined): string | undefined {
  if (!value) return undefined;
  const star = /(?:^|;)\s*filename\*\s*=\s*([^']*)'[^']*'([^;]*)/i.exec(value);
  if (star && /^utf-8$/i.test(star[1]!.trim())) {
    try {
      return decodeURIComponent(star[2]!.trim());
    } catch {
      // fall through to the plain parameter
    }
  }
  const plain = /(?:^|;)\s*filename\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)/i.exec(value);
  if (!plain) return undefined;
  let v = plain[1]!.trim();
  if (v.startsWith('"')) v = v.slice(1, -1).replace(/\\(.)/g, '$1');
  return v || undefined;
}

/** Reads a byte stream with look-ahead: up to a delimiter, or streaming everything before one. */
class DelimitedReader {
  private buf: Buffer = Buffer.alloc(0);
  private done = false;
  constructor(private readonly it: AsyncIterator<Uint8Array>) {}

  private async more(): Promise<boolean> {
    if (this.done) return false;
    const next = await this.it.next();
    if (next.done) {
      this.done = true;
      return false;
    }
    this.buf = this.buf.length === 0 ? Buffer.from(next.value) : Buffer.concat([this.buf, next.value]);
    return true;
  }

  /** The bytes before `delim` (consumed with it), at most `max` of them. */
  async until(delim: Buffer, max: number, what: string): Promise<Buffer> {
    let from = 0;
    for (;;) {
      const at = this.buf.indexOf(delim, from);
      if (at >= 0) {
        if (at > max) throw new MultipartError(`${what} is over ${max} bytes`);
        const out = this.buf.subarray(0, at);
        this.buf = this.buf.subarray(at + delim.length);
        return out;
      }
      if (this.buf.length > max + delim.length) throw new MultipartError(`${what} is over ${max} bytes`);
      from = Math.max(0, this.buf.length - delim.length + 1);
      if (!(await this.more())) throw new MultipartError(`the answer ended inside ${what}`);
    }
  }

  async startsWith(bytes: Buffer): Promise<boolean> {
    while (this.buf.length < bytes.length) if (!(await this.more())) return false;
    return this.buf.subarray(0, bytes.length).equals(bytes);
  }

  skip(n: number): void {
    this.buf = this.buf.subarray(n);
  }

  /** Everything before `delim`, chunk by chunk (the delimiter is consumed, not yielded). */
  async *streamUntil(delim: Buffer, what: string): AsyncGenerator<Buffer> {
    for (;;) {
      const at = this.buf.indexOf(delim);
      if (at >= 0) {
        if (at > 0) yield this.buf.subarray(0, at);
        this.buf = this.buf.subarray(at + delim.length);
        return;
      }
      // Keep what could be the start of the delimiter; hand on the rest.
      const keep = Math.min(this.buf.length, delim.length - 1);
      if (this.buf.length > keep) {
        const out = this.buf.subarray(0, this.buf.length - keep);
        this.buf = Buffer.from(this.buf.subarray(this.buf.length - keep));
        yield out;
      }
      if (!(await this.more())) throw new MultipartError(`the answer ended inside ${what}`);
    }
  }
}

function parseHeaders(raw: Buffer): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const line of raw.toString('latin1').split('\r\n')) {
    if (line === '') continue;
    const colon = line.indexOf(':');
    if (colon <= 0) throw new MultipartError(`a part header without a name: ${JSON.stringify(line.slice(0, 80))}`);
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return headers;
}

export interface FederationMediaAnswer {
  /** The first part, parsed as JSON (an object; `{}` today). */
  metadata: unknown;
  /** Headers of the second part (lower-case names): `content-type`, `content-disposition`, or `location`. */
  headers: Record<string, string>;
  /** The second part's bytes as they arrive (empty for a `Location` part). Read it to the end. */
  body: AsyncGenerator<Buffer>;
}

/**
 * Read a two-part federation media answer from `body` (the HTTP body of a `multipart/mixed` answer
 * with `boundary`). Resolves once the second part's headers are read; its bytes follow in `body`.
 * Throws MultipartError for anything malformed (also from the body iterator, mid-way).
 */
export async function readFederationMedia(body: AsyncIterable<Uint8Array>, boundary: string): Promise<FederationMediaAnswer> {
  const reader = new DelimitedReader(body[Symbol.asyncIterator]());
  const dash = Buffer.from(`--${boundary}`);
  const crlf = Buffer.from('\r\n');
  const between = Buffer.from(`\r\n--${boundary}`);

  // A preamble may come before the first delimiter (RFC 2046 §5.1.1).
  const preamble = await reader.until(dash, MAX_PART_HEADER_BYTES, 'the preamble');
  if (preamble.length > 0 && !preamble.subarray(preamble.length - 2).equals(crlf)) throw new MultipartError('the first boundary is not at the start of a line');

  const partHeaders = async (which: string): Promise<Record<string, string>> => {
    // The rest of the boundary line: transport padding, then CRLF ("--" would close the body).
    const rest = await reader.until(crlf, 256, `the boundary line before ${which}`);
    if (rest.toString('latin1').trim() !== '') throw new MultipartError(`the body ended (or was malformed) before ${which}`);
    if (await reader.startsWith(crlf)) {
      reader.skip(2);
      return {};
    }
    return parseHeaders(await reader.until(Buffer.from('\r\n\r\n'), MAX_PART_HEADER_BYTES, `the headers of ${which}`));
  };

  const jsonHeaders = await partHeaders('the metadata part');
  const jsonType = jsonHeaders['content-type'];
  if (jsonType !== undefined && !/^application\/json\s*(;|$)/i.test(jsonType)) throw new MultipartError(`the metadata part is ${jsonType}, not application/json`);
  const jsonBytes = await reader.until(between, MAX_METADATA_BYTES, 'the metadata part');
  let metadata: unknown;
  try {
    metadata = JSON.parse(jsonBytes.toString('utf8'));
  } catch {
    throw new MultipartError('the metadata part is not JSON');
  }
  if (metadata === null || typeof metadata !== 'object' || Array.isArray(metadata)) throw new MultipartError('the metadata part is not a JSON object');

  const headers = await partHeaders('the content part');
  async function* content(): AsyncGenerator<Buffer> {
    yield* reader.streamUntil(between, 'the content part');
    // The closing delimiter: `--` follows (an epilogue may come after; it is ignored).
    if (!(await reader.startsWith(Buffer.from('--')))) throw new MultipartError('a third part where two were expected (or no closing boundary)');
  }
  return { metadata, headers, body: content() };
}
