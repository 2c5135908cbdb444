/**
 * A multi-host test bed on one Linux machine: each "host" is a network namespace with one veth
 * link to a switch namespace holding a bridge. Hosts talk only over those links (addresses
 * 10.77.0.0/24 exist only inside the namespaces), so a host can be cut off by taking its switch
 * port down — its TCP connections stay open and silent, as in a real partition, not reset.
 *
 * Everything is named `axh<pid>-…` (the test runner's pid), and `destroy()` kills every process
 * in the namespaces (`ip netns pids`: only what this bed started) and deletes them, which removes
 * their links. It runs on afterAll, on exit and on SIGINT/SIGTERM; a bed left by a runner that was
 * killed -9 is removed by the next run (its pid is gone).
 *
 * Needs root and iproute2; `bedUnavailable()` says why not, for the test to skip with.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

export const SUBNET = '10.77.0';

export interface HostSpec {
  /** Short name: `h1`, `c`… (the switch port's name, so at most 12 characters). */
  name: string;
  /** Last octet of its address in 10.77.0.0/24. */
  octet: number;
}

/** Whether the `nft` command is here (partial partitions and packet loss need it). */
export function nftAvailable(): boolean {
  try {
    execFileSync('nft', ['--version'], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
}

/** Why this machine cannot build the bed (null: it can). */
export function bedUnavailable(): string | null {
  if (process.platform !== 'linux') return 'network namespaces need Linux';
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return 'creating network namespaces needs root';
  const probe = `axhprobe${process.pid}`;
  try {
    execFileSync('ip', ['netns', 'add', probe], { stdio: 'pipe' });
  } catch (e) {
    return `ip netns add failed (iproute2 missing or namespaces not allowed): ${(e as Error).message.split('\n')[0]}`;
  } finally {
    try {
      execFileSync('ip', ['netns', 'del', probe], { stdio: 'pipe' });
    } catch {
      // not created
    }
  }
  return null;
}

function sh(args: string[], opts: { allowFail?: boolean; env?: Record<string, string>; input?: string } = {}): string {
  try {
    return execFileSync(args[0]!, args.slice(1), { encoding: 'utf8', stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'], input: opts.input, env: { ...process.env, ...opts.env } });
  } catch (e) {
    if (opts.allowFail) return '';
    const err = e as { stderr?: string; message: string };
    throw new Error(`${args.join(' ')}: ${err.stderr?.trim() || err.message}`);
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Remove beds of earlier runners that died without cleaning up (their pid is gone). */
export function removeStaleBeds(): string[] {
  const removed: string[] = [];
  for (const line of sh(['ip', 'netns', 'list'], { allowFail: true }).split('\n')) {
    const name = line.split(' ')[0] ?? '';
    const m = /^axh(\d+)-/.exec(name);
    if (!m || Number(m[1]) === process.pid || pidAlive(Number(m[1]))) continue;
    killNamespace(name);
    sh(['ip', 'netns', 'del', name], { allowFail: true });
    removed.push(name);
  }
  return removed;
}

function killNamespace(ns: string): void {
  const pids = sh(['ip', 'netns', 'pids', ns], { allowFail: true })
    .split('\n')
    .map((s) => Number(s.trim()))
    .filter((n) => Number.isInteger(n) && n > 0 && n !== process.pid);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

export interface DelayProxy {
  proc: BedProcess;
  /** Set the one-way delay of bytes between this host and the others (resolves once applied). */
  setDelay(ms: number): Promise<void>;
}

export interface BedProcess {
  name: string;
  host: string;
  child: ChildProcess;
  exited: Promise<number | null>;
  logFile: string;
}

export class NetnsBed {
  readonly prefix = `axh${process.pid}`;
  readonly switchNs = `${this.prefix}-sw`;
  private readonly namespaces: string[] = [];
  readonly processes: BedProcess[] = [];
  private destroyed = false;
  private readonly onSignal = () => {
    this.destroy();
    process.exit(130);
  };
  private readonly onExit = () => this.destroy();

  constructor(
    readonly hosts: HostSpec[],
    readonly logDir: string,
  ) {
    process.once('exit', this.onExit);
    process.once('SIGINT', this.onSignal);
    process.once('SIGTERM', this.onSignal);
  }

  ns(host: string): string {
    return `${this.prefix}-${host}`;
  }

  address(host: string): string {
    const h = this.hosts.find((x) => x.name === host);
    if (!h) throw new Error(`no host ${host}`);
    return `${SUBNET}.${h.octet}`;
  }

  /** A host's second address: connections made from it are not redirected (the delay proxy's own). */
  proxyAddress(host: string): string {
    const h = this.hosts.find((x) => x.name === host);
    if (!h) throw new Error(`no host ${host}`);
    return `${SUBNET}.${100 + h.octet}`;
  }

  /** Both addresses of each host, for filters that must catch proxied traffic too. */
  private addressSet(hosts: string[]): string {
    return hosts.flatMap((o) => [this.address(o), this.proxyAddress(o)]).join(', ');
  }

  build(): void {
    mkdirSync(this.logDir, { recursive: true });
    sh(['ip', 'netns', 'add', this.switchNs]);
    this.namespaces.push(this.switchNs);
    sh(['ip', '-n', this.switchNs, 'link', 'add', 'br0', 'type', 'bridge']);
    sh(['ip', '-n', this.switchNs, 'link', 'set', 'dev', 'br0', 'up']);
    for (const h of this.hosts) {
      const ns = this.ns(h.name);
      sh(['ip', 'netns', 'add', ns]);
      this.namespaces.push(ns);
      sh(['ip', 'link', 'add', 'name', 'eth0', 'netns', ns, 'type', 'veth', 'peer', 'name', h.name, 'netns', this.switchNs]);
      sh(['ip', '-n', this.switchNs, 'link', 'set', 'dev', h.name, 'master', 'br0']);
      sh(['ip', '-n', this.switchNs, 'link', 'set', 'dev', h.name, 'up']);
      sh(['ip', '-n', ns, 'link', 'set', 'dev', 'lo', 'up']);
      sh(['ip', '-n', ns, 'addr', 'add', `${SUBNET}.${h.octet}/24`, 'dev', 'eth0']);
      sh(['ip', '-n', ns, 'addr', 'add', `${SUBNET}.${100 + h.octet}/24`, 'dev', 'eth0']);
      sh(['ip', '-n', ns, 'link', 'set', 'dev', 'eth0', 'up']);
    }
  }

  /** Cut a host off from every other (its switch port down): packets both ways are dropped. */
  cut(host: string): void {
    sh(['ip', '-n', this.switchNs, 'link', 'set', 'dev', host, 'down']);
  }

  heal(host: string): void {
    sh(['ip', '-n', this.switchNs, 'link', 'set', 'dev', host, 'up']);
  }

  /**
   * Drop every packet between `host` and the listed hosts (nftables in `host`'s namespace), so it
   * keeps talking to the rest: a partial partition. Needs the `nft` command.
   */
  isolateFrom(host: string, others: string[]): void {
    const addrs = this.addressSet(others);
    this.nft(host, `table inet axhbed {\n chain in { type filter hook input priority 0; ip saddr { ${addrs} } drop; }\n chain out { type filter hook output priority 0; ip daddr { ${addrs} } drop; }\n}\n`);
  }

  /**
   * Drop `percent` % of the packets `host` sends to the listed hosts, each packet drawn at random
   * (nftables `numgen random`): packet loss without netem. TCP retransmits what is lost.
   */
  lossTo(host: string, others: string[], percent: number): void {
    const addrs = this.addressSet(others);
    this.nft(host, `table inet axhbed {\n chain out { type filter hook output priority 0; ip daddr { ${addrs} } numgen random mod 100 < ${percent} drop; }\n}\n`);
  }

  /**
   * Route every TCP connection `host` opens from its own address to one of `ports` on another of
   * `others` through a delay proxy in its namespace (test/hosts/delay-proxy-main.ts): nftables
   * `redirect` in the nat output hook sends it to a local port, the proxy connects on from the
   * host's second address. Only connections opened after this go through it. `setDelay` changes
   * the one-way delay of every byte passed between the hosts (0 at first).
   */
  async routeThroughProxy(host: string, others: string[], ports: number[], connectTimeoutMs: number): Promise<DelayProxy> {
    const routes: { listenPort: number; host: string; port: number }[] = [];
    const rules: string[] = [];
    for (const o of others) {
      const oct = this.hosts.find((x) => x.name === o)!.octet;
      ports.forEach((port, i) => {
        const listenPort = 30_000 + oct * 100 + i;
        routes.push({ listenPort, host: this.address(o), port });
        rules.push(` ip saddr ${this.address(host)} ip daddr ${this.address(o)} tcp dport ${port} redirect to :${listenPort}`);
      });
    }
    const proc = this.spawn(host, `delay-proxy-${host}`, [process.execPath, '--import', 'tsx', join(import.meta.dirname, 'delay-proxy-main.ts'), JSON.stringify({ routes, sourceAddress: this.proxyAddress(host), connectTimeoutMs })], {}, { pipeStdio: true });
    const lines = createInterface({ input: proc.child.stdout! })[Symbol.asyncIterator]();
    const next = async (): Promise<any> => {
      const r = await Promise.race([lines.next(), proc.exited.then(() => ({ done: true, value: '' }))]);
      if (r.done) throw new Error(`delay proxy on ${host} ended; log ${proc.logFile}`);
      return JSON.parse(r.value);
    };
    await next();
    this.nft(host, `table inet axhproxy {\n chain nat {\n type nat hook output priority -100;\n${rules.join('\n')}\n }\n}\n`);
    return {
      proc,
      setDelay: async (ms: number) => {
        proc.child.stdin!.write(`delay ${ms}\n`);
        await next();
      },
    };
  }

  /** Remove what isolateFrom or lossTo set on `host`. */
  clearFilters(host: string): void {
    this.exec(host, ['nft', 'delete', 'table', 'inet', 'axhbed'], { allowFail: true });
  }

  /** Load a ruleset (nft's file syntax) into a host's namespace. */
  private nft(host: string, ruleset: string): void {
    sh(['ip', 'netns', 'exec', this.ns(host), 'nft', '-f', '-'], { input: ruleset });
  }

  /** Same, with `input` on its stdin. */
  execInput(host: string, args: string[], input: string): string {
    return sh(['ip', 'netns', 'exec', this.ns(host), ...args], { input });
  }

  /** A command run to completion inside a host's namespace. */
  exec(host: string, args: string[], opts: { allowFail?: boolean; env?: Record<string, string> } = {}): string {
    return sh(['ip', 'netns', 'exec', this.ns(host), ...args], opts);
  }

  /** Start a long-running process inside a host's namespace, output to `<logDir>/<name>.log`. */
  spawn(host: string, name: string, args: string[], env: Record<string, string> = {}, opts: { pipeStdio?: boolean } = {}): BedProcess {
    const logFile = join(this.logDir, `${name}.log`);
    const fd = openSync(logFile, 'a');
    const child = spawn('ip', ['netns', 'exec', this.ns(host), ...args], {
      env: { ...process.env, ...env },
      stdio: opts.pipeStdio ? ['pipe', 'pipe', fd] : ['ignore', fd, fd],
    });
    closeSync(fd);
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const p: BedProcess = { name, host, child, exited, logFile };
    this.processes.push(p);
    return p;
  }

  /** Kill one process (SIGKILL) and wait for it. */
  async kill(p: BedProcess): Promise<void> {
    if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    await p.exited;
  }

  /** Kill everything in the namespaces and delete them (their veth links go with them). Idempotent, synchronous. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    process.off('exit', this.onExit);
    process.off('SIGINT', this.onSignal);
    process.off('SIGTERM', this.onSignal);
    for (const p of this.processes) {
      try {
        p.child.kill('SIGKILL');
      } catch {
        // gone
      }
    }
    for (const ns of this.namespaces) killNamespace(ns);
    for (const ns of [...this.namespaces].reverse()) sh(['ip', 'netns', 'del', ns], { allowFail: true });
  }

  /** Names of our namespaces still present (empty after destroy). */
  leftovers(): string[] {
    return sh(['ip', 'netns', 'list'], { allowFail: true })
      .split('\n')
      .map((l) => l.split(' ')[0] ?? '')
      .filter((n) => n.startsWith(`${this.prefix}-`));
  }
}
