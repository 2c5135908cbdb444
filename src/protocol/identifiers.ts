/**
 * Matrix identifiers (appendices: server names, user ids, room ids, event ids, room aliases).
 * Validation here is what the room logic needs: a shape check plus the 255-byte limit. User id
 * localparts are checked against the historical grammar (any printable ASCII but ':'), since
 * rooms contain users created before the stricter grammar.
 */
import { utf8Length } from './json';

const SERVER_NAME = /^(?:\[[0-9A-Fa-f:.]{2,45}\]|[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[A-Za-z0-9\-.]{1,255})(?::[0-9]{1,5})?$/;
const HISTORICAL_LOCALPART = /^[\x21-\x39\x3b-\x7e]+$/;
const STRICT_LOCALPART = /^[a-z0-9._=\-/+]+$/;

export function isValidServerName(s: string): boolean {
  return SERVER_NAME.test(s);
}

function splitId(id: string, sigil: string): [string, string] | null {
  if (!id.startsWith(sigil)) return null;
  const i = id.indexOf(':');
  if (i < 1) return null;
  return [id.slice(1, i), id.slice(i + 1)];
}

/** `@localpart:server`, at most 255 bytes, historical localpart grammar. */
export function isValidUserId(id: string): boolean {
  if (utf8Length(id) > 255) return false;
  const parts = splitId(id, '@');
  return !!parts && parts[0].length > 0 && HISTORICAL_LOCALPART.test(parts[0]) && isValidServerName(parts[1]);
}

/** The grammar new registrations must follow (lowercase, digits, `._=-/+`). */
export function isStrictLocalpart(localpart: string): boolean {
  return STRICT_LOCALPART.test(localpart);
}

/** The server part of `@user:server`, `$event:server`, `!room:server`, `#alias:server`. */
export function serverOf(id: string): string | null {
  const i = id.indexOf(':');
  return i > 0 && i < id.length - 1 ? id.slice(i + 1) : null;
}
