/**
 * Synapse's admin API for registration tokens (`/_synapse/admin/v1/registration_tokens`): list
 * (`valid=true|false` filters), make (`/new`: a given `token` or a random one of `length`,
 * `uses_allowed`, `expiry_time`), read, change (`uses_allowed`, `expiry_time`) and delete, with
 * Synapse 1.163's fields and errors. The tokens and their counting: src/api/client/registration-tokens.ts.
 */
import { errors } from '../../http/errors';
import type { Front, Request } from '../../http/server';
import type { JsonObject } from '../../protocol/json';
import { jsonBody } from '../client/accounts-common';
import { createToken, deleteToken, generateToken, getToken, isValid, listTokens, TOKEN_PATTERN, updateToken } from '../client/registration-tokens';
import type { ApiContext } from '../context';
import { queryBool, requireAdmin } from './common';

const PATH = '/_synapse/admin/v1/registration_tokens';

const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v);

function usesAllowed(body: JsonObject): number | null {
  const v = body.uses_allowed ?? null;
  if (v !== null && !(isInt(v) && v >= 0)) throw errors.invalidParam('uses_allowed must be a non-negative integer or null');
  return v;
}

function expiryTime(body: JsonObject): number | null {
  const v = body.expiry_time ?? null;
  if (v !== null && !isInt(v)) throw errors.invalidParam('expiry_time must be an integer or null');
  if (v !== null && v < Date.now()) throw errors.invalidParam('expiry_time must not be in the past');
  return v;
}

const noSuchToken = (token: string) => errors.notFound(`No such registration token: ${token}`);

export function registerRegistrationTokenRoutes(front: Front, ctx: ApiContext): void {
  front.route('GET', PATH, async (req) => {
    await requireAdmin(ctx, req);
    const valid = queryBool(req, 'valid');
    const now = Date.now();
    const tokens = (await listTokens(ctx)).filter((t) => valid === undefined || isValid(t, now) === valid);
    return { body: { registration_tokens: tokens as unknown as JsonObject[] } };
  });

  front.route('POST', `${PATH}/new`, async (req) => {
    await requireAdmin(ctx, req);
    const body = jsonBody(req);
    let token: string;
    if ('token' in body) {
      const t = body.token;
      if (typeof t !== 'string') throw errors.invalidParam('token must be a string');
      if (t.length === 0 || t.length > 64) throw errors.invalidParam('token must not be empty and must not be longer than 64 characters');
      if (!TOKEN_PATTERN.test(t)) throw errors.invalidParam('token must consist only of characters matched by the regex [A-Za-z0-9-_]');
      token = t;
    } else {
      const length = body.length ?? 16;
      if (!isInt(length)) throw errors.invalidParam('length must be an integer');
      if (length <= 0 || length > 64) throw errors.invalidParam('length must be greater than zero and not greater than 64');
      token = await generateToken(ctx, length);
    }
    const uses = usesAllowed(body);
    const expiry = expiryTime(body);
    if (!(await createToken(ctx, token, uses, expiry))) throw errors.invalidParam(`Token already exists: ${token}`);
    return { body: { token, uses_allowed: uses, pending: 0, completed: 0, expiry_time: expiry } };
  });

  const tokenOf = (req: Request) => req.params.token ?? '';

  front.route('GET', `${PATH}/:token`, async (req) => {
    await requireAdmin(ctx, req);
    const t = await getToken(ctx, tokenOf(req));
    if (!t) throw noSuchToken(tokenOf(req));
    return { body: t as unknown as JsonObject };
  });

  front.route('PUT', `${PATH}/:token`, async (req) => {
    await requireAdmin(ctx, req);
    const body = jsonBody(req);
    const changes: { uses_allowed?: number | null; expiry_time?: number | null } = {};
    if ('uses_allowed' in body) changes.uses_allowed = usesAllowed(body);
    if ('expiry_time' in body) changes.expiry_time = expiryTime(body);
    const t = Object.keys(changes).length === 0 ? await getToken(ctx, tokenOf(req)) : await updateToken(ctx, tokenOf(req), changes);
    if (!t) throw noSuchToken(tokenOf(req));
    return { body: t as unknown as JsonObject };
  });

  front.route('DELETE', `${PATH}/:token`, async (req) => {
    await requireAdmin(ctx, req);
    if (!(await deleteToken(ctx, tokenOf(req)))) throw noSuchToken(tokenOf(req));
    return { body: {} };
  });
}
