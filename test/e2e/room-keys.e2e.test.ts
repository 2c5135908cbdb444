/**
 * Server-side key backups end to end (key_backup.yaml): a real front and workers on the test
 * Redis, raw HTTP for every endpoint and matrix-js-sdk's own backup-version request (the one its
 * Rust crypto uses to find the current backup).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requestKeyBackupVersion } from 'matrix-js-sdk/lib/rust-crypto/backup';
import { createClient } from './sdk';
import { startTestServer, type TestServer } from './server-harness';
import { waitFor } from '../runtime/harness';

type Json = Record<string, any>;

interface Session {
  userId: string;
  deviceId: string;
  token: string;
}

const ALG = 'm.megolm_backup.v1.curve25519-aes-sha2';
const ROOM = '!encrypted:localhost';
const ROOM2 = '!other:localhost';

let server: TestServer;

async function call(s: Session | null, method: string, path: string, body?: unknown): Promise<{ status: number; body: Json }> {
  const r = await fetch(`${server.baseUrl}/_matrix/client/v3${path}`, {
    method,
    headers: { ...(s ? { Authorization: `Bearer ${s.token}` } : {}), 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: r.status, body: (await r.json()) as Json };
}

async function ok(s: Session, method: string, path: string, body?: unknown): Promise<Json> {
  const r = await call(s, method, path, body);
  expect(r.status, `${method} ${path}: ${JSON.stringify(r.body)}`).toBe(200);
  return r.body;
}

async function register(username: string): Promise<Session> {
  const first = await call(null, 'POST', '/register', { username, password: 'pw-room-keys' });
  const done = await call(null, 'POST', '/register', { username, password: 'pw-room-keys', auth: { type: 'm.login.dummy', session: first.body.session } });
  expect(done.status, JSON.stringify(done.body)).toBe(200);
  return { userId: done.body.user_id, deviceId: done.body.device_id, token: done.body.access_token };
}

const authData = (pk = 'hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo') => ({ public_key: pk, signatures: { '@alice:localhost': { 'ed25519:DEV': 'sig' } } });
const keyData = (is_verified: boolean, first_message_index: number, forwarded_count: number, tag = 'x') => ({
  first_message_index,
  forwarded_count,
  is_verified,
  session_data: { ephemeral: `eph-${tag}`, ciphertext: `ct-${tag}`, mac: `mac-${tag}` },
});
const enc = encodeURIComponent;

beforeAll(async () => {
  server = await startTestServer();
});

afterAll(async () => {
  await server?.stop();
});

describe('key backup versions', () => {
  it('create, get current and by number, update auth_data, delete; numbers are never reused', async () => {
    const s = await register('kbversions');
    const none = await call(s, 'GET', '/room_keys/version');
    expect(none).toEqual({ status: 404, body: { errcode: 'M_NOT_FOUND', error: 'No current backup version' } });

    const v1 = (await ok(s, 'POST', '/room_keys/version', { algorithm: ALG, auth_data: authData() })).version;
    expect(v1).toBe('1');
    expect(await ok(s, 'GET', '/room_keys/version')).toEqual({ algorithm: ALG, auth_data: authData(), count: 0, etag: '0', version: '1' });
    const v2 = (await ok(s, 'POST', '/room_keys/version', { algorithm: ALG, auth_data: authData('pk2') })).version;
    expect(v2).toBe('2');
    expect((await ok(s, 'GET', '/room_keys/version')).version).toBe('2');
    expect((await ok(s, 'GET', '/room_keys/version/1')).auth_data).toEqual(authData());

    // Only auth_data changes; algorithm and version must match.
    expect(await ok(s, 'PUT', '/room_keys/version/2', { algorithm: ALG, auth_data: authData('pk2b'), version: '2' })).toEqual({});
    expect((await ok(s, 'GET', '/room_keys/version/2')).auth_data.public_key).toBe('pk2b');
    expect((await call(s, 'PUT', '/room_keys/version/2', { algorithm: 'org.example.other', auth_data: {} })).body.errcode).toBe('M_INVALID_PARAM');
    expect((await call(s, 'PUT', '/room_keys/version/2', { algorithm: ALG, auth_data: authData(), version: '1' })).body.errcode).toBe('M_INVALID_PARAM');
    expect((await call(s, 'PUT', '/room_keys/version/9', { algorithm: ALG, auth_data: authData() })).status).toBe(404);

    // Deleting the current version makes the previous one current again (as in Synapse).
    expect(await ok(s, 'DELETE', '/room_keys/version/2')).toEqual({});
    expect((await ok(s, 'GET', '/room_keys/version')).version).toBe('1');
    expect((await call(s, 'GET', '/room_keys/version/2')).body.errcode).toBe('M_NOT_FOUND');
    // Deleted before: success; never made: 404.
    expect((await call(s, 'DELETE', '/room_keys/version/2')).status).toBe(200);
    expect((await call(s, 'DELETE', '/room_keys/version/7')).body.errcode).toBe('M_NOT_FOUND');
    expect((await call(s, 'GET', '/room_keys/version/nonsense')).body.errcode).toBe('M_NOT_FOUND');
    expect((await ok(s, 'POST', '/room_keys/version', { algorithm: ALG, auth_data: authData() })).version).toBe('3');
  });

  it('refuses malformed version bodies and unauthenticated requests', async () => {
    const s = await register('kbbad');
    expect((await call(null, 'GET', '/room_keys/version')).body.errcode).toBe('M_MISSING_TOKEN');
    expect((await call(s, 'POST', '/room_keys/version', { auth_data: authData() })).body.errcode).toBe('M_MISSING_PARAM');
    expect((await call(s, 'POST', '/room_keys/version', { algorithm: 5, auth_data: authData() })).body.errcode).toBe('M_BAD_JSON');
    expect((await call(s, 'POST', '/room_keys/version', { algorithm: ALG, auth_data: 'opaque' })).body.errcode).toBe('M_BAD_JSON');
    expect((await call(s, 'POST', '/room_keys/version', { algorithm: ALG, auth_data: {} })).body.errcode).toBe('M_INVALID_PARAM');
    expect((await call(s, 'POST', '/room_keys/version', '{"algorithm":')).body.errcode).toBe('M_NOT_JSON');
    expect((await call(s, 'GET', '/room_keys/version')).status).toBe(404);
  });

  it('matrix-js-sdk finds the current backup (and none for a user without one)', async () => {
    const s = await register('kbsdk');
    const client = createClient({ baseUrl: server.baseUrl, accessToken: s.token, userId: s.userId, deviceId: s.deviceId });
    try {
      expect(await requestKeyBackupVersion(client.http)).toBeNull();
      await ok(s, 'POST', '/room_keys/version', { algorithm: ALG, auth_data: authData() });
      const info = await requestKeyBackupVersion(client.http);
      expect(info).toMatchObject({ algorithm: ALG, auth_data: authData(), version: '1', count: 0, etag: '0' });
      expect(await requestKeyBackupVersion(client.http, '1')).toEqual(info);
    } finally {
      client.stopClient();
    }
  });
});

describe('key backup keys', () => {
  it('put and get at every level, with etag and count, and the replacement rule', async () => {
    const s = await register('kbkeys');
    await ok(s, 'POST', '/room_keys/version', { algorithm: ALG, auth_data: authData() });
    const all = await ok(s, 'PUT', '/room_keys/keys?version=1', { rooms: { [ROOM]: { sessions: { s1: keyData(false, 5, 1, 'a'), s2: keyData(false, 0, 0, 'b') } } } });
    expect(all).toEqual({ etag: '1', count: 2 });
    const room = await ok(s, 'PUT', `/room_keys/keys/${enc(ROOM2)}?version=1`, { sessions: { s3: keyData(true, 0, 0, 'c') } });
    expect(room).toEqual({ etag: '2', count: 3 });
    const one = await ok(s, 'PUT', `/room_keys/keys/${enc(ROOM2)}/s4?version=1`, keyData(false, 2, 0, 'd'));
    expect(one).toEqual({ etag: '3', count: 4 });
    expect(await ok(s, 'GET', '/room_keys/version')).toMatchObject({ count: 4, etag: '3' });

    expect(await ok(s, 'GET', '/room_keys/keys?version=1')).toEqual({
      rooms: {
        [ROOM]: { sessions: { s1: keyData(false, 5, 1, 'a'), s2: keyData(false, 0, 0, 'b') } },
        [ROOM2]: { sessions: { s3: keyData(true, 0, 0, 'c'), s4: keyData(false, 2, 0, 'd') } },
      },
    });
    expect(await ok(s, 'GET', `/room_keys/keys/${enc(ROOM)}?version=1`)).toEqual({ sessions: { s1: keyData(false, 5, 1, 'a'), s2: keyData(false, 0, 0, 'b') } });
    expect(await ok(s, 'GET', `/room_keys/keys/${enc(ROOM)}/s1?version=1`)).toEqual(keyData(false, 5, 1, 'a'));
    expect(await ok(s, 'GET', `/room_keys/keys/${enc('!empty:localhost')}?version=1`)).toEqual({ sessions: {} });
    const missing = await call(s, 'GET', `/room_keys/keys/${enc(ROOM)}/nope?version=1`);
    expect(missing.status).toBe(404);
    expect(missing.body.errcode).toBe('M_NOT_FOUND');

    // Worse keys are ignored (etag unchanged); better ones replace.
    const put1 = (k: Json) => ok(s, 'PUT', `/room_keys/keys/${enc(ROOM)}/s1?version=1`, k);
    expect(await put1(keyData(false, 6, 0, 'higher index'))).toEqual({ etag: '3', count: 4 });
    expect(await put1(keyData(false, 5, 2, 'more forwarded'))).toEqual({ etag: '3', count: 4 });
    expect(await put1(keyData(false, 5, 1, 'equal'))).toEqual({ etag: '3', count: 4 });
    expect(await put1(keyData(false, 5, 0, 'less forwarded'))).toEqual({ etag: '4', count: 4 });
    expect(await put1(keyData(false, 3, 9, 'lower index'))).toEqual({ etag: '5', count: 4 });
    expect(await put1(keyData(true, 9, 9, 'verified'))).toEqual({ etag: '6', count: 4 });
    expect(await put1(keyData(false, 0, 0, 'unverified, lowest index'))).toEqual({ etag: '6', count: 4 });
    expect(await ok(s, 'GET', `/room_keys/keys/${enc(ROOM)}/s1?version=1`)).toEqual(keyData(true, 9, 9, 'verified'));
  });

  it('deletes at every level, moving etag and count; a deleted version loses its keys', async () => {
    const s = await register('kbdelete');
    await ok(s, 'POST', '/room_keys/version', { algorithm: ALG, auth_data: authData() });
    await ok(s, 'PUT', '/room_keys/keys?version=1', {
      rooms: { [ROOM]: { sessions: { a: keyData(false, 0, 0), b: keyData(false, 0, 0) } }, [ROOM2]: { sessions: { c: keyData(false, 0, 0), d: keyData(false, 0, 0) } } },
    });
    expect(await ok(s, 'DELETE', `/room_keys/keys/${enc(ROOM)}/a?version=1`)).toEqual({ etag: '2', count: 3 });
    expect(await ok(s, 'DELETE', `/room_keys/keys/${enc(ROOM)}/a?version=1`)).toEqual({ etag: '2', count: 3 });
    expect(await ok(s, 'DELETE', `/room_keys/keys/${enc(ROOM2)}?version=1`)).toEqual({ etag: '3', count: 1 });
    expect(await ok(s, 'GET', '/room_keys/keys?version=1')).toEqual({ rooms: { [ROOM]: { sessions: { b: keyData(false, 0, 0) } } } });
    expect(await ok(s, 'DELETE', '/room_keys/keys?version=1')).toEqual({ etag: '4', count: 0 });
    expect(await ok(s, 'GET', '/room_keys/keys?version=1')).toEqual({ rooms: {} });

    await ok(s, 'PUT', '/room_keys/keys?version=1', { rooms: { [ROOM]: { sessions: { e: keyData(false, 0, 0) } } } });
    await ok(s, 'DELETE', '/room_keys/version/1');
    expect((await call(s, 'GET', '/room_keys/keys?version=1')).body.errcode).toBe('M_NOT_FOUND');
    expect((await call(s, 'DELETE', '/room_keys/keys?version=1')).body.errcode).toBe('M_NOT_FOUND');
    // Its keys are gone from the store, not just hidden.
    const left = await server.redis.keys(`${server.config.redis.keyPrefix}*kb:1:*`);
    expect(left.filter((k) => k.includes(s.userId))).toEqual([]);
  });

  it('writing to an old version is M_WRONG_ROOM_KEYS_VERSION with the current one; unknown versions are 404', async () => {
    const s = await register('kbwrong');
    const noBackup = await call(s, 'PUT', '/room_keys/keys?version=1', { rooms: {} });
    expect(noBackup.status).toBe(404);
    expect(noBackup.body.errcode).toBe('M_NOT_FOUND');
    await ok(s, 'POST', '/room_keys/version', { algorithm: ALG, auth_data: authData() });
    await ok(s, 'PUT', '/room_keys/keys?version=1', { rooms: { [ROOM]: { sessions: { old: keyData(false, 0, 0) } } } });
    await ok(s, 'POST', '/room_keys/version', { algorithm: ALG, auth_data: authData('pk2') });
    const wrong = await call(s, 'PUT', `/room_keys/keys/${enc(ROOM)}/x?version=1`, keyData(false, 0, 0));
    expect(wrong).toEqual({ status: 403, body: { errcode: 'M_WRONG_ROOM_KEYS_VERSION', error: 'Wrong backup version.', current_version: '2' } });
    expect((await call(s, 'PUT', '/room_keys/keys?version=5', { rooms: {} })).status).toBe(404);
    expect((await call(s, 'PUT', '/room_keys/keys?version=abc', { rooms: {} })).status).toBe(404);
    // The old version stays readable; the new one starts empty.
    expect(Object.keys((await ok(s, 'GET', `/room_keys/keys/${enc(ROOM)}?version=1`)).sessions)).toEqual(['old']);
    expect(await ok(s, 'GET', '/room_keys/keys?version=2')).toEqual({ rooms: {} });
    expect(await ok(s, 'GET', '/room_keys/version')).toMatchObject({ version: '2', count: 0, etag: '0' });
  });

  it('refuses malformed keys with Matrix errors and stores nothing', async () => {
    const s = await register('kbmalformed');
    await ok(s, 'POST', '/room_keys/version', { algorithm: ALG, auth_data: authData() });
    const bad: [string, unknown, string][] = [
      ['/room_keys/keys?version=1', {}, 'M_BAD_JSON'],
      ['/room_keys/keys?version=1', { rooms: { [ROOM]: { sessions: { s: { ...keyData(false, 0, 0), is_verified: 'yes' } } } } }, 'M_BAD_JSON'],
      ['/room_keys/keys?version=1', { rooms: { [ROOM]: { sessions: { s: { ...keyData(false, 0, 0), first_message_index: -1 } } } } }, 'M_BAD_JSON'],
      ['/room_keys/keys?version=1', { rooms: { [ROOM]: { sessions: { s: { ...keyData(false, 0, 0), session_data: 'text' } } } } }, 'M_BAD_JSON'],
      ['/room_keys/keys?version=1', { rooms: { [ROOM]: { s: keyData(false, 0, 0) } } }, 'M_BAD_JSON'],
      ['/room_keys/keys?version=1', { rooms: { 'not-a-room': { sessions: {} } } }, 'M_INVALID_PARAM'],
      [`/room_keys/keys/${enc(ROOM)}/s?version=1`, { first_message_index: 0, forwarded_count: 0, is_verified: false }, 'M_BAD_JSON'],
      [`/room_keys/keys/${enc(ROOM)}/s`, keyData(false, 0, 0), 'M_MISSING_PARAM'],
    ];
    for (const [path, body, errcode] of bad) {
      const r = await call(s, 'PUT', path, body);
      expect(r.status, `${path} ${JSON.stringify(body)}`).toBe(400);
      expect(r.body.errcode, `${path} ${JSON.stringify(body)}`).toBe(errcode);
    }
    expect((await call(s, 'GET', '/room_keys/keys')).body.errcode).toBe('M_MISSING_PARAM');
    expect(await ok(s, 'GET', '/room_keys/version')).toMatchObject({ count: 0, etag: '0' });
  });

  it('deactivating the account deletes its backups', async () => {
    const s = await register('kbdeactivated');
    await ok(s, 'POST', '/room_keys/version', { algorithm: ALG, auth_data: authData() });
    await ok(s, 'PUT', '/room_keys/keys?version=1', { rooms: { [ROOM]: { sessions: { gone: keyData(false, 0, 0) } } } });
    const mine = async () => (await server.redis.keys(`${server.config.redis.keyPrefix}*`)).filter((k) => k.includes(`${s.userId}:kb`));
    expect((await mine()).length).toBe(3); // the versions hash, the rooms set, the room's keys
    const first = await call(s, 'POST', '/account/deactivate', {});
    const done = await call(s, 'POST', '/account/deactivate', { auth: { type: 'm.login.password', identifier: { type: 'm.id.user', user: 'kbdeactivated' }, password: 'pw-room-keys', session: first.body.session } });
    expect(done.status, JSON.stringify(done.body)).toBe(200);
    await waitFor('the backups of the deactivated user to be deleted', async () => (await mine()).length === 0);
  });

  it("keeps users' backups apart", async () => {
    const a = await register('kbapart1');
    const b = await register('kbapart2');
    await ok(a, 'POST', '/room_keys/version', { algorithm: ALG, auth_data: authData() });
    await ok(a, 'PUT', '/room_keys/keys?version=1', { rooms: { [ROOM]: { sessions: { mine: keyData(false, 0, 0) } } } });
    expect((await call(b, 'GET', '/room_keys/keys?version=1')).status).toBe(404);
    expect((await call(b, 'GET', '/room_keys/version')).status).toBe(404);
  });
});
