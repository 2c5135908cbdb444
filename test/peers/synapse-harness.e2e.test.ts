/**
 * The Synapse peer harness, proven with two real Synapses federating over TLS on loopback: each on
 * its own IP with an IP-literal server name and a certificate from the test CA. A user on A makes a
 * public room with an alias, a user on B joins it by alias (directory query, make_join/send_join
 * over federation), and a message goes each way. The test also fetches A's key document over TLS
 * trusting only the test CA, checks it with our protocol library, and asks B (as a notary) for the
 * keys it fetched from A. Swap one Synapse for an Axon and the same journey is a federation test.
 *
 * Synapse comes from scripts/lib/ensure.sh's `ensure_synapse` (npm test runs it). Outside CI the test
 * skips itself when Synapse is not installed; in CI it runs, and fails if Synapse is missing.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { checkServerKeyDocument } from '../../src/protocol/server-keys';
import { enc, eventually, txn, type Json } from '../e2e/clients';
import { SYNAPSE_VERSION, loopbackServerName, startSynapse, synapseInstallation, type PeerSession, type SynapsePeer } from './synapse';
import { createTestCa, httpsGet, httpsJson, type TestCa } from './test-ca';

const install = synapseInstallation();
const skip = !install.ok && !process.env.CI;
if (skip && !install.ok) console.warn(`synapse-harness.e2e: skipped. ${install.reason}`);

const A_IP = '127.0.0.11';
const B_IP = '127.0.0.12';

describe.skipIf(skip)('Synapse peer harness: two Synapses federating over TLS on loopback', () => {
  let ca: TestCa;
  let a: SynapsePeer;
  let b: SynapsePeer;
  let alice: PeerSession;
  let bob: PeerSession;
  let roomId: string;
  let alias: string;

  beforeAll(async () => {
    ca = createTestCa();
    const started = Date.now();
    const [ra, rb] = await Promise.allSettled([
      loopbackServerName(A_IP).then((serverName) => startSynapse({ serverName, ca })),
      loopbackServerName(B_IP).then((serverName) => startSynapse({ serverName, ca })),
    ]);
    if (ra.status === 'fulfilled') a = ra.value;
    if (rb.status === 'fulfilled') b = rb.value;
    if (ra.status === 'rejected') throw ra.reason;
    if (rb.status === 'rejected') throw rb.reason;
    console.log(`synapse-harness.e2e: Synapse ${SYNAPSE_VERSION} started: ${a.serverName} in ${a.startupMs} ms, ${b.serverName} in ${b.startupMs} ms (both in parallel: ${Date.now() - started} ms)`);
    [alice, bob] = await Promise.all([a.registerUser('alice', 'alice password', true), b.registerUser('bob', 'bob password')]);
  }, 180_000);

  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    ca?.cleanup();
  });

  afterEach(({ task }) => {
    if (task.result?.state === 'fail') for (const s of [a, b]) if (s) console.error(`${s.serverName} logs:\n${s.logTail(30)}`);
  });

  it('registers users through the shared-secret admin API, and logs them in again', async () => {
    expect(alice.userId).toBe(`@alice:${a.serverName}`);
    expect(bob.userId).toBe(`@bob:${b.serverName}`);
    const again = await b.login('bob', 'bob password');
    expect(again.userId).toBe(bob.userId);
    expect(again.deviceId).not.toBe(bob.deviceId);
    const whoami = await a.call(alice, 'GET', '/account/whoami');
    expect(whoami.body.user_id).toBe(alice.userId);
  });

  it("fetches A's server keys over TLS, trusting only the test CA, and they check out", async () => {
    const direct = await httpsJson(`${a.federationUrl}/_matrix/key/v2/server`, { caPath: ca.caPath });
    expect(direct.status).toBe(200);
    expect(direct.peerCertificate.subjectaltname).toBe(`IP Address:${A_IP}`);
    const check = checkServerKeyDocument(direct.body, a.serverName);
    expect(check.ok, JSON.stringify(check)).toBe(true);

    // The system's roots do not know the test CA: the same call without it is refused.
    await expect(httpsGet(`${a.federationUrl}/_matrix/key/v2/server`, { caPath: '/etc/ssl/certs/ca-certificates.crt' })).rejects.toThrow(/certificate/i);
  });

  it('B joins, by alias over federation, a public room made on A', async () => {
    const created = await a.call(alice, 'POST', '/createRoom', { preset: 'public_chat', visibility: 'public', room_alias_name: 'harness', name: 'Harness' });
    expect(created.status, JSON.stringify(created.body)).toBe(200);
    roomId = created.body.room_id;
    alias = `#harness:${a.serverName}`;

    const joined = await b.call(bob, 'POST', `/join/${enc(alias)}`, {});
    expect(joined.status, JSON.stringify(joined.body)).toBe(200);
    expect(joined.body.room_id).toBe(roomId);

    // A sees Bob's join arrive over federation.
    const members = await eventually(
      () => a.call(alice, 'GET', `/rooms/${enc(roomId)}/joined_members`),
      (r) => r.status === 200 && bob.userId in (r.body.joined ?? {}),
      30_000,
    );
    expect(Object.keys(members.body.joined).sort()).toEqual([alice.userId, bob.userId].sort());
  });

  it('messages go both ways: A → B read with /messages, B → A read with /sync', async () => {
    const toB = `hello from ${a.serverName} ${txn()}`;
    const sentA = await a.call(alice, 'PUT', `/rooms/${enc(roomId)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body: toB });
    expect(sentA.status, JSON.stringify(sentA.body)).toBe(200);
    const onB = await eventually(
      () => b.call(bob, 'GET', `/rooms/${enc(roomId)}/messages?dir=b&limit=20`),
      (r) => (r.body.chunk ?? []).some((e: Json) => e.event_id === sentA.body.event_id),
      30_000,
    );
    const seenOnB = onB.body.chunk.find((e: Json) => e.event_id === sentA.body.event_id);
    expect(seenOnB).toMatchObject({ sender: alice.userId, type: 'm.room.message', content: { body: toB } });

    const toA = `hello back from ${b.serverName} ${txn()}`;
    const sentB = await b.call(bob, 'PUT', `/rooms/${enc(roomId)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body: toA });
    expect(sentB.status, JSON.stringify(sentB.body)).toBe(200);
    const seen = await syncUntil(a, alice, (e) => e.event_id === sentB.body.event_id, 30_000);
    expect(seen).toMatchObject({ sender: bob.userId, type: 'm.room.message', content: { body: toA } });
  });

  it('B, as a notary, serves the keys it fetched from A over TLS', async () => {
    const direct = await httpsJson(`${a.federationUrl}/_matrix/key/v2/server`, { caPath: ca.caPath });
    const viaB = await httpsJson(`${b.federationUrl}/_matrix/key/v2/query/${enc(a.serverName)}`, { caPath: ca.caPath });
    expect(viaB.status, viaB.text).toBe(200);
    const doc = (viaB.body.server_keys as Json[]).find((k) => k.server_name === a.serverName);
    expect(doc, viaB.text).toBeDefined();
    expect(Object.keys(doc!.verify_keys)).toEqual(Object.keys(direct.body.verify_keys));
    expect(doc!.signatures[b.serverName], 'countersigned by the notary').toBeDefined();
    expect(checkServerKeyDocument(doc, a.serverName).ok).toBe(true);
  });

  /** /sync as a client does it (first sync, then long polls from `next_batch`) until an event of `roomId` matches. */
  async function syncUntil(server: SynapsePeer, s: PeerSession, match: (e: Json) => boolean, ms: number): Promise<Json | undefined> {
    const deadline = Date.now() + ms;
    let since: string | undefined;
    while (Date.now() < deadline) {
      const r = await server.call(s, 'GET', `/sync?timeout=1000${since ? `&since=${enc(since)}` : ''}`);
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      const found = (r.body.rooms?.join?.[roomId]?.timeline?.events ?? []).find(match);
      if (found) return found;
      since = r.body.next_batch;
    }
    return undefined;
  }
});
