/**
 * Typed failures of the media image and preview modules. Each carries the Matrix error an endpoint
 * should answer with (`errcode`, `httpStatus`), so a route maps them with one `instanceof
 * MediaProcessingError` and never turns them into a 500. The messages are safe to show a client:
 * they name sizes and types, never server paths or internal addresses.
 */

export abstract class MediaProcessingError extends Error {
  abstract readonly errcode: string;
  abstract readonly httpStatus: number;
}

/** The width/height/method of a thumbnail request make no sense (spec: 400). */
export class InvalidThumbnailRequestError extends MediaProcessingError {
  override name = 'InvalidThumbnailRequestError';
  readonly errcode = 'M_INVALID_PARAM';
  readonly httpStatus = 400;
}

/**
 * The content is not an image we thumbnail: SVG (scriptable, rendered by a large parser), PDF,
 * video, a declared type Synapse does not thumbnail, or bytes no allowed decoder recognises.
 * The spec's answer for "the server cannot thumbnail the content" is a 400.
 */
export class UnsupportedImageError extends MediaProcessingError {
  override name = 'UnsupportedImageError';
  readonly errcode = 'M_UNKNOWN';
  readonly httpStatus = 400;
}

/**
 * The image declares more pixels than we decode (a decompression bomb, or just a huge image).
 * Raised from the header alone, before any pixel is decoded.
 */
export class ImageTooLargeError extends MediaProcessingError {
  override name = 'ImageTooLargeError';
  readonly errcode = 'M_TOO_LARGE';
  readonly httpStatus = 400;
  constructor(
    readonly width: number,
    readonly height: number,
    readonly pixels: number,
    readonly maxPixels: number,
  ) {
    super(`Image of ${width}x${height} (${pixels} pixels) exceeds the limit of ${maxPixels} pixels`);
  }
}

/** The source bytes (a stream handed to the thumbnailer) exceed the configured maximum. */
export class SourceTooLargeError extends MediaProcessingError {
  override name = 'SourceTooLargeError';
  readonly errcode = 'M_TOO_LARGE';
  readonly httpStatus = 400;
}

/** The image header parsed but decoding or encoding failed (truncated, corrupt, or over the time limit). */
export class ImageProcessingFailedError extends MediaProcessingError {
  override name = 'ImageProcessingFailedError';
  readonly errcode = 'M_UNKNOWN';
  readonly httpStatus = 400;
}

/** Too many thumbnails are already waiting: answer 429 so the client retries instead of queueing forever. */
export class ThumbnailerBusyError extends MediaProcessingError {
  override name = 'ThumbnailerBusyError';
  readonly errcode = 'M_LIMIT_EXCEEDED';
  readonly httpStatus = 429;
  readonly retryAfterMs = 1000;
}

/** Why a URL preview could not be made. `reason` is for logs and tests; clients get errcode/status. */
export type PreviewFailureReason =
  | 'bad-url' // not http(s), unparseable, credentials in the URL, bad port
  | 'blocked' // the host is, or resolves to, an address in the blocklist (SSRF defence)
  | 'dns' // the name does not resolve
  | 'connect' // connection refused / reset / TLS failure
  | 'timeout' // no complete answer within the time limit
  | 'too-large' // the body exceeds the size limit (and cannot be cut, e.g. an image)
  | 'too-many-redirects'
  | 'http-status'; // the remote answered with a non-2xx status

/**
 * A URL could not be previewed. Synapse answers these with 502 (the remote misbehaved) except
 * a blocked address, which it reports as 403 M_UNKNOWN "IP address blocked"; a bad URL is 400.
 */
export class UrlPreviewError extends MediaProcessingError {
  override name = 'UrlPreviewError';
  readonly errcode: string;
  readonly httpStatus: number;
  constructor(
    readonly reason: PreviewFailureReason,
    message: string,
    /** For 'http-status': the remote's status. */
    readonly remoteStatus?: number,
  ) {
    super(message);
    switch (reason) {
      case 'bad-url':
        this.errcode = 'M_INVALID_PARAM';
        this.httpStatus = 400;
        break;
      case 'blocked':
        this.errcode = 'M_UNKNOWN';
        this.httpStatus = 403;
        break;
      case 'too-large':
        this.errcode = 'M_TOO_LARGE';
        this.httpStatus = 502;
        break;
      default:
        this.errcode = 'M_UNKNOWN';
        this.httpStatus = 502;
    }
  }
}
