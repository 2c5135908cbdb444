/**
 * The appservice Client-Server API side by side with Synapse 1.163.2: both servers load the same
 * registration files (each pointing at its own instance of the same test appservice), and the
 * same requests get the same statuses and error codes — registration of puppets, identity
 * assertion, appservice login, exclusivity, ping, third-party protocols, the appservice room
 * directory, alias queries. Where Axon answers differently on purpose, the test says so.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callServer, loopbackServerName, startSynapse, synapseInstallation, type SynapsePeer } from '../peers/synapse';
import { createTestCa, type TestCa } from '../peers/test-ca';
import { startTestServer, type TestServer } from '../e2e/server-harness';
import { freePort } from '../setup/free-port';
import { AS_TOKEN, AppserviceServer, NOURL_TOKEN, writeRegistrations } from './query-appservice';

const install = synapseInstallation();
const skip = !install.ok && !process.env.CI;
if (skip && !install.ok) console.warn(`appservice-vs-synapse.e2e: skipped. ${install.reason}`);

const SYNAPSE_IP = '127.0.0.233';

type Json = Record<string, any>;
interface Side {
  label: 'axon' | 'synapse';
  baseUrl: string;
  serverName: string;
  appservice: AppserviceServer;
}

describe.skipIf(skip)('appservice Client-Server API: Axon against Synapse', () => {
  let ca: TestCa;
  let synapse: SynapsePeer;
  let axon: TestServer;
  let sides: Side[] = [];

  /** The same request on both servers (paths may name the side's server); both answers. */
  async function both(method: string, path: (s: Side) => string, body?: (s: Side) => unknown, token: string | null = AS_TOKEN): Promise<Record<'axon' | 'synapse', { status: number; body: Json }>> {
    const [a, s] = await Promise.all(sides.map((side) => callServer(side, token === null ? null : { token }, method, path(side), body?.(side))));
    return { axon: { status: a!.status, body: a!.body }, synapse: { status: s!.status, body: s!.body } };
  }
  const codes = (r: { status: number; body: Json }) => [r.status, r.body.errcode];
  /** Same status and errcode on both; the answers. */
  async function same(method: string, path: (s: Side) => string, body?: (s: Side) => unknown, token: string | null = AS_TOKEN) {
    const r = await both(method, path, body, token);
    expect(codes(r.axon), `axon ${JSON.stringify(r.axon.body)} / synapse ${JSON.stringify(r.synapse.body)}`).toEqual(codes(r.synapse));
    return r;
  }
  const uid = (s: Side, localpart: string) => encodeURIComponent(`@${localpart}:${s.serverName}`);

  beforeAll(async () => {
    ca = createTestCa();
    const serverName = await loopbackServerName(SYNAPSE_IP);
    const axonAs = new AppserviceServer();
    const synapseAs = new AppserviceServer();
    await Promise.all([axonAs.start(), synapseAs.start()]);
    const closed = await freePort();
    const axonFiles = writeRegistrations(mkdtempSync(join(tmpdir(), 'axon-as-vs-')), axonAs.port, closed, false);
    const synapseFiles = writeRegistrations(mkdtempSync(join(tmpdir(), 'axon-as-vs-s-')), synapseAs.port, closed, false);
    [synapse, axon] = await Promise.all([
      startSynapse({
        serverName, ca, logLevel: 'WARNING',
        configure: (c) => {
          c.app_service_config_files = synapseFiles;
          c.enable_registration = true;
          c.enable_registration_without_verification = true;
        },
      }),
      startTestServer({ configure: (c) => { c.appservices = { ...c.appservices, configFiles: axonFiles, queryTimeoutMs: 5000 }; } }),
    ]);
    axonAs.homeserver = axon.baseUrl;
    axonAs.serverName = axon.serverName;
    synapseAs.homeserver = synapse.baseUrl;
    synapseAs.serverName = synapse.serverName;
    sides = [
      { label: 'axon', baseUrl: axon.baseUrl, serverName: axon.serverName, appservice: axonAs },
      { label: 'synapse', baseUrl: synapse.baseUrl, serverName: synapse.serverName, appservice: synapseAs },
    ];
  }, 240_000);

  afterAll(async () => {
    await Promise.all([synapse?.stop(), axon?.stop(), ...sides.map((s) => s.appservice.stop())]);
    ca?.cleanup();
  });

  it('registers puppets and refuses what Synapse refuses', async () => {
    const reg = (username: unknown, extra: Json = {}) => () => ({ type: 'm.login.application_service', username, ...extra });
    const ok = await same('POST', () => '/register', reg('irc_alice'));
    expect(ok.axon.status).toBe(200);
    expect(Object.keys(ok.axon.body).sort()).toEqual(Object.keys(ok.synapse.body).sort());
    const inhibited = await same('POST', () => '/register', reg('irc_bob', { inhibit_login: true }));
    expect(Object.keys(inhibited.axon.body).sort()).toEqual(Object.keys(inhibited.synapse.body).sort());
    await same('POST', () => '/register', reg('irc_alice'));
    await same('POST', () => '/register', reg('plainname'));
    await same('POST', () => '/register', reg('second_x'));
    // Without a token: Axon answers the spec's 401 M_MISSING_TOKEN, Synapse 400 M_UNKNOWN.
    const tokenless = await both('POST', () => '/register', reg('irc_x'), null);
    expect([codes(tokenless.axon), codes(tokenless.synapse)]).toEqual([[401, 'M_MISSING_TOKEN'], [400, 'M_UNKNOWN']]);
    await same('POST', () => '/register', reg('irc_x'), 'wrong-token');
    await same('GET', () => '/register/available?username=irc_mallory', undefined, null);
    await same('GET', () => '/register/available?username=shared_one', undefined, null);
  });

  it('asserts identities as Synapse does', async () => {
    const me = await same('GET', () => '/account/whoami');
    expect(me.axon.body).toEqual({ user_id: `@ircbot:${axon.serverName}`, is_guest: false });
    expect(me.synapse.body).toEqual({ user_id: `@ircbot:${synapse.serverName}`, is_guest: false });
    const alice = await same('GET', (s) => `/account/whoami?user_id=${uid(s, 'irc_alice')}`);
    expect(alice.axon.body.user_id).toBe(`@irc_alice:${axon.serverName}`);
    await same('GET', (s) => `/account/whoami?user_id=${uid(s, 'second_x')}`);
    await same('GET', (s) => `/account/whoami?user_id=${uid(s, 'irc_nobody')}`);
    await same('GET', (s) => `/account/whoami?user_id=${uid(s, 'irc_alice')}&device_id=NOPE`);
  });

  it('logs puppets in with m.login.application_service', async () => {
    const flows = await same('GET', () => '/login', undefined, null);
    expect(flows.axon.body.flows).toEqual(flows.synapse.body.flows);
    const login = (user: string) => (s: Side) => ({ type: 'm.login.application_service', identifier: { type: 'm.id.user', user: user.startsWith('@') ? `${user}:${s.serverName}` : user } });
    const ok = await same('POST', () => '/login', login('irc_bob'));
    expect(ok.axon.status).toBe(200);
    await same('POST', () => '/login', login('@someoneelse'));
    await same('POST', () => '/login', login('irc_bob'), NOURL_TOKEN);
  });

  it('pings, and names a missing URL and a wrong id the same way', async () => {
    const ok = await same('POST', () => '/_matrix/client/v1/appservice/bridge/ping', () => ({ transaction_id: 'vs-1' }));
    expect(typeof ok.axon.body.duration_ms).toBe('number');
    await same('POST', () => '/_matrix/client/v1/appservice/second/ping', () => ({}));
    await same('POST', () => '/_matrix/client/v1/appservice/nourl/ping', () => ({}), NOURL_TOKEN);
    for (const side of sides) {
      const seen = side.appservice.seen.filter((s) => s.path === '/bridge/_matrix/app/v1/ping').at(-1);
      expect(JSON.parse(seen!.body), side.label).toEqual({ transaction_id: 'vs-1' });
    }
  });

  it('merges third-party protocols into the same answer', async () => {
    const r = await same('GET', () => '/thirdparty/protocols');
    const sorted = (body: Json) => ({ ...body.irc, instances: [...body.irc.instances].sort((a: Json, b: Json) => JSON.stringify(a).localeCompare(JSON.stringify(b))) });
    expect(sorted(r.axon.body)).toEqual(sorted(r.synapse.body));
    const one = await same('GET', () => '/thirdparty/protocol/irc');
    expect(sorted({ irc: one.axon.body })).toEqual(sorted({ irc: one.synapse.body }));
    // Unknown protocol: 404 on both (Synapse's body has no errcode; Axon's says M_NOT_FOUND).
    const unknown = await both('GET', () => '/thirdparty/protocol/xmpp');
    expect([unknown.axon.status, unknown.synapse.status]).toEqual([404, 404]);
    const users = await same('GET', () => '/thirdparty/user/irc?nickname=bob');
    const ids = (b: Json[]) => b.map((u) => u.userid.split(':')[0]).sort();
    expect(ids(users.axon.body as unknown as Json[])).toEqual(ids(users.synapse.body as unknown as Json[]));
  });

  it('keeps exclusive aliases, asks about unknown ones, and lists network rooms', async () => {
    const plain = await Promise.all(sides.map(async (s) => {
      const name = `vsuser${Date.now() % 100000}`;
      const first = await callServer(s, null, 'POST', '/register', { username: name, password: 'pw pw pw pw' });
      const done = await callServer(s, null, 'POST', '/register', { username: name, password: 'pw pw pw pw', auth: { type: 'm.login.dummy', session: first.body.session } });
      expect(done.status, `${s.label} ${JSON.stringify(done.body)}`).toBe(200);
      const room = await callServer(s, { token: done.body.access_token }, 'POST', '/createRoom', {});
      return { token: done.body.access_token as string, roomId: room.body.room_id as string };
    }));
    const put = await Promise.all(sides.map((s, i) => callServer(s, { token: plain[i]!.token }, 'PUT', `/directory/room/${encodeURIComponent(`#irc_taken:${s.serverName}`)}`, { room_id: plain[i]!.roomId })));
    expect(put.map((r) => [r.status, r.body.errcode])).toEqual([[400, 'M_EXCLUSIVE'], [400, 'M_EXCLUSIVE']]);
    const portal = await same('GET', (s) => `/directory/room/${encodeURIComponent(`#irc_portalvs:${s.serverName}`)}`, undefined, null);
    expect(portal.axon.status).toBe(200);
    await same('GET', (s) => `/directory/room/${encodeURIComponent(`#irc_nothere:${s.serverName}`)}`, undefined, null);

    // Public: Synapse lists only rooms anyone may join or read (Axon lists every published room).
    const rooms = await Promise.all(sides.map((s) => callServer(s, { token: AS_TOKEN }, 'POST', '/createRoom', { name: 'network room', preset: 'public_chat' })));
    const listed = await Promise.all(sides.map((s, i) => callServer(s, { token: AS_TOKEN }, 'PUT', `/directory/list/appservice/libera/${encodeURIComponent(rooms[i]!.body.room_id)}`, { visibility: 'public' })));
    expect(listed.map((r) => r.status)).toEqual([200, 200]);
    // POST: Synapse's GET /publicRooms ignores `third_party_instance_id` and
    // `include_all_networks` (the spec has them on GET too, and Axon reads them there).
    const network = await same('POST', () => '/publicRooms', () => ({ third_party_instance_id: 'bridge|libera' }));
    expect(network.axon.body.chunk.map((c: Json) => c.room_id)).toEqual([rooms[0]!.body.room_id]);
    expect(network.synapse.body.chunk.map((c: Json) => c.room_id)).toEqual([rooms[1]!.body.room_id]);
    const all = await same('POST', () => '/publicRooms', () => ({ include_all_networks: true }));
    expect(all.axon.body.chunk.map((c: Json) => c.room_id)).toContain(rooms[0]!.body.room_id);
    expect(all.synapse.body.chunk.map((c: Json) => c.room_id)).toContain(rooms[1]!.body.room_id);
    const local = await same('POST', () => '/publicRooms', () => ({}));
    expect(local.axon.body.chunk.map((c: Json) => c.room_id)).not.toContain(rooms[0]!.body.room_id);
    expect(local.synapse.body.chunk.map((c: Json) => c.room_id)).not.toContain(rooms[1]!.body.room_id);
    // Not for people, on either server.
    const refused = await Promise.all(sides.map((s, i) => callServer(s, { token: plain[i]!.token }, 'PUT', `/directory/list/appservice/libera/${encodeURIComponent(plain[i]!.roomId)}`, { visibility: 'public' })));
    expect(refused.map((r) => r.status)).toEqual([403, 403]);
  });

  it('differs on purpose: Axon asks the appservice about an unknown puppet on a profile look-up', async () => {
    // Synapse asks only when it is about to push an event naming the user to the appservice;
    // Axon also asks when a client looks the user up, so the puppet's profile is there at once.
    const r = await both('GET', (s) => `/profile/${uid(s, 'irc_knownvs')}`, undefined, AS_TOKEN);
    expect(r.axon.status).toBe(200);
    expect(r.synapse.status).toBe(404);
  });
});
