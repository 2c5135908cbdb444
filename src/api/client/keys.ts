/**
 * End-to-end encryption keys (keys.yaml, cross_signing.yaml): device keys, one-time and fallback
 * keys, cross-signing keys and signatures. Writes go to the user's keys actor
 * (actors/device-keys.ts); /keys/query reads what the actors stored, straight from Redis, and
 * merges each key with the signatures the requester may see (the owner's own, and the
 * requester's of that user's master key), as Synapse does.
 *
 * Keys of users on other servers are asked of their servers, all at once, with a timeout, or
 * read from the cache of their devices (src/api/client/remote-keys.ts); a server that cannot be
 * reached is reported in `failures`.
 */
import { MatrixError, errors } from '../../http/errors';
import type { Front, Request } from '../../http/server';
import { isValidUserId, serverOf } from '../../protocol/identifiers';
import { canonicalJson, isJsonObject, type JsonObject } from '../../protocol/json';
import { ActorReplyError, ActorTimeoutError } from '../../runtime/actor-client';
import { e2eKeyData, userData } from '../../store/keys';
import { deviceListChanges } from '../../sync/device-lists';
import { oneTimeKeyCounts } from '../../sync/e2e-counts';
import { parseSyncToken } from '../../sync/token';
import { crossSigningPublicKey, RECHECK, type ClaimReply, type CrossSigningUsage, type KeysMessage, type SignaturesReply, type UploadReply } from '../../../actors/device-keys';
import type { DeviceJson } from '../../../actors/user';
import { requireUser, type Requester } from './auth';
import { clientRoute, jsonBody } from './accounts-common';
import { userKey } from '../../store/shard-keys';
import type { ApiContext } from '../context';
import { claimRemoteKeys, queryRemoteKeys } from './remote-keys';
import { checkPasswordStage, requireUia } from './uia';

export function registerKeyRoutes(front: Front, ctx: ApiContext): void {
  clientRoute(front, 'POST', '/keys/upload', (req) => uploadKeys(ctx, req));
  clientRoute(front, 'POST', '/keys/query', (req) => queryKeys(ctx, req));
  clientRoute(front, 'POST', '/keys/claim', (req) => claimKeys(ctx, req));
  clientRoute(front, 'POST', '/keys/device_signing/upload', (req) => uploadCrossSigningKeys(ctx, req), ['v3']);
  clientRoute(front, 'POST', '/keys/signatures/upload', (req) => uploadSignatures(ctx, req), ['v3']);
  clientRoute(front, 'GET', '/keys/changes', (req) => keyChanges(ctx, req));
}

/** Send a command to a user's keys actor; its rejections become Matrix errors. */
export async function askKeys<R>(ctx: ApiContext, userId: string, body: KeysMessage): Promise<R> {
  try {
    return await ctx.actors.ask<R>('user', 'keys', userId, body);
  } catch (e) {
    if (e instanceof ActorReplyError) throw new MatrixError(e.status, e.errcode, e.message, e.errcode === 'M_UNKNOWN_TOKEN' ? { soft_logout: false } : {});
    if (e instanceof ActorTimeoutError) throw new MatrixError(504, 'M_UNKNOWN', 'The key service did not answer in time; try again');
    throw e;
  } finally {
    // Read-your-writes on this front: /sync's cached key counts for the user are dropped now,
    // not when the notification of the change arrives (src/sync/e2e-counts.ts).
    ctx.keysChanged?.forEach((f) => f(userId));
  }
}

/** After devices were deleted (devices API, logout, password change, deactivation): drop their keys. */
export async function forgetDeviceKeys(ctx: ApiContext, userId: string, deviceIds?: string[]): Promise<void> {
  await askKeys(ctx, userId, deviceIds ? { op: 'forget_devices', deviceIds } : { op: 'forget_devices' });
}

/** A JSON object field, absent (undefined) or 400 M_BAD_JSON. `null` counts as absent where the spec allows omitting it. */
function objectField(body: JsonObject, name: string, nullOk: boolean): JsonObject | undefined {
  const v = body[name];
  if (v === undefined || (v === null && nullOk)) return undefined;
  if (!isJsonObject(v)) throw errors.badJson(`${name} must be an object`);
  return v;
}

/** The server part of a user id that is not ours (null for a local user). */
function remoteServer(ctx: ApiContext, userId: string): string | null {
  const server = serverOf(userId);
  return server === ctx.config.serverName ? null : server;
}


// ---- POST /keys/upload ----

async function uploadKeys(ctx: ApiContext, req: Request) {
  const me = await requireUser(ctx, req);
  const body = jsonBody(req);
  // Explicit null device keys are refused (Synapse), the key maps may be null.
  const deviceKeys = objectField(body, 'device_keys', false);
  const oneTimeKeys = objectField(body, 'one_time_keys', true);
  const fallbackKeys = objectField(body, 'fallback_keys', true);
  if (deviceKeys) {
    if (deviceKeys.user_id !== me.userId) throw errors.badJson('Provided user_id in device_keys does not match that of the authenticated user');
    if (deviceKeys.device_id !== me.deviceId) throw errors.badJson('Provided device_id in device_keys does not match that of the authenticated device');
  }
  const nothing = !deviceKeys && !Object.keys(oneTimeKeys ?? {}).length && !Object.keys(fallbackKeys ?? {}).length;
  if (nothing) return { body: { one_time_key_counts: await oneTimeKeyCounts(ctx, me.userId, me.deviceId) } };
  const reply = await askKeys<UploadReply>(ctx, me.userId, {
    op: 'upload',
    deviceId: me.deviceId,
    ...(deviceKeys ? { deviceKeys } : {}),
    ...(oneTimeKeys ? { oneTimeKeys } : {}),
    ...(fallbackKeys ? { fallbackKeys } : {}),
  });
  return { body: reply };
}

// ---- POST /keys/query ----

interface UserKeys {
  devices: Record<string, JsonObject>;
  master?: JsonObject;
  self_signing?: JsonObject;
  user_signing?: JsonObject;
}

async function queryKeys(ctx: ApiContext, req: Request) {
  const me = await requireUser(ctx, req);
  const body = jsonBody(req);
  const query = body.device_keys;
  if (!isJsonObject(query)) throw errors.badJson('device_keys must be an object');
  for (const devices of Object.values(query)) {
    if (!Array.isArray(devices) || !devices.every((d) => typeof d === 'string')) throw errors.badJson('device_keys values must be lists of device ids');
  }
  const deviceKeys: Record<string, Record<string, JsonObject>> = {};
  const masterKeys: Record<string, JsonObject> = {};
  const selfSigningKeys: Record<string, JsonObject> = {};
  const userSigningKeys: Record<string, JsonObject> = {};
  const local: [string, string[]][] = [];
  const remoteQuery = new Map<string, string[]>();
  for (const [userId, devices] of Object.entries(query)) {
    // Invalid user ids are left out, as if the user had no keys (Synapse).
    if (!isValidUserId(userId)) continue;
    if (remoteServer(ctx, userId)) remoteQuery.set(userId, devices as string[]);
    else local.push([userId, devices as string[]]);
  }
  const [results, remote] = await Promise.all([
    Promise.all(local.map(([userId, devices]) => readUserKeys(ctx, me, userId, devices))),
    remoteQuery.size ? queryRemoteKeys(ctx, remoteQuery) : Promise.resolve(null),
  ]);
  const failures: Record<string, unknown> = { ...(remote?.failures ?? {}) };
  if (remote) {
    Object.assign(deviceKeys, remote.device_keys);
    Object.assign(masterKeys, remote.master_keys);
    Object.assign(selfSigningKeys, remote.self_signing_keys);
    // The requester's own signatures of remote users' master keys (their user-signing key's) are
    // kept here, not on the users' servers: add them as for local users.
    await Promise.all(
      Object.entries(remote.master_keys).map(async ([userId, master]) => {
        masterKeys[userId] = await withRequesterSignatures(ctx, me.userId, userId, master);
      }),
    );
  }
  local.forEach(([userId], i) => {
    const r = results[i]!;
    deviceKeys[userId] = r.devices;
    if (r.master) masterKeys[userId] = r.master;
    if (r.self_signing) selfSigningKeys[userId] = r.self_signing;
    // Users see only their own user-signing key.
    if (r.user_signing && userId === me.userId) userSigningKeys[userId] = r.user_signing;
  });
  return { body: { device_keys: deviceKeys, failures, master_keys: masterKeys, self_signing_keys: selfSigningKeys, user_signing_keys: userSigningKeys } };
}

/**
 * One local user's keys as `requester` sees them: the identity keys of devices that exist (all,
 * or those asked for) with the device's display name, the cross-signing keys, and on each key
 * the signatures uploaded by its owner and by the requester.
 */
export async function readUserKeys(ctx: ApiContext, requester: Requester, userId: string, deviceIds: string[]): Promise<UserKeys> {
  const key = (name: string) => userKey(ctx, userId, name);
  const [devices, stored, cross, ownSigs, requesterSigs] = await Promise.all([
    ctx.redis.hgetall(key(userData.devices(userId))),
    ctx.redis.hgetall(key(e2eKeyData.deviceKeys(userId))),
    ctx.redis.hgetall(key(e2eKeyData.crossSigningKeys(userId))),
    ctx.redis.hgetall(key(e2eKeyData.signatures(userId, userId))),
    requester.userId === userId ? Promise.resolve({}) : ctx.redis.hgetall(userKey(ctx, requester.userId, e2eKeyData.signatures(requester.userId, userId))),
  ]);
  // target key → signer → signing key id → signature
  const sigs = new Map<string, Record<string, Record<string, string>>>();
  const addSigs = (signer: string, fields: Record<string, string>) => {
    for (const [field, sig] of Object.entries(fields)) {
      const sep = field.indexOf('\0');
      if (sep < 0) continue;
      const target = field.slice(0, sep);
      let bySigner = sigs.get(target);
      if (!bySigner) sigs.set(target, (bySigner = {}));
      (bySigner[signer] ??= {})[field.slice(sep + 1)] = sig;
    }
  };
  addSigs(userId, ownSigs);
  addSigs(requester.userId, requesterSigs);
  const withSigs = (obj: JsonObject, target: string): JsonObject => {
    const extra = sigs.get(target);
    if (!extra) return obj;
    const merged: Record<string, Record<string, unknown>> = { ...((isJsonObject(obj.signatures) ? obj.signatures : {}) as Record<string, Record<string, unknown>>) };
    for (const [signer, byKey] of Object.entries(extra)) merged[signer] = { ...(merged[signer] ?? {}), ...byKey };
    return { ...obj, signatures: merged as JsonObject };
  };

  const out: UserKeys = { devices: {} };
  const wanted = deviceIds.length ? deviceIds : Object.keys(stored);
  for (const deviceId of wanted) {
    const json = stored[deviceId];
    const record = devices[deviceId];
    // Keys of a device that no longer exists are never served (deletion drops them soon after).
    if (json === undefined || record === undefined) continue;
    const name = (JSON.parse(record) as DeviceJson).display_name;
    out.devices[deviceId] = { ...withSigs(JSON.parse(json) as JsonObject, deviceId), unsigned: name !== undefined ? { device_display_name: name } : {} };
  }
  for (const usage of ['master', 'self_signing', 'user_signing'] as const) {
    const json = cross[usage];
    if (json === undefined) continue;
    const obj = JSON.parse(json) as JsonObject;
    const pub = crossSigningPublicKey(obj);
    out[usage] = pub ? withSigs(obj, pub.publicKey) : obj;
  }
  return out;
}

/** A remote user's master key with the signatures `requester` made of it (stored on the requester's shard). */
async function withRequesterSignatures(ctx: ApiContext, requester: string, userId: string, master: JsonObject): Promise<JsonObject> {
  const pub = crossSigningPublicKey(master);
  if (!pub) return master;
  const fields = await ctx.redis.hgetall(userKey(ctx, requester, e2eKeyData.signatures(requester, userId)));
  const mine: Record<string, string> = {};
  const prefix = `${pub.publicKey}\0`;
  for (const [field, sig] of Object.entries(fields)) if (field.startsWith(prefix)) mine[field.slice(prefix.length)] = sig;
  if (!Object.keys(mine).length) return master;
  const signatures = (isJsonObject(master.signatures) ? master.signatures : {}) as Record<string, Record<string, unknown>>;
  return { ...master, signatures: { ...signatures, [requester]: { ...(signatures[requester] ?? {}), ...mine } } as JsonObject };
}

// ---- POST /keys/claim ----

async function claimKeys(ctx: ApiContext, req: Request) {
  await requireUser(ctx, req);
  const body = jsonBody(req);
  const query = body.one_time_keys;
  if (!isJsonObject(query)) throw errors.badJson('one_time_keys must be an object');
  const local: [string, Record<string, string>][] = [];
  const remoteQuery = new Map<string, Record<string, string>>();
  for (const [userId, devices] of Object.entries(query)) {
    if (!isJsonObject(devices) || !Object.values(devices).every((a) => typeof a === 'string')) throw errors.badJson('one_time_keys must map user ids to maps of device ids to algorithms');
    if (!isValidUserId(userId) || !Object.keys(devices).length) continue;
    if (remoteServer(ctx, userId)) remoteQuery.set(userId, devices as Record<string, string>);
    else local.push([userId, devices as Record<string, string>]);
  }
  const [replies, remote] = await Promise.all([
    Promise.all(local.map(([userId, devices]) => askKeys<ClaimReply>(ctx, userId, { op: 'claim', devices }))),
    remoteQuery.size ? claimRemoteKeys(ctx, remoteQuery) : Promise.resolve(null),
  ]);
  const failures: Record<string, unknown> = { ...(remote?.failures ?? {}) };
  const oneTimeKeys: Record<string, Record<string, Record<string, unknown>>> = { ...((remote?.one_time_keys ?? {}) as Record<string, Record<string, Record<string, unknown>>>) };
  local.forEach(([userId], i) => {
    const claimed = replies[i]!;
    for (const [deviceId, [keyId, json]] of Object.entries(claimed)) (oneTimeKeys[userId] ??= {})[deviceId] = { [keyId]: JSON.parse(json) };
  });
  return { body: { one_time_keys: oneTimeKeys, failures } };
}

// ---- POST /keys/device_signing/upload ----

const BODY_FIELDS: [string, CrossSigningUsage][] = [
  ['master_key', 'master'],
  ['self_signing_key', 'self_signing'],
  ['user_signing_key', 'user_signing'],
];

async function uploadCrossSigningKeys(ctx: ApiContext, req: Request) {
  const me = await requireUser(ctx, req);
  const body = jsonBody(req);
  const keys: Partial<Record<CrossSigningUsage, JsonObject>> = {};
  for (const [field, usage] of BODY_FIELDS) {
    const v = objectField(body, field, true);
    if (v) keys[usage] = v;
  }
  for (let attempt = 0; ; attempt++) {
    const stored = await ctx.redis.hgetall(userKey(ctx, me.userId, e2eKeyData.crossSigningKeys(me.userId)));
    // Sending exactly the stored keys again is a retry: answer it without asking for auth.
    const different = Object.entries(keys).some(([usage, key]) => stored[usage] !== canonicalJson(key));
    if (!different) return { body: {} };
    const master = stored.master ?? null;
    if (master === null && attempt < 3) {
      // First-time setup needs no user-interactive auth (spec v1.11; Synapse, MSC3967). The guard
      // makes the actor refuse if another request set a master key meanwhile: decide again then.
      try {
        await askKeys(ctx, me.userId, { op: 'upload_cross_signing', keys, guard: { master } });
        return { body: {} };
      } catch (e) {
        if (e instanceof MatrixError && e.errcode === RECHECK) continue;
        throw e;
      }
    }
    await requireUia(ctx, body, {
      purpose: 'device_signing',
      userId: me.userId,
      flows: [['m.login.password']],
      checkStage: (_s, auth) => checkPasswordStage(ctx, me.userId, auth),
    });
    await askKeys(ctx, me.userId, { op: 'upload_cross_signing', keys });
    return { body: {} };
  }
}

// ---- POST /keys/signatures/upload ----

async function uploadSignatures(ctx: ApiContext, req: Request) {
  const me = await requireUser(ctx, req);
  const body = jsonBody(req);
  const own: Record<string, JsonObject> = {};
  const others: Record<string, Record<string, JsonObject>> = {};
  for (const [userId, keys] of Object.entries(body)) {
    if (!isJsonObject(keys) || !Object.values(keys).every(isJsonObject)) throw errors.invalidParam('The body must map user ids to maps of key ids to signed key objects');
    if (userId === me.userId) Object.assign(own, keys);
    else others[userId] = keys as Record<string, JsonObject>;
  }
  // Other users' master keys live on their shards: read them here and hand them to the actor.
  // A remote user's comes from the cache of their keys or, when it is not the whole truth, from
  // their server. The signature stays here: a user-signing key's signatures are only ever shown
  // to the user who made them (Synapse does the same), so nothing is sent over federation.
  const otherMasters: Record<string, string | null> = {};
  await Promise.all(
    Object.keys(others).map(async (userId) => {
      if (!isValidUserId(userId)) otherMasters[userId] = null;
      else if (!remoteServer(ctx, userId)) otherMasters[userId] = await ctx.redis.hget(userKey(ctx, userId, e2eKeyData.crossSigningKeys(userId)), 'master');
      else {
        const remote = await queryRemoteKeys(ctx, new Map([[userId, []]]));
        const master = remote.master_keys[userId];
        otherMasters[userId] = master ? canonicalJson(master) : null;
      }
    }),
  );
  if (!Object.keys(own).length && !Object.keys(others).length) return { body: { failures: {} } };
  const reply = await askKeys<SignaturesReply>(ctx, me.userId, { op: 'upload_signatures', own, others, otherMasters });
  return { body: reply };
}

// ---- GET /keys/changes ----

/**
 * Users sharing a room whose device lists changed between two sync tokens, and users who stopped
 * sharing any room. Both tokens are time cuts; without `to` (the spec requires it, Synapse ignores
 * it) the window runs up to now.
 */
async function keyChanges(ctx: ApiContext, req: Request) {
  const me = await requireUser(ctx, req);
  const from = req.query['from'];
  if (from === undefined) throw errors.missingParam('from is required');
  const fromCut = parseSyncToken(from).cut;
  const to = req.query['to'];
  let toCut: number;
  if (to !== undefined) toCut = parseSyncToken(to).cut;
  else {
    const [s, us] = await ctx.redis.time();
    toCut = Number(s) * 1_000_000 + Number(us);
  }
  if (toCut <= fromCut) return { body: { changed: [], left: [] } };
  return { body: await deviceListChanges(ctx, me.userId, fromCut, toCut) };
}
