/**
 * The two ed25519 signers a process can sign with: libsodium (installed by every process entry,
 * and by the tests' setup file, where it loads: test/setup/ed25519-signer.ts) and node's. Signing
 * tests run once with each: they must give the same bytes.
 */
import { afterAll, beforeAll, expect } from 'vitest';
import { installNativeEd25519Signer, loadLibsodiumSigner } from '../../src/crypto/ed25519-native';
import { ed25519Signer, setEd25519Signer } from '../../src/protocol/crypto';

export const SIGNERS = ['libsodium', 'node'] as const;

/** In a describe: its tests sign with `signer`; libsodium is put back after them. */
export function signWith(signer: (typeof SIGNERS)[number]): void {
  beforeAll(() => {
    // sodium-native is an optional dependency with prebuilt binaries for this platform: installed here.
    expect(setEd25519Signer(signer === 'libsodium' ? loadLibsodiumSigner() : null)).toBe(true);
    expect(ed25519Signer()).toBe(signer);
  });
  afterAll(() => {
    expect(installNativeEd25519Signer()).toBe('libsodium');
  });
}
