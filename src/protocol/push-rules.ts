/**
 * Push rules (Client-Server API, "Push Notifications"): the data model, the server-default rules
 * for a user, the user's own rules and their changes to default rules (what is stored), the
 * merged ruleset clients see, and validation of new rules. Pure: no I/O.
 *
 * The server-default rules are those of the current spec (v1.17, which removed the legacy rules
 * that looked for mentions in the event's `body`: `.m.rule.contains_display_name`,
 * `.m.rule.roomnotif` and `.m.rule.contains_user_name`), in its order, plus those of two MSCs
 * clients rely on, placed where Synapse 1.163.2 places them:
 * - MSC3930 (polls): `.m.rule.poll_response` after `.m.rule.room.server_acl` and the four
 *   `.m.rule.poll_start*` / `.m.rule.poll_end*` underride rules after `.m.rule.encrypted`, matching
 *   the stable event types (`m.poll.*`) with `event_property_is`; then the unstable
 *   `.org.matrix.msc3930.rule.*` variants Synapse serves, matching the `org.matrix.msc3381.poll.*`
 *   types clients (Element) send today with `event_match` (Synapse's conditions).
 * - MSC4306 (thread subscriptions, when on: `threadSubscriptions.enabled`): the `postcontent` kind, checked after `content` and before
 *   `room`, with `.io.element.msc4306.rule.unsubscribed_thread` (no notification for a thread
 *   the user is not subscribed to) and `.io.element.msc4306.rule.subscribed_thread` (notify,
 *   with sound); their condition `io.element.msc4306.thread_subscription` only holds for events
 *   in a thread (push-evaluator.ts). Clients cannot add `postcontent` rules (as Synapse).
 *
 * An evaluator walks `rulesInEvaluationOrder(ruleset)`: kinds in `PUSH_RULE_KINDS` order, rules
 * in array order, skipping disabled rules; the first match's actions apply. Room and sender rules
 * carry no conditions in the client format; `impliedConditions` gives the ones they stand for.
 */
import { isJsonObject, utf8Length, type JsonObject, type JsonValue } from './json';

/** The kinds, in the order they are checked. */
export const PUSH_RULE_KINDS = ['override', 'content', 'postcontent', 'room', 'sender', 'underride'] as const;
export type PushRuleKind = (typeof PUSH_RULE_KINDS)[number];

export function isPushRuleKind(s: string): s is PushRuleKind {
  return (PUSH_RULE_KINDS as readonly string[]).includes(s);
}

export type PushCondition =
  | { kind: 'event_match'; key: string; pattern: string }
  | { kind: 'event_property_is'; key: string; value: string | number | boolean | null }
  | { kind: 'event_property_contains'; key: string; value: string | number | boolean | null }
  /** Deprecated since v1.17; still understood. */
  | { kind: 'contains_display_name' }
  | { kind: 'room_member_count'; is: string }
  | { kind: 'sender_notification_permission'; key: string }
  /** MSC4306: the event is in a thread and the user's subscription to it is `subscribed`. */
  | { kind: 'io.element.msc4306.thread_subscription'; subscribed: boolean }
  /** A condition kind this server does not know (namespaced): it never matches. */
  | { kind: string; [field: string]: JsonValue };

/** `notify`, a tweak, or an action this server does not interpret (objects are kept as given). */
export type PushAction = 'notify' | { set_tweak: string; value?: JsonValue } | JsonObject;

/** A rule as clients see it (`GET /pushrules/`). */
export interface PushRule {
  rule_id: string;
  default: boolean;
  enabled: boolean;
  actions: PushAction[];
  /** Override and underride rules only. */
  conditions?: PushCondition[];
  /** Content rules only. */
  pattern?: string;
}

export type PushRuleset = Record<PushRuleKind, PushRule[]>;

/** A user-defined rule as stored (no `default`: always false). */
export interface StoredPushRule {
  rule_id: string;
  enabled: boolean;
  actions: PushAction[];
  conditions?: PushCondition[];
  pattern?: string;
}

/**
 * What is stored per user: their own rules per kind, most important first, and their changes to
 * server-default rules (keyed `<kind>/<rule id>`), so defaults themselves are never copied.
 */
export interface StoredPushRules {
  rules: Partial<Record<PushRuleKind, StoredPushRule[]>>;
  defaults: Record<string, { enabled?: boolean; actions?: PushAction[] }>;
}

export function emptyStoredPushRules(): StoredPushRules {
  return { rules: {}, defaults: {} };
}

/** A problem with a push rule request: HTTP status and Matrix error code. */
export class PushRuleError extends Error {
  constructor(
    readonly status: number,
    readonly errcode: string,
    message: string,
  ) {
    super(message);
    this.name = 'PushRuleError';
  }
}

const tweak = (set_tweak: string, value?: JsonValue): PushAction => (value === undefined ? { set_tweak } : { set_tweak, value });
const match = (key: string, pattern: string): PushCondition => ({ kind: 'event_match', key, pattern });
const typeIs = (value: string): PushCondition => ({ kind: 'event_property_is', key: 'type', value });
const oneToOne: PushCondition = { kind: 'room_member_count', is: '2' };

/** The condition kind of MSC4306's default rules. */
export const THREAD_SUBSCRIPTION_CONDITION = 'io.element.msc4306.thread_subscription';

/** Server features that add default rules. */
export interface PushRuleFeatures {
  /** MSC4306 thread subscriptions (Synapse's `msc4306_enabled`): the `postcontent` thread rules. */
  threadSubscriptions?: boolean;
}

/**
 * The server-default rules for a user, per kind, in the spec's order. The `postcontent` kind is
 * always there (as Synapse lists it), empty unless thread subscriptions are on.
 */
export function defaultPushRules(userId: string, features: PushRuleFeatures = {}): PushRuleset {
  const d = (rule_id: string, conditions: PushCondition[], actions: PushAction[], enabled = true): PushRule => ({ rule_id, default: true, enabled, conditions, actions });
  return {
    override: [
      d('.m.rule.master', [], [], false),
      d('.m.rule.suppress_notices', [match('content.msgtype', 'm.notice')], []),
      d(
        '.m.rule.invite_for_me',
        [match('type', 'm.room.member'), match('content.membership', 'invite'), match('state_key', userId)],
        ['notify', tweak('sound', 'default')],
      ),
      d('.m.rule.member_event', [match('type', 'm.room.member')], []),
      d('.m.rule.is_user_mention', [{ kind: 'event_property_contains', key: 'content.m\\.mentions.user_ids', value: userId }], ['notify', tweak('sound', 'default'), tweak('highlight')]),
      d(
        '.m.rule.is_room_mention',
        [
          { kind: 'event_property_is', key: 'content.m\\.mentions.room', value: true },
          { kind: 'sender_notification_permission', key: 'room' },
        ],
        ['notify', tweak('highlight')],
      ),
      d('.m.rule.tombstone', [match('type', 'm.room.tombstone'), match('state_key', '')], ['notify', tweak('highlight')]),
      d('.m.rule.reaction', [match('type', 'm.reaction')], []),
      d('.m.rule.room.server_acl', [match('type', 'm.room.server_acl'), match('state_key', '')], []),
      d('.m.rule.poll_response', [typeIs('m.poll.response')], []),
      d('.m.rule.suppress_edits', [{ kind: 'event_property_is', key: 'content.m\\.relates_to.rel_type', value: 'm.replace' }], []),
      d('.org.matrix.msc3930.rule.poll_response', [match('type', 'org.matrix.msc3381.poll.response')], []),
    ],
    content: [],
    postcontent: features.threadSubscriptions
      ? [
          d('.io.element.msc4306.rule.unsubscribed_thread', [{ kind: THREAD_SUBSCRIPTION_CONDITION, subscribed: false }], []),
          d('.io.element.msc4306.rule.subscribed_thread', [{ kind: THREAD_SUBSCRIPTION_CONDITION, subscribed: true }], ['notify', tweak('sound', 'default')]),
        ]
      : [],
    room: [],
    sender: [],
    underride: [
      d('.m.rule.call', [match('type', 'm.call.invite')], ['notify', tweak('sound', 'ring')]),
      d('.m.rule.encrypted_room_one_to_one', [{ kind: 'room_member_count', is: '2' }, match('type', 'm.room.encrypted')], ['notify', tweak('sound', 'default')]),
      d('.m.rule.room_one_to_one', [{ kind: 'room_member_count', is: '2' }, match('type', 'm.room.message')], ['notify', tweak('sound', 'default')]),
      d('.m.rule.message', [match('type', 'm.room.message')], ['notify']),
      d('.m.rule.encrypted', [match('type', 'm.room.encrypted')], ['notify']),
      d('.m.rule.poll_start_one_to_one', [oneToOne, typeIs('m.poll.start')], ['notify', tweak('sound', 'default')]),
      d('.m.rule.poll_start', [typeIs('m.poll.start')], ['notify']),
      d('.m.rule.poll_end_one_to_one', [oneToOne, typeIs('m.poll.end')], ['notify', tweak('sound', 'default')]),
      d('.m.rule.poll_end', [typeIs('m.poll.end')], ['notify']),
      d('.org.matrix.msc3930.rule.poll_start_one_to_one', [oneToOne, match('type', 'org.matrix.msc3381.poll.start')], ['notify', tweak('sound', 'default')]),
      d('.org.matrix.msc3930.rule.poll_start', [match('type', 'org.matrix.msc3381.poll.start')], ['notify']),
      d('.org.matrix.msc3930.rule.poll_end_one_to_one', [oneToOne, match('type', 'org.matrix.msc3381.poll.end')], ['notify', tweak('sound', 'default')]),
      d('.org.matrix.msc3930.rule.poll_end', [match('type', 'org.matrix.msc3381.poll.end')], ['notify']),
    ],
  };
}

const MASTER = '.m.rule.master';

const defaultKey = (kind: PushRuleKind, ruleId: string) => `${kind}/${ruleId}`;

function clientRule(kind: PushRuleKind, r: StoredPushRule): PushRule {
  const out: PushRule = { rule_id: r.rule_id, default: false, enabled: r.enabled, actions: r.actions };
  if ((kind === 'override' || kind === 'underride' || kind === 'postcontent') && r.conditions) out.conditions = r.conditions;
  if (kind === 'content' && r.pattern !== undefined) out.pattern = r.pattern;
  return out;
}

/**
 * The user's whole ruleset: per kind, their own rules before the server-default rules, except
 * `.m.rule.master`, which comes before everything; default rules carry the user's enabled flags
 * and actions.
 */
export function mergePushRules(userId: string, stored: StoredPushRules | null | undefined, features: PushRuleFeatures = {}): PushRuleset {
  const defaults = defaultPushRules(userId, features);
  const out = {} as PushRuleset;
  for (const kind of PUSH_RULE_KINDS) {
    const own = (stored?.rules[kind] ?? []).map((r) => clientRule(kind, r));
    const defs = defaults[kind].map((r) => {
      const change = stored?.defaults[defaultKey(kind, r.rule_id)];
      return { ...r, ...(change?.enabled !== undefined ? { enabled: change.enabled } : {}), ...(change?.actions ? { actions: change.actions } : {}) };
    });
    const first = kind === 'override' ? defs.filter((r) => r.rule_id === MASTER) : [];
    out[kind] = [...first, ...own, ...defs.filter((r) => !(kind === 'override' && r.rule_id === MASTER))];
  }
  return out;
}

/** Every rule in the order an evaluator checks them, with its kind. */
export function rulesInEvaluationOrder(ruleset: PushRuleset): { kind: PushRuleKind; rule: PushRule }[] {
  return PUSH_RULE_KINDS.flatMap((kind) => ruleset[kind].map((rule) => ({ kind, rule })));
}

/** The conditions a room or sender rule stands for (its rule id names the room or the sender). */
export function impliedConditions(kind: PushRuleKind, rule: PushRule): PushCondition[] {
  if (kind === 'room') return [match('room_id', rule.rule_id)];
  if (kind === 'sender') return [match('sender', rule.rule_id)];
  if (kind === 'content') return [match('content.body', rule.pattern ?? '')];
  return rule.conditions ?? [];
}

/** One rule of the merged ruleset, or null. */
export function findPushRule(ruleset: PushRuleset, kind: PushRuleKind, ruleId: string): PushRule | null {
  return ruleset[kind].find((r) => r.rule_id === ruleId) ?? null;
}

// ---- validation ----

const invalid = (message: string) => new PushRuleError(400, 'M_INVALID_PARAM', message);

/**
 * The longest glob pattern a rule may carry (a content rule's `pattern`, an `event_match`
 * condition's `pattern`), in UTF-8 bytes. The spec sets no bound, and Synapse none of its own
 * (its Rust regex engine refuses only patterns too big to compile). Ours: 255 bytes, the bound
 * the spec sets on the identifiers most conditions match (user ids, room ids, event types,
 * state keys) and the one on our rule ids, which are the patterns of room and sender rules;
 * it is ample for a keyword. It bounds the work of one match against a 64 KiB body at
 * 65,536 × 8 word operations (src/protocol/glob.ts), so a user's rules cannot make the
 * evaluator stall others' events.
 */
export const MAX_PUSH_PATTERN_BYTES = 255;

function validatePattern(pattern: string, what: string): string {
  if (utf8Length(pattern) > MAX_PUSH_PATTERN_BYTES) throw invalid(`${what} must be at most ${MAX_PUSH_PATTERN_BYTES} bytes`);
  return pattern;
}

/** A rule id a client may create: not empty, not server-default (`.`), no `/` or `\`, at most 255 bytes. */
export function validateUserRuleId(kind: PushRuleKind, ruleId: string): void {
  if (ruleId.length === 0) throw invalid('The rule id must not be empty');
  if (ruleId.startsWith('.')) throw new PushRuleError(400, 'M_UNKNOWN', 'Rule ids starting with "." are reserved for server-default rules');
  if (/[/\\]/.test(ruleId)) throw invalid('Rule ids must not contain "/" or "\\"');
  if (utf8Length(ruleId) > 255) throw invalid('The rule id must be at most 255 bytes');
  if (kind === 'room' && !/^![^:]*:.+$/.test(ruleId) && !/^![A-Za-z0-9_-]{43}$/.test(ruleId)) throw invalid('The rule id of a room rule must be a room id');
  if (kind === 'sender' && !/^@[^:]+:.+$/.test(ruleId)) throw invalid('The rule id of a sender rule must be a user id');
}

const HISTORICAL_ACTIONS = new Set(['dont_notify', 'coalesce']);

/** Validate actions; historical actions (`dont_notify`, `coalesce`) are dropped, as the spec says. */
export function validateActions(actions: unknown): PushAction[] {
  if (!Array.isArray(actions)) throw invalid('actions must be an array');
  const out: PushAction[] = [];
  for (const a of actions as unknown[]) {
    if (typeof a === 'string') {
      if (HISTORICAL_ACTIONS.has(a)) continue;
      if (a !== 'notify') throw invalid(`Unrecognised action: ${a}`);
      out.push('notify');
    } else if (isJsonObject(a)) {
      if (typeof a.set_tweak !== 'string' || a.set_tweak.length === 0) throw invalid('An action object must have a set_tweak string');
      if (a.set_tweak === 'highlight' && a.value !== undefined && typeof a.value !== 'boolean') throw invalid('The highlight tweak takes a boolean');
      if (a.set_tweak === 'sound' && typeof a.value !== 'string') throw invalid('The sound tweak takes a string');
      out.push(a);
    } else {
      throw invalid('Each action must be a string or an object');
    }
  }
  return out;
}

const isScalar = (v: unknown): v is string | number | boolean | null => v === null || typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isInteger(v));

/** Validate one condition (known kinds strictly; other kinds must be namespaced and never match). */
export function validateCondition(c: unknown): PushCondition {
  if (!isJsonObject(c)) throw invalid('Each condition must be an object');
  const kind = c.kind;
  if (typeof kind !== 'string' || kind.length === 0) throw invalid('Each condition needs a kind');
  const str = (name: string): string => {
    const v = c[name];
    if (typeof v !== 'string') throw invalid(`A ${kind} condition needs a string ${name}`);
    return v;
  };
  switch (kind) {
    case 'event_match':
      return { kind, key: str('key'), pattern: validatePattern(str('pattern'), 'An event_match pattern') };
    case 'event_property_is':
    case 'event_property_contains':
      if (!('value' in c) || !isScalar(c.value)) throw invalid(`A ${kind} condition needs a value that is a string, an integer, a boolean or null`);
      return { kind, key: str('key'), value: c.value };
    case 'contains_display_name':
      return { kind };
    case 'room_member_count': {
      const is = str('is');
      if (!/^(==|<|>|>=|<=)?[0-9]+$/.test(is)) throw invalid('is must be a decimal integer optionally prefixed by ==, <, >, >= or <=');
      return { kind, is };
    }
    case 'sender_notification_permission':
      return { kind, key: str('key') };
    default:
      if (!kind.includes('.')) throw invalid(`Unknown condition kind: ${kind}`);
      return c as PushCondition;
  }
}

/** A new or updated user rule from a `PUT` body (the rule id was checked by validateUserRuleId). */
export function parseNewRule(kind: PushRuleKind, ruleId: string, body: unknown): Omit<StoredPushRule, 'enabled'> {
  // MSC4306: clients may change the default postcontent rules, not add their own (as Synapse).
  if (kind === 'postcontent') throw invalid('user-defined rules using `postcontent` are not accepted');
  if (!isJsonObject(body)) throw invalid('The push rule must be a JSON object');
  if (body.actions === undefined) throw new PushRuleError(400, 'M_MISSING_PARAM', 'actions is required');
  const rule: Omit<StoredPushRule, 'enabled'> = { rule_id: ruleId, actions: validateActions(body.actions) };
  if (kind === 'content') {
    if (body.pattern === undefined) throw new PushRuleError(400, 'M_MISSING_PARAM', 'A content rule needs a pattern');
    if (typeof body.pattern !== 'string' || body.pattern.length === 0) throw invalid('pattern must be a non-empty string');
    rule.pattern = validatePattern(body.pattern, 'pattern');
  }
  if (kind === 'override' || kind === 'underride') {
    if (body.conditions !== undefined) {
      if (!Array.isArray(body.conditions)) throw invalid('conditions must be an array');
      rule.conditions = body.conditions.map(validateCondition);
    } else {
      rule.conditions = [];
    }
  }
  return rule;
}

// ---- changes (applied by the user actor) ----

function isDefaultRule(userId: string, kind: PushRuleKind, ruleId: string): boolean {
  // Changes to the thread rules are kept whether or not the feature is on now.
  return ruleId.startsWith('.') && defaultPushRules(userId, { threadSubscriptions: true })[kind].some((r) => r.rule_id === ruleId);
}

/**
 * Add or replace a user rule. A new rule goes before `before`, else after `after`, else first
 * among the user's rules of its kind; an updated rule keeps its place (and enabled flag) unless
 * `before`/`after` is given. `before`/`after` must name one of the user's own rules (400 M_UNKNOWN).
 */
export function putPushRule(
  stored: StoredPushRules,
  kind: PushRuleKind,
  rule: Omit<StoredPushRule, 'enabled'>,
  place: { before?: string; after?: string } = {},
): StoredPushRules {
  validateUserRuleId(kind, rule.rule_id);
  const list = [...(stored.rules[kind] ?? [])];
  const at = list.findIndex((r) => r.rule_id === rule.rule_id);
  const existing = at >= 0 ? list[at]! : null;
  const next: StoredPushRule = { ...rule, enabled: existing?.enabled ?? true };
  const anchor = place.before ?? place.after;
  if (anchor !== undefined && anchor === rule.rule_id) throw new PushRuleError(400, 'M_UNKNOWN', 'A rule cannot be placed relative to itself');
  if (at >= 0) list.splice(at, 1);
  let index: number;
  if (anchor !== undefined) {
    if (anchor.startsWith('.')) throw new PushRuleError(400, 'M_UNKNOWN', `Cannot place a rule relative to a server-default rule: ${anchor}`);
    const i = list.findIndex((r) => r.rule_id === anchor);
    if (i < 0) throw new PushRuleError(400, 'M_UNKNOWN', `before/after rule not found: ${anchor}`);
    index = place.before !== undefined ? i : i + 1;
  } else {
    index = at >= 0 ? at : 0;
  }
  list.splice(index, 0, next);
  return { ...stored, rules: { ...stored.rules, [kind]: list } };
}

/** Remove a user rule (404 when there is none; 400 for a server-default rule). */
export function deletePushRule(userId: string, stored: StoredPushRules, kind: PushRuleKind, ruleId: string): StoredPushRules {
  if (isDefaultRule(userId, kind, ruleId)) throw new PushRuleError(400, 'M_INVALID_PARAM', 'Server-default rules cannot be deleted');
  const list = stored.rules[kind] ?? [];
  if (!list.some((r) => r.rule_id === ruleId)) throw new PushRuleError(404, 'M_NOT_FOUND', 'Unknown push rule');
  const rules = { ...stored.rules, [kind]: list.filter((r) => r.rule_id !== ruleId) };
  if (rules[kind]!.length === 0) delete rules[kind];
  return { ...stored, rules };
}

function changeRule(userId: string, stored: StoredPushRules, kind: PushRuleKind, ruleId: string, change: { enabled?: boolean; actions?: PushAction[] }): StoredPushRules {
  if (isDefaultRule(userId, kind, ruleId)) {
    const key = defaultKey(kind, ruleId);
    return { ...stored, defaults: { ...stored.defaults, [key]: { ...stored.defaults[key], ...change } } };
  }
  const list = stored.rules[kind] ?? [];
  const at = list.findIndex((r) => r.rule_id === ruleId);
  if (at < 0) throw new PushRuleError(404, 'M_NOT_FOUND', 'Unknown push rule');
  const next = [...list];
  next[at] = { ...list[at]!, ...change };
  return { ...stored, rules: { ...stored.rules, [kind]: next } };
}

/** Enable or disable a rule (the user's own or a server-default one). */
export function setPushRuleEnabled(userId: string, stored: StoredPushRules, kind: PushRuleKind, ruleId: string, enabled: boolean): StoredPushRules {
  return changeRule(userId, stored, kind, ruleId, { enabled });
}

/** Replace a rule’s actions (the user’s own or a server-default one); they are validated again. */
export function setPushRuleActions(userId: string, stored: StoredPushRules, kind: PushRuleKind, ruleId: string, actions: unknown): StoredPushRules {
  return changeRule(userId, stored, kind, ruleId, { actions: validateActions(actions) });
}
