import { describe, expect, it } from 'vitest';
import { ComputeGate } from '../../src/sync/compute-gate';

describe('ComputeGate', () => {
  it('runs at most `limit` at once, the rest in arrival order', async () => {
    const gate = new ComputeGate(2);
    let running = 0;
    let peak = 0;
    const order: number[] = [];
    const releases: (() => void)[] = [];
    const jobs = [0, 1, 2, 3, 4].map((i) =>
      gate.run(async () => {
        running++;
        peak = Math.max(peak, running);
        order.push(i);
        await new Promise<void>((r) => releases.push(r));
        running--;
        return i * 10;
      }),
    );
    await new Promise((r) => setImmediate(r));
    expect(order).toEqual([0, 1]);
    expect(gate.queued).toBe(3);
    while (releases.length || order.length < 5) {
      releases.shift()?.();
      await new Promise((r) => setImmediate(r));
    }
    expect(await Promise.all(jobs)).toEqual([0, 10, 20, 30, 40]);
    expect(order).toEqual([0, 1, 2, 3, 4]);
    expect(peak).toBe(2);
    expect(gate.queued).toBe(0);
  });

  it('frees the slot when a computation throws', async () => {
    const gate = new ComputeGate(1);
    await expect(
      gate.run(async () => {
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(await gate.run(async () => 7)).toBe(7);
  });
});

describe('ComputeGate outside()', () => {
  it('gives the slot up during an outside wait and takes it back after', async () => {
    const gate = new ComputeGate(1);
    const events: string[] = [];
    let release!: () => void;
    const slow = new Promise<void>((r) => (release = r));
    const a = gate.run(async (outside) => {
      events.push('a start');
      await outside(slow);
      events.push('a resumed');
    });
    const b = gate.run(async () => {
      events.push('b ran');
    });
    await b; // b got the slot while a waited outside
    expect(events).toEqual(['a start', 'b ran']);
    release();
    await a;
    expect(events).toEqual(['a start', 'b ran', 'a resumed']);
    expect(gate.queued).toBe(0);
  });

  it('a computation back from an outside wait goes before ones that queued meanwhile', async () => {
    const gate = new ComputeGate(1);
    const order: string[] = [];
    let releaseWait!: () => void;
    let releaseB!: () => void;
    const a = gate.run(async (outside) => {
      await outside(new Promise<void>((r) => (releaseWait = r)));
      order.push('a');
    });
    await new Promise((r) => setImmediate(r));
    const b = gate.run(async () => {
      await new Promise<void>((r) => (releaseB = r));
      order.push('b');
    });
    await new Promise((r) => setImmediate(r));
    const c = gate.run(async () => {
      order.push('c');
    });
    releaseWait(); // a wants its slot back while b holds it and c waits
    await new Promise((r) => setImmediate(r));
    releaseB();
    await Promise.all([a, b, c]);
    expect(order).toEqual(['b', 'a', 'c']);
  });
});
