/** The typing and receipt actors' pure decisions. */
import { describe, expect, it } from 'vitest';
import { decideTyping, MAX_TYPING_MS, type TypingMessage, type TypingState } from '../../actors/typing';
import { decideReceipt, type ReceiptMessage } from '../../actors/receipts';
import { parseReceiptField, receiptField } from '../../src/store/read-receipts';
import type { ActorMessage } from '../../src/runtime/actor';

const msg = <M>(body: M, at: number): ActorMessage<M> => ({ mid: `m${at}`, actorId: '!r:x', body, enqueuedAt: at });
const empty: TypingState = { roomId: '!r:x', until: {} };

describe('typing decisions', () => {
  it('starts, renews without publishing, caps the timeout, and arms the earliest expiry', () => {
    const a = decideTyping(empty, msg<TypingMessage>({ op: 'set', userId: '@a:x', typing: true, timeoutMs: 5000 }, 1000));
    expect(a.outputs).toEqual([{ type: 'typing', room_id: '!r:x', user_ids: ['@a:x'], changes: [['@a:x', true]] }]);
    expect(a.timers).toEqual([{ key: 'expire', atMs: 6000, body: { op: 'expire' } }]);
    const renewed = decideTyping(a.state, msg<TypingMessage>({ op: 'set', userId: '@a:x', typing: true, timeoutMs: 10 ** 9 }, 2000));
    expect(renewed.outputs).toEqual([]);
    expect(renewed.state.until['@a:x']).toBe(2000 + MAX_TYPING_MS);
    const b = decideTyping(renewed.state, msg<TypingMessage>({ op: 'set', userId: '@b:x', typing: true, timeoutMs: 1000 }, 3000));
    expect(b.outputs).toEqual([{ type: 'typing', room_id: '!r:x', user_ids: ['@a:x', '@b:x'], changes: [['@b:x', true]] }]);
    expect(b.timers![0]!.atMs).toBe(4000);
  });

  it('an expiry publishes the shrunk list; a stale or early timer changes nothing', () => {
    const s: TypingState = { roomId: '!r:x', until: { '@a:x': 5000, '@b:x': 9000 } };
    expect(decideTyping(s, msg<TypingMessage>({ op: 'expire' }, 4000)).state).toBe(s);
    const d = decideTyping(s, msg<TypingMessage>({ op: 'expire' }, 5000));
    expect(d.outputs).toEqual([{ type: 'typing', room_id: '!r:x', user_ids: ['@b:x'], changes: [['@a:x', false]] }]);
    expect(d.timers![0]!.atMs).toBe(9000);
    const last = decideTyping(d.state, msg<TypingMessage>({ op: 'expire' }, 9500));
    expect(last.outputs).toEqual([{ type: 'typing', room_id: '!r:x', user_ids: [], changes: [['@b:x', false]] }]);
    expect(last.timers).toEqual([{ key: 'expire', atMs: null, body: { op: 'expire' } }]);
  });

  it('typing: false removes at once; for someone not typing it is a no-op', () => {
    const s: TypingState = { roomId: '!r:x', until: { '@a:x': 5000 } };
    expect(decideTyping(s, msg<TypingMessage>({ op: 'set', userId: '@a:x', typing: false }, 1000)).outputs).toEqual([{ type: 'typing', room_id: '!r:x', user_ids: [], changes: [['@a:x', false]] }]);
    expect(decideTyping(s, msg<TypingMessage>({ op: 'set', userId: '@z:x', typing: false }, 1000)).state).toBe(s);
  });
});

describe('receipt decisions', () => {
  const r = (pos: number, extra: Partial<ReceiptMessage> = {}): ActorMessage<ReceiptMessage> =>
    msg<ReceiptMessage>({ op: 'receipt', userId: '@a:x', receiptType: 'm.read', eventId: `$e${pos}`, pos, ...extra }, 7000);

  it('stores and publishes a newer receipt; an older or equal one changes nothing', () => {
    const d = decideReceipt({ roomId: '!r:x' }, r(5, { threadId: 'main' }), null);
    expect(d.reply).toEqual({ ok: true, changed: true });
    expect(d.outputs).toEqual([{ type: 'receipt', room_id: '!r:x', event_id: '$e5', receipt_type: 'm.read', user_id: '@a:x', ts: 7000, thread_id: 'main' }]);
    expect(d.writes![0]!.args).toEqual([receiptField('m.read', 'main', '@a:x'), JSON.stringify({ event_id: '$e5', ts: 7000, pos: 5 })]);
    for (const pos of [4, 5]) {
      const same = decideReceipt({ roomId: '!r:x' }, r(pos), { event_id: '$e5', ts: 1, pos: 5 });
      expect(same.reply).toEqual({ ok: true, changed: false });
      expect(same.writes).toBeUndefined();
    }
  });

  it('receipt fields round-trip, threaded or not', () => {
    expect(parseReceiptField(receiptField('m.read', undefined, '@a:x'))).toEqual({ receiptType: 'm.read', userId: '@a:x' });
    expect(parseReceiptField(receiptField('m.read.private', '$root', '@a:x'))).toEqual({ receiptType: 'm.read.private', threadId: '$root', userId: '@a:x' });
  });
});
