/**
 * Finding the headless Chromium the browser tests drive: Debian's `chromium-headless-shell`
 * (installed by scripts/lib/ensure.sh's ensure_chromium), a full `chromium`, or whatever
 * AXON_CHROMIUM names. puppeteer-core never downloads a browser of its own.
 */
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import puppeteer, { type Browser, type HTTPResponse, type Page } from 'puppeteer-core';

// The names ensure_chromium checks for (scripts/lib/ensure.sh); keep them in step.
const candidates = ['chromium-headless-shell', 'chromium'];

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The browser's path, or undefined when none is installed. */
export function findChromium(): string | undefined {
  const named = process.env.AXON_CHROMIUM;
  if (named) return executable(named) ? named : undefined;
  const dirs = (process.env.PATH ?? '').split(delimiter).filter(Boolean);
  for (const name of candidates) {
    for (const dir of dirs) {
      const path = join(dir, name);
      if (executable(path)) return path;
    }
  }
  return undefined;
}

/** chromium-headless-shell is the old headless mode's binary; puppeteer calls that mode 'shell'. */
export function headlessModeFor(path: string): 'shell' | true {
  return /headless-shell/.test(path) ? 'shell' : true;
}

/**
 * Launch the browser and open one page of `width`×`height` with `stepMs` as its default timeout;
 * the page's console errors and warnings, page errors, failed requests and 4xx/5xx answers go to
 * `pageLog` (printed when a step fails). `onResponse` sees every response too.
 */
export async function openPage(chromium: string, opts: { width: number; height: number; stepMs: number; pageLog: string[]; onResponse?: (r: HTTPResponse) => void }): Promise<{ browser: Browser; page: Page }> {
  const { width, height, pageLog } = opts;
  const browser = await puppeteer.launch({
    executablePath: chromium,
    headless: headlessModeFor(chromium),
    // Root in a container: Chromium's sandbox needs user namespaces it may not have.
    args: ['--no-sandbox', '--disable-dev-shm-usage', `--window-size=${width},${height}`],
    defaultViewport: { width, height },
  });
  const page = await browser.newPage();
  page.setDefaultTimeout(opts.stepMs);
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warn') pageLog.push(`console.${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => pageLog.push(`pageerror: ${String(e)}`));
  page.on('requestfailed', (r) => pageLog.push(`request failed: ${r.method()} ${r.url()} ${r.failure()?.errorText ?? ''}`));
  page.on('response', (r) => {
    opts.onResponse?.(r);
    if (r.status() >= 400) pageLog.push(`response ${r.status()}: ${r.request().method()} ${r.url()}`);
  });
  return { browser, page };
}
