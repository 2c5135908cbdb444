/**
 * Thumbnails (spec: client-server API, "Thumbnails"; `GET /_matrix/client/v1/media/thumbnail/…`),
 * made with sharp (libvips). Given the source bytes, its declared content type and a request
 * (width, height, `crop` | `scale`, `animated`), `Thumbnailer.thumbnail` returns the thumbnail's
 * bytes, content type and actual dimensions. No storage, no HTTP: the media endpoints call this
 * and store or serve what it returns.
 *
 * The rules, and why:
 * - Only JPEG, PNG, GIF and WebP are decoded. Every other libvips loader (SVG, PDF, HEIF, TIFF,
 *   the ImageMagick fallback…) is blocked process-wide, so bytes that merely claim to be an image
 *   cannot reach a large parser. SVG in particular is never rendered (scriptable, and rsvg is big).
 * - The declared type decides the output, as Synapse's default thumbnail requirements do: JPEG for
 *   JPEG and WebP sources, PNG for PNG and GIF sources (GIF for its transparency). We differ in
 *   one place: a WebP with an alpha channel gets PNG, since JPEG would blacken its transparency.
 * - Decompression bombs are refused before decoding: the dimensions (and frame count) come from
 *   the header (sharp `metadata()` reads no pixels) and anything over `maxPixels` is refused with
 *   ImageTooLargeError; `limitInputPixels` on the decoding pipeline is a second guard.
 * - `scale` fits the image within the box keeping its aspect ratio; `crop` fills the box exactly
 *   (centre crop). Neither upscales: the spec says servers should return the original rather than
 *   enlarge it, so a source smaller than the box comes back at its own size (`scale`) or as the
 *   largest region with the box's aspect ratio that fits in it (`crop`), re-encoded so that its
 *   metadata is still stripped.
 * - `animated=true` on an animated GIF/WebP gives an animated WebP (the spec: servers SHOULD prefer
 *   image/webp when supporting animation); otherwise the first frame only. All frames count
 *   towards `maxPixels`; an animation over the limit falls back to its first frame.
 * - EXIF orientation is applied and all metadata (EXIF, XMP, ICC after conversion to sRGB) is
 *   stripped from the output: thumbnails must not leak where a photo was taken.
 * - Bounded concurrency: at most `maxConcurrent` thumbnails are computed at once (each takes one
 *   libuv thread and `vipsThreads` libvips threads), at most `maxQueued` wait, the rest are
 *   refused with ThumbnailerBusyError. So a burst of thumbnail requests cannot take every thread
 *   the front needs for DNS, files and crypto. libvips' operation cache is off: each thumbnail is
 *   of a different image, a cache only holds memory.
 */
import type { Readable } from 'node:stream';
import type { Metadata, OutputInfo, Sharp } from 'sharp';
import {
  ImageProcessingFailedError,
  ImageTooLargeError,
  InvalidThumbnailRequestError,
  SourceTooLargeError,
  ThumbnailerBusyError,
  UnsupportedImageError,
} from './processing-errors';

export type ThumbnailMethod = 'crop' | 'scale';

export interface ThumbnailRequest {
  width: number;
  height: number;
  method: ThumbnailMethod;
  /** The spec's `animated` query parameter; absent means false. */
  animated?: boolean;
}

export interface ThumbnailSize {
  width: number;
  height: number;
  method: ThumbnailMethod;
}

/** The sizes Synapse generates at upload by default (`thumbnail_sizes`), which the spec recommends. */
export const DEFAULT_THUMBNAIL_SIZES: readonly ThumbnailSize[] = Object.freeze([
  { width: 32, height: 32, method: 'crop' },
  { width: 96, height: 96, method: 'crop' },
  { width: 320, height: 240, method: 'scale' },
  { width: 640, height: 480, method: 'scale' },
  { width: 800, height: 600, method: 'scale' },
]);

/** Synapse's default `max_image_pixels` ("32M"). */
export const DEFAULT_MAX_PIXELS = 32 * 1024 * 1024;
/** Largest source handed over as a stream that we buffer (uploads are capped at 50 MiB by default). */
export const DEFAULT_MAX_SOURCE_BYTES = 64 * 1024 * 1024;
/** Largest width or height a client may ask for; above that the request is refused as invalid. */
export const MAX_REQUESTED_DIMENSION = 10_000;

export type ThumbnailSource = Buffer | Uint8Array | Readable | { path: string };

export interface Thumbnail {
  bytes: Buffer;
  /** `image/jpeg`, `image/png` or (animated) `image/webp`. */
  contentType: string;
  width: number;
  height: number;
  animated: boolean;
}

/** What the header says, without decoding pixels. */
export interface ImageProbe {
  /** The sniffed format, whatever the declared type said. */
  format: 'jpeg' | 'png' | 'gif' | 'webp';
  contentType: string;
  /** Displayed dimensions: after EXIF orientation, of one frame. */
  width: number;
  height: number;
  /** Frames (1 for a still image). */
  frames: number;
  hasAlpha: boolean;
}

export interface ThumbnailerOptions {
  /** Refuse images with more pixels than this (all frames of an animation count). Default 32 Mi. */
  maxPixels?: number;
  /** Thumbnails computed at once. Default 2. */
  maxConcurrent?: number;
  /** Thumbnails waiting for a slot before new ones are refused with ThumbnailerBusyError. Default 32. */
  maxQueued?: number;
  /** libvips worker threads per image (sharp.concurrency). Default 1: the machine is shared. */
  vipsThreads?: number;
  /** Largest stream source buffered. Default 64 MiB. */
  maxSourceBytes?: number;
  /** A pipeline running longer than this fails (sharp `timeout`). Default 30 s. */
  timeoutSeconds?: number;
  /** JPEG quality (Synapse uses 80). */
  jpegQuality?: number;
}

const FORMAT_CONTENT_TYPES: Record<ImageProbe['format'], string> = {
  jpeg: 'image/jpeg',
  png: 'image/png',
  gif: 'image/gif',
  webp: 'image/webp',
};

/**
 * Declared content types we thumbnail and the static output for each (Synapse's
 * THUMBNAIL_SUPPORTED_MEDIA_FORMAT_MAP). Anything else, SVG included, is not thumbnailed.
 */
const STATIC_OUTPUT_FOR_TYPE: Record<string, 'jpeg' | 'png'> = {
  'image/jpeg': 'jpeg',
  'image/jpg': 'jpeg',
  'image/pjpeg': 'jpeg',
  'image/webp': 'jpeg',
  'image/gif': 'png',
  'image/png': 'png',
};

/** The content type without parameters, lower-cased (`Image/PNG; x=y` → `image/png`). */
export function baseContentType(contentType: string): string {
  const semi = contentType.indexOf(';');
  return (semi < 0 ? contentType : contentType.slice(0, semi)).trim().toLowerCase();
}

/** Whether a declared content type is one we make thumbnails of. */
export function isThumbnailableType(contentType: string): boolean {
  return Object.hasOwn(STATIC_OUTPUT_FOR_TYPE, baseContentType(contentType));
}

type SharpFn = (typeof import('sharp'))['default'];
let sharpLoading: Promise<SharpFn> | null = null;
let vipsThreadsWanted = 1;
/**
 * sharp, imported on first use (libvips costs a process ~17 MB, and most fronts and workers
 * never make a thumbnail) with the process-wide libvips settings applied once: only the four
 * loaders we need, no operation cache, the first Thumbnailer's thread count. (sharp's settings are
 * global to the process; nothing else in Axon uses sharp.)
 */
function loadSharp(vipsThreads?: number): Promise<SharpFn> {
  if (vipsThreads !== undefined && !sharpLoading) vipsThreadsWanted = vipsThreads;
  sharpLoading ??= import('sharp').then(({ default: sharp }) => {
    sharp.block({ operation: ['VipsForeignLoad'] });
    sharp.unblock({ operation: ['VipsForeignLoadJpeg', 'VipsForeignLoadPng', 'VipsForeignLoadNsgif', 'VipsForeignLoadWebp'] });
    sharp.cache(false);
    sharp.concurrency(vipsThreadsWanted);
    return sharp;
  });
  return sharpLoading;
}

/** Check the request's shape (the endpoint has already parsed integers from the query string). */
export function validateThumbnailRequest(request: ThumbnailRequest): void {
  const { width, height, method } = request;
  for (const [name, v] of [
    ['width', width],
    ['height', height],
  ] as const) {
    if (!Number.isSafeInteger(v) || v < 1) throw new InvalidThumbnailRequestError(`${name} must be a positive integer`);
    if (v > MAX_REQUESTED_DIMENSION) throw new InvalidThumbnailRequestError(`${name} must be at most ${MAX_REQUESTED_DIMENSION}`);
  }
  if (method !== 'crop' && method !== 'scale') throw new InvalidThumbnailRequestError('method must be "crop" or "scale"');
}

/**
 * The output dimensions for a source of `sourceWidth`×`sourceHeight` (as displayed, after EXIF
 * orientation). Pure; see the module comment for the rules.
 */
export function thumbnailDimensions(sourceWidth: number, sourceHeight: number, request: Pick<ThumbnailRequest, 'width' | 'height' | 'method'>): { width: number; height: number } {
  const { width: boxW, height: boxH } = request;
  if (request.method === 'scale') {
    if (sourceWidth <= boxW && sourceHeight <= boxH) return { width: sourceWidth, height: sourceHeight };
    // The larger of the two reductions decides; the other side follows the aspect ratio.
    if (boxW * sourceHeight < boxH * sourceWidth) {
      return { width: boxW, height: Math.max(1, Math.floor((boxW * sourceHeight) / sourceWidth)) };
    }
    return { width: Math.max(1, Math.floor((boxH * sourceWidth) / sourceHeight)), height: boxH };
  }
  if (sourceWidth >= boxW && sourceHeight >= boxH) return { width: boxW, height: boxH };
  // The source is narrower or shorter than the box: the largest box-shaped region it contains.
  const k = Math.min(sourceWidth / boxW, sourceHeight / boxH);
  return { width: Math.max(1, Math.min(sourceWidth, Math.round(boxW * k))), height: Math.max(1, Math.min(sourceHeight, Math.round(boxH * k))) };
}

/** A thumbnail that exists (or would): the size it really has and how it was made. */
export interface ThumbnailInfo {
  width: number;
  height: number;
  method: ThumbnailMethod;
  contentType?: string;
  /** Byte length, a tie-breaker: the smaller file wins. */
  length?: number;
}

/**
 * Which existing thumbnail answers a request, by Synapse's rules (`_select_thumbnail`): only
 * thumbnails made with the requested method; first the ones at least as large as asked in one
 * dimension, else the rest. Among `crop` thumbnails the closest aspect ratio wins, then one that
 * covers the request in both dimensions, then the nearest size, the requested type, the smaller
 * file; among `scale` thumbnails the nearest size, the type, the smaller file. Ties go to the
 * earlier entry. Null when none was made with that method.
 */
export function selectThumbnail<T extends ThumbnailInfo>(request: Pick<ThumbnailRequest, 'width' | 'height' | 'method'> & { contentType?: string }, available: readonly T[]): T | null {
  const dW = request.width;
  const dH = request.height;
  type Scored = { key: number[]; info: T };
  const large: Scored[] = [];
  const small: Scored[] = [];
  for (const info of available) {
    if (info.method !== request.method) continue;
    const tW = info.width;
    const tH = info.height;
    const sizeQuality = Math.abs((dW - tW) * (dH - tH));
    const typeQuality = request.contentType !== undefined && info.contentType !== request.contentType ? 1 : 0;
    const lengthQuality = info.length ?? 0;
    const key =
      request.method === 'crop'
        ? [Math.abs(dW * tH - dH * tW), dW <= tW && dH <= tH ? 0 : 1, sizeQuality, typeQuality, lengthQuality]
        : [sizeQuality, typeQuality, lengthQuality];
    (tW >= dW || tH >= dH ? large : small).push({ key, info });
  }
  const pool = large.length > 0 ? large : small;
  let best: Scored | null = null;
  for (const candidate of pool) {
    if (best === null || compareKeys(candidate.key, best.key) < 0) best = candidate;
  }
  return best?.info ?? null;
}

function compareKeys(a: number[], b: number[]): number {
  for (let i = 0; i < a.length; i++) if (a[i]! !== b[i]!) return a[i]! - b[i]!;
  return 0;
}

/**
 * The thumbnails to make at upload for a source of this size: `sizes` with each `scale` size
 * reduced to what it really yields, and a `crop` dropped when a `scale` one of the same dimensions
 * exists (Synapse de-duplicates the same way). Each entry keeps the box to pass to `thumbnail`.
 */
export function thumbnailsToPregenerate(sourceWidth: number, sourceHeight: number, sizes: readonly ThumbnailSize[] = DEFAULT_THUMBNAIL_SIZES): (ThumbnailSize & { box: ThumbnailSize })[] {
  const out = new Map<string, ThumbnailSize & { box: ThumbnailSize }>();
  for (const size of sizes) {
    const { width, height } = thumbnailDimensions(sourceWidth, sourceHeight, size);
    const key = `${width}x${height}`;
    const existing = out.get(key);
    if (existing && !(existing.method === 'crop' && size.method === 'scale')) continue;
    out.set(key, { width, height, method: size.method, box: size });
  }
  return [...out.values()];
}

/** A counting semaphore with a bounded queue. */
class BoundedSemaphore {
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(
    private readonly limit: number,
    private readonly maxQueued: number,
  ) {}

  async acquire(): Promise<() => void> {
    if (this.active >= this.limit) {
      if (this.waiting.length >= this.maxQueued) throw new ThumbnailerBusyError('Too many thumbnails are being generated; retry shortly');
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else {
      this.active++;
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      // The slot passes straight to the next waiter, so `active` never dips and lets a newcomer jump the queue.
      if (next) next();
      else this.active--;
    };
  }

  get stats(): { active: number; queued: number } {
    return { active: this.active, queued: this.waiting.length };
  }
}

async function readSource(source: ThumbnailSource, maxBytes: number): Promise<Buffer | string> {
  if (Buffer.isBuffer(source)) return source;
  if (source instanceof Uint8Array) return Buffer.from(source.buffer, source.byteOffset, source.byteLength);
  if ('path' in source && typeof source.path === 'string' && !('pipe' in source)) return source.path;
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of source as Readable) {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
    total += buf.length;
    if (total > maxBytes) {
      (source as Readable).destroy();
      throw new SourceTooLargeError(`Image is larger than ${maxBytes} bytes`);
    }
    chunks.push(buf);
  }
  return Buffer.concat(chunks, total);
}

/** sharp's error for a format no allowed loader recognises. */
function isUnsupportedFormatError(e: unknown): boolean {
  const m = e instanceof Error ? e.message : '';
  return m.includes('unsupported image format') || m.includes('is not permitted') || m.includes('not a known file format') || m.includes('blocked');
}

/**
 * Read an image's header: format (sniffed), displayed dimensions, frames. Decodes no pixels;
 * refuses SVG and every type but JPEG/PNG/GIF/WebP with UnsupportedImageError. Also used by URL
 * previews to describe an image they fetched.
 */
export async function probeImage(input: Buffer | string, vipsThreads?: number): Promise<ImageProbe> {
  const sharp = await loadSharp(vipsThreads);
  let meta: Metadata;
  try {
    // limitInputPixels off here: the header is all we read, and we want the real size to report.
    meta = await sharp(input, { limitInputPixels: false, animated: true }).metadata();
  } catch (e) {
    if (isUnsupportedFormatError(e)) throw new UnsupportedImageError('Content is not an image that can be thumbnailed');
    throw new ImageProcessingFailedError('Image could not be read', { cause: e });
  }
  const format = meta.format as string | undefined;
  if (format !== 'jpeg' && format !== 'png' && format !== 'gif' && format !== 'webp') {
    throw new UnsupportedImageError(`Images of type ${format ?? 'unknown'} are not thumbnailed`);
  }
  const frames = Math.max(1, meta.pages ?? 1);
  // With `animated`, `height` covers every frame; `pageHeight` is one frame's.
  const frameHeight = meta.pageHeight ?? (frames > 1 ? Math.floor((meta.height ?? 0) / frames) : (meta.height ?? 0));
  const rawWidth = meta.width ?? 0;
  // Orientations 5–8 swap the displayed width and height.
  const swapped = (meta.orientation ?? 1) >= 5;
  if (rawWidth < 1 || frameHeight < 1) throw new ImageProcessingFailedError('Image has no dimensions');
  return {
    format,
    contentType: FORMAT_CONTENT_TYPES[format],
    width: swapped ? frameHeight : rawWidth,
    height: swapped ? rawWidth : frameHeight,
    frames,
    hasAlpha: meta.hasAlpha ?? false,
  };
}

export class Thumbnailer {
  readonly maxPixels: number;
  private readonly semaphore: BoundedSemaphore;
  private readonly vipsThreads: number;
  private readonly maxSourceBytes: number;
  private readonly timeoutSeconds: number;
  private readonly jpegQuality: number;

  constructor(options: ThumbnailerOptions = {}) {
    this.maxPixels = options.maxPixels ?? DEFAULT_MAX_PIXELS;
    this.vipsThreads = options.vipsThreads ?? 1;
    this.maxSourceBytes = options.maxSourceBytes ?? DEFAULT_MAX_SOURCE_BYTES;
    this.timeoutSeconds = options.timeoutSeconds ?? 30;
    this.jpegQuality = options.jpegQuality ?? 80;
    this.semaphore = new BoundedSemaphore(options.maxConcurrent ?? 2, options.maxQueued ?? 32);
    if (!sharpLoading) vipsThreadsWanted = this.vipsThreads;
  }

  /** Running and waiting thumbnail jobs (for metrics). */
  get load(): { active: number; queued: number } {
    return this.semaphore.stats;
  }

  /**
   * Header check only: the probe, or ImageTooLargeError / UnsupportedImageError. The upload path
   * can call this to decide whether to pre-generate thumbnails at all.
   */
  async check(source: Buffer | string, contentType: string): Promise<ImageProbe> {
    if (!isThumbnailableType(contentType)) throw new UnsupportedImageError(`Content of type ${baseContentType(contentType) || 'unknown'} is not thumbnailed`);
    const probe = await probeImage(source, this.vipsThreads);
    const pixels = probe.width * probe.height;
    if (pixels > this.maxPixels) throw new ImageTooLargeError(probe.width, probe.height, pixels, this.maxPixels);
    return probe;
  }

  /**
   * Make one thumbnail. Throws the typed errors of ./processing-errors. A stream source is read
   * while holding a slot (so memory stays bounded by maxConcurrent × maxSourceBytes): pass a
   * Buffer or a file path when the bytes are at hand.
   */
  async thumbnail(source: ThumbnailSource, contentType: string, request: ThumbnailRequest): Promise<Thumbnail> {
    validateThumbnailRequest(request);
    if (!isThumbnailableType(contentType)) throw new UnsupportedImageError(`Content of type ${baseContentType(contentType) || 'unknown'} is not thumbnailed`);
    const release = await this.semaphore.acquire();
    try {
      const input = await readSource(source, this.maxSourceBytes);
      const probe = await this.check(input, contentType);
      const sharp = await loadSharp(); // loaded by the check
      const animate = request.animated === true && probe.frames > 1 && (probe.format === 'gif' || probe.format === 'webp') && probe.width * probe.height * probe.frames <= this.maxPixels;
      const { width, height } = thumbnailDimensions(probe.width, probe.height, request);
      const staticOutput = staticOutputFor(contentType, probe);
      const pipeline: Sharp = sharp(input, {
        animated: animate,
        // A second guard after the header check: libvips refuses to decode beyond this.
        limitInputPixels: animate ? probe.width * probe.height * probe.frames : this.maxPixels,
        failOn: 'error',
      })
        .timeout({ seconds: this.timeoutSeconds })
        .autoOrient()
        .resize(width, height, { fit: request.method === 'crop' ? 'cover' : 'fill', position: 'centre' });
      const { bytes, contentType: outType } = await this.encode(pipeline, animate ? 'webp' : staticOutput);
      return { bytes, contentType: outType, width, height, animated: animate };
    } finally {
      release();
    }
  }

  /**
   * Several still thumbnails of one image (an upload's pre-generated sizes) from a single decode:
   * the image is decoded once, oriented and reduced to the largest size any of them needs, and
   * each thumbnail is cut from that. Same rules and errors as `thumbnail`; `animated` is ignored.
   * Results are in the order of `requests`.
   */
  async thumbnailMany(source: ThumbnailSource, contentType: string, requests: readonly ThumbnailRequest[]): Promise<Thumbnail[]> {
    for (const request of requests) validateThumbnailRequest(request);
    if (!isThumbnailableType(contentType)) throw new UnsupportedImageError(`Content of type ${baseContentType(contentType) || 'unknown'} is not thumbnailed`);
    const release = await this.semaphore.acquire();
    try {
      const input = await readSource(source, this.maxSourceBytes);
      const probe = await this.check(input, contentType);
      const sharp = await loadSharp(); // loaded by the check
      const staticOutput = staticOutputFor(contentType, probe);
      // The scale factor the most demanding thumbnail needs before its crop (never above 1).
      let factor = 0;
      const targets = requests.map((request) => {
        const dims = thumbnailDimensions(probe.width, probe.height, request);
        const needed = request.method === 'crop' ? Math.max(dims.width / probe.width, dims.height / probe.height) : dims.width / probe.width;
        factor = Math.max(factor, Math.min(1, needed));
        return { request, ...dims };
      });
      const interWidth = Math.min(probe.width, Math.max(1, Math.ceil(probe.width * factor)));
      const interHeight = Math.min(probe.height, Math.max(1, Math.ceil(probe.height * factor)));
      let intermediate: { data: Buffer; info: OutputInfo };
      try {
        intermediate = await sharp(input, { limitInputPixels: this.maxPixels, failOn: 'error' })
          .timeout({ seconds: this.timeoutSeconds })
          .autoOrient()
          .resize(interWidth, interHeight, { fit: 'fill' })
          .toColourspace('srgb')
          .raw()
          .toBuffer({ resolveWithObject: true });
      } catch (e) {
        if (isUnsupportedFormatError(e)) throw new UnsupportedImageError('Content is not an image that can be thumbnailed');
        throw new ImageProcessingFailedError('Thumbnail could not be made from this image', { cause: e });
      }
      const { width: rawWidth, height: rawHeight, channels } = intermediate.info;
      const out: Thumbnail[] = [];
      for (const { request, width, height } of targets) {
        const pipeline = sharp(intermediate.data, { raw: { width: rawWidth, height: rawHeight, channels: channels as 1 | 2 | 3 | 4 } })
          .timeout({ seconds: this.timeoutSeconds })
          .resize(width, height, { fit: request.method === 'crop' ? 'cover' : 'fill', position: 'centre' });
        const { bytes, contentType: outType } = await this.encode(pipeline, staticOutput);
        out.push({ bytes, contentType: outType, width, height, animated: false });
      }
      return out;
    } finally {
      release();
    }
  }

  private async encode(pipeline: Sharp, format: 'jpeg' | 'png' | 'webp'): Promise<{ bytes: Buffer; contentType: string }> {
    let encoded: Sharp;
    if (format === 'webp') {
      // Frame delays and the loop count carry over from the source.
      encoded = pipeline.webp({ quality: 80, effort: 2 });
    } else if (format === 'jpeg') {
      encoded = pipeline.jpeg({ quality: this.jpegQuality });
    } else {
      encoded = pipeline.png({ compressionLevel: 6 });
    }
    try {
      return { bytes: await encoded.toBuffer(), contentType: `image/${format}` };
    } catch (e) {
      if (isUnsupportedFormatError(e)) throw new UnsupportedImageError('Content is not an image that can be thumbnailed');
      // libvips' message can name a file path: keep it for logs (cause), not for the client.
      throw new ImageProcessingFailedError('Thumbnail could not be made from this image', { cause: e });
    }
  }
}

/** JPEG for JPEG and opaque WebP sources, PNG for the rest (see the module comment). */
function staticOutputFor(contentType: string, probe: ImageProbe): 'jpeg' | 'png' {
  return STATIC_OUTPUT_FOR_TYPE[baseContentType(contentType)] === 'jpeg' && !probe.hasAlpha ? 'jpeg' : 'png';
}
