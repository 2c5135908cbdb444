/** What the admin API's endpoints share: the admin check and the parsing of a local user id from the path. */
import { MatrixError, errors } from '../../http/errors';
import type { Request } from '../../http/server';
import { isValidUserId, serverOf } from '../../protocol/identifiers';
import { bearerToken, userFromToken, type Requester, type TokenContext } from '../client/auth';
import { readAccount } from '../client/accounts-common';
import type { ApiContext } from '../context';

/** The requester, when a server admin: 401 without a valid token, 403 `M_FORBIDDEN` otherwise (Synapse's wording). */
export async function requireAdmin(ctx: ApiContext, req: Request): Promise<Requester> {
  return adminFromToken(ctx, bearerToken(req));
}

/**
 * The admin check on a bare access token, for callers outside the client API's front (the operator
 * dashboard on the metrics port): the same answers as requireAdmin.
 */
export async function adminFromToken(ctx: TokenContext, token: string | null): Promise<Requester> {
  const me = await userFromToken(ctx, token);
  if (!(await readAccount(ctx, me.userId))?.a) throw new MatrixError(403, 'M_FORBIDDEN', 'You are not a server admin');
  return me;
}

/** The path's user id, which must be a valid id of this server (400 otherwise, as Synapse). */
export function localTarget(ctx: ApiContext, raw: string | undefined, what = 'Can only look up local users'): string {
  const userId = raw ?? '';
  if (!isValidUserId(userId)) throw errors.invalidParam('Not a valid user id');
  if (serverOf(userId) !== ctx.config.serverName) throw new MatrixError(400, 'M_UNKNOWN', what);
  return userId;
}

/** An optional boolean query parameter (`true`/`false`), 400 as Synapse otherwise. */
export function queryBool(req: Request, name: string): boolean | undefined {
  const raw = req.query[name];
  if (raw === undefined) return undefined;
  if (raw !== 'true' && raw !== 'false') throw errors.invalidParam(`Boolean query parameter '${name}' must be one of ['true', 'false']`);
  return raw === 'true';
}

/** An optional non-negative integer query parameter, 400 as Synapse otherwise. */
export function queryInt(req: Request, name: string, fallback: number): number {
  const raw = req.query[name];
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(Number(raw))) throw errors.invalidParam(`Query parameter '${name}' must be a non-negative integer`);
  return Number(raw);
}
