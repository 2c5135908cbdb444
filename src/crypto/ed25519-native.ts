/**
 * libsodium's ed25519 signing (`sodium-native`, an optional dependency), loaded for
 * src/protocol/crypto.ts: opening a native binary is I/O, which src/protocol does not do. Every
 * process entry installs it once at start (`installNativeEd25519Signer`: src/process-lifecycle.ts's
 * `runMain` for npm start, workers and fronts; the scripts that sign in their own process; the
 * tests' setup file), so every process signs as before: libsodium where it loads and gives the
 * spec's signature of `{}`, node's ed25519 otherwise. Why libsodium: README, "Performance".
 */
import { createRequire } from 'node:module';
import { ed25519Signer, setEd25519Signer, type Ed25519Signer } from '../protocol/crypto';

/** The part of sodium-native's binding used here: a detached ed25519 signature over a 64-byte secret key (seed, then public key); 0 when done. */
interface SodiumBinding {
  crypto_sign_detached(signature: Uint8Array, message: Uint8Array, secretKey: Uint8Array): number;
}

/**
 * libsodium's signer, or null where the optional package or its prebuilt binary for this platform
 * is missing. The package's binary is opened directly: its JavaScript wrapper and loader
 * (require-addon and its modules) would add ~1.9 MB of PSS to every process for one function whose
 * arguments are right by construction (64-byte signature buffer, 64-byte secret key from
 * `signingKeyFromSeed`): 2.4 against 0.5 MB, measured with smaps_rollup. Not checked here:
 * `setEd25519Signer` refuses it unless it gives the known answer.
 */
export function loadLibsodiumSigner(): Ed25519Signer | null {
  try {
    const pkg = createRequire(import.meta.url).resolve('sodium-native/package.json');
    const binary = `${pkg.slice(0, -'package.json'.length)}prebuilds/${process.platform}-${process.arch}/sodium-native.node`;
    const mod = { exports: {} as Partial<SodiumBinding> };
    process.dlopen(mod, binary);
    const binding = mod.exports;
    if (typeof binding.crypto_sign_detached !== 'function') return null;
    const sodium = binding as SodiumBinding;
    return {
      name: 'libsodium',
      sign(secretKey, message) {
        const signature = new Uint8Array(64);
        return sodium.crypto_sign_detached(signature, message, secretKey) === 0 ? signature : null;
      },
    };
  } catch {
    return null;
  }
}

/** libsodium's signer once loaded (null: it does not load here), undefined before the first try. */
let loaded: Ed25519Signer | null | undefined;

/**
 * Install libsodium as src/protocol's ed25519 signer if it loads and gives the known answer (else
 * node's stays). The binary is opened once per process. Returns the signer in use.
 */
export function installNativeEd25519Signer(): 'libsodium' | 'node' {
  if (loaded === undefined) loaded = loadLibsodiumSigner();
  if (loaded) setEd25519Signer(loaded);
  return ed25519Signer();
}
