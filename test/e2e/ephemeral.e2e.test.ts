/**
 * Typing notices, receipts and read markers end to end: a real front and workers on the test
 * Redis, raw HTTP for the rules and errors, and two matrix-js-sdk clients seeing each other type
 * and read through their sync loops.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClientEvent, RoomEvent, RoomMemberEvent, type MatrixClient } from 'matrix-js-sdk';
import { createClient } from './sdk';
import { startTestServer, type TestServer } from './server-harness';
import { callJson, clientsFor, enc, txn, type Clients, type Json, type Session } from './clients';
import { shardOf } from '../../src/store/shards';

let server: TestServer;
let clients: Clients;

/** A local account and its device's token, through the user actor (no display name). */
const mint = (localpart: string): Promise<Session> => clients.mint(localpart);

const call = (s: Session | null, method: string, path: string, body?: unknown) => callJson(server, s, method, path, body);

async function ok(s: Session, method: string, path: string, body?: unknown): Promise<Json> {
  const r = await call(s, method, path, body);
  expect(r.status, `${method} ${path}: ${JSON.stringify(r.body)}`).toBe(200);
  return r.body;
}

async function say(s: Session, roomId: string, text: string): Promise<string> {
  return (await ok(s, 'PUT', `/rooms/${enc(roomId)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body: text })).event_id as string;
}

/** Syncs stay "offline" unless a test asks otherwise, so presence does not wake the polls under test. */
async function sync(s: Session, query: Record<string, string> = {}): Promise<Json> {
  const qs = new URLSearchParams({ set_presence: 'offline', ...query }).toString();
  return ok(s, 'GET', `/sync${qs ? `?${qs}` : ''}`);
}

/** Alice and bob in a fresh room, both synced up to now. */
async function pair(tag: string): Promise<{ alice: Session; bob: Session; roomId: string; aliceSince: string; bobSince: string }> {
  const alice = await mint(`e_alice_${tag}`);
  const bob = await mint(`e_bob_${tag}`);
  const roomId = (await ok(alice, 'POST', '/createRoom', { preset: 'private_chat', invite: [bob.userId] })).room_id as string;
  await ok(bob, 'POST', `/join/${enc(roomId)}`, {});
  // Let the membership index catch up before taking the baseline tokens.
  let bobSince = '';
  for (let i = 0; i < 50; i++) {
    const b = await sync(bob);
    if (b.rooms?.join?.[roomId]) {
      bobSince = b.next_batch;
      break;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const aliceSince = (await sync(alice)).next_batch as string;
  return { alice, bob, roomId, aliceSince, bobSince };
}

function ephemeralOf(body: Json, roomId: string, type: string): Json[] {
  return ((body.rooms?.join?.[roomId]?.ephemeral?.events ?? []) as Json[]).filter((e) => e.type === type);
}

/** Long-poll from `since` until `pick` finds something (or give up after `ms`). */
async function syncUntil(s: Session, since: string, pick: (b: Json) => boolean, ms = 8000): Promise<{ body: Json; since: string }> {
  const deadline = Date.now() + ms;
  for (;;) {
    const b = await sync(s, { since, timeout: '2000' });
    since = b.next_batch;
    if (pick(b) || Date.now() > deadline) return { body: b, since };
  }
}

beforeAll(async () => {
  server = await startTestServer();
  clients = await clientsFor(server, { displayname: false });
});

afterAll(async () => {
  await clients?.close();
  await server?.stop();
});

describe('typing', () => {
  it('reaches the other member’s long-poll, then stops on its own when the timeout passes', async () => {
    const { alice, bob, roomId, bobSince } = await pair('t1');
    const started = Date.now();
    await ok(alice, 'PUT', `/rooms/${enc(roomId)}/typing/${enc(alice.userId)}`, { typing: true, timeout: 1500 });
    const on = await syncUntil(bob, bobSince, (b) => ephemeralOf(b, roomId, 'm.typing').length > 0);
    expect(ephemeralOf(on.body, roomId, 'm.typing')).toEqual([{ type: 'm.typing', content: { user_ids: [alice.userId] } }]);
    // Nobody sends anything: the expiry timer alone produces the empty list.
    const off = await syncUntil(bob, on.since, (b) => ephemeralOf(b, roomId, 'm.typing').length > 0);
    expect(ephemeralOf(off.body, roomId, 'm.typing')).toEqual([{ type: 'm.typing', content: { user_ids: [] } }]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1400);
    // A room given in full (initial sync) shows no typing once it has expired.
    expect(ephemeralOf(await sync(bob), roomId, 'm.typing')).toEqual([]);
  });

  it('typing: false clears at once; several typists are listed together, sorted', async () => {
    const { alice, bob, roomId, aliceSince } = await pair('t2');
    const carol = await mint('e_carol_t2');
    await ok(alice, 'POST', `/rooms/${enc(roomId)}/invite`, { user_id: carol.userId });
    await ok(carol, 'POST', `/join/${enc(roomId)}`, {});
    await ok(bob, 'PUT', `/rooms/${enc(roomId)}/typing/${enc(bob.userId)}`, { typing: true, timeout: 30000 });
    await ok(carol, 'PUT', `/rooms/${enc(roomId)}/typing/${enc(carol.userId)}`, { typing: true, timeout: 30000 });
    const both = await syncUntil(alice, aliceSince, (b) => ephemeralOf(b, roomId, 'm.typing').some((e) => e.content.user_ids.length === 2));
    expect(ephemeralOf(both.body, roomId, 'm.typing').at(-1)!.content.user_ids).toEqual([bob.userId, carol.userId].sort());
    // The initial sync of a member shows the current typists too.
    expect(ephemeralOf(await sync(alice), roomId, 'm.typing')[0]!.content.user_ids).toEqual([bob.userId, carol.userId].sort());
    await ok(bob, 'PUT', `/rooms/${enc(roomId)}/typing/${enc(bob.userId)}`, { typing: false });
    const one = await syncUntil(alice, both.since, (b) => ephemeralOf(b, roomId, 'm.typing').length > 0);
    expect(ephemeralOf(one.body, roomId, 'm.typing').at(-1)!.content.user_ids).toEqual([carol.userId]);
  });

  it('refuses someone else’s notice, non-members, and bad bodies', async () => {
    const { alice, bob, roomId } = await pair('t3');
    const eve = await mint('e_eve_t3');
    expect((await call(alice, 'PUT', `/rooms/${enc(roomId)}/typing/${enc(bob.userId)}`, { typing: true })).body.errcode).toBe('M_FORBIDDEN');
    expect((await call(eve, 'PUT', `/rooms/${enc(roomId)}/typing/${enc(eve.userId)}`, { typing: true })).body.errcode).toBe('M_FORBIDDEN');
    const bad = await call(alice, 'PUT', `/rooms/${enc(roomId)}/typing/${enc(alice.userId)}`, { typing: 'yes' });
    expect([bad.status, bad.body.errcode]).toEqual([400, 'M_BAD_JSON']);
    const badTimeout = await call(alice, 'PUT', `/rooms/${enc(roomId)}/typing/${enc(alice.userId)}`, { typing: true, timeout: -5 });
    expect([badTimeout.status, badTimeout.body.errcode]).toEqual([400, 'M_BAD_JSON']);
    expect((await call(null, 'PUT', `/rooms/${enc(roomId)}/typing/${enc(alice.userId)}`, { typing: true })).status).toBe(401);
  });
});

describe('receipts and read markers', () => {
  it('m.read reaches the other member; m.read.private only its owner; older receipts change nothing', async () => {
    const { alice, bob, roomId, aliceSince, bobSince } = await pair('r1');
    const first = await say(alice, roomId, 'one');
    const second = await say(alice, roomId, 'two');
    await ok(bob, 'POST', `/rooms/${enc(roomId)}/receipt/m.read/${enc(second)}`, {});
    const seen = await syncUntil(alice, aliceSince, (b) => ephemeralOf(b, roomId, 'm.receipt').length > 0);
    const [receipt] = ephemeralOf(seen.body, roomId, 'm.receipt');
    expect(Object.keys(receipt!.content)).toEqual([second]);
    expect(receipt!.content[second]['m.read'][bob.userId].ts).toBeTypeOf('number');

    // Going back to an older event is accepted but moves nothing.
    await ok(bob, 'POST', `/rooms/${enc(roomId)}/receipt/m.read/${enc(first)}`, {});
    // A private receipt: bob sees it, alice never does.
    const third = await say(alice, roomId, 'three');
    await ok(bob, 'POST', `/rooms/${enc(roomId)}/receipt/m.read.private/${enc(third)}`, {});
    const mine = await syncUntil(bob, bobSince, (b) => ephemeralOf(b, roomId, 'm.receipt').some((e) => e.content[third]));
    expect(ephemeralOf(mine.body, roomId, 'm.receipt').find((e) => e.content[third])!.content[third]['m.read.private'][bob.userId]).toBeDefined();
    await say(alice, roomId, 'four'); // something to wake alice's poll with
    const after = await syncUntil(alice, seen.since, (b) => (b.rooms?.join?.[roomId]?.timeline?.events ?? []).some((e: Json) => e.content?.body === 'four'));
    for (const e of ephemeralOf(after.body, roomId, 'm.receipt')) {
      expect(e.content[third]).toBeUndefined();
      expect(e.content[first]).toBeUndefined();
    }
    // Initial syncs carry the latest receipts: alice sees bob's public one on `second`, not the private one.
    const full = ephemeralOf(await sync(alice), roomId, 'm.receipt')[0]!.content;
    expect(full[second]['m.read'][bob.userId]).toBeDefined();
    expect(full[third]).toBeUndefined();
    const bobFull = ephemeralOf(await sync(bob), roomId, 'm.receipt')[0]!.content;
    expect(bobFull[third]['m.read.private'][bob.userId]).toBeDefined();
  });

  it('threaded receipts carry thread_id; m.fully_read and /read_markers set the room account data', async () => {
    const { alice, bob, roomId, aliceSince } = await pair('r2');
    const root = await say(alice, roomId, 'root');
    const reply = (await ok(alice, 'PUT', `/rooms/${enc(roomId)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body: 'in thread', 'm.relates_to': { rel_type: 'm.thread', event_id: root } })).event_id as string;
    await ok(bob, 'POST', `/rooms/${enc(roomId)}/receipt/m.read/${enc(reply)}`, { thread_id: root });
    const seen = await syncUntil(alice, aliceSince, (b) => ephemeralOf(b, roomId, 'm.receipt').length > 0);
    expect(ephemeralOf(seen.body, roomId, 'm.receipt')[0]!.content[reply]['m.read'][bob.userId].thread_id).toBe(root);

    await ok(bob, 'POST', `/rooms/${enc(roomId)}/receipt/m.fully_read/${enc(root)}`, {});
    expect(await ok(bob, 'GET', `/user/${enc(bob.userId)}/rooms/${enc(roomId)}/account_data/m.fully_read`)).toEqual({ event_id: root });
    const last = await say(alice, roomId, 'last');
    await ok(bob, 'POST', `/rooms/${enc(roomId)}/read_markers`, { 'm.fully_read': last, 'm.read': last });
    expect(await ok(bob, 'GET', `/user/${enc(bob.userId)}/rooms/${enc(roomId)}/account_data/m.fully_read`)).toEqual({ event_id: last });
    const full = ephemeralOf(await sync(alice), roomId, 'm.receipt')[0]!.content;
    expect(full[last]['m.read'][bob.userId]).toBeDefined();
  });

  it('refuses unknown events and types, bad thread ids, and non-members', async () => {
    const { alice, roomId } = await pair('r3');
    const eve = await mint('e_eve_r3');
    const ev = await say(alice, roomId, 'x');
    const unknown = await call(alice, 'POST', `/rooms/${enc(roomId)}/receipt/m.read/${enc('$nope')}`, {});
    expect([unknown.status, unknown.body.errcode]).toEqual([404, 'M_NOT_FOUND']);
    expect((await call(alice, 'POST', `/rooms/${enc(roomId)}/receipt/m.bogus/${enc(ev)}`, {})).body.errcode).toBe('M_INVALID_PARAM');
    expect((await call(alice, 'POST', `/rooms/${enc(roomId)}/receipt/m.read/${enc(ev)}`, { thread_id: 7 })).body.errcode).toBe('M_INVALID_PARAM');
    expect((await call(alice, 'POST', `/rooms/${enc(roomId)}/receipt/m.fully_read/${enc(ev)}`, { thread_id: 'main' })).body.errcode).toBe('M_INVALID_PARAM');
    expect((await call(eve, 'POST', `/rooms/${enc(roomId)}/receipt/m.read/${enc(ev)}`, {})).body.errcode).toBe('M_FORBIDDEN');
    // read_markers checks every event before writing any.
    const bad = await call(alice, 'POST', `/rooms/${enc(roomId)}/read_markers`, { 'm.fully_read': ev, 'm.read': '$missing' });
    expect(bad.status).toBe(404);
    expect((await call(alice, 'GET', `/user/${enc(alice.userId)}/rooms/${enc(roomId)}/account_data/m.fully_read`)).status).toBe(404);
  });
});

describe('matrix-js-sdk', () => {
  it('bob sees alice typing and her read receipt through his sync loop', async () => {
    const { alice: aliceS, bob: bobS, roomId } = await pair('sdk');
    const make = (s: Session): MatrixClient => createClient({ baseUrl: server.baseUrl, accessToken: s.token, userId: s.userId, deviceId: s.deviceId });
    const alice = make(aliceS);
    const bob = make(bobS);
    const prepared = (c: MatrixClient) => new Promise<void>((resolve) => c.on(ClientEvent.Sync, (state) => state === 'PREPARED' && resolve()));
    const ready = Promise.all([prepared(alice), prepared(bob)]);
    await alice.startClient({ initialSyncLimit: 10 });
    await bob.startClient({ initialSyncLimit: 10 });
    try {
      await ready;
      const typing = new Promise<void>((resolve) => {
        bob.on(RoomMemberEvent.Typing, (_e, member) => {
          if (member.userId === aliceS.userId && member.typing && member.roomId === roomId) resolve();
        });
      });
      await alice.sendTyping(roomId, true, 10_000);
      await typing;
      const messageId = (await bob.sendTextMessage(roomId, 'read me')).event_id;
      const receipt = new Promise<void>((resolve) => {
        bob.on(RoomEvent.Receipt, (event, room) => {
          if (room.roomId === roomId && event.getContent()[messageId]?.['m.read']?.[aliceS.userId]) resolve();
        });
      });
      // Wait until alice's client has the event, then mark it read the way Element does.
      for (let i = 0; i < 100 && !alice.getRoom(roomId)?.findEventById(messageId); i++) await new Promise((r) => setTimeout(r, 50));
      const event = alice.getRoom(roomId)!.findEventById(messageId)!;
      await alice.sendReadReceipt(event);
      await receipt;
      expect(bob.getRoom(roomId)!.getUsersReadUpTo(event)).toContain(aliceS.userId);
    } finally {
      alice.stopClient();
      bob.stopClient();
    }
  });
});

describe('to-device messages in /sync', () => {
  const send = (from: Session, to: Session, n: number, type = 'm.test') =>
    ok(from, 'PUT', `/sendToDevice/${enc(type)}/${txn()}`, { messages: { [to.userId]: { [to.deviceId]: { n } } } });

  it('wake the recipient’s long-poll, are delivered once, in order, and deleted after the next sync', async () => {
    const { alice, bob, bobSince } = await pair('td1');
    const poll = sync(bob, { since: bobSince, timeout: '10000' });
    await new Promise((r) => setTimeout(r, 100));
    await send(alice, bob, 1);
    const first = await poll;
    expect(first.to_device.events).toEqual([{ type: 'm.test', sender: alice.userId, content: { n: 1 } }]);
    // Not acknowledged yet: an initial sync (which acknowledges nothing) still carries it.
    expect((await sync(bob)).to_device.events.map((e: Json) => e.content.n)).toEqual([1]);
    await send(alice, bob, 2);
    const second = await sync(bob, { since: first.next_batch });
    expect(second.to_device.events.map((e: Json) => e.content.n)).toEqual([2]);
    // Syncing with `second`'s token acknowledges message 2 as well; both are gone.
    await sync(bob, { since: second.next_batch });
    for (let i = 0; i < 40 && (await sync(bob)).to_device.events.length > 0; i++) await new Promise((r) => setTimeout(r, 50));
    expect((await sync(bob)).to_device.events).toEqual([]);
  });

  it('a backlog larger than one response comes in batches of 100 through the token, none lost or repeated', async () => {
    const { alice, bob, bobSince } = await pair('td2');
    for (let i = 0; i < 250; i++) await send(alice, bob, i);
    const got: number[] = [];
    let since = bobSince;
    for (let round = 0; round < 10 && got.length < 250; round++) {
      const b = await sync(bob, { since });
      got.push(...b.to_device.events.map((e: Json) => e.content.n as number));
      if (got.length < 250) expect(b.next_batch).toContain('~t');
      since = b.next_batch;
    }
    expect(got).toEqual(Array.from({ length: 250 }, (_, i) => i));
    expect((await sync(bob, { since })).to_device.events).toEqual([]);
  });

  it('a long-polling loop gets the rest of a backlog at once, not at its timeout', async () => {
    const { alice, bob, bobSince } = await pair('td3');
    for (let i = 0; i < 150; i++) await send(alice, bob, i);
    const first = await sync(bob, { since: bobSince, timeout: '50000' });
    expect(first.to_device.events).toHaveLength(100);
    expect(first.next_batch).toContain('~t');
    // Nothing new has been notified since the first answer, but it was given in part: the next
    // poll must not sit out its 50 s before sending the other 50.
    const next = await Promise.race([sync(bob, { since: first.next_batch, timeout: '50000' }), new Promise((r) => setTimeout(() => r('still waiting'), 20_000))]);
    expect(next).not.toBe('still waiting');
    expect((next as Json).to_device.events.map((e: Json) => e.content.n as number)).toEqual(Array.from({ length: 50 }, (_, i) => 100 + i));
  });
});

describe('unread notification counts in /sync', () => {
  it('count a DM’s messages for the recipient, highlight mentions, and reset with a receipt', async () => {
    const { alice, bob, roomId, bobSince } = await pair('u1');
    await say(alice, roomId, 'one');
    const mention = (await ok(alice, 'PUT', `/rooms/${enc(roomId)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body: 'hey bob', 'm.mentions': { user_ids: [bob.userId] } })).event_id as string;
    const counted = await syncUntil(bob, bobSince, (b) => b.rooms?.join?.[roomId]?.unread_notifications?.notification_count === 2);
    expect(counted.body.rooms.join[roomId].unread_notifications).toEqual({ notification_count: 2, highlight_count: 1 });
    // The sender's own messages never count for her.
    expect((await sync(alice)).rooms.join[roomId].unread_notifications).toEqual({ notification_count: 0, highlight_count: 0 });
    await ok(bob, 'POST', `/rooms/${enc(roomId)}/receipt/m.read/${enc(mention)}`, {});
    const reset = await syncUntil(bob, counted.since, (b) => b.rooms?.join?.[roomId]?.unread_notifications?.notification_count === 0);
    expect(reset.body.rooms.join[roomId].unread_notifications).toEqual({ notification_count: 0, highlight_count: 0 });
  });
});

describe('unread counts when the push evaluator is late', () => {
  it('counts sent before the evaluator finished are sent again once it has, with nothing else new', async () => {
    const { alice, bob, roomId, bobSince } = await pair('u2');
    await say(alice, roomId, 'one');
    const first = await syncUntil(bob, bobSince, (b) => b.rooms?.join?.[roomId]?.unread_notifications?.notification_count === 1);
    // The evaluator stalls on the room's shard (past the 2 s a sync waits for it).
    const shard = shardOf(roomId, server.config.shards.rooms);
    for (const r of server.pushEvaluators) r.detach(shard);
    await say(alice, roomId, 'two');
    const late = await syncUntil(bob, first.since, (b) => (b.rooms?.join?.[roomId]?.timeline?.events ?? []).some((e: Json) => e.content?.body === 'two'));
    // The message came without waiting for ever; its counts could not include it yet.
    expect(late.body.rooms.join[roomId].unread_notifications.notification_count).toBe(1);
    // The evaluator resumes: the next poll sends the room's counts again, though nothing else happened.
    for (const r of server.pushEvaluators) r.attach(shard);
    const fixed = await sync(bob, { since: late.since, timeout: '20000' });
    expect(fixed.rooms?.join?.[roomId]?.unread_notifications).toEqual({ notification_count: 2, highlight_count: 0 });
    expect(fixed.rooms.join[roomId].timeline?.events ?? []).toEqual([]);
  });
});

describe('one-time key counts in /sync', () => {
  it('every answer carries the device’s one-time key counts and unused fallback key types; a claim lowers the count', async () => {
    const { alice, bob } = await pair('k1');
    const before = await sync(bob);
    expect(before.device_one_time_keys_count).toEqual({ signed_curve25519: 0 });
    expect(before.device_unused_fallback_key_types).toEqual([]);
    const keys = Object.fromEntries(Array.from({ length: 3 }, (_, i) => [`curve25519:AAAA${i}`, Buffer.alloc(32, i + 1).toString('base64').replace(/=+$/, '')]));
    const up = await ok(bob, 'POST', '/keys/upload', { one_time_keys: keys });
    expect(up.one_time_key_counts.curve25519).toBe(3);
    expect((await sync(bob)).device_one_time_keys_count).toMatchObject({ curve25519: 3, signed_curve25519: 0 });
    const claimed = await ok(alice, 'POST', '/keys/claim', { one_time_keys: { [bob.userId]: { [bob.deviceId]: 'curve25519' } } });
    expect(Object.keys(claimed.one_time_keys[bob.userId][bob.deviceId])).toHaveLength(1);
    expect((await sync(bob)).device_one_time_keys_count).toMatchObject({ curve25519: 2 });
  });
});

describe('knocks in /sync', () => {
  it('a knock shows in rooms.knock with stripped state; once invited, the room moves to rooms.invite', async () => {
    const alice = await mint('k_alice');
    const dave = await mint('k_dave');
    const roomId = (await ok(alice, 'POST', '/createRoom', { preset: 'private_chat', room_version: '10', name: 'Knock here' })).room_id as string;
    await ok(alice, 'PUT', `/rooms/${enc(roomId)}/state/m.room.join_rules/`, { join_rule: 'knock' });
    const since = (await sync(dave)).next_batch as string;
    await ok(dave, 'POST', `/knock/${enc(roomId)}`, { reason: 'let me in' });
    const knocked = await syncUntil(dave, since, (b) => !!b.rooms?.knock?.[roomId]);
    const state = knocked.body.rooms.knock[roomId].knock_state.events as Json[];
    expect(state.find((e) => e.type === 'm.room.join_rules')?.content.join_rule).toBe('knock');
    expect(state.find((e) => e.type === 'm.room.name')?.content.name).toBe('Knock here');
    expect(state.find((e) => e.type === 'm.room.member' && e.state_key === dave.userId)?.content.membership).toBe('knock');
    expect(knocked.body.rooms.join?.[roomId]).toBeUndefined();
    await ok(alice, 'POST', `/rooms/${enc(roomId)}/invite`, { user_id: dave.userId });
    const invited = await syncUntil(dave, knocked.since, (b) => !!b.rooms?.invite?.[roomId]);
    expect(invited.body.rooms.knock?.[roomId]).toBeUndefined();
  });
});
