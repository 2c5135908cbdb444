/**
 * Remote media over federation (issue 15.7), on real HTTP(S):
 * - against a real Synapse 1.163.2: an Axon user downloads (authenticated) a file uploaded on
 *   Synapse, byte for byte with its Content-Type and file name; a Synapse user downloads an Axon
 *   upload through Synapse's client v1 media (Synapse fetches it from our federation endpoint, so
 *   this checks our multipart answer); our federation endpoints answered directly to a signing peer
 *   (multipart shape, quarantined media 404, the thumbnail endpoint's honest 501);
 * - against media servers written here on loopback TLS (what Synapse cannot be made to do): one
 *   federation fetch for many concurrent downloads (requests counted), a `Location` part followed,
 *   the legacy path for a server without the federation media endpoint, a file over the size limit
 *   refused (502 M_TOO_LARGE), a server that is down (502 at once), one that never answers (504
 *   after timeout_ms), `allow_remote=false`, and the legacy unauthenticated download not fetching.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestCa, type TestCa } from '../../scripts/lib/test-ca';
import { SigningPeer } from '../../scripts/lib/signing-peer';
import { multipartBoundary, readFederationMedia } from '../../src/media/multipart';
import { MEDIA_CSP } from '../../src/media/headers';
import { clientsFor, type Clients, type Session } from '../e2e/clients';
import { startTestServer, type TestServer } from '../e2e/server-harness';
import { SYNAPSE_VERSION, synapseInstallation } from '../peers/synapse';
import { freePort } from '../setup/free-port';
import { startAxonAndSynapse, startFederatedAxon, type AxonAndSynapse } from '../federation/harness';

const install = synapseInstallation();
const skip = !install.ok && !process.env.CI;
if (skip && !install.ok) console.warn(`remote-media.e2e: Synapse tests skipped. ${install.reason}`);

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

async function authDownload(base: string, token: string, server: string, mediaId: string, query = ''): Promise<Response> {
  return fetch(`${base}/_matrix/client/v1/media/download/${encodeURIComponent(server)}/${encodeURIComponent(mediaId)}${query}`, { headers: { Authorization: `Bearer ${token}` } });
}

describe.skipIf(skip)(`remote media with Synapse ${SYNAPSE_VERSION}`, () => {
  let env: AxonAndSynapse;
  let peer: SigningPeer;
  beforeAll(async () => {
    env = await startAxonAndSynapse('127.0.0.191', '127.0.0.192');
    peer = await SigningPeer.start('127.0.0.193', env.ca);
  }, 180_000);
  afterAll(async () => {
    await peer?.close();
    await env?.stop();
  }, 120_000);

  it('an Axon user downloads a file uploaded on Synapse, byte for byte, with its type and name', async () => {
    const bob = await env.synapse.registerUser('bob', 'a long passphrase');
    const content = randomBytes(300 * 1024 + 17);
    const up = await fetch(`${env.synapse.baseUrl}/_matrix/media/v3/upload?filename=${encodeURIComponent('report ü.pdf')}`, { method: 'POST', headers: { Authorization: `Bearer ${bob.token}`, 'Content-Type': 'application/pdf' }, body: content });
    expect(up.status, await up.clone().text()).toBe(200);
    const mxc = ((await up.json()) as { content_uri: string }).content_uri;
    const [, server, mediaId] = /^mxc:\/\/([^/]+)\/(.+)$/.exec(mxc)!;
    const alice = await env.clients.mint('alice');
    const res = await authDownload(env.axon.baseUrl, alice.token, server!, mediaId!);
    const body = new Uint8Array(await res.arrayBuffer());
    expect(res.status, Buffer.from(body).toString()).toBe(200);
    expect(sha(body)).toBe(sha(content));
    expect(res.headers.get('content-type')).toBe('application/pdf');
    expect(res.headers.get('content-disposition')).toBe("attachment; filename*=utf-8''report%20%C3%BC.pdf");
    expect(res.headers.get('content-security-policy')).toBe(MEDIA_CSP);
    // Cached now: a ranged read comes from our store.
    const ranged = await fetch(`${env.axon.baseUrl}/_matrix/client/v1/media/download/${server}/${mediaId}`, { headers: { Authorization: `Bearer ${alice.token}`, Range: 'bytes=10-19' } });
    expect(ranged.status).toBe(206);
    expect(Buffer.from(await ranged.arrayBuffer()).equals(content.subarray(10, 20))).toBe(true);
    // A file Synapse does not have: 404 from Synapse, 404 from us.
    const missing = await authDownload(env.axon.baseUrl, alice.token, server!, 'NoSuchMediaHere');
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { errcode: string }).errcode).toBe('M_NOT_FOUND');
  }, 120_000);

  it('thumbnails across servers: an Axon user gets one of a Synapse image (made here from the fetched original), a Synapse user one of an Axon image (Synapse fetches it from our federation media endpoints)', async () => {
    const png = await sharp({ create: { width: 900, height: 600, channels: 3, background: { r: 200, g: 60, b: 20 } } }).png().toBuffer();
    const erin = await env.synapse.registerUser('erin', 'a long passphrase');
    const up = await fetch(`${env.synapse.baseUrl}/_matrix/media/v3/upload?filename=red.png`, { method: 'POST', headers: { Authorization: `Bearer ${erin.token}`, 'Content-Type': 'image/png' }, body: png });
    expect(up.status, await up.clone().text()).toBe(200);
    const [, server, mediaId] = /^mxc:\/\/([^/]+)\/(.+)$/.exec(((await up.json()) as { content_uri: string }).content_uri)!;
    const frank = await env.clients.mint('frank');
    const thumb = await fetch(`${env.axon.baseUrl}/_matrix/client/v1/media/thumbnail/${encodeURIComponent(server!)}/${encodeURIComponent(mediaId!)}?width=96&height=96&method=crop`, { headers: { Authorization: `Bearer ${frank.token}` } });
    const thumbBytes = Buffer.from(await thumb.arrayBuffer());
    expect(thumb.status, thumbBytes.toString().slice(0, 200)).toBe(200);
    expect(await sharp(thumbBytes).metadata()).toMatchObject({ width: 96, height: 96 });

    const ours = await fetch(`${env.axon.baseUrl}/_matrix/media/v3/upload?filename=blue.png`, { method: 'POST', headers: { Authorization: `Bearer ${frank.token}`, 'Content-Type': 'image/png' }, body: await sharp({ create: { width: 640, height: 480, channels: 3, background: { r: 20, g: 60, b: 200 } } }).png().toBuffer() });
    const ourId = ((await ours.json()) as { content_uri: string }).content_uri.split('/').pop()!;
    const viaSynapse = await fetch(`${env.synapse.baseUrl}/_matrix/client/v1/media/thumbnail/${encodeURIComponent(env.axon.serverName)}/${ourId}?width=320&height=240&method=scale`, { headers: { Authorization: `Bearer ${erin.token}` } });
    const viaBytes = Buffer.from(await viaSynapse.arrayBuffer());
    expect(viaSynapse.status, viaBytes.toString().slice(0, 200)).toBe(200);
    expect(await sharp(viaBytes).metadata()).toMatchObject({ width: 320, height: 240 });
  }, 120_000);

  it('a Synapse user downloads an Axon upload through Synapse (Synapse reads our multipart answer)', async () => {
    const alice = await env.clients.mint('alice2');
    const content = randomBytes(1024 * 1024 + 5);
    const up = await fetch(`${env.axon.baseUrl}/_matrix/media/v3/upload?filename=pic.png`, { method: 'POST', headers: { Authorization: `Bearer ${alice.token}`, 'Content-Type': 'image/png' }, body: content });
    expect(up.status).toBe(200);
    const mxc = ((await up.json()) as { content_uri: string }).content_uri;
    const mediaId = mxc.split('/').pop()!;
    const carol = await env.synapse.registerUser('carol', 'a long passphrase');
    const res = await fetch(`${env.synapse.baseUrl}/_matrix/client/v1/media/download/${encodeURIComponent(env.axon.serverName)}/${mediaId}`, { headers: { Authorization: `Bearer ${carol.token}` } });
    const body = new Uint8Array(await res.arrayBuffer());
    expect(res.status, `${Buffer.from(body.subarray(0, 500)).toString()}\n${env.synapse.logTail(30)}`).toBe(200);
    expect(sha(body)).toBe(sha(content));
    expect(res.headers.get('content-type')).toBe('image/png');
    expect(res.headers.get('content-disposition')).toContain('pic.png');
  }, 120_000);

  it('our federation endpoints: multipart shape, quarantined media 404, thumbnail 501 until thumbnails are wired', async () => {
    const alice = await env.clients.mint('alice3');
    const content = Buffer.from('hello over federation\r\n--not-a-boundary\r\n');
    const up = await fetch(`${env.axon.baseUrl}/_matrix/media/v3/upload?filename=a.txt`, { method: 'POST', headers: { Authorization: `Bearer ${alice.token}`, 'Content-Type': 'text/plain' }, body: content });
    const mediaId = ((await up.json()) as { content_uri: string }).content_uri.split('/').pop()!;
    const axon = { serverName: env.axon.serverName, federationUrl: env.axon.federationUrl! };
    // Raw: a signed request from the peer, the answer parsed with our reader.
    const r = await rawSigned(peer, env.ca, axon, `/_matrix/federation/v1/media/download/${mediaId}`);
    expect(r.status).toBe(200);
    const boundary = multipartBoundary(r.headers['content-type'] as string);
    expect(boundary).toBeTruthy();
    const parts = await readFederationMedia((async function* () {
      yield r.body;
    })(), boundary!);
    expect(parts.metadata).toEqual({});
    expect(parts.headers['content-type']).toBe('text/plain');
    expect(parts.headers['content-disposition']).toBe('inline; filename="a.txt"');
    const got: Buffer[] = [];
    for await (const c of parts.body) got.push(c);
    expect(Buffer.concat(got).equals(content)).toBe(true);
    // Unsigned: 401.
    const unsigned = await fetch(`${env.axon.federationUrl}/_matrix/federation/v1/media/download/${mediaId}`).catch(() => null);
    if (unsigned) expect(unsigned.status).toBe(401);
    expect((await peer.request(axon, 'GET', '/_matrix/federation/v1/media/download/NoSuchMedia')).status).toBe(404);
    const thumb = await peer.request(axon, 'GET', `/_matrix/federation/v1/media/thumbnail/${mediaId}?width=32&height=32&method=crop`);
    expect([501, 400, 200]).toContain(thumb.status);
    if (thumb.status === 501) expect(thumb.body).toMatchObject({ errcode: 'M_UNRECOGNIZED' });
    expect((await peer.request(axon, 'GET', `/_matrix/federation/v1/media/thumbnail/${mediaId}?width=x&height=32`)).status).toBe(400);
    // Quarantined: not served to other servers either.
    await env.clients.actors.ask('user', 'media', mediaId, { op: 'quarantine', on: true });
    const q = await peer.request(axon, 'GET', `/_matrix/federation/v1/media/download/${mediaId}`);
    expect(q.status).toBe(404);
    expect(q.body).toMatchObject({ errcode: 'M_NOT_FOUND' });
  }, 60_000);
});

/** A signed GET to `dest` returning the raw bytes (SigningPeer.request reads text). */
async function rawSigned(peer: SigningPeer, ca: TestCa, dest: { serverName: string; federationUrl: string }, path: string): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }> {
  const { signRequest } = await import('../../src/protocol/server-auth');
  const { request } = await import('node:https');
  const auth = signRequest({ method: 'GET', uri: path, origin: peer.serverName, destination: dest.serverName }, peer.key)[0]!;
  const url = new URL(path, dest.federationUrl);
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'GET', headers: { Authorization: auth }, ca: readFileSync(ca.caPath) }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** A media server on loopback TLS that answers federation media requests as each test needs. */
interface MediaPeer {
  serverName: string;
  /** Requests received, by path (without query). */
  counts: Map<string, number>;
  close(): Promise<void>;
}

async function startMediaPeer(ip: string, ca: TestCa, files: Record<string, Buffer>): Promise<MediaPeer> {
  const port = await freePort(ip);
  const serverName = `${ip}:${port}`;
  const leaf = ca.leaf(ip);
  const counts = new Map<string, number>();
  const multipart = (res: import('node:http').ServerResponse, partHeaders: string, body: Buffer) => {
    const b = `bnd${randomBytes(6).toString('hex')}`;
    res.writeHead(200, { 'Content-Type': `multipart/mixed; boundary=${b}` });
    res.write(`--${b}\r\nContent-Type: application/json\r\n\r\n{}\r\n--${b}\r\n${partHeaders}\r\n`);
    // In pieces, so the reader sees the content arrive over time.
    for (let i = 0; i < body.length; i += 64 * 1024) res.write(body.subarray(i, i + 64 * 1024));
    res.end(`\r\n--${b}--\r\n`);
  };
  const server: Server = createServer({ cert: readFileSync(leaf.certPath), key: readFileSync(leaf.keyPath) }, (req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'https://x').pathname);
    counts.set(path, (counts.get(path) ?? 0) + 1);
    const fed = /^\/_matrix\/federation\/v1\/media\/download\/([^/]+)$/.exec(path)?.[1];
    const json = (status: number, body: unknown) => {
      res.writeHead(status, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (fed?.startsWith('slow')) {
      setTimeout(() => multipart(res, 'Content-Type: image/jpeg\r\nContent-Disposition: inline; filename="slow.jpg"\r\n', files.slow!), 700);
      return;
    }
    if (fed === 'big') return multipart(res, 'Content-Type: application/octet-stream\r\n', files.big!);
    if (fed === 'bigdeclared') return multipart(res, `Content-Type: application/octet-stream\r\nContent-Length: ${files.big!.length}\r\n`, Buffer.alloc(0));
    if (fed === 'located') return multipart(res, `Location: https://${serverName}/cdn/located.bin\r\n`, Buffer.alloc(0));
    if (path === '/cdn/located.bin') {
      res.writeHead(200, { 'Content-Type': 'audio/ogg', 'Content-Disposition': 'inline; filename="song.ogg"', 'Content-Length': String(files.located!.length) });
      return res.end(files.located);
    }
    if (fed === 'old') return json(404, { errcode: 'M_UNRECOGNIZED', error: 'Unrecognized request' });
    if (path === `/_matrix/media/v3/download/${serverName}/old`) {
      res.writeHead(200, { 'Content-Type': 'text/csv', 'Content-Disposition': "attachment; filename*=utf-8''old%20file.csv" });
      return res.end(files.old);
    }
    if (fed === 'hang') return; // never answers
    if (fed === 'notmultipart') return json(200, { not: 'multipart' });
    if (fed?.startsWith('garbage')) {
      res.writeHead(200, { 'Content-Type': 'multipart/mixed; boundary=x' });
      return res.end('no boundary anywhere in here');
    }
    json(404, { errcode: 'M_NOT_FOUND', error: 'no such media' });
  });
  await new Promise<void>((r) => server.listen(port, ip, r));
  return {
    serverName,
    counts,
    close: () => new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
}

describe('remote media from servers written here', () => {
  let ca: TestCa;
  let axon: TestServer;
  let clients: Clients;
  let media: MediaPeer;
  let user: Session;
  const files = { slow: randomBytes(700 * 1024), big: randomBytes(1536 * 1024), located: randomBytes(200 * 1024), old: Buffer.from('a,b\n1,2\n') };
  beforeAll(async () => {
    ca = createTestCa();
    [axon, media] = await Promise.all([
      startFederatedAxon('127.0.0.194', ca, (c) => {
        c.media.maxRemoteBytes = 1024 * 1024;
        c.media.remoteFetchTimeoutMs = 30_000;
      }),
      startMediaPeer('127.0.0.195', ca, files),
    ]);
    clients = await clientsFor(axon);
    user = await clients.mint('dana');
  }, 120_000);
  afterAll(async () => {
    await clients?.close();
    await media?.close();
    await axon?.stop();
    ca?.cleanup();
  }, 60_000);

  it('eight concurrent downloads of one remote item make one federation fetch, and all get the bytes', async () => {
    const answers = await Promise.all(Array.from({ length: 8 }, () => authDownload(axon.baseUrl, user.token, media.serverName, 'slow')));
    for (const a of answers) {
      expect(a.status).toBe(200);
      expect(sha(new Uint8Array(await a.arrayBuffer()))).toBe(sha(files.slow));
      expect(a.headers.get('content-type')).toBe('image/jpeg');
      expect(a.headers.get('content-disposition')).toBe('inline; filename="slow.jpg"');
    }
    expect(media.counts.get('/_matrix/federation/v1/media/download/slow')).toBe(1);
    // And later ones come from the cache.
    expect((await authDownload(axon.baseUrl, user.token, media.serverName, 'slow')).status).toBe(200);
    expect(media.counts.get('/_matrix/federation/v1/media/download/slow')).toBe(1);
  }, 60_000);

  it('two fronts asked for one remote item at once fetch it once (the Redis lock), and both serve it', async () => {
    const ip = '127.0.0.197';
    const fedPort = await freePort(ip);
    const clientPort = await freePort(ip);
    const leaf = ca.leaf(ip);
    const two = await startTestServer({
      fronts: 2,
      configure: (c) => {
        c.serverName = `${ip}:${fedPort}`;
        c.bindHost = ip;
        c.clientPort = clientPort;
        c.publicBaseUrl = `http://${ip}:${clientPort}`;
        c.federation = { ...c.federation, enabled: true, port: fedPort, tlsCertPath: leaf.certPath, tlsKeyPath: leaf.keyPath, caPaths: [ca.caPath], ipRangeBlocklist: [] };
      },
    });
    try {
      const c2 = await clientsFor(two);
      const eve = await c2.mint('eve');
      await c2.close();
      expect(two.baseUrls.length).toBe(2);
      const answers = await Promise.all(Array.from({ length: 6 }, (_, i) => authDownload(two.baseUrls[i % 2]!, eve.token, media.serverName, 'slow2')));
      for (const a of answers) {
        expect(a.status).toBe(200);
        expect(sha(new Uint8Array(await a.arrayBuffer()))).toBe(sha(files.slow));
      }
      expect(media.counts.get('/_matrix/federation/v1/media/download/slow2')).toBe(1);
    } finally {
      await two.stop();
    }
  }, 120_000);

  it('follows a Location part, and falls back to the legacy path for a server without federation media', async () => {
    const located = await authDownload(axon.baseUrl, user.token, media.serverName, 'located');
    expect(located.status).toBe(200);
    expect(sha(new Uint8Array(await located.arrayBuffer()))).toBe(sha(files.located));
    expect(located.headers.get('content-type')).toBe('audio/ogg');
    const old = await authDownload(axon.baseUrl, user.token, media.serverName, 'old');
    expect(old.status).toBe(200);
    expect(Buffer.from(await old.arrayBuffer()).equals(files.old)).toBe(true);
    expect(old.headers.get('content-disposition')).toBe('inline; filename="old file.csv"');
    expect(media.counts.get(`/_matrix/media/v3/download/${media.serverName}/old`)).toBe(1);
  }, 60_000);

  it('refuses a remote file over media.maxRemoteBytes (declared or not), and nothing is cached', async () => {
    for (const id of ['big', 'bigdeclared']) {
      const r = await authDownload(axon.baseUrl, user.token, media.serverName, id);
      expect(r.status).toBe(502);
      expect(await r.json()).toMatchObject({ errcode: 'M_TOO_LARGE' });
    }
    const again = await authDownload(axon.baseUrl, user.token, media.serverName, 'big');
    expect(again.status).toBe(502);
    expect(media.counts.get('/_matrix/federation/v1/media/download/big')).toBe(2);
  }, 60_000);

  it('a server that is down is 502 at once; one that never answers is 504 after timeout_ms; nonsense is 502', async () => {
    const downPort = await freePort('127.0.0.196');
    let t0 = performance.now();
    const down = await authDownload(axon.baseUrl, user.token, `127.0.0.196:${downPort}`, 'anything');
    const downMs = performance.now() - t0;
    expect(down.status).toBe(502);
    expect(await down.json()).toMatchObject({ errcode: 'M_UNKNOWN' });
    console.log(`remote server down: 502 after ${Math.round(downMs)} ms`);
    t0 = performance.now();
    const hang = await authDownload(axon.baseUrl, user.token, media.serverName, 'hang', '?timeout_ms=1500');
    console.log(`remote server silent: ${hang.status} after ${Math.round(performance.now() - t0)} ms (timeout_ms=1500)`);
    expect(hang.status).toBe(504);
    const nonsense = await authDownload(axon.baseUrl, user.token, media.serverName, 'notmultipart');
    expect(nonsense.status).toBe(502);
    const missing = await authDownload(axon.baseUrl, user.token, media.serverName, 'missing');
    expect(missing.status).toBe(404);
    // More malformed answers than a destination's in-flight slots: each gives its slot back.
    for (let i = 0; i < 10; i++) expect((await authDownload(axon.baseUrl, user.token, media.serverName, `garbage${i}`)).status).toBe(502);
    const after = await authDownload(axon.baseUrl, user.token, media.serverName, 'slow3', '?timeout_ms=10000');
    expect(after.status).toBe(200);
  }, 60_000);

  it('allow_remote=false and the frozen legacy download do not ask the remote server', async () => {
    const before = media.counts.get('/_matrix/federation/v1/media/download/never') ?? 0;
    const r = await authDownload(axon.baseUrl, user.token, media.serverName, 'never', '?allow_remote=false');
    expect(r.status).toBe(404);
    const legacy = await fetch(`${axon.baseUrl}/_matrix/media/v3/download/${media.serverName}/never`);
    expect(legacy.status).toBe(404);
    // A cached item is not served on the legacy path either: it was fetched after the freeze.
    const legacyCached = await fetch(`${axon.baseUrl}/_matrix/media/v3/download/${media.serverName}/slow`);
    expect(legacyCached.status).toBe(404);
    expect(media.counts.get('/_matrix/federation/v1/media/download/never') ?? 0).toBe(before);
    const bad = await authDownload(axon.baseUrl, user.token, media.serverName, 'never', '?allow_remote=maybe');
    expect(bad.status).toBe(400);
  }, 30_000);
});
