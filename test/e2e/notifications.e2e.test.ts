/**
 * Push rule evaluation end to end: real HTTP into one front and two workers on real Redis, the
 * push evaluator reader following the room outboxes, and the counts read the way /sync reads
 * them (`unreadCounts`) and `GET /notifications`.
 *
 * A room with three users, a DM: plain messages, mentions, @room, a muted room; read receipts
 * (`POST /receipt`, through the receipt actor) reset the counts, per thread for threaded
 * receipts; redelivering every outbox entry changes nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './server-harness';
import { callJson } from './clients';
import { KeySpace, PUSH_EVALUATOR_GROUP, pushData } from '../../src/store/keys';
import { shardCountsFor } from '../../src/runtime/cluster-settings';
import { shardOf } from '../../src/store/shards';
import { NOTIFICATIONS_KEPT } from '../../src/readers/push-evaluator';
import { unreadCounts, type UnreadCounts } from '../../src/sync/unread-counts';

type Json = Record<string, any>;
interface Session {
  userId: string;
  token: string;
}

let server: TestServer;
let keys: KeySpace;
beforeAll(async () => {
  server = await startTestServer({ workers: 2 });
  keys = new KeySpace(server.config.redis.keyPrefix);
});
afterAll(async () => {
  await server?.stop();
});

const call = (s: Session | null, method: string, path: string, body?: unknown) => callJson(server, s, method, path, body);

async function register(username: string): Promise<Session> {
  const first = await call(null, 'POST', '/register', { username, password: 'a long passphrase' });
  const r = await call(null, 'POST', '/register', { username, password: 'a long passphrase', auth: { type: 'm.login.dummy', session: first.body.session } });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return { userId: r.body.user_id, token: r.body.access_token };
}

const enc = encodeURIComponent;
let txn = 0;
async function send(s: Session, roomId: string, content: Json, type = 'm.room.message'): Promise<string> {
  const r = await call(s, 'PUT', `/rooms/${enc(roomId)}/send/${type}/t${++txn}`, content);
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body.event_id;
}
const text = (body: string, extra: Json = {}) => ({ msgtype: 'm.text', body, ...extra });

async function room(owner: Session, members: Session[], extra: Json = {}): Promise<string> {
  const r = await call(owner, 'POST', '/createRoom', { preset: 'private_chat', invite: members.map((m) => m.userId), ...extra });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  for (const m of members) expect((await call(m, 'POST', `/rooms/${enc(r.body.room_id)}/join`, {})).status).toBe(200);
  return r.body.room_id;
}

const ctx = () => ({ redis: server.redis, keys, shardCounts: shardCountsFor(server.config) });
const userKey = (userId: string, name: string) => keys.shard('user', shardOf(userId, server.config.shards.users)).data(name);

/** A read receipt through the API (the receipt actor stores it; the counts read it). */
async function receipt(s: Session, roomId: string, eventId: string, opts: { type?: string; thread?: string } = {}): Promise<void> {
  const r = await call(s, 'POST', `/rooms/${enc(roomId)}/receipt/${opts.type ?? 'm.read'}/${enc(eventId)}`, opts.thread ? { thread_id: opts.thread } : {});
  expect(r.status, JSON.stringify(r.body)).toBe(200);
}

async function counts(s: Session, roomIds: string[], threads = false): Promise<Record<string, UnreadCounts>> {
  return Object.fromEntries(await unreadCounts(ctx(), s.userId, roomIds, { threads }));
}

/** The evaluator runs after the event is sent: wait until what it records is as expected. */
async function eventually<T>(read: () => Promise<T>, expected: T, ms = 8000): Promise<void> {
  const until = Date.now() + ms;
  let last: T;
  for (;;) {
    last = await read();
    try {
      expect(last).toEqual(expected);
      return;
    } catch (e) {
      if (Date.now() > until) throw e;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Wait until the push evaluator has read and acknowledged everything in every room outbox. */
async function evaluatorIdle(): Promise<void> {
  const until = Date.now() + 8000;
  for (let shard = 0; shard < server.config.shards.rooms; shard++) {
    const outbox = keys.shard('room', shard).outbox;
    for (;;) {
      const groups = (await server.redis.xinfo('GROUPS', outbox).catch(() => [])) as unknown[][];
      const g = groups.map((arr) => Object.fromEntries(arr.reduce<[string, unknown][]>((acc, v, i) => (i % 2 ? acc : [...acc, [String(v), arr[i + 1]]]), []))).find((x) => x.name === PUSH_EVALUATOR_GROUP);
      const last = (await server.redis.xrevrange(outbox, '+', '-', 'COUNT', 1))[0]?.[0];
      if (!g || (Number(g.pending) === 0 && (!last || g['last-delivered-id'] === last))) break;
      if (Date.now() > until) throw new Error(`push evaluator busy on room shard ${shard}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

const c = (notification_count: number, highlight_count: number, threads?: Record<string, { notification_count: number; highlight_count: number }>): UnreadCounts =>
  threads ? { notification_count, highlight_count, threads } : { notification_count, highlight_count };

describe('unread notification counts', () => {
  let alice: Session, bob: Session, carol: Session;
  let group: string, dm: string;

  beforeAll(async () => {
    [alice, bob, carol] = await Promise.all([register('n_alice'), register('n_bob'), register('n_carol')]);
    group = await room(alice, [bob, carol]);
    dm = await room(alice, [bob], { is_direct: true, preset: 'trusted_private_chat' });
  });

  it('counts messages, mentions and DMs for each member, never the sender; their own message reads what came before it', async () => {
    const first = await send(alice, group, text('hello all'));
    await send(alice, group, text('second'));
    await send(alice, group, text('carol, look', { 'm.mentions': { user_ids: [carol.userId] } }));
    await eventually(() => counts(bob, [group]), { [group]: c(3, 0) });
    // Bob answers: sending marks the notifications before his message read (the spec's "Marking
    // notifications as read"), without a receipt.
    await send(bob, group, text('bob here'));
    await send(alice, dm, text('psst bob'));
    await eventually(() => counts(bob, [group, dm]), { [group]: c(0, 0), [dm]: c(1, 0) });
    await eventually(() => counts(carol, [group, dm]), { [group]: c(4, 1), [dm]: c(0, 0) });
    await eventually(() => counts(alice, [group, dm]), { [group]: c(1, 0), [dm]: c(0, 0) });

    // @room: highlights only when the sender may (power 50 by default; alice created the room).
    await send(bob, group, text('@room tea?', { 'm.mentions': { room: true } }));
    await send(alice, group, text('@room lunch!', { 'm.mentions': { room: true } }));
    await eventually(() => counts(carol, [group]), { [group]: c(6, 2) });
    await eventually(() => counts(bob, [group]), { [group]: c(1, 1) });
    await eventually(() => counts(alice, [group]), { [group]: c(0, 0) });
    expect(first).toMatch(/^\$/);
  });

  it('a read receipt resets the counts up to its event (public or private, whichever is later)', async () => {
    const last = await send(alice, group, text('catch up'));
    await eventually(() => counts(bob, [group]), { [group]: c(2, 1) });
    await receipt(bob, group, last);
    expect(await counts(bob, [group])).toEqual({ [group]: c(0, 0) });
    // Bob's own messages left him no exceptions in the room's push log (they read as his receipts).
    expect(await server.redis.zcard(userKey(bob.userId, pushData.exceptions(bob.userId, group)))).toBe(0);
    // The evaluator follows the receipt actor's entries and drops what the receipt covers: carol's
    // exception (the mention that highlighted for her only), by her receipt.
    expect(await server.redis.zcard(userKey(carol.userId, pushData.exceptions(carol.userId, group)))).toBeGreaterThan(0);
    await receipt(carol, group, last);
    await eventually(() => server.redis.zcard(userKey(carol.userId, pushData.exceptions(carol.userId, group))), 0);
    await send(alice, group, text('one more'));
    await eventually(() => counts(bob, [group]), { [group]: c(1, 0) });
    // A private receipt later in the timeline counts too; an earlier public one does not undo it.
    const more = await send(alice, group, text('and another'));
    await eventually(() => counts(bob, [group]), { [group]: c(2, 0) });
    await receipt(bob, group, more, { type: 'm.read.private' });
    expect(await counts(bob, [group])).toEqual({ [group]: c(0, 0) });
  });

  it('counts threads separately, reset by their own receipts', async () => {
    await receipt(carol, group, await send(bob, group, text('reset carol')));
    await eventually(() => counts(carol, [group]), { [group]: c(0, 0) });
    const root = await send(alice, group, text('thread root'));
    const thread = (body: string, extra: Json = {}) => text(body, { 'm.relates_to': { rel_type: 'm.thread', event_id: root, is_falling_back: true, 'm.in_reply_to': { event_id: root } }, ...extra });
    const r1 = await send(alice, group, thread('reply one'));
    await send(bob, group, thread('reply two', { 'm.mentions': { user_ids: [carol.userId] } }));
    await eventually(() => counts(carol, [group], true), { [group]: c(1, 0, { [root]: c(2, 1) }) });
    // Without thread counts asked for, the room's count covers both.
    expect(await counts(carol, [group])).toEqual({ [group]: c(3, 1) });
    // A receipt in the thread covers the thread only.
    await receipt(carol, group, r1, { thread: root });
    expect(await counts(carol, [group], true)).toEqual({ [group]: c(1, 0, { [root]: c(1, 1) }) });
    // A main-timeline receipt covers the main timeline only.
    await receipt(carol, group, root, { thread: 'main' });
    expect(await counts(carol, [group], true)).toEqual({ [group]: c(0, 0, { [root]: c(1, 1) }) });
    // An edit of a thread reply belongs to the thread; edits do not notify anyway, a mention in one does.
    await send(alice, group, text('* reply one!', { 'm.new_content': text('reply one!'), 'm.relates_to': { rel_type: 'm.replace', event_id: r1 }, 'm.mentions': { user_ids: [carol.userId] } }));
    await eventually(() => counts(carol, [group], true), { [group]: c(0, 0, { [root]: c(2, 2) }) });
    // An unthreaded receipt covers everything before it.
    const after = await send(bob, group, text('after the thread'));
    await receipt(carol, group, after);
    expect(await counts(carol, [group], true)).toEqual({ [group]: c(0, 0) });
  });

  it('respects the user’s rules: a muted room counts nothing, a keyword counts and highlights', async () => {
    expect((await call(bob, 'PUT', `/pushrules/global/room/${enc(dm)}`, { actions: [] })).status).toBe(200);
    expect((await call(carol, 'PUT', '/pushrules/global/content/cake', { pattern: 'cake', actions: ['notify', { set_tweak: 'highlight' }] })).status).toBe(200);
    await receipt(bob, dm, await send(bob, dm, text('mark read')));
    await eventually(() => counts(bob, [dm]), { [dm]: c(0, 0) });
    await send(alice, dm, text('are you there?'));
    await send(alice, group, text('there is CAKE in the kitchen'));
    await eventually(() => counts(carol, [group]), { [group]: c(1, 1) });
    await evaluatorIdle();
    expect(await counts(bob, [dm])).toEqual({ [dm]: c(0, 0) });
  });

  it("/sync gives the sender's lowered count with their own message (it waits for the evaluator for their events too)", async () => {
    const [gina, hank] = await Promise.all([register('n_gina'), register('n_hank')]);
    const r = await room(gina, [hank]);
    await send(gina, r, text('one'));
    await send(gina, r, text('two'));
    await eventually(() => counts(hank, [r]), { [r]: c(2, 0) });
    const first = await call(hank, 'GET', '/sync?timeout=0');
    expect(first.body.rooms.join[r].unread_notifications).toEqual(c(2, 0));
    // A sync loop waiting already when the message commits: woken by it at once, ahead of the
    // evaluator. The answer that carries the message carries the count it lowered.
    const carrying = (async () => {
      let since = first.body.next_batch;
      for (let i = 0; i < 20; i++) {
        const res = await call(hank, 'GET', `/sync?since=${enc(since)}&timeout=10000`);
        const room = res.body.rooms?.join?.[r];
        if (room?.timeline?.events?.some((e: Json) => e.content?.body === 'hank answers')) return room;
        since = res.body.next_batch;
      }
      return null;
    })();
    await new Promise((done) => setTimeout(done, 300));
    await send(hank, r, text('hank answers'));
    expect((await carrying)?.unread_notifications).toEqual(c(0, 0));
  });

  it('redelivering every outbox entry does not count anything twice', async () => {
    await evaluatorIdle();
    const before = [await counts(alice, [group, dm], true), await counts(bob, [group, dm], true), await counts(carol, [group, dm], true)];
    const lists = await Promise.all([alice, bob, carol].map((s) => call(s, 'GET', '/notifications?limit=100')));
    for (let shard = 0; shard < server.config.shards.rooms; shard++) {
      const outbox = keys.shard('room', shard).outbox;
      if ((await server.redis.exists(outbox)) === 1) await server.redis.xgroup('SETID', outbox, PUSH_EVALUATOR_GROUP, '0');
    }
    await evaluatorIdle(); // the workers' backstop poll wakes the readers, which read everything again
    expect([await counts(alice, [group, dm], true), await counts(bob, [group, dm], true), await counts(carol, [group, dm], true)]).toEqual(before);
    const again = await Promise.all([alice, bob, carol].map((s) => call(s, 'GET', '/notifications?limit=100')));
    expect(again.map((r) => r.body.notifications.map((n: Json) => n.event.event_id))).toEqual(lists.map((r) => r.body.notifications.map((n: Json) => n.event.event_id)));
  });
});

describe('GET /notifications', () => {
  it('lists what notified the user, newest first, with actions, read flags, highlight filter and pages', async () => {
    const [dana, eve, fred] = await Promise.all([register('n_dana'), register('n_eve'), register('n_fred')]);
    const r = await room(dana, [eve, fred]);
    const e1 = await send(dana, r, text('one'));
    // Eve's own message: not in her list, and what came before it reads as read.
    await send(eve, r, text('eve’s own'));
    const e2 = await send(dana, r, text('two', { 'm.mentions': { user_ids: [eve.userId] } }));
    const e3 = await send(fred, r, text('three'));
    const list = async (q = '') => {
      const res = await call(eve, 'GET', `/notifications${q}`);
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      return res.body;
    };
    // Eve's invite notified her too (.m.rule.invite_for_me); it is the oldest.
    await eventually(async () => (await list()).notifications.length, 4);
    const all = await list();
    expect(all.next_token).toBeUndefined();
    const invite = all.notifications[3];
    expect(invite.event).toMatchObject({ type: 'm.room.member', state_key: eve.userId, content: { membership: 'invite' } });
    expect(invite.actions).toEqual(['notify', { set_tweak: 'sound', value: 'default' }]);
    all.notifications.pop();
    expect(all.notifications.map((n: Json) => n.event.event_id)).toEqual([e3, e2, e1]);
    const [n3, n2, n1] = all.notifications;
    expect(n1.read).toBe(true);
    expect(invite.read).toBe(true);
    expect(n2).toMatchObject({ room_id: r, read: false, actions: ['notify', { set_tweak: 'sound', value: 'default' }, { set_tweak: 'highlight' }] });
    expect(n2.event).toMatchObject({ event_id: e2, sender: dana.userId, type: 'm.room.message', content: { body: 'two' } });
    expect(n2.event.room_id).toBeUndefined();
    expect(typeof n2.ts).toBe('number');
    expect(n3.actions).toEqual(['notify']);

    const hl = await list('?only=highlight');
    expect(hl.notifications.map((n: Json) => n.event.event_id)).toEqual([e2]);

    // Pages: every notification once, in order, whatever the page size.
    const seen: string[] = [];
    let from: string | undefined;
    for (let i = 0; i < 6; i++) {
      const page = await list(`?limit=1${from ? `&from=${from}` : ''}`);
      seen.push(...page.notifications.map((n: Json) => n.event.event_id));
      from = page.next_token;
      if (!from) break;
    }
    expect(seen).toEqual([e3, e2, e1, invite.event.event_id]);

    // Read flags follow the receipts as they are now.
    await receipt(eve, r, e2);
    expect((await list()).notifications.map((n: Json) => n.read)).toEqual([false, true, true, true]);

    // Redacted events leave the list and the counts.
    expect((await call(dana, 'PUT', `/rooms/${enc(r)}/redact/${enc(e1)}/x1`, { reason: 'oops' })).status).toBe(200);
    await eventually(async () => (await list()).notifications.map((n: Json) => n.event.event_id), [e3, e2, invite.event.event_id]);

    expect((await call(null, 'GET', '/notifications')).status).toBe(401);
    expect((await call(eve, 'GET', '/notifications?limit=-1')).body.errcode).toBe('M_INVALID_PARAM');
    expect((await call(eve, 'GET', '/notifications?from=abc')).body.errcode).toBe('M_INVALID_PARAM');
    expect((await call(fred, 'GET', '/notifications?limit=0')).body).toEqual({ notifications: [] });
  });

  it("lists a room's notifications for the times the user was a member, with their own outcome where it differs from the room's", async () => {
    const [ian, jo, kim] = await Promise.all([register('n_ian'), register('n_jo'), register('n_kim')]);
    const r = await room(ian, [jo, kim]);
    const ids = async (s: Session, q = '') => {
      const res = await call(s, 'GET', `/notifications${q}`);
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      return res.body.notifications as Json[];
    };
    const a = await send(ian, r, text('a'));
    const b = await send(ian, r, text('b for jo', { 'm.mentions': { user_ids: [jo.userId] } }));
    await eventually(async () => (await ids(jo)).length, 3); // with jo's invite
    expect((await call(jo, 'POST', `/rooms/${enc(r)}/leave`, {})).status).toBe(200);
    const c2 = await send(ian, r, text('c, jo is away'));
    expect((await call(ian, 'POST', `/rooms/${enc(r)}/invite`, { user_id: jo.userId })).status).toBe(200);
    expect((await call(jo, 'POST', `/rooms/${enc(r)}/join`, {})).status).toBe(200);
    const d = await send(kim, r, text('d, jo is back'));
    await eventually(async () => (await ids(kim)).filter((n) => n.event.type === 'm.room.message').map((n) => n.event.event_id), [c2, b, a]);
    await eventually(async () => (await ids(jo)).length, 5);
    const joList = await ids(jo);
    // Not c (jo had left); the second invite is jo's own.
    expect(joList.map((n) => (n.event.type === 'm.room.member' ? 'invite' : n.event.event_id))).toEqual([d, 'invite', b, a, 'invite']);
    // b: jo's own outcome (a highlight); a and d: the room's (a plain notification).
    expect(joList.find((n) => n.event.event_id === b)!.actions).toEqual(['notify', { set_tweak: 'sound', value: 'default' }, { set_tweak: 'highlight' }]);
    expect(joList.find((n) => n.event.event_id === a)!.actions).toEqual(['notify']);
    expect((await ids(jo, '?only=highlight')).map((n) => n.event.event_id)).toEqual([b]);
    // kim: every message but her own; ian: every message but his own.
    expect((await ids(kim)).filter((n) => n.event.type === 'm.room.message').map((n) => n.event.event_id)).toEqual([c2, b, a]);
    expect((await ids(kim)).find((n) => n.event.event_id === b)!.actions).toEqual(['notify']);
    await eventually(async () => (await ids(ian)).map((n) => n.event.event_id), [d]);
    // Pages of one through the merged lists: each once, in order.
    const seen: string[] = [];
    let from: string | undefined;
    for (let i = 0; i < 8; i++) {
      const page = await call(jo, 'GET', `/notifications?limit=1${from ? `&from=${from}` : ''}`);
      seen.push(...page.body.notifications.map((n: Json) => n.event.event_id));
      from = page.body.next_token;
      if (!from) break;
    }
    expect(seen).toEqual(joList.map((n) => n.event.event_id));
  });

  it('serves the latest NOTIFICATIONS_KEPT only, when the list holds more between two trims', async () => {
    const [gus, hal] = await Promise.all([register('n_gus'), register('n_hal')]);
    const r = await room(gus, [hal]);
    const real = [await send(gus, r, text('one')), await send(gus, r, text('two', { 'm.mentions': { user_ids: [hal.userId] } }))];
    const list = async (q: string) => {
      const res = await call(hal, 'GET', `/notifications${q}`);
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      return res.body;
    };
    await eventually(async () => (await list('')).notifications.length, 3); // with hal's invite
    // Older entries below them, as many as make the list hold 5 more than it serves (the
    // evaluator trims it in chunks). Their rooms do not exist, so they are never shown: the pages'
    // tokens tell where the served list ends.
    const notifs = userKey(hal.userId, pushData.notifications(hal.userId));
    const hl = userKey(hal.userId, pushData.highlights(hal.userId));
    const extra = NOTIFICATIONS_KEPT + 5 - 3;
    const fake = Array.from({ length: extra }, (_, i) => `!gone${i}:x\0$e${i}`);
    await server.redis.zadd(notifs, ...fake.flatMap((m, i) => [i + 1, m]));
    await server.redis.zadd(hl, ...fake.flatMap((m, i) => [i + 1, m]));
    // Served: the 3 real ones and the fake ones above the 5 oldest (scores 6 and up). A page of 6
    // below 12 (11 .. 6) is the last; a page of 6 below 13 (12 .. 7) is not.
    const below = (from: number, only = '') => list(`?limit=6&from=${from}${only}`);
    for (const only of ['', '&only=highlight']) {
      expect((await below(12, only)).next_token, only).toBeUndefined();
      expect((await below(13, only)).next_token, only).toBe('7');
      expect((await below(7, only)).next_token, only).toBeUndefined();
      expect((await below(12, only)).notifications, only).toEqual([]);
    }
    // The real ones are served as before.
    expect((await list('?limit=2')).notifications.map((n: Json) => n.event.event_id)).toEqual([real[1], real[0]]);
  });
});
