/** DESIGN rule 5: src/protocol/ is pure. Its imports are checked here, not left to review. */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const dir = join(import.meta.dirname, '../../src/protocol');
// node:crypto is computation (hashes, ed25519), not I/O; so is libsodium (sodium-native, loaded
// through node:module's createRequire because it is optional: src/protocol/crypto.ts).
const ALLOWED = new Set(['node:crypto', 'tweetnacl', 'node:module', 'sodium-native']);

describe('src/protocol purity', () => {
  it('imports only its own modules, node:crypto, tweetnacl and sodium-native', () => {
    const offenders: string[] = [];
    for (const file of readdirSync(dir).filter((f) => f.endsWith('.ts'))) {
      const text = readFileSync(join(dir, file), 'utf8');
      for (const m of text.matchAll(/(?:import|export)[^'"]*from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)|require\(\s*['"]([^'"]+)['"]\s*\)/g)) {
        const spec = m[1] ?? m[2] ?? m[3]!;
        if (spec.startsWith('./')) continue;
        if (!ALLOWED.has(spec)) offenders.push(`${file}: ${spec}`);
      }
      if (/\bprocess\.(env|argv|exit)|\bconsole\./.test(text)) offenders.push(`${file}: uses process or console`);
    }
    expect(offenders).toEqual([]);
  });
});
