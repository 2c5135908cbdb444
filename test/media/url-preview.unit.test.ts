/**
 * URL previews against real HTTP servers this test starts on loopback. Loopback is in the default
 * blocklist; the config here allows 127.0.0.1 only (as an operator's allowlist would), so
 * 127.0.0.2 (also loopback on Linux), `localhost` and private addresses stay blocked.
 */
import { readFileSync } from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UrlPreviewError } from '../../src/media/processing-errors';
import { isPreviewAddressAllowed, previewUrl, safeFetch, type UrlPreviewOptions } from '../../src/media/preview/index';
import { IpRangeSet, federationIpBlocklist } from '../../src/protocol/ip-ranges';
import { createTestCa } from '../../scripts/lib/test-ca';

const T = 30_000;

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

async function listen(host: string, handler: Handler): Promise<{ server: Server; port: number; hits: string[] }> {
  const hits: string[] = [];
  const server = createServer((req, res) => {
    hits.push(req.url ?? '');
    handler(req, res);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve());
  });
  return { server, port: (server.address() as AddressInfo).port, hits };
}

let site: Awaited<ReturnType<typeof listen>>;
let inner: Awaited<ReturnType<typeof listen>>;
let base: string;
let png: Buffer;
let jpeg: Buffer;
let gzipBomb: Buffer;
const openResponses = new Set<ServerResponse>();

const config: UrlPreviewOptions = {
  blocklist: federationIpBlocklist(),
  allowlist: new IpRangeSet(['127.0.0.1/32']),
  maxBytes: 256 * 1024,
  // Generous: the machine running the tests may be loaded.
  timeoutMs: 15_000,
};

beforeAll(async () => {
  png = await sharp({ create: { width: 400, height: 300, channels: 3, background: 'orange' } })
    .png()
    .toBuffer();
  jpeg = await sharp({ create: { width: 640, height: 480, channels: 3, background: 'teal' } })
    .jpeg()
    .toBuffer();
  // 16 MiB of HTML in 16 KiB of gzip.
  gzipBomb = gzipSync(Buffer.concat([Buffer.from('<title>Bomb</title>'), Buffer.alloc(16 * 1024 * 1024, 0x20)]));
  // A server on another loopback address: blocked, so it must never see a request.
  inner = await listen('127.0.0.2', (_req, res) => res.end('internal secret'));
  const routes: Record<string, Handler> = {
    '/og': (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'max-age=600' });
      res.end(`<!doctype html><html><head>
        <meta property="og:title" content="Open Graph Title">
        <meta property="og:description" content="What the page is about">
        <meta property="og:site_name" content="Loopback Site">
        <meta property="og:type" content="article">
        <meta property="og:image" content="/img/picture.png">
        <title>Ignored title</title></head><body><p>Body</p></body></html>`);
    },
    '/img/picture.png': (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'image/png' });
      res.end(png);
    },
    '/title-only': (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/html' });
      res.end('<html><head><title>Only a title</title></head><body><p>First paragraph of the page.</p><p>Second one.</p></body></html>');
    },
    '/endless': (_req, res) => {
      // An HTML page that never ends: only a size cap gets a client out.
      res.writeHead(200, { 'Content-Type': 'text/html' });
      res.write('<html><head><meta property="og:title" content="Huge page"></head><body>');
      const chunk = Buffer.from(`<p>${'filler '.repeat(1000)}</p>`);
      openResponses.add(res);
      const pump = () => {
        while (!res.destroyed && res.write(chunk));
        if (!res.destroyed) res.once('drain', pump);
      };
      res.on('close', () => openResponses.delete(res));
      pump();
    },
    '/gzip-bomb': (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/html', 'Content-Encoding': 'gzip' });
      res.end(gzipBomb);
    },
    '/slow': (_req, res) => {
      // Headers never come.
      openResponses.add(res);
      res.on('close', () => openResponses.delete(res));
    },
    '/slow-body': (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/html' });
      res.write('<html><head>');
      openResponses.add(res);
      res.on('close', () => openResponses.delete(res));
    },
    '/to-og': (_req, res) => {
      res.writeHead(302, { Location: '/og' });
      res.end();
    },
    '/to-blocked': (_req, res) => {
      res.writeHead(302, { Location: `http://127.0.0.2:${inner.port}/secret` });
      res.end();
    },
    '/to-internal-name': (_req, res) => {
      res.writeHead(301, { Location: `http://internal.test:${inner.port}/secret` });
      res.end();
    },
    '/to-file': (_req, res) => {
      res.writeHead(302, { Location: 'file:///etc/passwd' });
      res.end();
    },
    '/loop': (_req, res) => {
      res.writeHead(307, { Location: '/loop' });
      res.end();
    },
    '/text': (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.end('just text');
    },
    '/photo.jpg': (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'image/jpeg' });
      res.end(jpeg);
    },
    '/blocked-image': (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/html' });
      res.end(`<html><head><meta property="og:title" content="Has an internal image"><meta property="og:image" content="http://127.0.0.2:${inner.port}/secret.png"></head></html>`);
    },
    '/svg-image': (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/html' });
      res.end('<html><head><title>SVG</title><meta property="og:image" content="/logo.svg"></head></html>');
    },
    '/logo.svg': (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'image/svg+xml' });
      res.end('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>');
    },
    '/latin1': (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=ISO-8859-1' });
      res.end(Buffer.concat([Buffer.from('<title>Caf'), Buffer.from([0xe9]), Buffer.from(' cr'), Buffer.from([0xe8]), Buffer.from('me</title>')]));
    },
    '/not-found': (_req, res) => {
      res.writeHead(404, { 'Content-Type': 'text/html' });
      res.end('<title>Not found</title>');
    },
  };
  site = await listen('127.0.0.1', (req, res) => {
    const route = routes[(req.url ?? '').split('?')[0]!];
    if (route) route(req, res);
    else {
      res.writeHead(404);
      res.end();
    }
  });
  base = `http://127.0.0.1:${site.port}`;
}, T);

afterAll(async () => {
  for (const res of openResponses) res.destroy();
  for (const s of [site, inner]) {
    s?.server.closeAllConnections();
    await new Promise((resolve) => s?.server.close(resolve));
  }
});

async function previewError(url: string, opts: UrlPreviewOptions = config): Promise<UrlPreviewError> {
  const e = await previewUrl(url, opts).catch((err: unknown) => err);
  expect(e).toBeInstanceOf(UrlPreviewError);
  return e as UrlPreviewError;
}

describe('URL previews over real HTTP', () => {
  it('an OpenGraph page, with its image fetched and described', { timeout: T }, async () => {
    const p = await previewUrl(`${base}/og`, { ...config, now: () => 1_000 });
    expect(p.og).toEqual({
      'og:title': 'Open Graph Title',
      'og:description': 'What the page is about',
      'og:site_name': 'Loopback Site',
      'og:type': 'article',
      'og:image': `${base}/img/picture.png`,
      'og:image:type': 'image/png',
      'og:image:width': 400,
      'og:image:height': 300,
      'matrix:image:size': png.length,
    });
    expect(p.image).toMatchObject({ contentType: 'image/png', width: 400, height: 300, url: `${base}/img/picture.png` });
    expect(p.image?.bytes.equals(png)).toBe(true);
    expect(p).toMatchObject({ finalUrl: `${base}/og`, ttlMs: 600_000, expiresAt: 601_000 });
  });

  it('a page with only a title: title and text summary, cached for the default hour', { timeout: T }, async () => {
    const p = await previewUrl(`${base}/title-only`, config);
    expect(p.og).toEqual({ 'og:title': 'Only a title', 'og:description': 'First paragraph of the page.\n\nSecond one.' });
    expect(p.image).toBeNull();
    expect(p.ttlMs).toBe(3_600_000);
  });

  it('an endless page is cut at the size limit and its head still previewed', { timeout: T }, async () => {
    const fetched = await safeFetch(`${base}/endless`, config);
    expect(fetched.truncated).toBe(true);
    expect(fetched.body.length).toBe(config.maxBytes);
    const p = await previewUrl(`${base}/endless`, config);
    expect(p.og['og:title']).toBe('Huge page');
  });

  it('a gzip bomb is cut at the size limit after decompression', { timeout: T }, async () => {
    const fetched = await safeFetch(`${base}/gzip-bomb`, config);
    expect(fetched).toMatchObject({ truncated: true });
    expect(fetched.body.length).toBe(config.maxBytes);
    expect((await previewUrl(`${base}/gzip-bomb`, config)).og['og:title']).toBe('Bomb');
  });

  it('a page that does not answer in time is abandoned', { timeout: T }, async () => {
    const quick = { ...config, timeoutMs: 500 };
    expect((await previewError(`${base}/slow`, quick)).reason).toBe('timeout');
    expect((await previewError(`${base}/slow-body`, quick)).reason).toBe('timeout');
  });

  it('a redirect is followed; one to a blocklisted address is refused without connecting', { timeout: T }, async () => {
    const ok = await previewUrl(`${base}/to-og`, config);
    expect(ok.finalUrl).toBe(`${base}/og`);
    expect(ok.og['og:title']).toBe('Open Graph Title');

    const blocked = await previewError(`${base}/to-blocked`);
    expect(blocked).toMatchObject({ reason: 'blocked', httpStatus: 403 });
    // A redirect to a name is resolved and checked like the first URL.
    const resolve = async (host: string) => (host === 'internal.test' ? ['127.0.0.2'] : ['127.0.0.1']);
    const viaName = await previewError(`http://site.test:${site.port}/to-internal-name`, { ...config, resolve });
    expect(viaName.reason).toBe('blocked');
    expect((await previewError(`${base}/to-file`)).reason).toBe('bad-url');
    expect((await previewError(`${base}/loop`)).reason).toBe('too-many-redirects');
    expect(inner.hits).toEqual([]);
  });

  it('a hostname resolving to a blocklisted address is refused (localhost, default blocklist)', { timeout: T }, async () => {
    const defaults: UrlPreviewOptions = { blocklist: federationIpBlocklist(), timeoutMs: 15_000 };
    const before = site.hits.length;
    expect((await previewError(`http://localhost:${site.port}/og`, defaults)).reason).toBe('blocked');
    expect((await previewError(`http://127.0.0.1:${site.port}/og`, defaults)).reason).toBe('blocked');
    expect((await previewError(`http://[::1]:${site.port}/og`, defaults)).reason).toBe('blocked');
    expect((await previewError('http://10.11.12.13/', defaults)).reason).toBe('blocked');
    expect((await previewError('http://[::ffff:10.0.0.1]/', defaults)).reason).toBe('blocked');
    expect((await previewError('http://0.0.0.0/', { ...config, allowlist: new IpRangeSet(['0.0.0.0/0']) })).reason).toBe('blocked');
    expect(site.hits.length).toBe(before);
  });

  it('connects to the address it checked, never asking DNS again (rebinding), and refuses a name with any blocked address', { timeout: T }, async () => {
    let lookups = 0;
    const pinned: UrlPreviewOptions = {
      ...config,
      resolve: async (host) => {
        lookups++;
        // A name the system resolver does not know: reaching the site proves the checked address was used.
        return host === 'preview.test' ? ['127.0.0.1'] : [];
      },
    };
    const p = await previewUrl(`http://preview.test:${site.port}/og`, pinned);
    expect(p.og['og:title']).toBe('Open Graph Title');
    expect(p.og['og:image']).toBe(`http://preview.test:${site.port}/img/picture.png`);
    expect(lookups).toBe(2); // the page and its image, once each

    const mixed: UrlPreviewOptions = { ...config, resolve: async () => ['127.0.0.1', '10.0.0.5'] };
    expect((await previewError(`http://mixed.test:${site.port}/og`, mixed)).reason).toBe('blocked');
    const none: UrlPreviewOptions = { ...config, resolve: async () => [] };
    expect((await previewError(`http://nowhere.test:${site.port}/og`, none)).reason).toBe('dns');
  });

  it('non-HTML content: an empty preview for text, the image itself for an image', { timeout: T }, async () => {
    const text = await previewUrl(`${base}/text`, config);
    expect(text.og).toEqual({});
    expect(text.image).toBeNull();

    const photo = await previewUrl(`${base}/photo.jpg`, config);
    expect(photo.og).toEqual({
      'og:description': 'photo.jpg',
      'og:image': `${base}/photo.jpg`,
      'og:image:type': 'image/jpeg',
      'og:image:width': 640,
      'og:image:height': 480,
      'matrix:image:size': jpeg.length,
    });
    expect(photo.image?.bytes.equals(jpeg)).toBe(true);
    const tooBig = await previewError(`${base}/photo.jpg`, { ...config, maxBytes: 1000 });
    expect(tooBig.reason).toBe('too-large');
  });

  it('an image that is blocked or not a raster image is dropped, the rest kept', { timeout: T }, async () => {
    const blocked = await previewUrl(`${base}/blocked-image`, config);
    expect(blocked.og).toEqual({ 'og:title': 'Has an internal image', 'og:description': null });
    expect(blocked.image).toBeNull();
    expect(inner.hits).toEqual([]);
    const svg = await previewUrl(`${base}/svg-image`, config);
    expect(svg.og).toEqual({ 'og:title': 'SVG', 'og:description': null });
  });

  it('decodes the charset the server declares', { timeout: T }, async () => {
    expect((await previewUrl(`${base}/latin1`, config)).og['og:title']).toBe('Café crème');
  });

  it('bad URLs and error statuses are typed errors', { timeout: T }, async () => {
    expect((await previewError('ftp://example.org/')).reason).toBe('bad-url');
    expect((await previewError('not a url')).reason).toBe('bad-url');
    expect((await previewError(`http://user:pw@127.0.0.1:${site.port}/og`)).reason).toBe('bad-url');
    const notFound = await previewError(`${base}/not-found`);
    expect(notFound).toMatchObject({ reason: 'http-status', remoteStatus: 404, httpStatus: 502 });
  });

  it('HTTPS: the certificate is checked against the name while connecting to the checked address', { timeout: T }, async () => {
    const ca = createTestCa();
    const leaf = ca.leaf('preview.test');
    const server = createHttpsServer({ cert: readFileSync(leaf.certPath), key: readFileSync(leaf.keyPath) }, (req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/html' });
      res.end(`<title>Secure ${req.headers.host}</title>`);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    try {
      const tls: UrlPreviewOptions = { ...config, caCertificates: [readFileSync(ca.caPath, 'utf8')], resolve: async () => ['127.0.0.1'] };
      const p = await previewUrl(`https://preview.test:${port}/`, tls);
      expect(p.og['og:title']).toBe(`Secure preview.test:${port}`);
      // The same server under a name its certificate does not carry: refused.
      expect((await previewError(`https://other.test:${port}/`, tls)).reason).toBe('connect');
      // And without the CA, not trusted.
      expect((await previewError(`https://preview.test:${port}/`, { ...tls, caCertificates: [] })).reason).toBe('connect');
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      ca.cleanup();
    }
  });

  it('address checks: the always-blocked ranges beat the allowlist; junk fails closed', () => {
    const blocklist = federationIpBlocklist();
    expect(isPreviewAddressAllowed('93.184.215.14', blocklist)).toBe(true);
    expect(isPreviewAddressAllowed('2606:2800:21f:cb07:6820:80da:af6b:8b2c', blocklist)).toBe(true);
    expect(isPreviewAddressAllowed('192.168.1.1', blocklist)).toBe(false);
    expect(isPreviewAddressAllowed('::ffff:127.0.0.1', blocklist)).toBe(false);
    expect(isPreviewAddressAllowed('127.0.0.1', blocklist, new IpRangeSet(['127.0.0.1/32']))).toBe(true);
    expect(isPreviewAddressAllowed('0.0.0.0', blocklist, new IpRangeSet(['0.0.0.0/0']))).toBe(false);
    expect(isPreviewAddressAllowed('::', new IpRangeSet([]), new IpRangeSet(['::/0']))).toBe(false);
    expect(isPreviewAddressAllowed('not-an-ip', new IpRangeSet([]))).toBe(false);
  });
});
