/**
 * Registration tokens an admin makes (Synapse's admin API `/_synapse/admin/v1/registration_tokens`,
 * src/api/admin/registration-tokens.ts) and registration spends (the `m.login.registration_token`
 * UIA stage, account.ts). A token allows `uses_allowed` registrations (null: any number) until
 * `expiry_time` (ms; null: never). As in Synapse, a use is `pending` from the moment a UIA session
 * passes the token stage until the registration completes (then `completed`), so two people racing
 * for the last use cannot both pass: the check and the hold are one Redis script
 * (src/store/scripts/registration-token-3.lua). A pending use held by an abandoned session lapses
 * when the session would have expired.
 *
 * Tokens listed in the configuration (`registration.tokens`) stay valid as they are: unlimited,
 * never expiring, not counted and not listed by the admin API.
 */
import { randomInt } from 'node:crypto';
import { runScript } from '../../store/redis';
import type { ApiContext } from '../context';

/** What the admin API answers for a token (Synapse's fields, in its order). */
export interface RegistrationTokenInfo {
  token: string;
  uses_allowed: number | null;
  pending: number;
  completed: number;
  expiry_time: number | null;
}

interface Definition {
  uses_allowed: number | null;
  expiry_time: number | null;
  /** Creation order (ms, then token), for listing in the order tokens were made. */
  n: number;
}

export const TOKEN_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-';
export const TOKEN_PATTERN = /^[A-Za-z0-9._~-]{1,64}$/;

function run(ctx: ApiContext, op: string, token: string, ...args: (string | number)[]): Promise<unknown> {
  return runScript(ctx.redis, 'registrationToken', [ctx.keys.registrationTokens(), ctx.keys.registrationTokensCompleted(), ctx.keys.registrationTokenPending(token)], [op, token, ...args]);
}

/** Whether a token is valid now: exists, not expired, not used up (pending uses count). */
export function isValid(t: RegistrationTokenInfo, now = Date.now()): boolean {
  if (t.expiry_time !== null && t.expiry_time < now) return false;
  return t.uses_allowed === null || t.pending + t.completed < t.uses_allowed;
}

/** Every admin-made token, in creation order. */
export async function listTokens(ctx: ApiContext): Promise<RegistrationTokenInfo[]> {
  const [defs, completed] = await Promise.all([ctx.redis.hgetall(ctx.keys.registrationTokens()), ctx.redis.hgetall(ctx.keys.registrationTokensCompleted())]);
  const tokens = Object.entries(defs).map(([token, json]) => ({ token, def: JSON.parse(json) as Definition }));
  tokens.sort((a, b) => a.def.n - b.def.n || (a.token < b.token ? -1 : 1));
  const now = Date.now();
  const p = ctx.redis.pipeline();
  for (const { token } of tokens) p.zcount(ctx.keys.registrationTokenPending(token), `(${now}`, '+inf');
  const pending = (await p.exec()) ?? [];
  return tokens.map(({ token, def }, i) => ({ token, uses_allowed: def.uses_allowed, pending: Number(pending[i]?.[1] ?? 0), completed: Number(completed[token] ?? 0), expiry_time: def.expiry_time }));
}

export async function getToken(ctx: ApiContext, token: string): Promise<RegistrationTokenInfo | null> {
  const now = Date.now();
  const [def, completed, pending] = await Promise.all([
    ctx.redis.hget(ctx.keys.registrationTokens(), token),
    ctx.redis.hget(ctx.keys.registrationTokensCompleted(), token),
    ctx.redis.zcount(ctx.keys.registrationTokenPending(token), `(${now}`, '+inf'),
  ]);
  if (def === null) return null;
  const d = JSON.parse(def) as Definition;
  return { token, uses_allowed: d.uses_allowed, pending, completed: Number(completed ?? 0), expiry_time: d.expiry_time };
}

/** A fresh random token of `length` characters that no token has yet. */
export async function generateToken(ctx: ApiContext, length: number): Promise<string> {
  for (;;) {
    let token = '';
    for (let i = 0; i < length; i++) token += TOKEN_CHARS[randomInt(TOKEN_CHARS.length)];
    if (!(await ctx.redis.hexists(ctx.keys.registrationTokens(), token))) return token;
  }
}

/** Make a token; false when it exists already. */
export async function createToken(ctx: ApiContext, token: string, usesAllowed: number | null, expiryTime: number | null): Promise<boolean> {
  const def: Definition = { uses_allowed: usesAllowed, expiry_time: expiryTime, n: Date.now() };
  return (await ctx.redis.hsetnx(ctx.keys.registrationTokens(), token, JSON.stringify(def))) === 1;
}

export async function updateToken(ctx: ApiContext, token: string, changes: Partial<Pick<Definition, 'uses_allowed' | 'expiry_time'>>): Promise<RegistrationTokenInfo | null> {
  // cjson cannot tell an empty object from an empty array; callers only come with a change.
  const out = await run(ctx, 'update', token, JSON.stringify(changes));
  return out ? getToken(ctx, token) : null;
}

export async function deleteToken(ctx: ApiContext, token: string): Promise<boolean> {
  return (await run(ctx, 'delete', token)) === 1;
}

/** Whether `token` lets someone register now (the validity endpoint): a configured token or a valid admin-made one. */
export async function tokenValidNow(ctx: ApiContext, token: string): Promise<boolean> {
  if (ctx.config.registration.tokens.includes(token)) return true;
  const t = await getToken(ctx, token);
  return t !== null && isValid(t);
}

/**
 * The UIA stage: hold one use of `token` for the session (until it expires, `ttlMs`). False when
 * the token is unknown, expired or used up, counting uses other sessions hold.
 */
export async function reserveToken(ctx: ApiContext, token: string, session: string, ttlMs: number): Promise<boolean> {
  if (ctx.config.registration.tokens.includes(token)) return true;
  return (await run(ctx, 'reserve', token, session, ttlMs)) === 1;
}

/** The session's registration went through: its pending use becomes a completed one. */
export async function completeToken(ctx: ApiContext, token: string, session: string): Promise<void> {
  if (ctx.config.registration.tokens.includes(token)) return;
  await run(ctx, 'complete', token, session);
}
