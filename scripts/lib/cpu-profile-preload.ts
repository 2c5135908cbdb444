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
 *
 * The same window's event-loop delay (`monitorEventLoopDelay`, 10 ms resolution: how late timers
 * and I/O callbacks ran, i.e. how long the loop was stuck in one task) is written beside the
 * profile as `<label>.<pid>.<n>.loop.json` (ms: p50, p99, max, mean), with the window's garbage
 * collections by kind (count and ms of pause: scavenges, mark-compacts, incremental marking steps,
 * weak callbacks; from `PerformanceObserver` 'gc' entries); profile-summary prints both.
 */
import { Session } from 'node:inspector';
import { PerformanceObserver, constants as perfConstants, monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { mkdirSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';

const dir = process.env.AXON_CPU_PROFILE_DIR ?? '.';
const label = process.env.AXON_CPU_PROFILE_LABEL ?? basename(process.argv[process.argv.length - 1] ?? 'node').replace(/\.[a-z]+$/, '');
/** Sampling interval in µs (V8's default is 1000; finer costs more). */
const intervalUs = Number(process.env.AXON_CPU_PROFILE_INTERVAL_US ?? 500);
const heapSampling = process.env.AXON_HEAP_SAMPLING === '1';

let session: Session | null = null;
let loop: IntervalHistogram | null = null;
let gcObserver: PerformanceObserver | null = null;
let gc: Record<string, { count: number; ms: number }> = {};
const GC_KINDS: Record<number, string> = {
  [perfConstants.NODE_PERFORMANCE_GC_MINOR]: 'scavenge',
  [perfConstants.NODE_PERFORMANCE_GC_MAJOR]: 'mark-compact',
  [perfConstants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [perfConstants.NODE_PERFORMANCE_GC_WEAKCB]: 'weak-callbacks',
};
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
      // AXON_HEAP_SAMPLING=1: also V8's sampling heap profiler, counting what was allocated in the
      // window even if collected since (`.heapprofile`, Chrome DevTools' format): where the garbage
      // comes from.
      if (heapSampling) await post(s, 'HeapProfiler.startSampling', { samplingInterval: 64 * 1024, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
      loop = monitorEventLoopDelay({ resolution: 10 });
      loop.enable();
      gc = {};
      gcObserver = new PerformanceObserver((list) => {
        for (const e of list.getEntries()) {
          const kind = GC_KINDS[((e as { detail?: { kind?: number } }).detail)?.kind ?? -1] ?? 'other';
          const k = (gc[kind] ??= { count: 0, ms: 0 });
          k.count++;
          k.ms += e.duration;
        }
      });
      gcObserver.observe({ entryTypes: ['gc'] });
      return;
    }
    const s = session;
    session = null;
    const { profile } = await post<{ profile: unknown }>(s, 'Profiler.stop');
    const heap = heapSampling ? (await post<{ profile: unknown }>(s, 'HeapProfiler.stopSampling')).profile : null;
    s.disconnect();
    mkdirSync(dir, { recursive: true });
    const name = `${label}.${process.pid}.${++count}`;
    if (heap) writeFileSync(join(dir, `${name}.heapprofile`), JSON.stringify(heap));
    writeFileSync(join(dir, `${name}.cpuprofile`), JSON.stringify(profile));
    if (loop) {
      loop.disable();
      const ms = (ns: number) => Math.round(ns / 1e4) / 100;
      gcObserver?.disconnect();
      gcObserver = null;
      for (const k of Object.values(gc)) k.ms = Math.round(k.ms);
      writeFileSync(join(dir, `${name}.loop.json`), JSON.stringify({ p50: ms(loop.percentile(50)), p99: ms(loop.percentile(99)), max: ms(loop.max), mean: ms(loop.mean), gc }));
      loop = null;
    }
  })().catch((err) => process.stderr.write(`cpu-profile-preload: ${(err as Error).message}\n`));
});
