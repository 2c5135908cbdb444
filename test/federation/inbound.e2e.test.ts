/**
 * Inbound federation against a real Axon over TLS on loopback: a signing test peer (its own key,
 * served from its own HTTPS key server, so Axon fetches and checks it) joins a public Axon room by
 * a signed join in a transaction (the inbound half of send_join), then sends messages, forgeries,
 * replays, oversized and badly signed transactions; a server the room's ACL denies is refused; a
 * PDU with a missing prev event makes Axon call `/get_missing_events` (and `/state_ids` + `/event`
 * for a gap wider than that) on the origin. Then every read endpoint for peers, for the joined peer
 * and for a server with no user in the room.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signingKeyFromSeed } from '../../src/protocol/crypto';
import { authEventSelection } from '../../src/protocol/auth-rules';
import type { JsonObject } from '../../src/protocol/json';
import { stateKeyOf } from '../../src/protocol/pdu';
import { requireRoomVersion } from '../../src/protocol/room-versions';
import { shardCountsFor } from '../../src/runtime/cluster-settings';
import { KeySpace } from '../../src/store/keys';
import { RoomReader } from '../../src/store/room-reader';
import { clientsFor, enc, eventually, type Clients, type Json, type Session } from '../e2e/clients';
import type { TestServer } from '../e2e/server-harness';
import { createTestCa, type TestCa } from '../peers/test-ca';
import { startFederatedAxon } from './harness';
import { SigningPeer } from './signing-peer';

const A_IP = '127.0.0.41';
const P_IP = '127.0.0.42';
const E_IP = '127.0.0.43';
const D_IP = '127.0.0.44';
const VERSION = requireRoomVersion('10');

let ca: TestCa;
let a: TestServer;
let clients: Clients;
let alice: Session;
let peer: SigningPeer;
let outsider: SigningPeer;
let denied: SigningPeer;
let reader: RoomReader;
let roomId: string;
let pat: string;

/** An event built by `by` on Axon's view of the room (auth events from its current state). */
async function build(by: SigningPeer, t: { type: string; sender: string; content: JsonObject; stateKey?: string; prev?: string[]; depth?: number }): Promise<{ pdu: JsonObject; id: string }> {
  const meta = (await reader.meta(roomId))!;
  const prev = t.prev ?? meta.extremities;
  const state = await reader.currentStateIds(roomId);
  const depth = t.depth ?? Math.max(...(await reader.events(roomId, prev)).map((e) => e.depth)) + 1;
  const auth = authEventSelection({ type: t.type, stateKey: t.stateKey, sender: t.sender, content: t.content }, VERSION)
    .map(([type, key]) => state.get(stateKeyOf(type, key)))
    .filter((x): x is string => !!x);
  const raw: JsonObject = { room_id: roomId, sender: t.sender, type: t.type, content: t.content, origin_server_ts: Date.now(), depth, prev_events: prev, auth_events: auth };
  if (t.stateKey !== undefined) raw.state_key = t.stateKey;
  return by.sign(raw, VERSION);
}

/** A chain of `n` messages from pat, the first on the room's extremities. */
async function chain(n: number, label: string): Promise<{ pdu: JsonObject; id: string }[]> {
  const out: { pdu: JsonObject; id: string }[] = [];
  for (let i = 0; i < n; i++) {
    const prev = out.length ? [out[out.length - 1]!.id] : undefined;
    const depth = out.length ? (out[out.length - 1]!.pdu.depth as number) + 1 : undefined;
    out.push(await build(peer, { type: 'm.room.message', sender: pat, content: { msgtype: 'm.text', body: `${label} ${i}` }, prev, depth }));
  }
  return out;
}

async function bodies(): Promise<string[]> {
  const r = await clients.call(alice, 'GET', `/rooms/${enc(roomId)}/messages?dir=b&limit=200`);
  expect(r.status).toBe(200);
  return r.body.chunk.filter((e: Json) => e.type === 'm.room.message').map((e: Json) => e.content.body as string);
}

const txnId = () => `t${randomBytes(6).toString('hex')}`;

beforeAll(async () => {
  ca = createTestCa();
  a = await startFederatedAxon(A_IP, ca);
  [peer, outsider, denied] = await Promise.all([SigningPeer.start(P_IP, ca), SigningPeer.start(E_IP, ca), SigningPeer.start(D_IP, ca)]);
  clients = await clientsFor(a);
  alice = await clients.mint('alice');
  reader = new RoomReader(a.redis, new KeySpace(a.config.redis.keyPrefix), shardCountsFor(a.config).room);
  const created = await clients.call(alice, 'POST', '/createRoom', { preset: 'public_chat', room_version: '10', name: 'fed' });
  expect(created.status, JSON.stringify(created.body)).toBe(200);
  roomId = created.body.room_id;
  pat = `@pat:${peer.serverName}`;
}, 60_000);

afterAll(async () => {
  await clients?.close();
  await Promise.all([peer?.close(), outsider?.close(), denied?.close()]);
  await a?.stop();
  ca?.cleanup();
});

describe('inbound transactions (PUT /send/{txnId})', () => {
  it('a peer joins a public room with a signed join event in a transaction', async () => {
    const join = await build(peer, { type: 'm.room.member', sender: pat, stateKey: pat, content: { membership: 'join' } });
    const r = await peer.sendTransaction(a, txnId(), [join.pdu]);
    expect(r.status, r.text).toBe(200);
    expect(r.body.pdus).toEqual({ [join.id]: {} });
    expect(await reader.membership(roomId, pat)).toBe('join');
    // Axon fetched the peer's key document from the peer's own HTTPS server.
    expect(peer.requests.some((q) => q.path.startsWith('/_matrix/key/v2/server'))).toBe(true);
  });

  it('messages in a transaction are stored and reach local users through /messages and /sync', async () => {
    const msgs = await chain(3, 'hello');
    const started = performance.now();
    const r = await peer.sendTransaction(a, txnId(), msgs.map((m) => m.pdu));
    console.log(`inbound.e2e: 3-PDU transaction answered in ${Math.round(performance.now() - started)} ms`);
    expect(r.status, r.text).toBe(200);
    expect(r.body.pdus).toEqual(Object.fromEntries(msgs.map((m) => [m.id, {}])));
    expect((await bodies()).slice(0, 3)).toEqual(['hello 2', 'hello 1', 'hello 0']);
    const sync = await eventually(
      () => clients.call(alice, 'GET', '/sync?timeout=0'),
      (s) => (s.body.rooms?.join?.[roomId]?.timeline?.events ?? []).some((e: Json) => e.content?.body === 'hello 2'),
    );
    const timeline = sync.body.rooms.join[roomId].timeline.events.map((e: Json) => e.content?.body).filter(Boolean);
    expect(timeline).toEqual(expect.arrayContaining(['hello 0', 'hello 1', 'hello 2']));
  });

  it('a 50-PDU transaction: throughput figure', async () => {
    const msgs = await chain(50, 'bulk');
    const started = performance.now();
    const r = await peer.sendTransaction(a, txnId(), msgs.map((m) => m.pdu));
    const ms = performance.now() - started;
    expect(r.status, r.text).toBe(200);
    expect(Object.values(r.body.pdus).every((v) => JSON.stringify(v) === '{}')).toBe(true);
    console.log(`inbound.e2e: 50-PDU transaction in ${Math.round(ms)} ms (${Math.round((50 * 1000) / ms)} PDUs/s, one room, chained)`);
  });

  it('a forged PDU (bad signature) fails alone; a PDU with a bad content hash is stored redacted; the rest go through', async () => {
    const [good1] = await chain(1, 'before forgery');
    const forgedKey = signingKeyFromSeed(peer.key.keyId, randomBytes(32));
    const forgerPeer = Object.create(peer, { key: { value: forgedKey } }) as SigningPeer;
    const forged = await build(forgerPeer, { type: 'm.room.message', sender: pat, content: { msgtype: 'm.text', body: 'forged' }, prev: [good1!.id], depth: (good1!.pdu.depth as number) + 1 });
    const hashed = await build(peer, { type: 'm.room.message', sender: pat, content: { msgtype: 'm.text', body: 'original' }, prev: [good1!.id], depth: (good1!.pdu.depth as number) + 1 });
    const tampered = { ...hashed.pdu, content: { msgtype: 'm.text', body: 'tampered' } };
    const good2 = await build(peer, { type: 'm.room.message', sender: pat, content: { msgtype: 'm.text', body: 'after forgery' }, prev: [good1!.id], depth: (good1!.pdu.depth as number) + 1 });
    const r = await peer.sendTransaction(a, txnId(), [good1!.pdu, forged.pdu, tampered, good2.pdu]);
    expect(r.status, r.text).toBe(200);
    expect(r.body.pdus[good1!.id]).toEqual({});
    expect(r.body.pdus[good2.id]).toEqual({});
    expect(r.body.pdus[forged.id].error).toMatch(/signature/);
    expect(r.body.pdus[hashed.id]).toEqual({});
    const seen = await bodies();
    expect(seen).toContain('before forgery 0');
    expect(seen).toContain('after forgery');
    expect(seen).not.toContain('forged');
    expect(seen).not.toContain('tampered');
    expect(seen).not.toContain('original');
    const stored = await reader.event(roomId, hashed.id);
    expect(stored?.event.content).toEqual({});
    expect(await reader.event(roomId, forged.id)).toBeNull();
  });

  it('a replayed txn id is answered from the first result and processed once — also two at once', async () => {
    const id = txnId();
    const [m1] = await chain(1, 'replay first');
    const first = await peer.sendTransaction(a, id, [m1!.pdu]);
    expect(first.status).toBe(200);
    const [m2] = await chain(1, 'replay second');
    const again = await peer.sendTransaction(a, id, [m2!.pdu]);
    expect(again.status).toBe(200);
    expect(again.body).toEqual(first.body);
    expect(await bodies()).not.toContain('replay second 0');

    const id2 = txnId();
    const [c1] = await chain(1, 'concurrent one');
    const [c2] = await build(peer, { type: 'm.room.message', sender: pat, content: { msgtype: 'm.text', body: 'concurrent two' }, prev: c1!.pdu.prev_events as string[], depth: c1!.pdu.depth as number }).then((x) => [x]);
    const [x, y] = await Promise.all([peer.sendTransaction(a, id2, [c1!.pdu]), peer.sendTransaction(a, id2, [c2!.pdu])]);
    expect(x.status).toBe(200);
    expect(y.status).toBe(200);
    expect(x.body).toEqual(y.body);
    const seen = await bodies();
    expect(seen.filter((b) => b === 'concurrent one 0' || b === 'concurrent two')).toHaveLength(1);
  });

  it('an oversized transaction (51 PDUs) is refused whole: 400 M_BAD_JSON', async () => {
    const msgs = await chain(51, 'oversized');
    const r = await peer.sendTransaction(a, txnId(), msgs.map((m) => m.pdu));
    expect(r.status).toBe(400);
    expect(r.body.errcode).toBe('M_BAD_JSON');
    expect(await bodies()).not.toContain('oversized 0');
  });

  it('a transaction with a wrong X-Matrix signature: 401 M_UNAUTHORIZED', async () => {
    const [m] = await chain(1, 'badly signed request');
    const wrongKey = signingKeyFromSeed(peer.key.keyId, randomBytes(32));
    const path = `/_matrix/federation/v1/send/${txnId()}`;
    const r = await peer.request(a, 'PUT', path, { origin: peer.serverName, origin_server_ts: Date.now(), pdus: [m!.pdu] }, wrongKey);
    expect(r.status).toBe(401);
    expect(r.body.errcode).toBe('M_UNAUTHORIZED');
    expect(await bodies()).not.toContain('badly signed request 0');
  });

  it('EDUs are checked and dropped; malformed PDUs and unknown rooms get no crash', async () => {
    const r = await peer.sendTransaction(a, txnId(), [{ not: 'a pdu' }, { room_id: '!nowhere:elsewhere', type: 'm.room.message', sender: pat, content: {} }], [{ edu_type: 'm.typing', content: {} }, { bad: 1 }]);
    expect(r.status, r.text).toBe(200);
    const entries = Object.values(r.body.pdus) as Json[];
    expect(entries).toHaveLength(1);
    expect(entries[0]!.error).toMatch(/unknown room/);
  });

  it("a server the room's ACL denies gets its PDUs refused", async () => {
    const acl = await clients.call(alice, 'PUT', `/rooms/${enc(roomId)}/state/m.room.server_acl/`, { allow: ['*'], deny: [D_IP] });
    expect(acl.status, JSON.stringify(acl.body)).toBe(200);
    const dan = `@dan:${denied.serverName}`;
    const join = await build(denied, { type: 'm.room.member', sender: dan, stateKey: dan, content: { membership: 'join' } });
    const r = await denied.sendTransaction(a, txnId(), [join.pdu]);
    expect(r.status, r.text).toBe(200);
    expect(r.body.pdus[join.id].error).toMatch(/server ACL/);
    expect(await reader.membership(roomId, dan)).toBeNull();
    // The peer may still send, and the denied server cannot read either.
    const [m] = await chain(1, 'after the acl');
    expect((await peer.sendTransaction(a, txnId(), [m!.pdu])).body.pdus[m!.id]).toEqual({});
    expect((await denied.request(a, 'GET', `/_matrix/federation/v1/state_ids/${enc(roomId)}?event_id=${enc(m!.id)}`)).status).toBe(403);
  });

  it('a PDU whose prev events are missing makes Axon fetch them with get_missing_events from the origin', async () => {
    const msgs = await chain(4, 'gap');
    const last = msgs[3]!;
    const before = peer.requests.length;
    const r = await peer.sendTransaction(a, txnId(), [last.pdu]);
    expect(r.status, r.text).toBe(200);
    expect(r.body.pdus).toEqual({ [last.id]: {} });
    const asked = peer.requests.slice(before).filter((q) => q.path.includes('/get_missing_events/'));
    expect(asked).toHaveLength(1);
    expect((asked[0]!.body as Json).latest_events).toEqual([last.id]);
    expect((asked[0]!.body as Json).limit).toBe(10);
    expect((await bodies()).slice(0, 4)).toEqual(['gap 3', 'gap 2', 'gap 1', 'gap 0']);
  });

  it('a gap wider than get_missing_events: the state before the PDU comes from /state_ids + /event', async () => {
    const state = [...(await reader.currentStateIds(roomId)).values()];
    const msgs = await chain(14, 'wide');
    const last = msgs[13]!;
    // The peer's state before its 13th message: the room's state (messages change none).
    peer.stateBefore.set(msgs[12]!.id, state);
    const before = peer.requests.length;
    const r = await peer.sendTransaction(a, txnId(), [last.pdu]);
    expect(r.status, r.text).toBe(200);
    expect(r.body.pdus).toEqual({ [last.id]: {} });
    const paths = peer.requests.slice(before).map((q) => q.path);
    expect(paths.some((p) => p.includes('/get_missing_events/'))).toBe(true);
    expect(paths.some((p) => p.includes('/state_ids/'))).toBe(true);
    expect(paths.some((p) => p.includes(`/event/${enc(msgs[12]!.id)}`))).toBe(true);
    expect(await bodies()).toContain('wide 13');
  });
});

describe('read endpoints for peers', () => {
  let ids: string[];
  let createId: string;

  beforeAll(async () => {
    const msgs = await chain(3, 'read');
    const r = await peer.sendTransaction(a, txnId(), msgs.map((m) => m.pdu));
    expect(r.status).toBe(200);
    ids = msgs.map((m) => m.id);
    createId = (await reader.currentStateIds(roomId)).get(stateKeyOf('m.room.create', ''))!;
  });

  const paths = () => ({
    event: ['GET', `/_matrix/federation/v1/event/${enc(ids[0]!)}`],
    state: ['GET', `/_matrix/federation/v1/state/${enc(roomId)}?event_id=${enc(ids[0]!)}`],
    stateIds: ['GET', `/_matrix/federation/v1/state_ids/${enc(roomId)}?event_id=${enc(ids[0]!)}`],
    eventAuth: ['GET', `/_matrix/federation/v1/event_auth/${enc(roomId)}/${enc(ids[0]!)}`],
    backfill: ['GET', `/_matrix/federation/v1/backfill/${enc(roomId)}?v=${enc(ids[2]!)}&limit=5`],
    missing: ['POST', `/_matrix/federation/v1/get_missing_events/${enc(roomId)}`, { earliest_events: [ids[0]!], latest_events: [ids[2]!], limit: 10 }],
    timestamp: ['GET', `/_matrix/federation/v1/timestamp_to_event/${enc(roomId)}?ts=0&dir=f`],
  }) as Record<string, [string, string, unknown?]>;

  it('answer the joined peer in the spec shapes, PDUs in federation format', async () => {
    const p = paths();
    const ask = (k: string) => peer.request(a, p[k]![0], p[k]![1], p[k]![2]);
    const event = await ask('event');
    expect(event.status, event.text).toBe(200);
    expect(event.body.origin).toBe(a.serverName);
    expect(typeof event.body.origin_server_ts).toBe('number');
    expect(event.body.pdus).toHaveLength(1);
    expect(event.body.pdus[0].content.body).toBe('read 0');
    expect(event.body.pdus[0].signatures[peer.serverName]).toBeDefined();
    expect(event.body.pdus[0].hashes.sha256).toBeDefined();

    const state = await ask('state');
    expect(state.status, state.text).toBe(200);
    expect(state.body.pdus.map((e: Json) => e.type)).toEqual(expect.arrayContaining(['m.room.create', 'm.room.member', 'm.room.power_levels', 'm.room.server_acl']));
    expect(Array.isArray(state.body.auth_chain)).toBe(true);
    const stateIds = await ask('stateIds');
    expect(stateIds.status).toBe(200);
    expect(stateIds.body.pdu_ids).toContain(createId);
    expect(stateIds.body.pdu_ids).toHaveLength(state.body.pdus.length);
    expect(Array.isArray(stateIds.body.auth_chain_ids)).toBe(true);

    const auth = await ask('eventAuth');
    expect(auth.status).toBe(200);
    expect(auth.body.auth_chain.map((e: Json) => e.type)).toEqual(expect.arrayContaining(['m.room.create', 'm.room.power_levels', 'm.room.member']));

    const backfill = await ask('backfill');
    expect(backfill.status).toBe(200);
    expect(backfill.body.origin).toBe(a.serverName);
    expect(backfill.body.pdus).toHaveLength(5);
    expect(backfill.body.pdus.slice(0, 3).map((e: Json) => e.content.body)).toEqual(['read 2', 'read 1', 'read 0']);

    const missing = await ask('missing');
    expect(missing.status, missing.text).toBe(200);
    expect(missing.body.events.map((e: Json) => e.content.body)).toEqual(['read 1']);

    const ts = await ask('timestamp');
    expect(ts.status, ts.text).toBe(200);
    expect(ts.body.event_id).toBe(createId);
  });

  it('refuse a server with no user in the room: 403 M_FORBIDDEN', async () => {
    const p = paths();
    for (const [name, [method, path, body]] of Object.entries(p)) {
      const r = await outsider.request(a, method, path, body);
      expect(r.status, `${name}: ${r.text}`).toBe(403);
      expect(r.body.errcode).toBe('M_FORBIDDEN');
    }
  });

  it('history the peer may not see is sent redacted (history_visibility joined, before its join)', async () => {
    const hv = await clients.call(alice, 'PUT', `/rooms/${enc(roomId)}/state/m.room.history_visibility/`, { history_visibility: 'joined' });
    expect(hv.status).toBe(200);
    const leave = await build(peer, { type: 'm.room.member', sender: pat, stateKey: pat, content: { membership: 'leave' } });
    expect((await peer.sendTransaction(a, txnId(), [leave.pdu])).body.pdus[leave.id]).toEqual({});
    const secret = await clients.call(alice, 'PUT', `/rooms/${enc(roomId)}/send/m.room.message/${txnId()}`, { msgtype: 'm.text', body: 'secret' });
    expect(secret.status).toBe(200);
    // Pat has left: the peer has no user in the room any more.
    expect((await peer.request(a, 'GET', `/_matrix/federation/v1/event/${enc(secret.body.event_id)}`)).status).toBe(403);
    const back = await build(peer, { type: 'm.room.member', sender: pat, stateKey: pat, content: { membership: 'join' } });
    expect((await peer.sendTransaction(a, txnId(), [back.pdu])).body.pdus[back.id]).toEqual({});
    const r = await peer.request(a, 'GET', `/_matrix/federation/v1/event/${enc(secret.body.event_id)}`);
    expect(r.status, r.text).toBe(200);
    expect(r.body.pdus[0].content).toEqual({});
    const bf = await peer.request(a, 'GET', `/_matrix/federation/v1/backfill/${enc(roomId)}?v=${enc(back.id)}&limit=3`);
    expect(bf.status).toBe(200);
    const secretPdu = bf.body.pdus.find((e: Json) => e.type === 'm.room.message');
    expect(secretPdu.content).toEqual({});
  });
});
