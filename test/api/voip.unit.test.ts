/** TURN credentials (src/api/client/voip.ts): none configured, fixed, and from a shared secret. */
import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { defaultConfig, validateConfig } from '../../cluster.config';
import { turnServerAnswer } from '../../src/api/client/voip';

const base = defaultConfig('/tmp').voip;

describe('turnServerAnswer', () => {
  it('is null without TURN URIs (the endpoint answers 404 M_UNRECOGNIZED)', () => {
    expect(turnServerAnswer(base, '@a:example.org', 0)).toBeNull();
  });

  it('hands out the fixed username and password when there is no shared secret', () => {
    const voip = { ...base, turnUris: ['turn:t.example.org'], turnUsername: 'u', turnPassword: 'p', turnUserLifetimeMs: 86_400_000 };
    expect(turnServerAnswer(voip, '@a:example.org', 0)).toEqual({ username: 'u', password: 'p', uris: ['turn:t.example.org'], ttl: 86400 });
  });

  it('derives expiring credentials from a shared secret (TURN REST API)', () => {
    const voip = { ...base, turnUris: ['turns:t.example.org:5349'], turnSharedSecret: 's3cret', turnUserLifetimeMs: 600_000 };
    const a = turnServerAnswer(voip, '@a:example.org', 1_700_000_000_500)!;
    expect(a.username).toBe('1700000600:@a:example.org');
    expect(a.password).toBe(createHmac('sha1', 's3cret').update('1700000600:@a:example.org').digest('base64'));
    expect(a.ttl).toBe(600);
  });
});

describe('voip config', () => {
  it('refuses URIs that are not turn:/turns:, and URIs without credentials', () => {
    const c = defaultConfig('/tmp');
    c.voip.turnUris = ['http://t.example.org'];
    expect(validateConfig(c).some((p) => p.startsWith('voip.turnUris'))).toBe(true);
    c.voip.turnUris = ['turn:t.example.org'];
    expect(validateConfig(c).some((p) => p.startsWith('voip:'))).toBe(true);
    c.voip.turnSharedSecret = 's';
    expect(validateConfig(c).filter((p) => p.startsWith('voip'))).toEqual([]);
  });
});
