/**
 * The server's persistent signing key, kept in a file in Synapse's format so an operator can
 * bring one over (or take ours away). Created with mode 0600 on first start.
 *
 * Several processes of one server (workers and fronts started together by `cluster up`) may
 * reach for the file at the same moment, so the file must never be seen half written: it is
 * written whole under a private name and then hard-linked into place, which either publishes the
 * complete file or fails with EEXIST when another process won (then theirs is read).
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, linkSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { formatSigningKeyFile, parseSigningKeyFile, signingKeyFromSeed, type SigningKey } from '../protocol/crypto';

/** How long a read waits for a file that another writer (an older Axon, an operator's tool) is still writing. */
const PARTIAL_FILE_WAIT_MS = 2_000;
const PARTIAL_FILE_POLL_MS = 25;

/** A key version of the shape Synapse generates (`a_` + 4 random characters). */
function newKeyVersion(): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
  const bytes = randomBytes(4);
  return 'a_' + Array.from(bytes, (b) => alphabet[b % alphabet.length]).join('');
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * Reads the key file. A file that is empty or stops mid-line is being written by someone who does
 * not publish atomically; it is re-read until complete (or the wait runs out, then parsed as is).
 */
function readSigningKeyFile(path: string): SigningKey[] {
  const deadline = Date.now() + PARTIAL_FILE_WAIT_MS;
  let text = readFileSync(path, 'utf8');
  while ((text.trim() === '' || !text.endsWith('\n')) && Date.now() < deadline) {
    sleepSync(PARTIAL_FILE_POLL_MS);
    text = readFileSync(path, 'utf8');
  }
  const keys = parseSigningKeyFile(text);
  if (keys.length === 0) throw new Error(`Signing key file ${path} holds no key`);
  return keys;
}

export function loadOrCreateSigningKeys(path: string): SigningKey[] {
  if (existsSync(path)) return readSigningKeyFile(path);
  mkdirSync(dirname(path), { recursive: true });
  const key = signingKeyFromSeed(`ed25519:${newKeyVersion()}`, randomBytes(32));
  const privateName = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  writeFileSync(privateName, formatSigningKeyFile(key), { mode: 0o600, flag: 'wx' });
  try {
    chmodSync(privateName, 0o600);
    linkSync(privateName, path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return readSigningKeyFile(path);
    throw e;
  } finally {
    unlinkSync(privateName);
  }
  return [key];
}
