/**
 * `GET /admin/whois/{userId}` (admin.yaml): a local user's devices and where they were last seen.
 * Server admins may ask about anyone; users about themselves (as Synapse allows).
 * Also served at Synapse's `/_synapse/admin/v1/whois/{userId}`. Each device is
 * one session with its latest connection (the user actor records the last login or refresh
 * address and time; user agents are not recorded, so they are left out).
 */
import { MatrixError, errors } from '../../http/errors';
import type { Front } from '../../http/server';
import { isValidUserId, serverOf } from '../../protocol/identifiers';
import { userData } from '../../store/keys';
import type { DeviceJson } from '../../../actors/user';
import { requireUser } from './auth';
import { clientRoute, readAccount } from './accounts-common';
import { userKey } from '../../store/shard-keys';
import type { ApiContext } from '../context';

export function registerWhoisRoutes(front: Front, ctx: ApiContext): void {
  clientRoute(front, 'GET', '/admin/whois/:userId', async (req) => {
    const me = await requireUser(ctx, req);
    const target = req.params.userId!;
    if (!isValidUserId(target)) throw errors.invalidParam('Not a user id');
    if (target !== me.userId && !(await readAccount(ctx, me.userId))?.a) throw new MatrixError(403, 'M_FORBIDDEN', 'You are not a server admin');
    if (serverOf(target) !== ctx.config.serverName) throw new MatrixError(400, 'M_UNKNOWN', 'Can only whois a local user');
    if (!(await readAccount(ctx, target))) throw errors.notFound('No such user');
    const stored = await ctx.redis.hgetall(userKey(ctx, target, userData.devices(target)));
    const devices: Record<string, { sessions: { connections: { ip?: string; last_seen?: number }[] }[] }> = {};
    for (const [deviceId, json] of Object.entries(stored)) {
      let d: DeviceJson;
      try {
        d = JSON.parse(json) as DeviceJson;
      } catch {
        continue;
      }
      const connection: { ip?: string; last_seen?: number } = {};
      if (d.last_seen_ip !== undefined) connection.ip = d.last_seen_ip;
      if (d.last_seen_ts !== undefined) connection.last_seen = d.last_seen_ts;
      devices[deviceId] = { sessions: [{ connections: Object.keys(connection).length ? [connection] : [] }] };
    }
    return { body: { user_id: target, devices } };
  });
  // Synapse's admin API path for the same (matrix-js-sdk's whoisSynapseUser calls it).
  front.alias('GET', '/_synapse/admin/v1/whois/:userId', '/_matrix/client/v3/admin/whois/:userId');
}
