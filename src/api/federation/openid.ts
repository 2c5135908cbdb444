// GET /_matrix/federation/v1/openid/userinfo?access_token={token}
/**
 * Exchanges an OpenID token (issued by `/user/{userId}/openid/request_token`, see
 * src/api/client/openid.ts) for the user it was issued to: `{ sub }`. Called by third parties
 * (integration managers), not by homeservers, so it is not X-Matrix authenticated. An unknown or
 * expired token is 401 `M_UNKNOWN_TOKEN`; no token at all is 401 `M_MISSING_TOKEN` (as Synapse).
 */
import { MatrixError } from '../../http/errors';
import type { Front } from '../../http/server';
import { openIdTokenOwner } from '../client/openid';
import type { FederationContext } from './context';

export function registerOpenIdUserInfoRoute(front: Front, ctx: FederationContext): void {
  front.route('GET', '/_matrix/federation/v1/openid/userinfo', async (req) => {
    const token = req.query.access_token;
    if (token === undefined) throw new MatrixError(401, 'M_MISSING_TOKEN', 'Access token required');
    const userId = await openIdTokenOwner(ctx.api, token);
    if (userId === null) throw new MatrixError(401, 'M_UNKNOWN_TOKEN', 'Access token unknown or expired');
    return { body: { sub: userId } };
  });
}
