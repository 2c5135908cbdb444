/**
 * MSCs current clients use (issue 17), over real HTTP against one front and two workers on real
 * Redis: delayed events (MSC4140: scheduling with `/send` and `/state`, listing, cancel, restart,
 * send, the errors, the event sent once when due, others' state cancelling delayed state, and
 * matrix-js-sdk's delayed event calls as Element Call makes them), account data deletion
 * (MSC3391: DELETE, PUT `{}`, 404 afterwards, the deletion in an incremental /sync, absent from an
 * initial one), poll push rules (MSC3930: a poll start notifies — `/notifications`, unread counts)
 * and thread subscriptions (MSC4306/MSC4308, turned on here: the conflict rules, the paged list,
 * notifications for subscribed threads only). The restart across kill -9 is in
 * delayed-events-restart.e2e.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './server-harness';
import { clientsFor, enc, eventually, txn, type Clients, type Json, type Session } from './clients';
import { createClient } from './sdk';

let server: TestServer;
let c: Clients;
beforeAll(async () => {
  server = await startTestServer({ workers: 2, configure: (cfg) => {
      cfg.delayedEvents = { maxDelayMs: 60_000, maxPerUser: 3 };
      cfg.threadSubscriptions = { enabled: true };
    },
  });
  c = await clientsFor(server);
}, 60_000);
afterAll(async () => {
  await c?.close();
  await server?.stop();
});

const call = (s: Session | null, method: string, path: string, body?: unknown) => c.call(s, method, path, body);
const DE = '/_matrix/client/unstable/org.matrix.msc4140/delayed_events';

async function roomWith(owner: Session, ...others: Session[]): Promise<string> {
  const r = await call(owner, 'POST', '/createRoom', { preset: 'public_chat' });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  for (const o of others) expect((await call(o, 'POST', `/join/${enc(r.body.room_id)}`, {})).status).toBe(200);
  return r.body.room_id;
}

async function messages(s: Session, roomId: string): Promise<Json[]> {
  const r = await call(s, 'GET', `/rooms/${enc(roomId)}/messages?dir=b&limit=100`);
  expect(r.status).toBe(200);
  return r.body.chunk;
}

describe('versions and capabilities', () => {
  it('advertises the MSCs implemented', async () => {
    const v = await call(null, 'GET', '/_matrix/client/versions');
    expect(v.body.unstable_features['org.matrix.msc4140']).toBe(true);
    expect(v.body.unstable_features['org.matrix.msc3391']).toBe(true);
    expect(v.body.unstable_features['org.matrix.msc4306']).toBe(true);
    const me = await c.mint('caps');
    const caps = await call(me, 'GET', '/capabilities');
    expect(caps.body.capabilities['org.matrix.msc4140.delayed_events']).toEqual({ max_delay_ms: 60_000, max_scheduled: 3 });
  });
});

describe('delayed events (MSC4140)', () => {
  it('schedules a message, lists it, and sends it once when due', async () => {
    const alice = await c.mint('de_alice');
    const bob = await c.mint('de_bob');
    const roomId = await roomWith(alice, bob);
    const t = txn();
    const path = `/rooms/${enc(roomId)}/send/m.room.message/${t}?org.matrix.msc4140.delay=1500`;
    const r = await call(alice, 'PUT', path, { msgtype: 'm.text', body: 'later' });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(Object.keys(r.body)).toEqual(['delay_id']);
    // The same transaction again: the same delayed event.
    expect((await call(alice, 'PUT', path, { msgtype: 'm.text', body: 'later' })).body).toEqual(r.body);
    const list = await call(alice, 'GET', DE);
    expect(list.status).toBe(200);
    expect(list.body.delayed_events).toHaveLength(1);
    const d = list.body.delayed_events[0];
    expect(d).toMatchObject({ delay_id: r.body.delay_id, room_id: roomId, type: 'm.room.message', delay_ms: 1500, delay: 1500, content: { msgtype: 'm.text', body: 'later' } });
    expect(d.state_key).toBeUndefined();
    expect(typeof d.delayed_since_ts).toBe('number');
    expect((await call(alice, 'GET', `${DE}/${r.body.delay_id}`)).body).toMatchObject({ delay_id: r.body.delay_id, delay_ms: 1500 });
    // Someone else's list does not show it, nor their single look-up.
    expect((await call(bob, 'GET', DE)).body).toEqual({ delayed_events: [] });
    expect((await call(bob, 'GET', `${DE}/${r.body.delay_id}`)).status).toBe(404);
    expect((await messages(bob, roomId)).some((e) => e.content?.body === 'later')).toBe(false);
    const sent = await eventually(() => messages(bob, roomId), (m) => m.some((e) => e.content?.body === 'later'), 20_000);
    const copies = sent.filter((e) => e.content?.body === 'later');
    expect(copies).toHaveLength(1);
    expect(copies[0]!.sender).toBe(alice.userId);
    // A figure, not an assertion: how late after its send time the event was persisted.
    console.log(`msc-features.e2e: delayed message persisted ${copies[0]!.origin_server_ts - (d.delayed_since_ts + 1500)} ms after its send time`);
    expect((await call(alice, 'GET', DE)).body).toEqual({ delayed_events: [] });
    // Sent: managing it now is 404.
    expect((await call(null, 'POST', `${DE}/${r.body.delay_id}/cancel`, {})).status).toBe(404);
    await new Promise((res) => setTimeout(res, 1000));
    expect((await messages(bob, roomId)).filter((e) => e.content?.body === 'later')).toHaveLength(1);
  }, 60_000);

  it('state events: cancel, restart and send, unauthenticated, by delay id', async () => {
    const alice = await c.mint('de_carol');
    const roomId = await roomWith(alice);
    const put = (key: string, body: Json, delay: number) => call(alice, 'PUT', `/rooms/${enc(roomId)}/state/org.matrix.msc3401.call.member/${enc(key)}?org.matrix.msc4140.delay=${delay}`, body);
    const a = await put('_a', { left: 'a' }, 60_000);
    const b = await put('_b', { left: 'b' }, 60_000);
    const s = await put('_s', { left: 's' }, 60_000);
    expect([a.status, b.status, s.status]).toEqual([200, 200, 200]);
    // The per-user maximum (3 here): 429.
    const over = await put('_x', {}, 1000);
    expect([over.status, over.body.errcode]).toEqual([429, 'M_LIMIT_EXCEEDED']);
    const listed = (await call(alice, 'GET', DE)).body.delayed_events;
    expect(listed.map((e: Json) => e.state_key).sort()).toEqual(['_a', '_b', '_s']);

    expect(await call(null, 'POST', `${DE}/${a.body.delay_id}`, { action: 'cancel' })).toMatchObject({ status: 200, body: {} });
    expect((await call(null, 'POST', `${DE}/${a.body.delay_id}`, { action: 'cancel' })).status).toBe(404);
    const before = (await call(alice, 'GET', `${DE}/${b.body.delay_id}`)).body.delayed_since_ts;
    await new Promise((res) => setTimeout(res, 20));
    expect((await call(null, 'POST', `${DE}/${b.body.delay_id}/restart`, {})).status).toBe(200);
    expect((await call(alice, 'GET', `${DE}/${b.body.delay_id}`)).body.delayed_since_ts).toBeGreaterThan(before);
    expect((await call(null, 'POST', `${DE}/${s.body.delay_id}/send`, {})).status).toBe(200);
    const state = await eventually(() => call(alice, 'GET', `/rooms/${enc(roomId)}/state/org.matrix.msc3401.call.member/_s`), (x) => x.status === 200, 20_000);
    expect(state.body).toEqual({ left: 's' });
    expect((await call(alice, 'GET', `/rooms/${enc(roomId)}/state/org.matrix.msc3401.call.member/_a`)).status).toBe(404);
    expect((await call(alice, 'GET', DE)).body.delayed_events.map((e: Json) => e.delay_id)).toEqual([b.body.delay_id]);
    expect((await call(null, 'POST', `${DE}/${b.body.delay_id}/cancel`, {})).status).toBe(200);
  }, 60_000);

  it('cancels a delayed state event when someone else sets that state, not when the owner does', async () => {
    const owner = await c.mint('de_olga');
    const other = await c.mint('de_pete');
    const roomId = await roomWith(owner, other);
    // Let the other user set state.
    const pl = (await call(owner, 'GET', `/rooms/${enc(roomId)}/state/m.room.power_levels/`)).body;
    expect((await call(owner, 'PUT', `/rooms/${enc(roomId)}/state/m.room.power_levels/`, { ...pl, users: { ...pl.users, [other.userId]: 100 } })).status).toBe(200);
    const put = (s: Session, key: string, body: Json, delay?: number) => call(s, 'PUT', `/rooms/${enc(roomId)}/state/org.example.slot/${key}${delay === undefined ? '' : `?org.matrix.msc4140.delay=${delay}`}`, body);
    const mine = await put(owner, 'k1', { v: 'delayed' }, 60_000);
    const kept = await put(owner, 'k2', { v: 'delayed' }, 60_000);
    expect([mine.status, kept.status]).toEqual([200, 200]);
    // The owner's own change of k2 keeps their delayed event; someone else's change of k1 cancels it.
    expect((await put(owner, 'k2', { v: 'now' })).status).toBe(200);
    expect((await put(other, 'k1', { v: 'theirs' })).status).toBe(200);
    const left = await eventually(async () => ((await call(owner, 'GET', DE)).body.delayed_events as Json[]).map((e) => e.delay_id), (ids) => ids.length === 1, 20_000);
    expect(left).toEqual([kept.body.delay_id]);
    expect((await call(null, 'POST', `${DE}/${mine.body.delay_id}/send`, {})).status).toBe(404);
  }, 60_000);

  it('works for matrix-js-sdk as Element Call uses it (call membership with a delayed hang-up)', async () => {
    const quinn = await c.mint('de_quinn', 'ECDEV');
    const roomId = await roomWith(quinn);
    const client = createClient({ baseUrl: server.baseUrl, accessToken: quinn.token, userId: quinn.userId, deviceId: quinn.deviceId });
    expect(await client.doesServerSupportUnstableFeature('org.matrix.msc4140')).toBe(true);
    const key = `_${quinn.userId}_ECDEV`;
    // Join the call, with the hang-up scheduled in case the client vanishes.
    const hangup = await client._unstable_sendDelayedStateEvent(roomId, { delay: 60_000 }, 'org.matrix.msc3401.call.member' as any, {} as any, key);
    expect(typeof hangup.delay_id).toBe('string');
    await client.sendStateEvent(roomId, 'org.matrix.msc3401.call.member' as any, { application: 'm.call', call_id: '', device_id: 'ECDEV', focus_active: { type: 'livekit' } } as any, key);
    // The owner's own membership event does not cancel it; the heartbeat restarts it.
    await client._unstable_restartScheduledDelayedEvent(hangup.delay_id);
    const listed = (await client._unstable_getDelayedEvents()) as unknown as { delayed_events: Json[] };
    expect(listed.delayed_events.map((e) => e.delay_id)).toEqual([hangup.delay_id]);
    // Leaving: the client sends the hang-up now.
    await client._unstable_sendScheduledDelayedEvent(hangup.delay_id);
    const state = await call(quinn, 'GET', `/rooms/${enc(roomId)}/state/org.matrix.msc3401.call.member/${enc(key)}`);
    expect([state.status, state.body]).toEqual([200, {}]);
    // A message scheduled and cancelled through the SDK.
    const msg = await client._unstable_sendDelayedEvent(roomId, { delay: 60_000 }, null, 'm.room.message' as any, { msgtype: 'm.text', body: 'never' } as any);
    await client._unstable_cancelScheduledDelayedEvent(msg.delay_id);
    await expect(client._unstable_cancelScheduledDelayedEvent(msg.delay_id)).rejects.toMatchObject({ errcode: 'M_NOT_FOUND' });
    expect(((await client._unstable_getDelayedEvents()) as unknown as { delayed_events: Json[] }).delayed_events).toEqual([]);
    client.stopClient();
  }, 60_000);

  it('answers errors as Synapse does', async () => {
    const dave = await c.mint('de_dave');
    const roomId = await roomWith(dave);
    const send = (q: string) => call(dave, 'PUT', `/rooms/${enc(roomId)}/send/m.room.message/${txn()}${q}`, { body: 'x' });
    const tooLong = await send('?org.matrix.msc4140.delay=60001');
    expect([tooLong.status, tooLong.body.errcode, tooLong.body.max_delay]).toEqual([400, 'ORG.MATRIX.MSC4140_DELAY_TOO_LARGE', 60_000]);
    expect((await send('?org.matrix.msc4140.delay=-5')).body.errcode).toBe('M_INVALID_PARAM');
    expect((await send('?org.matrix.msc4140.delay=soon')).body.errcode).toBe('M_INVALID_PARAM');
    expect((await call(null, 'POST', `${DE}/ax1_nothing`, { action: 'send' })).body.errcode).toBe('M_NOT_FOUND');
    expect((await call(null, 'POST', `${DE}/garbage`, { action: 'restart' })).status).toBe(404);
    expect((await call(null, 'POST', `${DE}/ax1_nothing`, {})).body.errcode).toBe('M_MISSING_PARAM');
    expect((await call(null, 'POST', `${DE}/ax1_nothing`, { action: 'explode' })).body.errcode).toBe('M_INVALID_PARAM');
    expect((await call(null, 'GET', DE)).status).toBe(401);
    // `send` answers the room's verdict: after leaving, the owner may not send into the room.
    const other = await c.mint('de_eve');
    const room2 = await roomWith(other, dave);
    const late = await call(dave, 'PUT', `/rooms/${enc(room2)}/send/m.room.message/${txn()}?org.matrix.msc4140.delay=60000`, { body: 'after leaving' });
    expect(late.status).toBe(200);
    expect((await call(dave, 'POST', `/rooms/${enc(room2)}/leave`, {})).status).toBe(200);
    const refused = await call(null, 'POST', `${DE}/${late.body.delay_id}/send`, {});
    expect([refused.status, refused.body.errcode]).toEqual([403, 'M_FORBIDDEN']);
    // It is finalised either way (as Synapse deletes it).
    expect((await call(dave, 'GET', DE)).body).toEqual({ delayed_events: [] });
    expect((await messages(other, room2)).some((e) => e.content?.body === 'after leaving')).toBe(false);
  }, 60_000);
});

describe('account data deletion (MSC3391)', () => {
  it('deletes global and room account data; /sync reports the deletion incrementally', async () => {
    const erin = await c.mint('ad_erin');
    const roomId = await roomWith(erin);
    const u = enc(erin.userId);
    const AD = `/_matrix/client/unstable/org.matrix.msc3391/user/${u}`;
    expect((await call(erin, 'PUT', `/user/${u}/account_data/org.example.a`, { v: 1 })).status).toBe(200);
    expect((await call(erin, 'PUT', `/user/${u}/account_data/org.example.b`, { v: 2 })).status).toBe(200);
    expect((await call(erin, 'PUT', `/user/${u}/rooms/${enc(roomId)}/account_data/org.example.r`, { v: 3 })).status).toBe(200);
    const first = await call(erin, 'GET', '/sync');
    expect(first.body.account_data.events.filter((e: Json) => e.type.startsWith('org.example.')).length).toBe(2);

    expect(await call(erin, 'DELETE', `${AD}/account_data/org.example.a`)).toMatchObject({ status: 200, body: {} });
    // PUT {} is the same deletion.
    expect((await call(erin, 'PUT', `/user/${u}/account_data/org.example.b`, {})).status).toBe(200);
    expect((await call(erin, 'DELETE', `${AD}/rooms/${enc(roomId)}/account_data/org.example.r`)).status).toBe(200);
    // Deleting what is not there is fine.
    expect((await call(erin, 'DELETE', `${AD}/account_data/org.example.never`)).status).toBe(200);
    for (const p of [`/user/${u}/account_data/org.example.a`, `/user/${u}/account_data/org.example.b`, `/user/${u}/rooms/${enc(roomId)}/account_data/org.example.r`]) {
      const g = await call(erin, 'GET', p);
      expect([g.status, g.body.errcode]).toEqual([404, 'M_NOT_FOUND']);
    }
    const inc = await call(erin, 'GET', `/sync?since=${enc(first.body.next_batch)}&timeout=0`);
    const global = inc.body.account_data.events.filter((e: Json) => e.type.startsWith('org.example.'));
    expect(global.sort((x: Json, y: Json) => (x.type < y.type ? -1 : 1))).toEqual([{ type: 'org.example.a', content: {} }, { type: 'org.example.b', content: {} }]);
    expect(inc.body.rooms.join[roomId].account_data.events).toEqual([{ type: 'org.example.r', content: {} }]);
    const fresh = await call(erin, 'GET', '/sync');
    expect(fresh.body.account_data.events.some((e: Json) => e.type.startsWith('org.example.'))).toBe(false);
    expect(fresh.body.rooms.join[roomId].account_data?.events ?? []).toEqual([]);
    // Someone else's, and server-managed types: refused.
    const other = await c.mint('ad_frank');
    expect((await call(other, 'DELETE', `${AD}/account_data/org.example.a`)).status).toBe(403);
    expect((await call(erin, 'DELETE', `${AD}/account_data/m.push_rules`)).status).toBe(405);
  }, 60_000);
});

describe('poll push rules (MSC3930)', () => {
  it('a poll start notifies the other member, a poll response does not', async () => {
    const gina = await c.mint('poll_gina');
    const hank = await c.mint('poll_hank');
    const roomId = await roomWith(gina, hank);
    const start = await call(gina, 'PUT', `/rooms/${enc(roomId)}/send/org.matrix.msc3381.poll.start/${txn()}`, {
      'org.matrix.msc3381.poll.start': { question: { 'org.matrix.msc1767.text': 'Lunch?' }, kind: 'org.matrix.msc3381.poll.disclosed', max_selections: 1, answers: [{ id: 'a', 'org.matrix.msc1767.text': 'Pizza' }] },
      'org.matrix.msc1767.text': 'Lunch?',
    });
    expect(start.status).toBe(200);
    await call(gina, 'PUT', `/rooms/${enc(roomId)}/send/org.matrix.msc3381.poll.response/${txn()}`, { 'm.relates_to': { rel_type: 'm.reference', event_id: start.body.event_id }, 'org.matrix.msc3381.poll.response': { answers: ['a'] } });
    const stable = await call(gina, 'PUT', `/rooms/${enc(roomId)}/send/m.poll.start/${txn()}`, { 'm.poll': { question: { 'm.text': [{ body: 'Dinner?' }] }, answers: [] } });
    const notes = await eventually(async () => (await call(hank, 'GET', '/notifications')).body.notifications as Json[], (n) => n.length >= 2, 20_000);
    const byId = new Map(notes.map((n) => [n.event.event_id, n]));
    expect(byId.get(start.body.event_id)?.actions).toEqual(['notify', { set_tweak: 'sound', value: 'default' }]);
    expect(byId.get(stable.body.event_id)?.actions).toEqual(['notify', { set_tweak: 'sound', value: 'default' }]);
    expect(notes.some((n) => n.event.type === 'org.matrix.msc3381.poll.response')).toBe(false);
    const sync = await call(hank, 'GET', '/sync');
    expect(sync.body.rooms.join[roomId].unread_notifications.notification_count).toBe(2);
    const rules = (await call(hank, 'GET', '/pushrules/')).body.global;
    expect(rules.underride.map((r: Json) => r.rule_id)).toContain('.m.rule.poll_start_one_to_one');
    expect(rules.postcontent.map((r: Json) => r.rule_id)).toEqual(['.io.element.msc4306.rule.unsubscribed_thread', '.io.element.msc4306.rule.subscribed_thread']);
  }, 60_000);
});

describe('thread subscriptions (MSC4306, MSC4308)', () => {
  const SUB = (roomId: string, root: string) => `/_matrix/client/unstable/io.element.msc4306/rooms/${enc(roomId)}/thread/${enc(root)}/subscription`;
  const LIST = '/_matrix/client/unstable/io.element.msc4308/thread_subscriptions';

  it('subscribes manually and automatically with the conflict rules, lists changes, and notifies only subscribed threads', async () => {
    const ivy = await c.mint('ts_ivy');
    const jack = await c.mint('ts_jack');
    const roomId = await roomWith(ivy, jack);
    const send = async (s: Session, content: Json) => (await call(s, 'PUT', `/rooms/${enc(roomId)}/send/m.room.message/${txn()}`, content)).body.event_id as string;
    const root1 = await send(ivy, { msgtype: 'm.text', body: 'root one' });
    const root2 = await send(ivy, { msgtype: 'm.text', body: 'root two' });
    const reply = (root: string, body: string) => send(ivy, { msgtype: 'm.text', body, 'm.relates_to': { rel_type: 'm.thread', event_id: root } });
    const early = await reply(root1, 'early reply');

    expect((await call(jack, 'GET', SUB(roomId, root1))).status).toBe(404);
    expect(await call(jack, 'PUT', SUB(roomId, root1), {})).toMatchObject({ status: 200, body: {} });
    expect((await call(jack, 'GET', SUB(roomId, root1))).body).toEqual({ automatic: false });
    // An automatic subscription does not replace a manual one.
    expect((await call(jack, 'PUT', SUB(roomId, root1), { automatic: early })).status).toBe(200);
    expect((await call(jack, 'GET', SUB(roomId, root1))).body).toEqual({ automatic: false });
    // Unsubscribe; an automatic subscription caused by an event seen before that is refused…
    expect((await call(jack, 'DELETE', SUB(roomId, root1))).status).toBe(200);
    expect((await call(jack, 'GET', SUB(roomId, root1))).status).toBe(404);
    const conflict = await call(jack, 'PUT', SUB(roomId, root1), { automatic: early });
    expect([conflict.status, conflict.body.errcode]).toEqual([409, 'IO.ELEMENT.MSC4306.M_CONFLICTING_UNSUBSCRIPTION']);
    // …one caused by a newer event is taken.
    const later = await reply(root1, 'later reply');
    expect((await call(jack, 'PUT', SUB(roomId, root1), { automatic: later })).status).toBe(200);
    expect((await call(jack, 'GET', SUB(roomId, root1))).body).toEqual({ automatic: true });
    // The cause must be in the thread; unknown roots and bad ids are refused.
    const notInThread = await call(jack, 'PUT', SUB(roomId, root2), { automatic: later });
    expect([notInThread.status, notInThread.body.errcode]).toEqual([400, 'IO.ELEMENT.MSC4306.M_NOT_IN_THREAD']);
    expect((await call(jack, 'PUT', SUB(roomId, '$nope'), {})).status).toBe(404);
    expect((await call(jack, 'PUT', SUB(roomId, 'nope'), {})).body.errcode).toBe('M_INVALID_PARAM');
    const outsider = await c.mint('ts_kim');
    expect((await call(outsider, 'PUT', SUB(roomId, root1), {})).status).toBe(404);

    // root2: subscribed then unsubscribed.
    expect((await call(jack, 'PUT', SUB(roomId, root2), {})).status).toBe(200);
    expect((await call(jack, 'DELETE', SUB(roomId, root2))).status).toBe(200);
    const all = await call(jack, 'GET', `${LIST}?dir=b`);
    expect(all.status).toBe(200);
    expect(all.body.subscribed[roomId][root1].automatic).toBe(true);
    expect(Object.keys(all.body.unsubscribed[roomId])).toEqual([root2]);
    expect(all.body.end).toBeUndefined();
    const stamps = [all.body.subscribed[roomId][root1].bump_stamp, all.body.unsubscribed[roomId][root2].bump_stamp];
    expect(stamps[1]).toBeGreaterThan(stamps[0]);
    const page1 = await call(jack, 'GET', `${LIST}?dir=b&limit=1`);
    expect(page1.body.unsubscribed[roomId][root2]).toBeDefined();
    expect(page1.body.subscribed).toBeUndefined();
    const page2 = await call(jack, 'GET', `${LIST}?dir=b&limit=1&from=${page1.body.end}`);
    expect(page2.body.subscribed[roomId][root1]).toBeDefined();
    expect((await call(jack, 'GET', `${LIST}?dir=b&to=ts${stamps[0]}`)).body.subscribed).toBeUndefined();
    expect((await call(jack, 'GET', LIST)).body.errcode).toBe('M_MISSING_PARAM');
    expect((await call(jack, 'GET', `${LIST}?dir=f`)).body.errcode).toBe('M_INVALID_PARAM');
    expect((await call(jack, 'GET', `${LIST}?dir=b&limit=0`)).body.errcode).toBe('M_INVALID_PARAM');
    expect((await call(jack, 'GET', `${LIST}?dir=b&from=zz`)).body.errcode).toBe('M_INVALID_PARAM');

    // Push: a reply in the subscribed thread notifies jack; one in the unsubscribed thread does not.
    const inSubscribed = await reply(root1, 'ping subscribed');
    const inUnsubscribed = await reply(root2, 'ping unsubscribed');
    const marker = await send(ivy, { msgtype: 'm.text', body: 'main timeline' });
    const notes = await eventually(async () => (await call(jack, 'GET', '/notifications')).body.notifications as Json[], (n) => n.some((x) => x.event.event_id === marker), 20_000);
    const ids = notes.map((n) => n.event.event_id);
    expect(ids).toContain(inSubscribed);
    expect(ids).not.toContain(inUnsubscribed);
    expect(notes.find((n) => n.event.event_id === inSubscribed)!.actions).toEqual(['notify', { set_tweak: 'sound', value: 'default' }]);
  }, 60_000);
});
