/**
 * A preload for benchmark processes (`node --import ./scripts/lib/cpu-profile-preload.ts …`):
 * CPU profiling switched on and off by signal, so a benchmark profiles exactly its measured phase
 * and not the setup before it (`node --cpu-prof` profiles a process's whole life, registration
 * and room creation included, and writes only at exit).
 *
 * SIGUSR2 starts the V8 sampling profiler (through the in-process inspector session); the next
 * SIGUSR2 stops it and writes `<AXON_CPU_PROFILE_DIR>/<label>.<pid>.<n>.cpuprofile` (the format
 * Chrome DevTools and `node --cpu-prof` use), where label is AXON_CPU_PROFILE_LABEL or the entry's
 * name and n counts the profiles of this process. SIGUSR1 is node's inspector switch, so it is
 * not used. Nothing here runs unless a signal comes: a process started with it and never
 * signalled behaves as without it.
 */
import { Session } from 'node:inspector';
import { mkdirSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';

const dir = process.env.AXON_CPU_PROFILE_DIR ?? '.';
const label = process.env.AXON_CPU_PROFILE_LABEL ?? basename(process.argv[process.argv.length - 1] ?? 'node').replace(/\.[a-z]+$/, '');
/** Sampling interval in µs (V8's default is 1000; finer costs more). */
const intervalUs = Number(process.env.AXON_CPU_PROFILE_INTERVAL_US ?? 500);

let session: Session | null = null;
let count = 0;

function post<T>(s: Session, method: string, params?: object): Promise<T> {
  return new Promise((resolve, reject) => s.post(method, params ?? {}, (err, res) => (err ? reject(err) : resolve(res as T))));
}

process.on('SIGUSR2', () => {
  void (async () => {
    if (!session) {
      const s = new Session();
      s.connect();
      session = s;
      await post(s, 'Profiler.enable');
      await post(s, 'Profiler.setSamplingInterval', { interval: intervalUs });
      await post(s, 'Profiler.start');
      return;
    }
    const s = session;
    session = null;
    const { profile } = await post<{ profile: unknown }>(s, 'Profiler.stop');
    s.disconnect();
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, `${label}.${process.pid}.${++count}.cpuprofile`), JSON.stringify(profile));
  })().catch((err) => process.stderr.write(`cpu-profile-preload: ${(err as Error).message}\n`));
});
