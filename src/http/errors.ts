/** Matrix errors: every failure a client sees is `{"errcode": "M_…", "error": "…"}` with the right status. */

export class MatrixError extends Error {
  constructor(
    readonly status: number,
    readonly errcode: string,
    message: string,
    /** Extra fields the spec adds to some errors (`retry_after_ms`, `soft_logout`, …). */
    readonly extra: Record<string, unknown> = {},
    /** Extra response headers (`Retry-After`, …). */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'MatrixError';
    // 503 and 504 mean "not now": tell the client when to try again, whichever handler made them.
    if ((status === 503 || status === 504) && !Object.keys(headers).some((k) => k.toLowerCase() === 'retry-after')) {
      this.headers = { ...headers, 'Retry-After': String(UNAVAILABLE_RETRY_AFTER_S) };
    }
  }

  toJSON(): Record<string, unknown> {
    return { errcode: this.errcode, error: this.message, ...this.extra };
  }
}

/** Seconds a client is told to wait (`Retry-After`) when the server cannot answer for now. */
export const UNAVAILABLE_RETRY_AFTER_S = 2;

export const errors = {
  unrecognized: (message = 'Unrecognized request') => new MatrixError(404, 'M_UNRECOGNIZED', message),
  methodNotAllowed: () => new MatrixError(405, 'M_UNRECOGNIZED', 'Method not allowed'),
  notFound: (message = 'Not found') => new MatrixError(404, 'M_NOT_FOUND', message),
  notJson: (message = 'Content not JSON') => new MatrixError(400, 'M_NOT_JSON', message),
  badJson: (message: string) => new MatrixError(400, 'M_BAD_JSON', message),
  tooLarge: (message = 'Request too large') => new MatrixError(413, 'M_TOO_LARGE', message),
  invalidParam: (message: string) => new MatrixError(400, 'M_INVALID_PARAM', message),
  missingParam: (message: string) => new MatrixError(400, 'M_MISSING_PARAM', message),
  unknown: (message = 'Internal server error') => new MatrixError(500, 'M_UNKNOWN', message),
  /** 503 with `Retry-After`: the server cannot do this now (its database is unreachable, the request ran out of time); the same request may succeed later. */
  unavailable: (message = 'The server cannot answer right now; try again shortly') => new MatrixError(503, 'M_UNKNOWN', message, {}, { 'Retry-After': String(UNAVAILABLE_RETRY_AFTER_S) }),
};
