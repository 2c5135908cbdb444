/**
 * Thumbnails of real images made here with sharp; every result is checked by decoding it again.
 */
import { Readable } from 'node:stream';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { ImageTooLargeError, InvalidThumbnailRequestError, SourceTooLargeError, ThumbnailerBusyError, UnsupportedImageError } from '../../src/media/processing-errors';
import {
  DEFAULT_THUMBNAIL_SIZES,
  Thumbnailer,
  probeImage,
  selectThumbnail,
  thumbnailDimensions,
  thumbnailsToPregenerate,
  type ThumbnailInfo,
} from '../../src/media/thumbnails';
import { pngDeclaring } from './png-bomb';

const T = 60_000;

async function solid(width: number, height: number, format: 'png' | 'jpeg' | 'webp' | 'gif', background = '#3366cc'): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background } })[format]().toBuffer();
}

async function animatedGif(width: number, height: number, colours = ['red', 'green', 'blue']): Promise<Buffer> {
  const frames = await Promise.all(colours.map((c) => sharp({ create: { width, height, channels: 4, background: c } }).png().toBuffer()));
  return sharp(frames, { join: { animated: true } })
    .gif({ delay: colours.map(() => 100), loop: 0 })
    .toBuffer();
}

async function decode(bytes: Buffer) {
  return sharp(bytes, { animated: true }).metadata();
}

describe('thumbnailDimensions (pure)', () => {
  it('scale fits within the box keeping the aspect ratio and never upscales', () => {
    expect(thumbnailDimensions(1000, 500, { width: 320, height: 240, method: 'scale' })).toEqual({ width: 320, height: 160 });
    expect(thumbnailDimensions(500, 1000, { width: 320, height: 240, method: 'scale' })).toEqual({ width: 120, height: 240 });
    expect(thumbnailDimensions(100, 50, { width: 800, height: 600, method: 'scale' })).toEqual({ width: 100, height: 50 });
    expect(thumbnailDimensions(10_000, 1, { width: 32, height: 32, method: 'scale' })).toEqual({ width: 32, height: 1 });
  });
  it('crop fills the box exactly, or the largest box-shaped region of a smaller source', () => {
    expect(thumbnailDimensions(1000, 500, { width: 96, height: 96, method: 'crop' })).toEqual({ width: 96, height: 96 });
    expect(thumbnailDimensions(20, 10, { width: 96, height: 96, method: 'crop' })).toEqual({ width: 10, height: 10 });
    expect(thumbnailDimensions(50, 200, { width: 100, height: 50, method: 'crop' })).toEqual({ width: 50, height: 25 });
  });
});

describe('selectThumbnail (Synapse rules)', () => {
  // What the default sizes yield for a 1000×750 source.
  const made: ThumbnailInfo[] = thumbnailsToPregenerate(1000, 750).map((t) => ({ width: t.width, height: t.height, method: t.method, contentType: 'image/jpeg' }));

  it('pre-generates the five default sizes', () => {
    expect(made.map((t) => `${t.width}x${t.height} ${t.method}`)).toEqual(['32x32 crop', '96x96 crop', '320x240 scale', '640x480 scale', '800x600 scale']);
    expect(DEFAULT_THUMBNAIL_SIZES).toHaveLength(5);
  });
  it('takes the smallest that is at least as large as asked, with the same method', () => {
    expect(selectThumbnail({ width: 64, height: 64, method: 'crop' }, made)).toMatchObject({ width: 96, height: 96, method: 'crop' });
    expect(selectThumbnail({ width: 20, height: 20, method: 'crop' }, made)).toMatchObject({ width: 32, height: 32 });
    expect(selectThumbnail({ width: 300, height: 200, method: 'scale' }, made)).toMatchObject({ width: 320, height: 240 });
    expect(selectThumbnail({ width: 500, height: 300, method: 'scale' }, made)).toMatchObject({ width: 640, height: 480 });
    // Synapse's size score is |Δw·Δh|: 800×600 matches a 600×600 request's height exactly, so it wins over 640×480.
    expect(selectThumbnail({ width: 600, height: 600, method: 'scale' }, made)).toMatchObject({ width: 800, height: 600 });
  });
  it('falls back to the nearest smaller one when none is large enough', () => {
    expect(selectThumbnail({ width: 2000, height: 2000, method: 'scale' }, made)).toMatchObject({ width: 800, height: 600 });
    expect(selectThumbnail({ width: 500, height: 500, method: 'crop' }, made)).toMatchObject({ width: 96, height: 96 });
  });
  it('prefers the closest aspect ratio for crop, then the requested type, then the smaller file', () => {
    const list: ThumbnailInfo[] = [
      { width: 200, height: 100, method: 'crop', contentType: 'image/png' },
      { width: 100, height: 100, method: 'crop', contentType: 'image/png', length: 900 },
      { width: 100, height: 100, method: 'crop', contentType: 'image/jpeg', length: 1200 },
      { width: 100, height: 100, method: 'crop', contentType: 'image/jpeg', length: 800 },
    ];
    expect(selectThumbnail({ width: 50, height: 50, method: 'crop' }, list)).toBe(list[3]);
    expect(selectThumbnail({ width: 50, height: 50, method: 'crop', contentType: 'image/png' }, list)).toBe(list[1]);
    expect(selectThumbnail({ width: 50, height: 50, method: 'scale' }, list)).toBeNull();
  });
  it('de-duplicates sizes for small sources', () => {
    expect(thumbnailsToPregenerate(100, 100).map((t) => `${t.width}x${t.height} ${t.method}`)).toEqual(['32x32 crop', '96x96 crop', '100x100 scale']);
    expect(thumbnailsToPregenerate(96, 96).map((t) => `${t.width}x${t.height} ${t.method}`)).toEqual(['32x32 crop', '96x96 scale']);
  });
});

describe('Thumbnailer', () => {
  const thumbnailer = new Thumbnailer();

  it('PNG: scale and crop, PNG out, dimensions as decoded', { timeout: T }, async () => {
    const src = await solid(400, 300, 'png');
    const scaled = await thumbnailer.thumbnail(src, 'image/png', { width: 320, height: 240, method: 'scale' });
    expect(scaled.contentType).toBe('image/png');
    expect(await decode(scaled.bytes)).toMatchObject({ format: 'png', width: 320, height: 240 });
    const cropped = await thumbnailer.thumbnail(src, 'image/png', { width: 96, height: 96, method: 'crop' });
    expect(await decode(cropped.bytes)).toMatchObject({ format: 'png', width: 96, height: 96 });
    expect(cropped).toMatchObject({ width: 96, height: 96, animated: false });
  });

  it('JPEG: aspect kept by scale, exact box by crop, JPEG out', { timeout: T }, async () => {
    const src = await solid(1200, 800, 'jpeg');
    const scaled = await thumbnailer.thumbnail(src, 'image/jpeg', { width: 640, height: 480, method: 'scale' });
    expect(scaled).toMatchObject({ contentType: 'image/jpeg', width: 640, height: 426 });
    expect(await decode(scaled.bytes)).toMatchObject({ format: 'jpeg', width: 640, height: 426 });
    const cropped = await thumbnailer.thumbnail(src, 'image/jpeg', { width: 32, height: 32, method: 'crop' });
    expect(await decode(cropped.bytes)).toMatchObject({ format: 'jpeg', width: 32, height: 32 });
  });

  it('never upscales', { timeout: T }, async () => {
    const src = await solid(100, 50, 'png');
    const t = await thumbnailer.thumbnail(src, 'image/png', { width: 800, height: 600, method: 'scale' });
    expect(await decode(t.bytes)).toMatchObject({ width: 100, height: 50 });
    const c = await thumbnailer.thumbnail(src, 'image/png', { width: 96, height: 96, method: 'crop' });
    expect(await decode(c.bytes)).toMatchObject({ width: 50, height: 50 });
  });

  it('WebP: JPEG out when opaque, PNG when it has transparency', { timeout: T }, async () => {
    const opaque = await solid(300, 300, 'webp');
    const a = await thumbnailer.thumbnail(opaque, 'image/webp', { width: 96, height: 96, method: 'crop' });
    expect(a.contentType).toBe('image/jpeg');
    expect(await decode(a.bytes)).toMatchObject({ format: 'jpeg', width: 96, height: 96 });
    const transparent = await sharp({ create: { width: 300, height: 200, channels: 4, background: { r: 0, g: 0, b: 0, alpha: 0.2 } } })
      .webp()
      .toBuffer();
    const b = await thumbnailer.thumbnail(transparent, 'image/webp', { width: 96, height: 96, method: 'scale' });
    expect(b.contentType).toBe('image/png');
    expect(await decode(b.bytes)).toMatchObject({ format: 'png', width: 96, height: 64, hasAlpha: true });
  });

  it('animated GIF: animated WebP when asked, a still PNG of the first frame when not', { timeout: T }, async () => {
    const gif = await animatedGif(120, 80);
    expect(await probeImage(gif)).toMatchObject({ format: 'gif', width: 120, height: 80, frames: 3 });

    const moving = await thumbnailer.thumbnail(gif, 'image/gif', { width: 64, height: 64, method: 'crop', animated: true });
    expect(moving).toMatchObject({ contentType: 'image/webp', animated: true, width: 64, height: 64 });
    const m = await decode(moving.bytes);
    expect(m).toMatchObject({ format: 'webp', width: 64, pages: 3, pageHeight: 64, delay: [100, 100, 100] });

    for (const animated of [false, undefined]) {
      const still = await thumbnailer.thumbnail(gif, 'image/gif', { width: 60, height: 60, method: 'scale', animated });
      expect(still).toMatchObject({ contentType: 'image/png', animated: false, width: 60, height: 40 });
      const s = await decode(still.bytes);
      expect(s).toMatchObject({ format: 'png', width: 60, height: 40 });
      expect(s.pages ?? 1).toBe(1);
      // The first frame is red.
      const { data } = await sharp(still.bytes).removeAlpha().raw().toBuffer({ resolveWithObject: true });
      expect([data[0], data[1], data[2]]).toEqual([255, 0, 0]);
    }
  });

  it('animated WebP stays animated when asked', { timeout: T }, async () => {
    const gif = await animatedGif(200, 100, ['red', 'blue']);
    const webp = await sharp(gif, { animated: true }).webp().toBuffer();
    const t = await thumbnailer.thumbnail(webp, 'image/webp', { width: 100, height: 100, method: 'scale', animated: true });
    expect(t).toMatchObject({ contentType: 'image/webp', width: 100, height: 50, animated: true });
    expect(await decode(t.bytes)).toMatchObject({ pages: 2, pageHeight: 50 });
  });

  it('a still image asked for animated comes back still', { timeout: T }, async () => {
    const t = await thumbnailer.thumbnail(await solid(64, 64, 'png'), 'image/png', { width: 32, height: 32, method: 'crop', animated: true });
    expect(t).toMatchObject({ contentType: 'image/png', animated: false });
  });

  it('an animation whose frames together exceed the pixel limit falls back to one frame', { timeout: T }, async () => {
    const small = new Thumbnailer({ maxPixels: 120 * 80 * 2 });
    const t = await small.thumbnail(await animatedGif(120, 80), 'image/gif', { width: 96, height: 96, method: 'crop', animated: true });
    expect(t).toMatchObject({ contentType: 'image/png', animated: false });
  });

  it('EXIF orientation is applied and metadata stripped', { timeout: T }, async () => {
    // Left half red, right half blue; orientation 6 means "rotate 90° clockwise to display",
    // so the displayed image is 100×200 with red on top.
    const raw = Buffer.alloc(200 * 100 * 3);
    for (let y = 0; y < 100; y++) {
      for (let x = 0; x < 200; x++) raw[(y * 200 + x) * 3 + (x < 100 ? 0 : 2)] = 255;
    }
    const jpeg = await sharp(raw, { raw: { width: 200, height: 100, channels: 3 } })
      .jpeg()
      .withMetadata({ orientation: 6 })
      .withExif({ IFD0: { Copyright: 'where-this-photo-was-taken' } })
      .toBuffer();
    const before = await sharp(jpeg).metadata();
    expect(before.orientation).toBe(6);
    expect(before.exif).toBeDefined();

    const t = await thumbnailer.thumbnail(jpeg, 'image/jpeg', { width: 800, height: 600, method: 'scale' });
    expect(t).toMatchObject({ width: 100, height: 200 });
    const after = await sharp(t.bytes).metadata();
    expect(after).toMatchObject({ width: 100, height: 200 });
    expect(after.orientation).toBeUndefined();
    expect(after.exif).toBeUndefined();
    expect(after.xmp).toBeUndefined();
    expect(after.icc).toBeUndefined();
    expect(t.bytes.includes(Buffer.from('where-this-photo-was-taken'))).toBe(false);
    const { data, info } = await sharp(t.bytes).raw().toBuffer({ resolveWithObject: true });
    const px = (x: number, y: number) => [...data.subarray((y * info.width + x) * 3, (y * info.width + x) * 3 + 3)];
    expect(px(50, 20)[0]).toBeGreaterThan(200); // top: red
    expect(px(50, 20)[2]).toBeLessThan(60);
    expect(px(50, 180)[2]).toBeGreaterThan(200); // bottom: blue
    expect(px(50, 180)[0]).toBeLessThan(60);
  });

  it('a decompression bomb is refused from its header, fast and without allocating', { timeout: T }, async () => {
    const bomb = pngDeclaring(100_000, 100_000);
    expect(bomb.length).toBeLessThan(200);
    const rssBefore = process.memoryUsage().rss;
    const started = performance.now();
    const err = await thumbnailer.thumbnail(bomb, 'image/png', { width: 96, height: 96, method: 'crop' }).catch((e: unknown) => e);
    const ms = performance.now() - started;
    const grownMb = (process.memoryUsage().rss - rssBefore) / 1024 / 1024;
    expect(err).toBeInstanceOf(ImageTooLargeError);
    expect(err).toMatchObject({ width: 100_000, height: 100_000, pixels: 10_000_000_000, errcode: 'M_TOO_LARGE', httpStatus: 400 });
    // Decoding 10 Gpx of greyscale would need 10 GB; reading the header needs nothing.
    expect(grownMb).toBeLessThan(64);
    console.log(`decompression bomb (100000x100000 PNG, ${bomb.length} bytes) refused in ${ms.toFixed(1)} ms, RSS +${grownMb.toFixed(1)} MB`);
  });

  it('a real image over the pixel limit is refused before decoding', { timeout: T }, async () => {
    const big = await sharp({ create: { width: 8000, height: 5000, channels: 3, background: 'white' } })
      .png({ compressionLevel: 1 })
      .toBuffer();
    const limited = new Thumbnailer({ maxPixels: 32 * 1024 * 1024 });
    await expect(limited.thumbnail(big, 'image/png', { width: 32, height: 32, method: 'crop' })).rejects.toBeInstanceOf(ImageTooLargeError);
    // The same image is fine under a higher limit: the refusal is the limit, not the file.
    const roomy = new Thumbnailer({ maxPixels: 50_000_000 });
    const t = await roomy.thumbnail(big, 'image/png', { width: 32, height: 32, method: 'crop' });
    expect(await decode(t.bytes)).toMatchObject({ width: 32, height: 32 });
  });

  it('SVG and non-images are refused', { timeout: T }, async () => {
    const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100"><script>alert(1)</script><rect width="100" height="100"/></svg>');
    await expect(thumbnailer.thumbnail(svg, 'image/svg+xml', { width: 32, height: 32, method: 'crop' })).rejects.toBeInstanceOf(UnsupportedImageError);
    // Lying about the type does not get it decoded either.
    await expect(thumbnailer.thumbnail(svg, 'image/png', { width: 32, height: 32, method: 'crop' })).rejects.toBeInstanceOf(UnsupportedImageError);
    await expect(probeImage(svg)).rejects.toBeInstanceOf(UnsupportedImageError);
    await expect(thumbnailer.thumbnail(Buffer.from('%PDF-1.4\n'), 'application/pdf', { width: 32, height: 32, method: 'crop' })).rejects.toBeInstanceOf(UnsupportedImageError);
    await expect(thumbnailer.thumbnail(Buffer.from('hello'), 'image/jpeg', { width: 32, height: 32, method: 'crop' })).rejects.toBeInstanceOf(UnsupportedImageError);
    const tiff = await sharp({ create: { width: 10, height: 10, channels: 3, background: 'red' } })
      .tiff()
      .toBuffer();
    await expect(thumbnailer.thumbnail(tiff, 'image/png', { width: 32, height: 32, method: 'crop' })).rejects.toBeInstanceOf(UnsupportedImageError);
  });

  it('bad requests are refused as invalid', { timeout: T }, async () => {
    const src = await solid(10, 10, 'png');
    for (const req of [
      { width: 0, height: 10, method: 'crop' as const },
      { width: 10, height: -1, method: 'scale' as const },
      { width: 1.5, height: 10, method: 'scale' as const },
      { width: 10, height: 10, method: 'stretch' as never },
      { width: 100_000, height: 10, method: 'scale' as const },
    ]) {
      await expect(thumbnailer.thumbnail(src, 'image/png', req)).rejects.toBeInstanceOf(InvalidThumbnailRequestError);
    }
  });

  it('takes a stream or a file path, and caps a stream', { timeout: T }, async () => {
    const src = await solid(300, 200, 'jpeg');
    const fromStream = await thumbnailer.thumbnail(Readable.from([src.subarray(0, 100), src.subarray(100)]), 'image/jpeg', { width: 96, height: 96, method: 'crop' });
    expect(await decode(fromStream.bytes)).toMatchObject({ width: 96, height: 96 });
    const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
    const dir = mkdtempSync('/tmp/axon-thumb-');
    try {
      writeFileSync(`${dir}/img`, src);
      const fromFile = await thumbnailer.thumbnail({ path: `${dir}/img` }, 'image/jpeg', { width: 320, height: 240, method: 'scale' });
      expect(await decode(fromFile.bytes)).toMatchObject({ width: 300, height: 200 });
    } finally {
      rmSync(dir, { recursive: true });
    }
    const capped = new Thumbnailer({ maxSourceBytes: 100 });
    await expect(capped.thumbnail(Readable.from([src]), 'image/jpeg', { width: 96, height: 96, method: 'crop' })).rejects.toBeInstanceOf(SourceTooLargeError);
  });

  it('thumbnailMany: the pre-generated sizes from one decode, same dimensions and types as one at a time', { timeout: T }, async () => {
    // Left half red, right half blue, 1000×750 as displayed (stored 750×1000 with orientation 8).
    const raw = Buffer.alloc(1000 * 750 * 3);
    for (let y = 0; y < 750; y++) for (let x = 0; x < 1000; x++) raw[(y * 1000 + x) * 3 + (x < 500 ? 0 : 2)] = 255;
    const upright = await sharp(raw, { raw: { width: 1000, height: 750, channels: 3 } })
      .png()
      .toBuffer();
    const stored = await sharp(upright).rotate(90).jpeg({ quality: 95 }).withMetadata({ orientation: 8 }).toBuffer();
    const requests = thumbnailsToPregenerate(1000, 750).map((t) => t.box);
    const many = await thumbnailer.thumbnailMany(stored, 'image/jpeg', requests);
    expect(many.map((t) => `${t.width}x${t.height} ${t.contentType}`)).toEqual(['32x32 image/jpeg', '96x96 image/jpeg', '320x240 image/jpeg', '640x480 image/jpeg', '800x600 image/jpeg']);
    for (const [i, t] of many.entries()) {
      const one = await thumbnailer.thumbnail(stored, 'image/jpeg', requests[i]!);
      expect({ width: one.width, height: one.height, contentType: one.contentType }).toEqual({ width: t.width, height: t.height, contentType: t.contentType });
      const m = await sharp(t.bytes).metadata();
      expect(m).toMatchObject({ format: 'jpeg', width: t.width, height: t.height });
      expect(m.exif).toBeUndefined();
      // Oriented like the single thumbnails: red on the left, blue on the right.
      const { data, info } = await sharp(t.bytes).raw().toBuffer({ resolveWithObject: true });
      const px = (x: number) => [...data.subarray(((info.height >> 1) * info.width + x) * 3, ((info.height >> 1) * info.width + x) * 3 + 3)];
      expect(px(1)[0]).toBeGreaterThan(200);
      expect(px(info.width - 2)[2]).toBeGreaterThan(200);
    }
    await expect(thumbnailer.thumbnailMany(pngDeclaring(100_000, 100_000), 'image/png', requests)).rejects.toBeInstanceOf(ImageTooLargeError);
  });

  it('bounded concurrency: beyond the queue, requests are refused as busy', { timeout: T }, async () => {
    const tight = new Thumbnailer({ maxConcurrent: 1, maxQueued: 1 });
    const src = await solid(2000, 2000, 'png');
    const req = { width: 320, height: 240, method: 'scale' as const };
    const results = await Promise.allSettled([tight.thumbnail(src, 'image/png', req), tight.thumbnail(src, 'image/png', req), tight.thumbnail(src, 'image/png', req)]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'rejected']);
    expect((results[2] as PromiseRejectedResult).reason).toBeInstanceOf(ThumbnailerBusyError);
    expect(tight.load).toEqual({ active: 0, queued: 0 });
    // And it recovers.
    await expect(tight.thumbnail(src, 'image/png', req)).resolves.toMatchObject({ width: 240, height: 240 });
  });
});
