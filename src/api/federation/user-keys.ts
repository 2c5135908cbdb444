// POST /_matrix/federation/v1/user/keys/query, POST /_matrix/federation/v1/user/keys/claim,
// GET /_matrix/federation/v1/user/devices/{userId}
/**
 * Our users' end-to-end keys for other servers (server-server API, "End-to-End Encryption" and
 * "Device Management"): the same store the client `/keys/query` reads (src/api/client/keys.ts),
 * one-time keys claimed through the owner's keys actor (each handed out once), and a user's whole
 * device list with the stream id of their latest `m.device_list_update`
 * (src/federation/sender/user-edus.ts), so a server that resyncs after a gap knows where the
 * chain continues. Users of other servers are left out of the answers (400 for /user/devices).
 * Device display names are not given to other servers (Synapse's default,
 * `allow_device_name_lookup_over_federation: false`): they say things about the user's life.
 * The user-signing key is never given: it is the user's own business.
 */
import { MatrixError, errors } from '../../http/errors';
import type { Front } from '../../http/server';
import { isValidUserId, serverOf } from '../../protocol/identifiers';
import { isJsonObject, type JsonObject } from '../../protocol/json';
import { shardOf } from '../../store/shards';
import { userData, userFederationData } from '../../store/keys';
import type { ClaimReply } from '../../../actors/device-keys';
import { askKeys, readUserKeys } from '../client/keys';
import { federationRoute } from './auth';
import type { FederationContext } from './context';

/** Most users one query may name (Synapse has no limit; a bound keeps one request's work bounded). */
const MAX_USERS = 1000;

const withoutName = (keys: JsonObject): JsonObject => {
  const { unsigned: _drop, ...rest } = keys;
  return rest;
};

export function registerUserKeysRoutes(front: Front, ctx: FederationContext): void {
  const ours = (u: string) => isValidUserId(u) && serverOf(u) === ctx.config.serverName;

  federationRoute(front, ctx, 'POST', '/_matrix/federation/v1/user/keys/query', async (_req, caller) => {
    const q = isJsonObject(caller.body ?? null) ? (caller.body as JsonObject).device_keys : undefined;
    if (!isJsonObject(q)) throw errors.badJson('device_keys must be an object of user id → device ids');
    const entries = Object.entries(q);
    if (entries.length > MAX_USERS) throw new MatrixError(400, 'M_LIMIT_EXCEEDED', `At most ${MAX_USERS} users per query`);
    for (const [, devices] of entries) if (!Array.isArray(devices) || !devices.every((d) => typeof d === 'string')) throw errors.badJson('device_keys values must be lists of device ids');
    const wanted = entries.filter(([u]) => ours(u)) as [string, string[]][];
    const results = await Promise.all(wanted.map(([u, devices]) => readUserKeys(ctx.api, { userId: u, deviceId: '', accessToken: '' }, u, devices)));
    const deviceKeys: Record<string, JsonObject> = {};
    const masterKeys: Record<string, JsonObject> = {};
    const selfSigningKeys: Record<string, JsonObject> = {};
    wanted.forEach(([u], i) => {
      const r = results[i]!;
      deviceKeys[u] = Object.fromEntries(Object.entries(r.devices).map(([d, k]) => [d, withoutName(k)]));
      if (r.master) masterKeys[u] = r.master;
      if (r.self_signing) selfSigningKeys[u] = r.self_signing;
    });
    return { body: { device_keys: deviceKeys, master_keys: masterKeys, self_signing_keys: selfSigningKeys } };
  });

  federationRoute(front, ctx, 'POST', '/_matrix/federation/v1/user/keys/claim', async (_req, caller) => {
    const q = isJsonObject(caller.body ?? null) ? (caller.body as JsonObject).one_time_keys : undefined;
    if (!isJsonObject(q)) throw errors.badJson('one_time_keys must be an object of user id → device id → algorithm');
    const entries = Object.entries(q);
    if (entries.length > MAX_USERS) throw new MatrixError(400, 'M_LIMIT_EXCEEDED', `At most ${MAX_USERS} users per claim`);
    for (const [, devices] of entries) {
      if (!isJsonObject(devices) || !Object.values(devices).every((a) => typeof a === 'string')) throw errors.badJson('one_time_keys must map user ids to maps of device ids to algorithms');
    }
    const wanted = entries.filter(([u, d]) => ours(u) && Object.keys(d as JsonObject).length) as [string, Record<string, string>][];
    const replies = await Promise.all(wanted.map(([u, devices]) => askKeys<ClaimReply>(ctx.api, u, { op: 'claim', devices })));
    const oneTimeKeys: Record<string, Record<string, JsonObject>> = {};
    wanted.forEach(([u], i) => {
      for (const [deviceId, [keyId, json]] of Object.entries(replies[i]!)) (oneTimeKeys[u] ??= {})[deviceId] = { [keyId]: JSON.parse(json) as JsonObject };
    });
    return { body: { one_time_keys: oneTimeKeys } };
  });

  federationRoute(front, ctx, 'GET', '/_matrix/federation/v1/user/devices/:userId', async (req) => {
    const userId = req.params.userId ?? '';
    if (!isValidUserId(userId)) throw errors.invalidParam('userId is not a user id');
    if (!ours(userId)) throw new MatrixError(400, 'M_INVALID_PARAM', 'userId is not a user of this server');
    const key = (name: string) => ctx.api.keys.shard('user', shardOf(userId, ctx.api.shardCounts.user)).data(name);
    // The stream id is read first: a change after it is sent as an update with a later id.
    const stream = await ctx.api.redis.get(key(userFederationData.deviceStream(userId)));
    // Keys as /user/keys/query gives them: with the owner's signatures (a device signed by the
    // self-signing key, the master key signed by a device), which are stored apart.
    const [devices, keys] = await Promise.all([ctx.api.redis.hkeys(key(userData.devices(userId))), readUserKeys(ctx.api, { userId, deviceId: '', accessToken: '' }, userId, [])]);
    const body: JsonObject = {
      user_id: userId,
      stream_id: stream ? Number(stream) : 0,
      // Devices without keys are listed too (with empty keys): the list is of devices.
      devices: devices.sort().map((d) => ({ device_id: d, keys: keys.devices[d] ? withoutName(keys.devices[d]!) : {} })),
    };
    if (keys.master) body.master_key = keys.master;
    if (keys.self_signing) body.self_signing_key = keys.self_signing;
    return { body };
  });
}
