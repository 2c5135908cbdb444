/**
 * Rate limits count across fronts: two front processes' worth of HTTP servers share one limit
 * through Redis. Failed logins count per account whatever the client address (requests are sent
 * from several loopback source addresses, 127.0.0.x, so each has its own per-address bucket).
 */
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './server-harness';
import { clientsFor, type Clients, type Json } from './clients';
import { hashPassword } from '../../src/api/client/passwords';
import type { UserMessage } from '../../actors/user';

let server: TestServer;
let c: Clients;

beforeAll(async () => {
  server = await startTestServer({
    workers: 1,
    fronts: 2,
    configure: (cfg) => {
      cfg.rateLimit = { ...cfg.rateLimit, enabled: true, client: { burst: 6, perMinute: 6 }, login: { burst: 3, perMinute: 3 }, failedLogin: { burst: 3, perMinute: 1 } };
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

/** POST /login from a given loopback source address to one front. */
function loginFrom(localAddress: string, baseUrl: string, user: string, password: string): Promise<{ status: number; body: Json; retryAfter: string | undefined }> {
  const url = new URL(`${baseUrl}/_matrix/client/v3/login`);
  const payload = JSON.stringify({ type: 'm.login.password', identifier: { type: 'm.id.user', user }, password });
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, path: url.pathname, method: 'POST', localAddress, headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Json, retryAfter: res.headers['retry-after'] as string | undefined }));
    });
    req.on('error', reject);
    req.end(payload);
  });
}

/** An account with a real password, made through its user actor. */
async function account(localpart: string, password: string): Promise<string> {
  const userId = `@${localpart}:${server.serverName}`;
  await c.actors.ask('user', 'user', userId, { op: 'register', passwordHash: await hashPassword(password) } satisfies UserMessage);
  return userId;
}

let nextAddress = 10;
/** A loopback source address no other request of this file used (its own per-address bucket). */
const freshAddress = () => `127.0.0.${nextAddress++}`;

describe('failed logins per account', () => {
  it('wrong passwords for one account from many addresses and both fronts: 3 answered 403, then 429 — even for the right password', async () => {
    await account('victim', 'right-password');
    const fronts = server.baseUrls as [string, string];
    const answers = [];
    for (let i = 0; i < 8; i++) answers.push(await loginFrom(freshAddress(), fronts[i % 2]!, 'victim', `guess-${i}`));
    expect(answers.map((a) => a.status)).toEqual([403, 403, 403, 429, 429, 429, 429, 429]);
    // The account's bucket did it (each attempt came from its own address).
    expect(await server.redis.exists(c.keys.rateLimit('failedLogin', `@victim:${server.serverName}`))).toBe(1);
    for (const a of answers.slice(0, 3)) expect(a.body.errcode).toBe('M_FORBIDDEN');
    for (const a of answers.slice(3)) {
      expect(a.body.errcode).toBe('M_LIMIT_EXCEEDED');
      expect(a.body.retry_after_ms).toBeGreaterThan(0);
      expect(a.body.retry_after_ms).toBeLessThanOrEqual(60_000);
      expect(Number(a.retryAfter)).toBe(Math.ceil(a.body.retry_after_ms / 1000));
    }
    // The right password, from a new address: still limited (as Synapse answers).
    const right = await loginFrom(freshAddress(), fronts[0], 'victim', 'right-password');
    expect(right.status).toBe(429);
    expect(right.body.errcode).toBe('M_LIMIT_EXCEEDED');
    // The user id is the key however it is written (localpart, full id, other case).
    expect((await loginFrom(freshAddress(), fronts[1], `@VICTIM:${server.serverName}`, 'right-password')).status).toBe(429);
    // Another account is not affected.
    await account('bystander', 'pw-bystander');
    const other = await loginFrom(freshAddress(), fronts[1], 'bystander', 'pw-bystander');
    expect(other.status, JSON.stringify(other.body)).toBe(200);
    expect(other.body.user_id).toBe(`@bystander:${server.serverName}`);
  });

  it('only failures count: successful logins, however many, leave the account\'s bucket full', async () => {
    await account('regular', 'pw-regular');
    for (let i = 0; i < 5; i++) {
      const ok = await loginFrom(freshAddress(), server.baseUrls[i % 2]!, 'regular', 'pw-regular');
      expect(ok.status, JSON.stringify(ok.body)).toBe(200);
    }
    // Two failures, then the right password still works (the burst is 3).
    expect((await loginFrom(freshAddress(), server.baseUrl, 'regular', 'nope-1')).status).toBe(403);
    expect((await loginFrom(freshAddress(), server.baseUrl, 'regular', 'nope-2')).status).toBe(403);
    expect((await loginFrom(freshAddress(), server.baseUrl, 'regular', 'pw-regular')).status).toBe(200);
  });

  it('concurrent guesses cannot all slip in before the first failure counts', async () => {
    await account('target', 'pw-target');
    const answers = await Promise.all(Array.from({ length: 12 }, (_, i) => loginFrom(freshAddress(), server.baseUrls[i % 2]!, 'target', `guess-${i}`)));
    const statuses = answers.map((a) => a.status).sort();
    expect(statuses.filter((s) => s === 403)).toHaveLength(3);
    expect(statuses.filter((s) => s === 429)).toHaveLength(9);
  });
});
