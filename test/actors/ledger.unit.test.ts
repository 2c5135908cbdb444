/** The ledger actor as a pure state machine: no Redis. */
import { describe, expect, it } from 'vitest';
import { decideLedger, initialLedger, type LedgerMessage, type LedgerState } from '../../actors/ledger';
import type { ActorMessage } from '../../src/runtime/actor';

const msg = (body: LedgerMessage, mid = 'm'): ActorMessage<LedgerMessage> => ({ mid, actorId: '@a:test', body, enqueuedAt: 0 });

describe('LedgerActor.decide', () => {
  it('appends, counts, sums and emits one output per append', () => {
    let s: LedgerState = initialLedger();
    for (let i = 1; i <= 3; i++) {
      const d = decideLedger(s, msg({ op: 'append', producer: 'p', seq: i, value: i * 10 }));
      expect(d.outputs).toEqual([{ actor: '@a:test', producer: 'p', seq: i, count: i }]);
      s = d.state;
    }
    expect(s).toEqual({ count: 3, sum: 60, lastSeq: { p: 3 }, outOfOrder: 0 });
  });

  it('counts appends out of sequence per producer (duplicates and reordering)', () => {
    let s = initialLedger();
    for (const [producer, seq] of [['a', 1], ['b', 1], ['a', 2], ['a', 2], ['b', 3], ['a', 3]] as const) {
      s = decideLedger(s, msg({ op: 'append', producer, seq, value: 1 })).state;
    }
    expect(s.outOfOrder).toBe(2);
    expect(s.lastSeq).toEqual({ a: 3, b: 3 });
  });

  it('reads without changing state', () => {
    const s = decideLedger(initialLedger(), msg({ op: 'append', producer: 'p', seq: 1, value: 2 })).state;
    const d = decideLedger(s, msg({ op: 'read' }));
    expect(d.state).toBe(s);
    expect(d.outputs).toBeUndefined();
    expect(d.reply).toEqual({ count: 1, sum: 2, outOfOrder: 0, lastSeq: { p: 1 } });
  });

  it('does not mutate the previous state', () => {
    const s = initialLedger();
    decideLedger(s, msg({ op: 'append', producer: 'p', seq: 1, value: 2 }));
    expect(s).toEqual(initialLedger());
  });

  it('fails messages it cannot understand (the runtime dead-letters them)', () => {
    expect(() => decideLedger(initialLedger(), msg({ op: 'explode' } as unknown as LedgerMessage))).toThrow(/unknown op "explode"/);
    expect(() => decideLedger(initialLedger(), msg({ op: 'append', producer: 'p' } as unknown as LedgerMessage))).toThrow(TypeError);
  });
});
