// The benchmark's deterministic pieces: the same plan for every server, and honest measuring
// helpers. (Speeds themselves are never asserted: `npm run bench` prints them.)
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it, vi } from 'vitest';
import { projectFile, runModule } from '../setup/run-module';
import { percentile, seededRandom, table } from '../../scripts/lib/bench-util';
import { CostMeter, cpuSeconds, processTree, pssKb, rssKb } from '../../scripts/lib/proc-stats';
import { churnSchedule, roomLayout } from '../../scripts/lib/workload-plans';

describe('bench plans', () => {
  it('seededRandom gives the same sequence for the same seed, a different one for another', () => {
    const a = seededRandom(42);
    const b = seededRandom(42);
    const c = seededRandom(43);
    const xs = Array.from({ length: 5 }, () => a());
    expect(Array.from({ length: 5 }, () => b())).toEqual(xs);
    expect(Array.from({ length: 5 }, () => c())).not.toEqual(xs);
    for (const x of xs) expect(x >= 0 && x < 1).toBe(true);
  });

  it('roomLayout: 20 rooms, ~80 % of the memberships in the 4 big ones, every user in a big room', () => {
    const { big, small } = roomLayout(200);
    expect(big).toHaveLength(4);
    expect(small).toHaveLength(16);
    const bigMemberships = big.reduce((s, r) => s + r.length, 0);
    const all = bigMemberships + small.reduce((s, r) => s + r.length, 0);
    expect(bigMemberships).toBe(200);
    expect(bigMemberships / all).toBeGreaterThan(0.75);
    expect(bigMemberships / all).toBeLessThan(0.85);
    for (const r of small) expect(new Set(r).size).toBe(r.length);
  });

  it('churnSchedule: ~10 % leaves, each of a member whose join is settled, and the same plan twice', () => {
    const { ops, users } = churnSchedule(2500);
    expect(churnSchedule(2500)).toEqual({ ops, users });
    const leaves = ops.filter((o) => o.kind === 'leave').length;
    expect(leaves / ops.length).toBeGreaterThan(0.07);
    expect(leaves / ops.length).toBeLessThan(0.13);
    const joinedAt = new Map<number, number>();
    ops.forEach((o, k) => {
      expect(o.user).toBeLessThan(users);
      if (o.kind === 'join') {
        expect(joinedAt.has(o.user)).toBe(false);
        joinedAt.set(o.user, k);
      } else {
        expect(k - joinedAt.get(o.user)!).toBeGreaterThanOrEqual(50);
        joinedAt.delete(o.user);
      }
    });
  });

  it('percentile is nearest-rank and NaN on no data; table aligns columns', () => {
    const xs = Array.from({ length: 100 }, (_x, i) => i + 1);
    expect(percentile(xs, 50)).toBe(51);
    expect(percentile(xs, 99)).toBe(100);
    expect(percentile([], 50)).toBeNaN();
    const t = table([{ a: 'x', b: 1 }, { a: 'longer', b: 22 }], ['a', 'b']).split('\n');
    expect(t).toEqual(['a        b', '------  --', 'x        1', 'longer  22']);
  });
});

describe('proc-stats', () => {
  it('reads CPU seconds and RSS of this process, and a meter sees CPU burnt in its window', async () => {
    expect(cpuSeconds(process.pid)).toBeGreaterThan(0);
    expect(rssKb(process.pid)).toBeGreaterThan(1000);
    expect(cpuSeconds(2 ** 22 + 12345)).toBeNull();
    const meter = new CostMeter(processTree(() => [process.pid], false), 20).start();
    // Burn 0.2 s of this process's own CPU (however busy the machine is), at most 10 s of wall time.
    const c0 = process.cpuUsage();
    const end = Date.now() + 10_000;
    let x = 0;
    while (Date.now() < end) {
      for (let i = 0; i < 10_000; i++) x += Math.sqrt(x + 1);
      const c = process.cpuUsage(c0);
      if (c.user + c.system > 200_000) break;
    }
    await new Promise((r) => setTimeout(r, 50));
    const r = meter.stop();
    expect(x).toBeGreaterThan(0);
    expect(r.cpuSeconds).toBeGreaterThan(0.1);
    expect(r.peakRssMb).toBeGreaterThan(1);
    expect(r.processes).toBe(1);
  });

  it('says what the peak PSS is made of: each process in the sample where the sum peaked', async () => {
    // This process and a child that holds ~64 MB more than it needs (PSS counts what is touched).
    const child = spawn(process.execPath, ['-e', 'const b = Buffer.alloc(64 * 1024 * 1024, 1); setInterval(() => b[0]++, 1000)'], { stdio: 'ignore' });
    try {
      const pids = () => [process.pid, child.pid!];
      await vi.waitFor(() => expect(pssKb(child.pid!)).toBeGreaterThan(60 * 1024), { timeout: 10_000, interval: 50 });
      const meter = new CostMeter(processTree(pids, false), 20).start();
      await new Promise((r) => setTimeout(r, 100));
      const r = meter.stop();
      expect(Object.keys(r.pssAtPeakByPid).map(Number).sort()).toEqual([process.pid, child.pid!].sort());
      expect(r.pssAtPeakByPid[child.pid!]).toBeGreaterThan(60);
      const sum = Object.values(r.pssAtPeakByPid).reduce((a, b) => a + b, 0);
      expect(Math.abs(sum - r.peakPssMb)).toBeLessThan(0.5);
    } finally {
      child.kill('SIGKILL');
    }
  });
});

describe('killOnExit', () => {
  /** Whether `pid` still runs (Linux: a killed child waiting to be reaped is a zombie, `Z`). */
  const running = (pid: number): boolean => {
    try {
      return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]![0] !== 'Z';
    } catch {
      return false;
    }
  };
  /** A parent (as a benchmark is) that starts a long child, then fails with `process.exit(1)`; the child's pid. */
  const failingParent = (follow: boolean): number => {
    const r = runModule([
      `import { spawn } from 'node:child_process';`,
      `import { killOnExit } from ${JSON.stringify(projectFile('scripts/lib/bench-util.ts'))};`,
      `const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });`,
      follow ? 'killOnExit(child);' : '',
      'console.log(child.pid);',
      'setTimeout(() => process.exit(1), 100);',
    ]);
    expect(r.status).toBe(1);
    return Number(r.stdout.trim());
  };
  const settle = async (pid: number, want: boolean): Promise<boolean> => {
    for (let i = 0; i < 40 && running(pid) !== want; i++) await new Promise((r) => setTimeout(r, 50));
    return running(pid);
  };

  it('kills a child still running when the process exits, however it exits (a failed check: process.exit(1))', async () => {
    const pid = failingParent(true);
    expect(pid).toBeGreaterThan(0);
    expect(await settle(pid, false)).toBe(false);
  });

  it('without it the child outlives the parent (the orphaned workers it is for)', async () => {
    const pid = failingParent(false);
    try {
      expect(await settle(pid, true)).toBe(true);
    } finally {
      process.kill(pid, 'SIGKILL');
    }
  });
});
