/**
 * libsodium's signer, loaded outside src/protocol (src/crypto/ed25519-native.ts) and installed into
 * it: the known-answer check, and that what the installed signer signs verifies with node's ed25519.
 */
import { createPublicKey, randomBytes, verify as nodeVerify } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { installNativeEd25519Signer, loadLibsodiumSigner } from '../../src/crypto/ed25519-native';
import { ed25519Signer, ed25519SignerGivesKnownAnswer, nodeSignBytes, setEd25519Signer, signBytes, signingKeyFromSeed, tweetnaclEd25519, type Ed25519SignFunction } from '../../src/protocol/crypto';

/** node's ed25519 verification with a public key of its own making (SPKI DER), not through src/protocol. */
function nodeVerifies(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  const spki = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), publicKey]);
  return nodeVerify(null, message, createPublicKey({ key: spki, format: 'der', type: 'spki' }), signature);
}

afterEach(() => {
  // What every process (and the test setup) installs.
  installNativeEd25519Signer();
});

describe('the libsodium signer', () => {
  it('loads here (sodium-native is installed, with a prebuilt binary for this platform) and gives the known answer', () => {
    const signer = loadLibsodiumSigner();
    expect(signer).not.toBeNull();
    expect(signer!.name).toBe('libsodium');
    expect(ed25519SignerGivesKnownAnswer(signer!.sign)).toBe(true);
    expect(installNativeEd25519Signer()).toBe('libsodium');
    expect(ed25519Signer()).toBe('libsodium');
  });

  it('signs every local event once installed: its signatures verify with node\'s ed25519 and equal node\'s bytes', () => {
    const libsodium = loadLibsodiumSigner()!;
    let calls = 0;
    const counting: Ed25519SignFunction = (secretKey, message) => {
      calls++;
      return libsodium.sign(secretKey, message);
    };
    expect(setEd25519Signer({ name: 'libsodium', sign: counting })).toBe(true);
    calls = 0; // the known-answer check signed once
    for (let n = 0; n < 50; n++) {
      const key = signingKeyFromSeed(`ed25519:k${n}`, randomBytes(32));
      const message = randomBytes(n * 37);
      const signature = signBytes(key, message);
      expect(nodeVerifies(key.publicKey, message, signature)).toBe(true);
      expect(Buffer.from(signature).equals(Buffer.from(nodeSignBytes(key, message)))).toBe(true);
      const tampered = Buffer.from(message);
      if (tampered.length > 0) {
        tampered[0]! ^= 1;
        expect(nodeVerifies(key.publicKey, tampered, signature)).toBe(false);
      }
    }
    expect(calls).toBe(50);
  });

  it('a signer that does not give the known answer is refused, and node signs', () => {
    const wrongKey: Ed25519SignFunction = (_secretKey, message) => tweetnaclEd25519.sign(tweetnaclEd25519.secretKeyFromSeed(new Uint8Array(32).fill(9)), message);
    const throwing: Ed25519SignFunction = () => {
      throw new Error('no');
    };
    const short: Ed25519SignFunction = () => new Uint8Array(63);
    for (const sign of [wrongKey, throwing, short, () => null]) {
      expect(setEd25519Signer(null)).toBe(true);
      expect(setEd25519Signer({ name: 'libsodium', sign })).toBe(false);
      expect(ed25519Signer()).toBe('node');
    }
    const key = signingKeyFromSeed('ed25519:x', randomBytes(32));
    const message = new TextEncoder().encode('{"a":1}');
    expect(nodeVerifies(key.publicKey, message, signBytes(key, message))).toBe(true);
  });

  it('a signer that gives up on a message leaves it to node\'s signing', () => {
    const libsodium = loadLibsodiumSigner()!;
    let givingUp = false;
    expect(setEd25519Signer({ name: 'libsodium', sign: (secretKey, message) => (givingUp ? null : libsodium.sign(secretKey, message)) })).toBe(true);
    givingUp = true;
    const key = signingKeyFromSeed('ed25519:y', randomBytes(32));
    const message = randomBytes(600);
    const signature = signBytes(key, message);
    expect(nodeVerifies(key.publicKey, message, signature)).toBe(true);
    expect(Buffer.from(signature).equals(Buffer.from(nodeSignBytes(key, message)))).toBe(true);
  });
});
