/**
 * The S3-compatible MediaStore (AWS S3, MinIO, Ceph, R2, …): blobs at `<prefix>content/<sha256>`.
 * Uploads stream through a hash into a multipart upload (`@aws-sdk/lib-storage`: parts of 8 MiB,
 * a few in flight, so memory stays bounded whatever the size) under `<prefix>tmp/<random>`, and
 * `commit` copies that server-side to the content address: an object under `content/` is always
 * whole. A process killed mid-upload leaves an unfinished multipart upload or a tmp object; an
 * S3 lifecycle rule on `<prefix>tmp/` (expire after a day, abort incomplete uploads) clears them.
 */
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { CopyObjectCommand, DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { ByteRange } from '../http/range';
import { BlobNotFound, assertSha256, type MediaStore, type StagedBlob } from './store';

export interface S3StoreOptions {
  /** Empty: AWS's endpoint for `region`. */
  endpoint: string;
  bucket: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** `https://host/bucket/key` rather than `https://bucket.host/key` (MinIO, moto, s3rver). */
  forcePathStyle: boolean;
  /** Prepended to every key, e.g. `axon/`. */
  prefix: string;
}

const PART_SIZE = 8 * 1024 * 1024;
const PARTS_IN_FLIGHT = 2;

function isNotFound(e: unknown): boolean {
  const err = e as { name?: string; $metadata?: { httpStatusCode?: number } };
  return err?.name === 'NoSuchKey' || err?.name === 'NotFound' || err?.$metadata?.httpStatusCode === 404;
}

export class S3MediaStore implements MediaStore {
  readonly kind = 's3';
  readonly client: S3Client;

  constructor(private readonly opts: S3StoreOptions) {
    // Checksums only where S3 requires them: the SDK's default (CRC32 on every request and
    // response) is not what every S3-compatible server does — moto answers a ranged GET with the
    // whole object's checksum, which the SDK then rejects. Content integrity is ours anyway: blobs
    // are addressed by their sha256.
    const config: S3ClientConfig = { region: opts.region || 'us-east-1', forcePathStyle: opts.forcePathStyle, requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' };
    if (opts.endpoint) config.endpoint = opts.endpoint;
    if (opts.accessKeyId) config.credentials = { accessKeyId: opts.accessKeyId, secretAccessKey: opts.secretAccessKey };
    this.client = new S3Client(config);
  }

  keyOf(sha256: string): string {
    assertSha256(sha256);
    return `${this.opts.prefix}content/${sha256}`;
  }

  async stage(body: AsyncIterable<Uint8Array>): Promise<StagedBlob> {
    const tmpKey = `${this.opts.prefix}tmp/${Date.now()}-${randomBytes(8).toString('hex')}`;
    const hash = createHash('sha256');
    let size = 0;
    const hashed = Readable.from(
      (async function* () {
        for await (const chunk of body) {
          hash.update(chunk);
          size += chunk.byteLength;
          yield chunk;
        }
      })(),
    );
    const upload = new Upload({ client: this.client, params: { Bucket: this.opts.bucket, Key: tmpKey, Body: hashed }, partSize: PART_SIZE, queueSize: PARTS_IN_FLIGHT, leavePartsOnError: false });
    try {
      await upload.done();
    } catch (e) {
      hashed.destroy();
      await this.deleteKey(tmpKey).catch(() => undefined);
      throw e;
    }
    const sha256 = hash.digest('hex');
    return {
      sha256,
      size,
      commit: async () => {
        const key = this.keyOf(sha256);
        if (!(await this.headSize(key).then((s) => s !== null))) {
          await this.client.send(new CopyObjectCommand({ Bucket: this.opts.bucket, Key: key, CopySource: `${this.opts.bucket}/${encodeURIComponent(tmpKey).replace(/%2F/g, '/')}` }));
        }
        await this.deleteKey(tmpKey);
      },
      discard: async () => {
        await this.deleteKey(tmpKey).catch(() => undefined);
      },
    };
  }

  async put(body: AsyncIterable<Uint8Array>): Promise<{ sha256: string; size: number }> {
    const staged = await this.stage(body);
    await staged.commit();
    return { sha256: staged.sha256, size: staged.size };
  }

  async get(sha256: string, range?: ByteRange): Promise<AsyncIterable<Uint8Array>> {
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.opts.bucket, Key: this.keyOf(sha256), ...(range ? { Range: `bytes=${range.start}-${range.end}` } : {}) }));
      if (!out.Body) throw new BlobNotFound(sha256);
      return out.Body as Readable;
    } catch (e) {
      if (isNotFound(e)) throw new BlobNotFound(sha256);
      throw e;
    }
  }

  private async headSize(key: string): Promise<number | null> {
    try {
      const out = await this.client.send(new HeadObjectCommand({ Bucket: this.opts.bucket, Key: key }));
      return out.ContentLength ?? 0;
    } catch (e) {
      if (isNotFound(e)) return null;
      throw e;
    }
  }

  stat(sha256: string): Promise<number | null> {
    return this.headSize(this.keyOf(sha256));
  }

  async exists(sha256: string): Promise<boolean> {
    return (await this.stat(sha256)) !== null;
  }

  private async deleteKey(key: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.opts.bucket, Key: key }));
  }

  async delete(sha256: string): Promise<void> {
    await this.deleteKey(this.keyOf(sha256));
  }

  close(): void {
    this.client.destroy();
  }
}
