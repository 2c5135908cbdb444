/**
 * PushRuleInterner (src/protocol/push-evaluator.ts): rules compiled once for every user who has
 * them. Rulesets compiled through it evaluate exactly as rulesets compiled alone, over a table of
 * events and users with their own rules, changed defaults and disabled ones; the rules the users
 * have in common are one object, the rules that name their user are each user's own; shared rules
 * are frozen without freezing what the caller passed; the interner stays within its bound and a
 * rule it let go still works.
 */
import { describe, expect, it } from 'vitest';
import { PushRuleInterner, compilePushRules, evaluatePushRules, type CompiledPushRules, type PushEvaluationContext } from '../../src/protocol/push-evaluator';
import { emptyStoredPushRules, mergePushRules, putPushRule, setPushRuleActions, setPushRuleEnabled, type PushCondition, type StoredPushRules } from '../../src/protocol/push-rules';
import type { JsonObject } from '../../src/protocol/json';

const ROOM = '!room:example.org';

function events(users: string[]): Record<string, JsonObject> {
  const base = (sender: string) => ({ room_id: ROOM, sender, event_id: '$e', origin_server_ts: 1 });
  const msg = (body: string, extra: JsonObject = {}, sender = '@someone:example.org'): JsonObject => ({ ...base(sender), type: 'm.room.message', content: { msgtype: 'm.text', body, ...extra } });
  const out: Record<string, JsonObject> = {
    'plain message': msg('hello'),
    'cake': msg('who wants cake?'),
    'notice': msg('hi', { msgtype: 'm.notice' }),
    'room mention': msg('all', { 'm.mentions': { room: true } }),
    'encrypted': { ...base('@someone:example.org'), type: 'm.room.encrypted', content: { algorithm: 'm.megolm.v1.aes-sha2', ciphertext: 'x' } },
    'from the muted sender': msg('noise', {}, '@noisy:example.org'),
  };
  for (const u of users) {
    out[`invite of ${u}`] = { ...base('@someone:example.org'), type: 'm.room.member', state_key: u, content: { membership: 'invite' } };
    out[`mention of ${u}`] = msg('hey', { 'm.mentions': { user_ids: [u] } });
    out[`name of ${u}`] = msg(`is ${u.slice(1, u.indexOf(':'))} there?`);
  }
  return out;
}

/** Stored rules of the kinds users set: own content, room and sender rules, defaults disabled or with other actions. */
function storedFor(i: number, userId: string): StoredPushRules {
  let s = emptyStoredPushRules();
  switch (i % 6) {
    case 1:
      s = putPushRule(s, 'content', { rule_id: 'cake', pattern: 'cake', actions: ['notify', { set_tweak: 'highlight' }] });
      break;
    case 2:
      s = setPushRuleEnabled(userId, s, 'underride', '.m.rule.message', false);
      break;
    case 3:
      s = setPushRuleActions(userId, s, 'underride', '.m.rule.message', ['notify', { set_tweak: 'sound', value: 'bell' }]);
      break;
    case 4:
      s = putPushRule(s, 'room', { rule_id: ROOM, actions: [] });
      break;
    case 5:
      s = putPushRule(s, 'sender', { rule_id: '@noisy:example.org', actions: [] });
      break;
  }
  return s;
}

const context = (userId: string, members: number): PushEvaluationContext => ({
  userId,
  roomMemberCount: members,
  displayName: () => userId.slice(1, userId.indexOf(':')),
  senderHasNotificationPermission: () => true,
});

describe('PushRuleInterner', () => {
  it('gives every user what their ruleset compiled alone gives', () => {
    const users = Array.from({ length: 24 }, (_, i) => `@user${i}:example.org`);
    const interner = new PushRuleInterner();
    const table = events(users);
    let compared = 0;
    const outcomes = new Set<string>();
    for (const [i, u] of users.entries()) {
      const ruleset = mergePushRules(u, storedFor(i, u));
      const alone = compilePushRules(ruleset);
      const shared = compilePushRules(ruleset, interner);
      expect(shared.usesDisplayName).toBe(alone.usesDisplayName);
      expect(shared.rules.map((r) => [r.kind, r.ruleId, r.shared])).toEqual(alone.rules.map((r) => [r.kind, r.ruleId, r.shared]));
      for (const [name, event] of Object.entries(table)) {
        for (const members of [2, 10]) {
          const want = evaluatePushRules(alone, event, context(u, members));
          expect(evaluatePushRules(shared, event, context(u, members)), `${name} for ${u} in a room of ${members}`).toEqual(want);
          outcomes.add(want ? `${want.ruleId} ${JSON.stringify(want.actions)}` : 'none');
          compared++;
        }
      }
    }
    expect(compared).toBe(users.length * Object.keys(table).length * 2);
    // The table is not trivial: own rules, changed defaults and the rules that name the user all decide somewhere.
    for (const rule of ['cake', ROOM, '@noisy:example.org', '.m.rule.invite_for_me', '.m.rule.is_user_mention', '.m.rule.message', '.m.rule.room_one_to_one']) {
      expect([...outcomes].some((o) => o.startsWith(`${rule} `)), rule).toBe(true);
    }
    expect([...outcomes].some((o) => o.includes('bell'))).toBe(true);
  });

  it('shares the rules users have in common and keeps the ones that name the user their own', () => {
    const interner = new PushRuleInterner();
    const [a, b] = ['@a:example.org', '@b:example.org'].map((u) => compilePushRules(mergePushRules(u, null), interner)) as [CompiledPushRules, CompiledPushRules];
    const own = a.rules.filter((r, i) => r !== b.rules[i]).map((r) => r.ruleId);
    expect(own.sort()).toEqual(['.m.rule.contains_user_name', '.m.rule.invite_for_me', '.m.rule.is_user_mention'].filter((id) => a.rules.some((r) => r.ruleId === id)).sort());
    expect(a.rules.length - own.length).toBeGreaterThan(15);
    // Other actions on one default: that rule is the user's own, the others still shared.
    const c = compilePushRules(mergePushRules('@c:example.org', setPushRuleActions('@c:example.org', emptyStoredPushRules(), 'underride', '.m.rule.message', ['notify', { set_tweak: 'sound', value: 'bell' }])), interner);
    const message = (r: CompiledPushRules) => r.rules.find((x) => x.ruleId === '.m.rule.message')!;
    expect(message(c)).not.toBe(message(a));
    expect(message(c).actions).toEqual(['notify', { set_tweak: 'sound', value: 'bell' }]);
    expect(message(a).actions).toEqual(['notify']);
    expect(message(b)).toBe(message(a));
    expect(c.rules.find((x) => x.ruleId === '.m.rule.encrypted')).toBe(a.rules.find((x) => x.ruleId === '.m.rule.encrypted'));
  });

  it('keeps rules apart that differ only in their id or only in their kind', () => {
    const interner = new PushRuleInterner();
    const conditions: PushCondition[] = [{ kind: 'event_match', key: 'type', pattern: 'org.example.ping' }];
    const withRule = (kind: 'override' | 'underride', ruleId: string) => {
      const ruleset = mergePushRules('@a:example.org', null);
      ruleset[kind] = [{ rule_id: ruleId, default: false, enabled: true, conditions, actions: ['notify'] }, ...ruleset[kind]];
      return compilePushRules(ruleset, interner);
    };
    const ping: JsonObject = { room_id: ROOM, sender: '@x:example.org', event_id: '$p', type: 'org.example.ping', content: {} };
    const outcome = (r: CompiledPushRules) => evaluatePushRules(r, ping, context('@a:example.org', 5));
    expect(outcome(withRule('override', 'foo'))).toMatchObject({ ruleId: 'foo', kind: 'override' });
    expect(outcome(withRule('override', 'bar'))).toMatchObject({ ruleId: 'bar', kind: 'override' });
    expect(outcome(withRule('underride', 'foo'))).toMatchObject({ ruleId: 'foo', kind: 'underride' });
    // Each its own rule object.
    const rule = (r: CompiledPushRules, id: string) => r.rules.find((x) => x.ruleId === id)!;
    expect(rule(withRule('override', 'foo'), 'foo')).not.toBe(rule(withRule('override', 'bar'), 'bar'));
  });

  it('freezes what it shares, not what the caller passed', () => {
    const interner = new PushRuleInterner();
    const ruleset = mergePushRules('@a:example.org', null);
    const compiled = compilePushRules(ruleset, interner);
    const rule = compiled.rules.find((r) => r.ruleId === '.m.rule.message')!;
    expect(Object.isFrozen(rule)).toBe(true);
    expect(Object.isFrozen(rule.actions)).toBe(true);
    expect(Object.isFrozen(rule.conditions)).toBe(true);
    // To the last value: the conditions' objects and the actions' tweaks too.
    expect(rule.conditions.every((c) => Object.isFrozen(c))).toBe(true);
    const highlight = compiled.rules.find((r) => r.ruleId === '.m.rule.is_user_mention')!;
    expect(highlight.actions.some((a) => typeof a === 'object')).toBe(true);
    expect(highlight.actions.every((a) => Object.isFrozen(a))).toBe(true);
    const given = ruleset.underride.find((r) => r.rule_id === '.m.rule.message')!;
    expect(Object.isFrozen(given.actions)).toBe(false);
    expect(Object.isFrozen(given.conditions)).toBe(false);
    given.actions.push({ set_tweak: 'sound', value: 'changed' });
    (given.conditions![0] as { pattern?: string }).pattern = 'changed';
    expect(rule.actions).toEqual(['notify']);
    expect(JSON.stringify(rule.conditions)).not.toContain('changed');
    // Without an interner nothing is frozen (each ruleset is its caller's alone).
    expect(Object.isFrozen(compilePushRules(mergePushRules('@a:example.org', null)).rules[0])).toBe(false);
  });

  it('holds at least one rule whatever bound it is given', () => {
    const interner = new PushRuleInterner(0);
    const a = compilePushRules(mergePushRules('@a:example.org', null), interner);
    expect(interner.size).toBe(1);
    expect(interner.conditionCount).toBe(1);
    expect(evaluatePushRules(a, events(['@a:example.org'])['invite of @a:example.org']!, context('@a:example.org', 5))?.ruleId).toBe('.m.rule.invite_for_me');
  });

  it('stays within its bound, and a rule it let go still works', () => {
    const interner = new PushRuleInterner(64);
    const users = Array.from({ length: 300 }, (_, i) => `@u${i}:example.org`);
    const rulesets = users.map((u) => compilePushRules(mergePushRules(u, null), interner));
    expect(interner.size).toBeLessThanOrEqual(64);
    expect(interner.conditionCount).toBeLessThanOrEqual(64);
    expect(interner.conditionCount).toBeGreaterThan(0);
    // The first user's own rules left the interner long ago; they still name that user only.
    const invite = (target: string): JsonObject => ({ room_id: ROOM, sender: '@x:example.org', event_id: '$i', type: 'm.room.member', state_key: target, content: { membership: 'invite' } });
    expect(evaluatePushRules(rulesets[0]!, invite(users[0]!), context(users[0]!, 5))).toMatchObject({ ruleId: '.m.rule.invite_for_me', notify: true });
    expect(evaluatePushRules(rulesets[0]!, invite(users[1]!), context(users[0]!, 5))?.ruleId).not.toBe('.m.rule.invite_for_me');
    // The shared rules were used by every user and stayed: one object for the first user and the last.
    const encrypted = (r: CompiledPushRules) => r.rules.find((x) => x.ruleId === '.m.rule.encrypted');
    expect(encrypted(rulesets[0]!)).toBe(encrypted(rulesets[299]!));
  });
});
