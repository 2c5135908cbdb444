/**
 * Synapse's admin API for one media item (`/_synapse/admin/v1/media/...`): quarantine and release
 * by id (`POST /media/quarantine|unquarantine/{server}/{mediaId}`: a quarantined item answers 404
 * to downloads and is kept for the admins; local items and cached remote ones), and deletion of a
 * local item (`DELETE /media/{server}/{mediaId}` → `deleted_media`, `total`). The repository does
 * the work through the item's media actor (src/media/repository.ts).
 * Not yet: quarantine by room or user, protection, bulk deletion and the media lists.
 */
import { MatrixError, errors } from '../../http/errors';
import type { Front, Request } from '../../http/server';
import type { ApiContext } from '../context';
import { requireAdmin } from './common';

const V1 = '/_synapse/admin/v1';

export function registerMediaAdminRoutes(front: Front, ctx: ApiContext): void {
  const repo = () => {
    const media = ctx.media;
    if (!media) throw new MatrixError(404, 'M_UNRECOGNIZED', 'This process serves no media');
    return media.repository;
  };
  const target = (req: Request) => ({ server: req.params.serverName ?? '', mediaId: req.params.mediaId ?? '' });

  const quarantine = (on: boolean) => async (req: Request) => {
    await requireAdmin(ctx, req);
    const { server, mediaId } = target(req);
    const r = repo();
    const local = server === ctx.config.serverName;
    // An unknown item is no error (as Synapse): there is nothing to quarantine.
    const record = local ? await r.readRecord(mediaId) : await r.readRemoteRecord(server, mediaId);
    if (record) await r.quarantine(local ? mediaId : `${server}/${mediaId}`, on);
    return { body: {} };
  };
  front.route('POST', `${V1}/media/quarantine/:serverName/:mediaId`, quarantine(true));
  front.route('POST', `${V1}/media/unquarantine/:serverName/:mediaId`, quarantine(false));

  front.route('DELETE', `${V1}/media/:serverName/:mediaId`, async (req) => {
    await requireAdmin(ctx, req);
    const { server, mediaId } = target(req);
    if (server !== ctx.config.serverName) throw new MatrixError(400, 'M_UNKNOWN', 'Can only delete local media');
    const r = repo();
    if (!(await r.readRecord(mediaId))) throw errors.notFound('Unknown media');
    await r.delete(mediaId);
    return { body: { deleted_media: [mediaId], total: 1 } };
  });
}
