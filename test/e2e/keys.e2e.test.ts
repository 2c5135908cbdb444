/**
 * End-to-end encryption keys over raw HTTP against one front and two workers on real Redis:
 * device keys, one-time keys claimed exactly once under concurrent claims, fallback keys,
 * cross-signing keys with and without user-interactive auth, signature uploads with failures per
 * key, and devices that disappear from /keys/query once deleted.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signingKeyFromSeed, type SigningKey } from '../../src/protocol/crypto';
import type { JsonObject } from '../../src/protocol/json';
import { signatureFor, signJson } from '../../src/protocol/signing';
import { shardCountsFor } from '../../src/runtime/cluster-settings';
import { KeySpace } from '../../src/store/keys';
import { oneTimeKeyCounts, unusedFallbackKeyTypes } from '../../src/sync/e2e-counts';
import { startTestServer, type TestServer } from './server-harness';
import { callJson } from './clients';

type Json = Record<string, any>;
interface Session {
  userId: string;
  deviceId: string;
  token: string;
}

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({ workers: 2 });
});
afterAll(async () => {
  await server?.stop();
});

const PASSWORD = 'a long passphrase';

const call = (s: Session | null, method: string, path: string, body?: unknown) => callJson(server, s, method, path, body);

async function register(username: string): Promise<Session> {
  const first = await call(null, 'POST', '/register', { username, password: PASSWORD, initial_device_display_name: `${username}'s laptop` });
  const r = await call(null, 'POST', '/register', { username, password: PASSWORD, initial_device_display_name: `${username}'s laptop`, auth: { type: 'm.login.dummy', session: first.body.session } });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return { userId: r.body.user_id, deviceId: r.body.device_id, token: r.body.access_token };
}

async function login(userId: string, name: string): Promise<Session> {
  const r = await call(null, 'POST', '/login', { type: 'm.login.password', identifier: { type: 'm.id.user', user: userId }, password: PASSWORD, initial_device_display_name: name });
  expect(r.status).toBe(200);
  return { userId: r.body.user_id, deviceId: r.body.device_id, token: r.body.access_token };
}

function deviceKeysOf(s: Session): { json: JsonObject; key: SigningKey } {
  const key = signingKeyFromSeed(`ed25519:${s.deviceId}`, randomBytes(32));
  const json = signJson(
    {
      user_id: s.userId,
      device_id: s.deviceId,
      algorithms: ['m.olm.v1.curve25519-aes-sha2', 'm.megolm.v1.aes-sha2'],
      keys: { [`ed25519:${s.deviceId}`]: key.publicKeyBase64, [`curve25519:${s.deviceId}`]: randomBytes(32).toString('base64').replace(/=+$/, '') },
    },
    s.userId,
    key,
  );
  return { json, key };
}

function signedOneTimeKeys(s: Session, key: SigningKey, n: number, prefix: string): Json {
  const out: Json = {};
  for (let i = 0; i < n; i++) out[`signed_curve25519:${prefix}${i}`] = signJson({ key: randomBytes(32).toString('base64').replace(/=+$/, '') }, s.userId, key);
  return out;
}

interface CrossKey {
  json: JsonObject;
  key: SigningKey;
  id: string;
  pub: string;
}
function crossKey(userId: string, usage: string, signer?: CrossKey): CrossKey {
  const key = signingKeyFromSeed('ed25519:x', randomBytes(32));
  const id = `ed25519:${key.publicKeyBase64}`;
  let json: JsonObject = { user_id: userId, usage: [usage], keys: { [id]: key.publicKeyBase64 } };
  if (signer) json = sign(json, userId, signer.key, signer.id);
  return { json, key, id, pub: key.publicKeyBase64 };
}
function sign(obj: JsonObject, userId: string, key: SigningKey, keyId: string): JsonObject {
  const sigs = (obj.signatures ?? {}) as Record<string, Record<string, string>>;
  return { ...obj, signatures: { ...sigs, [userId]: { ...(sigs[userId] ?? {}), [keyId]: signatureFor(obj, key) } } };
}

const countsCtx = () => ({ redis: server.redis, keys: new KeySpace(server.config.redis.keyPrefix), shardCounts: shardCountsFor(server.config) });

describe('device keys', () => {
  it('uploads device keys, one-time and fallback keys; others query them with the device name', async () => {
    const alice = await register('k_alice');
    const bob = await register('k_bob');
    const { json, key } = deviceKeysOf(alice);
    const up = await call(alice, 'POST', '/keys/upload', { device_keys: json, one_time_keys: signedOneTimeKeys(alice, key, 5, 'A'), fallback_keys: { 'signed_curve25519:FB': { ...signJson({ key: 'ZmFsbGJhY2s', fallback: true }, alice.userId, key) } } });
    expect(up).toEqual({ status: 200, body: { one_time_key_counts: { signed_curve25519: 5 } } });
    // An empty upload just reports the counts.
    expect((await call(alice, 'POST', '/keys/upload', {})).body).toEqual({ one_time_key_counts: { signed_curve25519: 5 } });
    expect(await oneTimeKeyCounts(countsCtx(), alice.userId, alice.deviceId)).toEqual({ signed_curve25519: 5 });
    expect(await unusedFallbackKeyTypes(countsCtx(), alice.userId, alice.deviceId)).toEqual(['signed_curve25519']);

    const q = await call(bob, 'POST', '/keys/query', { device_keys: { [alice.userId]: [], '@nobody:localhost': [], '@carol:elsewhere.example': [], 'not a user': [] } });
    expect(q.status).toBe(200);
    expect(q.body.device_keys[alice.userId]).toEqual({ [alice.deviceId]: { ...json, unsigned: { device_display_name: "k_alice's laptop" } } });
    expect(q.body.device_keys['@nobody:localhost']).toEqual({});
    expect(q.body.failures).toEqual({ 'elsewhere.example': expect.objectContaining({ status: 503 }) });
    expect(q.body).toMatchObject({ master_keys: {}, self_signing_keys: {}, user_signing_keys: {} });
    // Asking for particular devices.
    expect(Object.keys((await call(bob, 'POST', '/keys/query', { device_keys: { [alice.userId]: ['NOPE'] } })).body.device_keys[alice.userId])).toEqual([]);

    // Re-uploading the same one-time key is fine; the same id with another key is not.
    const again = await call(alice, 'POST', '/keys/upload', { one_time_keys: { 'signed_curve25519:X1': 'a2V5MQ' } });
    expect(again.body.one_time_key_counts).toEqual({ signed_curve25519: 6 });
    expect((await call(alice, 'POST', '/keys/upload', { one_time_keys: { 'signed_curve25519:X1': 'a2V5MQ' } })).body.one_time_key_counts.signed_curve25519).toBe(6);
    const clash = await call(alice, 'POST', '/keys/upload', { one_time_keys: { 'signed_curve25519:X1': 'b3RoZXI' } });
    expect(clash.status).toBe(400);
    expect(clash.body.errcode).toBe('M_INVALID_PARAM');
  });

  it('refuses device keys that are not the device’s own, and malformed requests', async () => {
    const alice = await register('k_alice2');
    const other = await login(alice.userId, 'other');
    const { json } = deviceKeysOf(other);
    expect((await call(alice, 'POST', '/keys/upload', { device_keys: json })).body.errcode).toBe('M_BAD_JSON');
    const own = deviceKeysOf(alice).json;
    const tampered = { ...own, algorithms: ['m.megolm.v1.aes-sha2'] };
    const bad = await call(alice, 'POST', '/keys/upload', { device_keys: tampered });
    expect(bad).toMatchObject({ status: 400, body: { errcode: 'M_INVALID_SIGNATURE' } });
    expect((await call(alice, 'POST', '/keys/upload', { device_keys: null })).status).toBe(400);
    expect((await call(alice, 'POST', '/keys/upload', { one_time_keys: { nocolon: 'x' } })).body.errcode).toBe('M_BAD_JSON');
    expect((await call(alice, 'POST', '/keys/query', { device_keys: { [alice.userId]: 'DEV' } })).body.errcode).toBe('M_BAD_JSON');
    expect((await call(alice, 'POST', '/keys/query', {})).body.errcode).toBe('M_BAD_JSON');
    expect((await call(alice, 'POST', '/keys/claim', { one_time_keys: { [alice.userId]: { D: 5 } } })).body.errcode).toBe('M_BAD_JSON');
    expect((await call(null, 'POST', '/keys/query', { device_keys: {} })).status).toBe(401);
    expect((await call(null, 'POST', '/keys/upload', {})).status).toBe(401);
    // Nothing of the refused uploads was stored.
    expect((await call(alice, 'POST', '/keys/query', { device_keys: { [alice.userId]: [] } })).body.device_keys[alice.userId]).toEqual({});
  });

  it('hands out each one-time key exactly once under 20 concurrent claims, then the fallback key', async () => {
    const alice = await register('k_claimed');
    const bob = await register('k_claimer');
    const { json, key } = deviceKeysOf(alice);
    const otks = signedOneTimeKeys(alice, key, 10, 'C');
    const fallback = signJson({ key: 'ZmFsbGJhY2tr', fallback: true }, alice.userId, key);
    expect((await call(alice, 'POST', '/keys/upload', { device_keys: json, one_time_keys: otks, fallback_keys: { 'signed_curve25519:FB1': fallback } })).status).toBe(200);

    const claims = await Promise.all(Array.from({ length: 20 }, () => call(bob, 'POST', '/keys/claim', { one_time_keys: { [alice.userId]: { [alice.deviceId]: 'signed_curve25519' } }, timeout: 10000 })));
    const got = claims.map((c) => {
      expect(c.status).toBe(200);
      expect(c.body.failures).toEqual({});
      return Object.entries(c.body.one_time_keys[alice.userId][alice.deviceId] as Json)[0]!;
    });
    const oneTime = got.filter(([id]) => id !== 'signed_curve25519:FB1');
    expect(oneTime.map(([id]) => id).sort()).toEqual(Object.keys(otks).sort());
    for (const [id, k] of oneTime) expect(k).toEqual(otks[id]);
    expect(got.filter(([id]) => id === 'signed_curve25519:FB1').map(([, k]) => k)).toEqual(Array(10).fill(fallback));
    expect((await call(alice, 'POST', '/keys/upload', {})).body.one_time_key_counts).toEqual({ signed_curve25519: 0 });
    expect(await unusedFallbackKeyTypes(countsCtx(), alice.userId, alice.deviceId)).toEqual([]);

    // A new fallback key is unused again; unknown devices and remote users give nothing.
    await call(alice, 'POST', '/keys/upload', { fallback_keys: { 'signed_curve25519:FB2': signJson({ key: 'bmV3ZmFsbGJhY2s', fallback: true }, alice.userId, key) } });
    expect(await unusedFallbackKeyTypes(countsCtx(), alice.userId, alice.deviceId)).toEqual(['signed_curve25519']);
    const misc = await call(bob, 'POST', '/keys/claim', { one_time_keys: { [alice.userId]: { NODEVICE: 'signed_curve25519' }, '@x:remote.example': { D: 'signed_curve25519' } } });
    expect(misc.body).toEqual({ one_time_keys: {}, failures: { 'remote.example': expect.objectContaining({ status: 503 }) } });
  });

  it('drops a deleted device’s keys: it is gone from /keys/query, by DELETE /devices and by logout', async () => {
    const alice = await register('k_deleter');
    const bob = await register('k_watcher');
    const phone = await login(alice.userId, 'phone');
    const tablet = await login(alice.userId, 'tablet');
    for (const s of [alice, phone, tablet]) {
      const { json, key } = deviceKeysOf(s);
      expect((await call(s, 'POST', '/keys/upload', { device_keys: json, one_time_keys: signedOneTimeKeys(s, key, 2, 'D') })).status).toBe(200);
    }
    const devices = async () => Object.keys((await call(bob, 'POST', '/keys/query', { device_keys: { [alice.userId]: [] } })).body.device_keys[alice.userId]).sort();
    expect(await devices()).toEqual([alice.deviceId, phone.deviceId, tablet.deviceId].sort());

    const first = await call(alice, 'DELETE', `/devices/${phone.deviceId}`, {});
    expect(first.status).toBe(401);
    const del = await call(alice, 'DELETE', `/devices/${phone.deviceId}`, { auth: { type: 'm.login.password', identifier: { type: 'm.id.user', user: alice.userId }, password: PASSWORD, session: first.body.session } });
    expect(del.status).toBe(200);
    expect(await devices()).toEqual([alice.deviceId, tablet.deviceId].sort());
    expect(await oneTimeKeyCounts(countsCtx(), alice.userId, phone.deviceId)).toEqual({ signed_curve25519: 0 });
    const claim = await call(bob, 'POST', '/keys/claim', { one_time_keys: { [alice.userId]: { [phone.deviceId]: 'signed_curve25519' } } });
    expect(claim.body.one_time_keys).toEqual({});

    expect((await call(tablet, 'POST', '/logout', {})).status).toBe(200);
    expect(await devices()).toEqual([alice.deviceId]);
    expect(await oneTimeKeyCounts(countsCtx(), alice.userId, tablet.deviceId)).toEqual({ signed_curve25519: 0 });
  });
});

describe('cross-signing', () => {
  it('uploads cross-signing keys (first time without auth, replacing them with auth) and serves them in /keys/query', async () => {
    const alice = await register('x_alice');
    const bob = await register('x_bob');
    const master = crossKey(alice.userId, 'master');
    const ssk = crossKey(alice.userId, 'self_signing', master);
    const usk = crossKey(alice.userId, 'user_signing', master);
    const body = { master_key: master.json, self_signing_key: ssk.json, user_signing_key: usk.json };
    expect(await call(alice, 'POST', '/keys/device_signing/upload', body)).toEqual({ status: 200, body: {} });
    // The same keys again (a retry) need no auth either.
    expect((await call(alice, 'POST', '/keys/device_signing/upload', body)).status).toBe(200);

    const byBob = (await call(bob, 'POST', '/keys/query', { device_keys: { [alice.userId]: [] } })).body;
    expect(byBob.master_keys).toEqual({ [alice.userId]: master.json });
    expect(byBob.self_signing_keys).toEqual({ [alice.userId]: ssk.json });
    expect(byBob.user_signing_keys).toEqual({});
    const byAlice = (await call(alice, 'POST', '/keys/query', { device_keys: { [alice.userId]: [] } })).body;
    expect(byAlice.user_signing_keys).toEqual({ [alice.userId]: usk.json });

    // Replacing them needs the password.
    const master2 = crossKey(alice.userId, 'master');
    const ssk2 = crossKey(alice.userId, 'self_signing', master2);
    const challenge = await call(alice, 'POST', '/keys/device_signing/upload', { master_key: master2.json, self_signing_key: ssk2.json });
    expect(challenge.status).toBe(401);
    expect(challenge.body.flows).toEqual([{ stages: ['m.login.password'] }]);
    const wrong = await call(alice, 'POST', '/keys/device_signing/upload', { master_key: master2.json, self_signing_key: ssk2.json, auth: { type: 'm.login.password', identifier: { type: 'm.id.user', user: alice.userId }, password: 'wrong', session: challenge.body.session } });
    expect(wrong.status).toBe(401);
    expect(wrong.body.errcode).toBe('M_FORBIDDEN');
    const ok = await call(alice, 'POST', '/keys/device_signing/upload', { master_key: master2.json, self_signing_key: ssk2.json, auth: { type: 'm.login.password', identifier: { type: 'm.id.user', user: alice.userId }, password: PASSWORD, session: challenge.body.session } });
    expect(ok.status).toBe(200);
    expect((await call(bob, 'POST', '/keys/query', { device_keys: { [alice.userId]: [] } })).body.master_keys[alice.userId]).toEqual(master2.json);
  });

  it('refuses cross-signing keys with bad signatures or without a master key', async () => {
    const carol = await register('x_carol');
    const master = crossKey(carol.userId, 'master');
    const stray = crossKey(carol.userId, 'self_signing', crossKey(carol.userId, 'master'));
    expect((await call(carol, 'POST', '/keys/device_signing/upload', { self_signing_key: stray.json })).body).toMatchObject({ errcode: 'M_MISSING_PARAM' });
    const bad = await call(carol, 'POST', '/keys/device_signing/upload', { master_key: master.json, self_signing_key: stray.json });
    expect(bad).toMatchObject({ status: 400, body: { errcode: 'M_INVALID_SIGNATURE' } });
    expect((await call(carol, 'POST', '/keys/query', { device_keys: { [carol.userId]: [] } })).body.master_keys).toEqual({});
    expect((await call(carol, 'POST', '/keys/device_signing/upload', { master_key: 'nope' })).body.errcode).toBe('M_BAD_JSON');
  });

  it('uploads signatures: own devices and master key, other users’ master keys; failures per key', async () => {
    const alice = await register('s_alice');
    const bob = await register('s_bob');
    const carol = await register('s_carol');
    const dev = deviceKeysOf(alice);
    await call(alice, 'POST', '/keys/upload', { device_keys: dev.json });
    const master = crossKey(alice.userId, 'master');
    const ssk = crossKey(alice.userId, 'self_signing', master);
    const usk = crossKey(alice.userId, 'user_signing', master);
    expect((await call(alice, 'POST', '/keys/device_signing/upload', { master_key: master.json, self_signing_key: ssk.json, user_signing_key: usk.json })).status).toBe(200);
    const bobMaster = crossKey(bob.userId, 'master');
    expect((await call(bob, 'POST', '/keys/device_signing/upload', { master_key: bobMaster.json, self_signing_key: crossKey(bob.userId, 'self_signing', bobMaster).json })).status).toBe(200);

    const deviceSig = sign(dev.json, alice.userId, ssk.key, ssk.id);
    const masterByDevice = sign(master.json, alice.userId, dev.key, `ed25519:${alice.deviceId}`);
    const bobByAlice = sign(bobMaster.json, alice.userId, usk.key, usk.id);
    const forged = { ...bobMaster.json, signatures: { [alice.userId]: { [usk.id]: signatureFor({ x: 1 }, usk.key) } } };
    const forgedRes = await call(alice, 'POST', '/keys/signatures/upload', { [bob.userId]: { [bobMaster.pub]: forged } });
    expect(forgedRes.body.failures[bob.userId][bobMaster.pub]).toMatchObject({ errcode: 'M_INVALID_SIGNATURE', status: 400 });
    const res = await call(alice, 'POST', '/keys/signatures/upload', {
      [alice.userId]: { [alice.deviceId]: deviceSig, [master.pub]: masterByDevice, NODEVICE: deviceSig },
      [bob.userId]: { [bobMaster.pub]: bobByAlice },
      [carol.userId]: { SOMEKEY: forged },
    });
    expect(res.status).toBe(200);
    expect(res.body.failures).toEqual({
      [alice.userId]: { NODEVICE: { status: 404, errcode: 'M_NOT_FOUND', error: 'Unknown device' } },
      [carol.userId]: { SOMEKEY: expect.objectContaining({ status: 404, errcode: 'M_NOT_FOUND' }) },
    });

    // Bob sees alice's device signed by her self-signing key and her master key signed by her device.
    const seenByBob = (await call(bob, 'POST', '/keys/query', { device_keys: { [alice.userId]: [] } })).body;
    expect(seenByBob.device_keys[alice.userId][alice.deviceId].signatures[alice.userId]).toEqual((deviceSig.signatures as Json)[alice.userId]);
    expect(seenByBob.master_keys[alice.userId].signatures[alice.userId]).toEqual((masterByDevice.signatures as Json)[alice.userId]);
    // Alice's signature of bob's master key is seen by alice only.
    const bobSeenByAlice = (await call(alice, 'POST', '/keys/query', { device_keys: { [bob.userId]: [] } })).body.master_keys[bob.userId];
    expect(bobSeenByAlice.signatures[alice.userId]).toEqual({ [usk.id]: (bobByAlice.signatures as Json)[alice.userId][usk.id] });
    const bobSeenByCarol = (await call(carol, 'POST', '/keys/query', { device_keys: { [bob.userId]: [] } })).body.master_keys[bob.userId];
    expect(bobSeenByCarol).toEqual(bobMaster.json);
    expect((await call(alice, 'POST', '/keys/signatures/upload', [])).status).toBe(400);
  });
});

describe('/keys/changes', () => {
  it('lists users sharing a room whose device keys changed between two sync tokens', async () => {
    const alice = await register('c_alice');
    const bob = await register('c_bob');
    const loner = await register('c_loner');
    const room = (await call(alice, 'POST', '/createRoom', { invite: [bob.userId] })).body.room_id as string;
    expect((await call(bob, 'POST', `/join/${encodeURIComponent(room)}`, {})).status).toBe(200);
    // Start the window once alice has seen bob join (a join alone also counts as a change).
    let from = (await call(alice, 'GET', '/sync?timeout=0')).body.next_batch as string;
    for (let i = 0; i < 50; i++) {
      const timeline = (await call(alice, 'GET', '/sync?timeout=0')).body.rooms?.join?.[room]?.timeline?.events ?? [];
      if (timeline.some((e: Json) => e.type === 'm.room.member' && e.state_key === bob.userId && e.content.membership === 'join')) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    from = (await call(alice, 'GET', `/sync?timeout=0&since=${encodeURIComponent(from)}`)).body.next_batch as string;
    expect((await call(alice, 'GET', `/keys/changes?from=${encodeURIComponent(from)}`)).body.changed).toEqual([]);

    await call(bob, 'POST', '/keys/upload', { device_keys: deviceKeysOf(bob).json });
    await call(loner, 'POST', '/keys/upload', { device_keys: deviceKeysOf(loner).json });
    // The change reaches alice through the fan-out reader: wait for her sync to see it.
    let to = from;
    for (let i = 0; i < 50; i++) {
      const s = (await call(alice, 'GET', `/sync?timeout=1000&since=${encodeURIComponent(to)}`)).body;
      to = s.next_batch;
      if ((s.device_lists?.changed ?? []).includes(bob.userId)) break;
    }
    const changes = await call(alice, 'GET', `/keys/changes?from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`);
    expect(changes.status).toBe(200);
    expect(changes.body.changed).toContain(bob.userId);
    expect(changes.body.changed).not.toContain(loner.userId);
    expect(changes.body.left).toEqual([]);
    // An empty window, and bad tokens.
    expect((await call(alice, 'GET', `/keys/changes?from=${encodeURIComponent(to)}&to=${encodeURIComponent(to)}`)).body).toEqual({ changed: [], left: [] });
    expect((await call(alice, 'GET', '/keys/changes?from=nonsense&to=x')).body.errcode).toBe('M_INVALID_PARAM');
    expect((await call(alice, 'GET', '/keys/changes')).body.errcode).toBe('M_MISSING_PARAM');
  });
});
