/**
 * The quick-start server as a user meets it: a real process (`tsx src/main.ts`, what `npm start`
 * runs) with its own managed redis-server, spoken to over real HTTP.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import nacl from 'tweetnacl';
import { freePort } from '../setup/free-port';
import { decodeBase64 } from '../../src/protocol/base64';
import { canonicalJsonBytes, type JsonObject } from '../../src/protocol/json';
import { redisPing } from '../../src/runtime/managed-redis';

const root = join(import.meta.dirname, '../..');

interface Proc {
  child: ChildProcess;
  output: () => string;
}

async function startAxon(env: Record<string, string>, port: number): Promise<Proc> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`axon exited early:\n${out}`);
    try {
      const r = await fetch(`http://127.0.0.1:${port}/_matrix/client/versions`);
      if (r.ok) return { child, output: () => out };
    } catch {
      /* not up yet */
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill('SIGKILL');
  throw new Error(`axon did not come up:\n${out}`);
}

async function stopAxon(p: Proc): Promise<void> {
  if (p.child.exitCode !== null) return;
  const exited = new Promise((r) => p.child.once('exit', r));
  p.child.kill('SIGTERM');
  await exited;
}

describe('npm start: a homeserver with a managed Redis', () => {
  let dataDir: string;
  let port: number;
  let redisPort: number;
  let fedPort: number;
  let env: Record<string, string>;
  let axon: Proc;

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'axon-quickstart-'));
    port = await freePort();
    redisPort = await freePort();
    fedPort = await freePort();
    env = { AXON_DATA_DIR: dataDir, AXON_PORT: String(port), AXON_FEDERATION_PORT: String(fedPort), AXON_REDIS_MANAGED_PORT: String(redisPort), AXON_SERVER_NAME: 'quickstart.test', AXON_LOG_LEVEL: 'warn' };
    axon = await startAxon(env, port);
  });

  afterAll(async () => {
    if (axon) await stopAxon(axon);
    rmSync(dataDir, { recursive: true, force: true });
  });

  const base = () => `http://127.0.0.1:${port}`;

  it('serves federation over TLS with a self-signed certificate it made under the data dir', async () => {
    expect(existsSync(join(dataDir, 'federation-tls', 'cert.pem'))).toBe(true);
    const answer = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      // Self-signed: nothing to check it against; this test only wants the listener.
      const req = httpsRequest(`https://127.0.0.1:${fedPort}/_matrix/federation/v1/version`, { rejectUnauthorized: false, agent: false }, (res) => {
        let text = '';
        res.on('data', (c) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      });
      req.on('error', reject);
      req.end();
    });
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.text).server.name).toBe('Axon');
  });

  it('answers /versions', async () => {
    const r = await fetch(`${base()}/_matrix/client/versions`);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('application/json');
    expect(r.headers.get('access-control-allow-origin')).toBe('*');
    const body = (await r.json()) as { versions: string[] };
    expect(body.versions).toContain('v1.1');
  });

  it('publishes a key document whose signature verifies with the published key (checked with tweetnacl)', async () => {
    const r = await fetch(`${base()}/_matrix/key/v2/server`);
    expect(r.status).toBe(200);
    const doc = (await r.json()) as JsonObject & { verify_keys: Record<string, { key: string }>; signatures: Record<string, Record<string, string>> };
    expect(doc.server_name).toBe('quickstart.test');
    expect(doc.valid_until_ts).toBeGreaterThan(Date.now());
    const keyIds = Object.keys(doc.verify_keys);
    expect(keyIds).toHaveLength(1);
    const keyId = keyIds[0]!;
    const { signatures, ...signed } = doc;
    const sig = decodeBase64(signatures['quickstart.test']![keyId]!);
    const pub = decodeBase64(doc.verify_keys[keyId]!.key);
    expect(nacl.sign.detached.verify(canonicalJsonBytes(signed), sig, pub)).toBe(true);
    // …and not for a modified document.
    expect(nacl.sign.detached.verify(canonicalJsonBytes({ ...signed, valid_until_ts: 1 }), sig, pub)).toBe(false);
  });

  it('answers unknown paths with 404 M_UNRECOGNIZED JSON and wrong methods with 405', async () => {
    for (const path of ['/', '/_matrix/client/v3/no_such_endpoint', '/nope?x=1']) {
      const r = await fetch(`${base()}${path}`);
      expect(r.status).toBe(404);
      expect(await r.json()).toEqual({ errcode: 'M_UNRECOGNIZED', error: 'Unrecognized request' });
    }
    // A federation path on the client port says where it is served (known paths: 405 for a wrong method).
    const fed = await fetch(`${base()}/_matrix/federation/v1/version`);
    expect(fed.status).toBe(404);
    expect(await fed.json()).toEqual({ errcode: 'M_UNRECOGNIZED', error: 'This federation path is served on the federation port' });
    const r = await fetch(`${base()}/_matrix/client/versions`, { method: 'POST', body: '{}' });
    expect(r.status).toBe(405);
    expect(((await r.json()) as { errcode: string }).errcode).toBe('M_UNRECOGNIZED');
  });

  it('answers CORS preflights', async () => {
    const r = await fetch(`${base()}/_matrix/client/v3/login`, { method: 'OPTIONS' });
    expect(r.status).toBe(200);
    expect(r.headers.get('access-control-allow-methods')).toContain('PUT');
    expect(r.headers.get('access-control-allow-headers')).toContain('Authorization');
  });

  it('runs its managed Redis with AOF under the data dir', async () => {
    expect(await redisPing(redisPort)).toBe(true);
    expect(existsSync(join(dataDir, 'redis', 'appendonlydir'))).toBe(true);
  });

  it('keeps its signing key across restarts and stops its Redis on shutdown', async () => {
    const before = ((await (await fetch(`${base()}/_matrix/key/v2/server`)).json()) as { verify_keys: object }).verify_keys;
    const keyFile = readFileSync(join(dataDir, 'quickstart.test.signing.key'), 'utf8');
    expect(keyFile).toMatch(/^ed25519 a_[A-Za-z]{4} [A-Za-z0-9+/]{43}\n$/);
    await stopAxon(axon);
    expect(await redisPing(redisPort)).toBe(false);
    axon = await startAxon(env, port);
    const after = ((await (await fetch(`${base()}/_matrix/key/v2/server`)).json()) as { verify_keys: object }).verify_keys;
    expect(after).toEqual(before);
  });

  it('refuses to start with an invalid configuration, one line per problem', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      cwd: root,
      env: { ...process.env, ...env, AXON_PORT: 'eighty', AXON_SERVER_NAME: 'bad name', AXON_LOG_LEVEL: 'loud' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    child.stderr!.on('data', (d) => (err += d));
    const code = await new Promise((r) => child.once('exit', r));
    expect(code).toBe(2);
    expect(err).toContain('AXON_PORT=eighty: must be an integer');
    expect(err).toContain('serverName: "bad name" is not a valid server name');
    expect(err).toContain('logLevel: must be one of');
  });
});
