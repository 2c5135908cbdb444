// POST /_matrix/media/v3/upload
// POST /_matrix/media/v1/create
// PUT  /_matrix/media/v3/upload/{serverName}/{mediaId}
// GET  /_matrix/client/v1/media/download/{serverName}/{mediaId}[/{fileName}]
// GET  /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}
// GET  /_matrix/client/v1/media/config
// GET  /_matrix/client/v1/media/preview_url (and the deprecated /_matrix/media/v3/preview_url)
// GET  /_matrix/media/v3/download|thumbnail/… and /_matrix/media/v3/config (legacy, frozen)
/**
 * The media repository's client endpoints (authenticated media, spec v1.11). Uploads are read
 * from the socket as they arrive and streamed into the MediaStore (src/media/repository.ts says
 * where the bytes go); downloads are streamed from it with backpressure, `Range` and `ETag`.
 * Every media answer carries the safety headers (src/media/headers.ts), errors included.
 *
 * Media of other servers is fetched over federation and cached (src/media/remote.ts) when the
 * request does not say `allow_remote=false`. Thumbnails and URL previews are made by
 * `ctx.media.thumbnailer` / `previewer` (src/media/thumbnail-service.ts, preview-service.ts); when
 * configured off, thumbnail answers 501 M_UNRECOGNIZED and preview_url 404 M_UNRECOGNIZED (as
 * Synapse does with previews off).
 */
import { MatrixError, errors } from '../../http/errors';
import type { Front, Handler, Request, Response } from '../../http/server';
import { contentDisposition, MEDIA_SAFETY_HEADERS } from '../../media/headers';
import { MEDIA_ID, type MediaRepository } from '../../media/repository';
import type { MediaServices } from '../../media/services';
import { BlobNotFound } from '../../media/store';
import type { MediaRecord } from '../../../actors/media';
import type { ApiContext } from '../context';
import { readAccount } from './accounts-common';
import { requireUser } from './auth';

/** Default and longest wait (`timeout_ms`) of a download for a reserved id's upload (Synapse: 20 s default). */
const DEFAULT_AWAIT_MS = 20_000;
const MAX_AWAIT_MS = 120_000;

const IMMUTABLE_PRIVATE = 'private, max-age=31536000, immutable';
const IMMUTABLE_PUBLIC = 'public, max-age=31536000, immutable';

/** Media headers on error answers too. */
function withSafety(handler: Handler): Handler {
  return async (req) => {
    try {
      const out = await handler(req);
      return { ...out, headers: { ...MEDIA_SAFETY_HEADERS, ...(out.headers ?? {}) } };
    } catch (e) {
      if (e instanceof MatrixError) throw new MatrixError(e.status, e.errcode, e.message, e.extra, { ...MEDIA_SAFETY_HEADERS, ...e.headers });
      throw e;
    }
  };
}

function media(ctx: ApiContext): MediaServices {
  if (!ctx.media) throw errors.unrecognized('The media repository is not configured');
  return ctx.media;
}

/** The requester, refused when their account may not upload (deactivated). */
async function uploader(ctx: ApiContext, req: Request): Promise<string> {
  const user = await requireUser(ctx, req);
  await ctx.limiter?.check('mediaUpload', user.userId);
  const account = await readAccount(ctx, user.userId);
  if (!account || account.x) throw new MatrixError(403, 'M_USER_DEACTIVATED', 'This account has been deactivated');
  return user.userId;
}

function uploadContentType(req: Request): string {
  const t = req.headers['content-type']?.trim();
  if (!t) return 'application/octet-stream';
  if (t.length > 255 || !/^[\x20-\x7e]+$/.test(t)) throw errors.invalidParam('Content-Type must be printable ASCII of at most 255 characters');
  return t;
}

function uploadFilename(req: Request): string | undefined {
  const name = req.query.filename;
  if (name === undefined || name === '') return undefined;
  if (name.length > 255 || /[\x00-\x1f\x7f/\\]/.test(name)) throw errors.invalidParam('filename must be at most 255 characters, without control characters or slashes');
  return name;
}

function declaredLength(req: Request): number | undefined {
  const raw = req.headers['content-length'];
  return raw !== undefined && /^\d+$/.test(raw) ? Number(raw) : undefined;
}

function parseTimeout(req: Request): number {
  const raw = req.query.timeout_ms;
  if (raw === undefined) return DEFAULT_AWAIT_MS;
  if (!/^\d+$/.test(raw)) throw errors.invalidParam('timeout_ms must be a non-negative integer');
  return Math.min(Number(raw), MAX_AWAIT_MS);
}

/**
 * Another server's item: from the cache, or fetched over federation (unless `allow_remote=false`
 * or `fetch` is false), within the request's `timeout_ms`. Throws 404, 502 or 504 Matrix errors.
 */
async function findRemote(ctx: ApiContext, req: Request, serverName: string, mediaId: string, fetch: boolean): Promise<{ mediaId: string; record: MediaRecord }> {
  const services = media(ctx);
  const id = services.repository.remoteId(serverName, mediaId);
  let record = await services.repository.readRemoteRecord(serverName, mediaId);
  if (!record) {
    const allowRemote = req.query.allow_remote;
    if (allowRemote !== undefined && allowRemote !== 'true' && allowRemote !== 'false') throw errors.invalidParam('allow_remote must be true or false');
    if (!fetch || allowRemote === 'false' || !services.remote) throw errors.notFound('Media not found');
    const timeoutMs = parseTimeout(req);
    // The answer must start within timeout_ms; the bytes may then take up to remoteFetchTimeoutMs.
    req.allowWait(timeoutMs + ctx.config.media.remoteFetchTimeoutMs);
    record = await services.remote.get(serverName, mediaId, { timeoutMs });
  }
  if (record.q) throw errors.notFound('Media not found');
  return { mediaId: id, record };
}

/**
 * The item a download names: local (waiting for a reserved id's upload when asked to), or another
 * server's (see findRemote); throws the spec's errors (404 M_NOT_FOUND, 504 M_NOT_YET_UPLOADED, 502).
 */
async function findLocal(ctx: ApiContext, req: Request, repo: MediaRepository, fetchRemote = true): Promise<{ mediaId: string; record: MediaRecord }> {
  const { serverName, mediaId } = req.params as { serverName: string; mediaId: string };
  // A malformed timeout_ms is 400 M_INVALID_PARAM whether or not there is anything to wait for (as Synapse).
  const timeoutMs = parseTimeout(req);
  if (!MEDIA_ID.test(mediaId)) throw errors.notFound('Media not found');
  if (serverName !== ctx.config.serverName) return findRemote(ctx, req, serverName, mediaId, fetchRemote);
  let record = await repo.readRecord(mediaId);
  if (!record) {
    req.allowWait(timeoutMs);
    const found = await repo.awaitRecord(mediaId, timeoutMs, req.signal);
    if (found === 'pending') throw new MatrixError(504, 'M_NOT_YET_UPLOADED', 'The media has not been uploaded yet');
    record = found;
  }
  if (!record || record.q) throw errors.notFound('Media not found');
  return { mediaId, record };
}

async function serve(repo: MediaRepository, mediaId: string, record: MediaRecord, fileName: string | undefined, cacheControl: string): Promise<Response> {
  repo.touch(mediaId, record);
  const name = fileName ?? record.n;
  return {
    status: 200,
    contentType: record.t,
    headers: {
      'Content-Disposition': contentDisposition(record.t, name),
      ETag: `"${record.h}"`,
      'Cache-Control': cacheControl,
    },
    stream: {
      size: record.s,
      open: async (range) => {
        try {
          return await repo.open(record, range);
        } catch (e) {
          if (e instanceof BlobNotFound) repo.opts.log.error({ media_id: mediaId, sha256: record.h }, 'media: the record names a blob the store does not have');
          throw e;
        }
      },
    },
  };
}

export function thumbnailParams(req: Request): { width: number; height: number; method: 'crop' | 'scale'; animated: boolean } {
  const int = (name: string) => {
    const v = req.query[name];
    if (v === undefined) throw errors.missingParam(`${name} is required`);
    if (!/^\d{1,5}$/.test(v) || Number(v) < 1) throw errors.invalidParam(`${name} must be a positive integer`);
    return Number(v);
  };
  const width = int('width');
  const height = int('height');
  const method = req.query.method ?? 'scale';
  if (method !== 'crop' && method !== 'scale') throw errors.invalidParam('method must be crop or scale');
  const animatedRaw = req.query.animated ?? 'false';
  if (animatedRaw !== 'true' && animatedRaw !== 'false') throw errors.invalidParam('animated must be true or false');
  return { width, height, method, animated: animatedRaw === 'true' };
}

async function serveThumbnail(ctx: ApiContext, req: Request, mediaId: string, record: MediaRecord, cacheControl: string): Promise<Response> {
  const params = thumbnailParams(req);
  const services = media(ctx);
  if (!services.thumbnailer) throw new MatrixError(501, 'M_UNRECOGNIZED', 'This server does not make thumbnails yet; download the media itself');
  const repo = services.repository;
  const thumb = await services.thumbnailer.thumbnail({ mediaId, contentType: record.t, size: record.s, sha256: record.h, thumbnails: record.th ?? [], open: (range) => repo.open(record, range) }, params);
  // Spec: 400 when "the server cannot thumbnail the content"; M_UNKNOWN as Synapse's "Failed to generate thumbnail".
  if (!thumb) throw new MatrixError(400, 'M_UNKNOWN', 'This media has no thumbnail (not an image this server can read)');
  repo.touch(mediaId, record);
  return { status: 200, contentType: thumb.contentType, headers: { 'Content-Disposition': contentDisposition(thumb.contentType), 'Cache-Control': cacheControl }, stream: { size: thumb.size, open: (range) => thumb.open(range) } };
}

export function registerMediaRoutes(front: Front, ctx: ApiContext): void {
  const maxUpload = ctx.config.media.maxUploadBytes;
  const streamBody = { maxBytes: maxUpload };

  const upload: Handler = async (req) => {
    const repo = media(ctx).repository;
    const owner = await uploader(ctx, req);
    const contentType = uploadContentType(req);
    const { mediaId } = await repo.upload({ owner, contentType, filename: uploadFilename(req), body: req.bodyStream!, declaredBytes: declaredLength(req) });
    media(ctx).afterUpload?.(mediaId, contentType);
    return { body: { content_uri: repo.mxc(mediaId) } };
  };
  front.route('POST', '/_matrix/media/v3/upload', withSafety(upload), { streamBody });
  front.route('POST', '/_matrix/media/r0/upload', withSafety(upload), { streamBody });

  front.route('POST', '/_matrix/media/v1/create', withSafety(async (req) => {
    const repo = media(ctx).repository;
    const owner = await uploader(ctx, req);
    const { mediaId, expiresAt } = await repo.reserve(owner);
    return { body: { content_uri: repo.mxc(mediaId), unused_expires_at: expiresAt } };
  }));

  front.route('PUT', '/_matrix/media/v3/upload/:serverName/:mediaId', withSafety(async (req) => {
    const repo = media(ctx).repository;
    const owner = await uploader(ctx, req);
    const { serverName, mediaId } = req.params as { serverName: string; mediaId: string };
    if (serverName !== ctx.config.serverName) throw new MatrixError(403, 'M_FORBIDDEN', 'You can only upload to media ids of this server');
    if (!MEDIA_ID.test(mediaId)) throw errors.notFound('No pending upload with this id');
    // Refuse before reading the body when the answer is known already (the actor decides again at the end).
    if (await repo.readRecord(mediaId)) throw new MatrixError(409, 'M_CANNOT_OVERWRITE_MEDIA', 'Media already uploaded to this id');
    const held = await repo.readReservation(mediaId);
    if (!held) throw errors.notFound('No pending upload with this id (never created, or expired)');
    if (held.o !== owner) throw new MatrixError(403, 'M_FORBIDDEN', 'This media id was created by another user');
    const contentType = uploadContentType(req);
    await repo.upload({ owner, contentType, filename: uploadFilename(req), body: req.bodyStream!, declaredBytes: declaredLength(req), reservedId: mediaId });
    media(ctx).afterUpload?.(mediaId, contentType);
    return { body: {} };
  }), { streamBody });

  const download: Handler = async (req) => {
    await requireUser(ctx, req);
    const repo = media(ctx).repository;
    const { mediaId, record } = await findLocal(ctx, req, repo);
    return serve(repo, mediaId, record, req.params.fileName, IMMUTABLE_PRIVATE);
  };
  front.route('GET', '/_matrix/client/v1/media/download/:serverName/:mediaId', withSafety(download));
  front.route('GET', '/_matrix/client/v1/media/download/:serverName/:mediaId/:fileName', withSafety(download));

  front.route('GET', '/_matrix/client/v1/media/thumbnail/:serverName/:mediaId', withSafety(async (req) => {
    await requireUser(ctx, req);
    const repo = media(ctx).repository;
    const { mediaId, record } = await findLocal(ctx, req, repo);
    return serveThumbnail(ctx, req, mediaId, record, IMMUTABLE_PRIVATE);
  }));

  const config: Handler = async (req) => {
    await requireUser(ctx, req);
    return { body: { 'm.upload.size': maxUpload } };
  };
  front.route('GET', '/_matrix/client/v1/media/config', withSafety(config));
  front.route('GET', '/_matrix/media/v3/config', withSafety(config));

  const previewUrl: Handler = async (req) => {
    const user = await requireUser(ctx, req);
    const previewer = media(ctx).previewer;
    if (!previewer) throw errors.unrecognized('URL previews are off on this server');
    const url = req.query.url;
    if (!url) throw errors.missingParam('url is required');
    const ts = req.query.ts !== undefined && /^\d+$/.test(req.query.ts) ? Number(req.query.ts) : undefined;
    return { body: await previewer.preview(url, ts, user.userId) };
  };
  front.route('GET', '/_matrix/client/v1/media/preview_url', withSafety(previewUrl));
  // The deprecated path (content-repo.yaml) takes a token too, so the v1.11 freeze does not touch it.
  front.route('GET', '/_matrix/media/v3/preview_url', withSafety(previewUrl));

  // The legacy unauthenticated paths serve only media uploaded before the freeze (spec v1.11:
  // "frozen"; Synapse's enable_authenticated_media): anything newer is not found there.
  const legacyFind = async (req: Request) => {
    const repo = media(ctx).repository;
    // Remote media is fetched for the legacy paths only before the freeze: anything fetched now
    // would be newer than it (Synapse: unauthenticated requests do not fetch remote media).
    const { mediaId, record } = await findLocal(ctx, req, repo, Date.now() < ctx.config.media.legacyFreezeAt);
    if (record.u >= ctx.config.media.legacyFreezeAt) throw errors.notFound('Media not found (use the authenticated /_matrix/client/v1/media endpoints)');
    return { repo, mediaId, record };
  };
  const legacyDownload: Handler = async (req) => {
    const { repo, mediaId, record } = await legacyFind(req);
    return serve(repo, mediaId, record, req.params.fileName, IMMUTABLE_PUBLIC);
  };
  for (const v of ['v3', 'r0']) {
    front.route('GET', `/_matrix/media/${v}/download/:serverName/:mediaId`, withSafety(legacyDownload));
    front.route('GET', `/_matrix/media/${v}/download/:serverName/:mediaId/:fileName`, withSafety(legacyDownload));
    front.route('GET', `/_matrix/media/${v}/thumbnail/:serverName/:mediaId`, withSafety(async (req) => {
      const { mediaId, record } = await legacyFind(req);
      return serveThumbnail(ctx, req, mediaId, record, IMMUTABLE_PUBLIC);
    }));
  }
}
