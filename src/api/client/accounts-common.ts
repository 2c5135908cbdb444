/** What the account endpoints share: route registration under every prefix, asking the user actor, reading its records. */
import { randomBytes } from 'node:crypto';
import { MatrixError, errors } from '../../http/errors';
import type { Method } from '../../http/router';
import type { Front, Handler, Request } from '../../http/server';
import { isStrictLocalpart, isValidUserId } from '../../protocol/identifiers';
import { utf8Length, type JsonObject } from '../../protocol/json';
import { ActorReplyError, ActorTimeoutError } from '../../runtime/actor-client';
import { userKey } from '../../store/shard-keys';
import { decode } from '../../store/codec';
import { userData } from '../../store/keys';
import type { AccountRecord, UserMessage } from '../../../actors/user';
import type { Requester } from './auth';
import type { ApiContext } from '../context';

/** Register `suffix` under `/_matrix/client/<v>` for each version prefix (default: v3 and r0). */
export function clientRoute(front: Front, method: Method, suffix: string, handler: Handler, versions: string[] = ['v3', 'r0']): void {
  for (const v of versions) front.route(method, `/_matrix/client/${v}${suffix}`, handler);
}

/** Send a command to a user's actor; its rejections become Matrix errors. */
export async function askUser<R>(ctx: ApiContext, userId: string, body: UserMessage): Promise<R> {
  try {
    return await ctx.actors.ask<R>('user', 'user', userId, body);
  } catch (e) {
    if (e instanceof ActorReplyError) {
      const extra = e.errcode === 'M_UNKNOWN_TOKEN' ? { soft_logout: false } : {};
      throw new MatrixError(e.status, e.errcode, e.message, extra);
    }
    if (e instanceof ActorTimeoutError) throw new MatrixError(504, 'M_UNKNOWN', 'The account service did not answer in time; try again');
    throw e;
  }
}

/** A local account's record, or null when no such account was ever registered. */
export async function readAccount(ctx: Pick<ApiContext, 'redis' | 'keys' | 'shardCounts'>, userId: string): Promise<AccountRecord | null> {
  const blob = await ctx.redis.getBuffer(userKey(ctx, userId, userData.account(userId)));
  return blob ? decode<AccountRecord>(blob) : null;
}

/** The request body as a JSON object (an empty body counts as `{}` when `emptyOk`). */
export function jsonBody(req: Request, emptyOk = false): JsonObject {
  if (emptyOk && req.body.length === 0) return {};
  const v = req.json();
  // Valid JSON of the wrong shape (a list, a string) is M_BAD_JSON; M_NOT_JSON is for text that
  // does not parse (req.json() throws that), as the spec and Synapse use them.
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw errors.badJson('Request body must be a JSON object');
  return v as JsonObject;
}

/** An optional field of a given JSON type, or M_INVALID_PARAM. */
export function optional<T extends 'string' | 'boolean'>(body: JsonObject, name: string, type: T): (T extends 'string' ? string : boolean) | undefined {
  const v = body[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== type) throw errors.invalidParam(`${name} must be a ${type}`);
  return v as T extends 'string' ? string : boolean;
}

/** 403 unless the path's user id is the requester (account data, filters, profile writes). */
export function requireSelf(requester: Requester, userId: string | undefined, what: string): void {
  if (userId !== requester.userId) throw new MatrixError(403, 'M_FORBIDDEN', `Cannot access ${what} of other users`);
}

/**
 * A user id from what a client typed at login: a full user id of this server or a bare
 * localpart. Localparts are matched case-insensitively (registration only makes lowercase ones).
 * Null when it cannot name a local user.
 */
export function localUserId(ctx: ApiContext, input: string): string | null {
  const server = ctx.config.serverName;
  let localpart = input;
  if (input.startsWith('@')) {
    if (!isValidUserId(input) || !input.endsWith(`:${server}`)) return null;
    localpart = input.slice(1, input.length - server.length - 1);
  }
  localpart = localpart.toLowerCase();
  if (!localpart || !isStrictLocalpart(localpart)) return null;
  return `@${localpart}:${server}`;
}

/**
 * The user id a registration with `username` gets, or 400 M_INVALID_USERNAME. Capitals are
 * lower-cased rather than refused, as Synapse does (`/register` and `/register/available`).
 */
export function newUserId(ctx: ApiContext, given: string): string {
  const username = given.toLowerCase();
  if (!username) throw new MatrixError(400, 'M_INVALID_USERNAME', 'The username must not be empty');
  if (!isStrictLocalpart(username)) throw new MatrixError(400, 'M_INVALID_USERNAME', 'A username may only contain a-z, 0-9 and . _ = - / +');
  const userId = `@${username}:${ctx.config.serverName}`;
  if (utf8Length(userId) > 255) throw new MatrixError(400, 'M_INVALID_USERNAME', 'The user id would be longer than 255 bytes');
  return userId;
}

/** A device id as Synapse makes them: ten capital letters. */
export function newDeviceId(): string {
  const bytes = randomBytes(10);
  return Array.from(bytes, (b) => String.fromCharCode(65 + (b % 26))).join('');
}

/** A generated localpart for a registration without a username. */
export function newLocalpart(): string {
  const bytes = randomBytes(12);
  return `u${Array.from(bytes, (b) => 'abcdefghijklmnopqrstuvwxyz0123456789'[b % 36]).join('')}`;
}
