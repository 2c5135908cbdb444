/**
 * Synapse's admin API for one media item (`/_synapse/admin/v1/media/...`): quarantine and release
 * by id (`POST /media/quarantine|unquarantine/{server}/{mediaId}`: a quarantined item answers 404
 * to downloads and is kept for the admins; local items and cached remote ones), and deletion of a
 * local item (`DELETE /media/{server}/{mediaId}` → `deleted_media`, `total`). The repository does
 * the work through the item's media actor (src/media/repository.ts).
 * A user's uploads (`GET|DELETE /users/{userId}/media`, Synapse's paging, `order_by` and `dir`)
 * are found by a SCAN of the media records filtered by owner: there is no per-user index yet, so
 * this costs a pass over every record (fine for an admin call on a small server; an index written
 * on upload, on the uploader's shard, is the next step and would still need this scan for older media).
 * `POST /media/protect|unprotect/{mediaId}` (local items) marks an item safe from quarantine by
 * room or user. `POST /user/{userId}/media/quarantine` quarantines every unprotected upload of the user.
 * `GET /room/{roomId}/media` lists the mxc URLs of a room's events (content.url,
 * info.thumbnail_url, file.url; a walk of the timeline) and `POST /room/{roomId}/media/quarantine`
 * quarantines them (protected local items skipped). `POST /media/delete?before_ts&size_gt&keep_profiles`
 * deletes old local media (a SCAN of the records).
 */
import { MatrixError, errors } from '../../http/errors';
import type { Front, Request } from '../../http/server';
import type { JsonObject } from '../../protocol/json';
import type { ApiContext } from '../context';
import type { MediaRecord } from '../../../actors/media';
import { MEDIA_ID } from '../../media/repository';
import { storedProfile } from '../../rooms/member-profile';
import { localTarget, queryBool, queryInt, requireAdmin } from './common';

const V1 = '/_synapse/admin/v1';

/** One item as Synapse's user media list shows it. */
function listed(mediaId: string, r: MediaRecord) {
  return {
    media_id: mediaId,
    media_type: r.t,
    media_length: r.s,
    upload_name: r.n ?? null,
    created_ts: r.u,
    last_access_ts: r.a ?? r.u,
    quarantined_by: r.q ? 'admin' : null,
    safe_from_quarantine: r.p === 1,
    user_id: r.o,
    sha256: r.h,
    url_cache: null,
    // Every upload here needs an access token (Synapse's "authenticated media").
    authenticated: true,
  };
}
type Listed = ReturnType<typeof listed>;
const MXC = /^mxc:\/\/([^/]+)\/([A-Za-z0-9_-]+)$/;

/** The mxc URLs one event refers to where Synapse looks: content.url, info.thumbnail_url, file.url. */
function mxcsOf(event: JsonObject): string[] {
  const content = event.content as JsonObject | undefined;
  if (!content || typeof content !== 'object') return [];
  const info = content.info as JsonObject | undefined;
  const file = content.file as JsonObject | undefined;
  return [content.url, info && typeof info === 'object' ? info.thumbnail_url : undefined, file && typeof file === 'object' ? file.url : undefined].filter((u): u is string => typeof u === 'string' && MXC.test(u));
}

const ORDER_BY = ['media_id', 'upload_name', 'created_ts', 'last_access_ts', 'media_length', 'media_type', 'quarantined_by', 'safe_from_quarantine'] as const;

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

  const protect = (on: boolean) => async (req: Request) => {
    await requireAdmin(ctx, req);
    const mediaId = req.params.mediaId ?? '';
    const r = repo();
    if (!MEDIA_ID.test(mediaId) || !(await r.readRecord(mediaId))) throw errors.notFound('Unknown media');
    await r.protect(mediaId, on);
    return { body: {} };
  };
  front.route('POST', `${V1}/media/protect/:mediaId`, protect(true));
  front.route('POST', `${V1}/media/unprotect/:mediaId`, protect(false));

  // Bulk deletion of local media last used before `before_ts` (Synapse's rule: last access, not
  // upload) and larger than `size_gt`, skipping protected and quarantined items and, with
  // keep_profiles (default), the avatar in its uploader's profile. Other users' or per-room avatars
  // are not looked for (Synapse checks every profile and membership): a gap noted in the README.
  const bulkDelete = async (req: Request) => {
    await requireAdmin(ctx, req);
    if (req.params.serverName !== undefined && req.params.serverName !== ctx.config.serverName) throw new MatrixError(400, 'M_UNKNOWN', 'Can only delete local media');
    if (req.query.before_ts === undefined) throw errors.missingParam("Missing integer query parameter 'before_ts'");
    const beforeTs = queryInt(req, 'before_ts', 0);
    const sizeGt = queryInt(req, 'size_gt', 0);
    const keepProfiles = queryBool(req, 'keep_profiles') ?? true;
    if (beforeTs < 30_000_000_000) throw errors.invalidParam('Query parameter before_ts you provided is from the year 1970. Double check that you are providing a timestamp in milliseconds.');
    const r = repo();
    const deleted: string[] = [];
    const avatars = new Map<string, string | undefined>();
    for await (const { mediaId, record } of r.scanRecords()) {
      if (record.m || record.p || record.q || (record.a ?? record.u) >= beforeTs || record.s <= sizeGt) continue;
      if (keepProfiles) {
        if (!avatars.has(record.o)) avatars.set(record.o, (await storedProfile(ctx, record.o)).avatar_url);
        if (avatars.get(record.o) === `mxc://${ctx.config.serverName}/${mediaId}`) continue;
      }
      try {
        await r.delete(mediaId);
        deleted.push(mediaId);
      } catch (e) {
        if (!(e instanceof MatrixError && e.status === 404)) throw e;
      }
    }
    return { body: { deleted_media: deleted, total: deleted.length } };
  };
  front.route('POST', `${V1}/media/delete`, bulkDelete);
  front.route('POST', `${V1}/media/:serverName/delete`, bulkDelete);

  front.route('DELETE', `${V1}/media/:serverName/:mediaId`, async (req) => {
    await requireAdmin(ctx, req);
    const { server, mediaId } = target(req);
    if (server !== ctx.config.serverName) throw new MatrixError(400, 'M_UNKNOWN', 'Can only delete local media');
    const r = repo();
    if (!(await r.readRecord(mediaId))) throw errors.notFound('Unknown media');
    await r.delete(mediaId);
    return { body: { deleted_media: [mediaId], total: 1 } };
  });

  /** The user's local uploads (cached remote items are the servers', not a user's). */
  const userMedia = async (owner: string) => {
    const found: { mediaId: string; record: MediaRecord }[] = [];
    for await (const item of repo().scanRecords()) if (!item.record.m && item.record.o === owner) found.push(item);
    return found;
  };
  const page = (req: Request) => {
    const from = queryInt(req, 'from', 0);
    const limit = queryInt(req, 'limit', 100);
    const dir = req.query.dir ?? 'f';
    if (dir !== 'f' && dir !== 'b') throw errors.invalidParam("Query parameter 'dir' must be one of ['b', 'f']");
    const orderBy = (req.query.order_by ?? 'created_ts') as (typeof ORDER_BY)[number];
    if (!ORDER_BY.includes(orderBy)) throw errors.invalidParam(`Query parameter 'order_by' must be one of ${JSON.stringify(ORDER_BY)}`);
    return { from, limit, dir, orderBy };
  };
  const sorted = (items: Listed[], orderBy: (typeof ORDER_BY)[number], dir: string) => {
    const key = (x: Listed) => x[orderBy];
    const cmp = (a: Listed, b: Listed) => {
      const ka = key(a);
      const kb = key(b);
      // Nulls first ascending (as Postgres orders them descending); ties by media id, as Synapse.
      const c = ka === kb ? 0 : ka === null ? -1 : kb === null ? 1 : ka < kb ? -1 : 1;
      return c || (a.media_id < b.media_id ? -1 : a.media_id > b.media_id ? 1 : 0);
    };
    return items.sort((a, b) => (dir === 'b' ? -cmp(a, b) : cmp(a, b)));
  };

  front.route('GET', `${V1}/users/:userId/media`, async (req) => {
    await requireAdmin(ctx, req);
    const owner = localTarget(ctx, req.params.userId);
    const { from, limit, dir, orderBy } = page(req);
    const all = sorted((await userMedia(owner)).map((m) => listed(m.mediaId, m.record)), orderBy, dir);
    const media = all.slice(from, from + limit);
    return { body: { media, total: all.length, ...(from + limit < all.length ? { next_token: from + media.length } : {}) } };
  });

  // Every local upload of the user that is not protected (counted even when quarantined already, as Synapse).
  front.route('POST', `${V1}/user/:userId/media/quarantine`, async (req) => {
    await requireAdmin(ctx, req);
    const owner = localTarget(ctx, req.params.userId);
    let quarantined = 0;
    for (const { mediaId, record } of await userMedia(owner)) {
      if (record.p) continue;
      await repo().quarantine(mediaId, true);
      quarantined++;
    }
    return { body: { num_quarantined: quarantined } };
  });

  /** The media a room's events refer to, local and other servers' (404 for a room not known here). */
  const roomMedia = async (roomId: string) => {
    if (!(await ctx.rooms.meta(roomId))) throw errors.notFound('Room not found');
    const local = new Set<string>();
    const remote = new Set<string>();
    let from: number | null = null;
    do {
      const page = await ctx.rooms.timeline(roomId, 'f', from, 1000);
      for (const e of page.events) {
        if (e.rejected) continue;
        for (const url of mxcsOf(e.event)) (MXC.exec(url)![1] === ctx.config.serverName ? local : remote).add(url);
      }
      from = page.next;
    } while (from !== null);
    return { local: [...local], remote: [...remote] };
  };

  front.route('GET', `${V1}/room/:roomId/media`, async (req) => {
    await requireAdmin(ctx, req);
    return { body: await roomMedia(req.params.roomId ?? '') };
  });

  // Local items not protected, and the cached copies of other servers' items (as Synapse counts).
  front.route('POST', `${V1}/room/:roomId/media/quarantine`, async (req) => {
    await requireAdmin(ctx, req);
    const { local, remote } = await roomMedia(req.params.roomId ?? '');
    const r = repo();
    let quarantined = 0;
    for (const url of local) {
      const mediaId = MXC.exec(url)![2]!;
      const record = await r.readRecord(mediaId);
      if (!record || record.p) continue;
      await r.quarantine(mediaId, true);
      quarantined++;
    }
    for (const url of remote) {
      const [, origin, mediaId] = MXC.exec(url)!;
      if (!(await r.readRemoteRecord(origin!, mediaId!))) continue;
      await r.quarantine(`${origin}/${mediaId}`, true);
      quarantined++;
    }
    return { body: { num_quarantined: quarantined } };
  });

  front.route('DELETE', `${V1}/users/:userId/media`, async (req) => {
    await requireAdmin(ctx, req);
    const owner = localTarget(ctx, req.params.userId);
    const { from, limit, dir, orderBy } = page(req);
    const chosen = sorted((await userMedia(owner)).map((m) => listed(m.mediaId, m.record)), orderBy, dir).slice(from, from + limit);
    const deleted: string[] = [];
    for (const m of chosen) {
      try {
        await repo().delete(m.media_id);
        deleted.push(m.media_id);
      } catch (e) {
        // Gone meanwhile (another deletion): not this call's to count.
        if (!(e instanceof MatrixError && e.status === 404)) throw e;
      }
    }
    return { body: { deleted_media: deleted, total: deleted.length } };
  });
}
