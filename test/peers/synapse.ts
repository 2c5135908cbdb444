/** Moved to scripts/lib/synapse-peer.ts (the federation benchmark uses it too; scripts may not import test/). */
export * from '../../scripts/lib/synapse-peer';
