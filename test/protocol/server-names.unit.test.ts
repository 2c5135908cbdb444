import { describe, expect, it } from 'vitest';
import {
  cachePeriodFromHeaders,
  DEFAULT_FEDERATION_PORT,
  formatHostPort,
  nextDiscoveryStep,
  orderSrvRecords,
  parseHttpDate,
  parseServerName,
  parseWellKnownBody,
  srvRecordNames,
  WELL_KNOWN_DEFAULT_CACHE_MS,
  WELL_KNOWN_DOWN_CACHE_MS,
  WELL_KNOWN_INVALID_CACHE_MS,
  WELL_KNOWN_MAX_CACHE_MS,
  WELL_KNOWN_MIN_CACHE_MS,
  WELL_KNOWN_REMEMBER_HAD_VALID_MS,
  wellKnownCacheState,
  wellKnownFromAnswer,
  wellKnownFromFailure,
  type ConnectionTarget,
  type DiscoveryFacts,
  type DiscoveryStep,
  type SrvRecord,
} from '../../src/protocol/server-names';

describe('server name grammar (appendices, "Server Name")', () => {
  it('accepts the spec examples', () => {
    expect(parseServerName('matrix.org')).toEqual({ serverName: 'matrix.org', host: 'matrix.org', kind: 'dns', port: undefined });
    expect(parseServerName('matrix.org:8888')).toEqual({ serverName: 'matrix.org:8888', host: 'matrix.org', kind: 'dns', port: 8888 });
    expect(parseServerName('1.2.3.4')).toEqual({ serverName: '1.2.3.4', host: '1.2.3.4', kind: 'ipv4', port: undefined });
    expect(parseServerName('1.2.3.4:1234')).toEqual({ serverName: '1.2.3.4:1234', host: '1.2.3.4', kind: 'ipv4', port: 1234 });
    expect(parseServerName('[1234:5678::abcd]')).toEqual({ serverName: '[1234:5678::abcd]', host: '1234:5678::abcd', kind: 'ipv6', port: undefined });
    expect(parseServerName('[1234:5678::abcd]:5678')).toEqual({ serverName: '[1234:5678::abcd]:5678', host: '1234:5678::abcd', kind: 'ipv6', port: 5678 });
  });

  it('accepts other valid names', () => {
    for (const ok of ['localhost', 'localhost:8448', 'a', 'x-y.example', 'MATRIX.ORG', '127.0.0.11:41448', '[::1]', '[::ffff:1.2.3.4]:8448', 'host:65535', 'host:1', 'a1.b2.c3', 'xn--bcher-kva.example', `${'a'.repeat(63)}.org`]) {
      expect(parseServerName(ok), ok).not.toBeNull();
    }
    // Case is kept: server names are case-sensitive.
    expect(parseServerName('MATRIX.ORG')!.host).toBe('MATRIX.ORG');
  });

  it('refuses what is not in the grammar', () => {
    for (const bad of [
      '', ':8448', 'matrix.org:', 'matrix.org:abc', 'matrix.org:123456', 'matrix.org:80:80', 'matrix_org', 'mätrix.org', 'matrix.org/x',
      'user@matrix.org', ' matrix.org', 'matrix.org ', '[1234:5678::abcd', '1234:5678::abcd', '[1234:5678::abcd]5678', '[]', '[::1]:',
      '[fe80::1%eth0]', '[g::1]', '[1.2.3.4]', `${'a'.repeat(256)}`,
    ]) {
      expect(parseServerName(bad), bad).toBeNull();
    }
  });

  it('is stricter than the grammar where connecting needs it', () => {
    // Port 0 and >65535 match 1*5DIGIT but cannot be connected to.
    expect(parseServerName('matrix.org:0')).toBeNull();
    expect(parseServerName('matrix.org:65536')).toBeNull();
    // Dotted quads beyond 255, or with leading zeros (octal to inet_aton).
    expect(parseServerName('256.1.1.1')).toBeNull();
    expect(parseServerName('01.2.3.4')).toBeNull();
    // Empty labels.
    expect(parseServerName('.matrix.org')).toBeNull();
    expect(parseServerName('matrix.org.')).toBeNull();
    expect(parseServerName('matrix..org')).toBeNull();
    // Names a resolver would turn into an address: numeric last label.
    for (const numeric of ['127.1', '1.2.3', '1.2.3.4.5', '2130706433', '0x7f000001', 'a.0x7f', 'example.123']) {
      expect(parseServerName(numeric), numeric).toBeNull();
    }
    // …but a numeric label elsewhere is fine.
    expect(parseServerName('123.example.org')?.kind).toBe('dns');
  });

  it('formats host and port for URLs and Host headers', () => {
    expect(formatHostPort('::1', 'ipv6', 8448)).toBe('[::1]:8448');
    expect(formatHostPort('::1', 'ipv6')).toBe('[::1]');
    expect(formatHostPort('example.org', 'dns', 443)).toBe('example.org:443');
    expect(formatHostPort('1.2.3.4', 'ipv4')).toBe('1.2.3.4');
  });
});

describe('SRV records', () => {
  it('are looked up as _matrix-fed._tcp, then the deprecated _matrix._tcp', () => {
    expect(srvRecordNames('example.org')).toEqual(['_matrix-fed._tcp.example.org', '_matrix._tcp.example.org']);
  });

  const rec = (name: string, priority: number, weight: number, port = 8448): SrvRecord => ({ name, port, priority, weight });

  it('are ordered by priority, lowest first', () => {
    const ordered = orderSrvRecords([rec('c', 20, 0), rec('a', 0, 0), rec('b', 10, 0)], () => 0);
    expect(ordered.map((r) => r.name)).toEqual(['a', 'b', 'c']);
  });

  it('within a priority, pick by weight (the random draw decides), zero weights last', () => {
    const records = [rec('zero', 0, 0), rec('light', 0, 10), rec('heavy', 0, 90)];
    // Draws are scaled by the weight left: 0.05*100 = 5 < 10 → light; then 0 → heavy.
    expect(orderSrvRecords(records, sequence(0.05, 0)).map((r) => r.name)).toEqual(['light', 'heavy', 'zero']);
    // 0.5*100 = 50 ≥ 10 → heavy; then light.
    expect(orderSrvRecords(records, sequence(0.5, 0)).map((r) => r.name)).toEqual(['heavy', 'light', 'zero']);
  });

  it('follow the weights over many draws', () => {
    const records = [rec('light', 0, 1), rec('heavy', 0, 3)];
    let seed = 42;
    const lcg = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    let heavyFirst = 0;
    for (let i = 0; i < 4000; i++) if (orderSrvRecords(records, lcg)[0]!.name === 'heavy') heavyFirst++;
    expect(heavyFirst / 4000).toBeGreaterThan(0.7);
    expect(heavyFirst / 4000).toBeLessThan(0.8);
  });

  it('drop trailing dots, "." targets, bad hostnames and bad ports', () => {
    const ordered = orderSrvRecords([rec('matrix.example.org.', 0, 0), rec('.', 0, 0), rec('bad_name', 0, 0), rec('ok', 0, 0, 0), rec('ok2', 0, 0, 70000)], () => 0);
    expect(ordered.map((r) => r.name)).toEqual(['matrix.example.org']);
  });
});

function sequence(...values: number[]): () => number {
  let i = 0;
  return () => values[Math.min(i++, values.length - 1)]!;
}

/** Run the discovery loop with canned look-ups, recording what was asked. */
function discover(serverName: string, world: { wellKnown?: string | null; srv?: Record<string, SrvRecord[]> }) {
  const facts: DiscoveryFacts = { srv: {} };
  const asked: string[] = [];
  for (let i = 0; i < 10; i++) {
    const step: DiscoveryStep = nextDiscoveryStep(serverName, facts, () => 0);
    if (step.action === 'fetch-well-known') {
      asked.push(step.url);
      facts.wellKnown = { delegatedServerName: world.wellKnown ?? null };
    } else if (step.action === 'lookup-srv') {
      asked.push(step.recordName);
      (facts.srv as Record<string, SrvRecord[]>)[step.recordName] = world.srv?.[step.recordName] ?? [];
    } else {
      return { step, asked };
    }
  }
  throw new Error('discovery did not finish');
}

function targetsOf(step: DiscoveryStep): ConnectionTarget[] {
  if (step.action !== 'connect') throw new Error(`expected connect, got ${JSON.stringify(step)}`);
  return step.targets;
}

describe('resolving server names (server-server API, steps 1–6)', () => {
  it('1. an IPv4 literal: that address, 8448, certificate for the IP, no SNI, Host = server name', () => {
    const { step, asked } = discover('1.2.3.4', {});
    expect(asked).toEqual([]);
    expect(targetsOf(step)).toEqual([{ host: '1.2.3.4', kind: 'ipv4', port: 8448, hostHeader: '1.2.3.4', certificateName: '1.2.3.4', sni: undefined, route: '1 ip literal' }]);
  });

  it('1. an IPv6 literal with a port: Host keeps the brackets and the port', () => {
    const { step } = discover('[1234:5678::abcd]:5678', {});
    expect(targetsOf(step)).toEqual([{ host: '1234:5678::abcd', kind: 'ipv6', port: 5678, hostHeader: '[1234:5678::abcd]:5678', certificateName: '1234:5678::abcd', sni: undefined, route: '1 ip literal' }]);
  });

  it('2. a hostname with a port: no well-known, no SRV; Host = server name with port, certificate for the hostname', () => {
    const { step, asked } = discover('matrix.org:8888', {});
    expect(asked).toEqual([]);
    expect(targetsOf(step)).toEqual([{ host: 'matrix.org', kind: 'dns', port: 8888, hostHeader: 'matrix.org:8888', certificateName: 'matrix.org', sni: 'matrix.org', route: '2 explicit port' }]);
  });

  it('3. asks for https://<hostname>/.well-known/matrix/server first', () => {
    expect(nextDiscoveryStep('example.org', {})).toEqual({ action: 'fetch-well-known', hostname: 'example.org', url: 'https://example.org/.well-known/matrix/server' });
  });

  it('3.1 delegated to an IP literal: Host is the IP (with the port if given), certificate for the IP', () => {
    const { step, asked } = discover('example.org', { wellKnown: '10.0.0.5:1234' });
    expect(asked).toEqual(['https://example.org/.well-known/matrix/server']);
    expect(step).toMatchObject({ delegatedServerName: '10.0.0.5:1234' });
    expect(targetsOf(step)).toEqual([{ host: '10.0.0.5', kind: 'ipv4', port: 1234, hostHeader: '10.0.0.5:1234', certificateName: '10.0.0.5', sni: undefined, route: '3.1 delegated ip literal' }]);
    const v6 = discover('example.org', { wellKnown: '[2001:db8::1]' });
    expect(targetsOf(v6.step)).toEqual([{ host: '2001:db8::1', kind: 'ipv6', port: 8448, hostHeader: '[2001:db8::1]', certificateName: '2001:db8::1', sni: undefined, route: '3.1 delegated ip literal' }]);
  });

  it('3.2 delegated hostname with a port: Host <delegated_hostname>:<delegated_port>, certificate for the delegated hostname, no SRV', () => {
    const { step, asked } = discover('example.org', { wellKnown: 'delegated.example.com:1234' });
    expect(asked).toEqual(['https://example.org/.well-known/matrix/server']);
    expect(targetsOf(step)).toEqual([{ host: 'delegated.example.com', kind: 'dns', port: 1234, hostHeader: 'delegated.example.com:1234', certificateName: 'delegated.example.com', sni: 'delegated.example.com', route: '3.2 delegated explicit port' }]);
  });

  it('3.3 delegated hostname without a port: SRV _matrix-fed._tcp.<delegated_hostname>, Host and certificate the delegated hostname', () => {
    const { step, asked } = discover('example.org', {
      wellKnown: 'delegated.example.com',
      srv: { '_matrix-fed._tcp.delegated.example.com': [{ name: 'fed1.example.net', port: 443, priority: 0, weight: 0 }] },
    });
    expect(asked).toEqual(['https://example.org/.well-known/matrix/server', '_matrix-fed._tcp.delegated.example.com']);
    expect(targetsOf(step)).toEqual([{ host: 'fed1.example.net', kind: 'dns', port: 443, hostHeader: 'delegated.example.com', certificateName: 'delegated.example.com', sni: 'delegated.example.com', route: '3.3 delegated srv' }]);
  });

  it('3.4 then the deprecated _matrix._tcp.<delegated_hostname>', () => {
    const { step, asked } = discover('example.org', {
      wellKnown: 'delegated.example.com',
      srv: { '_matrix._tcp.delegated.example.com': [{ name: 'old.example.net', port: 8449, priority: 0, weight: 0 }] },
    });
    expect(asked).toEqual(['https://example.org/.well-known/matrix/server', '_matrix-fed._tcp.delegated.example.com', '_matrix._tcp.delegated.example.com']);
    expect(targetsOf(step)).toEqual([{ host: 'old.example.net', kind: 'dns', port: 8449, hostHeader: 'delegated.example.com', certificateName: 'delegated.example.com', sni: 'delegated.example.com', route: '3.4 delegated srv (deprecated _matrix._tcp)' }]);
  });

  it('3.5 no SRV for the delegated hostname: it, on 8448', () => {
    const { step } = discover('example.org', { wellKnown: 'delegated.example.com' });
    expect(targetsOf(step)).toEqual([{ host: 'delegated.example.com', kind: 'dns', port: 8448, hostHeader: 'delegated.example.com', certificateName: 'delegated.example.com', sni: 'delegated.example.com', route: '3.5 delegated default port' }]);
  });

  it('4. no well-known: SRV _matrix-fed._tcp.<hostname>, Host and certificate the hostname (not the SRV target)', () => {
    const { step, asked } = discover('example.org', {
      srv: {
        '_matrix-fed._tcp.example.org': [
          { name: 'backup.example.org', port: 8448, priority: 10, weight: 0 },
          { name: 'main.example.org', port: 443, priority: 0, weight: 0 },
        ],
      },
    });
    expect(asked).toEqual(['https://example.org/.well-known/matrix/server', '_matrix-fed._tcp.example.org']);
    expect(targetsOf(step)).toEqual([
      { host: 'main.example.org', kind: 'dns', port: 443, hostHeader: 'example.org', certificateName: 'example.org', sni: 'example.org', route: '4 srv' },
      { host: 'backup.example.org', kind: 'dns', port: 8448, hostHeader: 'example.org', certificateName: 'example.org', sni: 'example.org', route: '4 srv' },
    ]);
  });

  it('5. then the deprecated _matrix._tcp.<hostname>', () => {
    const { step, asked } = discover('example.org', { srv: { '_matrix._tcp.example.org': [{ name: 'legacy.example.org', port: 8448, priority: 0, weight: 0 }] } });
    expect(asked).toEqual(['https://example.org/.well-known/matrix/server', '_matrix-fed._tcp.example.org', '_matrix._tcp.example.org']);
    expect(targetsOf(step)[0]).toMatchObject({ host: 'legacy.example.org', hostHeader: 'example.org', certificateName: 'example.org', route: '5 srv (deprecated _matrix._tcp)' });
  });

  it('6. nothing found: the hostname on 8448', () => {
    const { step } = discover('example.org', {});
    expect(targetsOf(step)).toEqual([{ host: 'example.org', kind: 'dns', port: DEFAULT_FEDERATION_PORT, hostHeader: 'example.org', certificateName: 'example.org', sni: 'example.org', route: '6 default port' }]);
    expect(step).toMatchObject({ delegatedServerName: undefined });
  });

  it('an invalid delegated name counts as no delegation (spec: invalid well-known → step 4)', () => {
    const { step } = discover('example.org', { wellKnown: 'not a server name' });
    expect(targetsOf(step)[0]).toMatchObject({ host: 'example.org', route: '6 default port' });
  });

  it('an SRV answer of "." means the service is not available: fail, as Synapse does', () => {
    const { step } = discover('example.org', { srv: { '_matrix-fed._tcp.example.org': [{ name: '.', port: 0, priority: 0, weight: 0 }] } });
    expect(step.action).toBe('fail');
  });

  it('an SRV target written as an IP is connected to as one, with the hostname still on the certificate', () => {
    const { step } = discover('example.org', { srv: { '_matrix-fed._tcp.example.org': [{ name: '192.0.2.10', port: 8448, priority: 0, weight: 0 }] } });
    expect(targetsOf(step)[0]).toMatchObject({ host: '192.0.2.10', kind: 'ipv4', certificateName: 'example.org', sni: 'example.org' });
  });

  it('fails for a name outside the grammar', () => {
    expect(nextDiscoveryStep('bad name', {}).action).toBe('fail');
  });
});

describe('/.well-known/matrix/server bodies', () => {
  it('reads the spec example', () => {
    expect(parseWellKnownBody('{"m.server": "delegated.example.com:1234"}')).toEqual({ ok: true, delegatedServerName: 'delegated.example.com:1234' });
  });
  it('reads bytes, ignores other fields (floats too)', () => {
    expect(parseWellKnownBody(new TextEncoder().encode('{"m.server":"[::1]:8448","x":1.5}'))).toEqual({ ok: true, delegatedServerName: '[::1]:8448' });
  });
  it('refuses invalid answers', () => {
    for (const bad of ['', 'not json', '[]', '"x"', '{}', '{"m.server":1}', '{"m.server":"has space"}', '{"m.server":"x:99999"}', '{"m.server":"a","m.server":"b"}', '{"m.server":""}']) {
      expect(parseWellKnownBody(bad).ok, bad).toBe(false);
    }
  });
});

describe('HTTP dates', () => {
  it('reads the three forms of RFC 9110 §5.6.7', () => {
    const at = Date.UTC(1994, 10, 6, 8, 49, 37);
    expect(parseHttpDate('Sun, 06 Nov 1994 08:49:37 GMT')).toBe(at);
    expect(parseHttpDate('Sunday, 06-Nov-94 08:49:37 GMT')).toBe(at);
    expect(parseHttpDate('Sun Nov  6 08:49:37 1994')).toBe(at);
  });
  it('refuses what is not an HTTP date (Date.parse would read "0" as 2000)', () => {
    for (const bad of ['0', '', 'tomorrow', 'Sun, 31 Feb 2021 00:00:00 GMT', 'Sun, 06 Nov 1994 08:49:37 PST', '2021-01-01T00:00:00Z']) {
      expect(parseHttpDate(bad), bad).toBeUndefined();
    }
  });
});

describe('well-known caching (Synapse numbers)', () => {
  const now = 1_700_000_000_000;
  const ok = (headers: Record<string, string | string[]> = {}) => ({ status: 200, headers, body: '{"m.server":"delegated.example.com:443"}' });
  const middle = () => 0.5; // no jitter

  it('cache period from headers: max-age, no-store, Expires, none', () => {
    expect(cachePeriodFromHeaders({ 'Cache-Control': 'public, max-age=3600' }, now)).toBe(3600_000);
    expect(cachePeriodFromHeaders({ 'cache-control': ['public', 'MAX-AGE = 60'] }, now)).toBe(60_000);
    expect(cachePeriodFromHeaders({ 'cache-control': 'no-store, max-age=3600' }, now)).toBe(0);
    expect(cachePeriodFromHeaders({ expires: new Date(now + 7200_000).toUTCString() }, now)).toBe(7200_000);
    expect(cachePeriodFromHeaders({ expires: '0' }, now)).toBe(0);
    // A max-age that is not a number falls through to Expires.
    expect(cachePeriodFromHeaders({ 'cache-control': 'max-age="60"', expires: new Date(now + 60_000).toUTCString() }, now)).toBe(60_000);
    expect(cachePeriodFromHeaders({}, now)).toBeUndefined();
  });

  it('a valid answer without cache headers is kept 24 h ± 10 %', () => {
    expect(wellKnownFromAnswer(ok(), undefined, now, middle).ttlMs).toBe(WELL_KNOWN_DEFAULT_CACHE_MS);
    expect(wellKnownFromAnswer(ok(), undefined, now, () => 0).ttlMs).toBe(Math.round(0.9 * WELL_KNOWN_DEFAULT_CACHE_MS));
    expect(wellKnownFromAnswer(ok(), undefined, now, () => 1).ttlMs).toBe(Math.round(1.1 * WELL_KNOWN_DEFAULT_CACHE_MS));
  });

  it('header periods are clamped to [5 min, 48 h] (no-store becomes 5 min, as in Synapse)', () => {
    expect(wellKnownFromAnswer(ok({ 'cache-control': 'max-age=600' }), undefined, now).ttlMs).toBe(600_000);
    expect(wellKnownFromAnswer(ok({ 'cache-control': 'max-age=31536000' }), undefined, now).ttlMs).toBe(WELL_KNOWN_MAX_CACHE_MS);
    expect(wellKnownFromAnswer(ok({ 'cache-control': 'max-age=1' }), undefined, now).ttlMs).toBe(WELL_KNOWN_MIN_CACHE_MS);
    expect(wellKnownFromAnswer(ok({ 'cache-control': 'no-store' }), undefined, now).ttlMs).toBe(WELL_KNOWN_MIN_CACHE_MS);
    expect(wellKnownFromAnswer(ok({ expires: 'Thu, 01 Jan 1970 00:00:00 GMT' }), undefined, now).ttlMs).toBe(WELL_KNOWN_MIN_CACHE_MS);
  });

  it('a valid answer records the delegation and remembers it for period + 2 h', () => {
    const entry = wellKnownFromAnswer(ok({ 'cache-control': 'max-age=3600' }), undefined, now);
    expect(entry).toMatchObject({ delegatedServerName: 'delegated.example.com:443', fetchedAtMs: now, expiresAtMs: now + 3600_000 });
    expect(entry.hadValidUntilMs).toBe(now + 3600_000 + WELL_KNOWN_REMEMBER_HAD_VALID_MS);
    expect(entry.retainUntilMs).toBe(entry.hadValidUntilMs);
  });

  it('a 404 or an invalid body caches "no delegation" for an hour ± 10 %', () => {
    for (const answer of [{ status: 404, headers: {}, body: '' }, { status: 200, headers: {}, body: '{"m.server": 5}' }, { status: 302, headers: {}, body: '' }]) {
      const entry = wellKnownFromAnswer(answer, undefined, now, middle);
      expect(entry.delegatedServerName).toBeNull();
      expect(entry.ttlMs).toBe(WELL_KNOWN_INVALID_CACHE_MS);
      expect(entry.error).toBeTruthy();
    }
  });

  it('a failure shortly after a valid answer is cached only 2 min (the server is probably down)', () => {
    const valid = wellKnownFromAnswer(ok({ 'cache-control': 'max-age=3600' }), undefined, now);
    const later = valid.expiresAtMs + 60_000; // expired, but within the remember window
    const failed = wellKnownFromAnswer({ status: 404, headers: {}, body: '' }, valid, later, middle);
    expect(failed.delegatedServerName).toBeNull();
    expect(failed.ttlMs).toBe(WELL_KNOWN_DOWN_CACHE_MS);
    expect(failed.hadValidUntilMs).toBe(valid.hadValidUntilMs);
    // Long after, a failure is cached the full hour again.
    const muchLater = valid.hadValidUntilMs + 1;
    expect(wellKnownFromFailure('permanent', 'x', failed, muchLater, middle).ttlMs).toBe(WELL_KNOWN_INVALID_CACHE_MS);
  });

  it('a temporary failure (5xx, no connection) keeps a still-valid delegation', () => {
    const valid = wellKnownFromAnswer(ok({ 'cache-control': 'max-age=3600' }), undefined, now);
    const inGrace = now + 3000_000; // last 20 %
    expect(wellKnownCacheState(valid, inGrace)).toBe('refresh');
    expect(wellKnownFromAnswer({ status: 503, headers: {}, body: '' }, valid, inGrace)).toBe(valid);
    expect(wellKnownFromFailure('temporary', 'ECONNREFUSED', valid, inGrace)).toBe(valid);
    // …but a permanent failure replaces it.
    expect(wellKnownFromAnswer({ status: 404, headers: {}, body: '' }, valid, inGrace, middle).delegatedServerName).toBeNull();
    // …and an expired one is not kept.
    expect(wellKnownFromFailure('temporary', 'ECONNREFUSED', valid, valid.expiresAtMs, middle).delegatedServerName).toBeNull();
  });

  it('cache states: fresh, then refresh in the last 20 %, then expired', () => {
    const entry = wellKnownFromAnswer(ok({ 'cache-control': 'max-age=1000' }), undefined, now);
    expect(wellKnownCacheState(entry, now)).toBe('fresh');
    expect(wellKnownCacheState(entry, now + 799_999)).toBe('fresh');
    expect(wellKnownCacheState(entry, now + 800_000)).toBe('refresh');
    expect(wellKnownCacheState(entry, now + 1000_000)).toBe('expired');
  });
});
