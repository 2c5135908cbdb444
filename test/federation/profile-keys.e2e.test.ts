/**
 * Federation basics against real peers over TLS on loopback: two Axons and a Synapse 1.163.2,
 * each on its own loopback IP with an IP-literal server name and a leaf certificate from one
 * test CA. Keys both ways (each side fetches and checks the other's key document, also through
 * the other as a notary), profiles both ways (proving inbound X-Matrix verification, outbound
 * signing, discovery of IP-literal names and certificate checks), and the refusals: a bad
 * signature, a blocked address, an answer that is not strict JSON or too large.
 *
 * Synapse parts skip themselves outside CI when Synapse is not installed (as the harness test).
 */
import { randomBytes } from 'node:crypto';
import { createServer as createHttpsServer, type Server } from 'node:https';
import { readFileSync } from 'node:fs';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signingKeyFromSeed } from '../../src/protocol/crypto';
import { federationIpBlocklist } from '../../src/protocol/ip-ranges';
import { signRequest } from '../../src/protocol/server-auth';
import { checkServerKeyDocument, verifyServerKeys } from '../../src/protocol/server-keys';
import { canonicalJson } from '../../src/protocol/json';
import { verifyJsonSignature } from '../../src/protocol/signing';
import { decodeBase64 } from '../../src/protocol/base64';
import { FederationClient } from '../../src/federation/client';
import { FederationBadResponseError, FederationBlockedError } from '../../src/federation/errors';
import { clientsFor, enc, type Clients, type Json, type Session } from '../e2e/clients';
import type { TestServer } from '../e2e/server-harness';
import { fedRequest as rawFedRequest, startFederatedAxon } from './harness';
import { freePort } from '../setup/free-port';
import { startSynapse, synapseInstallation, type PeerSession, type SynapsePeer } from '../peers/synapse';
import { createTestCa, httpsJson, type TestCa } from '../peers/test-ca';

const install = synapseInstallation();
const skipSynapse = !install.ok && !process.env.CI;
if (skipSynapse && !install.ok) console.warn(`profile-keys.e2e: Synapse parts skipped. ${install.reason}`);

const A_IP = '127.0.0.31';
const B_IP = '127.0.0.32';
const S_IP = '127.0.0.33';
const EVIL_IP = '127.0.0.34';

let ca: TestCa;

function startAxon(ip: string): Promise<TestServer> {
  return startFederatedAxon(ip, ca);
}

/** A raw HTTPS request to a federation listener (trusting the test CA). */
function fedRequest(url: string, method: string, headers: Record<string, string>, body?: unknown) {
  return rawFedRequest(ca.caPath, url, method, headers, body);
}

describe('federation between two Axons: keys, X-Matrix, profiles', () => {
  let a: TestServer;
  let b: TestServer;
  let ca_: Clients;
  let cb: Clients;
  let alice: Session;
  let bert: Session;

  beforeAll(async () => {
    ca = createTestCa();
    [a, b] = await Promise.all([startAxon(A_IP), startAxon(B_IP)]);
    [ca_, cb] = await Promise.all([clientsFor(a), clientsFor(b)]);
    alice = await ca_.mint('alice');
    bert = await cb.mint('bert');
    expect((await ca_.call(alice, 'PUT', `/profile/${enc(alice.userId)}/displayname`, { displayname: 'Alice on A' })).status).toBe(200);
    expect((await cb.call(bert, 'PUT', `/profile/${enc(bert.userId)}/displayname`, { displayname: 'Bert on B' })).status).toBe(200);
  }, 60_000);

  afterAll(async () => {
    await ca_?.close();
    await cb?.close();
    await Promise.all([a?.stop(), b?.stop()]);
  });

  it('serves the version and its key document as canonical JSON over TLS, on the federation port', async () => {
    const version = await httpsJson(`${a.federationUrl}/_matrix/federation/v1/version`, { caPath: ca.caPath });
    expect(version.body.server).toMatchObject({ name: 'Axon' });
    expect(version.peerCertificate.subjectaltname).toBe(`IP Address:${A_IP}`);
    for (const path of ['/_matrix/key/v2/server', '/_matrix/key/v2/server/ed25519:e2e']) {
      const keys = await httpsJson(`${a.federationUrl}${path}`, { caPath: ca.caPath });
      expect(keys.status).toBe(200);
      expect(keys.text).toBe(canonicalJson(keys.body));
      expect(checkServerKeyDocument(keys.body, a.serverName).ok).toBe(true);
    }
  });

  it('each Axon reads the other\'s user profile over federation (signed requests, verified keys)', async () => {
    const onA = await ca_.call(alice, 'GET', `/profile/${enc(bert.userId)}`);
    expect(onA.status, JSON.stringify(onA.body)).toBe(200);
    expect(onA.body.displayname).toBe('Bert on B');
    const onB = await cb.call(bert, 'GET', `/profile/${enc(alice.userId)}/displayname`);
    expect(onB.status, JSON.stringify(onB.body)).toBe(200);
    expect(onB.body).toEqual({ displayname: 'Alice on A' });
    const missing = await ca_.call(alice, 'GET', `/profile/${enc(`@nobody:${b.serverName}`)}`);
    expect(missing.status).toBe(404);
    expect(missing.body.errcode).toBe('M_NOT_FOUND');
  });

  it('A as a notary serves B\'s keys, countersigned', async () => {
    const started = performance.now();
    const viaA = await httpsJson(`${a.federationUrl}/_matrix/key/v2/query/${enc(b.serverName)}`, { caPath: ca.caPath });
    console.log(`profile-keys.e2e: notary answer (keys already cached) in ${Math.round(performance.now() - started)} ms`);
    expect(viaA.status, viaA.text).toBe(200);
    expect(viaA.text).toBe(canonicalJson(viaA.body));
    const doc = viaA.body.server_keys.find((d: Json) => d.server_name === b.serverName);
    expect(verifyServerKeys(doc, b.serverName).ok).toBe(true);
    const own = await httpsJson(`${a.federationUrl}/_matrix/key/v2/server`, { caPath: ca.caPath });
    const aKey = decodeBase64(own.body.verify_keys['ed25519:e2e'].key);
    expect(verifyJsonSignature(doc, a.serverName, 'ed25519:e2e', aKey).ok).toBe(true);

    const post = await fedRequest(`${a.federationUrl}/_matrix/key/v2/query`, 'POST', {}, { server_keys: { [b.serverName]: {}, [a.serverName]: {} } });
    expect(post.status, post.text).toBe(200);
    expect(post.body.server_keys.map((d: Json) => d.server_name).sort()).toEqual([a.serverName, b.serverName].sort());
  });

  it('refuses a request without X-Matrix, with a wrong signature, or for another destination: 401 M_UNAUTHORIZED', async () => {
    const path = `/_matrix/federation/v1/query/profile?user_id=${enc(alice.userId)}`;
    const none = await fedRequest(`${a.federationUrl}${path}`, 'GET', {});
    expect(none.status).toBe(401);
    expect(none.body.errcode).toBe('M_UNAUTHORIZED');
    // B's key id, but not B's key.
    const forged = signingKeyFromSeed('ed25519:e2e', randomBytes(32));
    const [bad] = signRequest({ method: 'GET', uri: path, origin: b.serverName, destination: a.serverName }, forged);
    const wrong = await fedRequest(`${a.federationUrl}${path}`, 'GET', { Authorization: bad! });
    expect(wrong.status).toBe(401);
    expect(wrong.body.errcode).toBe('M_UNAUTHORIZED');
    const other = await fedRequest(`${a.federationUrl}${path}`, 'GET', { Authorization: signRequest({ method: 'GET', uri: path, origin: b.serverName, destination: 'elsewhere.example' }, forged)[0]! });
    expect(other.status).toBe(401);
  });

  it('an unknown user\'s profile: A answers 404 M_NOT_FOUND over federation, and B passes it on to its client', async () => {
    const r = await cb.call(bert, 'GET', `/profile/${enc(`@ghost:${a.serverName}`)}`);
    expect(r.status).toBe(404);
    expect(r.body.errcode).toBe('M_NOT_FOUND');
  });

  it('the client refuses blocked addresses, answers that are not strict JSON, and answers over the size limit', async () => {
    const key = signingKeyFromSeed('ed25519:t', randomBytes(32));
    const log = pino({ level: 'silent' });
    const blocked = new FederationClient({ serverName: 'test.example', signingKey: key, caPaths: [ca.caPath], verifyTls: true, blocklist: federationIpBlocklist(), log });
    await expect(blocked.get(b.serverName, '/_matrix/federation/v1/version')).rejects.toBeInstanceOf(FederationBlockedError);

    const leaf = ca.leaf(EVIL_IP);
    const evilPort = await freePort(EVIL_IP);
    const evil: Server = createHttpsServer({ cert: readFileSync(leaf.certPath), key: readFileSync(leaf.keyPath) }, (req, res) => {
      res.setHeader('Content-Type', 'application/json');
      if (req.url?.startsWith('/float')) res.end('{"a": 1.5}');
      else if (req.url?.startsWith('/dup')) res.end('{"a": 1, "a": 2}');
      else res.end(JSON.stringify({ big: 'x'.repeat(200_000) }));
    });
    await new Promise<void>((r) => evil.listen(evilPort, EVIL_IP, r));
    try {
      const open = new FederationClient({ serverName: 'test.example', signingKey: key, caPaths: [ca.caPath], verifyTls: true, blocklist: federationIpBlocklist([]), log });
      const evilName = `${EVIL_IP}:${evilPort}`;
      await expect(open.get(evilName, '/float')).rejects.toBeInstanceOf(FederationBadResponseError);
      await expect(open.get(evilName, '/dup')).rejects.toBeInstanceOf(FederationBadResponseError);
      await expect(open.get(evilName, '/big', { maxResponseBytes: 100_000 })).rejects.toThrow(/limit/);
      open.close();
    } finally {
      evil.close();
    }
  });
});

describe.skipIf(skipSynapse)('federation with Synapse 1.163.2: keys and profiles both ways', () => {
  let a: TestServer;
  let s: SynapsePeer;
  let ca_: Clients;
  let alice: Session;
  let sam: PeerSession;

  beforeAll(async () => {
    ca ??= createTestCa();
    const sName = `${S_IP}:${await freePort(S_IP)}`;
    [a, s] = await Promise.all([startAxon(A_IP), startSynapse({ serverName: sName, ca })]);
    ca_ = await clientsFor(a);
    alice = await ca_.mint('alice');
    expect((await ca_.call(alice, 'PUT', `/profile/${enc(alice.userId)}/displayname`, { displayname: 'Alice on Axon' })).status).toBe(200);
    sam = await s.registerUser('sam', 'sam password');
    const set = await s.call(sam, 'PUT', `/profile/${enc(sam.userId)}/displayname`, { displayname: 'Sam on Synapse' });
    expect(set.status, JSON.stringify(set.body)).toBe(200);
  }, 180_000);

  afterAll(async () => {
    await ca_?.close();
    await Promise.all([a?.stop(), s?.stop()]);
    ca?.cleanup();
  });

  it('Axon fetches and accepts Synapse\'s keys (through Axon as a notary)', async () => {
    const started = performance.now();
    const viaA = await httpsJson(`${a.federationUrl}/_matrix/key/v2/query/${enc(s.serverName)}`, { caPath: ca.caPath });
    console.log(`profile-keys.e2e: Axon fetched Synapse's keys (TLS, verify, cache, countersign) in ${Math.round(performance.now() - started)} ms`);
    expect(viaA.status, viaA.text).toBe(200);
    const doc = viaA.body.server_keys.find((d: Json) => d.server_name === s.serverName);
    expect(doc, viaA.text).toBeDefined();
    expect(verifyServerKeys(doc, s.serverName).ok).toBe(true);
    expect(doc.signatures[a.serverName]).toBeDefined();
  });

  it('a Synapse user reads an Axon user\'s profile (Synapse signs, Axon verifies)', async () => {
    const r = await s.call(sam, 'GET', `/profile/${enc(alice.userId)}`);
    expect(r.status, `${JSON.stringify(r.body)}\n${s.logTail(20)}`).toBe(200);
    expect(r.body.displayname).toBe('Alice on Axon');
    const field = await s.call(sam, 'GET', `/profile/${enc(alice.userId)}/displayname`);
    expect(field.body).toEqual({ displayname: 'Alice on Axon' });
  });

  it('an Axon user reads a Synapse user\'s profile (Axon signs, discovers, checks TLS)', async () => {
    const r = await ca_.call(alice, 'GET', `/profile/${enc(sam.userId)}`);
    expect(r.status, `${JSON.stringify(r.body)}\n${s.logTail(20)}`).toBe(200);
    expect(r.body.displayname).toBe('Sam on Synapse');
    const missing = await ca_.call(alice, 'GET', `/profile/${enc(`@nobody:${s.serverName}`)}`);
    expect(missing.status).toBe(404);
  });

  it('Synapse fetched and accepted Axon\'s keys over TLS (to check the request above), and serves them as a notary', async () => {
    // Synapse's GET notary endpoint answers from its cache: it has our keys because it fetched them
    // from our federation listener to verify the X-Matrix request of the previous test.
    const viaS = await httpsJson(`${s.federationUrl}/_matrix/key/v2/query/${enc(a.serverName)}`, { caPath: ca.caPath });
    expect(viaS.status, viaS.text).toBe(200);
    const doc = viaS.body.server_keys.find((d: Json) => d.server_name === a.serverName);
    expect(doc, `${viaS.text}\n${s.logTail(20)}`).toBeDefined();
    expect(Object.keys(doc.verify_keys)).toEqual(['ed25519:e2e']);
    expect(doc.signatures[s.serverName]).toBeDefined();
    expect(checkServerKeyDocument(doc, a.serverName).ok).toBe(true);
  });
});
