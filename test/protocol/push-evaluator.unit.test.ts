import { describe, expect, it } from 'vitest';
import {
  compileCondition,
  compilePushRules,
  evaluatePushRules,
  globMatches,
  propertyAt,
  readActions,
  relatedEventOf,
  splitPropertyPath,
  threadRootOf,
  type PushEvaluationContext,
} from '../../src/protocol/push-evaluator';
import { emptyStoredPushRules, mergePushRules, parseNewRule, putPushRule, setPushRuleActions, setPushRuleEnabled, type PushCondition, type StoredPushRules } from '../../src/protocol/push-rules';
import type { JsonObject } from '../../src/protocol/json';

const ME = '@alice:example.org';
const BOB = '@bob:example.org';
const ROOM = '!room:example.org';

function ctx(over: Partial<PushEvaluationContext> & { name?: string | null; senderLevel?: number; levels?: Record<string, number> } = {}): PushEvaluationContext {
  const { name = 'Alice Liddell', senderLevel = 0, levels = {}, ...rest } = over;
  return {
    userId: ME,
    roomMemberCount: 10,
    displayName: () => name,
    senderHasNotificationPermission: (key) => senderLevel >= (levels[key] ?? 50),
    ...rest,
  };
}

function message(body: string, extra: JsonObject = {}, sender = BOB): JsonObject {
  return { type: 'm.room.message', room_id: ROOM, sender, event_id: '$e', origin_server_ts: 1, content: { msgtype: 'm.text', body, ...extra } };
}

const rulesOf = (stored: StoredPushRules | null = null) => compilePushRules(mergePushRules(ME, stored));
const evalDefault = (event: JsonObject, c: PushEvaluationContext = ctx()) => evaluatePushRules(rulesOf(), event, c);

describe('property paths', () => {
  it('splits on dots and unescapes \\. and \\\\ only', () => {
    expect(splitPropertyPath('content.body')).toEqual(['content', 'body']);
    expect(splitPropertyPath('content.m\\.mentions.user_ids')).toEqual(['content', 'm.mentions', 'user_ids']);
    expect(splitPropertyPath('a\\\\.b')).toEqual(['a\\', 'b']);
    expect(splitPropertyPath('a\\\\\\.b')).toEqual(['a\\.b']);
    expect(splitPropertyPath('a\\b.c')).toEqual(['a\\b', 'c']);
    expect(splitPropertyPath('type')).toEqual(['type']);
  });

  it('walks own object properties only', () => {
    const e = { content: { 'm.relates_to': { rel_type: 'm.thread' }, list: [1] } } as JsonObject;
    expect(propertyAt(e, ['content', 'm.relates_to', 'rel_type'])).toBe('m.thread');
    expect(propertyAt(e, ['content', 'list', '0'])).toBeUndefined();
    expect(propertyAt(e, ['content', 'toString'])).toBeUndefined();
    expect(propertyAt(e, ['nothing', 'here'])).toBeUndefined();
  });
});

describe('glob matching', () => {
  it('matches whole values case-insensitively with * and ?', () => {
    expect(globMatches('cake*lie', 'cakeisalie', false)).toBe(true);
    expect(globMatches('cake*lie', 'CAKE IS A LIE', false)).toBe(true);
    expect(globMatches('cake*lie', 'the cake is a lie', false)).toBe(false);
    expect(globMatches('m.room.*', 'm.room.message', false)).toBe(true);
    expect(globMatches('m.room.*', 'm.roomXmessage', false)).toBe(false);
    expect(globMatches('a?c', 'abc', false)).toBe(true);
    expect(globMatches('a?c', 'ac', false)).toBe(false);
    expect(globMatches('a?c', 'a😀c', false)).toBe(true);
    expect(globMatches('*', 'multi\nline', false)).toBe(true);
    expect(globMatches('(x)[y]+', '(X)[Y]+', false)).toBe(true);
  });

  it('matches content.body between word boundaries', () => {
    expect(globMatches('foo', 'foo', true)).toBe(true);
    expect(globMatches('foo', 'a foo, b', true)).toBe(true);
    expect(globMatches('foo', 'FOO!', true)).toBe(true);
    expect(globMatches('foo', 'foobar', true)).toBe(false);
    expect(globMatches('foo', 'xfoo', true)).toBe(false);
    expect(globMatches('foo', 'x_foo', true)).toBe(false);
    expect(globMatches('foo*', 'foobar baz', true)).toBe(true);
    expect(globMatches('b?r', 'foo bar baz', true)).toBe(true);
    expect(globMatches('@room', 'hello @room!', true)).toBe(true);
    expect(globMatches('@room', 'hello @roommates', true)).toBe(false);
    expect(globMatches('ça', 'et ça va', true)).toBe(true);
  });

  it('evaluates adversarial patterns in one pass (no backtracking), and ignores stored over-long ones', () => {
    const test = (c: PushCondition, e: JsonObject) => compileCondition(c)(e, ctx());
    // `*a*a*a*a*a*a*a*b` against 64 `a`s stalled the worker for tens of seconds on a RegExp.
    const adversarial = '*a*a*a*a*a*a*a*b';
    const stored = putPushRule(
      putPushRule(emptyStoredPushRules(), 'content', { rule_id: 'glob', pattern: adversarial, actions: ['notify', { set_tweak: 'highlight' }] }),
      'override',
      { rule_id: 'glob2', conditions: [{ kind: 'event_match', key: 'content.msgtype', pattern: adversarial }], actions: ['notify', { set_tweak: 'highlight' }] },
    );
    const rules = rulesOf(stored);
    for (const body of ['a'.repeat(64), 'a'.repeat(65_000), `${'a '.repeat(30_000)}`]) {
      expect(evaluatePushRules(rules, message(body, { msgtype: body }), ctx())!.highlight).toBe(false);
    }
    expect(evaluatePushRules(rules, message(`${'a'.repeat(64)}b`), ctx())!.ruleId).toBe('glob');
    // A pattern longer than the bound (one stored before the bound existed) matches nothing.
    const long = `${'x'.repeat(300)}*`;
    expect(test({ kind: 'event_match', key: 'content.body', pattern: long }, message(`${'x'.repeat(300)} y`))).toBe(false);
    expect(test({ kind: 'event_match', key: 'content.body', pattern: long.slice(50) }, message(`${'x'.repeat(300)} y`))).toBe(true);
  });
});

describe('conditions', () => {
  const test = (c: PushCondition, e: JsonObject, cx = ctx()) => compileCondition(c)(e, cx);

  it('event_match needs a string value', () => {
    expect(test({ kind: 'event_match', key: 'content.body', pattern: 'hello' }, message('hello world'))).toBe(true);
    expect(test({ kind: 'event_match', key: 'content.n', pattern: '1' }, message('x', { n: 1 }))).toBe(false);
    expect(test({ kind: 'event_match', key: 'content.flag', pattern: 'true' }, message('x', { flag: true }))).toBe(false);
    expect(test({ kind: 'event_match', key: 'content.missing', pattern: '*' }, message('x'))).toBe(false);
    expect(test({ kind: 'event_match', key: 'content', pattern: '*' }, message('x'))).toBe(false);
    expect(test({ kind: 'event_match', key: 'content.msgtype', pattern: 'm.text' }, message('x'))).toBe(true);
    expect(test({ kind: 'event_match', key: 'content.msgtype', pattern: 'm.tex' }, message('x'))).toBe(false);
    expect(test({ kind: 'event_match', key: 'type', pattern: 'M.Room.MESSAGE' }, message('x'))).toBe(true);
    expect(test({ kind: 'event_match', key: 'type', pattern: 'm.room.message.' }, message('x'))).toBe(false);
    expect(test({ kind: 'event_match', key: 'sender', pattern: '@BOB:example.org' }, message('x'))).toBe(true);
  });

  it('event_property_is compares exactly, without coercion', () => {
    const e = message('x', { 'm.mentions': { room: true }, n: 1, s: '1', z: null });
    expect(test({ kind: 'event_property_is', key: 'content.m\\.mentions.room', value: true }, e)).toBe(true);
    expect(test({ kind: 'event_property_is', key: 'content.m\\.mentions.room', value: 'true' }, e)).toBe(false);
    expect(test({ kind: 'event_property_is', key: 'content.m.mentions.room', value: true }, e)).toBe(false);
    expect(test({ kind: 'event_property_is', key: 'content.n', value: 1 }, e)).toBe(true);
    expect(test({ kind: 'event_property_is', key: 'content.s', value: 1 }, e)).toBe(false);
    expect(test({ kind: 'event_property_is', key: 'content.z', value: null }, e)).toBe(true);
    expect(test({ kind: 'event_property_is', key: 'content.absent', value: null }, e)).toBe(false);
    expect(test({ kind: 'event_property_is', key: 'content.body', value: 'X' }, e)).toBe(false);
  });

  it('event_property_contains looks into arrays', () => {
    const e = message('x', { 'm.mentions': { user_ids: [ME, '@c:x'] }, tags: [1, true, null] });
    expect(test({ kind: 'event_property_contains', key: 'content.m\\.mentions.user_ids', value: ME }, e)).toBe(true);
    expect(test({ kind: 'event_property_contains', key: 'content.m\\.mentions.user_ids', value: BOB }, e)).toBe(false);
    expect(test({ kind: 'event_property_contains', key: 'content.tags', value: 1 }, e)).toBe(true);
    expect(test({ kind: 'event_property_contains', key: 'content.tags', value: null }, e)).toBe(true);
    expect(test({ kind: 'event_property_contains', key: 'content.tags', value: '1' }, e)).toBe(false);
    expect(test({ kind: 'event_property_contains', key: 'content.body', value: 'x' }, e)).toBe(false);
  });

  it('contains_display_name needs the whole name at word boundaries', () => {
    const c: PushCondition = { kind: 'contains_display_name' };
    expect(test(c, message('hi alice liddell, how are you'))).toBe(true);
    expect(test(c, message('hi Alice Liddellx'))).toBe(false);
    expect(test(c, message('hi Alice'))).toBe(false);
    expect(test(c, message('hi alice'), ctx({ name: 'alice' }))).toBe(true);
    expect(test(c, message('a.*b'), ctx({ name: 'a.*b' }))).toBe(true);
    expect(test(c, message('aXXb'), ctx({ name: 'a.*b' }))).toBe(false);
    expect(test(c, message('anything'), ctx({ name: null }))).toBe(false);
    expect(test(c, message('anything'), ctx({ name: '' }))).toBe(false);
    expect(test(c, { type: 'm.room.message', sender: BOB, content: { body: 5 } })).toBe(false);
  });

  it('room_member_count compares with every operator', () => {
    const at = (is: string, n: number) => test({ kind: 'room_member_count', is }, message('x'), ctx({ roomMemberCount: n }));
    expect([at('2', 2), at('2', 3), at('==2', 2), at('==2', 1)]).toEqual([true, false, true, false]);
    expect([at('<3', 2), at('<3', 3), at('>3', 4), at('>3', 3)]).toEqual([true, false, true, false]);
    expect([at('<=3', 3), at('<=3', 4), at('>=3', 3), at('>=3', 2)]).toEqual([true, false, true, false]);
    expect([at('two', 2), at('=2', 2), at('', 0)]).toEqual([false, false, false]);
  });

  it('sender_notification_permission reads the notifications levels', () => {
    const c: PushCondition = { kind: 'sender_notification_permission', key: 'room' };
    expect(test(c, message('x'), ctx({ senderLevel: 50 }))).toBe(true);
    expect(test(c, message('x'), ctx({ senderLevel: 49 }))).toBe(false);
    expect(test(c, message('x'), ctx({ senderLevel: 10, levels: { room: 10 } }))).toBe(true);
    expect(test({ kind: 'sender_notification_permission' } as PushCondition, message('x'), ctx({ senderLevel: 100 }))).toBe(false);
  });

  it('unknown or malformed conditions never match', () => {
    expect(test({ kind: 'org.example.custom', foo: 'bar' }, message('x'))).toBe(false);
    expect(test({ kind: 'event_match', key: 'type' } as PushCondition, message('x'))).toBe(false);
    expect(test({ kind: 'event_property_is', key: 'type' } as PushCondition, message('x'))).toBe(false);
  });
});

describe('actions', () => {
  it('reads notify, highlight and sound', () => {
    expect(readActions(['notify', { set_tweak: 'sound', value: 'default' }, { set_tweak: 'highlight' }])).toEqual({ notify: true, highlight: true, sound: 'default' });
    expect(readActions(['notify', { set_tweak: 'highlight', value: false }])).toEqual({ notify: true, highlight: false });
    expect(readActions(['notify', { set_tweak: 'highlight' }, { set_tweak: 'highlight', value: false }])).toEqual({ notify: true, highlight: false });
    expect(readActions([])).toEqual({ notify: false, highlight: false });
    expect(readActions(['dont_notify' as never])).toEqual({ notify: false, highlight: false });
    expect(readActions(['coalesce' as never])).toEqual({ notify: true, highlight: false });
  });
});

describe('the server-default rules', () => {
  it('a message in a DM notifies with a sound (.m.rule.room_one_to_one)', () => {
    const r = evalDefault(message('hi'), ctx({ roomMemberCount: 2 }));
    expect(r).toMatchObject({ ruleId: '.m.rule.room_one_to_one', kind: 'underride', notify: true, highlight: false, sound: 'default' });
  });

  it('a message in a bigger room notifies without sound or highlight (.m.rule.message)', () => {
    expect(evalDefault(message('hi'))).toMatchObject({ ruleId: '.m.rule.message', notify: true, highlight: false });
    expect(evalDefault(message('hi'))?.sound).toBeUndefined();
  });

  it('a mention in m.mentions highlights (.m.rule.is_user_mention); a mention of someone else does not', () => {
    const mine = message('hey', { 'm.mentions': { user_ids: [ME] } });
    expect(evalDefault(mine)).toMatchObject({ ruleId: '.m.rule.is_user_mention', notify: true, highlight: true, sound: 'default' });
    const theirs = message('hey', { 'm.mentions': { user_ids: ['@carol:example.org'] } });
    expect(evalDefault(theirs)).toMatchObject({ ruleId: '.m.rule.message', highlight: false });
    // The body alone is no mention since v1.17 (the legacy body rules are gone).
    expect(evalDefault(message('hey @alice:example.org Alice Liddell'))).toMatchObject({ ruleId: '.m.rule.message', highlight: false });
  });

  it('@room highlights when the sender has the power (.m.rule.is_room_mention)', () => {
    const atRoom = message('@room hello', { 'm.mentions': { room: true } });
    expect(evalDefault(atRoom, ctx({ senderLevel: 50 }))).toMatchObject({ ruleId: '.m.rule.is_room_mention', notify: true, highlight: true });
    expect(evalDefault(atRoom, ctx({ senderLevel: 0 }))).toMatchObject({ ruleId: '.m.rule.message', highlight: false });
    expect(evalDefault(atRoom, ctx({ senderLevel: 0, levels: { room: 0 } }))).toMatchObject({ ruleId: '.m.rule.is_room_mention', highlight: true });
    expect(evalDefault(atRoom, ctx({ senderLevel: Infinity }))).toMatchObject({ ruleId: '.m.rule.is_room_mention' });
  });

  it("never notifies about the user's own events", () => {
    expect(evalDefault(message('hi', { 'm.mentions': { user_ids: [ME] } }, ME), ctx({ roomMemberCount: 2 }))).toBeNull();
  });

  it('encrypted events notify in 1:1 rooms with sound, and in bigger rooms without', () => {
    const enc: JsonObject = { type: 'm.room.encrypted', sender: BOB, room_id: ROOM, content: { algorithm: 'm.megolm.v1.aes-sha2', ciphertext: 'abc' } };
    expect(evalDefault(enc, ctx({ roomMemberCount: 2 }))).toMatchObject({ ruleId: '.m.rule.encrypted_room_one_to_one', notify: true, sound: 'default' });
    expect(evalDefault(enc, ctx({ roomMemberCount: 3 }))).toMatchObject({ ruleId: '.m.rule.encrypted', notify: true });
  });

  it('edits, notices, reactions and membership changes do not notify', () => {
    const edit = message('* fixed', { 'm.new_content': { msgtype: 'm.text', body: 'fixed' }, 'm.relates_to': { rel_type: 'm.replace', event_id: '$orig' } });
    expect(evalDefault(edit, ctx({ roomMemberCount: 2 }))).toMatchObject({ ruleId: '.m.rule.suppress_edits', notify: false });
    // An edit's m.mentions holds only the users it newly mentions, and the mention rules come first.
    const mentioningEdit = { ...edit, content: { ...(edit.content as JsonObject), 'm.mentions': { user_ids: [ME] } } };
    expect(evalDefault(mentioningEdit, ctx({ roomMemberCount: 2 }))).toMatchObject({ ruleId: '.m.rule.is_user_mention', highlight: true });
    expect(evalDefault(message('bot says', { msgtype: 'm.notice' }), ctx({ roomMemberCount: 2 }))).toMatchObject({ ruleId: '.m.rule.suppress_notices', notify: false });
    const reaction: JsonObject = { type: 'm.reaction', sender: BOB, content: { 'm.relates_to': { rel_type: 'm.annotation', event_id: '$x', key: '👍' } } };
    expect(evalDefault(reaction, ctx({ roomMemberCount: 2 }))).toMatchObject({ ruleId: '.m.rule.reaction', notify: false });
    const join: JsonObject = { type: 'm.room.member', state_key: BOB, sender: BOB, content: { membership: 'join' } };
    expect(evalDefault(join)).toMatchObject({ ruleId: '.m.rule.member_event', notify: false });
    const topic: JsonObject = { type: 'm.room.topic', state_key: '', sender: BOB, content: { topic: 't' } };
    expect(evalDefault(topic)).toBeNull();
  });

  it('an invite for the user notifies; someone else’s invite does not', () => {
    const invite = (target: string): JsonObject => ({ type: 'm.room.member', state_key: target, sender: BOB, content: { membership: 'invite' } });
    expect(evalDefault(invite(ME))).toMatchObject({ ruleId: '.m.rule.invite_for_me', notify: true, sound: 'default', highlight: false });
    expect(evalDefault(invite('@carol:example.org'))).toMatchObject({ ruleId: '.m.rule.member_event', notify: false });
  });

  it('a tombstone highlights; calls ring', () => {
    const tomb: JsonObject = { type: 'm.room.tombstone', state_key: '', sender: BOB, content: { body: 'moved', replacement_room: '!new:x' } };
    expect(evalDefault(tomb)).toMatchObject({ ruleId: '.m.rule.tombstone', notify: true, highlight: true });
    expect(evalDefault({ ...tomb, state_key: 'x' })).toBeNull();
    const call: JsonObject = { type: 'm.call.invite', sender: BOB, content: { call_id: 'c', version: 0, lifetime: 1, offer: {} } };
    expect(evalDefault(call)).toMatchObject({ ruleId: '.m.rule.call', notify: true, sound: 'ring' });
  });
});

describe('user rules and changes to default rules', () => {
  it('the master rule, when enabled, silences everything', () => {
    const stored = setPushRuleEnabled(ME, emptyStoredPushRules(), 'override', '.m.rule.master', true);
    expect(evaluatePushRules(rulesOf(stored), message('hi', { 'm.mentions': { user_ids: [ME] } }), ctx())).toMatchObject({ ruleId: '.m.rule.master', notify: false });
  });

  it('disabled rules are skipped; changed actions apply', () => {
    let stored = setPushRuleEnabled(ME, emptyStoredPushRules(), 'underride', '.m.rule.message', false);
    expect(evaluatePushRules(rulesOf(stored), message('hi'), ctx())).toBeNull();
    stored = setPushRuleActions(ME, emptyStoredPushRules(), 'underride', '.m.rule.message', ['notify', { set_tweak: 'highlight' }]);
    expect(evaluatePushRules(rulesOf(stored), message('hi'), ctx())).toMatchObject({ notify: true, highlight: true });
    stored = setPushRuleEnabled(ME, emptyStoredPushRules(), 'override', '.m.rule.suppress_edits', false);
    const edit = message('* x', { 'm.relates_to': { rel_type: 'm.replace', event_id: '$o' } });
    expect(evaluatePushRules(rulesOf(stored), edit, ctx())).toMatchObject({ ruleId: '.m.rule.message' });
  });

  it('content (keyword), room and sender rules, in kind order; the first match wins', () => {
    let stored = putPushRule(emptyStoredPushRules(), 'content', parseNewRule('content', 'cake', { pattern: 'cake', actions: ['notify', { set_tweak: 'highlight' }] }));
    const rules = () => rulesOf(stored);
    expect(evaluatePushRules(rules(), message('who wants cake?'), ctx())).toMatchObject({ ruleId: 'cake', kind: 'content', highlight: true });
    expect(evaluatePushRules(rules(), message('cakes are here'), ctx())).toMatchObject({ ruleId: '.m.rule.message' });
    // A muted room: the room rule's empty actions win over the underride rules.
    stored = putPushRule(stored, 'room', parseNewRule('room', ROOM, { actions: [] }));
    expect(evaluatePushRules(rules(), message('hello'), ctx({ roomMemberCount: 2 }))).toMatchObject({ ruleId: ROOM, kind: 'room', notify: false });
    // ... but content rules come before room rules, and override rules before both.
    expect(evaluatePushRules(rules(), message('cake'), ctx())).toMatchObject({ ruleId: 'cake' });
    expect(evaluatePushRules(rules(), message('x', { 'm.mentions': { user_ids: [ME] } }), ctx())).toMatchObject({ ruleId: '.m.rule.is_user_mention' });
    // Elsewhere the room rule does not apply.
    expect(evaluatePushRules(rules(), { ...message('hello'), room_id: '!other:example.org' }, ctx())).toMatchObject({ ruleId: '.m.rule.message' });
    stored = putPushRule(stored, 'sender', parseNewRule('sender', '@spam:example.org', { actions: [] }));
    expect(evaluatePushRules(rules(), { ...message('hello'), room_id: '!other:example.org', sender: '@spam:example.org' }, ctx())).toMatchObject({ ruleId: '@spam:example.org', notify: false });
  });

  it('override rules with several conditions need all of them; an override with none matches everything', () => {
    let stored = putPushRule(
      emptyStoredPushRules(),
      'override',
      parseNewRule('override', 'alerts', {
        actions: ['notify', { set_tweak: 'sound', value: 'alarm' }],
        conditions: [
          { kind: 'event_match', key: 'type', pattern: 'm.room.message' },
          { kind: 'event_match', key: 'content.body', pattern: 'alert*' },
          { kind: 'room_member_count', is: '>5' },
        ],
      }),
    );
    expect(evaluatePushRules(rulesOf(stored), message('ALERTS: disk full'), ctx({ roomMemberCount: 6 }))).toMatchObject({ ruleId: 'alerts', sound: 'alarm' });
    expect(evaluatePushRules(rulesOf(stored), message('ALERTS: disk full'), ctx({ roomMemberCount: 5 }))).toMatchObject({ ruleId: '.m.rule.message' });
    stored = putPushRule(stored, 'override', parseNewRule('override', 'all', { actions: [] }));
    expect(evaluatePushRules(rulesOf(stored), message('anything'), ctx())).toMatchObject({ ruleId: 'all', notify: false });
  });

  it('a display name rule asks for the name only when present', () => {
    const stored = putPushRule(emptyStoredPushRules(), 'override', parseNewRule('override', 'name', { actions: ['notify', { set_tweak: 'highlight' }], conditions: [{ kind: 'contains_display_name' }] }));
    const compiled = rulesOf(stored);
    expect(compiled.usesDisplayName).toBe(true);
    expect(rulesOf().usesDisplayName).toBe(false);
    let asked = 0;
    const c = ctx({ displayName: () => (asked++, 'Alice') });
    expect(evaluatePushRules(compiled, message('hi alice'), c)).toMatchObject({ ruleId: 'name', highlight: true });
    expect(evaluatePushRules(compiled, message('hi alicex'), c)).toMatchObject({ ruleId: '.m.rule.message' });
    expect(asked).toBe(2);
  });

  it('evaluates an uncompiled ruleset the same way', () => {
    expect(evaluatePushRules(mergePushRules(ME, null), message('hi'), ctx({ roomMemberCount: 2 }))).toMatchObject({ ruleId: '.m.rule.room_one_to_one' });
  });
});

describe('threads and relations', () => {
  it('finds the thread root of a thread reply, and the target of other relations', () => {
    const reply = message('in thread', { 'm.relates_to': { rel_type: 'm.thread', event_id: '$root', is_falling_back: true, 'm.in_reply_to': { event_id: '$root' } } });
    expect(threadRootOf(reply)).toBe('$root');
    expect(relatedEventOf(reply)).toBeNull();
    const edit = message('* x', { 'm.relates_to': { rel_type: 'm.replace', event_id: '$orig' } });
    expect(threadRootOf(edit)).toBeNull();
    expect(relatedEventOf(edit)).toBe('$orig');
    const plainReply = message('re', { 'm.relates_to': { 'm.in_reply_to': { event_id: '$x' } } });
    expect(threadRootOf(plainReply)).toBeNull();
    expect(relatedEventOf(plainReply)).toBeNull();
  });
});

describe('rules shared by every member of one event', () => {
  it('gives each user the outcome of evaluating alone, user-specific rules included', () => {
    const users = ['@alice:example.org', '@carol:example.org', '@dave:example.org'];
    const names: Record<string, string> = { '@alice:example.org': 'Alice', '@carol:example.org': 'Carol', '@dave:example.org': 'Dave' };
    const carolRules = putPushRule(emptyStoredPushRules(), 'override', parseNewRule('override', 'quiet', { actions: [], conditions: [{ kind: 'event_match', key: 'content.body', pattern: 'hello*' }] }));
    const rules = new Map(users.map((u) => [u, compilePushRules(mergePushRules(u, u === '@carol:example.org' ? (carolRules as StoredPushRules) : null))]));
    const events: JsonObject[] = [
      { type: 'm.room.member', sender: BOB, state_key: '@alice:example.org', content: { membership: 'invite' }, room_id: ROOM },
      { type: 'm.room.member', sender: BOB, state_key: BOB, content: { membership: 'join' }, room_id: ROOM },
      { type: 'm.room.message', sender: BOB, content: { msgtype: 'm.text', body: 'hello Dave', 'm.mentions': { user_ids: ['@dave:example.org'] } }, room_id: ROOM },
      { type: 'm.room.message', sender: BOB, content: { msgtype: 'm.text', body: 'plain' }, room_id: ROOM },
    ];
    for (const event of events) {
      const shared = new Map<string, boolean>();
      for (const u of users) {
        const alone = evaluatePushRules(rules.get(u)!, event, ctx({ userId: u, name: names[u]! }));
        const together = evaluatePushRules(rules.get(u)!, event, ctx({ userId: u, name: names[u]!, shared }));
        expect(together).toEqual(alone);
      }
      expect(shared.size).toBeGreaterThan(0);
    }
    // The invite notifies its invitee only; the mention highlights only Dave; Carol's own rule silences her.
    const invite = events[0]!;
    expect(evaluatePushRules(rules.get('@alice:example.org')!, invite, ctx({ userId: '@alice:example.org', shared: new Map() }))?.ruleId).toBe('.m.rule.invite_for_me');
    expect(evaluatePushRules(rules.get('@carol:example.org')!, invite, ctx({ userId: '@carol:example.org', shared: new Map() }))?.ruleId).toBe('.m.rule.member_event');
    const shared = new Map<string, boolean>();
    expect(evaluatePushRules(rules.get('@alice:example.org')!, events[2]!, ctx({ userId: '@alice:example.org', name: 'Alice', shared }))?.highlight).toBe(false);
    expect(evaluatePushRules(rules.get('@dave:example.org')!, events[2]!, ctx({ userId: '@dave:example.org', name: 'Dave', shared }))?.highlight).toBe(true);
    expect(evaluatePushRules(rules.get('@carol:example.org')!, events[2]!, ctx({ userId: '@carol:example.org', name: 'Carol', shared }))?.ruleId).toBe('quiet');
  });
});

describe('poll rules (MSC3930)', () => {
  const ev = (type: string, content: JsonObject = {}): JsonObject => ({ type, room_id: ROOM, sender: BOB, event_id: '$p', origin_server_ts: 1, content });
  it('a poll start or end notifies, with sound in a one-to-one room; responses do not', () => {
    for (const type of ['m.poll.start', 'org.matrix.msc3381.poll.start', 'm.poll.end', 'org.matrix.msc3381.poll.end']) {
      const dm = evalDefault(ev(type), ctx({ roomMemberCount: 2 }));
      expect(dm?.notify, type).toBe(true);
      expect(dm?.sound, type).toBe('default');
      expect(dm?.ruleId.endsWith('_one_to_one'), type).toBe(true);
      const group = evalDefault(ev(type), ctx({ roomMemberCount: 5 }));
      expect([group?.notify, group?.sound, group?.highlight], type).toEqual([true, undefined, false]);
    }
    expect(evalDefault(ev('m.poll.start'), ctx({ roomMemberCount: 5 }))?.ruleId).toBe('.m.rule.poll_start');
    expect(evalDefault(ev('org.matrix.msc3381.poll.end'), ctx({ roomMemberCount: 5 }))?.ruleId).toBe('.org.matrix.msc3930.rule.poll_end');
    for (const type of ['m.poll.response', 'org.matrix.msc3381.poll.response']) {
      const r = evalDefault(ev(type), ctx({ roomMemberCount: 2 }));
      expect(r?.notify ?? false, type).toBe(false);
    }
    // event_property_is is exact: a type that only looks like it does not match.
    expect(evalDefault(ev('m.poll.startx'))).toBeNull();
  });
  it('a mention in a poll still highlights (overrides come first)', () => {
    expect(evalDefault(ev('m.poll.start', { 'm.mentions': { user_ids: [ME] } }))?.highlight).toBe(true);
  });
});

describe('thread subscriptions (MSC4306)', () => {
  const inThread = (root: string): JsonObject => message('in a thread', { 'm.relates_to': { rel_type: 'm.thread', event_id: root } });
  const withThreads = compilePushRules(mergePushRules(ME, null, { threadSubscriptions: true }));
  const evalDefault = (event: JsonObject, c: PushEvaluationContext) => evaluatePushRules(withThreads, event, c);
  it('is off by default: thread replies notify as messages', () => {
    expect(rulesOf().usesThreadSubscriptions).toBe(false);
    expect(evaluatePushRules(rulesOf(), inThread('$r'), ctx({ threadSubscribed: () => false }))?.ruleId).toBe('.m.rule.message');
  });
  it('notifies for subscribed threads, stays silent for others, and ignores the main timeline', () => {
    const subscribed = new Set(['$root1']);
    const c = ctx({ threadSubscribed: (root) => subscribed.has(root) });
    const yes = evalDefault(inThread('$root1'), c);
    expect([yes?.ruleId, yes?.notify, yes?.sound]).toEqual(['.io.element.msc4306.rule.subscribed_thread', true, 'default']);
    const no = evalDefault(inThread('$root2'), c);
    expect([no?.ruleId, no?.notify]).toEqual(['.io.element.msc4306.rule.unsubscribed_thread', false]);
    // Outside threads the condition never holds: the message rule applies.
    expect(evalDefault(message('hello'), c)?.ruleId).toBe('.m.rule.message');
    // Mentions (overrides) win over the thread rules.
    expect(evalDefault(inThread('$root2'), c)?.highlight).toBe(false);
    expect(evalDefault({ ...inThread('$root2'), content: { body: 'x', 'm.mentions': { user_ids: [ME] }, 'm.relates_to': { rel_type: 'm.thread', event_id: '$root2' } } }, c)?.highlight).toBe(true);
  });
  it('is per user even when results are shared between users', () => {
    const rules = withThreads;
    expect(rules.usesThreadSubscriptions).toBe(true);
    const shared = new Map<string, boolean>();
    const a = evaluatePushRules(rules, inThread('$r'), ctx({ shared, threadSubscribed: () => true }));
    const b = evaluatePushRules(rules, inThread('$r'), ctx({ shared, threadSubscribed: () => false }));
    expect([a?.notify, b?.notify]).toEqual([true, false]);
  });
  it('clients may not add postcontent rules', () => {
    expect(() => parseNewRule('postcontent', 'mine', { actions: [] })).toThrow(/postcontent/);
    expect(compileCondition({ kind: 'io.element.msc4306.thread_subscription', subscribed: 'yes' } as unknown as PushCondition)(inThread('$r'), ctx({ threadSubscribed: () => true }))).toBe(false);
  });
});
