/**
 * AliasActor: the single writer of one local room alias (actor id = the alias, e.g.
 * `#lobby:example.org`). It lives in the room-family shard the alias hashes to, so one read of
 * its record resolves the alias (on a Redis Cluster too), and two clients racing for a name are
 * ordered by its mailbox: the first `create` wins, the second is refused.
 *
 * Messages:
 * - `reserve` {creator, token, ttlMs}: hold the free alias for a createRoom that is about to make
 *   its room (`token` names that request). While held, only a `create` with the same token may
 *   take the alias, so of several createRooms racing for one name exactly one goes on to create
 *   a room, and the others are refused before they create anything. A reservation ends when its
 *   token binds the alias, on `release`, or by itself `ttlMs` after it was asked for (judged by
 *   the messages' `enqueuedAt`; its key expires in Redis at the same time), so a creator that
 *   crashes in between does not hold the name for good;
 * - `create` {roomId, creator, token?}: point the free alias at a room; a taken alias — or one
 *   held for another token — is refused with 409 M_UNKNOWN "Room alias … already exists"
 *   (directory.yaml);
 * - `release` {token}: end the reservation `token` holds (createRoom failed before binding);
 *   anything else is left as it is;
 * - `delete` {requester, force?, roomId?}: remove it. Who may delete is the front's call (the
 *   alias's creator, or whoever may change the room's canonical alias — that needs the room's
 *   power levels): without `force` only the creator may; with `roomId`, only while the alias
 *   still points at that room (the room the front checked the power in).
 *
 * Fronts read the record (`aliasData.alias`) directly to resolve an alias. The room's own set of
 * its aliases (`roomData.aliases`) belongs to the room actor: the front tells it (`alias_index`)
 * once this actor has answered.
 */
import { ActorRejection, type ActorKind, type ActorMessage, type Decision, type ShellContext, type StoreWrite } from '../src/runtime/actor';
import { decode, encode } from '../src/store/codec';
import { aliasData } from '../src/store/keys';

/** The stored record of an alias (msgpack): what fronts read to resolve it. */
export interface AliasRecord {
  /** Room id. */
  r: string;
  /** Who created the alias. */
  c: string;
}

/** A hold on a free alias for one createRoom request (msgpack, under its own key with a TTL). */
export interface AliasReservation {
  /** The request's token. */
  t: string;
  /** Who asked. */
  c: string;
  /** Until when (ms, the clock of the messages' `enqueuedAt`). */
  u: number;
}

export interface AliasState {
  alias: string;
  /** null: the alias is free (or only reserved). */
  record: AliasRecord | null;
  /** A createRoom's hold on the (unbound) alias; past its `u` it no longer counts. */
  reservation: AliasReservation | null;
}

export type AliasMessage =
  | { op: 'reserve'; creator: string; token: string; ttlMs: number }
  /** `token`: the reservation this binds (createRoom); absent for PUT /directory/room. */
  | { op: 'create'; roomId: string; creator: string; token?: string }
  | { op: 'release'; token: string }
  /** `force`: the front found the requester may delete it anyway; `roomId`: the room it checked that in. */
  | { op: 'delete'; requester: string; force?: boolean; roomId?: string };

/** create and delete answer with the room the alias pointed at (create: now; delete: until now). */
export interface AliasReply {
  room_id: string;
  creator: string;
}

/** reserve answers until when the alias is held; release answers whether it ended a hold. */
export type AliasReserveReply = { reserved_until: number } | { released: boolean };

/** Longest reservation a createRoom may ask for. */
export const MAX_RESERVATION_MS = 10 * 60_000;

export function freeAlias(alias: string): AliasState {
  return { alias, record: null, reservation: null };
}

/** The reservation that still holds at `now`, if any. */
function heldAt(state: AliasState, now: number): AliasReservation | null {
  return state.reservation && state.reservation.u > now ? state.reservation : null;
}

/** Pure: everything the alias actor does with a message. */
export function decideAlias(state: AliasState, msg: ActorMessage<AliasMessage>): Decision<AliasState, AliasReply | AliasReserveReply> {
  const body = msg.body;
  const key = aliasData.alias(state.alias);
  const reservationKey = aliasData.reservation(state.alias);
  const taken = () => new ActorRejection('M_UNKNOWN', `Room alias ${state.alias} already exists`, 409);
  switch (body?.op) {
    case 'reserve': {
      if (typeof body.creator !== 'string' || !body.creator.startsWith('@')) throw new ActorRejection('M_INVALID_PARAM', 'creator must be a user id', 400);
      if (typeof body.token !== 'string' || !body.token) throw new ActorRejection('M_INVALID_PARAM', 'token must be a string', 400);
      if (!Number.isInteger(body.ttlMs) || body.ttlMs < 1 || body.ttlMs > MAX_RESERVATION_MS) throw new ActorRejection('M_INVALID_PARAM', 'ttlMs out of range', 400);
      const held = heldAt(state, msg.enqueuedAt);
      if (state.record || (held && held.t !== body.token)) throw taken();
      const reservation: AliasReservation = { t: body.token, c: body.creator, u: msg.enqueuedAt + body.ttlMs };
      return {
        state: { ...state, reservation },
        reply: { reserved_until: reservation.u },
        writes: [{ cmd: 'SET', key: reservationKey, args: [encode(reservation), 'PX', body.ttlMs] }],
      };
    }
    case 'create': {
      if (typeof body.roomId !== 'string' || !body.roomId.startsWith('!')) throw new ActorRejection('M_INVALID_PARAM', 'roomId must be a room id', 400);
      if (typeof body.creator !== 'string' || !body.creator.startsWith('@')) throw new ActorRejection('M_INVALID_PARAM', 'creator must be a user id', 400);
      const held = heldAt(state, msg.enqueuedAt);
      if (state.record || (held && held.t !== body.token)) throw taken();
      const record: AliasRecord = { r: body.roomId, c: body.creator };
      const writes: StoreWrite[] = [{ cmd: 'SET', key, args: [encode(record)] }];
      if (state.reservation) writes.push({ cmd: 'DEL', key: reservationKey, args: [] });
      return { state: { ...state, record, reservation: null }, reply: { room_id: record.r, creator: record.c }, writes };
    }
    case 'release': {
      if (!state.reservation || state.reservation.t !== body.token) return { state, reply: { released: false } };
      return { state: { ...state, reservation: null }, reply: { released: true }, writes: [{ cmd: 'DEL', key: reservationKey, args: [] }] };
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
 * existed have only it), so the state is always loaded from it, with the reservation key.
 */
async function hydrateAlias(ctx: ShellContext, _stored: unknown, alias: string): Promise<AliasState> {
  const [blob, held] = await Promise.all([ctx.redis.getBuffer(ctx.keys.data(aliasData.alias(alias))), ctx.redis.getBuffer(ctx.keys.data(aliasData.reservation(alias)))]);
  return { alias, record: blob ? decode<AliasRecord>(blob) : null, reservation: held ? decode<AliasReservation>(held) : null };
}

export function aliasActor(): ActorKind<AliasState, AliasMessage, AliasReply | AliasReserveReply> {
  return {
    kind: 'alias',
    family: 'room',
    initialState: freeAlias,
    hydrate: hydrateAlias,
    // Nothing beyond the record and the reservation (their own keys) is kept: the state blob
    // only marks that the actor has run.
    serialize: (s) => ({ alias: s.alias }),
    decide: decideAlias,
  };
}
