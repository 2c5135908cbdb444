/**
 * `npm run bench:protocol`: throughput of the protocol library's hot paths on this machine, with
 * node's ed25519, libsodium (signBytes) and tweetnacl measured in the same run. Prints a table and writes
 * bench-results/protocol-<date>.json. A script, not a test: nothing here asserts a speed.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { canonicalJson, canonicalJsonBytes, parseStrictJson, type JsonObject } from '../src/protocol/json';
import { installNativeEd25519Signer } from '../src/crypto/ed25519-native';
import { ed25519Signer, nodeSignBytes, signBytes, signingKeyFromSeed, tweetnaclEd25519, verifyBytes } from '../src/protocol/crypto';
import { computeContentHash, computeEventId, hashAndIdentify, hashAndSignEvent, hashSignAndIdentify, ownSignatureBytes, signEventOnly, verifyEventSignature } from '../src/protocol/event-hashing';
import { encodeBase64 } from '../src/protocol/base64';
import { checkPduSize } from '../src/protocol/pdu-limits';
import { requireRoomVersion } from '../src/protocol/room-versions';

// libsodium as the ed25519 signer where it loads, as in every process entry (src/process-lifecycle.ts).
installNativeEd25519Signer();

const SECONDS = Number(process.env.BENCH_SECONDS ?? '1');

function bench(name: string, fn: () => void): { name: string; opsPerSec: number; usPerOp: number } {
  for (let i = 0; i < 200; i++) fn(); // warm up the JIT
  let ops = 0;
  const start = performance.now();
  const end = start + SECONDS * 1000;
  let now = start;
  while (now < end) {
    for (let i = 0; i < 50; i++) fn();
    ops += 50;
    now = performance.now();
  }
  const elapsed = (now - start) / 1000;
  return { name, opsPerSec: Math.round(ops / elapsed), usPerOp: Math.round((elapsed / ops) * 1e6 * 100) / 100 };
}

const seed = new Uint8Array(32).map((_, i) => i * 7 + 1);
const key = signingKeyFromSeed('ed25519:bench', seed);
const signatureBytes = ownSignatureBytes('example.org', key.keyId);
const naclSecret = tweetnaclEd25519.secretKeyFromSeed(seed);
const version = requireRoomVersion('10');

// A realistic message event as it travels between servers (~700 bytes canonical).
const event: JsonObject = {
  auth_events: ['$gbHO7IPUHybc7ULFnT7P0r3iWlZFHGmr6zBfEYCUyKw', '$hy1eZFYcgNxMFNNBgCD5fyOzyWRcBkxfNcrUI5ZpZlE', '$Nt_z68EwFfPqBeHjzEHGsp461Z4EfNEzR-KH5bOYdOY'],
  content: { body: 'The quick brown fox jumps over the lazy dog. Ünïcödé and emoji 🦊 included.', msgtype: 'm.text', 'm.mentions': { user_ids: ['@bob:example.org'] } },
  depth: 4242,
  origin_server_ts: 1731769874137,
  prev_events: ['$4FbpZrgPQTwoLD9H5y7jcikucCypUOn78mXhQX7WliY'],
  room_id: '!DHmIIVvxFASSFgDGzr:example.org',
  sender: '@alice:example.org',
  type: 'm.room.message',
  unsigned: { age_ts: 1731769874137 },
};
const signedEvent = hashAndSignEvent(event, version, 'example.org', key);
const canonical = canonicalJson(signedEvent);
const bytes = canonicalJsonBytes(signedEvent);
const nodeSig = signBytes(key, bytes);

const results = [
  bench('JSON.parse (lenient, for reference)', () => JSON.parse(canonical)),
  bench('parseStrictJson', () => parseStrictJson(canonical)),
  bench('canonicalJson encode', () => canonicalJson(signedEvent)),
  bench('JSON.stringify (non-canonical, for reference)', () => JSON.stringify(signedEvent)),
  bench(`ed25519 sign (signBytes: ${ed25519Signer()})`, () => signBytes(key, bytes)),
  bench('ed25519 sign (node)', () => nodeSignBytes(key, bytes)),
  bench('ed25519 sign (tweetnacl)', () => tweetnaclEd25519.sign(naclSecret, bytes)),
  bench('ed25519 verify (node)', () => verifyBytes(key.publicKey, bytes, nodeSig)),
  bench('ed25519 verify (tweetnacl)', () => tweetnaclEd25519.verify(key.publicKey, bytes, nodeSig)),
  bench('event hash+sign (node, full pipeline)', () => hashAndSignEvent(event, version, 'example.org', key)),
  bench('event signature verify (node, redact+canonical+verify)', () => verifyEventSignature(signedEvent, version, 'example.org', key.keyId, key.publicKey)),
  bench('event id (redact+canonical+sha256)', () => computeEventId(signedEvent, version)),
  // What the room actor does with a local event it builds: hash and sign it, check its size, take
  // its id, store its canonical JSON. Step by step (each step serialises the whole event: what
  // actors/room.ts did until 2026-12-04) and in one pass (hashSignAndIdentify).
  bench('local event step by step (hash, sign, size, id, stored JSON)', () => {
    const { unsigned: _u, ...bare } = event;
    const signed = signEventOnly({ ...bare, hashes: { sha256: encodeBase64(computeContentHash(bare)) } }, version, 'example.org', key);
    checkPduSize(signed);
    computeEventId(signed, version);
    canonicalJson(signed);
  }),
  bench('local event in one pass (hashSignAndIdentify, size)', () => {
    const { unsigned: _u, ...bare } = event;
    const built = hashSignAndIdentify(bare, version, 'example.org', key);
    checkPduSize(built.event, built.json);
  }),
  // Since 2026-12-06 the room actor stores its events unsigned (src/rooms/own-signatures.ts signs
  // them as they leave the server): what it does per event now.
  bench('local event stored unsigned (hashAndIdentify, size)', () => {
    const { unsigned: _u, ...bare } = event;
    const built = hashAndIdentify(bare, version);
    checkPduSize(built.event, built.json, signatureBytes);
  }),
];

const machine = `${cpus()[0]?.model ?? 'unknown CPU'} × ${cpus().length}, node ${process.version}`;
console.log(`Axon protocol benchmark — ${new Date().toISOString()} — ${machine}`);
console.log(`event: ${bytes.length} bytes canonical; ${SECONDS}s per row\n`);
const width = Math.max(...results.map((r) => r.name.length));
console.log(`${'operation'.padEnd(width)}  ${'ops/s'.padStart(10)}  ${'µs/op'.padStart(8)}`);
for (const r of results) console.log(`${r.name.padEnd(width)}  ${String(r.opsPerSec).padStart(10)}  ${r.usPerOp.toFixed(2).padStart(8)}`);
const ratio = (a: string, b: string) => results.find((r) => r.name === a)!.opsPerSec / results.find((r) => r.name === b)!.opsPerSec;
console.log(`\nnode/tweetnacl: sign ×${ratio('ed25519 sign (node)', 'ed25519 sign (tweetnacl)').toFixed(1)}, verify ×${ratio('ed25519 verify (node)', 'ed25519 verify (tweetnacl)').toFixed(1)}`);

mkdirSync('bench-results', { recursive: true });
const file = `bench-results/protocol-${new Date().toISOString().replace(/[:.]/g, '-')}.json`;
writeFileSync(file, JSON.stringify({ date: new Date().toISOString(), machine, eventBytes: bytes.length, results }, null, 2));
console.log(`written ${file}`);
