/**
 * Room aliases (directory.yaml): `PUT/GET/DELETE /directory/room/{roomAlias}` and
 * `GET /rooms/{roomId}/aliases`. A local alias lives in the room-family shard its name hashes
 * to (one read resolves it, on a Redis Cluster too), and the room keeps the set of its local
 * aliases in its own shard. Creating uses SET NX, so two clients racing for a name cannot both
 * win. Aliases on other servers need a federation directory query, which comes with federation.
 */
import type { Front } from '../../http/server';
import { MatrixError, errors } from '../../http/errors';
import { namedLevel, requiredEventLevel, userPowerLevel } from '../../protocol/power-levels';
import { lookupFromStateMap, toPdu } from '../../protocol/pdu';
import { requireRoomVersion } from '../../protocol/room-versions';
import type { JsonObject } from '../../protocol/json';
import { decode, encode } from '../../store/codec';
import { aliasData, roomData } from '../../store/keys';
import { requireUser } from './auth';
import type { ApiContext } from './context';
import { aliasShard, bodyObject, clientRoute, historyVisibility, parseAlias, requireRoomId, roomShard } from './room-common';

interface AliasRecord {
  /** Room id. */
  r: string;
  /** Who created the alias. */
  c: string;
}

export class AliasStore {
  constructor(private readonly ctx: ApiContext) {}

  private key(alias: string): string {
    return aliasShard(this.ctx, alias).data(aliasData.alias(alias));
  }

  async get(alias: string): Promise<AliasRecord | null> {
    const blob = await this.ctx.redis.getBuffer(this.key(alias));
    return blob ? decode<AliasRecord>(blob) : null;
  }

  /** Create the alias; false when the name is taken. */
  async create(alias: string, roomId: string, creator: string): Promise<boolean> {
    const ok = await this.ctx.redis.set(this.key(alias), encode({ r: roomId, c: creator } satisfies AliasRecord), 'NX');
    if (ok !== 'OK') return false;
    await this.ctx.redis.sadd(roomShard(this.ctx, roomId).data(roomData.aliases(roomId)), alias);
    return true;
  }

  async delete(alias: string, roomId: string): Promise<void> {
    await this.ctx.redis.del(this.key(alias));
    await this.ctx.redis.srem(roomShard(this.ctx, roomId).data(roomData.aliases(roomId)), alias);
  }

  async ofRoom(roomId: string): Promise<string[]> {
    return (await this.ctx.redis.smembers(roomShard(this.ctx, roomId).data(roomData.aliases(roomId)))).sort();
  }
}

/** Resolve `#alias:server` or pass a room id through. Unknown or remote aliases: 404. */
export async function resolveRoomIdOrAlias(ctx: ApiContext, aliases: AliasStore, idOrAlias: string | undefined): Promise<string> {
  if (idOrAlias?.startsWith('#')) {
    const { alias, server } = parseAlias(idOrAlias);
    if (server !== ctx.config.serverName) throw errors.notFound(`Room alias ${alias} is on another server; resolving it needs federation, which this server does not do yet`);
    const rec = await aliases.get(alias);
    if (!rec) throw errors.notFound(`Room alias ${alias} not found`);
    return rec.r;
  }
  return requireRoomId(idOrAlias);
}

/** Power levels as of the room's current state: a user's level, and what an action or state event needs. */
export async function currentPower(ctx: ApiContext, roomId: string): Promise<{ userLevel(userId: string): number; redact: number; stateLevel(type: string): number } | null> {
  const meta = await ctx.rooms.meta(roomId);
  if (!meta?.version) return null;
  const version = requireRoomVersion(meta.version);
  const ids = await ctx.rooms.currentStateIds(roomId);
  const wanted = ['m.room.create\u0000', 'm.room.power_levels\u0000'].map((k) => ids.get(k)).filter((id): id is string => !!id);
  const events = new Map((await ctx.rooms.events(roomId, wanted)).map((e) => [e.eventId, toPdu(e.event, version, e.eventId)]));
  const st = lookupFromStateMap(ids, (id) => events.get(id));
  return {
    userLevel: (userId) => userPowerLevel(userId, st, version),
    redact: namedLevel('redact', st, version),
    stateLevel: (type) => requiredEventLevel(type, true, st, version),
  };
}

/** Whether `userId` could send `type` as state in the room now. */
export async function canSendState(ctx: ApiContext, roomId: string, userId: string, type: string): Promise<boolean> {
  const power = await currentPower(ctx, roomId);
  return !!power && power.userLevel(userId) >= power.stateLevel(type);
}

export function registerAliasRoutes(front: Front, ctx: ApiContext, aliases: AliasStore): void {
  clientRoute(front, 'PUT', '/directory/room/:alias', async (req) => {
    const user = await requireUser(ctx, req);
    const { alias, server } = parseAlias(req.params.alias);
    if (server !== ctx.config.serverName) throw errors.invalidParam('Room aliases can only be created on their own server');
    const body = bodyObject(req);
    const roomId = typeof body.room_id === 'string' ? requireRoomId(body.room_id) : (() => { throw errors.badJson('room_id must be a room id'); })();
    if (!(await ctx.rooms.meta(roomId))) throw errors.notFound('Unknown room');
    // As Synapse does by default: only members may point aliases at a room.
    if ((await ctx.rooms.membership(roomId, user.userId)) !== 'join') throw new MatrixError(403, 'M_FORBIDDEN', 'You must be in the room to give it an alias');
    if (!(await aliases.create(alias, roomId, user.userId))) throw new MatrixError(409, 'M_UNKNOWN', `Room alias ${alias} already exists`);
    return { body: {} };
  });

  clientRoute(front, 'GET', '/directory/room/:alias', async (req) => {
    const { alias, server } = parseAlias(req.params.alias);
    if (server !== ctx.config.serverName) throw errors.notFound(`Room alias ${alias} is on another server; resolving it needs federation, which this server does not do yet`);
    const rec = await aliases.get(alias);
    if (!rec) throw errors.notFound(`Room alias ${alias} not found`);
    return { body: { room_id: rec.r, servers: [ctx.config.serverName] } satisfies JsonObject };
  });

  clientRoute(front, 'DELETE', '/directory/room/:alias', async (req) => {
    const user = await requireUser(ctx, req);
    const { alias } = parseAlias(req.params.alias);
    const rec = await aliases.get(alias);
    if (!rec) throw errors.notFound(`Room alias ${alias} not found`);
    // The alias's creator, or whoever may change the room's canonical alias.
    if (rec.c !== user.userId && !(await canSendState(ctx, rec.r, user.userId, 'm.room.canonical_alias'))) {
      throw new MatrixError(403, 'M_FORBIDDEN', 'You may not delete this alias');
    }
    await aliases.delete(alias, rec.r);
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
