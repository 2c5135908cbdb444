/**
 * `node --import tsx scripts/bench-thumbnails.ts`: thumbnails per second with src/media/thumbnails.ts
 * (sharp/libvips) on this machine, for a 12 Mpx JPEG photo and a 1 Mpx PNG, one size at a time
 * and the five default sizes an upload pre-generates (one call per size, and thumbnailMany). Runs through one Thumbnailer with its
 * default limits (2 at once, 1 libvips thread each), fed 4 requests at a time, as the media
 * endpoints would. Also the peak RSS. A script, not a test: it prints figures and asserts nothing.
 * (`npm run bench:media` will include it.) Env: BENCH_SECONDS per case (default 3).
 */
import { cpus, loadavg } from 'node:os';
import sharp from 'sharp';
import { DEFAULT_THUMBNAIL_SIZES, Thumbnailer, type ThumbnailRequest } from '../src/media/thumbnails';
import { round, table, writeBenchResults } from './lib/bench-util';

const SECONDS = Number(process.env.BENCH_SECONDS ?? '3');
const IN_FLIGHT = 4;

/** A photo-like image: smoothed noise compresses like a real photo, unlike a flat colour. */
async function photoLike(width: number, height: number, format: 'jpeg' | 'png'): Promise<Buffer> {
  const img = sharp({ create: { width, height, channels: 3, background: '#808080', noise: { type: 'gaussian', mean: 128, sigma: 40 } } }).blur(1.2);
  return format === 'jpeg' ? img.jpeg({ quality: 90 }).toBuffer() : img.png().toBuffer();
}

let peakRss = 0;
const sampler = setInterval(() => {
  peakRss = Math.max(peakRss, process.memoryUsage().rss);
}, 20);

/** Run `job` repeatedly, IN_FLIGHT at a time, for SECONDS; jobs per second. */
async function rate(job: () => Promise<unknown>, perJob = 1): Promise<number> {
  await job(); // warm up
  let done = 0;
  const end = performance.now() + SECONDS * 1000;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (performance.now() < end) {
        await job();
        done++;
      }
    }),
  );
  return (done * perJob) / ((performance.now() - start) / 1000);
}

async function main() {
  const thumbnailer = new Thumbnailer();
  const sources = [
    { name: '12 Mpx JPEG (4000x3000)', type: 'image/jpeg', bytes: await photoLike(4000, 3000, 'jpeg') },
    { name: '1 Mpx PNG (1000x1000)', type: 'image/png', bytes: await photoLike(1000, 1000, 'png') },
  ];
  const rows: Record<string, unknown>[] = [];
  for (const source of sources) {
    for (const size of DEFAULT_THUMBNAIL_SIZES) {
      const req: ThumbnailRequest = { ...size };
      const perSec = await rate(() => thumbnailer.thumbnail(source.bytes, source.type, req));
      rows.push({ source: source.name, sourceMb: round(source.bytes.length / 1e6, 2), thumbnail: `${size.width}x${size.height} ${size.method}`, perSec: round(perSec, 1), msEach: round(1000 / perSec, 1) });
    }
    // An upload's pre-generation: the five default sizes, one call each (rates below are uploads/s).
    const perSec = await rate(async () => {
      for (const size of DEFAULT_THUMBNAIL_SIZES) await thumbnailer.thumbnail(source.bytes, source.type, { ...size });
    });
    rows.push({ source: source.name, sourceMb: round(source.bytes.length / 1e6, 2), thumbnail: 'upload: 5 sizes, 5 decodes', perSec: round(perSec, 1), msEach: round(1000 / perSec, 1) });
    // The same with thumbnailMany: one decode for the five.
    const requests = DEFAULT_THUMBNAIL_SIZES.map((size) => ({ ...size }));
    const manyPerSec = await rate(() => thumbnailer.thumbnailMany(source.bytes, source.type, requests));
    rows.push({ source: source.name, sourceMb: round(source.bytes.length / 1e6, 2), thumbnail: 'upload: 5 sizes, 1 decode', perSec: round(manyPerSec, 1), msEach: round(1000 / manyPerSec, 1) });
  }
  clearInterval(sampler);
  const env = { node: process.version, sharp: sharp.versions.sharp, vips: sharp.versions.vips, cpus: cpus().length, loadavg: loadavg().map((l) => round(l, 2)), seconds: SECONDS, inFlight: IN_FLIGHT };
  console.log(`thumbnails (${JSON.stringify(env)})`);
  console.log(table(rows, ['source', 'sourceMb', 'thumbnail', 'perSec', 'msEach'], ['source', 'MB', 'thumbnail', 'per second', 'ms each']));
  console.log(`peak RSS ${round(peakRss / 1024 / 1024, 0)} MB`);
  const file = writeBenchResults((stamp) => `thumbnails-${stamp}.json`, { env, rows, peakRssMb: round(peakRss / 1024 / 1024, 0) });
  console.log(`written to ${file}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
