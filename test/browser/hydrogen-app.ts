/**
 * Hydrogen, the Matrix web client, as a page a real browser can load: its prebuilt app from the npm
 * package hydrogen-view-sdk, bundled with esbuild around test/browser/hydrogen/main.js, laid out
 * beside its assets (theme CSS, fonts, web worker, download sandbox, service worker) and Olm's wasm, and served by a
 * small static HTTP server on loopback. The page and the homeserver are different origins, so every
 * call Hydrogen makes to Axon is a real cross-origin request (CORS preflights included).
 */
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, extname, join, normalize, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);

/** Where an installed package lives: the folder above its entry point that holds its package.json
 * (hydrogen-view-sdk's `exports` does not expose package.json itself). */
function packageDir(name: string, from = require): string {
  let dir = dirname(from.resolve(name));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error(`no package.json above ${from.resolve(name)}`);
    dir = up;
  }
  return dir;
}

/** Builds the app into a fresh temporary folder and returns it. */
export async function buildHydrogenApp(): Promise<string> {
  const out = mkdtempSync(join(tmpdir(), 'axon-hydrogen-'));
  await build({
    entryPoints: [join(here, 'hydrogen', 'main.js')],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    outfile: join(out, 'app.js'),
    // Olm's Emscripten loader names these inside a Node-only branch that never runs in a browser.
    external: ['fs', 'path', 'crypto'],
    logLevel: 'silent',
  });
  cpSync(join(here, 'hydrogen', 'index.html'), join(out, 'index.html'));
  const sdk = packageDir('hydrogen-view-sdk');
  cpSync(join(sdk, 'asset-build', 'assets'), join(out, 'assets'), { recursive: true });
  cpSync(join(sdk, 'lib-build', 'sw.js'), join(out, 'sw.js'));
  // Olm is hydrogen-view-sdk's own dependency; resolve it from there.
  const olm = packageDir('@matrix-org/olm', createRequire(join(sdk, 'package.json')));
  mkdirSync(join(out, 'olm'));
  for (const f of ['olm.js', 'olm.wasm', 'olm_legacy.js']) cpSync(join(olm, f), join(out, 'olm', f));
  return out;
}

const contentTypes: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  // WebAssembly.instantiateStreaming insists on this type.
  '.wasm': 'application/wasm',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.woff': 'font/woff',
  '.woff2': 'font/woff2',
};

export interface ServedApp {
  url: string;
  close(): Promise<void>;
}

/** Serves `root` read-only on 127.0.0.1 (a free port); anything outside it, or missing, is a 404. */
export async function serveStatic(root: string): Promise<ServedApp> {
  const server: Server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    const file = normalize(join(root, path === '/' ? 'index.html' : path));
    if (!file.startsWith(root + sep) || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    res.writeHead(200, { 'content-type': contentTypes[extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-store' });
    res.end(readFileSync(file));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

export function removeApp(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}
