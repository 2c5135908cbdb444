/**
 * Users an application service makes on demand (its puppets: `@irc_alice:…` for an IRC nick).
 * When a client touches a user of this server who does not exist yet but lies in an
 * appservice's user namespace — reads their profile, invites them, creates a room with them —
 * the appservice is asked first (`GET /_matrix/app/v1/users/{userId}`), so that it can register
 * the user before the invite or the look-up goes on, as the spec's user query intends.
 */
import type { ApiContext } from '../api/context';
import { serverOf } from '../protocol/identifiers';
import { userData } from '../store/keys';
import { userKey } from '../store/shard-keys';

/**
 * Ask the appservices about `userId` when it is a local user nobody registered and some
 * appservice's namespace holds it. True when the user exists afterwards because an appservice
 * said it made them; false when nothing was asked or nobody knew them.
 */
export async function askAppservicesForUser(ctx: ApiContext, userId: string): Promise<boolean> {
  const appservices = ctx.appservices;
  if (!appservices || serverOf(userId) !== ctx.config.serverName) return false;
  const registry = appservices.registry;
  if (!registry.all().some((as) => as.url !== null && as.isUserInNamespace(userId))) return false;
  // Senders are made on their first request, not asked about.
  if (registry.findBySender(userId)) return false;
  if ((await ctx.redis.exists(userKey(ctx, userId, userData.account(userId)))) === 1) return false;
  return appservices.queries.queryUser(userId);
}
