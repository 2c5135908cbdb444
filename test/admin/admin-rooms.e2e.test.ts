/**
 * The admin API's room endpoints (issue 20.1/20.5) over real HTTP, against Axon and a real
 * Synapse 1.163.2 in the same test: the same rooms made on both, then the list (orders, search,
 * pages), a room's details, members, state, messages, blocking, make_room_admin, deletion (v1
 * inline, v2 as a background job with its status) and the federation destinations, compared field
 * by field after normalising what is server-specific; intended differences are listed with why.
 * Then Axon-only checks: the purge leaves none of the room's keys, resumes after an interruption,
 * and the room list's backfill.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callServer, loopbackServerName, startSynapse, synapseInstallation, type SynapsePeer } from '../peers/synapse';
import { createTestCa, type TestCa } from '../peers/test-ca';
import { startTestServer, type TestServer } from '../e2e/server-harness';
import { comparison, login, registerAxonAdmin, type Json, type Side } from './compare';
import { KeySpace, roomData } from '../../src/store/keys';
import { shardCountsFor } from '../../src/runtime/cluster-settings';
import { shardOf } from '../../src/store/shards';
import { ActorClient } from '../../src/runtime/actor-client';
import { decode } from '../../src/store/codec';
import type { RoomMeta } from '../../src/rooms/model';
import { backfillRoomList } from '../../scripts/backfill-room-list';
import { startAxonAndSynapse, type AxonAndSynapse } from '../federation/harness';
import pino from 'pino';
import { Queue } from 'bullmq';
import { ADMIN_ROOMS_QUEUE, startRoomDeletionJobs, type RunningRoomDeletionJobs } from '../../src/rooms/room-deletion-jobs';
import { parseRoomDeletionBody } from '../../src/rooms/room-deletion';
import { bullConnection } from '../../src/runtime/bull-connection';

const install = synapseInstallation();
const skip = !install.ok && !process.env.CI;
if (skip && !install.ok) console.warn(`admin-rooms.e2e: skipped. ${install.reason}`);

const SYNAPSE_IP = '127.0.0.74';
const SECRET = 'admin-rooms-e2e-shared-secret';

/** Intended differences, `step path` → why. */
const ALLOWED: Record<string, string> = {
  'power levels after notifications': "createRoom's default power levels, not the admin API's: Axon states the spec's default `notifications.room`",
  'power levels after historical': "createRoom's default power levels, not the admin API's: Synapse adds MSC2716's `historical`",
};
/** Intended differences anywhere, by the path's last field. */
const ALLOWED_FIELDS: Record<string, string> = {
  last_successful_stream_ordering: 'Axon has no global stream ordering of events (null)',
  creation_ts: 'the second each server made the user in',
  error: 'error wording is each server\'s own; the errcode and status are compared',
};

function normalise(v: Json, serverName: string, key = ''): Json {
  if (Array.isArray(v)) {
    const items = v.map((x) => normalise(x, serverName, key));
    // Lists of users and aliases come in each server's own order.
    return ['members', 'kicked_users', 'local_aliases', 'failed_to_kick_users'].includes(key) ? items.sort() : items;
  }
  // Keys too: power levels name users as keys.
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k.split(serverName).join('<hs>'), normalise(x, serverName, k)]));
  if (key === 'delete_id' && typeof v === 'string') return '<delete id>';
  if (['offset', 'next_batch', 'prev_batch', 'total_rooms', 'total'].includes(key)) return v;
  if (typeof v === 'string') return v.split(serverName).join('<hs>').replace(/^![A-Za-z0-9_\-]+(:<hs>)?$/, '<room>').replace(/^\$[A-Za-z0-9_\-+/=]+(:<hs>)?$/, '<event>');
  return v;
}

/** The state of a room as (type, state_key) → content, for comparing servers' states. */
function stateByKey(state: Json[], serverName: string): Record<string, Json> {
  return Object.fromEntries(state.map((e) => [`${e.type}|${normalise(e.state_key, serverName)}`, normalise(e.content, serverName)]).sort(([a], [b]) => (a < b ? -1 : 1)));
}

describe.skipIf(skip)('admin API rooms: Axon against Synapse', () => {
  let ca: TestCa;
  let synapse: SynapsePeer;
  let axon: TestServer;
  let sides: Side[];
  const { both, found } = comparison(() => sides, { allowed: ALLOWED, allowedFields: ALLOWED_FIELDS, normalise });
  const tokens: Record<string, Record<string, string>> = { alice: {}, bob: {} };
  const rooms: Record<string, Record<string, string>> = { alpha: {}, bravo: {}, charlie: {}, delta: {} };

  beforeAll(async () => {
    ca = createTestCa();
    const serverName = await loopbackServerName(SYNAPSE_IP);
    [synapse, axon] = await Promise.all([
      startSynapse({ serverName, ca, logLevel: 'WARNING', configure: (c) => { c.rc_login = { address: { per_second: 100, burst_count: 100 }, account: { per_second: 100, burst_count: 100 } }; c.rc_message = { per_second: 100, burst_count: 100 }; c.room_list_publication_rules = [{ action: 'allow' }]; c.rc_joins = { local: { per_second: 100, burst_count: 100 }, remote: { per_second: 100, burst_count: 100 } }; } }),
      startTestServer({ roomDeletions: true, configure: (c) => { c.registration.sharedSecret = SECRET; } }),
    ]);
    const sAdmin = await synapse.registerUser('boss', 'boss-password-1', true);
    const aAdmin = await registerAxonAdmin(axon.baseUrl, 'boss', 'boss-password-1', SECRET);
    sides = [
      { label: 'axon', baseUrl: axon.baseUrl, serverName: axon.serverName, admin: aAdmin },
      { label: 'synapse', baseUrl: synapse.baseUrl, serverName: synapse.serverName, admin: { token: sAdmin.token, userId: sAdmin.userId } },
    ];
  }, 240_000);

  afterAll(async () => {
    await Promise.all([synapse?.stop(), axon?.stop()]);
    ca?.cleanup();
  });

  const u = (s: Side, localpart: string) => `@${localpart}:${s.serverName}`;
  const r = (s: Side, name: string) => encodeURIComponent(rooms[name]![s.label]!);
  const as = (who: string) => (s: Side) => tokens[who]![s.label]!;

  /** The same client call on both servers, which must succeed. */
  async function onBoth(who: string, method: string, path: (s: Side) => string, body?: Json): Promise<Record<string, Json>> {
    const out: Record<string, Json> = {};
    for (const side of sides) {
      const res = await callServer(side, { token: tokens[who]![side.label]! }, method, path(side), body);
      expect({ side: side.label, path: path(side), status: res.status, body: res.status === 200 ? 'ok' : res.body }).toMatchObject({ status: 200 });
      out[side.label] = res.body;
    }
    return out;
  }

  /** Poll a v2 deletion's status on both servers until each is complete (or failed). */
  async function deletionDone(ids: Record<string, string>) {
    const deadline = Date.now() + 120_000;
    for (const side of sides) {
      for (;;) {
        const st = await callServer(side, { token: side.admin.token }, 'GET', `/_synapse/admin/v2/rooms/delete_status/${ids[side.label]}`);
        if (st.body.status === 'complete' || st.body.status === 'failed') break;
        if (Date.now() > deadline) throw new Error(`${side.label}: deletion still ${JSON.stringify(st.body)}`);
        await new Promise((res) => setTimeout(res, 300));
      }
    }
  }

  it('answers the room endpoints as Synapse does', async () => {
    for (const who of ['alice', 'bob']) {
      await both(`create ${who}`, 'PUT', (s) => `/_synapse/admin/v2/users/${encodeURIComponent(u(s, who))}`, { password: `${who}-password-1`, displayname: who });
      for (const side of sides) tokens[who]![side.label] = (await login(side, who, `${who}-password-1`)).body.access_token;
    }
    const made = async (name: string, who: string, body: Json) => {
      const res = await onBoth(who, 'POST', () => '/createRoom', { room_version: '10', ...body });
      for (const side of sides) rooms[name]![side.label] = res[side.label].room_id;
    };
    await made('alpha', 'alice', { name: 'Alpha', preset: 'public_chat', room_alias_name: 'alpha', visibility: 'public', topic: 'first' });
    await made('bravo', 'alice', { name: 'Bravo', preset: 'private_chat', initial_state: [{ type: 'm.room.encryption', state_key: '', content: { algorithm: 'm.megolm.v1.aes-sha2' } }] });
    await made('charlie', 'bob', { preset: 'private_chat' });
    await made('delta', 'bob', { name: 'delta', preset: 'public_chat', creation_content: { 'm.federate': false } });
    await onBoth('bob', 'POST', (s) => `/join/${r(s, 'alpha')}`, {});
    for (let i = 0; i < 3; i++) await onBoth('alice', 'PUT', (s) => `/rooms/${r(s, 'alpha')}/send/m.room.message/t${i}`, { msgtype: 'm.text', body: `hello ${i}` });

    // Access.
    const forbidden = await both('non-admin list', 'GET', () => '/_synapse/admin/v1/rooms', undefined, as('alice'));
    expect(forbidden.axon).toEqual({ status: 403, body: { errcode: 'M_FORBIDDEN', error: 'You are not a server admin' } });
    await both('non-admin details', 'GET', (s) => `/_synapse/admin/v1/rooms/${r(s, 'alpha')}`, undefined, as('alice'));
    await both('non-admin delete', 'DELETE', (s) => `/_synapse/admin/v2/rooms/${r(s, 'alpha')}`, {}, as('alice'));
    await both('no token', 'GET', () => '/_synapse/admin/v1/rooms', undefined, () => null);

    // The list.
    const listed = await both('list', 'GET', () => '/_synapse/admin/v1/rooms');
    expect(listed.axon.body.total_rooms).toBe(4);
    for (const order of ['name', 'canonical_alias', 'joined_members', 'joined_local_members', 'version', 'creator', 'encryption', 'federatable', 'public', 'join_rules', 'guest_access', 'history_visibility', 'state_events']) {
      // Rooms equal in the order come by room id, which differ between the servers: compare the
      // sequence of the ordered values (the rooms themselves are compared in the lists above and below).
      for (const dir of ['f', 'b']) {
        const seqs: string[] = [];
        for (const side of sides) {
          const res = await callServer(side, { token: side.admin.token }, 'GET', `/_synapse/admin/v1/rooms?order_by=${order}&dir=${dir}`);
          expect(res.status).toBe(200);
          seqs.push(JSON.stringify(res.body.rooms.map((room: Json) => normalise(room[order], side.serverName))));
        }
        if (seqs[0] !== seqs[1]) found.push(`order ${order} ${dir}: axon ${seqs[0]} synapse ${seqs[1]}`);
      }
    }
    const paged = await both('page 2', 'GET', () => '/_synapse/admin/v1/rooms?order_by=name&limit=1&from=1');
    expect(paged.axon.body).toMatchObject({ offset: 1, next_batch: 2, prev_batch: 0, total_rooms: 4 });
    await both('page 3', 'GET', () => '/_synapse/admin/v1/rooms?order_by=name&limit=1&from=3');
    await both('search name', 'GET', () => '/_synapse/admin/v1/rooms?search_term=lph');
    await both('search alias', 'GET', () => '/_synapse/admin/v1/rooms?search_term=ALPHA');
    const byId = await both('search id', 'GET', (s) => `/_synapse/admin/v1/rooms?search_term=${r(s, 'charlie')}`);
    expect(byId.axon.body.total_rooms).toBe(1);
    await both('search none', 'GET', () => '/_synapse/admin/v1/rooms?search_term=zzz');
    await both('public only', 'GET', () => '/_synapse/admin/v1/rooms?public_rooms=true');
    await both('search empty', 'GET', () => '/_synapse/admin/v1/rooms?search_term=');
    await both('bad order', 'GET', () => '/_synapse/admin/v1/rooms?order_by=shoe_size');
    await both('bad dir', 'GET', () => '/_synapse/admin/v1/rooms?dir=x');
    await both('bad limit', 'GET', () => '/_synapse/admin/v1/rooms?limit=lots');

    // One room.
    const details = await both('details', 'GET', (s) => `/_synapse/admin/v1/rooms/${r(s, 'alpha')}`);
    expect(details.axon.body).toMatchObject({ name: 'Alpha', topic: 'first', canonical_alias: '#alpha:<hs>', joined_members: 2, joined_local_members: 2, public: true, join_rules: 'public', forgotten: false, tombstoned: false });
    await both('details bravo', 'GET', (s) => `/_synapse/admin/v1/rooms/${r(s, 'bravo')}`);
    await both('details unknown', 'GET', (s) => `/_synapse/admin/v1/rooms/${encodeURIComponent(`!nope:${s.serverName}`)}`);
    const members = await both('members', 'GET', (s) => `/_synapse/admin/v1/rooms/${r(s, 'alpha')}/members`);
    expect(members.axon.body).toEqual({ members: ['@alice:<hs>', '@bob:<hs>'], total: 2 });
    await both('members unknown', 'GET', (s) => `/_synapse/admin/v1/rooms/${encodeURIComponent(`!nope:${s.serverName}`)}/members`);
    await both('state unknown', 'GET', (s) => `/_synapse/admin/v1/rooms/${encodeURIComponent(`!nope:${s.serverName}`)}/state`);
    const states: Record<string, Json> = {};
    const typed: Record<string, Json> = {};
    for (const side of sides) {
      const st = await callServer(side, { token: side.admin.token }, 'GET', `/_synapse/admin/v1/rooms/${r(side, 'alpha')}/state`);
      expect(st.status).toBe(200);
      states[side.label] = stateByKey(st.body.state, side.serverName);
      typed[side.label] = (await callServer(side, { token: side.admin.token }, 'GET', `/_synapse/admin/v1/rooms/${r(side, 'alpha')}/state?type=m.room.member`)).body.state.map((e: Json) => normalise(e.state_key, side.serverName)).sort();
    }
    expect(Object.keys(states.axon)).toEqual(Object.keys(states.synapse));
    // (m.room.topic's content is createRoom's, not the admin API's: Axon adds the m.topic mimetype.)
    for (const k of ['m.room.name|', 'm.room.canonical_alias|', 'm.room.join_rules|', 'm.room.history_visibility|', 'm.room.member|@bob:<hs>']) {
      if (JSON.stringify(states.axon[k]) !== JSON.stringify(states.synapse[k])) found.push(`state ${k}: axon ${JSON.stringify(states.axon[k])} synapse ${JSON.stringify(states.synapse[k])}`);
    }
    expect(typed.axon).toEqual(['@alice:<hs>', '@bob:<hs>']);
    expect(typed.axon).toEqual(typed.synapse);
    // Messages: everything in order, as an admin who is not in the room.
    const messages: Record<string, Json> = {};
    for (const side of sides) {
      const fwd = await callServer(side, { token: side.admin.token }, 'GET', `/_synapse/admin/v1/rooms/${r(side, 'alpha')}/messages?dir=f&limit=50`);
      expect(fwd.status).toBe(200);
      const back = await callServer(side, { token: side.admin.token }, 'GET', `/_synapse/admin/v1/rooms/${r(side, 'alpha')}/messages?dir=b&limit=2`);
      const more = await callServer(side, { token: side.admin.token }, 'GET', `/_synapse/admin/v1/rooms/${r(side, 'alpha')}/messages?dir=b&limit=2&from=${encodeURIComponent(back.body.end)}`);
      const filtered = await callServer(side, { token: side.admin.token }, 'GET', `/_synapse/admin/v1/rooms/${r(side, 'alpha')}/messages?dir=f&limit=50&filter=${encodeURIComponent(JSON.stringify({ types: ['m.room.message'] }))}`);
      messages[side.label] = {
        forwards: fwd.body.chunk.map((e: Json) => `${e.type}|${normalise(e.sender, side.serverName)}|${e.content.body ?? e.content.membership ?? ''}`),
        backwards: [...back.body.chunk, ...more.body.chunk].map((e: Json) => e.content.body ?? e.type),
        filtered: filtered.body.chunk.map((e: Json) => e.content.body),
      };
    }
    expect(messages.axon.filtered).toEqual(['hello 0', 'hello 1', 'hello 2']);
    for (const k of ['forwards', 'backwards', 'filtered']) {
      if (JSON.stringify(messages.axon[k]) !== JSON.stringify(messages.synapse[k])) found.push(`messages ${k}: axon ${JSON.stringify(messages.axon[k])} synapse ${JSON.stringify(messages.synapse[k])}`);
    }

    // Blocking.
    await both('block get', 'GET', (s) => `/_synapse/admin/v1/rooms/${r(s, 'delta')}/block`);
    const blocked = await both('block put', 'PUT', (s) => `/_synapse/admin/v1/rooms/${r(s, 'delta')}/block`, { block: true });
    expect(blocked.axon.body).toEqual({ block: true });
    const after = await both('block get after', 'GET', (s) => `/_synapse/admin/v1/rooms/${r(s, 'delta')}/block`);
    expect(after.axon.body).toEqual({ block: true, user_id: '@boss:<hs>' });
    const refused = await both('join blocked', 'POST', (s) => `/join/${r(s, 'delta')}`, {}, as('alice'));
    expect(refused.axon.status).toBe(403);
    await both('block unknown room', 'PUT', (s) => `/_synapse/admin/v1/rooms/${encodeURIComponent(`!never:${s.serverName}`)}/block`, { block: true });
    await both('block get unknown room', 'GET', (s) => `/_synapse/admin/v1/rooms/${encodeURIComponent(`!never:${s.serverName}`)}/block`);
    await both('block bad flag', 'PUT', (s) => `/_synapse/admin/v1/rooms/${r(s, 'delta')}/block`, { block: 'yes' });
    await both('block missing', 'PUT', (s) => `/_synapse/admin/v1/rooms/${r(s, 'delta')}/block`, {});
    await both('block bad room id', 'GET', () => '/_synapse/admin/v1/rooms/not-a-room/block');
    await both('unblock', 'PUT', (s) => `/_synapse/admin/v1/rooms/${r(s, 'delta')}/block`, { block: false });
    await both('block get unblocked', 'GET', (s) => `/_synapse/admin/v1/rooms/${r(s, 'delta')}/block`);

    // make_room_admin: the admin gets alice's power in her private room, through an invite.
    const promoted = await both('make_room_admin', 'POST', (s) => `/_synapse/admin/v1/rooms/${r(s, 'bravo')}/make_room_admin`, {});
    expect(promoted.axon).toEqual({ status: 200, body: {} });
    const pl = await both('power levels after', 'GET', (s) => `/rooms/${r(s, 'bravo')}/state/m.room.power_levels/`, undefined, as('alice'));
    expect(pl.axon.body.users['@boss:<hs>']).toBe(100);
    await both('invited after', 'GET', (s) => `/rooms/${r(s, 'bravo')}/state/m.room.member/${encodeURIComponent(u(s, 'boss'))}`, undefined, as('alice'));
    await both('make_room_admin by alias', 'POST', (s) => `/_synapse/admin/v1/rooms/${encodeURIComponent(`#alpha:${s.serverName}`)}/make_room_admin`, (s: Side) => ({ user_id: u(s, 'bob') }));
    await both('make_room_admin unknown', 'POST', (s) => `/_synapse/admin/v1/rooms/${encodeURIComponent(`!nope:${s.serverName}`)}/make_room_admin`, {});

    // Deletion v2: users move to a new room, the alias with them; status while and after.
    const started = await both('delete v2', 'DELETE', (s) => `/_synapse/admin/v2/rooms/${r(s, 'alpha')}`, (s: Side) => ({ new_room_user_id: u(s, 'boss'), room_name: 'Moved', message: 'This room is gone', block: true }));
    expect(started.axon.body).toEqual({ delete_id: '<delete id>' });
    await both('delete v2 bad flag', 'DELETE', (s) => `/_synapse/admin/v2/rooms/${r(s, 'charlie')}`, { purge: 'yes' });
    await both('delete v2 bad room', 'DELETE', () => '/_synapse/admin/v2/rooms/not-a-room', {});
    const ids = { axon: (await callServer(sides[0]!, { token: sides[0]!.admin.token }, 'GET', `/_synapse/admin/v2/rooms/${r(sides[0]!, 'alpha')}/delete_status`)).body.results[0].delete_id, synapse: (await callServer(sides[1]!, { token: sides[1]!.admin.token }, 'GET', `/_synapse/admin/v2/rooms/${r(sides[1]!, 'alpha')}/delete_status`)).body.results[0].delete_id };
    await deletionDone(ids);
    const status = await both('delete status', 'GET', (s) => `/_synapse/admin/v2/rooms/delete_status/${ids[s.label]}`);
    expect(status.axon.body).toMatchObject({ status: 'complete', room_id: '<room>', shutdown_room: { kicked_users: ['@alice:<hs>', '@bob:<hs>'], failed_to_kick_users: [], local_aliases: ['#alpha:<hs>'], new_room_id: '<room>' } });
    await both('delete status by room', 'GET', (s) => `/_synapse/admin/v2/rooms/${r(s, 'alpha')}/delete_status`);
    await both('delete status unknown room', 'GET', (s) => `/_synapse/admin/v2/rooms/${encodeURIComponent(`!nope:${s.serverName}`)}/delete_status`);
    await both('delete status unknown id', 'GET', () => '/_synapse/admin/v2/rooms/delete_status/nosuchdeletion');
    await both('details purged', 'GET', (s) => `/_synapse/admin/v1/rooms/${r(s, 'alpha')}`);
    await both('block of purged', 'GET', (s) => `/_synapse/admin/v1/rooms/${r(s, 'alpha')}/block`);
    const moved = await both('alias moved', 'GET', (s) => `/directory/room/${encodeURIComponent(`#alpha:${s.serverName}`)}`, undefined, as('bob'));
    expect(moved.axon.body.room_id).toBe('<room>');
    await both('bob joined rooms', 'GET', (s) => `/_synapse/admin/v1/users/${encodeURIComponent(u(s, 'bob'))}/joined_rooms`);
    await both('public directory', 'GET', () => '/publicRooms', undefined, as('bob'));
    const rejoin = await both('join deleted', 'POST', (s) => `/join/${r(s, 'alpha')}`, {}, as('bob'));
    expect(rejoin.axon.status).toBe(403);
    await both('list after', 'GET', () => '/_synapse/admin/v1/rooms?order_by=name');

    // Deletion v1, inline: no new room, alice leaves.
    const v1 = await both('delete v1', 'DELETE', (s) => `/_synapse/admin/v1/rooms/${r(s, 'bravo')}`, { purge: true });
    expect(v1.axon.body).toEqual({ kicked_users: ['@alice:<hs>', '@boss:<hs>'], failed_to_kick_users: [], local_aliases: [], new_room_id: null });
    await both('delete v1 unknown', 'DELETE', (s) => `/_synapse/admin/v1/rooms/${encodeURIComponent(`!nope:${s.serverName}`)}`, {});
    await both('delete v1 unknown block', 'DELETE', (s) => `/_synapse/admin/v1/rooms/${encodeURIComponent(`!nope2:${s.serverName}`)}`, { block: true });
    await both('list final', 'GET', () => '/_synapse/admin/v1/rooms');

    // Federation destinations: neither server has talked to another.
    await both('destinations', 'GET', () => '/_synapse/admin/v1/federation/destinations');
    await both('destination unknown', 'GET', () => '/_synapse/admin/v1/federation/destinations/elsewhere.example');
    await both('destination rooms unknown', 'GET', () => '/_synapse/admin/v1/federation/destinations/elsewhere.example/rooms');
    await both('destination reset unknown', 'POST', () => '/_synapse/admin/v1/federation/destinations/elsewhere.example/reset_connection', {});
    await both('destinations bad order', 'GET', () => '/_synapse/admin/v1/federation/destinations?order_by=nope');

    console.log(`admin-rooms.e2e: differences not allowed:\n${found.join('\n')}`);
    expect(found).toEqual([]);
  }, 600_000);
});

describe('admin API rooms: Axon only', () => {
  let axon: TestServer;
  let admin: { token: string; userId: string };
  const call = (token: string | null, method: string, path: string, body?: unknown) => callServer(axon, token === null ? null : { token }, method, path, body);

  beforeAll(async () => {
    axon = await startTestServer({ roomDeletions: true, configure: (c) => { c.registration.sharedSecret = SECRET; c.threadSubscriptions = { enabled: true }; } });
    admin = await registerAxonAdmin(axon.baseUrl, 'root', 'root-password-1', SECRET);
  }, 120_000);
  afterAll(async () => {
    await axon?.stop();
  });

  /** Every key of the room's shard that belongs to the room (its per-room keys and its events' records). */
  async function keysOfRoom(roomId: string): Promise<string[]> {
    const shard = new KeySpace(axon.config.redis.keyPrefix).shard('room', shardOf(roomId, shardCountsFor(axon.config).room));
    const base = shard.data('');
    const out: string[] = [];
    let cursor = '0';
    do {
      const [next, found] = await axon.redis.scan(cursor, 'MATCH', `${base.replace(/[*?[\]\\]/g, '\\$&')}*`, 'COUNT', 1000);
      cursor = next;
      for (const k of found) {
        if (k.includes(roomId)) out.push(k);
        else if (k.startsWith(`${base}ev:`)) {
          const blob = await axon.redis.getBuffer(k);
          if (blob?.includes(Buffer.from(roomId))) out.push(k);
        }
      }
    } while (cursor !== '0');
    const meta = await axon.redis.getBuffer(shard.state('room', roomId));
    if (meta && decode<RoomMeta>(meta).version !== null) out.push('(room actor state)');
    return out;
  }

  it('purges every key of the room, resumes an interrupted purge, and refuses writes meanwhile', async () => {
    const room = (await call(admin.token, 'POST', '/createRoom', { name: 'doomed', preset: 'public_chat', visibility: 'public' })).body.room_id as string;
    for (let i = 0; i < 30; i++) expect((await call(admin.token, 'PUT', `/rooms/${encodeURIComponent(room)}/send/m.room.message/m${i}`, { msgtype: 'm.text', body: `message ${i} about doom` })).status).toBe(200);
    expect((await keysOfRoom(room)).length).toBeGreaterThan(30);
    // A purge interrupted after its first batch (as a job whose worker died): the room refuses
    // writes; a deletion run again finds the purge begun and finishes it, scanning from the start.
    const actors = new ActorClient(axon.redis, new KeySpace(axon.config.redis.keyPrefix), shardCountsFor(axon.config));
    await actors.start();
    await actors.ask('room', 'room', room, { op: 'purge_begin' });
    const first = await actors.ask<{ done: boolean; deleted: number }>('room', 'room', room, { op: 'purge', cursor: '0' });
    await actors.close();
    // A shard this small may hold all its keys in one SCAN page: then the room is gone already.
    const purgedAtOnce = first.done;
    console.log(`admin-rooms.e2e: the first purge batch deleted ${first.deleted} keys; done at once: ${purgedAtOnce}`);
    const send = await call(admin.token, 'PUT', `/rooms/${encodeURIComponent(room)}/send/m.room.message/late`, { msgtype: 'm.text', body: 'too late' });
    // The front sent to this room before, so it asks the actor, which refuses ("being purged" or
    // "Unknown room"); /send answers as for a room that never existed: 403, not 404.
    expect(send.status).toBe(403);
    expect(send.body.errcode).toBe('M_FORBIDDEN');
    const started = await call(admin.token, 'DELETE', `/_synapse/admin/v2/rooms/${encodeURIComponent(room)}`, purgedAtOnce ? { block: true } : {});
    expect(started.status).toBe(200);
    const deadline = Date.now() + 120_000;
    let status: { status?: string; shutdown_room?: unknown; error?: string } = {};
    while (Date.now() < deadline) {
      status = (await call(admin.token, 'GET', `/_synapse/admin/v2/rooms/delete_status/${started.body.delete_id}`)).body;
      if (status.status === 'complete' || status.status === 'failed') break;
      await new Promise((res) => setTimeout(res, 300));
    }
    expect([status.status, status.error]).toEqual(['complete', undefined]);
    expect(status.shutdown_room).toEqual({ kicked_users: [], failed_to_kick_users: [], local_aliases: [], new_room_id: null });
    expect(await keysOfRoom(room)).toEqual([]);
    expect(((await call(admin.token, 'GET', '/publicRooms')).body.chunk as { room_id: string }[]).map((x) => x.room_id)).not.toContain(room);
    expect((await call(admin.token, 'GET', '/_synapse/admin/v1/rooms')).body.rooms.map((x: { room_id: string }) => x.room_id)).not.toContain(room);
    expect((await call(admin.token, 'GET', '/_synapse/admin/v1/federation/destinations')).body).toEqual({ destinations: [], total: 0 });
  }, 300_000);

  it("a purge also drops what local users kept for the room: room account data, tags, unread counts, notifications, membership index entries, thread subscriptions, backed-up keys", async () => {
    const reg = await call(null, 'POST', '/register', { username: 'keeper', password: 'keeper-password-1', auth: { type: 'm.login.dummy' } });
    expect(reg.status, JSON.stringify(reg.body)).toBe(200);
    const bob = { token: reg.body.access_token as string, userId: reg.body.user_id as string };
    const room = (await call(admin.token, 'POST', '/createRoom', { name: 'kept', preset: 'public_chat' })).body.room_id as string;
    const other = (await call(admin.token, 'POST', '/createRoom', { name: 'stays', preset: 'public_chat' })).body.room_id as string;
    const r = encodeURIComponent(room);
    const u = encodeURIComponent(bob.userId);
    for (const id of [room, other]) {
      expect((await call(bob.token, 'POST', `/join/${encodeURIComponent(id)}`, {})).status).toBe(200);
      expect((await call(bob.token, 'PUT', `/user/${u}/rooms/${encodeURIComponent(id)}/tags/m.favourite`, { order: 0.5 })).status).toBe(200);
      expect((await call(bob.token, 'PUT', `/user/${u}/rooms/${encodeURIComponent(id)}/account_data/org.example.note`, { n: 1 })).status).toBe(200);
      // A two-member room: every message notifies bob (the one-to-one default rule); his name highlights.
      for (let i = 0; i < 3; i++) expect((await call(admin.token, 'PUT', `/rooms/${encodeURIComponent(id)}/send/m.room.message/k${i}`, { msgtype: 'm.text', body: `hello keeper ${i}` })).status).toBe(200);
    }
    const notified = async () => ((await call(bob.token, 'GET', '/notifications?limit=100')).body.notifications as Json[]).map((n) => n.room_id as string);
    const deadline = Date.now() + 30_000;
    while ((await notified()).filter((id) => id === room).length < 3 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 200));
    expect((await notified()).filter((id) => id === room)).toHaveLength(3);
    /** Keys anywhere in Redis that name the user and the room (room account data, unread sets). */
    const userKeysOfRoom = async (roomId: string) => (await axon.redis.keys(`*${bob.userId}*`)).filter((k) => k.includes(roomId));
    expect((await userKeysOfRoom(room)).length).toBeGreaterThan(0);

    // What bob's other actors keep of the rooms: a thread subscription and backed-up keys in each.
    const backup = (await call(bob.token, 'POST', '/room_keys/version', { algorithm: 'm.megolm_backup.v1.curve25519-aes-sha2', auth_data: { public_key: 'pk' } })).body.version as string;
    const roomKey = { first_message_index: 0, forwarded_count: 0, is_verified: true, session_data: { ephemeral: 'e', ciphertext: 'c', mac: 'm' } };
    for (const id of [room, other]) {
      // bob's own root: it notifies nobody (the counts of notifications above stay).
      const root = (await call(bob.token, 'PUT', `/rooms/${encodeURIComponent(id)}/send/m.room.message/root`, { msgtype: 'm.text', body: 'a thread' })).body.event_id as string;
      expect((await call(bob.token, 'PUT', `/_matrix/client/unstable/io.element.msc4306/rooms/${encodeURIComponent(id)}/thread/${encodeURIComponent(root)}/subscription`, {})).status).toBe(200);
      expect((await call(bob.token, 'PUT', `/room_keys/keys/${encodeURIComponent(id)}?version=${backup}`, { sessions: { s1: roomKey, s2: roomKey } })).status).toBe(200);
    }
    expect((await call(bob.token, 'GET', `/room_keys/version/${backup}`)).body).toMatchObject({ count: 4, etag: '2' });
    const userKey = async (suffix: string) => (await axon.redis.keys(`*user:${bob.userId}:${suffix}`))[0]!;
    /** Where the room is named inside bob's hashes and sets (not in a key's name). */
    const insideOf = async (roomId: string) => ({
      index: (await axon.redis.hkeys(await userKey('rooms'))).filter((f) => f === roomId),
      writtenAt: (await axon.redis.hkeys(await userKey('roomsat'))).filter((f) => f === roomId),
      forgotten: (await axon.redis.smembers(await userKey('forgotten'))).filter((m) => m === roomId),
      threads: (await axon.redis.hkeys(await userKey('threadsubs'))).filter((f) => f.startsWith(`${roomId}\0`)),
      threadStream: (await axon.redis.zrange(await userKey('threadsubs:stream'), 0, -1)).filter((m) => m.startsWith(`${roomId}\0`)),
      backedUp: (await axon.redis.smembers(await userKey(`kb:${backup}:rooms`))).filter((m) => m === roomId),
    });

    expect((await call(bob.token, 'POST', `/rooms/${r}/leave`, {})).status).toBe(200);
    expect((await call(bob.token, 'POST', `/rooms/${r}/forget`, {})).status).toBe(200);
    expect(Object.values(await insideOf(room)).map((found) => found.length)).toEqual([1, 1, 1, 1, 1, 1]);
    // An appservice's network directory lists both rooms (the front's set, as its PUT writes it).
    const asList = new KeySpace(axon.config.redis.keyPrefix).appserviceRoomList();
    await axon.redis.sadd(asList, JSON.stringify(['as1', 'net', room]), JSON.stringify(['as1', 'net', other]));
    const started = await call(admin.token, 'DELETE', `/_synapse/admin/v2/rooms/${r}`, { purge: true });
    expect(started.status).toBe(200);
    let status: { status?: string } = {};
    const until = Date.now() + 120_000;
    while (status.status !== 'complete' && status.status !== 'failed' && Date.now() < until) {
      await new Promise((res) => setTimeout(res, 300));
      status = (await call(admin.token, 'GET', `/_synapse/admin/v2/rooms/delete_status/${started.body.delete_id}`)).body;
    }
    expect(status.status).toBe('complete');
    expect(await userKeysOfRoom(room)).toEqual([]);
    // The room's entries in bob's membership index, forgotten set, thread subscriptions and key
    // backup (as Synapse's purge deletes room_memberships, local_current_membership,
    // thread_subscriptions and e2e_room_keys rows); the other room's stay. The membership index
    // reader, which may apply bob's leave after his purge_room, does not write it again.
    expect(await insideOf(room)).toEqual({ index: [], writtenAt: [], forgotten: [], threads: [], threadStream: [], backedUp: [] });
    expect(Object.values(await insideOf(other)).map((found) => found.length)).toEqual([1, 1, 0, 1, 1, 1]);
    expect((await call(bob.token, 'GET', `/room_keys/version/${backup}`)).body).toMatchObject({ count: 2, etag: '3' });
    expect(await axon.redis.smembers(asList)).toEqual([JSON.stringify(['as1', 'net', other])]);
    expect((await call(bob.token, 'GET', `/room_keys/keys/${encodeURIComponent(other)}?version=${backup}`)).body).toMatchObject({ sessions: { s1: {}, s2: {} } });
    expect((await notified()).filter((id) => id === room)).toEqual([]);
    const hash = (await axon.redis.keys(`*${bob.userId}:notifd`))[0]!;
    expect((await axon.redis.hkeys(hash)).filter((m) => m.startsWith(`${room}\0`))).toEqual([]);
    // The other room is untouched.
    expect((await notified()).filter((id) => id === other)).toHaveLength(3);
    expect((await call(bob.token, 'GET', `/user/${u}/rooms/${encodeURIComponent(other)}/tags`)).body).toEqual({ tags: { 'm.favourite': { order: 0.5 } } });
    expect((await call(bob.token, 'GET', `/user/${u}/rooms/${encodeURIComponent(other)}/account_data/org.example.note`)).body).toEqual({ n: 1 });
  }, 300_000);

  it('backfill-room-list lists rooms made before the list existed', async () => {
    for (const name of ['one', 'two', 'three']) expect((await call(admin.token, 'POST', '/createRoom', { name })).status).toBe(200);
    const before = (await call(admin.token, 'GET', '/_synapse/admin/v1/rooms')).body;
    expect(before.total_rooms).toBeGreaterThanOrEqual(3);
    const keys = new KeySpace(axon.config.redis.keyPrefix);
    const counts = shardCountsFor(axon.config);
    for (let s = 0; s < counts.room; s++) await axon.redis.del(keys.shard('room', s).data(roomData.localRooms()));
    expect((await call(admin.token, 'GET', '/_synapse/admin/v1/rooms')).body.total_rooms).toBe(0);
    expect(await backfillRoomList(axon.redis, keys, counts.room)).toBe(before.total_rooms);
    expect((await call(admin.token, 'GET', '/_synapse/admin/v1/rooms')).body).toEqual(before);
  }, 120_000);
});

/** A v2 deletion's status, asked again until it is complete or failed (two minutes at most). */
async function finished(status: () => Promise<{ body: Json }>): Promise<{ status?: string; error?: string; shutdown_room?: unknown }> {
  let last: { status?: string; error?: string; shutdown_room?: unknown } = {};
  for (const until = Date.now() + 120_000; last.status !== 'complete' && last.status !== 'failed' && Date.now() < until; ) {
    await new Promise((res) => setTimeout(res, 300));
    last = (await status()).body;
  }
  return last;
}

describe('admin API rooms: deletions waiting for a worker (none ran the jobs; one queued before the upgrade)', () => {
  let axon: TestServer;
  let late: RunningRoomDeletionJobs | undefined;

  afterAll(async () => {
    await late?.close();
    await axon?.stop();
  });

  // The front only records a deletion and wakes a worker; with none running the jobs it stays
  // scheduled (its wake-up unanswered), and the first worker to start them finds it and runs it.
  it('stays scheduled, then is run by the first worker that starts', async () => {
    axon = await startTestServer({ configure: (c) => { c.registration.sharedSecret = SECRET; } });
    const admin = await registerAxonAdmin(axon.baseUrl, 'root', 'root-password-1', SECRET);
    const call = (method: string, path: string, body?: unknown) => callServer(axon, { token: admin.token }, method, path, body);
    const room = (await call('POST', '/createRoom', { name: 'waiting deletion', preset: 'public_chat' })).body.room_id as string;
    const started = await call('DELETE', `/_synapse/admin/v2/rooms/${encodeURIComponent(room)}`, { purge: true });
    expect(started.status).toBe(200);
    const deleteId = started.body.delete_id as string;
    expect((await call('GET', `/_synapse/admin/v2/rooms/delete_status/${deleteId}`)).body).toEqual({ delete_id: deleteId, room_id: room, status: 'scheduled', shutdown_room: null });
    // A second deletion of the room meanwhile is refused, as Synapse does.
    const again = await call('DELETE', `/_synapse/admin/v2/rooms/${encodeURIComponent(room)}`, {});
    expect([again.status, again.body.errcode]).toEqual([400, 'M_UNKNOWN']);
    late = await startRoomDeletionJobs(axon.config, pino({ level: 'silent' }), 'late', axon.signingKey);
    const status = await finished(() => call('GET', `/_synapse/admin/v2/rooms/delete_status/${deleteId}`));
    expect([status.status, status.error]).toEqual(['complete', undefined]);
    expect(status.shutdown_room).toEqual({ kicked_users: ['@root:' + axon.config.serverName], failed_to_kick_users: [], local_aliases: [], new_room_id: null });
    expect((await call('GET', '/_synapse/admin/v1/rooms')).body.rooms.map((x: { room_id: string }) => x.room_id)).not.toContain(room);
    // The refused second deletion left no record: the room's list names the one deletion.
    expect((await call('GET', `/_synapse/admin/v2/rooms/${encodeURIComponent(room)}/delete_status`)).body.results.map((r: { delete_id: string }) => r.delete_id)).toEqual([deleteId]);
  }, 180_000);

  // Before deletions had records, a front queued the job itself: its data the room and the
  // parameters, its id the delete id. One left by a server before the upgrade still runs and reports.
  it('runs a deletion a front queued in bullmq before deletions had records', async () => {
    const admin = await registerAxonAdmin(axon.baseUrl, 'elder', 'elder-password-1', SECRET);
    const call = (method: string, path: string, body?: unknown) => callServer(axon, { token: admin.token }, method, path, body);
    const room = (await call('POST', '/createRoom', { name: 'queued before the upgrade', preset: 'public_chat' })).body.room_id as string;
    const keys = new KeySpace(axon.config.redis.keyPrefix);
    const connection = bullConnection(axon.config);
    const queue = new Queue(ADMIN_ROOMS_QUEUE, { connection, prefix: keys.adminJobsPrefix() });
    const deleteId = `before${Date.now()}`;
    await axon.redis.zadd(keys.roomDeletions(room), Date.now(), deleteId);
    await queue.add('delete_room', { roomId: room, params: parseRoomDeletionBody({ purge: true }, admin.userId) }, { jobId: deleteId, attempts: 5 });
    await queue.close();
    connection.disconnect();
    const status = await finished(() => call('GET', `/_synapse/admin/v2/rooms/delete_status/${deleteId}`));
    expect([status.status, status.error]).toEqual(['complete', undefined]);
    expect(status.shutdown_room).toEqual({ kicked_users: [admin.userId], failed_to_kick_users: [], local_aliases: [], new_room_id: null });
    expect((await call('GET', '/_synapse/admin/v1/rooms')).body.rooms.map((x: { room_id: string }) => x.room_id)).not.toContain(room);
  }, 180_000);
});

describe.skipIf(skip)('admin API federation destinations: Axon and Synapse federating', () => {
  let pair: AxonAndSynapse;

  beforeAll(async () => {
    pair = await startAxonAndSynapse('127.0.0.75', '127.0.0.76');
  }, 240_000);
  afterAll(async () => {
    await pair?.stop();
  });

  it("lists each server as the other one's destination, with its shared room", async () => {
    const { axon, synapse, clients } = pair;
    const aAdmin = await clients.mint('boss', 'DEV1', { admin: true });
    const sAdmin = await synapse.registerUser('boss', 'boss-password-1', true);
    const sides: Side[] = [
      { label: 'axon', baseUrl: axon.baseUrl, serverName: axon.serverName, admin: { token: aAdmin.token, userId: aAdmin.userId } },
      { label: 'synapse', baseUrl: synapse.baseUrl, serverName: synapse.serverName, admin: { token: sAdmin.token, userId: sAdmin.userId } },
    ];
    const peerOf = (s: Side) => (s.label === 'axon' ? synapse.serverName : axon.serverName);
    const norm = (v: Json, serverName: string): Json => {
      const peer = serverName === axon.serverName ? synapse.serverName : axon.serverName;
      const walk = (x: Json, key = ''): Json => {
        if (Array.isArray(x)) return x.map((y) => walk(y, key));
        if (x && typeof x === 'object') return Object.fromEntries(Object.entries(x).map(([k, y]) => [k, walk(y, k)]));
        if (key === 'stream_ordering' && typeof x === 'number') return '<position>';
        if (typeof x === 'string') return x.split(peer).join('<peer>').split(serverName).join('<hs>').replace(/^![A-Za-z0-9_\-]+(:<(hs|peer)>)?$/, '<room>');
        return x;
      };
      return walk(v);
    };
    const { both, found } = comparison(() => sides, {
      allowed: {},
      allowedFields: {
        last_successful_stream_ordering: 'Axon has no global stream ordering of events (null)',
        error: "error wording is each server's own; the errcode and status are compared",
      },
      normalise: norm,
    });
    // A room on Axon that Synapse's user joins, and messages both ways: each server sends the other transactions.
    const alice = await clients.mint('alice');
    const bob = await synapse.registerUser('bob', 'bob password');
    const room = (await clients.call(alice, 'POST', '/createRoom', { preset: 'public_chat', room_alias_name: 'fed', room_version: '10' })).body.room_id as string;
    const joined = await synapse.call(bob, 'POST', `/join/${encodeURIComponent(`#fed:${axon.serverName}`)}`, {});
    expect(joined.status, JSON.stringify(joined.body)).toBe(200);
    expect((await clients.call(alice, 'PUT', `/rooms/${encodeURIComponent(room)}/send/m.room.message/a1`, { msgtype: 'm.text', body: 'hi' })).status).toBe(200);
    expect((await synapse.call(bob, 'PUT', `/rooms/${encodeURIComponent(room)}/send/m.room.message/b1`, { msgtype: 'm.text', body: 'hello' })).status).toBe(200);
    // Both have talked to each other once each side's destination lists the peer.
    const deadline = Date.now() + 60_000;
    for (const side of sides) {
      for (;;) {
        const r = await callServer(side, { token: side.admin.token }, 'GET', '/_synapse/admin/v1/federation/destinations');
        if (r.body.total >= 1) break;
        if (Date.now() > deadline) throw new Error(`${side.label}: no destination listed: ${JSON.stringify(r.body)}`);
        await new Promise((res) => setTimeout(res, 300));
      }
    }
    const list = await both('destinations', 'GET', () => '/_synapse/admin/v1/federation/destinations');
    expect(list.axon.body).toMatchObject({ destinations: [{ destination: '<peer>', retry_last_ts: 0, retry_interval: 0, failure_ts: null }], total: 1 });
    await both('destinations filtered', 'GET', () => '/_synapse/admin/v1/federation/destinations?destination=zzz');
    await both('destinations by retry', 'GET', () => '/_synapse/admin/v1/federation/destinations?order_by=retry_last_ts&dir=b');
    await both('destination', 'GET', (s) => `/_synapse/admin/v1/federation/destinations/${encodeURIComponent(peerOf(s))}`);
    const rooms = await both('destination rooms', 'GET', (s) => `/_synapse/admin/v1/federation/destinations/${encodeURIComponent(peerOf(s))}/rooms`);
    expect(rooms.axon.body).toEqual({ rooms: [{ room_id: '<room>', stream_ordering: '<position>' }], total: 1 });
    await both('reset not needed', 'POST', (s) => `/_synapse/admin/v1/federation/destinations/${encodeURIComponent(peerOf(s))}/reset_connection`, {});
    await both('non-admin', 'GET', () => '/_synapse/admin/v1/federation/destinations', undefined, (s) => (s.label === 'axon' ? alice.token : bob.token));
    console.log(`admin-rooms.e2e (destinations): differences not allowed:\n${found.join('\n')}`);
    expect(found).toEqual([]);
  }, 300_000);
});
