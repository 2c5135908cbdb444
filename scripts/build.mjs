/**
 * `npm run build`: the production processes as plain JavaScript in dist/ (esbuild: the entries bundled,
 * their shared code in chunks, npm packages left as imports, linked source maps). Plain JavaScript:
 * running TypeScript through tsx's loader costs every process ~35 MB of its own (README, "Memory").
 * Plain .mjs so that building needs nothing but esbuild.
 *
 *   dist/main.js           npm start (src/main.ts)
 *   dist/front-main.js     a front (src/front-main.ts)
 *   dist/worker-main.js    a worker (src/worker-main.ts)
 *   dist/cluster.js        the operator commands (scripts/cluster.ts)
 *   dist/cpu-profile-preload.js  the benchmarks' signal-driven CPU profiler (scripts/lib/)
 *   dist/*-<hash>.js       code the entries share, and what they import lazily (`await import()`)
 *   dist/scripts/*.lua     src/store/scripts/, found by src/store/redis.ts beside its module
 *   dist/assets/*          src/ops/dashboard/assets/, found by src/ops/dashboard/index.ts
 *   (src/version.ts reads ../package.json: from dist/ that is the checkout's package.json)
 *   dist/.built            written last: scripts/build skips the build while nothing is newer
 *
 * Every file is written to a temporary name and renamed, so a process starting during a rebuild
 * reads either the old file or the new one, never half of one. scripts/build holds a lock around
 * this (concurrent tests all start clusters) and decides whether it is needed.
 */
import { copyFileSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { build } from 'esbuild';

const root = join(import.meta.dirname, '..');
const dist = join(root, 'dist');
const entries = { main: 'src/main.ts', 'front-main': 'src/front-main.ts', 'worker-main': 'src/worker-main.ts', cluster: 'scripts/cluster.ts', 'cpu-profile-preload': 'scripts/lib/cpu-profile-preload.ts' };

function writeAtomic(path, contents) {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, contents);
  renameSync(tmp, path);
}

function copyDir(from, to) {
  for (const name of readdirSync(from)) {
    const tmp = join(to, `${name}.${process.pid}.tmp`);
    mkdirSync(to, { recursive: true });
    copyFileSync(join(from, name), tmp);
    renameSync(tmp, join(to, name));
  }
}

const started = performance.now();
const result = await build({
  absWorkingDir: root,
  entryPoints: Object.fromEntries(Object.entries(entries).map(([out, src]) => [out, join(root, src)])),
  outdir: dist,
  bundle: true,
  packages: 'external',
  platform: 'node',
  format: 'esm',
  // What a module imports with `await import()` (the S3 store and its AWS SDK) is a chunk of its own,
  // loaded only when used. Chunks (and the code entries share) sit in dist/ itself, beside the
  // entries, so `import.meta.dirname` is dist/ in every module (the .lua scripts, the assets).
  splitting: true,
  target: 'node20',
  sourcemap: 'linked',
  legalComments: 'none',
  write: false,
  logLevel: 'warning',
});
// esbuild escapes every non-ASCII character of the code (its default `charset: 'ascii'`) but keeps
// the comments it preserves as written, and one "—" in them makes V8 hold the whole file's source
// as a two-byte string: 2 bytes per character for the ~1.3 MB of Axon's chunks a process loads
// (heap snapshots, 2026-12-05). Escaped in the comments too, the sources are one-byte strings:
// ~1.3 MB less per process.
const asciiComments = (text) => text.replace(/[^\x00-\x7f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
for (const f of result.outputFiles) writeAtomic(f.path, f.path.endsWith('.js') ? asciiComments(f.text) : f.contents);
// Chunks of earlier builds (their names carry a hash of their contents) go.
const written = new Set(result.outputFiles.map((f) => f.path));
for (const name of readdirSync(dist)) if (/\.js(\.map)?$/.test(name) && !written.has(join(dist, name))) rmSync(join(dist, name), { force: true });
copyDir(join(root, 'src', 'store', 'scripts'), join(dist, 'scripts'));
copyDir(join(root, 'src', 'ops', 'dashboard', 'assets'), join(dist, 'assets'));
writeAtomic(join(dist, '.built'), `${new Date().toISOString()}\n`);
const files = result.outputFiles.filter((f) => f.path.endsWith('.js')).map((f) => `${relative(root, f.path)} ${(f.contents.length / 1024).toFixed(0)} KiB`);
process.stderr.write(`axon: built ${files.join(', ')} in ${Math.round(performance.now() - started)} ms\n`);
