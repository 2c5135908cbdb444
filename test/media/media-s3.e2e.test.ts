/**
 * A whole Axon with `media.store: s3` on a real S3-compatible server (s3rver, started here; it
 * checks request signatures): a 20 MiB upload over HTTP goes through a multipart upload, comes
 * back byte for byte and in ranges, and identical content is one object. Plus the per-user upload
 * rate limit (`rateLimit.mediaUpload`), on in this server.
 */
import { createHash, randomBytes } from 'node:crypto';
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../e2e/server-harness';
import { startS3rver, type S3Peer } from './peers';

let s3: S3Peer;
let server: TestServer;
let token: string;

beforeAll(async () => {
  s3 = await startS3rver();
  server = await startTestServer({
    configure: (c) => {
      c.media.store = 's3';
      c.media.s3 = { ...s3.options };
      c.rateLimit = { ...c.rateLimit, enabled: true, login: { burst: 100, perMinute: 100 }, register: { burst: 100, perMinute: 100 }, mediaUpload: { burst: 4, perMinute: 1 } };
    },
  });
  const first = await fetch(`${server.baseUrl}/_matrix/client/v3/register`, { method: 'POST', body: JSON.stringify({ username: 's3user', password: 'a long passphrase' }) });
  const { session } = (await first.json()) as { session: string };
  const done = await fetch(`${server.baseUrl}/_matrix/client/v3/register`, { method: 'POST', body: JSON.stringify({ username: 's3user', password: 'a long passphrase', auth: { type: 'm.login.dummy', session } }) });
  token = ((await done.json()) as { access_token: string }).access_token;
}, 120_000);
afterAll(async () => {
  await server?.stop();
  await s3?.stop();
});

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

async function upload(body: Uint8Array): Promise<Response> {
  return fetch(`${server.baseUrl}/_matrix/media/v3/upload?filename=big.bin`, { method: 'POST', headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/octet-stream' }, body });
}

describe('media on an S3-compatible store', () => {
  it('uploads through multipart, downloads whole and in ranges, stores identical content once, limits uploads per user', async () => {
    const body = randomBytes(20 * 1024 * 1024);
    const r = await upload(body);
    expect(r.status).toBe(200);
    const mxc = ((await r.json()) as { content_uri: string }).content_uri;
    const url = `${server.baseUrl}/_matrix/client/v1/media/download/${mxc.slice('mxc://'.length)}`;
    const whole = await fetch(url, { headers: { Authorization: `Bearer ${token}` } });
    expect(whole.status).toBe(200);
    expect(sha(new Uint8Array(await whole.arrayBuffer()))).toBe(sha(body));
    const part = await fetch(url, { headers: { Authorization: `Bearer ${token}`, Range: 'bytes=10485760-10485859' } });
    expect(part.status).toBe(206);
    expect(Buffer.from(await part.arrayBuffer()).equals(body.subarray(10_485_760, 10_485_860))).toBe(true);
    const second = await upload(body);
    expect(second.status).toBe(200);
    const client = new S3Client({ endpoint: s3.options.endpoint, region: s3.options.region, forcePathStyle: true, credentials: { accessKeyId: s3.options.accessKeyId, secretAccessKey: s3.options.secretAccessKey } });
    const listed = await client.send(new ListObjectsV2Command({ Bucket: s3.options.bucket, Prefix: s3.options.prefix }));
    client.destroy();
    expect((listed.Contents ?? []).map((o) => o.Key)).toEqual([`${s3.options.prefix}content/${sha(body)}`]);
    // Burst 4: two more uploads pass, the fifth is refused.
    expect((await upload(randomBytes(10))).status).toBe(200);
    expect((await upload(randomBytes(10))).status).toBe(200);
    const limited = await upload(randomBytes(10));
    expect(limited.status).toBe(429);
    expect(((await limited.json()) as { errcode: string }).errcode).toBe('M_LIMIT_EXCEEDED');
  }, 120_000);
});
