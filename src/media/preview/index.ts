/**
 * URL previews (`GET /_matrix/client/v1/media/preview_url`), the part that needs no storage:
 * fetch the page through the SSRF-safe fetcher, describe it as OpenGraph, and fetch its image the
 * same way, handing the image back as bytes for the endpoint to store as media. The endpoint then
 * replaces `og:image` (here the image's absolute remote URL) with the mxc URI it stored it under,
 * and caches the result until `expiresAt`. Off by default (`media.urlPreviews`), as in Synapse.
 *
 * What a page yields, as Synapse does it:
 * - HTML (text/html, application/xhtml+xml): OpenGraph by html.ts's rules. Its image (`og:image`
 *   or a fallback) is resolved against the page's final URL (or decoded from a `data:` URL),
 *   fetched, and kept only if it is a JPEG/PNG/GIF/WebP; then `og:image:type`, `og:image:width`,
 *   `og:image:height` and `matrix:image:size` describe it. An image that cannot be fetched or is
 *   not an image removes `og:image` and leaves the rest of the preview.
 *   A page over the size limit is cut there and what was read is parsed (the head, where
 *   OpenGraph lives, comes first).
 * - An image: the preview is the image itself (`og:image`, its type, size and dimensions;
 *   `og:description` the file name). An image over the size limit is refused (it cannot be cut).
 * - Anything else: an empty preview `{}`.
 * The result is cacheable for the page's `Cache-Control` max-age (or `Expires`), else one hour,
 * kept between a minute and a day.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { MediaProcessingError, UrlPreviewError } from '../processing-errors';
import { baseContentType, probeImage } from '../thumbnails';
import { parsePreviewUrl, safeFetch, type FetchedResource, type SafeFetchOptions } from './fetch';
import type { OpenGraph } from './html';

export type { OpenGraph } from './html';
export { safeFetch, isPreviewAddressAllowed, parsePreviewUrl, type SafeFetchOptions, type FetchedResource } from './fetch';

export const DEFAULT_PREVIEW_TTL_MS = 60 * 60 * 1000;
export const MIN_PREVIEW_TTL_MS = 60 * 1000;
export const MAX_PREVIEW_TTL_MS = 24 * 60 * 60 * 1000;

export interface UrlPreviewOptions extends SafeFetchOptions {
  /** Largest preview image fetched (default: maxBytes). */
  maxImageBytes?: number;
  /** Cache lifetime when the page says nothing (default 1 h), and the bounds of what it may say. */
  defaultTtlMs?: number;
  minTtlMs?: number;
  maxTtlMs?: number;
  /** Clock, for tests (ms since the epoch). */
  now?: () => number;
}

export interface PreviewImage {
  bytes: Buffer;
  /** Sniffed from the bytes: image/jpeg, image/png, image/gif or image/webp. */
  contentType: string;
  width: number;
  height: number;
  /** Where it came from (`data:` URLs are not repeated here: 'data:'). */
  url: string;
}

export interface UrlPreview {
  /** The URL asked for, and the one that answered after redirects. */
  url: string;
  finalUrl: string;
  /** The preview body to answer with, once `og:image` is swapped for an mxc URI. */
  og: OpenGraph;
  /** The image to store as media, or null. */
  image: PreviewImage | null;
  ttlMs: number;
  expiresAt: number;
}

function isHtml(type: string): boolean {
  return type === 'text/html' || type === 'application/xhtml+xml';
}

/** Preview `url`. Throws UrlPreviewError (bad URL, blocked, DNS, timeout, HTTP error, image too large). */
export async function previewUrl(url: string, options: UrlPreviewOptions): Promise<UrlPreview> {
  const now = options.now ?? Date.now;
  const page = await safeFetch(url, options);
  const type = baseContentType(page.contentType);
  let og: OpenGraph = {};
  let image: PreviewImage | null = null;

  if (isHtml(type)) {
    // The HTML parser (htmlparser2, ~3.6 MB PSS) is loaded at the first HTML page, not by every front.
    const { decodeHtml, parseOpenGraph } = await import('./html');
    og = page.body.length === 0 ? {} : parseOpenGraph(decodeHtml(page.body, page.contentType));
    const imageRef = og['og:image'];
    delete og['og:image'];
    if (typeof imageRef === 'string' && imageRef.trim() !== '') {
      image = await fetchPreviewImage(imageRef.trim(), page.url, options);
      if (image) Object.assign(og, describeImage(image));
    }
  } else if (type.startsWith('image/')) {
    if (page.truncated) throw new UrlPreviewError('too-large', 'The image is larger than the preview size limit');
    image = await asImage(page.body, page.url);
    if (image) og = { 'og:description': fileName(page), ...describeImage(image) };
  }

  const ttlMs = cacheTtlMs(page.headers, options, now());
  return { url, finalUrl: page.url, og, image, ttlMs, expiresAt: now() + ttlMs };
}

function describeImage(image: PreviewImage): OpenGraph {
  return {
    'og:image': image.url,
    'og:image:type': image.contentType,
    'og:image:width': image.width,
    'og:image:height': image.height,
    'matrix:image:size': image.bytes.length,
  };
}

async function asImage(bytes: Buffer, url: string): Promise<PreviewImage | null> {
  try {
    const probe = await probeImage(bytes);
    return { bytes, contentType: probe.contentType, width: probe.width, height: probe.height, url };
  } catch (e) {
    if (e instanceof MediaProcessingError) return null;
    throw e;
  }
}

/** The page's image, or null when it cannot be had (a preview without its image is still a preview). */
async function fetchPreviewImage(ref: string, pageUrl: string, options: UrlPreviewOptions): Promise<PreviewImage | null> {
  const maxBytes = options.maxImageBytes ?? options.maxBytes;
  if (ref.slice(0, 5).toLowerCase() === 'data:') {
    const bytes = decodeDataUrl(ref, maxBytes ?? Number.MAX_SAFE_INTEGER);
    return bytes ? asImage(bytes, 'data:') : null;
  }
  let fetched: FetchedResource;
  try {
    const absolute = parsePreviewUrl(ref, pageUrl).href;
    fetched = await safeFetch(absolute, { ...options, maxBytes });
  } catch (e) {
    if (e instanceof UrlPreviewError) return null;
    throw e;
  }
  if (fetched.truncated) return null;
  return asImage(fetched.body, fetched.url);
}

/** RFC 2397 `data:[<type>][;base64],<data>`; null when malformed or larger than maxBytes. */
export function decodeDataUrl(url: string, maxBytes: number): Buffer | null {
  const comma = url.indexOf(',');
  if (comma < 0) return null;
  const meta = url.slice(5, comma).toLowerCase();
  const data = url.slice(comma + 1);
  let bytes: Buffer;
  if (meta.endsWith(';base64')) {
    if (Math.floor((data.length * 3) / 4) > maxBytes + 3) return null;
    bytes = Buffer.from(data, 'base64');
  } else {
    try {
      bytes = Buffer.from(decodeURIComponent(data), 'latin1');
    } catch {
      return null;
    }
  }
  return bytes.length > maxBytes || bytes.length === 0 ? null : bytes;
}

/** The file name for an image preview: Content-Disposition's, else the URL's last path segment. */
function fileName(page: FetchedResource): string | null {
  const disposition = page.headers['content-disposition'];
  if (typeof disposition === 'string') {
    for (const part of disposition.split(';')) {
      const eq = part.indexOf('=');
      if (eq < 0) continue;
      const key = part.slice(0, eq).trim().toLowerCase();
      let value = part.slice(eq + 1).trim();
      if (key === 'filename*') {
        const quote = value.indexOf("''");
        if (quote >= 0) {
          try {
            return decodeURIComponent(value.slice(quote + 2));
          } catch {
            // fall through to the plain filename
          }
        }
      } else if (key === 'filename') {
        if (value.startsWith('"') && value.endsWith('"') && value.length >= 2) value = value.slice(1, -1);
        if (value !== '') return value;
      }
    }
  }
  const path = new URL(page.url).pathname;
  const last = path.slice(path.lastIndexOf('/') + 1);
  if (last === '') return null;
  try {
    return decodeURIComponent(last);
  } catch {
    return last;
  }
}

/** How long a preview may be cached, from the page's Cache-Control / Expires, bounded. */
export function cacheTtlMs(headers: IncomingHttpHeaders, bounds: Pick<UrlPreviewOptions, 'defaultTtlMs' | 'minTtlMs' | 'maxTtlMs'>, now: number): number {
  const min = bounds.minTtlMs ?? MIN_PREVIEW_TTL_MS;
  const max = bounds.maxTtlMs ?? MAX_PREVIEW_TTL_MS;
  let ttl: number | null = null;
  const cacheControl = headers['cache-control'];
  if (typeof cacheControl === 'string') {
    let maxAge: number | null = null;
    let sharedMaxAge: number | null = null;
    for (const directive of cacheControl.split(',')) {
      const eq = directive.indexOf('=');
      const name = (eq < 0 ? directive : directive.slice(0, eq)).trim().toLowerCase();
      const value = eq < 0 ? '' : directive.slice(eq + 1).trim().replace(/^"|"$/g, '');
      if (name === 'no-store' || name === 'no-cache') ttl = 0;
      const seconds = /^[0-9]{1,10}$/.test(value) ? Number(value) : null;
      if (name === 'max-age' && seconds !== null) maxAge = seconds;
      if (name === 's-maxage' && seconds !== null) sharedMaxAge = seconds;
    }
    if (ttl === null && (sharedMaxAge ?? maxAge) !== null) ttl = (sharedMaxAge ?? maxAge)! * 1000;
  }
  if (ttl === null && typeof headers.expires === 'string') {
    const at = Date.parse(headers.expires);
    if (!Number.isNaN(at)) ttl = at - now;
  }
  return Math.min(max, Math.max(min, ttl ?? bounds.defaultTtlMs ?? DEFAULT_PREVIEW_TTL_MS));
}
