/**
 * Integration points of the media endpoints that other modules fill: thumbnails
 * (src/media/thumbnail-service.ts over src/media/thumbnails.ts) and URL previews
 * (src/media/preview-service.ts over src/media/preview/). Without them (configured off) the
 * endpoints say honestly that the server does not make them.
 */
import type { StoredThumbnail } from '../../actors/media';
import type { ByteRange } from '../http/range';
import type { MediaRepository } from './repository';
import type { RemoteMediaFetcher } from './remote';

/** What the media endpoints need on the API context. */
export interface MediaServices {
  repository: MediaRepository;
  /** Absent until the thumbnail module is wired: the thumbnail endpoints answer 501. */
  thumbnailer?: Thumbnailer;
  /** Absent while URL previews are off: preview_url answers 404 M_UNRECOGNIZED. */
  previewer?: UrlPreviewer;
  /** Called once an upload is recorded (and about to be answered): queues its pre-generated thumbnails. Never throws. */
  afterUpload?(mediaId: string, contentType: string): void;
  /** Other servers' media over federation (src/media/remote.ts); absent when federation is off: 404 then. */
  remote?: RemoteMediaFetcher;
}

/** A stored media item as a thumbnailer sees it. */
export interface MediaSource {
  mediaId: string;
  contentType: string;
  size: number;
  sha256: string;
  /** Thumbnails recorded for it already. */
  thumbnails: readonly StoredThumbnail[];
  /** The item's bytes (streamed). */
  open(range?: ByteRange): Promise<AsyncIterable<Uint8Array>>;
}

export interface ThumbnailRequest {
  width: number;
  height: number;
  method: 'crop' | 'scale';
  animated: boolean;
}

/** A thumbnail ready to send. */
export interface Thumbnail {
  contentType: string;
  size: number;
  open(range?: ByteRange): Promise<AsyncIterable<Uint8Array>>;
}

export interface Thumbnailer {
  /** A thumbnail of `source`, or null when it cannot have one (not an image): the endpoint answers 400 then. Throws MatrixErrors (too large, busy). */
  thumbnail(source: MediaSource, request: ThumbnailRequest): Promise<Thumbnail | null>;
}

export interface UrlPreviewer {
  /** The OpenGraph object of `url` as of about `ts` (ms), for `requester`. Throws a MatrixError when it cannot. */
  preview(url: string, ts: number | undefined, requester: string): Promise<Record<string, unknown>>;
}
