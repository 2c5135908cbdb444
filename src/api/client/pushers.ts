/**
 * Pushers (pusher.yaml): `GET /pushers` and `POST /pushers/set`.
 *
 * The user actor owns a user's pushers (actors/user.ts `set_pusher` / `delete_pusher`): they are
 * written to the `userData.pushers` hash that this front and the push sender read, and they go
 * with the device that set them (logout, device deletion) and with the account (deactivation).
 *
 * Validation follows the spec and, where it is loose, Synapse: `kind: null` deletes (needing only
 * `app_id` and `pushkey`); otherwise `app_display_name`, `device_display_name`, `lang` and `data`
 * are required too (400 `M_MISSING_PARAM` naming what is missing); an `http` pusher's `data.url`
 * must be an http(s) URL whose path is `/_matrix/push/v1/notify` (400 `M_MISSING_PARAM`
 * "Config Error", Synapse's answer). Kinds other than `http` are stored as Synapse stores them
 * (`email` included); only `http` pushers are delivered. Without `append: true`, the same app id
 * and pushkey are removed from every other user first (a phone that moved to another account
 * stops receiving the old account's notifications).
 */
import { createHash } from 'node:crypto';
import { MatrixError, errors } from '../../http/errors';
import type { Front } from '../../http/server';
import { isJsonObject, type JsonObject, type JsonValue } from '../../protocol/json';
import { shardOf } from '../../store/shards';
import { userData } from '../../store/keys';
import { pusherKey, type StoredPusher } from '../../../actors/user';
import { requireUser } from './auth';
import { askUser, clientRoute, jsonBody } from './accounts-common';
import type { ApiContext } from '../context';

/** The spec's bounds: `app_id` at most 64 characters, `pushkey` at most 512 bytes. */
const MAX_APP_ID_CHARS = 64;
const MAX_PUSHKEY_BYTES = 512;
/** Bounds of our own on what one pusher stores (Synapse has none; a pusher is read on every push). */
const MAX_FIELD_BYTES = 1024;
const MAX_DATA_BYTES = 8 * 1024;

/** The path every push gateway serves (push-gateway API). */
export const NOTIFY_PATH = '/_matrix/push/v1/notify';

/** What a `/pushers/set` body asks: a pusher to store, or one to delete. */
export type PusherRequest =
  | { op: 'delete'; appId: string; pushkey: string }
  | { op: 'set'; pusher: Omit<StoredPusher, 'ts' | 'device_id'>; append: boolean };

function requiredString(body: JsonObject, name: string): string {
  const v = body[name];
  if (typeof v !== 'string') throw errors.invalidParam(`${name} must be a string`);
  return v;
}

/** Pure: a `/pushers/set` body read and checked (MatrixError 400 for anything wrong). */
export function parsePusherRequest(body: JsonObject): PusherRequest {
  const missingBase = ['kind', 'app_id', 'pushkey'].filter((k) => !(k in body));
  if (missingBase.length) throw errors.missingParam(`Missing params: ${missingBase.join(', ')}`);
  const appId = requiredString(body, 'app_id');
  const pushkey = requiredString(body, 'pushkey');
  if (appId.length === 0 || [...appId].length > MAX_APP_ID_CHARS) throw errors.invalidParam(`app_id must be 1 to ${MAX_APP_ID_CHARS} characters`);
  if (pushkey.length === 0 || Buffer.byteLength(pushkey) > MAX_PUSHKEY_BYTES) throw errors.invalidParam(`pushkey must be 1 to ${MAX_PUSHKEY_BYTES} bytes`);
  if (body.kind === null) return { op: 'delete', appId, pushkey };

  const missing = ['app_display_name', 'device_display_name', 'lang', 'data'].filter((k) => !(k in body));
  if (missing.length) throw errors.missingParam(`Missing params: ${missing.join(', ')}`);
  const kind = requiredString(body, 'kind');
  if (kind.length === 0) throw errors.invalidParam('kind must not be empty');
  const strings: Record<string, string> = {};
  for (const name of ['app_display_name', 'device_display_name', 'lang'] as const) {
    strings[name] = requiredString(body, name);
    if (Buffer.byteLength(strings[name]!) > MAX_FIELD_BYTES) throw errors.invalidParam(`${name} is too long`);
  }
  const profileTag = body.profile_tag === undefined || body.profile_tag === null ? '' : requiredString(body, 'profile_tag');
  if (Buffer.byteLength(profileTag) > MAX_FIELD_BYTES) throw errors.invalidParam('profile_tag is too long');
  const append = body.append === undefined || body.append === null ? false : body.append;
  if (typeof append !== 'boolean') throw errors.invalidParam('append must be a boolean');
  const data = body.data as JsonValue;
  if (!isJsonObject(data)) throw errors.missingParam(`Config Error: 'data' must be an object`);
  if (Buffer.byteLength(JSON.stringify(data)) > MAX_DATA_BYTES) throw errors.invalidParam('data is too large');
  if (data.format !== undefined && typeof data.format !== 'string') throw errors.invalidParam('data.format must be a string');
  if (kind === 'http') checkGatewayUrl(data.url);
  // Synapse fails (500) on a pushkey that is not an address; a plain check answers 400 instead.
  if (kind === 'email' && !/^[^@\s]+@[^@\s]+$/.test(pushkey)) throw errors.invalidParam('An email pusher’s pushkey must be an email address');
  return {
    op: 'set',
    append,
    pusher: {
      app_id: appId,
      pushkey,
      kind,
      app_display_name: strings.app_display_name!,
      device_display_name: strings.device_display_name!,
      lang: strings.lang!,
      profile_tag: profileTag,
      data: data as Record<string, unknown>,
    },
  };
}

/** An http pusher's gateway: an http(s) URL with the push gateway path (Synapse's "Config Error"s). */
function checkGatewayUrl(url: JsonValue | undefined): void {
  if (url === undefined) throw errors.missingParam(`Config Error: 'url' required in data for HTTP pusher`);
  if (typeof url !== 'string') throw errors.missingParam(`Config Error: 'url' must be a string`);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw errors.missingParam(`Config Error: 'url' is not a URL`);
  }
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') throw errors.missingParam(`Config Error: 'url' must be an http or https URL`);
  if (parsed.pathname !== NOTIFY_PATH) throw errors.missingParam(`Config Error: 'url' must have a path of '${NOTIFY_PATH}'`);
}

/** The `/pushers` entry of a stored pusher (Synapse's shape: no device id, no timestamp). */
function listed(p: StoredPusher): JsonObject {
  return {
    app_display_name: p.app_display_name,
    app_id: p.app_id,
    data: p.data as JsonObject,
    device_display_name: p.device_display_name,
    kind: p.kind,
    lang: p.lang,
    profile_tag: p.profile_tag,
    pushkey: p.pushkey,
  };
}

/** Every pusher of a user as stored (for `/pushers` and the push sender). */
export async function readPushers(ctx: ApiContext, userId: string): Promise<StoredPusher[]> {
  const raw = await ctx.redis.hgetall(ctx.keys.shard('user', shardOf(userId, ctx.shardCounts.user)).data(userData.pushers(userId)));
  const out: StoredPusher[] = [];
  for (const text of Object.values(raw)) {
    try {
      out.push(JSON.parse(text) as StoredPusher);
    } catch {
      // A record that does not parse is skipped rather than failing the user's whole list.
    }
  }
  return out.sort((a, b) => a.ts - b.ts || (a.app_id < b.app_id ? -1 : 1));
}

/** The index of who has a pusher with this app id and pushkey (see `userData.pushkeyUsers`). */
function pushkeyIndex(ctx: ApiContext, appId: string, pushkey: string): string {
  const hash = createHash('sha256').update(pusherKey(appId, pushkey)).digest('base64url');
  return ctx.keys.shard('user', shardOf(hash, ctx.shardCounts.user)).data(userData.pushkeyUsers(hash));
}

export function registerPusherRoutes(front: Front, ctx: ApiContext): void {
  clientRoute(front, 'GET', '/pushers', async (req) => {
    const me = await requireUser(ctx, req);
    return { body: { pushers: (await readPushers(ctx, me.userId)).map(listed) } };
  });

  clientRoute(front, 'POST', '/pushers/set', async (req) => {
    const me = await requireUser(ctx, req);
    const asked = parsePusherRequest(jsonBody(req));
    if (asked.op === 'delete') {
      await askUser(ctx, me.userId, { op: 'delete_pusher', appId: asked.appId, pushkey: asked.pushkey });
      await ctx.redis.srem(pushkeyIndex(ctx, asked.appId, asked.pushkey), me.userId);
      return { body: {} };
    }
    const { app_id: appId, pushkey } = asked.pusher;
    const index = pushkeyIndex(ctx, appId, pushkey);
    if (!asked.append) {
      // Removed from the others first, so the pushkey never reaches two accounts at once.
      const others = (await ctx.redis.smembers(index)).filter((u) => u !== me.userId);
      for (const other of others) {
        await askUser(ctx, other, { op: 'delete_pusher', appId, pushkey }).catch((e: unknown) => {
          // A user who no longer exists has no pusher to remove; anything else fails the request.
          if (!(e instanceof MatrixError) || e.status !== 404) throw e;
        });
        await ctx.redis.srem(index, other);
      }
    }
    // Indexed before it is stored: an index entry without a pusher is harmless (removing it is a
    // no-op), a pusher missing from the index could not be taken from this user by another.
    await ctx.redis.sadd(index, me.userId);
    await askUser(ctx, me.userId, { op: 'set_pusher', pusher: { ...asked.pusher, device_id: me.deviceId } });
    return { body: {} };
  });
}
