/**
 * The outbound federation client: the only code that calls peers. Every request goes
 *   destination → discovery (discovery.ts: IP literal, port, .well-known, SRV, 8448)
 *   → for each target in order: resolve (A/AAAA) through a `lookup` that drops addresses in the
 *     IP blocklist (so DNS cannot point us at internal services; IP literals are checked too)
 *   → TLS with certificates checked against the system roots plus `federation.caPaths`, for the
 *     name discovery says (SNI only for hostnames), one keep-alive agent per destination
 *   → `Authorization: X-Matrix …` signed with our key for the destination's server name
 *   → an answer within the connect and total timeouts, under the size limit, as strict JSON;
 *     redirects are not followed (a federation endpoint does not move).
 * Requests to one destination are bounded (MAX_IN_FLIGHT_PER_DESTINATION, the rest queue).
 * Failures are typed (errors.ts). Each request is logged with destination, method, path, status, ms.
 */
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { readFileSync } from 'node:fs';
import { Agent, request as httpsRequest } from 'node:https';
import { request as httpRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { checkServerIdentity, rootCertificates, type PeerCertificate } from 'node:tls';
import type { Logger } from 'pino';
import type { SigningKey } from '../protocol/crypto';
import { isAddressAllowed, type IpRangeSet } from '../protocol/ip-ranges';
import { JsonError, parseStrictJson, type JsonObject, type JsonValue } from '../protocol/json';
import { signRequest } from '../protocol/server-auth';
import { WELL_KNOWN_MAX_BODY_BYTES, WELL_KNOWN_MAX_REDIRECTS, formatHostPort, type ConnectionTarget, type WellKnownHttpAnswer } from '../protocol/server-names';
import { Discovery, type SrvResolver } from './discovery';
import {
  FederationBadResponseError,
  FederationBlockedError,
  FederationError,
  FederationNetworkError,
  FederationRemoteError,
  FederationTimeoutError,
} from './errors';

export const CONNECT_TIMEOUT_MS = 10_000;
export const REQUEST_TIMEOUT_MS = 30_000;
/** Largest answer read from a peer unless a request says otherwise (a /send_join of a big room is the largest). */
export const MAX_RESPONSE_BYTES = 16 * 1024 * 1024;
export const MAX_IN_FLIGHT_PER_DESTINATION = 8;

export interface FederationClientOptions {
  /** Our server name: the X-Matrix origin. */
  serverName: string;
  signingKey: SigningKey;
  /** Extra CA files trusted on top of the system roots. */
  caPaths: readonly string[];
  verifyTls: boolean;
  blocklist: IpRangeSet;
  log: Logger;
  connectTimeoutMs?: number;
  requestTimeoutMs?: number;
  maxResponseBytes?: number;
  maxInFlightPerDestination?: number;
  /** For tests: SRV look-ups (default node:dns). */
  resolveSrv?: SrvResolver;
}

export interface FederationRequestOptions {
  /** Path and query, already percent-encoded, e.g. `/_matrix/federation/v1/query/profile?user_id=%40a%3Ab`. */
  path: string;
  method?: 'GET' | 'PUT' | 'POST' | 'DELETE';
  /** JSON body (PUT/POST): sent and signed. */
  body?: JsonObject;
  /** Sign with X-Matrix (default true; false for the key endpoints, which need no authentication). */
  sign?: boolean;
  timeoutMs?: number;
  maxResponseBytes?: number;
}

/** A 2xx answer whose body is read as it arrives (media): read `body` to the end, or `cancel()`. */
export interface StreamedAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  /** The body's chunks; throws a FederationError (timeout, connection lost) mid-way. */
  body: AsyncIterable<Buffer>;
  /** Stop reading and close the connection. */
  cancel(): void;
}

export interface StreamRequestOptions {
  /** The answer's status and headers must arrive within this (ms). */
  headersTimeoutMs: number;
  /** The whole answer, body included, must arrive within this (ms). */
  totalTimeoutMs: number;
  /** Sign with X-Matrix (default true; false for a `Location` URL, which is not a federation endpoint). */
  sign?: boolean;
}

/** Error answers of a streamed request are read for their errcode up to this size. */
const STREAM_ERROR_BODY_BYTES = 64 * 1024;

interface RawAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** The error our `lookup` gives when every address of a host is blocked. */
class BlockedAddressError extends Error {
  readonly code = 'EFEDBLOCKED';
}

/** A counting semaphore: at most `limit` holders, the rest wait in order. */
class Semaphore {
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(private readonly limit: number) {}
  async acquire(): Promise<() => void> {
    if (this.active >= this.limit) await new Promise<void>((r) => this.waiting.push(r));
    this.active++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.active--;
      this.waiting.shift()?.();
    };
  }
  get idle(): boolean {
    return this.active === 0 && this.waiting.length === 0;
  }
}

export class FederationClient {
  readonly discovery: Discovery;
  private readonly ca: string[];
  private readonly agents = new Map<string, Agent>();
  private readonly limits = new Map<string, Semaphore>();

  constructor(private readonly opts: FederationClientOptions) {
    this.ca = [...rootCertificates, ...opts.caPaths.map((p) => readFileSync(p, 'utf8'))];
    this.discovery = new Discovery({ fetchWellKnown: (host) => this.fetchWellKnown(host), resolveSrv: opts.resolveSrv, log: opts.log });
  }

  get serverName(): string {
    return this.opts.serverName;
  }

  async get<T extends JsonValue = JsonObject>(destination: string, path: string, opts: Omit<FederationRequestOptions, 'path' | 'method' | 'body'> = {}): Promise<T> {
    return this.request<T>(destination, { ...opts, path, method: 'GET' });
  }

  async post<T extends JsonValue = JsonObject>(destination: string, path: string, body: JsonObject, opts: Omit<FederationRequestOptions, 'path' | 'method' | 'body'> = {}): Promise<T> {
    return this.request<T>(destination, { ...opts, path, method: 'POST', body });
  }

  async put<T extends JsonValue = JsonObject>(destination: string, path: string, body: JsonObject, opts: Omit<FederationRequestOptions, 'path' | 'method' | 'body'> = {}): Promise<T> {
    return this.request<T>(destination, { ...opts, path, method: 'PUT', body });
  }

  /** One request to `destination` (a server name); the strict-JSON answer of a 2xx, else a FederationError. */
  async request<T extends JsonValue = JsonObject>(destination: string, req: FederationRequestOptions): Promise<T> {
    const method = req.method ?? 'GET';
    const started = performance.now();
    const pathForLog = req.path.split('?')[0]!;
    let status: number | undefined;
    const limiter = this.limiter(destination);
    const release = await limiter.acquire();
    try {
      const { targets } = await this.discovery.resolve(destination);
      const payload = req.body === undefined ? undefined : Buffer.from(JSON.stringify(req.body));
      const headers: Record<string, string> = { Accept: 'application/json' };
      if (payload) {
        headers['Content-Type'] = 'application/json';
        headers['Content-Length'] = String(payload.length);
      }
      if (req.sign !== false) {
        headers.Authorization = signRequest({ method, uri: req.path, origin: this.opts.serverName, destination, content: req.body }, this.opts.signingKey)[0]!;
      }
      const answer = await this.tryTargets(destination, targets, method, req.path, headers, payload, req);
      status = answer.status;
      return this.readJson<T>(destination, answer);
    } catch (e) {
      if (e instanceof FederationRemoteError) status = e.status;
      throw e;
    } finally {
      release();
      // No idle semaphore per destination ever called is kept.
      if (limiter.idle) this.limits.delete(destination);
      this.opts.log.info({ destination, method, path: pathForLog, status: status ?? 0, ms: Math.round((performance.now() - started) * 100) / 100 }, 'federation request');
    }
  }

  /**
   * `GET path` on `destination`, signed, its body streamed (federation media). Resolves with a 2xx
   * answer once its headers arrive; a non-2xx answer throws FederationRemoteError (its errcode read
   * from a small body), a redirect FederationBadResponseError. The destination's in-flight slot is
   * held until the body has been read or cancelled.
   */
  async stream(destination: string, path: string, opts: StreamRequestOptions): Promise<StreamedAnswer> {
    const started = performance.now();
    const pathForLog = path.split('?')[0]!;
    const limiter = this.limiter(destination);
    const release = await limiter.acquire();
    const done = (status: number) => {
      release();
      if (limiter.idle) this.limits.delete(destination);
      this.opts.log.info({ destination, method: 'GET', path: pathForLog, status, ms: Math.round((performance.now() - started) * 100) / 100 }, 'federation request (streamed)');
    };
    try {
      const { targets } = await this.discovery.resolve(destination);
      const headers: Record<string, string> = { Accept: '*/*' };
      if (opts.sign !== false) headers.Authorization = signRequest({ method: 'GET', uri: path, origin: this.opts.serverName, destination }, this.opts.signingKey)[0]!;
      let last: FederationError | undefined;
      for (const target of targets) {
        if (target.kind !== 'dns' && !isAddressAllowed(target.host, this.opts.blocklist)) {
          last = new FederationBlockedError(destination, `${target.host} is in the IP blocklist`);
          continue;
        }
        try {
          const answer = await this.openStream(destination, {
            https: true,
            host: target.host,
            port: target.port,
            path,
            headers: { ...headers, Host: target.hostHeader },
            agent: this.agentFor(destination, target),
            servername: target.sni ?? '',
            certificateName: target.certificateName,
            connectLabel: formatHostPort(target.host, target.kind, target.port),
          }, opts);
          return this.settleStream(destination, answer, done);
        } catch (e) {
          if (!(e instanceof FederationNetworkError) && !(e instanceof FederationBlockedError) && !(e instanceof FederationTimeoutError)) throw e;
          last = e;
        }
      }
      throw last ?? new FederationNetworkError(destination, 'no address to connect to');
    } catch (e) {
      done(e instanceof FederationRemoteError ? e.status : 0);
      throw e;
    }
  }

  /**
   * `GET url` (http or https), unsigned, its body streamed: the `Location` a peer's federation media
   * answer points at. The IP blocklist applies as for peers; redirects are not followed.
   */
  async streamUrl(origin: string, url: string, opts: Omit<StreamRequestOptions, 'sign'>): Promise<StreamedAnswer> {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      throw new FederationBadResponseError(origin, `the media location is not a URL: ${JSON.stringify(url.slice(0, 200))}`);
    }
    if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new FederationBadResponseError(origin, `the media location is ${u.protocol}, not http(s)`);
    const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
    const literal = host.includes(':') || /^\d+\.\d+\.\d+\.\d+$/.test(host);
    if (literal && !isAddressAllowed(host, this.opts.blocklist)) throw new FederationBlockedError(origin, `${host} is in the IP blocklist`);
    const started = performance.now();
    const answer = await this.openStream(origin, {
      https: u.protocol === 'https:',
      host,
      port: u.port ? Number(u.port) : u.protocol === 'https:' ? 443 : 80,
      path: `${u.pathname}${u.search}`,
      headers: { Accept: '*/*', Host: u.host },
      agent: false,
      servername: literal ? '' : host,
      certificateName: host,
      connectLabel: u.host,
    }, opts);
    return this.settleStream(origin, answer, (status) => this.opts.log.info({ destination: origin, method: 'GET', url: `${u.origin}${u.pathname}`, status, ms: Math.round((performance.now() - started) * 100) / 100 }, 'media location request'));
  }

  /** A 2xx streamed answer handed on (calling `done` once it is read); anything else read and thrown. */
  private async settleStream(destination: string, answer: { res: IncomingMessage; body: AsyncIterable<Buffer>; cancel(): void }, done: (status: number) => void): Promise<StreamedAnswer> {
    const status = answer.res.statusCode ?? 0;
    if (status >= 200 && status < 300) {
      let finished = false;
      const finish = () => {
        if (!finished) {
          finished = true;
          done(status);
        }
      };
      async function* body(): AsyncGenerator<Buffer> {
        try {
          yield* answer.body;
        } finally {
          answer.cancel();
          finish();
        }
      }
      return { status, headers: answer.res.headers, body: body(), cancel: () => {
        answer.cancel();
        finish();
      } };
    }
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      for await (const chunk of answer.body) {
        size += chunk.length;
        if (size > STREAM_ERROR_BODY_BYTES) break;
        chunks.push(chunk);
      }
    } catch {
      // The status says enough.
    } finally {
      answer.cancel();
    }
    done(status);
    if (status >= 300 && status < 400) throw new FederationBadResponseError(destination, `redirect (HTTP ${status}) not followed for a federation request`);
    return this.readJson<never>(destination, { status, headers: answer.res.headers, body: Buffer.concat(chunks) });
  }

  /** One streamed GET: resolves at the answer's headers; the body then streams under the total timeout. */
  private openStream(
    destination: string,
    t: { https: boolean; host: string; port: number; path: string; headers: Record<string, string>; agent: Agent | false; servername: string; certificateName: string; connectLabel: string },
    opts: Omit<StreamRequestOptions, 'sign'>,
  ): Promise<{ res: IncomingMessage; body: AsyncIterable<Buffer>; cancel(): void }> {
    const connectTimeoutMs = Math.min(this.opts.connectTimeoutMs ?? CONNECT_TIMEOUT_MS, opts.headersTimeoutMs);
    return new Promise((resolve, reject) => {
      let failure: FederationError | undefined;
      let gotHeaders = false;
      const common = { host: t.host, port: t.port, method: 'GET', path: t.path, headers: t.headers, lookup: this.blockedLookup(destination) as never };
      const req = t.https
        ? httpsRequest({ ...common, agent: t.agent, ca: this.ca, rejectUnauthorized: this.opts.verifyTls, servername: t.servername, checkServerIdentity: (_h: string, cert: PeerCertificate) => checkServerIdentity(t.certificateName, cert) })
        : httpRequest({ ...common, agent: false });
      const fail = (e: FederationError) => {
        failure ??= e;
        req.destroy(e);
      };
      const headersTimer = setTimeout(() => fail(new FederationTimeoutError(destination, `no answer within ${opts.headersTimeoutMs} ms`)), opts.headersTimeoutMs);
      const totalTimer = setTimeout(() => fail(new FederationTimeoutError(destination, `the answer did not arrive whole within ${opts.totalTimeoutMs} ms`)), opts.totalTimeoutMs);
      const clear = () => {
        clearTimeout(headersTimer);
        clearTimeout(totalTimer);
      };
      req.on('socket', (socket) => {
        if (!socket.connecting) return;
        const connectTimer = setTimeout(() => fail(new FederationTimeoutError(destination, `could not connect to ${t.connectLabel} within ${connectTimeoutMs} ms`)), connectTimeoutMs);
        socket.once(t.https ? 'secureConnect' : 'connect', () => clearTimeout(connectTimer));
        socket.once('close', () => clearTimeout(connectTimer));
      });
      req.on('response', (res) => {
        gotHeaders = true;
        clearTimeout(headersTimer);
        async function* body(): AsyncGenerator<Buffer> {
          try {
            for await (const chunk of res) yield chunk as Buffer;
            if (!res.complete) throw failure ?? new FederationNetworkError(destination, 'connection closed mid-answer');
          } catch (e) {
            throw failure ?? toFederationError(destination, e);
          } finally {
            clear();
          }
        }
        resolve({ res, body: body(), cancel: () => {
          clear();
          if (!res.complete) req.destroy();
        } });
      });
      req.on('error', (e) => {
        clear();
        if (!gotHeaders) reject(failure ?? toFederationError(destination, e));
      });
      req.end();
    });
  }

  /** Closes idle keep-alive connections (at shutdown). */
  close(): void {
    for (const agent of this.agents.values()) agent.destroy();
    this.agents.clear();
  }

  private limiter(destination: string): Semaphore {
    let s = this.limits.get(destination);
    if (!s) {
      s = new Semaphore(this.opts.maxInFlightPerDestination ?? MAX_IN_FLIGHT_PER_DESTINATION);
      this.limits.set(destination, s);
    }
    return s;
  }

  /** Targets in order; the next one only when this one could not be reached (an HTTP answer is final). */
  private async tryTargets(destination: string, targets: ConnectionTarget[], method: string, path: string, headers: Record<string, string>, payload: Buffer | undefined, req: FederationRequestOptions): Promise<RawAnswer> {
    let last: FederationError | undefined;
    for (const target of targets) {
      try {
        const answer = await this.send(destination, target, method, path, headers, payload, req.timeoutMs ?? this.opts.requestTimeoutMs ?? REQUEST_TIMEOUT_MS, req.maxResponseBytes ?? this.opts.maxResponseBytes ?? MAX_RESPONSE_BYTES);
        if (answer.status >= 300 && answer.status < 400) throw new FederationBadResponseError(destination, `redirect (HTTP ${answer.status}) not followed for a federation request`);
        return answer;
      } catch (e) {
        if (!(e instanceof FederationNetworkError) && !(e instanceof FederationBlockedError) && !(e instanceof FederationTimeoutError)) throw e;
        last = e;
      }
    }
    throw last ?? new FederationNetworkError(destination, 'no address to connect to');
  }

  private readJson<T extends JsonValue>(destination: string, answer: RawAnswer): T {
    let json: JsonValue | undefined;
    let parseError: string | undefined;
    try {
      json = parseStrictJson(answer.body);
    } catch (e) {
      if (!(e instanceof JsonError)) throw e;
      parseError = e.message;
    }
    if (answer.status < 200 || answer.status >= 300) {
      const obj = json !== null && typeof json === 'object' && !Array.isArray(json) ? json : {};
      throw new FederationRemoteError(destination, answer.status, typeof obj.errcode === 'string' ? obj.errcode : undefined, typeof obj.error === 'string' ? obj.error : undefined);
    }
    if (json === undefined) throw new FederationBadResponseError(destination, `answer is not strict JSON: ${parseError}`);
    return json as T;
  }

  private agentFor(destination: string, target: ConnectionTarget): Agent {
    const key = `${destination}|${target.host}|${target.port}`;
    let agent = this.agents.get(key);
    if (!agent) {
      agent = new Agent({ keepAlive: true, maxSockets: this.opts.maxInFlightPerDestination ?? MAX_IN_FLIGHT_PER_DESTINATION, maxFreeSockets: 2, timeout: 60_000 });
      this.agents.set(key, agent);
    }
    return agent;
  }

  /** A `lookup` for node's sockets that leaves out blocked addresses (and fails when none is left). */
  private blockedLookup(destination: string) {
    const blocklist = this.opts.blocklist;
    return (hostname: string, options: { all?: boolean; family?: number } | number, callback: (...args: unknown[]) => void) => {
      const all = typeof options === 'object' && options.all === true;
      dnsLookup(hostname, { all: true, family: typeof options === 'object' ? (options.family ?? 0) : options }, (err, addresses: LookupAddress[]) => {
        if (err) return callback(err);
        const allowed = addresses.filter((a) => isAddressAllowed(a.address, blocklist));
        if (allowed.length === 0) return callback(new BlockedAddressError(`${destination}: every address of ${hostname} is in the IP blocklist (${addresses.map((a) => a.address).join(', ')})`));
        if (all) callback(null, allowed);
        else callback(null, allowed[0]!.address, allowed[0]!.family);
      });
    };
  }

  /** One HTTPS exchange with one target. */
  private send(destination: string, target: ConnectionTarget, method: string, path: string, headers: Record<string, string>, payload: Buffer | undefined, timeoutMs: number, maxBytes: number, agent: Agent | false = this.agentFor(destination, target)): Promise<RawAnswer> {
    if (target.kind !== 'dns' && !isAddressAllowed(target.host, this.opts.blocklist)) {
      return Promise.reject(new FederationBlockedError(destination, `${target.host} is in the IP blocklist`));
    }
    const connectTimeoutMs = this.opts.connectTimeoutMs ?? CONNECT_TIMEOUT_MS;
    return new Promise<RawAnswer>((resolve, reject) => {
      let settled = false;
      const finish = (err: Error | null, answer?: RawAnswer) => {
        if (settled) return;
        settled = true;
        clearTimeout(total);
        if (connectTimer) clearTimeout(connectTimer);
        if (err) reject(err);
        else resolve(answer!);
      };
      let connectTimer: NodeJS.Timeout | undefined;
      const req = httpsRequest({
        host: target.host,
        port: target.port,
        method,
        path,
        headers: { ...headers, Host: target.hostHeader },
        agent,
        ca: this.ca,
        rejectUnauthorized: this.opts.verifyTls,
        // SNI only for hostnames (server-server API, "TLS"); the certificate is checked for the name discovery gave.
        servername: target.sni ?? '',
        checkServerIdentity: (_host: string, cert: PeerCertificate) => checkServerIdentity(target.certificateName, cert),
        lookup: this.blockedLookup(destination) as never,
      });
      const total = setTimeout(() => {
        req.destroy(new FederationTimeoutError(destination, `no complete answer within ${timeoutMs} ms`));
      }, timeoutMs);
      req.on('socket', (socket) => {
        if (!socket.connecting) return;
        connectTimer = setTimeout(() => req.destroy(new FederationTimeoutError(destination, `could not connect to ${formatHostPort(target.host, target.kind, target.port)} within ${connectTimeoutMs} ms`)), connectTimeoutMs);
        socket.once('secureConnect', () => clearTimeout(connectTimer));
      });
      req.on('response', (res) => {
        const declared = Number(res.headers['content-length'] ?? 0);
        if (declared > maxBytes) {
          res.destroy();
          return finish(new FederationBadResponseError(destination, `answer of ${declared} bytes is over the ${maxBytes}-byte limit`));
        }
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > maxBytes) {
            res.destroy();
            finish(new FederationBadResponseError(destination, `answer is over the ${maxBytes}-byte limit`));
            return;
          }
          chunks.push(chunk);
        });
        res.on('end', () => finish(null, { status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', (e) => finish(toFederationError(destination, e)));
        res.on('aborted', () => finish(new FederationNetworkError(destination, 'connection closed mid-answer')));
      });
      req.on('error', (e) => finish(toFederationError(destination, e)));
      req.end(payload);
    });
  }

  /**
   * `GET https://<hostname>/.well-known/matrix/server`, following up to WELL_KNOWN_MAX_REDIRECTS
   * redirects (the spec allows them here, and only here), blocklist applied on every hop, at most
   * WELL_KNOWN_MAX_BODY_BYTES read. Throws on no HTTP answer (a temporary failure for the cache).
   */
  private async fetchWellKnown(hostname: string): Promise<WellKnownHttpAnswer> {
    let url = new URL(`https://${hostname}/.well-known/matrix/server`);
    for (let hop = 0; hop <= WELL_KNOWN_MAX_REDIRECTS; hop++) {
      if (url.protocol !== 'https:') throw new FederationBadResponseError(hostname, `.well-known redirected to ${url.protocol} (https only)`);
      const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
      const kind = host.includes(':') ? 'ipv6' : /^\d+\.\d+\.\d+\.\d+$/.test(host) ? 'ipv4' : 'dns';
      const target: ConnectionTarget = { host, kind, port: url.port ? Number(url.port) : 443, hostHeader: url.host, certificateName: host, sni: kind === 'dns' ? host : undefined, route: '6 default port' };
      const answer = await this.send(hostname, target, 'GET', `${url.pathname}${url.search}`, { Accept: 'application/json' }, undefined, 10_000, WELL_KNOWN_MAX_BODY_BYTES, false).catch((e: unknown) => {
        // Too large counts as a temporary failure (protocol module: "a body over the limit").
        throw e;
      });
      const location = answer.headers.location;
      if (answer.status >= 300 && answer.status < 400 && typeof location === 'string') {
        url = new URL(location, url);
        continue;
      }
      return { status: answer.status, headers: answer.headers as WellKnownHttpAnswer['headers'], body: answer.body };
    }
    throw new FederationBadResponseError(hostname, `.well-known: more than ${WELL_KNOWN_MAX_REDIRECTS} redirects`);
  }
}

function toFederationError(destination: string, e: unknown): FederationError {
  if (e instanceof FederationError) return e;
  if (e instanceof BlockedAddressError) return new FederationBlockedError(destination, e.message.replace(`${destination}: `, ''));
  const err = e as NodeJS.ErrnoException;
  return new FederationNetworkError(destination, `${err.code ?? 'error'}: ${err.message}`);
}
