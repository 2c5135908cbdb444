/**
 * The admin API's user list, `GET /_synapse/admin/v2/users` and `/v3/users` (Synapse's parameters:
 * from, limit, name, user_id, guests, deactivated, locked, admins, order_by, dir; answers `users`,
 * `total` and `next_token` when more follow).
 *
 * Axon has no table of users: each user shard keeps a sorted set of its users' ids
 * (`userData.registeredUsers`, written by the user actor at registration, which may only write its
 * own shard). A listing reads every shard's set and the listed accounts with pipelined commands
 * (one round trip per step, whatever the shard count), then filters, sorts and pages in memory.
 * That is O(users) per request: fine for the tens of thousands an admin page lists, and the place
 * to add a maintained sort index if a server grows past that.
 */
import { errors } from '../../http/errors';
import type { Front, Request } from '../../http/server';
import type { JsonObject } from '../../protocol/json';
import { decode } from '../../store/codec';
import { userData } from '../../store/keys';
import { userKey } from '../../store/shard-keys';
import type { AccountRecord, DeviceJson } from '../../../actors/user';
import type { ApiContext } from '../context';
import { queryBool, queryInt, requireAdmin } from './common';

const ORDERS = ['name', 'displayname', 'is_guest', 'admin', 'deactivated', 'user_type', 'avatar_url', 'shadow_banned', 'creation_ts', 'last_seen_ts', 'locked'] as const;
type Order = (typeof ORDERS)[number];

interface Listed {
  name: string;
  user_type: null;
  is_guest: boolean;
  admin: boolean;
  deactivated: boolean;
  shadow_banned: boolean;
  displayname: string | null;
  avatar_url: string | null;
  creation_ts: number;
  erased: boolean;
  last_seen_ts: number | null;
  locked: boolean;
}

/** Every local user id, from every user shard's list, in one pipelined round trip. */
export async function allUserIds(ctx: ApiContext): Promise<string[]> {
  const p = ctx.redis.pipeline();
  for (let s = 0; s < ctx.shardCounts.user; s++) p.zrange(ctx.keys.shard('user', s).data(userData.registeredUsers()), 0, -1);
  const out: string[] = [];
  for (const [err, ids] of (await p.exec()) ?? []) {
    if (err) throw err;
    out.push(...(ids as string[]));
  }
  return out;
}

async function listUsers(ctx: ApiContext, req: Request, v3: boolean) {
  await requireAdmin(ctx, req);
  const from = queryInt(req, 'from', 0);
  const limit = queryInt(req, 'limit', 100);
  const name = req.query.name?.toLowerCase();
  const userIdPart = req.query.user_id?.toLowerCase();
  queryBool(req, 'guests'); // there are no guests: both answers list everyone
  const deactivatedParam = queryBool(req, 'deactivated');
  // v2: deactivated users only with `deactivated=true`; v3: `true` only them, `false` none of them.
  const deactivated = v3 ? deactivatedParam : deactivatedParam ? undefined : false;
  const locked = queryBool(req, 'locked') ?? false;
  const admins = queryBool(req, 'admins');
  const orderBy = (req.query.order_by ?? 'name') as Order;
  if (!ORDERS.includes(orderBy)) throw errors.invalidParam(`Query parameter 'order_by' must be one of [${ORDERS.map((o) => `'${o}'`).join(', ')}]`);
  const dir = req.query.dir ?? 'f';
  if (dir !== 'f' && dir !== 'b') throw errors.invalidParam("Query parameter 'dir' must be one of ['b', 'f']");

  const ids = await allUserIds(ctx);
  const p = ctx.redis.pipeline();
  for (const id of ids) {
    p.getBuffer(userKey(ctx, id, userData.account(id)));
    p.hmget(userKey(ctx, id, userData.profile(id)), 'displayname', 'avatar_url');
    p.hvals(userKey(ctx, id, userData.devices(id)));
  }
  const results = (await p.exec()) ?? [];
  const users: Listed[] = [];
  ids.forEach((id, i) => {
    const [accErr, blob] = results[i * 3]!;
    if (accErr) throw accErr;
    if (!blob) return;
    const account = decode<AccountRecord>(blob as Buffer);
    const [displayname, avatarUrl] = (results[i * 3 + 1]![1] as (string | null)[]) ?? [null, null];
    let lastSeen: number | null = null;
    for (const json of (results[i * 3 + 2]![1] as string[]) ?? []) {
      try {
        const ts = (JSON.parse(json) as DeviceJson).last_seen_ts;
        if (ts !== undefined && (lastSeen === null || ts > lastSeen)) lastSeen = ts;
      } catch {
        // an unreadable device record says nothing about when the user was seen
      }
    }
    users.push({
      name: id, user_type: null, is_guest: false, admin: account.a === 1, deactivated: account.x === 1, shadow_banned: false,
      displayname: displayname ?? null, avatar_url: avatarUrl ?? null, creation_ts: account.c, erased: account.e === 1, last_seen_ts: lastSeen, locked: account.l === 1,
    });
  });

  const localpart = (id: string) => id.slice(1, id.lastIndexOf(':'));
  const matching = users.filter((u) => {
    if (name !== undefined && name !== '') {
      if (!localpart(u.name).includes(name) && !(u.displayname ?? '').toLowerCase().includes(name)) return false;
    } else if (userIdPart !== undefined && userIdPart !== '' && !u.name.toLowerCase().includes(userIdPart)) return false;
    if (deactivated !== undefined && u.deactivated !== deactivated) return false;
    if (!locked && u.locked) return false;
    if (admins !== undefined && u.admin !== admins) return false;
    return true;
  });
  const key = orderBy === 'name' ? null : orderBy;
  const cmpValues = (a: unknown, b: unknown): number => {
    // Nulls first going forwards, as Synapse on SQLite orders them.
    if (a === b) return 0;
    if (a === null || a === undefined) return -1;
    if (b === null || b === undefined) return 1;
    return (a as number | string | boolean) < (b as number | string | boolean) ? -1 : 1;
  };
  const sign = dir === 'b' ? -1 : 1;
  matching.sort((a, b) => {
    const primary = key ? sign * cmpValues(a[key], b[key]) : sign * cmpValues(a.name, b.name);
    return primary !== 0 ? primary : cmpValues(a.name, b.name);
  });
  const page = matching.slice(from, from + limit);
  const body: JsonObject = { users: page as unknown as JsonObject[], total: matching.length };
  if (from + limit < matching.length) body.next_token = String(from + page.length);
  return { body };
}

export function registerAdminUserListRoutes(front: Front, ctx: ApiContext): void {
  front.route('GET', '/_synapse/admin/v2/users', (req) => listUsers(ctx, req, false));
  front.route('GET', '/_synapse/admin/v3/users', (req) => listUsers(ctx, req, true));
}
