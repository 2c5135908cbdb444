/** Rate limits count across fronts: two front processes' worth of HTTP servers share one limit through Redis. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './server-harness';
import { clientsFor, type Clients } from './clients';

let server: TestServer;
let c: Clients;

beforeAll(async () => {
  server = await startTestServer({
    workers: 1,
    fronts: 2,
    configure: (cfg) => {
      cfg.rateLimit = { ...cfg.rateLimit, enabled: true, client: { burst: 6, perMinute: 6 }, login: { burst: 3, perMinute: 3 } };
    },
  });
  c = await clientsFor(server);
});

afterAll(async () => {
  await c?.close();
  await server?.stop();
});

describe('cluster-wide rate limits', () => {
  it('a user\'s requests spread over two fronts draw from one limit', async () => {
    expect(server.baseUrls).toHaveLength(2);
    const [one, two] = server.baseUrls as [string, string];
    const alice = await c.mint('rla');
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) statuses.push((await c.call(alice, 'GET', '/account/whoami', undefined, i % 2 ? two : one)).status);
    expect(statuses).toEqual([200, 200, 200, 200, 200, 200]);
    for (const base of [one, two]) {
      const r = await c.call(alice, 'GET', '/account/whoami', undefined, base);
      expect(r.status).toBe(429);
      expect(r.body.errcode).toBe('M_LIMIT_EXCEEDED');
      expect(r.body.retry_after_ms).toBeGreaterThan(0);
      expect(r.body.retry_after_ms).toBeLessThanOrEqual(10_000);
      expect(Number(r.headers.get('retry-after'))).toBe(Math.ceil(r.body.retry_after_ms / 1000));
    }
    // Another user is not affected.
    const bob = await c.mint('rlb');
    expect((await c.call(bob, 'GET', '/account/whoami', undefined, two)).status).toBe(200);
  });

  it('login attempts from one address are limited across fronts', async () => {
    const [one, two] = server.baseUrls as [string, string];
    const attempt = (base: string) => c.call(null, 'POST', '/login', { type: 'm.login.password', identifier: { type: 'm.id.user', user: 'nobody' }, password: 'x' }, base);
    expect((await attempt(one)).status).toBe(403);
    expect((await attempt(two)).status).toBe(403);
    expect((await attempt(one)).status).toBe(403);
    const limited = await attempt(two);
    expect(limited.status).toBe(429);
    expect(limited.body.errcode).toBe('M_LIMIT_EXCEEDED');
  });
});
