// GET /_matrix/federation/v1/media/download/{mediaId}
// GET /_matrix/federation/v1/media/thumbnail/{mediaId}
/**
 * Our media for other servers (spec v1.11, X-Matrix authenticated): `multipart/mixed` with a JSON
 * metadata part (`{}`) and the bytes, streamed from the MediaStore between the two framings
 * (src/media/multipart.ts), so the answer's length is known and nothing sits whole in memory.
 * Only local media: another server's item is not ours to serve (404). Quarantined media is 404.
 * A reserved id not uploaded yet waits up to `timeout_ms` (504 M_NOT_YET_UPLOADED), as the client
 * download does. The thumbnail endpoint answers with the thumbnail module when it is wired
 * (`ctx.api.media.thumbnailer`), and until then honestly 501 M_UNRECOGNIZED (the requesting
 * server then thumbnails the download itself or shows none).
 */
import type { MediaRecord } from '../../../actors/media';
import { MatrixError, errors } from '../../http/errors';
import type { Front, Response } from '../../http/server';
import type { Request } from '../../http/server';
import { contentDisposition, MEDIA_SAFETY_HEADERS } from '../../media/headers';
import { multipartFraming, newBoundary } from '../../media/multipart';
import { MEDIA_ID } from '../../media/repository';
import type { ByteRange } from '../../http/range';
import { thumbnailParams } from '../client/media';
import { federationRoute } from './auth';
import type { FederationContext } from './context';

const DEFAULT_AWAIT_MS = 20_000;
const MAX_AWAIT_MS = 120_000;

/** A two-part answer around `content` (its headers, its size, its bytes). */
function multipartAnswer(content: { headers: Record<string, string>; size: number; open(range?: ByteRange): Promise<AsyncIterable<Uint8Array>> }): Response {
  const boundary = newBoundary();
  const { head, tail } = multipartFraming(boundary, {}, content.headers);
  return {
    status: 200,
    contentType: `multipart/mixed; boundary=${boundary}`,
    headers: { ...MEDIA_SAFETY_HEADERS, 'Accept-Ranges': 'none' },
    stream: {
      size: head.length + content.size + tail.length,
      ranges: false,
      open: async () => {
        const bytes = await content.open();
        return (async function* () {
          yield head;
          yield* bytes;
          yield tail;
        })();
      },
    },
  };
}

async function localRecord(ctx: FederationContext, req: Request): Promise<{ mediaId: string; record: MediaRecord }> {
  const services = ctx.api.media;
  if (!services) throw errors.notFound('This server has no media repository');
  const mediaId = req.params.mediaId!;
  if (!MEDIA_ID.test(mediaId)) throw errors.notFound('Media not found');
  const repo = services.repository;
  let record = await repo.readRecord(mediaId);
  if (!record) {
    const raw = req.query.timeout_ms;
    if (raw !== undefined && !/^\d+$/.test(raw)) throw errors.invalidParam('timeout_ms must be a non-negative integer');
    const timeoutMs = Math.min(raw === undefined ? DEFAULT_AWAIT_MS : Number(raw), MAX_AWAIT_MS);
    req.allowWait(timeoutMs);
    const found = await repo.awaitRecord(mediaId, timeoutMs, req.signal);
    if (found === 'pending') throw new MatrixError(504, 'M_NOT_YET_UPLOADED', 'The media has not been uploaded yet');
    record = found;
  }
  // Records under a local id are always our own uploads (remote items live under `<server>/<id>`).
  if (!record || record.q || record.m) throw errors.notFound('Media not found');
  return { mediaId, record };
}

export function registerFederationMediaRoutes(front: Front, ctx: FederationContext): void {
  federationRoute(front, ctx, 'GET', '/_matrix/federation/v1/media/download/:mediaId', async (req) => {
    const { mediaId, record } = await localRecord(ctx, req);
    const repo = ctx.api.media!.repository;
    repo.touch(mediaId, record);
    return multipartAnswer({
      headers: { 'Content-Type': record.t, 'Content-Disposition': contentDisposition(record.t, record.n) },
      size: record.s,
      open: () => repo.open(record),
    });
  });

  federationRoute(front, ctx, 'GET', '/_matrix/federation/v1/media/thumbnail/:mediaId', async (req) => {
    const params = thumbnailParams(req);
    const { mediaId, record } = await localRecord(ctx, req);
    const services = ctx.api.media!;
    // services.thumbnailer is absent when media.thumbnails.enabled is off.
    if (!services.thumbnailer) throw new MatrixError(501, 'M_UNRECOGNIZED', 'This server does not make thumbnails yet; download the media itself');
    const repo = services.repository;
    const thumb = await services.thumbnailer.thumbnail({ mediaId, contentType: record.t, size: record.s, sha256: record.h, thumbnails: record.th ?? [], open: (range) => repo.open(record, range) }, params);
    if (!thumb) throw new MatrixError(400, 'M_UNKNOWN', 'This media has no thumbnail (not an image this server can read)');
    repo.touch(mediaId, record);
    return multipartAnswer({ headers: { 'Content-Type': thumb.contentType, 'Content-Disposition': contentDisposition(thumb.contentType) }, size: thumb.size, open: () => thumb.open() });
  });
}
