/**
 * Checks of ids and fields in requests, answering 400 with a Matrix error: room ids, user ids,
 * room aliases, optional string fields. Shared by the client and federation APIs and the
 * workflows they call (src/rooms/).
 */
import { errors } from './errors';
import { isValidServerName } from '../protocol/identifiers';
import { utf8Length, type JsonObject } from '../protocol/json';

export function requireRoomId(s: string | undefined): string {
  if (!s || !s.startsWith('!') || utf8Length(s) > 255) throw errors.invalidParam(`Not a room id: ${JSON.stringify(s ?? '')}`);
  return s;
}

export function requireUserIdParam(s: unknown, field = 'user_id'): string {
  if (typeof s !== 'string' || !/^@[^:]+:.+$/.test(s) || utf8Length(s) > 255) throw errors.badJson(`${field} must be a user id`);
  return s;
}

/** `#localpart:server`, at most 255 bytes (appendices: room aliases). */
export function parseAlias(s: string | undefined): { alias: string; server: string } {
  const m = s ? /^#([^:]+):(.+)$/.exec(s) : null;
  if (!s || !m || utf8Length(s) > 255 || !isValidServerName(m[2]!)) throw errors.invalidParam(`Not a room alias: ${JSON.stringify(s ?? '')}`);
  return { alias: s, server: m[2]! };
}

/** Optional string field of a body. */
export function optString(body: JsonObject, key: string): string | undefined {
  const v = body[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw errors.badJson(`${key} must be a string`);
  return v;
}
