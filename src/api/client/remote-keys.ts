/**
 * Keys of users on other servers, for the client API's `/keys/query` and `/keys/claim`
 * (issue 16.2). One request per server, all at once, each bounded by REMOTE_KEYS_TIMEOUT_MS; a
 * server that fails or times out is named in `failures` and the others' answers stand.
 *
 * `/keys/query` answers from the cache of a remote user's devices when it is the whole list
 * (e2eKeyData.remoteSynced: kept by the user's keys actor from `m.device_list_update` and
 * `/user/devices` resyncs, src/federation/inbound/edus.ts) and all devices are asked for;
 * otherwise it asks the user's server (`/user/keys/query`), and for a user one of ours shares a
 * room with it starts a resync so the next query is local.
 */
import { isJsonObject, type JsonObject } from '../../protocol/json';
import { serverOf } from '../../protocol/identifiers';
import { shardOf } from '../../store/shards';
import { e2eKeyData } from '../../store/keys';
import type { FederationClient } from '../../federation/client';
import { FederationRemoteError } from '../../federation/errors';
import { resyncDevices, tracked } from '../../federation/inbound/edus';
import type { ApiContext } from '../context';

export const REMOTE_KEYS_TIMEOUT_MS = 10_000;

export interface KeysQueryResult {
  device_keys: Record<string, Record<string, JsonObject>>;
  master_keys: Record<string, JsonObject>;
  self_signing_keys: Record<string, JsonObject>;
  failures: Record<string, JsonObject>;
}

function failureOf(e: unknown): JsonObject {
  if (e instanceof FederationRemoteError) return { status: e.status, message: e.message };
  return { status: 503, message: e instanceof Error ? e.message : String(e) };
}

const data = (ctx: ApiContext, userId: string, name: string) => ctx.keys.shard('user', shardOf(userId, ctx.shardCounts.user)).data(name);

/** A remote user's cached keys, when the cache is the whole list (null otherwise). */
async function cachedKeys(ctx: ApiContext, userId: string): Promise<{ devices: Record<string, JsonObject>; master?: JsonObject; self_signing?: JsonObject } | null> {
  const [synced, dk, xs] = await Promise.all([
    ctx.redis.get(data(ctx, userId, e2eKeyData.remoteSynced(userId))),
    ctx.redis.hgetall(data(ctx, userId, e2eKeyData.deviceKeys(userId))),
    ctx.redis.hgetall(data(ctx, userId, e2eKeyData.crossSigningKeys(userId))),
  ]);
  if (!synced) return null;
  const devices: Record<string, JsonObject> = {};
  for (const [d, json] of Object.entries(dk)) devices[d] = JSON.parse(json) as JsonObject;
  const out: { devices: Record<string, JsonObject>; master?: JsonObject; self_signing?: JsonObject } = { devices };
  if (xs.master) out.master = JSON.parse(xs.master) as JsonObject;
  if (xs.self_signing) out.self_signing = JSON.parse(xs.self_signing) as JsonObject;
  return out;
}

export async function queryRemoteKeys(ctx: ApiContext, query: Map<string, string[]>): Promise<KeysQueryResult> {
  const out: KeysQueryResult = { device_keys: {}, master_keys: {}, self_signing_keys: {}, failures: {} };
  const client = ctx.federation?.client;
  const byServer = new Map<string, Record<string, string[]>>();
  for (const [userId, devices] of query) {
    if (devices.length === 0) {
      const cached = await cachedKeys(ctx, userId);
      if (cached) {
        out.device_keys[userId] = cached.devices;
        if (cached.master) out.master_keys[userId] = cached.master;
        if (cached.self_signing) out.self_signing_keys[userId] = cached.self_signing;
        continue;
      }
    }
    const server = serverOf(userId)!;
    if (!client) {
      out.failures[server] = { status: 503, message: 'Federation is off on this server' };
      continue;
    }
    let q = byServer.get(server);
    if (!q) byServer.set(server, (q = {}));
    q[userId] = devices;
  }
  await Promise.all(
    [...byServer].map(async ([server, q]) => {
      try {
        const res = await client!.post(server, '/_matrix/federation/v1/user/keys/query', { device_keys: q }, { timeoutMs: REMOTE_KEYS_TIMEOUT_MS });
        mergeAnswer(out, res, server, Object.keys(q));
      } catch (e) {
        out.failures[server] = failureOf(e);
        ctx.log.info({ err: e, destination: server }, 'remote /user/keys/query failed');
        return;
      }
      // Users we track get their list cached, so the next query is answered here.
      for (const userId of Object.keys(q)) {
        void tracked(ctx, userId)
          .then((t) => (t ? resyncDevices(ctx, client!, userId) : undefined))
          .catch((e: unknown) => ctx.log.info({ err: e, user_id: userId }, 'device list resync failed'));
      }
    }),
  );
  return out;
}

/** Take from a server's answer only what concerns the users we asked it about (its own users). */
function mergeAnswer(out: KeysQueryResult, res: JsonObject, server: string, asked: string[]): void {
  const mine = new Set(asked.filter((u) => serverOf(u) === server));
  const dk = isJsonObject(res.device_keys) ? res.device_keys : {};
  for (const [userId, devices] of Object.entries(dk)) {
    if (!mine.has(userId) || !isJsonObject(devices)) continue;
    const kept: Record<string, JsonObject> = {};
    for (const [d, keys] of Object.entries(devices)) if (isJsonObject(keys) && keys.user_id === userId && keys.device_id === d) kept[d] = keys;
    out.device_keys[userId] = kept;
  }
  for (const [field, into] of [
    ['master_keys', out.master_keys],
    ['self_signing_keys', out.self_signing_keys],
  ] as const) {
    const m = isJsonObject(res[field]) ? (res[field] as JsonObject) : {};
    for (const [userId, key] of Object.entries(m)) if (mine.has(userId) && isJsonObject(key) && key.user_id === userId) into[userId] = key;
  }
}

export async function claimRemoteKeys(ctx: ApiContext, query: Map<string, Record<string, string>>): Promise<{ one_time_keys: Record<string, JsonObject>; failures: Record<string, JsonObject> }> {
  const out = { one_time_keys: {} as Record<string, JsonObject>, failures: {} as Record<string, JsonObject> };
  const client = ctx.federation?.client;
  const byServer = new Map<string, Record<string, Record<string, string>>>();
  for (const [userId, devices] of query) {
    const server = serverOf(userId)!;
    let q = byServer.get(server);
    if (!q) byServer.set(server, (q = {}));
    q[userId] = devices;
  }
  await Promise.all(
    [...byServer].map(async ([server, q]) => {
      if (!client) {
        out.failures[server] = { status: 503, message: 'Federation is off on this server' };
        return;
      }
      try {
        const res = await (client as FederationClient).post(server, '/_matrix/federation/v1/user/keys/claim', { one_time_keys: q }, { timeoutMs: REMOTE_KEYS_TIMEOUT_MS });
        const otk = isJsonObject(res.one_time_keys) ? res.one_time_keys : {};
        for (const [userId, devices] of Object.entries(otk)) if (userId in q && isJsonObject(devices)) out.one_time_keys[userId] = devices;
      } catch (e) {
        out.failures[server] = failureOf(e);
      }
    }),
  );
  return out;
}
