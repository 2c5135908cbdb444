/**
 * AliasActor: the single writer of one local room alias (actor id = the alias, e.g.
 * `#lobby:example.org`). It lives in the room-family shard the alias hashes to, so one read of
 * its record resolves the alias (on a Redis Cluster too), and two clients racing for a name are
 * ordered by its mailbox: the first `create` wins, the second is refused.
 *
 * Messages:
 * - `create` {roomId, creator}: point the free alias at a room; a taken alias is refused with
 *   409 M_UNKNOWN "Room alias … already exists" (directory.yaml);
 * - `delete` {requester, force?, roomId?}: remove it. Who may delete is the front's call (the
 *   alias's creator, or whoever may change the room's canonical alias — that needs the room's
 *   power levels): without `force` only the creator may; with `roomId`, only while the alias
 *   still points at that room (the room the front checked the power in).
 *
 * Fronts read the record (`aliasData.alias`) directly to resolve an alias. The room's own set of
 * its aliases (`roomData.aliases`) belongs to the room actor: the front tells it (`alias_index`)
 * once this actor has answered.
 */
import { ActorRejection, type ActorKind, type ActorMessage, type Decision, type ShellContext } from '../src/runtime/actor';
import { decode, encode } from '../src/store/codec';
import { aliasData } from '../src/store/keys';

/** The stored record of an alias (msgpack): what fronts read to resolve it. */
export interface AliasRecord {
  /** Room id. */
  r: string;
  /** Who created the alias. */
  c: string;
}

export interface AliasState {
  alias: string;
  /** null: the alias is free. */
  record: AliasRecord | null;
}

export type AliasMessage =
  | { op: 'create'; roomId: string; creator: string }
  /** `force`: the front found the requester may delete it anyway; `roomId`: the room it checked that in. */
  | { op: 'delete'; requester: string; force?: boolean; roomId?: string };

/** Both ops answer with the room the alias pointed at (create: now; delete: until now). */
export interface AliasReply {
  room_id: string;
  creator: string;
}

export function freeAlias(alias: string): AliasState {
  return { alias, record: null };
}

/** Pure: everything the alias actor does with a message. */
export function decideAlias(state: AliasState, msg: ActorMessage<AliasMessage>): Decision<AliasState, AliasReply> {
  const body = msg.body;
  const key = aliasData.alias(state.alias);
  switch (body?.op) {
    case 'create': {
      if (typeof body.roomId !== 'string' || !body.roomId.startsWith('!')) throw new ActorRejection('M_INVALID_PARAM', 'roomId must be a room id', 400);
      if (typeof body.creator !== 'string' || !body.creator.startsWith('@')) throw new ActorRejection('M_INVALID_PARAM', 'creator must be a user id', 400);
      if (state.record) throw new ActorRejection('M_UNKNOWN', `Room alias ${state.alias} already exists`, 409);
      const record: AliasRecord = { r: body.roomId, c: body.creator };
      return { state: { ...state, record }, reply: { room_id: record.r, creator: record.c }, writes: [{ cmd: 'SET', key, args: [encode(record)] }] };
    }
    case 'delete': {
      const record = state.record;
      if (!record || (body.roomId !== undefined && record.r !== body.roomId)) throw new ActorRejection('M_NOT_FOUND', `Room alias ${state.alias} not found`, 404);
      if (record.c !== body.requester && body.force !== true) throw new ActorRejection('M_FORBIDDEN', 'You may not delete this alias', 403);
      return { state: { ...state, record: null }, reply: { room_id: record.r, creator: record.c }, writes: [{ cmd: 'DEL', key, args: [] }] };
    }
    default:
      throw new TypeError(`alias: unknown op ${JSON.stringify((body as { op?: unknown } | undefined)?.op)}`);
  }
}

/**
 * The record key is the truth (it is what fronts read, and aliases made before this actor
 * existed have only it), so the state is always loaded from it.
 */
async function hydrateAlias(ctx: ShellContext, _stored: unknown, alias: string): Promise<AliasState> {
  const blob = await ctx.redis.getBuffer(ctx.keys.data(aliasData.alias(alias)));
  return { alias, record: blob ? decode<AliasRecord>(blob) : null };
}

export function aliasActor(): ActorKind<AliasState, AliasMessage, AliasReply> {
  return {
    kind: 'alias',
    family: 'room',
    initialState: freeAlias,
    hydrate: hydrateAlias,
    // Nothing beyond the record is kept: the state blob only marks that the actor has run.
    serialize: (s) => ({ alias: s.alias }),
    decide: decideAlias,
  };
}
