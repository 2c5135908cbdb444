/**
 * DeviceKeysActor: the single writer of one local user's end-to-end encryption keys (actor id =
 * user id, kind `keys`, user family, so it shares the user's shard with the user actor): each
 * device's identity keys, one-time keys and fallback keys, the user's cross-signing keys, and the
 * signatures the user uploads (of their own devices and master key, and of other users' master
 * keys).
 *
 * Why an actor: a one-time key must be handed out at most once however many clients claim at the
 * same moment (keys.yaml, /keys/claim). The mailbox orders the claims, so the shell reads the
 * oldest unclaimed key and the decision removes it, with no lock and no race.
 *
 * The store is the truth and fronts read it directly (keys in `e2eKeyData`): /keys/query merges
 * device keys, cross-signing keys and signatures; /sync reads the one-time key counts and the
 * fallback keys' used flags (src/sync/e2e-counts.ts). The state blob stays small: which devices
 * have key material, the upload batch counter, and the cross-signing keys (needed to check every
 * signature upload).
 *
 * Outputs on the user shard's outbox (read by the device-list fan-out and /sync's wake-ups):
 * - `{type:'device_list', user_id}` when what others see of the user's devices changes: new or
 *   changed device keys, a device's keys deleted, a new master or self-signing key, a signature
 *   of one of the user's own keys;
 * - `{type:'device_list', user_id, self_only:true}` when only the user's own devices care: a new
 *   user-signing key; with `signed_users`, signatures of those users' master keys (Synapse's
 *   "signature stream": the user's devices see the signed users as changed and query them again);
 * - `{type:'one_time_keys', user_id, device_ids}` when someone else changed a device's one-time
 *   key count or used its fallback key (a claim), so that device's long-poll wakes and it can
 *   upload more.
 *
 * What is checked follows the spec and, where the spec is loose, Synapse (handlers/e2e_keys.py):
 * device keys must name the uploading device and carry a valid signature by its own ed25519 key;
 * re-uploading a one-time key id with other content is refused; self-signing and user-signing
 * keys must be signed by the master key; uploaded signatures are checked one by one and failures
 * are reported per key instead of failing the request.
 */
import { ActorRejection, type ActorKind, type ActorMessage, type Decision, type ShellContext, type StoreWrite } from '../src/runtime/actor';
import { decodeBase64 } from '../src/protocol/base64';
import { canonicalJson, isJsonObject, type JsonObject, type JsonValue } from '../src/protocol/json';
import { verifyJsonSignature } from '../src/protocol/signing';
import { e2eKeyData, userData } from '../src/store/keys';

export const SIGNED_CURVE25519 = 'signed_curve25519';
const ED25519 = 'ed25519';

export type CrossSigningUsage = 'master' | 'self_signing' | 'user_signing';

export interface KeysState {
  userId: string;
  /** One-time key uploads so far: the score of the next batch (claims take the oldest batch first). */
  batch: number;
  /** Devices that have key material here (device keys, one-time or fallback keys). */
  devices: Record<string, 1>;
  /** The cross-signing keys as stored (canonical JSON), by usage. */
  cross: Partial<Record<CrossSigningUsage, string>>;
  /** For a remote user: the newest stream id applied, and whether the cache is the full list. */
  remote?: { stream: number; synced: boolean };
}

/** A device's fallback key of one algorithm, as stored in `e2eKeyData.fallbackKeys`. */
export interface FallbackKeyRecord {
  /** `<algorithm>:<key id>` */
  id: string;
  key: JsonValue;
  used: boolean;
}

export type KeysMessage =
  /** POST /keys/upload by `deviceId` (the front checked the body's shape). */
  | { op: 'upload'; deviceId: string; deviceKeys?: JsonObject; oneTimeKeys?: JsonObject; fallbackKeys?: JsonObject }
  /** POST /keys/claim for this user's devices: device id → algorithm. */
  | { op: 'claim'; devices: Record<string, string> }
  /**
   * POST /keys/device_signing/upload. `guard`: the front let the request through without
   * user-interactive auth because the master key was this (null: there was none); if it is not
   * any more, the actor refuses (`AXON_RECHECK`) and the front decides again.
   */
  | { op: 'upload_cross_signing'; keys: Partial<Record<CrossSigningUsage, JsonObject>>; guard?: { master: string | null } }
  /**
   * POST /keys/signatures/upload: `own` are the user's own keys (by device id or master public
   * key); `others` other users' keys, with `otherMasters` their current master keys as the front
   * read them (canonical JSON, null: none).
   */
  | { op: 'upload_signatures'; own: Record<string, JsonObject>; others: Record<string, Record<string, JsonObject>>; otherMasters: Record<string, string | null> }
  /** After devices were deleted: drop the keys of those of `deviceIds` (default: any) that no longer exist. */
  | { op: 'forget_devices'; deviceIds?: string[] }
  /** A remote user's `m.device_list_update` (checked by src/federation/inbound/edus.ts). */
  | { op: 'remote_update'; deviceId: string; streamId: number; prevIds: number[]; deleted: boolean; keys?: JsonObject; displayName?: string }
  /** A remote user's full device list (`/user/devices`), replacing the cache. */
  | { op: 'remote_resync'; streamId: number; devices: Record<string, { keys: JsonObject; displayName?: string }>; cross: Partial<Record<'master' | 'self_signing', JsonObject>> }
  /** A remote user's `m.signing_key_update`. */
  | { op: 'remote_signing'; cross: Partial<Record<'master' | 'self_signing', JsonObject>> };

/** Remote ops need nothing read. */
type RemoteOp = 'remote_update' | 'remote_resync' | 'remote_signing';

/** What the shell reads for a message (the store as of all earlier messages of this actor). */
export type KeysPrepared =
  | { op: 'upload'; deviceExists: boolean; storedDeviceKeys: string | null; existingOneTimeKeys: Record<string, string>; counts: Record<string, number>; fallbacks: Record<string, string> }
  | { op: 'claim'; devices: Record<string, { oneTime?: [string, string]; fallback?: string }> }
  | { op: 'upload_cross_signing'; deviceIds: string[]; deviceKeys: Record<string, string> }
  | { op: 'upload_signatures'; deviceKeys: Record<string, string>; ownSignatures: Record<string, string>; mySignaturesOf: Record<string, Record<string, string>> }
  | { op: 'forget_devices'; existing: string[]; algorithms: Record<string, string[]>; ownSignatureFields: string[] }
  | { op: RemoteOp };

export interface UploadReply {
  one_time_key_counts: Record<string, number>;
}
/** Device id → [`<algorithm>:<key id>`, key as JSON text]. */
export type ClaimReply = Record<string, [string, string]>;
export interface SignatureFailure {
  status: number;
  errcode: string;
  error: string;
}
export interface SignaturesReply {
  failures: Record<string, Record<string, SignatureFailure>>;
}
/** `resync`: the cached list of a remote user has a gap; fetch it in full. */
export type KeysReply = UploadReply | ClaimReply | SignaturesReply | { ok: true } | { forgotten: string[] } | { resync: boolean };

export type KeysOutput =
  /** `device_ids`: the devices whose keys changed, when known (the federation sender sends those as `m.device_list_update`; without it, every device and the cross-signing keys). */
  | { type: 'device_list'; user_id: string; self_only?: true; device_ids?: string[]; signed_users?: string[] }
  | { type: 'one_time_keys'; user_id: string; device_ids: string[] };

export function newKeysState(userId: string): KeysState {
  return { userId, batch: 0, devices: {}, cross: {} };
}

type D = Decision<KeysState, KeysReply>;

/** Pure: everything the keys actor does with a message. */
export function decideKeys(state: KeysState, msg: ActorMessage<KeysMessage>, prepared: KeysPrepared): D {
  const body = msg.body;
  if (prepared.op !== body?.op) throw new TypeError(`keys: prepared ${prepared.op} for ${JSON.stringify((body as { op?: unknown } | undefined)?.op)}`);
  switch (body.op) {
    case 'upload':
      return upload(state, body, prepared as Extract<KeysPrepared, { op: 'upload' }>);
    case 'claim':
      return claim(state, body, prepared as Extract<KeysPrepared, { op: 'claim' }>);
    case 'upload_cross_signing':
      return uploadCrossSigning(state, body, prepared as Extract<KeysPrepared, { op: 'upload_cross_signing' }>);
    case 'upload_signatures':
      return uploadSignatures(state, body, prepared as Extract<KeysPrepared, { op: 'upload_signatures' }>);
    case 'forget_devices':
      return forgetDevices(state, prepared as Extract<KeysPrepared, { op: 'forget_devices' }>);
    case 'remote_update':
      return remoteUpdate(state, body);
    case 'remote_resync':
      return remoteResync(state, body);
    case 'remote_signing':
      return remoteSigning(state, body);
    default:
      throw new TypeError(`keys: unknown op ${JSON.stringify((body as { op?: unknown }).op)}`);
  }
}

// ---- upload ----

function upload(state: KeysState, body: Extract<KeysMessage, { op: 'upload' }>, p: Extract<KeysPrepared, { op: 'upload' }>): D {
  const u = state.userId;
  const deviceId = body.deviceId;
  // The access token was valid when the front checked it, but the device may have been deleted
  // since (its keys with it): keys of a device that does not exist would never be cleaned up.
  if (!p.deviceExists) throw new ActorRejection('M_UNKNOWN_TOKEN', 'This device has been deleted', 401);
  const writes: StoreWrite[] = [];
  const outputs: KeysOutput[] = [];

  if (body.deviceKeys !== undefined) {
    const json = checkDeviceKeys(u, deviceId, body.deviceKeys);
    if (json !== p.storedDeviceKeys) {
      writes.push({ cmd: 'HSET', key: e2eKeyData.deviceKeys(u), args: [deviceId, json] });
      outputs.push({ type: 'device_list', user_id: u, device_ids: [deviceId] });
    }
  }

  const counts = { ...p.counts };
  let newOneTime = 0;
  for (const [id, key] of Object.entries(body.oneTimeKeys ?? {})) {
    const algorithm = keyAlgorithm(id, 'one_time_keys');
    checkKeyObject(key, id, 'one_time_keys');
    const existing = p.existingOneTimeKeys[id];
    if (existing !== undefined) {
      // A retried upload repeats keys; the same id with other content is a client bug (Synapse: 400).
      if (withoutSignatures(JSON.parse(existing) as JsonValue) !== withoutSignatures(key)) throw new ActorRejection('M_INVALID_PARAM', `One-time key ${id} already exists with different content`, 400);
      continue;
    }
    writes.push(
      { cmd: 'HSET', key: e2eKeyData.oneTimeKeys(u, deviceId), args: [id, canonicalJson(key)] },
      { cmd: 'ZADD', key: e2eKeyData.oneTimeKeyQueue(u, algorithm, deviceId), args: [state.batch, queueMember(id, canonicalJson(key))] },
      { cmd: 'HINCRBY', key: e2eKeyData.oneTimeKeyCounts(u, deviceId), args: [algorithm, 1] },
    );
    counts[algorithm] = (counts[algorithm] ?? 0) + 1;
    newOneTime++;
  }

  const fallbackAlgorithms = new Set<string>();
  for (const [id, key] of Object.entries(body.fallbackKeys ?? {})) {
    const algorithm = keyAlgorithm(id, 'fallback_keys');
    checkKeyObject(key, id, 'fallback_keys');
    if (fallbackAlgorithms.has(algorithm)) throw new ActorRejection('M_INVALID_PARAM', `At most one fallback key per algorithm (${algorithm})`, 400);
    fallbackAlgorithms.add(algorithm);
    const storedJson = p.fallbacks[algorithm];
    const stored = storedJson === undefined ? null : (JSON.parse(storedJson) as FallbackKeyRecord);
    // Re-uploading the current fallback key keeps its used flag; a new key starts unused.
    if (stored && stored.id === id && withoutSignatures(stored.key) === withoutSignatures(key)) continue;
    const record: FallbackKeyRecord = { id, key, used: false };
    writes.push({ cmd: 'HSET', key: e2eKeyData.fallbackKeys(u, deviceId), args: [algorithm, JSON.stringify(record)] });
  }

  // New one-time or fallback keys change what /sync reports for the device: say so (the output
  // wakes the user's long-polls, and fronts that cache those counts drop them: src/sync/e2e-counts.ts).
  if (newOneTime > 0 || writes.some((w) => w.key === e2eKeyData.fallbackKeys(u, deviceId))) outputs.push({ type: 'one_time_keys', user_id: u, device_ids: [deviceId] });
  const touched = writes.length > 0 && !state.devices[deviceId];
  const next: KeysState = newOneTime || touched ? { ...state, batch: newOneTime ? state.batch + 1 : state.batch, devices: touched ? { ...state.devices, [deviceId]: 1 } : state.devices } : state;
  return { state: next, reply: { one_time_key_counts: publicCounts(counts) }, writes, outputs };
}

/** The counts a client sees: unclaimed keys per algorithm, `signed_curve25519` always present (as Synapse does). */
export function publicCounts(counts: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = { [SIGNED_CURVE25519]: 0 };
  for (const [alg, n] of Object.entries(counts)) if (n > 0) out[alg] = n;
  return out;
}

/** Validate device keys for `deviceId` and return them as stored (canonical JSON without `unsigned`). */
export function checkDeviceKeys(userId: string, deviceId: string, keys: JsonObject): string {
  if (keys.user_id !== userId) throw new ActorRejection('M_BAD_JSON', 'device_keys.user_id does not match the authenticated user', 400);
  if (keys.device_id !== deviceId) throw new ActorRejection('M_BAD_JSON', 'device_keys.device_id does not match the authenticated device', 400);
  if (!Array.isArray(keys.algorithms) || !keys.algorithms.every((a) => typeof a === 'string')) throw new ActorRejection('M_BAD_JSON', 'device_keys.algorithms must be a list of strings', 400);
  if (!isJsonObject(keys.keys) || !Object.values(keys.keys).every((k) => typeof k === 'string')) throw new ActorRejection('M_BAD_JSON', 'device_keys.keys must map key ids to strings', 400);
  const sigs = keys.signatures;
  if (!isJsonObject(sigs) || !Object.values(sigs).every((byKey) => isJsonObject(byKey) && Object.values(byKey).every((v) => typeof v === 'string'))) {
    throw new ActorRejection('M_BAD_JSON', 'device_keys.signatures must map user ids to key ids to signatures', 400);
  }
  const keyId = `${ED25519}:${deviceId}`;
  const publicKey = publicKeyBytes(keys.keys[keyId]);
  if (!publicKey) throw new ActorRejection('M_BAD_JSON', `device_keys.keys must hold the device's ${keyId} key (32 bytes, unpadded base64)`, 400);
  // Keys without the device's own signature are stored, as Synapse stores them (clients and test
  // tools upload such keys; verifying them is the other clients' job). A self-signature that is
  // there but wrong can only be a broken upload: refused.
  const own = (sigs[userId] as JsonObject | undefined)?.[keyId];
  if (own !== undefined && !verifyJsonSignature(keys, userId, keyId, publicKey).ok) throw new ActorRejection('M_INVALID_SIGNATURE', `device_keys carries an invalid signature by ${keyId}`, 400);
  const { unsigned: _u, ...stored } = keys;
  return canonicalJson(stored);
}

/**
 * A one-time key in its device's claim queue: id and key together, so the shell finds the next
 * key to hand out with a single read (claims of one user are serialized: each read counts).
 */
export function queueMember(id: string, json: string): string {
  return `${id}\0${json}`;
}

/** `<algorithm>:<key id>` with both parts non-empty and exactly one colon (as Synapse parses them). */
function keyAlgorithm(id: string, field: string): string {
  const parts = id.split(':');
  // No control characters: a queue member is `<id>\0<key>`.
  if (parts.length !== 2 || !parts[0] || !parts[1] || /[\x00-\x1f]/.test(id)) throw new ActorRejection('M_BAD_JSON', `Invalid ${field} key ${JSON.stringify(id)}: expected "<algorithm>:<key id>"`, 400);
  return parts[0];
}

/** A key is a string (unsigned curve25519) or an object with a string `key` (signed keys). */
function checkKeyObject(key: JsonValue, id: string, field: string): void {
  if (typeof key === 'string') return;
  if (isJsonObject(key) && typeof key.key === 'string' && (key.signatures === undefined || isJsonObject(key.signatures))) return;
  throw new ActorRejection('M_BAD_JSON', `${field}.${id} must be a string or an object with a key and signatures`, 400);
}

/** Canonical JSON of a key without its signatures: re-uploads may carry other signatures. */
function withoutSignatures(key: JsonValue): string {
  if (!isJsonObject(key)) return canonicalJson(key);
  const { signatures: _s, ...rest } = key;
  return canonicalJson(rest);
}

function publicKeyBytes(value: unknown): Uint8Array | null {
  if (typeof value !== 'string') return null;
  try {
    const bytes = decodeBase64(value);
    return bytes.length === 32 ? bytes : null;
  } catch {
    return null;
  }
}

// ---- claim ----

function claim(state: KeysState, body: Extract<KeysMessage, { op: 'claim' }>, p: Extract<KeysPrepared, { op: 'claim' }>): D {
  const u = state.userId;
  const reply: ClaimReply = {};
  const writes: StoreWrite[] = [];
  const changed: string[] = [];
  for (const [deviceId, algorithm] of Object.entries(body.devices)) {
    const found = p.devices[deviceId];
    if (found?.oneTime) {
      const [id, json] = found.oneTime;
      reply[deviceId] = [id, json];
      writes.push(
        { cmd: 'ZREM', key: e2eKeyData.oneTimeKeyQueue(u, algorithm, deviceId), args: [queueMember(id, json)] },
        { cmd: 'HDEL', key: e2eKeyData.oneTimeKeys(u, deviceId), args: [id] },
        { cmd: 'HINCRBY', key: e2eKeyData.oneTimeKeyCounts(u, deviceId), args: [algorithm, -1] },
      );
      changed.push(deviceId);
    } else if (found?.fallback) {
      // No one-time key left: the fallback key is handed out (again and again until replaced) and
      // marked used, so the device learns through /sync that it should make a new one.
      const record = JSON.parse(found.fallback) as FallbackKeyRecord;
      reply[deviceId] = [record.id, canonicalJson(record.key)];
      if (!record.used) {
        writes.push({ cmd: 'HSET', key: e2eKeyData.fallbackKeys(u, deviceId), args: [algorithm, JSON.stringify({ ...record, used: true })] });
        changed.push(deviceId);
      }
    }
  }
  const outputs: KeysOutput[] = changed.length ? [{ type: 'one_time_keys', user_id: u, device_ids: changed }] : [];
  return { state, reply, writes, outputs };
}

// ---- cross-signing keys ----

const USAGES: CrossSigningUsage[] = ['master', 'self_signing', 'user_signing'];

/** The public key of a cross-signing key object: its one `ed25519:<key>` entry. */
export function crossSigningPublicKey(key: JsonObject): { keyId: string; publicKey: string; bytes: Uint8Array } | null {
  if (!isJsonObject(key.keys)) return null;
  const entries = Object.entries(key.keys);
  if (entries.length !== 1) return null;
  const [keyId, value] = entries[0]!;
  if (typeof value !== 'string' || keyId !== `${ED25519}:${value}`) return null;
  const bytes = publicKeyBytes(value);
  return bytes ? { keyId, publicKey: value, bytes } : null;
}

function checkCrossSigningKey(userId: string, key: JsonObject, usage: CrossSigningUsage): { keyId: string; publicKey: string; bytes: Uint8Array } {
  const pub = crossSigningPublicKey(key);
  if (key.user_id !== userId || !Array.isArray(key.usage) || !key.usage.includes(usage) || !pub) throw new ActorRejection('M_INVALID_PARAM', `Invalid ${usage} key`, 400);
  if (key.signatures !== undefined && !isJsonObject(key.signatures)) throw new ActorRejection('M_INVALID_PARAM', `Invalid ${usage} key: signatures must be an object`, 400);
  return pub;
}

function uploadCrossSigning(state: KeysState, body: Extract<KeysMessage, { op: 'upload_cross_signing' }>, p: Extract<KeysPrepared, { op: 'upload_cross_signing' }>): D {
  const u = state.userId;
  if (body.guard && (state.cross.master ?? null) !== body.guard.master) throw new ActorRejection(RECHECK, 'The master key changed meanwhile', 409);
  const given = body.keys;
  const masterObj = given.master ?? (state.cross.master ? (JSON.parse(state.cross.master) as JsonObject) : null);
  // Every other key hangs off the master key: without one there is nothing to check them with.
  if (!masterObj) throw new ActorRejection('M_MISSING_PARAM', 'No master key available', 400);
  const master = given.master ? checkCrossSigningKey(u, given.master, 'master') : crossSigningPublicKey(masterObj);
  if (!master) throw new ActorRejection('M_UNKNOWN', 'The stored master key is invalid', 500);
  if (given.master) checkMasterSignatures(u, given.master, master, p.deviceKeys);
  const publicKeys: string[] = [master.publicKey];
  for (const usage of ['self_signing', 'user_signing'] as const) {
    const key = given[usage];
    if (!key) continue;
    const pub = checkCrossSigningKey(u, key, usage);
    if (!verifyJsonSignature(key, u, master.keyId, master.bytes).ok) throw new ActorRejection('M_INVALID_SIGNATURE', `Invalid signature on ${usage} key`, 400);
    publicKeys.push(pub.publicKey);
  }
  // Cross-signing keys sit beside devices in device lists (their public key is their "device id").
  for (const pk of publicKeys) if (p.deviceIds.includes(pk)) throw new ActorRejection('M_FORBIDDEN', 'Key ID in use', 403);

  const cross = { ...state.cross };
  const writes: StoreWrite[] = [];
  const changed = new Set<CrossSigningUsage>();
  for (const usage of USAGES) {
    const key = given[usage];
    if (!key) continue;
    const json = canonicalJson(key);
    if (cross[usage] === json) continue;
    cross[usage] = json;
    changed.add(usage);
    writes.push({ cmd: 'HSET', key: e2eKeyData.crossSigningKeys(u), args: [usage, json] });
  }
  if (changed.size === 0) return { state, reply: { ok: true } };
  // Master and self-signing keys are part of what others verify this user's devices with; the
  // user-signing key only concerns the user's own devices.
  const outputs: KeysOutput[] = changed.has('master') || changed.has('self_signing') ? [{ type: 'device_list', user_id: u }] : [{ type: 'device_list', user_id: u, self_only: true }];
  return { state: { ...state, cross }, reply: { ok: true }, writes, outputs };
}

/**
 * Signatures carried by an uploaded master key must hold: its own (self-signature) and those of
 * the user's devices whose keys are known (clients sign a new master key with the device that
 * made it). Signatures by keys the server cannot know are kept as they are.
 */
function checkMasterSignatures(userId: string, master: JsonObject, pub: { keyId: string; bytes: Uint8Array }, deviceKeys: Record<string, string>): void {
  const sigs = isJsonObject(master.signatures) ? master.signatures[userId] : undefined;
  if (sigs === undefined) return;
  if (!isJsonObject(sigs)) throw new ActorRejection('M_INVALID_PARAM', 'Invalid master key: signatures must be an object', 400);
  for (const keyId of Object.keys(sigs)) {
    let publicKey: Uint8Array | null = null;
    if (keyId === pub.keyId) publicKey = pub.bytes;
    else if (keyId.startsWith(`${ED25519}:`) && deviceKeys[keyId.slice(ED25519.length + 1)] !== undefined) {
      const device = JSON.parse(deviceKeys[keyId.slice(ED25519.length + 1)]!) as JsonObject;
      publicKey = publicKeyBytes((device.keys as JsonObject | undefined)?.[keyId]);
    }
    if (publicKey && !verifyJsonSignature(master, userId, keyId, publicKey).ok) throw new ActorRejection('M_INVALID_SIGNATURE', `Invalid signature on master key by ${keyId}`, 400);
  }
}

/** The errcode of a refusal the front answers by deciding again (never reaches a client). */
export const RECHECK = 'AXON_RECHECK';

// ---- signatures ----

class SignatureError extends Error {
  constructor(
    readonly status: number,
    readonly errcode: string,
    message: string,
  ) {
    super(message);
  }
  toFailure(): SignatureFailure {
    return { status: this.status, errcode: this.errcode, error: this.message };
  }
}
const invalidSignature = () => new SignatureError(400, 'M_INVALID_SIGNATURE', 'Invalid signature');

/** `<target key>\0<signing key id>`: a field of `e2eKeyData.signatures`. */
export function signatureField(target: string, signingKeyId: string): string {
  return `${target}\0${signingKeyId}`;
}

/**
 * A key (device keys, or a cross-signing key) with the signatures `signer` uploaded of it
 * (`fields` of `e2eKeyData.signatures(signer, owner)`, those whose target is `target`: a device id,
 * or a cross-signing public key) merged into its `signatures`. What other servers are sent in
 * device list updates and resyncs must carry them: a device signed by its owner's self-signing
 * key is what makes it cross-signing verified for everyone else.
 */
export function withSignaturesOf(key: JsonObject, target: string, signer: string, fields: Record<string, string>): JsonObject {
  const prefix = `${target}\0`;
  const extra: Record<string, string> = {};
  for (const [field, sig] of Object.entries(fields)) if (field.startsWith(prefix)) extra[field.slice(prefix.length)] = sig;
  if (!Object.keys(extra).length) return key;
  const signatures = (isJsonObject(key.signatures) ? key.signatures : {}) as Record<string, Record<string, JsonValue>>;
  return { ...key, signatures: { ...signatures, [signer]: { ...(signatures[signer] ?? {}), ...extra } } };
}

function uploadSignatures(state: KeysState, body: Extract<KeysMessage, { op: 'upload_signatures' }>, p: Extract<KeysPrepared, { op: 'upload_signatures' }>): D {
  const u = state.userId;
  const failures: Record<string, Record<string, SignatureFailure>> = {};
  const fail = (user: string, id: string, e: unknown) => {
    if (!(e instanceof SignatureError)) throw e;
    (failures[user] ??= {})[id] = e.toFailure();
  };
  const writes: StoreWrite[] = [];
  const outputs: KeysOutput[] = [];

  // 1. The user's own keys: devices signed by the self-signing key, the master key signed by devices.
  const own = Object.entries(body.own);
  let ownStored = 0;
  if (own.length) {
    const ssk = state.cross.self_signing ? crossSigningPublicKey(JSON.parse(state.cross.self_signing) as JsonObject) : null;
    const masterJson = state.cross.master ? (JSON.parse(state.cross.master) as JsonObject) : null;
    const master = masterJson ? crossSigningPublicKey(masterJson) : null;
    const setupMissing = !ssk ? `No self_signing key found for ${u}` : !master ? `No master key found for ${u}` : Object.keys(p.deviceKeys).length === 0 ? 'No device keys found' : null;
    if (setupMissing) {
      for (const [id] of own) fail(u, id, new SignatureError(404, 'M_NOT_FOUND', setupMissing));
    } else {
      for (const [id, signed] of own) {
        try {
          const sigs = isJsonObject(signed.signatures) ? signed.signatures[u] : undefined;
          if (!isJsonObject(sigs)) throw invalidSignature();
          if (id === master!.publicKey) {
            for (const [keyId, sig] of Object.entries(sigs)) {
              if (keyId === master!.keyId) continue; // its own signature is part of the stored key
              if (p.ownSignatures[signatureField(id, keyId)] === sig || (isJsonObject(masterJson!.signatures) && isJsonObject(masterJson!.signatures[u]) && masterJson!.signatures[u][keyId] === sig)) continue;
              const deviceId = keyId.startsWith(`${ED25519}:`) ? keyId.slice(ED25519.length + 1) : '';
              const device = p.deviceKeys[deviceId] !== undefined ? (JSON.parse(p.deviceKeys[deviceId]!) as JsonObject) : null;
              const publicKey = device ? publicKeyBytes((device.keys as JsonObject | undefined)?.[keyId]) : null;
              // Signed by an unknown device, or one without that key.
              if (!publicKey) throw invalidSignature();
              checkSignedCopy(u, signed, masterJson!, keyId, publicKey);
              writes.push({ cmd: 'HSET', key: e2eKeyData.signatures(u, u), args: [signatureField(id, keyId), String(sig)] });
              ownStored++;
            }
            continue;
          }
          const sig = sigs[ssk!.keyId];
          if (typeof sig !== 'string') throw invalidSignature();
          const stored = p.deviceKeys[id];
          if (stored === undefined) throw new SignatureError(404, 'M_NOT_FOUND', 'Unknown device');
          const storedDevice = JSON.parse(stored) as JsonObject;
          // Already signed by this self-signing key: nothing new.
          const storedSigs = isJsonObject(storedDevice.signatures) ? storedDevice.signatures[u] : undefined;
          if (p.ownSignatures[signatureField(id, ssk!.keyId)] !== undefined || (isJsonObject(storedSigs) && storedSigs[ssk!.keyId] !== undefined)) continue;
          checkSignedCopy(u, signed, storedDevice, ssk!.keyId, ssk!.bytes);
          writes.push({ cmd: 'HSET', key: e2eKeyData.signatures(u, u), args: [signatureField(id, ssk!.keyId), sig] });
          ownStored++;
        } catch (e) {
          fail(u, id, e);
        }
      }
    }
  }

  // 2. Other users' master keys, signed by this user's user-signing key.
  const signedUsers: string[] = [];
  const others = Object.entries(body.others);
  if (others.length) {
    const usk = state.cross.user_signing ? crossSigningPublicKey(JSON.parse(state.cross.user_signing) as JsonObject) : null;
    for (const [target, keys] of others) {
      if (!usk) {
        for (const id of Object.keys(keys)) fail(target, id, new SignatureError(404, 'M_NOT_FOUND', `No user_signing key found for ${u}`));
        continue;
      }
      const masterJson = body.otherMasters[target] ? (JSON.parse(body.otherMasters[target]!) as JsonObject) : null;
      const master = masterJson ? crossSigningPublicKey(masterJson) : null;
      if (!masterJson || !master) {
        for (const id of Object.keys(keys)) fail(target, id, new SignatureError(404, 'M_NOT_FOUND', `No master key found for ${target}`));
        continue;
      }
      // Only the target's current master key can be signed; anything else names an unknown key.
      for (const id of Object.keys(keys)) if (id !== master.publicKey) fail(target, id, new SignatureError(404, 'M_NOT_FOUND', 'Unknown device'));
      const signed = keys[master.publicKey];
      if (!signed) continue;
      try {
        if (p.mySignaturesOf[target]?.[signatureField(master.publicKey, usk.keyId)] !== undefined) continue;
        const sigs = isJsonObject(signed.signatures) ? signed.signatures[u] : undefined;
        const sig = isJsonObject(sigs) ? sigs[usk.keyId] : undefined;
        if (typeof sig !== 'string') throw invalidSignature();
        checkSignedCopy(u, signed, masterJson, usk.keyId, usk.bytes);
        writes.push({ cmd: 'HSET', key: e2eKeyData.signatures(u, target), args: [signatureField(master.publicKey, usk.keyId), sig] });
        signedUsers.push(target);
      } catch (e) {
        fail(target, master.publicKey, e);
      }
    }
  }

  if (ownStored) outputs.push({ type: 'device_list', user_id: u });
  if (signedUsers.length) outputs.push({ type: 'device_list', user_id: u, self_only: true, signed_users: signedUsers });
  return { state, reply: { failures }, writes, outputs };
}

/** The signed object must be the stored key (apart from signatures) and carry a valid signature by `keyId`. */
function checkSignedCopy(userId: string, signed: JsonObject, stored: JsonObject, keyId: string, publicKey: Uint8Array): void {
  const strip = (o: JsonObject) => {
    const { signatures: _s, unsigned: _u, ...rest } = o;
    return canonicalJson(rest);
  };
  if (strip(signed) !== strip(stored)) throw new SignatureError(400, 'M_INVALID_PARAM', 'Key does not match');
  let ok = false;
  try {
    ok = verifyJsonSignature(signed, userId, keyId, publicKey).ok;
  } catch {
    ok = false;
  }
  if (!ok) throw invalidSignature();
}

// ---- deleted devices ----

function forgetDevices(state: KeysState, p: Extract<KeysPrepared, { op: 'forget_devices' }>): D {
  const u = state.userId;
  const existing = new Set(p.existing);
  const gone = Object.keys(p.algorithms).filter((d) => !existing.has(d));
  if (gone.length === 0) return { state, reply: { forgotten: [] } };
  const devices = { ...state.devices };
  const writes: StoreWrite[] = [];
  for (const d of gone) {
    delete devices[d];
    writes.push(
      { cmd: 'HDEL', key: e2eKeyData.deviceKeys(u), args: [d] },
      { cmd: 'DEL', key: e2eKeyData.oneTimeKeys(u, d), args: [] },
      { cmd: 'DEL', key: e2eKeyData.oneTimeKeyCounts(u, d), args: [] },
      { cmd: 'DEL', key: e2eKeyData.fallbackKeys(u, d), args: [] },
    );
    for (const alg of p.algorithms[d]!) writes.push({ cmd: 'DEL', key: e2eKeyData.oneTimeKeyQueue(u, alg, d), args: [] });
    const prefix = `${d}\0`;
    const sigFields = p.ownSignatureFields.filter((f) => f.startsWith(prefix));
    if (sigFields.length) writes.push({ cmd: 'HDEL', key: e2eKeyData.signatures(u, u), args: sigFields });
  }
  return { state: { ...state, devices }, reply: { forgotten: gone }, writes, outputs: [{ type: 'device_list', user_id: u, device_ids: gone }] };
}

// ---- remote users (the cache of another server's user's devices) ----

/**
 * `m.device_list_update` from the user's server. Stream ids grow per user on their server, and
 * `prev_id` names the updates sent before this one: one above the newest we applied means we
 * missed an update, so the cached list is no longer the truth — it is marked unsynced and the
 * caller resyncs it from `/user/devices` (`remote_resync`). Without a synced list there is
 * nothing to patch: the update only tells our users that the list changed.
 */
function remoteUpdate(state: KeysState, body: Extract<KeysMessage, { op: 'remote_update' }>): D {
  const u = state.userId;
  const out: KeysOutput[] = [{ type: 'device_list', user_id: u }];
  const r = state.remote;
  if (r && body.streamId <= r.stream) return { state, reply: { resync: false } };
  const gap = !r?.synced || body.prevIds.some((p) => p > r.stream);
  if (gap) return { state: { ...state, remote: { stream: r?.stream ?? 0, synced: false } }, reply: { resync: true }, outputs: out, writes: [{ cmd: 'DEL', key: e2eKeyData.remoteSynced(u), args: [] }] };
  // An update without keys is of a device that has none yet (a new login, before its client
  // uploaded them): nothing to serve from /keys/query until the update that brings them.
  const writes: StoreWrite[] =
    body.deleted || !body.keys
      ? [{ cmd: 'HDEL', key: e2eKeyData.deviceKeys(u), args: [body.deviceId] }]
      : [{ cmd: 'HSET', key: e2eKeyData.deviceKeys(u), args: [body.deviceId, canonicalJson(withDisplayName(body.keys, body.displayName))] }];
  return { state: { ...state, remote: { stream: body.streamId, synced: true } }, reply: { resync: false }, writes, outputs: out };
}

function withDisplayName(keys: JsonObject, name: string | undefined): JsonObject {
  const { unsigned: _drop, ...rest } = keys;
  return name !== undefined ? { ...rest, unsigned: { device_display_name: name } } : rest;
}

/**
 * The full list from `/user/devices` (or a resync): replaces the cache. Resyncs run
 * concurrently (each update that finds a gap starts one) and their answers may arrive in any
 * order: a list older than what the cache already holds (a lower stream id) is stale and dropped,
 * or an answer fetched before a device uploaded its keys could overwrite the one fetched after.
 */
function remoteResync(state: KeysState, body: Extract<KeysMessage, { op: 'remote_resync' }>): D {
  const u = state.userId;
  if (state.remote && body.streamId < state.remote.stream) return { state, reply: { resync: false } };
  const pairs = Object.entries(body.devices).flatMap(([d, v]) => [d, canonicalJson(withDisplayName(v.keys, v.displayName))]);
  const writes: StoreWrite[] = [{ cmd: 'DEL', key: e2eKeyData.deviceKeys(u), args: [] }];
  if (pairs.length) writes.push({ cmd: 'HSET', key: e2eKeyData.deviceKeys(u), args: pairs });
  writes.push(...crossSigningWrites(u, body.cross), { cmd: 'SET', key: e2eKeyData.remoteSynced(u), args: ['1'] });
  return { state: { ...state, remote: { stream: Math.max(body.streamId, state.remote?.stream ?? 0), synced: true } }, reply: { resync: false }, writes, outputs: [{ type: 'device_list', user_id: u }] };
}

function crossSigningWrites(u: string, cross: Partial<Record<'master' | 'self_signing', JsonObject>>): StoreWrite[] {
  const pairs = Object.entries(cross).flatMap(([usage, key]) => (key ? [usage, canonicalJson(key)] : []));
  return pairs.length ? [{ cmd: 'HSET', key: e2eKeyData.crossSigningKeys(u), args: pairs }] : [];
}

/** `m.signing_key_update`: the remote user's new master / self-signing keys. */
function remoteSigning(state: KeysState, body: Extract<KeysMessage, { op: 'remote_signing' }>): D {
  const writes = crossSigningWrites(state.userId, body.cross);
  if (!writes.length) return { state, reply: { resync: false } };
  return { state, reply: { resync: false }, writes, outputs: [{ type: 'device_list', user_id: state.userId }] };
}

// ---- the shell ----

async function hgetall(ctx: ShellContext, name: string): Promise<Record<string, string>> {
  return ctx.redis.hgetall(ctx.keys.data(name));
}

async function prepareKeys(ctx: ShellContext, state: KeysState, msg: ActorMessage<KeysMessage>): Promise<KeysPrepared> {
  const u = state.userId;
  const body = msg.body;
  const r = ctx.redis;
  const k = (name: string) => ctx.keys.data(name);
  switch (body?.op) {
    case 'upload': {
      const d = body.deviceId;
      const otkIds = Object.keys(body.oneTimeKeys ?? {});
      const fbAlgs = [...new Set(Object.keys(body.fallbackKeys ?? {}).map((id) => id.split(':')[0]!))];
      const [exists, stored, existing, counts, fallbacks] = await Promise.all([
        r.hexists(k(userData.devices(u)), d),
        r.hget(k(e2eKeyData.deviceKeys(u)), d),
        otkIds.length ? r.hmget(k(e2eKeyData.oneTimeKeys(u, d)), ...otkIds) : Promise.resolve([] as (string | null)[]),
        hgetall(ctx, e2eKeyData.oneTimeKeyCounts(u, d)),
        fbAlgs.length ? r.hmget(k(e2eKeyData.fallbackKeys(u, d)), ...fbAlgs) : Promise.resolve([] as (string | null)[]),
      ]);
      return {
        op: 'upload',
        deviceExists: exists === 1,
        storedDeviceKeys: stored,
        existingOneTimeKeys: pick(otkIds, existing),
        counts: Object.fromEntries(Object.entries(counts).map(([a, n]) => [a, Number(n)])),
        fallbacks: pick(fbAlgs, fallbacks),
      };
    }
    case 'claim': {
      const devices: Extract<KeysPrepared, { op: 'claim' }>['devices'] = {};
      await Promise.all(
        Object.entries(body.devices).map(async ([d, alg]) => {
          const [[first], fallback] = await Promise.all([r.zrange(k(e2eKeyData.oneTimeKeyQueue(u, alg, d)), 0, 0), r.hget(k(e2eKeyData.fallbackKeys(u, d)), alg)]);
          const sep = first?.indexOf('\0') ?? -1;
          if (first !== undefined && sep > 0) devices[d] = { oneTime: [first.slice(0, sep), first.slice(sep + 1)] };
          else if (fallback !== null) devices[d] = { fallback };
        }),
      );
      return { op: 'claim', devices };
    }
    case 'upload_cross_signing': {
      const [deviceIds, deviceKeys] = await Promise.all([r.hkeys(k(userData.devices(u))), hgetall(ctx, e2eKeyData.deviceKeys(u))]);
      return { op: 'upload_cross_signing', deviceIds, deviceKeys };
    }
    case 'upload_signatures': {
      const targets = Object.keys(body.others);
      const [deviceKeys, ownSignatures, ...mine] = await Promise.all([
        hgetall(ctx, e2eKeyData.deviceKeys(u)),
        hgetall(ctx, e2eKeyData.signatures(u, u)),
        ...targets.map((t) => hgetall(ctx, e2eKeyData.signatures(u, t))),
      ]);
      return { op: 'upload_signatures', deviceKeys, ownSignatures, mySignaturesOf: Object.fromEntries(targets.map((t, i) => [t, mine[i]!])) };
    }
    case 'forget_devices': {
      const candidates = (body.deviceIds ?? Object.keys(state.devices)).filter((d) => state.devices[d]);
      const [existing, ownSignatures, ...algs] = await Promise.all([
        r.hkeys(k(userData.devices(u))),
        candidates.length ? r.hkeys(k(e2eKeyData.signatures(u, u))) : Promise.resolve([] as string[]),
        ...candidates.map((d) => r.hkeys(k(e2eKeyData.oneTimeKeyCounts(u, d)))),
      ]);
      return { op: 'forget_devices', existing, algorithms: Object.fromEntries(candidates.map((d, i) => [d, algs[i]!])), ownSignatureFields: ownSignatures };
    }
    case 'remote_update':
    case 'remote_resync':
    case 'remote_signing':
      return { op: body.op };
    default:
      throw new TypeError(`keys: unknown op ${JSON.stringify((body as { op?: unknown } | undefined)?.op)}`);
  }
}

function pick(names: string[], values: (string | null)[]): Record<string, string> {
  const out: Record<string, string> = {};
  names.forEach((n, i) => {
    if (values[i] !== null && values[i] !== undefined) out[n] = values[i]!;
  });
  return out;
}

export function deviceKeysActor(): ActorKind<KeysState, KeysMessage, KeysReply, KeysPrepared> {
  return { kind: 'keys', family: 'user', initialState: newKeysState, prepare: prepareKeys, decide: decideKeys };
}
