/**
 * The federation sender on the real runtime and a real Redis (issue 14.6): room actors commit
 * events of our users, the reader queues them at the destination actors, which PUT transactions
 * over TLS to small HTTPS receivers built here. A receiver records every attempt, dedupes by txn
 * id as a real server does (a repeated id is answered from memory, not processed), and can be
 * told to answer 500, be down (listener closed, connections cut), or hang.
 *
 * Remote members join as their servers' own signed join events, handed to the room actor's `ingest`
 * (as the federation front does with what a peer sends; the handshake itself is exercised by the
 * e2e tests): the destinations of an event are the servers in the room at it.
 */
import { createServer, type Server } from 'node:https';
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { destinationActor, DESTINATION_KIND, type DestinationLimits, type DestinationState } from '../../actors/destination';
import { buildCreateEvent } from '../../actors/room';
import { FederationClient } from '../../src/federation/client';
import { FederationSenderReader } from '../../src/federation/sender/reader';
import { FederationTransport } from '../../src/federation/sender/transport';
import { DestinationWaker } from '../../src/federation/sender/wake';
import { signingKeyFromSeed } from '../../src/protocol/crypto';
import { computeEventId, verifyEventSignature } from '../../src/protocol/event-hashing';
import { requireRoomVersion } from '../../src/protocol/room-versions';
import { ownEventSigner } from '../../src/rooms/own-signatures';
import { federationIpBlocklist } from '../../src/protocol/ip-ranges';
import type { JsonObject } from '../../src/protocol/json';
import type { RoomConfig } from '../../src/rooms/model';
import type { ActorClient } from '../../src/runtime/actor-client';
import { allActorKinds } from '../../src/runtime/kinds';
import { shardOf } from '../../src/store/shards';
import type { Worker } from '../../src/runtime/worker';
import { decode, encode } from '../../src/store/codec';
import { roomData } from '../../src/store/keys';
import { RoomReader } from '../../src/store/room-reader';
import type { IngestReply, RoomOutput } from '../../src/rooms/model';
import type { RemoteKeys } from '../../src/rooms/ingest';
import { parseOutboxEntry } from '../../src/runtime/envelope';
import { serverOf } from '../../src/protocol/identifiers';
import { stateKeyOf } from '../../src/protocol/pdu';
import { buildRemoteEvent } from '../actors/remote-event';
import { connectRedis } from '../../src/store/redis';
import { createTestCa, type TestCa } from '../peers/test-ca';
import { rig, silent, waitFor, type Rig } from '../runtime/harness';

const OURS = 'axon.test';
const room: RoomConfig = { serverName: OURS, signingKey: signingKeyFromSeed('ed25519:t', new Uint8Array(32).fill(7)) };
const alice = `@alice:${OURS}`;

type Mode = 'ok' | 'fail500' | 'hang';

/** A federation peer that only takes transactions. */
class Receiver {
  server!: Server;
  port = 0;
  mode: Mode = 'ok';
  delayMs = 0;
  /** While set, answers wait for it (a peer slow for as long as a test needs, whatever the machine's load). */
  gate: Promise<void> | null = null;
  /** Every attempt, in arrival order. */
  attempts: { txnId: string; pdus: number; edus: number }[] = [];
  /** PDUs processed (first time a txn id came), in order. */
  processed: JsonObject[] = [];
  private seen = new Map<string, string>();
  inFlight = 0;
  maxInFlight = 0;
  private sockets = new Set<Socket>();
  private hung: (() => void)[] = [];

  constructor(
    readonly ip: string,
    private readonly cert: { certPath: string; keyPath: string },
  ) {}

  get name(): string {
    return `${this.ip}:${this.port}`;
  }

  async start(): Promise<void> {
    this.server = createServer({ cert: readFileSync(this.cert.certPath), key: readFileSync(this.cert.keyPath) }, (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const m = /^\/_matrix\/federation\/v1\/send\/([^/?]+)$/.exec(req.url ?? '');
        if (req.method !== 'PUT' || !m) {
          res.writeHead(404, { 'Content-Type': 'application/json' }).end('{"errcode":"M_UNRECOGNIZED"}');
          return;
        }
        const txnId = decodeURIComponent(m[1]!);
        const body = JSON.parse(Buffer.concat(chunks).toString()) as { pdus: JsonObject[]; edus?: JsonObject[] };
        this.attempts.push({ txnId, pdus: body.pdus.length, edus: body.edus?.length ?? 0 });
        this.inFlight++;
        this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
        res.on('close', () => this.inFlight--);
        const answer = () => {
          if (this.mode === 'fail500') {
            res.writeHead(500, { 'Content-Type': 'application/json' }).end('{"errcode":"M_UNKNOWN","error":"down for maintenance"}');
            return;
          }
          let reply = this.seen.get(txnId);
          if (reply === undefined) {
            this.processed.push(...body.pdus);
            reply = JSON.stringify({ pdus: Object.fromEntries(body.pdus.map((p, i) => [String(p.event_id ?? i), {}])) });
            this.seen.set(txnId, reply);
          }
          res.writeHead(200, { 'Content-Type': 'application/json' }).end(reply);
        };
        if (this.mode === 'hang') {
          this.hung.push(() => res.destroy());
          return;
        }
        if (this.gate !== null) void this.gate.then(answer);
        else if (this.delayMs) setTimeout(answer, this.delayMs);
        else answer();
      });
    });
    this.server.on('connection', (s: Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve) => this.server.listen(this.port, this.ip, resolve));
    this.port = (this.server.address() as { port: number }).port;
  }

  /** Cuts the requests left hanging. */
  releaseHung(): void {
    for (const h of this.hung.splice(0)) h();
  }

  /** Down: the listener closed and every connection cut (connections are refused until start()). */
  async stop(): Promise<void> {
    this.releaseHung();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** The processed messages' `i`, in arrival order. */
  messages(): number[] {
    return this.processed.filter((p) => p.type === 'm.room.message').map((p) => (p.content as { i: number }).i);
  }
}

let ca: TestCa;
let a: Receiver;
let b: Receiver;
const N = 4;

beforeAll(async () => {
  ca = createTestCa();
  a = new Receiver('127.0.0.41', ca.leaf('127.0.0.41'));
  b = new Receiver('127.0.0.42', ca.leaf('127.0.0.42'));
  await Promise.all([a.start(), b.start()]);
});

afterAll(async () => {
  await Promise.all([a.stop().catch(() => undefined), b.stop().catch(() => undefined)]);
  ca.cleanup();
});

let r: Rig;
const clients: FederationClient[] = [];

afterEach(async () => {
  await r?.close();
  for (const c of clients.splice(0)) c.close();
  for (const x of [a, b]) {
    x.releaseHung();
    x.mode = 'ok';
    x.delayMs = 0;
    x.gate = null;
    x.attempts = [];
    x.processed = [];
    x.maxInFlight = 0;
  }
});

async function startWorker(id: string, sendTimeoutMs = 5000, limits: Partial<DestinationLimits> = { minRetryMs: 200, maxRetryMs: 1000 }): Promise<Worker> {
  const client = new FederationClient({ serverName: OURS, signingKey: room.signingKey, caPaths: [ca.caPath], verifyTls: true, blocklist: federationIpBlocklist([]), log: silent, requestTimeoutMs: sendTimeoutMs });
  clients.push(client);
  const dest = destinationActor({ transport: new FederationTransport(client, sendTimeoutMs), signer: ownEventSigner(OURS, room.signingKey), keys: r.keys, roomShards: N, limits });
  const readerRedis = connectRedis(r.target);
  return r.startWorker(id, { kinds: [...allActorKinds(room), dest], readers: [new FederationSenderReader(readerRedis, r.keys, r.shardCounts, OURS, id, silent)], pollMs: 300 });
}

/** One key signs for every peer of these tests (each under its own server name). */
const peerKey = signingKeyFromSeed('ed25519:p', new Uint8Array(32).fill(9));

/** A remote user's membership event as its server builds it, taken by the room actor (see the header). */
async function remoteMembership(c: ActorClient, roomId: string, user: string, membership: string): Promise<string> {
  const server = user.slice(user.indexOf(':') + 1);
  const pdu = await buildRemoteEvent(new RoomReader(r.redis, r.keys, N), roomId, { server, key: peerKey }, { type: 'm.room.member', sender: user, stateKey: user, content: { membership } });
  const keys: RemoteKeys = { [server]: { 'ed25519:p': { key: peerKey.publicKeyBase64, validUntilTs: Date.now() + 3600_000 } } };
  const reply = await c.ask<IngestReply>('room', 'room', roomId, { op: 'ingest', pdus: [pdu], keys });
  expect(reply.results[0]).toMatchObject({ status: 'accepted' });
  return reply.results[0]!.event_id!;
}

async function setUpRoom(c: ActorClient, localpart: string, remote: Receiver[]): Promise<string> {
  const { roomId, event } = buildCreateEvent(room, { roomVersion: '10', creator: alice, roomLocalpart: localpart, ts: Date.now() });
  await c.ask('room', 'room', roomId, { op: 'create', event });
  await c.ask('room', 'room', roomId, { op: 'send', event: { type: 'm.room.member', sender: alice, state_key: alice, content: { membership: 'join' } } });
  await c.ask('room', 'room', roomId, { op: 'send', event: { type: 'm.room.join_rules', sender: alice, state_key: '', content: { join_rule: 'public' } } });
  // Remote members (see the header): their servers are the destinations from then on.
  for (const x of remote) await remoteMembership(c, roomId, `@bob:${x.name}`, 'join');
  // The first event of ours the remote servers get (they were not in the room before it).
  await c.ask('room', 'room', roomId, { op: 'send', event: { type: 'm.room.topic', sender: alice, state_key: '', content: { topic: localpart } } });
  return roomId;
}

/** Sends messages i = from … from+count-1, in order (issued on one connection: committed in order). */
async function sendMessages(c: ActorClient, roomId: string, from: number, count: number): Promise<void> {
  await Promise.all(Array.from({ length: count }, (_, k) => c.ask('room', 'room', roomId, { op: 'send', event: { type: 'm.room.message', sender: alice, content: { msgtype: 'm.text', body: `m${from + k}`, i: from + k } } }, { timeoutMs: 30_000 })));
}

const range = (from: number, count: number) => Array.from({ length: count }, (_, k) => from + k);

async function destinationState(dest: string): Promise<DestinationState | null> {
  const blob = await r.redis.getBuffer(r.keys.shard('user', shardOf(dest, N)).state(DESTINATION_KIND, dest));
  return blob ? decode<DestinationState>(blob) : null;
}

describe('federation sender (redis)', () => {
  it('events of a room reach each destination in order, once, one transaction in flight, ≤ 50 PDUs each; one destination down does not delay the other', async () => {
    r = await rig('single', { shards: N, room });
    await startWorker('w1');
    const c = await r.client();
    a.delayMs = 20; // slow answers make batches form and overlap visible
    const roomId = await setUpRoom(c, 'order', [a, b]);
    await sendMessages(c, roomId, 0, 150);
    await waitFor('A has 150', () => a.messages().length >= 150);
    await waitFor('B has 150', () => b.messages().length >= 150);
    expect(a.messages()).toEqual(range(0, 150));
    expect(b.messages()).toEqual(range(0, 150));
    for (const x of [a, b]) {
      expect(x.maxInFlight).toBe(1);
      expect(x.attempts.every((t) => t.pdus <= 50)).toBe(true);
      expect(new Set(x.attempts.map((t) => t.txnId)).size).toBe(x.attempts.length); // nothing re-sent
      // The topic and the messages, each once; only our users' events, from when the peer was in.
      const ids = x.processed.map((p) => JSON.stringify(p));
      expect(new Set(ids).size).toBe(ids.length);
    }
    // No event_id in a v10 PDU (federation format), no local unsigned data.
    expect(a.processed[0]!.event_id).toBeUndefined();
    expect(a.processed.every((p) => p.unsigned === undefined)).toBe(true);
    // Stored without our signature (src/rooms/own-signatures.ts), each goes out with it, valid.
    const v10 = requireRoomVersion('10');
    for (const p of a.processed) expect(verifyEventSignature(p, v10, OURS, room.signingKey.keyId, room.signingKey.publicKey).ok).toBe(true);
    const storedMessage = decode<{ j: string }>((await r.redis.getBuffer(r.keys.shard('room', shardOf(roomId, N)).data(roomData.event(computeEventId(a.processed.at(-1)!, v10)))))!);
    expect(JSON.parse(storedMessage.j).signatures).toBeUndefined();

    // B goes down: A keeps getting events at once.
    await b.stop();
    const t0 = Date.now();
    await sendMessages(c, roomId, 150, 20);
    await waitFor('A has 170', () => a.messages().length >= 170, 5000);
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(b.messages().length).toBe(150);
    await waitFor('B backing off', async () => ((await destinationState(b.name))?.failures ?? 0) >= 1);
    // B back: it gets the 20 it missed, in order, once.
    await b.start();
    await waitFor('B has 170', () => b.messages().length >= 170, 10_000);
    expect(b.messages()).toEqual(range(0, 170));
    expect(a.messages()).toEqual(range(0, 170));
  });

  it('a destination down for a while, then answering 500, then back gets every missed event in order, once, batched ≤ 50', async () => {
    r = await rig('single', { shards: N, room });
    await startWorker('w1');
    const c = await r.client();
    const roomId = await setUpRoom(c, 'catchup', [a]);
    await sendMessages(c, roomId, 0, 5);
    await waitFor('A has 5', () => a.messages().length >= 5);
    await a.stop();
    await sendMessages(c, roomId, 5, 230);
    await new Promise((res) => setTimeout(res, 2500)); // several failed attempts, backoff at its cap (1 s here)
    const down = await destinationState(a.name);
    expect(down!.failures).toBeGreaterThanOrEqual(2);
    expect(down!.inflight).not.toBeNull();
    a.mode = 'fail500';
    await a.start();
    await waitFor('a 500 answered', () => a.attempts.length >= 1, 5000);
    a.mode = 'ok';
    await waitFor('A has 235', () => a.messages().length >= 235, 15_000);
    expect(a.messages()).toEqual(range(0, 235));
    const sizes = a.attempts.map((t) => t.pdus);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(50);
    expect(sizes.filter((s) => s === 50).length).toBeGreaterThanOrEqual(4); // the backlog went in full batches
    // The last transaction's report reaches the actor just after the peer has its events.
    const after = await waitFor('the last report committed', async () => {
      const s = await destinationState(a.name);
      return s && s.inflight === null ? s : undefined;
    });
    expect(after).toMatchObject({ failures: 0, inflight: null, dropped: 0, takenPdu: after.nextPdu - 1 });
  });

  it('a worker killed mid-send: the next lease holder re-sends the same txn id; nothing lost, nothing processed twice', async () => {
    r = await rig('single', { shards: N, room, ttlMs: 1500, renewMs: 300 });
    const w1 = await startWorker('w1', 20_000);
    const c = await r.client();
    const roomId = await setUpRoom(c, 'kill', [a]);
    await sendMessages(c, roomId, 0, 3);
    await waitFor('A has 3', () => a.messages().length >= 3);
    a.mode = 'hang';
    const before = a.attempts.length;
    await sendMessages(c, roomId, 3, 7);
    await waitFor('a transaction hanging at A', () => a.attempts.length > before);
    const hungTxn = a.attempts.at(-1)!.txnId;
    // A second worker, then the holder of the destination's shard dies mid-send.
    const w2 = await startWorker('w2', 20_000);
    const destShard = `user:${shardOf(a.name, N)}`;
    expect(w1.owned()).toContain(destShard);
    w1.crash();
    a.mode = 'ok';
    await waitFor('w2 holds the destination', () => w2.owned().includes(destShard), 15_000);
    await sendMessages(c, roomId, 10, 5);
    await waitFor('A has 15', () => a.messages().length >= 15, 15_000);
    const resent = a.attempts.filter((t) => t.txnId === hungTxn);
    expect(resent.length).toBeGreaterThanOrEqual(2); // the hung attempt and the new holder's
    expect(a.messages()).toEqual(range(0, 15)); // nothing lost, nothing processed twice
    expect(a.attempts.slice(before).filter((t) => t.txnId !== hungTxn).every((t) => !a.attempts.slice(0, before).some((p) => p.txnId === t.txnId))).toBe(true);
  });

  it('a slow destination gets big batches and delays no other destination', async () => {
    r = await rig('single', { shards: N, room });
    // A long send timeout: A's answer is held until the test has seen everything queued.
    await startWorker('w1', 60_000);
    const c = await r.client();
    const roomId = await setUpRoom(c, 'slow', [a, b]);
    const hasTopic = (x: Receiver) => x.processed.some((p) => p.type === 'm.room.topic');
    await waitFor('both have the topic', () => hasTopic(a) && hasTopic(b));
    const queuedBefore = (await destinationState(a.name))!.nextPdu - 1;
    const attemptsBefore = a.attempts.length;
    let answerA!: () => void;
    a.gate = new Promise((res) => (answerA = res));
    await sendMessages(c, roomId, 0, 120);
    // B gets everything while A has answered nothing.
    await waitFor('B has 120', () => b.messages().length >= 120, 30_000);
    expect(a.messages()).toEqual([]);
    await waitFor('all 120 queued at A', async () => (await destinationState(a.name))!.nextPdu - 1 >= queuedBefore + 120, 30_000);
    answerA();
    await waitFor('A has 120', () => a.messages().length >= 120, 30_000);
    expect(a.messages()).toEqual(range(0, 120));
    expect(a.maxInFlight).toBe(1);
    // The first transaction went out with what was queued when it started; the rest waited
    // behind it and went in full transactions (50 PDUs), the last with what remained.
    const sizes = [...new Map(a.attempts.slice(attemptsBefore).map((t) => [t.txnId, t.pdus])).values()];
    expect(sizes.reduce((x, y) => x + y, 0)).toBe(120);
    expect(sizes.slice(1, -1).every((n) => n === 50)).toBe(true);
    expect(sizes.filter((n) => n === 50).length).toBeGreaterThanOrEqual(1);
  });

  it("an invite goes to the invitee's server; a server the room's ACL denies gets nothing more", async () => {
    r = await rig('single', { shards: N, room });
    await startWorker('w1');
    const c = await r.client();
    const roomId = await setUpRoom(c, 'acl', [a]);
    const carol = `@carol:${b.name}`;
    await c.ask('room', 'room', roomId, { op: 'send', event: { type: 'm.room.member', sender: alice, state_key: carol, content: { membership: 'invite' } } });
    await waitFor('B has the invite', () => b.processed.some((p) => p.type === 'm.room.member' && p.state_key === carol));
    expect(b.processed.every((p) => p.type === 'm.room.member')).toBe(true); // only the invite (B has no joined member)
    await waitFor('A has the invite', () => a.processed.some((p) => p.state_key === carol));
    // B's user joins, then the room denies B.
    await remoteMembership(c, roomId, carol, 'join');
    await sendMessages(c, roomId, 0, 3);
    await waitFor('B has 3', () => b.messages().length >= 3);
    await c.ask('room', 'room', roomId, { op: 'send', event: { type: 'm.room.server_acl', sender: alice, state_key: '', content: { allow: ['*'], deny: [b.ip], allow_ip_literals: true } } });
    await sendMessages(c, roomId, 3, 3);
    await waitFor('A has 6', () => a.messages().length >= 6);
    await new Promise((res) => setTimeout(res, 300));
    expect(a.messages()).toEqual(range(0, 6));
    expect(b.messages()).toEqual(range(0, 3));
    expect(b.processed.some((p) => p.type === 'm.room.server_acl')).toBe(false);
  });

  it('a hanging peer does not hold the actor: events keep being queued while its PUT is out, and one transaction stays in flight', async () => {
    r = await rig('single', { shards: N, room });
    await startWorker('w1', 60_000, { minRetryMs: 200, maxRetryMs: 1000, watchMs: 500 });
    const c = await r.client();
    const roomId = await setUpRoom(c, 'hang', [a]);
    await waitFor('A has the topic', () => a.processed.length >= 1);
    a.mode = 'hang';
    await sendMessages(c, roomId, 0, 1);
    await waitFor('a PUT hanging at A', () => a.inFlight === 1);
    const hungTxn = a.attempts.at(-1)!.txnId;
    // 200 more while the PUT hangs: the actor takes every one (its mailbox is free), and the
    // watch timer firing several times starts no second PUT.
    await sendMessages(c, roomId, 1, 200);
    await waitFor('all queued', async () => (await destinationState(a.name))!.nextPdu - 1 >= 202, 10_000);
    await new Promise((res) => setTimeout(res, 1500));
    const during = await destinationState(a.name);
    expect(during!.inflight).toMatchObject({ txnId: hungTxn, sending: true, attempts: 1 });
    expect(a.attempts.filter((t) => t.txnId === hungTxn).length).toBe(1);
    expect(a.maxInFlight).toBe(1);
    // The peer answers again: the hung request is cut (a failed attempt), the same txn goes again, then the rest.
    a.mode = 'ok';
    a.releaseHung();
    await waitFor('A has 201', () => a.messages().length >= 201, 20_000);
    expect(a.messages()).toEqual(range(0, 201));
    expect(a.maxInFlight).toBe(1);
  });

  it("an inbound request from a peer in backoff ends the backoff at once (the wake-up), instead of waiting out the timer", async () => {
    r = await rig('single', { shards: N, room });
    // A long backoff: without the wake-up the retry would come a minute later.
    await startWorker('w1', 5000, { minRetryMs: 60_000, maxRetryMs: 60_000 });
    const c = await r.client();
    const waker = new DestinationWaker(r.redis, r.keys, r.shardCounts, c);
    const roomId = await setUpRoom(c, 'wake', [a]);
    await waitFor('A has the topic', () => a.processed.length >= 1);
    expect(await waker.wakeIfBackingOff(a.name)).toBe(false); // not backing off: nothing told
    await a.stop();
    await sendMessages(c, roomId, 0, 5);
    await waitFor('backing off', async () => ((await destinationState(a.name))?.failures ?? 0) >= 1);
    const backoffKey = r.keys.shard('user', shardOf(a.name, N)).data('fed:' + a.name + ':backoff');
    expect(Number(await r.redis.get(backoffKey))).toBeGreaterThan(Date.now() + 30_000);
    await a.start();
    const t0 = Date.now();
    expect(await waker.wakeIfBackingOff(a.name)).toBe(true);
    await waitFor('A has 5', () => a.messages().length >= 5, 15_000);
    expect(Date.now() - t0).toBeLessThan(30_000); // well before the backoff would have ended
    expect(a.messages()).toEqual(range(0, 5));
    await waitFor('backoff cleared', async () => (await r.redis.get(backoffKey)) === null);
    expect(await waker.wakeIfBackingOff(a.name)).toBe(false);
  });

  /** What a reader that comes to the room's outbox only now queues: destinations by event id. */
  async function queuedByAReaderBehind(roomId: string, strip = false): Promise<Map<string, string[]>> {
    const reader = new FederationSenderReader(connectRedis(r.target), r.keys, r.shardCounts, OURS, 'behind', silent);
    const told = new Map<string, string[]>();
    (reader as unknown as { actors: unknown }).actors = {
      tell: async (_f: string, _k: string, dest: string, body: { t: string; items: { e: string }[] }) => {
        if (body.t === 'pdus') for (const { e } of body.items) told.set(e, [...(told.get(e) ?? []), dest].sort());
      },
    };
    const shard = shardOf(roomId, N);
    const rows = (await r.redis.xrangeBuffer(r.keys.shard('room', shard).outbox, '-', '+')) as [Buffer, Buffer[]][];
    const entries = rows
      .map(([id, fields]) => ({ id: id.toString(), entry: parseOutboxEntry(fields) }))
      .filter((e) => e.entry?.kind === 'room' && decode<RoomOutput>(e.entry.body).roomId === roomId)
      .map((e) => {
        if (!strip) return e;
        // As an older worker wrote it: no `stateBefore` (the reader reads the event's record).
        const { stateBefore: _sb, ...older } = decode<RoomOutput>(e.entry!.body);
        return { id: e.id, entry: { ...e.entry!, body: encode(older) } };
      });
    await (reader as unknown as { apply(shard: number, entries: unknown[]): Promise<void> }).apply(shard, entries);
    return told;
  }

  it('a reader behind the room sends each event to the servers in the room at it: not to one that joined since, still to one that left since', async () => {
    r = await rig('single', { shards: N, room });
    await r.startWorker('w1'); // the room actors, no sender reader: the test reads the outbox itself
    const c = await r.client();
    const roomId = await setUpRoom(c, 'behind', [a]);
    const send = async (body: string) => (await c.ask<{ event_id: string }>('room', 'room', roomId, { op: 'send', event: { type: 'm.room.message', sender: alice, content: { msgtype: 'm.text', body } } })).event_id;
    const carol = `@carol:${b.name}`;
    const bob = `@bob:${a.name}`;
    const onlyA = await send('before B is in');
    await remoteMembership(c, roomId, carol, 'join');
    const both = await send('A and B are in');
    await remoteMembership(c, roomId, bob, 'leave');
    const onlyB = await send('A has left');
    const ban = (await c.ask<{ event_id: string }>('room', 'room', roomId, { op: 'send', event: { type: 'm.room.member', sender: alice, state_key: carol, content: { membership: 'ban' } } })).event_id;
    const nobody = await send('nobody else is in');
    for (const strip of [false, true]) {
      const told = await queuedByAReaderBehind(roomId, strip);
      expect(told.get(onlyA)).toEqual([a.name]);
      expect(told.get(both)).toEqual([a.name, b.name].sort());
      expect(told.get(onlyB)).toEqual([b.name]);
      expect(told.get(ban)).toEqual([b.name]); // B was in before it
      expect(told.has(nobody)).toBe(false);
      // The remote servers' own events are theirs to send.
      expect([...told.values()].flat().length).toBe(1 + 1 + 2 + 1 + 1); // the topic, then the four above
    }
  });

  it('a reader behind a purged room sends nothing of it and does not stop at its missing snapshots', async () => {
    r = await rig('single', { shards: N, room });
    await r.startWorker('w1');
    const c = await r.client();
    const roomId = await setUpRoom(c, 'purged', [a]);
    await c.ask('room', 'room', roomId, { op: 'send', event: { type: 'm.room.message', sender: alice, content: { msgtype: 'm.text', body: 'then purged' } } });
    await c.ask('room', 'room', roomId, { op: 'send', event: { type: 'm.room.member', sender: alice, state_key: alice, content: { membership: 'leave' } } });
    await c.ask('room', 'room', roomId, { op: 'purge_begin' });
    for (let cursor = '0'; ; ) {
      const p = await c.ask<{ cursor: string; done: boolean }>('room', 'room', roomId, { op: 'purge', cursor }, { timeoutMs: 60_000 });
      if (p.done) break;
      cursor = p.cursor;
    }
    // Outputs naming their snapshots, and older ones (the records are gone too): nothing to send.
    expect((await queuedByAReaderBehind(roomId)).size).toBe(0);
    expect((await queuedByAReaderBehind(roomId, true)).size).toBe(0);
  });

  it('counts the servers in the room at every snapshot as a full read of the snapshot does (chains past 64 deltas, rebased roots)', async () => {
    r = await rig('single', { shards: N, room });
    await r.startWorker('w1');
    const c = await r.client();
    const roomId = await setUpRoom(c, 'counts', [a, b]);
    // 90 membership changes of local and remote users, interleaved with messages.
    for (let i = 0; i < 90; i++) {
      const remote = i % 3 === 0;
      const user = remote ? `@u${i % 9}:${(i % 2 ? a : b).name}` : `@u${i % 7}:${OURS}`;
      const reader = new RoomReader(r.redis, r.keys, N);
      const now = await reader.membership(roomId, user);
      const membership = now === 'join' ? 'leave' : 'join';
      if (remote) await remoteMembership(c, roomId, user, membership);
      else await c.ask('room', 'room', roomId, { op: 'send', event: { type: 'm.room.member', sender: user, state_key: user, content: { membership } } });
      if (i % 10 === 0) await c.ask('room', 'room', roomId, { op: 'send', event: { type: 'm.room.message', sender: alice, content: { msgtype: 'm.text', body: `m${i}` } } });
      // The ACL changes now and then (carried along the chain with the counts).
      if (i % 30 === 7) await c.ask('room', 'room', roomId, { op: 'send', event: { type: 'm.room.server_acl', sender: alice, state_key: '', content: { allow: ['*'], deny: [`x${i}.example`], allow_ip_literals: true } } });
    }
    const probe = new RoomReader(r.redis, r.keys, N);
    const timeline = await r.redis.zrange(r.keys.shard('room', shardOf(roomId, N)).data(roomData.timeline(roomId)), 0, -1);
    const events = await probe.events(roomId, timeline);
    expect(events.length).toBeGreaterThan(100);
    const warm = new RoomReader(r.redis, r.keys, N); // one reader along the timeline: each snapshot from its parent's counts
    const seen = new Set<number>();
    for (const e of events) {
      for (const sid of [e.stateBefore, e.stateAfter]) {
        if (seen.has(sid)) continue;
        seen.add(sid);
        // By hand: every member event of the snapshot read, the joined ones counted by server.
        const state = await new RoomReader(r.redis, r.keys, N).snapshot(roomId, sid);
        const memberIds = [...state].filter(([k]) => k.startsWith(stateKeyOf('m.room.member', ''))).map(([, id]) => id);
        const expected = new Map<string, number>();
        for (const m of await probe.events(roomId, memberIds)) {
          if ((m.event.content as { membership?: string }).membership !== 'join') continue;
          const server = serverOf(m.event.state_key as string)!;
          expected.set(server, (expected.get(server) ?? 0) + 1);
        }
        const cold = new RoomReader(r.redis, r.keys, N); // straight down its chain to the root
        const aclId = state.get(stateKeyOf('m.room.server_acl', '')) ?? null;
        expect(await cold.joinedServersAt(roomId, sid)).toEqual({ joined: expected, serverAcl: aclId });
        expect(await warm.joinedServersAt(roomId, sid)).toEqual({ joined: expected, serverAcl: aclId });
      }
    }
    expect(seen.size).toBeGreaterThan(90);
  });
});
