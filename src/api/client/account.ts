/**
 * Accounts: login, registration, token refresh, logout, whoami, password change, deactivation,
 * third-party identifiers (none can be bound here) and capabilities. Passwords are hashed and
 * checked here (scrypt is slow; the actor only stores the result); the user actor writes.
 */
import { registrationOpen } from '../../../cluster.config';
import { MatrixError, errors } from '../../http/errors';
import type { Front, Request } from '../../http/server';
import { roomVersionCapability } from '../../protocol/room-versions';
import { decode } from '../../store/codec';
import type { JsonObject } from '../../protocol/json';
import type { UserReply } from '../../../actors/user';
import { bearerToken, newToken, requireUser, tokenHash, tokenKeyName, tokenShard, type TokenRecord } from './auth';
import type { Appservice } from '../../appservice/registration';
import { isValidUserId } from '../../protocol/identifiers';
import { utf8Length } from '../../protocol/json';
import { askUser, clientRoute, jsonBody, localUserId, newDeviceId, newLocalpart, newUserId, optional, readAccount } from './accounts-common';
import type { ApiContext } from '../context';
import { dummyHash, hashPassword, verifyPassword } from './passwords';
import { checkPasswordStage, identifiedUser, requireUia, UIA_SESSION_TTL_MS } from './uia';
import { completeToken, reserveToken, tokenValidNow } from './registration-tokens';
import { pruneDeviceInboxes } from './to-device';
import { forgetDeviceKeys } from './keys';
import { leaveRemoteRoomsOf } from '../../rooms/join-remote';
import { remoteDeps } from '../../rooms/join';
import { MembershipIndex } from '../../readers/membership-index';

const MAX_PASSWORD_LENGTH = 512;
const PASSWORD_FLOWS = [['m.login.password']];
/** The login and registration type of application services (Application Service API). */
const APPSERVICE_LOGIN = 'm.login.application_service';

export function registerAccountRoutes(front: Front, ctx: ApiContext): void {
  // As Synapse: application-service login is always offered (it needs an as_token anyway).
  clientRoute(front, 'GET', '/login', () => ({ body: { flows: [{ type: 'm.login.password' }, { type: APPSERVICE_LOGIN }] } }));
  clientRoute(front, 'POST', '/login', (req) => login(ctx, req));
  clientRoute(front, 'POST', '/refresh', (req) => refresh(ctx, req), ['v3']);
  clientRoute(front, 'POST', '/register', (req) => register(ctx, req));
  clientRoute(front, 'GET', '/register/available', (req) => available(ctx, req));
  front.route('GET', '/_matrix/client/v1/register/m.login.registration_token/validity', (req) => tokenValidity(ctx, req));
  clientRoute(front, 'POST', '/logout', async (req) => {
    const me = await requireUser(ctx, req, { allowLocked: true });
    if (me.appservice) {
      // The as_token is not a session: nothing to end, unless the appservice acts as one of the
      // user's devices (`device_id`), which goes as a logged-out device does (as Synapse).
      if (me.deviceId) {
        await askUser(ctx, me.userId, { op: 'delete_devices', deviceIds: [me.deviceId] });
        await forgetDeviceKeys(ctx, me.userId, [me.deviceId]);
        pruneDeviceInboxes(ctx, me.userId);
      }
      return { body: {} };
    }
    const { device_id } = await askUser<{ device_id: string }>(ctx, me.userId, { op: 'logout', accessHash: tokenHash(me.accessToken) });
    // Logging out deletes the device, and with it its end-to-end keys.
    await forgetDeviceKeys(ctx, me.userId, [device_id]);
    pruneDeviceInboxes(ctx, me.userId);
    return { body: {} };
  });
  clientRoute(front, 'POST', '/logout/all', async (req) => {
    const me = await requireUser(ctx, req, { allowLocked: true });
    await askUser(ctx, me.userId, { op: 'logout_all' });
    pruneDeviceInboxes(ctx, me.userId);
    await forgetDeviceKeys(ctx, me.userId);
    return { body: {} };
  });
  clientRoute(front, 'GET', '/account/whoami', async (req) => {
    const me = await requireUser(ctx, req);
    // An appservice acting without a device has none to name (as Synapse: no device_id).
    return { body: { user_id: me.userId, ...(me.deviceId ? { device_id: me.deviceId } : {}), is_guest: false } };
  });
  clientRoute(front, 'POST', '/account/password', (req) => changePassword(ctx, req));
  clientRoute(front, 'POST', '/account/deactivate', (req) => deactivate(ctx, req));
  clientRoute(front, 'GET', '/capabilities', async (req) => {
    const me = await requireUser(ctx, req);
    // Admins may lock and suspend accounts (v1.18 admin.yaml); omitted for everyone else, as the spec asks.
    const moderation = (await readAccount(ctx, me.userId))?.a === 1 ? { 'm.account_moderation': { lock: true, suspend: true } } : {};
    return {
      body: {
        capabilities: {
          ...moderation,
          'm.change_password': { enabled: true },
          'm.room_versions': roomVersionCapability(ctx.config.defaultRoomVersion),
          'm.set_displayname': { enabled: true },
          'm.set_avatar_url': { enabled: true },
          'm.profile_fields': { enabled: true },
          'm.3pid_changes': { enabled: false },
          'm.get_login_token': { enabled: false },
          // MSC4140 (as Synapse 1.163.2 advertises it).
          ...(ctx.config.delayedEvents.maxDelayMs > 0 ? { 'org.matrix.msc4140.delayed_events': { max_delay_ms: ctx.config.delayedEvents.maxDelayMs, max_scheduled: ctx.config.delayedEvents.maxPerUser } } : {}),
        },
      },
    };
  });
  registerThreepidRoutes(front, ctx);
}

// ---- login ----

async function login(ctx: ApiContext, req: Request) {
  const asBody = appserviceTyped(req);
  if (asBody) return appserviceLogin(ctx, req, asBody);
  await ctx.limiter?.check('login', req.remoteAddress);
  const body = jsonBody(req);
  if (body.type !== 'm.login.password') throw new MatrixError(400, 'M_UNKNOWN', `Unsupported login type ${JSON.stringify(body.type)}`);
  const identifier = body.identifier;
  if (identifier !== undefined && (typeof identifier !== 'object' || identifier === null || Array.isArray(identifier))) throw errors.badJson('identifier must be an object');
  if (identifier && identifier.type !== 'm.id.user') {
    if (identifier.type === 'm.id.thirdparty' || identifier.type === 'm.id.phone') throw new MatrixError(403, 'M_FORBIDDEN', 'No account has this third-party identifier');
    throw new MatrixError(400, 'M_UNKNOWN', `Unsupported identifier type ${JSON.stringify(identifier.type)}`);
  }
  const who = identifiedUser(body);
  if (who === null) throw errors.missingParam('identifier.user is required');
  const password = body.password;
  if (typeof password !== 'string') throw errors.missingParam('password is required');
  const deviceId = optional(body, 'device_id', 'string');
  const displayName = optional(body, 'initial_device_display_name', 'string');
  const wantsRefresh = optional(body, 'refresh_token', 'boolean') === true;
  if (deviceId !== undefined && !/^[\x21-\x7e]{1,255}$/.test(deviceId)) throw errors.invalidParam('device_id must be 1 to 255 printable ASCII characters');

  const userId = localUserId(ctx, who);
  // Failed attempts per account, from any address (Synapse's rc_login.failed_attempts): an
  // attempt takes from the account's bucket before the password is checked — so concurrent
  // guesses cannot all pass before the first failure counts — and gives it back unless the
  // password was wrong. An account whose bucket is empty gets 429 even with the right password,
  // as on Synapse. (A name that is no local user id cannot log in; the per-address limit covers it.)
  if (userId) await ctx.limiter?.check('failedLogin', userId);
  const account = userId ? await readAccount(ctx, userId) : null;
  // Check a password for unknown users too, so the answer takes as long as for known ones.
  const ok = await verifyPassword(password, account?.h ?? (await dummyHash()));
  // Only a wrong password (or unknown account) counts; a deactivated account is not a failure (Synapse).
  const wrongPassword = !ok || !account || !account.h;
  if (userId && (!wrongPassword || account?.x)) await ctx.limiter?.refund('failedLogin', userId);
  if (account?.x) throw new MatrixError(403, 'M_USER_DEACTIVATED', 'This account has been deactivated');
  if (!ok || !account || !account.h || !userId) throw new MatrixError(403, 'M_FORBIDDEN', 'Invalid username or password');
  const tokens = newTokens(ctx, userId, wantsRefresh);
  const reply = await askUser<{ user_id: string; device_id: string; expires_in_ms?: number }>(ctx, userId, {
    op: 'login',
    verifiedHash: account.h,
    session: { deviceId: deviceId ?? newDeviceId(), ...(displayName !== undefined ? { displayName } : {}), ...tokens.session, ip: req.remoteAddress },
  });
  return { body: sessionBody(ctx, userId, reply, tokens) };
}

/** The body, when it is a JSON object of type `m.login.application_service` (anything else: null, the usual path answers). */
function appserviceTyped(req: Request): JsonObject | null {
  if (!req.body.length) return null;
  try {
    const body = jsonBody(req);
    return body.type === APPSERVICE_LOGIN ? body : null;
  } catch {
    return null;
  }
}

/**
 * `m.login.application_service`: an appservice logs one of its users in (a new device and
 * token) with its as_token; the user must be in its namespace (or be its sender) and exist.
 */
async function appserviceLogin(ctx: ApiContext, req: Request, body: JsonObject) {
  const requester = await requireUser(ctx, req);
  const as = requester.appservice;
  if (!as) throw new MatrixError(401, 'M_UNKNOWN_TOKEN', 'This login method is only valid for application services', { soft_logout: false });
  if (as.rateLimited) await ctx.limiter?.check('login', req.remoteAddress);
  const identifier = body.identifier;
  if (typeof identifier !== 'object' || identifier === null || Array.isArray(identifier)) throw errors.invalidParam('Invalid identifier in login submission');
  if (identifier.type !== 'm.id.user') throw errors.invalidParam('Unknown login identifier type');
  if (typeof identifier.user !== 'string') throw errors.invalidParam('Invalid user in identifier');
  const userId = identifier.user.startsWith('@') ? identifier.user : `@${identifier.user}:${ctx.config.serverName}`;
  if (!as.isInterestedInUser(userId)) throw new MatrixError(403, 'M_FORBIDDEN', 'Invalid access_token');
  const deviceId = optional(body, 'device_id', 'string');
  const displayName = optional(body, 'initial_device_display_name', 'string');
  const wantsRefresh = optional(body, 'refresh_token', 'boolean') === true;
  if (deviceId !== undefined && !/^[\x21-\x7e]{1,255}$/.test(deviceId)) throw errors.invalidParam('device_id must be 1 to 255 printable ASCII characters');
  // The sender is made on first use; anyone else must have been registered by the appservice.
  if (userId !== as.senderUserId && !(await readAccount(ctx, userId))) throw new MatrixError(403, 'M_FORBIDDEN', `Application service has not registered this user (${userId})`);
  const tokens = newTokens(ctx, userId, wantsRefresh);
  const reply = await askUser<{ user_id: string; device_id: string; expires_in_ms?: number }>(ctx, userId, {
    op: 'login',
    appservice: as.id,
    session: { deviceId: deviceId ?? newDeviceId(), ...(displayName !== undefined ? { displayName } : {}), ...tokens.session, ip: req.remoteAddress },
  });
  return { body: sessionBody(ctx, userId, reply, tokens) };
}

interface IssuedTokens {
  access: string;
  refresh?: string;
  session: { accessHash: string; refreshHash?: string; expiresInMs?: number };
}

function newTokens(ctx: ApiContext, userId: string, refreshable: boolean): IssuedTokens {
  const access = newToken(userId, ctx.shardCounts.user, 'axo');
  if (!refreshable) return { access, session: { accessHash: tokenHash(access) } };
  const refresh = newToken(userId, ctx.shardCounts.user, 'axr');
  return { access, refresh, session: { accessHash: tokenHash(access), refreshHash: tokenHash(refresh), expiresInMs: ctx.config.accessTokenLifetimeMs } };
}

function sessionBody(ctx: ApiContext, userId: string, reply: { device_id?: string; expires_in_ms?: number }, tokens: IssuedTokens): Record<string, unknown> {
  return {
    user_id: userId,
    access_token: tokens.access,
    device_id: reply.device_id,
    home_server: ctx.config.serverName,
    ...(tokens.refresh ? { refresh_token: tokens.refresh, expires_in_ms: reply.expires_in_ms } : {}),
    well_known: { 'm.homeserver': { base_url: ctx.config.publicBaseUrl } },
  };
}

async function refresh(ctx: ApiContext, req: Request) {
  const body = jsonBody(req);
  const token = body.refresh_token;
  if (typeof token !== 'string') throw errors.missingParam('refresh_token is required');
  const unknown = () => new MatrixError(401, 'M_UNKNOWN_TOKEN', 'Unknown refresh token', { soft_logout: false });
  const shard = tokenShard(token, ctx.shardCounts.user);
  if (shard === null || !token.startsWith('axr_')) throw unknown();
  const blob = await ctx.redis.getBuffer(ctx.keys.shard('user', shard).data(tokenKeyName(token)));
  if (!blob) throw unknown();
  const rec = decode<TokenRecord>(blob);
  const tokens = newTokens(ctx, rec.u, true);
  const reply = await askUser<{ device_id: string; expires_in_ms: number }>(ctx, rec.u, {
    op: 'refresh', refreshHash: tokenHash(token), accessHash: tokens.session.accessHash, newRefreshHash: tokens.session.refreshHash!, expiresInMs: tokens.session.expiresInMs!,
  });
  return { body: { access_token: tokens.access, refresh_token: tokens.refresh, expires_in_ms: reply.expires_in_ms } };
}

// ---- registration ----

function registrationFlows(ctx: ApiContext): string[][] {
  // The token stage comes first and dummy after it, as Synapse's flows: a use is pending between
  // the two (the session holds it), completed when the registration goes through.
  return ctx.config.registration.requiresToken ? [['m.login.registration_token', 'm.login.dummy']] : [['m.login.dummy']];
}

async function register(ctx: ApiContext, req: Request) {
  const asBody = appserviceTyped(req);
  // Appservices register their users whatever the registration settings, without UIA.
  if (asBody && (req.query['kind'] ?? 'user') === 'user') return appserviceRegister(ctx, req, asBody);
  await ctx.limiter?.check('register', req.remoteAddress);
  const kind = req.query['kind'] ?? 'user';
  if (kind === 'guest') throw new MatrixError(403, 'M_GUEST_ACCESS_FORBIDDEN', 'Guest access is not enabled on this server');
  if (kind !== 'user') throw errors.invalidParam('kind must be user or guest');
  if (!registrationOpen(ctx.config)) throw new MatrixError(403, 'M_FORBIDDEN', 'Registration is disabled on this server');
  const body = jsonBody(req);
  const username = optional(body, 'username', 'string');
  const password = optional(body, 'password', 'string');
  const deviceId = optional(body, 'device_id', 'string');
  const displayName = optional(body, 'initial_device_display_name', 'string');
  const inhibitLogin = optional(body, 'inhibit_login', 'boolean') === true;
  const wantsRefresh = optional(body, 'refresh_token', 'boolean') === true;
  if (password !== undefined && password.length > MAX_PASSWORD_LENGTH) throw errors.invalidParam(`password must be at most ${MAX_PASSWORD_LENGTH} characters`);
  if (deviceId !== undefined && !/^[\x21-\x7e]{1,255}$/.test(deviceId)) throw errors.invalidParam('device_id must be 1 to 255 printable ASCII characters');
  // The username is checked before authentication, so a client learns it is taken right away.
  const userId = username !== undefined ? newUserId(ctx, username) : newUserId(ctx, newLocalpart());
  if (username !== undefined && (await readAccount(ctx, userId))) throw new MatrixError(400, 'M_USER_IN_USE', 'User ID already taken');
  refuseExclusiveUser(ctx, userId);

  const uia = await requireUia(ctx, body, {
    purpose: 'register',
    flows: registrationFlows(ctx),
    checkStage: async (stage, auth, session) => {
      if (stage !== 'm.login.registration_token') return;
      if (auth.token === undefined) throw errors.missingParam('Missing registration token');
      if (typeof auth.token !== 'string') throw errors.invalidParam('Registration token must be a string');
      // Holds one use for this session, atomically with the check (registration-tokens.ts).
      if (!(await reserveToken(ctx, auth.token, session, UIA_SESSION_TTL_MS))) throw new MatrixError(401, 'M_UNAUTHORIZED', 'Invalid registration token');
      return { registrationToken: auth.token };
    },
  });
  const spent = uia.data.registrationToken;

  const passwordHash = password !== undefined && password !== '' ? await hashPassword(password) : null;
  const localpart = userId.slice(1, userId.indexOf(':'));
  if (inhibitLogin) {
    await askUser<UserReply>(ctx, userId, { op: 'register', passwordHash, displayname: localpart });
    if (spent !== undefined) await completeToken(ctx, spent, uia.session);
    return { body: { user_id: userId, home_server: ctx.config.serverName } };
  }
  const tokens = newTokens(ctx, userId, wantsRefresh);
  const reply = await askUser<{ user_id: string; device_id: string; expires_in_ms?: number }>(ctx, userId, {
    op: 'register', passwordHash, displayname: localpart,
    session: { deviceId: deviceId ?? newDeviceId(), ...(displayName !== undefined ? { displayName } : {}), ...tokens.session, ip: req.remoteAddress },
  });
  if (spent !== undefined) await completeToken(ctx, spent, uia.session);
  const out = sessionBody(ctx, userId, reply, tokens);
  delete out.well_known;
  return { body: out };
}

/** 400 M_EXCLUSIVE when an appservice (other than `allowed`) holds the user id in an exclusive namespace. */
function refuseExclusiveUser(ctx: ApiContext, userId: string, allowed?: Appservice): void {
  if (ctx.appservices?.registry.exclusiveUserOwner(userId, allowed)) throw new MatrixError(400, 'M_EXCLUSIVE', 'This user ID is reserved by an application service.');
}

/**
 * `POST /register` with `type: m.login.application_service` (Application Service API, "Server
 * admin style permissions"): an appservice registers a user of its namespace with its as_token,
 * no UIA, and whatever the server's registration settings. The username is taken as given (as
 * Synapse, which lets bridges keep their historical user ids), within the user id grammar.
 */
async function appserviceRegister(ctx: ApiContext, req: Request, body: JsonObject) {
  const token = bearerToken(req);
  // The spec's answer to a missing token (Synapse: 400 M_UNKNOWN).
  if (token === null) throw new MatrixError(401, 'M_MISSING_TOKEN', 'Appservice token must be provided when using a type of m.login.application_service');
  const as = ctx.appservices?.registry.findByAsToken(token);
  if (!as) throw new MatrixError(401, 'M_UNKNOWN_TOKEN', 'Unknown application service token', { soft_logout: false });
  const username = body.username;
  if (typeof username !== 'string' || username === '' || username.length > 512) throw errors.invalidParam('Desired Username is missing or not a string');
  const userId = `@${username}:${ctx.config.serverName}`;
  if (!isValidUserId(userId) || utf8Length(userId) > 255) throw new MatrixError(400, 'M_INVALID_USERNAME', 'The username does not make a valid user id');
  if (!as.isInterestedInUser(userId)) throw new MatrixError(400, 'M_EXCLUSIVE', 'Invalid user localpart for this application service.');
  refuseExclusiveUser(ctx, userId, as);
  const deviceId = optional(body, 'device_id', 'string');
  const displayName = optional(body, 'initial_device_display_name', 'string');
  const inhibitLogin = optional(body, 'inhibit_login', 'boolean') === true;
  const wantsRefresh = optional(body, 'refresh_token', 'boolean') === true;
  if (deviceId !== undefined && !/^[\x21-\x7e]{1,255}$/.test(deviceId)) throw errors.invalidParam('device_id must be 1 to 255 printable ASCII characters');
  if (inhibitLogin) {
    await askUser<UserReply>(ctx, userId, { op: 'register', passwordHash: null, displayname: username });
    return { body: { user_id: userId, home_server: ctx.config.serverName } };
  }
  const tokens = newTokens(ctx, userId, wantsRefresh);
  const reply = await askUser<{ user_id: string; device_id: string; expires_in_ms?: number }>(ctx, userId, {
    op: 'register', passwordHash: null, displayname: username,
    session: { deviceId: deviceId ?? newDeviceId(), ...(displayName !== undefined ? { displayName } : {}), ...tokens.session, ip: req.remoteAddress },
  });
  const out = sessionBody(ctx, userId, reply, tokens);
  delete out.well_known;
  return { body: out };
}

async function available(ctx: ApiContext, req: Request) {
  await ctx.limiter?.check('register', req.remoteAddress);
  const username = req.query['username'];
  if (username === undefined) throw errors.missingParam('username is required');
  const userId = newUserId(ctx, username);
  if (await readAccount(ctx, userId)) throw new MatrixError(400, 'M_USER_IN_USE', 'User ID already taken');
  refuseExclusiveUser(ctx, userId);
  return { body: { available: true } };
}

async function tokenValidity(ctx: ApiContext, req: Request) {
  await ctx.limiter?.check('register', req.remoteAddress);
  if (!registrationOpen(ctx.config)) throw new MatrixError(403, 'M_FORBIDDEN', 'Registration is disabled on this server');
  const token = req.query['token'];
  if (token === undefined) throw errors.missingParam("Missing string query parameter 'token'");
  return { body: { valid: await tokenValidNow(ctx, token) } };
}

// ---- password and deactivation ----

async function changePassword(ctx: ApiContext, req: Request) {
  const me = await requireUser(ctx, req);
  const body = jsonBody(req);
  const newPassword = body.new_password;
  if (typeof newPassword !== 'string' || newPassword === '') throw errors.missingParam('new_password is required');
  if (newPassword.length > MAX_PASSWORD_LENGTH) throw errors.invalidParam(`new_password must be at most ${MAX_PASSWORD_LENGTH} characters`);
  const logoutDevices = optional(body, 'logout_devices', 'boolean') ?? true;
  await requireUia(ctx, body, { purpose: 'password', userId: me.userId, flows: PASSWORD_FLOWS, checkStage: (_s, auth) => checkPasswordStage(ctx, me.userId, auth) });
  const passwordHash = await hashPassword(newPassword);
  await setPassword(ctx, me.userId, passwordHash, logoutDevices, me.deviceId);
  return { body: {} };
}

/** Set a user's password hash; with `logoutDevices`, every device but `keepDevice` goes (and its keys and inboxes). Also the admin API's. */
export async function setPassword(ctx: ApiContext, userId: string, passwordHash: string, logoutDevices: boolean, keepDevice?: string): Promise<void> {
  await askUser(ctx, userId, { op: 'set_password', passwordHash, logoutDevices, ...(keepDevice !== undefined ? { keepDevice } : {}) });
  if (logoutDevices) pruneDeviceInboxes(ctx, userId);
  if (logoutDevices) await forgetDeviceKeys(ctx, userId);
}

async function deactivate(ctx: ApiContext, req: Request) {
  const me = await requireUser(ctx, req);
  const body = jsonBody(req, true);
  const erase = optional(body, 'erase', 'boolean') === true;
  optional(body, 'id_server', 'string');
  await requireUia(ctx, body, { purpose: 'deactivate', userId: me.userId, flows: PASSWORD_FLOWS, checkStage: (_s, auth) => checkPasswordStage(ctx, me.userId, auth) });
  await deactivateAccount(ctx, me.userId, erase, req);
  // No third-party identifier is ever bound here, so there is nothing to unbind.
  return { body: { id_server_unbind_result: 'no-support' } };
}

/** Deactivate an account (the user's own request, or the admin API's): also leaves every room. */
export async function deactivateAccount(ctx: ApiContext, userId: string, erase: boolean, req: Request): Promise<void> {
  // The actor revokes every token, drops the password, profile, account data and push rules, and
  // announces the deactivation; the deactivation reader then takes the user out of every room
  // (src/readers/deactivation.ts), as Synapse does after answering.
  await askUser(ctx, userId, { op: 'deactivate', erase });
  // Invites and knocks on rooms this server does not have are left over federation now, while
  // the request waits (as Synapse); rooms held here are parted by the deactivation reader.
  const fed = remoteDeps(ctx);
  if (fed) {
    req.allowWait(60_000);
    await leaveRemoteRoomsOf(ctx, fed, new MembershipIndex(ctx.redis, ctx.keys, ctx.shardCounts.user), userId);
  }
  pruneDeviceInboxes(ctx, userId);
  await forgetDeviceKeys(ctx, userId);
}

// ---- third-party identifiers: this server binds none and verifies none ----

function registerThreepidRoutes(front: Front, ctx: ApiContext): void {
  clientRoute(front, 'GET', '/account/3pid', async (req) => {
    await requireUser(ctx, req);
    return { body: { threepids: [] } };
  });
  const noSession = async (req: Request) => {
    await requireUser(ctx, req);
    jsonBody(req);
    throw new MatrixError(400, 'M_THREEPID_AUTH_FAILED', 'No validated third-party identifier session: this server does not verify email addresses or phone numbers');
  };
  clientRoute(front, 'POST', '/account/3pid', noSession);
  clientRoute(front, 'POST', '/account/3pid/add', noSession);
  const fields = (body: JsonObject, names: string[]) => {
    for (const n of names) {
      if (body[n] === undefined) throw errors.missingParam(`${n} is required`);
      if (typeof body[n] !== 'string') throw errors.badJson(`${n} must be a string`);
    }
    if (body.id_server !== undefined && typeof body.id_server !== 'string') throw errors.badJson('id_server must be a string');
  };
  // Binding needs an identity server to have validated the session; none is used here.
  clientRoute(front, 'POST', '/account/3pid/bind', async (req) => {
    await requireUser(ctx, req);
    fields(jsonBody(req), ['client_secret', 'id_server', 'id_access_token', 'sid']);
    throw new MatrixError(400, 'M_THREEPID_AUTH_FAILED', 'No validated third-party identifier session: this server uses no identity server');
  });
  // Deleting or unbinding an identifier that is not bound (none ever is) succeeds with nothing
  // to unbind, as Synapse answers when it knows no identity server for it.
  for (const action of ['delete', 'unbind']) {
    clientRoute(front, 'POST', `/account/3pid/${action}`, async (req) => {
      await requireUser(ctx, req);
      fields(jsonBody(req), ['medium', 'address']);
      return { body: { id_server_unbind_result: 'no-support' } };
    });
  }
  for (const medium of ['email', 'msisdn']) {
    clientRoute(front, 'POST', `/account/3pid/${medium}/requestToken`, async (req) => {
      jsonBody(req);
      throw new MatrixError(400, 'M_THREEPID_MEDIUM_NOT_SUPPORTED', `This server does not support adding ${medium === 'email' ? 'email addresses' : 'phone numbers'}`);
    });
    clientRoute(front, 'POST', `/register/${medium}/requestToken`, async (req) => {
      jsonBody(req);
      throw new MatrixError(403, 'M_THREEPID_DENIED', 'This server does not register accounts by third-party identifier');
    });
    clientRoute(front, 'POST', `/account/password/${medium}/requestToken`, async (req) => {
      jsonBody(req);
      throw new MatrixError(400, 'M_THREEPID_NOT_FOUND', 'No account has this third-party identifier');
    });
  }
}

