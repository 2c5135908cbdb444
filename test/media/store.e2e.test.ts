/**
 * One MediaStore suite, run against every backend: the local filesystem, and the S3 backend on
 * two real S3-compatible servers (s3rver from npm, moto's server from PyPI — skipped with a
 * message when moto is not installed; `npm test` installs it). Bodies of 20 MiB go through
 * multipart uploads (8 MiB parts); ranged GETs; identical content lands on one address; a body
 * that fails half-way leaves nothing visible.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalMediaStore } from '../../src/media/local-store';
import { S3MediaStore } from '../../src/media/s3-store';
import { BlobNotFound, type MediaStore } from '../../src/media/store';
import { motoInstalled, startMoto, startS3rver, type S3Peer } from './peers';

async function* chunksOf(buf: Buffer, size = 64 * 1024): AsyncIterable<Uint8Array> {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
}

async function* failingAfter(buf: Buffer): AsyncIterable<Uint8Array> {
  yield* chunksOf(buf);
  throw new Error('client went away');
}

async function readAll(it: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of it) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

interface Backend {
  name: string;
  skip?: string;
  setup(): Promise<{ store: MediaStore; leftovers(): Promise<string[]>; stop(): Promise<void> }>;
}

const backends: Backend[] = [
  {
    name: 'local',
    async setup() {
      const root = mkdtempSync(join(tmpdir(), 'axon-media-'));
      const store = new LocalMediaStore(root);
      return { store, leftovers: async () => (existsSync(join(root, 'tmp')) ? readdirSync(join(root, 'tmp')) : []), stop: async () => undefined };
    },
  },
  ...[
    { name: 's3rver', start: startS3rver },
    { name: 'moto', start: startMoto, skip: motoInstalled() ? undefined : 'moto is not installed (bash -c ". scripts/lib/ensure.sh && ensure_moto")' },
  ].map(
    (b): Backend => ({
      name: `s3 on ${b.name}`,
      skip: b.skip,
      async setup() {
        const peer: S3Peer = await b.start();
        const store = new S3MediaStore(peer.options);
        return {
          store,
          leftovers: async () => {
            const out = await store.client.send(new ListObjectsV2Command({ Bucket: peer.options.bucket, Prefix: `${peer.options.prefix}tmp/` }));
            return (out.Contents ?? []).map((o) => o.Key!);
          },
          stop: async () => {
            store.close();
            await peer.stop();
          },
        };
      },
    }),
  ),
];

for (const backend of backends) {
  describe.skipIf(backend.skip)(`MediaStore: ${backend.name}`, () => {
    let env: Awaited<ReturnType<Backend['setup']>>;
    beforeAll(async () => {
      env = await backend.setup();
    }, 90_000);
    afterAll(async () => {
      await env?.stop();
    });

    it('stores a stream under its sha256 and gives it back whole and in ranges (20 MiB: multipart on S3)', async () => {
      const body = randomBytes(20 * 1024 * 1024 + 123);
      const put = await env.store.put(chunksOf(body));
      expect(put).toEqual({ sha256: sha(body), size: body.length });
      expect(await env.store.exists(put.sha256)).toBe(true);
      expect(await env.store.stat(put.sha256)).toBe(body.length);
      expect((await readAll(await env.store.get(put.sha256))).equals(body)).toBe(true);
      const ranged = await readAll(await env.store.get(put.sha256, { start: 9 * 1024 * 1024, end: 9 * 1024 * 1024 + 99 }));
      expect(ranged.equals(body.subarray(9 * 1024 * 1024, 9 * 1024 * 1024 + 100))).toBe(true);
      expect((await readAll(await env.store.get(put.sha256, { start: body.length - 5, end: body.length - 1 }))).equals(body.subarray(-5))).toBe(true);
      expect(await env.leftovers()).toEqual([]);
    }, 120_000);

    it('identical content has one address; delete removes it', async () => {
      const body = randomBytes(1000);
      const a = await env.store.put(chunksOf(body, 100));
      const b = await env.store.put(chunksOf(body, 333));
      expect(a.sha256).toBe(b.sha256);
      await env.store.delete(a.sha256);
      expect(await env.store.exists(a.sha256)).toBe(false);
      await expect(env.store.get(a.sha256)).rejects.toBeInstanceOf(BlobNotFound);
      await env.store.delete(a.sha256); // deleting what is gone is fine
    }, 60_000);

    it('a body that fails half-way leaves nothing visible and no temp object', async () => {
      const body = randomBytes(3 * 1024 * 1024);
      await expect(env.store.put(failingAfter(body))).rejects.toThrow(/went away/);
      expect(await env.store.exists(sha(body))).toBe(false);
      expect(await env.leftovers()).toEqual([]);
    }, 60_000);

    it('staged bytes are invisible until committed; discard drops them', async () => {
      const body = randomBytes(4096);
      const staged = await env.store.stage(chunksOf(body));
      expect(staged.sha256).toBe(sha(body));
      expect(await env.store.exists(staged.sha256)).toBe(false);
      await staged.discard();
      expect(await env.store.exists(staged.sha256)).toBe(false);
      expect(await env.leftovers()).toEqual([]);
      const again = await env.store.stage(chunksOf(body));
      await again.commit();
      expect((await readAll(await env.store.get(again.sha256))).equals(body)).toBe(true);
      expect(await env.leftovers()).toEqual([]);
    }, 60_000);

    it('an empty body is a blob too', async () => {
      const put = await env.store.put(chunksOf(Buffer.alloc(0)));
      expect(put.size).toBe(0);
      expect(await env.store.stat(put.sha256)).toBe(0);
    }, 60_000);
  });
}
