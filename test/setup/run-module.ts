/**
 * Run a module of a test's own in a process of its own (node with the tsx loader, so it can import
 * the project's TypeScript by absolute path): for what a test cannot do in vitest's process — exit
 * it, signal it, leave its children behind. The module is written to a temporary directory,
 * removed after the run.
 */
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The absolute path of a file of the project (for the module's imports), from its path in the repository. */
export function projectFile(path: string): string {
  return join(import.meta.dirname, '..', '..', path);
}

/** Run `lines` (an ES module) to its end; its stdout and stderr as text. */
export function runModule(lines: string[], timeoutMs = 30_000): SpawnSyncReturns<string> {
  const dir = mkdtempSync(join(tmpdir(), 'run-module-'));
  try {
    const file = join(dir, 'module.mjs');
    writeFileSync(file, lines.join('\n'));
    return spawnSync(process.execPath, ['--import', 'tsx', file], { encoding: 'utf8', timeout: timeoutMs });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
