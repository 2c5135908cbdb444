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
import { userData, type KeySpace } from '../../store/keys';
import { isCluster } from '../../store/redis';
import { userKey } from '../../store/shard-keys';
import { isValidUserId } from '../../protocol/identifiers';
import { ActorReplyError, EnqueueGuardError, type EnqueueGuard } from '../../runtime/actor-client';
import type { Appservice } from '../../appservice/registration';
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
  /**
   * The device. For an application service acting without `device_id` there is none (Synapse's
   * `device_id` None): the empty string, which names no device.
   */
  deviceId: string;
  accessToken: string;
  /** Set when the request was made with an application service's `as_token`. */
  appservice?: Appservice;
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

/**
 * Token → record key name, per process: every request hashes its token (SHA-256) to find the
 * record, and a client sends the same token with each of its many /sync and /send requests. Only
 * the name is cached, never the record: a revoked token is refused at once.
 */
const keyNames = new Map<string, string>();
const KEY_NAMES_MAX = 20_000;

/** Relative (to the user shard) key of a token record. */
export function tokenKeyName(token: string): string {
  let name = keyNames.get(token);
  if (name === undefined) {
    name = userData.token(tokenHash(token));
    if (keyNames.size >= KEY_NAMES_MAX) keyNames.clear();
    keyNames.set(token, name);
  }
  return name;
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

/** What resolving an access token reads: the user shards (and the per-user rate limit, when there is one). */
export type TokenContext = Pick<ApiContext, 'redis' | 'keys' | 'shardCounts' | 'limiter'>;

/** How userFromToken resolves: `allowLocked` lets a locked user through (logout); `rateLimited: false` takes nothing from the user's bucket (a request counted already). */
export interface TokenOptions {
  allowLocked?: boolean;
  rateLimited?: boolean;
}

/** Resolve the requester from the access token, or answer 401 as the spec says. */
export async function requireUser(ctx: ApiContext, req: Request, opts: TokenOptions = {}): Promise<Requester> {
  const token = bearerToken(req);
  const appservice = token ? ctx.appservices?.registry.findByAsToken(token) : undefined;
  if (appservice && token) return appserviceRequester(ctx, req, appservice, token);
  return userFromToken(ctx, token, opts);
}

/**
 * The requester an access token names, or 401 as the spec says: requireUser for a uWS request,
 * and for callers outside the client API's front (the operator dashboard on the metrics port).
 */
export async function userFromToken(ctx: TokenContext, token: string | null, opts: TokenOptions = {}): Promise<Requester> {
  if (!token) throw new MatrixError(401, 'M_MISSING_TOKEN', 'Missing access token');
  // An appservice's as_token is not an access token here: it acts through requireUser (identity
  // assertion needs the request), and the operator dashboard takes users' tokens only.
  const shard = tokenShard(token, ctx.shardCounts.user);
  if (shard === null || !token.startsWith('axo_')) throw new MatrixError(401, 'M_UNKNOWN_TOKEN', 'Unknown access token', { soft_logout: false });
  const key = ctx.keys.shard('user', shard).data(tokenKeyName(token));
  const blob = await ctx.redis.getBuffer(key);
  if (!blob) {
    recordCopies.get(ctx.keys)?.delete(token);
    throw new MatrixError(401, 'M_UNKNOWN_TOKEN', 'Unknown access token', { soft_logout: false });
  }
  const rec = decode<TokenRecord>(blob);
  // A copy of the bytes alone: the reply's Buffer is a view of the connection's read chunk (up to
  // tens of kB of /sync replies), which the copy would otherwise keep alive.
  keepRecordCopy(ctx.keys, token, { key, blob: Buffer.from(blob), rec });
  const refusal = recordRefusal(rec, opts);
  if (refusal) throw refusal;
  if (opts.rateLimited !== false) await ctx.limiter?.check('client', rec.u);
  return { userId: rec.u, deviceId: rec.d, accessToken: token, ...(rec.s === 1 ? { suspended: true } : {}) };
}

/** The 401 a token's record refuses a request with now, or null when it lets the request through. */
function recordRefusal(rec: TokenRecord, opts: TokenOptions): MatrixError | null {
  // An expired access token: the client should refresh, so its session is only soft-logged-out.
  if (rec.exp !== undefined && rec.exp <= Date.now()) return new MatrixError(401, 'M_UNKNOWN_TOKEN', 'Access token has expired', { soft_logout: true });
  // A locked user may only log out (as Synapse); the session is kept for when they are unlocked.
  if (rec.l === 1 && !opts.allowLocked) return new MatrixError(401, 'M_USER_LOCKED', 'User account has been locked', { soft_logout: true });
  return null;
}

/**
 * The last record read for each access token, per server (its KeySpace): what a guarded write
 * (`asGuardedUser`) authenticates from without reading the record again. Never trusted on its
 * own: that write is appended only while the record in Redis is still these bytes
 * (enqueue-many-6.lua), so a token revoked, or a user locked or suspended, before it is refused
 * as at once as when every request read the record first.
 */
interface RecordCopy {
  key: string;
  blob: Buffer;
  rec: TokenRecord;
}
const recordCopies = new WeakMap<KeySpace, Map<string, RecordCopy>>();
/** Copies kept per server; past it they are dropped all at once (they are read again at the next request). */
const RECORD_COPIES_MAX = 20_000;

function keepRecordCopy(keys: KeySpace, token: string, copy: RecordCopy): void {
  let copies = recordCopies.get(keys);
  if (!copies) recordCopies.set(keys, (copies = new Map()));
  else if (copies.size >= RECORD_COPIES_MAX && !copies.has(token)) copies.clear();
  copies.set(token, copy);
}

/**
 * Run a write `act` as the requester, saving the read of the token's record when this front has a
 * copy of it (the write's latency is one Redis round trip instead of two; issue 23): `act` gets
 * the requester from the copy and a guard to pass to its one actor ask (AskOptions `guard`) — the
 * ask is appended only while the record is unchanged — before which it writes nothing. When the
 * record changed (the token revoked, the user locked or suspended since the copy), nothing was
 * appended: the request runs again authenticated afresh, answered 401/403 as it would have been.
 * Whatever else `act` under the copy answers — an error, the rate limit's 429, or a result for
 * which no ask held the guard — is answered only once the token is confirmed by a read, so a
 * revoked token learns nothing but 401. Without a usable copy — none yet, a Cluster (the record
 * and the inbox are in different slots), an appservice token, or a copy that would refuse
 * (expired, locked) or restrict (suspended) the request, which the current record decides — `act`
 * runs after the usual read, without a guard.
 */
export async function asGuardedUser<T>(ctx: ApiContext, req: Request, act: (user: Requester, guard: EnqueueGuard | undefined) => Promise<T>): Promise<T> {
  const token = bearerToken(req);
  const copy = token && !isCluster(ctx.redis) && !ctx.appservices?.registry.findByAsToken(token) ? recordCopies.get(ctx.keys)?.get(token) : undefined;
  if (!token || !copy || copy.rec.s === 1 || recordRefusal(copy.rec, {})) return act(await requireUser(ctx, req), undefined);
  const rec = copy.rec;
  const guard: EnqueueGuard = { key: copy.key, value: copy.blob };
  let charged = false;
  let result: T;
  try {
    await ctx.limiter?.check('client', rec.u);
    charged = true;
    result = await act({ userId: rec.u, deviceId: rec.d, accessToken: token }, guard);
  } catch (e) {
    if (!(e instanceof EnqueueGuardError)) {
      await requireUser(ctx, req, { rateLimited: false });
      throw e;
    }
    recordCopies.get(ctx.keys)?.delete(token);
    let user: Requester;
    try {
      user = await requireUser(ctx, req, { rateLimited: false });
    } catch (refused) {
      // The unit the copy's user was charged was not theirs to pay: a revoked token's request.
      if (charged) await ctx.limiter?.refund('client', rec.u);
      throw refused;
    }
    return act(user, undefined);
  }
  if (!guard.held) await requireUser(ctx, req, { rateLimited: false });
  return result;
}

/**
 * Senders known to exist, per process: an appservice's sender needs no registration (as on
 * Synapse), so its account is made the first time it acts, and looked up only once here.
 */
const sendersMade = new WeakMap<Appservice, Promise<void>>();

/**
 * A request made with an appservice's `as_token` (Application Service API, "Identity assertion"):
 * it acts as its sender, or as `?user_id=` — a registered user in its user namespace (403
 * M_FORBIDDEN otherwise) — and with `?device_id=` (spec v1.17, MSC4326) as one of that user's
 * existing devices (400 M_UNKNOWN_DEVICE otherwise). Rate limited per user unless the
 * registration says `rate_limited: false`; the sender never is.
 */
async function appserviceRequester(ctx: ApiContext, req: Request, as: Appservice, token: string): Promise<Requester> {
  const asserted = req.query['user_id'];
  let userId = as.senderUserId;
  if (asserted !== undefined && asserted !== as.senderUserId) {
    if (!isValidUserId(asserted)) throw new MatrixError(400, 'M_INVALID_PARAM', 'user_id is not a valid user id');
    if (!as.isInterestedInUser(asserted)) throw new MatrixError(403, 'M_FORBIDDEN', `Application service cannot masquerade as this user (${asserted}).`);
    const account = await readAccountRecord(ctx, asserted);
    if (!account) throw new MatrixError(403, 'M_FORBIDDEN', `Application service has not registered this user (${asserted})`);
    userId = asserted;
  } else {
    await ensureSender(ctx, as);
  }
  const deviceParam = req.query['device_id'] ?? req.query['org.matrix.msc3202.device_id'];
  let deviceId = '';
  if (deviceParam !== undefined) {
    const exists = await ctx.redis.hexists(userKey(ctx, userId, userData.devices(userId)), deviceParam);
    if (!exists) throw new MatrixError(400, 'M_UNKNOWN_DEVICE', `Application service trying to use a device that doesn't exist ('${deviceParam}' for ${userId})`);
    deviceId = deviceParam;
  }
  // The sender is never limited (as Synapse); the others unless the registration says so.
  if (as.rateLimited && userId !== as.senderUserId) await ctx.limiter?.check('client', userId);
  return { userId, deviceId, accessToken: token, appservice: as };
}

async function readAccountRecord(ctx: ApiContext, userId: string): Promise<object | null> {
  const blob = await ctx.redis.getBuffer(userKey(ctx, userId, userData.account(userId)));
  return blob ? decode<object>(blob) : null;
}

/** Make the sender's account if it has none yet (no password: it only ever acts by as_token). */
function ensureSender(ctx: ApiContext, as: Appservice): Promise<void> {
  let made = sendersMade.get(as);
  if (!made) {
    made = (async () => {
      if (await readAccountRecord(ctx, as.senderUserId)) return;
      try {
        await ctx.actors.ask('user', 'user', as.senderUserId, { op: 'register', passwordHash: null, displayname: as.registration.senderLocalpart });
      } catch (e) {
        // Another front made it meanwhile.
        if (!(e instanceof ActorReplyError && e.errcode === 'M_USER_IN_USE')) throw e;
      }
    })();
    sendersMade.set(as, made);
    // A failure is not remembered: the next request tries again.
    made.catch(() => sendersMade.delete(as));
  }
  return made;
}
