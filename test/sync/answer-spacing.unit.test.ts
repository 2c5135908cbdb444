import { describe, expect, it } from 'vitest';
import { setTimeout as sleep } from 'node:timers/promises';
import { AnswerSpacing } from '../../src/sync/answer-spacing';

describe('AnswerSpacing', () => {
  it('waits nothing before the first load sample, and never for a device answered long ago', () => {
    const s = new AnswerSpacing(300);
    expect(s.spacingMs).toBe(0);
    expect(s.delayAfter(Date.now())).toBe(0);
    expect(s.delayAfter(Date.now() - 10_000)).toBe(0);
  });

  it('grows with the event loop kept busy and shrinks when it idles, within the maximum', async () => {
    const s = new AnswerSpacing(300);
    s.sample();
    const end = performance.now() + 200;
    while (performance.now() < end) {
      // busy: the event loop never idles in this window
    }
    s.sample();
    const busy = s.spacingMs;
    expect(busy).toBeGreaterThan(150);
    expect(busy).toBeLessThanOrEqual(300);
    const answeredAt = Date.now();
    expect(s.delayAfter(answeredAt, answeredAt)).toBe(busy);
    expect(s.delayAfter(answeredAt, answeredAt + busy + 1)).toBe(0);
    await sleep(400);
    s.sample();
    expect(s.spacingMs).toBeLessThan(busy);
  });
});
