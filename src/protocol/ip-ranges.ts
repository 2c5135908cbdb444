/**
 * IP addresses and CIDR ranges, for the federation client's SSRF guard: after a peer's name is
 * resolved (DNS, SRV, `.well-known` delegation), every address is checked against a blocklist
 * before we connect, so a server name cannot point us at our own network (Redis, the metadata
 * service, the admin API on loopback…).
 *
 * Addresses are parsed strictly: dotted-quad IPv4 without leading zeros (a resolver would read
 * `010` as octal), and RFC 4291 §2.2 text forms for IPv6 (`::` once, an embedded dotted quad in
 * the last 32 bits). An IPv4-mapped IPv6 address (`::ffff:127.0.0.1`, what a dual-stack socket
 * reports) is also matched as the IPv4 address it carries, so a blocklist of IPv4 ranges
 * cannot be stepped around by writing the address in its IPv6 form.
 */

export type IpVersion = 4 | 6;

/** A parsed address: 4 bytes for IPv4, 16 for IPv6, network byte order. */
export interface IpAddress {
  readonly version: IpVersion;
  readonly bytes: Uint8Array;
}

/** A CIDR range; `prefix` is the number of leading bits that must match. */
export interface IpRange {
  readonly version: IpVersion;
  readonly network: Uint8Array;
  readonly prefix: number;
}

export class IpParseError extends Error {
  override name = 'IpParseError';
}

const DEC_OCTET = /^(?:0|[1-9][0-9]{0,2})$/;

/** Strict dotted-quad IPv4 (four decimal numbers 0–255, no leading zeros). */
export function parseIpv4(text: string): IpAddress | null {
  const parts = text.split('.');
  if (parts.length !== 4) return null;
  const bytes = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const part = parts[i]!;
    if (!DEC_OCTET.test(part)) return null;
    const n = Number(part);
    if (n > 255) return null;
    bytes[i] = n;
  }
  return { version: 4, bytes };
}

const HEX_GROUP = /^[0-9A-Fa-f]{1,4}$/;

/**
 * IPv6 in the text forms of RFC 4291 §2.2: eight groups of 1–4 hex digits, one `::` standing for
 * one or more zero groups, optionally a dotted-quad IPv4 address as the last 32 bits. A zone
 * (`fe80::1%eth0`) is refused here; `parseIp` can strip one from resolver output.
 */
export function parseIpv6(text: string): IpAddress | null {
  if (text.length < 2 || text.length > 45) return null;
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const groupsOf = (s: string): string[] => (s === '' ? [] : s.split(':'));
  const head = groupsOf(halves[0]!);
  const tail = halves.length === 2 ? groupsOf(halves[1]!) : [];

  // The last group may be a dotted quad (two 16-bit groups' worth).
  const words: number[] = [];
  const all = [...head, ...(halves.length === 2 ? ['::'] : []), ...tail];
  const lastText = all[all.length - 1];
  let embeddedIpv4: IpAddress | null = null;
  if (lastText !== undefined && lastText.includes('.')) {
    embeddedIpv4 = parseIpv4(lastText);
    if (!embeddedIpv4) return null;
    all.pop();
  }
  const explicitWords = all.filter((g) => g !== '::').length + (embeddedIpv4 ? 2 : 0);
  if (halves.length === 1 && explicitWords !== 8) return null;
  if (halves.length === 2 && explicitWords > 7) return null; // `::` stands for at least one group
  for (const group of all) {
    if (group === '::') {
      for (let i = 0; i < 8 - explicitWords; i++) words.push(0);
      continue;
    }
    if (!HEX_GROUP.test(group)) return null;
    words.push(parseInt(group, 16));
  }
  const bytes = new Uint8Array(16);
  for (let i = 0; i < words.length; i++) {
    bytes[2 * i] = words[i]! >> 8;
    bytes[2 * i + 1] = words[i]! & 0xff;
  }
  if (embeddedIpv4) bytes.set(embeddedIpv4.bytes, 12);
  return { version: 6, bytes };
}

/**
 * Parse an address as a resolver or socket reports it: IPv4, IPv6, IPv6 in brackets, IPv6 with a
 * zone (`%eth0`, ignored: the zone does not change which range the address is in).
 */
export function parseIp(text: string): IpAddress | null {
  if (text.includes(':') || text.startsWith('[')) {
    let t = text;
    if (t.startsWith('[') && t.endsWith(']')) t = t.slice(1, -1);
    const zone = t.indexOf('%');
    if (zone >= 0) {
      if (zone === t.length - 1) return null;
      t = t.slice(0, zone);
    }
    return parseIpv6(t);
  }
  return parseIpv4(text);
}

/** The IPv4 address inside an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`), else null. */
export function ipv4FromMapped(address: IpAddress): IpAddress | null {
  if (address.version !== 6) return null;
  const b = address.bytes;
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return null;
  if (b[10] !== 0xff || b[11] !== 0xff) return null;
  return { version: 4, bytes: b.slice(12, 16) };
}

/** Text form: dotted quad, or RFC 5952 IPv6 (lower case, longest zero run as `::`). */
export function formatIp(address: IpAddress): string {
  const b = address.bytes;
  if (address.version === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) words.push((b[i]! << 8) | b[i + 1]!);
  // RFC 5952 §4.2: compress the longest run of two or more zero groups (the first, on a tie).
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (ws: number[]) => ws.map((w) => w.toString(16)).join(':');
  if (bestStart < 0) return hex(words);
  return `${hex(words.slice(0, bestStart))}::${hex(words.slice(bestStart + bestLength))}`;
}

/**
 * Parse `address/prefix` (or a bare address: a single-address range). Bits past the prefix are
 * cleared (`10.1.2.3/8` is `10.0.0.0/8`), as Synapse's netaddr sets do for configured ranges.
 */
export function parseCidr(text: string): IpRange {
  const trimmed = text.trim();
  const slash = trimmed.indexOf('/');
  const addressText = slash < 0 ? trimmed : trimmed.slice(0, slash);
  const address = addressText.includes(':') ? parseIpv6(addressText) : parseIpv4(addressText);
  if (!address) throw new IpParseError(`Not an IP address: ${JSON.stringify(addressText)}`);
  const maxPrefix = address.version === 4 ? 32 : 128;
  let prefix = maxPrefix;
  if (slash >= 0) {
    const prefixText = trimmed.slice(slash + 1);
    if (!/^(?:0|[1-9][0-9]{0,2})$/.test(prefixText) || Number(prefixText) > maxPrefix) {
      throw new IpParseError(`Invalid prefix length in ${JSON.stringify(text)}`);
    }
    prefix = Number(prefixText);
  }
  const network = new Uint8Array(address.bytes);
  for (let bit = prefix; bit < maxPrefix; bit++) network[bit >> 3]! &= ~(0x80 >> (bit & 7));
  return { version: address.version, network, prefix };
}

export function formatCidr(range: IpRange): string {
  return `${formatIp({ version: range.version, bytes: range.network })}/${range.prefix}`;
}

export function rangeContains(range: IpRange, address: IpAddress): boolean {
  if (range.version !== address.version) return false;
  const fullBytes = range.prefix >> 3;
  for (let i = 0; i < fullBytes; i++) if (range.network[i] !== address.bytes[i]) return false;
  const restBits = range.prefix & 7;
  if (restBits === 0) return true;
  const mask = (0xff << (8 - restBits)) & 0xff;
  return (range.network[fullBytes]! & mask) === (address.bytes[fullBytes]! & mask);
}

/** A set of CIDR ranges. An IPv4-mapped IPv6 address matches as itself and as its IPv4 address. */
export class IpRangeSet {
  readonly ranges: readonly IpRange[];

  constructor(cidrs: Iterable<string | IpRange>) {
    this.ranges = [...cidrs].map((c) => (typeof c === 'string' ? parseCidr(c) : c));
  }

  get size(): number {
    return this.ranges.length;
  }

  /** Whether `address` is in one of the ranges. Throws IpParseError for a string that is not an address. */
  contains(address: string | IpAddress): boolean {
    const parsed = typeof address === 'string' ? parseIp(address) : address;
    if (!parsed) throw new IpParseError(`Not an IP address: ${JSON.stringify(address)}`);
    const mapped = ipv4FromMapped(parsed);
    for (const range of this.ranges) {
      if (rangeContains(range, parsed)) return true;
      if (mapped && rangeContains(range, mapped)) return true;
    }
    return false;
  }

  toStrings(): string[] {
    return this.ranges.map(formatCidr);
  }
}

/**
 * Synapse's default `ip_range_blacklist` (synapse/config/server.py, DEFAULT_IP_RANGE_BLOCKLIST),
 * which also applies to federation unless `federation_ip_range_blacklist` is set. Kept in
 * Synapse's order with its groupings so the two can be compared line by line.
 */
export const DEFAULT_FEDERATION_IP_BLOCKLIST: readonly string[] = Object.freeze([
  // IPv4 loopback.
  '127.0.0.0/8',
  // Private networks (RFC 1918).
  '10.0.0.0/8',
  '172.16.0.0/12',
  '192.168.0.0/16',
  // Carrier-grade NAT (RFC 6598).
  '100.64.0.0/10',
  // IETF protocol assignments (RFC 6890).
  '192.0.0.0/24',
  // Link-local (RFC 3927).
  '169.254.0.0/16',
  // Formerly the 6to4 relay anycast (RFC 7526).
  '192.88.99.0/24',
  // Benchmarking (RFC 2544) and documentation (RFC 5737).
  '198.18.0.0/15',
  '192.0.2.0/24',
  '198.51.100.0/24',
  '203.0.113.0/24',
  // Multicast.
  '224.0.0.0/4',
  // IPv6 loopback.
  '::1/128',
  // IPv6 link-local.
  'fe80::/10',
  // Unique local addresses (RFC 4193).
  'fc00::/7',
  // Documentation (RFC 3849).
  '2001:db8::/32',
  // Multicast.
  'ff00::/8',
  // Site-local (deprecated, RFC 3879).
  'fec0::/10',
]);

/**
 * Blocked whatever the configuration says, as Synapse always adds `0.0.0.0` and `::` to its
 * blocklists: connecting to the unspecified address reaches this host. We block all of
 * `0.0.0.0/8` ("this network", RFC 791), which no peer can be reached at either.
 */
export const ALWAYS_BLOCKED_IP_RANGES: readonly string[] = Object.freeze(['0.0.0.0/8', '::/128']);

/**
 * The federation client's blocklist: the configured ranges (Synapse's defaults when none are
 * configured; an empty list allows everything but the always-blocked ranges, for tests on
 * loopback) plus ALWAYS_BLOCKED_IP_RANGES. Throws IpParseError naming a bad entry.
 */
export function federationIpBlocklist(configured?: readonly string[]): IpRangeSet {
  return new IpRangeSet([...(configured ?? DEFAULT_FEDERATION_IP_BLOCKLIST), ...ALWAYS_BLOCKED_IP_RANGES]);
}

/**
 * May we connect to `address`? Fails closed: something that is not an IP address is refused,
 * so a resolver returning junk cannot slip past the check.
 */
export function isAddressAllowed(address: string | IpAddress, blocklist: IpRangeSet): boolean {
  const parsed = typeof address === 'string' ? parseIp(address) : address;
  if (!parsed) return false;
  return !blocklist.contains(parsed);
}
