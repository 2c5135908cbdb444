/**
 * Push rules through the HTTP API (raw requests and matrix-js-sdk) against one front and two
 * workers on real Redis: the default ruleset, adding, placing, enabling, changing actions and
 * deleting rules, the errors, and `m.push_rules` in /sync's account data.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClientEvent, PushRuleKind, type IPushRules, type MatrixClient } from 'matrix-js-sdk';
import { createClient } from './sdk';
import { startTestServer, type TestServer } from './server-harness';
import { callJson } from './clients';
import { defaultPushRules } from '../../src/protocol/push-rules';

type Json = Record<string, any>;

interface Session {
  userId: string;
  deviceId: string;
  token: string;
}

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({ workers: 2 });
});
afterAll(async () => {
  await server?.stop();
});

const call = (s: Session | null, method: string, path: string, body?: unknown) => callJson(server, s, method, path, body);

async function register(username: string): Promise<Session> {
  const first = await call(null, 'POST', '/register', { username, password: 'a long passphrase' });
  const r = await call(null, 'POST', '/register', { username, password: 'a long passphrase', auth: { type: 'm.login.dummy', session: first.body.session } });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return { userId: r.body.user_id, deviceId: r.body.device_id, token: r.body.access_token };
}

const enc = encodeURIComponent;
const ids = (rules: Json[]) => rules.map((r) => r.rule_id as string);

describe('push rules over raw HTTP', () => {
  it('serves the server-default ruleset, for the user', async () => {
    const alice = await register('pr_alice');
    const all = await call(alice, 'GET', '/pushrules/');
    expect(all.status).toBe(200);
    expect(all.body).toEqual({ global: defaultPushRules(alice.userId) });
    expect(all.body.global.override[2].conditions[2]).toEqual({ kind: 'event_match', key: 'state_key', pattern: alice.userId });
    expect((await call(alice, 'GET', '/pushrules/global/')).body).toEqual(all.body.global);
    const master = await call(alice, 'GET', '/pushrules/global/override/.m.rule.master');
    expect(master).toEqual({ status: 200, body: { rule_id: '.m.rule.master', default: true, enabled: false, conditions: [], actions: [] } });
    expect((await call(alice, 'GET', '/pushrules/global/underride/.m.rule.message/actions')).body).toEqual({ actions: ['notify'] });
    expect((await call(alice, 'GET', '/pushrules/global/underride/.m.rule.message/enabled')).body).toEqual({ enabled: true });
    // The account data type is readable (the merged ruleset) but not writable.
    expect((await call(alice, 'GET', `/user/${enc(alice.userId)}/account_data/m.push_rules`)).body).toEqual(all.body);
    expect((await call(alice, 'PUT', `/user/${enc(alice.userId)}/account_data/m.push_rules`, { global: {} })).status).toBe(405);
    expect((await call(null, 'GET', '/pushrules/')).status).toBe(401);
  });

  it('adds, places, enables, changes and deletes rules', async () => {
    const bob = await register('pr_bob');
    const put = (kind: string, id: string, body: Json, q = '') => call(bob, 'PUT', `/pushrules/global/${kind}/${enc(id)}${q}`, body);
    expect((await put('override', 'one', { actions: ['notify'], conditions: [{ kind: 'event_match', key: 'content.body', pattern: 'one' }] })).status).toBe(200);
    expect((await put('override', 'two', { actions: [] })).status).toBe(200);
    expect((await put('override', 'three', { actions: ['notify'] }, '?after=one')).status).toBe(200);
    expect((await put('override', 'zero', { actions: ['notify'] }, '?before=two')).status).toBe(200);
    let rules = (await call(bob, 'GET', '/pushrules/')).body.global;
    expect(ids(rules.override).slice(0, 6)).toEqual(['.m.rule.master', 'zero', 'two', 'one', 'three', '.m.rule.suppress_notices']);
    expect(rules.override[3]).toEqual({ rule_id: 'one', default: false, enabled: true, actions: ['notify'], conditions: [{ kind: 'event_match', key: 'content.body', pattern: 'one' }] });

    expect((await put('content', 'cake', { pattern: 'cake*lie', actions: ['notify', { set_tweak: 'highlight' }] })).status).toBe(200);
    expect((await call(bob, 'GET', '/pushrules/global/content/cake')).body).toEqual({ rule_id: 'cake', default: false, enabled: true, pattern: 'cake*lie', actions: ['notify', { set_tweak: 'highlight' }] });
    const room = '!someroom:localhost';
    expect((await put('room', room, { actions: [] })).status).toBe(200);
    expect((await call(bob, 'GET', `/pushrules/global/room/${enc(room)}`)).body).toEqual({ rule_id: room, default: false, enabled: true, actions: [] });

    // Enabled flags and actions, of user rules and of default rules.
    expect((await call(bob, 'PUT', '/pushrules/global/override/one/enabled', { enabled: false })).status).toBe(200);
    expect((await call(bob, 'GET', '/pushrules/global/override/one/enabled')).body).toEqual({ enabled: false });
    expect((await call(bob, 'PUT', '/pushrules/global/override/.m.rule.master/enabled', { enabled: true })).status).toBe(200);
    expect((await call(bob, 'PUT', '/pushrules/global/underride/.m.rule.message/actions', { actions: ['notify', { set_tweak: 'sound', value: 'default' }, 'dont_notify'] })).status).toBe(200);
    expect((await call(bob, 'GET', '/pushrules/global/underride/.m.rule.message/actions')).body).toEqual({ actions: ['notify', { set_tweak: 'sound', value: 'default' }] });
    // Updating a rule keeps its place and its enabled flag.
    expect((await put('override', 'one', { actions: [] })).status).toBe(200);
    rules = (await call(bob, 'GET', '/pushrules/')).body.global;
    expect(ids(rules.override).slice(0, 5)).toEqual(['.m.rule.master', 'zero', 'two', 'one', 'three']);
    expect(rules.override[0].enabled).toBe(true);
    expect(rules.override[3]).toEqual({ rule_id: 'one', default: false, enabled: false, actions: [], conditions: [] });
    expect(rules.underride.find((r: Json) => r.rule_id === '.m.rule.message').actions).toEqual(['notify', { set_tweak: 'sound', value: 'default' }]);

    expect((await call(bob, 'DELETE', '/pushrules/global/override/two')).status).toBe(200);
    expect((await call(bob, 'GET', '/pushrules/global/override/two')).status).toBe(404);
    expect((await call(bob, 'DELETE', '/pushrules/global/override/two')).body.errcode).toBe('M_NOT_FOUND');
  });

  it('answers errors as the spec says', async () => {
    const carol = await register('pr_carol');
    const put = (path: string, body: unknown) => call(carol, 'PUT', `/pushrules/global/${path}`, body);
    expect((await put('override', { actions: [] })).status).toBe(404); // no rule id: no such endpoint
    let r = await put('override/.m.rule.master', { actions: ['notify'] });
    expect([r.status, r.body.errcode]).toEqual([400, 'M_UNKNOWN']);
    r = await put('override/mine?before=nope', { actions: ['notify'] });
    expect([r.status, r.body.errcode, r.body.error]).toEqual([400, 'M_UNKNOWN', 'before/after rule not found: nope']);
    r = await put('override/mine?after=.m.rule.master', { actions: ['notify'] });
    expect([r.status, r.body.errcode]).toEqual([400, 'M_UNKNOWN']);
    r = await put('content/c', { actions: ['notify'] });
    expect([r.status, r.body.errcode]).toEqual([400, 'M_MISSING_PARAM']);
    r = await put('override/bad', { actions: ['shout'] });
    expect([r.status, r.body.errcode]).toEqual([400, 'M_INVALID_PARAM']);
    r = await put('override/bad', { actions: [], conditions: [{ kind: 'room_member_count', is: 'many' }] });
    expect([r.status, r.body.errcode]).toEqual([400, 'M_INVALID_PARAM']);
    r = await put('sideways/x', { actions: [] });
    expect([r.status, r.body.errcode]).toEqual([400, 'M_INVALID_PARAM']);
    r = await put('room/not-a-room', { actions: [] });
    expect([r.status, r.body.errcode]).toEqual([400, 'M_INVALID_PARAM']);
    r = await call(carol, 'PUT', '/pushrules/device/override/x', { actions: [] });
    expect([r.status, r.body.errcode]).toEqual([400, 'M_INVALID_PARAM']);
    r = await call(carol, 'DELETE', '/pushrules/global/override/.m.rule.master');
    expect([r.status, r.body.errcode]).toEqual([400, 'M_INVALID_PARAM']);
    r = await call(carol, 'GET', '/pushrules/global/override/nothing');
    expect([r.status, r.body.errcode]).toEqual([404, 'M_NOT_FOUND']);
    r = await put('override/nothing/enabled', { enabled: true });
    expect([r.status, r.body.errcode]).toEqual([404, 'M_NOT_FOUND']);
    r = await put('override/.m.rule.master/enabled', { enabled: 'yes' });
    expect([r.status, r.body.errcode]).toEqual([400, 'M_INVALID_PARAM']);
    r = await put('override/nothing/actions', { actions: [] });
    expect([r.status, r.body.errcode]).toEqual([404, 'M_NOT_FOUND']);
    // Nothing was stored by the failures.
    expect((await call(carol, 'GET', '/pushrules/')).body).toEqual({ global: defaultPushRules(carol.userId) });
  });

  it('sends m.push_rules in /sync: whole on an initial sync, again after a change', async () => {
    const dave = await register('pr_dave');
    // Offline syncs, so dave's own presence does not end the poll below before the change does.
    const sync = async (q = '') => {
      const r = await call(dave, 'GET', `/sync${q}${q ? '&' : '?'}set_presence=offline`);
      expect(r.status).toBe(200);
      return r.body;
    };
    const first = await sync();
    const pushRules = (b: Json) => b.account_data.events.find((e: Json) => e.type === 'm.push_rules');
    expect(pushRules(first)).toEqual({ type: 'm.push_rules', content: { global: defaultPushRules(dave.userId) } });
    // The device list change of dave's new device may come first: poll until the change shows.
    const changed = (async () => {
      let since = first.next_batch as string;
      for (;;) {
        const b = await sync(`?since=${since}&timeout=10000`);
        if (b.account_data.events.length) return b;
        since = b.next_batch;
      }
    })();
    await new Promise((r) => setTimeout(r, 50));
    expect((await call(dave, 'PUT', '/pushrules/global/sender/%40eve%3Alocalhost', { actions: [] })).status).toBe(200);
    const second = await changed;
    expect(second.account_data.events).toHaveLength(1);
    expect(pushRules(second).content.global.sender).toEqual([{ rule_id: '@eve:localhost', default: false, enabled: true, actions: [] }]);
    const filtered = await sync(`?filter=${enc(JSON.stringify({ account_data: { not_types: ['m.push_rules'] } }))}`);
    expect(pushRules(filtered)).toBeUndefined();
  });
});

describe('push rules through matrix-js-sdk', () => {
  it('getPushRules, addPushRule, setPushRuleEnabled, setPushRuleActions, deletePushRule; the sync loop starts', async () => {
    const s = await register('pr_sdk');
    const client: MatrixClient = createClient({ baseUrl: server.baseUrl, accessToken: s.token, userId: s.userId, deviceId: s.deviceId });
    const rules: IPushRules = await client.getPushRules();
    expect(rules.global.override!.map((r) => r.rule_id)).toContain('.m.rule.master');
    expect(rules.global.underride!.map((r) => r.rule_id)).toContain('.m.rule.message');

    await client.addPushRule('global', PushRuleKind.ContentSpecific, 'tea', { pattern: 'tea', actions: ['notify' as never] });
    await client.addPushRule('global', PushRuleKind.Override, 'quiet', { actions: [], conditions: [{ kind: 'event_match', key: 'type', pattern: 'org.example.quiet' } as never] });
    await client.setPushRuleEnabled('global', PushRuleKind.ContentSpecific, 'tea', false);
    await client.setPushRuleActions('global', PushRuleKind.Override, '.m.rule.suppress_notices', ['notify' as never]);
    let now = await client.getPushRules();
    expect(now.global.content!.find((r) => r.rule_id === 'tea')).toMatchObject({ rule_id: 'tea', pattern: 'tea', enabled: false, default: false });
    expect(now.global.override!.map((r) => r.rule_id).slice(0, 2)).toEqual(['.m.rule.master', 'quiet']);
    expect(now.global.override!.find((r) => r.rule_id === '.m.rule.suppress_notices')!.actions).toEqual(['notify']);
    await client.deletePushRule('global', PushRuleKind.ContentSpecific, 'tea');
    now = await client.getPushRules();
    expect(now.global.content!.find((r) => r.rule_id === 'tea')).toBeUndefined();
    await expect(client.deletePushRule('global', PushRuleKind.Override, '.m.rule.master')).rejects.toMatchObject({ httpStatus: 400 });

    // The SDK fetches push rules before it syncs: with them served, it prepares as is.
    const prepared = new Promise<void>((resolve) => {
      client.on(ClientEvent.Sync, (state) => {
        if (state === 'PREPARED') resolve();
      });
    });
    await client.startClient({ initialSyncLimit: 5 });
    try {
      await prepared;
      expect(client.pushRules?.global.override?.map((r) => r.rule_id)).toContain('quiet');
      const changed = new Promise<void>((resolve) => {
        client.on(ClientEvent.AccountData, (event) => {
          if (event.getType() === 'm.push_rules' && event.getContent().global?.override?.some((r: Json) => r.rule_id === 'loud')) resolve();
        });
      });
      await client.addPushRule('global', PushRuleKind.Override, 'loud', { actions: ['notify' as never], conditions: [] });
      await changed;
      expect(client.pushRules?.global.override?.map((r) => r.rule_id)).toContain('loud');
    } finally {
      client.stopClient();
    }
  });
});
