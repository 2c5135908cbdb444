/**
 * Push rule evaluation (Client-Server API, "Push Rules": conditions, actions, evaluation order).
 * Pure: the caller supplies what the conditions need from the room (member count, the user's
 * display name, the sender's notification permission) as a context object.
 *
 * A ruleset is compiled once (`compilePushRules`: property paths split, glob patterns turned into
 * regular expressions, disabled rules dropped) and evaluated against many events; in a room with
 * many members the caller keeps one compiled ruleset per user, so an event costs one walk over
 * each member's rules and no parsing.
 *
 * What the spec says and how it is read here:
 * - Rules are checked by kind (override, content, room, sender, underride), in order within a
 *   kind; disabled rules are skipped; the first rule whose conditions all hold gives the actions.
 *   No matching rule: no actions (nothing to notify).
 * - Property paths (`key`) are dot-separated; since v1.7 `\.` is a literal dot and `\\` a literal
 *   backslash inside a segment; any other backslash is kept as it is.
 * - `event_match`: the value must be a string; glob `*` (any run) and `?` (one character),
 *   case-insensitive; the whole value must match, except for `content.body`, where the pattern
 *   may match any part that starts and ends at word boundaries (a word character is
 *   `[A-Za-z0-9_]`; a boundary is the start or end of the value or a place not between two word
 *   characters — the same as Synapse's `(?:^|\b|\W)…(?:\b|\W|$)`). Globs are matched by
 *   src/protocol/glob.ts, in time linear in the value (never a backtracking RegExp: a user's
 *   pattern must not be able to stall the process). A pattern longer than
 *   `MAX_PUSH_PATTERN_BYTES` (refused when a rule is set; a stored one may predate the bound)
 *   matches nothing.
 * - `event_property_is` / `event_property_contains`: exact equality of a non-compound value
 *   (string, integer, boolean, null; no type coercion), against the value or any element of an
 *   array value.
 * - `contains_display_name` (deprecated): `content.body` contains the user's display name in the
 *   room, at word boundaries, case-insensitive; never with no or an empty display name.
 * - `room_member_count`: the room's joined members against `is` (`==` when no operator).
 * - `sender_notification_permission`: the sender's power level reaches
 *   `notifications[key]` of the power levels (50 when missing).
 * - `io.element.msc4306.thread_subscription` (MSC4306): the event is in a thread (its own
 *   `m.thread` relation) and whether the user is subscribed to that thread equals `subscribed`;
 *   never for events outside threads (as Synapse).
 * - Unknown condition kinds never match (so the rule never matches).
 * - Actions: `notify`; `set_tweak` (`highlight` is true when its value is missing or true; the
 *   last one wins); the historical `dont_notify` means nothing, `coalesce` is treated as `notify`.
 * - A user is never notified about their own events.
 */
import { compileGlob, matchGlob, type GlobOptions } from './glob';
import { isJsonObject, utf8Length, type JsonObject, type JsonValue } from './json';
import { MAX_PUSH_PATTERN_BYTES, PUSH_RULE_KINDS, THREAD_SUBSCRIPTION_CONDITION, impliedConditions, type PushAction, type PushCondition, type PushRuleKind, type PushRuleset } from './push-rules';

/** What the conditions need besides the event, for one user in one room. */
export interface PushEvaluationContext {
  /** The user whose rules these are. */
  userId: string;
  /** Joined members of the room. */
  roomMemberCount: number;
  /** The user's display name in the room (`contains_display_name`); only asked when a rule needs it. */
  displayName: () => string | null;
  /** Whether the sender's power level reaches the power levels' `notifications[key]`. */
  senderHasNotificationPermission: (key: string) => boolean;
  /**
   * Whether the user is subscribed to the thread with this root (MSC4306); only asked for events
   * in a thread. Absent: subscribed to nothing.
   */
  threadSubscribed?: (threadRootId: string) => boolean;
  /**
   * Results of rules that do not depend on whose rules they are, shared by every user's
   * evaluation of one event (see CompiledPushRule.shared). One map per event.
   */
  shared?: Map<string, boolean>;
}

/** The outcome for one user: the matching rule and its actions, read. */
export interface PushEvaluation {
  ruleId: string;
  kind: PushRuleKind;
  actions: PushAction[];
  notify: boolean;
  highlight: boolean;
  /** The `sound` tweak, if any. */
  sound?: string;
}

type Test = (event: JsonObject, ctx: PushEvaluationContext) => boolean;

export interface CompiledPushRule {
  kind: PushRuleKind;
  ruleId: string;
  actions: PushAction[];
  test: Test;
  /** The rule's conditions as compiled (implied ones for content, room and sender rules). */
  conditions: readonly PushCondition[];
  /**
   * For a rule whose outcome depends only on the event and the room (no `contains_display_name`,
   * the only condition that reads the user's own data): its conditions as a string, the same for
   * every user who has the rule. An event evaluated for 10,000 members tests it once, not 10,000
   * times. A user-specific pattern (the default `.m.rule.invite_for_me` names the user) is part
   * of the string, so such rules are shared by nobody.
   */
  shared?: string;
}

export interface CompiledPushRules {
  rules: CompiledPushRule[];
  /** Some enabled rule has a `contains_display_name` condition (the caller then knows the name). */
  usesDisplayName: boolean;
  /** Some enabled rule has an MSC4306 thread subscription condition (the caller then looks subscriptions up). */
  usesThreadSubscriptions: boolean;
}

// ---- property paths ----

/** Split a dotted property path into its segments (`content.m\.mentions.user_ids` → content, m.mentions, user_ids). */
export function splitPropertyPath(key: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < key.length; i++) {
    const c = key[i]!;
    if (c === '\\') {
      const next = key[i + 1];
      if (next === '.' || next === '\\') {
        cur += next;
        i++;
        continue;
      }
      cur += c;
    } else if (c === '.') {
      out.push(cur);
      cur = '';
    } else {
      cur += c;
    }
  }
  out.push(cur);
  return out;
}

/** The value at a path of object properties (own properties only), or undefined. */
export function propertyAt(event: JsonObject, path: readonly string[]): JsonValue | undefined {
  let v: JsonValue | undefined = event;
  for (const seg of path) {
    if (!isJsonObject(v) || !Object.prototype.hasOwnProperty.call(v, seg)) return undefined;
    v = v[seg];
  }
  return v;
}

// ---- glob patterns ----

const WHOLE: GlobOptions = { caseInsensitive: true, mode: 'whole' };
const WORDS: GlobOptions = { caseInsensitive: true, mode: 'words' };
const LITERAL_WORDS: GlobOptions = { caseInsensitive: true, mode: 'words', wildcards: 'none' };

/** Whether `value` matches a glob pattern (the spec's event_match on one value; `wordBoundary` for `content.body`). */
export function globMatches(pattern: string, value: string, wordBoundary: boolean): boolean {
  return matchGlob(pattern, value, wordBoundary ? WORDS : WHOLE);
}

/** Whether `text` contains `literal` between word boundaries, case-insensitive (display name mentions). */
function containsWord(text: string, literal: string): boolean {
  return compileGlob(literal, LITERAL_WORDS).test(text);
}

// ---- conditions ----

const never: Test = () => false;
const isScalar = (v: unknown): v is string | number | boolean | null => v === null || typeof v === 'string' || typeof v === 'boolean' || typeof v === 'number';

/** A condition as a test; malformed and unknown conditions never match. */
export function compileCondition(c: PushCondition): Test {
  const cond = c as Record<string, JsonValue>;
  switch (c.kind) {
    case 'event_match': {
      if (typeof cond.key !== 'string' || typeof cond.pattern !== 'string') return never;
      if (utf8Length(cond.pattern) > MAX_PUSH_PATTERN_BYTES) return never;
      const path = splitPropertyPath(cond.key);
      const glob = compileGlob(cond.pattern, cond.key === 'content.body' ? WORDS : WHOLE);
      return (event) => {
        const v = propertyAt(event, path);
        return typeof v === 'string' && glob.test(v);
      };
    }
    case 'event_property_is': {
      if (typeof cond.key !== 'string' || !('value' in cond) || !isScalar(cond.value)) return never;
      const path = splitPropertyPath(cond.key);
      const want = cond.value;
      return (event) => {
        const v = propertyAt(event, path);
        return v !== undefined && v === want;
      };
    }
    case 'event_property_contains': {
      if (typeof cond.key !== 'string' || !('value' in cond) || !isScalar(cond.value)) return never;
      const path = splitPropertyPath(cond.key);
      const want = cond.value;
      return (event) => {
        const v = propertyAt(event, path);
        return Array.isArray(v) && v.some((x) => x === want);
      };
    }
    case 'contains_display_name':
      return (event, ctx) => {
        const body = propertyAt(event, ['content', 'body']);
        if (typeof body !== 'string') return false;
        const name = ctx.displayName();
        return !!name && containsWord(body, name);
      };
    case 'room_member_count': {
      const m = typeof cond.is === 'string' ? /^(==|<|>|>=|<=)?([0-9]+)$/.exec(cond.is) : null;
      if (!m) return never;
      const n = Number(m[2]);
      switch (m[1] ?? '==') {
        case '==':
          return (_e, ctx) => ctx.roomMemberCount === n;
        case '<':
          return (_e, ctx) => ctx.roomMemberCount < n;
        case '>':
          return (_e, ctx) => ctx.roomMemberCount > n;
        case '<=':
          return (_e, ctx) => ctx.roomMemberCount <= n;
        default:
          return (_e, ctx) => ctx.roomMemberCount >= n;
      }
    }
    case 'sender_notification_permission': {
      if (typeof cond.key !== 'string') return never;
      const key = cond.key;
      return (_e, ctx) => ctx.senderHasNotificationPermission(key);
    }
    case THREAD_SUBSCRIPTION_CONDITION: {
      if (typeof cond.subscribed !== 'boolean') return never;
      const want = cond.subscribed;
      return (event, ctx) => {
        const root = threadRootOf(event);
        if (root === null) return false;
        return (ctx.threadSubscribed?.(root) ?? false) === want;
      };
    }
    default:
      return never;
  }
}

/**
 * Compiled rules shared between users' rulesets (`compilePushRules(ruleset, interner)`). Most of a
 * user's rules are the server defaults, the same for every user who has not changed them: compiled
 * per user, a ruleset held ~24 KB (closures, glob matchers, property paths, the conditions and
 * their string), so an evaluator with the rules of a room of 1,000 members held ~21 MB of the
 * same rules (heap snapshot of a worker in workload B). A rule is the same for everyone whose kind,
 * id, actions and conditions are the same (compiling is a pure function of those), so one compiled
 * rule — frozen: shared — stands for all of them. The rules that name their user (the defaults'
 * `.m.rule.invite_for_me` and `.m.rule.is_user_mention`) are each user's own all the same; the
 * interner keeps the `max` most recently used rules (and as many conditions), so those pass
 * through it without growing it (a rule evicted from it is still held by the rulesets that have
 * it, and compiled again for the next one; a user with thousands of rules of their own only costs
 * the others the sharing until their rules come back).
 *
 * Keys are the rules' JSON: the rulesets given must be plain JSON (as parsed from the stored push
 * rules), where the JSON text is the value — not built objects holding `Infinity`, `NaN` or
 * non-string rule ids, which JSON would write like other values.
 */
export class PushRuleInterner {
  private readonly rules = new Map<string, CompiledPushRule>();
  private readonly conditions = new Map<string, Test>();
  private readonly max: number;

  constructor(max = 2048) {
    this.max = Math.max(1, Math.floor(max));
  }

  /** Rules held. */
  get size(): number {
    return this.rules.size;
  }

  /** Compiled conditions held. */
  get conditionCount(): number {
    return this.conditions.size;
  }

  /** The shared rule under `key`, if held (then the most recently used). */
  get(key: string): CompiledPushRule | undefined {
    return this.recent(this.rules, key);
  }

  set(key: string, rule: CompiledPushRule): void {
    this.keep(this.rules, key, rule);
  }

  /**
   * A condition compiled, shared as the rules are: a rule that names its user still has
   * conditions that do not (`.m.rule.invite_for_me`: the event's type and membership).
   */
  condition(c: PushCondition): Test {
    const key = JSON.stringify(c);
    const hit = this.recent(this.conditions, key);
    if (hit !== undefined) return hit;
    const test = compileCondition(c);
    this.keep(this.conditions, key, test);
    return test;
  }

  /** `map`'s value under `key`, moved to the most recently used end. */
  private recent<V>(map: Map<string, V>, key: string): V | undefined {
    const hit = map.get(key);
    if (hit !== undefined) {
      map.delete(key);
      map.set(key, hit);
    }
    return hit;
  }

  /** Adds a value, the least recently used one out first when `map` is at the bound. */
  private keep<V>(map: Map<string, V>, key: string, value: V): void {
    if (map.size >= this.max) map.delete(map.keys().next().value!);
    map.set(key, value);
  }
}

/** A JSON value and everything in it frozen (the shared rules' actions and conditions). */
function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    for (const v of Object.values(value as object)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/**
 * Compile a merged ruleset (src/protocol/push-rules.ts `mergePushRules`) for evaluation. With an
 * interner, rules already compiled for another user are taken from it (see PushRuleInterner); the
 * result is the same, only shared.
 */
export function compilePushRules(ruleset: PushRuleset, interner?: PushRuleInterner): CompiledPushRules {
  const rules: CompiledPushRule[] = [];
  let usesDisplayName = false;
  let usesThreadSubscriptions = false;
  for (const kind of PUSH_RULE_KINDS) {
    for (const rule of ruleset[kind] ?? []) {
      if (!rule.enabled) continue;
      // A content rule without a pattern is malformed: it matches nothing.
      if (kind === 'content' && typeof rule.pattern !== 'string') continue;
      const conditions = impliedConditions(kind, rule);
      if (!Array.isArray(conditions)) continue;
      const readsName = conditions.some((c) => c?.kind === 'contains_display_name');
      const readsThreads = conditions.some((c) => c?.kind === THREAD_SUBSCRIPTION_CONDITION);
      if (readsName) usesDisplayName = true;
      if (readsThreads) usesThreadSubscriptions = true;
      const actions = Array.isArray(rule.actions) ? rule.actions : [];
      const conditionsJson = JSON.stringify(conditions);
      const actionsJson = interner ? JSON.stringify(actions) : '';
      const key = interner ? `${kind}\u0001${rule.rule_id}\u0001${actionsJson}\u0001${conditionsJson}` : '';
      const known = interner?.get(key);
      if (known) {
        rules.push(known);
        continue;
      }
      const tests = interner ? conditions.map((c) => interner.condition(c)) : conditions.map(compileCondition);
      const test: Test =
        tests.length === 0 ? () => true : tests.length === 1 ? tests[0]! : (event, ctx) => tests.every((t) => t(event, ctx));
      // Conditions that read the user's own data (display name, thread subscriptions) are not shared.
      const shared = readsName || readsThreads ? undefined : `${kind}\u0001${conditionsJson}`;
      let compiled: CompiledPushRule = { kind, ruleId: rule.rule_id, actions, test, conditions, ...(shared ? { shared } : {}) };
      if (interner) {
        // Shared from now on: frozen to the last value, on copies (from the JSON just written: the
        // caller's ruleset stays the caller's and unfrozen), so nothing changes it under another
        // user's ruleset. The tests were compiled from the values, not from these objects.
        compiled = Object.freeze({ ...compiled, actions: deepFreeze(JSON.parse(actionsJson) as PushAction[]), conditions: deepFreeze(JSON.parse(conditionsJson) as PushCondition[]) });
        interner.set(key, compiled);
      }
      rules.push(compiled);
    }
  }
  return { rules, usesDisplayName, usesThreadSubscriptions };
}

/** What a list of actions asks for: notify, highlight, a sound. */
export function readActions(actions: readonly PushAction[]): { notify: boolean; highlight: boolean; sound?: string } {
  let notify = false;
  let highlight = false;
  let sound: string | undefined;
  for (const a of actions as readonly (PushAction | string)[]) {
    if (a === 'notify' || a === 'coalesce') notify = true;
    else if (isJsonObject(a as JsonValue)) {
      const t = a as { set_tweak?: unknown; value?: unknown };
      if (t.set_tweak === 'highlight') highlight = t.value === undefined || t.value === true;
      else if (t.set_tweak === 'sound' && typeof t.value === 'string') sound = t.value;
    }
  }
  return sound === undefined ? { notify, highlight } : { notify, highlight, sound };
}

/**
 * Evaluate a user's rules against an event: the first enabled rule that matches, with its
 * actions read, or null when none matches or the event is the user's own.
 */
export function evaluatePushRules(rules: CompiledPushRules | PushRuleset, event: JsonObject, ctx: PushEvaluationContext): PushEvaluation | null {
  if (event.sender === ctx.userId) return null;
  const compiled = 'rules' in rules && Array.isArray(rules.rules) ? (rules as CompiledPushRules) : compilePushRules(rules as PushRuleset);
  const memo = ctx.shared;
  for (const r of compiled.rules) {
    let hit: boolean | undefined;
    if (memo && r.shared !== undefined) {
      hit = memo.get(r.shared);
      if (hit === undefined) memo.set(r.shared, (hit = r.test(event, ctx)));
    } else hit = r.test(event, ctx);
    if (hit) return { ruleId: r.ruleId, kind: r.kind, actions: r.actions, ...readActions(r.actions) };
  }
  return null;
}

/** The thread an event is in by its own relation (`m.thread`): the thread root's id, or null. */
export function threadRootOf(event: JsonObject): string | null {
  const rel = propertyAt(event, ['content', 'm.relates_to']);
  if (!isJsonObject(rel) || rel.rel_type !== 'm.thread' || typeof rel.event_id !== 'string') return null;
  return rel.event_id;
}

/**
 * The event another relation (an edit, a reaction, a reference) points at, whose thread the
 * relating event belongs to (threaded read receipts: "events related to an event in a thread
 * are in that thread too"); null for thread replies and events without a relation.
 */
export function relatedEventOf(event: JsonObject): string | null {
  const rel = propertyAt(event, ['content', 'm.relates_to']);
  if (!isJsonObject(rel) || rel.rel_type === 'm.thread' || typeof rel.rel_type !== 'string' || typeof rel.event_id !== 'string') return null;
  return rel.event_id;
}

/** One user-dependent rule a user's evaluation still tests for an event (`DefaultRulesPlan.steps`). */
export interface DefaultRulesStep {
  /** The rule's index in the ruleset. */
  index: number;
  /**
   * The only users the rule can match for this event (one of its conditions requires the event
   * to carry the user's id: `.m.rule.is_user_mention`'s `m.mentions.user_ids`), or null: anyone.
   */
  only: ReadonlySet<string> | null;
}

/** What is left to test per user for one event (`DefaultRulesTemplate.plan`). */
export interface DefaultRulesPlan {
  /**
   * The user-dependent rules before the first shared rule that matches, in order, less those
   * that cannot match anyone for this event (a condition that does not depend on the user fails,
   * or one that needs the user's id in the event finds no id there).
   */
  steps: DefaultRulesStep[];
  /** The outcome when none of them matches: the first matching shared rule's, or nothing. */
  fallback: PushEvaluation | null;
}

/** How a condition of a user-dependent default rule depends on the user. */
type ConditionRole =
  /** The same for every user: tested once per event. */
  | { kind: 'shared'; test: Test }
  /** Holds only for users whose id is a string element of the array at `path` (event_property_contains). */
  | { kind: 'idIn'; path: string[] }
  /** Holds only for the user whose id is the string at `path` (event_property_is). */
  | { kind: 'idIs'; path: string[] }
  /** Reads the user's display name: never when the event has no `content.body` string. */
  | { kind: 'body' }
  /** Reads the user's thread subscriptions: never outside a thread. */
  | { kind: 'thread' }
  /** Any other dependence on the user: tested per user. */
  | { kind: 'user' };

/**
 * One event evaluated once for every user who has the server-default rules as they are (most
 * users never change one), where evaluatePushRules walks each user's whole ruleset. Those users'
 * rulesets differ only in the rules that name the user (`.m.rule.invite_for_me`,
 * `.m.rule.is_user_mention`) or read the user's own data (display name, thread subscriptions):
 * the user-dependent rules, found by compiling the defaults for two users and comparing. `plan`
 * walks the defaults once per event: it tests each shared rule (once), up to the first that
 * matches, and keeps the user-dependent rules before it that could match someone: their
 * conditions that do not depend on the user are tested once (an invite rule is gone for a
 * message), and one that needs the user's id in the event (`m.mentions.user_ids`) is read once
 * into the set of users it can hold for (a message without mentions needs no test per user at
 * all). `evaluate` then tests only those steps against a user's own ruleset, skipping a step
 * whose set leaves the user out, and users with the same outcome share one PushEvaluation
 * object. A ruleset `fits` the template when it is the defaults, unchanged (the same rules in the
 * same order, the same conditions and actions); for the others the caller uses
 * evaluatePushRules. The outcome is evaluatePushRules's, rule for rule
 * (test/protocol/push-default-plan.unit.test.ts).
 */
export class DefaultRulesTemplate {
  private readonly rules: CompiledPushRule[];
  private readonly userDependent: boolean[];
  /** Per user-dependent rule, how each of its conditions depends on the user. */
  private readonly roles: (ConditionRole[] | null)[];
  private readonly outcomes: PushEvaluation[];
  private readonly actionsJson: string[];
  private readonly userA: string;

  /** `defaultsFor(userId)`: the compiled server-default rules of a user (mergePushRules with nothing stored). */
  constructor(defaultsFor: (userId: string) => CompiledPushRules) {
    const userA = '@\u0001template-a:\u0001';
    const userB = '@\u0001template-b:\u0001';
    this.userA = userA;
    const a = defaultsFor(userA).rules;
    const b = defaultsFor(userB).rules;
    if (a.length !== b.length) throw new Error('default push rules differ in length between users');
    this.rules = a;
    this.userDependent = a.map((r, i) => r.shared === undefined || r.shared !== b[i]!.shared || r.ruleId !== b[i]!.ruleId);
    this.roles = a.map((r, i) => {
      if (!this.userDependent[i]) return null;
      const other = b[i]!.conditions;
      if (r.ruleId !== b[i]!.ruleId || other.length !== r.conditions.length) return r.conditions.map(() => ({ kind: 'user' }) as const);
      return r.conditions.map((c, j) => conditionRole(c, other[j]!, userA, userB));
    });
    this.outcomes = a.map((r) => ({ ruleId: r.ruleId, kind: r.kind, actions: r.actions, ...readActions(r.actions) }));
    this.actionsJson = a.map((r) => JSON.stringify(r.actions));
  }

  /**
   * Whether a user's compiled ruleset is the defaults, unchanged (then `evaluate` may take it);
   * `userId`: whose it is, to check that its user-dependent rules are the defaults' for them.
   */
  fits(compiled: CompiledPushRules, userId?: string): boolean {
    const rules = compiled.rules;
    if (rules.length !== this.rules.length) return false;
    for (let i = 0; i < rules.length; i++) {
      const mine = rules[i]!;
      const t = this.rules[i]!;
      if (mine.ruleId !== t.ruleId || mine.kind !== t.kind || JSON.stringify(mine.actions) !== this.actionsJson[i]) return false;
      if (!this.userDependent[i]) {
        if (mine.shared !== t.shared) return false;
      } else if (userId !== undefined && !sameWithUser(mine.conditions, t.conditions, userId, this.userA)) return false;
    }
    return true;
  }

  /** The event's plan: the shared rules and conditions tested once (ctx's user is not read by them). */
  plan(event: JsonObject, ctx: PushEvaluationContext): DefaultRulesPlan {
    const steps: DefaultRulesStep[] = [];
    for (let i = 0; i < this.rules.length; i++) {
      const roles = this.roles[i];
      if (roles) {
        const step = planStep(i, roles, event, ctx);
        if (step) steps.push(step);
      } else if (this.rules[i]!.test(event, ctx)) return { steps, fallback: this.outcomes[i]! };
    }
    return { steps, fallback: null };
  }

  /** A user's outcome: their ruleset must `fit`; ctx is the user's (userId, display name, subscriptions). */
  evaluate(plan: DefaultRulesPlan, compiled: CompiledPushRules, event: JsonObject, ctx: PushEvaluationContext): PushEvaluation | null {
    if (event.sender === ctx.userId) return null;
    for (const step of plan.steps) {
      if (step.only !== null && !step.only.has(ctx.userId)) continue;
      if (compiled.rules[step.index]!.test(event, ctx)) return this.outcomes[step.index]!;
    }
    return plan.fallback;
  }
}

/** How condition `a` (of user A's defaults) depends on the user, given the same condition `b` of user B's. */
function conditionRole(a: PushCondition, b: PushCondition, userA: string, userB: string): ConditionRole {
  if (a.kind === 'contains_display_name') return { kind: 'body' };
  if (a.kind === THREAD_SUBSCRIPTION_CONDITION) return { kind: 'thread' };
  if (JSON.stringify(a) === JSON.stringify(b)) return { kind: 'shared', test: compileCondition(a) };
  const ca = a as Record<string, JsonValue>;
  const cb = b as Record<string, JsonValue>;
  if ((a.kind === 'event_property_contains' || a.kind === 'event_property_is') && a.kind === b.kind && typeof ca.key === 'string' && ca.key === cb.key && ca.value === userA && cb.value === userB) {
    return { kind: a.kind === 'event_property_contains' ? 'idIn' : 'idIs', path: splitPropertyPath(ca.key) };
  }
  return { kind: 'user' };
}

/**
 * Whether conditions `mine` are `template`'s with the template user's id `templateUser` read as
 * `userId` (and its localpart as theirs: a content rule on the user's name).
 */
function sameWithUser(mine: readonly PushCondition[], template: readonly PushCondition[], userId: string, templateUser: string): boolean {
  const localOf = (u: string) => u.slice(1, u.indexOf(':') < 0 ? u.length : u.indexOf(':'));
  const [templateLocal, local] = [localOf(templateUser), localOf(userId)];
  const same = (x: unknown, t: unknown): boolean => {
    if (typeof t === 'string') return typeof x === 'string' && x === (t.includes(templateLocal) ? t.split(templateUser).map((p) => p.split(templateLocal).join(local)).join(userId) : t);
    if (typeof t !== 'object' || t === null) return x === t;
    if (typeof x !== 'object' || x === null || Array.isArray(x) !== Array.isArray(t)) return false;
    const tk = Object.keys(t);
    const xk = Object.keys(x);
    if (tk.length !== xk.length) return false;
    for (const k of tk) if (!Object.prototype.hasOwnProperty.call(x, k) || !same((x as Record<string, unknown>)[k], (t as Record<string, unknown>)[k])) return false;
    return true;
  };
  return same(mine, template);
}

/** A user-dependent rule's step for an event, or null when it can match no one. */
function planStep(index: number, roles: ConditionRole[], event: JsonObject, ctx: PushEvaluationContext): DefaultRulesStep | null {
  let only: Set<string> | null = null;
  const narrow = (ids: Set<string>) => {
    if (only === null) only = ids;
    else for (const id of only) if (!ids.has(id)) only.delete(id);
  };
  for (const role of roles) {
    switch (role.kind) {
      case 'shared':
        if (!role.test(event, ctx)) return null;
        break;
      case 'idIn': {
        const v = propertyAt(event, role.path);
        if (!Array.isArray(v)) return null;
        const ids = new Set<string>();
        for (const x of v) if (typeof x === 'string') ids.add(x);
        narrow(ids);
        break;
      }
      case 'idIs': {
        const v = propertyAt(event, role.path);
        if (typeof v !== 'string') return null;
        narrow(new Set([v]));
        break;
      }
      case 'body':
        if (typeof propertyAt(event, ['content', 'body']) !== 'string') return null;
        break;
      case 'thread':
        if (threadRootOf(event) === null) return null;
        break;
      default:
        break;
    }
  }
  if (only !== null && (only as Set<string>).size === 0) return null;
  return { index, only };
}
