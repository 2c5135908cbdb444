/**
 * Profiles of local users: `displayname` and `avatar_url`. Reads need no access token (the
 * spec's default); writes only by the user. A change is answered once the user actor stored it;
 * then it is propagated into every room the user is joined to as a new m.room.member join event
 * carrying the new profile (as Synapse does). Propagation runs after the answer, one user's
 * changes one after another on this front (so a later change is never overtaken by an earlier
 * one); a room that refuses the event is logged and skipped.
 */
import { MatrixError, errors } from '../../http/errors';
import type { Front, Request } from '../../http/server';
import { isValidUserId, serverOf } from '../../protocol/identifiers';
import { userData } from '../../store/keys';
import { refuseIfSuspended, requireUser } from './auth';
import { askAppservicesForUser } from '../../rooms/appservice-users';
import { askUser, clientRoute, jsonBody, readAccount, requireSelf } from './accounts-common';
import { userKey } from '../../store/shard-keys';
import type { ApiContext } from '../context';
import { MembershipIndex } from '../../readers/membership-index';
import { isJsonObject, type JsonObject, type JsonValue } from '../../protocol/json';
import { sendEvent } from '../../rooms/ask';
import { PROFILE_KEY } from '../../../actors/user';
import { PROFILE_FIELDS, storedProfile, withProfile, type ProfileField } from '../../rooms/member-profile';

const MAX_LENGTH: Record<ProfileField, number> = { displayname: 256, avatar_url: 1000 };

export function registerProfileRoutes(front: Front, ctx: ApiContext): void {
  const propagation = new ProfilePropagation(ctx);
  clientRoute(front, 'GET', '/profile/:userId', async (req) => {
    return { body: await readProfile(ctx, req) };
  });
  for (const field of PROFILE_FIELDS) {
    clientRoute(front, 'GET', `/profile/:userId/${field}`, async (req) => {
      const profile = await readProfile(ctx, req);
      if (profile[field] === undefined) throw errors.notFound(`This user has no ${field}`);
      return { body: { [field]: profile[field] } };
    });
    clientRoute(front, 'PUT', `/profile/:userId/${field}`, async (req) => {
      const me = await requireUser(ctx, req);
      requireSelf(me, req.params.userId, 'the profile');
      refuseIfSuspended(me, PROFILE_SUSPENDED);
      const body = jsonBody(req);
      const value = body[field];
      if (value !== null && typeof value !== 'string') throw errors.badJson(`${field} must be a string`);
      if (typeof value === 'string' && value.length > MAX_LENGTH[field]) throw errors.invalidParam(`${field} must be at most ${MAX_LENGTH[field]} characters`);
      if (field === 'avatar_url' && typeof value === 'string' && value !== '' && !/^mxc:\/\/[^/]+\/[A-Za-z0-9_-]+$/.test(value)) throw errors.invalidParam('avatar_url must be an mxc:// URI');
      await askUser(ctx, me.userId, { op: 'set_profile', field, value: value === '' ? null : (value as string | null) });
      void propagation.schedule(me.userId); // in the background (it never rejects); the answer does not wait
      return { body: {} };
    });
  }

  // Custom fields (`m.tz`, namespaced keys; profile.yaml since v1.16), after the two above.
  const customKey = (req: Request): string => {
    const key = req.params.keyName!;
    if (Buffer.byteLength(key) > 255) throw new MatrixError(400, 'M_KEY_TOO_LARGE', 'Profile keys are at most 255 bytes');
    if (!PROFILE_KEY.test(key)) throw errors.invalidParam('keyName must be avatar_url, displayname, m.tz or a namespaced identifier');
    return key;
  };
  clientRoute(front, 'GET', '/profile/:userId/:keyName', async (req) => {
    const key = customKey(req);
    const profile = await readProfile(ctx, req);
    if (profile[key] === undefined) throw errors.notFound(`This user has no ${key}`);
    return { body: { [key]: profile[key]! } };
  });
  clientRoute(front, 'PUT', '/profile/:userId/:keyName', async (req) => {
    const me = await requireUser(ctx, req);
    requireSelf(me, req.params.userId, 'the profile');
    refuseIfSuspended(me, PROFILE_SUSPENDED);
    const key = customKey(req);
    const body = jsonBody(req);
    if (!(key in body)) throw errors.missingParam(`The body must hold ${key}`);
    const value = body[key]!;
    if (key === 'm.tz' && typeof value !== 'string') throw errors.badJson('m.tz must be a string (an IANA time zone)');
    await askUser(ctx, me.userId, { op: 'set_profile_field', key, json: JSON.stringify(value) });
    return { body: {} };
  });
  clientRoute(front, 'DELETE', '/profile/:userId/:keyName', async (req) => {
    const me = await requireUser(ctx, req);
    refuseIfSuspended(me, PROFILE_SUSPENDED);
    requireSelf(me, req.params.userId, 'the profile');
    const key = customKey(req);
    if (key === 'displayname' || key === 'avatar_url') {
      await askUser(ctx, me.userId, { op: 'set_profile', field: key, value: null });
      void propagation.schedule(me.userId); // in the background (it never rejects); the answer does not wait
    } else {
      await askUser(ctx, me.userId, { op: 'set_profile_field', key, json: null });
    }
    return { body: {} };
  });
}

async function readProfile(ctx: ApiContext, req: Request): Promise<Record<string, JsonValue>> {
  const userId = req.params.userId!;
  if (!isValidUserId(userId)) throw errors.invalidParam('Not a user id');
  if (serverOf(userId) !== ctx.config.serverName) {
    // A remote user: asked of their server over federation (a short per-process cache in front).
    if (!ctx.federation) throw new MatrixError(404, 'M_NOT_FOUND', 'Profiles of users on other servers are not available (federation is off)');
    return ctx.federation.remoteProfile(userId);
  }
  let profile = await localProfile(ctx, userId);
  // A puppet an appservice makes on demand: asked, then read again.
  if (!profile && (await askAppservicesForUser(ctx, userId))) profile = await localProfile(ctx, userId);
  if (!profile) throw errors.notFound('No such user');
  return profile;
}

/** A local user's whole profile (standard and custom fields), or null when there is no such active user. */
export async function localProfile(ctx: ApiContext, userId: string): Promise<Record<string, JsonValue> | null> {
  const account = await readAccount(ctx, userId);
  if (!account || account.x) return null;
  const stored = await ctx.redis.hgetall(userKey(ctx, userId, userData.profile(userId)));
  const profile: Record<string, JsonValue> = {};
  for (const [k, v] of Object.entries(stored)) {
    if ((PROFILE_FIELDS as readonly string[]).includes(k)) profile[k] = v;
    else {
      // Custom fields are stored as JSON text by the user actor.
      try {
        profile[k] = JSON.parse(v) as JsonValue;
      } catch {
        /* not written by the actor: left out */
      }
    }
  }
  return profile;
}

/**
 * Sends a user's current profile into the rooms they are joined to. Each run reads the profile
 * afresh, and runs for one user are chained, so the last event in every room carries the latest
 * profile even when changes come quickly.
 */
export class ProfilePropagation {
  private readonly index: MembershipIndex;
  private readonly running = new Map<string, Promise<void>>();

  constructor(private readonly ctx: ApiContext) {
    this.index = new MembershipIndex(ctx.redis, ctx.keys, ctx.shardCounts.user);
  }

  /** Start (or queue) propagation for a user; resolves when this run is done. Never rejects. */
  schedule(userId: string): Promise<void> {
    const before = this.running.get(userId) ?? Promise.resolve();
    const run = before.then(() => this.propagate(userId)).catch((err: unknown) => {
      this.ctx.log.warn({ err, user_id: userId }, 'profile propagation failed');
    });
    this.running.set(userId, run);
    void run.finally(() => {
      if (this.running.get(userId) === run) this.running.delete(userId);
    });
    return run;
  }

  private async propagate(userId: string): Promise<void> {
    const profile = await storedProfile(this.ctx, userId);
    const rooms = await this.index.rooms(userId, 'join');
    for (const { roomId } of rooms) {
      try {
        const [current] = await this.ctx.rooms.currentState(roomId, { type: 'm.room.member', stateKey: userId });
        const old = current?.event.content;
        if (!current || !isJsonObject(old as JsonValue) || (old as JsonObject).membership !== 'join') continue;
        const content = withProfile(old as JsonObject, profile);
        // Not carried over: the reason of the original join, and a restricted join's authorising server.
        delete content.reason;
        delete content.join_authorised_via_users_server;
        if (JSON.stringify(sortKeys(content)) === JSON.stringify(sortKeys(old as JsonObject))) continue;
        const reply = await sendEvent(this.ctx, roomId, { type: 'm.room.member', state_key: userId, sender: userId, content });
        await this.index.record(userId, roomId, reply.pos, 'join');
      } catch (err) {
        this.ctx.log.warn({ err, user_id: userId, room_id: roomId }, 'profile propagation: the room refused the new member event');
      }
    }
  }
}

function sortKeys(o: JsonObject): JsonObject {
  return Object.fromEntries(Object.keys(o).sort().map((k) => [k, o[k]!]));
}

const PROFILE_SUSPENDED = 'Updating profile while account is suspended is not allowed.';
