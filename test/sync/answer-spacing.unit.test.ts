import { describe, expect, it } from 'vitest';
import { setTimeout as sleep } from 'node:timers/promises';
import { AnswerSpacing, capToLimit, gapForLimit, RoomEventRates } from '../../src/sync/answer-spacing';

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

describe('capToLimit', () => {
  it("cuts a wait so the next computation starts within the cap of the last one's cut, and leaves a shorter wait alone", () => {
    // 40 events a second and js-sdk's limit of 8: at most 4 events' worth, 100 ms after the cut.
    const cap = gapForLimit(8, 40 / 1000);
    expect(cap).toBeCloseTo(100, 6);
    // The last computation began at 1,000; its answer went out at 1,030; this poll came at 1,040.
    expect(capToLimit(250, 1000, cap, 1040)).toBeCloseTo(60, 6);
    expect(capToLimit(30, 1000, cap, 1040)).toBe(30);
    // Already past the cap (a slow computation or round trip): no wait at all.
    expect(capToLimit(250, 1000, cap, 1120)).toBe(0);
    // No cap (quiet rooms, or a filter without timeline events): the wait as it was.
    expect(capToLimit(250, 1000, gapForLimit(8, 0), 1040)).toBe(250);
    expect(capToLimit(250, 1000, gapForLimit(0, 1), 1040)).toBe(250);
  });
});

describe('gapForLimit', () => {
  it('is unbounded for a quiet room or a filter without timeline events, and shrinks with the rate and the limit', () => {
    expect(gapForLimit(8, 0)).toBe(Number.POSITIVE_INFINITY);
    expect(gapForLimit(0, 1)).toBe(Number.POSITIVE_INFINITY);
    expect(gapForLimit(Number.NaN, 1)).toBe(Number.POSITIVE_INFINITY);
    expect(gapForLimit(100, 160 / 1000)).toBeCloseTo(312.5, 6);
    expect(gapForLimit(20, 160 / 1000)).toBeCloseTo(62.5, 6);
    expect(gapForLimit(8, 320 / 1000)).toBeCloseTo(12.5, 6);
  });
});

describe('RoomEventRates', () => {
  it('reads a steady rate as that rate, and a room gone quiet fades to 0', () => {
    const r = new RoomEventRates();
    // 50 events a second for 10 s, one notification every 20 ms.
    for (let t = 0; t <= 10_000; t += 20) r.note('!a:x', 1, t);
    expect(r.rate('!a:x', 10_000) * 1000).toBeGreaterThan(48);
    expect(r.rate('!a:x', 10_000) * 1000).toBeLessThan(52);
    expect(r.rate('!a:x', 11_000) * 1000).toBeLessThan(20);
    expect(r.rate('!a:x', 20_000) * 1000).toBeLessThan(0.01);
    // Forgotten once quiet for 20 s (when another room's event comes).
    expect(r.size).toBe(1);
    r.note('!b:x', 1, 30_001);
    expect(r.size).toBe(1);
    expect(r.rate('!a:x', 30_001)).toBe(0);
    expect(r.rate('!unknown:x', 10_000)).toBe(0);
  });

  it('follows a room that speeds up within about a second, and counts a burst at once', () => {
    const r = new RoomEventRates();
    for (let t = 0; t <= 5000; t += 100) r.note('!a:x', 1, t); // 10 a second
    expect(r.rate('!a:x', 5000) * 1000).toBeLessThan(11);
    for (let t = 5010; t <= 7000; t += 10) r.note('!a:x', 1, t); // then 100 a second
    expect(r.rate('!a:x', 7000) * 1000).toBeGreaterThan(85);
    r.note('!b:x', 40, 100);
    expect(r.rate('!b:x', 100) * 1000).toBe(40);
  });

  it('takes the highest rate of a set of rooms, ignores counts that are not positive and finite, and keeps a bounded number of rooms', () => {
    const r = new RoomEventRates(3);
    r.note('!a:x', 5, 0);
    r.note('!b:x', 50, 0);
    for (const bad of [0, -3, Number.NaN, Number.POSITIVE_INFINITY]) r.note('!c:x', bad, 0);
    expect(r.size).toBe(2);
    expect(r.maxRate(['!a:x', '!b:x', '!none:x'], 0)).toBe(r.rate('!b:x', 0));
    expect(r.maxRate([], 0)).toBe(0);
    // Full: the least recently busy room goes. a was busy after b, so b goes, then c.
    r.note('!c:x', 1, 5);
    r.note('!a:x', 1, 10);
    r.note('!d:x', 1, 20);
    expect(r.size).toBe(3);
    expect(r.rate('!b:x', 20)).toBe(0);
    expect(r.rate('!a:x', 20)).toBeGreaterThan(0);
    r.note('!e:x', 1, 30);
    expect(r.rate('!c:x', 30)).toBe(0);
    expect(r.rate('!a:x', 30) > 0 && r.rate('!d:x', 30) > 0 && r.rate('!e:x', 30) > 0).toBe(true);
  });
});
