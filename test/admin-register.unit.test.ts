/**
 * The shared-secret registration MAC, checked against values computed independently with
 * Python's hmac/hashlib (HMAC-SHA1 over nonce NUL user NUL password NUL admin|notadmin [NUL type]).
 */
import { describe, expect, it } from 'vitest';
import { registrationMac } from '../src/api/admin/register';
import { defaultConfig, validateConfig } from '../cluster.config';

describe('registrationMac', () => {
  it('matches an independent HMAC-SHA1 implementation', () => {
    const base = { nonce: 'abc123', username: 'pepper_roni', password: 'pizza' };
    expect(registrationMac('shared-secret-1234', { ...base, admin: true })).toBe('fbbecf8a3d8738a5210649c8889cdbefb5d4a6f9');
    expect(registrationMac('shared-secret-1234', { ...base, admin: false, userType: 'bot' })).toBe('8ac6e1fea031b697c8d4d1b08a22338e17c85b21');
  });

  it('differs for admin and notadmin, so the flag cannot be flipped', () => {
    const base = { nonce: 'n', username: 'u', password: 'p' };
    expect(registrationMac('s', { ...base, admin: true })).not.toBe(registrationMac('s', { ...base, admin: false }));
  });
});

describe('registration.sharedSecret setting', () => {
  it('is off by default and must be long enough when set', () => {
    const c = defaultConfig('/tmp');
    expect(c.registration.sharedSecret).toBe('');
    expect(validateConfig(c)).toEqual([]);
    c.registration.sharedSecret = 'short';
    expect(validateConfig(c).join('\n')).toMatch(/registration.sharedSecret: must be at least 16 characters/);
    c.registration.sharedSecret = 'a-long-enough-secret';
    expect(validateConfig(c)).toEqual([]);
  });
});
