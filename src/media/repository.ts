/**
 * The media repository's workflows, shared by the client endpoints (and later the admin and
 * federation ones): upload, reserve, read, quarantine, delete.
 *
 * Where the bytes go on upload: the front streams the request body straight into the MediaStore
 * (staged, hashed on the way), asks the blob's media-content actor to count the new reference,
 * commits the blob under its sha256, then asks the item's media actor to record the metadata.
 * Only after that commit is the upload answered 200; the workers never see a byte. A crash at
 * any step leaves at worst an unreferenced temp file or an extra reference (the blob is kept,
 * never lost), and never a record pointing at missing or half-written bytes.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { MediaConfig } from '../../cluster.config';
import type { MediaContentMessage, MediaContentReply } from '../../actors/media-content';
import type { MediaMessage, MediaRecord, MediaReply, MediaReservation, StoredThumbnail } from '../../actors/media';
import { MatrixError, errors } from '../http/errors';
import type { ByteRange } from '../http/range';
import { ActorReplyError, ActorTimeoutError, type ActorClient } from '../runtime/actor-client';
import { shardOf, type Family } from '../store/shards';
import { decode } from '../store/codec';
import { mediaData, type KeySpace } from '../store/keys';
import type { RedisClient } from '../store/redis';
import type { MediaStore } from './store';

export const MEDIA_ID = /^[A-Za-z0-9_-]{1,255}$/;

export interface MediaRepositoryOptions {
  store: MediaStore;
  actors: ActorClient;
  redis: RedisClient;
  keys: KeySpace;
  shardCounts: Record<Family, number>;
  serverName: string;
  config: MediaConfig;
  log: Logger;
}

export interface UploadRequest {
  owner: string;
  contentType: string;
  filename?: string;
  body: AsyncIterable<Uint8Array>;
  /** Declared length (Content-Length), when known: checked against the quota before reading. */
  declaredBytes?: number;
  /** Upload into this reserved id (`PUT /upload/{server}/{id}`) rather than a new one. */
  reservedId?: string;
}

/** How long an uploader waits for a blob being deleted to be gone before committing the same bytes again. */
const REF_RETRY_MS = 10_000;
/** Last-access times are written at most this often per item. */
const TOUCH_EVERY_MS = 3600_000;

function asMatrixError(e: unknown, what: string): unknown {
  if (e instanceof ActorReplyError) return new MatrixError(e.status, e.errcode, e.message);
  if (e instanceof ActorTimeoutError) return new MatrixError(504, 'M_UNKNOWN', `The media service did not answer in time (${what}); try again`);
  return e;
}

export class MediaRepository {
  constructor(readonly opts: MediaRepositoryOptions) {}

  get store(): MediaStore {
    return this.opts.store;
  }

  newMediaId(): string {
    return randomBytes(18).toString('base64url');
  }

  mxc(mediaId: string): string {
    return `mxc://${this.opts.serverName}/${mediaId}`;
  }

  /** The key `name` in the user-family shard of actor id `id` (the media actor's shard). */
  shardKey(id: string, name: string): string {
    return this.opts.keys.shard('user', shardOf(id, this.opts.shardCounts.user)).data(name);
  }

  private async askMedia<R>(mediaId: string, body: MediaMessage): Promise<R> {
    try {
      return await this.opts.actors.ask<R>('user', 'media', mediaId, body);
    } catch (e) {
      throw asMatrixError(e, body.op);
    }
  }

  private async askContent(sha256: string, body: MediaContentMessage): Promise<MediaContentReply> {
    try {
      return await this.opts.actors.ask<MediaContentReply>('user', 'media-content', sha256, body);
    } catch (e) {
      throw asMatrixError(e, `content ${body.op}`);
    }
  }

  async readRecord(mediaId: string): Promise<MediaRecord | null> {
    if (!MEDIA_ID.test(mediaId)) return null;
    const blob = await this.opts.redis.getBuffer(this.shardKey(mediaId, mediaData.record(mediaId)));
    return blob ? decode<MediaRecord>(blob) : null;
  }

  /** The media actor id of another server's item: no local id has a `/`, so the two never meet. */
  remoteId(origin: string, mediaId: string): string {
    return `${origin}/${mediaId}`;
  }

  /** The cached record of another server's item, or null when it is not cached. */
  async readRemoteRecord(origin: string, mediaId: string): Promise<MediaRecord | null> {
    if (!MEDIA_ID.test(mediaId)) return null;
    const id = this.remoteId(origin, mediaId);
    const blob = await this.opts.redis.getBuffer(this.shardKey(id, mediaData.record(id)));
    return blob ? decode<MediaRecord>(blob) : null;
  }

  /**
   * Store another server's item fetched over federation (the body streamed into the store as it
   * arrives) and record it with its media actor as remote; the same order as an upload. When another
   * front cached it first, its record wins and this copy's reference is dropped.
   */
  async cacheRemote(req: { origin: string; mediaId: string; contentType: string; filename?: string; body: AsyncIterable<Uint8Array> }): Promise<MediaRecord> {
    const id = this.remoteId(req.origin, req.mediaId);
    const ref = `${id}:${randomBytes(6).toString('base64url')}`;
    const staged = await this.opts.store.stage(req.body);
    let referenced = false;
    try {
      await this.askContent(staged.sha256, { op: 'ref', ref });
      referenced = true;
      await staged.commit();
    } catch (e) {
      await staged.discard();
      if (referenced) await this.dropReference(staged.sha256, ref).catch((err) => this.opts.log.warn({ err, media_id: id }, 'media: reference not dropped after a failed remote fetch'));
      throw e;
    }
    const reply = await this.askMedia<{ ref: string }>(id, { op: 'cache', origin: req.origin, contentType: req.contentType, ...(req.filename ? { filename: req.filename } : {}), size: staged.size, sha256: staged.sha256, ref });
    if (reply.ref !== ref) await this.dropReference(staged.sha256, ref).catch((err) => this.opts.log.warn({ err, media_id: id }, 'media: reference of a second copy not dropped'));
    const record = await this.readRemoteRecord(req.origin, req.mediaId);
    if (!record) throw new MatrixError(502, 'M_UNKNOWN', 'The remote media was stored but its record is gone (deleted meanwhile); try again');
    return record;
  }

  async readReservation(mediaId: string): Promise<MediaReservation | null> {
    if (!MEDIA_ID.test(mediaId)) return null;
    const blob = await this.opts.redis.getBuffer(this.shardKey(mediaId, mediaData.reservation(mediaId)));
    const r = blob ? decode<MediaReservation>(blob) : null;
    return r && r.x > Date.now() ? r : null;
  }

  /**
   * The record of `mediaId`, waiting up to `timeoutMs` for a reserved id's upload to finish.
   * null: no such media (never created, expired); 'pending': still not uploaded at the end.
   */
  async awaitRecord(mediaId: string, timeoutMs: number, signal: AbortSignal): Promise<MediaRecord | null | 'pending'> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const record = await this.readRecord(mediaId);
      if (record) return record;
      if (!(await this.readReservation(mediaId))) {
        // The upload may have been recorded between the two reads.
        return (await this.readRecord(mediaId)) ?? null;
      }
      if (Date.now() >= until || signal.aborted) return 'pending';
      await new Promise((r) => setTimeout(r, Math.min(250, Math.max(1, until - Date.now()))));
    }
  }

  /** Note a download (at most hourly per item; never delays or fails the download). */
  touch(mediaId: string, record: MediaRecord): void {
    const now = Date.now();
    if (record.a !== undefined && now - record.a < TOUCH_EVERY_MS) return;
    this.opts.actors.tell('user', 'media', mediaId, { op: 'touch', at: now } satisfies MediaMessage).catch((err) => this.opts.log.debug({ err, media_id: mediaId }, 'media: last access not recorded'));
  }

  open(record: MediaRecord, range?: ByteRange): Promise<AsyncIterable<Uint8Array>> {
    return this.opts.store.get(record.h, range);
  }

  /** `POST /_matrix/media/v1/create`: a media id held for `owner`'s upload. */
  async reserve(owner: string): Promise<{ mediaId: string; expiresAt: number }> {
    const { maxPendingUploads, pendingUploadExpiryMs } = this.opts.config;
    const pendingKey = this.opts.keys.mediaPendingOf(owner);
    const mediaId = this.newMediaId();
    const now = Date.now();
    const expiresAt = now + pendingUploadExpiryMs;
    // Count first, then add and count again: of racing creates, none passes the limit.
    await this.opts.redis.zremrangebyscore(pendingKey, '-inf', now);
    await this.opts.redis.zadd(pendingKey, expiresAt, mediaId);
    const pending = await this.opts.redis.zcard(pendingKey);
    if (pending > maxPendingUploads) {
      await this.opts.redis.zrem(pendingKey, mediaId);
      const oldest = Number((await this.opts.redis.zrange(pendingKey, 0, 0, 'WITHSCORES'))[1] ?? now + 60_000);
      const wait = Math.max(1000, oldest - now);
      throw new MatrixError(429, 'M_LIMIT_EXCEEDED', `You have ${maxPendingUploads} pending uploads already; upload to them or wait for them to expire`, { retry_after_ms: wait }, { 'Retry-After': String(Math.ceil(wait / 1000)) });
    }
    await this.opts.redis.pexpireat(pendingKey, expiresAt);
    try {
      await this.askMedia<MediaReply>(mediaId, { op: 'reserve', owner, expiresAt });
    } catch (e) {
      await this.opts.redis.zrem(pendingKey, mediaId);
      throw e;
    }
    return { mediaId, expiresAt };
  }

  /** Bytes `userId` has uploaded (for the quota). */
  async usage(userId: string): Promise<number> {
    return Number((await this.opts.redis.get(this.opts.keys.mediaUsageOf(userId))) ?? 0);
  }

  /** Stream an upload into the store and record it; returns the media id. See the header for the order. */
  async upload(req: UploadRequest): Promise<{ mediaId: string; sha256: string; size: number }> {
    const quota = this.opts.config.userQuotaBytes;
    const quotaExceeded = () => new MatrixError(403, 'M_RESOURCE_LIMIT_EXCEEDED', `This upload would take you over your media quota of ${quota} bytes`);
    if (quota > 0 && (await this.usage(req.owner)) + (req.declaredBytes ?? 0) > quota) throw quotaExceeded();
    const mediaId = req.reservedId ?? this.newMediaId();
    // This attempt's own reference: a second upload racing for the same reserved id, refused at
    // the record, drops its reference and never the winner's.
    const ref = `${mediaId}:${randomBytes(6).toString('base64url')}`;
    const staged = await this.opts.store.stage(req.body);
    let referenced = false;
    try {
      if (quota > 0 && (await this.usage(req.owner)) + staged.size > quota) throw quotaExceeded();
      // 1. Count the reference (retrying while a deletion of the same bytes finishes).
      await this.addReference(staged.sha256, ref);
      referenced = true;
      // 2. The bytes under their content address.
      await staged.commit();
    } catch (e) {
      await staged.discard();
      if (referenced) await this.dropReference(staged.sha256, ref).catch((err) => this.opts.log.warn({ err, media_id: mediaId }, 'media: reference not dropped after a failed upload'));
      throw e;
    }
    // 3. The record: only now is the media visible, and the upload answered.
    try {
      await this.askMedia<MediaReply>(mediaId, { op: 'record', owner: req.owner, contentType: req.contentType, ...(req.filename ? { filename: req.filename } : {}), size: staged.size, sha256: staged.sha256, ref, ...(req.reservedId ? { reserved: true } : {}) });
    } catch (e) {
      if (e instanceof MatrixError && e.status < 500) await this.dropReference(staged.sha256, ref).catch((err) => this.opts.log.warn({ err, media_id: mediaId }, 'media: reference not dropped after a refused upload'));
      throw e;
    }
    if (req.reservedId) await this.opts.redis.zrem(this.opts.keys.mediaPendingOf(req.owner), mediaId).catch(() => undefined);
    if (staged.size > 0) await this.opts.redis.incrby(this.opts.keys.mediaUsageOf(req.owner), staged.size).catch(() => undefined);
    return { mediaId, sha256: staged.sha256, size: staged.size };
  }

  /** Count a reference to a blob, retrying while a deletion of the same bytes finishes. */
  private async addReference(sha256: string, ref: string): Promise<void> {
    const until = Date.now() + REF_RETRY_MS;
    for (;;) {
      try {
        await this.askContent(sha256, { op: 'ref', ref });
        return;
      } catch (e) {
        if (!(e instanceof MatrixError && e.status === 503) || Date.now() > until) throw e;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }

  /**
   * Store a thumbnail of `mediaId` as content (same order as an upload: stage, reference, commit,
   * record) and record it on the media actor. Returns what is recorded: this thumbnail, or the
   * one of the same box another process recorded first (this one's reference is dropped then);
   * null when the item is gone or holds as many thumbnails as it may (served, not kept).
   */
  async storeThumbnail(mediaId: string, thumb: Omit<StoredThumbnail, 'c' | 'r' | 's'>, bytes: Buffer): Promise<StoredThumbnail | null> {
    const ref = `${mediaId}:t:${thumb.bw}x${thumb.bh}${thumb.m[0]}${thumb.an ? 'a' : ''}:${randomBytes(6).toString('base64url')}`;
    const staged = await this.opts.store.stage(bytesOf(bytes));
    let referenced = false;
    try {
      await this.addReference(staged.sha256, ref);
      referenced = true;
      await staged.commit();
    } catch (e) {
      await staged.discard();
      if (referenced) await this.dropReference(staged.sha256, ref).catch((err) => this.opts.log.warn({ err, media_id: mediaId }, 'media: thumbnail reference not dropped after a failed store'));
      throw e;
    }
    const stored: StoredThumbnail = { ...thumb, s: staged.size, c: staged.sha256, r: ref };
    let reply: { added: boolean; existing?: StoredThumbnail };
    try {
      reply = await this.askMedia<{ added: boolean; existing?: StoredThumbnail }>(mediaId, { op: 'thumbnail', thumb: stored });
    } catch (e) {
      await this.dropReference(staged.sha256, ref).catch(() => undefined);
      if (e instanceof MatrixError && e.status === 404) return null;
      throw e;
    }
    if (reply.added) return stored;
    await this.dropReference(staged.sha256, ref).catch((err) => this.opts.log.warn({ err, media_id: mediaId }, 'media: surplus thumbnail reference not dropped'));
    return reply.existing ?? null;
  }

  /**
   * Every media id with its record (local ones, and other servers' items cached here: `m` set,
   * the id `<origin>/<id>`), shard by shard (SCAN: no index to keep; the retention
   * job is the only caller and runs rarely).
   */
  async *scanRecords(): AsyncIterable<{ mediaId: string; record: MediaRecord }> {
    const prefix = mediaData.record('');
    for (let shard = 0; shard < this.opts.shardCounts.user; shard++) {
      const base = this.opts.keys.shard('user', shard).data(prefix);
      const node = 'nodes' in this.opts.redis ? this.opts.redis.nodes('master') : [this.opts.redis];
      for (const client of node) {
        let cursor = '0';
        do {
          const [next, keys] = await client.scan(cursor, 'MATCH', `${base.replace(/[*?[\]\\]/g, '\\$&')}*`, 'COUNT', 500);
          cursor = next;
          for (const key of keys) {
            // A local id, or `<origin>/<id>` for another server's item cached here (remoteId).
            const mediaId = key.slice(base.length);
            const slash = mediaId.lastIndexOf('/');
            if (!MEDIA_ID.test(slash < 0 ? mediaId : mediaId.slice(slash + 1))) continue;
            const blob = await this.opts.redis.getBuffer(key);
            if (blob) yield { mediaId, record: decode<MediaRecord>(blob) };
          }
        } while (cursor !== '0');
      }
    }
  }

  /** Drop a reference to a blob, deleting the blob when it was the last (the actor's handshake). */
  private async dropReference(sha256: string, ref: string): Promise<void> {
    const reply = await this.askContent(sha256, { op: 'unref', ref });
    if (!reply.purge) return;
    await this.opts.store.delete(sha256);
    await this.askContent(sha256, { op: 'purged' });
  }

  /** Quarantine (or release) an item: a quarantined item is not served. For the admin API. */
  async quarantine(mediaId: string, on: boolean): Promise<void> {
    await this.askMedia<MediaReply>(mediaId, { op: 'quarantine', on });
  }

  /** Protect (or release) an item from quarantine of a whole room or user. For the admin API. */
  async protect(mediaId: string, on: boolean): Promise<void> {
    await this.askMedia<MediaReply>(mediaId, { op: 'protect', on });
  }

  /** Delete an item; its bytes go when no other item shares them. For the admin API and retention. */
  async delete(mediaId: string): Promise<void> {
    const reply = await this.askMedia<{ sha256: string; size: number; owner: string; ref: string; remote?: boolean; thumbs?: { sha256: string; ref: string }[] }>(mediaId, { op: 'delete' });
    await this.dropReference(reply.sha256, reply.ref);
    for (const t of reply.thumbs ?? []) await this.dropReference(t.sha256, t.ref);
    // A remote item's "owner" is its server: no user's quota to give back.
    if (reply.size > 0 && !reply.remote) await this.opts.redis.decrby(this.opts.keys.mediaUsageOf(reply.owner), reply.size).catch(() => undefined);
  }
}

/** Bytes at hand as the stream a store reads. */
export async function* bytesOf(bytes: Uint8Array): AsyncIterable<Uint8Array> {
  yield bytes;
}

export function errNotFound(): MatrixError {
  return errors.notFound('Media not found');
}
