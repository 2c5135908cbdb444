/**
 * An inbound PDU whose auth events Axon does not have, though its prev_events are known: a real
 * Axon over TLS on loopback and a signing peer whose user joined the room. The peer updates its
 * user's membership (a new displayname) without sending it, then sends a message citing that
 * update as an auth event. Axon fetches the unknown auth event from the origin with `/event`,
 * takes it as an outlier, and accepts the message; a message citing an auth event the origin does
 * not have either stays refused.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authEventSelection } from '../../src/protocol/auth-rules';
import type { JsonObject } from '../../src/protocol/json';
import { stateKeyOf } from '../../src/protocol/pdu';
import { requireRoomVersion } from '../../src/protocol/room-versions';
import { shardCountsFor } from '../../src/runtime/cluster-settings';
import { KeySpace } from '../../src/store/keys';
import { RoomReader } from '../../src/store/room-reader';
import { clientsFor, type Clients, type Session } from '../e2e/clients';
import type { TestServer } from '../e2e/server-harness';
import { createTestCa, type TestCa } from '../peers/test-ca';
import { startFederatedAxon } from './harness';
import { SigningPeer } from './signing-peer';

const A_IP = '127.0.0.183';
const P_IP = '127.0.0.184';
const VERSION = requireRoomVersion('10');

let ca: TestCa;
let a: TestServer;
let clients: Clients;
let alice: Session;
let peer: SigningPeer;
let reader: RoomReader;
let roomId: string;
let pat: string;

async function build(t: { type: string; content: JsonObject; stateKey?: string; auth?: (ids: string[]) => string[] }): Promise<{ pdu: JsonObject; id: string }> {
  const meta = (await reader.meta(roomId))!;
  const state = await reader.currentStateIds(roomId);
  const depth = Math.max(...(await reader.events(roomId, meta.extremities)).map((e) => e.depth)) + 1;
  let auth = authEventSelection({ type: t.type, stateKey: t.stateKey, sender: pat, content: t.content }, VERSION)
    .map(([type, key]) => state.get(stateKeyOf(type, key)))
    .filter((x): x is string => !!x);
  if (t.auth) auth = t.auth(auth);
  const raw: JsonObject = { room_id: roomId, sender: pat, type: t.type, content: t.content, origin_server_ts: Date.now(), depth, prev_events: meta.extremities, auth_events: auth };
  if (t.stateKey !== undefined) raw.state_key = t.stateKey;
  return peer.sign(raw, VERSION);
}

beforeAll(async () => {
  ca = createTestCa();
  a = await startFederatedAxon(A_IP, ca);
  peer = await SigningPeer.start(P_IP, ca);
  clients = await clientsFor(a);
  alice = await clients.mint('alice');
  reader = new RoomReader(a.redis, new KeySpace(a.config.redis.keyPrefix), shardCountsFor(a.config).room);
  const created = await clients.call(alice, 'POST', '/createRoom', { preset: 'public_chat', room_version: '10' });
  expect(created.status, JSON.stringify(created.body)).toBe(200);
  roomId = created.body.room_id;
  pat = `@pat:${peer.serverName}`;
  const join = await build({ type: 'm.room.member', stateKey: pat, content: { membership: 'join' } });
  const r = await peer.sendTransaction(a, `t${randomBytes(6).toString('hex')}`, [join.pdu]);
  expect(r.body.pdus).toEqual({ [join.id]: {} });
}, 120_000);

afterAll(async () => {
  await clients?.close();
  await peer?.close();
  await a?.stop();
  ca?.cleanup();
});

describe('inbound PDUs with unknown auth events', () => {
  it('fetches the unknown auth event from the origin and accepts the PDU', { timeout: 120_000 }, async () => {
    // The peer's membership update, never sent to Axon (its server "has" it: /event serves it).
    const rename = await build({ type: 'm.room.member', stateKey: pat, content: { membership: 'join', displayname: 'Pat' } });
    const memberKey = stateKeyOf('m.room.member', pat);
    const state = await reader.currentStateIds(roomId);
    const msg = await build({ type: 'm.room.message', content: { msgtype: 'm.text', body: 'authed by the rename' }, auth: (ids) => ids.map((id) => (id === state.get(memberKey) ? rename.id : id)) });
    expect(refsOf(msg.pdu.auth_events)).toContain(rename.id);
    peer.requests.length = 0;
    const r = await peer.sendTransaction(a, `t${randomBytes(6).toString('hex')}`, [msg.pdu]);
    expect(r.status, r.text).toBe(200);
    expect(r.body.pdus).toEqual({ [msg.id]: {} });
    expect(peer.requests.some((q) => q.method === 'GET' && q.path === `/_matrix/federation/v1/event/${encodeURIComponent(rename.id)}`)).toBe(true);
    const stored = await reader.event(roomId, rename.id);
    expect(stored?.outlier).toBe(true);
    expect((await reader.event(roomId, msg.id))?.outlier).toBeFalsy();
  });

  it('a PDU citing an auth event nobody can give stays refused', { timeout: 120_000 }, async () => {
    const ghost = `$${randomBytes(32).toString('base64url').slice(0, 43)}`;
    const msg = await build({ type: 'm.room.message', content: { msgtype: 'm.text', body: 'ghost auth' }, auth: (ids) => [...ids, ghost] });
    const r = await peer.sendTransaction(a, `t${randomBytes(6).toString('hex')}`, [msg.pdu]);
    expect(r.status, r.text).toBe(200);
    expect(r.body.pdus[msg.id]?.error).toBeTruthy();
    expect(await reader.event(roomId, msg.id)).toBeNull();
  });
});

function refsOf(refs: unknown): string[] {
  return Array.isArray(refs) ? refs.map((x) => (Array.isArray(x) ? x[0] : x)) : [];
}
