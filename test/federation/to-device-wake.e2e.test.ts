/**
 * A stored to-device message wakes the recipient's waiting `/sync` long-poll, whether it came
 * from a local `PUT /sendToDevice` or over federation (an inbound `m.direct_to_device` EDU from a
 * signing test peer). The polls chain like a client's sync loop (each `since` is the previous
 * answer's `next_batch`), so the "nothing changed since the last answer: wait before computing"
 * path of src/api/client/sync.ts is taken, and each message is sent at a different moment of the
 * poll (right away, or after a few ms: before, while and after the front computes its first
 * answer). A poll not woken answers only at its timeout — the SAS verification across servers
 * stalled that way (Bob's key reached Axon; Alice's sync slept through it).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JsonObject } from '../../src/protocol/json';
import { requireRoomVersion } from '../../src/protocol/room-versions';
import { clientsFor, enc, txn, type Clients, type Json, type Session } from '../e2e/clients';
import type { TestServer } from '../e2e/server-harness';
import { createTestCa, type TestCa } from '../peers/test-ca';
import { startFederatedAxon } from './harness';
import { SigningPeer } from './signing-peer';

const A_IP = '127.0.0.247';
const P_IP = '127.0.0.248';
const VERSION = requireRoomVersion('10');
/** Each poll's timeout: an answer that took this long was not woken by the message. */
const POLL_TIMEOUT_MS = 15_000;
/** When, after the poll went out, each message is sent (ms). */
const DELAYS = [0, 0, 1, 2, 3, 5, 8, 12, 20, 35, 60, 100];
const ROUNDS = 3;

let ca: TestCa;
let a: TestServer;
let clients: Clients;
let alice: Session;
let bob: Session;
let peer: SigningPeer;
let pat: string;

beforeAll(async () => {
  ca = createTestCa();
  a = await startFederatedAxon(A_IP, ca);
  peer = await SigningPeer.start(P_IP, ca);
  clients = await clientsFor(a);
  alice = await clients.mint('alice_wake');
  bob = await clients.mint('bob_wake');
  // A room the peer's user joins: the peer is then a server Axon knows (as in a real client's setup).
  const created = await clients.call(alice, 'POST', '/createRoom', { preset: 'public_chat', room_version: '10' });
  expect(created.status, JSON.stringify(created.body)).toBe(200);
  const roomId = created.body.room_id as string;
  pat = `@pat:${peer.serverName}`;
  const made = await peer.request(a, 'GET', `/_matrix/federation/v1/make_join/${enc(roomId)}/${enc(pat)}?ver=10`);
  expect(made.status, JSON.stringify(made.body)).toBe(200);
  const { pdu, id } = peer.sign({ ...(made.body.event as JsonObject), origin_server_ts: Date.now() }, VERSION);
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

/** One way of getting a to-device message of type `type` with `{n}` into Alice's device inbox. */
type Deliver = (type: string, n: number) => Promise<void>;

const overFederation: Deliver = async (type, n) => {
  const edu = { edu_type: 'm.direct_to_device', content: { sender: pat, type, message_id: `wake-${txn()}`, messages: { [alice.userId]: { [alice.deviceId]: { n } } } } };
  const r = await peer.sendTransaction(a, `w${Date.now()}.${txnSeq++}`, [], [edu]);
  expect(r.status, JSON.stringify(r.body)).toBe(200);
};

const fromLocalUser: Deliver = async (type, n) => {
  const r = await clients.call(bob, 'PUT', `/sendToDevice/${enc(type)}/${txn()}`, { messages: { [alice.userId]: { [alice.deviceId]: { n } } } });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
};

/**
 * A sync loop for Alice: per message, a long-poll goes out, the message is sent `delay` ms later,
 * and the poll must answer with it before its timeout. Returns the slowest answer (ms).
 */
async function syncLoop(deliver: Deliver, label: string): Promise<number> {
  const type = `org.example.wake.${label}`;
  const first = await clients.call(alice, 'GET', '/sync?timeout=0');
  expect(first.status).toBe(200);
  let since = first.body.next_batch as string;
  let n = 0;
  let slowest = 0;
  const stalled: string[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    for (const delay of DELAYS) {
      n++;
      const started = performance.now();
      const poll = clients.call(alice, 'GET', `/sync?timeout=${POLL_TIMEOUT_MS}&since=${enc(since)}`);
      if (delay) await new Promise((r) => setTimeout(r, delay));
      await deliver(type, n);
      let got: Json[] = [];
      // The message may come in the answer to this poll or (when this poll answered for
      // something else first) the next; either way, before a poll's timeout.
      for (let polls = 0; polls < 3 && got.length === 0; polls++) {
        const r = polls === 0 ? await poll : await clients.call(alice, 'GET', `/sync?timeout=${POLL_TIMEOUT_MS}&since=${enc(since)}`);
        expect(r.status, JSON.stringify(r.body)).toBe(200);
        since = r.body.next_batch as string;
        got = ((r.body.to_device?.events ?? []) as Json[]).filter((e) => e.type === type);
      }
      const ms = performance.now() - started;
      slowest = Math.max(slowest, ms);
      expect(got.map((e) => e.content.n)).toEqual([n]);
      if (ms >= POLL_TIMEOUT_MS) stalled.push(`message ${n} (sent ${delay} ms into the poll): ${Math.round(ms)} ms`);
    }
  }
  // Not a timing bar: an answer at the poll's timeout means the stored message did not wake it.
  expect(stalled, `long-polls that slept through a stored to-device message (${label})`).toEqual([]);
  return slowest;
}

describe('a stored to-device message wakes the recipient’s waiting /sync', () => {
  it('from a local user (PUT /sendToDevice)', async () => {
    const slowest = await syncLoop(fromLocalUser, 'local');
    console.log(`to-device-wake: local sendToDevice, ${ROUNDS * DELAYS.length} messages, slowest send → sync answer ${Math.round(slowest)} ms`);
  }, 600_000);

  it('over federation (an inbound m.direct_to_device EDU)', async () => {
    const slowest = await syncLoop(overFederation, 'federation');
    console.log(`to-device-wake: federated m.direct_to_device, ${ROUNDS * DELAYS.length} messages, slowest send → sync answer ${Math.round(slowest)} ms`);
  }, 600_000);
});
