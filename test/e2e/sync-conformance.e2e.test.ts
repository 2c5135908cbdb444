/**
 * `/sync` against what clients rely on (issue 17): `limited` and `prev_batch` on gappy incremental
 * syncs, `history_visibility: joined` rooms, forgotten and left rooms, presence of members in an
 * initial sync, `unsigned.membership` (MSC4115), `state_after` (MSC4222) and a push rule change
 * waking a waiting sync — each as Synapse 1.163.2 answers it. Real front and workers on the test
 * Redis, raw HTTP.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './server-harness';
import { callJson, clientsFor, enc, txn, type Clients, type Json, type Session } from './clients';

let server: TestServer;
let clients: Clients;

/** A new local account (its localpart the prefix and a random suffix) and its device's token, through the user actor (no display name). */
const mint = (prefix: string): Promise<Session> => clients.mint(`${prefix}${randomBytes(3).toString('hex')}`);

const call = (s: Session | null, method: string, path: string, body?: unknown) => callJson(server, s, method, path, body);

async function createRoom(s: Session, body: Json = {}): Promise<string> {
  const r = await call(s, 'POST', '/createRoom', body);
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body.room_id as string;
}

async function say(s: Session, roomId: string, text: string): Promise<string> {
  const r = await call(s, 'PUT', `/rooms/${enc(roomId)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body: text });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body.event_id as string;
}

async function ok(s: Session, method: string, path: string, body?: unknown): Promise<Json> {
  const r = await call(s, method, path, body ?? (method === 'GET' ? undefined : {}));
  expect(r.status, `${method} ${path}: ${JSON.stringify(r.body)}`).toBe(200);
  return r.body;
}

async function sync(s: Session, query: Record<string, string> = {}): Promise<Json> {
  const qs = new URLSearchParams({ set_presence: 'offline', ...query }).toString();
  const r = await call(s, 'GET', `/sync?${qs}`);
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body;
}

/** Incremental syncs from `since` until `pick` finds what it waits for (the membership index trails the room a little). */
async function syncUntil(s: Session, since: string, pick: (b: Json) => unknown, query: Record<string, string> = {}): Promise<{ body: Json; found: any }> {
  for (let i = 0; i < 40; i++) {
    const body = await sync(s, { ...query, since, timeout: '1000' });
    const found = pick(body);
    if (found) return { body, found };
    since = body.next_batch;
  }
  throw new Error('sync never showed it');
}

const bodies = (events: Json[]) => events.filter((e) => e.type === 'm.room.message').map((e) => e.content.body as string);

beforeAll(async () => {
  server = await startTestServer();
  clients = await clientsFor(server, { displayname: false });
}, 120_000);

afterAll(async () => {
  await clients?.close();
  await server?.stop();
});

describe('/sync conformance (issue 17)', () => {
  it('an incremental sync that skipped events is limited, and prev_batch fetches the gap with /messages', async () => {
    const alice = await mint('lim_a');
    const bob = await mint('lim_b');
    const roomId = await createRoom(alice, { preset: 'public_chat' });
    await ok(bob, 'POST', `/join/${enc(roomId)}`);
    const limit3 = JSON.stringify({ room: { timeline: { limit: 3 } } });
    const first = await syncUntil(bob, (await sync(bob, { filter: limit3 })).next_batch, () => true, { filter: limit3 });
    for (let i = 0; i < 8; i++) await say(alice, roomId, `m${i}`);
    const res = await syncUntil(bob, first.body.next_batch, (b) => b.rooms.join?.[roomId]?.timeline.events.some((e: Json) => e.content.body === 'm7') && b.rooms.join[roomId], { filter: limit3 });
    const tl = res.found.timeline;
    expect(bodies(tl.events)).toEqual(['m5', 'm6', 'm7']);
    expect(tl.limited).toBe(true);
    const gap = await ok(bob, 'GET', `/rooms/${enc(roomId)}/messages?dir=b&limit=5&from=${enc(tl.prev_batch)}`);
    expect(bodies(gap.chunk)).toEqual(['m4', 'm3', 'm2', 'm1', 'm0']);

    // A room joined since the last sync, with more events than the limit: limited too.
    const carol = await mint('lim_c');
    const carolSince = (await sync(carol, { filter: limit3 })).next_batch;
    await ok(carol, 'POST', `/join/${enc(roomId)}`);
    const joined = await syncUntil(carol, carolSince, (b) => b.rooms.join?.[roomId], { filter: limit3 });
    expect(joined.found.timeline.limited).toBe(true);
    expect(joined.found.timeline.events.at(-1)).toMatchObject({ type: 'm.room.member', state_key: carol.userId });

    // Even when the whole history fits: a newly joined room's earlier events were not synced
    // incrementally, so it is limited (Synapse marks every newly joined room so).
    const small = await createRoom(alice, { preset: 'public_chat' });
    const daveSince = (await sync(carol)).next_batch;
    await ok(carol, 'POST', `/join/${enc(small)}`);
    const smallJoined = await syncUntil(carol, daveSince, (b) => b.rooms.join?.[small]);
    expect(smallJoined.found.timeline.events.some((e: Json) => e.type === 'm.room.create')).toBe(true);
    expect(smallJoined.found.timeline.limited).toBe(true);
  });

  it('a display name change is followed incrementally, not resent in full', async () => {
    const alice = await mint('dn_a');
    const bob = await mint('dn_b');
    const roomId = await createRoom(alice, { preset: 'public_chat' });
    await ok(bob, 'POST', `/join/${enc(roomId)}`);
    for (let i = 0; i < 3; i++) await say(alice, roomId, `old ${i}`);
    let since = '';
    for (let i = 0; i < 40 && !since; i++) {
      const b = await sync(bob);
      if (b.rooms.join?.[roomId]) since = b.next_batch;
      else await new Promise((r) => setTimeout(r, 200));
    }
    since = (await sync(bob, { since, timeout: '0' })).next_batch;
    await ok(bob, 'PUT', `/rooms/${enc(roomId)}/state/m.room.member/${enc(bob.userId)}`, { membership: 'join', displayname: 'Bobby' });
    await say(alice, roomId, 'new');
    const res = await syncUntil(bob, since, (b) => b.rooms.join?.[roomId]?.timeline.events.some((e: Json) => e.content?.body === 'new') && b.rooms.join[roomId]);
    const events = res.found.timeline.events as Json[];
    expect(bodies(events)).toEqual(['new']);
    expect(events.some((e) => e.type === 'm.room.member' && e.content.displayname === 'Bobby')).toBe(true);
    expect(res.found.timeline.limited).toBe(false);
  });

  it('a room with history_visibility joined shows the join and the events after it', async () => {
    const alice = await mint('hv_a');
    const bob = await mint('hv_b');
    const roomId = await createRoom(alice, { preset: 'public_chat', initial_state: [{ type: 'm.room.history_visibility', state_key: '', content: { history_visibility: 'joined' } }] });
    await say(alice, roomId, 'before bob');
    const bobSince = (await sync(bob)).next_batch;
    await ok(bob, 'POST', `/join/${enc(roomId)}`);
    await say(alice, roomId, 'after bob 1');
    await say(alice, roomId, 'after bob 2');
    const inc = await syncUntil(bob, bobSince, (b) => b.rooms.join?.[roomId]);
    const events = inc.found.timeline.events as Json[];
    expect(events.some((e) => e.type === 'm.room.member' && e.state_key === bob.userId && e.content.membership === 'join')).toBe(true);
    expect(bodies(events)).toEqual(['after bob 1', 'after bob 2']);
    const initial = await sync(bob);
    const itl = initial.rooms.join[roomId].timeline.events as Json[];
    expect(itl.some((e) => e.type === 'm.room.member' && e.state_key === bob.userId)).toBe(true);
    expect(bodies(itl)).toEqual(['after bob 1', 'after bob 2']);
    // The next message arrives incrementally.
    await say(alice, roomId, 'after bob 3');
    const next = await syncUntil(bob, inc.body.next_batch, (b) => b.rooms.join?.[roomId]);
    expect(bodies(next.found.timeline.events)).toContain('after bob 3');
  });

  it('forgotten rooms never appear under rooms.leave; left rooms end at the leave', async () => {
    const alice = await mint('fg_a');
    const bob = await mint('fg_b');
    const roomId = await createRoom(alice, { preset: 'public_chat' });
    await ok(bob, 'POST', `/join/${enc(roomId)}`);
    const bobSince = (await sync(bob)).next_batch;
    const since = (await sync(bob, { since: bobSince, timeout: '0' })).next_batch;
    for (let i = 0; i < 4; i++) await say(alice, roomId, `before leave ${i}`);
    await ok(bob, 'POST', `/rooms/${enc(roomId)}/leave`);
    await say(alice, roomId, 'after leave');
    const includeLeave = JSON.stringify({ room: { include_leave: true } });
    const left = await syncUntil(bob, since, (b) => b.rooms.leave?.[roomId]);
    const events = left.found.timeline.events as Json[];
    expect(bodies(events)).toEqual(['before leave 0', 'before leave 1', 'before leave 2', 'before leave 3']);
    expect(events.at(-1)).toMatchObject({ type: 'm.room.member', state_key: bob.userId, content: { membership: 'leave' } });
    // Only what came since the last sync: what the client had is not sent again (unlimited, it
    // would be duplicated).
    expect(events).toHaveLength(5);
    expect(left.found.timeline.limited).toBe(false);
    // An initial sync with include_leave has it (before forgetting), ending at the leave.
    const archived = (await sync(bob, { filter: includeLeave })).rooms.leave?.[roomId];
    expect(archived).toBeDefined();
    expect(bodies(archived.timeline.events)).not.toContain('after leave');

    await ok(bob, 'POST', `/rooms/${enc(roomId)}/forget`);
    expect((await sync(bob, { filter: includeLeave })).rooms.leave?.[roomId]).toBeUndefined();
    expect((await sync(bob, { filter: includeLeave, since, timeout: '0' })).rooms.leave?.[roomId]).toBeUndefined();
    expect((await sync(bob, { since, timeout: '0' })).rooms.leave?.[roomId]).toBeUndefined();
  });

  it('an initial sync carries the presence of users sharing a room, new members included', async () => {
    const alice = await mint('pr_a');
    const bob = await mint('pr_b');
    const roomId = await createRoom(alice, { preset: 'public_chat' });
    await ok(bob, 'PUT', `/presence/${enc(bob.userId)}/status`, { presence: 'online', status_msg: 'here' });
    await ok(bob, 'POST', `/join/${enc(roomId)}`);
    const deadline = Date.now() + 15_000;
    let found: Json | undefined;
    while (!found && Date.now() < deadline) {
      found = ((await sync(alice)).presence?.events as Json[] | undefined)?.find((e) => e.sender === bob.userId);
      if (!found) await new Promise((r) => setTimeout(r, 200));
    }
    expect(found).toMatchObject({ type: 'm.presence', sender: bob.userId, content: { presence: 'online', status_msg: 'here' } });
    // Incrementally: someone who joins one of alice's rooms comes with their presence.
    const carol = await mint('pr_c');
    await ok(carol, 'PUT', `/presence/${enc(carol.userId)}/status`, { presence: 'online', status_msg: 'new here' });
    const since = (await sync(alice)).next_batch;
    await ok(carol, 'POST', `/join/${enc(roomId)}`);
    const seen = await syncUntil(alice, since, (b) => (b.presence?.events as Json[] | undefined)?.find((e) => e.sender === carol.userId));
    expect(seen.found).toMatchObject({ type: 'm.presence', content: { presence: 'online', status_msg: 'new here' } });
  });

  it('unsigned.membership is the requesting user’s membership after each event (MSC4115)', async () => {
    const alice = await mint('ms_a');
    const bob = await mint('ms_b');
    const roomId = await createRoom(alice, { preset: 'public_chat' });
    await say(alice, roomId, 'before bob');
    await ok(alice, 'POST', `/rooms/${enc(roomId)}/invite`, { user_id: bob.userId });
    await ok(bob, 'POST', `/join/${enc(roomId)}`);
    await say(alice, roomId, 'with bob');
    const page = await ok(bob, 'GET', `/rooms/${enc(roomId)}/messages?dir=b&limit=50`);
    const m = (pred: (e: Json) => boolean) => (page.chunk as Json[]).find(pred)?.unsigned?.membership;
    expect(m((e) => e.content?.body === 'with bob')).toBe('join');
    expect(m((e) => e.type === 'm.room.member' && e.state_key === bob.userId && e.content.membership === 'join')).toBe('join');
    expect(m((e) => e.type === 'm.room.member' && e.state_key === bob.userId && e.content.membership === 'invite')).toBe('invite');
    expect(m((e) => e.content?.body === 'before bob')).toBe('leave');
    const s = await sync(bob);
    for (const e of s.rooms.join[roomId].timeline.events as Json[]) expect(e.unsigned.membership, JSON.stringify(e)).toBeDefined();
    expect((s.rooms.join[roomId].timeline.events as Json[]).find((e) => e.content?.body === 'with bob')?.unsigned.membership).toBe('join');
    await ok(bob, 'POST', `/rooms/${enc(roomId)}/leave`);
    const left = await syncUntil(bob, s.next_batch, (b) => b.rooms.leave?.[roomId]);
    expect((left.found.timeline.events as Json[]).at(-1)!.unsigned.membership).toBe('leave');
  });

  it('use_state_after returns org.matrix.msc4222.state_after: state at the end of the timeline, then the delta', async () => {
    const alice = await mint('sa_a');
    const roomId = await createRoom(alice, { preset: 'public_chat', name: 'first name' });
    let name = 'first name';
    for (const param of ['org.matrix.msc4222.use_state_after', 'use_state_after']) {
      const limit2 = JSON.stringify({ room: { timeline: { limit: 2 } } });
      const initial = await sync(alice, { [param]: 'true', filter: limit2 });
      const room = initial.rooms.join[roomId];
      expect(room.state).toBeUndefined();
      const after = room['org.matrix.msc4222.state_after'].events as Json[];
      // Everything, timeline state included (the client does not apply the timeline's state on top).
      expect(after.map((e) => e.type)).toEqual(expect.arrayContaining(['m.room.create', 'm.room.member', 'm.room.power_levels', 'm.room.name', 'm.room.join_rules']));
      expect(after.find((e) => e.type === 'm.room.name')!.content.name).toBe(name);
      name = `renamed ${param}`;

      await ok(alice, 'PUT', `/rooms/${enc(roomId)}/state/m.room.name/`, { name });
      for (let i = 0; i < 3; i++) await say(alice, roomId, `after rename ${i}`);
      const inc = await syncUntil(alice, initial.next_batch, (b) => b.rooms.join?.[roomId], { [param]: 'true', filter: limit2 });
      const r = inc.found;
      expect(r.timeline.limited).toBe(true);
      expect(r.state).toBeUndefined();
      const delta = r['org.matrix.msc4222.state_after'].events as Json[];
      expect(delta.map((e) => e.type)).toEqual(['m.room.name']);
      expect(delta[0]!.content.name).toBe(name);
      // A state event in the timeline is in state_after too.
      await ok(alice, 'PUT', `/rooms/${enc(roomId)}/state/m.room.topic/`, { topic: `topic ${param}` });
      const inc2 = await syncUntil(alice, inc.body.next_batch, (b) => b.rooms.join?.[roomId], { [param]: 'true' });
      expect(inc2.found.timeline.events.map((e: Json) => e.type)).toEqual(['m.room.topic']);
      expect(inc2.found['org.matrix.msc4222.state_after'].events.map((e: Json) => e.type)).toEqual(['m.room.topic']);
    }
    // Without the parameter (or with false): `state` as before.
    const plain = await sync(alice, { 'org.matrix.msc4222.use_state_after': 'false' });
    expect(plain.rooms.join[roomId].state).toBeDefined();
    expect(plain.rooms.join[roomId]['org.matrix.msc4222.state_after']).toBeUndefined();
  });

  it('lazy-loading members also sends the heroes’ member events, as Synapse does', async () => {
    const owner = await mint('ll_o');
    const roomId = await createRoom(owner, { preset: 'public_chat' });
    const members = await Promise.all(Array.from({ length: 7 }, () => mint('ll_m')));
    for (const m of members) await ok(m, 'POST', `/join/${enc(roomId)}`);
    await say(owner, roomId, 'only the owner speaks');
    const lazy = JSON.stringify({ room: { timeline: { limit: 1 }, state: { lazy_load_members: true } } });
    const viewer = members[0]!;
    let room: Json | undefined;
    for (let i = 0; i < 40 && !room; i++) {
      room = (await sync(viewer, { filter: lazy })).rooms.join?.[roomId];
      if (!room) await new Promise((r) => setTimeout(r, 200));
    }
    const heroes = room!.summary['m.heroes'] as string[];
    expect(heroes).toHaveLength(5);
    const memberKeys = new Set((room!.state.events as Json[]).filter((e) => e.type === 'm.room.member').map((e) => e.state_key as string));
    for (const u of [viewer.userId, owner.userId, ...heroes]) expect(memberKeys.has(u), u).toBe(true);
    // Not every member: the other two are left out.
    expect(memberKeys.size).toBeLessThan(8);
  });

  it('a push rule change wakes a waiting /sync with m.push_rules', async () => {
    const alice = await mint('pu_a');
    let since = (await sync(alice)).next_batch;
    // Let registration's own changes (device lists) pass.
    for (let i = 0; i < 5; i++) since = (await sync(alice, { since, timeout: '200' })).next_batch;
    const started = Date.now();
    const polling = sync(alice, { since, timeout: '20000' });
    await new Promise((r) => setTimeout(r, 300));
    await ok(alice, 'PUT', '/pushrules/global/content/wake_test', { pattern: 'wakeword', actions: ['notify'] });
    const woke = await polling;
    expect(Date.now() - started).toBeLessThan(15_000);
    const rules = (woke.account_data.events as Json[]).find((e) => e.type === 'm.push_rules');
    expect(rules).toBeDefined();
    expect((rules!.content.global.content as Json[]).some((r) => r.rule_id === 'wake_test')).toBe(true);
  });
});
