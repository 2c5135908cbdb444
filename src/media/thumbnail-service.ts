/**
 * The thumbnails the media endpoints serve (`ctx.media.thumbnailer`): stored thumbnails first,
 * made on demand otherwise. Thumbnails are content in the MediaStore like any upload (addressed
 * by sha256, counted by the media-content actors) and listed on the item's media actor record
 * (`MediaRecord.th`: the box asked for, the method, animated or not, real dimensions, type, sha256).
 *
 * A request is answered, in order, by:
 * 1. a stored thumbnail made for exactly this box, method and animation;
 * 2. for a still thumbnail, the best of the stored still ones by Synapse's rules
 *    (`selectThumbnail`), if it is good enough: a `scale` one at least as large as asked in one
 *    dimension, a `crop` one covering the box with its aspect ratio within 5% — the pre-generated
 *    sizes answer the usual requests without decoding anything, and a crop is never of the wrong shape;
 * 3. otherwise one made now from the original, stored and recorded, so it is made once: concurrent
 *    requests for the same thumbnail in one front share one computation, and a front that loses a
 *    race with another front serves the winner's (the actor keeps the first).
 * Images the thumbnailer refuses (not an image, too many pixels: decompression bombs) get its
 * Matrix error (400 M_UNKNOWN / M_TOO_LARGE; 429 when busy).
 */
import type { Logger } from 'pino';
import type { StoredThumbnail } from '../../actors/media';
import { MatrixError } from '../http/errors';
import type { ByteRange } from '../http/range';
import { MediaProcessingError, ThumbnailerBusyError } from './processing-errors';
import type { MediaRepository } from './repository';
import type { MediaSource, Thumbnail, Thumbnailer, ThumbnailRequest } from './services';
import { baseContentType, isThumbnailableType, selectThumbnail, type Thumbnailer as ImageThumbnailer } from './thumbnails';

/** A MediaProcessingError as the Matrix error the client gets. */
export function processingMatrixError(e: MediaProcessingError): MatrixError {
  const extra = e instanceof ThumbnailerBusyError ? { retry_after_ms: e.retryAfterMs } : undefined;
  return new MatrixError(e.httpStatus, e.errcode, e.message, extra);
}

/** Whether an animated thumbnail can be made of this type (the others get a still one). */
function animatable(contentType: string): boolean {
  const t = baseContentType(contentType);
  return t === 'image/gif' || t === 'image/webp';
}

/** Read a whole stored item (the thumbnailer needs all of it; uploads are bounded by media.maxUploadBytes). */
export async function readAll(stream: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.from(c.buffer, c.byteOffset, c.byteLength));
  return Buffer.concat(chunks);
}

/** A Buffer served with Range. */
function bufferThumbnail(contentType: string, bytes: Buffer): Thumbnail {
  return {
    contentType,
    size: bytes.length,
    open: async (range?: ByteRange) => {
      const slice = range ? bytes.subarray(range.start, range.end + 1) : bytes;
      return (async function* () {
        yield slice;
      })();
    },
  };
}

/** Whether a stored thumbnail answers a request without making one (see the header). */
function goodEnough(t: { width: number; height: number }, request: ThumbnailRequest): boolean {
  if (request.method === 'scale') return t.width >= request.width || t.height >= request.height;
  const aspectOff = Math.abs(request.width * t.height - request.height * t.width) / (request.width * t.height);
  return t.width >= request.width && t.height >= request.height && aspectOff <= 0.05;
}

export class MediaThumbnails implements Thumbnailer {
  private readonly inFlight = new Map<string, Promise<{ bytes: Buffer; contentType: string }>>();

  constructor(
    private readonly repo: MediaRepository,
    private readonly images: ImageThumbnailer,
    private readonly log: Logger,
  ) {}

  private stored(t: StoredThumbnail): Thumbnail {
    return { contentType: t.t, size: t.s, open: (range) => this.repo.store.get(t.c, range) };
  }

  async thumbnail(source: MediaSource, request: ThumbnailRequest): Promise<Thumbnail | null> {
    if (!isThumbnailableType(source.contentType)) return null;
    const animated = request.animated && animatable(source.contentType);
    const exact = source.thumbnails.find((t) => t.bw === request.width && t.bh === request.height && t.m === request.method && (t.an === 1) === animated);
    if (exact) return this.stored(exact);
    if (!animated) {
      const still = source.thumbnails.filter((t) => !t.an).map((t) => ({ width: t.w, height: t.h, method: t.m, contentType: t.t, length: t.s, thumb: t }));
      const best = selectThumbnail(request, still);
      if (best && goodEnough(best, request)) return this.stored(best.thumb);
    }
    const key = `${source.mediaId}\0${request.width}x${request.height}\0${request.method}\0${animated}`;
    let job = this.inFlight.get(key);
    if (!job) {
      job = this.generate(source, { ...request, animated }).finally(() => this.inFlight.delete(key));
      this.inFlight.set(key, job);
    }
    const made = await job;
    return bufferThumbnail(made.contentType, made.bytes);
  }

  private async generate(source: MediaSource, request: ThumbnailRequest): Promise<{ bytes: Buffer; contentType: string }> {
    const original = await readAll(await source.open());
    let made;
    try {
      made = await this.images.thumbnail(original, source.contentType, request);
    } catch (e) {
      if (e instanceof MediaProcessingError) throw processingMatrixError(e);
      throw e;
    }
    try {
      await this.repo.storeThumbnail(source.mediaId, { bw: request.width, bh: request.height, m: request.method, ...(request.animated ? { an: 1 as const } : {}), w: made.width, h: made.height, t: made.contentType }, made.bytes);
    } catch (err) {
      // Served anyway; the next request makes it again.
      this.log.warn({ err, media_id: source.mediaId }, 'media: thumbnail made but not stored');
    }
    return { bytes: made.bytes, contentType: made.contentType };
  }
}
