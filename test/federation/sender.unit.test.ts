import { describe, expect, it } from 'vitest';
import { eventDestinations } from '../../src/federation/sender/reader';
import { classifySendError, countPduErrors } from '../../src/federation/sender/transport';
import { FederationNetworkError, FederationRemoteError, FederationTimeoutError } from '../../src/federation/errors';

const room = (joined: string[], acl: unknown = null) => ({ joined: new Set(joined), acl: acl as never });

describe('federation sender: destinations of an event', () => {
  it('servers with joined members, minus our own', () => {
    expect(eventDestinations({ type: 'm.room.message' }, room(['us.test', 'b.test', 'a.test']), 'us.test')).toEqual(['a.test', 'b.test']);
  });

  it("a membership event also goes to the target's server (an invite, a kick, a ban)", () => {
    expect(eventDestinations({ type: 'm.room.member', state_key: '@carol:c.test' }, room(['us.test', 'b.test']), 'us.test')).toEqual(['b.test', 'c.test']);
    expect(eventDestinations({ type: 'm.room.member', state_key: '@alice:us.test' }, room(['us.test']), 'us.test')).toEqual([]);
  });

  it("servers the room's m.room.server_acl denies get nothing", () => {
    const acl = { allow: ['*'], deny: ['evil.test', '*.bad.test'], allow_ip_literals: false };
    expect(eventDestinations({ type: 'm.room.message' }, room(['evil.test', 'x.bad.test', 'good.test', '127.0.0.1:8448'], acl), 'us.test')).toEqual(['good.test']);
    // An invite to a denied server is not sent either.
    expect(eventDestinations({ type: 'm.room.member', state_key: '@e:evil.test' }, room([], acl), 'us.test')).toEqual([]);
  });
});

describe('federation sender: sorting what a peer answered', () => {
  it('retries what says "down or busy", drops what the peer refuses', () => {
    for (const status of [500, 502, 503, 401, 429, 408]) expect(classifySendError(new FederationRemoteError('p', status, undefined, undefined)).kind).toBe('retry');
    for (const status of [400, 403, 404, 413]) expect(classifySendError(new FederationRemoteError('p', status, 'M_FORBIDDEN', 'no')).kind).toBe('refused');
    expect(classifySendError(new FederationNetworkError('p', 'ECONNREFUSED')).kind).toBe('retry');
    expect(classifySendError(new FederationTimeoutError('p', 'timeout')).kind).toBe('retry');
    expect(classifySendError(new Error('anything else')).kind).toBe('retry');
  });

  it('counts the PDUs a 200 answer reports an error for', () => {
    expect(countPduErrors({ pdus: { $a: {}, $b: { error: 'forbidden' }, $c: { error: 'x' } } })).toBe(2);
    expect(countPduErrors({})).toBe(0);
    expect(countPduErrors(null)).toBe(0);
  });
});

describe('federation sender: events passed on for another server', () => {
  it('a join (or leave, knock) a server sent us through the membership endpoints goes to every other server, not back to it', () => {
    const join = { type: 'm.room.member', state_key: '@bob:b.test' };
    expect(eventDestinations(join, room(['us.test', 'b.test', 'c.test', 'd.test']), 'us.test', 'b.test')).toEqual(['c.test', 'd.test']);
    expect(eventDestinations(join, room(['us.test', 'b.test']), 'us.test', 'b.test')).toEqual([]);
  });
});
