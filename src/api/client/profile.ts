/**
 * Profiles of local users: `displayname` and `avatar_url`. Reads need no access token (the
 * spec's default); writes only by the user. Propagating a change into the rooms the user is in
 * (new m.room.member events) is not done here.
 */
import { MatrixError, errors } from '../../http/errors';
import type { Front, Request } from '../../http/server';
import { isValidUserId, serverOf } from '../../protocol/identifiers';
import { userData } from '../../store/keys';
import { requireUser } from './auth';
import { askUser, clientRoute, jsonBody, readAccount, requireSelf, userKey } from './accounts-common';
import type { ApiContext } from './context';

const FIELDS = ['displayname', 'avatar_url'] as const;
type Field = (typeof FIELDS)[number];
const MAX_LENGTH: Record<Field, number> = { displayname: 256, avatar_url: 1000 };

export function registerProfileRoutes(front: Front, ctx: ApiContext): void {
  clientRoute(front, 'GET', '/profile/:userId', async (req) => {
    return { body: await readProfile(ctx, req) };
  });
  for (const field of FIELDS) {
    clientRoute(front, 'GET', `/profile/:userId/${field}`, async (req) => {
      const profile = await readProfile(ctx, req);
      if (profile[field] === undefined) throw errors.notFound(`This user has no ${field}`);
      return { body: { [field]: profile[field] } };
    });
    clientRoute(front, 'PUT', `/profile/:userId/${field}`, async (req) => {
      const me = await requireUser(ctx, req);
      requireSelf(me, req.params.userId, 'the profile');
      const body = jsonBody(req);
      const value = body[field];
      if (value !== null && typeof value !== 'string') throw errors.badJson(`${field} must be a string`);
      if (typeof value === 'string' && value.length > MAX_LENGTH[field]) throw errors.invalidParam(`${field} must be at most ${MAX_LENGTH[field]} characters`);
      if (field === 'avatar_url' && typeof value === 'string' && value !== '' && !/^mxc:\/\/[^/]+\/[A-Za-z0-9_-]+$/.test(value)) throw errors.invalidParam('avatar_url must be an mxc:// URI');
      await askUser(ctx, me.userId, { op: 'set_profile', field, value: value === '' ? null : (value as string | null) });
      return { body: {} };
    });
  }
}

async function readProfile(ctx: ApiContext, req: Request): Promise<Partial<Record<Field, string>>> {
  const userId = req.params.userId!;
  if (!isValidUserId(userId)) throw errors.invalidParam('Not a user id');
  if (serverOf(userId) !== ctx.config.serverName) throw new MatrixError(404, 'M_NOT_FOUND', 'Profiles of users on other servers are not available (federation is not implemented yet)');
  const account = await readAccount(ctx, userId);
  if (!account || account.x) throw errors.notFound('No such user');
  const stored = await ctx.redis.hgetall(userKey(ctx, userId, userData.profile(userId)));
  const profile: Partial<Record<Field, string>> = {};
  for (const f of FIELDS) if (stored[f] !== undefined) profile[f] = stored[f];
  return profile;
}
