/**
 * Power levels as of a room's current state, for checks the front makes before asking an actor
 * (alias deletion, directory publication, room upgrades).
 */
import { namedLevel, requiredEventLevel, userPowerLevel } from '../protocol/power-levels';
import { lookupFromStateMap, toPdu } from '../protocol/pdu';
import { requireRoomVersion } from '../protocol/room-versions';
import type { ApiContext } from '../api/context';

/** Power levels as of the room's current state: a user's level, and what an action or state event needs. */
export async function currentPower(ctx: ApiContext, roomId: string): Promise<{ userLevel(userId: string): number; redact: number; invite: number; stateLevel(type: string): number } | null> {
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
    invite: namedLevel('invite', st, version),
    stateLevel: (type) => requiredEventLevel(type, true, st, version),
  };
}

/** Whether `userId` could send `type` as state in the room now. */
export async function canSendState(ctx: ApiContext, roomId: string, userId: string, type: string): Promise<boolean> {
  const power = await currentPower(ctx, roomId);
  return !!power && power.userLevel(userId) >= power.stateLevel(type);
}
