/** DESIGN rule 5: src/protocol/ is pure. Its imports are checked here, not left to review. */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const dir = join(import.meta.dirname, '../../src/protocol');
// node:crypto is computation (hashes, ed25519), not I/O. libsodium, a native binary to open, is
// loaded outside (src/crypto/ed25519-native.ts) and handed in as a signer.
const ALLOWED = new Set(['node:crypto', 'tweetnacl']);

describe('src/protocol purity', () => {
  it('imports only its own modules, node:crypto and tweetnacl, and loads no native code', () => {
    const offenders: string[] = [];
    for (const file of readdirSync(dir).filter((f) => f.endsWith('.ts'))) {
      const text = readFileSync(join(dir, file), 'utf8');
      for (const m of text.matchAll(/(?:import|export)[^'"]*from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)|require\(\s*['"]([^'"]+)['"]\s*\)/g)) {
        const spec = m[1] ?? m[2] ?? m[3]!;
        if (spec.startsWith('./')) continue;
        if (!ALLOWED.has(spec)) offenders.push(`${file}: ${spec}`);
      }
      if (/\bprocess\.[a-zA-Z]|\bconsole\./.test(text)) offenders.push(`${file}: uses process or console`);
      if (/\bdlopen\b|\bcreateRequire\b|\brequire\(/.test(text)) offenders.push(`${file}: loads modules or native code itself`);
    }
    expect(offenders).toEqual([]);
  });
});
