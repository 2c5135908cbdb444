/**
 * `GET /sync` end to end: a real front and workers on the test Redis, spoken to with raw fetch
 * (initial and incremental syncs, long-poll wake-ups, invites, leaves, gaps, account data, bad
 * tokens) and with matrix-js-sdk's sync loop (two clients: an invite, a join, a message).
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClientEvent, RoomEvent, RoomMemberEvent, type MatrixClient, type MatrixEvent } from 'matrix-js-sdk';
import { createClient } from './sdk';
import { startTestServer, type TestServer } from './server-harness';
import { callJson, clientsFor, enc, txn, type Clients, type Json, type Session } from './clients';
import { startFront } from '../../src/front';
import { signingKeyFromSeed } from '../../src/protocol/crypto';
import { freePort } from '../setup/free-port';
import pino from 'pino';

let server: TestServer;
let clients: Clients;

/** A local account and its device's token, through the user actor (no display name). */
const mint = (localpart: string): Promise<Session> => clients.mint(localpart);

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

/** Syncs stay "offline" unless a test asks otherwise, so presence does not wake the polls under test. */
async function sync(s: Session, query: Record<string, string> = {}): Promise<Json> {
  const qs = new URLSearchParams({ set_presence: 'offline', ...query }).toString();
  const r = await call(s, 'GET', `/sync${qs ? `?${qs}` : ''}`);
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body;
}

/**
 * A token after which nothing is pending for the user: device list fan-out of their new device
 * (src/readers/user-fanout.ts) lands shortly after registration and would end the next poll early.
 */
async function settled(s: Session, since: string): Promise<string> {
  for (let i = 0; i < 60; i++) {
    const b = await sync(s, { since, timeout: '0' });
    since = b.next_batch;
    if (!b.device_lists && !b.rooms.join && !b.rooms.invite) {
      await new Promise((r) => setTimeout(r, 30));
      const again = await sync(s, { since, timeout: '0' });
      if (!again.device_lists && !again.rooms.join && !again.rooms.invite) return again.next_batch;
      since = again.next_batch;
    }
  }
  return since;
}

const bodies = (events: Json[]) => events.filter((e) => e.type === 'm.room.message').map((e) => e.content.body as string);

beforeAll(async () => {
  server = await startTestServer();
  clients = await clientsFor(server, { displayname: false });
});

afterAll(async () => {
  await clients?.close();
  await server?.stop();
});

describe('GET /sync over raw HTTP', () => {
  it('initial sync shows joined rooms with state and timeline; incremental sync only new events', async () => {
    const alice = await mint('s_alice1');
    const roomId = await createRoom(alice, { name: 'Sync room', preset: 'private_chat' });
    for (let i = 0; i < 3; i++) await say(alice, roomId, `hello ${i}`);

    const first = await sync(alice);
    expect(first.next_batch).toMatch(/^s\d+$/);
    const room = first.rooms.join[roomId];
    expect(room).toBeDefined();
    expect(bodies(room.timeline.events)).toEqual(['hello 0', 'hello 1', 'hello 2']);
    const stateTypes = [...room.state.events, ...room.timeline.events].filter((e: Json) => typeof e.state_key === 'string').map((e: Json) => e.type);
    expect(stateTypes).toEqual(expect.arrayContaining(['m.room.create', 'm.room.member', 'm.room.power_levels', 'm.room.name']));
    // Nothing in state is repeated in the timeline.
    const timelineIds = new Set(room.timeline.events.map((e: Json) => e.event_id));
    expect(room.state.events.every((e: Json) => !timelineIds.has(e.event_id))).toBe(true);
    expect(room.summary['m.joined_member_count']).toBe(1);
    // Her own messages never count as unread for her.
    expect(room.unread_notifications).toEqual({ notification_count: 0, highlight_count: 0 });
    expect(room.timeline.events[0].unsigned.age).toBeGreaterThanOrEqual(0);
    // Sync's events have no room_id: the room is their key (the spec's ClientEventWithoutRoomID).
    expect(room.timeline.events[0]).not.toHaveProperty('room_id');

    // Nothing new: empty answer at once with timeout=0.
    const idle = await sync(alice, { since: first.next_batch, timeout: '0' });
    expect(idle.rooms.join?.[roomId]).toBeUndefined();

    await say(alice, roomId, 'later');
    const second = await sync(alice, { since: idle.next_batch, timeout: '0' });
    expect(bodies(second.rooms.join[roomId].timeline.events)).toEqual(['later']);
    expect(second.rooms.join[roomId].timeline.limited).toBe(false);
    // The transaction id comes back to the sending device.
    expect(second.rooms.join[roomId].timeline.events[0].unsigned.transaction_id).toMatch(/^t/);
    const third = await sync(alice, { since: second.next_batch, timeout: '0' });
    expect(third.rooms.join?.[roomId]).toBeUndefined();
  });

  it('a long-poll returns soon after another user sends a message', async () => {
    const alice = await mint('s_alice2');
    const bob = await mint('s_bob2');
    const roomId = await createRoom(alice, { preset: 'public_chat' });
    expect((await call(bob, 'POST', `/join/${enc(roomId)}`, {})).status).toBe(200);
    const first = await sync(bob);
    expect(first.rooms.join[roomId]).toBeDefined();
    const samples: number[] = [];
    let since = await settled(bob, first.next_batch as string);
    for (let i = 0; i < 5; i++) {
      const started = performance.now();
      // Alice's sends make her present; this poll is about the message, so presence is filtered out.
      const polling = sync(bob, { since, timeout: '10000', filter: JSON.stringify({ presence: { not_types: ['*'] } }) });
      await new Promise((r) => setTimeout(r, 100));
      const sent = performance.now();
      await say(alice, roomId, `ping ${i}`);
      let res = await polling;
      // The push evaluator's count update for the previous ping may end a poll on its own first.
      while (!res.rooms.join?.[roomId]?.timeline) res = await sync(bob, { since: res.next_batch, timeout: '10000', filter: JSON.stringify({ presence: { not_types: ['*'] } }) });
      const done = performance.now();
      expect(bodies(res.rooms.join[roomId].timeline.events)).toEqual([`ping ${i}`]);
      expect(done - started).toBeLessThan(5000);
      samples.push(done - sent);
      since = res.next_batch;
    }
    samples.sort((a, b) => a - b);
    console.log(`send→sync delivery (ms, send request start to long-poll answer): min ${samples[0]!.toFixed(1)} median ${samples[2]!.toFixed(1)} max ${samples[4]!.toFixed(1)}`);
  });

  it('a sync loop during a burst of sends gets every event exactly once, in order', async () => {
    const alice = await mint('s_alice9');
    const bob = await mint('s_bob9');
    const roomId = await createRoom(alice, { preset: 'public_chat' });
    expect((await call(bob, 'POST', `/join/${enc(roomId)}`, {})).status).toBe(200);
    let since = (await sync(bob)).next_batch as string;
    const seen: string[] = [];
    let sending = true;
    const sender = (async () => {
      for (let i = 0; i < 60; i++) await say(alice, roomId, `burst ${i}`);
      sending = false;
    })();
    while (sending || seen.length < 60) {
      // Only an empty answer to a request made after the last send proves nothing more is coming
      // (one made before may time out just before the last event lands).
      const sentAll = !sending;
      const res = await sync(bob, { since, timeout: '1000', filter: JSON.stringify({ room: { timeline: { limit: 100 } } }) });
      const tl = res.rooms.join?.[roomId]?.timeline;
      if (tl) {
        expect(tl.limited).toBe(false);
        seen.push(...bodies(tl.events));
      }
      since = res.next_batch;
      if (sentAll && !tl) break;
    }
    await sender;
    expect(seen).toEqual(Array.from({ length: 60 }, (_, i) => `burst ${i}`));
  });

  it('an empty long-poll waits for its timeout', async () => {
    const alice = await mint('s_alice3');
    const first = await sync(alice);
    const since = await settled(alice, first.next_batch);
    const started = performance.now();
    const res = await sync(alice, { since, timeout: '300' });
    expect(performance.now() - started).toBeGreaterThanOrEqual(250);
    expect(res.next_batch).toMatch(/^s\d+$/);
    expect(res.rooms.join).toBeUndefined();
  });

  it('invites appear in rooms.invite with stripped state; leaves in rooms.leave', async () => {
    const alice = await mint('s_alice4');
    const bob = await mint('s_bob4');
    const bobFirst = await sync(bob);
    const bobSince = await settled(bob, bobFirst.next_batch);
    const roomId = await createRoom(alice, { name: 'Invite room', preset: 'private_chat' });
    // The invite wakes a waiting sync of bob's.
    const polling = sync(bob, { since: bobSince, timeout: '10000' });
    await new Promise((r) => setTimeout(r, 50));
    expect((await call(alice, 'POST', `/rooms/${enc(roomId)}/invite`, { user_id: bob.userId })).status).toBe(200);
    const invited = await polling;
    const inv = invited.rooms.invite[roomId];
    expect(inv).toBeDefined();
    const stripped = inv.invite_state.events as Json[];
    expect(stripped.map((e) => e.type)).toEqual(expect.arrayContaining(['m.room.create', 'm.room.join_rules', 'm.room.name', 'm.room.member']));
    const member = stripped.find((e) => e.type === 'm.room.member' && e.state_key === bob.userId)!;
    expect(member).toEqual({ type: 'm.room.member', state_key: bob.userId, sender: alice.userId, content: expect.objectContaining({ membership: 'invite' }) });
    // The inviter's member event too, so the client can say who invited (as Synapse).
    expect(stripped.find((e) => e.type === 'm.room.member' && e.state_key === alice.userId)?.content).toEqual(expect.objectContaining({ membership: 'join' }));
    expect(stripped.every((e) => Object.keys(e).sort().join() === 'content,sender,state_key,type')).toBe(true);

    // Joining moves the room to rooms.join, with its full state.
    expect((await call(bob, 'POST', `/join/${enc(roomId)}`, {})).status).toBe(200);
    const joined = await sync(bob, { since: invited.next_batch, timeout: '5000' });
    expect(joined.rooms.join[roomId]).toBeDefined();
    expect(joined.rooms.invite?.[roomId]).toBeUndefined();
    const joinedState = [...joined.rooms.join[roomId].state.events, ...joined.rooms.join[roomId].timeline.events];
    expect(joinedState.some((e: Json) => e.type === 'm.room.create')).toBe(true);

    await say(alice, roomId, 'before the kick');
    expect((await call(alice, 'POST', `/rooms/${enc(roomId)}/kick`, { user_id: bob.userId, reason: 'bye' })).status).toBe(200);
    await say(alice, roomId, 'after the kick');
    let since = joined.next_batch as string;
    let left: Json | undefined;
    for (let i = 0; i < 10 && !left; i++) {
      const res = await sync(bob, { since, timeout: '2000' });
      left = res.rooms.leave?.[roomId];
      since = res.next_batch;
    }
    expect(left).toBeDefined();
    const events = left!.timeline.events as Json[];
    const last = events[events.length - 1]!;
    expect(last).toMatchObject({ type: 'm.room.member', state_key: bob.userId, content: { membership: 'leave', reason: 'bye' } });
    expect(bodies(events)).toContain('before the kick');
    expect(bodies(events)).not.toContain('after the kick');
    // Gone from join afterwards.
    const after = await sync(bob, { since, timeout: '0' });
    expect(after.rooms.join?.[roomId]).toBeUndefined();
  });

  it('limited timelines continue with /messages from prev_batch; filters apply', async () => {
    const alice = await mint('s_alice5');
    const roomId = await createRoom(alice, { preset: 'private_chat' });
    const first = await sync(alice, { filter: JSON.stringify({ room: { timeline: { limit: 3 } } }) });
    for (let i = 0; i < 12; i++) await say(alice, roomId, `m${i}`);
    // A stored filter, by id.
    const f = await call(alice, 'POST', `/user/${enc(alice.userId)}/filter`, { room: { timeline: { limit: 5, types: ['m.room.message'] } } });
    expect(f.status).toBe(200);
    const res = await sync(alice, { since: first.next_batch, filter: f.body.filter_id, timeout: '0' });
    const tl = res.rooms.join[roomId].timeline;
    expect(bodies(tl.events)).toEqual(['m7', 'm8', 'm9', 'm10', 'm11']);
    expect(tl.limited).toBe(true);
    const older = await call(alice, 'GET', `/rooms/${enc(roomId)}/messages?dir=b&limit=100&from=${enc(tl.prev_batch)}`);
    expect(older.status).toBe(200);
    expect(bodies(older.body.chunk).slice(0, 7)).toEqual(['m6', 'm5', 'm4', 'm3', 'm2', 'm1', 'm0']);

    // Initial sync with a limit: limited, and /messages continues before the timeline.
    const initial = await sync(alice, { filter: JSON.stringify({ room: { timeline: { limit: 2 } } }) });
    const itl = initial.rooms.join[roomId].timeline;
    expect(bodies(itl.events)).toEqual(['m10', 'm11']);
    expect(itl.limited).toBe(true);
    const before = await call(alice, 'GET', `/rooms/${enc(roomId)}/messages?dir=b&limit=1&from=${enc(itl.prev_batch)}`);
    expect(bodies(before.body.chunk)).toEqual(['m9']);

    // not_rooms leaves the room out.
    const none = await sync(alice, { filter: JSON.stringify({ room: { not_rooms: [roomId] } }) });
    expect(none.rooms.join?.[roomId]).toBeUndefined();
    // Unknown filter ids and bad JSON filters are 400.
    expect((await call(alice, 'GET', '/sync?filter=nope')).status).toBe(400);
    expect((await call(alice, 'GET', `/sync?filter=${enc('{"room":')}`)).status).toBe(400);
  });

  it('lazy-loads members: a first sync carries only the timeline senders’ member events', async () => {
    const owner = await mint(`lazyowner${randomBytes(3).toString('hex')}`);
    const roomId = await createRoom(owner, { preset: 'public_chat' });
    const members = await Promise.all(Array.from({ length: 12 }, (_, i) => mint(`lazy${i}x${randomBytes(3).toString('hex')}`)));
    for (const m of members) expect((await call(m, 'POST', `/rooms/${enc(roomId)}/join`, {})).status).toBe(200);
    const speaker = members[3]!;
    await say(speaker, roomId, 'the only speaker');
    const lazy = JSON.stringify({ room: { timeline: { limit: 1 }, state: { lazy_load_members: true } } });
    const lazySync = await sync(owner, { filter: lazy });
    const lazyRoom = lazySync.rooms.join[roomId];
    const memberKeys = (lazyRoom.state.events as Json[]).filter((e) => e.type === 'm.room.member').map((e) => e.state_key).sort();
    // The timeline's senders, the user, and the summary's heroes (as Synapse sends them).
    expect(memberKeys).toEqual([...new Set([owner.userId, speaker.userId, ...(lazyRoom.summary['m.heroes'] as string[])])].sort());
    expect(memberKeys.length).toBeLessThan(13);
    // Without lazy-loading every member comes.
    const full = await sync(owner, { filter: JSON.stringify({ room: { timeline: { limit: 1 } } }) });
    expect((full.rooms.join[roomId].state.events as Json[]).filter((e) => e.type === 'm.room.member')).toHaveLength(13);
    // Incrementally, a new speaker's member event comes with their first message.
    const quiet = members[7]!;
    await say(quiet, roomId, 'now I speak');
    const next = await sync(owner, { since: lazySync.next_batch, filter: lazy });
    const state = (next.rooms.join[roomId].state.events as Json[]).filter((e) => e.type === 'm.room.member').map((e) => e.state_key);
    expect(state).toContain(quiet.userId);
  });

  it('a token from one front is valid on another (and on a front started later)', async () => {
    const alice = await mint(`fronts${randomBytes(3).toString('hex')}`);
    const roomId = await createRoom(alice, {});
    await say(alice, roomId, 'before');
    const first = await sync(alice);
    await say(alice, roomId, 'after');
    // A second front process's worth of front, started now, on its own port.
    const port = await freePort();
    const other = await startFront({ ...server.config, clientPort: port }, server.redis, [signingKeyFromSeed('ed25519:other', randomBytes(32))], pino({ level: 'silent' }), 'late-front');
    try {
      const r = await fetch(`http://127.0.0.1:${port}/_matrix/client/v3/sync?since=${enc(first.next_batch)}`, { headers: { Authorization: `Bearer ${alice.token}` } });
      expect(r.status).toBe(200);
      const next = (await r.json()) as Json;
      expect(bodies(next.rooms.join[roomId].timeline.events)).toEqual(['after']);
    } finally {
      await other.close();
    }
  });

  it('rejects malformed since tokens with 400 M_INVALID_PARAM', async () => {
    const alice = await mint('s_alice6');
    for (const bad of ['garbage', 'p12', 's', 's12x']) {
      const r = await call(alice, 'GET', `/sync?since=${enc(bad)}`);
      expect(r.status).toBe(400);
      expect(r.body.errcode).toBe('M_INVALID_PARAM');
    }
    expect((await call(null, 'GET', '/sync')).status).toBe(401);
  });

  it('account data changes appear (global and per room)', async () => {
    const alice = await mint('s_alice7');
    const roomId = await createRoom(alice, {});
    expect((await call(alice, 'PUT', `/user/${enc(alice.userId)}/account_data/org.example.one`, { v: 1 })).status).toBe(200);
    const first = await sync(alice);
    expect(first.account_data.events).toContainEqual({ type: 'org.example.one', content: { v: 1 } });
    const polling = sync(alice, { since: first.next_batch, timeout: '10000' });
    await new Promise((r) => setTimeout(r, 50));
    expect((await call(alice, 'PUT', `/user/${enc(alice.userId)}/account_data/org.example.two`, { v: 2 })).status).toBe(200);
    const second = await polling;
    expect(second.account_data.events).toEqual([{ type: 'org.example.two', content: { v: 2 } }]);
    expect((await call(alice, 'PUT', `/user/${enc(alice.userId)}/rooms/${enc(roomId)}/account_data/org.example.room`, { r: true })).status).toBe(200);
    const third = await sync(alice, { since: second.next_batch, timeout: '5000' });
    expect(third.rooms.join[roomId].account_data.events).toEqual([{ type: 'org.example.room', content: { r: true } }]);
    expect(third.account_data.events).toEqual([]);
  });
});

describe('matrix-js-sdk sync loop', () => {
  it('bob sees the invite, joins, and receives alice’s message through sync', async () => {
    const aliceS = await mint('s_alice8');
    const bobS = await mint('s_bob8');
    const make = (s: Session): MatrixClient => createClient({ baseUrl: server.baseUrl, accessToken: s.token, userId: s.userId, deviceId: s.deviceId });
    const alice = make(aliceS);
    const bob = make(bobS);
    const prepared = (c: MatrixClient) =>
      new Promise<void>((resolve) => {
        c.on(ClientEvent.Sync, (state) => {
          if (state === 'PREPARED') resolve();
        });
      });
    const ready = Promise.all([prepared(alice), prepared(bob)]);
    await alice.startClient({ initialSyncLimit: 10 });
    await bob.startClient({ initialSyncLimit: 10 });
    try {
      await ready;
      const invited = new Promise<string>((resolve) => {
        bob.on(RoomMemberEvent.Membership, (_e, member) => {
          if (member.userId === bobS.userId && member.membership === 'invite') resolve(member.roomId);
        });
      });
      const { room_id: roomId } = await alice.createRoom({ name: 'SDK room', invite: [bobS.userId] });
      expect(await invited).toBe(roomId);
      await bob.joinRoom(roomId);
      const received = new Promise<MatrixEvent>((resolve) => {
        bob.on(RoomEvent.Timeline, (event, room) => {
          if (room?.roomId === roomId && event.getType() === 'm.room.message' && event.getContent().body === 'hello bob') resolve(event);
        });
      });
      await new Promise((r) => setTimeout(r, 200));
      await alice.sendTextMessage(roomId, 'hello bob');
      const event = await received;
      expect(event.getSender()).toBe(aliceS.userId);
      expect(bob.getRoom(roomId)?.getMyMembership()).toBe('join');
      expect(bob.getRoom(roomId)?.name).toBe('SDK room');
    } finally {
      alice.stopClient();
      bob.stopClient();
    }
  });
});
