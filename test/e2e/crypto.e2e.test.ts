/**
 * The real test of end-to-end encryption support (issue 7): matrix-js-sdk clients with the SDK's
 * Rust crypto (`@matrix-org/matrix-sdk-crypto-wasm`) against one front and two workers on real
 * Redis. Alice and Bob register, set up cross-signing, talk in an encrypted room and each
 * decrypts the other's messages (Olm sessions over claimed one-time keys, Megolm room keys over
 * to-device messages, device lists through /sync). Then Alice logs in on a second device: it
 * decrypts new messages (room keys sent to it over to-device) and the history from before it
 * existed, restored from the server-side key backup her first device uploaded.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClientEvent, type MatrixClient, type MatrixEvent } from 'matrix-js-sdk';
import { createClient } from './sdk';
import { startTestServer, type TestServer } from './server-harness';

const PASSWORD = 'a long passphrase';

interface Account {
  userId: string;
  deviceId: string;
  token: string;
}

let server: TestServer;
const clients: MatrixClient[] = [];
beforeAll(async () => {
  server = await startTestServer({ workers: 2 });
});
afterAll(async () => {
  for (const c of clients) c.stopClient();
  await server?.stop();
});

async function post(path: string, body: unknown, token?: string): Promise<{ status: number; body: Record<string, any> }> {
  const r = await fetch(`${server.baseUrl}/_matrix/client/v3${path}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...(token ? { Authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body),
  });
  return { status: r.status, body: (await r.json()) as Record<string, any> };
}

async function register(username: string): Promise<Account> {
  const first = await post('/register', { username, password: PASSWORD });
  const r = await post('/register', { username, password: PASSWORD, auth: { type: 'm.login.dummy', session: first.body.session } });
  expect(r.status).toBe(200);
  return { userId: r.body.user_id, deviceId: r.body.device_id, token: r.body.access_token };
}

async function login(userId: string): Promise<Account> {
  const r = await post('/login', { type: 'm.login.password', identifier: { type: 'm.id.user', user: userId }, password: PASSWORD });
  expect(r.status).toBe(200);
  return { userId: r.body.user_id, deviceId: r.body.device_id, token: r.body.access_token };
}

/** A started client with Rust crypto (in memory: no IndexedDB in Node). */
async function cryptoClient(a: Account): Promise<MatrixClient> {
  const client = createClient({ baseUrl: server.baseUrl, userId: a.userId, deviceId: a.deviceId, accessToken: a.token });
  clients.push(client);
  await client.initRustCrypto({ useIndexedDB: false });
  const synced = new Promise<void>((resolve) => client.once(ClientEvent.Sync, () => resolve()));
  await client.startClient({ initialSyncLimit: 30 });
  await synced;
  return client;
}

async function bootstrapCrossSigning(client: MatrixClient, userId: string): Promise<void> {
  await client.getCrypto()!.bootstrapCrossSigning({
    authUploadDeviceSigningKeys: async (makeRequest) => {
      await makeRequest({ type: 'm.login.password', identifier: { type: 'm.id.user', user: userId }, password: PASSWORD } as never);
    },
  });
}

async function until<T>(what: string, f: () => T | undefined | null | false | Promise<T | undefined | null | false>, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The decrypted `m.room.message` with this body, once the client has it (it was sent encrypted). */
async function decrypted(client: MatrixClient, roomId: string, body: string, ms = 30_000): Promise<MatrixEvent> {
  const find = () =>
    client
      .getRoom(roomId)
      ?.getLiveTimeline()
      .getEvents()
      .find((e) => e.isEncrypted() && !e.isDecryptionFailure() && e.getType() === 'm.room.message' && e.getContent().body === body);
  return until(`${client.getUserId()}/${client.getDeviceId()} to decrypt "${body}"`, find, ms);
}

describe('end-to-end encryption with matrix-js-sdk and Rust crypto', () => {
  it('two users cross-sign, talk in an encrypted room and decrypt each other; a new device reads new messages and restores history from key backup', async () => {
    const aliceAcct = await register('e2ee_alice');
    const bobAcct = await register('e2ee_bob');
    const alice = await cryptoClient(aliceAcct);
    const bob = await cryptoClient(bobAcct);

    // Cross-signing: the first upload needs no password, the SDK signs its device with it.
    await bootstrapCrossSigning(alice, aliceAcct.userId);
    await bootstrapCrossSigning(bob, bobAcct.userId);
    expect(await alice.getCrypto()!.isCrossSigningReady()).toBe(true);
    expect(await bob.getCrypto()!.isCrossSigningReady()).toBe(true);
    const { room_id: roomId } = await alice.createRoom({
      invite: [bobAcct.userId],
      initial_state: [{ type: 'm.room.encryption', state_key: '', content: { algorithm: 'm.megolm.v1.aes-sha2' } }],
    });
    await until('bob to be invited', () => bob.getRoom(roomId));
    await bob.joinRoom(roomId);
    await until('alice to see bob join', () => alice.getRoom(roomId)?.getMember(bobAcct.userId)?.membership === 'join');
    await until('both to know the room is encrypted', () => alice.getRoom(roomId)?.hasEncryptionStateEvent() && bob.getRoom(roomId)?.hasEncryptionStateEvent());

    // Bob tracks Alice's devices now that they share an encrypted room: he sees her cross-signing
    // identity and that her device is signed by it.
    await until('bob to see alice cross-signed', async () => (await bob.getCrypto()!.userHasCrossSigningKeys(aliceAcct.userId)) || null);
    const aliceDeviceAsSeenByBob = await until('alice device status', () => bob.getCrypto()!.getDeviceVerificationStatus(aliceAcct.userId, aliceAcct.deviceId));
    expect(aliceDeviceAsSeenByBob.signedByOwner).toBe(true);

    await alice.sendTextMessage(roomId, 'hello bob, this is encrypted');
    const atBob = await decrypted(bob, roomId, 'hello bob, this is encrypted');
    expect(atBob.getWireType()).toBe('m.room.encrypted');
    expect(atBob.getSender()).toBe(aliceAcct.userId);
    await bob.sendTextMessage(roomId, 'hello alice, got it');
    await decrypted(alice, roomId, 'hello alice, got it');
    // What the server stored is ciphertext.
    const raw = (await (await fetch(`${server.baseUrl}/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/event/${encodeURIComponent(atBob.getId()!)}`, { headers: { Authorization: `Bearer ${bobAcct.token}` } })).json()) as { type: string; content: unknown };
    expect(raw.type).toBe('m.room.encrypted');
    expect(JSON.stringify(raw.content)).not.toContain('hello bob');

    // Alice backs her room keys up on the server.
    await alice.getCrypto()!.resetKeyBackup();
    const version = await until('a backup version', () => alice.getCrypto()!.getActiveSessionBackupVersion());
    await until('alice to have uploaded her room keys', async () => {
      const r = await fetch(`${server.baseUrl}/_matrix/client/v3/room_keys/keys?version=${version}`, { headers: { Authorization: `Bearer ${aliceAcct.token}` } });
      const body = (await r.json()) as { rooms?: Record<string, { sessions: Record<string, unknown> }> };
      return Object.keys(body.rooms?.[roomId]?.sessions ?? {}).length >= 2 || null;
    });

    // A second device of Alice's: new messages reach it through to-device room keys...
    const alice2Acct = await login(aliceAcct.userId);
    const alice2 = await cryptoClient(alice2Acct);
    await until('alice to see her new device', async () => (await alice.getCrypto()!.getUserDeviceInfo([aliceAcct.userId], true)).get(aliceAcct.userId)?.has(alice2Acct.deviceId) || null);
    await until('bob to see alice’s new device', async () => (await bob.getCrypto()!.getUserDeviceInfo([aliceAcct.userId], true)).get(aliceAcct.userId)?.has(alice2Acct.deviceId) || null);
    await alice.sendTextMessage(roomId, 'for all my devices');
    await decrypted(alice2, roomId, 'for all my devices');
    await bob.sendTextMessage(roomId, 'bob to every alice device');
    await decrypted(alice2, roomId, 'bob to every alice device');

    // ...and the history from before it existed comes from the key backup.
    const backupKey = await alice.getCrypto()!.getSessionBackupPrivateKey();
    expect(backupKey).not.toBeNull();
    await alice2.getCrypto()!.storeSessionBackupPrivateKey(backupKey!, version);
    const restored = await alice2.getCrypto()!.restoreKeyBackup();
    expect(restored.imported).toBeGreaterThanOrEqual(2);
    const room2 = alice2.getRoom(roomId)!;
    if (!room2.getLiveTimeline().getEvents().some((e) => e.getContent().body === 'hello bob, this is encrypted' || e.isEncrypted())) await alice2.scrollback(room2, 30);
    await decrypted(alice2, roomId, 'hello bob, this is encrypted');
    await decrypted(alice2, roomId, 'hello alice, got it');
  }, 180_000);
});
