/**
 * Access tokens. A token names the user shard that owns it (`axo_<shard>_<random>`), so a front
 * finds it with one read on the right shard — on a Redis Cluster too — without a global index:
 * the user actor writes `tok:<sha256 of the token>` in its shard when it issues a token and
 * deletes it when the token is revoked. Only the hash is stored.
 */
import { createHash, randomBytes } from 'node:crypto';
import { MatrixError } from '../../http/errors';
import type { Request } from '../../http/server';
import { decode } from '../../store/codec';
import { shardOf } from '../../store/shards';
import { userData } from '../../store/keys';
import type { ApiContext } from '../context';

export interface TokenRecord {
  /** User id. */
  u: string;
  /** Device id. */
  d: string;
  /** Expiry (ms since epoch) for expiring access tokens; absent: never expires. */
  exp?: number;
  /** The refresh token this access token was issued with (revoked together). */
  rt?: string;
  /** 1 while the user is locked by an admin: requests answer 401 `M_USER_LOCKED`. */
  l?: 1;
  /** 1 while the user is suspended by an admin: writes answer 403 `M_USER_SUSPENDED` (refuseIfSuspended). */
  s?: 1;
}

export interface Requester {
  userId: string;
  deviceId: string;
  accessToken: string;
  /** Suspended by an admin: may read, leave and redact their own events, nothing else that writes. */
  suspended?: boolean;
}

/**
 * 403 `M_USER_SUSPENDED` for a suspended requester (spec v1.18 account suspension; the actions and
 * wording Synapse 1.163 refuses: sending, joining, knocking, inviting, membership other than
 * leaving, redacting others' events, profile changes).
 */
export function refuseIfSuspended(user: Requester, message: string): void {
  if (user.suspended) throw new MatrixError(403, 'M_USER_SUSPENDED', message);
}

const TOKEN = /^axo_(\d+)_[A-Za-z0-9_-]{20,}$/;

/** A new access or refresh token for a user (`kind` distinguishes them: `axo` / `axr`). */
export function newToken(userId: string, userShards: number, kind: 'axo' | 'axr' = 'axo'): string {
  return `${kind}_${shardOf(userId, userShards)}_${randomBytes(24).toString('base64url')}`;
}

export function tokenHash(token: string): string {
  return createHash('sha256').update(token).digest('base64url');
}

/** Relative (to the user shard) key of a token record. */
export function tokenKeyName(token: string): string {
  return userData.token(tokenHash(token));
}

/** The shard a token says it lives on, or null for a malformed token. */
export function tokenShard(token: string, userShards: number): number | null {
  const m = TOKEN.exec(token) ?? /^axr_(\d+)_[A-Za-z0-9_-]{20,}$/.exec(token);
  if (!m) return null;
  const shard = Number(m[1]);
  return shard < userShards ? shard : null;
}

/** The bearer token of a request: the Authorization header, or the deprecated `access_token` query parameter. */
export function bearerToken(req: Request): string | null {
  const header = req.headers['authorization'];
  if (header) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!m) throw new MatrixError(401, 'M_MISSING_TOKEN', 'Malformed Authorization header');
    return m[1]!;
  }
  return req.query['access_token'] ?? null;
}

/** Resolve the requester from the access token, or answer 401 as the spec says. */
export async function requireUser(ctx: ApiContext, req: Request, opts: { allowLocked?: boolean } = {}): Promise<Requester> {
  const token = bearerToken(req);
  if (!token) throw new MatrixError(401, 'M_MISSING_TOKEN', 'Missing access token');
  const shard = tokenShard(token, ctx.shardCounts.user);
  if (shard === null || !token.startsWith('axo_')) throw new MatrixError(401, 'M_UNKNOWN_TOKEN', 'Unknown access token', { soft_logout: false });
  const blob = await ctx.redis.getBuffer(ctx.keys.shard('user', shard).data(tokenKeyName(token)));
  if (!blob) throw new MatrixError(401, 'M_UNKNOWN_TOKEN', 'Unknown access token', { soft_logout: false });
  const rec = decode<TokenRecord>(blob);
  // An expired access token: the client should refresh, so its session is only soft-logged-out.
  if (rec.exp !== undefined && rec.exp <= Date.now()) throw new MatrixError(401, 'M_UNKNOWN_TOKEN', 'Access token has expired', { soft_logout: true });
  // A locked user may only log out (as Synapse); the session is kept for when they are unlocked.
  if (rec.l === 1 && !opts.allowLocked) throw new MatrixError(401, 'M_USER_LOCKED', 'User account has been locked', { soft_logout: true });
  await ctx.limiter?.check('client', rec.u);
  return { userId: rec.u, deviceId: rec.d, accessToken: token, ...(rec.s === 1 ? { suspended: true } : {}) };
}
