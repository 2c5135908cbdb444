/**
 * The spec's account locking for server admins (v1.18, admin.yaml):
 * `GET|PUT /_matrix/client/v1/admin/lock/{userId}`. The same lock as Synapse's admin API `locked`
 * (users.ts): a locked user's logins are refused with 401 `M_USER_LOCKED`. Authorisation is checked
 * before the account is looked up, so non-admins cannot learn which users exist.
 * Suspension (`/admin/suspend`) is not offered: Axon has no read-only account mode yet.
 */
import { MatrixError, errors } from '../../http/errors';
import type { Front, Request } from '../../http/server';
import { isValidUserId, serverOf } from '../../protocol/identifiers';
import { askUser, jsonBody, readAccount } from '../client/accounts-common';
import type { ApiContext } from '../context';
import { requireAdmin } from './common';

const PATH = '/_matrix/client/v1/admin/lock/:userId';

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
}
