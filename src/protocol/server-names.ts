/**
 * Server names (appendices, "Server Name") and the pure half of server discovery
 * (server-server API, "Resolving server names"): which look-ups to make in which order, what the
 * `/.well-known/matrix/server` answer means and how long to keep it, how SRV answers are
 * ordered, and, for each place we may connect to, the `Host` header, the TLS SNI and the name
 * the certificate must be valid for.
 *
 * The I/O side (src/federation/discovery.ts) stays a loop: ask `nextDiscoveryStep` what to do,
 * do it (an HTTPS GET, an SRV query), record the answer in the facts, ask again, until it says
 * `connect`. Then resolve each target's hostname with AAAA/A, drop addresses the IP blocklist
 * refuses (ip-ranges.ts), and connect.
 */
import { parseIpv4, parseIpv6 } from './ip-ranges';
import { JsonError, isJsonObject, parseStrictJson } from './json';

/** Port used when neither the server name, its delegation nor SRV gives one (IANA: matrix-fed). */
export const DEFAULT_FEDERATION_PORT = 8448;

export type HostKind = 'ipv4' | 'ipv6' | 'dns';

export interface ServerName {
  /** The server name exactly as written: what ids, signatures and `Host` headers carry. */
  readonly serverName: string;
  /** The hostname: a DNS name, a dotted quad, or an IPv6 address without its brackets. */
  readonly host: string;
  readonly kind: HostKind;
  /** The explicit port, if the name has one. */
  readonly port: number | undefined;
}

const DNS_NAME = /^[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*$/;
// A label a resolver would read as a number (decimal, or 0x hex as inet_aton does).
const NUMERIC_LABEL = /^(?:[0-9]+|0[xX][0-9A-Fa-f]*)$/;
const PORT = /^[0-9]{1,5}$/;
const IPV6_CHARS = /^[0-9A-Fa-f:.]{2,45}$/;

/**
 * Parse a server name per the appendix grammar, `hostname [":" port]`, where hostname is an IPv4
 * literal, an IPv6 literal in brackets, or a DNS name. Returns null when it is not one.
 *
 * Where the grammar is looser than what can be connected to safely, we are stricter:
 *  - the port is 1–65535 (the grammar allows any 1–5 digits);
 *  - IPv4 literals are four decimal numbers 0–255 without leading zeros (the prose says 0–255;
 *    `010` would be read as octal by some resolvers);
 *  - DNS names are dot-separated non-empty labels of letters, digits and hyphens (the prose's
 *    "conventional restrictions"; no leading, trailing or doubled dots), at most 255 characters;
 *  - a DNS name whose last label is numeric (`127.1`, `1.2.3.4.5`, `0x7f`) is refused: no top
 *    level domain is numeric, and resolvers turn such names into IP addresses of their choosing.
 * Case is kept: server names are case-sensitive identifiers (appendix), even though DNS is not.
 */
export function parseServerName(text: string): ServerName | null {
  if (typeof text !== 'string' || text.length === 0) return null;
  let hostPart: string;
  let portText: string | undefined;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0) return null;
    hostPart = text.slice(0, close + 1);
    const rest = text.slice(close + 1);
    if (rest !== '') {
      if (!rest.startsWith(':')) return null;
      portText = rest.slice(1);
    }
  } else {
    const colon = text.indexOf(':');
    hostPart = colon < 0 ? text : text.slice(0, colon);
    portText = colon < 0 ? undefined : text.slice(colon + 1);
  }

  let port: number | undefined;
  if (portText !== undefined) {
    if (!PORT.test(portText)) return null;
    port = Number(portText);
    if (port < 1 || port > 65535) return null;
  }

  if (hostPart.startsWith('[')) {
    const inner = hostPart.slice(1, -1);
    if (!IPV6_CHARS.test(inner) || !parseIpv6(inner)) return null;
    return { serverName: text, host: inner, kind: 'ipv6', port };
  }
  if (/^[0-9]{1,3}(?:\.[0-9]{1,3}){3}$/.test(hostPart)) {
    return parseIpv4(hostPart) ? { serverName: text, host: hostPart, kind: 'ipv4', port } : null;
  }
  if (!isValidDnsName(hostPart)) return null;
  return { serverName: text, host: hostPart, kind: 'dns', port };
}

/** A DNS name as parseServerName accepts it (see there). */
export function isValidDnsName(name: string): boolean {
  if (name.length === 0 || name.length > 255 || !DNS_NAME.test(name)) return false;
  const lastLabel = name.slice(name.lastIndexOf('.') + 1);
  return !NUMERIC_LABEL.test(lastLabel);
}

export function isValidFederationServerName(text: string): boolean {
  return parseServerName(text) !== null;
}

/** `host[:port]` as it appears in a URL authority or `Host` header (IPv6 in brackets). */
export function formatHostPort(host: string, kind: HostKind, port?: number): string {
  const h = kind === 'ipv6' ? `[${host}]` : host;
  return port === undefined ? h : `${h}:${port}`;
}

// ---------------------------------------------------------------------------------------------
// SRV records
// ---------------------------------------------------------------------------------------------

/** An SRV answer, in the shape node's `dns.resolveSrv` gives it. */
export interface SrvRecord {
  /** Target hostname. */
  readonly name: string;
  readonly port: number;
  readonly priority: number;
  readonly weight: number;
}

/** The SRV service names, in the order the spec consults them (v1.8+; `_matrix._tcp` is deprecated). */
export function srvRecordNames(hostname: string): [current: string, deprecated: string] {
  return [`_matrix-fed._tcp.${hostname}`, `_matrix._tcp.${hostname}`];
}

/** RFC 2782: a single record whose target is "." means the service is decidedly not available. */
export function srvSaysUnavailable(records: readonly SrvRecord[]): boolean {
  return records.length === 1 && (records[0]!.name === '.' || records[0]!.name === '');
}

/**
 * Order SRV records for connection attempts (RFC 2782): lowest priority first; within a
 * priority, a weighted random order — each pick among the records left has probability
 * weight / total weight — with zero-weight records last in random order. This is the order
 * Synapse's srv_resolver produces. Records with a "." target or an invalid hostname are left out.
 */
export function orderSrvRecords(records: readonly SrvRecord[], random: () => number = Math.random): SrvRecord[] {
  const usable = records
    .map((r) => ({ ...r, name: r.name.endsWith('.') ? r.name.slice(0, -1) : r.name }))
    .filter((r) => r.name !== '' && isUsableSrvTarget(r.name) && Number.isInteger(r.port) && r.port >= 1 && r.port <= 65535);
  const byPriority = new Map<number, SrvRecord[]>();
  for (const r of usable) {
    const list = byPriority.get(r.priority);
    if (list) list.push(r);
    else byPriority.set(r.priority, [r]);
  }
  const ordered: SrvRecord[] = [];
  for (const priority of [...byPriority.keys()].sort((a, b) => a - b)) {
    const left = byPriority.get(priority)!;
    const weighted = left.filter((r) => r.weight > 0);
    const unweighted = left.filter((r) => !(r.weight > 0));
    let total = weighted.reduce((sum, r) => sum + r.weight, 0);
    while (weighted.length > 0) {
      let target = random() * total;
      let i = 0;
      while (i < weighted.length - 1 && target >= weighted[i]!.weight) {
        target -= weighted[i]!.weight;
        i++;
      }
      const [picked] = weighted.splice(i, 1);
      ordered.push(picked!);
      total -= picked!.weight;
    }
    ordered.push(...shuffle(unweighted, random));
  }
  return ordered;
}

function isUsableSrvTarget(name: string): boolean {
  return DNS_NAME.test(name) && name.length <= 255;
}

function shuffle<T>(items: T[], random: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Resolving server names
// ---------------------------------------------------------------------------------------------

/** Which step of "Resolving server names" produced a target (numbered as the spec numbers them). */
export type DiscoveryRoute =
  | '1 ip literal'
  | '2 explicit port'
  | '3.1 delegated ip literal'
  | '3.2 delegated explicit port'
  | '3.3 delegated srv'
  | '3.4 delegated srv (deprecated _matrix._tcp)'
  | '3.5 delegated default port'
  | '4 srv'
  | '5 srv (deprecated _matrix._tcp)'
  | '6 default port';

/** One place to try, with what to present there. */
export interface ConnectionTarget {
  /** What to connect to: an IP literal (kind ipv4/ipv6), or a hostname to resolve with AAAA/A. */
  readonly host: string;
  readonly kind: HostKind;
  readonly port: number;
  /** `Host` header for requests on this connection. */
  readonly hostHeader: string;
  /** The name the server's certificate must be valid for: a hostname, or an IP address. */
  readonly certificateName: string;
  /**
   * TLS SNI to send; undefined when the certificate is expected for an IP address (server-server
   * API, "TLS": SNI cannot carry an IP address and should not be sent).
   */
  readonly sni: string | undefined;
  readonly route: DiscoveryRoute;
}

/** What the I/O side has looked up so far for one server name. */
export interface DiscoveryFacts {
  /**
   * The `.well-known` result for the server's hostname (from the cache or a fresh fetch): the
   * delegated server name, or null when there is none (failure, invalid answer — step 4 on).
   */
  wellKnown?: { delegatedServerName: string | null };
  /** SRV answers by record name (`_matrix-fed._tcp.example.org`); [] when there is none. */
  srv?: Readonly<Record<string, readonly SrvRecord[] | undefined>>;
}

export type DiscoveryStep =
  | { action: 'fetch-well-known'; hostname: string; url: string }
  | { action: 'lookup-srv'; recordName: string }
  | { action: 'connect'; targets: ConnectionTarget[]; delegatedServerName: string | undefined }
  | { action: 'fail'; error: string };

/**
 * The next thing to do to reach `serverName`, given what has been looked up (`facts`).
 * The server name itself (not the delegated one) stays the X-Matrix `destination` and the
 * name in signed JSON (spec, "Request Authentication").
 */
export function nextDiscoveryStep(serverName: string, facts: DiscoveryFacts, random: () => number = Math.random): DiscoveryStep {
  const name = parseServerName(serverName);
  if (!name) return { action: 'fail', error: `Invalid server name ${JSON.stringify(serverName)}` };

  // 1. An IP literal: that address, the given port or 8448; certificate for the IP; Host is the server name.
  if (name.kind !== 'dns') {
    return connect([literalTarget(name, name.serverName, '1 ip literal')], undefined);
  }
  // 2. A hostname with an explicit port: resolve it (CNAME, AAAA, A); certificate for the
  //    hostname; Host is the server name with its port.
  if (name.port !== undefined) {
    return connect([hostTarget(name.host, name.port, name.serverName, name.host, '2 explicit port')], undefined);
  }

  // 3. `https://<hostname>/.well-known/matrix/server`.
  if (!facts.wellKnown) {
    return { action: 'fetch-well-known', hostname: name.host, url: wellKnownUrl(name.host) };
  }
  const delegatedText = facts.wellKnown.delegatedServerName;
  const delegated = delegatedText === null ? null : parseServerName(delegatedText);
  if (delegated) {
    // 3.1 Delegated to an IP literal: certificate for the IP; Host is the IP (with the port if given).
    if (delegated.kind !== 'dns') {
      return connect([literalTarget(delegated, delegated.serverName, '3.1 delegated ip literal')], delegated.serverName);
    }
    // 3.2 Delegated hostname with a port: Host `<delegated_hostname>:<delegated_port>`.
    if (delegated.port !== undefined) {
      return connect([hostTarget(delegated.host, delegated.port, delegated.serverName, delegated.host, '3.2 delegated explicit port')], delegated.serverName);
    }
    // 3.3 / 3.4 SRV for the delegated hostname; 3.5 the delegated hostname on 8448.
    // Host and certificate are the delegated hostname throughout.
    return srvSteps(delegated.host, delegated.host, facts, random, delegated.serverName, ['3.3 delegated srv', '3.4 delegated srv (deprecated _matrix._tcp)', '3.5 delegated default port']);
  }
  // 4 / 5. No (valid) delegation: SRV for the hostname itself; 6. the hostname on 8448.
  return srvSteps(name.host, name.host, facts, random, undefined, ['4 srv', '5 srv (deprecated _matrix._tcp)', '6 default port']);
}

export function wellKnownUrl(hostname: string): string {
  return `https://${hostname}/.well-known/matrix/server`;
}

function connect(targets: ConnectionTarget[], delegatedServerName: string | undefined): DiscoveryStep {
  return { action: 'connect', targets, delegatedServerName };
}

function literalTarget(name: ServerName, hostHeader: string, route: DiscoveryRoute): ConnectionTarget {
  return { host: name.host, kind: name.kind, port: name.port ?? DEFAULT_FEDERATION_PORT, hostHeader, certificateName: name.host, sni: undefined, route };
}

function hostTarget(host: string, port: number, hostHeader: string, certificateName: string, route: DiscoveryRoute): ConnectionTarget {
  // An SRV target may (against RFC 2782) be an IP literal; it is then connected to as such, but
  // the certificate and SNI stay those of the name being resolved.
  const kind: HostKind = parseIpv4(host) ? 'ipv4' : 'dns';
  return { host, kind, port, hostHeader, certificateName, sni: certificateName, route };
}

function srvSteps(
  hostname: string,
  hostHeader: string,
  facts: DiscoveryFacts,
  random: () => number,
  delegatedServerName: string | undefined,
  routes: [srv: DiscoveryRoute, deprecatedSrv: DiscoveryRoute, fallback: DiscoveryRoute],
): DiscoveryStep {
  const recordNames = srvRecordNames(hostname);
  for (let i = 0; i < recordNames.length; i++) {
    const recordName = recordNames[i]!;
    const records = facts.srv?.[recordName];
    if (records === undefined) return { action: 'lookup-srv', recordName };
    if (srvSaysUnavailable(records)) {
      // Synapse treats this as a connection failure rather than moving on; so do we.
      return { action: 'fail', error: `${recordName} says the service is not available (SRV target ".")` };
    }
    const ordered = orderSrvRecords(records, random);
    if (ordered.length > 0) {
      return connect(
        ordered.map((r) => hostTarget(r.name, r.port, hostHeader, hostname, routes[i]!)),
        delegatedServerName,
      );
    }
  }
  return connect([hostTarget(hostname, DEFAULT_FEDERATION_PORT, hostHeader, hostname, routes[2])], delegatedServerName);
}

// ---------------------------------------------------------------------------------------------
// /.well-known/matrix/server and its cache
// ---------------------------------------------------------------------------------------------

/*
 * Cache rules. The spec recommends: respect cache headers, 24 h by default, at most 48 h, errors
 * cached up to an hour with back-off. The numbers below are Synapse's
 * (synapse/http/federation/well_known_resolver.py), the reference behaviour we follow, so both
 * servers re-check a delegation on the same schedule:
 */
/** Cache period when the answer has no usable Cache-Control/Expires. */
export const WELL_KNOWN_DEFAULT_CACHE_MS = 24 * 3600_000;
/** ± this fraction of random jitter on default and failure periods (no stampede at expiry). */
export const WELL_KNOWN_CACHE_JITTER = 0.1;
/** Cache period for a failed or invalid answer. */
export const WELL_KNOWN_INVALID_CACHE_MS = 3600_000;
/** Cache period for a failure when the server had a valid answer recently (it is probably just down). */
export const WELL_KNOWN_DOWN_CACHE_MS = 2 * 60_000;
/** How long after a valid answer's cache period we still remember it had one. */
export const WELL_KNOWN_REMEMBER_HAD_VALID_MS = 2 * 3600_000;
/** Bounds on a header-given cache period. */
export const WELL_KNOWN_MAX_CACHE_MS = 48 * 3600_000;
export const WELL_KNOWN_MIN_CACHE_MS = 5 * 60_000;
/** Refetch once this fraction of the period is left (a still-valid result covers a temporary failure). */
export const WELL_KNOWN_GRACE_FRACTION = 0.2;
/** Largest body read; a larger one is a temporary failure. */
export const WELL_KNOWN_MAX_BODY_BYTES = 50 * 1024;
/** When the server had a valid answer recently, a failed fetch is retried this many times, 500 ms apart. */
export const WELL_KNOWN_RETRY_ATTEMPTS = 3;
export const WELL_KNOWN_RETRY_DELAY_MS = 500;
/** Redirects followed for the `.well-known` fetch (spec: follow 30x, avoid loops). */
export const WELL_KNOWN_MAX_REDIRECTS = 5;

/** A cached `.well-known` outcome for one hostname. */
export interface WellKnownCacheEntry {
  /** The delegated server name (validated), or null: no delegation, go on with SRV (step 4). */
  readonly delegatedServerName: string | null;
  readonly fetchedAtMs: number;
  readonly ttlMs: number;
  readonly expiresAtMs: number;
  /**
   * Until when we remember the server had a valid answer: a failure before then is cached only
   * briefly (the server is probably down, not undelegated). Keep an entry (or this field) until
   * `retainUntilMs`, past its expiry, so the next fetch can be given it as `previous`.
   */
  readonly hadValidUntilMs: number;
  readonly retainUntilMs: number;
  /** Why there is no delegation (for logs). */
  readonly error?: string;
}

export type HeaderValues = Readonly<Record<string, string | readonly string[] | undefined>>;

export interface WellKnownHttpAnswer {
  status: number;
  headers: HeaderValues;
  body: Uint8Array | string;
}

export type WellKnownBodyCheck = { ok: true; delegatedServerName: string } | { ok: false; error: string };

/**
 * Parse a `/.well-known/matrix/server` body. The spec says to read it as JSON whatever its
 * Content-Type; `m.server` must be a server name by the appendix grammar. Floats elsewhere in
 * the object are tolerated (it is not signed or hashed); duplicate keys are not.
 */
export function parseWellKnownBody(body: Uint8Array | string): WellKnownBodyCheck {
  let json;
  try {
    json = parseStrictJson(body, { allowFloats: true });
  } catch (e) {
    if (e instanceof JsonError) return { ok: false, error: `not JSON: ${e.message}` };
    throw e;
  }
  if (!isJsonObject(json)) return { ok: false, error: 'not a JSON object' };
  const delegated = json['m.server'];
  if (typeof delegated !== 'string') return { ok: false, error: "'m.server' is missing or not a string" };
  if (!parseServerName(delegated)) return { ok: false, error: `'m.server' is not a valid server name: ${JSON.stringify(delegated)}` };
  return { ok: true, delegatedServerName: delegated };
}

/**
 * The cache period (ms) an answer's headers ask for, or undefined when they say nothing usable.
 * As Synapse reads them: `Cache-Control: no-store` → 0; `max-age=N` → N s; else the last
 * `Expires` → its distance from now (an invalid date, e.g. "0", is in the past: RFC 9111 §5.3).
 * The caller clamps the result (wellKnownFromAnswer).
 */
export function cachePeriodFromHeaders(headers: HeaderValues, nowMs: number): number | undefined {
  const directives = new Map<string, string | undefined>();
  for (const header of headerValues(headers, 'cache-control')) {
    for (const directive of header.split(',')) {
      const eq = directive.indexOf('=');
      const key = (eq < 0 ? directive : directive.slice(0, eq)).trim().toLowerCase();
      if (key) directives.set(key, eq < 0 ? undefined : directive.slice(eq + 1).trim());
    }
  }
  if (directives.has('no-store')) return 0;
  const maxAge = directives.get('max-age');
  if (maxAge !== undefined && /^[0-9]+$/.test(maxAge)) return Number(maxAge) * 1000;
  const expires = headerValues(headers, 'expires');
  if (expires.length > 0) {
    const at = parseHttpDate(expires[expires.length - 1]!);
    return at === undefined ? 0 : at - nowMs;
  }
  return undefined;
}

/**
 * The cache entry for an HTTP answer to the `.well-known` fetch (after redirects). A 5xx is a
 * temporary failure; any other non-200 status or an invalid body is a permanent one (spec:
 * "skip to step 4"). `previous` is the entry from before this fetch, if any.
 */
export function wellKnownFromAnswer(answer: WellKnownHttpAnswer, previous: WellKnownCacheEntry | undefined, nowMs: number, random: () => number = Math.random): WellKnownCacheEntry {
  if (answer.status >= 500 && answer.status <= 599) return wellKnownFromFailure('temporary', `HTTP ${answer.status}`, previous, nowMs, random);
  if (answer.status !== 200) return wellKnownFromFailure('permanent', `HTTP ${answer.status}`, previous, nowMs, random);
  const body = parseWellKnownBody(answer.body);
  if (!body.ok) return wellKnownFromFailure('permanent', body.error, previous, nowMs, random);

  const fromHeaders = cachePeriodFromHeaders(answer.headers, nowMs);
  const ttlMs =
    fromHeaders === undefined
      ? jitter(WELL_KNOWN_DEFAULT_CACHE_MS, random)
      : Math.max(WELL_KNOWN_MIN_CACHE_MS, Math.min(WELL_KNOWN_MAX_CACHE_MS, fromHeaders));
  const hadValidUntilMs = nowMs + ttlMs + WELL_KNOWN_REMEMBER_HAD_VALID_MS;
  return entry(body.delegatedServerName, nowMs, ttlMs, hadValidUntilMs);
}

/**
 * The cache entry after a failed fetch. `temporary`: no HTTP answer (connection refused, TLS
 * error, timeout), a 5xx, or a body over WELL_KNOWN_MAX_BODY_BYTES. A temporary failure while a
 * still-unexpired delegation is cached keeps that delegation (the entry is returned unchanged,
 * so the next request tries again). Otherwise "no delegation" is cached: briefly when the
 * server had a valid answer recently, an hour otherwise, with jitter.
 */
export function wellKnownFromFailure(
  kind: 'temporary' | 'permanent',
  error: string,
  previous: WellKnownCacheEntry | undefined,
  nowMs: number,
  random: () => number = Math.random,
): WellKnownCacheEntry {
  if (kind === 'temporary' && previous && previous.delegatedServerName !== null && nowMs < previous.expiresAtMs) return previous;
  const hadValidUntilMs = previous?.hadValidUntilMs ?? 0;
  const base = nowMs < hadValidUntilMs ? WELL_KNOWN_DOWN_CACHE_MS : WELL_KNOWN_INVALID_CACHE_MS;
  return entry(null, nowMs, jitter(base, random), hadValidUntilMs, error);
}

export type WellKnownCacheState =
  /** Use it; no fetch. */
  | 'fresh'
  /** Still usable, but in its last WELL_KNOWN_GRACE_FRACTION: fetch again, pass it as `previous`. */
  | 'refresh'
  /** Past its period: fetch again (pass it as `previous` while `retainUntilMs` has not passed). */
  | 'expired';

export function wellKnownCacheState(entry: WellKnownCacheEntry, nowMs: number): WellKnownCacheState {
  if (nowMs >= entry.expiresAtMs) return 'expired';
  if (nowMs < entry.expiresAtMs - WELL_KNOWN_GRACE_FRACTION * entry.ttlMs) return 'fresh';
  return 'refresh';
}

function entry(delegatedServerName: string | null, nowMs: number, ttlMs: number, hadValidUntilMs: number, error?: string): WellKnownCacheEntry {
  const expiresAtMs = nowMs + ttlMs;
  return {
    delegatedServerName,
    fetchedAtMs: nowMs,
    ttlMs,
    expiresAtMs,
    hadValidUntilMs,
    retainUntilMs: Math.max(expiresAtMs, hadValidUntilMs),
    ...(error === undefined ? {} : { error }),
  };
}

function jitter(periodMs: number, random: () => number): number {
  return Math.round(periodMs * (1 - WELL_KNOWN_CACHE_JITTER + 2 * WELL_KNOWN_CACHE_JITTER * random()));
}

function headerValues(headers: HeaderValues, name: string): string[] {
  const out: string[] = [];
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() !== name || value === undefined) continue;
    if (typeof value === 'string') out.push(value);
    else out.push(...value);
  }
  return out;
}

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
const IMF_FIXDATE = /^[A-Za-z]{3}, (\d{2}) ([A-Za-z]{3}) (\d{4}) (\d{2}):(\d{2}):(\d{2}) GMT$/;
const RFC850_DATE = /^[A-Za-z]{6,9}, (\d{2})-([A-Za-z]{3})-(\d{2}) (\d{2}):(\d{2}):(\d{2}) GMT$/;
const ASCTIME_DATE = /^[A-Za-z]{3} ([A-Za-z]{3}) ([ \d]\d) (\d{2}):(\d{2}):(\d{2}) (\d{4})$/;

/**
 * An HTTP-date (RFC 9110 §5.6.7: IMF-fixdate, and the obsolete RFC 850 and asctime forms
 * recipients must accept) in ms since the epoch; undefined when it is none of them. Written out
 * because `Date.parse` accepts far more ("0" is the year 2000).
 */
export function parseHttpDate(text: string): number | undefined {
  const t = text.trim();
  let fields: { day: string; month: string; year: number; time: [string, string, string] };
  let match: RegExpExecArray | null;
  if ((match = IMF_FIXDATE.exec(t))) {
    fields = { day: match[1]!, month: match[2]!, year: Number(match[3]), time: [match[4]!, match[5]!, match[6]!] };
  } else if ((match = RFC850_DATE.exec(t))) {
    // Two-digit years: 70–99 are 19xx, 00–69 are 20xx (the usual pivot; the form is obsolete).
    const yy = Number(match[3]);
    fields = { day: match[1]!, month: match[2]!, year: yy >= 70 ? 1900 + yy : 2000 + yy, time: [match[4]!, match[5]!, match[6]!] };
  } else if ((match = ASCTIME_DATE.exec(t))) {
    fields = { day: match[2]!.trim(), month: match[1]!, year: Number(match[6]), time: [match[3]!, match[4]!, match[5]!] };
  } else {
    return undefined;
  }
  const monthIndex = MONTHS.indexOf(fields.month.toLowerCase());
  if (monthIndex < 0) return undefined;
  const day = Number(fields.day);
  const [hours, minutes, seconds] = fields.time.map(Number) as [number, number, number];
  if (day < 1 || day > 31 || hours > 23 || minutes > 59 || seconds > 60) return undefined;
  const ms = Date.UTC(fields.year, monthIndex, day, hours, minutes, seconds);
  // Refuse dates that roll over into the next month (31 Feb).
  if (new Date(ms).getUTCMonth() !== monthIndex) return undefined;
  return ms;
}
