/** LazyMembersSent: what each device was sent under lazy loading, per room, bounded. */
import { describe, expect, it } from 'vitest';
import { LazyMembersSent } from '../../src/sync/lazy-members';

describe('LazyMembersSent', () => {
  it('knows the exact member event a device was sent in a room', () => {
    const c = new LazyMembersSent();
    c.record('@u:hs', 'D1', '!r', [{ member: '@a:hs', eventId: '$a1' }]);
    expect(c.has('@u:hs', 'D1', '!r', '@a:hs', '$a1')).toBe(true);
    // A newer member event of the same user is not redundant.
    expect(c.has('@u:hs', 'D1', '!r', '@a:hs', '$a2')).toBe(false);
    // Other devices and rooms have their own.
    expect(c.has('@u:hs', 'D2', '!r', '@a:hs', '$a1')).toBe(false);
    expect(c.has('@u:hs', 'D1', '!other', '@a:hs', '$a1')).toBe(false);
    c.record('@u:hs', 'D1', '!r', [{ member: '@a:hs', eventId: '$a2' }]);
    expect(c.has('@u:hs', 'D1', '!r', '@a:hs', '$a2')).toBe(true);
  });

  it('starts a room over on reset, and forgets the least recently used beyond its bound', () => {
    const c = new LazyMembersSent(2);
    c.record('@u:hs', 'D1', '!r1', [{ member: '@a:hs', eventId: '$1' }]);
    c.reset('@u:hs', 'D1', '!r1');
    expect(c.has('@u:hs', 'D1', '!r1', '@a:hs', '$1')).toBe(false);
    c.record('@u:hs', 'D1', '!r1', [{ member: '@a:hs', eventId: '$1' }]);
    c.record('@u:hs', 'D1', '!r2', [{ member: '@a:hs', eventId: '$2' }]);
    expect(c.has('@u:hs', 'D1', '!r1', '@a:hs', '$1')).toBe(true); // r1 used: r2 is now the oldest
    c.record('@u:hs', 'D1', '!r3', [{ member: '@a:hs', eventId: '$3' }]);
    expect(c.has('@u:hs', 'D1', '!r2', '@a:hs', '$2')).toBe(false);
    expect(c.has('@u:hs', 'D1', '!r1', '@a:hs', '$1')).toBe(true);
    expect(c.has('@u:hs', 'D1', '!r3', '@a:hs', '$3')).toBe(true);
  });
});
