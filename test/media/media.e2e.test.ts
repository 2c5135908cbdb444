/**
 * The media endpoints over real HTTP on a whole Axon (real Redis, real actors): matrix-js-sdk
 * uploads and authenticated downloads byte for byte, an avatar set from an mxc URI, asynchronous
 * create + PUT (overwrite refused, another user refused, pending limit, a download awaiting the
 * upload), the frozen legacy paths, Range and HEAD, hostile content types served as attachments
 * with the sandboxing headers, 413 from Content-Length and from a streamed body, 401 without a
 * token, and an upload cut off by its client leaving nothing behind.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import type { MatrixClient } from 'matrix-js-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../e2e/server-harness';
import { createClient } from '../e2e/sdk';
import { MEDIA_CSP } from '../../src/media/headers';

let server: TestServer;
const MAX_UPLOAD = 2 * 1024 * 1024;

beforeAll(async () => {
  server = await startTestServer({
    configure: (c) => {
      c.media.maxUploadBytes = MAX_UPLOAD;
      c.media.maxPendingUploads = 3;
    },
  });
});
afterAll(async () => {
  await server?.stop();
});

interface User {
  client: MatrixClient;
  userId: string;
  token: string;
}

async function register(username: string): Promise<User> {
  const anon = createClient({ baseUrl: server.baseUrl });
  let session: string | undefined;
  try {
    await anon.registerRequest({ username, password: 'a long passphrase' });
  } catch (e) {
    session = (e as { data: { session: string } }).data.session;
  }
  const res = await anon.registerRequest({ username, password: 'a long passphrase', auth: { type: 'm.login.dummy', session } });
  return { client: createClient({ baseUrl: server.baseUrl, accessToken: res.access_token!, userId: res.user_id, deviceId: res.device_id! }), userId: res.user_id, token: res.access_token! };
}

function mediaPath(mxc: string): string {
  const m = /^mxc:\/\/([^/]+)\/([A-Za-z0-9_-]+)$/.exec(mxc);
  if (!m) throw new Error(`not an mxc URI: ${mxc}`);
  return `${m[1]}/${m[2]}`;
}

function download(mxc: string, token: string | null, init: RequestInit = {}, suffix = ''): Promise<Response> {
  const headers = new Headers(init.headers);
  if (token) headers.set('Authorization', `Bearer ${token}`);
  return fetch(`${server.baseUrl}/_matrix/client/v1/media/download/${mediaPath(mxc)}${suffix}`, { ...init, headers });
}

async function upload(token: string, body: Uint8Array, contentType: string, filename?: string): Promise<string> {
  const q = filename !== undefined ? `?filename=${encodeURIComponent(filename)}` : '';
  const r = await fetch(`${server.baseUrl}/_matrix/media/v3/upload${q}`, { method: 'POST', headers: { Authorization: `Bearer ${token}`, 'Content-Type': contentType }, body });
  expect(r.status).toBe(200);
  return ((await r.json()) as { content_uri: string }).content_uri;
}

function expectSafetyHeaders(r: Response): void {
  expect(r.headers.get('content-security-policy')).toBe(MEDIA_CSP);
  expect(r.headers.get('x-content-type-options')).toBe('nosniff');
  expect(r.headers.get('cross-origin-resource-policy')).toBe('cross-origin');
}

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('media repository over HTTP', () => {
  let alice: User;
  let bob: User;
  beforeAll(async () => {
    alice = await register('alice');
    bob = await register('bob');
  });

  it('matrix-js-sdk uploadContent, then an authenticated download gives the same bytes and the media headers', async () => {
    const png = randomBytes(300_000);
    const { content_uri: mxc } = await alice.client.uploadContent(png, { name: 'holiday.png', type: 'image/png' });
    expect(mxc).toMatch(/^mxc:\/\/localhost\/[A-Za-z0-9_-]+$/);
    const r = await download(mxc, bob.token);
    expect(r.status).toBe(200);
    const got = new Uint8Array(await r.arrayBuffer());
    expect(sha(got)).toBe(sha(png));
    expect(r.headers.get('content-type')).toBe('image/png');
    expect(r.headers.get('content-disposition')).toBe('inline; filename="holiday.png"');
    expect(r.headers.get('etag')).toBe(`"${sha(png)}"`);
    expect(r.headers.get('cache-control')).toContain('immutable');
    expectSafetyHeaders(r);
    // The sdk's own URL for authenticated media points at the same endpoint.
    const viaSdk = alice.client.mxcUrlToHttp(mxc, undefined, undefined, undefined, false, true, true);
    expect(viaSdk).toContain('/_matrix/client/v1/media/download/');
    const again = await fetch(viaSdk!, { headers: { Authorization: `Bearer ${alice.token}` } });
    expect(sha(new Uint8Array(await again.arrayBuffer()))).toBe(sha(png));
    // A second download with the ETag: not modified.
    const cached = await download(mxc, bob.token, { headers: { 'If-None-Match': `"${sha(png)}"` } });
    expect(cached.status).toBe(304);
    // A file name in the path overrides the stored one.
    const named = await download(mxc, bob.token, {}, '/renamed.png');
    expect(named.headers.get('content-disposition')).toBe('inline; filename="renamed.png"');
    await named.arrayBuffer();
  });

  it('sets an avatar from an uploaded mxc URI and downloads it through the profile', async () => {
    const avatar = randomBytes(5000);
    const { content_uri: mxc } = await alice.client.uploadContent(avatar, { type: 'image/jpeg' });
    await alice.client.setAvatarUrl(mxc);
    const profile = await bob.client.getProfileInfo(alice.userId);
    expect(profile.avatar_url).toBe(mxc);
    const r = await download(profile.avatar_url!, bob.token);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('image/jpeg');
    expect(sha(new Uint8Array(await r.arrayBuffer()))).toBe(sha(avatar));
  });

  it('identical uploads share one blob on disk', async () => {
    const body = randomBytes(2048);
    const a = await upload(alice.token, body, 'application/octet-stream');
    const b = await upload(bob.token, body, 'application/octet-stream');
    expect(a).not.toBe(b);
    const blob = join(server.config.dataDir, 'media', 'content', sha(body).slice(0, 2), sha(body));
    expect(existsSync(blob)).toBe(true);
    expect(readdirSync(join(server.config.dataDir, 'media', 'content', sha(body).slice(0, 2))).filter((n) => n === sha(body))).toHaveLength(1);
    // An empty file is media too.
    const empty = await upload(alice.token, new Uint8Array(0), 'text/plain', 'empty.txt');
    const r = await download(empty, bob.token);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-length')).toBe('0');
    expect((await r.arrayBuffer()).byteLength).toBe(0);
  });

  it('asynchronous upload: create, a download waiting for it, PUT, overwrite refused, other users refused, pending limit', async () => {
    const api = (method: string, path: string, token: string, body?: Uint8Array, contentType = 'text/plain') =>
      fetch(`${server.baseUrl}${path}`, { method, headers: { Authorization: `Bearer ${token}`, 'Content-Type': contentType }, body });
    const created = await api('POST', '/_matrix/media/v1/create', alice.token);
    expect(created.status).toBe(200);
    const { content_uri: mxc, unused_expires_at } = (await created.json()) as { content_uri: string; unused_expires_at: number };
    expect(unused_expires_at).toBeGreaterThan(Date.now());
    // Not uploaded yet: a short wait ends in 504 M_NOT_YET_UPLOADED.
    const early = await download(mxc, bob.token, {}, '?timeout_ms=300');
    expect(early.status).toBe(504);
    expect(((await early.json()) as { errcode: string }).errcode).toBe('M_NOT_YET_UPLOADED');
    // A download waiting for the upload gets it once it is done.
    const waiting = download(mxc, bob.token, {}, '?timeout_ms=30000');
    await new Promise((r) => setTimeout(r, 300));
    // Bob may not upload into Alice's id.
    const stolen = await api('PUT', `/_matrix/media/v3/upload/${mediaPath(mxc)}`, bob.token, new TextEncoder().encode('not yours'));
    expect(stolen.status).toBe(403);
    expect(((await stolen.json()) as { errcode: string }).errcode).toBe('M_FORBIDDEN');
    const text = new TextEncoder().encode('hello, later');
    const put = await api('PUT', `/_matrix/media/v3/upload/${mediaPath(mxc)}?filename=later.txt`, alice.token, text);
    expect(put.status).toBe(200);
    const waited = await waiting;
    expect(waited.status).toBe(200);
    expect(await waited.text()).toBe('hello, later');
    // A malformed timeout_ms is refused even when the media is there (nothing to wait for), as Synapse.
    const badTimeout = await download(mxc, bob.token, {}, '?timeout_ms=soon');
    expect(badTimeout.status).toBe(400);
    expect(((await badTimeout.json()) as { errcode: string }).errcode).toBe('M_INVALID_PARAM');
    const again = await api('PUT', `/_matrix/media/v3/upload/${mediaPath(mxc)}`, alice.token, new TextEncoder().encode('again'));
    expect(again.status).toBe(409);
    expect(((await again.json()) as { errcode: string }).errcode).toBe('M_CANNOT_OVERWRITE_MEDIA');
    // An id nobody created.
    const unknown = await api('PUT', '/_matrix/media/v3/upload/localhost/neverCreatedId', alice.token, text);
    expect(unknown.status).toBe(404);
    // maxPendingUploads is 3: the fourth unused reservation is refused.
    for (let i = 0; i < 3; i++) expect((await api('POST', '/_matrix/media/v1/create', bob.token)).status).toBe(200);
    const over = await api('POST', '/_matrix/media/v1/create', bob.token);
    expect(over.status).toBe(429);
    const err = (await over.json()) as { errcode: string; retry_after_ms: number };
    expect(err.errcode).toBe('M_LIMIT_EXCEEDED');
    expect(err.retry_after_ms).toBeGreaterThan(0);
  });

  it('legacy unauthenticated paths serve only media uploaded before the freeze', async () => {
    const before = await upload(alice.token, new TextEncoder().encode('old media'), 'text/plain');
    await new Promise((r) => setTimeout(r, 20));
    server.config.media.legacyFreezeAt = Date.now();
    await new Promise((r) => setTimeout(r, 20));
    const after = await upload(alice.token, new TextEncoder().encode('new media'), 'text/plain');
    try {
      const old = await fetch(`${server.baseUrl}/_matrix/media/v3/download/${mediaPath(before)}`);
      expect(old.status).toBe(200);
      expect(await old.text()).toBe('old media');
      expectSafetyHeaders(old);
      const fresh = await fetch(`${server.baseUrl}/_matrix/media/v3/download/${mediaPath(after)}`);
      expect(fresh.status).toBe(404);
      expect(((await fresh.json()) as { errcode: string }).errcode).toBe('M_NOT_FOUND');
      expectSafetyHeaders(fresh);
      // Both are served on the authenticated path.
      expect(await (await download(after, bob.token)).text()).toBe('new media');
    } finally {
      server.config.media.legacyFreezeAt = 0;
    }
    expect((await fetch(`${server.baseUrl}/_matrix/media/v3/download/${mediaPath(before)}`)).status).toBe(404);
  });

  it('answers Range requests (206, suffix, 416) and HEAD', async () => {
    const body = randomBytes(100_000);
    const mxc = await upload(alice.token, body, 'application/octet-stream', 'blob.bin');
    const part = await download(mxc, bob.token, { headers: { Range: 'bytes=1000-1999' } });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe(`bytes 1000-1999/${body.length}`);
    expect(Buffer.from(await part.arrayBuffer()).equals(body.subarray(1000, 2000))).toBe(true);
    const tail = await download(mxc, bob.token, { headers: { Range: 'bytes=-10' } });
    expect(tail.status).toBe(206);
    expect(Buffer.from(await tail.arrayBuffer()).equals(body.subarray(-10))).toBe(true);
    const open = await download(mxc, bob.token, { headers: { Range: 'bytes=99990-' } });
    expect(Buffer.from(await open.arrayBuffer()).equals(body.subarray(99_990))).toBe(true);
    const past = await download(mxc, bob.token, { headers: { Range: 'bytes=200000-' } });
    expect(past.status).toBe(416);
    expect(past.headers.get('content-range')).toBe(`bytes */${body.length}`);
    await past.arrayBuffer();
    const head = await download(mxc, bob.token, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe(String(body.length));
    expect(head.headers.get('accept-ranges')).toBe('bytes');
    expect(head.headers.get('content-disposition')).toBe('attachment; filename="blob.bin"');
  });

  it('serves hostile content (SVG with script, HTML) as attachments with the sandbox CSP and nosniff', async () => {
    const svg = new TextEncoder().encode('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.cookie)</script></svg>');
    const svgMxc = await upload(alice.token, svg, 'image/svg+xml', 'cat.svg');
    const r1 = await download(svgMxc, bob.token);
    expect(r1.headers.get('content-type')).toBe('image/svg+xml');
    expect(r1.headers.get('content-disposition')).toBe('attachment; filename="cat.svg"');
    expectSafetyHeaders(r1);
    expect(await r1.text()).toContain('<script>');
    const html = new TextEncoder().encode('<html><body><script>fetch("/steal")</script></body></html>');
    const htmlMxc = await upload(alice.token, html, 'text/html; charset=utf-8', 'résumé "final".html');
    const r2 = await download(htmlMxc, bob.token);
    expect(r2.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(r2.headers.get('content-disposition')).toBe(`attachment; filename*=utf-8''r%C3%A9sum%C3%A9%20%22final%22.html`);
    expectSafetyHeaders(r2);
    await r2.arrayBuffer();
  });

  it('refuses bodies over media.maxUploadBytes with 413 M_TOO_LARGE: from Content-Length, and while streaming one without', async () => {
    const config = await fetch(`${server.baseUrl}/_matrix/client/v1/media/config`, { headers: { Authorization: `Bearer ${alice.token}` } });
    expect(await config.json()).toEqual({ 'm.upload.size': MAX_UPLOAD });
    // Content-Length says too much: answered before any body is sent.
    const early = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpRequest(`${server.baseUrl}/_matrix/media/v3/upload`, { method: 'POST', headers: { Authorization: `Bearer ${alice.token}`, 'Content-Type': 'application/octet-stream', 'Content-Length': String(MAX_UPLOAD + 1) } }, (res) => {
        let body = '';
        res.on('data', (d) => {
          body += d;
        });
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      });
      req.on('error', reject);
      req.flushHeaders();
    });
    expect(early.status).toBe(413);
    expect(JSON.parse(early.body).errcode).toBe('M_TOO_LARGE');
    // No Content-Length (chunked): refused once the limit is passed. node's http client reads
    // the early answer while still writing (fetch gives up with EPIPE instead).
    const streamed = await new Promise<{ status: number; body: string; sent: number }>((resolve, reject) => {
      let sent = 0;
      const req = httpRequest(`${server.baseUrl}/_matrix/media/v3/upload`, { method: 'POST', headers: { Authorization: `Bearer ${alice.token}`, 'Content-Type': 'application/octet-stream', 'Transfer-Encoding': 'chunked' } }, (res) => {
        let body = '';
        res.on('data', (d) => {
          body += d;
        });
        res.on('end', () => resolve({ status: res.statusCode!, body, sent }));
      });
      req.on('error', (e: NodeJS.ErrnoException) => {
        if (e.code !== 'EPIPE' && e.code !== 'ECONNRESET') reject(e);
      });
      const write = () => {
        while (sent < 8 * MAX_UPLOAD) {
          sent += 64 * 1024;
          if (!req.write(randomBytes(64 * 1024))) return void req.once('drain', write);
        }
        req.end();
      };
      write();
    });
    expect(streamed.status).toBe(413);
    expect(JSON.parse(streamed.body).errcode).toBe('M_TOO_LARGE');
    // The handler drops its temp file once it sees the body fail (just after the answer).
    const tmpDir = join(server.config.dataDir, 'media', 'tmp');
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && existsSync(tmpDir) && readdirSync(tmpDir).length > 0) await new Promise((res) => setTimeout(res, 100));
    expect(existsSync(tmpDir) ? readdirSync(tmpDir) : []).toEqual([]);
  });

  it('401 without an access token, 404 for unknown and remote media', async () => {
    const mxc = await upload(alice.token, new TextEncoder().encode('secret'), 'text/plain');
    const anon = await download(mxc, null);
    expect(anon.status).toBe(401);
    expect(((await anon.json()) as { errcode: string }).errcode).toBe('M_MISSING_TOKEN');
    expectSafetyHeaders(anon);
    const anonUpload = await fetch(`${server.baseUrl}/_matrix/media/v3/upload`, { method: 'POST', body: new Uint8Array(10) });
    expect(anonUpload.status).toBe(401);
    expect((await download('mxc://localhost/doesNotExist', bob.token)).status).toBe(404);
    expect((await download('mxc://other.example/someMedia', bob.token)).status).toBe(404);
  });

  it('a thumbnail of bytes that are not an image is refused, and previews are off by default', async () => {
    const mxc = await upload(alice.token, randomBytes(100), 'image/png');
    const thumb = await fetch(`${server.baseUrl}/_matrix/client/v1/media/thumbnail/${mediaPath(mxc)}?width=32&height=32&method=crop`, { headers: { Authorization: `Bearer ${bob.token}` } });
    expect(thumb.status).toBe(400);
    expect(((await thumb.json()) as { errcode: string }).errcode).toBe('M_UNKNOWN');
    const bad = await fetch(`${server.baseUrl}/_matrix/client/v1/media/thumbnail/${mediaPath(mxc)}?width=x&height=32`, { headers: { Authorization: `Bearer ${bob.token}` } });
    expect(bad.status).toBe(400);
    const preview = await fetch(`${server.baseUrl}/_matrix/client/v1/media/preview_url?url=https://example.org`, { headers: { Authorization: `Bearer ${bob.token}` } });
    expect(preview.status).toBe(404);
    expect(((await preview.json()) as { errcode: string }).errcode).toBe('M_UNRECOGNIZED');
  });

  it('an upload cut off by its client leaves no media and no temp file', async () => {
    const tmpDir = join(server.config.dataDir, 'media', 'tmp');
    const controller = new AbortController();
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      async pull(c) {
        if (sent >= 512 * 1024) {
          await new Promise((r) => setTimeout(r, 300));
          controller.abort();
          return;
        }
        sent += 64 * 1024;
        c.enqueue(randomBytes(64 * 1024));
      },
    });
    const r = await fetch(`${server.baseUrl}/_matrix/media/v3/upload`, { method: 'POST', headers: { Authorization: `Bearer ${alice.token}`, 'Content-Length': String(MAX_UPLOAD) }, body: stream, duplex: 'half', signal: controller.signal } as RequestInit).catch((e: Error) => e);
    expect(r).toBeInstanceOf(Error);
    // The front notices the closed connection and removes the temp file.
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && existsSync(tmpDir) && readdirSync(tmpDir).length > 0) await new Promise((res) => setTimeout(res, 100));
    expect(existsSync(tmpDir) ? readdirSync(tmpDir) : []).toEqual([]);
  });
});
