/**
 * The server's persistent signing key, kept in a file in Synapse's format so an operator can
 * bring one over (or take ours away). Created with mode 0600 on first start.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { formatSigningKeyFile, parseSigningKeyFile, signingKeyFromSeed, type SigningKey } from '../protocol/crypto';

/** A key version of the shape Synapse generates (`a_` + 4 random characters). */
function newKeyVersion(): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
  const bytes = randomBytes(4);
  return 'a_' + Array.from(bytes, (b) => alphabet[b % alphabet.length]).join('');
}

export function loadOrCreateSigningKeys(path: string): SigningKey[] {
  if (existsSync(path)) {
    const keys = parseSigningKeyFile(readFileSync(path, 'utf8'));
    if (keys.length === 0) throw new Error(`Signing key file ${path} holds no key`);
    return keys;
  }
  mkdirSync(dirname(path), { recursive: true });
  const key = signingKeyFromSeed(`ed25519:${newKeyVersion()}`, randomBytes(32));
  // 'wx' fails if another process created the file meanwhile; then read theirs.
  try {
    writeFileSync(path, formatSigningKeyFile(key), { mode: 0o600, flag: 'wx' });
    chmodSync(path, 0o600);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return loadOrCreateSigningKeys(path);
    throw e;
  }
  return [key];
}
