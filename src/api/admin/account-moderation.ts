/**
 * The spec's account moderation for server admins (v1.18, admin.yaml):
 * `GET|PUT /_matrix/client/v1/admin/lock/{userId}` and `…/admin/suspend/{userId}`, and Synapse's
 * `PUT /_synapse/admin/v1/suspend/{userId}` (`{suspend}` → `{"user_<id>_suspended": …}`).
 * The lock is Synapse's admin API `locked` (users.ts): a locked user's logins are refused with 401
 * `M_USER_LOCKED`. A suspended user keeps a read-only account: writes answer 403
 * `M_USER_SUSPENDED` (src/api/client/auth.ts refuseIfSuspended). Authorisation is checked before
 * the account is looked up, so non-admins cannot learn which users exist.
 */
import { MatrixError, errors } from '../../http/errors';
import type { Front, Request } from '../../http/server';
import { isValidUserId, serverOf } from '../../protocol/identifiers';
import { askUser, jsonBody, readAccount } from '../client/accounts-common';
import type { ApiContext } from '../context';
import { localTarget, requireAdmin } from './common';

const PATH = '/_matrix/client/v1/admin/lock/:userId';
const SUSPEND_PATH = '/_matrix/client/v1/admin/suspend/:userId';

/** The path's user: local (400 `M_INVALID_PARAM` otherwise) and registered, not deactivated (404). */
async function lockTarget(ctx: ApiContext, req: Request) {
  const userId = req.params.userId ?? '';
  if (!isValidUserId(userId) || serverOf(userId) !== ctx.config.serverName) throw errors.invalidParam('The user ID does not belong to this server');
  const account = await readAccount(ctx, userId);
  if (!account || account.x === 1) throw errors.notFound('The user does not exist or is deactivated');
  return { userId, account };
}

export function registerAccountModerationRoutes(front: Front, ctx: ApiContext): void {
  front.route('GET', PATH, async (req) => {
    await requireAdmin(ctx, req);
    const { account } = await lockTarget(ctx, req);
    return { body: { locked: account.l === 1 } };
  });

  front.route('PUT', PATH, async (req) => {
    const me = await requireAdmin(ctx, req);
    const body = jsonBody(req);
    if (typeof body.locked !== 'boolean') throw errors.badJson('locked must be a boolean');
    const { userId, account } = await lockTarget(ctx, req);
    if (userId === me.userId && body.locked) throw new MatrixError(400, 'M_INVALID_PARAM', 'You may not lock your own account');
    if ((account.l === 1) !== body.locked) await askUser(ctx, userId, { op: 'admin_update', locked: body.locked });
    return { body: { locked: body.locked } };
  });

  front.route('GET', SUSPEND_PATH, async (req) => {
    await requireAdmin(ctx, req);
    const { account } = await lockTarget(ctx, req);
    return { body: { suspended: account.s === 1 } };
  });

  front.route('PUT', SUSPEND_PATH, async (req) => {
    const me = await requireAdmin(ctx, req);
    const body = jsonBody(req);
    if (typeof body.suspended !== 'boolean') throw errors.badJson('suspended must be a boolean');
    const { userId, account } = await lockTarget(ctx, req);
    if (userId === me.userId && body.suspended) throw new MatrixError(400, 'M_INVALID_PARAM', 'You may not suspend your own account');
    if ((account.s === 1) !== body.suspended) await askUser(ctx, userId, { op: 'admin_update', suspended: body.suspended });
    return { body: { suspended: body.suspended } };
  });

  // Synapse's: any account that exists (deactivated ones too), then the body.
  front.route('PUT', '/_synapse/admin/v1/suspend/:userId', async (req) => {
    await requireAdmin(ctx, req);
    const userId = req.params.userId ?? '';
    if (!isValidUserId(userId)) throw errors.invalidParam('Not a valid user id');
    if (serverOf(userId) !== ctx.config.serverName) throw new MatrixError(400, 'M_UNKNOWN', 'Can only suspend local users');
    const account = await readAccount(ctx, localTarget(ctx, userId));
    if (!account) throw errors.notFound('User not found');
    const body = jsonBody(req);
    if (body.suspend === undefined) throw errors.missingParam("Missing params: ['suspend']");
    if (typeof body.suspend !== 'boolean') throw errors.badJson("'suspend' must be a boolean");
    if ((account.s === 1) !== body.suspend) await askUser(ctx, userId, { op: 'admin_update', suspended: body.suspend });
    return { body: { [`user_${userId}_suspended`]: body.suspend } };
  });
}
