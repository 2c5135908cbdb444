/** The typing and receipt actors' pure decisions. */
import { describe, expect, it } from 'vitest';
import { decideTyping, KEEPALIVE_MS, MAX_TYPING_MS, type TypingMessage, type TypingState } from '../../actors/typing';
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

describe('typing kept alive on other servers (federation on)', () => {
  const step = (s: TypingState, body: TypingMessage, at: number) => decideTyping(s, msg(body, at), 'x');
  const keepaliveTimer = (d: ReturnType<typeof decideTyping>) => d.timers?.find((t) => t.key === 'keepalive');

  it('our user renewing for minutes is told again every KEEPALIVE_MS; a remote user never is; the stop ends it', () => {
    let d = step(empty, { op: 'set', userId: '@a:x', typing: true, timeoutMs: 30_000 }, 0);
    expect(d.outputs).toEqual([{ type: 'typing', room_id: '!r:x', user_ids: ['@a:x'], changes: [['@a:x', true]] }]);
    expect(keepaliveTimer(d)).toEqual({ key: 'keepalive', atMs: KEEPALIVE_MS, body: { op: 'keepalive' } });
    // A remote typist joins: no keepalive of theirs (their server keeps them alive).
    d = step(d.state, { op: 'set', userId: '@r:remote', typing: true, timeoutMs: 60_000 }, 1000);
    expect(d.state.told).toEqual({ '@a:x': 0 });
    // The client renews every 20 s: nothing is published by a renewal itself.
    d = step(d.state, { op: 'set', userId: '@a:x', typing: true, timeoutMs: 30_000 }, 20_000);
    expect(d.outputs).toEqual([]);
    // The timer fires: @a:x is still typing, told again.
    d = step(d.state, { op: 'keepalive' }, KEEPALIVE_MS);
    expect(d.outputs).toEqual([{ type: 'typing_keepalive', room_id: '!r:x', user_ids: ['@a:x'] }]);
    expect(keepaliveTimer(d)!.atMs).toBe(2 * KEEPALIVE_MS);
    // An early or repeated timer tells nobody.
    expect(step(d.state, { op: 'keepalive' }, KEEPALIVE_MS + 5).outputs ?? []).toEqual([]);
    d = step(d.state, { op: 'set', userId: '@a:x', typing: true, timeoutMs: 30_000 }, 60_000);
    d = step(d.state, { op: 'keepalive' }, 2 * KEEPALIVE_MS);
    // (The remote typist's minute is over by now: dropped in the same decision.)
    expect(d.outputs).toEqual([
      { type: 'typing', room_id: '!r:x', user_ids: ['@a:x'], changes: [['@r:remote', false]] },
      { type: 'typing_keepalive', room_id: '!r:x', user_ids: ['@a:x'] },
    ]);
    // The stop: published as a change, and the keepalive timer is cancelled.
    d = step(d.state, { op: 'set', userId: '@a:x', typing: false }, 85_000);
    expect(d.outputs).toEqual([{ type: 'typing', room_id: '!r:x', user_ids: [], changes: [['@a:x', false]] }]);
    expect(d.state.told).toEqual({});
    expect(keepaliveTimer(d)).toEqual({ key: 'keepalive', atMs: null, body: { op: 'keepalive' } });
  });

  it('a typist who stops renewing times out: the expiry is the stop, no keepalive after it', () => {
    let d = step(empty, { op: 'set', userId: '@a:x', typing: true, timeoutMs: 30_000 }, 0);
    // The keepalive timer fires after the notice expired (its expiry timer had not run yet).
    d = step(d.state, { op: 'keepalive' }, KEEPALIVE_MS);
    expect(d.outputs).toEqual([{ type: 'typing', room_id: '!r:x', user_ids: [], changes: [['@a:x', false]] }]);
    expect(keepaliveTimer(d)!.atMs).toBeNull();
  });

  it('without federation nothing is kept (no told, no keepalive timer)', () => {
    const d = decideTyping(empty, msg<TypingMessage>({ op: 'set', userId: '@a:x', typing: true, timeoutMs: 30_000 }, 0));
    expect(d.state.told).toBeUndefined();
    expect(keepaliveTimer(d)).toBeUndefined();
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
