/**
 * The uWebSockets.js front: turns uWS's callback API into `handler(request) → response`, with
 * the parts every endpoint shares done once here: CORS, body size limit, strict JSON, Matrix
 * errors, request logging. Handlers never touch uWS objects (they are only valid synchronously
 * and must not be used after the client aborts).
 */
import uWS from 'uWebSockets.js';
import type { Logger } from 'pino';
import { JsonError, parseStrictJson, type JsonValue, type StrictJsonOptions } from '../protocol/json';
import { MatrixError, errors } from './errors';
import { Router, type Method } from './router';

export interface Request {
  method: Method;
  path: string;
  /** Decoded query parameters; a repeated key keeps every value in `queryAll`. */
  query: Record<string, string>;
  queryAll: Record<string, string[]>;
  headers: Record<string, string>;
  params: Record<string, string>;
  remoteAddress: string;
  body: Uint8Array;
  /**
   * Aborts when the client goes away before the answer, or when the front drains for a planned
   * stop: long-polls stop waiting at once (and answer, unless their client is gone).
   */
  signal: AbortSignal;
  /** Parse the body as strict JSON; throws the right MatrixError otherwise. */
  json(options?: StrictJsonOptions): JsonValue;
}

export interface Response {
  status?: number;
  body?: unknown;
  headers?: Record<string, string>;
}

export type Handler = (req: Request) => Response | Promise<Response>;

export interface FrontOptions {
  host: string;
  port: number;
  logger: Logger;
  /** Largest request body accepted (bytes). */
  maxBodyBytes?: number;
}

const CORS_HEADERS: Record<string, string> = {
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Allow-Methods': 'GET, HEAD, POST, PUT, DELETE, OPTIONS',
  'Access-Control-Allow-Headers': 'X-Requested-With, Content-Type, Authorization, Date',
};

const STATUS_TEXT: Record<number, string> = {
  200: '200 OK', 204: '204 No Content', 400: '400 Bad Request', 401: '401 Unauthorized', 403: '403 Forbidden',
  404: '404 Not Found', 405: '405 Method Not Allowed', 409: '409 Conflict', 413: '413 Payload Too Large',
  429: '429 Too Many Requests', 500: '500 Internal Server Error', 502: '502 Bad Gateway', 503: '503 Service Unavailable',
  504: '504 Gateway Timeout',
};

const METHODS_WITH_BODY = new Set(['PUT', 'POST', 'PATCH', 'DELETE']);
const DEFAULT_MAX_BODY = 1024 * 1024;

export class Front {
  readonly router = new Router<Handler>();
  private listenSocket: uWS.us_listen_socket | null = null;
  private readonly app: uWS.TemplatedApp;
  private readonly maxBody: number;
  /** Requests received and not yet answered (or abandoned by their client). */
  private inFlight = 0;
  /** Set by `drain`: answers close their connection, long-polls answer now. */
  private draining = false;
  private readonly shutdown = new AbortController();

  constructor(private readonly opts: FrontOptions) {
    this.maxBody = opts.maxBodyBytes ?? DEFAULT_MAX_BODY;
    this.app = uWS.App();
    this.app.any('/*', (res, req) => this.onRequest(res, req));
  }

  route(method: Method, pattern: string, handler: Handler): this {
    this.router.add(method, pattern, handler);
    return this;
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
        resolve(uWS.us_socket_local_port(socket));
      });
    });
  }

  close(): void {
    if (this.listenSocket) uWS.us_listen_socket_close(this.listenSocket);
    this.listenSocket = null;
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
    const deadline = Date.now() + graceMs;
    while (this.inFlight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    (this.app as { close?: () => void }).close?.();
  }

  private onRequest(res: uWS.HttpResponse, uReq: uWS.HttpRequest): void {
    const started = performance.now();
    const method = uReq.getCaseSensitiveMethod().toUpperCase() as Method;
    const path = uReq.getUrl();
    const rawQuery = uReq.getQuery() ?? '';
    const headers: Record<string, string> = {};
    uReq.forEach((k, v) => {
      headers[k] = v;
    });
    let aborted = false;
    let answered = false;
    const abort = new AbortController();
    this.inFlight++;
    const finish = () => {
      if (answered) return;
      answered = true;
      this.inFlight--;
    };
    res.onAborted(() => {
      aborted = true;
      finish();
      abort.abort();
    });
    const remoteAddress = Buffer.from(res.getRemoteAddressAsText()).toString();
    const log = this.opts.logger;

    const send = (r: Response) => {
      if (aborted || answered) return;
      finish();
      const status = r.status ?? 200;
      const body = r.body === undefined ? '{}' : JSON.stringify(r.body);
      res.cork(() => {
        res.writeStatus(STATUS_TEXT[status] ?? String(status));
        res.writeHeader('Content-Type', 'application/json');
        for (const [k, v] of Object.entries(CORS_HEADERS)) res.writeHeader(k, v);
        for (const [k, v] of Object.entries(r.headers ?? {})) res.writeHeader(k, v);
        // While draining, the answer closes its connection so the client's next request goes
        // to a process that stays.
        res.end(method === 'HEAD' ? '' : body, this.draining);
      });
      log.info({ method, path, status, ms: Math.round((performance.now() - started) * 100) / 100, ip: remoteAddress }, 'request');
    };
    const fail = (e: unknown) => {
      if (e instanceof MatrixError) return send({ status: e.status, body: e.toJSON(), headers: e.headers });
      log.error({ err: e, method, path }, 'handler failed');
      send({ status: 500, body: errors.unknown().toJSON() });
    };

    if (method === 'OPTIONS') return send({ status: 200, body: {} });
    const routed = this.router.match(method, path);
    if (routed.kind === 'none') return fail(errors.unrecognized());
    if (routed.kind === 'wrong-method') return fail(errors.methodNotAllowed());

    const { handler, params } = routed.match;
    const { query, queryAll } = parseQuery(rawQuery);
    const run = (body: Uint8Array) => {
      const request: Request = {
        method, path, query, queryAll, headers, params, remoteAddress, body, signal: AbortSignal.any([abort.signal, this.shutdown.signal]),
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
      try {
        const out = handler(request);
        if (out instanceof Promise) out.then(send, fail);
        else send(out);
      } catch (e) {
        fail(e);
      }
    };

    if (!METHODS_WITH_BODY.has(method)) return run(new Uint8Array(0));
    const declared = Number(headers['content-length'] ?? '0');
    if (declared > this.maxBody) return fail(errors.tooLarge(`Request body exceeds ${this.maxBody} bytes`));
    const chunks: Buffer[] = [];
    let size = 0;
    let rejected = false;
    res.onData((chunk, isLast) => {
      if (rejected) return;
      size += chunk.byteLength;
      if (size > this.maxBody) {
        rejected = true;
        return fail(errors.tooLarge(`Request body exceeds ${this.maxBody} bytes`));
      }
      // uWS reuses the chunk's memory after this callback returns: copy it.
      chunks.push(Buffer.from(new Uint8Array(chunk).slice()));
      if (isLast) run(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
    });
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
