/** Moved to scripts/lib/signing-peer.ts (the federation benchmark uses it too; scripts may not import test/). */
export * from '../../scripts/lib/signing-peer';
