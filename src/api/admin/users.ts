/**
 * Synapse's admin API for users (`/_synapse/admin/v1|v2/...`), the part admin tools (synadm,
 * Synapse-Admin) call most, with Synapse 1.163's paths, fields and errors: one user's details,
 * create/modify, password reset, admin flag, deactivation, joined rooms and devices. Admins only
 * (common.ts). Every change goes through the user's actor, as the client API's do.
 *
 * Fields Axon has no concept of yet answer as a server without them would: no third-party ids,
 * external ids, guests, app services, consent tracking or shadow bans.
 */
import { MatrixError, errors } from '../../http/errors';
import type { Front, Request } from '../../http/server';
import type { JsonObject, JsonValue } from '../../protocol/json';
import { userKey } from '../../store/shard-keys';
import { userData } from '../../store/keys';
import type { AccountRecord, DeviceJson } from '../../../actors/user';
import { MembershipIndex } from '../../readers/membership-index';
import { askUser, jsonBody, readAccount } from '../client/accounts-common';
import { deactivateAccount, setPassword } from '../client/account';
import { hashPassword } from '../client/passwords';
import type { ApiContext } from '../context';
import { localTarget, requireAdmin } from './common';

const MAX_PASSWORD_LENGTH = 512;
const V1 = '/_synapse/admin/v1';
const V2 = '/_synapse/admin/v2';

/** A user's details as `GET /v2/users/{userId}` answers them (Synapse's fields, in its order). */
export async function userDetails(ctx: ApiContext, userId: string, account: AccountRecord): Promise<JsonObject> {
  const [profile, devices] = await Promise.all([
    ctx.redis.hgetall(userKey(ctx, userId, userData.profile(userId))),
    ctx.redis.hvals(userKey(ctx, userId, userData.devices(userId))),
  ]);
  let lastSeen: number | null = null;
  for (const json of devices) {
    const ts = parseDevice(json)?.last_seen_ts;
    if (ts !== undefined && (lastSeen === null || ts > lastSeen)) lastSeen = ts;
  }
  return {
    name: userId,
    admin: account.a === 1,
    deactivated: account.x === 1,
    locked: account.l === 1,
    shadow_banned: false,
    // Synapse keeps and answers seconds here (its `users.creation_ts`).
    creation_ts: Math.floor(account.c / 1000),
    appservice_id: null,
    consent_server_notice_sent: null,
    consent_version: null,
    consent_ts: null,
    user_type: null,
    is_guest: false,
    suspended: account.s === 1,
    displayname: profile.displayname ?? null,
    avatar_url: profile.avatar_url ?? null,
    threepids: [],
    external_ids: [],
    erased: account.e === 1,
    last_seen_ts: lastSeen,
  };
}

function parseDevice(json: string): DeviceJson | null {
  try {
    return JSON.parse(json) as DeviceJson;
  } catch {
    return null;
  }
}

async function requireAccount(ctx: ApiContext, userId: string, message = 'User not found'): Promise<AccountRecord> {
  const account = await readAccount(ctx, userId);
  if (!account) throw errors.notFound(message);
  return account;
}

/** An optional boolean body field, 400 (Synapse's message) when present and not a boolean. */
function boolField(body: JsonObject, name: string, fallback: boolean): boolean {
  const v = body[name];
  if (v === undefined) return fallback;
  if (typeof v !== 'boolean') throw errors.invalidParam(`'${name}' parameter is not of type boolean`);
  return v;
}

function passwordField(body: JsonObject, name: string): string | undefined {
  const v = body[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string' || v === '' || v.length > MAX_PASSWORD_LENGTH) throw errors.invalidParam('Invalid password');
  return v;
}

/** A profile field from an admin's body: a string, or null/"" to clear it. */
function profileValue(body: JsonObject, name: 'displayname' | 'avatar_url'): string | null {
  const v: JsonValue | undefined = body[name];
  if (v === null || v === '') return null;
  if (typeof v !== 'string') throw errors.invalidParam(`${name} must be a string`);
  if (Buffer.byteLength(v) > (name === 'displayname' ? 256 : 1000)) throw errors.invalidParam(`${name} is too long`);
  if (name === 'avatar_url' && !v.startsWith('mxc://')) throw errors.invalidParam('avatar_url must be an mxc:// URI');
  return v;
}

export function registerAdminUserRoutes(front: Front, ctx: ApiContext): void {
  const index = new MembershipIndex(ctx.redis, ctx.keys, ctx.shardCounts.user);

  front.route('GET', `${V2}/users/:userId`, async (req) => {
    await requireAdmin(ctx, req);
    const userId = localTarget(ctx, req.params.userId);
    return { body: await userDetails(ctx, userId, await requireAccount(ctx, userId)) };
  });

  front.route('PUT', `${V2}/users/:userId`, (req) => putUser(ctx, req));

  front.route('POST', `${V1}/reset_password/:userId`, async (req) => {
    await requireAdmin(ctx, req);
    const userId = localTarget(ctx, req.params.userId, 'Can only reset passwords of local users');
    const body = jsonBody(req);
    if (body.new_password === undefined) throw errors.missingParam("Missing params: ['new_password']");
    const password = passwordField(body, 'new_password');
    if (password === undefined) throw errors.invalidParam('Invalid password');
    const logoutDevices = boolField(body, 'logout_devices', true);
    await requireAccount(ctx, userId);
    await setPassword(ctx, userId, await hashPassword(password), logoutDevices);
    return { body: {} };
  });

  front.route('GET', `${V1}/users/:userId/joined_rooms`, async (req) => {
    await requireAdmin(ctx, req);
    const userId = localTarget(ctx, req.params.userId);
    const rooms = (await index.rooms(userId, 'join')).map((r) => r.roomId).sort();
    return { body: { joined_rooms: rooms, total: rooms.length } };
  });

  front.route('GET', `${V1}/users/:userId/admin`, async (req) => {
    await requireAdmin(ctx, req);
    const userId = localTarget(ctx, req.params.userId, 'Only local users can be admins of this homeserver');
    return { body: { admin: (await requireAccount(ctx, userId)).a === 1 } };
  });

  front.route('PUT', `${V1}/users/:userId/admin`, async (req) => {
    const me = await requireAdmin(ctx, req);
    const userId = localTarget(ctx, req.params.userId, 'Only local users can be admins of this homeserver');
    const body = jsonBody(req);
    if (body.admin === undefined) throw errors.missingParam("Missing params: ['admin']");
    if (typeof body.admin !== 'boolean') throw errors.invalidParam("'admin' must be a boolean");
    if (userId === me.userId && !body.admin) throw new MatrixError(400, 'M_UNKNOWN', 'You may not demote yourself.');
    await requireAccount(ctx, userId);
    await askUser(ctx, userId, { op: 'admin_update', admin: body.admin });
    return { body: {} };
  });

  front.route('POST', `${V1}/deactivate/:userId`, async (req) => {
    await requireAdmin(ctx, req);
    const userId = localTarget(ctx, req.params.userId, 'Can only deactivate local users');
    await requireAccount(ctx, userId);
    const body = jsonBody(req, true);
    const erase = body.erase ?? false;
    if (typeof erase !== 'boolean') throw errors.badJson("Param 'erase' must be a boolean, if given");
    await deactivateAccount(ctx, userId, erase, req);
    return { body: { id_server_unbind_result: 'success' } };
  });

  front.route('GET', `${V2}/users/:userId/devices`, async (req) => {
    await requireAdmin(ctx, req);
    const userId = localTarget(ctx, req.params.userId, 'Can only lookup local users');
    await requireAccount(ctx, userId, 'Unknown user');
    const stored = await ctx.redis.hvals(userKey(ctx, userId, userData.devices(userId)));
    const devices = stored
      .map(parseDevice)
      .filter((d): d is DeviceJson => d !== null)
      .map((d) => ({ device_id: d.device_id, display_name: d.display_name ?? null, last_seen_ip: d.last_seen_ip ?? null, last_seen_ts: d.last_seen_ts ?? null, last_seen_user_agent: null, user_id: userId }))
      .sort((a, b) => (a.device_id < b.device_id ? -1 : a.device_id > b.device_id ? 1 : 0));
    return { body: { devices, total: devices.length } };
  });
}

/** `PUT /v2/users/{userId}`: 201 with the new user's details, or 200 with the changed user's. */
async function putUser(ctx: ApiContext, req: Request) {
  const me = await requireAdmin(ctx, req);
  const userId = localTarget(ctx, req.params.userId, 'This endpoint can only be used with local users');
  const body = jsonBody(req);
  // Check everything before changing anything: a bad field leaves the user as it was.
  if (body.user_type !== undefined && body.user_type !== null && !(typeof body.user_type === 'string' && ['bot', 'support'].includes(body.user_type))) throw new MatrixError(400, 'M_UNKNOWN', 'Invalid user type');
  if (body.admin !== undefined && typeof body.admin !== 'boolean') throw errors.badJson("Param 'admin' must be a boolean, if given");
  const password = passwordField(body, 'password');
  const logoutDevices = boolField(body, 'logout_devices', true);
  const deactivate = boolField(body, 'deactivated', false);
  const lock = boolField(body, 'locked', false);
  if (deactivate && lock) throw new MatrixError(400, 'M_UNKNOWN', "An user can't be deactivated and locked");
  for (const list of ['threepids', 'external_ids'] as const) {
    const v = body[list];
    if (v !== undefined && v !== null && (!Array.isArray(v) || v.length > 0)) throw new MatrixError(400, 'M_UNRECOGNIZED', `${list} are not supported by this server`);
  }
  const displayname = 'displayname' in body ? profileValue(body, 'displayname') : undefined;
  const avatarUrl = 'avatar_url' in body ? profileValue(body, 'avatar_url') : undefined;

  const account = await readAccount(ctx, userId);
  if (!account) {
    // Creation: the localpart must be one a registration could make.
    const localpart = userId.slice(1, userId.lastIndexOf(':'));
    if (!/^[a-z0-9._=\-/+]+$/.test(localpart)) throw new MatrixError(400, 'M_INVALID_USERNAME', 'User ID can only contain characters a-z, 0-9, or \'=_-./+\'');
    await askUser(ctx, userId, {
      op: 'register',
      passwordHash: password === undefined ? null : await hashPassword(password),
      displayname: displayname ?? localpart,
      admin: body.admin === true,
    });
    if (avatarUrl) await askUser(ctx, userId, { op: 'set_profile', field: 'avatar_url', value: avatarUrl });
    return { status: 201, body: await userDetails(ctx, userId, await requireAccount(ctx, userId)) };
  }

  if ('deactivated' in body && !deactivate && account.x === 1) throw new MatrixError(400, 'M_UNKNOWN', 'Reactivating a deactivated account is not supported by this server');
  if (body.admin === false && userId === me.userId && account.a === 1) throw new MatrixError(400, 'M_UNKNOWN', 'You may not demote yourself.');
  const live = account.x !== 1;
  if (displayname !== undefined && live) await askUser(ctx, userId, { op: 'set_profile', field: 'displayname', value: displayname });
  if (avatarUrl !== undefined && live) await askUser(ctx, userId, { op: 'set_profile', field: 'avatar_url', value: avatarUrl });
  const adminChange = typeof body.admin === 'boolean' && body.admin !== (account.a === 1) ? { admin: body.admin } : {};
  const lockChange = 'locked' in body && lock !== (account.l === 1) ? { locked: lock } : {};
  if (Object.keys(adminChange).length || Object.keys(lockChange).length) await askUser(ctx, userId, { op: 'admin_update', ...adminChange, ...lockChange });
  if (password !== undefined && live) await setPassword(ctx, userId, await hashPassword(password), logoutDevices);
  if (deactivate && live) await deactivateAccount(ctx, userId, false, req);
  return { body: await userDetails(ctx, userId, await requireAccount(ctx, userId)) };
}
