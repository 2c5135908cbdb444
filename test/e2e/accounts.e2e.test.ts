/**
 * Accounts end to end: a real server (workers + front on the test Redis), driven by matrix-js-sdk
 * for the flows a client goes through and by raw fetch for what a well-behaved client never sends.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventType, type MatrixClient } from 'matrix-js-sdk';
import { createClient } from './sdk';
import { startTestServer, type TestServer } from './server-harness';

let server: TestServer;


beforeAll(async () => {
  server = await startTestServer();
});
afterAll(async () => {
  await server?.stop();
});

interface Answer {
  status: number;
  body: Record<string, any>;
  headers: Headers;
}

async function call(base: string, method: string, path: string, body?: unknown, token?: string, rawBody?: string): Promise<Answer> {
  const headers: Record<string, string> = { 'Content-Type': 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  const res = await fetch(`${base}${path}`, { method, headers, body: rawBody ?? (body === undefined ? undefined : JSON.stringify(body)) });
  return { status: res.status, body: (await res.json()) as Record<string, any>, headers: res.headers };
}
const api = (method: string, path: string, body?: unknown, token?: string) => call(server.baseUrl, method, `/_matrix/client/v3${path}`, body, token);

/** Register through the dummy stage with raw requests; returns the login part of the answer. */
async function register(username: string, password: string, extra: Record<string, unknown> = {}): Promise<{ user_id: string; access_token: string; device_id: string }> {
  const first = await api('POST', '/register', { username, password, ...extra });
  expect(first.status).toBe(401);
  const done = await api('POST', '/register', { username, password, ...extra, auth: { type: 'm.login.dummy', session: first.body.session } });
  expect(done.status).toBe(200);
  return done.body as { user_id: string; access_token: string; device_id: string };
}

/** The MatrixError a js-sdk call rejected with. */
async function sdkError(p: Promise<unknown>): Promise<{ httpStatus?: number; errcode?: string; data: Record<string, any> }> {
  try {
    await p;
  } catch (e) {
    return e as { httpStatus?: number; errcode?: string; data: Record<string, any> };
  }
  throw new Error('expected the call to fail');
}

describe('accounts through matrix-js-sdk', () => {
  it('registers, logs in, uses account data, filters and devices, changes the password, logs out', async () => {
    const anon = createClient({ baseUrl: server.baseUrl });
    // 1. Registration with user-interactive auth: the first request learns the flows and session.
    const challenge = await sdkError(anon.registerRequest({ username: 'alice', password: 'correct horse' }));
    expect(challenge.httpStatus).toBe(401);
    expect(challenge.data.flows).toEqual([{ stages: ['m.login.dummy'] }]);
    // No errcode on the first challenge: it says that an attempt failed, and none was made yet.
    expect(Object.keys(challenge.data).sort()).toEqual(['flows', 'params', 'session']);
    const registered = await anon.registerRequest({ username: 'alice', password: 'correct horse', initial_device_display_name: 'Phone', auth: { type: 'm.login.dummy', session: challenge.data.session } });
    expect(registered.user_id).toBe('@alice:localhost');
    expect(registered.access_token).toMatch(/^axo_\d+_/);
    const phoneDevice = registered.device_id!;

    // 2. Login with the password on a second device.
    const login = await anon.loginRequest({ type: 'm.login.password', identifier: { type: 'm.id.user', user: 'alice' }, password: 'correct horse', initial_device_display_name: 'Laptop' });
    expect(login.user_id).toBe('@alice:localhost');
    expect(login.device_id).not.toBe(phoneDevice);
    const alice: MatrixClient = createClient({ baseUrl: server.baseUrl, accessToken: login.access_token, userId: login.user_id, deviceId: login.device_id });
    expect(await alice.whoami()).toMatchObject({ user_id: '@alice:localhost', device_id: login.device_id });

    // 3. Account data and filters.
    await alice.setAccountDataRaw(EventType.Direct, { '@bob:localhost': ['!dm:localhost'] });
    expect(await alice.getAccountDataFromServer(EventType.Direct)).toEqual({ '@bob:localhost': ['!dm:localhost'] });
    const definition = { room: { timeline: { limit: 10, types: ['m.room.message'] } }, presence: { not_types: ['*'] } };
    const filter = await alice.createFilter(definition);
    expect(filter.filterId).toBeTruthy();
    const fetched = await alice.getFilter('@alice:localhost', filter.filterId!, false);
    expect(fetched.getDefinition()).toEqual(definition);

    // 4. Devices: both are listed; rename one; delete the other (password stage), which revokes its token.
    const { devices } = await alice.getDevices();
    expect(devices.map((d) => d.device_id).sort()).toEqual([phoneDevice, login.device_id].sort());
    expect(devices.find((d) => d.device_id === phoneDevice)?.display_name).toBe('Phone');
    await alice.setDeviceDetails(login.device_id, { display_name: 'Work laptop' });
    expect((await alice.getDevice(login.device_id)).display_name).toBe('Work laptop');
    const deleteChallenge = await sdkError(alice.deleteDevice(phoneDevice));
    expect(deleteChallenge.httpStatus).toBe(401);
    expect(deleteChallenge.data.flows).toEqual([{ stages: ['m.login.password'] }]);
    const wrong = await sdkError(alice.deleteDevice(phoneDevice, { type: 'm.login.password', identifier: { type: 'm.id.user', user: 'alice' }, password: 'nope', session: deleteChallenge.data.session }));
    expect(wrong.httpStatus).toBe(401);
    expect(wrong.errcode).toBe('M_FORBIDDEN');
    await alice.deleteDevice(phoneDevice, { type: 'm.login.password', identifier: { type: 'm.id.user', user: '@alice:localhost' }, password: 'correct horse', session: deleteChallenge.data.session });
    expect((await alice.getDevices()).devices.map((d) => d.device_id)).toEqual([login.device_id]);
    expect((await api('GET', '/account/whoami', undefined, registered.access_token!)).body.errcode).toBe('M_UNKNOWN_TOKEN');

    // 5. Change the password: other devices are logged out, this one stays.
    const third = await anon.loginRequest({ type: 'm.login.password', identifier: { type: 'm.id.user', user: 'alice' }, password: 'correct horse' });
    const pwChallenge = await sdkError(alice.setPassword({}, 'battery staple'));
    expect(pwChallenge.httpStatus).toBe(401);
    await alice.setPassword({ type: 'm.login.password', identifier: { type: 'm.id.user', user: 'alice' }, password: 'correct horse', session: pwChallenge.data.session }, 'battery staple');
    expect((await api('GET', '/account/whoami', undefined, third.access_token)).status).toBe(401);
    expect((await alice.whoami()).user_id).toBe('@alice:localhost');
    const oldPassword = await sdkError(anon.loginRequest({ type: 'm.login.password', identifier: { type: 'm.id.user', user: 'alice' }, password: 'correct horse' }));
    expect(oldPassword.httpStatus).toBe(403);
    const relogin = await anon.loginRequest({ type: 'm.login.password', identifier: { type: 'm.id.user', user: 'alice' }, password: 'battery staple' });
    expect(relogin.user_id).toBe('@alice:localhost');

    // 6. Logout: the token stops working and the device is gone.
    await alice.logout();
    const after = await api('GET', '/account/whoami', undefined, login.access_token);
    expect(after.status).toBe(401);
    expect(after.body).toMatchObject({ errcode: 'M_UNKNOWN_TOKEN', soft_logout: false });
    const remaining = await api('GET', '/devices', undefined, relogin.access_token);
    expect(remaining.body.devices.map((d: { device_id: string }) => d.device_id)).toEqual([relogin.device_id]);
  });
});

describe('accounts over raw HTTP', () => {
  it('answers malformed and unauthenticated requests with the spec errors', async () => {
    const bad = await call(server.baseUrl, 'POST', '/_matrix/client/v3/login', undefined, undefined, '{"type": "m.login.password",');
    expect(bad.status).toBe(400);
    expect(bad.body.errcode).toBe('M_NOT_JSON');
    const missing = await api('GET', '/account/whoami');
    expect(missing.status).toBe(401);
    expect(missing.body.errcode).toBe('M_MISSING_TOKEN');
    const unknown = await api('GET', '/account/whoami', undefined, 'axo_1_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA');
    expect(unknown.status).toBe(401);
    expect(unknown.body).toMatchObject({ errcode: 'M_UNKNOWN_TOKEN', soft_logout: false });
    const garbage = await api('GET', '/account/whoami', undefined, 'not-a-token');
    expect(garbage.body.errcode).toBe('M_UNKNOWN_TOKEN');
    expect((await api('GET', '/login')).body).toEqual({ flows: [{ type: 'm.login.password' }, { type: 'm.login.application_service' }] });
    const unsupported = await api('POST', '/login', { type: 'm.login.token', token: 'x' });
    expect(unsupported.body.errcode).toBe('M_UNKNOWN');
  });

  it('validates usernames, refuses taken ones and guests, and reports availability', async () => {
    await register('bob', 'hunter22');
    const taken = await api('POST', '/register', { username: 'bob', password: 'x' });
    expect(taken.status).toBe(400);
    expect(taken.body.errcode).toBe('M_USER_IN_USE');
    expect((await api('GET', '/register/available?username=bob')).body.errcode).toBe('M_USER_IN_USE');
    expect((await api('GET', '/register/available?username=carol')).body).toEqual({ available: true });
    // Capitals are lower-cased (as Synapse): 'Bob' is bob, taken.
    expect((await api('GET', '/register/available?username=Bob')).body.errcode).toBe('M_USER_IN_USE');
    for (const name of ['has space', 'emoji🙂', '']) {
      const invalid = await api('POST', '/register', { username: name, password: 'x' });
      expect(invalid.status, name).toBe(400);
      expect(invalid.body.errcode, name).toBe('M_INVALID_USERNAME');
    }
    const guest = await call(server.baseUrl, 'POST', '/_matrix/client/v3/register?kind=guest', {});
    expect(guest.status).toBe(403);
    expect(guest.body.errcode).toBe('M_GUEST_ACCESS_FORBIDDEN');
    // A session id that was never issued.
    const forged = await api('POST', '/register', { username: 'dave', password: 'x', auth: { type: 'm.login.dummy', session: 'forged' } });
    expect(forged.status).toBe(400);
    // inhibit_login: an account, no session.
    const inhibited = await register('erin', 'pw-erin', { inhibit_login: true });
    expect(inhibited).toEqual({ user_id: '@erin:localhost', home_server: 'localhost' });
    // The r0 prefix answers too.
    expect((await call(server.baseUrl, 'GET', '/_matrix/client/r0/register/available?username=frank')).body).toEqual({ available: true });
  });

  it('logs in by user id, localpart or legacy user field; reuses device ids; refuses wrong passwords', async () => {
    await register('grace', 'pw-grace');
    const wrong = await api('POST', '/login', { type: 'm.login.password', identifier: { type: 'm.id.user', user: 'grace' }, password: 'nope' });
    expect(wrong.status).toBe(403);
    expect(wrong.body.errcode).toBe('M_FORBIDDEN');
    const nobody = await api('POST', '/login', { type: 'm.login.password', identifier: { type: 'm.id.user', user: 'nobody' }, password: 'nope' });
    expect(nobody.status).toBe(403);
    const byId = await api('POST', '/login', { type: 'm.login.password', identifier: { type: 'm.id.user', user: '@grace:localhost' }, password: 'pw-grace', device_id: 'KITCHEN' });
    expect(byId.status).toBe(200);
    expect(byId.body).toMatchObject({ user_id: '@grace:localhost', device_id: 'KITCHEN', home_server: 'localhost' });
    const legacy = await api('POST', '/login', { type: 'm.login.password', user: 'GRACE', password: 'pw-grace', device_id: 'KITCHEN' });
    expect(legacy.body.device_id).toBe('KITCHEN');
    // The same device again: its previous token is revoked.
    expect((await api('GET', '/account/whoami', undefined, byId.body.access_token)).status).toBe(401);
    expect((await api('GET', '/account/whoami', undefined, legacy.body.access_token)).body).toEqual({ user_id: '@grace:localhost', device_id: 'KITCHEN', is_guest: false });
  });

  it('issues expiring access tokens with refresh tokens, and rotates them', async () => {
    await register('heidi', 'pw-heidi');
    const login = await api('POST', '/login', { type: 'm.login.password', identifier: { type: 'm.id.user', user: 'heidi' }, password: 'pw-heidi', refresh_token: true });
    expect(login.body.expires_in_ms).toBe(server.config.accessTokenLifetimeMs);
    expect(login.body.refresh_token).toMatch(/^axr_/);
    // A refresh token is not an access token.
    expect((await api('GET', '/account/whoami', undefined, login.body.refresh_token)).body.errcode).toBe('M_UNKNOWN_TOKEN');
    const refreshed = await api('POST', '/refresh', { refresh_token: login.body.refresh_token });
    expect(refreshed.status).toBe(200);
    expect(refreshed.body.expires_in_ms).toBe(server.config.accessTokenLifetimeMs);
    expect((await api('GET', '/account/whoami', undefined, refreshed.body.access_token)).body.device_id).toBe(login.body.device_id);
    expect((await api('GET', '/account/whoami', undefined, login.body.access_token)).status).toBe(401);
    const reused = await api('POST', '/refresh', { refresh_token: login.body.refresh_token });
    expect(reused.status).toBe(401);
    expect(reused.body.errcode).toBe('M_UNKNOWN_TOKEN');
  });

  it('keeps account data and filters private, refuses server-managed types and bad filters', async () => {
    const ivan = await register('ivan', 'pw-ivan');
    const judy = await register('judy', 'pw-judy');
    const put = await api('PUT', '/user/@ivan:localhost/rooms/!r:localhost/account_data/org.example.tag', { colour: 'blue' }, ivan.access_token);
    expect(put.status).toBe(200);
    expect((await api('GET', '/user/@ivan:localhost/rooms/!r:localhost/account_data/org.example.tag', undefined, ivan.access_token)).body).toEqual({ colour: 'blue' });
    expect((await api('GET', '/user/@ivan:localhost/account_data/org.example.tag', undefined, ivan.access_token)).status).toBe(404);
    const other = await api('GET', '/user/@ivan:localhost/rooms/!r:localhost/account_data/org.example.tag', undefined, judy.access_token);
    expect(other.status).toBe(403);
    expect(other.body.errcode).toBe('M_FORBIDDEN');
    expect((await api('PUT', '/user/@ivan:localhost/account_data/x', {}, judy.access_token)).status).toBe(403);
    const managed = await api('PUT', '/user/@ivan:localhost/rooms/!r:localhost/account_data/m.fully_read', { event_id: '$e' }, ivan.access_token);
    expect(managed.status).toBe(405);
    expect(managed.body.errcode).toBe('M_BAD_JSON');
    const notObject = await call(server.baseUrl, 'PUT', '/_matrix/client/v3/user/@ivan:localhost/account_data/x', undefined, ivan.access_token, '[1]');
    expect(notObject.status).toBe(400);
    // Valid JSON of the wrong shape: M_BAD_JSON (M_NOT_JSON is for text that does not parse), as Synapse.
    expect(notObject.body.errcode).toBe('M_BAD_JSON');
    const badFilter = await api('POST', '/user/@ivan:localhost/filter', { room: { timeline: { limit: 'ten' } } }, ivan.access_token);
    expect(badFilter.status).toBe(400);
    expect(badFilter.body.errcode).toBe('M_BAD_JSON');
    const made = await api('POST', '/user/@ivan:localhost/filter', { event_fields: ['content.body'] }, ivan.access_token);
    expect(made.body.filter_id).toBe('0');
    expect((await api('GET', `/user/@ivan:localhost/filter/${made.body.filter_id}`, undefined, judy.access_token)).status).toBe(403);
    expect((await api('GET', '/user/@ivan:localhost/filter/99', undefined, ivan.access_token)).status).toBe(404);
  });

  it('serves capabilities, 3pid answers and profiles', async () => {
    const kim = await register('kim', 'pw-kim');
    const caps = await api('GET', '/capabilities', undefined, kim.access_token);
    expect(caps.body.capabilities).toMatchObject({ 'm.change_password': { enabled: true }, 'm.3pid_changes': { enabled: false }, 'm.set_displayname': { enabled: true } });
    expect(caps.body.capabilities['m.room_versions'].default).toBe(server.config.defaultRoomVersion);
    expect((await api('GET', '/account/3pid', undefined, kim.access_token)).body).toEqual({ threepids: [] });
    const add = await api('POST', '/account/3pid/add', { client_secret: 'x', sid: 'y' }, kim.access_token);
    expect(add.body.errcode).toBe('M_THREEPID_AUTH_FAILED');
    const email = await api('POST', '/account/3pid/email/requestToken', { client_secret: 'x', email: 'a@b.c', send_attempt: 1 });
    expect(email.body.errcode).toBe('M_THREEPID_MEDIUM_NOT_SUPPORTED');
    expect((await api('GET', '/profile/@kim:localhost')).body).toEqual({ displayname: 'kim' });
    expect((await api('PUT', '/profile/@kim:localhost/displayname', { displayname: 'Kim K' }, kim.access_token)).status).toBe(200);
    expect((await api('PUT', '/profile/@kim:localhost/avatar_url', { avatar_url: 'mxc://localhost/abc' }, kim.access_token)).status).toBe(200);
    expect((await api('GET', '/profile/@kim:localhost')).body).toEqual({ displayname: 'Kim K', avatar_url: 'mxc://localhost/abc' });
    expect((await api('GET', '/profile/@kim:localhost/displayname')).body).toEqual({ displayname: 'Kim K' });
    expect((await api('PUT', '/profile/@bob:localhost/displayname', { displayname: 'x' }, kim.access_token)).status).toBe(403);
    expect((await api('GET', '/profile/@nobody:localhost')).status).toBe(404);
  });

  it('deactivates an account with the password stage; logout/all ends every session', async () => {
    const mallory = await register('mallory', 'pw-mallory');
    const second = await api('POST', '/login', { type: 'm.login.password', identifier: { type: 'm.id.user', user: 'mallory' }, password: 'pw-mallory' });
    expect((await api('POST', '/logout/all', {}, second.body.access_token)).status).toBe(200);
    expect((await api('GET', '/account/whoami', undefined, mallory.access_token)).status).toBe(401);
    const again = await api('POST', '/login', { type: 'm.login.password', identifier: { type: 'm.id.user', user: 'mallory' }, password: 'pw-mallory' });
    const token = again.body.access_token as string;
    const first = await api('POST', '/account/deactivate', {}, token);
    expect(first.status).toBe(401);
    const auth = { type: 'm.login.password', identifier: { type: 'm.id.user', user: 'mallory' }, password: 'pw-mallory', session: first.body.session };
    // A session started for deactivation cannot authorise a password change.
    const misuse = await api('POST', '/account/password', { new_password: 'x', auth }, token);
    expect(misuse.status).toBe(403);
    const done = await api('POST', '/account/deactivate', { auth }, token);
    expect(done.body).toEqual({ id_server_unbind_result: 'no-support' });
    expect((await api('GET', '/account/whoami', undefined, token)).status).toBe(401);
    const login = await api('POST', '/login', { type: 'm.login.password', identifier: { type: 'm.id.user', user: 'mallory' }, password: 'pw-mallory' });
    expect(login.body.errcode).toBe('M_USER_DEACTIVATED');
    expect((await api('POST', '/register', { username: 'mallory', password: 'x' })).body.errcode).toBe('M_USER_IN_USE');
  });
});

describe('registration settings and rate limits', () => {
  it('requires a registration token when configured, and limits logins per address', async () => {
    const s = await startTestServer({
      workers: 1,
      configure: (c) => {
        c.registration = { ...c.registration, enabled: true, requiresToken: true, tokens: ['letmein'] };
        c.rateLimit = { ...c.rateLimit, enabled: true, login: { burst: 2, perMinute: 6 } };
      },
    });
    try {
      const v = (path: string, body?: unknown) => call(s.baseUrl, 'POST', `/_matrix/client/v3${path}`, body);
      const first = await v('/register', { username: 'oscar', password: 'pw-oscar' });
      expect(first.status).toBe(401);
      expect(first.body.flows).toEqual([{ stages: ['m.login.registration_token', 'm.login.dummy'] }]);
      const wrong = await v('/register', { username: 'oscar', password: 'pw-oscar', auth: { type: 'm.login.registration_token', token: 'guess', session: first.body.session } });
      expect(wrong.status).toBe(401);
      expect(wrong.body.errcode).toBe('M_UNAUTHORIZED'); // as Synapse
      const dummy = await v('/register', { username: 'oscar', password: 'pw-oscar', auth: { type: 'm.login.dummy', session: first.body.session } });
      expect(dummy.status).toBe(401);
      const tokenStage = await v('/register', { username: 'oscar', password: 'pw-oscar', auth: { type: 'm.login.registration_token', token: 'letmein', session: first.body.session } });
      expect([tokenStage.status, tokenStage.body.completed]).toEqual([401, ['m.login.registration_token']]);
      const ok = await v('/register', { username: 'oscar', password: 'pw-oscar', auth: { type: 'm.login.dummy', session: first.body.session } });
      expect(ok.status).toBe(200);
      expect((await call(s.baseUrl, 'GET', '/_matrix/client/v1/register/m.login.registration_token/validity?token=letmein')).body).toEqual({ valid: true });

      const attempt = () => v('/login', { type: 'm.login.password', identifier: { type: 'm.id.user', user: 'oscar' }, password: 'pw-oscar' });
      expect((await attempt()).status).toBe(200);
      expect((await attempt()).status).toBe(200);
      const limited = await attempt();
      expect(limited.status).toBe(429);
      expect(limited.body.errcode).toBe('M_LIMIT_EXCEEDED');
      expect(limited.body.retry_after_ms).toBeGreaterThan(0);
      expect(limited.body.retry_after_ms).toBeLessThanOrEqual(10_000);
      expect(Number(limited.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    } finally {
      await s.stop();
    }
  });

  it('refuses registration when it is disabled', async () => {
    const s = await startTestServer({ workers: 1, configure: (c) => { c.registration = { ...c.registration, enabled: false }; } });
    try {
      const r = await call(s.baseUrl, 'POST', '/_matrix/client/v3/register', { username: 'x', password: 'y' });
      expect(r.status).toBe(403);
      expect(r.body.errcode).toBe('M_FORBIDDEN');
    } finally {
      await s.stop();
    }
  });
});
