/**
 * MediaActor: the single writer of one local media item's metadata (actor id = the media id, the
 * part after `mxc://<our server>/`). It lives in the user-family shard the media id hashes to.
 * Fronts read its record (`mediaData.record`) directly to serve downloads; every change goes
 * through here, so two uploads racing for one reserved id are ordered by the mailbox and the
 * second is refused (M_CANNOT_OVERWRITE_MEDIA).
 *
 * The bytes never pass through the actor: the front streams them into the MediaStore, has the
 * blob's media-content actor count the reference, and only then sends `record` — the upload is
 * answered 200 once that commit is done.
 *
 * Messages:
 * - `reserve` {owner, expiresAt}: `POST /_matrix/media/v1/create` — hold the id for `owner`'s
 *   upload until `expiresAt` (ms);
 * - `record` {owner, contentType, filename?, size, sha256, ref, reserved?}: the upload is stored
 *   (`ref`: the reference it holds on the blob). With
 *   `reserved` (`PUT /upload/{server}/{id}`) the id must be held by `owner` (403 otherwise) and not
 *   expired (404); an id that has content already is refused with 409 M_CANNOT_OVERWRITE_MEDIA;
 * - `cache` {origin, contentType, filename?, size, sha256, ref}: another server's item fetched over
 *   federation (actor id `<origin>/<mediaId>`, which no local id can be: they have no `/`), recorded
 *   with `m: 1` so the retention job can tell the cache from local uploads. When the item is cached
 *   already (another front fetched it too) the existing record stays and is the reply: the caller
 *   drops its own reference when the reply's `ref` is not its own;
 * - `touch` {at}: last access (fronts send it at most about once an hour per item);
 * - `quarantine` {on}: a quarantined item answers 404 to downloads (kept for the admins);
 * - `protect` {on}: a protected item is skipped by quarantine of a whole room or user (admin API);
 * - `thumbnail` {thumb}: a thumbnail of the item is stored (its bytes are a blob of their own, with
 *   its own reference); refused (`added: false`) when one of the same box, method and animation is
 *   recorded already or the item has MAX_THUMBNAILS, so the caller drops the reference it took;
 * - `delete`: the record goes; the reply names the blob and the thumbnails' blobs so the caller
 *   drops their references.
 */
import { ActorRejection, type ActorKind, type ActorMessage, type Decision, type ShellContext } from '../src/runtime/actor';
import { decode, encode } from '../src/store/codec';
import { mediaData } from '../src/store/keys';

/** A media item's stored record (msgpack; short keys, read on every download). */
export interface MediaRecord {
  /** Owner (who uploaded it). */
  o: string;
  /** Content type as the uploader gave it. */
  t: string;
  /** File name, if given. */
  n?: string;
  /** Size in bytes. */
  s: number;
  /** sha256 of the content (hex): its address in the MediaStore. */
  h: string;
  /** Upload time (ms). */
  u: number;
  /** Last access (ms), when known. */
  a?: number;
  /** Quarantined: not served. */
  q?: 1;
  /** Protected: skipped by quarantine of a room's or a user's media. */
  p?: 1;
  /** Another server's item cached here (then `o` is that server's name and `u` the fetch time). */
  m?: 1;
  /**
   * The reference this item holds on its blob (in the blob's media-content refs set): the media
   * id and the upload attempt, so that a refused second upload to the same id drops only its own.
   */
  r: string;
  /** Thumbnails made of it (pre-generated at upload, or on demand). */
  th?: StoredThumbnail[];
}

/** A thumbnail stored as content in the MediaStore. */
export interface StoredThumbnail {
  /** The box asked for (request width, height), the method, and whether an animation was asked for. */
  bw: number;
  bh: number;
  m: 'crop' | 'scale';
  an?: 1;
  /** Its real dimensions. */
  w: number;
  h: number;
  /** Content type, size, sha256 (its blob) and the reference it holds on the blob. */
  t: string;
  s: number;
  c: string;
  r: string;
}

/** Thumbnails kept per item: each on-demand size adds one, and the record is read on every download. */
export const MAX_THUMBNAILS = 32;

export interface MediaReservation {
  /** Who may upload. */
  o: string;
  /** Until when (ms). */
  x: number;
}

export interface MediaState {
  mediaId: string;
  record: MediaRecord | null;
  reservation: MediaReservation | null;
}

export type MediaMessage =
  | { op: 'reserve'; owner: string; expiresAt: number }
  | { op: 'record'; owner: string; contentType: string; filename?: string; size: number; sha256: string; ref: string; reserved?: boolean }
  | { op: 'cache'; origin: string; contentType: string; filename?: string; size: number; sha256: string; ref: string }
  | { op: 'touch'; at: number }
  | { op: 'quarantine'; on: boolean }
  | { op: 'protect'; on: boolean }
  | { op: 'thumbnail'; thumb: StoredThumbnail }
  | { op: 'delete' };

export type MediaReply =
  | { media_id: string; expires_at?: number }
  | { sha256: string; size: number; owner: string; ref: string; remote?: boolean; thumbs?: { sha256: string; ref: string }[] }
  | { added: boolean; existing?: StoredThumbnail };

export function emptyMedia(mediaId: string): MediaState {
  return { mediaId, record: null, reservation: null };
}

const SHA256 = /^[0-9a-f]{64}$/;

/** Pure: everything the media actor does with a message. */
export function decideMedia(state: MediaState, msg: ActorMessage<MediaMessage>): Decision<MediaState, MediaReply> {
  const body = msg.body;
  const recordKey = mediaData.record(state.mediaId);
  const reservationKey = mediaData.reservation(state.mediaId);
  const now = msg.enqueuedAt;
  switch (body?.op) {
    case 'reserve': {
      if (typeof body.owner !== 'string' || !body.owner.startsWith('@')) throw new ActorRejection('M_INVALID_PARAM', 'owner must be a user id', 400);
      if (!Number.isSafeInteger(body.expiresAt) || body.expiresAt <= now) throw new ActorRejection('M_INVALID_PARAM', 'expiresAt must be in the future', 400);
      // Ids are random: a clash means a bug or a replayed id, never something to overwrite.
      if (state.record || (state.reservation && state.reservation.x > now)) throw new ActorRejection('M_CANNOT_OVERWRITE_MEDIA', 'This media id is taken', 409);
      const reservation: MediaReservation = { o: body.owner, x: body.expiresAt };
      return {
        state: { ...state, reservation },
        reply: { media_id: state.mediaId, expires_at: reservation.x },
        writes: [{ cmd: 'SET', key: reservationKey, args: [encode(reservation), 'PX', Math.max(1, body.expiresAt - now)] }],
      };
    }
    case 'record': {
      if (typeof body.owner !== 'string' || !body.owner.startsWith('@')) throw new ActorRejection('M_INVALID_PARAM', 'owner must be a user id', 400);
      if (typeof body.sha256 !== 'string' || !SHA256.test(body.sha256)) throw new ActorRejection('M_INVALID_PARAM', 'sha256 must be 64 hex digits', 400);
      if (!Number.isSafeInteger(body.size) || body.size < 0) throw new ActorRejection('M_INVALID_PARAM', 'size must be a byte count', 400);
      if (typeof body.ref !== 'string' || !body.ref) throw new ActorRejection('M_INVALID_PARAM', 'ref must name the blob reference', 400);
      if (typeof body.contentType !== 'string' || body.contentType.length > 255) throw new ActorRejection('M_INVALID_PARAM', 'contentType must be a string', 400);
      if (body.filename !== undefined && (typeof body.filename !== 'string' || body.filename.length > 255)) throw new ActorRejection('M_INVALID_PARAM', 'filename must be a string of at most 255 characters', 400);
      if (state.record) throw new ActorRejection('M_CANNOT_OVERWRITE_MEDIA', 'Media already uploaded to this id', 409);
      if (body.reserved) {
        const held = state.reservation;
        if (!held || held.x <= now) throw new ActorRejection('M_NOT_FOUND', 'No pending upload with this id (never created, or expired)', 404);
        if (held.o !== body.owner) throw new ActorRejection('M_FORBIDDEN', 'This media id was created by another user', 403);
      } else if (state.reservation && state.reservation.x > now) {
        throw new ActorRejection('M_CANNOT_OVERWRITE_MEDIA', 'This media id is reserved', 409);
      }
      const record: MediaRecord = { o: body.owner, t: body.contentType, s: body.size, h: body.sha256, u: now, r: body.ref, ...(body.filename ? { n: body.filename } : {}) };
      const writes: Decision<MediaState, MediaReply>['writes'] = [{ cmd: 'SET', key: recordKey, args: [encode(record)] }];
      if (state.reservation) writes.push({ cmd: 'DEL', key: reservationKey, args: [] });
      return { state: { ...state, record, reservation: null }, reply: { sha256: record.h, size: record.s, owner: record.o, ref: record.r }, writes };
    }
    case 'cache': {
      if (typeof body.origin !== 'string' || !body.origin || !state.mediaId.startsWith(`${body.origin}/`)) throw new ActorRejection('M_INVALID_PARAM', 'origin must be the server the media id names', 400);
      if (typeof body.sha256 !== 'string' || !SHA256.test(body.sha256)) throw new ActorRejection('M_INVALID_PARAM', 'sha256 must be 64 hex digits', 400);
      if (!Number.isSafeInteger(body.size) || body.size < 0) throw new ActorRejection('M_INVALID_PARAM', 'size must be a byte count', 400);
      if (typeof body.ref !== 'string' || !body.ref) throw new ActorRejection('M_INVALID_PARAM', 'ref must name the blob reference', 400);
      if (typeof body.contentType !== 'string' || body.contentType.length > 255) throw new ActorRejection('M_INVALID_PARAM', 'contentType must be a string', 400);
      if (body.filename !== undefined && (typeof body.filename !== 'string' || body.filename.length > 255)) throw new ActorRejection('M_INVALID_PARAM', 'filename must be a string of at most 255 characters', 400);
      if (state.record) {
        const r = state.record;
        return { state, reply: { sha256: r.h, size: r.s, owner: r.o, ref: r.r } };
      }
      const record: MediaRecord = { o: body.origin, t: body.contentType, s: body.size, h: body.sha256, u: now, r: body.ref, m: 1, ...(body.filename ? { n: body.filename } : {}) };
      return { state: { ...state, record }, reply: { sha256: record.h, size: record.s, owner: record.o, ref: record.r }, writes: [{ cmd: 'SET', key: recordKey, args: [encode(record)] }] };
    }
    case 'touch': {
      if (!state.record || !Number.isSafeInteger(body.at) || (state.record.a ?? 0) >= body.at) return { state, reply: { media_id: state.mediaId } };
      const record = { ...state.record, a: body.at };
      return { state: { ...state, record }, reply: { media_id: state.mediaId }, writes: [{ cmd: 'SET', key: recordKey, args: [encode(record)] }] };
    }
    case 'quarantine': {
      if (!state.record) throw new ActorRejection('M_NOT_FOUND', 'No such media', 404);
      const { q: _q, ...rest } = state.record;
      const record: MediaRecord = body.on === true ? { ...rest, q: 1 } : rest;
      return { state: { ...state, record }, reply: { sha256: record.h, size: record.s, owner: record.o, ref: record.r }, writes: [{ cmd: 'SET', key: recordKey, args: [encode(record)] }] };
    }
    case 'protect': {
      if (!state.record) throw new ActorRejection('M_NOT_FOUND', 'No such media', 404);
      const { p: _p, ...rest } = state.record;
      const record: MediaRecord = body.on === true ? { ...rest, p: 1 } : rest;
      return { state: { ...state, record }, reply: { media_id: state.mediaId }, writes: [{ cmd: 'SET', key: recordKey, args: [encode(record)] }] };
    }
    case 'thumbnail': {
      if (!state.record) throw new ActorRejection('M_NOT_FOUND', 'No such media', 404);
      const t = body.thumb;
      if (!validThumb(t)) throw new ActorRejection('M_INVALID_PARAM', 'thumb must describe a stored thumbnail', 400);
      const existing = state.record.th ?? [];
      const same = existing.find((x) => x.bw === t.bw && x.bh === t.bh && x.m === t.m && (x.an ?? 0) === (t.an ?? 0));
      if (same || existing.length >= MAX_THUMBNAILS) return { state, reply: { added: false, ...(same ? { existing: same } : {}) } };
      const thumb: StoredThumbnail = { bw: t.bw, bh: t.bh, m: t.m, ...(t.an ? { an: 1 as const } : {}), w: t.w, h: t.h, t: t.t, s: t.s, c: t.c, r: t.r };
      const record: MediaRecord = { ...state.record, th: [...existing, thumb] };
      return { state: { ...state, record }, reply: { added: true }, writes: [{ cmd: 'SET', key: recordKey, args: [encode(record)] }] };
    }
    case 'delete': {
      if (!state.record) throw new ActorRejection('M_NOT_FOUND', 'No such media', 404);
      const r = state.record;
      const thumbs = (r.th ?? []).map((t) => ({ sha256: t.c, ref: t.r }));
      return { state: { ...state, record: null }, reply: { sha256: r.h, size: r.s, owner: r.o, ref: r.r, ...(r.m ? { remote: true } : {}), thumbs }, writes: [{ cmd: 'DEL', key: recordKey, args: [] }] };
    }
    default:
      throw new TypeError(`media: unknown op ${JSON.stringify((body as { op?: unknown } | undefined)?.op)}`);
  }
}

function validThumb(t: StoredThumbnail | undefined): t is StoredThumbnail {
  if (typeof t !== 'object' || t === null) return false;
  const dims = [t.bw, t.bh, t.w, t.h].every((v) => Number.isSafeInteger(v) && v >= 1 && v <= 100_000);
  return dims && (t.m === 'crop' || t.m === 'scale') && typeof t.t === 'string' && t.t.length <= 255 && Number.isSafeInteger(t.s) && t.s >= 0 && typeof t.c === 'string' && SHA256.test(t.c) && typeof t.r === 'string' && t.r.length > 0;
}

/** The record key is what fronts read, so the state is always loaded from it (and the reservation key). */
async function hydrateMedia(ctx: ShellContext, _stored: unknown, mediaId: string): Promise<MediaState> {
  const [blob, held] = await Promise.all([ctx.redis.getBuffer(ctx.keys.data(mediaData.record(mediaId))), ctx.redis.getBuffer(ctx.keys.data(mediaData.reservation(mediaId)))]);
  return { mediaId, record: blob ? decode<MediaRecord>(blob) : null, reservation: held ? decode<MediaReservation>(held) : null };
}

export function mediaActor(): ActorKind<MediaState, MediaMessage, MediaReply> {
  return {
    kind: 'media',
    family: 'user',
    initialState: emptyMedia,
    hydrate: hydrateMedia,
    // The record and reservation live under their own keys; the blob only marks that the actor ran.
    serialize: (s) => ({ mediaId: s.mediaId }),
    decide: decideMedia,
  };
}
