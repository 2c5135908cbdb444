/**
 * `GET /voip/turnServer` end to end: with a shared secret configured, each user gets time-limited
 * TURN credentials that a TURN server holding the same secret accepts (username
 * `<expiry>:<user id>`, password the base64 HMAC-SHA1 of it, as coturn's `use-auth-secret` checks);
 * without a token 401. The cases without TURN or with fixed credentials are in
 * test/api/voip.unit.test.ts.
 */
import { createHmac } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './server-harness';
import { clientsFor, type Clients } from './clients';

const SECRET = 'audit-turn-secret';
let server: TestServer;
let clients: Clients;

beforeAll(async () => {
  server = await startTestServer({
    configure: (c) => void (c.voip = { ...c.voip, turnUris: ['turn:turn.example.org:3478?transport=udp', 'turns:turn.example.org:5349'], turnSharedSecret: SECRET, turnUserLifetimeMs: 3_600_000 }),
  });
  clients = await clientsFor(server);
}, 60_000);

afterAll(async () => {
  await clients?.close();
  await server?.stop();
});

it('hands each user expiring credentials a TURN server with the shared secret accepts', async () => {
  const alice = await clients.mint('voip_alice');
  const before = Math.floor(Date.now() / 1000);
  const r = await clients.call(alice, 'GET', '/voip/turnServer');
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  expect(r.body.uris).toEqual(['turn:turn.example.org:3478?transport=udp', 'turns:turn.example.org:5349']);
  expect(r.body.ttl).toBe(3600);
  const [expiry, userId] = (r.body.username as string).split(/:(.*)/s);
  expect(userId).toBe(alice.userId);
  expect(Number(expiry)).toBeGreaterThanOrEqual(before + 3600);
  expect(Number(expiry)).toBeLessThanOrEqual(Math.ceil(Date.now() / 1000) + 3600);
  // What the TURN server computes from the username it is given.
  expect(r.body.password).toBe(createHmac('sha1', SECRET).update(r.body.username).digest('base64'));
  // The r0 path too (older clients).
  expect((await clients.call(alice, 'GET', '/_matrix/client/r0/voip/turnServer')).status).toBe(200);
  const anonymous = await clients.call(null, 'GET', '/voip/turnServer');
  expect(anonymous.status).toBe(401);
  expect(anonymous.body.errcode).toBe('M_MISSING_TOKEN');
});
