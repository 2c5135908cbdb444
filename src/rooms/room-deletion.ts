/**
 * Deleting a room for an admin (`DELETE /_synapse/admin/v1|v2/rooms/{roomId}`), the workflow
 * the admin API runs inline (v1) or as a bullmq job (v2), in Synapse's steps:
 *
 *  1. block the room (optional): local users may no longer join it or be invited;
 *  2. with `new_room_user_id`, create a room for the users (public, `users_default: -10`, named);
 *  3. every local user joined, invited or knocking leaves (as themselves, as Synapse does) and
 *     forgets the room; those who were joined join the new room;
 *  4. with a new room, a notice is sent there and the room's local aliases move to it;
 *  5. the room leaves the public room directory;
 *  6. purge (optional): the remaining local aliases go; the room's actor deletes its member list
 *     (`purge_begin`: the guard that keeps readers behind the purge from writing to the room) and
 *     names the local users the list had; each of them drops what they kept for the room (room
 *     account data, unread counts, notifications, membership index entries: actors/user.ts
 *     `purge_room`; thread subscriptions and backed-up keys: their own actors' `purge_room`); then
 *     the room's actor deletes everything else the room stored, a batch per commit (`purge`;
 *     actors/room.ts), and the room leaves appservices' network directories.
 *     The users come after purge_begin, not before: the push evaluator, running behind, could
 *     otherwise write their records of the room again in between (see `purgeRoom`).
 *
 * Every step is idempotent and the result so far is reported through `progress` after each one,
 * so a job that dies half way (its worker killed) and runs again picks up where it was: users
 * who already left are no longer members, a new room already made is reused, and a purge already
 * begun continues (the room takes nothing but purge batches once it has begun, so nothing is
 * half-written: each batch is one atomic commit in the actor that owns the room's shard; the
 * users to ask are kept in the room's actor from purge_begin until the first batch, so a run
 * that died before it had asked them all asks them all again).
 */
import { MatrixError, errors } from '../http/errors';
import { serverOf } from '../protocol/identifiers';
import type { JsonObject } from '../protocol/json';
import type { MembershipIndex } from '../readers/membership-index';
import type { ApiContext } from '../api/context';
import type { AliasStore } from './aliases';
import { askRoomFamily, sendEvent } from './ask';
import { createRoom } from './create';
import { appserviceRoomList, setDirectoryVisibility } from './directory';
import { joinRoom, sendLocalMembership } from './join';
import type { PurgeBegun, PurgeProgress, RoomMessage } from './model';
import { setRoomBlocked } from './blocked';
import type { UserMessage } from '../../actors/user';
import { THREAD_SUBSCRIPTIONS_KIND, type ThreadSubscriptionsMessage } from '../../actors/thread-subscriptions';
import type { KeyBackupMessage } from '../../actors/key-backup';

export const DEFAULT_NOTICE = 'Sharing illegal content on this server is not permitted and rooms in violation will be blocked.';
export const DEFAULT_NOTICE_ROOM_NAME = 'Content Violation Notification';

export interface RoomDeletionParams {
  requester: string;
  block: boolean;
  purge: boolean;
  forcePurge: boolean;
  newRoomUserId: string | null;
  roomName: string | null;
  message: string | null;
}

/** Synapse's `shutdown_room` result. */
export interface ShutdownResult {
  kicked_users: string[];
  failed_to_kick_users: string[];
  local_aliases: string[];
  new_room_id: string | null;
}

export function emptyShutdownResult(): ShutdownResult {
  return { kicked_users: [], failed_to_kick_users: [], local_aliases: [], new_room_id: null };
}

/** Check a request's body the way Synapse does (400 M_BAD_JSON naming the parameter). */
export function parseRoomDeletionBody(body: JsonObject, requester: string): RoomDeletionParams {
  const flag = (name: string, fallback: boolean): boolean => {
    const v = body[name];
    if (v === undefined) return fallback;
    if (typeof v !== 'boolean') throw errors.badJson(`Param '${name}' must be a boolean, if given`);
    return v;
  };
  const text = (name: string): string | null => {
    const v = body[name];
    if (v === undefined || v === null) return null;
    if (typeof v !== 'string') throw errors.badJson(`Param '${name}' must be a string, if given`);
    return v;
  };
  return { requester, block: flag('block', false), purge: flag('purge', true), forcePurge: flag('force_purge', false), newRoomUserId: text('new_room_user_id'), roomName: text('room_name'), message: text('message') };
}

export interface RoomDeletionDeps {
  aliases: AliasStore;
  index: MembershipIndex;
}

/**
 * Run the deletion. `result` is what an earlier run of the same deletion got to (a retried job);
 * `progress` is told the result after each step. Answers the final result.
 */
export async function deleteRoom(ctx: ApiContext, deps: RoomDeletionDeps, roomId: string, params: RoomDeletionParams, result: ShutdownResult = emptyShutdownResult(), progress: (r: ShutdownResult, phase: 'shutting_down' | 'purging') => Promise<void> = async () => undefined): Promise<ShutdownResult> {
  if (params.block) await setRoomBlocked(ctx, roomId, params.requester);
  const meta = await ctx.rooms.meta(roomId);
  // A room this server does not have (or no longer has): blocking it is all there is to do.
  if (!meta) return result;
  // A purge already begun (a retried job, or one an earlier deletion started): the room takes
  // nothing but purge batches now, so the rest is all there is left to do.
  if (!meta.purging) await shutDown(ctx, deps, roomId, params, result, progress);
  if (params.purge) {
    if (!params.forcePurge && !meta.purging) {
      const stillJoined = [...(await ctx.rooms.members(roomId, 'join')).keys()].filter((u) => serverOf(u) === ctx.config.serverName);
      if (stillJoined.length) throw new MatrixError(400, 'M_UNKNOWN', 'Users are still joined to this room');
    }
    for (const alias of await deps.aliases.ofRoom(roomId)) await deleteAliasIfThere(deps, alias, params.requester, roomId);
    await purgeRoom(ctx, roomId);
  }
  return result;
}

async function shutDown(ctx: ApiContext, deps: RoomDeletionDeps, roomId: string, params: RoomDeletionParams, result: ShutdownResult, progress: (r: ShutdownResult, phase: 'shutting_down' | 'purging') => Promise<void>): Promise<void> {
  if (params.newRoomUserId !== null && result.new_room_id === null) {
    if (serverOf(params.newRoomUserId) !== ctx.config.serverName) throw new MatrixError(400, 'M_UNKNOWN', `User must be our own: ${params.newRoomUserId}`);
    result.new_room_id = await createRoom(ctx, { userId: params.newRoomUserId }, { preset: 'public_chat', name: params.roomName || DEFAULT_NOTICE_ROOM_NAME, power_level_content_override: { users_default: -10 } }, deps.aliases, deps.index);
    await progress(result, 'shutting_down');
  }
  const members = await ctx.rooms.members(roomId);
  for (const [userId, membership] of members) {
    if (serverOf(userId) !== ctx.config.serverName || !['join', 'invite', 'knock'].includes(membership)) continue;
    try {
      await sendLocalMembership(ctx, deps.index, roomId, userId, userId, { membership: 'leave' });
      await ctx.actors.ask('user', 'user', userId, { op: 'forget', roomId });
      if (result.new_room_id !== null && membership === 'join') await joinRoom(ctx, deps.aliases, deps.index, userId, result.new_room_id, {});
      if (!result.kicked_users.includes(userId)) result.kicked_users.push(userId);
    } catch (err) {
      ctx.log.warn({ room_id: roomId, user_id: userId, err: (err as Error).message }, 'room deletion: could not take the user out of the room');
      if (!result.failed_to_kick_users.includes(userId)) result.failed_to_kick_users.push(userId);
    }
    await progress(result, 'shutting_down');
  }
  const aliases = await deps.aliases.ofRoom(roomId);
  if (result.new_room_id !== null) {
    await sendEvent(ctx, result.new_room_id, { type: 'm.room.message', sender: params.newRoomUserId!, content: { body: params.message || DEFAULT_NOTICE, msgtype: 'm.text' } });
    for (const alias of aliases) {
      await deleteAliasIfThere(deps, alias, params.requester, roomId);
      await deps.aliases.create(alias, result.new_room_id, params.requester).catch((err: Error) => ctx.log.warn({ alias, err: err.message }, 'room deletion: alias not moved'));
      if (!result.local_aliases.includes(alias)) result.local_aliases.push(alias);
    }
  }
  await setDirectoryVisibility(ctx, [[roomId, 'private']]);
  await progress(result, params.purge ? 'purging' : 'shutting_down');
}

async function deleteAliasIfThere(deps: RoomDeletionDeps, alias: string, requester: string, roomId: string): Promise<void> {
  try {
    await deps.aliases.delete(alias, requester, { force: true, roomId });
  } catch (e) {
    // Gone already (a retried run), or moved to another room meanwhile: not this room's to delete.
    if (!(e instanceof MatrixError && e.status === 404)) throw e;
  }
}

/**
 * Delete everything the room stored, and what its local users kept for it; answers how many of
 * the room's keys went. In this order:
 *
 *  1. `purge_begin`: the room takes nothing but purge batches from now on, and its member list
 *     goes, the guard of the push evaluator's and the search index's scripts: a reader running
 *     behind the purge writes nothing of the room after this (on a Cluster the evaluator writes a
 *     user's records on the user's shard, where no script can see the list: it checks the list
 *     first, see PushEvaluatorReader.record). It answers the local users the list had.
 *  2. each of them drops what they kept for the room (`purge_room` of their user, thread
 *     subscriptions and key backup actors): after step 1, so nothing the evaluator (or the
 *     membership and recency index readers, which take the same guard) writes for them comes back
 *     after it. (Before step 1, as until 2026-12-06, an
 *     evaluator behind could write their exceptions and notifications again in between.)
 *  3. the room's keys go, a SCAN page per `purge` batch, in one commit each. The first batch
 *     drops the users' list from the room's actor: a run that dies before step 3 and runs again
 *     gets the list from a repeated purge_begin and asks them all again (`purge_room` is
 *     idempotent); one that dies during step 3 had asked them all.
 */
export async function purgeRoom(ctx: ApiContext, roomId: string): Promise<number> {
  // The list read here too: a room actor of a version before PurgeBegun (a rolling upgrade)
  // answers no users. A run that finds the purge begun finds no list here (purge_begin deleted it).
  const listed = [...(await ctx.rooms.members(roomId)).keys()].filter((u) => serverOf(u) === ctx.config.serverName);
  const begun = await askRoomFamily<Partial<PurgeBegun>>(ctx, 'room', roomId, { op: 'purge_begin' } satisfies RoomMessage);
  for (const userId of new Set([...listed, ...(begun.users ?? [])])) {
    await ctx.actors.ask('user', 'user', userId, { op: 'purge_room', roomId } satisfies UserMessage);
    // What the user's other actors keep of the room: their thread subscriptions in it and the
    // room's keys in their key backups (Synapse's purge deletes both; each is its own actor's).
    await ctx.actors.ask('user', THREAD_SUBSCRIPTIONS_KIND, userId, { op: 'purge_room', roomId } satisfies ThreadSubscriptionsMessage);
    await ctx.actors.ask('user', 'keybackup', userId, { op: 'purge_room', roomId } satisfies KeyBackupMessage);
  }
  let deleted = 0;
  // Nothing stored (its purge already finished: a deletion that raced another): no batches to run.
  if (!begun.nothing) {
    let cursor = '0';
    for (;;) {
      const batch = await askRoomFamily<PurgeProgress>(ctx, 'room', roomId, { op: 'purge', cursor } satisfies RoomMessage, { timeoutMs: 60_000 });
      deleted += batch.deleted;
      if (batch.done) break;
      cursor = batch.cursor;
    }
  }
  await unlistFromAppserviceDirectories(ctx, roomId);
  return deleted;
}

/**
 * The room's entries in appservices' network directories (`PUT /directory/list/appservice/…`, a
 * set the fronts keep), as Synapse's purge deletes its `appservice_room_list` rows: a room made
 * later with the same id is not listed by an appservice that never published it.
 */
async function unlistFromAppserviceDirectories(ctx: ApiContext, roomId: string): Promise<void> {
  // Members are written as JSON.stringify([appservice, network, room]) (src/api/client/appservice.ts).
  const entries = (await appserviceRoomList(ctx)).filter((e) => e[2] === roomId).map((e) => JSON.stringify(e));
  if (entries.length) await ctx.redis.srem(ctx.keys.appserviceRoomList(), ...entries);
}
