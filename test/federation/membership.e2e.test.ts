/**
 * The resident side of membership over federation, against a real Axon over TLS on loopback with
 * a signing test peer: the peer's user joins a public Axon room through make_join/send_join (the
 * answer's state and auth chain check out: hashes and Axon's signatures), is then a member local
 * users see in /members and /sync, and leaves through make_leave/send_leave. Refusals: a banned
 * user (403), a room version the peer does not support (400 M_INCOMPATIBLE_ROOM_VERSION), a user
 * of another server (403), a send_join whose event id does not match the path (400). Alias
 * resolution for peers (/query/directory). Knocks: make_knock refusals (no or a wrong `ver`, a
 * user of another server, a room that is not knockable, a banned user, a server the ACL denies)
 * and a knock through make_knock/send_knock answered with the room's stripped state.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeBase64 } from '../../src/protocol/base64';
import { checkContentHash, computeEventId, verifyEventSignature } from '../../src/protocol/event-hashing';
import type { JsonObject } from '../../src/protocol/json';
import { requireRoomVersion } from '../../src/protocol/room-versions';
import { clientsFor, enc, eventually, type Clients, type Json, type Session } from '../e2e/clients';
import type { TestServer } from '../e2e/server-harness';
import { createTestCa, type TestCa } from '../peers/test-ca';
import { fedRequest, startFederatedAxon } from './harness';
import { SigningPeer } from './signing-peer';

const A_IP = '127.0.0.61';
const P_IP = '127.0.0.62';
const VERSION = requireRoomVersion('10');

let ca: TestCa;
let a: TestServer;
let clients: Clients;
let alice: Session;
let peer: SigningPeer;
let roomId: string;
let alias: string;
let pat: string;
let axonKeys: Record<string, string>;

beforeAll(async () => {
  ca = createTestCa();
  a = await startFederatedAxon(A_IP, ca);
  peer = await SigningPeer.start(P_IP, ca);
  clients = await clientsFor(a);
  alice = await clients.mint('alice');
  const created = await clients.call(alice, 'POST', '/createRoom', { preset: 'public_chat', room_version: '10', name: 'joinable', room_alias_name: 'joinable' });
  expect(created.status, JSON.stringify(created.body)).toBe(200);
  roomId = created.body.room_id;
  alias = `#joinable:${a.serverName}`;
  pat = `@pat:${peer.serverName}`;
  const doc = await fedRequest(ca.caPath, `${a.federationUrl}/_matrix/key/v2/server`, 'GET', {});
  axonKeys = Object.fromEntries(Object.entries(doc.body.verify_keys as Record<string, { key: string }>).map(([id, k]) => [id, k.key]));
}, 60_000);

afterAll(async () => {
  await clients?.close();
  await peer?.close();
  await a?.stop();
  ca?.cleanup();
});

function signedByAxon(pdu: JsonObject): boolean {
  return Object.entries(axonKeys).some(([id, key]) => verifyEventSignature(pdu, VERSION, a.serverName, id, decodeBase64(key)).ok);
}

async function makeAndSend(kind: 'join' | 'leave', userId: string): Promise<{ id: string; answer: Json }> {
  const made = await peer.request(a, 'GET', `/_matrix/federation/v1/make_${kind}/${enc(roomId)}/${enc(userId)}${kind === 'join' ? '?ver=9&ver=10' : ''}`);
  expect(made.status, made.text).toBe(200);
  expect(made.body.room_version).toBe('10');
  const template = made.body.event as JsonObject;
  expect(template.hashes).toBeUndefined();
  expect(template.signatures).toBeUndefined();
  const { pdu, id } = peer.sign(template, VERSION);
  const sent = await peer.request(a, 'PUT', `/_matrix/federation/v2/send_${kind}/${enc(roomId)}/${enc(id)}`, pdu);
  expect(sent.status, sent.text).toBe(200);
  return { id, answer: sent.body };
}

describe('remote users join and leave our rooms (make_join/send_join, make_leave/send_leave)', () => {
  it('query/directory resolves our alias for a peer; an unknown alias is 404', async () => {
    const r = await peer.request(a, 'GET', `/_matrix/federation/v1/query/directory?room_alias=${enc(alias)}`);
    expect(r.status, r.text).toBe(200);
    expect(r.body).toEqual({ room_id: roomId, servers: [a.serverName] });
    const missing = await peer.request(a, 'GET', `/_matrix/federation/v1/query/directory?room_alias=${enc(`#nope:${a.serverName}`)}`);
    expect(missing.status).toBe(404);
    expect(missing.body.errcode).toBe('M_NOT_FOUND');
  });

  it('a room version the peer does not list: 400 M_INCOMPATIBLE_ROOM_VERSION with room_version', async () => {
    const r = await peer.request(a, 'GET', `/_matrix/federation/v1/make_join/${enc(roomId)}/${enc(pat)}?ver=1&ver=2`);
    expect(r.status).toBe(400);
    expect(r.body.errcode).toBe('M_INCOMPATIBLE_ROOM_VERSION');
    expect(r.body.room_version).toBe('10');
  });

  it('a user of another server: 403', async () => {
    const r = await peer.request(a, 'GET', `/_matrix/federation/v1/make_join/${enc(roomId)}/${enc('@mallory:elsewhere.example')}?ver=10`);
    expect(r.status).toBe(403);
  });

  it('make_join → sign → send_join: state and auth chain verify, and the user is a member local users see', async () => {
    const started = performance.now();
    const { id, answer } = await makeAndSend('join', pat);
    console.log(`membership.e2e: make_join + send_join in ${Math.round(performance.now() - started)} ms`);
    expect(answer.origin).toBe(a.serverName);
    expect(answer.members_omitted).toBe(false);
    expect(answer.servers_in_room).toEqual(expect.arrayContaining([a.serverName, peer.serverName]));
    expect(computeEventId(answer.event, VERSION)).toBe(id);
    const state = answer.state as JsonObject[];
    const chain = answer.auth_chain as JsonObject[];
    const types = state.map((e) => `${e.type}|${e.state_key}`);
    expect(types).toEqual(expect.arrayContaining(['m.room.create|', 'm.room.power_levels|', 'm.room.join_rules|', `m.room.member|${alice.userId}`]));
    expect(types).not.toContain(`m.room.member|${pat}`); // the state before the join
    for (const pdu of [...state, ...chain]) {
      expect(checkContentHash(pdu), `hash of ${pdu.type}`).toBe(true);
      expect(signedByAxon(pdu), `signature on ${pdu.type}`).toBe(true);
    }
    // Every auth event of the join is in the state or the chain.
    const have = new Set([...state, ...chain].map((e) => computeEventId(e, VERSION)));
    for (const ref of answer.event.auth_events as string[]) expect(have.has(ref)).toBe(true);

    const members = await clients.call(alice, 'GET', `/rooms/${enc(roomId)}/members`);
    expect(members.status).toBe(200);
    expect(members.body.chunk.map((e: Json) => e.state_key)).toContain(pat);
    await eventually(
      () => clients.call(alice, 'GET', '/sync?timeout=0'),
      (s) => (s.body.rooms?.join?.[roomId]?.timeline?.events ?? []).some((e: Json) => e.state_key === pat && e.content?.membership === 'join'),
    );
  });

  it('a retried send_join is answered again, with the same state', async () => {
    const made = await peer.request(a, 'GET', `/_matrix/federation/v1/make_join/${enc(roomId)}/${enc(pat)}?ver=10`);
    expect(made.status, made.text).toBe(200);
    const { pdu, id } = peer.sign(made.body.event, VERSION);
    const first = await peer.request(a, 'PUT', `/_matrix/federation/v2/send_join/${enc(roomId)}/${enc(id)}`, pdu);
    expect(first.status, first.text).toBe(200);
    const again = await peer.request(a, 'PUT', `/_matrix/federation/v2/send_join/${enc(roomId)}/${enc(id)}`, pdu);
    expect(again.status, again.text).toBe(200);
    expect(again.body.state.length).toBe(first.body.state.length);
  });

  it('send_join with an event id that does not match the path: 400', async () => {
    const made = await peer.request(a, 'GET', `/_matrix/federation/v1/make_join/${enc(roomId)}/${enc(`@other:${peer.serverName}`)}?ver=10`);
    const { pdu } = peer.sign(made.body.event, VERSION);
    const r = await peer.request(a, 'PUT', `/_matrix/federation/v2/send_join/${enc(roomId)}/${enc('$notthisone')}`, pdu);
    expect(r.status).toBe(400);
  });

  it('a banned user: make_join is 403', async () => {
    const banned = `@banned:${peer.serverName}`;
    expect((await clients.call(alice, 'POST', `/rooms/${enc(roomId)}/ban`, { user_id: banned })).status).toBe(200);
    const r = await peer.request(a, 'GET', `/_matrix/federation/v1/make_join/${enc(roomId)}/${enc(banned)}?ver=10`);
    expect(r.status).toBe(403);
    expect(r.body.errcode).toBe('M_FORBIDDEN');
  });

  it('make_leave → sign → send_leave: the user has left, and local users see it', async () => {
    const { answer } = await makeAndSend('leave', pat);
    expect(answer).toEqual({});
    const members = await clients.call(alice, 'GET', `/rooms/${enc(roomId)}/members?membership=leave`);
    expect(members.body.chunk.map((e: Json) => e.state_key)).toContain(pat);
  });
});

describe('restricted joins across servers (join_authorised_via_users_server)', () => {
  it('make_join names a local member who can invite; send_join comes back co-signed by Axon; a user in none of the allowed rooms is 403', async () => {
    const rita = `@rita:${peer.serverName}`;
    await makeAndSend('join', rita); // rita joins the public room, the one the restricted room allows
    const created = await clients.call(alice, 'POST', '/createRoom', {
      preset: 'private_chat',
      room_version: '10',
      initial_state: [{ type: 'm.room.join_rules', state_key: '', content: { join_rule: 'restricted', allow: [{ type: 'm.room_membership', room_id: roomId }] } }],
    });
    expect(created.status, JSON.stringify(created.body)).toBe(200);
    const restricted = created.body.room_id as string;
    const made = await peer.request(a, 'GET', `/_matrix/federation/v1/make_join/${enc(restricted)}/${enc(rita)}?ver=10`);
    expect(made.status, made.text).toBe(200);
    expect(made.body.event.content).toEqual({ membership: 'join', join_authorised_via_users_server: alice.userId });
    const { pdu, id } = peer.sign(made.body.event, VERSION);
    const sent = await peer.request(a, 'PUT', `/_matrix/federation/v2/send_join/${enc(restricted)}/${enc(id)}`, pdu);
    expect(sent.status, sent.text).toBe(200);
    expect(signedByAxon(sent.body.event)).toBe(true);
    expect(sent.body.event.signatures[peer.serverName]).toBeDefined();
    const members = await clients.call(alice, 'GET', `/rooms/${enc(restricted)}/joined_members`);
    expect(Object.keys(members.body.joined)).toContain(rita);

    const stranger = await peer.request(a, 'GET', `/_matrix/federation/v1/make_join/${enc(restricted)}/${enc(`@stranger:${peer.serverName}`)}?ver=10`);
    expect(stranger.status).toBe(403);
  });
});

describe('a remote server invites our user (PUT /invite v2)', () => {
  function inviteEvent(remoteRoom: string, invitee: string): { pdu: JsonObject; id: string } {
    return peer.sign(
      { room_id: remoteRoom, sender: pat, type: 'm.room.member', state_key: invitee, content: { membership: 'invite' }, origin_server_ts: Date.now(), depth: 4, prev_events: ['$prev'], auth_events: ['$create', '$pl', '$patjoin'] },
      VERSION,
    );
  }

  it("the invite is co-signed, and reaches the local user's /sync in rooms.invite with the stripped state", async () => {
    const remoteRoom = `!elsewhere:${peer.serverName}`;
    const { pdu, id } = inviteEvent(remoteRoom, alice.userId);
    const strippedState = [
      { type: 'm.room.create', state_key: '', sender: pat, content: { room_version: '10', creator: pat } },
      { type: 'm.room.name', state_key: '', sender: pat, content: { name: 'On the peer' } },
      { type: 'm.room.join_rules', state_key: '', sender: pat, content: { join_rule: 'invite' } },
    ];
    const r = await peer.request(a, 'PUT', `/_matrix/federation/v2/invite/${enc(remoteRoom)}/${enc(id)}`, { room_version: '10', event: pdu, invite_room_state: strippedState });
    expect(r.status, r.text).toBe(200);
    expect(computeEventId(r.body.event, VERSION)).toBe(id);
    expect(signedByAxon(r.body.event)).toBe(true);
    expect(r.body.event.signatures[peer.serverName]).toEqual((pdu.signatures as Json)[peer.serverName]);

    const sync = await eventually(
      () => clients.call(alice, 'GET', '/sync?timeout=0'),
      (x) => !!x.body.rooms?.invite?.[remoteRoom],
    );
    const events = sync.body.rooms.invite[remoteRoom].invite_state.events as Json[];
    expect(events).toEqual(expect.arrayContaining([
      expect.objectContaining({ type: 'm.room.name', content: { name: 'On the peer' } }),
      expect.objectContaining({ type: 'm.room.member', state_key: alice.userId, sender: pat, content: { membership: 'invite' } }),
    ]));
  });

  it('an invite for a user of another server, or not signed by the origin, is 403; an unknown room version is 400', async () => {
    const remoteRoom = `!other:${peer.serverName}`;
    const foreign = inviteEvent(remoteRoom, '@someone:elsewhere.example');
    const r1 = await peer.request(a, 'PUT', `/_matrix/federation/v2/invite/${enc(remoteRoom)}/${enc(foreign.id)}`, { room_version: '10', event: foreign.pdu, invite_room_state: [] });
    expect(r1.status).toBe(403);
    const good = inviteEvent(remoteRoom, alice.userId);
    const unsigned = { ...good.pdu, signatures: {} };
    const r2 = await peer.request(a, 'PUT', `/_matrix/federation/v2/invite/${enc(remoteRoom)}/${enc(good.id)}`, { room_version: '10', event: unsigned, invite_room_state: [] });
    expect(r2.status).toBe(403);
    const r3 = await peer.request(a, 'PUT', `/_matrix/federation/v2/invite/${enc(remoteRoom)}/${enc(good.id)}`, { room_version: '999', event: good.pdu, invite_room_state: [] });
    expect(r3.status).toBe(400);
    expect(r3.body.errcode).toBe('M_INCOMPATIBLE_ROOM_VERSION');
  });

  it('an invite into a room an admin blocked is 403 and never reaches the user; unblocked, it does', async () => {
    const blockedRoom = `!blocked:${peer.serverName}`;
    const admin = await clients.mint('fedblockadmin', undefined, { admin: true });
    const block = await clients.call(admin, 'PUT', `/_synapse/admin/v1/rooms/${enc(blockedRoom)}/block`, { block: true });
    expect(block.status, JSON.stringify(block.body)).toBe(200);
    const first = inviteEvent(blockedRoom, alice.userId);
    const refused = await peer.request(a, 'PUT', `/_matrix/federation/v2/invite/${enc(blockedRoom)}/${enc(first.id)}`, { room_version: '10', event: first.pdu, invite_room_state: [] });
    expect(refused.status, refused.text).toBe(403);
    expect(refused.body).toEqual({ errcode: 'M_UNKNOWN', error: 'This room has been blocked on this server' });
    expect((await clients.call(alice, 'GET', '/sync?timeout=0')).body.rooms?.invite?.[blockedRoom]).toBeUndefined();

    expect((await clients.call(admin, 'PUT', `/_synapse/admin/v1/rooms/${enc(blockedRoom)}/block`, { block: false })).status).toBe(200);
    const second = inviteEvent(blockedRoom, alice.userId);
    const taken = await peer.request(a, 'PUT', `/_matrix/federation/v2/invite/${enc(blockedRoom)}/${enc(second.id)}`, { room_version: '10', event: second.pdu, invite_room_state: [] });
    expect(taken.status, taken.text).toBe(200);
    await eventually(
      () => clients.call(alice, 'GET', '/sync?timeout=0'),
      (x) => !!x.body.rooms?.invite?.[blockedRoom],
    );
  });
});

describe('a remote user knocks on our room (make_knock, send_knock)', () => {
  let knockRoom: string;
  const kim = () => `@kim:${peer.serverName}`;

  beforeAll(async () => {
    const created = await clients.call(alice, 'POST', '/createRoom', { preset: 'private_chat', room_version: '10', name: 'Knock knock', initial_state: [{ type: 'm.room.join_rules', state_key: '', content: { join_rule: 'knock' } }] });
    expect(created.status, JSON.stringify(created.body)).toBe(200);
    knockRoom = created.body.room_id;
  });

  it('make_knock refusals: no ver (400 M_MISSING_PARAM), one without the room version (400 M_INCOMPATIBLE_ROOM_VERSION), a user of another server (403), an invite-only room (403), a banned user (403)', async () => {
    const noVer = await peer.request(a, 'GET', `/_matrix/federation/v1/make_knock/${enc(knockRoom)}/${enc(kim())}`);
    expect(noVer.status, noVer.text).toBe(400);
    expect(noVer.body.errcode).toBe('M_MISSING_PARAM');
    const r0 = await peer.request(a, 'GET', `/_matrix/federation/v1/make_knock/${enc(knockRoom)}/${enc(kim())}?ver=1&ver=6`);
    expect(r0.status, r0.text).toBe(400);
    expect(r0.body.errcode).toBe('M_INCOMPATIBLE_ROOM_VERSION');
    expect(r0.body.room_version).toBe('10');
    const foreign = await peer.request(a, 'GET', `/_matrix/federation/v1/make_knock/${enc(knockRoom)}/${enc('@mallory:elsewhere.example')}?ver=10`);
    expect(foreign.status, foreign.text).toBe(403);
    const inviteOnly = await peer.request(a, 'GET', `/_matrix/federation/v1/make_knock/${enc(roomId)}/${enc(kim())}?ver=10`);
    expect(inviteOnly.status, inviteOnly.text).toBe(403); // the public room: join, not knock
    expect(inviteOnly.body.errcode).toBe('M_FORBIDDEN');
    const banned = `@kbanned:${peer.serverName}`;
    expect((await clients.call(alice, 'POST', `/rooms/${enc(knockRoom)}/ban`, { user_id: banned })).status).toBe(200);
    const r = await peer.request(a, 'GET', `/_matrix/federation/v1/make_knock/${enc(knockRoom)}/${enc(banned)}?ver=10`);
    expect(r.status, r.text).toBe(403);
    expect(r.body.errcode).toBe('M_FORBIDDEN');
  });

  it('make_knock → sign → send_knock: knock_room_state is the stripped state, and local members see the knock', async () => {
    const started = performance.now();
    const made = await peer.request(a, 'GET', `/_matrix/federation/v1/make_knock/${enc(knockRoom)}/${enc(kim())}?ver=9&ver=10`);
    expect(made.status, made.text).toBe(200);
    expect(made.body.room_version).toBe('10');
    expect(made.body.event).toMatchObject({ type: 'm.room.member', state_key: kim(), sender: kim(), content: { membership: 'knock' } });
    const { pdu, id } = peer.sign({ ...made.body.event, content: { membership: 'knock', reason: 'hi' } }, VERSION);
    // A knock sent as someone else's (path event id mismatch) or as a join is refused first.
    const wrongId = await peer.request(a, 'PUT', `/_matrix/federation/v1/send_knock/${enc(knockRoom)}/${enc('$notthisone')}`, pdu);
    expect(wrongId.status).toBe(400);
    const asJoin = peer.sign({ ...made.body.event, content: { membership: 'join' } }, VERSION);
    const notKnock = await peer.request(a, 'PUT', `/_matrix/federation/v1/send_knock/${enc(knockRoom)}/${enc(asJoin.id)}`, asJoin.pdu);
    expect(notKnock.status).toBe(400);
    const sent = await peer.request(a, 'PUT', `/_matrix/federation/v1/send_knock/${enc(knockRoom)}/${enc(id)}`, pdu);
    expect(sent.status, sent.text).toBe(200);
    console.log(`membership.e2e: make_knock + send_knock in ${Math.round(performance.now() - started)} ms`);
    const stripped = sent.body.knock_room_state as Json[];
    expect(stripped.map((e) => e.type)).toEqual(expect.arrayContaining(['m.room.create', 'm.room.join_rules', 'm.room.name']));
    expect(stripped.every((e) => Object.keys(e).sort().join() === 'content,sender,state_key,type')).toBe(true);
    expect(stripped.find((e) => e.type === 'm.room.join_rules')?.content).toEqual({ join_rule: 'knock' });
    const member = await clients.call(alice, 'GET', `/rooms/${enc(knockRoom)}/state/m.room.member/${enc(kim())}`);
    expect(member.body).toEqual({ membership: 'knock', reason: 'hi' });
    await eventually(
      () => clients.call(alice, 'GET', '/sync?timeout=0'),
      (x) => (x.body.rooms?.join?.[knockRoom]?.timeline?.events ?? []).some((e: Json) => e.state_key === kim() && e.content?.membership === 'knock'),
    );
  });

  it("a server the room's ACL denies: make_knock is 403", async () => {
    const acl = await clients.call(alice, 'PUT', `/rooms/${enc(knockRoom)}/state/m.room.server_acl/`, { allow: ['*'], deny: [peer.serverName.split(':')[0]!, peer.serverName] });
    expect(acl.status, JSON.stringify(acl.body)).toBe(200);
    const r = await peer.request(a, 'GET', `/_matrix/federation/v1/make_knock/${enc(knockRoom)}/${enc(`@other:${peer.serverName}`)}?ver=10`);
    expect(r.status, r.text).toBe(403);
    expect(r.body.errcode).toBe('M_FORBIDDEN');
    expect(r.body.error).toMatch(/ACL/);
  });
});
