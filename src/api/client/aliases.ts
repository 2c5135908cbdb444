/**
 * Room aliases (directory.yaml): `PUT/GET/DELETE /directory/room/{roomAlias}` and
 * `GET /rooms/{roomId}/aliases`. Each local alias is an actor (actors/alias.ts) in the
 * room-family shard its name hashes to: it alone writes the alias's record, so two clients
 * racing for a name are ordered and only one wins, and one read of the record resolves the alias
 * (on a Redis Cluster too). The room keeps the set of its local aliases in its own shard; the
 * room actor maintains it (`alias_index`) when this front tells it, after the alias actor has
 * answered — eventually consistent, and idempotent (the alias store: src/rooms/aliases.ts).
 * Aliases on other servers need a federation directory query, which comes with federation.
 */
import type { Front } from '../../http/server';
import { MatrixError, errors } from '../../http/errors';
import type { JsonObject } from '../../protocol/json';
import { requireUser } from './auth';
import type { ApiContext } from '../context';
import { bodyObject, clientRoute } from './room-common';
import { parseAlias, requireRoomId } from '../../http/params';
import { requireAliasNotReserved, type AliasStore } from '../../rooms/aliases';
import { historyVisibility } from '../../rooms/visibility';
import { canSendState } from '../../rooms/power';

export function registerAliasRoutes(front: Front, ctx: ApiContext, aliases: AliasStore): void {
  clientRoute(front, 'PUT', '/directory/room/:alias', async (req) => {
    const user = await requireUser(ctx, req);
    const { alias, server } = parseAlias(req.params.alias);
    if (server !== ctx.config.serverName) throw errors.invalidParam('Room aliases can only be created on their own server');
    requireAliasNotReserved(ctx, alias, user);
    const body = bodyObject(req);
    const roomId = typeof body.room_id === 'string' ? requireRoomId(body.room_id) : (() => { throw errors.badJson('room_id must be a room id'); })();
    if (!(await ctx.rooms.meta(roomId))) throw errors.notFound('Unknown room');
    // As Synapse does by default: only members may point aliases at a room.
    if ((await ctx.rooms.membership(roomId, user.userId)) !== 'join') throw new MatrixError(403, 'M_FORBIDDEN', 'You must be in the room to give it an alias');
    // Taken: 409 M_UNKNOWN "Room alias … already exists", from the alias actor.
    await aliases.create(alias, roomId, user.userId);
    return { body: {} };
  });

  clientRoute(front, 'GET', '/directory/room/:alias', async (req) => {
    const { alias, server } = parseAlias(req.params.alias);
    if (server !== ctx.config.serverName) throw errors.notFound(`Room alias ${alias} is on another server; resolving it needs federation, which this server does not do yet`);
    const rec = await aliases.resolve(alias);
    if (!rec) throw errors.notFound(`Room alias ${alias} not found`);
    return { body: { room_id: rec.r, servers: [ctx.config.serverName] } satisfies JsonObject };
  });

  clientRoute(front, 'DELETE', '/directory/room/:alias', async (req) => {
    const user = await requireUser(ctx, req);
    const { alias } = parseAlias(req.params.alias);
    const rec = await aliases.get(alias);
    if (!rec) throw errors.notFound(`Room alias ${alias} not found`);
    requireAliasNotReserved(ctx, alias, user);
    // The alias's creator, or whoever may change the room's canonical alias (decided here: it
    // needs the room's power levels; the alias actor checks the creator itself).
    const force = rec.c !== user.userId;
    if (force && !(await canSendState(ctx, rec.r, user.userId, 'm.room.canonical_alias'))) {
      throw new MatrixError(403, 'M_FORBIDDEN', 'You may not delete this alias');
    }
    await aliases.delete(alias, user.userId, { force, roomId: rec.r });
    return { body: {} };
  });

  clientRoute(front, 'GET', '/rooms/:roomId/aliases', async (req) => {
    const user = await requireUser(ctx, req);
    const roomId = requireRoomId(req.params.roomId);
    const joined = (await ctx.rooms.membership(roomId, user.userId)) === 'join';
    if (!joined && (await historyVisibility(ctx, roomId)) !== 'world_readable') throw new MatrixError(403, 'M_FORBIDDEN', 'You are not in this room');
    return { body: { aliases: await aliases.ofRoom(roomId) } };
  });
}
