/**
 * The non-I/O parts of federation networking: configuration (defaults, env overrides, one line
 * per problem), discovery driven by fake look-ups (order of steps, .well-known caching incl.
 * cached failures, SRV), and the server key store against an in-memory Redis and a fake client
 * (direct fetch, notary, coalescing, cached failures, old keys kept, no refetch storm).
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, parseTrustedKeyServersEnv } from '../../cluster.config';
import { Discovery } from '../../src/federation/discovery';
import { ServerKeyStore, FAILURE_CACHE_MS } from '../../src/federation/keys/key-store';
import { OwnKeyDocument } from '../../src/federation/keys/own-keys';
import { FederationNetworkError } from '../../src/federation/errors';
import { DEFAULT_FEDERATION_IP_BLOCKLIST } from '../../src/protocol/ip-ranges';
import { signingKeyFromSeed } from '../../src/protocol/crypto';
import { buildServerKeyDocument, buildNotaryResponse } from '../../src/protocol/server-keys';
import type { WellKnownHttpAnswer } from '../../src/protocol/server-names';
import { KeySpace } from '../../src/store/keys';
import type { FederationClient } from '../../src/federation/client';
import type { RedisClient } from '../../src/store/redis';

const cwd = () => mkdtempSync(join(tmpdir(), 'axon-fedcfg-'));
const problemsOf = (env: Record<string, string>, dir = cwd()) => {
  try {
    loadConfig(env, dir);
    return [];
  } catch (e) {
    return (e as ConfigError).problems;
  }
};

describe('federation configuration', () => {
  it('defaults: on, port 8448, Synapse\'s blocklist, certificates verified, no notaries', () => {
    const c = loadConfig({}, cwd());
    expect(c.federation).toMatchObject({ enabled: true, port: 8448, tlsCertPath: '', tlsKeyPath: '', caPaths: [], verifyTls: true, trustedKeyServers: [] });
    expect(c.federation.ipRangeBlocklist).toEqual([...DEFAULT_FEDERATION_IP_BLOCKLIST]);
  });

  it('env overrides, an empty blocklist allows all, notaries from AXON_TRUSTED_KEY_SERVERS', () => {
    const dir = cwd();
    writeFileSync(join(dir, 'ca.pem'), 'x');
    writeFileSync(join(dir, 'c.pem'), 'x');
    writeFileSync(join(dir, 'k.pem'), 'x');
    const c = loadConfig({
      AXON_SERVER_NAME: '127.0.0.11:41448', AXON_FEDERATION_ENABLED: 'false', AXON_FEDERATION_PORT: '9448', AXON_FEDERATION_CA: 'ca.pem',
      AXON_FEDERATION_TLS_CERT: 'c.pem', AXON_FEDERATION_TLS_KEY: 'k.pem', AXON_FEDERATION_VERIFY_TLS: 'false', AXON_FEDERATION_IP_BLOCKLIST: '',
      AXON_TRUSTED_KEY_SERVERS: 'matrix.org ed25519:auto=Noi6WqcDj0QmPxCNQqgezwTlBKrfqehY1u2FyWP9uYw',
    }, dir);
    expect(c.federation).toMatchObject({ enabled: false, port: 9448, caPaths: [join(dir, 'ca.pem')], tlsCertPath: join(dir, 'c.pem'), verifyTls: false, ipRangeBlocklist: [] });
    expect(c.federation.trustedKeyServers).toEqual([{ serverName: 'matrix.org', verifyKeys: { 'ed25519:auto': 'Noi6WqcDj0QmPxCNQqgezwTlBKrfqehY1u2FyWP9uYw' } }]);
    expect(loadConfig({ AXON_FEDERATION_IP_BLOCKLIST: '10.0.0.0/8, fc00::/7' }, dir).federation.ipRangeBlocklist).toEqual(['10.0.0.0/8', 'fc00::/7']);
  });

  it('one clear line per problem', () => {
    const problems = problemsOf({ AXON_FEDERATION_PORT: '70000', AXON_FEDERATION_IP_BLOCKLIST: '10.0.0.0/33,banana', AXON_FEDERATION_TLS_CERT: '/nope/c.pem', AXON_FEDERATION_CA: '/nope/ca.pem', AXON_TRUSTED_KEY_SERVERS: 'bad_name! ed25519:a=short' });
    expect(problems).toEqual(expect.arrayContaining([
      expect.stringMatching(/^federation\.port: must be an integer from 1 to 65535/),
      expect.stringMatching(/^federation\.ipRangeBlocklist: "10\.0\.0\.0\/33" is not a CIDR range/),
      expect.stringMatching(/^federation\.ipRangeBlocklist: "banana" is not a CIDR range/),
      expect.stringMatching(/^federation\.tlsCertPath \/ tlsKeyPath: set both or neither/),
      expect.stringMatching(/^federation\.tlsCertPath: no file at \/nope\/c\.pem/),
      expect.stringMatching(/^federation\.caPaths: no file at \/nope\/ca\.pem/),
      expect.stringMatching(/^federation\.trustedKeyServers: "bad_name!" is not a valid server name/),
    ]));
    expect(problemsOf({ AXON_TRUSTED_KEY_SERVERS: 'matrix.org ed25519:a=short' })).toEqual([expect.stringMatching(/matrix\.org's key ed25519:a is not an unpadded base64 ed25519 public key/)]);
    expect(parseTrustedKeyServersEnv('matrix.org ed25519:a')).toMatch(/keyId=base64/);
  });

  it('the outbound sender: catch-up bound and backoff from federation.sender (env overrides), checked', () => {
    expect(loadConfig({}, cwd()).federation.sender).toEqual({ catchUpLimit: 1000, backoffStartMs: 2000, backoffMaxMs: 3_600_000 });
    const dir = cwd();
    writeFileSync(join(dir, 'axon.config.json'), JSON.stringify({ federation: { sender: { catchUpLimit: 5000 } } }));
    const c = loadConfig({ AXON_FEDERATION_SENDER_BACKOFF_START_MS: '500', AXON_FEDERATION_SENDER_BACKOFF_MAX_MS: '60000' }, dir);
    expect(c.federation.sender).toEqual({ catchUpLimit: 5000, backoffStartMs: 500, backoffMaxMs: 60_000 });
    expect(problemsOf({ AXON_FEDERATION_SENDER_CATCH_UP_LIMIT: '0', AXON_FEDERATION_SENDER_BACKOFF_START_MS: '10000', AXON_FEDERATION_SENDER_BACKOFF_MAX_MS: '5000' })).toEqual([
      expect.stringMatching(/^federation\.sender\.catchUpLimit: must be an integer from 1/),
      'federation.sender.backoffMaxMs: must be at least backoffStartMs',
    ]);
    expect(problemsOf({ AXON_FEDERATION_SENDER_BACKOFF_START_MS: 'soon' })).toEqual([expect.stringMatching(/must be an integer/)]);
  });
});

describe('discovery (fake look-ups)', () => {
  const answer = (status: number, body: unknown, headers: Record<string, string> = {}): WellKnownHttpAnswer => ({ status, headers, body: typeof body === 'string' ? body : JSON.stringify(body) });

  it('IP literals and explicit ports need no look-up', async () => {
    const d = new Discovery({ fetchWellKnown: () => Promise.reject(new Error('no')), resolveSrv: () => Promise.reject(new Error('no')) });
    const ip = await d.resolve('127.0.0.11:41448');
    expect(ip.targets).toEqual([expect.objectContaining({ host: '127.0.0.11', port: 41448, hostHeader: '127.0.0.11:41448', sni: undefined, route: '1 ip literal' })]);
    const port = await d.resolve('example.org:8449');
    expect(port.targets).toEqual([expect.objectContaining({ host: 'example.org', port: 8449, sni: 'example.org', route: '2 explicit port' })]);
  });

  it('.well-known delegation, then SRV for the delegated name, in the spec\'s order; the answer is cached', async () => {
    const fetched: string[] = [];
    const srvAsked: string[] = [];
    const d = new Discovery({
      fetchWellKnown: async (host) => (fetched.push(host), answer(200, { 'm.server': 'matrix.example.org' })),
      resolveSrv: async (name) => (srvAsked.push(name), name === '_matrix-fed._tcp.matrix.example.org' ? [{ name: 'fed.example.org', port: 443, priority: 0, weight: 0 }] : []),
    });
    const r = await d.resolve('example.org');
    expect(r.delegatedServerName).toBe('matrix.example.org');
    expect(r.targets).toEqual([expect.objectContaining({ host: 'fed.example.org', port: 443, hostHeader: 'matrix.example.org', certificateName: 'matrix.example.org', route: '3.3 delegated srv' })]);
    await d.resolve('example.org');
    expect(fetched).toEqual(['example.org']);
    expect(srvAsked).toEqual(['_matrix-fed._tcp.matrix.example.org']);
  });

  it('no delegation: SRV _matrix-fed then _matrix, then 8448; a failed .well-known is cached (no refetch), concurrent look-ups share a fetch', async () => {
    let fetches = 0;
    const srvAsked: string[] = [];
    let now = 1_000_000;
    const d = new Discovery({
      fetchWellKnown: async () => {
        fetches++;
        await new Promise((r) => setTimeout(r, 5));
        throw new FederationNetworkError('example.org', 'refused');
      },
      resolveSrv: async (name) => (srvAsked.push(name), []),
      now: () => now,
    });
    const [r] = await Promise.all([d.resolve('example.org'), d.resolve('example.org')]);
    expect(r.targets).toEqual([expect.objectContaining({ host: 'example.org', port: 8448, route: '6 default port' })]);
    expect([...new Set(srvAsked)]).toEqual(['_matrix-fed._tcp.example.org', '_matrix._tcp.example.org']);
    expect(fetches).toBe(1);
    now += 30 * 60_000;
    await d.resolve('example.org');
    expect(fetches).toBe(1);
    now += 60 * 60_000;
    await d.resolve('example.org');
    expect(fetches).toBe(2);
  });

  it('an invalid server name fails discovery', async () => {
    const d = new Discovery({ fetchWellKnown: () => Promise.reject(new Error('no')) });
    await expect(d.resolve('bad name')).rejects.toThrow(/Invalid server name/);
  });
});

/** Just what the key store uses of ioredis. */
function memoryRedis(): RedisClient {
  const hashes = new Map<string, Record<string, string>>();
  const strings = new Map<string, { value: string; until: number }>();
  const api = {
    async hgetall(k: string) {
      return { ...(hashes.get(k) ?? {}) };
    },
    async get(k: string) {
      const s = strings.get(k);
      return s && s.until > Date.now() ? s.value : null;
    },
    async set(k: string, v: string, _px: 'PX', ms: number) {
      strings.set(k, { value: v, until: Date.now() + ms });
      return 'OK';
    },
    multi() {
      const ops: (() => void)[] = [];
      const m = {
        hset(k: string, fields: Record<string, string>) {
          ops.push(() => hashes.set(k, { ...(hashes.get(k) ?? {}), ...fields }));
          return m;
        },
        pexpire() {
          return m;
        },
        async exec() {
          for (const op of ops) op();
          return [];
        },
      };
      return m;
    },
  };
  return api as unknown as RedisClient;
}

describe('server key store (in-memory Redis, fake client)', () => {
  const log = pino({ level: 'silent' });
  const peerKey = signingKeyFromSeed('ed25519:p1', randomBytes(32));
  const ourKey = signingKeyFromSeed('ed25519:us', randomBytes(32));
  const own = new OwnKeyDocument('us.example', [ourKey], 3600_000);

  function store(get: (dest: string, path: string) => Promise<unknown>, post?: (dest: string, path: string, body: unknown) => Promise<unknown>, trusted: { serverName: string; verifyKeys: Record<string, string> }[] = []) {
    const client = { get, post } as unknown as FederationClient;
    return new ServerKeyStore({ redis: memoryRedis(), keys: new KeySpace('t:'), client, own, trustedKeyServers: trusted, log });
  }

  it('fetches directly once for concurrent look-ups, caches, and serves verify keys for requests', async () => {
    let calls = 0;
    const s = store(async (dest, path) => {
      calls++;
      expect([dest, path]).toEqual(['peer.example', '/_matrix/key/v2/server']);
      await new Promise((r) => setTimeout(r, 5));
      return buildServerKeyDocument('peer.example', [peerKey], Date.now() + 3600_000, [{ keyId: 'ed25519:old', publicKeyBase64: peerKey.publicKeyBase64, expiredTs: 1000 }]);
    });
    const [k1, k2] = await Promise.all([s.lookupForRequest('peer.example', 'ed25519:p1', Date.now()), s.lookupForRequest('peer.example', 'ed25519:p1', Date.now())]);
    expect(k1?.key).toBe(peerKey.publicKeyBase64);
    expect(k2?.key).toBe(peerKey.publicKeyBase64);
    expect(calls).toBe(1);
    // Old keys are kept (for events), marked as such.
    expect((await s.verifyKeys('peer.example')).get('ed25519:old')).toMatchObject({ expiredTs: 1000 });
    // An unknown key id right after a good fetch does not make us fetch again.
    expect(await s.lookupForRequest('peer.example', 'ed25519:random', Date.now())).toBeUndefined();
    expect(calls).toBe(1);
    // Our own keys need no fetch.
    expect((await s.lookupForRequest('us.example', 'ed25519:us', Date.now()))?.key).toBe(ourKey.publicKeyBase64);
  });

  it('refuses a forged document and caches the failure', async () => {
    let calls = 0;
    const forger = signingKeyFromSeed('ed25519:p1', randomBytes(32));
    const s = store(async () => {
      calls++;
      const doc = buildServerKeyDocument('peer.example', [peerKey], Date.now() + 3600_000);
      return { ...doc, signatures: buildServerKeyDocument('peer.example', [forger], Date.now() + 3600_000).signatures };
    });
    expect(await s.lookupForRequest('peer.example', 'ed25519:p1', Date.now())).toBeUndefined();
    expect(await s.lookupForRequest('peer.example', 'ed25519:p1', Date.now())).toBeUndefined();
    expect(calls).toBe(1);
    expect(FAILURE_CACHE_MS).toBeGreaterThan(0);
  });

  it('asks a trusted notary first and checks its countersignature', async () => {
    const notaryKey = signingKeyFromSeed('ed25519:n', randomBytes(32));
    const direct: string[] = [];
    const s = store(
      async (dest) => (direct.push(dest), Promise.reject(new Error('direct fetch not expected'))),
      async (dest, path, body) => {
        expect([dest, path, body]).toEqual(['notary.example', '/_matrix/key/v2/query', { server_keys: { 'peer.example': {} } }]);
        return buildNotaryResponse([buildServerKeyDocument('peer.example', [peerKey], Date.now() + 3600_000)], 'notary.example', [notaryKey]);
      },
      [{ serverName: 'notary.example', verifyKeys: { 'ed25519:n': notaryKey.publicKeyBase64 } }],
    );
    expect((await s.lookupForRequest('peer.example', 'ed25519:p1', Date.now()))?.key).toBe(peerKey.publicKeyBase64);
    expect(direct).toEqual([]);
    const doc = await s.documentForNotary('peer.example', undefined);
    expect(doc?.server_name).toBe('peer.example');
  });
});
