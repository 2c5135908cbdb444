/**
 * Upgrading a room (`POST /rooms/{roomId}/upgrade`, spec: "Room Upgrades"; callable from both
 * APIs, throwing MatrixError as the handler did). What the server does, in the spec's
 * order (and as Synapse does it):
 * 1. Check the user may send `m.room.tombstone` in the old room, and that the version exists;
 *    then claim the upgrade from the old room's actor, so that of racing upgrades one builds
 *    the replacement (the same user asking again gets that room; another user 400).
 * 2. Create the new room with `predecessor` in its create event (and the old create's
 *    `m.federate` and `type`), join the upgrader.
 * 3. Copy the important state: power levels (creators of a v12 room taken out of `users`, as
 *    they outrank everyone anyway; the upgrader boosted while copying when they would otherwise
 *    not be allowed to, then the exact copy restored), join rules, history visibility, guest
 *    access, name, topic, avatar, encryption, server ACLs, space children and bans.
 * 4. Move the room's local aliases and its canonical alias to the new room.
 * 5. Send the tombstone in the old room, then restrict the old room: `events_default` and
 *    `invite` raised to at least max(users_default + 1, 50), so ordinary members stop talking
 *    in it; a published room is moved in the room directory (through both rooms' actors).
 */
import { randomBytes } from 'node:crypto';
import { MatrixError } from '../http/errors';
import { buildCreateEvent } from '../../actors/room';
import type { EventTemplate, UpgradeClaim } from './model';
import { requireRoomVersion, type RoomVersion } from '../protocol/room-versions';
import { isJsonObject, type JsonObject, type JsonValue } from '../protocol/json';
import { splitStateKey } from '../protocol/pdu';
import { servableAsState, type RoomEvent } from '../store/room-reader';
import type { MembershipIndex } from '../readers/membership-index';
import type { ApiContext } from '../api/context';
import type { AliasStore } from './aliases';
import { currentPower } from './power';
import { setDirectoryVisibility } from './directory';
import { askRoom, askRoomFamily, sendEvent } from './ask';

/** State copied as is, in this order (power levels go first, separately). */
const COPIED_STATE = ['m.room.join_rules', 'm.room.history_visibility', 'm.room.guest_access', 'm.room.name', 'm.room.topic', 'm.room.avatar', 'm.room.encryption', 'm.room.server_acl'];

/**
 * `userId` upgrades `oldRoomId` to a new room of `version` (with `additionalCreators` for rooms
 * with privileged creators). Answers the replacement room's id — the one an earlier request by the
 * same user claimed, when there is one.
 */
export async function upgradeRoom(ctx: ApiContext, aliases: AliasStore, index: MembershipIndex, userId: string, oldRoomId: string, version: RoomVersion, additionalCreators: string[]): Promise<string> {
  // 1. Permission in the old room.
  const meta = await ctx.rooms.meta(oldRoomId);
  if (!meta?.version || (await ctx.rooms.membership(oldRoomId, userId)) !== 'join') throw new MatrixError(403, 'M_FORBIDDEN', 'You are not in this room');
  const power = await currentPower(ctx, oldRoomId);
  if (!power || power.userLevel(userId) < power.stateLevel('m.room.tombstone')) throw new MatrixError(403, 'M_FORBIDDEN', 'You do not have the power to upgrade this room');
  const oldVersion = requireRoomVersion(meta.version);
  const oldState = new Map<string, RoomEvent>();
  for (const e of await ctx.rooms.currentState(oldRoomId)) if (servableAsState(e)) oldState.set(`${String(e.event.type)}\u0000${String(e.event.state_key ?? '')}`, e);
  const content = (type: string, key = ''): JsonObject | undefined => {
    const c = oldState.get(`${type}\u0000${key}`)?.event.content;
    return isJsonObject(c as JsonValue) ? { ...(c as JsonObject) } : undefined;
  };

  // 2. The new room.
  const oldCreate = content('m.room.create') ?? {};
  const createContent: JsonObject = { predecessor: { room_id: oldRoomId, event_id: meta.extremities[meta.extremities.length - 1] ?? meta.createId } };
  if (oldCreate['m.federate'] !== undefined) createContent['m.federate'] = oldCreate['m.federate']!;
  if (typeof oldCreate.type === 'string') createContent.type = oldCreate.type;
  if (version.privilegedCreators) {
    const inherited = oldVersion.privilegedCreators && Array.isArray(oldCreate.additional_creators) ? (oldCreate.additional_creators as JsonValue[]).filter((u): u is string => typeof u === 'string') : [];
    const all = [...new Set([...inherited, ...additionalCreators])].filter((u) => u !== userId);
    if (all.length) createContent.additional_creators = all;
  }
  const { roomId: newRoomId, event } = buildCreateEvent(
    { serverName: ctx.config.serverName, signingKey: ctx.signingKey },
    { roomVersion: version.id, creator: userId, content: createContent, roomLocalpart: randomBytes(12).toString('base64url').replace(/[-_]/g, 'x'), ts: Date.now() },
  );
  // The old room's actor decides which of racing upgrades goes ahead: the same upgrader asking
  // again gets the room already being built, anyone else 400 (as Synapse answers).
  const claim = await askRoomFamily<UpgradeClaim>(ctx, 'room', oldRoomId, { op: 'claim_upgrade', replacement: newRoomId, sender: userId });
  if (!claim.fresh) {
    await awaitTombstone(ctx, oldRoomId, claim.replacement);
    return claim.replacement;
  }
  try {
    await askRoom(ctx, newRoomId, { op: 'create', event });
  } catch (e) {
    // Nothing was built: give the claim back so the upgrade can be asked for again.
    await askRoomFamily(ctx, 'room', oldRoomId, { op: 'release_upgrade', replacement: newRoomId }).catch(() => undefined);
    throw e;
  }
  const send = (roomId: string, t: Omit<EventTemplate, 'sender'>) => sendEvent(ctx, roomId, { ...t, sender: userId });
  const joined = await send(newRoomId, { type: 'm.room.member', state_key: userId, content: { membership: 'join' } });
  await index.record(userId, newRoomId, joined.pos, 'join');

  // 3. Power levels, then the rest of the important state.
  const creators = new Set([userId, ...(Array.isArray(createContent.additional_creators) ? (createContent.additional_creators as string[]) : [])]);
  const pl = content('m.room.power_levels') ?? {};
  const users: JsonObject = isJsonObject(pl.users as JsonValue) ? { ...(pl.users as JsonObject) } : {};
  if (version.privilegedCreators) for (const c of creators) delete users[c];
  else if (oldVersion.privilegedCreators && typeof users[userId] !== 'number') users[userId] = 100;
  const finalPl: JsonObject = { ...pl, users };
  let boosted: JsonObject | null = null;
  if (!version.privilegedCreators) {
    const needed = maxLevel(finalPl);
    const mine = typeof users[userId] === 'number' ? (users[userId] as number) : typeof finalPl.users_default === 'number' ? finalPl.users_default : 0;
    if (mine < needed) boosted = { ...finalPl, users: { ...users, [userId]: needed } };
  }
  await send(newRoomId, { type: 'm.room.power_levels', state_key: '', content: boosted ?? finalPl });
  const copied: RoomEvent[] = [];
  for (const type of COPIED_STATE) {
    const e = oldState.get(`${type}\u0000`);
    if (e) copied.push(e);
  }
  for (const [key, e] of oldState) {
    const [type, stateKey] = splitStateKey(key);
    if (type === 'm.space.child') copied.push(e);
    else if (type === 'm.room.member' && (e.event.content as JsonObject | undefined)?.membership === 'ban' && stateKey !== userId) copied.push(e);
  }
  for (const e of copied) {
    try {
      await send(newRoomId, { type: String(e.event.type), state_key: String(e.event.state_key ?? ''), content: { ...((e.event.content ?? {}) as JsonObject) } });
    } catch (err) {
      // A state event the new room version refuses (its rules differ) is left behind, not fatal.
      ctx.log.warn({ room_id: newRoomId, event_id: e.eventId, err: (err as Error).message }, 'room upgrade: state not copied');
    }
  }
  if (boosted) await send(newRoomId, { type: 'm.room.power_levels', state_key: '', content: finalPl });

  // 4. Aliases: local ones move; the canonical alias follows them.
  // The upgrader may move them: they may send the tombstone, which needs at least the power
  // to change the canonical alias in any room that lets them upgrade it.
  for (const alias of await aliases.ofRoom(oldRoomId)) {
    const rec = await aliases.get(alias);
    if (!rec || rec.r !== oldRoomId) continue;
    await trySend(ctx, async () => {
      await aliases.delete(alias, userId, { force: true, roomId: oldRoomId });
      await aliases.create(alias, newRoomId, rec.c);
    });
  }
  const canonical = content('m.room.canonical_alias');
  if (canonical && (canonical.alias !== undefined || canonical.alt_aliases !== undefined)) {
    await trySend(ctx, () => send(newRoomId, { type: 'm.room.canonical_alias', state_key: '', content: canonical }));
    await trySend(ctx, () => send(oldRoomId, { type: 'm.room.canonical_alias', state_key: '', content: {} }));
  }

  // 5. The tombstone, then the old room goes quiet.
  await send(oldRoomId, { type: 'm.room.tombstone', state_key: '', content: { body: 'This room has been replaced', replacement_room: newRoomId } });
  const usersDefault = typeof pl.users_default === 'number' ? pl.users_default : 0;
  const restricted = Math.max(usersDefault + 1, 50);
  const oldPl = content('m.room.power_levels');
  if (oldPl) {
    const changed: JsonObject = { ...oldPl };
    let any = false;
    for (const k of ['events_default', 'invite'] as const) {
      const current = typeof oldPl[k] === 'number' ? (oldPl[k] as number) : k === 'invite' ? 0 : 0;
      if (current < restricted) {
        changed[k] = restricted;
        any = true;
      }
    }
    if (any) await trySend(ctx, () => send(oldRoomId, { type: 'm.room.power_levels', state_key: '', content: changed }));
  }
  if (await ctx.redis.sismember(ctx.keys.publicRooms(), oldRoomId)) {
    await setDirectoryVisibility(ctx, [[newRoomId, 'public'], [oldRoomId, 'private']]);
  }
  return newRoomId;
}

/** The highest level any action or event needs (what the upgrader needs to copy every state event). */
function maxLevel(pl: JsonObject): number {
  let max = 100;
  for (const k of ['ban', 'kick', 'redact', 'invite', 'state_default', 'events_default'] as const) if (typeof pl[k] === 'number') max = Math.max(max, pl[k] as number);
  if (isJsonObject(pl.events as JsonValue)) for (const v of Object.values(pl.events as JsonObject)) if (typeof v === 'number') max = Math.max(max, v);
  return max;
}

/**
 * A repeated upgrade request answers once the first one has sent its tombstone (as Synapse's
 * response cache makes it wait for the first's result), or after a while with the same room.
 */
async function awaitTombstone(ctx: ApiContext, roomId: string, replacement: string, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const [t] = await ctx.rooms.currentState(roomId, { type: 'm.room.tombstone', stateKey: '' });
    if ((t?.event.content as JsonObject | undefined)?.replacement_room === replacement) return;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Best-effort steps: the upgrade has happened even if the old room refuses a follow-up. */
async function trySend(ctx: ApiContext, f: () => Promise<unknown>): Promise<void> {
  try {
    await f();
  } catch (err) {
    if (!(err instanceof MatrixError)) throw err;
    ctx.log.info({ err: err.message }, 'room upgrade: follow-up step refused');
  }
}
