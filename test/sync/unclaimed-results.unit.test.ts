/**
 * A /sync computation that outlives its request is kept for the client's retry (once, for a
 * while); one its request delivered is not kept.
 */
import { describe, expect, it } from 'vitest';
import { setTimeout as sleep } from 'node:timers/promises';
import { UnclaimedResults } from '../../src/sync/unclaimed-results';

function deferred<T>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

describe('UnclaimedResults', () => {
  it('gives a result whose request went away to the retry, once', async () => {
    const results = new UnclaimedResults<string>(10_000, 10);
    let computed = 0;
    const d = deferred<string>();
    const first = results.run('k', () => (computed++, d.promise), () => false); // its request is gone
    d.resolve('answer');
    expect(await first).toBe('answer');
    await sleep(0);
    expect(results.size).toBe(1);
    expect(await results.run('k', async () => (computed++, 'fresh'), () => true)).toBe('answer');
    expect(results.size).toBe(0);
    // Taken: the next request computes afresh.
    expect(await results.run('k', async () => (computed++, 'fresh'), () => true)).toBe('fresh');
    expect(computed).toBe(2);
  });

  it('lets a retry join a computation still running, and keeps nothing once a request delivered it', async () => {
    const results = new UnclaimedResults<string>(10_000, 10);
    const d = deferred<string>();
    let computed = 0;
    const first = results.run('k', () => (computed++, d.promise), () => false);
    const retry = results.run('k', async () => (computed++, 'other'), () => true);
    d.resolve('shared');
    expect(await first).toBe('shared');
    expect(await retry).toBe('shared');
    await sleep(0);
    expect(computed).toBe(1);
    expect(results.size).toBe(0);
  });

  it('does not share across keys, drops failures, and forgets an unclaimed result after keepMs', async () => {
    const results = new UnclaimedResults<string>(50, 10);
    await expect(results.run('bad', async () => Promise.reject(new Error('boom')), () => false)).rejects.toThrow('boom');
    await sleep(0);
    expect(results.size).toBe(0);
    expect(await results.run('a', async () => 'A', () => false)).toBe('A');
    expect(await results.run('b', async () => 'B', () => true)).toBe('B');
    await sleep(0);
    expect(results.size).toBe(1);
    await sleep(200);
    expect(results.size).toBe(0);
  });
});
