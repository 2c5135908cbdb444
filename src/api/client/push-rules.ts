/**
 * Push rules (pushrules.yaml): `GET /pushrules/`, `GET /pushrules/global/`, and per rule
 * `GET/PUT/DELETE /pushrules/global/{kind}/{ruleId}`, `GET/PUT .../enabled`, `GET/PUT .../actions`.
 *
 * The user actor stores the user's own rules and their changes to server-default rules
 * (`userData.pushRules`, src/protocol/push-rules.ts) and emits an `m.push_rules` account data
 * change, so /sync sends the merged ruleset; fronts merge it with the defaults on every read
 * (src/sync/push-rules.ts), so the defaults always are the server's current ones. `m.push_rules`
 * cannot be written through the account data API (account-data.ts answers 405): clients use these
 * endpoints.
 */
import { MatrixError, errors } from '../../http/errors';
import type { Front, Request } from '../../http/server';
import {
  PushRuleError,
  findPushRule,
  isPushRuleKind,
  parseNewRule,
  validateActions,
  validateUserRuleId,
  type PushRule,
  type PushRuleKind,
} from '../../protocol/push-rules';
import { requireUser } from './auth';
import { askUser, clientRoute, jsonBody } from './accounts-common';
import type { ApiContext } from '../context';
import { pushRulesContent, readPushRules } from '../../sync/push-rules';

function ruleError(e: unknown): never {
  if (e instanceof PushRuleError) throw new MatrixError(e.status, e.errcode, e.message);
  throw e;
}

function scopeAndKind(req: Request): PushRuleKind {
  if (req.params.scope !== 'global') throw errors.invalidParam('The only push rule scope is "global"');
  const kind = req.params.kind!;
  if (!isPushRuleKind(kind)) throw errors.invalidParam(`Unknown push rule kind: ${kind}`);
  return kind;
}

function ruleId(req: Request): string {
  const id = req.params.ruleId!;
  if (id.length === 0) throw errors.invalidParam('The rule id must not be empty');
  return id;
}

export function registerPushRuleRoutes(front: Front, ctx: ApiContext): void {
  const all = async (req: Request) => {
    const me = await requireUser(ctx, req);
    return { body: await pushRulesContent(ctx, me.userId) };
  };
  clientRoute(front, 'GET', '/pushrules/', all);
  clientRoute(front, 'GET', '/pushrules', all);
  const scope = async (req: Request) => {
    const me = await requireUser(ctx, req);
    if (req.params.scope !== 'global') throw errors.invalidParam('The only push rule scope is "global"');
    return { body: await readPushRules(ctx, me.userId) };
  };
  clientRoute(front, 'GET', '/pushrules/:scope/', scope);
  clientRoute(front, 'GET', '/pushrules/:scope', scope);

  const existing = async (req: Request): Promise<{ userId: string; kind: PushRuleKind; id: string; rule: PushRule }> => {
    const me = await requireUser(ctx, req);
    const kind = scopeAndKind(req);
    const id = ruleId(req);
    const rule = findPushRule(await readPushRules(ctx, me.userId), kind, id);
    if (!rule) throw errors.notFound('Unknown push rule');
    return { userId: me.userId, kind, id, rule };
  };

  const base = '/pushrules/:scope/:kind/:ruleId';
  clientRoute(front, 'GET', base, async (req) => ({ body: (await existing(req)).rule }));

  clientRoute(front, 'PUT', base, async (req) => {
    const me = await requireUser(ctx, req);
    const kind = scopeAndKind(req);
    const id = ruleId(req);
    let rule;
    try {
      validateUserRuleId(kind, id);
      rule = parseNewRule(kind, id, jsonBody(req));
    } catch (e) {
      ruleError(e);
    }
    const before = req.query['before'];
    const after = req.query['after'];
    await askUser(ctx, me.userId, { op: 'put_push_rule', kind, rule, ...(before !== undefined ? { before } : {}), ...(after !== undefined ? { after } : {}) });
    return { body: {} };
  });

  clientRoute(front, 'DELETE', base, async (req) => {
    const me = await requireUser(ctx, req);
    const kind = scopeAndKind(req);
    await askUser(ctx, me.userId, { op: 'delete_push_rule', kind, ruleId: ruleId(req) });
    return { body: {} };
  });

  clientRoute(front, 'GET', `${base}/enabled`, async (req) => ({ body: { enabled: (await existing(req)).rule.enabled } }));
  clientRoute(front, 'PUT', `${base}/enabled`, async (req) => {
    const me = await requireUser(ctx, req);
    const kind = scopeAndKind(req);
    const body = jsonBody(req);
    if (body.enabled === undefined) throw errors.missingParam('enabled is required');
    if (typeof body.enabled !== 'boolean') throw errors.invalidParam('enabled must be a boolean');
    await askUser(ctx, me.userId, { op: 'set_push_rule_enabled', kind, ruleId: ruleId(req), enabled: body.enabled });
    return { body: {} };
  });

  clientRoute(front, 'GET', `${base}/actions`, async (req) => ({ body: { actions: (await existing(req)).rule.actions } }));
  clientRoute(front, 'PUT', `${base}/actions`, async (req) => {
    const me = await requireUser(ctx, req);
    const kind = scopeAndKind(req);
    const body = jsonBody(req);
    if (body.actions === undefined) throw errors.missingParam('actions is required');
    let actions;
    try {
      actions = validateActions(body.actions);
    } catch (e) {
      ruleError(e);
    }
    await askUser(ctx, me.userId, { op: 'set_push_rule_actions', kind, ruleId: ruleId(req), actions });
    return { body: {} };
  });
}
