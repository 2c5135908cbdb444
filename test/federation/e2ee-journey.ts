/**
 * End-to-end encryption across servers with real clients (issue 16.5), as one journey run
 * against a pair of servers (Axon and Synapse: synapse-e2ee.e2e.test.ts; two Axons:
 * axon-e2ee.e2e.test.ts): a matrix-js-sdk client with Rust crypto on each, Alice on the first
 * server and Bob on the second.
 *
 * 1. Both bootstrap cross-signing, then verify each other interactively: an SAS verification
 *    over to-device messages across the federation (`m.direct_to_device`), both sides accept,
 *    the test compares the emoji and decimals each side shows and confirms. Each side then signs
 *    the other's master key with its user-signing key (a signature of a remote user's key, kept
 *    by the signer's server and shown to the signer only), and each sees the other as
 *    cross-signing verified. This exercises `/user/keys/query` with cross-signing keys and the
 *    owner's signatures carried in `m.device_list_update` / `m.signing_key_update`.
 * 2. They share an encrypted room; each decrypts the other's messages (Olm sessions over
 *    one-time keys claimed across servers, Megolm keys over federated to-device).
 * 3. Alice logs in on a new device: Bob's server learns of it through `m.device_list_update`,
 *    and Bob's next message is decryptable there (his client shares the Megolm session with it).
 * 4. A device deleted on one server disappears from the other's `/keys/query`, both ways.
 *
 * Timings (verification done, first decrypt across servers, new device receiving keys) are
 * printed, not asserted.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ClientEvent, type MatrixClient, type MatrixEvent } from 'matrix-js-sdk';
import { CrossSigningKey, CryptoEvent, EventShieldColour, VerificationPhase, VerificationRequestEvent, VerifierEvent, type ShowSasCallbacks, type VerificationRequest } from 'matrix-js-sdk/lib/crypto-api/index.js';
import { createClient } from '../e2e/sdk';
import { callServer, enc, type Json } from '../e2e/clients';

const WAIT = 90_000;
const PASSWORD = 'a long passphrase for e2ee';

/** One server of the pair, as the journey needs it. */
export interface E2eeServer {
  /** For test names and figures: 'Axon', 'Synapse', 'Axon A'... */
  name: string;
  /** Client API base URL. */
  baseUrl: string;
  /** A new user with this password (so it works for user-interactive auth) and their first device. */
  register(localpart: string, password: string): Promise<{ userId: string; deviceId: string; token: string }>;
  /** What to print when a test fails. */
  logs?(): string;
}

export interface E2eePair {
  /** Alice's server. */
  alice: E2eeServer;
  /** Bob's server. */
  bob: E2eeServer;
  stop(): Promise<void>;
}

/** A password account on an Axon, through the client-server registration (dummy auth). */
export async function registerOnAxon(baseUrl: string, username: string, password: string): Promise<{ userId: string; deviceId: string; token: string }> {
  const first = await callServer({ baseUrl }, null, 'POST', '/register', { username, password });
  const r = await callServer({ baseUrl }, null, 'POST', '/register', { username, password, auth: { type: 'm.login.dummy', session: first.body.session } });
  if (r.status !== 200) throw new Error(`register ${username} on ${baseUrl}: ${r.status} ${JSON.stringify(r.body)}`);
  return { userId: r.body.user_id, deviceId: r.body.device_id, token: r.body.access_token };
}

interface Account {
  userId: string;
  deviceId: string;
  token: string;
  baseUrl: string;
}

/** Polls `f` until it gives something truthy. */
async function until<T>(what: string, f: () => T | undefined | null | false | Promise<T | undefined | null | false>, ms = WAIT): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The journey as a describe block; `label` prefixes the printed figures, `names` are the servers' in test names. */
export function describeE2eeJourney(title: string, label: string, names: { alice: string; bob: string }, skip: boolean, start: () => Promise<E2eePair>): void {
  const figures: string[] = [];
  const trace: string[] = [];
  const figure = (what: string, ms: number) => {
    const line = `${label}: ${what}: ${Math.round(ms)} ms`;
    figures.push(line);
    console.log(line);
  };

  describe.skipIf(skip)(title, () => {
    const sdkClients: MatrixClient[] = [];
    let aliceAcct: Account;
    let bobAcct: Account;
    let alice: MatrixClient;
    let bob: MatrixClient;
    let roomId: string;

    const post = async (base: string, path: string, body: unknown, token?: string) => callServer({ baseUrl: base }, token ? { token } : null, 'POST', path, body);

    async function loginAt(baseUrl: string, userId: string): Promise<Account> {
      const r = await post(baseUrl, '/login', { type: 'm.login.password', identifier: { type: 'm.id.user', user: userId }, password: PASSWORD });
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      return { userId: r.body.user_id, deviceId: r.body.device_id, token: r.body.access_token, baseUrl };
    }

    /** A started client with Rust crypto (in memory: no IndexedDB in Node). */
    async function cryptoClient(acct: Account): Promise<MatrixClient> {
      const client = createClient({ baseUrl: acct.baseUrl, userId: acct.userId, deviceId: acct.deviceId, accessToken: acct.token });
      sdkClients.push(client);
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

    /** The decrypted `m.room.message` with this body, once the client has it (it was sent encrypted). */
    function decrypted(client: MatrixClient, body: string): Promise<MatrixEvent> {
      return until(`${client.getUserId()}/${client.getDeviceId()} to decrypt "${body}"`, () =>
        client
          .getRoom(roomId)
          ?.getLiveTimeline()
          .getEvents()
          .find((e) => e.isEncrypted() && !e.isDecryptionFailure() && e.getType() === 'm.room.message' && e.getContent().body === body),
      );
    }

    /** Deletes a device through the user-interactive auth the server asks for (password). */
    async function deleteDevice(acct: Account, deviceId: string): Promise<void> {
      const path = `/devices/${enc(deviceId)}`;
      const first = await callServer({ baseUrl: acct.baseUrl }, acct, 'DELETE', path, {});
      if (first.status === 200) return;
      expect(first.status, JSON.stringify(first.body)).toBe(401);
      const r = await callServer({ baseUrl: acct.baseUrl }, acct, 'DELETE', path, {
        auth: { type: 'm.login.password', identifier: { type: 'm.id.user', user: acct.userId }, password: PASSWORD, session: first.body.session },
      });
      expect(r.status, JSON.stringify(r.body)).toBe(200);
    }

    const devicesIn = (q: { body: Json }, userId: string): string[] => Object.keys(q.body.device_keys?.[userId] ?? {}).sort();

    let pair: E2eePair;
    let a: E2eeServer;
    let s: E2eeServer;

    beforeAll(async () => {
      pair = await start();
      ({ alice: a, bob: s } = pair);
      aliceAcct = { ...(await a.register('e2ee_alice', PASSWORD)), baseUrl: a.baseUrl };
      bobAcct = { ...(await s.register('e2ee_bob', PASSWORD)), baseUrl: s.baseUrl };
      alice = await cryptoClient(aliceAcct);
      bob = await cryptoClient(bobAcct);
    }, 240_000);

    afterAll(async () => {
      for (const c of sdkClients) c.stopClient();
      if (figures.length) console.log(`${label} figures:\n  ${figures.join('\n  ')}`);
      await pair?.stop();
    });

    afterEach(async ({ task }) => {
      if (task.result?.state !== 'fail' || !pair) return;
      if (trace.length) console.error(`verification trace:\n  ${trace.join('\n  ')}`);
      for (const srv of [a, s]) if (srv.logs) console.error(`${srv.name} logs:\n${srv.logs()}`);
    });

    it('both bootstrap cross-signing and verify each other with SAS over federated to-device messages', async () => {
      await bootstrapCrossSigning(alice, aliceAcct.userId);
      await bootstrapCrossSigning(bob, bobAcct.userId);
      expect(await alice.getCrypto()!.isCrossSigningReady()).toBe(true);
      expect(await bob.getCrypto()!.isCrossSigningReady()).toBe(true);

      // A shared encrypted room: from then on each client tracks the other user's devices.
      const created = await alice.createRoom({
        invite: [bobAcct.userId],
        initial_state: [{ type: 'm.room.encryption', state_key: '', content: { algorithm: 'm.megolm.v1.aes-sha2' } }],
      });
      roomId = created.room_id;
      await until('bob to be invited over federation', () => bob.getRoom(roomId));
      await bob.joinRoom(roomId);
      await until('alice to see bob join', () => alice.getRoom(roomId)?.getMember(bobAcct.userId)?.membership === 'join');
      await until('both to know the room is encrypted', () => alice.getRoom(roomId)?.hasEncryptionStateEvent() && bob.getRoom(roomId)?.hasEncryptionStateEvent());

      // Each sees the other's cross-signing identity through its own server's /keys/query.
      await until('alice to see bob’s cross-signing keys', async () => (await alice.getCrypto()!.userHasCrossSigningKeys(bobAcct.userId, true)) || null);
      await until('bob to see alice’s cross-signing keys', async () => (await bob.getCrypto()!.userHasCrossSigningKeys(aliceAcct.userId, true)) || null);
      await until('alice to know bob’s device', async () => (await alice.getCrypto()!.getUserDeviceInfo([bobAcct.userId], true)).get(bobAcct.userId)?.has(bobAcct.deviceId) || null);
      await until('bob to know alice’s device', async () => (await bob.getCrypto()!.getUserDeviceInfo([aliceAcct.userId], true)).get(aliceAcct.userId)?.has(aliceAcct.deviceId) || null);
      expect(await alice.getCrypto()!.getUserVerificationStatus(bobAcct.userId).then((v) => v.isCrossSigningVerified())).toBe(false);

      const started = performance.now();
      // When each client got each to-device message out of its /sync: with the phases below and
      // the servers' logs, a stall shows whether a message reached the other server late, sat in
      // its inbox while the recipient's long-poll slept, or was received and not acted on.
      for (const [who, client] of [['alice', alice], ['bob', bob]] as const) {
        client.on(ClientEvent.ToDeviceEvent, (e: MatrixEvent) => {
          if (e.getType().startsWith('m.key.verification.')) trace.push(`${Math.round(performance.now() - started)} ms ${who}: received ${e.getType()}`);
        });
      }
      const incoming = new Promise<VerificationRequest>((resolve) => bob.on(CryptoEvent.VerificationRequestReceived, resolve));
      const aliceRequest = await alice.getCrypto()!.requestDeviceVerification(bobAcct.userId, bobAcct.deviceId);
      const bobRequest = await incoming;
      // Each side's phases with their times, printed if the test fails: which to-device message
      // across the federation did not arrive.
      for (const [who, req] of [['alice', aliceRequest], ['bob', bobRequest]] as const) {
        const note = () => trace.push(`${Math.round(performance.now() - started)} ms ${who}: ${VerificationPhase[req.phase]}${req.cancellationCode ? ` (${req.cancellationCode})` : ''}`);
        note();
        req.on(VerificationRequestEvent.Change, note);
      }
      expect(bobRequest.otherUserId).toBe(aliceAcct.userId);
      expect(bobRequest.otherDeviceId).toBe(aliceAcct.deviceId);
      await bobRequest.accept();
      await until('alice’s request to be ready', () => aliceRequest.phase === VerificationPhase.Ready);

      const aliceVerifier = await aliceRequest.startVerification('m.sas.v1');
      const bobVerifier = await until('bob’s verifier', () => bobRequest.phase === VerificationPhase.Started && bobRequest.verifier);
      const sasOf = (v: typeof aliceVerifier) => new Promise<ShowSasCallbacks>((resolve) => v.once(VerifierEvent.ShowSas, resolve));
      const aliceSasP = sasOf(aliceVerifier).then((x) => (trace.push(`${Math.round(performance.now() - started)} ms alice: shows SAS`), x));
      const bobSasP = sasOf(bobVerifier).then((x) => (trace.push(`${Math.round(performance.now() - started)} ms bob: shows SAS`), x));
      const at = () => Math.round(performance.now() - started);
      const aliceDone = aliceVerifier.verify().then(() => void trace.push(`${at()} ms alice: verifier done`));
      const bobDone = bobVerifier.verify().then(() => void trace.push(`${at()} ms bob: verifier done`));
      const [aliceSas, bobSas] = await Promise.all([aliceSasP, bobSasP]);
      // What the two users compare on their screens.
      expect(aliceSas.sas.emoji).toHaveLength(7);
      expect(aliceSas.sas.emoji).toEqual(bobSas.sas.emoji);
      expect(aliceSas.sas.decimal).toEqual(bobSas.sas.decimal);
      await Promise.all([aliceSas.confirm().then(() => void trace.push(`${at()} ms alice: confirmed`)), bobSas.confirm().then(() => void trace.push(`${at()} ms bob: confirmed`))]);
      await Promise.all([aliceDone, bobDone]);
      await until('both requests done', () => aliceRequest.phase === VerificationPhase.Done && bobRequest.phase === VerificationPhase.Done);
      figure('SAS verification across servers, request → done', performance.now() - started);

      // Each signed the other's master key; each sees the other as cross-signing verified.
      await until('alice to see bob verified', async () => (await alice.getCrypto()!.getUserVerificationStatus(bobAcct.userId)).isCrossSigningVerified() || null);
      await until('bob to see alice verified', async () => (await bob.getCrypto()!.getUserVerificationStatus(aliceAcct.userId)).isCrossSigningVerified() || null);
      const bobDevice = await alice.getCrypto()!.getDeviceVerificationStatus(bobAcct.userId, bobAcct.deviceId);
      expect(bobDevice?.crossSigningVerified).toBe(true);
      const aliceDevice = await bob.getCrypto()!.getDeviceVerificationStatus(aliceAcct.userId, aliceAcct.deviceId);
      expect(aliceDevice?.crossSigningVerified).toBe(true);

      // The signatures were published: each server's /keys/query shows the other user's master key
      // signed by the querying user's user-signing key (signatures on a remote user's master key).
      const aliceUsk = await until('alice’s user-signing key', () => alice.getCrypto()!.getCrossSigningKeyId(CrossSigningKey.UserSigning));
      const bobUsk = await until('bob’s user-signing key', () => bob.getCrypto()!.getCrossSigningKeyId(CrossSigningKey.UserSigning));
      const onAxon = await until(`${a.name} to hold Alice’s signature of Bob’s master key`, async () => {
        const r = await post(a.baseUrl, '/keys/query', { device_keys: { [bobAcct.userId]: [] } }, aliceAcct.token);
        return (r.body.master_keys?.[bobAcct.userId]?.signatures?.[aliceAcct.userId]?.[`ed25519:${aliceUsk}`] && r) || null;
      });
      expect(onAxon.body.failures ?? {}).toEqual({});
      await until(`${s.name} to hold Bob’s signature of Alice’s master key`, async () => {
        const r = await post(s.baseUrl, '/keys/query', { device_keys: { [aliceAcct.userId]: [] } }, bobAcct.token);
        return r.body.master_keys?.[aliceAcct.userId]?.signatures?.[bobAcct.userId]?.[`ed25519:${bobUsk}`] || null;
      });
    }, 300_000);
    it('they talk in the encrypted room and each decrypts the other’s messages', async () => {
      let started = performance.now();
      await alice.sendTextMessage(roomId, 'hello bob, from axon, encrypted');
      const atBob = await decrypted(bob, 'hello bob, from axon, encrypted');
      figure(`first message ${a.name} → ${s.name}, send → decrypted`, performance.now() - started);
      expect(atBob.getWireType()).toBe('m.room.encrypted');
      expect(atBob.getSender()).toBe(aliceAcct.userId);
      expect(atBob.getClearContent()?.body).toBe('hello bob, from axon, encrypted');
      // Sent by a device Bob verified through cross-signing: no warning on it.
      expect((await bob.getCrypto()!.getEncryptionInfoForEvent(atBob))?.shieldColour).toBe(EventShieldColour.NONE);

      started = performance.now();
      await bob.sendTextMessage(roomId, 'hello alice, from synapse, encrypted');
      const atAlice = await decrypted(alice, 'hello alice, from synapse, encrypted');
      figure(`first message ${s.name} → ${a.name}, send → decrypted`, performance.now() - started);
      expect(atAlice.getWireType()).toBe('m.room.encrypted');
      expect(atAlice.getSender()).toBe(bobAcct.userId);
      expect((await alice.getCrypto()!.getEncryptionInfoForEvent(atAlice))?.shieldColour).toBe(EventShieldColour.NONE);

      // More of each, in the same Megolm sessions.
      await alice.sendTextMessage(roomId, 'second from alice');
      await bob.sendTextMessage(roomId, 'second from bob');
      await decrypted(bob, 'second from alice');
      await decrypted(alice, 'second from bob');

      // What each server stored and served to the other is ciphertext.
      const raw = await callServer({ baseUrl: s.baseUrl }, bobAcct, 'GET', `/rooms/${enc(roomId)}/event/${enc(atBob.getId()!)}`);
      expect(raw.body.type).toBe('m.room.encrypted');
      expect(JSON.stringify(raw.body.content)).not.toContain('hello bob');
      const raw2 = await callServer({ baseUrl: a.baseUrl }, aliceAcct, 'GET', `/rooms/${enc(roomId)}/event/${enc(atAlice.getId()!)}`);
      expect(raw2.body.type).toBe('m.room.encrypted');
      expect(JSON.stringify(raw2.body.content)).not.toContain('hello alice');
    }, 300_000);

    it(`a new device of the ${names.alice} user gets the ${names.bob} user’s room keys over federation and decrypts his next message`, async () => {
      const started = performance.now();
      const alice2Acct = await loginAt(a.baseUrl, aliceAcct.userId);
      const alice2 = await cryptoClient(alice2Acct);
      // Bob's server hears of the new device (m.device_list_update) and his client sees it.
      await until('bob to see alice’s new device', async () => (await bob.getCrypto()!.getUserDeviceInfo([aliceAcct.userId])).get(aliceAcct.userId)?.has(alice2Acct.deviceId) || null);
      figure(`new ${a.name} device → known to the ${s.name} client`, performance.now() - started);
      const sent = performance.now();
      await bob.sendTextMessage(roomId, 'bob to every alice device');
      const onNew = await decrypted(alice2, 'bob to every alice device');
      figure(`${s.name} user’s message → decrypted on the new ${a.name} device`, performance.now() - sent);
      figure(`new ${a.name} device login → decrypts the ${s.name} user’s message`, performance.now() - started);
      expect(onNew.getSender()).toBe(bobAcct.userId);
      await decrypted(alice, 'bob to every alice device');
      // The new device is not cross-signed by Alice (she never verified it): Bob's client says so.
      const status = await bob.getCrypto()!.getDeviceVerificationStatus(aliceAcct.userId, alice2Acct.deviceId);
      expect(status?.crossSigningVerified).toBe(false);
      alice2.stopClient();

      // Deleted on Alice's server → gone from Bob's server's /keys/query for Alice.
      const beforeDelete = await post(s.baseUrl, '/keys/query', { device_keys: { [aliceAcct.userId]: [] } }, bobAcct.token);
      expect(devicesIn(beforeDelete, aliceAcct.userId)).toEqual([aliceAcct.deviceId, alice2Acct.deviceId].sort());
      const deleting = performance.now();
      await deleteDevice(alice2Acct, alice2Acct.deviceId);
      await until(`${s.name}’s /keys/query to drop the deleted ${a.name} device`, async () => {
        const r = await post(s.baseUrl, '/keys/query', { device_keys: { [aliceAcct.userId]: [] } }, bobAcct.token);
        return r.status === 200 && devicesIn(r, aliceAcct.userId).join() === aliceAcct.deviceId;
      });
      figure(`device deleted on ${a.name} → gone from ${s.name}’s /keys/query`, performance.now() - deleting);
      await until('bob’s client to forget it', async () => !(await bob.getCrypto()!.getUserDeviceInfo([aliceAcct.userId])).get(aliceAcct.userId)?.has(alice2Acct.deviceId));
    }, 300_000);

    it(`a device deleted on ${names.bob} disappears from ${names.alice}’s /keys/query`, async () => {
      const bob2Acct = await loginAt(s.baseUrl, bobAcct.userId);
      const bob2 = await cryptoClient(bob2Acct);
      await until(`${a.name}’s /keys/query to list the new ${s.name} device`, async () => {
        const r = await post(a.baseUrl, '/keys/query', { device_keys: { [bobAcct.userId]: [] } }, aliceAcct.token);
        return r.status === 200 && devicesIn(r, bobAcct.userId).includes(bob2Acct.deviceId);
      });
      await until('alice’s client to see it', async () => (await alice.getCrypto()!.getUserDeviceInfo([bobAcct.userId])).get(bobAcct.userId)?.has(bob2Acct.deviceId) || null);
      bob2.stopClient();
      const deleting = performance.now();
      await deleteDevice(bob2Acct, bob2Acct.deviceId);
      const after = await until(`${a.name}’s /keys/query to drop the deleted ${s.name} device`, async () => {
        const r = await post(a.baseUrl, '/keys/query', { device_keys: { [bobAcct.userId]: [] } }, aliceAcct.token);
        return (r.status === 200 && devicesIn(r, bobAcct.userId).join() === bobAcct.deviceId && r) || null;
      });
      figure(`device deleted on ${s.name} → gone from ${a.name}’s /keys/query`, performance.now() - deleting);
      expect(after.body.failures).toEqual({});
      await until('alice’s client to forget it', async () => !(await alice.getCrypto()!.getUserDeviceInfo([bobAcct.userId])).get(bobAcct.userId)?.has(bob2Acct.deviceId));
      // The two still talk.
      await alice.sendTextMessage(roomId, 'still here');
      await decrypted(bob, 'still here');
    }, 300_000);
  });
}
