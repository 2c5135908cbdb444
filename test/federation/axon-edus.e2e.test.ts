/**
 * EDUs between two Axon servers (issue 16.6): both sides are ours, so this checks that what our
 * sender sends our inbound side takes, through real HTTPS transactions:
 *  - typing notices and read receipts seen on the other server's /sync, both ways (a private
 *    receipt never leaves its server);
 *  - presence of a user of the other server (GET /presence and /sync), both ways;
 *  - device list changes: a new device on one server in the other's /sync `device_lists.changed`
 *    and /keys/query;
 *  - B down (stopped, then started again under the same name, prefix and key): to-device
 *    messages A's user sent meanwhile (and a client's retry of one) reach B's device exactly once;
 *    a device-list update lost meanwhile (deleted from A's queue to B) is made up when the next
 *    update's `prev_id` names it: B resyncs from A's /user/devices, and the lost device appears.
 * Forged EDUs cannot come from a real Axon; edus.e2e.test.ts sends them from a signing peer.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signingKeyFromSeed } from '../../src/protocol/crypto';
import type { JsonObject } from '../../src/protocol/json';
import { signJson } from '../../src/protocol/signing';
import { destinationData, e2eKeyData, KeySpace } from '../../src/store/keys';
import { shardOf } from '../../src/store/shards';
import { clientsFor, enc, eventually, txn, type Clients, type Json, type Session } from '../e2e/clients';
import type { TestServer } from '../e2e/server-harness';
import { createTestCa, type TestCa } from '../peers/test-ca';
import { restartFederatedAxon, startFederatedAxon } from './harness';

const A_IP = '127.0.0.161';
const B_IP = '127.0.0.162';
const WAIT = 60_000;

let ca: TestCa;
let a: TestServer;
let b: TestServer;
let onA: Clients;
let onB: Clients;
let alice: Session;
let bob: Session;
let roomId: string;

/** A short backoff, so a peer back from an outage is retried within seconds. */
const quickRetries = (c: TestServer['config']) => {
  c.federation.sender = { ...c.federation.sender, backoffStartMs: 500, backoffMaxMs: 3_000 };
};

beforeAll(async () => {
  ca = createTestCa();
  [a, b] = await Promise.all([startFederatedAxon(A_IP, ca, quickRetries), startFederatedAxon(B_IP, ca, quickRetries)]);
  [onA, onB] = await Promise.all([clientsFor(a), clientsFor(b)]);
  alice = await onA.mint('alice');
  bob = await onB.mint('bob');
  const created = await onA.call(alice, 'POST', '/createRoom', { preset: 'public_chat', room_version: '10' });
  expect(created.status, JSON.stringify(created.body)).toBe(200);
  roomId = created.body.room_id;
  const joined = await onB.call(bob, 'POST', `/join/${enc(roomId)}?server_name=${enc(a.serverName)}`, {});
  expect(joined.status, JSON.stringify(joined.body)).toBe(200);
  await eventually(() => onA.call(alice, 'GET', `/rooms/${enc(roomId)}/joined_members`), (r) => r.status === 200 && bob.userId in (r.body.joined ?? {}), WAIT);
  // A gap found here, left to the join's owner: a joining Axon's membership index learns the
  // room's other members only from membership events it receives, not from the state its join
  // brought — until then B's users "share no room" with Alice (GET /presence → 403, /sync
  // presence and her device updates not fanned out). A membership event of hers after Bob's
  // join teaches B; without it the index caught up only after a minute or more.
  const renamed = await onA.call(alice, 'PUT', `/rooms/${enc(roomId)}/state/m.room.member/${enc(alice.userId)}`, { membership: 'join', displayname: 'Alice' });
  expect(renamed.status, JSON.stringify(renamed.body)).toBe(200);
  await eventually(() => onB.call(bob, 'GET', `/presence/${enc(alice.userId)}/status`), (r) => r.status === 200, WAIT);
}, 180_000);

afterAll(async () => {
  await onA?.close();
  await onB?.close();
  await Promise.all([a?.stop(), b?.stop()]);
  ca?.cleanup();
});

const ephemeral = (sync: Json, type: string): Json[] => ((sync.body.rooms?.join?.[roomId]?.ephemeral?.events ?? []) as Json[]).filter((e) => e.type === type);
const sync = (c: Clients, who: Session) => c.call(who, 'GET', '/sync?timeout=0');

/** Device keys signed by the device, as a client uploads them. */
function deviceUpload(who: { userId: string; deviceId: string }): JsonObject {
  const key = signingKeyFromSeed(`ed25519:${who.deviceId}`, randomBytes(32));
  const device_keys = signJson(
    { user_id: who.userId, device_id: who.deviceId, algorithms: ['m.olm.v1.curve25519-aes-sha2', 'm.megolm.v1.aes-sha2'], keys: { [`ed25519:${who.deviceId}`]: key.publicKeyBase64, [`curve25519:${who.deviceId}`]: randomBytes(32).toString('base64').replace(/=+$/, '') } },
    who.userId,
    key,
  );
  return { device_keys };
}

describe('EDUs between two Axon servers', () => {
  it('typing and read receipts show on the other server’s /sync, both ways; a private receipt stays home', async () => {
    expect((await onA.call(alice, 'PUT', `/rooms/${enc(roomId)}/typing/${enc(alice.userId)}`, { typing: true, timeout: 30_000 })).status).toBe(200);
    await eventually(() => sync(onB, bob), (r) => ephemeral(r, 'm.typing').some((e) => (e.content.user_ids ?? []).includes(alice.userId)), WAIT);
    expect((await onB.call(bob, 'PUT', `/rooms/${enc(roomId)}/typing/${enc(bob.userId)}`, { typing: true, timeout: 30_000 })).status).toBe(200);
    await eventually(() => sync(onA, alice), (r) => ephemeral(r, 'm.typing').some((e) => (e.content.user_ids ?? []).includes(bob.userId)), WAIT);
    // Stops are EDUs too (a full /sync lists who is typing now: no m.typing at all once nobody is).
    await onA.call(alice, 'PUT', `/rooms/${enc(roomId)}/typing/${enc(alice.userId)}`, { typing: false });
    await onB.call(bob, 'PUT', `/rooms/${enc(roomId)}/typing/${enc(bob.userId)}`, { typing: false });
    await eventually(() => sync(onB, bob), (r) => r.status === 200 && !ephemeral(r, 'm.typing').some((e) => (e.content.user_ids ?? []).includes(alice.userId)), WAIT);
    await eventually(() => sync(onA, alice), (r) => r.status === 200 && !ephemeral(r, 'm.typing').some((e) => (e.content.user_ids ?? []).includes(bob.userId)), WAIT);

    // Receipts: each reads the other's message.
    const fromAlice = await onA.call(alice, 'PUT', `/rooms/${enc(roomId)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body: 'read me, bob' });
    expect(fromAlice.status).toBe(200);
    await eventually(() => onB.call(bob, 'GET', `/rooms/${enc(roomId)}/event/${enc(fromAlice.body.event_id)}`), (r) => r.status === 200, WAIT);
    expect((await onB.call(bob, 'POST', `/rooms/${enc(roomId)}/receipt/m.read/${enc(fromAlice.body.event_id)}`, {})).status).toBe(200);
    await eventually(() => sync(onA, alice), (r) => ephemeral(r, 'm.receipt').some((e) => !!e.content[fromAlice.body.event_id]?.['m.read']?.[bob.userId]), WAIT);

    const fromBob = await onB.call(bob, 'PUT', `/rooms/${enc(roomId)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body: 'and read me, alice' });
    expect(fromBob.status).toBe(200);
    await eventually(() => onA.call(alice, 'GET', `/rooms/${enc(roomId)}/event/${enc(fromBob.body.event_id)}`), (r) => r.status === 200, WAIT);
    expect((await onA.call(alice, 'POST', `/rooms/${enc(roomId)}/receipt/m.read.private/${enc(fromBob.body.event_id)}`, {})).status).toBe(200);
    expect((await onA.call(alice, 'POST', `/rooms/${enc(roomId)}/receipt/m.read/${enc(fromBob.body.event_id)}`, {})).status).toBe(200);
    const seen = await eventually(() => sync(onB, bob), (r) => ephemeral(r, 'm.receipt').some((e) => !!e.content[fromBob.body.event_id]?.['m.read']?.[alice.userId]), WAIT);
    expect(ephemeral(seen, 'm.receipt').find((e) => e.content[fromBob.body.event_id])!.content[fromBob.body.event_id]['m.read.private']).toBeUndefined();
  }, 240_000);

  it('presence of a user of the other server, both ways (GET /presence and /sync)', async () => {
    expect((await onB.call(bob, 'PUT', `/presence/${enc(bob.userId)}/status`, { presence: 'online', status_msg: 'on B' })).status).toBe(200);
    await eventually(() => onA.call(alice, 'GET', `/presence/${enc(bob.userId)}/status`), (r) => r.status === 200 && r.body.presence === 'online' && r.body.status_msg === 'on B', WAIT);
    await eventually(() => sync(onA, alice), (r) => ((r.body.presence?.events ?? []) as Json[]).some((e) => e.sender === bob.userId && e.content.status_msg === 'on B'), WAIT);
    expect((await onA.call(alice, 'PUT', `/presence/${enc(alice.userId)}/status`, { presence: 'unavailable', status_msg: 'on A' })).status).toBe(200);
    await eventually(() => onB.call(bob, 'GET', `/presence/${enc(alice.userId)}/status`), (r) => r.status === 200 && r.body.presence === 'unavailable' && r.body.status_msg === 'on A', WAIT);
    await eventually(() => sync(onB, bob), (r) => ((r.body.presence?.events ?? []) as Json[]).some((e) => e.sender === alice.userId && e.content.status_msg === 'on A'), WAIT);
  }, 240_000);

  it('a new device on one server shows in the other server’s /sync device_lists.changed and /keys/query, both ways', async () => {
    const bobFirst = await sync(onB, bob);
    const alice2 = await onA.mint('alice', 'ADEV2');
    expect((await onA.call(alice2, 'POST', '/keys/upload', deviceUpload(alice2))).status).toBe(200);
    await eventually(() => onB.call(bob, 'GET', `/sync?timeout=1000&since=${enc(bobFirst.body.next_batch)}`), (r) => ((r.body.device_lists?.changed ?? []) as string[]).includes(alice.userId), WAIT);
    await eventually(() => onB.call(bob, 'POST', '/keys/query', { device_keys: { [alice.userId]: [] } }), (r) => r.status === 200 && !!r.body.device_keys?.[alice.userId]?.ADEV2, WAIT);

    const aliceFirst = await sync(onA, alice);
    const bob2 = await onB.mint('bob', 'BDEV2');
    expect((await onB.call(bob2, 'POST', '/keys/upload', deviceUpload(bob2))).status).toBe(200);
    await eventually(() => onA.call(alice, 'GET', `/sync?timeout=1000&since=${enc(aliceFirst.body.next_batch)}`), (r) => ((r.body.device_lists?.changed ?? []) as string[]).includes(bob.userId), WAIT);
    const q = await eventually(() => onA.call(alice, 'POST', '/keys/query', { device_keys: { [bob.userId]: [] } }), (r) => r.status === 200 && !!r.body.device_keys?.[bob.userId]?.BDEV2, WAIT);
    expect(q.body.device_keys[bob.userId].BDEV2).toMatchObject({ user_id: bob.userId, device_id: 'BDEV2' });
  }, 240_000);

  it('B down: to-device sent meanwhile reaches B’s device exactly once; a device-list update lost meanwhile is made up by a resync', async () => {
    // B tracks Alice's devices by now (the previous test): its cache of them is the whole list,
    // which /keys/query answers from (src/api/client/remote-keys.ts) — so what it shows after
    // the outage is what B's cache learnt, not a live query.
    const synced = new KeySpace(b.config.redis.keyPrefix).shard('user', shardOf(alice.userId, b.config.shards.users)).data(e2eKeyData.remoteSynced(alice.userId));
    await eventually(() => b.redis.get(synced), (v) => v !== null, WAIT);
    await b.stop();
    await onB.close();
    for (let i = 0; i < 5; i++) {
      const t = txn();
      const body = { messages: { [bob.userId]: { [bob.deviceId]: { i } } } };
      const r = await onA.call(alice, 'PUT', `/sendToDevice/org.example.outage/${t}`, body);
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      // The client retries (its answer was lost): nothing more is queued.
      expect((await onA.call(alice, 'PUT', `/sendToDevice/org.example.outage/${t}`, body)).status).toBe(200);
    }
    // Alice signs in on ADEV3 meanwhile; its device-list updates are lost on the way (deleted
    // from A's queue to B, as an overflowing queue would drop them): B never gets them.
    const alice3 = await onA.mint('alice', 'ADEV3');
    expect((await onA.call(alice3, 'POST', '/keys/upload', deviceUpload(alice3))).status).toBe(200);
    const queue = new KeySpace(a.config.redis.keyPrefix).shard('user', shardOf(b.serverName, a.config.shards.users)).data(destinationData.edus(b.serverName));
    const updates = async () => ((await a.redis.xrange(queue, '-', '+')) as [string, string[]][]).filter(([, f]) => (f[1] ?? '').includes('m.device_list_update') && (f[1] ?? '').includes('ADEV3'));
    const queued = await eventually(updates, (rows) => rows.some(([, f]) => (f[1] ?? '').includes('"keys"')), WAIT);
    expect(await a.redis.xdel(queue, ...queued.map(([id]) => id))).toBe(queued.length);

    // B comes back: same name, ports, Redis prefix and signing key.
    b = await restartFederatedAxon(b, B_IP, ca);
    onB = await clientsFor(b);
    const got: Json[] = [];
    let since: string | undefined;
    const poll = async () => {
      const r = await onB.call(bob, 'GET', `/sync?timeout=1000${since ? `&since=${enc(since)}` : ''}`);
      if (r.status === 200) {
        got.push(...((r.body.to_device?.events ?? []) as Json[]).filter((e) => e.type === 'org.example.outage'));
        since = r.body.next_batch;
      }
      return got.length;
    };
    await eventually(poll, (n) => n >= 5, WAIT);
    // A duplicate would show in the next syncs.
    for (let k = 0; k < 3; k++) await poll();
    expect(got.map((e) => e.content.i).sort()).toEqual([0, 1, 2, 3, 4]);
    expect(got.every((e) => e.sender === alice.userId)).toBe(true);

    // The next update (ADEV4) names the lost one as its prev_id: B sees the gap and resyncs from
    // A's /user/devices, so ADEV3 — of which B never had an update — appears too.
    const alice4 = await onA.mint('alice', 'ADEV4');
    expect((await onA.call(alice4, 'POST', '/keys/upload', deviceUpload(alice4))).status).toBe(200);
    const q = await eventually(() => onB.call(bob, 'POST', '/keys/query', { device_keys: { [alice.userId]: [] } }), (r) => r.status === 200 && !!r.body.device_keys?.[alice.userId]?.ADEV4, WAIT);
    expect(Object.keys(q.body.device_keys[alice.userId])).toEqual(expect.arrayContaining(['ADEV2', 'ADEV3', 'ADEV4']));
  }, 300_000);
});
