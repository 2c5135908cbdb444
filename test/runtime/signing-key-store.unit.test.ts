import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { beforeEach, describe, expect, it } from 'vitest';
import { formatSigningKeyFile, signingKeyFromSeed } from '../../src/protocol/crypto';
import { loadOrCreateSigningKeys } from '../../src/runtime/signing-key-store';

const run = promisify(execFile);
const tsx = resolve('node_modules/.bin/tsx');
const store = resolve('src/runtime/signing-key-store.ts');

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'axon-signing-key-'));
});

describe('loadOrCreateSigningKeys', () => {
  it('creates a 0600 key file in Synapse format and loads the same key afterwards', () => {
    const path = join(dir, 'conf', 'server.signing.key');
    const [created] = loadOrCreateSigningKeys(path);
    expect(created!.keyId).toMatch(/^ed25519:a_[A-Za-z]{4}$/);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(readFileSync(path, 'utf8')).toMatch(/^ed25519 a_[A-Za-z]{4} [A-Za-z0-9+/]{43}\n$/);
    const [loaded] = loadOrCreateSigningKeys(path);
    expect(loaded!.keyId).toBe(created!.keyId);
    expect(Buffer.from(loaded!.seed).equals(Buffer.from(created!.seed))).toBe(true);
    // The private name the file was written under is gone.
    expect(readdirSync(join(dir, 'conf'))).toEqual(['server.signing.key']);
  });

  it('gives processes that start together one key, none seeing a half-written file', async () => {
    const path = join(dir, 'server.signing.key');
    const script = `import { loadOrCreateSigningKeys } from ${JSON.stringify(store)};
      const [k] = loadOrCreateSigningKeys(${JSON.stringify(path)});
      process.stdout.write(k.keyId + ' ' + Buffer.from(k.seed).toString('hex'));`;
    const scriptPath = join(dir, 'load.mts');
    writeFileSync(scriptPath, script);
    const answers = await Promise.all(Array.from({ length: 6 }, () => run(tsx, [scriptPath], { timeout: 60_000 })));
    const ids = new Set(answers.map((a) => a.stdout));
    expect(ids.size).toBe(1);
    expect([...ids][0]).toMatch(/^ed25519:a_[A-Za-z]{4} [0-9a-f]{64}$/);
    expect(readdirSync(dir).sort()).toEqual(['load.mts', 'server.signing.key']);
  }, 90_000);

  it('waits for a file another writer has created but not yet filled', async () => {
    // What a writer that does not publish atomically (an older Axon, an operator's script) leaves
    // for a moment: the file exists and is empty. The old code failed here with "holds no key".
    const path = join(dir, 'server.signing.key');
    const key = signingKeyFromSeed('ed25519:a_slow', Buffer.alloc(32, 7));
    writeFileSync(path, '');
    const writer = spawn('sh', ['-c', `sleep 0.3; printf '%s' "$1" > "$2"`, 'sh', formatSigningKeyFile(key), path]);
    const exited = new Promise((ok) => writer.on('exit', ok));
    // The load blocks this thread while it waits, so the writer must be another process.
    await new Promise((ok) => writer.on('spawn', ok));
    const [loaded] = loadOrCreateSigningKeys(path);
    await exited;
    expect(loaded!.keyId).toBe('ed25519:a_slow');
    expect(Buffer.from(loaded!.seed).equals(Buffer.alloc(32, 7))).toBe(true);
  });

  it('still refuses a file that holds no key once nobody is writing it', () => {
    const path = join(dir, 'server.signing.key');
    writeFileSync(path, '# only a comment\n');
    expect(() => loadOrCreateSigningKeys(path)).toThrow(/holds no key/);
  });
});
