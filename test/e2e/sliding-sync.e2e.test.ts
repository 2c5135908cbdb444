/**
 * Simplified sliding sync (MSC4186) end to end on the unstable path, over real HTTP against a
 * real front and workers on the test Redis: lists by recency with ranges and filters, required
 * state (wildcards, $LAZY, $ME) sent whole then only what changed, timelines with limited /
 * prev_batch / num_live, room subscriptions, invites with stripped state, unread counts, the
 * long-poll, M_UNKNOWN_POS, and the to_device / e2ee / account_data / typing / receipts extensions.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './server-harness';
import { clientsFor, enc, txn, type Clients, type Json, type Session } from './clients';

const PATH = '/_matrix/client/unstable/org.matrix.simplified_msc3575/sync';

let server: TestServer;
let c: Clients;

beforeAll(async () => {
  server = await startTestServer();
  c = await clientsFor(server);
}, 120_000);

afterAll(async () => {
  await c?.close();
  await server?.stop();
});

async function ss(s: Session, body: Json, query: Record<string, string> = {}): Promise<{ status: number; body: Json }> {
  const qs = new URLSearchParams(query).toString();
  const r = await c.call(s, 'POST', `${PATH}${qs ? `?${qs}` : ''}`, body);
  return { status: r.status, body: r.body };
}

async function ok(s: Session, body: Json, query: Record<string, string> = {}): Promise<Json> {
  const r = await ss(s, body, query);
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body;
}

async function createRoom(s: Session, body: Json = {}): Promise<string> {
  const r = await c.call(s, 'POST', '/createRoom', body);
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body.room_id as string;
}

async function say(s: Session, roomId: string, text: string): Promise<string> {
  const r = await c.call(s, 'PUT', `/rooms/${enc(roomId)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body: text });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body.event_id as string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls (timeout 0) until `ok` holds on an answer; returns it (the connection moves along). */
async function until(s: Session, body: Json, pos: string, okFn: (b: Json) => boolean, ms = 20_000): Promise<Json> {
  const deadline = Date.now() + ms;
  for (;;) {
    const b = await ok(s, body, { pos, timeout: '0' });
    if (okFn(b) || Date.now() > deadline) return b;
    pos = b.pos;
    await sleep(100);
  }
}

describe('simplified sliding sync (unstable path)', () => {
  it('is advertised in /versions', async () => {
    const r = await c.call(null, 'GET', '/_matrix/client/versions');
    expect(r.body.unstable_features['org.matrix.simplified_msc3575']).toBe(true);
  });

  it('lists rooms by recency with names, timelines, required state and counts; then only what is new', async () => {
    const alice = await c.mint('ss-alice');
    const bob = await c.mint('ss-bob');
    const r1 = await createRoom(alice, { name: 'First', preset: 'public_chat' });
    const r2 = await createRoom(alice, { name: 'Second', preset: 'public_chat' });
    const r3 = await createRoom(alice, { preset: 'public_chat' }); // unnamed: heroes
    expect((await c.call(bob, 'POST', `/join/${enc(r3)}`, {})).status).toBe(200);
    await say(alice, r1, 'one');
    await say(alice, r3, 'three');
    await say(alice, r2, 'two'); // r2 newest, then r3, then r1
    const req = {
      lists: { all: { ranges: [[0, 1]], timeline_limit: 2, required_state: [['m.room.name', ''], ['m.room.member', '$LAZY'], ['m.room.create', '']] } },
    };
    // A first answer (no pos), asked again until the membership index has all three rooms.
    let b: Json | null = null;
    for (let i = 0; !b || b.lists.all.count !== 3 || b.lists.all.ops[0].room_ids[0] !== r2; i++) {
      b = await ok(alice, req);
      if (i > 100) break;
      await sleep(100);
    }
    expect(b!.lists.all.count).toBe(3);
    expect(b!.lists.all.ops).toEqual([{ op: 'SYNC', range: [0, 1], room_ids: [r2, r3] }]);
    const room2 = b!.rooms[r2];
    expect(room2.initial).toBe(true);
    expect(room2.name).toBe('Second');
    expect(room2.timeline).toHaveLength(2);
    expect(room2.timeline[1].content.body).toBe('two');
    expect(room2.limited).toBe(true);
    expect(typeof room2.prev_batch).toBe('string');
    expect(room2.num_live).toBe(0);
    expect(room2.joined_count).toBe(1);
    expect(room2.invited_count).toBe(0);
    expect(room2.notification_count).toBe(0);
    expect(typeof room2.bump_stamp).toBe('number');
    const rsTypes = (room2.required_state as Json[]).map((e) => `${e.type}|${e.state_key}`).sort();
    // $LAZY: the timeline's only sender is alice.
    expect(rsTypes).toEqual(['m.room.create|', `m.room.member|${alice.userId}`, 'm.room.name|']);
    const room3 = b!.rooms[r3];
    expect(room3.name).toBeUndefined();
    expect(room3.heroes).toEqual([{ user_id: bob.userId, displayname: 'ss-bob' }]);
    expect(room3.joined_count).toBe(2);
    expect(b!.rooms[r1]).toBeUndefined(); // outside the range

    // Incremental: a long-poll wakes on a new message, with just that event.
    let pos = b!.pos as string;
    const settledAnswer = await ok(alice, req, { pos, timeout: '0' });
    pos = settledAnswer.pos;
    const poll = ok(alice, req, { pos, timeout: '20000' });
    await sleep(300);
    await say(bob, r3, 'hello from bob');
    const inc = await poll;
    expect(inc.pos).not.toBe(pos);
    const r3inc = inc.rooms[r3];
    expect(r3inc.initial).toBeUndefined();
    expect(r3inc.timeline.map((e: Json) => e.content.body)).toEqual(['hello from bob']);
    expect(r3inc.limited).toBe(false);
    expect(r3inc.num_live).toBe(1);
    // $LAZY: bob's member event went with the first answer (his join was in its timeline): not again.
    expect((room3.required_state as Json[]).filter((e) => e.type === 'm.room.member').map((e) => e.state_key).sort()).toEqual([alice.userId, bob.userId].sort());
    expect(r3inc.required_state).toBeUndefined();
    expect(r3inc.notification_count).toBe(1);
    // r3 moved up: the list order changed.
    expect(inc.lists.all.ops[0].room_ids).toEqual([r3, r2]);

    // A name change: required_state carries only the new name event, and `name` is sent.
    pos = inc.pos;
    const rename = await c.call(alice, 'PUT', `/rooms/${enc(r3)}/state/m.room.name/`, { name: 'Third' });
    expect(rename.status).toBe(200);
    const named = await until(alice, req, pos, (x) => x.rooms?.[r3]?.name === 'Third');
    expect(named.rooms[r3].name).toBe('Third');
    expect((named.rooms[r3].required_state as Json[]).map((e) => e.type)).toEqual(['m.room.name']);

    // Nothing new: the same pos comes back after the timeout.
    const quiet = await ok(alice, req, { pos: named.pos, timeout: '300' });
    const quiet2 = await ok(alice, req, { pos: quiet.pos, timeout: '300' });
    expect(quiet2.pos).toBe(quiet.pos);
    expect(quiet2.rooms).toEqual({});

    // An old pos still answers (a client whose answer was lost asks again) — the one just before.
    expect((await ss(alice, req, { pos: quiet.pos, timeout: '0' })).status).toBe(200);
  }, 120_000);

  it('answers M_UNKNOWN_POS for a pos it does not know, and 400 for a bad body', async () => {
    const alice = await c.mint('ss-pos');
    const bad = await ss(alice, { lists: {} }, { pos: 'deadbeef_99' });
    expect(bad.status).toBe(400);
    expect(bad.body.errcode).toBe('M_UNKNOWN_POS');
    const garbage = await ss(alice, {}, { pos: 'nonsense' });
    expect(garbage.body.errcode).toBe('M_UNKNOWN_POS');
    const noLimit = await ss(alice, { lists: { a: { ranges: [[0, 5]], required_state: [] } } });
    expect(noLimit.status).toBe(400);
    expect(noLimit.body.errcode).toBe('M_BAD_JSON');
    const badRange = await ss(alice, { lists: { a: { ranges: [[5, 1]], required_state: [], timeline_limit: 1 } } });
    expect(badRange.status).toBe(400);
    const unauth = await c.call(null, 'POST', PATH, {});
    expect(unauth.status).toBe(401);
    // Another conn_id's pos is unknown on this one.
    const a = await ok(alice, { conn_id: 'one' });
    const other = await ss(alice, { conn_id: 'two' }, { pos: a.pos });
    expect(other.body.errcode).toBe('M_UNKNOWN_POS');
    expect((await ss(alice, { conn_id: 'one' }, { pos: a.pos })).status).toBe(200);
  }, 60_000);

  it('shows invites with stripped state, filters lists, and follows room subscriptions', async () => {
    const carol = await c.mint('ss-carol');
    const dave = await c.mint('ss-dave');
    const encrypted = await createRoom(carol, { name: 'Secret', initial_state: [{ type: 'm.room.encryption', state_key: '', content: { algorithm: 'm.megolm.v1.aes-sha2' } }] });
    const space = await createRoom(carol, { name: 'Space', creation_content: { type: 'm.space' } });
    const child = await createRoom(carol, { name: 'Child' });
    expect((await c.call(carol, 'PUT', `/rooms/${enc(space)}/state/m.space.child/${enc(child)}`, { via: ['localhost'] })).status).toBe(200);
    const plain = await createRoom(carol, { name: 'Plain' });
    expect((await c.call(carol, 'PUT', `/user/${enc(carol.userId)}/rooms/${enc(plain)}/tags/m.favourite`, { order: 0.5 })).status).toBe(200);
    const dm = await createRoom(carol, { is_direct: true, invite: [dave.userId] });
    const lists = {
      enc: { ranges: [[0, 10]], timeline_limit: 0, required_state: [], filters: { is_encrypted: true } },
      spaces: { ranges: [[0, 10]], timeline_limit: 0, required_state: [], filters: { room_types: ['m.space'] } },
      nospaces: { ranges: [[0, 10]], timeline_limit: 0, required_state: [], filters: { not_room_types: ['m.space'] } },
      inSpace: { ranges: [[0, 10]], timeline_limit: 0, required_state: [], filters: { spaces: [space] } },
      fav: { ranges: [[0, 10]], timeline_limit: 0, required_state: [], filters: { tags: ['m.favourite'] } },
    };
    const b = await (async () => {
      for (let i = 0; ; i++) {
        const x = await ok(carol, { lists });
        if (x.lists.nospaces.count === 4 || i > 100) return x;
        await sleep(100);
      }
    })();
    const ids = (name: string) => b.lists[name].ops[0].room_ids;
    expect(ids('enc')).toEqual([encrypted]);
    expect(ids('spaces')).toEqual([space]);
    expect(new Set(ids('nospaces'))).toEqual(new Set([encrypted, child, plain, dm]));
    expect(ids('inSpace')).toEqual([child]);
    expect(ids('fav')).toEqual([plain]);

    // Dave's invite: stripped state, is_invite and is_dm filters.
    const dlists = {
      invites: { ranges: [[0, 5]], timeline_limit: 1, required_state: [], filters: { is_invite: true } },
      dms: { ranges: [[0, 5]], timeline_limit: 1, required_state: [], filters: { is_dm: true } },
    };
    let d: Json = {};
    for (let i = 0; i < 100; i++) {
      d = await ok(dave, { lists: dlists });
      if (d.lists.invites.count === 1) break;
      await sleep(100);
    }
    expect(d.lists.invites.ops[0].room_ids).toEqual([dm]);
    expect(d.lists.dms.ops[0].room_ids).toEqual([dm]);
    const inv = d.rooms[dm];
    expect(inv.initial).toBe(true);
    expect((inv.invite_state as Json[]).some((e) => e.type === 'm.room.member' && e.state_key === dave.userId && e.content.membership === 'invite')).toBe(true);
    expect(inv.timeline).toBeUndefined();
    // An invite from someone dave then ignores is neither listed nor sent.
    const eve = await c.mint('ss-eve');
    const fromEve = await createRoom(eve, { name: 'Ignored', invite: [dave.userId] });
    let both: Json = {};
    for (let i = 0; i < 100; i++) {
      both = await ok(dave, { lists: dlists });
      if (both.lists.invites.count === 2) break;
      await sleep(100);
    }
    expect(both.rooms[fromEve].invite_state).toBeDefined();
    expect((await c.call(dave, 'PUT', `/user/${enc(dave.userId)}/account_data/m.ignored_user_list`, { ignored_users: { [eve.userId]: {} } })).status).toBe(200);
    const withIgnored = await ok(dave, { lists: dlists });
    expect(withIgnored.lists.invites.count).toBe(1);
    expect(withIgnored.rooms[fromEve]).toBeUndefined();

    // A subscription to a room outside any list; $ME and wildcards.
    const sub = await ok(carol, { room_subscriptions: { [plain]: { timeline_limit: 1, required_state: [['m.room.member', '$ME'], ['m.room.power_levels', '*']] } } });
    const types = (sub.rooms[plain].required_state as Json[]).map((e) => `${e.type}|${e.state_key}`).sort();
    expect(types).toEqual([`m.room.member|${carol.userId}`, 'm.room.power_levels|']);
    expect(sub.rooms[plain].timeline).toHaveLength(1);
    // Kept by the connection: a message there arrives without naming the subscription again.
    await say(carol, plain, 'sub news');
    const next = await until(carol, {}, sub.pos, (x) => !!x.rooms?.[plain]?.timeline);
    expect(next.rooms[plain].timeline.map((e: Json) => e.content.body)).toEqual(['sub news']);
    // Unsubscribed: no more.
    const un = await ok(carol, { unsubscribe_rooms: [plain] }, { pos: next.pos, timeout: '0' });
    await say(carol, plain, 'after unsubscribe');
    await sleep(300);
    const after = await ok(carol, {}, { pos: un.pos, timeout: '500' });
    expect(after.rooms[plain]).toBeUndefined();
    // `["*", "*"]` gives all the state.
    const all = await ok(carol, { conn_id: 'wild', room_subscriptions: { [space]: { timeline_limit: 0, required_state: [['*', '*']] } } });
    expect((all.rooms[space].required_state as Json[]).some((e) => e.type === 'm.space.child' && e.state_key === child)).toBe(true);
    expect((all.rooms[space].required_state as Json[]).some((e) => e.type === 'm.room.create')).toBe(true);
  }, 120_000);

  it('sends a room left once, with the leave, then drops it from the list', async () => {
    const kim = await c.mint('ss-kim');
    const room = await createRoom(kim, { name: 'Leaving' });
    const stay = await createRoom(kim, { name: 'Staying' });
    const req = { lists: { l: { ranges: [[0, 9]], timeline_limit: 2, required_state: [] } }, room_subscriptions: { [room]: { timeline_limit: 2, required_state: [] } } };
    let b: Json = {};
    for (let i = 0; i < 100; i++) {
      b = await ok(kim, req);
      if (b.lists.l.count === 2) break;
      await sleep(100);
    }
    expect(b.rooms[room].initial).toBe(true);
    expect((await c.call(kim, 'POST', `/rooms/${enc(room)}/leave`, {})).status).toBe(200);
    const left = await until(kim, req, b.pos, (x) => !!x.rooms?.[room]);
    const last = left.rooms[room].timeline.at(-1);
    expect(last.type).toBe('m.room.member');
    expect(last.content.membership).toBe('leave');
    // Then: out of the list, and not sent again (the subscription to it included).
    const after = await until(kim, req, left.pos, (x) => x.lists.l.count === 1);
    expect(after.lists.l.count).toBe(1);
    expect(after.lists.l.ops[0].room_ids).toEqual([stay]);
    const quiet = await ok(kim, req, { pos: after.pos, timeout: '500' });
    expect(quiet.rooms[room]).toBeUndefined();
  }, 60_000);

  it('lists a room the user was kicked from, even on a connection that never had it', async () => {
    const lee = await c.mint('ss-lee');
    const kim = await c.mint('ss-kicked');
    const room = await createRoom(lee, { name: 'Kick', preset: 'public_chat' });
    const mine = await createRoom(kim, { name: 'Mine' });
    expect((await c.call(kim, 'POST', `/join/${enc(room)}`, {})).status).toBe(200);
    expect((await c.call(lee, 'POST', `/rooms/${enc(room)}/kick`, { user_id: kim.userId, reason: 'bye' })).status).toBe(200);
    const req = { lists: { l: { ranges: [[0, 9]], timeline_limit: 1, required_state: [] } } };
    let b: Json = {};
    for (let i = 0; i < 100; i++) {
      b = await ok(kim, req);
      if (b.rooms[room]?.timeline?.[0]?.content?.membership === 'leave') break;
      await sleep(100);
    }
    expect(b.lists.l.count).toBe(2);
    expect(new Set(b.lists.l.ops[0].room_ids)).toEqual(new Set([room, mine]));
    const kick = b.rooms[room].timeline[0];
    expect(kick.sender).toBe(lee.userId);
    expect(kick.content.reason).toBe('bye');
    // Sent once: not again on the same connection.
    const next = await ok(kim, req, { pos: b.pos, timeout: '300' });
    expect(next.rooms[room]).toBeUndefined();
    expect(next.lists.l.count).toBe(2);
  }, 60_000);

  it('carries to-device, e2ee, account data, typing and receipts in its extensions', async () => {
    const erin = await c.mint('ss-erin');
    const frank = await c.mint('ss-frank');
    const room = await createRoom(erin, { name: 'Ext', preset: 'public_chat' });
    expect((await c.call(frank, 'POST', `/join/${enc(room)}`, {})).status).toBe(200);
    const ev = await say(frank, room, 'read me');
    const ext = { to_device: { enabled: true }, e2ee: { enabled: true }, account_data: { enabled: true }, typing: { enabled: true }, receipts: { enabled: true } };
    const body = (since?: string) => ({ lists: { l: { ranges: [[0, 5]], timeline_limit: 1, required_state: [] } }, extensions: { ...ext, to_device: { enabled: true, ...(since ? { since } : {}) } } });
    let first: Json = {};
    for (let i = 0; i < 100; i++) {
      first = await ok(erin, body());
      if (first.lists.l.count === 1) break;
      await sleep(100);
    }
    expect(first.extensions.e2ee.device_one_time_keys_count).toBeDefined();
    expect(Array.isArray(first.extensions.e2ee.device_unused_fallback_key_types)).toBe(true);
    expect((first.extensions.account_data.global as Json[]).some((e) => e.type === 'm.push_rules')).toBe(true);
    expect(first.extensions.to_device.events).toEqual([]);
    let since = first.extensions.to_device.next_batch as string;
    let pos = first.pos as string;

    // To-device from frank, typing by frank, a receipt by frank, account data of erin's.
    expect((await c.call(frank, 'PUT', `/sendToDevice/m.test/${txn()}`, { messages: { [erin.userId]: { [erin.deviceId]: { hello: 'erin' } } } })).status).toBe(200);
    expect((await c.call(frank, 'PUT', `/rooms/${enc(room)}/typing/${enc(frank.userId)}`, { typing: true, timeout: 20000 })).status).toBe(200);
    expect((await c.call(frank, 'POST', `/rooms/${enc(room)}/receipt/m.read/${enc(ev)}`, {})).status).toBe(200);
    expect((await c.call(erin, 'PUT', `/user/${enc(erin.userId)}/account_data/org.example.ss`, { x: 1 })).status).toBe(200);
    expect((await c.call(erin, 'PUT', `/user/${enc(erin.userId)}/rooms/${enc(room)}/account_data/org.example.room`, { y: 2 })).status).toBe(200);

    const seen = { td: false, typing: false, receipt: false, ad: false, rad: false };
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline && !Object.values(seen).every(Boolean)) {
      const b = await ok(erin, body(since), { pos, timeout: '2000' });
      pos = b.pos;
      since = b.extensions.to_device.next_batch;
      if ((b.extensions.to_device.events as Json[]).some((e) => e.type === 'm.test' && e.content.hello === 'erin' && e.sender === frank.userId)) seen.td = true;
      if (b.extensions.typing.rooms[room]?.content.user_ids.includes(frank.userId)) seen.typing = true;
      if (b.extensions.receipts.rooms[room]?.content[ev]?.['m.read']?.[frank.userId]) seen.receipt = true;
      if ((b.extensions.account_data.global as Json[]).some((e) => e.type === 'org.example.ss' && e.content.x === 1)) seen.ad = true;
      if ((b.extensions.account_data.rooms[room] as Json[] | undefined)?.some((e) => e.type === 'org.example.room')) seen.rad = true;
    }
    expect(seen).toEqual({ td: true, typing: true, receipt: true, ad: true, rad: true });
    // The to-device message is not given again once `since` has passed it.
    const again = await ok(erin, body(since), { pos, timeout: '0' });
    expect(again.extensions.to_device.events).toEqual([]);
  }, 120_000);
});

describe('simplified sliding sync, v4 shape (POST /_matrix/client/v4/sync)', () => {
  const V4 = '/_matrix/client/v4/sync';
  async function v4(s: Session, body: Json): Promise<Json> {
    const r = await c.call(s, 'POST', V4, body);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    return r.body;
  }

  it('takes pos and timeout in the body, counts lists, names rooms\' lists and membership, leaves out counts', async () => {
    const gina = await c.mint('v4-gina');
    const hal = await c.mint('v4-hal');
    const room = await createRoom(gina, { name: 'Four', preset: 'public_chat' });
    const invite = await createRoom(hal, { name: 'Come in', invite: [gina.userId] });
    await say(gina, room, 'a');
    await say(gina, room, 'b');
    await say(gina, room, 'c');
    const lists = {
      all: { timeline_limit: 1, required_state: { include: [{ type: 'm.room.name', state_key: '' }, { type: 'm.room.create' }], lazy_members: true } },
      invites: { range: [0, 0], timeline_limit: 0, required_state: {}, filters: { is_invited: true } },
    };
    let b: Json = {};
    for (let i = 0; i < 100; i++) {
      b = await v4(gina, { conn_id: 'v4', lists });
      if (b.lists.all.count === 2 && b.lists.invites.count === 1) break;
      await sleep(100);
    }
    expect(b.lists).toEqual({ all: { count: 2 }, invites: { count: 1 } });
    const r = b.rooms[room];
    expect(r.membership).toBe('join');
    expect(r.lists).toEqual(['all']);
    expect(r.name).toBe('Four');
    expect(r.notification_count).toBeUndefined();
    expect(r.timeline.map((e: Json) => e.content.body)).toEqual(['c']);
    expect(r.limited).toBe(true);
    expect((r.required_state as Json[]).map((e) => `${e.type}|${e.state_key}`).sort()).toEqual(['m.room.create|', `m.room.member|${gina.userId}`, 'm.room.name|']);
    const inv = b.rooms[invite];
    expect(inv.membership).toBe('invite');
    expect(inv.lists.sort()).toEqual(['all', 'invites']);
    expect((inv.stripped_state as Json[]).some((e) => e.type === 'm.room.name' && e.content.name === 'Come in')).toBe(true);
    expect(inv.invite_state).toBeUndefined();

    // A larger timeline_limit: the latest events again, older ones included, at once.
    const bigger = { ...lists, all: { ...lists.all, timeline_limit: 3 } };
    const expanded = await v4(gina, { conn_id: 'v4', pos: b.pos, timeout: 0, lists: bigger });
    expect(expanded.rooms[room].expanded_timeline).toBe(true);
    expect(expanded.rooms[room].timeline.map((e: Json) => e.content.body)).toEqual(['a', 'b', 'c']);
    expect(expanded.rooms[room].initial).toBeUndefined();

    // Long-poll with the timeout in the body; the name removed is `null`.
    const poll = v4(gina, { conn_id: 'v4', pos: expanded.pos, timeout: 20_000, lists: bigger });
    await sleep(300);
    expect((await c.call(gina, 'PUT', `/rooms/${enc(room)}/state/m.room.name/`, {})).status).toBe(200);
    let named = await poll;
    // Anything else that ends the poll first (nothing should) is skipped over.
    for (let i = 0; i < 20 && !named.rooms?.[room]; i++) named = await v4(gina, { conn_id: 'v4', pos: named.pos, timeout: 5000, lists: bigger });
    expect(named.rooms[room].name).toBeNull();
    expect(named.rooms[room].membership).toBeUndefined();
    expect(named.rooms[room].timeline.map((e: Json) => e.type)).toEqual(['m.room.name']);

    // Bad input: set_presence out of range, old shapes.
    const badPresence = await c.call(gina, 'POST', V4, { set_presence: 'busy' });
    expect(badPresence.status).toBe(400);
    expect(badPresence.body.errcode).toBe('M_INVALID_PARAM');
    const oldShape = await c.call(gina, 'POST', V4, { lists: { a: { ranges: [[0, 1]], timeline_limit: 1, required_state: [['m.room.name', '']] } } });
    expect(oldShape.status).toBe(400);
    const unknown = await c.call(gina, 'POST', V4, { conn_id: 'v4', pos: 'deadbeef_1' });
    expect(unknown.body.errcode).toBe('M_UNKNOWN_POS');
  }, 120_000);

  it('excludes what `exclude` names and includes by state_key across types', async () => {
    const ivy = await c.mint('v4-ivy');
    const room = await createRoom(ivy, { name: 'Excl', topic: 'about' });
    const b = await v4(ivy, { room_subscriptions: { [room]: { timeline_limit: 0, required_state: { include: [{}], exclude: [{ type: 'm.room.member' }, { type: 'm.room.topic', state_key: '' }] } } } });
    const types = new Set((b.rooms[room].required_state as Json[]).map((e) => e.type));
    expect(types.has('m.room.create')).toBe(true);
    expect(types.has('m.room.name')).toBe(true);
    expect(types.has('m.room.member')).toBe(false);
    expect(types.has('m.room.topic')).toBe(false);
    const byKey = await v4(ivy, { conn_id: 'k', room_subscriptions: { [room]: { timeline_limit: 0, required_state: { include: [{ state_key: ivy.userId }] } } } });
    expect((byKey.rooms[room].required_state as Json[]).map((e) => `${e.type}|${e.state_key}`)).toEqual([`m.room.member|${ivy.userId}`]);
  }, 60_000);
});
