/**
 * matrix-js-sdk's `SlidingSync` (MSC4186 on the unstable path) against Axon over real HTTP: the
 * SDK's own sliding-sync loop reaches PREPARED and SYNCING, names rooms from what the server
 * sends, shows an invite, and sees new messages, typing, receipts and to-device traffic live.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClientEvent, RoomEvent, SyncState, type MatrixClient, type MatrixEvent } from 'matrix-js-sdk';
import { SlidingSync } from 'matrix-js-sdk/lib/sliding-sync';
import { createClient } from './sdk';
import { startTestServer, type TestServer } from './server-harness';
import { clientsFor, enc, eventually, txn, type Clients, type Json, type Session } from './clients';

let server: TestServer;
let c: Clients;
const running: MatrixClient[] = [];

beforeAll(async () => {
  server = await startTestServer();
  c = await clientsFor(server);
}, 120_000);

afterAll(async () => {
  for (const client of running) client.stopClient();
  await c?.close();
  await server?.stop();
});

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

function waitFor<T>(register: (done: (v: T) => void) => void, ms: number, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
    register((v) => {
      clearTimeout(t);
      resolve(v);
    });
  });
}

describe('matrix-js-sdk SlidingSync against Axon', () => {
  it('syncs rooms with names and timelines, then sees messages, typing, receipts and to-device live', async () => {
    const alice = await c.mint('sdk-ss-alice');
    const bob = await c.mint('sdk-ss-bob');
    const named = await createRoom(alice, { name: 'Team room', preset: 'public_chat' });
    expect((await c.call(bob, 'POST', `/join/${enc(named)}`, {})).status).toBe(200);
    await say(bob, named, 'welcome');
    const invite = await createRoom(bob, { name: 'Invite for alice', invite: [alice.userId] });
    // The index has both rooms before the client starts (the first answer lists them).
    await eventually(
      () => c.call(alice, 'POST', '/_matrix/client/unstable/org.matrix.simplified_msc3575/sync', { lists: { a: { ranges: [[0, 9]], timeline_limit: 0, required_state: [] } } }),
      (r) => r.body.lists?.a?.count === 2,
      20_000,
    );

    const client = createClient({ baseUrl: server.baseUrl, accessToken: alice.token, userId: alice.userId, deviceId: alice.deviceId });
    running.push(client);
    const lists = new Map([
      [
        'rooms',
        {
          ranges: [[0, 19]] as [number, number][],
          timeline_limit: 10,
          required_state: [
            ['m.room.name', ''],
            ['m.room.avatar', ''],
            ['m.room.create', ''],
            ['m.room.member', '$LAZY'],
            ['m.room.member', '$ME'],
            ['m.room.power_levels', ''],
          ] as [string, string][],
        },
      ],
    ]);
    const sliding = new SlidingSync(server.baseUrl, lists, { timeline_limit: 10, required_state: [['*', '*']] }, client, 10_000);
    const states: string[] = [];
    const syncing = waitFor<void>((done) => {
      client.on(ClientEvent.Sync, (state: SyncState) => {
        states.push(state);
        if (state === SyncState.Syncing) done();
      });
    }, 30_000, 'SYNCING');
    await client.startClient({ slidingSync: sliding });
    await syncing;
    expect(states).toContain(SyncState.Prepared);
    expect(sliding.getListData('rooms')?.joinedCount).toBe(2);

    // Room names and timelines from what Axon sent.
    const room = await eventually(async () => client.getRoom(named), (r) => !!r, 10_000);
    expect(room!.name).toBe('Team room');
    expect(room!.getLiveTimeline().getEvents().some((e) => e.getContent().body === 'welcome')).toBe(true);
    const invited = await eventually(async () => client.getRoom(invite), (r) => !!r, 10_000);
    expect(invited!.getMyMembership()).toBe('invite');
    expect(invited!.name).toBe('Invite for alice');

    // A new message arrives live.
    const live = waitFor<MatrixEvent>((done) => {
      client.on(RoomEvent.Timeline, (ev: MatrixEvent, r) => {
        if (r?.roomId === named && ev.getContent().body === 'live one') done(ev);
      });
    }, 30_000, 'the live message');
    await say(bob, named, 'live one');
    const ev = await live;
    expect(ev.getSender()).toBe(bob.userId);

    // Typing and a receipt by bob, and a to-device message to alice's device.
    expect((await c.call(bob, 'PUT', `/rooms/${enc(named)}/typing/${enc(bob.userId)}`, { typing: true, timeout: 20_000 })).status).toBe(200);
    await eventually(async () => room!.getMember(bob.userId)?.typing, (t) => t === true, 20_000);
    expect(room!.getMember(bob.userId)?.typing).toBe(true);
    expect((await c.call(bob, 'POST', `/rooms/${enc(named)}/receipt/m.read/${enc(ev.getId()!)}`, {})).status).toBe(200);
    await eventually(async () => room!.getEventReadUpTo(bob.userId), (id) => id === ev.getId(), 20_000);
    expect(room!.getEventReadUpTo(bob.userId)).toBe(ev.getId());
    const toDevice = waitFor<MatrixEvent>((done) => {
      client.on(ClientEvent.ToDeviceEvent, (e: MatrixEvent) => {
        if (e.getType() === 'org.example.ping') done(e);
      });
    }, 30_000, 'the to-device message');
    expect((await c.call(bob, 'PUT', `/sendToDevice/org.example.ping/${txn()}`, { messages: { [alice.userId]: { [alice.deviceId]: { n: 1 } } } })).status).toBe(200);
    expect((await toDevice).getContent()).toEqual({ n: 1 });
    sliding.stop();
  }, 120_000);
});
