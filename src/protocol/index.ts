/** The pure Matrix protocol library: no I/O, no Redis, no logger (DESIGN rule 5). */
export * from './json';
export * from './base64';
export * from './crypto';
export * from './signing';
export * from './room-versions';
export * from './redaction';
export * from './event-hashing';
export * from './pdu-limits';
export * from './server-keys';
export * from './pdu';
export * from './auth-rules';
export * from './power-levels';
export * from './state-resolution';
export * from './identifiers';
export * from './layered-map';
export * from './glob';
export * from './server-acl';
