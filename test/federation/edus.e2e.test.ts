/**
 * EDUs with a signing test peer (issue 16.1/16.2), for what a real Synapse cannot be made to do:
 *  - forged EDUs (about a user of another server than the transaction's origin, or about a user
 *    not in the room) are ignored, while the same EDU about the origin's own user is taken;
 *  - to-device exactly once across a peer outage: messages sent while the peer answers 503 are
 *    delivered once when it is back (and a client's retry of the same txn id adds nothing); the
 *    same `message_id` arriving in two transactions reaches the device once;
 *  - device lists: the first update of a user we track resyncs from `/user/devices`, updates
 *    chained by `prev_id` patch the cache, and a `prev_id` gap (a missed update) resyncs again —
 *    the peer answers no `/user/keys/query`, so what `/keys/query` shows is the cache.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JsonObject } from '../../src/protocol/json';
import { requireRoomVersion } from '../../src/protocol/room-versions';
import { clientsFor, enc, eventually, txn, type Clients, type Json, type Session } from '../e2e/clients';
import type { TestServer } from '../e2e/server-harness';
import { createTestCa, type TestCa } from '../peers/test-ca';
import { startFederatedAxon } from './harness';
import { SigningPeer } from './signing-peer';

const A_IP = '127.0.0.153';
const P_IP = '127.0.0.154';
const VERSION = requireRoomVersion('10');
const WAIT = 45_000;

let ca: TestCa;
let a: TestServer;
let clients: Clients;
let alice: Session;
let peer: SigningPeer;
let roomId: string;
let pat: string;
const received: JsonObject[] = [];
/** EDUs per transaction received, in order. */
const eduCounts: number[] = [];

beforeAll(async () => {
  ca = createTestCa();
  a = await startFederatedAxon(A_IP, ca, (c) => {
    c.federation.sender.backoffStartMs = 500;
  });
  peer = await SigningPeer.start(P_IP, ca);
  peer.onTransaction = (t) => {
    received.push(...t.edus);
    eduCounts.push(t.edus.length);
  };
  clients = await clientsFor(a);
  alice = await clients.mint('alice');
  const created = await clients.call(alice, 'POST', '/createRoom', { preset: 'public_chat', room_version: '10' });
  expect(created.status, JSON.stringify(created.body)).toBe(200);
  roomId = created.body.room_id;
  pat = `@pat:${peer.serverName}`;
  const made = await peer.request(a, 'GET', `/_matrix/federation/v1/make_join/${enc(roomId)}/${enc(pat)}?ver=10`);
  expect(made.status, JSON.stringify(made.body)).toBe(200);
  const template = { ...(made.body.event as JsonObject), origin_server_ts: Date.now() };
  const { pdu, id } = peer.sign(template, VERSION);
  const sent = await peer.request(a, 'PUT', `/_matrix/federation/v2/send_join/${enc(roomId)}/${enc(id)}`, pdu);
  expect(sent.status, JSON.stringify(sent.body)).toBe(200);
}, 90_000);

afterAll(async () => {
  await clients?.close();
  await peer?.close();
  await a?.stop();
  ca?.cleanup();
});

let txnSeq = 0;
const send = (edus: JsonObject[]) => peer.sendTransaction(a, `t${Date.now()}.${txnSeq++}`, [], edus);
const typingIn = (sync: Json): string[] => ((sync.body.rooms?.join?.[roomId]?.ephemeral?.events ?? []) as Json[]).filter((e) => e.type === 'm.typing').flatMap((e) => e.content.user_ids as string[]);

describe('EDUs from a signing test peer', () => {
  it('an EDU about a user of another server than the origin, or not in the room, is ignored; one about the origin’s member is taken', async () => {
    const mallory = '@mallory:elsewhere.example';
    const stranger = `@stranger:${peer.serverName}`;
    const forged = await send([
      // Alice is joined, but she is not the peer's to speak for.
      { edu_type: 'm.typing', content: { room_id: roomId, user_id: alice.userId, typing: true } },
      { edu_type: 'm.presence', content: { push: [{ user_id: alice.userId, presence: 'unavailable', status_msg: 'forged' }] } },
      { edu_type: 'm.typing', content: { room_id: roomId, user_id: mallory, typing: true } },
      { edu_type: 'm.typing', content: { room_id: roomId, user_id: stranger, typing: true } },
      { edu_type: 'm.presence', content: { push: [{ user_id: mallory, presence: 'online', status_msg: 'forged' }] } },
      { edu_type: 'm.direct_to_device', content: { sender: mallory, type: 'org.example.forged', message_id: 'f1', messages: { [alice.userId]: { '*': { forged: true } } } } },
    ]);
    expect(forged.status, JSON.stringify(forged.body)).toBe(200);
    // The positive control, after them: the origin's own member typing.
    const real = await send([{ edu_type: 'm.typing', content: { room_id: roomId, user_id: pat, typing: true } }]);
    expect(real.status).toBe(200);
    const sync = await eventually(() => clients.call(alice, 'GET', '/sync?timeout=0'), (r) => typingIn(r).includes(pat), WAIT);
    expect(typingIn(sync)).toEqual([pat]);
    expect(typingIn(sync)).not.toContain(mallory);
    expect(((sync.body.presence?.events ?? []) as Json[]).filter((e) => e.content.status_msg === 'forged')).toEqual([]);
    const mine = await clients.call(alice, 'GET', `/presence/${enc(alice.userId)}/status`);
    expect(mine.body.status_msg).toBeUndefined();
    expect(typingIn(sync)).not.toContain(stranger);
    expect(((sync.body.to_device?.events ?? []) as Json[]).filter((e) => e.type === 'org.example.forged')).toEqual([]);
    const p = await clients.call(alice, 'GET', `/presence/${enc(mallory)}/status`);
    expect(p.body.status_msg).toBeUndefined();
  });

  it('to-device to the peer exactly once across its outage (and a client retry adds nothing); the same message_id inbound reaches the device once', async () => {
    peer.downStatus = 503;
    const sent: string[] = [];
    for (let i = 0; i < 5; i++) {
      const t = txn();
      const body = { messages: { [pat]: { PATDEV: { i } } } };
      const r = await clients.call(alice, 'PUT', `/sendToDevice/org.example.outage/${t}`, body);
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      // The client retries the same request (its answer was lost): nothing more is queued.
      const again = await clients.call(alice, 'PUT', `/sendToDevice/org.example.outage/${t}`, body);
      expect(again.status).toBe(200);
      sent.push(t);
    }
    // Let a few attempts fail.
    await eventually(async () => peer.requests.filter((q) => q.method === 'PUT' && q.path.startsWith('/_matrix/federation/v1/send/')).length, (n) => n >= 2, WAIT);
    const started = performance.now();
    peer.downStatus = undefined;
    const outage = () => received.filter((e) => e.edu_type === 'm.direct_to_device' && (e.content as Json).type === 'org.example.outage');
    await eventually(async () => outage().length, (n) => n >= 5, WAIT);
    console.log(`edus.e2e: 5 to-device messages delivered ${Math.round(performance.now() - started)} ms after the peer came back`);
    // Give any duplicate time to show up (a retry after a backoff would come within seconds).
    await new Promise((r) => setTimeout(r, 3000));
    const got = outage();
    expect(got).toHaveLength(5);
    expect(new Set(got.map((e) => (e.content as Json).message_id)).size).toBe(5);
    expect(got.map((e) => (e.content as Json).messages[pat].PATDEV.i)).toEqual([0, 1, 2, 3, 4]);

    // Inbound: the peer sends one message id twice, in two transactions.
    const edu = { edu_type: 'm.direct_to_device', content: { sender: pat, type: 'org.example.once', message_id: `once-${txn()}`, messages: { [alice.userId]: { [alice.deviceId]: { n: 1 } } } } };
    expect((await send([edu])).status).toBe(200);
    expect((await send([edu])).status).toBe(200);
    const s1 = await eventually(() => clients.call(alice, 'GET', '/sync?timeout=0'), (r) => ((r.body.to_device?.events ?? []) as Json[]).some((e) => e.type === 'org.example.once'), WAIT);
    expect(((s1.body.to_device.events as Json[]) ?? []).filter((e) => e.type === 'org.example.once')).toHaveLength(1);
    const s2 = await clients.call(alice, 'GET', `/sync?timeout=1000&since=${enc(s1.body.next_batch)}`);
    expect(((s2.body.to_device?.events ?? []) as Json[]).filter((e) => e.type === 'org.example.once')).toEqual([]);
  });

  it('device lists: the first update resyncs from /user/devices, chained updates patch the cache, a prev_id gap resyncs again', async () => {
    const keysOf = (d: string) => ({ user_id: pat, device_id: d, algorithms: ['m.olm.v1.curve25519-aes-sha2'], keys: { [`ed25519:${d}`]: `${d}key`, [`curve25519:${d}`]: `${d}c` }, signatures: {} });
    let list: { stream_id: number; devices: string[] } = { stream_id: 5, devices: ['D1', 'D2'] };
    let resyncs = 0;
    peer.onRequest = (method, path) => {
      if (method !== 'GET' || path !== `/_matrix/federation/v1/user/devices/${encodeURIComponent(pat)}`) return undefined;
      resyncs++;
      return { status: 200, body: { user_id: pat, stream_id: list.stream_id, devices: list.devices.map((d) => ({ device_id: d, keys: keysOf(d) })) } };
    };
    const devicesSeen = async () => {
      const q = await clients.call(alice, 'POST', '/keys/query', { device_keys: { [pat]: [] } });
      expect(q.status, JSON.stringify(q.body)).toBe(200);
      return Object.keys(q.body.device_keys?.[pat] ?? {}).sort();
    };
    const first = await clients.call(alice, 'GET', '/sync?timeout=0');
    // First update: nothing cached yet → resync.
    expect((await send([{ edu_type: 'm.device_list_update', content: { user_id: pat, device_id: 'D2', stream_id: 5, prev_id: [4], keys: keysOf('D2') } }])).status).toBe(200);
    await eventually(async () => resyncs, (n) => n === 1, WAIT);
    expect(await eventually(devicesSeen, (d) => d.join() === 'D1,D2', WAIT)).toEqual(['D1', 'D2']);
    // Alice's /sync says Pat's devices changed.
    await eventually(
      () => clients.call(alice, 'GET', `/sync?timeout=2000&since=${enc(first.body.next_batch)}`),
      (r) => ((r.body.device_lists?.changed ?? []) as string[]).includes(pat),
      WAIT,
    );
    // A chained update (prev_id = the stream id we have): patched in place, no resync.
    expect((await send([{ edu_type: 'm.device_list_update', content: { user_id: pat, device_id: 'D3', stream_id: 6, prev_id: [5], keys: keysOf('D3') } }])).status).toBe(200);
    expect(await eventually(devicesSeen, (d) => d.join() === 'D1,D2,D3', WAIT)).toEqual(['D1', 'D2', 'D3']);
    expect(resyncs).toBe(1);
    // Update 7 (D1 deleted) is lost; update 8 names it as its prev_id: a gap → resync.
    list = { stream_id: 8, devices: ['D2', 'D3', 'D4'] };
    expect((await send([{ edu_type: 'm.device_list_update', content: { user_id: pat, device_id: 'D4', stream_id: 8, prev_id: [7], keys: keysOf('D4') } }])).status).toBe(200);
    await eventually(async () => resyncs, (n) => n === 2, WAIT);
    expect(await eventually(devicesSeen, (d) => d.join() === 'D2,D3,D4', WAIT)).toEqual(['D2', 'D3', 'D4']);
    // An update about a user of another server is ignored.
    expect((await send([{ edu_type: 'm.device_list_update', content: { user_id: '@mallory:elsewhere.example', device_id: 'X', stream_id: 1, prev_id: [], keys: {} } }])).status).toBe(200);
    expect(resyncs).toBe(2);
    // /keys/changes covers the remote user too.
    const now = await clients.call(alice, 'GET', '/sync?timeout=0');
    const changes = await clients.call(alice, 'GET', `/keys/changes?from=${enc(first.body.next_batch)}&to=${enc(now.body.next_batch)}`);
    expect(changes.status, JSON.stringify(changes.body)).toBe(200);
    expect(changes.body.changed).toContain(pat);
    // Cross-signing keys of the remote user: m.signing_key_update lands in the cache /keys/query reads.
    const master = { user_id: pat, usage: ['master'], keys: { 'ed25519:masterpub': 'masterpub' } };
    const selfSigning = { user_id: pat, usage: ['self_signing'], keys: { 'ed25519:sskpub': 'sskpub' }, signatures: { [pat]: { 'ed25519:masterpub': 'sig' } } };
    expect((await send([{ edu_type: 'm.signing_key_update', content: { user_id: pat, master_key: master, self_signing_key: selfSigning } }])).status).toBe(200);
    const q = await eventually(
      () => clients.call(alice, 'POST', '/keys/query', { device_keys: { [pat]: [] } }),
      (r) => r.status === 200 && !!r.body.master_keys?.[pat],
      WAIT,
    );
    expect(q.body.master_keys[pat]).toEqual(master);
    expect(q.body.self_signing_keys[pat]).toEqual(selfSigning);
  });

  it('throughput: 1,000 to-device messages through the one destination, each delivered once (EDUs/s printed)', async () => {
    peer.onRequest = undefined;
    const N = 1000;
    const tag = `org.example.burst.${txn()}`;
    const started = performance.now();
    const txnsBefore = eduCounts.length;
    let next = 0;
    // 16 clients' worth of PUTs at once.
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < N) {
          const i = next++;
          const r = await clients.call(alice, 'PUT', `/sendToDevice/${tag}/${txn()}`, { messages: { [pat]: { PATDEV: { i } } } });
          expect(r.status).toBe(200);
        }
      }),
    );
    const queuedMs = performance.now() - started;
    const burst = () => received.filter((e) => e.edu_type === 'm.direct_to_device' && (e.content as Json).type === tag);
    await eventually(async () => burst().length, (k) => k >= N, 120_000);
    const ms = performance.now() - started;
    const txns = eduCounts.slice(txnsBefore);
    console.log(`edus.e2e: ${N} to-device EDUs through one destination: queued in ${Math.round(queuedMs)} ms, all received in ${Math.round(ms)} ms (${Math.round((N / ms) * 1000)} EDUs/s end to end) in ${txns.length} transactions (at most ${Math.max(...txns)} EDUs each)`);
    // Never more than the spec's 100 EDUs in one transaction.
    expect(Math.max(...txns)).toBeLessThanOrEqual(100);
    const got = burst().map((e) => (e.content as Json).messages[pat].PATDEV.i as number);
    expect(got).toHaveLength(N);
    expect(new Set(got).size).toBe(N);
  }, 180_000);
});
