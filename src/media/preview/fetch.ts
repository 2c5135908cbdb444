/**
 * The URL preview fetcher: GET a URL a user gave us, without letting that URL reach our own
 * network (SSRF). For every hop (the first request and each redirect):
 *   parse → only http/https, no credentials in the URL
 *   → resolve the name ourselves (all A/AAAA records) → refuse the name if any address is in the
 *     blocklist and not in the allowlist (Synapse refuses such a name whole: a name that also
 *     points inside is not one we want to half-trust); an IP literal is checked the same way
 *   → connect to exactly the addresses we checked: the socket's `lookup` hands back the checked
 *     list instead of asking DNS again, so a name whose record changes between our check and the
 *     connect (DNS rebinding) still reaches only a checked address
 *   → a redirect (301/302/303/307/308) is followed only up to `maxRedirects`, its Location checked
 *     like the first URL
 *   → the body is streamed and cut at `maxBytes` (after decompression: a gzip bomb is cut too);
 *     the whole fetch, redirects included, has one deadline (`timeoutMs`).
 * The 0.0.0.0/8 and :: ranges are refused whatever the lists say (they reach this host).
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import type { LookupAddress } from 'node:dns';
import { request as httpRequest, type ClientRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { LookupFunction } from 'node:net';
import { rootCertificates } from 'node:tls';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import type { Transform } from 'node:stream';
import { ALWAYS_BLOCKED_IP_RANGES, IpRangeSet, parseIp, type IpAddress } from '../../protocol/ip-ranges';
import { UrlPreviewError } from '../processing-errors';

export const DEFAULT_PREVIEW_MAX_BYTES = 10 * 1024 * 1024; // Synapse's max_spider_size
export const DEFAULT_PREVIEW_TIMEOUT_MS = 10_000;
export const DEFAULT_PREVIEW_MAX_REDIRECTS = 5;
export const DEFAULT_PREVIEW_USER_AGENT = 'Axon (bot; URL preview)';

const ALWAYS_BLOCKED = new IpRangeSet(ALWAYS_BLOCKED_IP_RANGES);

export interface SafeFetchOptions {
  /** Addresses never connected to: the federation blocklist (`federationIpBlocklist(config.federation.ipRangeBlocklist)`). */
  blocklist: IpRangeSet;
  /** Addresses connected to even when in the blocklist (Synapse's `url_preview_ip_range_whitelist`). */
  allowlist?: IpRangeSet;
  /** Body bytes kept (after decompression); the rest is not read. Default 10 MiB. */
  maxBytes?: number;
  /** Deadline for the whole fetch, redirects and body included. Default 10 s. */
  timeoutMs?: number;
  /** Default 5. */
  maxRedirects?: number;
  userAgent?: string;
  /** Sent as Accept-Language (Synapse's `url_preview_accept_language`). */
  acceptLanguage?: string;
  /** PEM certificates trusted on top of the system roots (a private CA; the tests' CA). */
  caCertificates?: readonly string[];
  /** POST `body` (JSON) instead of a GET: the push sender's `/notify` calls (src/push/gateway.ts). */
  post?: { body: string };
  /** Name resolution, all addresses of a host (default: the system resolver, as getaddrinfo sees /etc/hosts). For tests. */
  resolve?: (hostname: string) => Promise<string[]>;
}

export interface FetchedResource {
  /** The URL that answered, after redirects. */
  url: string;
  status: number;
  /** The Content-Type header as sent ('' when absent). */
  contentType: string;
  headers: IncomingHttpHeaders;
  /** At most maxBytes; see `truncated`. */
  body: Buffer;
  /** The body went on past maxBytes and was cut there. */
  truncated: boolean;
  redirects: number;
}

/** May we connect to this address under these lists? Fails closed on anything that is not an address. */
export function isPreviewAddressAllowed(address: string | IpAddress, blocklist: IpRangeSet, allowlist?: IpRangeSet): boolean {
  const parsed = typeof address === 'string' ? parseIp(address) : address;
  if (!parsed) return false;
  if (ALWAYS_BLOCKED.contains(parsed)) return false;
  if (allowlist?.contains(parsed)) return true;
  return !blocklist.contains(parsed);
}

/** Parse and vet a URL: http(s) only, no user:password, a host present. */
export function parsePreviewUrl(text: string, base?: string): URL {
  let url: URL;
  try {
    url = base === undefined ? new URL(text) : new URL(text, base);
  } catch {
    throw new UrlPreviewError('bad-url', 'Not a valid URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UrlPreviewError('bad-url', `Only http and https URLs can be previewed, not ${url.protocol.slice(0, -1)}`);
  if (url.username !== '' || url.password !== '') throw new UrlPreviewError('bad-url', 'URLs with credentials are not previewed');
  if (url.hostname === '') throw new UrlPreviewError('bad-url', 'URL has no host');
  return url;
}

async function systemResolve(hostname: string): Promise<string[]> {
  const answers = await dnsLookup(hostname, { all: true, verbatim: true });
  return answers.map((a) => a.address);
}

interface CheckedHost {
  /** Name to put in the request (brackets stripped from an IPv6 literal). */
  host: string;
  addresses: LookupAddress[];
}

async function resolveChecked(url: URL, opts: SafeFetchOptions, deadline: number): Promise<CheckedHost> {
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  const literal = parseIp(host);
  let texts: string[];
  if (literal) {
    texts = [host];
  } else {
    const resolve = opts.resolve ?? systemResolve;
    try {
      texts = await withDeadline(resolve(host), deadline);
    } catch (e) {
      if (e instanceof UrlPreviewError) throw e;
      throw new UrlPreviewError('dns', `Could not resolve ${host}`);
    }
    if (texts.length === 0) throw new UrlPreviewError('dns', `Could not resolve ${host}`);
  }
  const addresses: LookupAddress[] = [];
  for (const text of texts) {
    const parsed = parseIp(text);
    if (!parsed || !isPreviewAddressAllowed(parsed, opts.blocklist, opts.allowlist)) {
      // One blocked address refuses the name (as Synapse's blocklisting resolver does).
      throw new UrlPreviewError('blocked', 'IP address blocked');
    }
    addresses.push({ address: text, family: parsed.version });
  }
  return { host, addresses };
}

/** A `lookup` that answers with the addresses already checked, never asking DNS again. */
function pinnedLookup(addresses: LookupAddress[]): LookupFunction {
  return ((_hostname: string, options: { all?: boolean; family?: number | string }, callback: (...args: unknown[]) => void) => {
    const family = options.family === 'IPv4' ? 4 : options.family === 'IPv6' ? 6 : Number(options.family ?? 0);
    const usable = family === 4 || family === 6 ? addresses.filter((a) => a.family === family) : addresses;
    if (usable.length === 0) {
      const err = Object.assign(new Error('no checked address of the requested family'), { code: 'ENOTFOUND' });
      callback(err);
      return;
    }
    if (options.all) callback(null, usable);
    else callback(null, usable[0]!.address, usable[0]!.family);
  }) as LookupFunction;
}

function withDeadline<T>(promise: Promise<T>, deadline: number): Promise<T> {
  const left = deadline - Date.now();
  if (left <= 0) return Promise.reject(new UrlPreviewError('timeout', 'Timed out fetching the URL'));
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new UrlPreviewError('timeout', 'Timed out fetching the URL')), left);
    promise.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

/** Fetch `url` with the SSRF checks above. A non-2xx final answer is an UrlPreviewError('http-status'). */
export async function safeFetch(url: string, opts: SafeFetchOptions): Promise<FetchedResource> {
  const deadline = Date.now() + (opts.timeoutMs ?? DEFAULT_PREVIEW_TIMEOUT_MS);
  const maxRedirects = opts.maxRedirects ?? DEFAULT_PREVIEW_MAX_REDIRECTS;
  let current = parsePreviewUrl(url);
  for (let redirects = 0; ; redirects++) {
    const checked = await resolveChecked(current, opts, deadline);
    const response = await sendRequest(current, checked, opts, deadline);
    const location = response.headers.location;
    if (REDIRECT_STATUSES.has(response.statusCode ?? 0) && typeof location === 'string' && location !== '') {
      response.destroy();
      if (redirects >= maxRedirects) throw new UrlPreviewError('too-many-redirects', `More than ${maxRedirects} redirects`);
      current = parsePreviewUrl(location, current.href);
      continue;
    }
    const status = response.statusCode ?? 0;
    if (status < 200 || status > 299) {
      response.destroy();
      throw new UrlPreviewError('http-status', `The remote answered HTTP ${status}`, status);
    }
    const { body, truncated } = await readBody(response, opts.maxBytes ?? DEFAULT_PREVIEW_MAX_BYTES, deadline);
    const contentType = response.headers['content-type'] ?? '';
    return { url: current.href, status, contentType, headers: response.headers, body, truncated, redirects };
  }
}

function sendRequest(url: URL, checked: CheckedHost, opts: SafeFetchOptions, deadline: number): Promise<IncomingMessage> {
  const headers: Record<string, string> = {
    'User-Agent': opts.userAgent ?? DEFAULT_PREVIEW_USER_AGENT,
    Accept: opts.post ? 'application/json' : 'text/html,application/xhtml+xml,image/*;q=0.9,*/*;q=0.8',
    'Accept-Encoding': 'gzip, deflate, br',
  };
  if (opts.post) {
    headers['Content-Type'] = 'application/json';
    headers['Content-Length'] = String(Buffer.byteLength(opts.post.body));
  }
  if (opts.acceptLanguage) headers['Accept-Language'] = opts.acceptLanguage;
  const requestFn = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise<IncomingMessage>((resolve, reject) => {
    let req: ClientRequest;
    const left = deadline - Date.now();
    if (left <= 0) {
      reject(new UrlPreviewError('timeout', 'Timed out fetching the URL'));
      return;
    }
    const timer = setTimeout(() => req.destroy(new UrlPreviewError('timeout', 'Timed out fetching the URL')), left);
    try {
      req = requestFn({
        protocol: url.protocol,
        hostname: checked.host,
        port: url.port === '' ? undefined : Number(url.port),
        path: `${url.pathname}${url.search}`,
        method: opts.post ? 'POST' : 'GET',
        headers,
        // A fresh connection per request: a pooled socket could be one opened to an address of
        // another, earlier check.
        agent: false,
        lookup: pinnedLookup(checked.addresses),
        // SNI and the certificate check use the name, not the address we connect to.
        servername: parseIp(checked.host) ? undefined : checked.host,
        ...(url.protocol === 'https:' && opts.caCertificates?.length ? { ca: [...rootCertificates, ...opts.caCertificates] } : {}),
      });
    } catch (e) {
      clearTimeout(timer);
      reject(new UrlPreviewError('bad-url', `Cannot request this URL: ${(e as Error).message}`));
      return;
    }
    req.on('response', (res) => {
      // The body read has its own deadline; this timer only covered connect and headers.
      clearTimeout(timer);
      resolve(res);
    });
    req.on('error', (e) => {
      clearTimeout(timer);
      reject(e instanceof UrlPreviewError ? e : new UrlPreviewError('connect', `Could not fetch the URL (${(e as NodeJS.ErrnoException).code ?? 'network error'})`));
    });
    req.end(opts.post?.body);
  });
}

function decoderFor(encoding: string | undefined): Transform | null {
  switch ((encoding ?? '').trim().toLowerCase()) {
    case 'gzip':
    case 'x-gzip':
      return createGunzip();
    case 'deflate':
      return createInflate();
    case 'br':
      return createBrotliDecompress();
    default:
      return null;
  }
}

/** Read at most maxBytes of the (decoded) body before the deadline; stop reading beyond that. */
function readBody(res: IncomingMessage, maxBytes: number, deadline: number): Promise<{ body: Buffer; truncated: boolean }> {
  return new Promise((resolve, reject) => {
    const decoder = decoderFor(res.headers['content-encoding']);
    const source = decoder ? res.pipe(decoder) : res;
    const chunks: Buffer[] = [];
    let kept = 0;
    let settled = false;
    const finish = (err: Error | null, truncated = false) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err || truncated) {
        // Stop the transfer: nothing more is read from the socket.
        res.destroy();
        decoder?.destroy();
      }
      if (err) reject(err);
      else resolve({ body: Buffer.concat(chunks, kept), truncated });
    };
    const timer = setTimeout(() => finish(new UrlPreviewError('timeout', 'Timed out reading the answer')), Math.max(0, deadline - Date.now()));
    source.on('data', (chunk: Buffer) => {
      if (settled) return;
      const room = maxBytes - kept;
      if (chunk.length > room) {
        if (room > 0) {
          chunks.push(chunk.subarray(0, room));
          kept += room;
        }
        finish(null, true);
        return;
      }
      chunks.push(chunk);
      kept += chunk.length;
    });
    source.on('end', () => finish(null));
    source.on('error', (e) => finish(new UrlPreviewError('connect', `Could not read the answer (${(e as NodeJS.ErrnoException).code ?? e.message})`)));
    res.on('error', (e) => finish(new UrlPreviewError('connect', `Could not read the answer (${(e as NodeJS.ErrnoException).code ?? e.message})`)));
    res.on('aborted', () => finish(new UrlPreviewError('connect', 'The connection closed before the answer was complete')));
  });
}
