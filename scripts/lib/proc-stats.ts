/**
 * Server-side cost of a benchmark window, read from /proc (Linux): CPU seconds (utime + stime of
 * every process of the server, `/proc/<pid>/stat`) and memory (VmRSS and Pss sampled every
 * `intervalMs`; the peak of their sums). A server is a set of root pids plus, optionally, all of
 * their descendants (PostgreSQL's backends under its postmaster).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';

const TICKS = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** utime + stime in seconds, or null when the process is gone. */
export function cpuSeconds(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may contain spaces) start after the last ')'.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / TICKS;
  } catch {
    return null;
  }
}

function statusKb(pid: number, field: string): number {
  try {
    const m = new RegExp(`${field}:\\s+(\\d+)\\s+kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

export const rssKb = (pid: number) => statusKb(pid, 'VmRSS');
export const hwmKb = (pid: number) => statusKb(pid, 'VmHWM');

/** Proportional set size: shared pages (PostgreSQL's shared buffers) split between the processes mapping them. */
export function pssKb(pid: number): number {
  try {
    const m = /\nPss:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

function childrenOf(): Map<number, number[]> {
  const kids = new Map<number, number[]>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (!kids.has(ppid)) kids.set(ppid, []);
      kids.get(ppid)!.push(Number(d));
    } catch {
      /* gone */
    }
  }
  return kids;
}

export interface ServerProcesses {
  /** Pids of the server's processes (the set may change while it runs: call again each sample). */
  pids(): number[];
}

/** The given pids, and (when `descendants`) every process below them. */
export function processTree(roots: () => number[], descendants: boolean): ServerProcesses {
  return {
    pids() {
      const out = new Set(roots().filter((p) => p > 0));
      if (descendants) {
        const kids = childrenOf();
        const stack = [...out];
        while (stack.length) {
          for (const k of kids.get(stack.pop()!) ?? []) {
            if (!out.has(k)) {
              out.add(k);
              stack.push(k);
            }
          }
        }
      }
      return [...out];
    },
  };
}

export interface CostReport {
  seconds: number;
  cpuSeconds: number;
  /** CPU seconds per wall second (1.0 = one core busy). */
  cpuCores: number;
  peakRssMb: number;
  peakPssMb: number;
  processes: number;
  /** CPU seconds per process id in the window. */
  cpuByPid: Record<number, number>;
  /**
   * PSS per process id (MB) in the sample where the sum peaked: what the peak is made of (a
   * server's store, its caches, its connections: Redis holding what earlier workloads stored
   * shows here, not in the front's figure).
   */
  pssAtPeakByPid: Record<number, number>;
}

/** Samples a server's processes from start() to stop(). */
export class CostMeter {
  private first = new Map<number, number>();
  private last = new Map<number, number>();
  private peakRss = 0;
  private peakPss = 0;
  private pssAtPeak = new Map<number, number>();
  private timer: NodeJS.Timeout | null = null;
  private t0 = 0;

  constructor(
    private readonly procs: ServerProcesses,
    private readonly intervalMs = 250,
  ) {}

  private sample(initial: boolean): void {
    let rss = 0;
    let pss = 0;
    const byPid = new Map<number, number>();
    for (const pid of this.procs.pids()) {
      const cpu = cpuSeconds(pid);
      if (cpu === null) continue;
      // A process that appears during the window counts from zero.
      if (!this.first.has(pid)) this.first.set(pid, initial ? cpu : 0);
      this.last.set(pid, cpu);
      rss += rssKb(pid);
      const own = pssKb(pid);
      pss += own;
      byPid.set(pid, own);
    }
    this.peakRss = Math.max(this.peakRss, rss);
    if (pss >= this.peakPss) {
      this.peakPss = pss;
      this.pssAtPeak = byPid;
    }
  }

  start(): this {
    this.t0 = performance.now();
    this.sample(true);
    this.timer = setInterval(() => this.sample(false), this.intervalMs);
    this.timer.unref();
    return this;
  }

  stop(): CostReport {
    if (this.timer) clearInterval(this.timer);
    this.sample(false);
    let cpu = 0;
    const cpuByPid: Record<number, number> = {};
    for (const [pid, end] of this.last) {
      const used = end - (this.first.get(pid) ?? 0);
      cpu += used;
      cpuByPid[pid] = Math.round(used * 100) / 100;
    }
    const seconds = (performance.now() - this.t0) / 1000;
    return {
      seconds: Math.round(seconds * 10) / 10,
      cpuSeconds: Math.round(cpu * 100) / 100,
      cpuCores: Math.round((cpu / seconds) * 100) / 100,
      peakRssMb: Math.round(this.peakRss / 102.4) / 10,
      peakPssMb: Math.round(this.peakPss / 102.4) / 10,
      processes: this.last.size,
      cpuByPid,
      pssAtPeakByPid: Object.fromEntries([...this.pssAtPeak].map(([pid, kb]) => [pid, Math.round(kb / 102.4) / 10])),
    };
  }
}
