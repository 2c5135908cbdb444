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
import { DefaultRulesTemplate, compilePushRules, evaluatePushRules, type PushEvaluationContext } from '../../src/protocol/push-evaluator';
import { emptyStoredPushRules, mergePushRules, putPushRule, setPushRuleActions, setPushRuleEnabled, type PushRuleFeatures } from '../../src/protocol/push-rules';
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
  ['without thread subscriptions', {}],
  ['with MSC4306 thread subscriptions', { threadSubscriptions: true }],
] as [string, PushRuleFeatures][])('evaluating the default rules once per event, %s', (_name, features) => {
  const compiled = (u: string, stored = emptyStoredPushRules()) => compilePushRules(mergePushRules(u, stored, features));
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
