// POST /_matrix/client/v3/user/{userId}/openid/request_token
/**
 * OpenID tokens (client-server API, "OpenID"): a user asks for a token that proves to a third
 * party (an integration manager, a widget) who they are; the third party hands it to this
 * server's federation listener (`GET /_matrix/federation/v1/openid/userinfo`, served in
 * src/api/federation/openid.ts) and learns the user id. Tokens live for an hour (as Synapse's),
 * are stored only as their sha256 with a Redis expiry, and grant nothing else.
 */
import { randomBytes } from 'node:crypto';
import { MatrixError } from '../../http/errors';
import type { Front } from '../../http/server';
import type { ApiContext } from '../context';
import { requireUser, tokenHash } from './auth';
import { bodyObject, clientRoute } from './room-common';

export const OPENID_TOKEN_LIFETIME_MS = 3600 * 1000;

/** Issues a token for `userId`, valid for `lifetimeMs`. */
export async function issueOpenIdToken(ctx: Pick<ApiContext, 'redis' | 'keys'>, userId: string, lifetimeMs = OPENID_TOKEN_LIFETIME_MS): Promise<string> {
  const token = randomBytes(24).toString('base64url');
  await ctx.redis.set(ctx.keys.openIdToken(tokenHash(token)), userId, 'PX', lifetimeMs);
  return token;
}

/** The user an unexpired OpenID token was issued to, or null. */
export async function openIdTokenOwner(ctx: Pick<ApiContext, 'redis' | 'keys'>, token: string): Promise<string | null> {
  if (token === '' || token.length > 512) return null;
  return ctx.redis.get(ctx.keys.openIdToken(tokenHash(token)));
}

export function registerOpenIdRoutes(front: Front, ctx: ApiContext): void {
  clientRoute(front, 'POST', '/user/:userId/openid/request_token', async (req) => {
    const user = await requireUser(ctx, req);
    if (req.params.userId !== user.userId) throw new MatrixError(403, 'M_FORBIDDEN', 'Cannot request tokens for other users');
    // The body is an empty object by the spec; it must be JSON, its contents are not used.
    if (req.body.length) bodyObject(req);
    const token = await issueOpenIdToken(ctx, user.userId);
    return {
      body: {
        access_token: token,
        token_type: 'Bearer',
        matrix_server_name: ctx.config.serverName,
        expires_in: Math.floor(OPENID_TOKEN_LIFETIME_MS / 1000),
      },
    };
  });
}
