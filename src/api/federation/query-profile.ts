// GET /_matrix/federation/v1/query/profile?user_id={userId}&field={field}
/**
 * A local user's profile for another server: the whole profile, or one `field`. 404
 * `M_NOT_FOUND` for a user we do not have (or who is deactivated, or lacks the field), 400 for a
 * user of another server or a malformed query.
 */
import { MatrixError, errors } from '../../http/errors';
import type { Front } from '../../http/server';
import { isValidUserId, serverOf } from '../../protocol/identifiers';
import { localProfile } from '../client/profile';
import { federationRoute } from './auth';
import type { FederationContext } from './context';

export function registerQueryProfileRoute(front: Front, ctx: FederationContext): void {
  federationRoute(front, ctx, 'GET', '/_matrix/federation/v1/query/profile', async (req) => {
    const userId = req.query.user_id;
    if (userId === undefined) throw errors.missingParam('user_id is required');
    if (!isValidUserId(userId)) throw errors.invalidParam('user_id is not a user id');
    if (serverOf(userId) !== ctx.config.serverName) throw new MatrixError(400, 'M_INVALID_PARAM', 'user_id is not a user of this server');
    const field = req.query.field;
    if (field !== undefined && (field.length === 0 || field.length > 255)) throw errors.invalidParam('field must be a profile field name');
    const profile = await localProfile(ctx.api, userId);
    if (!profile) throw errors.notFound('No such user');
    if (field === undefined) return { body: profile };
    if (profile[field] === undefined) throw errors.notFound(`This user has no ${field}`);
    return { body: { [field]: profile[field]! } };
  });
}
