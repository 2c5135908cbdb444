/** TurnBatcher: the requests of one event-loop turn go out together, split into calls, each answered alone. */
import { describe, expect, it } from 'vitest';
import { chunks, groupBy, Rejected, TurnBatcher } from '../../src/store/turn-batcher';
import { encodeScriptArgParts, encodeScriptArgs } from '../../src/store/codec';
import { Unpackr } from 'msgpackr';

describe('TurnBatcher', () => {
  it('sends the requests of one turn in one call and answers each with its own result', async () => {
    const calls: number[][] = [];
    const b = new TurnBatcher<number, number>({ send: async (xs) => (calls.push(xs), xs.map((x) => x * 10)) });
    const answers = await Promise.all([b.add(1), b.add(2), b.add(3)]);
    expect(answers).toEqual([10, 20, 30]);
    expect(calls).toEqual([[1, 2, 3]]);
    // The next turn is the next call.
    expect(await b.add(4)).toBe(40);
    expect(calls).toEqual([[1, 2, 3], [4]]);
    expect([b.calls, b.items]).toEqual([2, 4]);
  });

  it('splits a turn into calls; a failed call rejects its requests only; a Rejected result its request only', async () => {
    const calls: string[][] = [];
    const b = new TurnBatcher<string, string>({
      split: (qs) => groupBy(qs, (q) => q.item[0]!),
      send: async (xs) => {
        calls.push(xs);
        if (xs[0]!.startsWith('x')) throw new Error('call failed');
        return xs.map((x) => (x === 'b2' ? new Rejected(new Error('this one')) : x.toUpperCase()));
      },
    });
    const settled = await Promise.allSettled(['a1', 'b1', 'x1', 'a2', 'b2'].map((x) => b.add(x)));
    expect(calls).toEqual([['a1', 'a2'], ['b1', 'b2'], ['x1']]);
    expect(settled.map((s) => (s.status === 'fulfilled' ? s.value : (s.reason as Error).message))).toEqual(['A1', 'B1', 'call failed', 'A2', 'this one']);
  });

  it('with eagerMs, sends what is queued once the oldest request has waited that long in a busy turn', async () => {
    const calls: number[][] = [];
    const b = new TurnBatcher<number, number>({ eagerMs: 5, send: async (xs) => (calls.push(xs), xs) });
    const p = [b.add(1), b.add(2)];
    const until = performance.now() + 10;
    while (performance.now() < until) {
      // a turn busy deciding
    }
    p.push(b.add(3), b.add(4));
    await Promise.all(p);
    expect(calls).toEqual([[1, 2, 3], [4]]);
  });

  it('chunks cuts by weight and count, a heavy item alone', () => {
    expect(chunks([1, 2, 3, 9, 1, 1], (x) => x, 5)).toEqual([[1, 2], [3], [9], [1, 1]]);
    expect(chunks([1, 1, 1, 1, 1], () => 1, 100, 2)).toEqual([[1, 1], [1, 1], [1]]);
  });
});

describe('encodeScriptArgs', () => {
  it('is a msgpack array of the arguments: strings and Buffers as raw strings, small integers as integers, other numbers as strings', () => {
    const big = 'é'.repeat(40_000);
    const args = ['w', 0, 127, 128, 4_294_967_295, -1, 1.5, 1e15, Buffer.from([0, 255, 1]), '', big, Buffer.alloc(70_000, 7), ...Array.from({ length: 20 }, (_, i) => `a${i}`)];
    const decoded = new Unpackr({ mapsAsObjects: true }).unpack(encodeScriptArgs(args)) as unknown[];
    // msgpack raw strings decode as JS strings here: compare bytes.
    const bytes = (v: unknown) => (typeof v === 'number' ? v : Buffer.from(v as string, 'utf8').toString('hex'));
    expect(decoded.length).toBe(args.length);
    expect(decoded.slice(1, 5)).toEqual([0, 127, 128, 4_294_967_295]);
    expect(decoded.slice(5, 8)).toEqual(['-1', '1.5', '1000000000000000']);
    expect(decoded[0]).toBe('w');
    expect(decoded[10]).toBe(big);
    expect(bytes(decoded[9])).toBe('');
    expect((decoded[11] as string).length).toBe(70_000);
    expect(decoded.slice(12)).toEqual(args.slice(12));
  });

  it('encodes parts given separately byte for byte as their concatenation, empty parts included', () => {
    const args = ['w', 0, 128, -1, Buffer.from([0, 255]), 'é'.repeat(20), ...Array.from({ length: 70_000 }, (_, i) => (i % 3 === 0 ? i : `v${i}`))];
    for (const cuts of [[0], [3], [1, 5], [6, 60_000], [0, 0, args.length]]) {
      const parts: (typeof args)[] = [];
      let from = 0;
      for (const c of cuts) {
        parts.push(args.slice(from, c));
        from = c;
      }
      parts.push(args.slice(from));
      expect(encodeScriptArgParts(parts).equals(encodeScriptArgs(args))).toBe(true);
    }
    expect(encodeScriptArgParts([[], []]).equals(encodeScriptArgs([]))).toBe(true);
  });
});
