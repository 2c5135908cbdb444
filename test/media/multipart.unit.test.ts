import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { dispositionFilename, multipartBoundary, multipartFraming, MultipartError, readFederationMedia } from '../../src/media/multipart';
import { decideMedia, emptyMedia } from '../../actors/media';

/** `bytes` cut into chunks of `size` (1: every byte alone, the worst case for a delimiter search). */
async function* chunked(bytes: Buffer, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
}

async function collect(it: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of it) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}

describe('federation media multipart', () => {
  it('round-trips content through our framing, whatever the chunking (content holding boundary-like bytes too)', async () => {
    const boundary = 'b0undary';
    const content = Buffer.concat([randomBytes(5000), Buffer.from(`\r\n--${boundary.slice(0, 5)}`), Buffer.from('--b0undar'), randomBytes(3000)]);
    const { head, tail } = multipartFraming(boundary, {}, { 'Content-Type': 'image/png', 'Content-Disposition': "inline; filename*=utf-8''caf%C3%A9.png" });
    const whole = Buffer.concat([head, content, tail]);
    for (const size of [1, 7, 64, 4096, whole.length]) {
      const answer = await readFederationMedia(chunked(whole, size), boundary);
      expect(answer.metadata).toEqual({});
      expect(answer.headers['content-type']).toBe('image/png');
      expect(dispositionFilename(answer.headers['content-disposition'])).toBe('café.png');
      expect((await collect(answer.body)).equals(content)).toBe(true);
    }
  });

  it('reads a Location part, a preamble, and headers-less parts', async () => {
    const text = 'preamble\r\n--xyz\r\n\r\n{"a":1}\r\n--xyz\r\nLocation: https://cdn.example/f\r\n\r\n\r\n--xyz--\r\nepilogue';
    const answer = await readFederationMedia(chunked(Buffer.from(text), 3), 'xyz');
    expect(answer.metadata).toEqual({ a: 1 });
    expect(answer.headers.location).toBe('https://cdn.example/f');
    expect((await collect(answer.body)).length).toBe(0);
  });

  it('refuses malformed answers with MultipartError', async () => {
    const bad = async (text: string, boundary = 'b') => readFederationMedia(chunked(Buffer.from(text), 5), boundary).then((a) => collect(a.body));
    await expect(bad('--b\r\nContent-Type: application/json\r\n\r\nnot json\r\n--b\r\n\r\nx\r\n--b--')).rejects.toBeInstanceOf(MultipartError);
    await expect(bad('--b\r\nContent-Type: application/json\r\n\r\n[]\r\n--b\r\n\r\nx\r\n--b--')).rejects.toBeInstanceOf(MultipartError);
    await expect(bad('--b\r\nContent-Type: text/html\r\n\r\n{}\r\n--b\r\n\r\nx\r\n--b--')).rejects.toBeInstanceOf(MultipartError);
    // Cut off mid-content.
    await expect(bad('--b\r\n\r\n{}\r\n--b\r\nContent-Type: image/png\r\n\r\nxxxxxxxxxx')).rejects.toBeInstanceOf(MultipartError);
    // A third part.
    await expect(bad('--b\r\n\r\n{}\r\n--b\r\n\r\nx\r\n--b\r\n\r\ny\r\n--b--')).rejects.toBeInstanceOf(MultipartError);
    // Headers that never end are refused within the limit, not buffered for ever.
    await expect(bad(`--b\r\n\r\n{}\r\n--b\r\nX: ${'a'.repeat(40_000)}`)).rejects.toThrow(/over/);
  });

  it('finds the boundary of multipart/mixed only, and file names of Content-Disposition', () => {
    expect(multipartBoundary('multipart/mixed; boundary=abc')).toBe('abc');
    expect(multipartBoundary('Multipart/Mixed; charset=x; boundary="a b:c"')).toBe('a b:c');
    expect(multipartBoundary('multipart/form-data; boundary=abc')).toBeNull();
    expect(multipartBoundary('multipart/mixed')).toBeNull();
    expect(multipartBoundary(`multipart/mixed; boundary=${'x'.repeat(71)}`)).toBeNull();
    expect(dispositionFilename('attachment; filename="a \\"b\\".txt"')).toBe('a "b".txt');
    expect(dispositionFilename('inline; filename=plain.txt')).toBe('plain.txt');
    expect(dispositionFilename('inline')).toBeUndefined();
  });
});

describe('media actor: remote cache records', () => {
  const msg = (body: unknown) => ({ id: '1', body, enqueuedAt: 1000 }) as never;
  const sha = 'a'.repeat(64);

  it('records another server\'s item as remote, keeps the first copy, and refuses a wrong origin', () => {
    const s0 = emptyMedia('other.example/abc');
    const d1 = decideMedia(s0, msg({ op: 'cache', origin: 'other.example', contentType: 'image/png', size: 3, sha256: sha, ref: 'other.example/abc:1' }));
    expect(d1.state.record).toMatchObject({ o: 'other.example', m: 1, s: 3, h: sha, r: 'other.example/abc:1' });
    const d2 = decideMedia(d1.state, msg({ op: 'cache', origin: 'other.example', contentType: 'image/png', size: 3, sha256: 'b'.repeat(64), ref: 'other.example/abc:2' }));
    expect(d2.writes ?? []).toEqual([]);
    expect((d2.reply as { ref: string }).ref).toBe('other.example/abc:1');
    expect(() => decideMedia(s0, msg({ op: 'cache', origin: 'evil.example', contentType: 'x', size: 1, sha256: sha, ref: 'r' }))).toThrow(/origin/);
    const del = decideMedia(d1.state, msg({ op: 'delete' }));
    expect(del.reply).toMatchObject({ remote: true });
  });
});
