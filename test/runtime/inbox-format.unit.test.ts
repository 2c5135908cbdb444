/**
 * The packed inbox entry (src/runtime/envelope.ts, format 2): what packInboxEntry writes reads
 * back as the entry it was made from, field pairs (format 1) still read the same, and a packed
 * value that does not parse makes no entry (the runner dead-letters it with its raw fields)
 * rather than a wrong one.
 */
import { describe, expect, it } from 'vitest';
import { INBOX_FORMAT, packInboxEntry, parseInboxEntry, readsPacked } from '../../src/runtime/envelope';
import { encode } from '../../src/store/codec';

const m = Buffer.from('m');

describe('the packed inbox entry', () => {
  it('reads back as the entry it was packed from, with and without a reply stream, in any script', () => {
    const body = encode({ op: 'send', event: { type: 'm.room.message', content: { body: 'héllo 👋' } } });
    for (const [mid, actorId, kind, replyTo] of [
      ['mid-1', '!room:example.org', 'room', 'axon:reply:f.abc'],
      ['mid-2', '@üsér:例え.jp', 'user', null],
      ['', 'a', 'k', null],
    ] as const) {
      const packed = packInboxEntry(mid, actorId, kind, replyTo, 1_796_604_643_234, body);
      const entry = parseInboxEntry('5-1', [m, packed]);
      if (mid === '') {
        // An entry needs its mid (finishEntry): the same rule as for field pairs.
        expect(entry).toBeNull();
        continue;
      }
      expect(entry).toEqual({ id: '5-1', mid, actorId, kind, replyTo, enqueuedAt: 1_796_604_643_234, body });
      // The same values as field pairs make the same entry.
      const pairs = ['mid', mid, 'a', actorId, 'k', kind, 'b', body, 't', '1796604643234', ...(replyTo ? ['r', replyTo] : [])].map((v) => (Buffer.isBuffer(v) ? v : Buffer.from(v)));
      expect(parseInboxEntry('5-1', pairs)).toEqual(entry);
    }
    expect(INBOX_FORMAT).toBe(2);
  });

  it('makes no entry of a value cut inside its header or of another layout', () => {
    const packed = packInboxEntry('mid-1', '!room:example.org', 'room', 'axon:reply:f.abc', 1, encode({ x: 1 }));
    const headerEnd = packed.length - encode({ x: 1 }).length;
    for (let cut = 0; cut < headerEnd; cut++) expect(parseInboxEntry('1-0', [m, packed.subarray(0, cut)])).toBeNull();
    const other = Buffer.from(packed);
    other[0] = 2;
    expect(parseInboxEntry('1-0', [m, other])).toBeNull();
    // A length that runs past the value.
    const long = Buffer.from(packed);
    long.writeUInt16BE(0xfff0, 1);
    expect(parseInboxEntry('1-0', [m, long])).toBeNull();
  });

  it('refuses a mid, actor id, kind or reply stream that its 2-byte length cannot say', () => {
    expect(() => packInboxEntry('x'.repeat(65_536), 'a', 'k', null, 1, encode(1))).toThrow(/65535/);
    expect(() => packInboxEntry('m', 'a', 'k', 'r'.repeat(70_000), 1, encode(1))).toThrow(/65535/);
    expect(parseInboxEntry('1-0', [m, packInboxEntry('x'.repeat(65_535), 'a', 'k', null, 1, encode(1))])?.mid).toHaveLength(65_535);
  });

  it("is believed of a worker only when its record's format stamp is the record's heartbeat", () => {
    expect(readsPacked('2:1700000000000', '1700000000000')).toBe(true);
    expect(readsPacked('3:1700000000000', '1700000000000')).toBe(true);
    // Rewritten since by a heartbeat that did not stamp it (an earlier version under the same id).
    expect(readsPacked('2:1700000000000', '1700000005000')).toBe(false);
    expect(readsPacked('1:1700000000000', '1700000000000')).toBe(false);
    expect(readsPacked('2', '1700000000000')).toBe(false);
    expect(readsPacked(null, '1700000000000')).toBe(false);
    expect(readsPacked('2:1', undefined)).toBe(false);
  });
});
