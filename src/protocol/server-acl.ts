/**
 * Server access control lists (`m.room.server_acl`; Client-Server API "Server Access Control
 * Lists (ACLs) for rooms", Server-Server API "Server Access Control Lists"). Pure: the caller
 * passes the content of the room's current `m.room.server_acl` state event (or null when the
 * room has none) and the name of the server asking.
 *
 * The spec's order, numbered as the event's schema numbers it:
 *   1. No `m.room.server_acl` event in the room state: allow.
 *   2. The server name is an IP address literal (v4 or v6) and `allow_ip_literals` is present
 *      and false: deny.
 *   3. The server name matches an entry of `deny`: deny.
 *   4. The server name matches an entry of `allow`: allow.
 *   5. Otherwise: deny.
 *
 * How the content is read (the schema's defaults; a malformed ACL still decides, as Synapse's
 * evaluator does, rather than failing open):
 * - The port is not considered: `evil.com`, `evil.com:8448` and `evil.com:1234` are one server.
 * - `allow` and `deny` are lists of case-insensitive globs (`*`, `?`); a missing or non-list
 *   value is the empty list, and entries that are not strings are skipped. So an ACL without
 *   `allow` denies everyone.
 * - `allow_ip_literals` defaults to true when missing or not a boolean.
 * - An IPv6 literal is a bracketed name (`[::1]`); an IPv4 literal is four dot-separated decimal
 *   numbers of at most 255 (leading zeros included, so `010.0.0.1` counts as one: denying too
 *   much is the safe side of a deny rule).
 * - A host longer than 255 characters is no valid server name: denied (this also bounds the work
 *   of matching it against every glob).
 *
 * Globs are matched by src/protocol/glob.ts, in time linear in the server name whatever the
 * globs a room's state holds.
 */
import { compileGlob, type Glob } from './glob';
import { isJsonObject, type JsonObject, type JsonValue } from './json';

/** The longest host (the server name without its port) this accepts, as the spec's grammar bounds it. */
const MAX_HOST_LENGTH = 255;

export interface ServerAcl {
  allowIpLiterals: boolean;
  allow: Glob[];
  deny: Glob[];
}

function globList(v: JsonValue | undefined): Glob[] {
  if (!Array.isArray(v)) return [];
  return v.filter((x): x is string => typeof x === 'string').map((p) => compileGlob(p, { caseInsensitive: true }));
}

/** An ACL event's content, read once (its globs compiled) for many checks. */
export function compileServerAcl(content: JsonObject): ServerAcl {
  return {
    allowIpLiterals: typeof content.allow_ip_literals === 'boolean' ? content.allow_ip_literals : true,
    allow: globList(content.allow),
    deny: globList(content.deny),
  };
}

/** The host part of a server name: without `:port` (an IPv6 literal keeps its brackets). */
export function serverNameHost(serverName: string): string {
  if (serverName.startsWith('[')) {
    const close = serverName.indexOf(']');
    return close < 0 ? serverName : serverName.slice(0, close + 1);
  }
  const colon = serverName.indexOf(':');
  return colon < 0 ? serverName : serverName.slice(0, colon);
}

/** Whether a host is an IP address literal: `[…]` (IPv6) or a dotted quad (IPv4). */
export function isIpLiteral(host: string): boolean {
  if (host.startsWith('[')) return true;
  const parts = host.split('.');
  return parts.length === 4 && parts.every((p) => /^[0-9]{1,3}$/.test(p) && Number(p) <= 255);
}

/** Whether a compiled ACL lets a server (`host` or `host:port`) take part in the room. */
export function serverAclAllowsCompiled(acl: ServerAcl, serverName: string): boolean {
  const host = serverNameHost(serverName);
  if (host.length === 0 || host.length > MAX_HOST_LENGTH) return false;
  // 2. IP literals, when the ACL says so.
  if (!acl.allowIpLiterals && isIpLiteral(host)) return false;
  // 3. The deny list wins over the allow list.
  if (acl.deny.some((g) => g.test(host))) return false;
  // 4. and 5. Allowed only when some allow entry matches.
  return acl.allow.some((g) => g.test(host));
}

/**
 * Whether the room's server ACL lets a server take part: `content` is the content of the room's
 * `m.room.server_acl` state event, or null/undefined when it has none (allow). A content that is
 * not an object is read as an empty one (deny everyone, as an ACL without `allow` does).
 */
export function serverAclAllows(content: JsonValue | null | undefined, serverName: string): boolean {
  // 1. No ACL event: allow.
  if (content === null || content === undefined) return true;
  return serverAclAllowsCompiled(compileServerAcl(isJsonObject(content) ? content : {}), serverName);
}
