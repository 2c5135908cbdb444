/**
 * DefaultRulesTemplate (src/protocol/push-evaluator.ts): an event evaluated once for every member
 * with the server-default rules unchanged gives, member for member, what evaluatePushRules gives
 * on the member's own ruleset — over a table of events (messages, mentions of one member and of
 * the room with and without the sender's permission, invites of one member, membership changes,
 * notices, edits, reactions, encrypted and one-to-one rooms, calls, tombstones, polls, thread
 * replies with MSC4306 thread subscriptions on and off) and rooms of 2 and 10 members. Rulesets
 * that are not the defaults as they are (own rules, a default disabled, enabled or with other
 * actions) do not fit the template.
 */
import { describe, expect, it } from 'vitest';
import { DefaultRulesTemplate, PushRuleInterner, compilePushRules, evaluatePushRules, type PushEvaluationContext } from '../../src/protocol/push-evaluator';
import { THREAD_SUBSCRIPTION_CONDITION, emptyStoredPushRules, mergePushRules, putPushRule, setPushRuleActions, setPushRuleEnabled, type PushAction, type PushCondition, type PushRule, type PushRuleFeatures, type PushRuleset } from '../../src/protocol/push-rules';
import type { JsonObject } from '../../src/protocol/json';

const ROOM = '!room:example.org';
const users = ['@alice:example.org', '@bob:example.org', '@carol:example.org', '@dan:other.org'];
const [alice, bob, carol] = users as [string, string, string];

function events(): Record<string, JsonObject> {
  const base = (sender: string) => ({ room_id: ROOM, sender, event_id: '$e', origin_server_ts: 1 });
  const msg = (content: JsonObject, sender = alice): JsonObject => ({ ...base(sender), type: 'm.room.message', content: { msgtype: 'm.text', body: 'hello', ...content } });
  const member = (target: string, membership: string, sender = alice): JsonObject => ({ ...base(sender), type: 'm.room.member', state_key: target, content: { membership } });
  const thread = { 'm.relates_to': { rel_type: 'm.thread', event_id: '$root', is_falling_back: true } };
  return {
    'plain message': msg({}),
    'message from bob': msg({}, bob),
    'mention of bob': msg({ body: 'bob?', 'm.mentions': { user_ids: [bob] } }),
    'mention of bob and carol': msg({ 'm.mentions': { user_ids: [carol, bob] } }),
    'room mention': msg({ 'm.mentions': { room: true } }),
    'room mention by bob': msg({ 'm.mentions': { room: true } }, bob),
    'notice': msg({ msgtype: 'm.notice' }),
    'notice mentioning bob': msg({ msgtype: 'm.notice', 'm.mentions': { user_ids: [bob] } }),
    'edit': msg({ 'm.new_content': { msgtype: 'm.text', body: 'x' }, 'm.relates_to': { rel_type: 'm.replace', event_id: '$x' } }),
    'edit mentioning carol': msg({ 'm.mentions': { user_ids: [carol] }, 'm.relates_to': { rel_type: 'm.replace', event_id: '$x' } }),
    'thread reply': msg(thread),
    'thread reply mentioning bob': msg({ ...thread, 'm.mentions': { user_ids: [bob] } }),
    'invite of bob': member(bob, 'invite'),
    'invite of dan': member('@dan:other.org', 'invite'),
    'join of carol': member(carol, 'join', carol),
    'reaction': { ...base(alice), type: 'm.reaction', content: { 'm.relates_to': { rel_type: 'm.annotation', event_id: '$x', key: '+' } } },
    'encrypted': { ...base(alice), type: 'm.room.encrypted', content: { algorithm: 'm.megolm.v1.aes-sha2', ciphertext: 'x' } },
    'call': { ...base(alice), type: 'm.call.invite', content: {} },
    'tombstone': { ...base(alice), type: 'm.room.tombstone', state_key: '', content: { replacement_room: '!new:x' } },
    'poll start': { ...base(alice), type: 'm.poll.start', content: {} },
    'poll response': { ...base(alice), type: 'm.poll.response', content: {} },
    'server acl': { ...base(alice), type: 'm.room.server_acl', state_key: '', content: {} },
    'custom type': { ...base(alice), type: 'org.example.thing', content: { body: 'hello' } },
  };
}

describe.each([
  ['without thread subscriptions', {}, false],
  ['with MSC4306 thread subscriptions', { threadSubscriptions: true }, false],
  ['with rules shared between users (PushRuleInterner)', {}, true],
  ['with MSC4306 thread subscriptions and rules shared between users', { threadSubscriptions: true }, true],
] as [string, PushRuleFeatures, boolean][])('evaluating the default rules once per event, %s', (_name, features, interned) => {
  // Interned: every compilation of the block goes through one interner, the template's too (as the
  // push evaluator does), so members' rulesets share rule objects with each other and the template.
  const interner = interned ? new PushRuleInterner() : undefined;
  const compiled = (u: string, stored = emptyStoredPushRules()) => compilePushRules(mergePushRules(u, stored, features), interner);
  const template = new DefaultRulesTemplate((u) => compiled(u));

  it('gives every member what their own ruleset gives', () => {
    let compared = 0;
    for (const members of [2, 10]) {
      for (const subscribedTo of [[] as string[], [bob]]) {
        for (const [name, event] of Object.entries(events())) {
          const ctx: PushEvaluationContext = {
            userId: '',
            roomMemberCount: members,
            displayName: () => null,
            senderHasNotificationPermission: () => event.sender === alice, // alice has the power
            threadSubscribed: () => subscribedTo.includes(ctx.userId),
            shared: new Map(),
          };
          const plan = template.plan(event, ctx);
          for (const u of users) {
            const rules = compiled(u);
            expect(template.fits(rules)).toBe(true);
            ctx.userId = u;
            const planned = template.evaluate(plan, rules, event, ctx);
            const own = evaluatePushRules(rules, event, { ...ctx, shared: new Map() });
            expect(planned, `${name}, ${u}, ${members} members`).toEqual(own);
            compared++;
          }
        }
      }
    }
    expect(compared).toBe(2 * 2 * Object.keys(events()).length * users.length);
    // The table is not trivial: it notifies, highlights and stays quiet.
    const ctx: PushEvaluationContext = { userId: '', roomMemberCount: 10, displayName: () => null, senderHasNotificationPermission: () => true };
    const outcome = (event: string, u: string) => template.evaluate(template.plan(events()[event]!, ctx), compiled(u), events()[event]!, { ...ctx, userId: u });
    expect(outcome('mention of bob', bob)).toMatchObject({ ruleId: '.m.rule.is_user_mention', highlight: true });
    expect(outcome('mention of bob', carol)).toMatchObject({ ruleId: '.m.rule.message', notify: true, highlight: false });
    expect(outcome('invite of bob', bob)).toMatchObject({ ruleId: '.m.rule.invite_for_me', notify: true });
    expect(outcome('invite of bob', carol)).toMatchObject({ ruleId: '.m.rule.member_event', notify: false });
    expect(outcome('plain message', alice)).toBeNull(); // the sender
  });

  it('shares one outcome between members who get the same', () => {
    const ctx: PushEvaluationContext = { userId: '', roomMemberCount: 10, displayName: () => null, senderHasNotificationPermission: () => true };
    const event = events()['plain message']!;
    const plan = template.plan(event, ctx);
    const [b, c] = [bob, carol].map((u) => template.evaluate(plan, compiled(u), event, { ...ctx, userId: u }));
    expect(b).toBe(c);
  });

  it('does not take rulesets that are not the defaults as they are', () => {
    const stored = emptyStoredPushRules();
    expect(template.fits(compiled(bob, putPushRule(stored, 'content', { rule_id: 'cake', pattern: 'cake', actions: ['notify'] })))).toBe(false);
    expect(template.fits(compiled(bob, putPushRule(stored, 'room', { rule_id: ROOM, actions: [] })))).toBe(false);
    expect(template.fits(compiled(bob, setPushRuleEnabled(bob, stored, 'underride', '.m.rule.message', false)))).toBe(false);
    expect(template.fits(compiled(bob, setPushRuleEnabled(bob, stored, 'override', '.m.rule.master', true)))).toBe(false);
    expect(template.fits(compiled(bob, setPushRuleActions(bob, stored, 'underride', '.m.rule.message', ['notify', { set_tweak: 'sound', value: 'bell' }])))).toBe(false);
    expect(template.fits(compiled(bob, setPushRuleActions(bob, stored, 'override', '.m.rule.is_user_mention', ['notify'])))).toBe(false);
    // Changed back to what the defaults say: fits again.
    expect(template.fits(compiled(bob, setPushRuleActions(bob, stored, 'underride', '.m.rule.message', ['notify'])))).toBe(true);
  });
});

/**
 * The plan narrows the user-dependent rules per event (a condition that does not depend on the
 * user fails for all; `m.mentions.user_ids` read once into the users it can hold for). Checked
 * against evaluatePushRules on a richer "defaults" than the server's: the legacy body rules
 * (display name, the user's localpart as a content rule), a rule on the user's id as a state key
 * (`event_property_is`), thread subscriptions and member counts, for members with varied display
 * names (none, empty, substrings of other words, non-ASCII, glob characters) and events with
 * varied, malformed and case-changed mentions, invites and thread replies.
 */
describe('the plan of a ruleset with more user-dependent rules', () => {
  const members = ['@alice:example.org', '@bob:example.org', '@carol:example.org', '@car:example.org', '@omega:example.org', '@x.y:example.org'];
  const names: Record<string, string | null> = {
    '@alice:example.org': 'Alice',
    '@bob:example.org': null,
    '@carol:example.org': '',
    '@car:example.org': 'car',
    '@omega:example.org': 'ΩMEGA',
    '@x.y:example.org': 'a*b?',
  };
  const localpart = (u: string) => u.slice(1, u.indexOf(':'));
  const ruleset = (u: string): PushRuleset => {
    const rule = (rule_id: string, conditions: PushCondition[], actions: PushAction[], extra: Partial<PushRule> = {}): PushRule => ({ rule_id, default: true, enabled: true, conditions, actions, ...extra });
    const hl = { set_tweak: 'highlight' };
    return {
      override: [
        rule('.m.rule.master', [], [], { enabled: false }),
        rule('.m.rule.invite_for_me', [{ kind: 'event_match', key: 'type', pattern: 'm.room.member' }, { kind: 'event_match', key: 'content.membership', pattern: 'invite' }, { kind: 'event_match', key: 'state_key', pattern: u }], ['notify']),
        rule('.x.state_key_is_me', [{ kind: 'event_property_is', key: 'type', value: 'org.example.poke' }, { kind: 'event_property_is', key: 'state_key', value: u }], ['notify', { set_tweak: 'sound', value: 'poke' }]),
        rule('.x.mention_and_body', [{ kind: 'event_property_contains', key: 'content.m\\.mentions.user_ids', value: u }, { kind: 'contains_display_name' }], ['notify', hl, { set_tweak: 'sound', value: 'both' }]),
        rule('.m.rule.is_user_mention', [{ kind: 'event_property_contains', key: 'content.m\\.mentions.user_ids', value: u }], ['notify', hl]),
        rule('.m.rule.contains_display_name', [{ kind: 'contains_display_name' }], ['notify', hl]),
        rule('.m.rule.suppress_edits', [{ kind: 'event_property_is', key: 'content.m\\.relates_to.rel_type', value: 'm.replace' }], []),
      ],
      content: [{ rule_id: '.m.rule.contains_user_name', default: true, enabled: true, pattern: localpart(u), actions: ['notify', { set_tweak: 'sound', value: 'name' }] }],
      postcontent: [
        rule('.x.unsubscribed_thread', [{ kind: THREAD_SUBSCRIPTION_CONDITION, subscribed: false }], []),
        rule('.x.subscribed_thread', [{ kind: THREAD_SUBSCRIPTION_CONDITION, subscribed: true }], ['notify']),
      ],
      room: [],
      sender: [],
      underride: [
        rule('.m.rule.room_one_to_one', [{ kind: 'room_member_count', is: '2' }, { kind: 'event_match', key: 'type', pattern: 'm.room.message' }], ['notify', { set_tweak: 'sound', value: 'default' }]),
        rule('.m.rule.message', [{ kind: 'event_match', key: 'type', pattern: 'm.room.message' }], ['notify']),
      ],
    } as PushRuleset;
  };
  const template = new DefaultRulesTemplate((u) => compilePushRules(ruleset(u)));
  const thread = { 'm.relates_to': { rel_type: 'm.thread', event_id: '$root' } };
  const msg = (content: JsonObject, sender = '@alice:example.org'): JsonObject => ({ room_id: ROOM, sender, type: 'm.room.message', content: { msgtype: 'm.text', body: 'hello', ...content } });
  const table: Record<string, JsonObject> = {
    'plain': msg({}),
    'no body': msg({ body: 7 }),
    'names in the body': msg({ body: 'Alice and CAR went to ωmega, a*b? too' }),
    'names inside words': msg({ body: 'carpets alice_ xomega bobby' }),
    'localparts': msg({ body: 'bob, x.y and carol' }, '@bob:example.org'),
    'mention of bob': msg({ 'm.mentions': { user_ids: ['@bob:example.org'] } }),
    'mention of car, named': msg({ body: 'car!', 'm.mentions': { user_ids: ['@car:example.org', '@car:example.org'] } }),
    'mentions malformed': msg({ 'm.mentions': { user_ids: [7, null, { id: '@bob:example.org' }, ['@carol:example.org']] } }),
    'mentions not a list': msg({ 'm.mentions': { user_ids: '@bob:example.org' } }),
    'mention in another case': msg({ 'm.mentions': { user_ids: ['@BOB:example.org'] } }),
    'mention of the sender': msg({ 'm.mentions': { user_ids: ['@alice:example.org', '@omega:example.org'] } }),
    'empty mentions': msg({ 'm.mentions': { user_ids: [] } }),
    'edit mentioning carol': msg({ 'm.mentions': { user_ids: ['@carol:example.org'] }, 'm.relates_to': { rel_type: 'm.replace', event_id: '$x' } }),
    'thread reply': msg(thread),
    'thread reply naming Alice': msg({ ...thread, body: 'alice?' }, '@bob:example.org'),
    'invite of bob': { room_id: ROOM, sender: '@alice:example.org', type: 'm.room.member', state_key: '@bob:example.org', content: { membership: 'invite' } },
    'invite in another case': { room_id: ROOM, sender: '@alice:example.org', type: 'm.room.member', state_key: '@CAROL:example.org', content: { membership: 'invite' } },
    'poke of car': { room_id: ROOM, sender: '@alice:example.org', type: 'org.example.poke', state_key: '@car:example.org', content: {} },
    'poke of no one': { room_id: ROOM, sender: '@alice:example.org', type: 'org.example.poke', state_key: 7, content: {} },
  };

  it('gives every member what their own ruleset gives', () => {
    const outcomes = new Set<string>();
    let compared = 0;
    for (const count of [2, 10]) {
      for (const subscribers of [[] as string[], ['@bob:example.org', '@car:example.org']]) {
        for (const [name, event] of Object.entries(table)) {
          const ctx: PushEvaluationContext = {
            userId: '',
            roomMemberCount: count,
            displayName: () => names[ctx.userId] ?? null,
            senderHasNotificationPermission: () => true,
            threadSubscribed: () => subscribers.includes(ctx.userId),
            shared: new Map(),
          };
          const plan = template.plan(event, ctx);
          for (const u of members) {
            const rules = compilePushRules(ruleset(u));
            expect(template.fits(rules, u)).toBe(true);
            ctx.userId = u;
            const planned = template.evaluate(plan, rules, event, ctx);
            const own = evaluatePushRules(rules, event, { ...ctx, shared: new Map() });
            expect(planned, `${name}, ${u}, ${count} members, subscribed ${subscribers.join()}`).toEqual(own);
            outcomes.add(own?.ruleId ?? 'none');
            compared++;
          }
        }
      }
    }
    expect(compared).toBe(2 * 2 * Object.keys(table).length * members.length);
    // Every rule decided some outcome.
    expect([...outcomes].sort()).toEqual(
      ['.m.rule.contains_display_name', '.m.rule.contains_user_name', '.m.rule.invite_for_me', '.m.rule.is_user_mention', '.m.rule.message', '.m.rule.room_one_to_one', '.m.rule.suppress_edits', '.x.mention_and_body', '.x.state_key_is_me', '.x.subscribed_thread', '.x.unsubscribed_thread', 'none'].sort(),
    );
  });

  it('leaves out, per event, the user-dependent rules that can match no one', () => {
    const ctx: PushEvaluationContext = { userId: '', roomMemberCount: 10, displayName: () => null, senderHasNotificationPermission: () => true };
    const ids = (event: string) => template.plan(table[event]!, ctx).steps.map((s) => [compilePushRules(ruleset('@a:b')).rules[s.index]!.ruleId, s.only && [...s.only].sort()]);
    // No invite, no poke, no mentions, no thread: only the body rules are left to test per member.
    expect(ids('plain')).toEqual([['.m.rule.contains_display_name', null], ['.m.rule.contains_user_name', null]]);
    expect(ids('no body')).toEqual([['.m.rule.contains_user_name', null]]);
    expect(ids('mention of car, named').slice(0, 2)).toEqual([['.x.mention_and_body', ['@car:example.org']], ['.m.rule.is_user_mention', ['@car:example.org']]]);
    expect(ids('mentions malformed')[0]).toEqual(['.m.rule.contains_display_name', null]);
    expect(ids('poke of car')[0]).toEqual(['.x.state_key_is_me', ['@car:example.org']]);
  });

  it('does not take another user\'s defaults as the user\'s own', () => {
    expect(template.fits(compilePushRules(ruleset('@bob:example.org')), '@bob:example.org')).toBe(true);
    expect(template.fits(compilePushRules(ruleset('@bob:example.org')), '@carol:example.org')).toBe(false);
  });
});
