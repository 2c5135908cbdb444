/**
 * Tests sign as every Axon process does (src/process-lifecycle.ts's `runMain`): libsodium as the
 * ed25519 signer where it loads, node's otherwise (src/crypto/ed25519-native.ts).
 */
import { installNativeEd25519Signer } from '../../src/crypto/ed25519-native';

installNativeEd25519Signer();
