/**
 * The Client-Server API audit (issue 17, item 1): every operation of the spec's OpenAPI
 * (`matrix-spec/data/api/client-server/*.yaml`, read by scripts/lib/cs-openapi.ts) probed on a
 * running server, and the answers printed as a table. A script, not a test: it prints what it
 * saw and asserts nothing (test/e2e/openapi-routes.e2e.test.ts asserts the cheap parts).
 *
 * For each operation:
 *   - routed: the request with a token is not answered 404/405 `M_UNRECOGNIZED`;
 *   - auth: without a token, 401 `M_MISSING_TOKEN` where `security` requires one, and not 401
 *     where the spec takes no token;
 *   - answer: a simple valid request (a recipe below, or the spec's request example) answered with
 *     the spec's success status, its body checked against the whole success schema (nested
 *     fields, JSON types, enums: `missing:` / `type:` for the top level, a list for the rest);
 *   - a malformed JSON body (400 `M_NOT_JSON`), each required body field left out (400), each
 *     integer or boolean query parameter given a word (400 `M_INVALID_PARAM`), and the same
 *     request naming an unknown room or event (compared across servers).
 * Then the error cases (`errorCases`): requests the spec gives a particular error for.
 * The fixtures (users, a published room with an alias, events and relations, media, a filter, a
 * key backup, cross-signing keys, and activity after a /sync position) are made through the API
 * first; operations that end sessions or rooms get users and rooms of their own.
 *
 *   node --import tsx scripts/conformance-audit.ts                 # a throwaway Axon (managed Redis)
 *   node --import tsx scripts/conformance-audit.ts --vs synapse    # and Synapse 1.163.2, side by side
 *   node --import tsx scripts/conformance-audit.ts --target http://127.0.0.1:8008   # a running server (open registration)
 *   ... --server-name example.org   # the running server's name, when not the URL's host
 *   ... --only rooms           # operations whose path contains "rooms"
 *   ... --json out.json        # the rows as JSON too
 *   ... --table                # also check docs/conformance.md: every operation has a row
 *
 * The spec is looked up at $AXON_MATRIX_SPEC_DIR, ../shared/matrix-spec or /work/shared/matrix-spec.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadClientServerOperations, parseConformanceTable, rowFor, shortPath, type SpecOperation } from './lib/cs-openapi';
import { startAxonBench, type AxonBench } from './lib/axon-bench-cluster';
import { loopbackServerName, startSynapse, type SynapsePeer } from './lib/synapse-peer';
import { createTestCa } from './lib/test-ca';

type Json = Record<string, any>;

interface Session {
  userId: string;
  deviceId: string;
  token: string;
}

interface Target {
  name: string;
  baseUrl: string;
  serverName: string;
  register(localpart: string): Promise<Session>;
  stop(): Promise<void>;
}

interface Answer {
  status: number;
  body: any;
  errcode?: string;
}

const root = join(import.meta.dirname, '..');

// ---- options -----------------------------------------------------------------------------------

const args = process.argv.slice(2);
const opt = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
if (args.includes('--help')) {
  console.log(readFileSync(import.meta.filename, 'utf8').split('*/')[0]);
  process.exit(0);
}
const only = opt('--only');
const jsonOut = opt('--json');
const vsSynapse = opt('--vs') === 'synapse';
const explicitTarget = opt('--target');

// ---- HTTP --------------------------------------------------------------------------------------

async function call(t: Target, s: Session | null, method: string, path: string, body?: unknown, raw?: { bytes: Buffer; type: string }): Promise<Answer> {
  const url = path.startsWith('/_') || path.startsWith('/.') ? `${t.baseUrl}${path}` : `${t.baseUrl}/_matrix/client/v3${path}`;
  const headers: Record<string, string> = s ? { Authorization: `Bearer ${s.token}` } : {};
  let payload: string | Buffer | undefined;
  if (raw) {
    headers['Content-Type'] = raw.type;
    payload = raw.bytes;
  } else if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  const r = await fetch(url, { method, headers, body: payload, redirect: 'manual', signal: AbortSignal.timeout(30_000) });
  const text = await r.text();
  let parsed: any = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON (media, redirects)
  }
  return { status: r.status, body: parsed, errcode: parsed && typeof parsed === 'object' ? parsed.errcode : undefined };
}

async function ok(t: Target, s: Session | null, method: string, path: string, body?: unknown): Promise<any> {
  const r = await call(t, s, method, path, body);
  if (r.status !== 200) throw new Error(`${t.name}: ${method} ${path} → ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`);
  return r.body;
}

const enc = encodeURIComponent;
const txn = () => `audit${randomBytes(6).toString('hex')}`;

// ---- targets -----------------------------------------------------------------------------------

/** `POST /register` with the dummy stage in the first request (open registration). */
async function registerOpen(baseUrl: string, localpart: string): Promise<Session> {
  const t = { name: baseUrl, baseUrl } as Target;
  const b = await ok(t, null, 'POST', '/register', { username: localpart, password: `pw-${localpart}-audit`, auth: { type: 'm.login.dummy' }, initial_device_display_name: 'audit' });
  return { userId: b.user_id, deviceId: b.device_id, token: b.access_token };
}

/** Until `/versions` answers, then until a registration goes through (the workers hold the shards). */
async function waitUp(baseUrl: string): Promise<void> {
  const deadline = Date.now() + 90_000;
  for (;;) {
    try {
      const r = await fetch(`${baseUrl}/_matrix/client/versions`);
      if (r.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${baseUrl} did not come up within 90 s`);
    await new Promise((r) => setTimeout(r, 200));
  }
  for (;;) {
    try {
      await registerOpen(baseUrl, `audit_warm_${randomBytes(3).toString('hex')}`);
      return;
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

async function startAxonTarget(): Promise<Target> {
  // TURN configured (a made-up server: only the credentials are checked), so /voip/turnServer answers.
  const axon: AxonBench = await startAxonBench({ workers: 1, fronts: 1, shards: 4, logLevel: 'error', stderr: 'ignore', env: { AXON_VOIP_TURN_URIS: 'turn:turn.example.org:3478', AXON_VOIP_TURN_SHARED_SECRET: 'audit' } });
  await waitUp(axon.url);
  return { name: 'axon', baseUrl: axon.url, serverName: 'localhost', register: (l) => registerOpen(axon.url, l), stop: () => axon.stop() };
}

async function startSynapseTarget(): Promise<Target> {
  const ca = createTestCa();
  const peer: SynapsePeer = await startSynapse({ serverName: await loopbackServerName('127.0.0.41'), ca, logLevel: 'WARNING' });
  return { name: 'synapse', baseUrl: peer.baseUrl, serverName: peer.serverName, register: (l) => peer.registerUser(l, `pw-${l}-audit`), stop: () => peer.stop() };
}

// ---- fixtures ----------------------------------------------------------------------------------

interface Fixtures {
  alice: Session;
  bob: Session;
  roomId: string;
  alias: string;
  aliasLocalpart: string;
  eventId: string;
  mediaId: string;
  filterId: string;
  backupVersion: string;
  /** A `/sync` position taken before the activity that fills an incremental sync's sections. */
  sinceToken: string;
  fresh(tag: string): Promise<Session>;
  /** A room of alice's that bob has joined (for operations that change membership). */
  freshRoom(opts?: Json): Promise<string>;
}

async function makeFixtures(t: Target): Promise<Fixtures> {
  const suffix = randomBytes(3).toString('hex');
  let n = 0;
  const fresh = (tag: string) => t.register(`audit_${tag.replace(/[^a-z0-9]/g, '').slice(0, 12)}_${suffix}_${++n}`);
  const alice = await t.register(`alice_${suffix}`);
  const bob = await t.register(`bob_${suffix}`);
  const aliasLocalpart = `audit_${suffix}`;
  // Published, so that /publicRooms has an entry to check against the schema.
  const created = await ok(t, alice, 'POST', '/createRoom', { preset: 'public_chat', visibility: 'public', room_alias_name: aliasLocalpart, name: 'Audit room', topic: 'audit' });
  const roomId = created.room_id as string;
  await ok(t, bob, 'POST', `/join/${enc(roomId)}`, {});
  const eventId = (await ok(t, alice, 'PUT', `/rooms/${enc(roomId)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body: 'hello audit' })).event_id as string;
  await ok(t, bob, 'PUT', `/rooms/${enc(roomId)}/send/m.reaction/${txn()}`, { 'm.relates_to': { rel_type: 'm.annotation', event_id: eventId, key: '👍' } });
  await ok(t, alice, 'PUT', `/rooms/${enc(roomId)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body: 'in thread', 'm.relates_to': { rel_type: 'm.thread', event_id: eventId } });
  const upload = await call(t, alice, 'POST', '/_matrix/media/v3/upload?filename=a.txt', undefined, { bytes: Buffer.from('audit media'), type: 'text/plain' });
  const mediaId = String(upload.body?.content_uri ?? '').split('/').pop() ?? '';
  const filterId = (await ok(t, alice, 'POST', `/user/${enc(alice.userId)}/filter`, { room: { timeline: { limit: 5 } } })).filter_id as string;
  const backupVersion = (await ok(t, alice, 'POST', '/room_keys/version', { algorithm: 'm.megolm_backup.v1.curve25519-aes-sha2', auth_data: { public_key: 'abcdefg', signatures: {} } })).version as string;
  const freshRoom = async (opts: Json = {}) => {
    const r = (await ok(t, alice, 'POST', '/createRoom', { preset: 'public_chat', ...opts })).room_id as string;
    await ok(t, bob, 'POST', `/rooms/${enc(r)}/join`, {});
    return r;
  };
  // Activity after a sync position, so that an incremental /sync has every section to check:
  // an invite, a room left, to-device, account data, receipts, typing, presence, device lists.
  const sinceToken = (await ok(t, alice, 'GET', '/sync?timeout=0')).next_batch as string;
  const invitedTo = (await ok(t, bob, 'POST', '/createRoom', { preset: 'private_chat', name: 'invite for alice' })).room_id as string;
  await ok(t, bob, 'POST', `/rooms/${enc(invitedTo)}/invite`, { user_id: alice.userId });
  const leftRoom = (await ok(t, bob, 'POST', '/createRoom', { preset: 'public_chat' })).room_id as string;
  await ok(t, alice, 'POST', `/join/${enc(leftRoom)}`, {});
  await ok(t, alice, 'POST', `/rooms/${enc(leftRoom)}/leave`, {});
  await ok(t, bob, 'PUT', `/sendToDevice/org.example.audit/${txn()}`, { messages: { [alice.userId]: { [alice.deviceId]: { hello: 'audit' } } } });
  await ok(t, alice, 'PUT', `/user/${enc(alice.userId)}/account_data/org.example.sync`, { a: 1 });
  await ok(t, alice, 'PUT', `/user/${enc(alice.userId)}/rooms/${enc(roomId)}/account_data/org.example.sync`, { a: 1 });
  await ok(t, bob, 'POST', `/rooms/${enc(roomId)}/receipt/m.read/${enc(eventId)}`, {});
  await ok(t, bob, 'PUT', `/rooms/${enc(roomId)}/typing/${enc(bob.userId)}`, { typing: true, timeout: 30000 });
  await ok(t, bob, 'PUT', `/presence/${enc(bob.userId)}/status`, { presence: 'online', status_msg: 'auditing' });
  await ok(t, bob, 'POST', '/keys/upload', { device_keys: { user_id: bob.userId, device_id: bob.deviceId, algorithms: ['m.olm.v1.curve25519-aes-sha2'], keys: { [`curve25519:${bob.deviceId}`]: randomBytes(32).toString('base64').replace(/=+$/, ''), [`ed25519:${bob.deviceId}`]: randomBytes(32).toString('base64').replace(/=+$/, '') }, signatures: {} } });
  await ok(t, alice, 'PUT', `/rooms/${enc(roomId)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body: 'after the sync position' });
  // A mention of alice (a highlight in /notifications) and alice's cross-signing keys (in /keys/query).
  await ok(t, bob, 'PUT', `/rooms/${enc(roomId)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body: `${alice.userId} look`, 'm.mentions': { user_ids: [alice.userId] } });
  const pub = () => randomBytes(32).toString('base64').replace(/=+$/, '');
  const master = pub();
  await ok(t, alice, 'POST', '/keys/device_signing/upload', { master_key: { user_id: alice.userId, usage: ['master'], keys: { [`ed25519:${master}`]: master } }, auth: { type: 'm.login.password', identifier: { type: 'm.id.user', user: alice.userId }, password: `pw-${alice.userId.slice(1).split(':')[0]}-audit` } });
  return { alice, bob, roomId, alias: `#${aliasLocalpart}:${t.serverName}`, aliasLocalpart, eventId, mediaId, filterId, backupVersion, sinceToken, fresh, freshRoom };
}

// ---- requests ----------------------------------------------------------------------------------

interface Request {
  session?: Session | null;
  params?: Record<string, string>;
  query?: Record<string, string>;
  body?: unknown;
  raw?: { bytes: Buffer; type: string };
  /** Requests to make first (e.g. a push rule to read). */
  before?: (t: Target, f: Fixtures) => Promise<void>;
  /** Why the answer cannot be a success with a simple request (no identity server, admin only…). */
  note?: string;
}

type Recipe = (f: Fixtures, t: Target) => Promise<Request> | Request;

const megolmKey = { first_message_index: 0, forwarded_count: 0, is_verified: false, session_data: { ephemeral: 'e', ciphertext: 'c', mac: 'm' } };

/** Requests by `METHOD shortPath`; an operation without one gets the shared fixtures and the spec's example body. */
const recipes: Record<string, Recipe> = {
  'POST /register': () => ({ body: { username: `audit_reg_${randomBytes(3).toString('hex')}`, password: 'pw-audit-register', auth: { type: 'm.login.dummy' } } }),
  'GET /register/available': () => ({ query: { username: `audit_free_${randomBytes(3).toString('hex')}` } }),
  'GET /v1/register/m.login.registration_token/validity': () => ({ query: { token: 'nonexistent' } }),
  'POST /login': async (f, t) => {
    const s = await f.fresh('login');
    return { body: { type: 'm.login.password', identifier: { type: 'm.id.user', user: s.userId }, password: `pw-${s.userId.slice(1).split(':')[0]}-audit` }, session: null, note: t.name };
  },
  'POST /logout': async (f) => ({ session: await f.fresh('logout'), body: {} }),
  'POST /logout/all': async (f) => ({ session: await f.fresh('logoutall'), body: {} }),
  'POST /refresh': () => ({ body: { refresh_token: 'unknown' }, note: 'a refresh token needs a login with refresh_token: true' }),
  'POST /account/deactivate': async (f) => {
    const s = await f.fresh('deact');
    return { session: s, body: { auth: { type: 'm.login.password', identifier: { type: 'm.id.user', user: s.userId }, password: `pw-${s.userId.slice(1).split(':')[0]}-audit` } } };
  },
  'POST /account/password': async (f) => {
    const s = await f.fresh('passwd');
    return { session: s, body: { new_password: 'pw-new-audit-1', logout_devices: false, auth: { type: 'm.login.password', identifier: { type: 'm.id.user', user: s.userId }, password: `pw-${s.userId.slice(1).split(':')[0]}-audit` } } };
  },
  'POST /createRoom': () => ({ body: { preset: 'private_chat', name: 'audit' } }),
  'POST /join/{roomIdOrAlias}': async (f) => ({ session: await f.fresh('join'), params: { roomIdOrAlias: f.alias }, body: {} }),
  'POST /rooms/{roomId}/join': async (f) => ({ session: await f.fresh('join2'), body: {} }),
  'POST /knock/{roomIdOrAlias}': async (f, t) => {
    const r = (await ok(t, f.alice, 'POST', '/createRoom', { preset: 'private_chat', room_version: '10', initial_state: [{ type: 'm.room.join_rules', state_key: '', content: { join_rule: 'knock' } }] })).room_id;
    return { session: await f.fresh('knock'), params: { roomIdOrAlias: r }, body: { reason: 'audit' } };
  },
  'POST /rooms/{roomId}/leave': async (f) => ({ session: f.bob, params: { roomId: await f.freshRoom() }, body: {} }),
  'POST /rooms/{roomId}/forget': async (f, t) => {
    const r = await f.freshRoom();
    await ok(t, f.bob, 'POST', `/rooms/${enc(r)}/leave`, {});
    return { session: f.bob, params: { roomId: r }, body: {} };
  },
  'POST /rooms/{roomId}/invite': async (f) => ({ params: { roomId: await f.freshRoom() }, body: { user_id: (await f.fresh('invitee')).userId } }),
  'POST /rooms/{roomId}/kick': async (f) => ({ params: { roomId: await f.freshRoom() }, body: { user_id: f.bob.userId, reason: 'audit' } }),
  'POST /rooms/{roomId}/ban': async (f) => ({ params: { roomId: await f.freshRoom() }, body: { user_id: f.bob.userId, reason: 'audit' } }),
  'POST /rooms/{roomId}/unban': async (f, t) => {
    const r = await f.freshRoom();
    await ok(t, f.alice, 'POST', `/rooms/${enc(r)}/ban`, { user_id: f.bob.userId });
    return { params: { roomId: r }, body: { user_id: f.bob.userId } };
  },
  'POST /rooms/{roomId}/upgrade': async (f) => ({ params: { roomId: await f.freshRoom() }, body: { new_version: '11' } }),
  'PUT /rooms/{roomId}/send/{eventType}/{txnId}': () => ({ params: { eventType: 'm.room.message' }, body: { msgtype: 'm.text', body: 'audit' } }),
  'PUT /rooms/{roomId}/state/{eventType}/{stateKey}': () => ({ params: { eventType: 'org.example.audit', stateKey: 'k' }, body: { n: randomBytes(3).toString('hex') } }),
  'GET /rooms/{roomId}/state/{eventType}/{stateKey}': () => ({ params: { eventType: 'm.room.name', stateKey: '' } }),
  'PUT /rooms/{roomId}/redact/{eventId}/{txnId}': async (f, t) => ({ params: { eventId: (await ok(t, f.alice, 'PUT', `/rooms/${enc(f.roomId)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body: 'to redact' })).event_id }, body: { reason: 'audit' } }),
  'POST /rooms/{roomId}/receipt/{receiptType}/{eventId}': () => ({ params: { receiptType: 'm.read' }, body: {} }),
  'POST /rooms/{roomId}/read_markers': (f) => ({ body: { 'm.fully_read': f.eventId, 'm.read': f.eventId } }),
  'PUT /rooms/{roomId}/typing/{userId}': () => ({ body: { typing: true, timeout: 3000 } }),
  'GET /v1/rooms/{roomId}/timestamp_to_event': () => ({ query: { ts: String(Date.now()), dir: 'b' } }),
  'GET /v1/rooms/{roomId}/relations/{eventId}/{relType}': () => ({ params: { relType: 'm.annotation' } }),
  'GET /v1/rooms/{roomId}/relations/{eventId}/{relType}/{eventType}': () => ({ params: { relType: 'm.annotation', eventType: 'm.reaction' } }),
  'POST /rooms/{roomId}/report': () => ({ body: { reason: 'audit' } }),
  'POST /rooms/{roomId}/report/{eventId}': () => ({ body: { reason: 'audit', score: -100 } }),
  'POST /users/{userId}/report': (f) => ({ params: { userId: f.bob.userId }, body: { reason: 'audit' } }),
  // Incremental, from before the fixtures' last activity (every section present); lazy members.
  'GET /sync': (f) => ({ query: { timeout: '0', since: f.sinceToken, filter: JSON.stringify({ room: { state: { lazy_load_members: true }, timeline: { limit: 3 } } }) } }),
  'GET /rooms/{roomId}/messages': () => ({ query: { dir: 'b', limit: '5', filter: JSON.stringify({ lazy_load_members: true }) } }),
  'GET /rooms/{roomId}/context/{eventId}': () => ({ query: { limit: '4' } }),
  'GET /rooms/{roomId}/members': (f) => ({ query: { at: f.sinceToken } }),
  'GET /events': () => ({ query: { timeout: '0' } }),
  'GET /initialSync': () => ({ query: { limit: '1' } }),
  'GET /events/{eventId}': () => ({}),
  'POST /user/{userId}/filter': () => ({ body: { room: { timeline: { limit: 10 } } } }),
  'PUT /user/{userId}/account_data/{type}': () => ({ params: { type: 'org.example.audit' }, body: { a: 1 } }),
  'GET /user/{userId}/account_data/{type}': () => ({ params: { type: 'org.example.audit' }, before: async (t, f) => void (await ok(t, f.alice, 'PUT', `/user/${enc(f.alice.userId)}/account_data/org.example.audit`, { a: 1 })) }),
  'PUT /user/{userId}/rooms/{roomId}/account_data/{type}': () => ({ params: { type: 'org.example.audit' }, body: { a: 1 } }),
  'GET /user/{userId}/rooms/{roomId}/account_data/{type}': () => ({ params: { type: 'org.example.audit' }, before: async (t, f) => void (await ok(t, f.alice, 'PUT', `/user/${enc(f.alice.userId)}/rooms/${enc(f.roomId)}/account_data/org.example.audit`, { a: 1 })) }),
  'PUT /user/{userId}/rooms/{roomId}/tags/{tag}': () => ({ params: { tag: 'u.audit' }, body: { order: 0.5 } }),
  'DELETE /user/{userId}/rooms/{roomId}/tags/{tag}': () => ({ params: { tag: 'u.audit' } }),
  'PUT /profile/{userId}/{keyName}': () => ({ params: { keyName: 'displayname' }, body: { displayname: 'Alice Audit' } }),
  'GET /profile/{userId}/{keyName}': () => ({ params: { keyName: 'displayname' } }),
  'DELETE /profile/{userId}/{keyName}': () => ({ params: { keyName: 'm.tz' }, before: async (t, f) => void (await call(t, f.alice, 'PUT', `/profile/${enc(f.alice.userId)}/m.tz`, { 'm.tz': 'Europe/Paris' })) }),
  'PUT /presence/{userId}/status': () => ({ body: { presence: 'online', status_msg: 'auditing' } }),
  'PUT /directory/room/{roomAlias}': (f) => ({ params: { roomAlias: `#audit_new_${randomBytes(3).toString('hex')}:${f.alias.split(':').slice(1).join(':')}` }, body: { room_id: f.roomId } }),
  'DELETE /directory/room/{roomAlias}': async (f, t) => {
    const alias = `#audit_del_${randomBytes(3).toString('hex')}:${f.alias.split(':').slice(1).join(':')}`;
    await ok(t, f.alice, 'PUT', `/directory/room/${enc(alias)}`, { room_id: f.roomId });
    return { params: { roomAlias: alias } };
  },
  'PUT /directory/list/room/{roomId}': () => ({ body: { visibility: 'public' } }),
  'POST /publicRooms': () => ({ body: { limit: 5 } }),
  'GET /publicRooms': () => ({ query: { limit: '5' } }),
  'POST /user_directory/search': () => ({ body: { search_term: 'bob', limit: 5 } }),
  'GET /v1/mutual_rooms': (f) => ({ query: { user_id: f.bob.userId } }),
  'GET /devices/{deviceId}': (f) => ({ params: { deviceId: f.alice.deviceId } }),
  'PUT /devices/{deviceId}': (f) => ({ params: { deviceId: f.alice.deviceId }, body: { display_name: 'audit device' } }),
  'DELETE /devices/{deviceId}': async (f) => {
    const s = await f.fresh('deldev');
    return { session: s, params: { deviceId: s.deviceId }, body: { auth: { type: 'm.login.password', identifier: { type: 'm.id.user', user: s.userId }, password: `pw-${s.userId.slice(1).split(':')[0]}-audit` } } };
  },
  'POST /delete_devices': async (f) => {
    const s = await f.fresh('deldevs');
    return { session: s, body: { devices: [s.deviceId], auth: { type: 'm.login.password', identifier: { type: 'm.id.user', user: s.userId }, password: `pw-${s.userId.slice(1).split(':')[0]}-audit` } } };
  },
  'PUT /sendToDevice/{eventType}/{txnId}': (f) => ({ params: { eventType: 'org.example.audit' }, body: { messages: { [f.bob.userId]: { '*': { a: 1 } } } } }),
  'POST /keys/upload': () => ({ body: { one_time_keys: { [`signed_curve25519:AAAA${randomBytes(2).toString('hex')}`]: { key: 'abc', signatures: {} } } } }),
  'POST /keys/query': (f) => ({ body: { device_keys: { [f.bob.userId]: [], [f.alice.userId]: [] } } }),
  'POST /keys/claim': (f) => ({ body: { one_time_keys: { [f.bob.userId]: { [f.bob.deviceId]: 'signed_curve25519' } } } }),
  'GET /keys/changes': () => ({ query: { from: 's0', to: 's0' }, note: 'tokens from /sync' }),
  'POST /keys/signatures/upload': () => ({ body: {} }),
  'POST /keys/device_signing/upload': async (f) => {
    const s = await f.fresh('xsign');
    const pub = randomBytes(32).toString('base64').replace(/=+$/, '');
    const key = (usage: string) => ({ user_id: s.userId, usage: [usage], keys: { [`ed25519:${pub}`]: pub } });
    return { session: s, body: { master_key: key('master'), auth: { type: 'm.login.password', identifier: { type: 'm.id.user', user: s.userId }, password: `pw-${s.userId.slice(1).split(':')[0]}-audit` } } };
  },
  'POST /room_keys/version': () => ({ body: { algorithm: 'm.megolm_backup.v1.curve25519-aes-sha2', auth_data: { public_key: 'abcdefg', signatures: {} } } }),
  'PUT /room_keys/version/{version}': (f) => ({ body: { algorithm: 'm.megolm_backup.v1.curve25519-aes-sha2', auth_data: { public_key: 'abcdefg', signatures: {} }, version: f.backupVersion } }),
  'DELETE /room_keys/version/{version}': async (f, t) => ({ params: { version: (await ok(t, f.alice, 'POST', '/room_keys/version', { algorithm: 'm.megolm_backup.v1.curve25519-aes-sha2', auth_data: { public_key: 'x', signatures: {} } })).version } }),
  'PUT /room_keys/keys': (f) => ({ query: { version: f.backupVersion }, body: { rooms: { [f.roomId]: { sessions: { sess1: megolmKey } } } } }),
  'PUT /room_keys/keys/{roomId}': (f) => ({ query: { version: f.backupVersion }, body: { sessions: { sess1: megolmKey } } }),
  'PUT /room_keys/keys/{roomId}/{sessionId}': (f) => ({ query: { version: f.backupVersion }, body: megolmKey }),
  'POST /user/{userId}/openid/request_token': () => ({ body: {} }),
  'GET /pushrules/global/{kind}/{ruleId}': () => ({ params: { kind: 'override', ruleId: '.m.rule.master' } }),
  'GET /pushrules/global/{kind}/{ruleId}/enabled': () => ({ params: { kind: 'override', ruleId: '.m.rule.master' } }),
  'GET /pushrules/global/{kind}/{ruleId}/actions': () => ({ params: { kind: 'override', ruleId: '.m.rule.master' } }),
  'PUT /pushrules/global/{kind}/{ruleId}/enabled': () => ({ params: { kind: 'override', ruleId: '.m.rule.suppress_notices' }, body: { enabled: true } }),
  'PUT /pushrules/global/{kind}/{ruleId}/actions': () => ({ params: { kind: 'override', ruleId: '.m.rule.suppress_notices' }, body: { actions: [] } }),
  'PUT /pushrules/global/{kind}/{ruleId}': () => ({ params: { kind: 'content', ruleId: 'audit_rule' }, body: { pattern: 'audit', actions: ['notify'] } }),
  'DELETE /pushrules/global/{kind}/{ruleId}': () => ({ params: { kind: 'content', ruleId: 'audit_rule_del' }, before: async (t, f) => void (await ok(t, f.alice, 'PUT', '/pushrules/global/content/audit_rule_del', { pattern: 'x', actions: [] })) }),
  'GET /_matrix/media/v3/preview_url': () => ({ query: { url: 'http://127.0.0.1:1/' }, note: 'needs a reachable page' }),
  'GET /v1/media/preview_url': () => ({ query: { url: 'http://127.0.0.1:1/' }, note: 'needs a reachable page' }),
  'GET /v1/media/thumbnail/{serverName}/{mediaId}': () => ({ query: { width: '32', height: '32' }, note: 'text media has no thumbnail' }),
  'GET /_matrix/media/v3/thumbnail/{serverName}/{mediaId}': () => ({ query: { width: '32', height: '32' }, note: 'text media has no thumbnail' }),
  'POST /_matrix/media/v3/upload': () => ({ raw: { bytes: Buffer.from('audit upload'), type: 'text/plain' } }),
  'PUT /_matrix/media/v3/upload/{serverName}/{mediaId}': async (f, t) => ({ params: { mediaId: String((await ok(t, f.alice, 'POST', '/_matrix/media/v1/create', {})).content_uri).split('/').pop()! }, raw: { bytes: Buffer.from('later'), type: 'text/plain' } }),
  'POST /_matrix/media/v1/create': () => ({ body: {} }),
  'GET /login/sso/redirect': () => ({ query: { redirectUrl: 'http://127.0.0.1/' } }),
  'GET /login/sso/redirect/{idpId}': () => ({ params: { idpId: 'x' }, query: { redirectUrl: 'http://127.0.0.1/' } }),
  'GET /admin/whois/{userId}': () => ({ note: 'admin or self' }),
  'POST /search': () => ({ body: { search_categories: { room_events: { search_term: 'hello' } } } }),
  'POST /pushers/set': () => ({ body: { pushkey: 'audit', kind: 'http', app_id: 'org.example.audit', app_display_name: 'a', device_display_name: 'd', lang: 'en', data: { url: 'https://push.example.org/_matrix/push/v1/notify' } } }),
  'GET /thirdparty/location': () => ({ query: { alias: '#a:b' } }),
  'GET /thirdparty/user': () => ({ query: { userid: '@a:b' } }),
  'GET /v1/rooms/{roomId}/hierarchy': () => ({}),
  'GET /v1/room_summary/{roomIdOrAlias}': (f) => ({ params: { roomIdOrAlias: f.roomId } }),
  'POST /account/3pid/email/requestToken': () => ({ body: { client_secret: 'audit', email: 'a@example.org', send_attempt: 1 }, note: 'no e-mail sending' }),
  'POST /register/email/requestToken': () => ({ body: { client_secret: 'audit', email: 'a@example.org', send_attempt: 1 }, note: 'no e-mail sending' }),
  'POST /account/password/email/requestToken': () => ({ body: { client_secret: 'audit', email: 'a@example.org', send_attempt: 1 }, note: 'no e-mail sending' }),
};

function defaultParam(name: string, f: Fixtures, t: Target): string {
  switch (name) {
    case 'roomId':
      return f.roomId;
    case 'roomIdOrAlias':
      return f.roomId;
    case 'eventId':
      return f.eventId;
    case 'userId':
      return f.alice.userId;
    case 'roomAlias':
      return f.alias;
    case 'deviceId':
      return f.alice.deviceId;
    case 'filterId':
      return f.filterId;
    case 'version':
      return f.backupVersion;
    case 'sessionId':
      return 'sess1';
    case 'serverName':
      return t.serverName;
    case 'mediaId':
      return f.mediaId;
    case 'fileName':
      return 'a.txt';
    case 'txnId':
      return txn();
    case 'eventType':
    case 'type':
      return 'org.example.audit';
    case 'stateKey':
      return '';
    case 'kind':
      return 'override';
    case 'ruleId':
      return '.m.rule.master';
    case 'tag':
      return 'u.audit';
    case 'keyName':
      return 'displayname';
    case 'receiptType':
      return 'm.read';
    case 'protocol':
      return 'irc';
    case 'relType':
      return 'm.annotation';
    case 'networkId':
      return 'irc';
    case 'appserviceId':
      return 'audit';
    case 'idpId':
      return 'x';
    default:
      return 'x';
  }
}

function defaultQuery(name: string, f: Fixtures): string {
  if (name === 'version') return f.backupVersion;
  if (name === 'dir') return 'b';
  return 'x';
}

// ---- probing -----------------------------------------------------------------------------------

export interface ProbeRow {
  method: string;
  path: string;
  auth: string;
  /** `routed` false: 404/405 M_UNRECOGNIZED with a token. */
  routed: boolean;
  /** 'ok', 'n/a' (optional), or what was answered instead. */
  authCheck: string;
  status: number;
  errcode?: string;
  missing: string[];
  wrongType: string[];
  /** A malformed JSON body (with a token): 'ok' for 400 M_NOT_JSON, else what was answered. */
  badJson?: string;
  /** The same request naming a room (or event) that does not exist: what was answered. */
  unknownRoom?: string;
  unknownEvent?: string;
  /** Each integer or boolean query parameter given a value of another type: what was answered. */
  badQuery: Record<string, string>;
  /** The success body against the whole schema (SpecOperation.responseProblems). */
  schemaProblems: string[];
  /** Each required body field left out of the simple request: what was answered. */
  withoutField: Record<string, string>;
  note?: string;
}

function jsonType(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

async function probe(t: Target, f: Fixtures, op: SpecOperation): Promise<ProbeRow> {
  const key = `${op.method} ${shortPath(op.path)}`;
  const recipe = recipes[key];
  const req: Request = recipe ? await recipe(f, t) : {};
  const session = req.session === undefined ? f.alice : req.session;
  const fill = (path: string) => path.replace(/\{([^}]+)\}/g, (_m, name: string) => enc(req.params?.[name] ?? defaultParam(name, f, t)));
  const query = new URLSearchParams(req.query ?? Object.fromEntries(op.requiredQuery.map((q) => [q, defaultQuery(q, f)]))).toString();
  const url = `${fill(op.path)}${query ? `?${query}` : ''}`;
  const body = req.raw ? undefined : req.body !== undefined ? req.body : op.method === 'GET' || op.method === 'DELETE' ? undefined : (op.exampleBody ?? {});

  await req.before?.(t, f);
  // Without a token first (it changes nothing where a token is required).
  const anon = await call(t, null, op.method, url, op.method === 'GET' ? undefined : body, req.raw);
  let authCheck: string;
  const anonText = `${anon.status}${anon.errcode ? ` ${anon.errcode}` : ''}`;
  if (op.auth === 'required') authCheck = anon.status === 401 && anon.errcode === 'M_MISSING_TOKEN' ? 'ok' : anonText;
  else if (op.auth === 'none') authCheck = anon.status === 401 && anon.errcode === 'M_MISSING_TOKEN' ? anonText : 'ok';
  else authCheck = 'n/a';

  // An operation that takes no token was just made for real; one that does is made again with it.
  let answer = anon;
  if (op.auth !== 'none') {
    // The same request again with a token (an operation without auth ignores it): fresh txn ids.
    const url2 = `${fill(op.path)}${query ? `?${query}` : ''}`;
    answer = await call(t, session, op.method, url2, body, req.raw);
  }
  const routed = !((answer.status === 404 || answer.status === 405) && answer.errcode === 'M_UNRECOGNIZED');
  const missing: string[] = [];
  const wrongType: string[] = [];
  const schemaProblems = answer.status === op.successStatus && answer.body && typeof answer.body === 'object' ? op.responseProblems(answer.body) : [];
  if (answer.status === op.successStatus && answer.body && typeof answer.body === 'object') {
    for (const field of op.requiredFields) if (!(field in answer.body)) missing.push(field);
    for (const [field, types] of Object.entries(op.fieldTypes)) {
      if (!(field in answer.body)) continue;
      const actual = jsonType(answer.body[field]);
      const fits = types.includes(actual) || (actual === 'integer' && types.includes('number'));
      if (!fits) wrongType.push(`${field}:${actual}≠${types.join('|')}`);
    }
  }
  // A body that is not JSON at all: 400 M_NOT_JSON (errors.yaml). Sessions that a request could end get a user of their own.
  let badJson: string | undefined;
  if (op.jsonBody && routed) {
    // A recipe's own session may be spent by the request just made (logout, deactivate, deleted devices).
    const s = op.auth === 'none' ? null : req.session ? await f.fresh('badjson') : session;
    const r = await call(t, s, op.method, `${fill(op.path)}${query ? `?${query}` : ''}`, undefined, { bytes: Buffer.from('{"unterminated'), type: 'application/json' });
    badJson = r.status === 400 && r.errcode === 'M_NOT_JSON' ? 'ok' : `${r.status}${r.errcode ? ` ${r.errcode}` : ''}`;
  }
  // Unknown rooms and events (compared across servers: the spec rarely says 403 or 404).
  const unknown = async (param: string, value: string): Promise<string | undefined> => {
    if (!routed || !op.path.includes(`{${param}}`)) return undefined;
    const path = op.path.replace(/\{([^}]+)\}/g, (_m, name: string) => enc(name === param ? value : (req.params?.[name] ?? defaultParam(name, f, t))));
    const r = await call(t, session, op.method, `${path}${query ? `?${query}` : ''}`, body, req.raw);
    return `${r.status}${r.errcode ? ` ${r.errcode}` : ''}`;
  };
  const unknownRoom = (await unknown('roomId', `!auditnowhere:${t.serverName}`)) ?? (await unknown('roomIdOrAlias', `!auditnowhere:${t.serverName}`));
  const unknownEvent = await unknown('eventId', '$auditnowhere');
  // Each required body field left out, on a request made afresh (fresh users and rooms from the recipe).
  const withoutField: Record<string, string> = {};
  if (routed && op.requestRequired.length) {
    for (const field of op.requestRequired) {
      const again: Request = recipe ? await recipe(f, t) : {};
      const full = again.body !== undefined ? again.body : op.exampleBody;
      if (!full || typeof full !== 'object' || Array.isArray(full) || !(field in full)) continue;
      const { [field]: _dropped, ...rest } = full as Json;
      await again.before?.(t, f);
      const q = new URLSearchParams(again.query ?? Object.fromEntries(op.requiredQuery.map((x) => [x, defaultQuery(x, f)]))).toString();
      const path = op.path.replace(/\{([^}]+)\}/g, (_m, name: string) => enc(again.params?.[name] ?? defaultParam(name, f, t)));
      const s = again.session === undefined ? f.alice : again.session;
      const r = await call(t, op.auth === 'none' ? null : s, op.method, `${path}${q ? `?${q}` : ''}`, rest);
      withoutField[field] = `${r.status}${r.errcode ? ` ${r.errcode}` : ''}`;
    }
  }
  // Integer and boolean query parameters given a word (reads only: a GET changes nothing).
  const badQuery: Record<string, string> = {};
  if (routed && op.method === 'GET') {
    for (const p of op.queryParams.filter((q) => q.type === 'integer' || q.type === 'boolean')) {
      const q = new URLSearchParams({ ...(req.query ?? Object.fromEntries(op.requiredQuery.map((x) => [x, defaultQuery(x, f)]))), [p.name]: 'notvalid' }).toString();
      const r = await call(t, op.auth === 'none' ? null : session, 'GET', `${fill(op.path)}?${q}`);
      badQuery[p.name] = `${r.status}${r.errcode ? ` ${r.errcode}` : ''}`;
    }
  }
  return { method: op.method, path: shortPath(op.path), auth: op.auth, routed, authCheck, status: answer.status, errcode: answer.errcode, missing, wrongType, badJson, unknownRoom, unknownEvent, withoutField, badQuery, schemaProblems, note: req.note };
}

/** Creating, changing and reading before deleting: per path, PUT and POST, then GET, then DELETE. */
function probeOrder(ops: SpecOperation[]): SpecOperation[] {
  const rank: Record<string, number> = { PUT: 0, POST: 1, GET: 2, DELETE: 3 };
  // Operations that end the caller's sessions or rooms run last (they have their own users anyway).
  const late = (o: SpecOperation) => /\/(logout|deactivate|upgrade)/.test(o.path) ? 1 : 0;
  return [...ops].sort((a, b) => late(a) - late(b) || a.path.localeCompare(b.path) || rank[a.method]! - rank[b.method]!);
}

function verdict(r: ProbeRow, successStatus: number): string {
  if (!r.routed) return 'absent';
  const problems: string[] = [];
  if (r.authCheck !== 'ok' && r.authCheck !== 'n/a') problems.push(`no-token→${r.authCheck}`);
  if (r.status !== successStatus) problems.push(`${r.status}${r.errcode ? ` ${r.errcode}` : ''}`);
  if (r.missing.length) problems.push(`missing: ${r.missing.join(',')}`);
  if (r.wrongType.length) problems.push(`type: ${r.wrongType.join(',')}`);
  return problems.length ? problems.join('; ') : 'ok';
}

// ---- error cases -------------------------------------------------------------------------------

/**
 * Requests the spec gives a particular error for (status and, where it names one, errcode): each is
 * made on every target and compared with the spec's answer. `why` cites the OpenAPI file.
 */
interface ErrorCase {
  name: string;
  expect: { status: number; errcode?: string };
  why: string;
  make(t: Target, f: Fixtures): Promise<{ session: Session | null; method: string; path: string; body?: unknown }>;
}

const errorCases: ErrorCase[] = [
  { name: 'register: username taken', expect: { status: 400, errcode: 'M_USER_IN_USE' }, why: 'registration.yaml', make: async (_t, f) => ({ session: null, method: 'POST', path: '/register', body: { username: f.alice.userId.slice(1).split(':')[0], password: 'pw-x-audit-1', auth: { type: 'm.login.dummy' } } }) },
  { name: 'register: invalid username', expect: { status: 400, errcode: 'M_INVALID_USERNAME' }, why: 'registration.yaml', make: async () => ({ session: null, method: 'POST', path: '/register', body: { username: 'no spaces allowed', password: 'pw-x-audit-1', auth: { type: 'm.login.dummy' } } }) },
  { name: 'register/available: taken', expect: { status: 400, errcode: 'M_USER_IN_USE' }, why: 'registration.yaml', make: async (_t, f) => ({ session: null, method: 'GET', path: `/register/available?username=${enc(f.alice.userId.slice(1).split(':')[0]!)}` }) },
  { name: 'register/available: invalid', expect: { status: 400, errcode: 'M_INVALID_USERNAME' }, why: 'registration.yaml', make: async () => ({ session: null, method: 'GET', path: '/register/available?username=%20bad%20' }) },
  { name: 'login: wrong password', expect: { status: 403, errcode: 'M_FORBIDDEN' }, why: 'login.yaml', make: async (_t, f) => ({ session: null, method: 'POST', path: '/login', body: { type: 'm.login.password', identifier: { type: 'm.id.user', user: f.alice.userId }, password: 'wrong-password' } }) },
  { name: 'login: unknown type', expect: { status: 400, errcode: 'M_UNKNOWN' }, why: 'login.yaml', make: async () => ({ session: null, method: 'POST', path: '/login', body: { type: 'org.example.nope' } }) },
  { name: 'whoami: unknown token', expect: { status: 401, errcode: 'M_UNKNOWN_TOKEN' }, why: 'whoami.yaml', make: async () => ({ session: { userId: '', deviceId: '', token: 'not-a-token' }, method: 'GET', path: '/account/whoami' }) },
  { name: 'createRoom: alias in use', expect: { status: 400, errcode: 'M_ROOM_IN_USE' }, why: 'create_room.yaml', make: async (_t, f) => ({ session: f.alice, method: 'POST', path: '/createRoom', body: { room_alias_name: f.aliasLocalpart } }) },
  { name: 'createRoom: unknown room version', expect: { status: 400, errcode: 'M_UNSUPPORTED_ROOM_VERSION' }, why: 'create_room.yaml', make: async (_t, f) => ({ session: f.alice, method: 'POST', path: '/createRoom', body: { room_version: '999' } }) },
  { name: 'upgrade: unknown room version', expect: { status: 400, errcode: 'M_UNSUPPORTED_ROOM_VERSION' }, why: 'room_upgrades.yaml', make: async (_t, f) => ({ session: f.alice, method: 'POST', path: `/rooms/${enc(f.roomId)}/upgrade`, body: { new_version: '999' } }) },
  { name: 'upgrade: not allowed (bob, member)', expect: { status: 403, errcode: 'M_FORBIDDEN' }, why: 'room_upgrades.yaml', make: async (_t, f) => ({ session: f.bob, method: 'POST', path: `/rooms/${enc(f.roomId)}/upgrade`, body: { new_version: '11' } }) },
  { name: 'join: banned', expect: { status: 403, errcode: 'M_FORBIDDEN' }, why: 'joining.yaml', make: async (t, f) => {
    const r = await f.freshRoom();
    await ok(t, f.alice, 'POST', `/rooms/${enc(r)}/ban`, { user_id: f.bob.userId });
    return { session: f.bob, method: 'POST', path: `/rooms/${enc(r)}/join`, body: {} };
  } },
  { name: 'join: invite-only, not invited', expect: { status: 403, errcode: 'M_FORBIDDEN' }, why: 'joining.yaml', make: async (t, f) => ({ session: f.bob, method: 'POST', path: `/join/${enc((await ok(t, f.alice, 'POST', '/createRoom', { preset: 'private_chat' })).room_id)}`, body: {} }) },
  { name: 'invite: not in the room', expect: { status: 403, errcode: 'M_FORBIDDEN' }, why: 'inviting.yaml', make: async (t, f) => ({ session: await f.fresh('outsider'), method: 'POST', path: `/rooms/${enc(f.roomId)}/invite`, body: { user_id: f.bob.userId } }) },
  { name: 'ban: without the power', expect: { status: 403, errcode: 'M_FORBIDDEN' }, why: 'banning.yaml', make: async (_t, f) => ({ session: f.bob, method: 'POST', path: `/rooms/${enc(f.roomId)}/ban`, body: { user_id: f.alice.userId } }) },
  { name: 'state: without the power', expect: { status: 403, errcode: 'M_FORBIDDEN' }, why: 'room_state.yaml', make: async (_t, f) => ({ session: f.bob, method: 'PUT', path: `/rooms/${enc(f.roomId)}/state/m.room.name/`, body: { name: 'taken over' } }) },
  { name: 'send: not in the room', expect: { status: 403, errcode: 'M_FORBIDDEN' }, why: 'room_send.yaml (auth rules)', make: async (_t, f) => ({ session: await f.fresh('outsider2'), method: 'PUT', path: `/rooms/${enc(f.roomId)}/send/m.room.message/${txn()}`, body: { msgtype: 'm.text', body: 'x' } }) },
  { name: 'state: an unknown state key', expect: { status: 404, errcode: 'M_NOT_FOUND' }, why: 'room_state.yaml', make: async (_t, f) => ({ session: f.alice, method: 'GET', path: `/rooms/${enc(f.roomId)}/state/org.example.none/nokey` }) },
  { name: 'messages: not a member, shared history not visible', expect: { status: 403, errcode: 'M_FORBIDDEN' }, why: 'message_pagination.yaml', make: async (t, f) => ({ session: await f.fresh('outsider3'), method: 'GET', path: `/rooms/${enc((await ok(t, f.alice, 'POST', '/createRoom', { preset: 'private_chat' })).room_id)}/messages?dir=b` }) },
  { name: 'messages: dir missing', expect: { status: 400 }, why: 'message_pagination.yaml (dir required)', make: async (_t, f) => ({ session: f.alice, method: 'GET', path: `/rooms/${enc(f.roomId)}/messages` }) },
  { name: 'event: unknown', expect: { status: 404, errcode: 'M_NOT_FOUND' }, why: 'rooms.yaml', make: async (_t, f) => ({ session: f.alice, method: 'GET', path: `/rooms/${enc(f.roomId)}/event/${enc('$auditnowhere')}` }) },
  { name: 'alias: unknown', expect: { status: 404, errcode: 'M_NOT_FOUND' }, why: 'directory.yaml', make: async (t) => ({ session: null, method: 'GET', path: `/directory/room/${enc(`#auditnowhere:${t.serverName}`)}` }) },
  { name: 'alias: already exists', expect: { status: 409 }, why: 'directory.yaml', make: async (_t, f) => ({ session: f.alice, method: 'PUT', path: `/directory/room/${enc(f.alias)}`, body: { room_id: f.roomId } }) },
  { name: 'alias: invalid', expect: { status: 400, errcode: 'M_INVALID_PARAM' }, why: 'directory.yaml', make: async (_t, f) => ({ session: f.alice, method: 'PUT', path: `/directory/room/${enc('#no-server')}`, body: { room_id: f.roomId } }) },
  { name: 'profile: unknown user', expect: { status: 404, errcode: 'M_NOT_FOUND' }, why: 'profile.yaml', make: async (t) => ({ session: null, method: 'GET', path: `/profile/${enc(`@auditnobody:${t.serverName}`)}` }) },
  { name: 'profile: another user\'s', expect: { status: 403, errcode: 'M_FORBIDDEN' }, why: 'profile.yaml', make: async (_t, f) => ({ session: f.bob, method: 'PUT', path: `/profile/${enc(f.alice.userId)}/displayname`, body: { displayname: 'not yours' } }) },
  { name: 'account data: unknown type', expect: { status: 404, errcode: 'M_NOT_FOUND' }, why: 'account-data.yaml', make: async (_t, f) => ({ session: f.alice, method: 'GET', path: `/user/${enc(f.alice.userId)}/account_data/org.example.none` }) },
  { name: 'account data: another user\'s', expect: { status: 403, errcode: 'M_FORBIDDEN' }, why: 'account-data.yaml', make: async (_t, f) => ({ session: f.bob, method: 'PUT', path: `/user/${enc(f.alice.userId)}/account_data/org.example.x`, body: {} }) },
  { name: 'account data: m.fully_read', expect: { status: 405, errcode: 'M_BAD_JSON' }, why: 'account-data.yaml', make: async (_t, f) => ({ session: f.alice, method: 'PUT', path: `/user/${enc(f.alice.userId)}/account_data/m.fully_read`, body: { event_id: f.eventId } }) },
  { name: 'account data: room id malformed', expect: { status: 400, errcode: 'M_INVALID_PARAM' }, why: 'account-data.yaml', make: async (_t, f) => ({ session: f.alice, method: 'PUT', path: `/user/${enc(f.alice.userId)}/rooms/notaroom/account_data/org.example.x`, body: {} }) },
  { name: 'filter: unknown id', expect: { status: 404, errcode: 'M_NOT_FOUND' }, why: 'filter.yaml', make: async (_t, f) => ({ session: f.alice, method: 'GET', path: `/user/${enc(f.alice.userId)}/filter/987654` }) },
  { name: 'push rule: unknown', expect: { status: 404, errcode: 'M_NOT_FOUND' }, why: 'pushrules.yaml', make: async (_t, f) => ({ session: f.alice, method: 'GET', path: '/pushrules/global/override/org.example.none' }) },
  { name: 'push rule: before an unknown rule', expect: { status: 400 }, why: 'pushrules.yaml: "a problem configuring this push rule" (404 is for updating one)', make: async (_t, f) => ({ session: f.alice, method: 'PUT', path: '/pushrules/global/content/audit_before?before=org.example.none', body: { pattern: 'x', actions: [] } }) },
  { name: 'device: unknown', expect: { status: 404, errcode: 'M_NOT_FOUND' }, why: 'device_management.yaml', make: async (_t, f) => ({ session: f.alice, method: 'GET', path: '/devices/NOSUCHDEVICE' }) },
  { name: 'key backup: none yet', expect: { status: 404, errcode: 'M_NOT_FOUND' }, why: 'key_backup.yaml', make: async (_t, f) => ({ session: await f.fresh('nobackup'), method: 'GET', path: '/room_keys/version' }) },
  { name: 'key backup: stale version', expect: { status: 403, errcode: 'M_WRONG_ROOM_KEYS_VERSION' }, why: 'key_backup.yaml', make: async (t, f) => {
    const s = await f.fresh('stalebackup');
    const v1 = (await ok(t, s, 'POST', '/room_keys/version', { algorithm: 'm.megolm_backup.v1.curve25519-aes-sha2', auth_data: { public_key: 'a', signatures: {} } })).version;
    await ok(t, s, 'POST', '/room_keys/version', { algorithm: 'm.megolm_backup.v1.curve25519-aes-sha2', auth_data: { public_key: 'b', signatures: {} } });
    return { session: s, method: 'PUT', path: `/room_keys/keys/${enc(f.roomId)}/sess1?version=${enc(v1)}`, body: megolmKey };
  } },
  { name: 'typing: for another user', expect: { status: 403, errcode: 'M_FORBIDDEN' }, why: 'typing.yaml', make: async (_t, f) => ({ session: f.bob, method: 'PUT', path: `/rooms/${enc(f.roomId)}/typing/${enc(f.alice.userId)}`, body: { typing: true, timeout: 1000 } }) },
  { name: 'presence: another user\'s', expect: { status: 403, errcode: 'M_FORBIDDEN' }, why: 'presence.yaml', make: async (_t, f) => ({ session: f.bob, method: 'PUT', path: `/presence/${enc(f.alice.userId)}/status`, body: { presence: 'online' } }) },
  { name: 'presence: invalid state', expect: { status: 400 }, why: 'presence.yaml (enum)', make: async (_t, f) => ({ session: f.alice, method: 'PUT', path: `/presence/${enc(f.alice.userId)}/status`, body: { presence: 'dancing' } }) },
  { name: 'media: unknown', expect: { status: 404, errcode: 'M_NOT_FOUND' }, why: 'authed-content-repo.yaml', make: async (t, f) => ({ session: f.alice, method: 'GET', path: `/_matrix/client/v1/media/download/${t.serverName}/auditnowhere` }) },
  { name: 'media: another user\'s reserved id', expect: { status: 403, errcode: 'M_FORBIDDEN' }, why: 'content-repo.yaml', make: async (t, f) => ({ session: f.bob, method: 'PUT', path: `/_matrix/media/v3/upload/${t.serverName}/${String((await ok(t, f.alice, 'POST', '/_matrix/media/v1/create', {})).content_uri).split('/').pop()}`, body: {} }) },
  { name: 'timestamp_to_event: nothing before', expect: { status: 404, errcode: 'M_NOT_FOUND' }, why: 'room_event_by_timestamp.yaml', make: async (_t, f) => ({ session: f.alice, method: 'GET', path: `/_matrix/client/v1/rooms/${enc(f.roomId)}/timestamp_to_event?ts=1000&dir=b` }) },
  { name: 'whois: another user, not admin', expect: { status: 403, errcode: 'M_FORBIDDEN' }, why: 'admin.yaml', make: async (_t, f) => ({ session: f.bob, method: 'GET', path: `/admin/whois/${enc(f.alice.userId)}` }) },
  { name: 'forget: still joined', expect: { status: 400, errcode: 'M_UNKNOWN' }, why: 'leaving.yaml', make: async (_t, f) => ({ session: f.bob, method: 'POST', path: `/rooms/${enc(f.roomId)}/forget`, body: {} }) },
  { name: 'report: unknown event', expect: { status: 404, errcode: 'M_NOT_FOUND' }, why: 'report_content.yaml', make: async (_t, f) => ({ session: f.alice, method: 'POST', path: `/rooms/${enc(f.roomId)}/report/${enc('$auditnowhere')}`, body: { reason: 'x' } }) },
  { name: 'report: unknown user', expect: { status: 404, errcode: 'M_NOT_FOUND' }, why: 'report_content.yaml', make: async (t, f) => ({ session: f.alice, method: 'POST', path: `/users/${enc(`@auditnobody:${t.serverName}`)}/report`, body: { reason: 'x' } }) },
  { name: 'room summary: unknown room', expect: { status: 404 }, why: 'room_summary.yaml', make: async (t, f) => ({ session: f.alice, method: 'GET', path: `/_matrix/client/v1/room_summary/${enc(`!auditnowhere:${t.serverName}`)}` }) },
  { name: 'mutual_rooms: with oneself', expect: { status: 400 }, why: 'mutual_rooms.yaml', make: async (_t, f) => ({ session: f.alice, method: 'GET', path: `/_matrix/client/v1/mutual_rooms?user_id=${enc(f.alice.userId)}` }) },
  { name: 'refresh: unknown token', expect: { status: 401, errcode: 'M_UNKNOWN_TOKEN' }, why: 'refresh.yaml', make: async () => ({ session: null, method: 'POST', path: '/refresh', body: { refresh_token: 'nope' } }) },
  // Where the spec is loose: malformed tokens, ids and content are 400 (errcodes vary between servers).
  { name: 'sync: malformed since', expect: { status: 400 }, why: 'sync.yaml (loose)', make: async (_t, f) => ({ session: f.alice, method: 'GET', path: '/sync?timeout=0&since=not-a-token' }) },
  { name: 'sync: unknown filter id', expect: { status: 400 }, why: 'sync.yaml (loose)', make: async (_t, f) => ({ session: f.alice, method: 'GET', path: '/sync?timeout=0&filter=987654' }) },
  { name: 'messages: malformed from', expect: { status: 400 }, why: 'message_pagination.yaml (loose)', make: async (_t, f) => ({ session: f.alice, method: 'GET', path: `/rooms/${enc(f.roomId)}/messages?dir=b&from=not-a-token` }) },
  { name: 'messages: malformed filter', expect: { status: 400 }, why: 'message_pagination.yaml (loose)', make: async (_t, f) => ({ session: f.alice, method: 'GET', path: `/rooms/${enc(f.roomId)}/messages?dir=b&filter=%7Bnot` }) },
  { name: 'relations: malformed from', expect: { status: 400 }, why: 'relations.yaml (loose)', make: async (_t, f) => ({ session: f.alice, method: 'GET', path: `/_matrix/client/v1/rooms/${enc(f.roomId)}/relations/${enc(f.eventId)}?from=not-a-token` }) },
  { name: 'notifications: malformed from', expect: { status: 400 }, why: 'notifications.yaml (loose)', make: async (_t, f) => ({ session: f.alice, method: 'GET', path: '/notifications?from=not-a-token' }) },
  { name: 'publicRooms: malformed since', expect: { status: 400 }, why: 'list_public_rooms.yaml (loose)', make: async (_t, f) => ({ session: f.alice, method: 'GET', path: '/publicRooms?since=not-a-token' }) },
  { name: 'keys/changes: malformed from', expect: { status: 400 }, why: 'keys.yaml (loose)', make: async (_t, f) => ({ session: f.alice, method: 'GET', path: '/keys/changes?from=not-a-token&to=also-not' }) },
  { name: 'send: content not an object', expect: { status: 400, errcode: 'M_BAD_JSON' }, why: 'room_send.yaml (content is an object)', make: async (_t, f) => ({ session: f.alice, method: 'PUT', path: `/rooms/${enc(f.roomId)}/send/m.room.message/${txn()}`, body: ['not', 'an', 'object'] }) },
  { name: 'state: content not an object', expect: { status: 400, errcode: 'M_BAD_JSON' }, why: 'room_state.yaml (content is an object)', make: async (_t, f) => ({ session: f.alice, method: 'PUT', path: `/rooms/${enc(f.roomId)}/state/org.example.x/`, body: 'a string' }) },
  { name: 'createRoom: unknown preset', expect: { status: 400 }, why: 'create_room.yaml (enum)', make: async (_t, f) => ({ session: f.alice, method: 'POST', path: '/createRoom', body: { preset: 'party' } }) },
  { name: 'createRoom: unknown visibility', expect: { status: 400 }, why: 'create_room.yaml (enum)', make: async (_t, f) => ({ session: f.alice, method: 'POST', path: '/createRoom', body: { visibility: 'everyone' } }) },
  { name: 'devices: rename an unknown device', expect: { status: 404 }, why: 'device_management.yaml', make: async (_t, f) => ({ session: f.alice, method: 'PUT', path: '/devices/NOSUCHDEVICE', body: { display_name: 'x' } }) },
  { name: 'receipt: unknown receipt type', expect: { status: 400 }, why: 'receipts.yaml (enum)', make: async (_t, f) => ({ session: f.alice, method: 'POST', path: `/rooms/${enc(f.roomId)}/receipt/org.example.receipt/${enc(f.eventId)}`, body: {} }) },
  { name: 'join: malformed room id', expect: { status: 400 }, why: 'joining.yaml (loose)', make: async (_t, f) => ({ session: f.alice, method: 'POST', path: '/rooms/notaroom/join', body: {} }) },
  { name: 'invite: malformed user id', expect: { status: 400 }, why: 'inviting.yaml (loose)', make: async (_t, f) => ({ session: f.alice, method: 'POST', path: `/rooms/${enc(f.roomId)}/invite`, body: { user_id: 'not-a-user' } }) },
];

async function runErrorCases(t: Target, f: Fixtures): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const c of errorCases) {
    try {
      const r = await c.make(t, f);
      const a = await call(t, r.session, r.method, r.path, r.body);
      out.set(c.name, `${a.status}${a.errcode ? ` ${a.errcode}` : ''}`);
    } catch (e) {
      out.set(c.name, `setup failed: ${(e as Error).message.slice(0, 80)}`);
    }
  }
  return out;
}

// ---- main --------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const ops = loadClientServerOperations().filter((o) => !only || o.path.includes(only));
  const targets: Target[] = [];
  const stopAll = async () => {
    for (const t of targets) await t.stop().catch(() => {});
  };
  process.on('SIGINT', () => void stopAll().then(() => process.exit(130)));
  try {
    if (explicitTarget) {
      const u = new URL(explicitTarget);
      targets.push({ name: u.host, baseUrl: explicitTarget.replace(/\/$/, ''), serverName: opt('--server-name') ?? u.host, register: (l) => registerOpen(explicitTarget, l), stop: async () => {} });
    } else {
      targets.push(await startAxonTarget());
      if (vsSynapse) targets.push(await startSynapseTarget());
    }
    const results = new Map<string, ProbeRow[]>();
    const errorAnswers = new Map<string, Map<string, string>>();
    for (const t of targets) {
      const f = await makeFixtures(t);
      if (!only) errorAnswers.set(t.name, await runErrorCases(t, f));
      const rows: ProbeRow[] = [];
      for (const op of probeOrder(ops)) {
        try {
          rows.push(await probe(t, f, op));
        } catch (e) {
          rows.push({ method: op.method, path: shortPath(op.path), auth: op.auth, routed: true, authCheck: '?', status: 0, missing: [], wrongType: [], withoutField: {}, badQuery: {}, schemaProblems: [], note: `probe failed: ${(e as Error).message.slice(0, 200)}` });
        }
      }
      results.set(t.name, rows);
    }

    const tableRows = (() => {
      try {
        return parseConformanceTable(readFileSync(join(root, 'docs', 'conformance.md'), 'utf8'));
      } catch {
        return [];
      }
    })();
    const header = ['endpoint', 'auth', 'table', ...targets.map((t) => t.name)];
    const lines: string[][] = [];
    for (const op of ops) {
      const cells = [`${op.method} ${shortPath(op.path)}${op.deprecated ? ' (deprecated)' : ''}`, op.auth, rowFor(tableRows, op)?.status ?? '—'];
      for (const t of targets) {
        const r = results.get(t.name)!.find((x) => x.method === op.method && x.path === shortPath(op.path))!;
        cells.push(`${verdict(r, op.successStatus)}${r.note ? ` (${r.note})` : ''}`);
      }
      lines.push(cells);
    }
    const widths = header.map((h, i) => Math.min(70, Math.max(h.length, ...lines.map((l) => l[i]!.length))));
    const fmt = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
    console.log(fmt(header));
    console.log(widths.map((w) => '-'.repeat(w)).join('  '));
    for (const l of lines) console.log(fmt(l));
    console.log('');
    console.log('Malformed JSON bodies not answered 400 M_NOT_JSON:');
    for (const op of ops) {
      const cells = targets.map((t) => results.get(t.name)!.find((x) => x.method === op.method && x.path === shortPath(op.path))!.badJson);
      if (cells.some((c) => c !== undefined && c !== 'ok')) console.log(`  ${`${op.method} ${shortPath(op.path)}`.padEnd(60)}  ${targets.map((t, i) => `${t.name}: ${cells[i] ?? '—'}`).join('  ')}`);
    }
    for (const [label, pick] of [['an unknown room', (r: ProbeRow) => r.unknownRoom], ['an unknown event', (r: ProbeRow) => r.unknownEvent]] as const) {
      console.log('');
      console.log(`Requests naming ${label}:`);
      for (const op of ops) {
        const cells = targets.map((t) => pick(results.get(t.name)!.find((x) => x.method === op.method && x.path === shortPath(op.path))!));
        if (cells.some((c) => c !== undefined)) console.log(`  ${`${op.method} ${shortPath(op.path)}`.padEnd(64)}  ${targets.map((t, i) => `${t.name}: ${(cells[i] ?? '—').padEnd(22)}`).join('  ')}${cells.length > 1 && new Set(cells).size > 1 ? '  ≠' : ''}`);
      }
    }
    console.log('');
    console.log('Success bodies against the whole schema (nested fields, types, enums):');
    for (const op of ops) {
      for (const t of targets) {
        const r = results.get(t.name)!.find((x) => x.method === op.method && x.path === shortPath(op.path))!;
        if (r.schemaProblems.length) console.log(`  ${t.name.padEnd(8)} ${op.method} ${shortPath(op.path)}: ${r.schemaProblems.slice(0, 6).join('; ')}${r.schemaProblems.length > 6 ? ` (+${r.schemaProblems.length - 6})` : ''}`);
      }
    }
    console.log('');
    console.log('A required body field left out (spec: 400; ≠ where the servers differ):');
    for (const op of ops) {
      const per = targets.map((t) => results.get(t.name)!.find((x) => x.method === op.method && x.path === shortPath(op.path))!.withoutField);
      for (const field of op.requestRequired) {
        const cells = per.map((w) => w[field]);
        if (cells.every((c) => c === undefined)) continue;
        console.log(`  ${`${op.method} ${shortPath(op.path)} −${field}`.padEnd(64)}  ${targets.map((t, i) => `${t.name}: ${(cells[i] ?? '—').padEnd(22)}`).join('  ')}${cells.length > 1 && new Set(cells).size > 1 ? '  ≠' : ''}`);
      }
    }
    console.log('');
    console.log('An integer or boolean query parameter given a word (spec: 400 M_INVALID_PARAM):');
    for (const op of ops) {
      const per = targets.map((t) => results.get(t.name)!.find((x) => x.method === op.method && x.path === shortPath(op.path))!.badQuery);
      for (const p of op.queryParams) {
        const cells = per.map((w) => w[p.name]);
        if (cells.every((c) => c === undefined)) continue;
        console.log(`  ${`${op.method} ${shortPath(op.path)} ${p.name}=notvalid`.padEnd(64)}  ${targets.map((t, i) => `${t.name}: ${(cells[i] ?? '—').padEnd(22)}`).join('  ')}${cells.length > 1 && new Set(cells).size > 1 ? '  ≠' : ''}`);
      }
    }
    if (errorAnswers.size) {
      console.log('');
      console.log('Error cases (the spec\'s answer; ✗ where a server differs from it):');
      for (const c of errorCases) {
        const want = `${c.expect.status}${c.expect.errcode ? ` ${c.expect.errcode}` : ''}`;
        const cells = targets.map((t) => {
          const got = errorAnswers.get(t.name)!.get(c.name) ?? '—';
          const fits = got.startsWith(String(c.expect.status)) && (!c.expect.errcode || got.endsWith(c.expect.errcode));
          return `${t.name}: ${`${got}${fits ? '' : ' ✗'}`.padEnd(34)}`;
        });
        console.log(`  ${c.name.padEnd(44)} ${want.padEnd(36)} ${cells.join('  ')}  (${c.why})`);
      }
    }
    console.log('');
    for (const t of targets) {
      const rows = results.get(t.name)!;
      const absent = rows.filter((r) => !r.routed).length;
      const okRows = rows.filter((r) => verdict(r, ops.find((o) => o.method === r.method && shortPath(o.path) === r.path)!.successStatus) === 'ok').length;
      const authBad = rows.filter((r) => r.routed && r.authCheck !== 'ok' && r.authCheck !== 'n/a').length;
      const missing = rows.filter((r) => r.missing.length || r.wrongType.length).length;
      console.log(`${t.name}: ${ops.length} operations; ${ops.length - absent} routed, ${absent} not; ${okRows} answered as the spec says to the simple request; ${authBad} with a wrong no-token answer; ${missing} with missing or mistyped fields`);
    }
    if (args.includes('--table')) {
      const unlisted = ops.filter((o) => !rowFor(tableRows, o));
      console.log(`docs/conformance.md: ${unlisted.length} operations without a row${unlisted.length ? `: ${unlisted.map((o) => `${o.method} ${shortPath(o.path)}`).join(', ')}` : ''}`);
    }
    if (jsonOut) writeFileSync(jsonOut, JSON.stringify(Object.fromEntries(results), null, 2));
  } finally {
    await stopAll();
  }
}

await main();
