/**
 * Discovery across servers with a real Synapse (issue 16.3): each server's users read the other's
 * room directory (`/publicRooms?server=`, Synapse configured to serve it over federation, which it
 * does not by default), filtered searches over federation (MSC2197), `/hierarchy` of an Axon space
 * whose children live only on Synapse (a Synapse space and the rooms in it, private ones left
 * out), Synapse's `/hierarchy` of an Axon space (MSC4235's `via`, so Synapse asks our federation
 * `/hierarchy`), OpenID tokens from Axon checked at its federation `/openid/userinfo`, and the
 * errors a client gets when the other server cannot be reached. Prints the latencies.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { enc, eventually, type Clients, type Json, type Session } from '../e2e/clients';
import type { TestServer } from '../e2e/server-harness';
import { SYNAPSE_VERSION, type PeerSession, type SynapsePeer } from '../peers/synapse';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { clientsFor } from '../e2e/clients';
import { fedRequest, skipWithoutSynapse, startFederatedAxon, useAxonAndSynapse, type AxonAndSynapse } from './harness';
import { issueOpenIdToken } from '../../src/api/client/openid';

const skip = skipWithoutSynapse('synapse-discovery.e2e');

const A_IP = '127.0.0.201';
const S_IP = '127.0.0.202';
/** A second Axon whose keys Synapse fetches through the first as its notary. */
const B_IP = '127.0.0.206';

const ms = (started: number) => Math.round(performance.now() - started);

describe.skipIf(skip)(`discovery between Axon and Synapse ${SYNAPSE_VERSION}`, { timeout: 150_000 }, () => {
  const journey = useAxonAndSynapse('synapse-discovery.e2e', A_IP, S_IP, {
    logLines: 40,
    configureSynapse: (c) => {
      c.allow_public_rooms_over_federation = true;
      // Synapse lets only admins publish rooms unless told otherwise.
      c.room_list_publication_rules = [{ action: 'allow' }];
      c.experimental_features = { msc4235_enabled: true };
    },
  });
  let pair: AxonAndSynapse;
  let a: TestServer;
  let s: SynapsePeer;
  let clients: Clients;
  let alice: Session;
  let bob: PeerSession;

  beforeAll(async () => {
    pair = journey.pair;
    ({ axon: a, synapse: s, clients } = pair);
    alice = await clients.mint('alice');
    bob = await s.registerUser('bob', 'bob password');
  }, 180_000);


  const synapseRoom = async (body: Json): Promise<string> => {
    const r = await s.call(bob, 'POST', '/createRoom', body);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    return r.body.room_id;
  };
  const axonRoom = async (body: Json): Promise<string> => {
    const r = await clients.call(alice, 'POST', '/createRoom', body);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    return r.body.room_id;
  };

  it("Axon's /publicRooms?server=<synapse> lists a room published on Synapse, with its name, topic and members", async () => {
    const roomId = await synapseRoom({ preset: 'public_chat', visibility: 'public', name: 'Synapse Lounge', topic: 'tea and federation', room_alias_name: 'lounge' });
    const path = `/publicRooms?server=${enc(s.serverName)}`;
    // Synapse fills its directory from room stats a moment after the room is made: wait until
    // its own users see the room (Axon keeps what Synapse answered for 30 s).
    await eventually(
      () => s.call(bob, 'GET', '/publicRooms'),
      (r) => r.status === 200 && r.body.chunk.some((e: Json) => e.room_id === roomId && e.topic),
      30_000,
    );
    const listed = await clients.call(alice, 'GET', path);
    expect(listed.status, JSON.stringify(listed.body)).toBe(200);
    expect(listed.body.chunk.find((e: Json) => e.room_id === roomId)).toMatchObject({
      room_id: roomId,
      name: 'Synapse Lounge',
      topic: 'tea and federation',
      canonical_alias: `#lounge:${s.serverName}`,
      num_joined_members: 1,
      world_readable: false,
      guest_can_join: false,
      join_rule: 'public',
    });
    // Timed on a fresh query (another limit: not in the cache), then the same one again (cached).
    let t = performance.now();
    const fresh = await clients.call(alice, 'GET', `${path}&limit=5`);
    const freshMs = ms(t);
    expect(fresh.status).toBe(200);
    t = performance.now();
    const again = await clients.call(alice, 'GET', `${path}&limit=5`);
    const cachedMs = ms(t);
    expect(again.body).toEqual(fresh.body);
    console.log(`synapse-discovery.e2e: Axon /publicRooms?server=<synapse>: ${freshMs} ms asked, ${cachedMs} ms cached`);

    // A filtered search goes to Synapse as MSC2197's POST.
    const unrelated = await synapseRoom({ preset: 'public_chat', visibility: 'public', name: 'Unrelated place' });
    await eventually(
      () => s.call(bob, 'GET', '/publicRooms'),
      (r) => r.status === 200 && r.body.chunk.some((e: Json) => e.room_id === unrelated && e.name),
      30_000,
    );
    const searched = await clients.call(alice, 'POST', path, { filter: { generic_search_term: 'LOUNGE' } });
    expect(searched.status, JSON.stringify(searched.body)).toBe(200);
    expect(searched.body.chunk.map((e: Json) => e.room_id)).toEqual([roomId]);
    // Pages of Synapse's directory, with Synapse's tokens.
    const page1 = await clients.call(alice, 'GET', `${path}&limit=1`);
    expect(page1.body.chunk).toHaveLength(1);
    const page2 = await clients.call(alice, 'GET', `${path}&limit=1&since=${enc(page1.body.next_batch)}`);
    expect(page2.body.chunk).toHaveLength(1);
    expect([page1.body.chunk[0].room_id, page2.body.chunk[0].room_id].sort()).toEqual([roomId, unrelated].sort());
    const all = await clients.call(alice, 'POST', path, { limit: 10 });
    expect(all.body.chunk.map((e: Json) => e.name).sort()).toEqual(['Synapse Lounge', 'Unrelated place']);
  });

  it("Synapse's /publicRooms?server=<axon> lists an Axon room (GET, and POST with a filter: our federation /publicRooms)", async () => {
    const roomId = await axonRoom({ preset: 'public_chat', visibility: 'public', name: 'Axon Atrium', topic: 'actors on streams', room_alias_name: 'atrium' });
    const other = await axonRoom({ preset: 'public_chat', visibility: 'public', name: 'Axon Annex' });
    await axonRoom({ preset: 'private_chat', name: 'Not published' });
    const path = `/publicRooms?server=${enc(a.serverName)}`;
    const t = performance.now();
    const listed = await s.call(bob, 'GET', path);
    console.log(`synapse-discovery.e2e: Synapse /publicRooms?server=<axon>: ${ms(t)} ms`);
    expect(listed.status, JSON.stringify(listed.body)).toBe(200);
    expect(listed.body.chunk.map((e: Json) => e.room_id).sort()).toEqual([roomId, other].sort());
    expect(listed.body.chunk.find((e: Json) => e.room_id === roomId)).toMatchObject({ name: 'Axon Atrium', topic: 'actors on streams', canonical_alias: `#atrium:${a.serverName}`, num_joined_members: 1, join_rule: 'public' });
    expect(listed.body.total_room_count_estimate).toBe(2);

    const searched = await s.call(bob, 'POST', path, { filter: { generic_search_term: 'atrium' } });
    expect(searched.status, JSON.stringify(searched.body)).toBe(200);
    expect(searched.body.chunk.map((e: Json) => e.room_id)).toEqual([roomId]);

    const paged = await s.call(bob, 'POST', path, { limit: 1, filter: { generic_search_term: 'axon' } });
    expect(paged.status, JSON.stringify(paged.body)).toBe(200);
    expect(paged.body.chunk).toHaveLength(1);
    expect(typeof paged.body.next_batch).toBe('string');
    const rest = await s.call(bob, 'POST', path, { limit: 1, since: paged.body.next_batch, filter: { generic_search_term: 'axon' } });
    expect(rest.body.chunk).toHaveLength(1);
    expect([paged.body.chunk[0].room_id, rest.body.chunk[0].room_id].sort()).toEqual([roomId, other].sort());
  });

  it("the Axon user's /hierarchy of an Axon space includes a Synapse space and its public room, asked of Synapse; private ones are left out", async () => {
    const sSpace = await synapseRoom({ preset: 'public_chat', name: 'Synapse Space', topic: 'a space on Synapse', creation_content: { type: 'm.space' } });
    const sRoom = await synapseRoom({ preset: 'public_chat', name: 'Synapse Child', topic: 'a child on Synapse' });
    const sSecret = await synapseRoom({ preset: 'private_chat', name: 'Synapse Secret' });
    const sPrivateSibling = await synapseRoom({ preset: 'private_chat', name: 'Synapse Private Sibling' });
    for (const [parent, child] of [[sSpace, sRoom], [sSpace, sSecret]] as const) {
      const r = await s.call(bob, 'PUT', `/rooms/${enc(parent)}/state/m.space.child/${enc(child)}`, { via: [s.serverName] });
      expect(r.status, JSON.stringify(r.body)).toBe(200);
    }
    const aSpace = await axonRoom({ preset: 'public_chat', name: 'Axon Space', creation_content: { type: 'm.space' } });
    for (const [child, order] of [[sSpace, 'a'], [sPrivateSibling, 'b']] as const) {
      const r = await clients.call(alice, 'PUT', `/rooms/${enc(aSpace)}/state/m.space.child/${enc(child)}`, { via: [s.serverName], order });
      expect(r.status, JSON.stringify(r.body)).toBe(200);
    }
    let t = performance.now();
    const h = await clients.call(alice, 'GET', `/_matrix/client/v1/rooms/${enc(aSpace)}/hierarchy`);
    const firstMs = ms(t);
    expect(h.status, JSON.stringify(h.body)).toBe(200);
    expect(h.body.rooms.map((r: Json) => r.room_id)).toEqual([aSpace, sSpace, sRoom]);
    const [top, space, child] = h.body.rooms;
    expect(top.children_state.map((c: Json) => c.state_key)).toEqual([sSpace, sPrivateSibling]);
    expect(space).toMatchObject({ room_id: sSpace, name: 'Synapse Space', topic: 'a space on Synapse', room_type: 'm.space', join_rule: 'public', num_joined_members: 1 });
    // The Synapse space's own child events, private child included (the user sees that it exists, not what it is).
    expect(space.children_state.map((c: Json) => c.state_key).sort()).toEqual([sRoom, sSecret].sort());
    expect(space.children_state[0]).toMatchObject({ type: 'm.space.child', sender: bob.userId, content: { via: [s.serverName] } });
    expect(child).toMatchObject({ room_id: sRoom, name: 'Synapse Child', topic: 'a child on Synapse', join_rule: 'public', num_joined_members: 1, children_state: [] });

    t = performance.now();
    const again = await clients.call(alice, 'GET', `/_matrix/client/v1/rooms/${enc(aSpace)}/hierarchy`);
    const cachedMs = ms(t);
    expect(again.body).toEqual(h.body);
    console.log(`synapse-discovery.e2e: Axon /hierarchy with 2 rooms on Synapse: ${firstMs} ms asked, ${cachedMs} ms cached`);

    // Pagination runs over the merged walk.
    const p1 = await clients.call(alice, 'GET', `/_matrix/client/v1/rooms/${enc(aSpace)}/hierarchy?limit=2`);
    expect(p1.body.rooms.map((r: Json) => r.room_id)).toEqual([aSpace, sSpace]);
    const p2 = await clients.call(alice, 'GET', `/_matrix/client/v1/rooms/${enc(aSpace)}/hierarchy?limit=2&from=${enc(p1.body.next_batch)}`);
    expect(p2.body.rooms.map((r: Json) => r.room_id)).toEqual([sRoom]);
    expect(p2.body.next_batch).toBeUndefined();
    // max_depth=1: the Synapse space but not its children.
    const shallow = await clients.call(alice, 'GET', `/_matrix/client/v1/rooms/${enc(aSpace)}/hierarchy?max_depth=1`);
    expect(shallow.body.rooms.map((r: Json) => r.room_id)).toEqual([aSpace, sSpace]);
  });

  it("Synapse's /hierarchy of an Axon space (asked of our federation /hierarchy) shows its public children, not the private one", async () => {
    const space = await axonRoom({ preset: 'public_chat', name: 'Axon Garden', creation_content: { type: 'm.space' } });
    const open = await axonRoom({ preset: 'public_chat', name: 'Axon Open Room', topic: 'come in' });
    const closed = await axonRoom({ preset: 'private_chat', name: 'Axon Closed Room' });
    for (const child of [open, closed]) {
      const r = await clients.call(alice, 'PUT', `/rooms/${enc(space)}/state/m.space.child/${enc(child)}`, { via: [a.serverName] });
      expect(r.status, JSON.stringify(r.body)).toBe(200);
    }
    const t = performance.now();
    const h = await s.call(bob, 'GET', `/_matrix/client/v1/rooms/${enc(space)}/hierarchy?org.matrix.msc4235.via=${enc(a.serverName)}`);
    console.log(`synapse-discovery.e2e: Synapse /hierarchy of an Axon space: ${ms(t)} ms`);
    expect(h.status, JSON.stringify(h.body)).toBe(200);
    expect(h.body.rooms.map((r: Json) => r.room_id)).toEqual([space, open]);
    expect(h.body.rooms[0]).toMatchObject({ name: 'Axon Garden', room_type: 'm.space', join_rule: 'public' });
    expect(h.body.rooms[0].children_state.map((c: Json) => c.state_key).sort()).toEqual([open, closed].sort());
    expect(h.body.rooms[1]).toMatchObject({ room_id: open, name: 'Axon Open Room', topic: 'come in', num_joined_members: 1 });

    // A private Axon space is not described to Synapse at all.
    const privateSpace = await axonRoom({ preset: 'private_chat', name: 'Axon Private Space', creation_content: { type: 'm.space' } });
    const denied = await s.call(bob, 'GET', `/_matrix/client/v1/rooms/${enc(privateSpace)}/hierarchy?org.matrix.msc4235.via=${enc(a.serverName)}`);
    expect(denied.status, JSON.stringify(denied.body)).toBe(403);
  });

  it('an OpenID token from Axon is exchanged at its federation /openid/userinfo; unknown, expired and missing tokens are 401', async () => {
    const issued = await clients.call(alice, 'POST', `/user/${enc(alice.userId)}/openid/request_token`, {});
    expect(issued.status, JSON.stringify(issued.body)).toBe(200);
    expect(issued.body).toMatchObject({ token_type: 'Bearer', matrix_server_name: a.serverName, expires_in: 3600 });
    expect(typeof issued.body.access_token).toBe('string');
    const userinfo = (token: string | null) => fedRequest(pair.ca.caPath, `${a.federationUrl}/_matrix/federation/v1/openid/userinfo${token === null ? '' : `?access_token=${enc(token)}`}`, 'GET', {});
    const ok = await userinfo(issued.body.access_token);
    expect(ok.status, ok.text).toBe(200);
    expect(ok.body).toEqual({ sub: alice.userId });
    // Not an access token, and an access token is not an OpenID token.
    expect((await clients.call({ ...alice, token: issued.body.access_token }, 'GET', '/account/whoami')).status).toBe(401);
    expect((await userinfo(alice.token)).body.errcode).toBe('M_UNKNOWN_TOKEN');
    const unknown = await userinfo('not-a-token');
    expect(unknown.status).toBe(401);
    expect(unknown.body.errcode).toBe('M_UNKNOWN_TOKEN');
    expect(await userinfo(null)).toMatchObject({ status: 401, body: { errcode: 'M_MISSING_TOKEN' } });
    const shortLived = await issueOpenIdToken({ redis: a.redis, keys: clients.keys }, alice.userId, 300);
    expect((await userinfo(shortLived)).body).toEqual({ sub: alice.userId });
    await new Promise((r) => setTimeout(r, 600));
    expect(await userinfo(shortLived)).toMatchObject({ status: 401, body: { errcode: 'M_UNKNOWN_TOKEN' } });
    // Only for oneself, and only with a valid access token.
    const other = await clients.mint('carol');
    expect((await clients.call(other, 'POST', `/user/${enc(alice.userId)}/openid/request_token`, {})).status).toBe(403);
    expect((await clients.call(null, 'POST', `/user/${enc(alice.userId)}/openid/request_token`, {})).status).toBe(401);
    // Synapse's tokens work the same way at Synapse (same shape of answer).
    const fromSynapse = await s.call(bob, 'POST', `/user/${enc(bob.userId)}/openid/request_token`, {});
    expect(Object.keys(fromSynapse.body).sort()).toEqual(Object.keys(issued.body).sort());
  });

  it('a directory or hierarchy that cannot be had is a Matrix error, not a hang', async () => {
    // Nothing listens there: the request fails, and the client gets 502 M_UNKNOWN as from Synapse.
    const nowhere = `${A_IP}:1`;
    const dir = await clients.call(alice, 'GET', `/publicRooms?server=${enc(nowhere)}`);
    expect(dir.status, JSON.stringify(dir.body)).toBe(502);
    expect(dir.body.errcode).toBe('M_UNKNOWN');
    const fromSynapse = await s.call(bob, 'GET', `/publicRooms?server=${enc(nowhere)}`);
    expect(fromSynapse.status).toBe(502);
    expect((await clients.call(alice, 'GET', '/publicRooms?server=not%20a%20server')).body.errcode).toBe('M_INVALID_PARAM');
    // A child whose only server cannot be reached is left out of the hierarchy.
    const space = await axonRoom({ preset: 'public_chat', creation_content: { type: 'm.space' } });
    const ghost = `!ghost:${nowhere}`;
    expect((await clients.call(alice, 'PUT', `/rooms/${enc(space)}/state/m.space.child/${enc(ghost)}`, { via: [nowhere] })).status).toBe(200);
    const h = await clients.call(alice, 'GET', `/_matrix/client/v1/rooms/${enc(space)}/hierarchy`);
    expect(h.status).toBe(200);
    expect(h.body.rooms.map((r: Json) => r.room_id)).toEqual([space]);
    expect(h.body.rooms[0].children_state.map((c: Json) => c.state_key)).toEqual([ghost]);
  });

  it("Synapse uses Axon as its trusted key server: a second Axon's keys reach Synapse through our notary endpoint", async () => {
    // The old form of the GET (a key id in the path, before Matrix 1.6) is answered as the new one.
    const old = await fedRequest(pair.ca.caPath, `${a.federationUrl}/_matrix/key/v2/query/${enc(s.serverName)}/ed25519%3Aa_xyz`, 'GET', {});
    expect(old.status, old.text).toBe(200);
    expect(old.body.server_keys.map((d: Json) => d.server_name)).toEqual([s.serverName]);

    const own = await fedRequest(pair.ca.caPath, `${a.federationUrl}/_matrix/key/v2/server`, 'GET', {});
    const verifyKeys = Object.fromEntries(Object.entries(own.body.verify_keys as Record<string, Json>).map(([id, k]) => [id, k.key]));
    await s.down();
    const configPath = join(s.dir, 'homeserver.yaml');
    const config = JSON.parse(readFileSync(configPath, 'utf8')) as Json;
    config.trusted_key_servers = [{ server_name: a.serverName, verify_keys: verifyKeys }];
    writeFileSync(configPath, JSON.stringify(config, null, 2));
    await s.up();

    const b = await startFederatedAxon(B_IP, pair.ca);
    const onB = await clientsFor(b);
    try {
      const bert = await onB.mint('bert');
      // B signs a request to Synapse; Synapse needs B's key and asks its notary, Axon A.
      const profile = await onB.call(bert, 'GET', `/profile/${enc(bob.userId)}`);
      expect(profile.status, `${JSON.stringify(profile.body)}\n${s.logTail(30)}`).toBe(200);
      const log = readFileSync(s.logPath, 'utf8');
      const viaNotary = log.split('\n').filter((l) => l.includes(`[${a.serverName}]`) && l.includes('/_matrix/key/v2/query') && l.includes('Completed request: 200'));
      expect(viaNotary.length, s.logTail(40)).toBeGreaterThan(0);
    } finally {
      await onB.close();
      await b.stop();
    }
  }, 240_000);
});
