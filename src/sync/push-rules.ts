/**
 * A user's push rules as clients see them: their own rules and changes (stored by the user
 * actor, `userData.pushRules`) merged with the server-default ones on every read, so the
 * defaults are always the server's current ones. /sync sends them as the `m.push_rules` account
 * data; the push rule routes (src/api/client/push-rules.ts) answer from them.
 */
import { mergePushRules, type PushRuleset, type StoredPushRules } from '../protocol/push-rules';
import { userData } from '../store/keys';
import { userKey } from '../store/shard-keys';
import type { ApiContext } from '../api/context';

/** A user's whole ruleset (their rules merged with the server-default ones). */
export async function readPushRules(ctx: ApiContext, userId: string): Promise<PushRuleset> {
  const json = await ctx.redis.get(userKey(ctx, userId, userData.pushRules(userId)));
  return mergePushRules(userId, json === null ? null : (JSON.parse(json) as StoredPushRules), { threadSubscriptions: ctx.config.threadSubscriptions.enabled });
}

/** The content of the `m.push_rules` account data (as Synapse serves it). */
export async function pushRulesContent(ctx: ApiContext, userId: string): Promise<{ global: PushRuleset }> {
  return { global: await readPushRules(ctx, userId) };
}
