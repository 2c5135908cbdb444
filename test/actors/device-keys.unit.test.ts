/** The keys actor as a pure state machine: signature checks, one-time key claims, fallback keys, cross-signing. */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  decideKeys,
  newKeysState,
  queueMember,
  signatureField,
  type FallbackKeyRecord,
  type KeysMessage,
  type KeysPrepared,
  type KeysState,
  type SignaturesReply,
  withSignaturesOf,
} from '../../actors/device-keys';
import { ActorRejection, type StoreWrite } from '../../src/runtime/actor';
import { signingKeyFromSeed, type SigningKey } from '../../src/protocol/crypto';
import { canonicalJson, type JsonObject } from '../../src/protocol/json';
import { signatureFor, signJson } from '../../src/protocol/signing';
import { e2eKeyData } from '../../src/store/keys';

const ME = '@alice:test';
const BOB = '@bob:test';
const msg = (body: KeysMessage) => ({ mid: 'm', actorId: ME, body, enqueuedAt: 1000 });

function rejection(f: () => unknown): ActorRejection {
  try {
    f();
  } catch (e) {
    if (e instanceof ActorRejection) return e;
    throw e;
  }
  throw new Error('expected a rejection');
}

function deviceKeys(userId: string, deviceId: string, key: SigningKey = signingKeyFromSeed(`ed25519:${deviceId}`, randomBytes(32))): { json: JsonObject; key: SigningKey } {
  const unsigned: JsonObject = {
    user_id: userId,
    device_id: deviceId,
    algorithms: ['m.olm.v1.curve25519-aes-sha2', 'm.megolm.v1.aes-sha2'],
    keys: { [`ed25519:${deviceId}`]: key.publicKeyBase64, [`curve25519:${deviceId}`]: 'Y3VydmUyNTUxOWN1cnZlMjU1MTljdXJ2ZTI1NTE5YWE' },
  };
  return { json: signJson(unsigned, userId, key), key };
}

/** A cross-signing key: its key id is `ed25519:<public key>` (not a valid server key id, so signed by hand). */
function crossKey(userId: string, usage: string, signer?: { key: SigningKey; id: string }): { json: JsonObject; key: SigningKey; id: string } {
  const key = signingKeyFromSeed('ed25519:x', randomBytes(32));
  const id = `ed25519:${key.publicKeyBase64}`;
  let json: JsonObject = { user_id: userId, usage: [usage], keys: { [id]: key.publicKeyBase64 } };
  if (signer) json = addSignature(json, userId, signer);
  return { json, key, id };
}

function addSignature(obj: JsonObject, userId: string, signer: { key: SigningKey; id: string }): JsonObject {
  const sigs = (obj.signatures ?? {}) as Record<string, Record<string, string>>;
  return { ...obj, signatures: { ...sigs, [userId]: { ...(sigs[userId] ?? {}), [signer.id]: signatureFor(obj, signer.key) } } };
}

const uploadPrep = (over: Partial<Extract<KeysPrepared, { op: 'upload' }>> = {}): KeysPrepared => ({ op: 'upload', deviceExists: true, storedDeviceKeys: null, existingOneTimeKeys: {}, counts: {}, fallbacks: {}, ...over });
const hset = (writes: StoreWrite[] | undefined, key: string) => (writes ?? []).filter((w) => w.cmd === 'HSET' && w.key === key).map((w) => w.args);

describe('keys actor: upload', () => {
  it('stores device keys signed by the device, and says so on the device list', () => {
    const { json } = deviceKeys(ME, 'DEV1');
    const d = decideKeys(newKeysState(ME), msg({ op: 'upload', deviceId: 'DEV1', deviceKeys: { ...json, unsigned: { x: 1 } } }), uploadPrep());
    expect(hset(d.writes, e2eKeyData.deviceKeys(ME))).toEqual([['DEV1', canonicalJson(json)]]);
    expect(d.outputs).toEqual([{ type: 'device_list', user_id: ME, device_ids: ['DEV1'] }]);
    expect(d.reply).toEqual({ one_time_key_counts: { signed_curve25519: 0 } });
    expect(d.state.devices).toEqual({ DEV1: 1 });
    // The same keys again change nothing and tell no one.
    const again = decideKeys(d.state, msg({ op: 'upload', deviceId: 'DEV1', deviceKeys: json }), uploadPrep({ storedDeviceKeys: canonicalJson(json) }));
    expect(again.writes).toEqual([]);
    expect(again.outputs).toEqual([]);
  });

  it('refuses device keys with a bad self-signature, or for another device or user', () => {
    const { json } = deviceKeys(ME, 'DEV1');
    const other = signingKeyFromSeed('ed25519:DEV1', randomBytes(32));
    const forged = signJson({ ...json, signatures: {} }, ME, other);
    expect(rejection(() => decideKeys(newKeysState(ME), msg({ op: 'upload', deviceId: 'DEV1', deviceKeys: forged }), uploadPrep()))).toMatchObject({ errcode: 'M_INVALID_SIGNATURE', status: 400 });
    const tampered = { ...json, algorithms: ['m.megolm.v1.aes-sha2'] };
    expect(rejection(() => decideKeys(newKeysState(ME), msg({ op: 'upload', deviceId: 'DEV1', deviceKeys: tampered }), uploadPrep())).errcode).toBe('M_INVALID_SIGNATURE');
    // Without the device's own signature the keys are stored, as Synapse stores them (issue 17).
    expect(decideKeys(newKeysState(ME), msg({ op: 'upload', deviceId: 'DEV1', deviceKeys: { ...json, signatures: {} } }), uploadPrep()).reply).toBeDefined();
    expect(rejection(() => decideKeys(newKeysState(ME), msg({ op: 'upload', deviceId: 'DEV1', deviceKeys: { ...json, signatures: { [ME]: 'x' } } }), uploadPrep())).errcode).toBe('M_BAD_JSON');
    expect(rejection(() => decideKeys(newKeysState(ME), msg({ op: 'upload', deviceId: 'DEV2', deviceKeys: json }), uploadPrep())).errcode).toBe('M_BAD_JSON');
    expect(rejection(() => decideKeys(newKeysState(ME), msg({ op: 'upload', deviceId: 'DEV1', deviceKeys: deviceKeys(BOB, 'DEV1').json }), uploadPrep())).errcode).toBe('M_BAD_JSON');
    const noEd = { ...json, keys: { 'curve25519:DEV1': 'abc' } };
    expect(rejection(() => decideKeys(newKeysState(ME), msg({ op: 'upload', deviceId: 'DEV1', deviceKeys: noEd }), uploadPrep())).errcode).toBe('M_BAD_JSON');
    // A device deleted since the front checked its token gets no keys.
    expect(rejection(() => decideKeys(newKeysState(ME), msg({ op: 'upload', deviceId: 'DEV1', deviceKeys: json }), uploadPrep({ deviceExists: false }))).status).toBe(401);
  });

  it('adds one-time keys in batches, counts them, accepts repeats and refuses a changed key', () => {
    const otks = { 'signed_curve25519:AAAA': { key: 'k1', signatures: { [ME]: { 'ed25519:DEV1': 's1' } } }, 'signed_curve25519:AAAB': { key: 'k2', signatures: {} } };
    const d = decideKeys(newKeysState(ME), msg({ op: 'upload', deviceId: 'DEV1', oneTimeKeys: otks }), uploadPrep());
    expect(d.reply).toEqual({ one_time_key_counts: { signed_curve25519: 2 } });
    expect(d.state.batch).toBe(1);
    expect(d.writes!.filter((w) => w.cmd === 'ZADD').map((w) => [w.key, ...w.args])).toEqual([
      [e2eKeyData.oneTimeKeyQueue(ME, 'signed_curve25519', 'DEV1'), 0, queueMember('signed_curve25519:AAAA', canonicalJson(otks['signed_curve25519:AAAA']))],
      [e2eKeyData.oneTimeKeyQueue(ME, 'signed_curve25519', 'DEV1'), 0, queueMember('signed_curve25519:AAAB', canonicalJson(otks['signed_curve25519:AAAB']))],
    ]);
    // The device's counts changed: an output says so (it notifies the user's syncs).
    expect(d.outputs).toEqual([{ type: 'one_time_keys', user_id: ME, device_ids: ['DEV1'] }]);
    // A retry (other signatures are fine) adds nothing; a different key under a used id is refused.
    const existing = { 'signed_curve25519:AAAA': canonicalJson(otks['signed_curve25519:AAAA']) };
    const retry = decideKeys(d.state, msg({ op: 'upload', deviceId: 'DEV1', oneTimeKeys: { 'signed_curve25519:AAAA': { key: 'k1', signatures: {} } } }), uploadPrep({ existingOneTimeKeys: existing, counts: { signed_curve25519: 2 } }));
    expect(retry.writes).toEqual([]);
    expect(retry.outputs).toEqual([]);
    expect(retry.state).toBe(d.state);
    expect(retry.reply).toEqual({ one_time_key_counts: { signed_curve25519: 2 } });
    const changed = rejection(() => decideKeys(d.state, msg({ op: 'upload', deviceId: 'DEV1', oneTimeKeys: { 'signed_curve25519:AAAA': { key: 'other', signatures: {} } } }), uploadPrep({ existingOneTimeKeys: existing })));
    expect(changed).toMatchObject({ errcode: 'M_INVALID_PARAM', status: 400 });
    expect(rejection(() => decideKeys(d.state, msg({ op: 'upload', deviceId: 'DEV1', oneTimeKeys: { 'no-colon': 'k' } }), uploadPrep())).errcode).toBe('M_BAD_JSON');
    expect(rejection(() => decideKeys(d.state, msg({ op: 'upload', deviceId: 'DEV1', oneTimeKeys: { 'a:b': 5 } }), uploadPrep())).errcode).toBe('M_BAD_JSON');
    expect(rejection(() => decideKeys(d.state, msg({ op: 'upload', deviceId: 'DEV1', oneTimeKeys: { 'a:b\u0000c': 'k' } }), uploadPrep())).errcode).toBe('M_BAD_JSON');
  });

  it('keeps one fallback key per algorithm; re-uploading it keeps its used flag, a new one is unused', () => {
    const fb = { 'signed_curve25519:FB1': { key: 'f1', fallback: true, signatures: {} } };
    const d = decideKeys(newKeysState(ME), msg({ op: 'upload', deviceId: 'DEV1', fallbackKeys: fb }), uploadPrep());
    const rec = JSON.parse(hset(d.writes, e2eKeyData.fallbackKeys(ME, 'DEV1'))[0]![1] as string) as FallbackKeyRecord;
    expect(rec).toEqual({ id: 'signed_curve25519:FB1', key: fb['signed_curve25519:FB1'], used: false });
    const used = JSON.stringify({ ...rec, used: true });
    expect(decideKeys(d.state, msg({ op: 'upload', deviceId: 'DEV1', fallbackKeys: fb }), uploadPrep({ fallbacks: { signed_curve25519: used } })).writes).toEqual([]);
    const next = decideKeys(d.state, msg({ op: 'upload', deviceId: 'DEV1', fallbackKeys: { 'signed_curve25519:FB2': { key: 'f2', fallback: true, signatures: {} } } }), uploadPrep({ fallbacks: { signed_curve25519: used } }));
    expect(JSON.parse(hset(next.writes, e2eKeyData.fallbackKeys(ME, 'DEV1'))[0]![1] as string)).toMatchObject({ id: 'signed_curve25519:FB2', used: false });
    const two = { 'signed_curve25519:A': 'x', 'signed_curve25519:B': 'y' };
    expect(rejection(() => decideKeys(d.state, msg({ op: 'upload', deviceId: 'DEV1', fallbackKeys: two }), uploadPrep())).errcode).toBe('M_INVALID_PARAM');
  });
});

describe('keys actor: claim', () => {
  const state: KeysState = { ...newKeysState(ME), devices: { DEV1: 1, DEV2: 1 } };

  it('hands out the oldest one-time key and removes it; falls back to the fallback key and marks it used', () => {
    const fallback: FallbackKeyRecord = { id: 'signed_curve25519:FB', key: { key: 'f', fallback: true }, used: false };
    const d = decideKeys(state, msg({ op: 'claim', devices: { DEV1: 'signed_curve25519', DEV2: 'signed_curve25519', DEV3: 'signed_curve25519' } }), {
      op: 'claim',
      devices: { DEV1: { oneTime: ['signed_curve25519:AAAA', '{"key":"k1"}'] }, DEV2: { fallback: JSON.stringify(fallback) } },
    });
    expect(d.reply).toEqual({ DEV1: ['signed_curve25519:AAAA', '{"key":"k1"}'], DEV2: ['signed_curve25519:FB', '{"fallback":true,"key":"f"}'] });
    expect(d.writes).toEqual([
      { cmd: 'ZREM', key: e2eKeyData.oneTimeKeyQueue(ME, 'signed_curve25519', 'DEV1'), args: [queueMember('signed_curve25519:AAAA', '{"key":"k1"}')] },
      { cmd: 'HDEL', key: e2eKeyData.oneTimeKeys(ME, 'DEV1'), args: ['signed_curve25519:AAAA'] },
      { cmd: 'HINCRBY', key: e2eKeyData.oneTimeKeyCounts(ME, 'DEV1'), args: ['signed_curve25519', -1] },
      { cmd: 'HSET', key: e2eKeyData.fallbackKeys(ME, 'DEV2'), args: ['signed_curve25519', JSON.stringify({ ...fallback, used: true })] },
    ]);
    expect(d.outputs).toEqual([{ type: 'one_time_keys', user_id: ME, device_ids: ['DEV1', 'DEV2'] }]);
    // A used fallback key is handed out again, without another write or wake-up.
    const again = decideKeys(state, msg({ op: 'claim', devices: { DEV2: 'signed_curve25519' } }), { op: 'claim', devices: { DEV2: { fallback: JSON.stringify({ ...fallback, used: true }) } } });
    expect(again.reply).toEqual({ DEV2: ['signed_curve25519:FB', '{"fallback":true,"key":"f"}'] });
    expect(again.writes).toEqual([]);
    expect(again.outputs).toEqual([]);
  });
});

describe('keys actor: cross-signing keys', () => {
  const csPrep = (deviceKeys: Record<string, string> = {}, deviceIds: string[] = ['DEV1']): KeysPrepared => ({ op: 'upload_cross_signing', deviceIds, deviceKeys });

  it('stores master, self-signing and user-signing keys signed by the master key', () => {
    const master = crossKey(ME, 'master');
    const ssk = crossKey(ME, 'self_signing', master);
    const usk = crossKey(ME, 'user_signing', master);
    const d = decideKeys(newKeysState(ME), msg({ op: 'upload_cross_signing', keys: { master: master.json, self_signing: ssk.json, user_signing: usk.json } }), csPrep());
    expect(d.state.cross).toEqual({ master: canonicalJson(master.json), self_signing: canonicalJson(ssk.json), user_signing: canonicalJson(usk.json) });
    expect(hset(d.writes, e2eKeyData.crossSigningKeys(ME)).map((a) => a[0])).toEqual(['master', 'self_signing', 'user_signing']);
    expect(d.outputs).toEqual([{ type: 'device_list', user_id: ME }]);
    // A new user-signing key alone concerns only the user's own devices.
    const usk2 = crossKey(ME, 'user_signing', master);
    const only = decideKeys(d.state, msg({ op: 'upload_cross_signing', keys: { user_signing: usk2.json } }), csPrep());
    expect(only.outputs).toEqual([{ type: 'device_list', user_id: ME, self_only: true }]);
    // Identical keys: nothing.
    const same = decideKeys(d.state, msg({ op: 'upload_cross_signing', keys: { master: master.json } }), csPrep());
    expect(same.state).toBe(d.state);
    expect(same.writes ?? []).toEqual([]);
  });

  it('refuses keys not signed by the master key, without a master key, malformed, or named like a device', () => {
    const master = crossKey(ME, 'master');
    const stranger = crossKey(ME, 'master');
    const ssk = crossKey(ME, 'self_signing', stranger);
    expect(rejection(() => decideKeys(newKeysState(ME), msg({ op: 'upload_cross_signing', keys: { master: master.json, self_signing: ssk.json } }), csPrep()))).toMatchObject({ errcode: 'M_INVALID_SIGNATURE', status: 400 });
    expect(rejection(() => decideKeys(newKeysState(ME), msg({ op: 'upload_cross_signing', keys: { self_signing: crossKey(ME, 'self_signing', master).json } }), csPrep()))).toMatchObject({ errcode: 'M_MISSING_PARAM' });
    expect(rejection(() => decideKeys(newKeysState(ME), msg({ op: 'upload_cross_signing', keys: { master: { ...master.json, usage: ['self_signing'] } } }), csPrep())).errcode).toBe('M_INVALID_PARAM');
    expect(rejection(() => decideKeys(newKeysState(ME), msg({ op: 'upload_cross_signing', keys: { master: { ...master.json, user_id: BOB } } }), csPrep())).errcode).toBe('M_INVALID_PARAM');
    expect(rejection(() => decideKeys(newKeysState(ME), msg({ op: 'upload_cross_signing', keys: { master: master.json } }), csPrep({}, [master.key.publicKeyBase64])))).toMatchObject({ errcode: 'M_FORBIDDEN', status: 403 });
    // A signature on the master key by one of the user's devices must hold.
    const dev = deviceKeys(ME, 'DEV1');
    const signedByDevice = addSignature(master.json, ME, { key: dev.key, id: 'ed25519:DEV1' });
    expect(decideKeys(newKeysState(ME), msg({ op: 'upload_cross_signing', keys: { master: signedByDevice } }), csPrep({ DEV1: canonicalJson(dev.json) })).state.cross.master).toBe(canonicalJson(signedByDevice));
    const badDeviceSig = { ...signedByDevice, signatures: { [ME]: { 'ed25519:DEV1': signatureFor({ other: 1 }, dev.key) } } };
    expect(rejection(() => decideKeys(newKeysState(ME), msg({ op: 'upload_cross_signing', keys: { master: badDeviceSig } }), csPrep({ DEV1: canonicalJson(dev.json) }))).errcode).toBe('M_INVALID_SIGNATURE');
  });

  it('refuses a first-upload request whose master key changed meanwhile (the front decides again)', () => {
    const master = crossKey(ME, 'master');
    const first = decideKeys(newKeysState(ME), msg({ op: 'upload_cross_signing', keys: { master: master.json }, guard: { master: null } }), csPrep());
    expect(rejection(() => decideKeys(first.state, msg({ op: 'upload_cross_signing', keys: { master: crossKey(ME, 'master').json }, guard: { master: null } }), csPrep())).errcode).toBe('AXON_RECHECK');
  });
});

describe('keys actor: signatures', () => {
  function setUp() {
    const master = crossKey(ME, 'master');
    const ssk = crossKey(ME, 'self_signing', master);
    const usk = crossKey(ME, 'user_signing', master);
    const state: KeysState = { ...newKeysState(ME), devices: { DEV1: 1 }, cross: { master: canonicalJson(master.json), self_signing: canonicalJson(ssk.json), user_signing: canonicalJson(usk.json) } };
    const dev = deviceKeys(ME, 'DEV1');
    return { master, ssk, usk, state, dev };
  }
  const sigPrep = (deviceKeys: Record<string, string>, ownSignatures: Record<string, string> = {}, mySignaturesOf: Record<string, Record<string, string>> = {}): KeysPrepared => ({ op: 'upload_signatures', deviceKeys, ownSignatures, mySignaturesOf });

  it('stores a device signed by the self-signing key and the master key signed by a device', () => {
    const { master, ssk, state, dev } = setUp();
    const signedDevice = addSignature(dev.json, ME, ssk);
    const signedMaster = addSignature(master.json, ME, { key: dev.key, id: 'ed25519:DEV1' });
    const d = decideKeys(state, msg({ op: 'upload_signatures', own: { DEV1: signedDevice, [master.key.publicKeyBase64]: signedMaster }, others: {}, otherMasters: {} }), sigPrep({ DEV1: canonicalJson(dev.json) }));
    expect(d.reply).toEqual({ failures: {} });
    expect(hset(d.writes, e2eKeyData.signatures(ME, ME))).toEqual([
      [signatureField('DEV1', ssk.id), (signedDevice.signatures as Record<string, Record<string, string>>)[ME]![ssk.id]],
      [signatureField(master.key.publicKeyBase64, 'ed25519:DEV1'), (signedMaster.signatures as Record<string, Record<string, string>>)[ME]!['ed25519:DEV1']],
    ]);
    expect(d.outputs).toEqual([{ type: 'device_list', user_id: ME }]);
  });

  it('reports bad signatures, changed keys and unknown devices per key, and stores the good ones', () => {
    const { ssk, state, dev } = setUp();
    const dev2 = deviceKeys(ME, 'DEV2');
    const forged = { ...dev.json, signatures: { [ME]: { [ssk.id]: signatureFor({ nope: 1 }, ssk.key) } } };
    const changed = addSignature({ ...dev2.json, algorithms: ['x'] }, ME, ssk);
    const unknown = addSignature(deviceKeys(ME, 'DEV9').json, ME, ssk);
    const d = decideKeys(state, msg({ op: 'upload_signatures', own: { DEV1: forged, DEV2: changed, DEV9: unknown }, others: {}, otherMasters: {} }), sigPrep({ DEV1: canonicalJson(dev.json), DEV2: canonicalJson(dev2.json) }));
    const failures = (d.reply as SignaturesReply).failures[ME]!;
    expect(failures.DEV1).toMatchObject({ errcode: 'M_INVALID_SIGNATURE', status: 400 });
    expect(failures.DEV2).toMatchObject({ status: 400, error: 'Key does not match' });
    expect(failures.DEV9).toMatchObject({ errcode: 'M_NOT_FOUND', status: 404 });
    expect(d.writes).toEqual([]);
    expect(d.outputs).toEqual([]);
  });

  it("signs another user's master key with the user-signing key (self-only output); refuses without one", () => {
    const { usk, state } = setUp();
    const bobMaster = crossKey(BOB, 'master');
    const signed = addSignature(bobMaster.json, ME, usk);
    const body: KeysMessage = { op: 'upload_signatures', own: {}, others: { [BOB]: { [bobMaster.key.publicKeyBase64]: signed, OTHER: signed } }, otherMasters: { [BOB]: canonicalJson(bobMaster.json) } };
    const d = decideKeys(state, msg(body), sigPrep({}));
    expect((d.reply as SignaturesReply).failures).toEqual({ [BOB]: { OTHER: { status: 404, errcode: 'M_NOT_FOUND', error: 'Unknown device' } } });
    expect(hset(d.writes, e2eKeyData.signatures(ME, BOB))).toEqual([[signatureField(bobMaster.key.publicKeyBase64, usk.id), (signed.signatures as Record<string, Record<string, string>>)[ME]![usk.id]]]);
    expect(d.outputs).toEqual([{ type: 'device_list', user_id: ME, self_only: true, signed_users: [BOB] }]);
    const noUsk = decideKeys({ ...state, cross: { master: state.cross.master! } }, msg(body), sigPrep({}));
    expect((noUsk.reply as SignaturesReply).failures[BOB]![bobMaster.key.publicKeyBase64]).toMatchObject({ status: 404 });
    const noMaster = decideKeys(state, msg({ ...body, otherMasters: { [BOB]: null } } as KeysMessage), sigPrep({}));
    expect((noMaster.reply as SignaturesReply).failures[BOB]![bobMaster.key.publicKeyBase64]).toMatchObject({ errcode: 'M_NOT_FOUND' });
  });
});

describe('keys with the signatures stored apart (what other servers are sent)', () => {
  it('merges the signer’s signatures of that key, and only of that key', () => {
    const device = { user_id: ME, device_id: 'DEV1', keys: { 'ed25519:DEV1': 'pub' }, signatures: { [ME]: { 'ed25519:DEV1': 'self' } } };
    const fields = { [signatureField('DEV1', 'ed25519:SSK')]: 'by-ssk', [signatureField('DEV2', 'ed25519:SSK')]: 'other-device', [signatureField('MASTERPUB', 'ed25519:DEV1')]: 'of-master' };
    expect(withSignaturesOf(device, 'DEV1', ME, fields)).toEqual({ ...device, signatures: { [ME]: { 'ed25519:DEV1': 'self', 'ed25519:SSK': 'by-ssk' } } });
    // Nothing stored for it: the very same object.
    expect(withSignaturesOf(device, 'DEV3', ME, fields)).toBe(device);
  });
});

describe('keys actor: deleted devices', () => {
  it('drops every key of devices that no longer exist, and only those', () => {
    const state: KeysState = { ...newKeysState(ME), devices: { DEV1: 1, DEV2: 1 } };
    const d = decideKeys(state, msg({ op: 'forget_devices' }), { op: 'forget_devices', existing: ['DEV2'], algorithms: { DEV1: ['signed_curve25519'], DEV2: ['signed_curve25519'] }, ownSignatureFields: [signatureField('DEV1', 'ed25519:ssk'), signatureField('DEV2', 'ed25519:ssk')] });
    expect(d.reply).toEqual({ forgotten: ['DEV1'] });
    expect(d.state.devices).toEqual({ DEV2: 1 });
    expect(d.writes).toEqual([
      { cmd: 'HDEL', key: e2eKeyData.deviceKeys(ME), args: ['DEV1'] },
      { cmd: 'DEL', key: e2eKeyData.oneTimeKeys(ME, 'DEV1'), args: [] },
      { cmd: 'DEL', key: e2eKeyData.oneTimeKeyCounts(ME, 'DEV1'), args: [] },
      { cmd: 'DEL', key: e2eKeyData.fallbackKeys(ME, 'DEV1'), args: [] },
      { cmd: 'DEL', key: e2eKeyData.oneTimeKeyQueue(ME, 'signed_curve25519', 'DEV1'), args: [] },
      { cmd: 'HDEL', key: e2eKeyData.signatures(ME, ME), args: [signatureField('DEV1', 'ed25519:ssk')] },
    ]);
    expect(d.outputs).toEqual([{ type: 'device_list', user_id: ME, device_ids: ['DEV1'] }]);
    const none = decideKeys(state, msg({ op: 'forget_devices' }), { op: 'forget_devices', existing: ['DEV1', 'DEV2'], algorithms: { DEV1: [], DEV2: [] }, ownSignatureFields: [] });
    expect(none.state).toBe(state);
    expect(none.outputs ?? []).toEqual([]);
  });
});
