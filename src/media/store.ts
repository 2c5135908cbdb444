/**
 * Where media bytes live. Content is addressed by its sha256, so identical uploads share one
 * blob (the media-content actor counts who refers to it). Writing is two steps so that nothing
 * half-written is ever visible under a content address: `stage` streams the body to a temporary
 * place while hashing it, `commit` moves it under its sha256 (an atomic rename on a filesystem, a
 * server-side copy on S3) once the caller has recorded the reference.
 */
import type { ByteRange } from '../http/range';

export interface StagedBlob {
  sha256: string;
  size: number;
  /** Put the staged bytes under their content address (a no-op when that blob is there already). */
  commit(): Promise<void>;
  /** Drop the staged bytes (the upload failed or was refused). Never throws. */
  discard(): Promise<void>;
}

export interface MediaStore {
  /** Which backend (`local`, `s3`), for logs and status. */
  readonly kind: string;
  /**
   * Stream `body` to a temporary place, hashing it. Throws (and leaves nothing behind) if the
   * body fails — too large, client gone.
   */
  stage(body: AsyncIterable<Uint8Array>): Promise<StagedBlob>;
  /** stage + commit. */
  put(body: AsyncIterable<Uint8Array>): Promise<{ sha256: string; size: number }>;
  /** The blob's bytes (`range` inclusive), streamed; throws BlobNotFound when absent. */
  get(sha256: string, range?: ByteRange): Promise<AsyncIterable<Uint8Array>>;
  /** Size of the blob, or null when absent. */
  stat(sha256: string): Promise<number | null>;
  exists(sha256: string): Promise<boolean>;
  /** Remove the blob (no error when absent). */
  delete(sha256: string): Promise<void>;
  close?(): void;
}

export class BlobNotFound extends Error {
  constructor(sha256: string) {
    super(`No media blob ${sha256}`);
    this.name = 'BlobNotFound';
  }
}

export const SHA256_HEX = /^[0-9a-f]{64}$/;

export function assertSha256(sha256: string): void {
  if (!SHA256_HEX.test(sha256)) throw new Error(`not a sha256: ${JSON.stringify(sha256)}`);
}
