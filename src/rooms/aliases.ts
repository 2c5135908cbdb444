/**
 * The front's view of local room aliases (the routes: src/api/client/aliases.ts): reads of the
 * alias records, changes through the alias actors (actors/alias.ts), and resolving an alias to
 * a room id. Used by the alias routes and by the createRoom, join and upgrade workflows.
 */
import { randomBytes } from 'node:crypto';
import { MatrixError, errors } from '../http/errors';
import { parseAlias, requireRoomId } from '../http/params';
import { decode } from '../store/codec';
import { aliasData, roomData } from '../store/keys';
import { aliasShard, roomShard } from '../store/shard-keys';
import type { AliasMessage, AliasRecord, AliasReply, AliasReserveReply } from '../../actors/alias';
import type { RoomMessage } from './model';
import type { ApiContext } from '../api/context';
import { askRoomFamily } from './ask';
import type { Appservice } from '../appservice/registration';

/**
 * May this requester create or delete `alias`? As Synapse: an appservice (by its as_token) only
 * within its alias namespace; anyone else not inside an appservice's exclusive alias namespace,
 * unless they are that appservice's sender. 400 M_EXCLUSIVE otherwise.
 */
export function requireAliasNotReserved(ctx: ApiContext, alias: string, requester: { userId: string; appservice?: Appservice }): void {
  const registry = ctx.appservices?.registry;
  if (!registry) return;
  if (requester.appservice) {
    if (!requester.appservice.isInterestedInAlias(alias)) throw new MatrixError(400, 'M_EXCLUSIVE', 'This application service has not reserved this kind of alias.');
    return;
  }
  for (const as of registry.interestedInAlias(alias)) {
    if (requester.userId === as.senderUserId) return;
    if (as.isExclusiveAlias(alias)) throw new MatrixError(400, 'M_EXCLUSIVE', 'This alias is reserved by an application service.');
  }
}

/** The front's view of aliases: reads of the records, and changes through the alias actors. */
export class AliasStore {
  constructor(private readonly ctx: ApiContext) {}

  private key(alias: string): string {
    return aliasShard(this.ctx, alias).data(aliasData.alias(alias));
  }

  async get(alias: string): Promise<AliasRecord | null> {
    const blob = await this.ctx.redis.getBuffer(this.key(alias));
    return blob ? decode<AliasRecord>(blob) : null;
  }

  /**
   * `get`, and for a local alias nobody has, ask the appservices whose alias namespace holds it
   * (`GET /_matrix/app/v1/rooms/{alias}`): one that answers 200 has just made it (a bridge
   * creating the room for a channel on demand), so it is read again.
   */
  async resolve(alias: string): Promise<AliasRecord | null> {
    const rec = await this.get(alias);
    if (rec || !this.ctx.appservices) return rec;
    if (!(await this.ctx.appservices.queries.queryAlias(alias))) return null;
    return this.get(alias);
  }

  /**
   * Create the alias; a taken name (or one another createRoom holds) is refused with 409
   * M_UNKNOWN (the alias actor's answer). `token`: the reservation this request holds.
   */
  async create(alias: string, roomId: string, creator: string, token?: string): Promise<void> {
    await askRoomFamily<AliasReply>(this.ctx, 'alias', alias, { op: 'create', roomId, creator, ...(token !== undefined ? { token } : {}) } satisfies AliasMessage);
    await this.index(roomId, alias, true);
  }

  /**
   * Hold a free alias for a room about to be created (createRoom), for `ttlMs` at most; a taken
   * or held name is refused with 409 M_UNKNOWN. Answers the token that binds it (`create`).
   */
  async reserve(alias: string, creator: string, ttlMs: number): Promise<string> {
    const token = randomBytes(12).toString('base64url');
    await askRoomFamily<AliasReserveReply>(this.ctx, 'alias', alias, { op: 'reserve', creator, token, ttlMs } satisfies AliasMessage);
    return token;
  }

  /** End a hold (the room was not created). Best effort: a hold not released expires by itself. */
  async release(alias: string, token: string): Promise<void> {
    try {
      await askRoomFamily<AliasReserveReply>(this.ctx, 'alias', alias, { op: 'release', token } satisfies AliasMessage);
    } catch (e) {
      this.ctx.log.warn({ alias, err: (e as Error).message }, 'alias: could not release a reservation; it expires by itself');
    }
  }

  /**
   * Delete the alias. `force`: the front found the requester may delete it even though they did
   * not create it; `roomId`: the room that was checked in (the alias must still point at it).
   */
  async delete(alias: string, requester: string, opts: { force?: boolean; roomId?: string } = {}): Promise<AliasReply> {
    const msg: AliasMessage = { op: 'delete', requester, ...(opts.force ? { force: true } : {}), ...(opts.roomId !== undefined ? { roomId: opts.roomId } : {}) };
    const gone = await askRoomFamily<AliasReply>(this.ctx, 'alias', alias, msg);
    await this.index(gone.room_id, alias, false);
    return gone;
  }

  async ofRoom(roomId: string): Promise<string[]> {
    return (await this.ctx.redis.smembers(roomShard(this.ctx, roomId).data(roomData.aliases(roomId)))).sort();
  }

  /**
   * Tell the room to add or drop the alias in its alias set. Asked (not just told) so the
   * client's next read sees it; if the room does not answer in time the command is still in
   * its inbox and will be applied, so the alias change — already done — is not reported as failed.
   */
  private async index(roomId: string, alias: string, present: boolean): Promise<void> {
    try {
      await askRoomFamily(this.ctx, 'room', roomId, { op: 'alias_index', alias, present } satisfies RoomMessage);
    } catch (e) {
      if (!(e instanceof MatrixError)) throw e;
      this.ctx.log.warn({ room_id: roomId, alias, present, err: e.message }, 'alias: the room has not confirmed its alias set yet');
    }
  }
}

/** Resolve `#alias:server` or pass a room id through. Unknown or remote aliases: 404. */
export async function resolveRoomIdOrAlias(ctx: ApiContext, aliases: AliasStore, idOrAlias: string | undefined): Promise<string> {
  if (idOrAlias?.startsWith('#')) {
    const { alias, server } = parseAlias(idOrAlias);
    if (server !== ctx.config.serverName) throw errors.notFound(`Room alias ${alias} is on another server; resolving it needs federation, which this server does not do yet`);
    const rec = await aliases.resolve(alias);
    if (!rec) throw errors.notFound(`Room alias ${alias} not found`);
    return rec.r;
  }
  return requireRoomId(idOrAlias);
}
