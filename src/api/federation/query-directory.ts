// GET /_matrix/federation/v1/query/directory?room_alias={alias}
/**
 * Another server resolves one of our room aliases (server-server API, "Room Aliases"):
 * `{ room_id, servers }`, the servers with a user joined to the room, this one first. An alias
 * of another server, or one we do not have, is 404 `M_NOT_FOUND`.
 */
import { MatrixError, errors } from '../../http/errors';
import type { Front } from '../../http/server';
import { serversInRoom } from '../../rooms/remote-join';
import { AliasStore } from '../../rooms/aliases';
import { federationRoute } from './auth';
import type { FederationContext } from './context';

export function registerQueryDirectoryRoute(front: Front, ctx: FederationContext): void {
  const aliases = new AliasStore(ctx.api);
  federationRoute(front, ctx, 'GET', '/_matrix/federation/v1/query/directory', async (req) => {
    const alias = req.query.room_alias;
    if (alias === undefined) throw errors.missingParam('room_alias is required');
    const m = /^#[^:]+:(.+)$/.exec(alias);
    if (!m) throw errors.invalidParam('Not a room alias');
    if (m[1] !== ctx.config.serverName) throw new MatrixError(404, 'M_NOT_FOUND', 'Room alias not found');
    const record = await aliases.resolve(alias);
    if (!record) throw new MatrixError(404, 'M_NOT_FOUND', 'Room alias not found');
    const others = (await serversInRoom(ctx.api.rooms, record.r)).filter((s) => s !== ctx.config.serverName);
    return { body: { room_id: record.r, servers: [ctx.config.serverName, ...others] } };
  });
}
