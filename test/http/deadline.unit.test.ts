/**
 * The front's request deadline and fail-fast (src/http/server.ts): a handler that cannot finish
 * answers 503 with Retry-After at the deadline and its late answer is dropped; a long-poll's
 * deadline covers its wait; while the store is known unreachable, handlers that need it answer 503
 * at once and the others serve; Redis failures are 503s, not 500s.
 */
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Front, DeadlineExceeded, type Request } from '../../src/http/server';
import { infrastructureError } from '../../src/front';
import { ActorTimeoutError } from '../../src/runtime/actor-client';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('front deadlines and fail-fast', () => {
  let front: Front;
  let base: string;
  let storeReady = true;
  const seen: { signal?: AbortSignal; lateAnswered?: boolean } = {};

  beforeAll(async () => {
    front = new Front({ host: '127.0.0.1', port: 0, logger: pino({ level: 'silent' }), requestDeadlineMs: 400, storeReady: () => storeReady, mapError: infrastructureError });
    front.route('GET', '/hang', async (req: Request) => {
      seen.signal = req.signal;
      await sleep(1000);
      seen.lateAnswered = true;
      return { body: { late: true } };
    });
    front.route('GET', '/poll', async (req: Request) => {
      req.allowWait(1500);
      await sleep(700); // past the 400 ms deadline, within the wait it asked for
      return { body: { polled: true } };
    });
    front.route('GET', '/static', () => ({ body: { ok: true } }), { needsStore: false });
    front.alias('GET', '/static-alias', '/static');
    front.route('GET', '/store', () => ({ body: { ok: true } }));
    front.route('GET', '/redis-timeout', async () => {
      throw new Error('Command timed out');
    });
    front.route('GET', '/actor-timeout', async () => {
      throw new ActorTimeoutError('m1', 10);
    });
    front.route('GET', '/bug', async () => {
      throw new TypeError('x is undefined');
    });
    front.route('GET', '/text', () => ({ text: 'OK' }), { needsStore: false });
    const port = await front.listen();
    base = `http://127.0.0.1:${port}`;
  });

  afterAll(() => front.close());

  it('answers 503 M_UNKNOWN with Retry-After at the deadline, aborts the handler signal, and drops its late answer', async () => {
    const t = performance.now();
    const r = await fetch(`${base}/hang`);
    const ms = performance.now() - t;
    expect(r.status).toBe(503);
    expect(r.headers.get('retry-after')).toBe('2');
    expect(await r.json()).toMatchObject({ errcode: 'M_UNKNOWN' });
    expect(ms).toBeGreaterThanOrEqual(350);
    expect(ms).toBeLessThan(3000); // generous: a shared, loaded machine
    expect(seen.signal?.aborted).toBe(true);
    expect(seen.signal?.reason).toBeInstanceOf(DeadlineExceeded);
    await sleep(800);
    expect(seen.lateAnswered).toBe(true); // it answered late: dropped, and the front still serves
    expect(front.inFlight).toBe(0);
    expect((await fetch(`${base}/store`)).status).toBe(200);
  });

  it('gives a long-poll its wait on top of the deadline', async () => {
    const r = await fetch(`${base}/poll`);
    expect(r.status).toBe(200);
    expect(await r.json()).toEqual({ polled: true });
  });

  it('while the store is unreachable, answers 503 at once for handlers that need it and serves the others', async () => {
    storeReady = false;
    try {
      const t = performance.now();
      const r = await fetch(`${base}/store`);
      expect(r.status).toBe(503);
      expect(r.headers.get('retry-after')).toBe('2');
      expect(((await r.json()) as { errcode: string }).errcode).toBe('M_UNKNOWN');
      expect(performance.now() - t).toBeLessThan(1500); // at once, not after the 400 ms deadline plus work
      expect((await fetch(`${base}/static`)).status).toBe(200);
      expect((await fetch(`${base}/static-alias`)).status).toBe(200);
    } finally {
      storeReady = true;
    }
    expect((await fetch(`${base}/store`)).status).toBe(200);
  });

  it('turns Redis failures into 503 and actor timeouts into 504; a bug stays 500', async () => {
    const redis = await fetch(`${base}/redis-timeout`);
    expect(redis.status).toBe(503);
    expect(redis.headers.get('retry-after')).toBe('2');
    expect(((await redis.json()) as { errcode: string }).errcode).toBe('M_UNKNOWN');
    const actor = await fetch(`${base}/actor-timeout`);
    expect(actor.status).toBe(504);
    expect(((await actor.json()) as { errcode: string }).errcode).toBe('M_UNKNOWN');
    expect((await fetch(`${base}/bug`)).status).toBe(500);
  });

  it('sends text answers as text/plain', async () => {
    const r = await fetch(`${base}/text`);
    expect(r.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(await r.text()).toBe('OK');
  });
});
