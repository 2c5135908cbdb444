/** Moved to scripts/lib/test-ca.ts (the federation benchmark uses it too; scripts may not import test/). */
export * from '../../scripts/lib/test-ca';
