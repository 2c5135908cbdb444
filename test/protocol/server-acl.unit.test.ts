/**
 * Server ACLs (src/protocol/server-acl.ts) against the rules of the `m.room.server_acl` schema,
 * one block per numbered rule, plus the content's defaults and adversarial globs.
 */
import { describe, expect, it } from 'vitest';
import { compileServerAcl, isIpLiteral, serverAclAllows, serverAclAllowsCompiled, serverNameHost } from '../../src/protocol/server-acl';

describe('m.room.server_acl', () => {
  it('1. no ACL event in the room state: allow', () => {
    expect(serverAclAllows(null, 'anyone.example')).toBe(true);
    expect(serverAclAllows(undefined, '1.2.3.4')).toBe(true);
  });

  it('2. an IP literal is denied when allow_ip_literals is false', () => {
    const acl = { allow: ['*'], deny: [], allow_ip_literals: false };
    expect(serverAclAllows(acl, '1.2.3.4')).toBe(false);
    expect(serverAclAllows(acl, '1.2.3.4:8448')).toBe(false);
    expect(serverAclAllows(acl, '[::1]')).toBe(false);
    expect(serverAclAllows(acl, '[2001:db8::1]:8448')).toBe(false);
    expect(serverAclAllows(acl, 'example.org')).toBe(true);
    expect(serverAclAllows(acl, '1.2.3.4.example.org')).toBe(true);
    // Missing or not a boolean: IP literals are allowed.
    expect(serverAclAllows({ allow: ['*'] }, '1.2.3.4')).toBe(true);
    expect(serverAclAllows({ allow: ['*'], allow_ip_literals: 'false' }, '1.2.3.4')).toBe(true);
    expect(serverAclAllows({ allow: ['*'], allow_ip_literals: true }, '[::1]:80')).toBe(true);
  });

  it('3. a server matching an entry of deny is denied, even when allow matches too', () => {
    const acl = { allow: ['*'], deny: ['evil.com', '*.evil.com', 'ba?.org'] };
    expect(serverAclAllows(acl, 'evil.com')).toBe(false);
    expect(serverAclAllows(acl, 'sub.evil.com')).toBe(false);
    expect(serverAclAllows(acl, 'bad.org')).toBe(false);
    expect(serverAclAllows(acl, 'bat.org')).toBe(false);
    expect(serverAclAllows(acl, 'baad.org')).toBe(true);
    expect(serverAclAllows(acl, 'notevil.com')).toBe(true);
    expect(serverAclAllows(acl, 'good.org')).toBe(true);
  });

  it('4. and 5. allowed only when an entry of allow matches', () => {
    const acl = { allow: ['*.example.org', 'friend.net'], deny: [] };
    expect(serverAclAllows(acl, 'a.example.org')).toBe(true);
    expect(serverAclAllows(acl, 'example.org')).toBe(false);
    expect(serverAclAllows(acl, 'friend.net')).toBe(true);
    expect(serverAclAllows(acl, 'stranger.net')).toBe(false);
    // No allow list: nobody, the sender included.
    expect(serverAclAllows({ deny: ['evil.com'] }, 'good.org')).toBe(false);
    expect(serverAclAllows({}, 'good.org')).toBe(false);
  });

  it('does not consider the port', () => {
    const acl = { allow: ['*'], deny: ['evil.com'] };
    for (const name of ['evil.com', 'evil.com:8448', 'evil.com:1234']) expect(serverAclAllows(acl, name)).toBe(false);
    expect(serverAclAllows({ allow: ['good.org'] }, 'good.org:443')).toBe(true);
    // A glob naming a port matches no host (hosts have none).
    expect(serverAclAllows({ allow: ['good.org:443'] }, 'good.org:443')).toBe(false);
    expect(serverNameHost('[::1]:8448')).toBe('[::1]');
    expect(serverNameHost('example.org')).toBe('example.org');
  });

  it('matches case-insensitively', () => {
    expect(serverAclAllows({ allow: ['*'], deny: ['EVIL.com'] }, 'evil.COM')).toBe(false);
    expect(serverAclAllows({ allow: ['Good.Org'] }, 'GOOD.org')).toBe(true);
  });

  it('skips malformed entries and lists', () => {
    expect(serverAclAllows({ allow: ['*'], deny: 'evil.com' }, 'evil.com')).toBe(true);
    expect(serverAclAllows({ allow: [5, null, 'good.org', ['x']], deny: [{}] }, 'good.org')).toBe(true);
    expect(serverAclAllows({ allow: 'good.org' }, 'good.org')).toBe(false);
    expect(serverAclAllows([] as never, 'good.org')).toBe(false);
  });

  it('recognises IP literals', () => {
    expect(isIpLiteral('127.0.0.1')).toBe(true);
    expect(isIpLiteral('255.255.255.255')).toBe(true);
    expect(isIpLiteral('256.1.1.1')).toBe(false);
    expect(isIpLiteral('1.2.3')).toBe(false);
    expect(isIpLiteral('1.2.3.4.5')).toBe(false);
    expect(isIpLiteral('a.b.c.d')).toBe(false);
    expect(isIpLiteral('[::1]')).toBe(true);
  });

  it('refuses hosts too long to be server names, and matches adversarial globs in linear time', () => {
    expect(serverAclAllows({ allow: ['*'] }, `${'a'.repeat(256)}.org`)).toBe(false);
    expect(serverAclAllows({ allow: ['*'] }, '')).toBe(false);
    const acl = compileServerAcl({ allow: ['*'], deny: ['*a*a*a*a*a*a*a*a*a*a*a*a*b', `${'*a'.repeat(200)}*b`, `${'?'.repeat(60_000)}*`] });
    expect(serverAclAllowsCompiled(acl, 'a'.repeat(255))).toBe(true);
    expect(serverAclAllowsCompiled(acl, `${'a'.repeat(254)}b`)).toBe(false);
  });
});
