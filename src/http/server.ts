/**
 * The uWebSockets.js front: turns uWS's callback API into `handler(request) → response`, with
 * the parts every endpoint shares done once here: CORS, body size limit, strict JSON, Matrix
 * errors, request logging. Handlers never touch uWS objects (they are only valid synchronously
 * and must not be used after the client aborts).
 *
 * Every request has a deadline (`requestDeadlineMs` from when its handler starts; a long-poll adds
 * its wait with `allowWait`). At the deadline the request answers 503 `M_UNKNOWN` with
 * `Retry-After`, its `signal` aborts so the handler can stop, and whatever the handler answers
 * later is dropped. While the store is known to be unreachable (`storeReady`), requests to
 * handlers that need it answer that 503 at once instead of waiting out the deadline.
 */
import uWS from 'uWebSockets.js';
import type { Logger } from 'pino';
import { IncomingBody } from './incoming-body';
import { parseRange, type ByteRange } from './range';
import { JsonError, parseStrictJson, type JsonValue, type StrictJsonOptions } from '../protocol/json';
import { MatrixError, errors } from './errors';
import { Router, type Method } from './router';
import { PREFLIGHT_ENDPOINT, RequestMetrics, UNRECOGNIZED_ENDPOINT, methodLabel } from './request-metrics';
import { httpInFlightSources } from '../ops/metrics';

export interface Request {
  method: Method;
  path: string;
  /** Decoded query parameters; a repeated key keeps every value in `queryAll`. */
  query: Record<string, string>;
  queryAll: Record<string, string[]>;
  headers: Record<string, string>;
  /**
   * Every value of every header, in order (names lower-case): a header sent several times
   * (federation's `Authorization`, one per signing key) keeps each value here, where `headers`
   * keeps the last.
   */
  readonly headerValues: Record<string, string[]>;
  /** The query string exactly as received (no `?`; not decoded): X-Matrix signs it as sent. */
  rawQuery: string;
  params: Record<string, string>;
  /** The peer's address (read from the connection when first asked; '' once the request has ended). */
  readonly remoteAddress: string;
  body: Uint8Array;
  /**
   * The body as it arrives, for routes registered with `streamBody` (then `body` is empty): chunks
   * in order, read with backpressure (the socket is paused while the handler lags behind), ending
   * in an error if the body outgrows the route's limit or the client goes away. Reading it is what
   * lets the rest arrive: a handler that answers without reading it closes the connection.
   */
  bodyStream?: AsyncIterable<Uint8Array>;
  /**
   * Aborts when the client goes away before the answer or the request's deadline passes (long-polls
   * stop waiting at once; work still going on may stop too, its answer would be dropped), and when
   * the front drains for a planned stop (long-polls answer at once with what they have).
   */
  readonly signal: AbortSignal;
  /**
   * A long-poll that may wait `ms` before answering: its deadline moves to now + `ms` + the
   * front's request deadline (never earlier than it was).
   */
  allowWait(ms: number): void;
  /** Parse the body as strict JSON; throws the right MatrixError otherwise. */
  json(options?: StrictJsonOptions): JsonValue;
}

export interface Response {
  status?: number;
  /** Sent as JSON. */
  body?: unknown;
  /** Sent as it is, as `text/plain` (instead of `body`). */
  text?: string;
  /**
   * JSON text sent byte for byte as given, as `application/json` (instead of `body`): signed
   * documents whose receivers may check the bytes they got (key documents as canonical JSON).
   */
  rawJson?: string;
  headers?: Record<string, string>;
  /** Bytes sent as they are, as `contentType` (instead of `body`). */
  bytes?: Uint8Array;
  /**
   * A body read from storage as it is sent, as `contentType`: written with uWS backpressure (the
   * next chunk is read only once the socket took the last), so it never sits whole in memory.
   * Answers `Range` requests (one range: 206 with `Content-Range`; past the end: 416) and
   * `If-None-Match` (304) when `headers.ETag` is set; HEAD gets the headers only.
   */
  stream?: StreamBody;
  /** The `Content-Type` of `bytes` and `stream`. */
  contentType?: string;
}

export interface StreamBody {
  size: number;
  /** The bytes from `range` (inclusive), or all of them. Called once at most. */
  open(range?: ByteRange): Promise<AsyncIterable<Uint8Array>>;
  /** False: `Range` is ignored (a body built around the content, like a multipart answer). */
  ranges?: false;
}

export type Handler = (req: Request) => Response | Promise<Response>;

export interface FrontOptions {
  host: string;
  port: number;
  logger: Logger;
  /** Largest request body accepted (bytes). */
  maxBodyBytes?: number;
  /** A request not answered this long (ms) after its handler started answers 503 (default 15 s). */
  requestDeadlineMs?: number;
  /** False while the store (Redis) is known to be unreachable: requests that need it answer 503 at once. */
  storeReady?: () => boolean;
  /**
   * The Matrix error for a failure that is not a MatrixError (a Redis timeout, an actor that did not
   * answer), or null for a bug (500).
   */
  mapError?: (e: unknown) => MatrixError | null;
  /** Serve HTTPS with this PEM certificate chain and key (uWS SSLApp) instead of plain HTTP. */
  tls?: { certPath: string; keyPath: string };
  /** The `listener` label of this front's HTTP metrics (default `client`). */
  metricsListener?: string;
}

export interface RouteOptions {
  /** False for handlers that never touch the store (static answers, `/health`): served while it is unreachable. */
  needsStore?: boolean;
  /**
   * The handler reads the body itself from `req.bodyStream` as it arrives (uploads), up to this
   * many bytes: larger bodies answer 413 `M_TOO_LARGE` — before reading when `Content-Length`
   * says so, else as soon as the limit is passed. The request's deadline starts when the body has
   * arrived (a big upload on a slow link is not late).
   */
  streamBody?: { maxBytes: number };
}

const CORS_HEADERS: Record<string, string> = {
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Allow-Methods': 'GET, HEAD, POST, PUT, DELETE, OPTIONS',
  'Access-Control-Allow-Headers': 'X-Requested-With, Content-Type, Authorization, Date',
};

const CORS_ENTRIES = Object.entries(CORS_HEADERS);

const STATUS_TEXT: Record<number, string> = {
  200: '200 OK', 204: '204 No Content', 206: '206 Partial Content', 304: '304 Not Modified', 400: '400 Bad Request', 401: '401 Unauthorized', 403: '403 Forbidden',
  404: '404 Not Found', 405: '405 Method Not Allowed', 409: '409 Conflict', 413: '413 Payload Too Large',
  416: '416 Range Not Satisfiable', 429: '429 Too Many Requests', 500: '500 Internal Server Error', 502: '502 Bad Gateway', 503: '503 Service Unavailable',
  501: '501 Not Implemented', 504: '504 Gateway Timeout',
};

const METHODS_WITH_BODY = new Set(['PUT', 'POST', 'PATCH', 'DELETE']);
const DEFAULT_MAX_BODY = 1024 * 1024;
const DEFAULT_DEADLINE_MS = 15_000;
/**
 * An answer given while the request's body is still arriving (413 for a body over the limit, a
 * 401 before an upload's end) must not be followed by closing a socket the client still writes
 * to: the kernel then answers the unread bytes with a reset, which can destroy the answer before
 * the client has read it (the client sees ECONNRESET instead of the 413). So the rest of the body
 * is read and dropped, as nginx's lingering close does: with a Content-Length the answer goes out
 * at once and uWS drops the rest by its framing (the connection stays usable); a chunked body is
 * answered when it ends. Bounded: bodies announced larger than LINGER_MAX_BYTES, and chunked ones
 * still arriving after that many bytes or LINGER_MS, are answered with the connection closed.
 */
const LINGER_MAX_BYTES = 64 * 1024 * 1024;
const LINGER_MS = 10_000;

/**
 * A request's abort signal, made when a handler first asks for it: an AbortController costs a few
 * µs and some garbage, and most requests (a /send) never look at theirs. Aborted before anyone
 * asked, the signal is made already aborted, with the same reason.
 */
class LazyAbort {
  private controller: AbortController | null = null;
  private reason: unknown;
  aborted = false;

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.aborted) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }

  abort(reason?: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    this.controller?.abort(reason);
  }
}

/** The reason a request's signal aborts with at its deadline. */
export class DeadlineExceeded extends Error {
  constructor(ms: number) {
    super(`The request was not answered within ${ms} ms`);
    this.name = 'DeadlineExceeded';
  }
}

export class Front {
  readonly router = new Router<Handler>();
  private listenSocket: uWS.us_listen_socket | null = null;
  private readonly app: uWS.TemplatedApp;
  private readonly maxBody: number;
  private readonly deadlineMs: number;
  /** Handlers registered with `needsStore: false`. */
  private readonly storeFree = new WeakSet<Handler>();
  /** Handlers registered with `streamBody`, and their limits. */
  private readonly streaming = new WeakMap<Handler, { maxBytes: number }>();
  /** Requests whose handler is running (for status and shutdown). */
  private running = 0;
  /** Set by `drain`: answers close their connection, long-polls answer now. */
  private draining = false;
  private readonly shutdown = new AbortController();
  /**
   * The abort controllers of requests not yet answered: `drain` aborts them. (One signal per
   * request, not `AbortSignal.any` of it and the shutdown's: in Node 20 that costs ~40 µs and a
   * weak reference per request — measured 4.6 s against 0.7 s for 100,000 — on every /sync poll
   * and /send.) A handler still working after its answer is not aborted by a drain.
   */
  private readonly unanswered = new Set<LazyAbort>();
  private readonly metrics: RequestMetrics;
  private removeInFlightSource: (() => void) | null = null;

  constructor(private readonly opts: FrontOptions) {
    this.maxBody = opts.maxBodyBytes ?? DEFAULT_MAX_BODY;
    this.deadlineMs = opts.requestDeadlineMs ?? DEFAULT_DEADLINE_MS;
    this.app = opts.tls ? uWS.SSLApp({ cert_file_name: opts.tls.certPath, key_file_name: opts.tls.keyPath }) : uWS.App();
    this.app.any('/*', (res, req) => this.onRequest(res, req));
    this.metrics = new RequestMetrics(opts.metricsListener ?? 'client');
  }

  route(method: Method, pattern: string, handler: Handler, options: RouteOptions = {}): this {
    if (options.needsStore === false) this.storeFree.add(handler);
    if (options.streamBody) this.streaming.set(handler, options.streamBody);
    this.router.add(method, pattern, handler);
    return this;
  }

  /** Every route's method and pattern (to mirror another front's paths). */
  routePatterns(): { method: Method; pattern: string }[] {
    return this.router.patterns();
  }

  /** Requests whose handler has started and not yet answered. */
  get inFlight(): number {
    return this.running;
  }

  /**
   * Serve `pattern` with the handler already registered for `existing` (same parameter names):
   * for the unstable and legacy paths clients still call for endpoints the spec has since moved.
   */
  alias(method: Method, pattern: string, existing: string): this {
    const handler = this.router.handlerOf(method, existing);
    if (!handler) throw new Error(`alias ${pattern}: no ${method} ${existing} registered`);
    return this.route(method, pattern, handler);
  }

  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.app.listen(this.opts.host, this.opts.port, (socket) => {
        if (!socket) return reject(new Error(`Could not listen on ${this.opts.host}:${this.opts.port} (in use?)`));
        this.listenSocket = socket;
        const listener = this.opts.metricsListener ?? 'client';
        this.removeInFlightSource ??= httpInFlightSources.add(() => [{ labels: { listener }, value: this.running }]);
        resolve(uWS.us_socket_local_port(socket));
      });
    });
  }

  close(): void {
    if (this.listenSocket) uWS.us_listen_socket_close(this.listenSocket);
    this.listenSocket = null;
    this.removeInFlightSource?.();
    this.removeInFlightSource = null;
  }

  /**
   * A planned stop without failing anyone: stop accepting connections (other processes on the
   * port take the new ones), end long-polls now with what they have, answer every request still
   * in flight with its connection closed (clients reconnect to a live process), then close what
   * remains — idle keep-alive connections — once nothing is in flight or `graceMs` has passed.
   */
  async drain(graceMs = 10_000): Promise<void> {
    this.draining = true;
    this.close();
    this.shutdown.abort();
    for (const a of this.unanswered) a.abort();
    this.unanswered.clear();
    const deadline = Date.now() + graceMs;
    while (this.running > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    (this.app as { close?: () => void }).close?.();
    this.removeInFlightSource?.();
    this.removeInFlightSource = null;
  }

  private onRequest(res: uWS.HttpResponse, uReq: uWS.HttpRequest): void {
    const started = performance.now();
    const method = uReq.getCaseSensitiveMethod().toUpperCase() as Method;
    const path = uReq.getUrl();
    const metricMethod = methodLabel(method);
    // The endpoint group, known once routed (src/http/request-metrics.ts).
    let endpoint = UNRECOGNIZED_ENDPOINT;
    const recordAnswer = (code: string) => this.metrics.answered(metricMethod, endpoint, code, (performance.now() - started) / 1000);
    const rawQuery = uReq.getQuery() ?? '';
    const headers: Record<string, string> = {};
    // Headers sent more than once, every value in order (federation's `Authorization`); the rest
    // have one value each, so `headerValues` is made from `headers` only if a handler asks.
    let repeated: Record<string, string[]> | null = null;
    uReq.forEach((k, v) => {
      const before = headers[k];
      if (before !== undefined) ((repeated ??= {})[k] ??= [before]).push(v);
      headers[k] = v;
    });
    let headerValues: Record<string, string[]> | null = null;
    const headerValuesOf = (): Record<string, string[]> => {
      if (headerValues) return headerValues;
      headerValues = {};
      for (const k of Object.keys(headers)) headerValues[k] = repeated?.[k] ?? [headers[k]!];
      return headerValues;
    };
    // `done`: answered, or the client went away. Anything a handler answers after that is dropped.
    let done = false;
    let deadline: NodeJS.Timeout | null = null;
    let handlerRunning = false;
    const abort = new LazyAbort();
    if (this.shutdown.signal.aborted) abort.abort();
    else this.unanswered.add(abort);
    // The peer's address, read from uWS only when asked for (a handler that rate-limits or records
    // it, or a request log at `info`): not on every /sync poll and /send. `res` may be used only
    // until the answer or the client's abort, so later asks get ''.
    let remote: string | null = null;
    const remoteAddressOf = (): string => (remote ??= done ? '' : Buffer.from(res.getRemoteAddressAsText()).toString());
    const finish = () => {
      done = true;
      this.unanswered.delete(abort);
      if (deadline) clearTimeout(deadline);
      deadline = null;
      if (handlerRunning) {
        handlerRunning = false;
        this.running--;
      }
    };
    // The client went away: `res` must not be touched any more.
    let gone = false;
    res.onAborted(() => {
      gone = true;
      if (!done) recordAnswer('aborted');
      finish();
      abort.abort();
      lingering = null;
    });
    const log = this.opts.logger;

    // A streamed request body (uploads): dropped once the answer goes out.
    let bodyPending: IncomingBody | null = null;
    // A request body is expected (onData registered) and its last chunk has not come yet: an
    // answer now lingers (LINGER_MAX_BYTES).
    let bodyExpected = false;
    let lastSeen = false;
    const declared = headers['content-length'] === undefined ? null : Number(headers['content-length']);
    // While a chunked body's refusal waits for the body's end: takes what still arrives.
    let lingering: ((bytes: number, isLast: boolean) => void) | null = null;
    const onBodyChunk = (bytes: number, isLast: boolean): boolean => {
      if (isLast) lastSeen = true;
      if (!lingering) return false;
      lingering(bytes, isLast);
      return true;
    };
    const send = (r: Response) => {
      if (done) return;
      const remoteAddress = log.isLevelEnabled('info') ? remoteAddressOf() : undefined;
      finish();
      const status = r.status ?? 200;
      recordAnswer(String(status));
      if (r.stream) return this.sendStream(res, method, headers, r, r.stream, abort.signal, () => log.info({ method, path, status: r.status ?? 200, ms: Math.round((performance.now() - started) * 100) / 100, ip: remoteAddress }, 'request'));
      const text = r.text !== undefined;
      const body = r.bytes ?? (text ? r.text! : r.rawJson !== undefined ? r.rawJson : r.body === undefined ? '{}' : JSON.stringify(r.body));
      const contentType = r.bytes ? (r.contentType ?? 'application/octet-stream') : text ? 'text/plain; charset=utf-8' : 'application/json';
      bodyPending?.discard();
      const write = (close: boolean) => {
        if (gone) return;
        res.cork(() => {
          res.writeStatus(STATUS_TEXT[status] ?? String(status));
          res.writeHeader('Content-Type', contentType);
          for (const [k, v] of CORS_ENTRIES) res.writeHeader(k, v);
          if (r.headers) for (const k of Object.keys(r.headers)) res.writeHeader(k, r.headers[k]!);
          // While draining, the answer closes its connection so the client's next request goes
          // to a process that stays.
          res.end(method === 'HEAD' ? '' : body, close);
        });
        log.info({ method, path, status, ms: Math.round((performance.now() - started) * 100) / 100, ip: remoteAddress }, 'request');
      };
      const arriving = bodyExpected && !lastSeen;
      if (!arriving || this.draining) return write(this.draining);
      // The body is still arriving (LINGER_MAX_BYTES): with a Content-Length, answer now and let
      // uWS drop the rest; chunked, answer when it ends (or close past the bounds).
      if (declared !== null) return write(declared > LINGER_MAX_BYTES);
      let dropped = 0;
      const timer = setTimeout(() => {
        lingering = null;
        write(true);
      }, LINGER_MS);
      timer.unref?.();
      lingering = (bytes, isLast) => {
        dropped += bytes;
        if (!isLast && dropped <= LINGER_MAX_BYTES) return;
        lingering = null;
        clearTimeout(timer);
        write(!isLast);
      };
    };
    const fail = (e: unknown) => {
      if (done) {
        // Answered already (the deadline) or the client left: the handler's failure changes nothing.
        if (!(e instanceof MatrixError)) log.debug({ err: e, method, path }, 'handler failed after the request ended');
        return;
      }
      if (e instanceof MatrixError) return send({ status: e.status, body: e.toJSON(), headers: e.headers });
      const mapped = this.opts.mapError?.(e);
      if (mapped) {
        log.warn({ err: e, method, path, status: mapped.status }, 'request failed');
        return send({ status: mapped.status, body: mapped.toJSON(), headers: mapped.headers });
      }
      log.error({ err: e, method, path }, 'handler failed');
      send({ status: 500, body: errors.unknown().toJSON() });
    };
    const armDeadline = (ms: number) => {
      if (done) return;
      if (deadline) clearTimeout(deadline);
      deadline = setTimeout(() => {
        deadline = null;
        if (done) return;
        log.warn({ method, path, ms: Math.round(performance.now() - started) }, 'request deadline passed');
        const reason = new DeadlineExceeded(Math.round(performance.now() - started));
        fail(errors.unavailable('The server could not answer in time; try again'));
        abort.abort(reason);
      }, ms);
    };

    if (method === 'OPTIONS') {
      endpoint = PREFLIGHT_ENDPOINT;
      this.metrics.received(metricMethod, endpoint);
      return send({ status: 200, body: {} });
    }
    const routed = this.router.match(method, path);
    if (routed.kind === 'match') endpoint = this.metrics.group(routed.match.pattern);
    this.metrics.received(metricMethod, endpoint);
    if (routed.kind === 'none') return fail(errors.unrecognized());
    if (routed.kind === 'wrong-method') return fail(errors.methodNotAllowed());

    const { handler, params } = routed.match;
    const { query, queryAll } = parseQuery(rawQuery);
    const needsStore = !this.storeFree.has(handler);
    const streamLimit = this.streaming.get(handler);
    const run = (body: Uint8Array, bodyStream?: IncomingBody) => {
      if (done) return;
      if (needsStore && this.opts.storeReady && !this.opts.storeReady()) return fail(errors.unavailable('The server cannot reach its database right now; try again shortly'));
      let deadlineAt = performance.now() + this.deadlineMs;
      const request: Request = {
        method, path, query, queryAll, headers, rawQuery, params, body, bodyStream,
        get headerValues() {
          return headerValuesOf();
        },
        get signal() {
          return abort.signal;
        },
        get remoteAddress() {
          return remoteAddressOf();
        },
        allowWait: (ms) => {
          const at = performance.now() + Math.max(0, ms) + this.deadlineMs;
          if (at <= deadlineAt) return;
          deadlineAt = at;
          armDeadline(at - performance.now());
        },
        json(options) {
          if (body.length === 0) throw errors.notJson('Request body is empty');
          try {
            return parseStrictJson(body, options);
          } catch (e) {
            if (e instanceof JsonError) throw new MatrixError(400, e.errcode, e.message);
            throw e;
          }
        },
      };
      handlerRunning = true;
      this.running++;
      // A streamed body's deadline starts once it has all arrived (IncomingBody's onEnd).
      if (!bodyStream) armDeadline(this.deadlineMs);
      try {
        const out = handler(request);
        if (out instanceof Promise) out.then(send, fail);
        else send(out);
      } catch (e) {
        fail(e);
      }
    };

    if (!METHODS_WITH_BODY.has(method)) return run(new Uint8Array(0));
    const maxBody = streamLimit?.maxBytes ?? this.maxBody;
    bodyExpected = true;
    if ((declared ?? 0) > maxBody) {
      // Refused from its headers: what of the body still comes is dropped (LINGER_MAX_BYTES).
      res.onData((chunk, isLast) => void onBodyChunk(chunk.byteLength, isLast));
      return fail(errors.tooLarge(`Request body exceeds ${maxBody} bytes`));
    }
    if (streamLimit) {
      const incoming = new IncomingBody(res, maxBody, () => armDeadline(this.deadlineMs));
      bodyPending = incoming;
      res.onData((chunk, isLast) => {
        if (onBodyChunk(chunk.byteLength, isLast) || done) return;
        const err = incoming.push(chunk, isLast);
        if (err) fail(err);
      });
      abort.signal.addEventListener('abort', () => incoming.abort(), { once: true });
      return run(new Uint8Array(0), incoming);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let rejected = false;
    res.onData((chunk, isLast) => {
      if (onBodyChunk(chunk.byteLength, isLast) || rejected) return;
      size += chunk.byteLength;
      if (size > maxBody) {
        rejected = true;
        return fail(errors.tooLarge(`Request body exceeds ${maxBody} bytes`));
      }
      // uWS reuses the chunk's memory after this callback returns: copy it.
      chunks.push(Buffer.from(new Uint8Array(chunk).slice()));
      if (isLast) run(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
    });
  }

  /**
   * Answer with a body read from storage: status and headers, then chunk after chunk with
   * `tryEnd`, waiting for `onWritable` whenever uWS could not take all of one (the socket's send
   * buffer is full), so a slow client slows the reading instead of filling memory. A client
   * that goes away stops the reading (the iterator is returned).
   */
  private sendStream(res: uWS.HttpResponse, method: Method, reqHeaders: Record<string, string>, r: Response, body: StreamBody, aborted: AbortSignal, logDone: () => void): void {
    const headers: Record<string, string> = { ...CORS_HEADERS, 'Content-Type': r.contentType ?? 'application/octet-stream', 'Accept-Ranges': 'bytes', ...(r.headers ?? {}) };
    let status = r.status ?? 200;
    let range: ByteRange | undefined;
    const etag = headers.ETag;
    const head = (extra: Record<string, string> = {}) => {
      res.writeStatus(STATUS_TEXT[status] ?? String(status));
      for (const [k, v] of Object.entries({ ...headers, ...extra })) res.writeHeader(k, v);
    };
    if (etag && reqHeaders['if-none-match'] && reqHeaders['if-none-match'].split(',').some((t) => t.trim() === etag || t.trim() === '*')) {
      status = 304;
      res.cork(() => {
        head();
        res.endWithoutBody(0, this.draining);
      });
      return logDone();
    }
    if (status === 200 && reqHeaders.range && body.ranges !== false) {
      const parsed = parseRange(reqHeaders.range, body.size);
      if (parsed === 'unsatisfiable') {
        status = 416;
        res.cork(() => {
          res.writeStatus(STATUS_TEXT[416]!);
          for (const [k, v] of Object.entries(CORS_HEADERS)) res.writeHeader(k, v);
          res.writeHeader('Content-Type', 'application/json');
          res.writeHeader('Content-Range', `bytes */${body.size}`);
          res.end(method === 'HEAD' ? '' : JSON.stringify({ errcode: 'M_UNKNOWN', error: `Range not satisfiable: the content is ${body.size} bytes` }), this.draining);
        });
        return logDone();
      }
      if (parsed) {
        range = parsed;
        status = 206;
        headers['Content-Range'] = `bytes ${parsed.start}-${parsed.end}/${body.size}`;
      }
    }
    const total = range ? range.end - range.start + 1 : body.size;
    if (method === 'HEAD' || total === 0) {
      res.cork(() => {
        head();
        if (total === 0) res.end('', this.draining);
        else res.endWithoutBody(total, this.draining);
      });
      return logDone();
    }
    void (async () => {
      let gone = aborted.aborted;
      const onAbort = () => {
        gone = true;
      };
      aborted.addEventListener('abort', onAbort);
      let iterator: AsyncIterator<Uint8Array> | undefined;
      let started = false;
      try {
        iterator = (await body.open(range))[Symbol.asyncIterator]();
        if (gone) return;
        res.cork(() => head());
        started = true;
        let sent = 0;
        for (;;) {
          const next = await iterator.next();
          if (gone) return;
          if (next.done) break;
          const chunk = next.value;
          if (sent + chunk.byteLength > total) throw new Error(`stream body: more than the ${total} bytes announced`);
          sent += chunk.byteLength;
          const before = res.getWriteOffset();
          let finished = false;
          let ok = false;
          res.cork(() => {
            [ok, finished] = res.tryEnd(chunk, total);
          });
          if (finished) return;
          if (ok) continue;
          // Backpressure: uWS took part of the chunk; the rest goes when the socket drains.
          const drained = await new Promise<boolean>((resolve) => {
            const stop = () => resolve(false);
            aborted.addEventListener('abort', stop, { once: true });
            res.onWritable((offset) => {
              if (gone) {
                resolve(false);
                return true;
              }
              const [ok2, finished2] = res.tryEnd(chunk.subarray(offset - before), total);
              if (finished2 || ok2) {
                aborted.removeEventListener('abort', stop);
                resolve(!finished2);
              }
              return ok2;
            });
          });
          if (!drained) return;
        }
        if (sent < total && !gone) throw new Error(`stream body: ${sent} of the ${total} bytes announced`);
      } catch (err) {
        this.opts.logger.error({ err, method }, 'streaming a response failed');
        // Headers may be out already: the only honest answer left is to cut the connection.
        if (!gone) {
          if (!started) {
            res.cork(() => {
              res.writeStatus(STATUS_TEXT[500]!);
              for (const [k, v] of Object.entries(CORS_HEADERS)) res.writeHeader(k, v);
              res.writeHeader('Content-Type', 'application/json');
              res.end(JSON.stringify(errors.unknown().toJSON()), true);
            });
          } else res.close();
        }
      } finally {
        aborted.removeEventListener('abort', onAbort);
        await iterator?.return?.().catch(() => undefined);
        logDone();
      }
    })();
  }
}

function parseQuery(raw: string): { query: Record<string, string>; queryAll: Record<string, string[]> } {
  const query: Record<string, string> = {};
  const queryAll: Record<string, string[]> = {};
  if (!raw) return { query, queryAll };
  for (const [k, v] of new URLSearchParams(raw)) {
    if (!(k in query)) query[k] = v;
    (queryAll[k] ??= []).push(v);
  }
  return { query, queryAll };
}
