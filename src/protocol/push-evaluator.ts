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

/** Compile a merged ruleset (src/protocol/push-rules.ts `mergePushRules`) for evaluation. */
export function compilePushRules(ruleset: PushRuleset): CompiledPushRules {
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
      if (conditions.some((c) => c?.kind === 'contains_display_name')) usesDisplayName = true;
      if (conditions.some((c) => c?.kind === THREAD_SUBSCRIPTION_CONDITION)) usesThreadSubscriptions = true;
      const tests = conditions.map(compileCondition);
      const test: Test =
        tests.length === 0 ? () => true : tests.length === 1 ? tests[0]! : (event, ctx) => tests.every((t) => t(event, ctx));
      // Conditions that read the user's own data (display name, thread subscriptions) are not shared.
      const shared = conditions.some((c) => c?.kind === 'contains_display_name' || c?.kind === THREAD_SUBSCRIPTION_CONDITION) ? undefined : `${kind}\u0001${JSON.stringify(conditions)}`;
      rules.push({ kind, ruleId: rule.rule_id, actions: Array.isArray(rule.actions) ? rule.actions : [], test, ...(shared ? { shared } : {}) });
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

/** What is left to test per user for one event (`DefaultRulesTemplate.plan`). */
export interface DefaultRulesPlan {
  /** Indexes of the user-dependent rules before the first shared rule that matches, in order. */
  steps: number[];
  /** The outcome when none of them matches: the first matching shared rule's, or nothing. */
  fallback: PushEvaluation | null;
}

/**
 * One event evaluated once for every user who has the server-default rules as they are (most
 * users never change one), where evaluatePushRules walks each user's whole ruleset. Those users'
 * rulesets differ only in the rules that name the user (`.m.rule.invite_for_me`,
 * `.m.rule.is_user_mention`) or read the user's own data (display name, thread subscriptions):
 * the user-dependent rules, found by compiling the defaults for two users and comparing. `plan`
 * walks the defaults once per event: it tests each shared rule (once), up to the first that
 * matches, and keeps the user-dependent rules before it; `evaluate` then tests only those against
 * a user's own ruleset, and users with the same outcome share one PushEvaluation object. A
 * ruleset `fits` the template when it is the defaults, unchanged (the same rules in the same
 * order, the same conditions and actions); for the others the caller uses evaluatePushRules.
 * The outcome is evaluatePushRules's, rule for rule (test/protocol/push-default-plan.unit.test.ts).
 */
export class DefaultRulesTemplate {
  private readonly rules: CompiledPushRule[];
  private readonly userDependent: boolean[];
  private readonly outcomes: PushEvaluation[];
  private readonly actionsJson: string[];

  /** `defaultsFor(userId)`: the compiled server-default rules of a user (mergePushRules with nothing stored). */
  constructor(defaultsFor: (userId: string) => CompiledPushRules) {
    const a = defaultsFor('@\u0001template-a:\u0001').rules;
    const b = defaultsFor('@\u0001template-b:\u0001').rules;
    if (a.length !== b.length) throw new Error('default push rules differ in length between users');
    this.rules = a;
    this.userDependent = a.map((r, i) => r.shared === undefined || r.shared !== b[i]!.shared || r.ruleId !== b[i]!.ruleId);
    this.outcomes = a.map((r) => ({ ruleId: r.ruleId, kind: r.kind, actions: r.actions, ...readActions(r.actions) }));
    this.actionsJson = a.map((r) => JSON.stringify(r.actions));
  }

  /** Whether a user's compiled ruleset is the defaults, unchanged (then `evaluate` may take it). */
  fits(compiled: CompiledPushRules): boolean {
    const rules = compiled.rules;
    if (rules.length !== this.rules.length) return false;
    for (let i = 0; i < rules.length; i++) {
      const mine = rules[i]!;
      const t = this.rules[i]!;
      if (mine.ruleId !== t.ruleId || mine.kind !== t.kind || JSON.stringify(mine.actions) !== this.actionsJson[i]) return false;
      if (!this.userDependent[i] && mine.shared !== t.shared) return false;
    }
    return true;
  }

  /** The event's plan: the shared rules tested once (ctx's user is not read by them). */
  plan(event: JsonObject, ctx: PushEvaluationContext): DefaultRulesPlan {
    const steps: number[] = [];
    for (let i = 0; i < this.rules.length; i++) {
      if (this.userDependent[i]) steps.push(i);
      else if (this.rules[i]!.test(event, ctx)) return { steps, fallback: this.outcomes[i]! };
    }
    return { steps, fallback: null };
  }

  /** A user's outcome: their ruleset must `fit`; ctx is the user's (userId, display name, subscriptions). */
  evaluate(plan: DefaultRulesPlan, compiled: CompiledPushRules, event: JsonObject, ctx: PushEvaluationContext): PushEvaluation | null {
    if (event.sender === ctx.userId) return null;
    for (const i of plan.steps) if (compiled.rules[i]!.test(event, ctx)) return this.outcomes[i]!;
    return plan.fallback;
  }
}
