/**
 * URL previews as the endpoint serves them (`ctx.media.previewer`), over the fetch-and-parse
 * module (src/media/preview/): the SSRF defence is `federation.ipRangeBlocklist` (plus the ranges
 * always refused) with `media.urlPreviews.ipRangeAllowlist` as exceptions, checked after DNS and on
 * every redirect. The preview's image is stored as media owned by the user who asked, and
 * `og:image` names its mxc URI. Results are cached in Redis (keyed by the URL, shared by every
 * front) until the page's own expiry; concurrent requests for one URL in one front fetch it once.
 * Each user has a rate limit (`rateLimit.urlPreview`), checked before the cache: a cached answer
 * costs nothing to give, but the limit also bounds how fast a user can probe what is cached.
 */
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { AxonConfig } from '../../cluster.config';
import { MatrixError } from '../http/errors';
import { federationIpBlocklist, IpRangeSet } from '../protocol/ip-ranges';
import type { KeySpace } from '../store/keys';
import type { RedisClient } from '../store/redis';
import { previewUrl, type UrlPreviewOptions } from './preview/index';
import { MediaProcessingError } from './processing-errors';
import { bytesOf, type MediaRepository } from './repository';
import type { UrlPreviewer } from './services';

export interface MediaPreviewsOptions {
  config: AxonConfig;
  repo: MediaRepository;
  redis: RedisClient;
  keys: KeySpace;
  log: Logger;
  /** The per-user limit (throws 429 M_LIMIT_EXCEEDED). */
  rateLimit?: (userId: string) => Promise<void>;
  /** Extra fetch options (tests: a resolver, a CA). */
  fetch?: Partial<UrlPreviewOptions>;
}

export class MediaPreviews implements UrlPreviewer {
  private readonly inFlight = new Map<string, Promise<Record<string, unknown>>>();
  private readonly fetchOptions: UrlPreviewOptions;

  constructor(private readonly opts: MediaPreviewsOptions) {
    const up = opts.config.media.urlPreviews;
    this.fetchOptions = {
      blocklist: federationIpBlocklist(opts.config.federation.ipRangeBlocklist),
      allowlist: new IpRangeSet(up.ipRangeAllowlist),
      maxBytes: up.maxBytes,
      timeoutMs: up.timeoutMs,
      ...opts.fetch,
    };
  }

  /** The Redis key of a URL's cached preview (hashed: URLs are long and arbitrary). */
  private cacheKey(url: string): string {
    return this.opts.keys.mediaPreview(createHash('sha256').update(url).digest('base64url'));
  }

  async preview(url: string, _ts: number | undefined, requester: string): Promise<Record<string, unknown>> {
    await this.opts.rateLimit?.(requester);
    const cached = await this.opts.redis.get(this.cacheKey(url));
    if (cached) return JSON.parse(cached) as Record<string, unknown>;
    let job = this.inFlight.get(url);
    if (!job) {
      job = this.fetch(url, requester).finally(() => this.inFlight.delete(url));
      this.inFlight.set(url, job);
    }
    return job;
  }

  private async fetch(url: string, requester: string): Promise<Record<string, unknown>> {
    let preview;
    try {
      preview = await previewUrl(url, this.fetchOptions);
    } catch (e) {
      if (e instanceof MediaProcessingError) throw new MatrixError(e.httpStatus, e.errcode, e.message);
      throw e;
    }
    const og: Record<string, unknown> = { ...preview.og };
    delete og['og:image'];
    if (preview.image) {
      try {
        const { mediaId } = await this.opts.repo.upload({ owner: requester, contentType: preview.image.contentType, body: bytesOf(preview.image.bytes), declaredBytes: preview.image.bytes.length });
        og['og:image'] = this.opts.repo.mxc(mediaId);
      } catch (err) {
        // Over the requester's quota, or the store failed: the preview goes without its image.
        this.opts.log.warn({ err }, 'media: preview image not stored');
        for (const k of ['og:image:type', 'og:image:width', 'og:image:height', 'matrix:image:size']) delete og[k];
      }
    }
    if (preview.ttlMs > 0) {
      await this.opts.redis.set(this.cacheKey(url), JSON.stringify(og), 'PX', preview.ttlMs).catch((err) => this.opts.log.warn({ err }, 'media: preview not cached'));
    }
    return og;
  }
}
