/** The user actor as a pure state machine: no Redis. */
import { describe, expect, it } from 'vitest';
import { MAX_PUSHERS, decideUser, newUser, pusherKey, type UserMessage, type UserState } from '../../actors/user';
import { ActorRejection, type StoreWrite } from '../../src/runtime/actor';
import { decode } from '../../src/store/codec';
import { membershipIndexData, recencyIndexData, userData } from '../../src/store/keys';
import RedisMock from 'ioredis-mock';

const ME = '@alice:test';
const msg = (body: UserMessage, at = 1000) => ({ mid: 'm', actorId: ME, body, enqueuedAt: at });
const session = (deviceId: string, n: number, extra: object = {}) => ({ deviceId, accessHash: `at${n}`, ...extra });

function registered(): UserState {
  return decideUser(newUser(ME), msg({ op: 'register', passwordHash: 'H1', displayname: 'alice', session: session('D1', 1, { displayName: 'Phone' }) })).state;
}
const written = (writes: StoreWrite[] | undefined, cmd: string) => (writes ?? []).filter((w) => w.cmd === cmd).map((w) => w.key);
function rejection(f: () => unknown): ActorRejection {
  try {
    f();
  } catch (e) {
    if (e instanceof ActorRejection) return e;
    throw e;
  }
  throw new Error('expected a rejection');
}

describe('UserActor.decide', () => {
  it('registers: account record, profile, device and token records', () => {
    const d = decideUser(newUser(ME), msg({ op: 'register', passwordHash: 'H1', displayname: 'alice', session: session('D1', 1, { displayName: 'Phone' }) }));
    expect(d.reply).toEqual({ user_id: ME, device_id: 'D1' });
    expect(d.state).toMatchObject({ registered: true, passwordHash: 'H1', createdAt: 1000, devices: { D1: { at: 'at1', rt: null, name: 'Phone', seen: 1000 } } });
    const tok = d.writes!.find((w) => w.key === userData.token('at1'))!;
    expect(decode(tok.args[0] as Buffer)).toEqual({ u: ME, d: 'D1' });
    expect(decode(d.writes!.find((w) => w.key === userData.account(ME))!.args[0] as Buffer)).toEqual({ h: 'H1', x: 0, c: 1000 });
    expect(d.writes!.find((w) => w.key === userData.profile(ME))!.args).toEqual(['displayname', 'alice']);
    expect(JSON.parse(d.writes!.find((w) => w.key === userData.devices(ME))!.args[1] as string)).toEqual({ device_id: 'D1', display_name: 'Phone', last_seen_ts: 1000 });
    expect(d.outputs).toEqual([{ type: 'device', user_id: ME, device_id: 'D1' }]);
  });

  it("lists the user in its shard's user list at registration (the admin API's user list)", () => {
    const d = decideUser(newUser(ME), msg({ op: 'register', passwordHash: null }));
    expect(d.writes!.find((w) => w.key === userData.registeredUsers())).toEqual({ cmd: 'ZADD', key: userData.registeredUsers(), args: ['0', ME] });
  });

  it('admin_update sets and clears the admin flag and the lock; a locked user cannot log in', () => {
    const locked = decideUser(registered(), msg({ op: 'admin_update', admin: true, locked: true }));
    expect(decode(locked.writes!.find((w) => w.key === userData.account(ME))!.args[0] as Buffer)).toMatchObject({ a: 1, l: 1 });
    // The device's access token carries the lock (fronts refuse it without reading the account).
    expect(decode(locked.writes!.find((w) => w.key === userData.token('at1'))!.args[0] as Buffer)).toEqual({ u: ME, d: 'D1', l: 1 });
    const e = rejection(() => decideUser(locked.state, msg({ op: 'login', verifiedHash: 'H1', session: session('D2', 2) })));
    expect([e.errcode, e.status]).toEqual(['M_USER_LOCKED', 401]);
    const cleared = decideUser(locked.state, msg({ op: 'admin_update', admin: false, locked: false }));
    const rec = decode<Record<string, unknown>>(cleared.writes!.find((w) => w.key === userData.account(ME))!.args[0] as Buffer);
    expect(decode(cleared.writes!.find((w) => w.key === userData.token('at1'))!.args[0] as Buffer)).toEqual({ u: ME, d: 'D1' });
    expect([rec.a, rec.l]).toEqual([undefined, undefined]);
    expect(decideUser(cleared.state, msg({ op: 'login', verifiedHash: 'H1', session: session('D2', 2) })).reply).toMatchObject({ device_id: 'D2' });
  });

  it('registers without a session when login is inhibited, and refuses a second registration', () => {
    const d = decideUser(newUser(ME), msg({ op: 'register', passwordHash: null }));
    expect(d.reply).toEqual({ user_id: ME });
    expect(d.state.devices).toEqual({});
    expect(written(d.writes, 'SET')).toEqual([userData.account(ME)]);
    expect(rejection(() => decideUser(d.state, msg({ op: 'register', passwordHash: 'H' })))).toMatchObject({ errcode: 'M_USER_IN_USE', status: 400 });
  });

  it('refuses everything but register for an unknown user', () => {
    expect(rejection(() => decideUser(newUser(ME), msg({ op: 'login', verifiedHash: 'H1', session: session('D', 1) })))).toMatchObject({ errcode: 'M_NOT_FOUND' });
  });

  it('logs in only against the current password hash', () => {
    const s = registered();
    expect(rejection(() => decideUser(s, msg({ op: 'login', verifiedHash: 'stale', session: session('D2', 2) })))).toMatchObject({ errcode: 'M_FORBIDDEN', status: 403 });
    const d = decideUser(s, msg({ op: 'login', verifiedHash: 'H1', session: session('D2', 2, { ip: '10.0.0.1' }) }, 2000));
    expect(d.reply).toEqual({ user_id: ME, device_id: 'D2' });
    expect(Object.keys(d.state.devices).sort()).toEqual(['D1', 'D2']);
    expect(written(d.writes, 'DEL')).toEqual([]);
  });

  it('logs an appservice user in without a password; a password login of that user fails', () => {
    const puppet = decideUser(newUser(ME), msg({ op: 'register', passwordHash: null })).state;
    expect(rejection(() => decideUser(puppet, msg({ op: 'login', verifiedHash: 'H1', session: session('D2', 2) })))).toMatchObject({ errcode: 'M_FORBIDDEN', status: 403 });
    const d = decideUser(puppet, msg({ op: 'login', appservice: 'bridge', session: session('D2', 2) }));
    expect(d.reply).toEqual({ user_id: ME, device_id: 'D2' });
    expect(Object.keys(d.state.devices)).toEqual(['D2']);
    expect(rejection(() => decideUser(newUser(ME), msg({ op: 'login', appservice: 'bridge', session: session('D', 1) })))).toMatchObject({ errcode: 'M_NOT_FOUND' });
  });

  it('reusing a device id revokes its previous tokens and keeps its name', () => {
    const s = registered();
    const d = decideUser(s, msg({ op: 'login', verifiedHash: 'H1', session: session('D1', 9, { displayName: 'ignored' }) }));
    expect(written(d.writes, 'DEL')).toEqual([userData.token('at1')]);
    expect(d.state.devices.D1).toMatchObject({ at: 'at9', name: 'Phone' });
    expect(d.outputs).toEqual([]);
  });

  it('issues expiring tokens with a refresh token and rotates both on refresh', () => {
    const s = registered();
    const d = decideUser(s, msg({ op: 'login', verifiedHash: 'H1', session: session('D2', 2, { refreshHash: 'rt2', expiresInMs: 60_000 }) }, 5000));
    expect(d.reply).toEqual({ user_id: ME, device_id: 'D2', expires_in_ms: 60_000 });
    expect(decode(d.writes!.find((w) => w.key === userData.token('at2'))!.args[0] as Buffer)).toEqual({ u: ME, d: 'D2', exp: 65_000, rt: 'rt2' });
    expect(decode(d.writes!.find((w) => w.key === userData.token('rt2'))!.args[0] as Buffer)).toEqual({ u: ME, d: 'D2' });
    const r = decideUser(d.state, msg({ op: 'refresh', refreshHash: 'rt2', accessHash: 'at3', newRefreshHash: 'rt3', expiresInMs: 60_000 }, 9000));
    expect(r.reply).toEqual({ device_id: 'D2', expires_in_ms: 60_000 });
    expect(written(r.writes, 'DEL').sort()).toEqual([userData.token('at2'), userData.token('rt2')].sort());
    expect(r.state.devices.D2).toMatchObject({ at: 'at3', rt: 'rt3', seen: 9000 });
    expect(rejection(() => decideUser(r.state, msg({ op: 'refresh', refreshHash: 'rt2', accessHash: 'x', newRefreshHash: 'y', expiresInMs: 1 })))).toMatchObject({ errcode: 'M_UNKNOWN_TOKEN', status: 401 });
  });

  it('logs out one device by its token, or all devices', () => {
    const s = decideUser(registered(), msg({ op: 'login', verifiedHash: 'H1', session: session('D2', 2) })).state;
    const one = decideUser(s, msg({ op: 'logout', accessHash: 'at2' }));
    expect(one.reply).toEqual({ device_id: 'D2' });
    expect(Object.keys(one.state.devices)).toEqual(['D1']);
    expect(written(one.writes, 'DEL')).toEqual([userData.token('at2')]);
    expect(one.writes).toContainEqual({ cmd: 'HDEL', key: userData.devices(ME), args: ['D2'] });
    expect(rejection(() => decideUser(one.state, msg({ op: 'logout', accessHash: 'at2' })))).toMatchObject({ errcode: 'M_UNKNOWN_TOKEN' });
    const all = decideUser(s, msg({ op: 'logout_all' }));
    expect(all.state.devices).toEqual({});
    expect(written(all.writes, 'DEL').sort()).toEqual([userData.token('at1'), userData.token('at2')]);
  });

  it('changes the password, logging out the other devices unless asked not to', () => {
    const s = decideUser(registered(), msg({ op: 'login', verifiedHash: 'H1', session: session('D2', 2) })).state;
    const keep = decideUser(s, msg({ op: 'set_password', passwordHash: 'H2', logoutDevices: false, keepDevice: 'D2' }));
    expect(keep.state.passwordHash).toBe('H2');
    expect(Object.keys(keep.state.devices).sort()).toEqual(['D1', 'D2']);
    const out = decideUser(s, msg({ op: 'set_password', passwordHash: 'H2', logoutDevices: true, keepDevice: 'D2' }));
    expect(Object.keys(out.state.devices)).toEqual(['D2']);
    expect(written(out.writes, 'DEL')).toEqual([userData.token('at1')]);
    expect(decode(out.writes!.find((w) => w.key === userData.account(ME))!.args[0] as Buffer)).toMatchObject({ h: 'H2' });
  });

  it('keeps push rules: stores the record, emits m.push_rules, answers rule problems', () => {
    let state = registered();
    const put = decideUser(state, msg({ op: 'put_push_rule', kind: 'override', rule: { rule_id: 'mine', actions: ['notify'], conditions: [] } }));
    expect(put.reply).toEqual({ ok: true });
    expect(put.outputs).toEqual([{ type: 'account_data', user_id: ME, data_type: 'm.push_rules' }]);
    const w = put.writes!.find((x) => x.key === userData.pushRules(ME))!;
    expect(w.cmd).toBe('SET');
    expect(JSON.parse(w.args[0] as string)).toEqual({ rules: { override: [{ rule_id: 'mine', actions: ['notify'], conditions: [], enabled: true }] }, defaults: {} });
    state = put.state;
    state = decideUser(state, msg({ op: 'set_push_rule_enabled', kind: 'override', ruleId: '.m.rule.master', enabled: true })).state;
    state = decideUser(state, msg({ op: 'set_push_rule_actions', kind: 'override', ruleId: 'mine', actions: [] })).state;
    expect(state.pushRules).toEqual({ rules: { override: [{ rule_id: 'mine', actions: [], conditions: [], enabled: true }] }, defaults: { 'override/.m.rule.master': { enabled: true } } });
    expect(rejection(() => decideUser(state, msg({ op: 'put_push_rule', kind: 'override', rule: { rule_id: 'x', actions: [] }, before: 'nope' })))).toMatchObject({ errcode: 'M_UNKNOWN', status: 400 });
    expect(rejection(() => decideUser(state, msg({ op: 'delete_push_rule', kind: 'override', ruleId: 'nope' })))).toMatchObject({ errcode: 'M_NOT_FOUND', status: 404 });
    state = decideUser(state, msg({ op: 'delete_push_rule', kind: 'override', ruleId: 'mine' })).state;
    expect(state.pushRules!.rules).toEqual({});
    const gone = decideUser(state, msg({ op: 'deactivate' })).state;
    expect(gone.pushRules).toBeUndefined();
  });

  it('deactivates: no password, no devices, no profile; login is refused after', () => {
    const d = decideUser(registered(), msg({ op: 'deactivate' }));
    expect(d.state).toMatchObject({ deactivated: true, passwordHash: null, devices: {} });
    expect(written(d.writes, 'DEL').sort()).toEqual([userData.accountData(ME), userData.profile(ME), userData.pushRules(ME), userData.pushers(ME), userData.token('at1')].sort());
    expect(decode(d.writes!.find((w) => w.key === userData.account(ME))!.args[0] as Buffer)).toEqual({ h: null, x: 1, c: 1000 });
    expect(rejection(() => decideUser(d.state, msg({ op: 'login', verifiedHash: 'H1', session: session('D', 3) })))).toMatchObject({ errcode: 'M_USER_DEACTIVATED', status: 403 });
  });

  it('deactivation announces itself once (the deactivation reader parts the rooms); erase is recorded', () => {
    const d = decideUser(registered(), msg({ op: 'deactivate', erase: true }));
    expect(d.outputs).toContainEqual({ type: 'deactivated', user_id: ME, erase: true });
    expect(decode(d.writes!.find((w) => w.key === userData.account(ME))!.args[0] as Buffer)).toEqual({ h: null, x: 1, c: 1000, e: 1 });
    const again = decideUser(d.state, msg({ op: 'deactivate' }));
    expect(again.state).toBe(d.state);
    expect(again.outputs ?? []).toEqual([]);
    expect(decideUser(registered(), msg({ op: 'deactivate' })).outputs).toContainEqual({ type: 'deactivated', user_id: ME, erase: false });
  });

  it('renames and deletes devices; deleting unknown devices is not an error', () => {
    const s = registered();
    expect(rejection(() => decideUser(s, msg({ op: 'update_device', deviceId: 'NOPE', displayName: 'x' })))).toMatchObject({ errcode: 'M_NOT_FOUND', status: 404 });
    const renamed = decideUser(s, msg({ op: 'update_device', deviceId: 'D1', displayName: 'Tablet' }));
    expect(JSON.parse(renamed.writes![0]!.args[1] as string)).toMatchObject({ device_id: 'D1', display_name: 'Tablet' });
    const del = decideUser(renamed.state, msg({ op: 'delete_devices', deviceIds: ['D1', 'GONE'] }));
    expect(del.reply).toEqual({ deleted: ['D1'] });
    expect(del.state.devices).toEqual({});
    expect(del.outputs).toEqual([{ type: 'device', user_id: ME, device_id: 'D1', deleted: true }]);
  });

  it('writes account data, numbers filters, sets and clears profile fields', () => {
    const s = registered();
    const g = decideUser(s, msg({ op: 'set_account_data', type: 'm.direct', json: '{}' }));
    expect(g.state).toBe(s);
    expect(g.writes).toEqual([{ cmd: 'HSET', key: userData.accountData(ME), args: ['m.direct', '{}'] }]);
    expect(g.outputs).toEqual([{ type: 'account_data', user_id: ME, data_type: 'm.direct' }]);
    const r = decideUser(s, msg({ op: 'set_account_data', roomId: '!r:test', type: 't', json: '{"a":1}' }));
    expect(r.writes![0]!.key).toBe(userData.roomAccountData(ME, '!r:test'));
    const f0 = decideUser(s, msg({ op: 'create_filter', json: '{}' }));
    const f1 = decideUser(f0.state, msg({ op: 'create_filter', json: '{"room":{}}' }));
    expect([f0.reply, f1.reply]).toEqual([{ filter_id: '0' }, { filter_id: '1' }]);
    expect(f1.writes).toEqual([{ cmd: 'HSET', key: userData.filters(ME), args: ['1', '{"room":{}}'] }]);
    expect(decideUser(s, msg({ op: 'set_profile', field: 'avatar_url', value: 'mxc://a/b' })).writes).toEqual([{ cmd: 'HSET', key: userData.profile(ME), args: ['avatar_url', 'mxc://a/b'] }]);
    expect(decideUser(s, msg({ op: 'set_profile', field: 'displayname', value: null })).writes).toEqual([{ cmd: 'HDEL', key: userData.profile(ME), args: ['displayname'] }]);
  });

  it('does not mutate the previous state, and fails unknown messages', () => {
    const s = registered();
    const copy = structuredClone(s);
    decideUser(s, msg({ op: 'logout_all' }));
    decideUser(s, msg({ op: 'login', verifiedHash: 'H1', session: session('D1', 5) }));
    expect(s).toEqual(copy);
    expect(() => decideUser(s, msg({ op: 'explode' } as unknown as UserMessage))).toThrow(/unknown op "explode"/);
  });
});

describe('UserActor room tags', () => {
  const ROOM = '!r:test';
  const tagWrite = (writes: StoreWrite[] | undefined) => {
    const w = (writes ?? []).find((x) => x.cmd === 'HSET' && x.key === userData.roomAccountData(ME, ROOM));
    expect(w?.args[0]).toBe('m.tag');
    return JSON.parse(String(w!.args[1])) as unknown;
  };

  it('adds tags one at a time into the whole m.tag content, and removes them', () => {
    const a = decideUser(registered(), msg({ op: 'set_room_tag', roomId: ROOM, tag: 'u.work', json: '{}' }));
    expect(tagWrite(a.writes)).toEqual({ tags: { 'u.work': {} } });
    const b = decideUser(a.state, msg({ op: 'set_room_tag', roomId: ROOM, tag: 'm.favourite', json: '{"order":0.5}' }));
    expect(tagWrite(b.writes)).toEqual({ tags: { 'm.favourite': { order: 0.5 }, 'u.work': {} } });
    expect(b.outputs).toEqual([{ type: 'account_data', user_id: ME, room_id: ROOM, data_type: 'm.tag' }]);
    const c = decideUser(b.state, msg({ op: 'delete_room_tag', roomId: ROOM, tag: 'u.work' }));
    expect(tagWrite(c.writes)).toEqual({ tags: { 'm.favourite': { order: 0.5 } } });
    const d = decideUser(c.state, msg({ op: 'delete_room_tag', roomId: ROOM, tag: 'm.favourite' }));
    expect(tagWrite(d.writes)).toEqual({ tags: {} });
    expect(d.state.tags).toEqual({});
  });

  it('deleting a tag the room does not have writes nothing', () => {
    const d = decideUser(registered(), msg({ op: 'delete_room_tag', roomId: ROOM, tag: 'u.none' }));
    expect(d.reply).toEqual({ ok: true });
    expect(d.writes ?? []).toEqual([]);
  });

  it('m.tag written as room account data replaces the kept tags', () => {
    const a = decideUser(registered(), msg({ op: 'set_room_tag', roomId: ROOM, tag: 'u.old', json: '{}' }));
    const b = decideUser(a.state, msg({ op: 'set_account_data', roomId: ROOM, type: 'm.tag', json: '{"tags":{"u.new":{"order":1},"u.bad":7}}' }));
    expect(tagWrite(b.writes)).toEqual({ tags: { 'u.bad': {}, 'u.new': { order: 1 } } });
    const c = decideUser(b.state, msg({ op: 'set_room_tag', roomId: ROOM, tag: 'u.more', json: '{}' }));
    expect(tagWrite(c.writes)).toEqual({ tags: { 'u.bad': {}, 'u.more': {}, 'u.new': { order: 1 } } });
  });
});

describe('UserActor.decide: forgetting rooms', () => {
  const ROOM = '!left:test';

  it('records the forgotten room in the user shard, and only for a known user', () => {
    const d = decideUser(registered(), msg({ op: 'forget', roomId: ROOM }));
    expect(d.reply).toEqual({ ok: true });
    expect(d.writes).toEqual([{ cmd: 'SADD', key: membershipIndexData.forgotten(ME), args: [ROOM] }]);
    expect(d.outputs ?? []).toEqual([]);
    expect(rejection(() => decideUser(newUser(ME), msg({ op: 'forget', roomId: ROOM })))).toMatchObject({ errcode: 'M_NOT_FOUND' });
    expect(rejection(() => decideUser(registered(), msg({ op: 'forget', roomId: 'left' })))).toMatchObject({ errcode: 'M_INVALID_PARAM' });
  });
});

describe('UserActor pushers', () => {
  const P = { app_id: 'com.example.app', pushkey: 'key1', kind: 'http', app_display_name: 'App', device_display_name: 'Phone', profile_tag: '', lang: 'en', data: { url: 'https://gw.test/_matrix/push/v1/notify' }, device_id: 'D1' };
  const withPusher = () => {
    const s = registered();
    const two = decideUser(s, msg({ op: 'login', verifiedHash: 'H1', session: session('D2', 2) })).state;
    return decideUser(two, msg({ op: 'set_pusher', pusher: P }, 2000)).state;
  };

  it('stores a pusher by app id and pushkey, with when it was set; an update keeps the device that set it', () => {
    const s = withPusher();
    expect(s.pushers![pusherKey('com.example.app', 'key1')]).toEqual({ ...P, ts: 2000 });
    const d = decideUser(s, msg({ op: 'set_pusher', pusher: { ...P, lang: 'de', device_id: 'D2' } }, 3000));
    expect(d.state.pushers![pusherKey('com.example.app', 'key1')]).toMatchObject({ lang: 'de', device_id: 'D1', ts: 3000 });
    const w = d.writes!.find((x) => x.key === userData.pushers(ME))!;
    expect(w.cmd).toBe('HSET');
    expect(JSON.parse(w.args[1] as string)).toMatchObject({ lang: 'de', device_id: 'D1' });
  });

  it('deletes a pusher; deleting one that does not exist changes nothing', () => {
    const d = decideUser(withPusher(), msg({ op: 'delete_pusher', appId: 'com.example.app', pushkey: 'key1' }));
    expect(d.state.pushers).toEqual({});
    expect(d.writes).toEqual([{ cmd: 'HDEL', key: userData.pushers(ME), args: [pusherKey('com.example.app', 'key1')] }]);
    expect(decideUser(d.state, msg({ op: 'delete_pusher', appId: 'x', pushkey: 'y' })).writes).toBeUndefined();
  });

  it("a device's pushers go with it (logout, device deletion); other devices' stay", () => {
    const s = decideUser(withPusher(), msg({ op: 'set_pusher', pusher: { ...P, pushkey: 'key2', device_id: 'D2' } })).state;
    const d = decideUser(s, msg({ op: 'delete_devices', deviceIds: ['D1'] }));
    expect(Object.values(d.state.pushers!).map((p) => p.pushkey)).toEqual(['key2']);
    expect(d.writes).toContainEqual({ cmd: 'HDEL', key: userData.pushers(ME), args: [pusherKey('com.example.app', 'key1')] });
    const out = decideUser(d.state, msg({ op: 'logout', accessHash: 'at2' }));
    expect(out.state.pushers).toEqual({});
  });

  it('deactivation drops every pusher; a deactivated account cannot set one', () => {
    const d = decideUser(withPusher(), msg({ op: 'deactivate' }));
    expect(d.state.pushers).toBeUndefined();
    expect(written(d.writes, 'DEL')).toContain(userData.pushers(ME));
    expect(rejection(() => decideUser(d.state, msg({ op: 'set_pusher', pusher: P }))).errcode).toBe('M_USER_DEACTIVATED');
  });

  it(`allows at most ${MAX_PUSHERS} pushers, and still updates one of them at the bound`, () => {
    let s = registered();
    for (let i = 0; i < MAX_PUSHERS; i++) s = decideUser(s, msg({ op: 'set_pusher', pusher: { ...P, pushkey: `k${i}` } })).state;
    expect(rejection(() => decideUser(s, msg({ op: 'set_pusher', pusher: { ...P, pushkey: 'one too many' } }))).status).toBe(400);
    expect(decideUser(s, msg({ op: 'set_pusher', pusher: { ...P, pushkey: 'k0', lang: 'fr' } })).state.pushers![pusherKey(P.app_id, 'k0')]!.lang).toBe('fr');
  });
});

describe('UserActor purge_room: what the user kept for a purged room', () => {
  const ROOM = '!gone:test';
  const OTHER = '!stays:test';
  /** Apply a decision's writes to a mock Redis, as a commit would. */
  async function apply(redis: InstanceType<typeof RedisMock>, writes: StoreWrite[] | undefined): Promise<void> {
    for (const w of writes ?? []) await (redis as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[w.cmd.toLowerCase()]!(w.key, ...w.args);
  }

  it("drops the room's entries in the membership index, forgotten set, recency index and a remote invite's record; other rooms' stay; run again it changes nothing", async () => {
    const redis = new RedisMock();
    await redis.hset(membershipIndexData.rooms(ME), ROOM, '12:leave', OTHER, '3:join');
    await redis.hset(membershipIndexData.writtenAt(ME), ROOM, '111', OTHER, '222');
    await redis.sadd(membershipIndexData.forgotten(ME), ROOM, OTHER);
    await redis.zadd(recencyIndexData.rooms(ME), 5, ROOM, 6, OTHER);
    await redis.set(membershipIndexData.remoteInvite(ME, ROOM), '[]');
    await redis.set(membershipIndexData.remoteInvite(ME, OTHER), '[]');
    const s = registered();
    const first = decideUser(s, msg({ op: 'purge_room', roomId: ROOM }), {});
    await apply(redis, first.writes);
    const seen = async () => ({
      rooms: await redis.hgetall(membershipIndexData.rooms(ME)),
      at: await redis.hgetall(membershipIndexData.writtenAt(ME)),
      forgotten: (await redis.smembers(membershipIndexData.forgotten(ME))).sort(),
      recency: await redis.zrange(recencyIndexData.rooms(ME), 0, -1),
      invites: [await redis.get(membershipIndexData.remoteInvite(ME, ROOM)), await redis.get(membershipIndexData.remoteInvite(ME, OTHER))],
    });
    const after = await seen();
    expect(after).toEqual({ rooms: { [OTHER]: '3:join' }, at: { [OTHER]: '222' }, forgotten: [OTHER], recency: [OTHER], invites: [null, '[]'] });
    await apply(redis, decideUser(first.state, msg({ op: 'purge_room', roomId: ROOM }), {}).writes);
    expect(await seen()).toEqual(after);
  });

  it("forgets the room's tags the actor keeps, so a tag set later in a room of that id does not bring them back", () => {
    let s = registered();
    s = decideUser(s, msg({ op: 'set_room_tag', roomId: ROOM, tag: 'm.favourite', json: '{"order":0.5}' })).state;
    s = decideUser(s, msg({ op: 'set_room_tag', roomId: OTHER, tag: 'u.work', json: '{}' })).state;
    const purged = decideUser(s, msg({ op: 'purge_room', roomId: ROOM }), {});
    expect(purged.state.tags).toEqual({ [OTHER]: { 'u.work': '{}' } });
    const later = decideUser(purged.state, msg({ op: 'set_room_tag', roomId: ROOM, tag: 'u.new', json: '{}' }));
    expect(later.writes).toEqual([{ cmd: 'HSET', key: userData.roomAccountData(ME, ROOM), args: ['m.tag', '{"tags":{"u.new":{}}}'] }]);
    // Nothing kept for the room: the state is not rewritten.
    expect(decideUser(purged.state, msg({ op: 'purge_room', roomId: ROOM }), {}).state).toBe(purged.state);
  });
});
