/**
 * Shared-secret admin registration, compatible with Synapse's `/_synapse/admin/v1/register`
 * (so its tools, e.g. `register_new_matrix_user`, work against Axon too; ours is
 * `npm run register-user`):
 * - `GET` hands out a nonce: single-use, valid for 60 s, kept in Redis so any front may take the POST;
 * - `POST` { nonce, username, password, admin?, displayname?, user_type?, mac } creates the account
 *   when `mac` is the hex HMAC-SHA1, keyed with `registration.sharedSecret`, of
 *   nonce NUL username NUL password NUL ("admin" | "notadmin") [NUL user_type].
 * With no shared secret configured both answer 400 "Shared secret registration is not enabled",
 * as Synapse does. The nonce is used up by the first POST naming it, whatever its outcome.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { MatrixError, errors } from '../../http/errors';
import type { Front } from '../../http/server';
import type { UserReply } from '../../../actors/user';
import { newToken, tokenHash } from '../client/auth';
import { askUser, jsonBody, newDeviceId, newUserId, readAccount } from '../client/accounts-common';
import type { ApiContext } from '../context';
import { hashPassword } from '../client/passwords';

export const NONCE_TTL_MS = 60_000;
const MAX_PASSWORD_LENGTH = 512;
const PATH = '/_synapse/admin/v1/register';

/** The MAC a registration request must carry (exported for the operator script and tests). */
export function registrationMac(secret: string, p: { nonce: string; username: string; password: string; admin: boolean; userType?: string }): string {
  const h = createHmac('sha1', Buffer.from(secret, 'utf8'));
  h.update(p.nonce);
  h.update('\x00');
  h.update(p.username);
  h.update('\x00');
  h.update(p.password);
  h.update('\x00');
  h.update(p.admin ? 'admin' : 'notadmin');
  if (p.userType !== undefined) {
    h.update('\x00');
    h.update(p.userType);
  }
  return h.digest('hex');
}

export function registerAdminRegistrationRoutes(front: Front, ctx: ApiContext): void {
  const enabled = () => {
    if (!ctx.config.registration.sharedSecret) throw new MatrixError(400, 'M_UNKNOWN', 'Shared secret registration is not enabled');
  };

  front.route('GET', PATH, async (req) => {
    enabled();
    await ctx.limiter?.check('register', req.remoteAddress);
    const nonce = randomBytes(32).toString('hex');
    await ctx.redis.set(ctx.keys.adminRegisterNonce(nonce), '1', 'PX', NONCE_TTL_MS);
    return { body: { nonce } };
  });

  front.route('POST', PATH, async (req) => {
    enabled();
    await ctx.limiter?.check('register', req.remoteAddress);
    const body = jsonBody(req);
    const nonce = body.nonce;
    if (typeof nonce !== 'string' || nonce === '') throw errors.badJson('nonce must be specified');
    // Single use: whoever deletes it first owns it (an expired nonce is already gone).
    if ((await ctx.redis.del(ctx.keys.adminRegisterNonce(nonce))) !== 1) throw new MatrixError(400, 'M_UNKNOWN', 'unrecognised nonce');
    const { username, password } = body;
    if (typeof username !== 'string' || username === '' || username.includes('\x00')) throw new MatrixError(400, 'M_INVALID_USERNAME', 'Invalid username');
    if (typeof password !== 'string' || password === '' || password.includes('\x00') || password.length > MAX_PASSWORD_LENGTH) throw errors.invalidParam('Invalid password');
    if (body.admin !== undefined && typeof body.admin !== 'boolean') throw errors.invalidParam('admin must be a boolean');
    const admin = body.admin === true;
    let userType: string | undefined;
    if (body.user_type !== undefined && body.user_type !== null) {
      if (typeof body.user_type !== 'string' || !['support', 'bot'].includes(body.user_type)) throw errors.invalidParam('Invalid user type');
      userType = body.user_type;
    }
    let displayname: string | undefined;
    if (body.displayname !== undefined && body.displayname !== null) {
      if (typeof body.displayname !== 'string') throw errors.invalidParam('displayname must be a string');
      displayname = body.displayname;
    }
    const mac = body.mac;
    if (typeof mac !== 'string' || mac === '') throw errors.badJson('mac must be specified');
    const want = Buffer.from(registrationMac(ctx.config.registration.sharedSecret, { nonce, username, password, admin, userType }), 'utf8');
    const got = Buffer.from(mac, 'utf8');
    // Compare in constant time (lengths first: timingSafeEqual needs equal lengths, and the
    // length of a SHA-1 hex digest is no secret).
    if (got.length !== want.length || !timingSafeEqual(got, want)) throw new MatrixError(403, 'M_FORBIDDEN', 'HMAC incorrect');

    const localpart = username.toLowerCase();
    const userId = newUserId(ctx, localpart);
    if (await readAccount(ctx, userId)) throw new MatrixError(400, 'M_USER_IN_USE', 'User ID already taken');
    const passwordHash = await hashPassword(password);
    const access = newToken(userId, ctx.shardCounts.user, 'axo');
    const reply = await askUser<UserReply & { device_id?: string }>(ctx, userId, {
      op: 'register', passwordHash, displayname: displayname ?? localpart, admin,
      session: { deviceId: newDeviceId(), accessHash: tokenHash(access), ip: req.remoteAddress },
    });
    return { body: { access_token: access, user_id: userId, home_server: ctx.config.serverName, device_id: reply.device_id } };
  });
}
