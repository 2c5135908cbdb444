import { describe, expect, it } from 'vitest';
import {
  MAX_PUSH_PATTERN_BYTES,
  PUSH_RULE_KINDS,
  PushRuleError,
  defaultPushRules,
  deletePushRule,
  emptyStoredPushRules,
  impliedConditions,
  mergePushRules,
  parseNewRule,
  putPushRule,
  rulesInEvaluationOrder,
  setPushRuleActions,
  setPushRuleEnabled,
  validateActions,
  validateCondition,
  validateUserRuleId,
  type StoredPushRules,
} from '../../src/protocol/push-rules';

const ME = '@alice:example.org';
const ids = (rules: { rule_id: string }[]) => rules.map((r) => r.rule_id);

function rejects(f: () => unknown, status: number, errcode: string): void {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(PushRuleError);
    expect((e as PushRuleError).status).toBe(status);
    expect((e as PushRuleError).errcode).toBe(errcode);
    return;
  }
  expect.fail('expected a PushRuleError');
}

describe('server-default push rules', () => {
  it('lists the spec’s rules in the spec’s order', () => {
    const d = defaultPushRules(ME);
    expect(ids(d.override)).toEqual([
      '.m.rule.master',
      '.m.rule.suppress_notices',
      '.m.rule.invite_for_me',
      '.m.rule.member_event',
      '.m.rule.is_user_mention',
      '.m.rule.is_room_mention',
      '.m.rule.tombstone',
      '.m.rule.reaction',
      '.m.rule.room.server_acl',
      '.m.rule.poll_response',
      '.m.rule.suppress_edits',
      '.org.matrix.msc3930.rule.poll_response',
    ]);
    expect(d.content).toEqual([]);
    expect(d.room).toEqual([]);
    expect(d.sender).toEqual([]);
    expect(ids(d.underride)).toEqual(['.m.rule.call', '.m.rule.encrypted_room_one_to_one', '.m.rule.room_one_to_one', '.m.rule.message', '.m.rule.encrypted', '.m.rule.poll_start_one_to_one', '.m.rule.poll_start', '.m.rule.poll_end_one_to_one', '.m.rule.poll_end', '.org.matrix.msc3930.rule.poll_start_one_to_one', '.org.matrix.msc3930.rule.poll_start', '.org.matrix.msc3930.rule.poll_end_one_to_one', '.org.matrix.msc3930.rule.poll_end']);
    // MSC4306's rules only with thread subscriptions on (as Synapse's msc4306_enabled).
    expect(d.postcontent).toEqual([]);
    expect(ids(defaultPushRules(ME, { threadSubscriptions: true }).postcontent)).toEqual(['.io.element.msc4306.rule.unsubscribed_thread', '.io.element.msc4306.rule.subscribed_thread']);
    for (const kind of PUSH_RULE_KINDS) for (const r of d[kind]) expect(r.default).toBe(true);
  });

  it('matches the spec’s definitions, with the user id filled in', () => {
    const d = defaultPushRules(ME);
    expect(d.override[0]).toEqual({ rule_id: '.m.rule.master', default: true, enabled: false, conditions: [], actions: [] });
    expect(d.override[2]).toEqual({
      rule_id: '.m.rule.invite_for_me',
      default: true,
      enabled: true,
      conditions: [
        { kind: 'event_match', key: 'type', pattern: 'm.room.member' },
        { kind: 'event_match', key: 'content.membership', pattern: 'invite' },
        { kind: 'event_match', key: 'state_key', pattern: ME },
      ],
      actions: ['notify', { set_tweak: 'sound', value: 'default' }],
    });
    expect(d.override[4]).toEqual({
      rule_id: '.m.rule.is_user_mention',
      default: true,
      enabled: true,
      conditions: [{ kind: 'event_property_contains', key: 'content.m\\.mentions.user_ids', value: ME }],
      actions: ['notify', { set_tweak: 'sound', value: 'default' }, { set_tweak: 'highlight' }],
    });
    expect(d.override[5]!.conditions).toEqual([
      { kind: 'event_property_is', key: 'content.m\\.mentions.room', value: true },
      { kind: 'sender_notification_permission', key: 'room' },
    ]);
    expect(d.override[10]!.conditions).toEqual([{ kind: 'event_property_is', key: 'content.m\\.relates_to.rel_type', value: 'm.replace' }]);
    expect(d.underride[0]!.actions).toEqual(['notify', { set_tweak: 'sound', value: 'ring' }]);
    expect(d.underride[1]!.conditions).toEqual([
      { kind: 'room_member_count', is: '2' },
      { kind: 'event_match', key: 'type', pattern: 'm.room.encrypted' },
    ]);
    expect(d.underride[3]).toEqual({ rule_id: '.m.rule.message', default: true, enabled: true, conditions: [{ kind: 'event_match', key: 'type', pattern: 'm.room.message' }], actions: ['notify'] });
    // MSC3930 (as in the MSC, stable types matched with event_property_is) and its unstable variants (as Synapse).
    expect(d.underride[5]).toEqual({ rule_id: '.m.rule.poll_start_one_to_one', default: true, enabled: true, conditions: [{ kind: 'room_member_count', is: '2' }, { kind: 'event_property_is', key: 'type', value: 'm.poll.start' }], actions: ['notify', { set_tweak: 'sound', value: 'default' }] });
    expect(d.underride[10]!.conditions).toEqual([{ kind: 'event_match', key: 'type', pattern: 'org.matrix.msc3381.poll.start' }]);
    expect(d.override[9]).toEqual({ rule_id: '.m.rule.poll_response', default: true, enabled: true, conditions: [{ kind: 'event_property_is', key: 'type', value: 'm.poll.response' }], actions: [] });
    expect(defaultPushRules(ME, { threadSubscriptions: true }).postcontent[1]).toEqual({ rule_id: '.io.element.msc4306.rule.subscribed_thread', default: true, enabled: true, conditions: [{ kind: 'io.element.msc4306.thread_subscription', subscribed: true }], actions: ['notify', { set_tweak: 'sound', value: 'default' }] });
    expect(defaultPushRules('@bob:x').override[2]!.conditions![2]).toEqual({ kind: 'event_match', key: 'state_key', pattern: '@bob:x' });
  });

  it('gives each user fresh objects', () => {
    const a = defaultPushRules(ME);
    a.override[0]!.actions.push('notify');
    expect(defaultPushRules(ME).override[0]!.actions).toEqual([]);
  });
});

describe('merging the user’s rules', () => {
  const rule = (id: string) => ({ rule_id: id, actions: ['notify' as const], conditions: [] });

  it('is the defaults with no stored rules', () => {
    expect(mergePushRules(ME, null)).toEqual(defaultPushRules(ME));
    expect(mergePushRules(ME, emptyStoredPushRules())).toEqual(defaultPushRules(ME));
  });

  it('puts user rules before defaults, except .m.rule.master first among overrides', () => {
    let s = putPushRule(emptyStoredPushRules(), 'override', rule('mine'));
    s = putPushRule(s, 'underride', rule('low'));
    s = putPushRule(s, 'room', { rule_id: '!r:example.org', actions: [] });
    s = putPushRule(s, 'content', { rule_id: 'cake', pattern: 'cake*', actions: ['notify'] });
    const m = mergePushRules(ME, s);
    expect(ids(m.override).slice(0, 3)).toEqual(['.m.rule.master', 'mine', '.m.rule.suppress_notices']);
    expect(m.override[1]).toEqual({ rule_id: 'mine', default: false, enabled: true, actions: ['notify'], conditions: [] });
    expect(ids(m.underride)).toEqual(['low', '.m.rule.call', '.m.rule.encrypted_room_one_to_one', '.m.rule.room_one_to_one', '.m.rule.message', '.m.rule.encrypted', '.m.rule.poll_start_one_to_one', '.m.rule.poll_start', '.m.rule.poll_end_one_to_one', '.m.rule.poll_end', '.org.matrix.msc3930.rule.poll_start_one_to_one', '.org.matrix.msc3930.rule.poll_start', '.org.matrix.msc3930.rule.poll_end_one_to_one', '.org.matrix.msc3930.rule.poll_end']);
    expect(m.room).toEqual([{ rule_id: '!r:example.org', default: false, enabled: true, actions: [] }]);
    expect(m.content).toEqual([{ rule_id: 'cake', default: false, enabled: true, actions: ['notify'], pattern: 'cake*' }]);
    const order = rulesInEvaluationOrder(m).map((x) => `${x.kind}:${x.rule.rule_id}`);
    expect(order.slice(0, 2)).toEqual(['override:.m.rule.master', 'override:mine']);
    expect(order.indexOf('content:cake')).toBeLessThan(order.indexOf('room:!r:example.org'));
    expect(order.indexOf('room:!r:example.org')).toBeLessThan(order.indexOf('underride:low'));
    expect(impliedConditions('room', m.room[0]!)).toEqual([{ kind: 'event_match', key: 'room_id', pattern: '!r:example.org' }]);
    expect(impliedConditions('content', m.content[0]!)).toEqual([{ kind: 'event_match', key: 'content.body', pattern: 'cake*' }]);
  });

  it('places new rules first, or before/after a user rule; updates keep their place', () => {
    let s = putPushRule(emptyStoredPushRules(), 'override', rule('a'));
    s = putPushRule(s, 'override', rule('b'));
    expect(ids(s.rules.override!)).toEqual(['b', 'a']);
    s = putPushRule(s, 'override', rule('c'), { after: 'a' });
    expect(ids(s.rules.override!)).toEqual(['b', 'a', 'c']);
    s = putPushRule(s, 'override', rule('d'), { before: 'a' });
    expect(ids(s.rules.override!)).toEqual(['b', 'd', 'a', 'c']);
    s = putPushRule(s, 'override', rule('e'), { before: 'b', after: 'c' });
    expect(ids(s.rules.override!)).toEqual(['e', 'b', 'd', 'a', 'c']);
    s = setPushRuleEnabled(ME, s, 'override', 'a', false);
    s = putPushRule(s, 'override', { rule_id: 'a', actions: [], conditions: [] });
    expect(ids(s.rules.override!)).toEqual(['e', 'b', 'd', 'a', 'c']);
    expect(s.rules.override![3]).toEqual({ rule_id: 'a', enabled: false, actions: [], conditions: [] });
    s = putPushRule(s, 'override', rule('a'), { after: 'c' });
    expect(ids(s.rules.override!)).toEqual(['e', 'b', 'd', 'c', 'a']);
    rejects(() => putPushRule(s, 'override', rule('x'), { before: 'nope' }), 400, 'M_UNKNOWN');
    rejects(() => putPushRule(s, 'override', rule('x'), { after: '.m.rule.master' }), 400, 'M_UNKNOWN');
    rejects(() => putPushRule(s, 'underride', rule('x'), { after: 'a' }), 400, 'M_UNKNOWN');
    rejects(() => putPushRule(s, 'override', rule('.m.rule.master')), 400, 'M_UNKNOWN');
  });

  it('changes enabled flags and actions of default rules and user rules', () => {
    let s: StoredPushRules = emptyStoredPushRules();
    s = setPushRuleEnabled(ME, s, 'override', '.m.rule.master', true);
    s = setPushRuleActions(ME, s, 'underride', '.m.rule.message', ['notify', { set_tweak: 'sound', value: 'default' }]);
    s = setPushRuleActions(ME, s, 'underride', '.m.rule.call', ['dont_notify']);
    const m = mergePushRules(ME, s);
    expect(m.override[0]).toMatchObject({ rule_id: '.m.rule.master', enabled: true, default: true, actions: [] });
    expect(m.underride.find((r) => r.rule_id === '.m.rule.message')!.actions).toEqual(['notify', { set_tweak: 'sound', value: 'default' }]);
    expect(m.underride.find((r) => r.rule_id === '.m.rule.message')!.enabled).toBe(true);
    expect(m.underride[0]!.actions).toEqual([]);
    rejects(() => setPushRuleEnabled(ME, s, 'override', 'missing', true), 404, 'M_NOT_FOUND');
    rejects(() => setPushRuleEnabled(ME, s, 'content', '.m.rule.master', true), 404, 'M_NOT_FOUND');
    rejects(() => setPushRuleActions(ME, s, 'override', 'missing', []), 404, 'M_NOT_FOUND');
  });

  it('deletes user rules only', () => {
    let s = putPushRule(emptyStoredPushRules(), 'sender', { rule_id: '@bob:example.org', actions: [] });
    s = deletePushRule(ME, s, 'sender', '@bob:example.org');
    expect(mergePushRules(ME, s).sender).toEqual([]);
    rejects(() => deletePushRule(ME, s, 'sender', '@bob:example.org'), 404, 'M_NOT_FOUND');
    rejects(() => deletePushRule(ME, s, 'override', '.m.rule.master'), 400, 'M_INVALID_PARAM');
    rejects(() => deletePushRule(ME, s, 'override', '.m.rule.nothing'), 404, 'M_NOT_FOUND');
  });
});

describe('validation of new rules', () => {
  it('checks rule ids', () => {
    rejects(() => validateUserRuleId('override', '.mine'), 400, 'M_UNKNOWN');
    rejects(() => validateUserRuleId('override', 'a/b'), 400, 'M_INVALID_PARAM');
    rejects(() => validateUserRuleId('override', 'a\\b'), 400, 'M_INVALID_PARAM');
    rejects(() => validateUserRuleId('override', ''), 400, 'M_INVALID_PARAM');
    rejects(() => validateUserRuleId('override', 'x'.repeat(256)), 400, 'M_INVALID_PARAM');
    rejects(() => validateUserRuleId('room', 'not-a-room'), 400, 'M_INVALID_PARAM');
    rejects(() => validateUserRuleId('sender', 'bob'), 400, 'M_INVALID_PARAM');
    validateUserRuleId('room', '!abc:example.org');
    validateUserRuleId('room', `!${'A'.repeat(43)}`);
    validateUserRuleId('sender', '@bob:example.org');
    validateUserRuleId('content', 'cake');
  });

  it('checks actions and drops historical ones', () => {
    expect(validateActions(['notify', 'dont_notify', 'coalesce', { set_tweak: 'highlight', value: false }, { set_tweak: 'org.example', value: [1] }])).toEqual([
      'notify',
      { set_tweak: 'highlight', value: false },
      { set_tweak: 'org.example', value: [1] },
    ]);
    rejects(() => validateActions('notify'), 400, 'M_INVALID_PARAM');
    rejects(() => validateActions(['shout']), 400, 'M_INVALID_PARAM');
    rejects(() => validateActions([{ value: 1 }]), 400, 'M_INVALID_PARAM');
    rejects(() => validateActions([{ set_tweak: 'sound' }]), 400, 'M_INVALID_PARAM');
    rejects(() => validateActions([{ set_tweak: 'highlight', value: 'yes' }]), 400, 'M_INVALID_PARAM');
    rejects(() => validateActions([3]), 400, 'M_INVALID_PARAM');
  });

  it('checks conditions by kind', () => {
    expect(validateCondition({ kind: 'event_match', key: 'content.body', pattern: 'hi*' })).toEqual({ kind: 'event_match', key: 'content.body', pattern: 'hi*' });
    expect(validateCondition({ kind: 'room_member_count', is: '>=10' })).toEqual({ kind: 'room_member_count', is: '>=10' });
    expect(validateCondition({ kind: 'event_property_is', key: 'content.x', value: null })).toEqual({ kind: 'event_property_is', key: 'content.x', value: null });
    expect(validateCondition({ kind: 'sender_notification_permission', key: 'room' })).toEqual({ kind: 'sender_notification_permission', key: 'room' });
    expect(validateCondition({ kind: 'contains_display_name' })).toEqual({ kind: 'contains_display_name' });
    expect(validateCondition({ kind: 'org.example.future', x: 1 })).toEqual({ kind: 'org.example.future', x: 1 });
    rejects(() => validateCondition({ kind: 'event_match', key: 'type' }), 400, 'M_INVALID_PARAM');
    rejects(() => validateCondition({ kind: 'room_member_count', is: 'two' }), 400, 'M_INVALID_PARAM');
    rejects(() => validateCondition({ kind: 'event_property_is', key: 'content.x', value: { a: 1 } }), 400, 'M_INVALID_PARAM');
    rejects(() => validateCondition({ kind: 'event_property_contains', key: 'content.x' }), 400, 'M_INVALID_PARAM');
    rejects(() => validateCondition({ kind: 'bogus' }), 400, 'M_INVALID_PARAM');
    rejects(() => validateCondition({ key: 'type' }), 400, 'M_INVALID_PARAM');
    rejects(() => validateCondition('event_match'), 400, 'M_INVALID_PARAM');
  });

  it('parses rule bodies per kind', () => {
    expect(parseNewRule('content', 'cake', { pattern: 'cake*lie', actions: ['notify'] })).toEqual({ rule_id: 'cake', pattern: 'cake*lie', actions: ['notify'] });
    expect(parseNewRule('override', 'o', { actions: [] })).toEqual({ rule_id: 'o', actions: [], conditions: [] });
    expect(parseNewRule('room', '!r:x', { actions: ['notify'], conditions: [{ kind: 'whatever' }], pattern: 'x' })).toEqual({ rule_id: '!r:x', actions: ['notify'] });
    rejects(() => parseNewRule('content', 'cake', { actions: [] }), 400, 'M_MISSING_PARAM');
    rejects(() => parseNewRule('content', 'cake', { actions: [], pattern: '' }), 400, 'M_INVALID_PARAM');
    rejects(() => parseNewRule('override', 'o', { conditions: [] }), 400, 'M_MISSING_PARAM');
    rejects(() => parseNewRule('override', 'o', { actions: [], conditions: {} }), 400, 'M_INVALID_PARAM');
    rejects(() => parseNewRule('underride', 'o', { actions: [], conditions: [{ kind: 'nope' }] }), 400, 'M_INVALID_PARAM');
    rejects(() => parseNewRule('override', 'o', []), 400, 'M_INVALID_PARAM');
  });

  it('bounds glob patterns at MAX_PUSH_PATTERN_BYTES (UTF-8)', () => {
    const atBound = 'é'.repeat(MAX_PUSH_PATTERN_BYTES >> 1) + (MAX_PUSH_PATTERN_BYTES % 2 ? 'x' : '');
    expect(parseNewRule('content', 'c', { pattern: atBound, actions: [] }).pattern).toBe(atBound);
    expect(validateCondition({ kind: 'event_match', key: 'content.body', pattern: atBound })).toMatchObject({ pattern: atBound });
    rejects(() => parseNewRule('content', 'c', { pattern: `${atBound}x`, actions: [] }), 400, 'M_INVALID_PARAM');
    rejects(() => parseNewRule('override', 'o', { actions: [], conditions: [{ kind: 'event_match', key: 'type', pattern: `${atBound}*` }] }), 400, 'M_INVALID_PARAM');
  });
});
