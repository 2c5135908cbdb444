/**
 * Other servers' media: `mxc://<origin>/<id>` asked of us by our clients is fetched from <origin>
 * over federation, cached in our MediaStore, and recorded with its media actor as remote (actor id
 * `<origin>/<id>`; the retention job may drop it later). Then it is served like local media.
 *
 * The fetch: `GET /_matrix/federation/v1/media/download/{id}` (spec v1.11), a `multipart/mixed`
 * answer read as a stream (src/media/multipart.ts) — the content part goes into the store chunk
 * by chunk, or, for a `Location` part, the bytes are fetched from that URL (unsigned; the IP
 * blocklist applies). A server that answers 404/400 `M_UNRECOGNIZED` (older than v1.11) is asked
 * at the legacy `/_matrix/media/v3/download/{origin}/{id}?allow_remote=false`. The bytes are
 * limited (`media.maxRemoteBytes`: 502 M_TOO_LARGE) and the answer must start within the
 * download's `timeout_ms` and end within `media.remoteFetchTimeoutMs` (504 otherwise); a server
 * that cannot be reached or answers nonsense is 502.
 *
 * One fetch per item: requests on this front for an item being fetched wait for that fetch; across
 * fronts a Redis lock (SET NX PX, `mediaData.remoteFetchLock`) makes one front fetch while the
 * others watch for the record the fetch writes.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { MediaRecord } from '../../actors/media';
import type { FederationClient, StreamedAnswer } from '../federation/client';
import { FederationError, FederationRemoteError, FederationTimeoutError } from '../federation/errors';
import { MatrixError, errors } from '../http/errors';
import { mediaData } from '../store/keys';
import { dispositionFilename, MultipartError, multipartBoundary, readFederationMedia } from './multipart';
import type { MediaRepository } from './repository';

/** How often a front waiting for another front's fetch looks for the record. */
const WATCH_EVERY_MS = 100;

export interface RemoteFetchOptions {
  /** The answer must start within this (the download's `timeout_ms`). */
  timeoutMs: number;
}

export class RemoteMediaFetcher {
  /** Fetches under way on this front, by remote id. */
  private readonly inFlight = new Map<string, Promise<MediaRecord>>();
  /** Federation fetches this front started (for tests and logs: concurrent asks make one). */
  fetchesStarted = 0;

  constructor(
    private readonly repo: MediaRepository,
    private readonly client: FederationClient,
    private readonly log: Logger,
  ) {}

  private get maxBytes(): number {
    const c = this.repo.opts.config;
    return c.maxRemoteBytes > 0 ? c.maxRemoteBytes : c.maxUploadBytes;
  }

  /** The cached record of `mxc://origin/mediaId`, fetched first when it is not cached. */
  async get(origin: string, mediaId: string, opts: RemoteFetchOptions): Promise<MediaRecord> {
    const cached = await this.repo.readRemoteRecord(origin, mediaId);
    if (cached) return cached;
    const id = this.repo.remoteId(origin, mediaId);
    let running = this.inFlight.get(id);
    if (!running) {
      running = this.fetchAcrossFronts(origin, mediaId, opts).finally(() => this.inFlight.delete(id));
      this.inFlight.set(id, running);
    }
    return running;
  }

  private async fetchAcrossFronts(origin: string, mediaId: string, opts: RemoteFetchOptions): Promise<MediaRecord> {
    const id = this.repo.remoteId(origin, mediaId);
    const lockKey = this.repo.shardKey(id, mediaData.remoteFetchLock(id));
    const token = randomBytes(8).toString('hex');
    const totalMs = this.repo.opts.config.remoteFetchTimeoutMs;
    const until = Date.now() + opts.timeoutMs + totalMs;
    const redis = this.repo.opts.redis;
    for (;;) {
      // The lock outlives the longest fetch a little, so a front that died holding it frees it.
      if ((await redis.set(lockKey, token, 'PX', opts.timeoutMs + totalMs + 5_000, 'NX')) === 'OK') {
        try {
          const again = await this.repo.readRemoteRecord(origin, mediaId);
          return again ?? (await this.fetch(origin, mediaId, opts));
        } finally {
          // GET then DEL: another holder can only be there once ours expired, long after this.
          if ((await redis.get(lockKey).catch(() => null)) === token) await redis.del(lockKey).catch(() => undefined);
        }
      }
      // Another front is fetching it: watch for its record, or for its lock to go (it failed).
      while ((await redis.exists(lockKey)) === 1) {
        const record = await this.repo.readRemoteRecord(origin, mediaId);
        if (record) return record;
        if (Date.now() > until) throw new MatrixError(504, 'M_UNKNOWN', `Another request is still fetching this media from ${origin}; try again`);
        await new Promise((r) => setTimeout(r, WATCH_EVERY_MS));
      }
      const record = await this.repo.readRemoteRecord(origin, mediaId);
      if (record) return record;
      if (Date.now() > until) throw new MatrixError(504, 'M_UNKNOWN', `Fetching this media from ${origin} did not finish in time`);
    }
  }

  /** One fetch over federation into the store. */
  private async fetch(origin: string, mediaId: string, opts: RemoteFetchOptions): Promise<MediaRecord> {
    this.fetchesStarted++;
    const started = performance.now();
    const timing = { headersTimeoutMs: Math.max(1, opts.timeoutMs), totalTimeoutMs: this.repo.opts.config.remoteFetchTimeoutMs };
    const enc = encodeURIComponent;
    let source: { contentType: string; filename?: string; declared?: number; body: AsyncIterable<Uint8Array>; cancel(): void };
    let via = 'federation';
    try {
      let answer: StreamedAnswer | undefined;
      try {
        answer = await this.client.stream(origin, `/_matrix/federation/v1/media/download/${enc(mediaId)}?timeout_ms=${opts.timeoutMs}`, timing);
      } catch (e) {
        // Older servers: the federation media endpoint is unknown to them (spec: 404 M_UNRECOGNIZED).
        if (!(e instanceof FederationRemoteError && (e.status === 404 || e.status === 400 || e.status === 405) && e.errcode === 'M_UNRECOGNIZED')) throw e;
      }
      if (answer) source = await this.fromMultipart(origin, answer, timing);
      else {
        via = 'legacy';
        const legacy = await this.client.stream(origin, `/_matrix/media/v3/download/${enc(origin)}/${enc(mediaId)}?allow_remote=false&timeout_ms=${opts.timeoutMs}`, timing);
        source = plain(legacy);
      }
    } catch (e) {
      throw this.toMatrixError(origin, e);
    }
    const max = this.maxBytes;
    if (source.declared !== undefined && source.declared > max) {
      source.cancel();
      throw tooLarge(origin, max);
    }
    async function* limited(): AsyncGenerator<Uint8Array> {
      let size = 0;
      try {
        for await (const chunk of source.body) {
          size += chunk.byteLength;
          if (size > max) throw tooLarge(origin, max);
          yield chunk;
        }
      } finally {
        source.cancel();
      }
    }
    try {
      const record = await this.repo.cacheRemote({ origin, mediaId, contentType: source.contentType, filename: source.filename, body: limited() });
      this.log.info({ origin, media_id: mediaId, via, bytes: record.s, ms: Math.round(performance.now() - started) }, 'media: remote media cached');
      return record;
    } catch (e) {
      throw this.toMatrixError(origin, e);
    }
  }

  private async fromMultipart(origin: string, answer: StreamedAnswer, timing: { headersTimeoutMs: number; totalTimeoutMs: number }) {
    const boundary = multipartBoundary(headerOf(answer.headers['content-type']));
    if (!boundary) {
      answer.cancel();
      throw new MultipartError(`the answer is ${headerOf(answer.headers['content-type']) ?? 'untyped'}, not multipart/mixed with a boundary`);
    }
    let parts: Awaited<ReturnType<typeof readFederationMedia>>;
    try {
      parts = await readFederationMedia(answer.body, boundary);
      const location = parts.headers.location;
      if (location) {
        // The bytes are elsewhere (a CDN, a presigned URL): read the rest of this answer, then go there.
        for await (const _ of parts.body) void _;
        answer.cancel();
        return plain(await this.client.streamUrl(origin, location, timing));
      }
    } catch (e) {
      // A malformed answer: give the connection (and the destination's in-flight slot) back now.
      answer.cancel();
      throw e;
    }
    const declared = parts.headers['content-length'];
    return {
      contentType: parts.headers['content-type'] || 'application/octet-stream',
      filename: dispositionFilename(parts.headers['content-disposition']),
      ...(declared && /^\d+$/.test(declared) ? { declared: Number(declared) } : {}),
      body: parts.body,
      cancel: () => answer.cancel(),
    };
  }

  private toMatrixError(origin: string, e: unknown): unknown {
    if (e instanceof MatrixError) return e;
    if (e instanceof FederationRemoteError) {
      if (e.status === 404) return errors.notFound(`${origin} does not have this media`);
      if (e.status === 504 && e.errcode === 'M_NOT_YET_UPLOADED') return new MatrixError(504, 'M_NOT_YET_UPLOADED', `${origin}: the media has not been uploaded yet`);
      if (e.status === 413 || e.errcode === 'M_TOO_LARGE') return new MatrixError(502, 'M_TOO_LARGE', `${origin} will not serve this media: too large`);
      this.log.info({ origin, status: e.status, errcode: e.errcode }, 'media: remote fetch refused');
      return new MatrixError(502, 'M_UNKNOWN', `${origin} answered HTTP ${e.status}${e.errcode ? ` ${e.errcode}` : ''} for this media`);
    }
    if (e instanceof FederationTimeoutError) return new MatrixError(504, 'M_UNKNOWN', `${origin} did not send this media in time`);
    if (e instanceof FederationError || e instanceof MultipartError) {
      this.log.info({ origin, err: e.message }, 'media: remote fetch failed');
      return new MatrixError(502, 'M_UNKNOWN', `Could not fetch this media from ${origin}: ${e.message}`);
    }
    return e;
  }
}

function headerOf(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** A plain (not multipart) answer: the bytes are the body, described by its own headers. */
function plain(answer: StreamedAnswer) {
  const declared = headerOf(answer.headers['content-length']);
  return {
    contentType: headerOf(answer.headers['content-type']) || 'application/octet-stream',
    filename: dispositionFilename(headerOf(answer.headers['content-disposition'])),
    ...(declared && /^\d+$/.test(declared) ? { declared: Number(declared) } : {}),
    body: answer.body,
    cancel: () => answer.cancel(),
  };
}

function tooLarge(origin: string, max: number): MatrixError {
  return new MatrixError(502, 'M_TOO_LARGE', `The media on ${origin} is larger than this server fetches (${max} bytes)`);
}
