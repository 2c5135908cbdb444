/**
 * User-interactive authentication (the spec's "User-interactive authentication API"): an endpoint
 * names its flows (lists of stages); a request without `auth` gets 401 with the flows and a new
 * session; each request with `auth` completes one stage of the session; when some flow's stages
 * are all complete the request goes through, and the session is used up.
 *
 * Sessions are kept in Redis (any front may see the next request), expire after 15 minutes, and
 * are bound to what they were started for (the purpose and, once known, the user): a session
 * started to change a password cannot be spent deleting a device.
 */
import { randomBytes } from 'node:crypto';
import { MatrixError } from '../../http/errors';
import type { JsonObject } from '../../protocol/json';
import { decode, encode } from '../../store/codec';
import type { ApiContext } from '../context';
import { localUserId, readAccount } from './accounts-common';
import { dummyHash, verifyPassword } from './passwords';

const SESSION_TTL_MS = 15 * 60 * 1000;

export interface UiaSession {
  /** Stages completed. */
  c: string[];
  /** What the session is for (`register`, `password`, `deactivate`, `delete_devices`). */
  p: string;
  /** The user it is for (absent for registration). */
  u?: string;
  /** What stages noted for the request (the registration token a registration spends). */
  d?: Record<string, string>;
}

/** A completed session: its id and what its stages noted. */
export interface UiaOutcome {
  session: string;
  data: Record<string, string>;
}

export interface UiaRequest {
  purpose: string;
  /** The authenticated user the request is for (absent for registration). */
  userId?: string;
  flows: string[][];
  /**
   * Checks one stage's auth dict; throws a MatrixError (e.g. M_FORBIDDEN) when it fails. May
   * return data to keep in the session for the request (UiaOutcome.data).
   */
  checkStage(stage: string, auth: JsonObject, session: string): Promise<void | Record<string, string>>;
}

/** The part of a 401 that tells the client how to authenticate. */
/**
 * The first 401 of user-interactive auth: the flows, params and session alone. `errcode` and
 * `error` say that an attempt failed (the spec), so they come only with later challenges (as Synapse).
 */
class FirstChallenge extends MatrixError {
  constructor(private readonly body: Record<string, unknown>) {
    super(401, 'M_UNAUTHORIZED', 'Additional authentication is required', body);
  }

  override toJSON(): Record<string, unknown> {
    return { ...this.body };
  }
}

function challenge(flows: string[][], session: string, completed: string[]): Record<string, unknown> {
  return { flows: flows.map((stages) => ({ stages })), params: {}, session, completed };
}

/** Whether every stage of some flow is complete. */
export function flowComplete(flows: string[][], completed: string[]): boolean {
  return flows.some((stages) => stages.every((s) => completed.includes(s)));
}

/** Whether `stage` may be done now: it is the next stage of some flow that `completed` follows. */
export function stageAllowed(flows: string[][], completed: string[], stage: string): boolean {
  return flows.some((stages) => completed.every((s, i) => stages[i] === s) && stages[completed.length] === stage);
}

/** Run user-interactive auth for a request body; returns when it is complete, else throws the 401. */
export async function requireUia(ctx: ApiContext, body: JsonObject, r: UiaRequest): Promise<UiaOutcome> {
  const auth = body.auth;
  const key = (id: string) => ctx.keys.uiaSession(id);
  const save = (id: string, s: UiaSession) => ctx.redis.set(key(id), encode(s), 'PX', SESSION_TTL_MS);
  const newSession = async (): Promise<[string, UiaSession]> => {
    const id = randomBytes(18).toString('base64url');
    const s: UiaSession = { c: [], p: r.purpose, ...(r.userId ? { u: r.userId } : {}) };
    await save(id, s);
    return [id, s];
  };
  if (auth === undefined || auth === null) {
    const [id] = await newSession();
    throw new FirstChallenge({ flows: r.flows.map((stages) => ({ stages })), params: {}, session: id });
  }
  if (typeof auth !== 'object' || Array.isArray(auth)) throw new MatrixError(400, 'M_BAD_JSON', 'auth must be an object');
  let id: string;
  let session: UiaSession;
  if (auth.session === undefined) {
    [id, session] = await newSession();
  } else {
    if (typeof auth.session !== 'string') throw new MatrixError(400, 'M_BAD_JSON', 'auth.session must be a string');
    id = auth.session;
    const blob = await ctx.redis.getBuffer(key(id));
    if (!blob) throw new MatrixError(400, 'M_UNKNOWN', 'Unknown or expired authentication session');
    session = decode<UiaSession>(blob);
    if (session.p !== r.purpose || session.u !== r.userId) throw new MatrixError(403, 'M_FORBIDDEN', 'This authentication session was started for another request');
  }
  if (typeof auth.type !== 'string') {
    // Only a session id: the client asks where it stands.
    if (flowComplete(r.flows, session.c)) return done(ctx, id, session);
    throw new MatrixError(401, 'M_UNAUTHORIZED', 'Additional authentication is required', challenge(r.flows, id, session.c));
  }
  const stage = auth.type;
  if (!session.c.includes(stage)) {
    if (!stageAllowed(r.flows, session.c, stage)) {
      throw new MatrixError(401, 'M_UNAUTHORIZED', `Authentication stage ${stage} is not expected now`, challenge(r.flows, id, session.c));
    }
    let noted: void | Record<string, string>;
    try {
      noted = await r.checkStage(stage, auth, id);
    } catch (e) {
      if (e instanceof MatrixError) throw new MatrixError(401, e.errcode, e.message, { ...e.extra, ...challenge(r.flows, id, session.c) });
      throw e;
    }
    session = { ...session, c: [...session.c, stage], ...(noted ? { d: { ...session.d, ...noted } } : {}) };
  }
  if (flowComplete(r.flows, session.c)) return done(ctx, id, session);
  await save(id, session);
  throw new MatrixError(401, 'M_UNAUTHORIZED', 'Additional authentication is required', challenge(r.flows, id, session.c));
}

async function done(ctx: ApiContext, id: string, session: UiaSession): Promise<UiaOutcome> {
  // A completed session authorises one request.
  await ctx.redis.del(ctx.keys.uiaSession(id));
  return { session: id, data: session.d ?? {} };
}

export const UIA_SESSION_TTL_MS = SESSION_TTL_MS;

/** The `m.login.password` stage for an authenticated user: the identifier must name them, the password must match. */
export async function checkPasswordStage(ctx: ApiContext, userId: string, auth: JsonObject): Promise<void> {
  const who = identifiedUser(auth);
  const password = auth.password;
  if (typeof password !== 'string') throw new MatrixError(400, 'M_MISSING_PARAM', 'auth.password is required');
  const named = who === null ? null : localUserId(ctx, who);
  const account = named === userId ? await readAccount(ctx, userId) : null;
  const ok = await verifyPassword(password, account?.h ?? (await dummyHash()));
  if (!ok || !account || account.x) throw new MatrixError(403, 'M_FORBIDDEN', 'Invalid password');
}

/** The user named by an auth dict or login body: `identifier` (m.id.user) or the legacy `user`. */
export function identifiedUser(body: JsonObject): string | null {
  const id = body.identifier;
  if (id && typeof id === 'object' && !Array.isArray(id)) {
    if (id.type !== 'm.id.user') return null;
    return typeof id.user === 'string' ? id.user : null;
  }
  return typeof body.user === 'string' ? body.user : null;
}
