/**
 * Finding the headless Chromium the browser tests drive: Debian's `chromium-headless-shell`
 * (installed by scripts/lib/ensure.sh's ensure_chromium), a full `chromium`, or whatever
 * AXON_CHROMIUM names. puppeteer-core never downloads a browser of its own.
 */
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

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
