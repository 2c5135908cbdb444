/**
 * The filesystem MediaStore (the default): blobs under `<root>/content/<2 hex>/<sha256>`, so 256
 * directories at most, made when first needed — never a directory per file (Synapse's layout
 * leaves operators with hundreds of thousands of them). Uploads are written to `<root>/tmp/`
 * on the same filesystem and renamed into place: a process killed mid-upload leaves only a temp
 * file, which no address points at and which `sweepTemp` removes later.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readdir, rename, rm, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { once } from 'node:events';
import type { ByteRange } from '../http/range';
import { BlobNotFound, assertSha256, type MediaStore, type StagedBlob } from './store';

/** Temp files older than this are from a process that died mid-upload. */
const STALE_TEMP_MS = 3600_000;

export class LocalMediaStore implements MediaStore {
  readonly kind = 'local';
  private readonly tmpDir: string;
  private readonly contentDir: string;

  constructor(readonly root: string) {
    this.tmpDir = join(root, 'tmp');
    this.contentDir = join(root, 'content');
  }

  pathOf(sha256: string): string {
    assertSha256(sha256);
    return join(this.contentDir, sha256.slice(0, 2), sha256);
  }

  async stage(body: AsyncIterable<Uint8Array>): Promise<StagedBlob> {
    await mkdir(this.tmpDir, { recursive: true });
    const tmp = join(this.tmpDir, `${Date.now()}-${randomBytes(8).toString('hex')}`);
    const hash = createHash('sha256');
    let size = 0;
    const out = createWriteStream(tmp, { flags: 'wx' });
    try {
      await once(out, 'open');
      for await (const chunk of body) {
        hash.update(chunk);
        size += chunk.byteLength;
        // Backpressure: wait for the disk when its buffer is full.
        if (!out.write(chunk)) await once(out, 'drain');
      }
      out.end();
      await once(out, 'finish');
    } catch (e) {
      out.destroy();
      await unlink(tmp).catch(() => undefined);
      throw e;
    }
    const sha256 = hash.digest('hex');
    return {
      sha256,
      size,
      commit: async () => {
        const target = this.pathOf(sha256);
        await mkdir(join(this.contentDir, sha256.slice(0, 2)), { recursive: true });
        // Replacing an identical blob is harmless; rename is atomic on one filesystem.
        await rename(tmp, target);
      },
      discard: async () => {
        await unlink(tmp).catch(() => undefined);
      },
    };
  }

  async put(body: AsyncIterable<Uint8Array>): Promise<{ sha256: string; size: number }> {
    const staged = await this.stage(body);
    await staged.commit();
    return { sha256: staged.sha256, size: staged.size };
  }

  async get(sha256: string, range?: ByteRange): Promise<AsyncIterable<Uint8Array>> {
    const path = this.pathOf(sha256);
    const stream = createReadStream(path, range ? { start: range.start, end: range.end } : {});
    try {
      await once(stream, 'open');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new BlobNotFound(sha256);
      throw e;
    }
    return stream;
  }

  async stat(sha256: string): Promise<number | null> {
    try {
      return (await stat(this.pathOf(sha256))).size;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
  }

  async exists(sha256: string): Promise<boolean> {
    return (await this.stat(sha256)) !== null;
  }

  async delete(sha256: string): Promise<void> {
    await rm(this.pathOf(sha256), { force: true });
  }

  /** Remove temp files left by processes that died mid-upload; returns how many. */
  async sweepTemp(olderThanMs = STALE_TEMP_MS): Promise<number> {
    let names: string[];
    try {
      names = await readdir(this.tmpDir);
    } catch {
      return 0;
    }
    let removed = 0;
    for (const name of names) {
      const started = Number(name.split('-')[0]);
      if (Number.isFinite(started) && Date.now() - started > olderThanMs) {
        await unlink(join(this.tmpDir, name)).catch(() => undefined);
        removed++;
      }
    }
    return removed;
  }
}
