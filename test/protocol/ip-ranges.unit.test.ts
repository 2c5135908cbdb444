import { describe, expect, it } from 'vitest';
import {
  ALWAYS_BLOCKED_IP_RANGES,
  DEFAULT_FEDERATION_IP_BLOCKLIST,
  federationIpBlocklist,
  formatCidr,
  formatIp,
  IpParseError,
  IpRangeSet,
  ipv4FromMapped,
  isAddressAllowed,
  parseCidr,
  parseIp,
  parseIpv4,
  parseIpv6,
} from '../../src/protocol/ip-ranges';

const hex = (bytes: Uint8Array | undefined) => Buffer.from(bytes ?? []).toString('hex');

describe('IPv4 parsing', () => {
  it('reads dotted quads', () => {
    expect(hex(parseIpv4('1.2.3.4')?.bytes)).toBe('01020304');
    expect(hex(parseIpv4('255.255.255.255')?.bytes)).toBe('ffffffff');
    expect(hex(parseIpv4('0.0.0.0')?.bytes)).toBe('00000000');
  });
  it('refuses out-of-range numbers, leading zeros (octal to some resolvers) and short forms', () => {
    for (const bad of ['256.1.1.1', '1.2.3', '1.2.3.4.5', '01.2.3.4', '1.2.3.04', '0x7f.0.0.1', '1.2.3.', '', ' 1.2.3.4', '1.2.3.4 ', '+1.2.3.4', '1..3.4', '127.1']) {
      expect(parseIpv4(bad), bad).toBeNull();
    }
  });
});

describe('IPv6 parsing (RFC 4291 §2.2 text forms)', () => {
  const cases: [string, string][] = [
    ['::', '00000000000000000000000000000000'],
    ['::1', '00000000000000000000000000000001'],
    ['1::', '00010000000000000000000000000000'],
    ['1234:5678::abcd', `12345678${'0'.repeat(20)}abcd`],
    ['2001:DB8:0:0:8:800:200C:417A', '20010db80000000000080800200c417a'],
    ['2001:db8::8:800:200c:417a', '20010db80000000000080800200c417a'],
    ['::ffff:192.0.2.1', '00000000000000000000ffffc0000201'],
    ['::13.1.68.3', '0000000000000000000000000d014403'],
    ['1:2:3:4:5:6:7:8', '00010002000300040005000600070008'],
    ['1:2:3:4:5:6:7::', '00010002000300040005000600070000'],
    ['1:2:3:4:5:6:1.2.3.4', '00010002000300040005000601020304'],
  ];
  for (const [text, bytes] of cases) {
    it(text, () => {
      expect(hex(parseIpv6(text)?.bytes)).toBe(bytes);
    });
  }
  it('refuses malformed forms', () => {
    for (const bad of [
      '', ':', ':::', '1:::2', '1::2::3', ':1:2:3:4:5:6:7', '1:2:3:4:5:6:7:', '1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7:8::',
      '12345::', 'g::', '1.2.3.4', '::1.2.3', '::256.1.1.1', '1.2.3.4::', '::1.2.3.4:5', '1:2:3:4:5:6:7:1.2.3.4', 'fe80::1%eth0', '[::1]',
    ]) {
      expect(parseIpv6(bad), bad).toBeNull();
    }
  });
  it('parseIp takes brackets and zones as resolvers and sockets give them', () => {
    expect(parseIp('[::1]')?.version).toBe(6);
    expect(hex(parseIp('fe80::1%eth0')?.bytes)).toBe('fe800000000000000000000000000001');
    expect(parseIp('fe80::1%')).toBeNull();
    expect(parseIp('10.0.0.1')?.version).toBe(4);
    expect(parseIp('example.org')).toBeNull();
  });
  it('formats per RFC 5952 (lower case, longest zero run compressed, a single zero group kept)', () => {
    const fmt = (s: string) => formatIp(parseIp(s)!);
    expect(fmt('2001:DB8:0:0:8:800:200C:417A')).toBe('2001:db8::8:800:200c:417a');
    expect(fmt('::')).toBe('::');
    expect(fmt('::1')).toBe('::1');
    expect(fmt('1:0:0:2:0:0:0:3')).toBe('1:0:0:2::3');
    expect(fmt('1:0:0:2:0:0:3:4')).toBe('1::2:0:0:3:4');
    expect(fmt('1:2:3:4:5:6:0:8')).toBe('1:2:3:4:5:6:0:8');
    expect(fmt('10.1.2.3')).toBe('10.1.2.3');
  });
});

describe('CIDR ranges', () => {
  it('parses and normalises ranges (host bits cleared, as netaddr does)', () => {
    expect(formatCidr(parseCidr('10.1.2.3/8'))).toBe('10.0.0.0/8');
    expect(formatCidr(parseCidr('172.16.0.0/12'))).toBe('172.16.0.0/12');
    expect(formatCidr(parseCidr('fe80::1/10'))).toBe('fe80::/10');
    expect(formatCidr(parseCidr('192.0.2.7'))).toBe('192.0.2.7/32');
    expect(formatCidr(parseCidr('::1'))).toBe('::1/128');
    expect(formatCidr(parseCidr(' 0.0.0.0/0 '))).toBe('0.0.0.0/0');
  });
  it('refuses bad ranges with IpParseError', () => {
    for (const bad of ['10.0.0.0/33', '::/129', '10.0.0.0/', '10.0.0.0/08', '10.0.0/8', 'example.org/8', '10.0.0.0/-1', '']) {
      expect(() => parseCidr(bad), bad).toThrow(IpParseError);
    }
  });
  it('matches at prefix boundaries', () => {
    const set = new IpRangeSet(['172.16.0.0/12', '100.64.0.0/10', 'fc00::/7', '192.0.2.0/24']);
    expect(set.contains('172.16.0.0')).toBe(true);
    expect(set.contains('172.31.255.255')).toBe(true);
    expect(set.contains('172.32.0.0')).toBe(false);
    expect(set.contains('172.15.255.255')).toBe(false);
    expect(set.contains('100.127.255.255')).toBe(true);
    expect(set.contains('100.128.0.0')).toBe(false);
    expect(set.contains('fc00::1')).toBe(true);
    expect(set.contains('fdff:ffff::1')).toBe(true);
    expect(set.contains('fe00::1')).toBe(false);
    expect(set.contains('192.0.2.255')).toBe(true);
    expect(set.contains('192.0.3.0')).toBe(false);
  });
  it('an IPv4 range does not match an IPv6 address and vice versa (except IPv4-mapped)', () => {
    const set = new IpRangeSet(['0.0.0.0/0']);
    expect(set.contains('1.2.3.4')).toBe(true);
    expect(set.contains('2001:db8::1')).toBe(false);
    expect(new IpRangeSet(['::/0']).contains('1.2.3.4')).toBe(false);
  });
  it('matches an IPv4-mapped IPv6 address against IPv4 ranges', () => {
    const set = new IpRangeSet(['127.0.0.0/8']);
    expect(set.contains('::ffff:127.0.0.1')).toBe(true);
    expect(set.contains('::ffff:7f00:1')).toBe(true);
    expect(set.contains('[::ffff:127.0.0.1]')).toBe(true);
    expect(set.contains('::ffff:8.8.8.8')).toBe(false);
    // Not mapped: the IPv4-compatible form and NAT64 are different addresses.
    expect(set.contains('::127.0.0.1')).toBe(false);
    expect(ipv4FromMapped(parseIp('::ffff:10.0.0.1')!)?.bytes).toEqual(new Uint8Array([10, 0, 0, 1]));
    expect(ipv4FromMapped(parseIp('::1')!)).toBeNull();
  });
  it('contains() throws on a string that is not an address', () => {
    expect(() => new IpRangeSet([]).contains('localhost')).toThrow(IpParseError);
  });
});

describe('the federation IP blocklist', () => {
  it("is Synapse's default ip_range_blacklist", () => {
    // synapse/config/server.py DEFAULT_IP_RANGE_BLOCKLIST, in its order.
    expect(DEFAULT_FEDERATION_IP_BLOCKLIST).toEqual([
      '127.0.0.0/8', '10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '100.64.0.0/10', '192.0.0.0/24', '169.254.0.0/16',
      '192.88.99.0/24', '198.18.0.0/15', '192.0.2.0/24', '198.51.100.0/24', '203.0.113.0/24', '224.0.0.0/4', '::1/128',
      'fe80::/10', 'fc00::/7', '2001:db8::/32', 'ff00::/8', 'fec0::/10',
    ]);
    expect(() => federationIpBlocklist()).not.toThrow();
  });

  const blocklist = federationIpBlocklist();
  const blocked = [
    '127.0.0.1', '127.255.255.254', '10.1.2.3', '172.16.5.4', '172.31.0.1', '192.168.1.1', '100.64.0.1', '192.0.0.8', '169.254.169.254',
    '192.88.99.1', '198.18.0.1', '198.19.255.255', '192.0.2.1', '198.51.100.7', '203.0.113.9', '224.0.0.1', '239.255.255.250',
    '0.0.0.0', '0.1.2.3', '::1', '::', 'fe80::1', 'fe80::1%eth0', 'fc00::1', 'fd12:3456::1', '2001:db8::1', 'ff02::1', 'fec0::1',
    '::ffff:127.0.0.1', '::ffff:169.254.169.254', '::ffff:10.0.0.1', '::ffff:0.0.0.0',
  ];
  const allowed = ['8.8.8.8', '1.1.1.1', '172.32.0.1', '100.128.0.1', '192.0.1.1', '2606:4700:4700::1111', '2a00:1450::1', '::ffff:8.8.8.8', '240.0.0.1'];
  for (const ip of blocked) it(`blocks ${ip}`, () => expect(isAddressAllowed(ip, blocklist)).toBe(false));
  for (const ip of allowed) it(`allows ${ip}`, () => expect(isAddressAllowed(ip, blocklist)).toBe(true));

  it('fails closed on something that is not an address', () => {
    expect(isAddressAllowed('localhost', blocklist)).toBe(false);
    expect(isAddressAllowed('', blocklist)).toBe(false);
  });

  it('an empty configured list allows loopback (tests) but never the unspecified address', () => {
    const open = federationIpBlocklist([]);
    expect(open.toStrings()).toEqual([...ALWAYS_BLOCKED_IP_RANGES]);
    expect(isAddressAllowed('127.0.0.1', open)).toBe(true);
    expect(isAddressAllowed('::1', open)).toBe(true);
    expect(isAddressAllowed('0.0.0.0', open)).toBe(false);
    expect(isAddressAllowed('::', open)).toBe(false);
    expect(isAddressAllowed('::ffff:0.0.0.0', open)).toBe(false);
  });

  it('a configured list replaces the defaults and names a bad entry', () => {
    const custom = federationIpBlocklist(['203.0.113.0/24']);
    expect(isAddressAllowed('10.0.0.1', custom)).toBe(true);
    expect(isAddressAllowed('203.0.113.5', custom)).toBe(false);
    expect(() => federationIpBlocklist(['10.0.0.0/8', 'nonsense'])).toThrow(/nonsense/);
  });
});
